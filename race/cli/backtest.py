"""``python -m race backtest``: a new backtest race each run, replayed over stored candles
with a progress bar, resumable after Ctrl-C with ``--resume RACE`` (docs/races.md)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from race.cli._common import iso_arg, open_app, progress_bar
from race.domain import jobs
from race.domain.timeutil import format_interval, parse_interval

if TYPE_CHECKING:
    from race.backtest import BacktestPlan
    from race.bootstrap import App
    from race.domain.race import Race
    from race.leaderboard import Standing


def _number(text: str) -> Decimal:
    try:
        value = Decimal(text.strip().replace("_", ""))
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a number: {text[:40]!r}") from None
    if not value.is_finite():
        raise argparse.ArgumentTypeError(f"not a finite number: {text[:40]!r}")
    return value


def register(commands: Any) -> None:
    backtest = commands.add_parser(
        "backtest", help="a new backtest race over a past range (resumable, re-runnable)"
    )
    backtest.add_argument("--start", type=iso_arg, help="ISO-8601 start (UTC)")
    backtest.add_argument("--end", type=iso_arg, help="ISO-8601 end (UTC)")
    backtest.add_argument("--interval", default="1h", help="decision interval (default 1h)")
    backtest.add_argument(
        "--agents",
        metavar="NAME,...",
        help="participants by name or id, comma-separated (default: every active agent "
        "that calls no outside provider)",
    )
    backtest.add_argument("--name", help="the race's name (default: from the range, numbered)")
    backtest.add_argument("--fee", type=_number, help="fee rate, e.g. 0.001 (default: settings)")
    backtest.add_argument("--slippage-bps", type=_number, help="slippage in basis points")
    backtest.add_argument("--max-position", type=_number, help="max position, fraction of equity")
    backtest.add_argument("--max-order", type=_number, metavar="USD", help="max order notional")
    backtest.add_argument("--starting-capital", type=_number, metavar="USD", help="per agent")
    backtest.add_argument(
        "--include-llm",
        action="store_true",
        help="allow LLM and remote agents (paid calls: prints their number and cost first)",
    )
    backtest.add_argument("--yes", action="store_true", help="do not ask to confirm the cost")
    backtest.add_argument(
        "--resume", metavar="RACE", help="continue the backtest race RACE from its cursor"
    )
    backtest.set_defaults(handler=cmd_backtest)


def _request(args: argparse.Namespace) -> Any:
    from race.backtest import BacktestError, BacktestRequest

    if args.start is None or args.end is None:
        raise BacktestError("--start and --end are required (or --resume RACE)")
    agents = None
    if args.agents is not None:
        agents = tuple(part.strip() for part in args.agents.split(",") if part.strip())
        if not agents:
            raise BacktestError("--agents names no agent")
    return BacktestRequest(
        start=args.start,
        end=args.end,
        interval=parse_interval(args.interval),
        agents=agents,
        name=args.name,
        fee=args.fee,
        slippage_bps=args.slippage_bps,
        max_position=args.max_position,
        max_order=args.max_order,
        starting_capital=args.starting_capital,
        include_llm=args.include_llm,
    )


RESUME_ONLY = (
    "start",
    "end",
    "agents",
    "name",
    "fee",
    "slippage_bps",
    "max_position",
    "max_order",
    "starting_capital",
)


def _confirm(app: App, plan: BacktestPlan, args: argparse.Namespace) -> bool:
    """Print the calls and cost of the network agents; ask unless ``--yes``. Raises
    ``BacktestError`` when it would have to ask a non-interactive stdin."""
    from race.backtest import BacktestError
    from race.backtest_cost import estimate

    if not plan.network_agents:
        return True
    for line in estimate(plan, app.settings).render():
        print(line)
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise BacktestError("paid LLM calls need confirmation: add --yes (stdin is not a terminal)")
    answer = input("go ahead? [y/N] ").strip().lower()
    return answer in ("y", "yes")


def _confirm_resume(app: App, race: Race, args: argparse.Namespace) -> bool:
    """A race with LLM participants resumes only with ``--include-llm``, after its cost."""
    from race.backtest import NetworkAgentRefused, resume_plan

    plan = resume_plan(app, race)
    network = [p.name for p in plan.network_agents]
    if network and not args.include_llm:
        raise NetworkAgentRefused(
            f"race {race.name!r} has LLM or remote participants ({', '.join(network)}): "
            "resume it with --include-llm"
        )
    return _confirm(app, plan, args)


def _start(app: App, args: argparse.Namespace) -> Race | None:
    from race.backtest import create_backtest, plan_backtest

    plan = plan_backtest(app, _request(args))
    if not _confirm(app, plan, args):
        print("not started", file=sys.stderr)
        return None
    race = create_backtest(app, plan)
    names = ", ".join(p.name for p in plan.participants)
    print(f"race {race.id}: {race.name} (backtest)")
    print(
        f"{plan.start.isoformat()} → {plan.end.isoformat()} every "
        f"{format_interval(plan.interval)}: {plan.cycles:,} cycle(s); agents: {names}",
        flush=True,
    )
    return race


def cmd_backtest(args: argparse.Namespace) -> int:
    from race.backtest import BacktestError, resumable

    app = open_app()
    if args.resume is not None:
        given = [f"--{f.replace('_', '-')}" for f in RESUME_ONLY if getattr(args, f) is not None]
        if given:
            raise BacktestError(f"--resume continues a race as created: drop {', '.join(given)}")
        race = resumable(app, args.resume)
        if not _confirm_resume(app, race, args):
            print("not resumed", file=sys.stderr)
            return 1
        print(f"resuming race {race.id}: {race.name}", flush=True)
    else:
        started = _start(app, args)
        if started is None:
            return 1
        race = started
    return _run(app, race)


def _run(app: App, race: Race) -> int:
    from race.backtest import run_backtest, set_status

    bar, update = progress_bar(0, "backtest")
    try:
        report = asyncio.run(run_backtest(app, race, on_progress=update))
    except KeyboardInterrupt:
        bar.close()
        _stopped(app, race)
        return 130
    finally:
        bar.close()
    if not report.finished:  # pragma: no cover - only with max_seconds
        set_status(app, race, jobs.PARTIAL)
    print(
        f"{report.done_cycles}/{report.total_cycles} cycles: {report.decisions} decisions "
        f"({report.fallbacks} fallbacks), {report.trades} trades written this run\n"
    )
    with app.db.read() as session:
        from race.leaderboard import standings

        print(render_summary(standings(session, race_id=race.id)))
    return 0


def _stopped(app: App, race: Race) -> None:
    from race.backtest import set_status

    try:
        set_status(app, race, jobs.PARTIAL)
    except Exception as exc:  # the line below matters more than the status
        logging.getLogger("race.backtest").warning("race status not updated: %s", exc)
    print(
        f"interrupted: finished chunks are saved; resume with "
        f"`python -m race backtest --resume {race.id}`",
        file=sys.stderr,
    )


def render_summary(rows: list[Standing]) -> str:
    """Rank, agent, final equity, return, trades, fallbacks and max drawdown."""
    headers = ("#", "Agent", "Equity (USD)", "Return %", "Trades", "Fallbacks", "Max DD %")
    body = [
        (
            str(r.rank),
            r.name,
            f"{r.current_value:,.2f}",
            f"{r.return_pct:+.2f}",
            str(r.total_trades),
            str(r.fallbacks),
            f"{r.max_drawdown_pct:.2f}",
        )
        for r in rows
    ]
    widths = [max([len(h), *(len(row[i]) for row in body)]) for i, h in enumerate(headers)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(w) if i == 1 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *map(line, body)])
