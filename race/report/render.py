"""The race report as one self-contained HTML file: inline CSS, the charts as inline SVG
(each followed by the data it draws in a ``<script type="application/json">`` block), the
leaderboard with its intervals, the behaviour and cost tables and the flags. Nothing is
fetched when it is opened: no script runs, no URL is referenced.

``--png DIR`` writes the same charts as PNG files (:func:`write_pngs`).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from race.domain.significance import Interval
from race.report.charts import Chart, charts, period
from race.report.model import AgentReport, ReportData

NOT_SIGNIFICANT = "not significant"
UNDETERMINED = "significance undetermined"
CONTAMINATED = "possibly contaminated"

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f;
  max-width: 1180px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
.meta { color: #555; }
figure { margin: 1em 0; }
figure svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; width: 100%; margin: .5em 0; }
th, td { padding: .3em .6em; border-bottom: 1px solid #e5e5e5; text-align: right;
  white-space: nowrap; }
th { background: #f5f5f7; font-weight: 600; }
td.name, th.name, td.text { text-align: left; }
td.text { white-space: normal; }
.flag { display: inline-block; padding: 0 .45em; border-radius: .6em; font-size: .85em;
  margin-right: .3em; }
.flag.not-significant { background: #fff1d6; color: #7a4b00; }
.flag.undetermined { background: #eee; color: #555; }
.flag.contaminated { background: #ffe0e0; color: #8a1010; }
.note { color: #555; font-size: .92em; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | None, spec: str, suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def _ci(interval: Interval | None, scale: float, spec: str, suffix: str = "") -> str:
    if interval is None:
        return "—"
    return f"[{interval.low * scale:{spec}}, {interval.high * scale:{spec}}]{suffix}"


def flags(agent: AgentReport) -> list[tuple[str, str, str]]:
    """(css class, label, why) of each flag the agent carries."""
    out = []
    sig = agent.leaderboard.significance
    if agent.leaderboard.significant is False:
        out.append(
            (
                "not-significant",
                NOT_SIGNIFICANT,
                f"PSR {_num(sig.psr, '.2f')} < 0.95: the Sharpe ratio may be luck",
            )
        )
    elif agent.leaderboard.significant is None:
        why = sig.reasons.get("psr", "PSR could not be computed")
        out.append(("undetermined", UNDETERMINED, why))
    if agent.possibly_contaminated:
        out.append(("contaminated", CONTAMINATED, agent.contamination.reason))
    return out


def _flag_cells(agent: AgentReport) -> str:
    return "".join(
        f'<span class="flag {cls}" title="{_e(why)}">{_e(label)}</span>'
        for cls, label, why in flags(agent)
    )


def _table(
    table_id: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    name_columns: int = 1,
    text_columns: Sequence[int] = (),
) -> str:
    """Cells are HTML already escaped by the caller."""

    def cls(i: int, header: bool) -> str:
        if i < name_columns:
            return ' class="name"'
        return ' class="text"' if i in text_columns and not header else ""

    head = "".join(f"<th{cls(i, True)}>{_e(h)}</th>" for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f"<td{cls(i, False)}>{c}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def leaderboard_table(report: ReportData) -> str:
    rows = []
    for a in report.agents:
        row, sig = a.leaderboard, a.leaderboard.significance
        rows.append(
            [
                str(row.rank),
                _e(a.name),
                _e(a.model or "—"),
                f"{row.final_equity:,.2f}",
                f"{row.return_pct:+.2f}",
                _ci(sig.total_return_ci, 100.0, "+.2f"),
                _num(sig.sharpe, ".2f"),
                _ci(sig.sharpe_ci, 1.0, ".2f"),
                _num(sig.psr, ".3f"),
                _num(sig.p_beat_benchmark, ".2f"),
                f"{row.max_drawdown_pct:.2f}",
                _flag_cells(a),
            ]
        )
    headers = [
        "#",
        "Agent",
        "Model",
        "Equity (USD)",
        "Return %",
        "95 % interval (%)",
        "Sharpe",
        "Sharpe 95 % interval",
        "PSR",
        "P(beat buy-and-hold)",
        "Max DD %",
        "Flags",
    ]
    return _table("leaderboard", headers, rows, name_columns=3, text_columns=(11,))


def behaviour_table(report: ReportData) -> str:
    rows = []
    for a in report.agents:
        b = a.behaviour
        if b is None:
            rows.append([_e(a.name)] + ["—"] * 8)
            continue
        rows.append(
            [
                _e(a.name),
                _num(None if b.exposure is None else b.exposure * 100, ".1f"),
                _num(b.turnover, ".2f"),
                _num(b.turnover_per_day, ".3f"),
                _num(None if b.hold_share is None else b.hold_share * 100, ".1f"),
                _num(b.holding_hours, ",.1f"),
                f"{b.trades:,}",
                _num(b.trades_per_day, ".2f"),
                f"{b.decisions:,} ({b.fallbacks:,})",
            ]
        )
    headers = [
        "Agent",
        "Exposure %",
        "Turnover ×",
        "Turnover / day",
        "HOLD %",
        "Holding (h)",
        "Trades",
        "Trades / day",
        "Decisions (fallbacks)",
    ]
    return _table("behaviour", headers, rows)


def cost_table(report: ReportData) -> str:
    rows = []
    for a in report.agents:
        c = a.cost
        rows.append(
            [
                _e(a.name),
                f"{c.spend_usd:,.4f}",
                f"{c.tokens:,}",
                _num(None if c.pnl_per_usd is None else float(c.pnl_per_usd), ",.2f"),
                _num(c.return_pct_per_usd, ".4f"),
                _num(
                    None if c.pnl_per_million_tokens is None else float(c.pnl_per_million_tokens),
                    ",.2f",
                ),
                _num(c.return_pct_per_million_tokens, ".4f"),
            ]
        )
    headers = [
        "Agent",
        "LLM spend (USD)",
        "Tokens",
        "P&L per USD",
        "Return pp per USD",
        "P&L per M tokens",
        "Return pp per M tokens",
    ]
    return _table("cost", headers, rows)


def flags_table(report: ReportData) -> str:
    rows = []
    for a in report.agents:
        sig = a.leaderboard.significance
        verdict = {True: "significant", False: NOT_SIGNIFICANT, None: UNDETERMINED}[
            a.leaderboard.significant
        ]
        contaminated = {True: CONTAMINATED, False: "no", None: "unknown"}[
            a.contamination.possibly_contaminated
        ]
        if a.contamination.model is None:
            contaminated = "not applicable"
        cutoff = a.contamination.cutoff
        rows.append(
            [
                _e(a.name),
                _e(verdict),
                _num(sig.min_track_record_days, ",.1f"),
                _e(contaminated),
                _e(cutoff.isoformat() if cutoff else "—"),
                _e(a.contamination.reason),
            ]
        )
    headers = [
        "Agent",
        "Sharpe ratio",
        "Min. track record (days)",
        "Contamination",
        "Training cut-off",
        "Why",
    ]
    return _table("flags", headers, rows, text_columns=(5,))


def _json(data: dict[str, Any]) -> str:
    """JSON safe inside ``<script>``: no ``</`` can close the element early."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")


def _figure(chart: Chart) -> str:
    return (
        f'<figure id="chart-{chart.name}"><figcaption>{_e(chart.title)}</figcaption>\n'
        f"{chart.svg()}\n"
        f'<script type="application/json" id="data-{chart.name}">{_json(chart.data)}</script>'
        "</figure>"
    )


def _period(report: ReportData) -> str:
    text = period(report)
    return text if report.start is None else f"{text} UTC"


def _summary(report: ReportData) -> str:
    not_sig = [a.name for a in report.agents if a.leaderboard.significant is not True]
    dirty = [a.name for a in report.agents if a.possibly_contaminated]
    lines = []
    if not_sig:
        lines.append(
            f"{len(not_sig)} of {len(report.agents)} rankings are not shown to be skill "
            f"(PSR below 0.95 or too few points): {', '.join(not_sig)}."
        )
    if dirty:
        lines.append(
            "Possibly contaminated (the race starts before the model's training cut-off): "
            f"{', '.join(dirty)}."
        )
    if report.buy_and_hold_name is None:
        lines.append("No buy-and-hold benchmark in this race: P(beat buy-and-hold) is not given.")
    return "".join(f'<p class="note">{_e(line)}</p>' for line in lines)


def render_html(report: ReportData) -> str:
    """The whole report, one string of HTML."""
    title = f"AI Trading Race — {report.race}"
    sections: list[tuple[str, Callable[[ReportData], str]]] = [
        ("Leaderboard", leaderboard_table),
        ("Flags", flags_table),
        ("Behaviour", behaviour_table),
        ("Cost efficiency", cost_table),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">Period {_e(_period(report))} · {len(report.agents)} agents · '
        f"generated {_e(f'{report.generated_at:%Y-%m-%d %H:%M} UTC')}</p>",
        _summary(report),
    ]
    if report.agents:
        parts.append("<h2>Charts</h2>")
        parts.extend(_figure(chart) for chart in charts(report))
    for heading, table in sections:
        parts.append(f"<h2>{_e(heading)}</h2>")
        parts.append(table(report))
    parts.append(
        '<p class="note">Intervals: 95 % circular block bootstrap (seeded). PSR: probabilistic '
        "Sharpe ratio against 0; a ranking is significant when PSR ≥ 0.95. P(beat "
        "buy-and-hold): bootstrap of the paired difference of returns. Exposure, turnover and "
        "holding time: docs/analytics.md.</p>"
    )
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_html(report: ReportData, out: Path) -> Path:
    """Write the report to ``out`` (via a temporary file next to it, then renamed, so a
    reader never sees half a report)."""
    text = render_html(report)
    temporary = out.with_name(f".{out.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(out)
    return out


def write_pngs(report: ReportData, directory: Path) -> list[Path]:
    """Each chart as ``<name>.png`` in ``directory`` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for chart in charts(report):
        path = directory / f"{chart.name}.png"
        path.write_bytes(chart.png())
        written.append(path)
    return written
