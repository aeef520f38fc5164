"""The race report's rendering, from a hand-built ReportData: each chart draws its data,
nothing is fetched, the tables are the leaderboard, the flags show, --png writes each chart."""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from race.domain.behaviour import Behaviour
from race.domain.contamination import contamination
from race.domain.efficiency import efficiency
from race.domain.significance import significance
from race.report.charts import CHART_POINTS
from race.report.model import AgentReport, LeaderboardRow, Point, ReportData
from race.report.render import (
    CONTAMINATED,
    NOT_SIGNIFICANT,
    UNDETERMINED,
    render_html,
    write_html,
    write_pngs,
)
from race.report.series import drawdown, thin

START = datetime(2024, 3, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
SVG = "{http://www.w3.org/2000/svg}"
CHARTS = ("equity", "drawdown", "intervals")


def curve(values: list[float], start: datetime = START) -> list[Point]:
    return [Point(start + HOUR * i, v) for i, v in enumerate(values)]


def noisy(n: int, drift: float, seed: int) -> list[float]:
    """A deterministic pseudo-random walk (a linear congruential generator, no numpy)."""
    state, value, out = seed, 100_000.0, []
    for _ in range(n):
        state = (1103515245 * state + 12345) % 2**31
        value *= 1 + drift + 0.01 * (state / 2**31 - 0.5)
        out.append(round(value, 2))
    return out


def agent(
    name: str,
    values: list[float],
    rank: int,
    *,
    model: str | None = None,
    benchmark_values: list[float] | None = None,
    is_benchmark: bool = False,
    behaviour: Behaviour | None = None,
) -> AgentReport:
    equity = curve(values)
    sig = significance(
        [(p.time, p.value) for p in equity],
        origin=100_000.0,
        benchmark=None
        if benchmark_values is None
        else [(p.time, p.value) for p in curve(benchmark_values)],
        benchmark_origin=100_000.0,
    )
    final = Decimal(str(values[-1]))
    return AgentReport(
        agent_id=rank,
        name=name,
        provider="OpenAI" if model else "Mock",
        model=model,
        equity=equity,
        drawdown=drawdown(equity),
        leaderboard=LeaderboardRow(
            rank=rank,
            starting_capital=100_000.0,
            final_equity=values[-1],
            return_pct=(values[-1] / 100_000.0 - 1) * 100,
            max_drawdown_pct=-min(p.value for p in drawdown(equity)),
            significance=sig,
        ),
        behaviour=behaviour,
        cost=efficiency(
            Decimal(100_000),
            final,
            Decimal("2.5") if model else None,
            1000 if model else 0,
            500 if model else 0,
        ),
        contamination=contamination(model, START),
        is_benchmark=is_benchmark,
    )


BEHAVIOUR = Behaviour(
    exposure=0.5,
    turnover=2.0,
    turnover_per_day=0.25,
    hold_share=0.75,
    decisions=48,
    fallbacks=3,
    holding_hours=12.5,
    trades=9,
    trades_per_day=1.125,
)


def build(n: int = 200) -> ReportData:
    hold = noisy(n, 0.002, 7)
    agents = [
        agent("Buy & Hold", hold, 1, is_benchmark=True),
        # a steady climb with little noise: PSR ≥ 0.95
        agent("Steady </script><b>x</b>", noisy(n, 0.004, 3), 2, benchmark_values=hold),
        # noise without drift, and a model trained after the race started: both flags
        agent(
            "Lucky GPT",
            noisy(n, 0.0, 11),
            3,
            model="gpt-4.1",
            benchmark_values=hold,
            behaviour=BEHAVIOUR,
        ),
        agent("Three points", [100_000.0, 100_500.0, 100_200.0], 4),
    ]
    agents.sort(key=lambda a: -a.leaderboard.final_equity)
    agents = [
        replace(a, leaderboard=replace(a.leaderboard, rank=i + 1)) for i, a in enumerate(agents)
    ]
    return ReportData(
        race="live",
        start=START,
        end=START + HOUR * (n - 1),
        generated_at=datetime(2024, 4, 1, tzinfo=UTC),
        agents=agents,
        buy_and_hold=curve(hold),
        buy_and_hold_name="Buy & Hold",
    )


class Page(HTMLParser):
    """Figures (their SVG text and JSON block), tables (cell texts and cell HTML) and every
    attribute of every tag."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.text = text
        self.attributes: list[tuple[str, str, str | None]] = []
        self.json: dict[str, Any] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self.flags: dict[str, list[list[str]]] = {}
        self._script: str | None = None
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._cell_flags: list[str] = []
        self._flag = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            self.attributes.append((tag, name, value))
        found = dict(attrs)
        if tag == "script" and found.get("type") == "application/json":
            self._script = found["id"] or ""
            self.json[self._script] = ""
        elif tag == "table":
            self._table = found["id"]
            self.tables[self._table or ""] = []
            self.flags[self._table or ""] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
            self.flags[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []
        elif tag == "span" and "flag" in (found.get("class") or ""):
            self._flag = True
            self._cell_flags = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._script = None
        elif tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._table is not None and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "span" and self._flag:
            self._flag = False
            self.flags[self._table or ""][-1].append("".join(self._cell_flags))

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self.json[self._script] += data
        if self._cell is not None:
            self._cell.append(data)
        if self._flag:
            self._cell_flags.append(data)

    def svg(self, chart: str) -> ET.Element:
        found = re.search(rf'<figure id="chart-{chart}">.*?(<svg\b.*?</svg>)', self.text, re.DOTALL)
        assert found, f"no SVG in the figure of {chart}"
        return ET.fromstring(found.group(1))

    def data(self, chart: str) -> dict[str, Any]:
        return json.loads(self.json[f"data-{chart}"])


def vertices(svg: ET.Element, gid: str) -> list[tuple[float, float]]:
    group = next((g for g in svg.iter(f"{SVG}g") if g.get("id") == gid), None)
    assert group is not None, f"no series {gid} in the SVG"
    path = group.find(f"{SVG}path")
    assert path is not None
    numbers = [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", path.get("d", ""))]
    return list(zip(numbers[0::2], numbers[1::2], strict=True))


def assert_affine(xs: list[float], ys: list[float], tolerance: float) -> None:
    """ys = a + b·xs for every point (b from the two most distant xs)."""
    lo = min(range(len(xs)), key=lambda i: xs[i])
    hi = max(range(len(xs)), key=lambda i: xs[i])
    if xs[hi] == xs[lo]:
        assert max(ys) - min(ys) <= tolerance
        return
    slope = (ys[hi] - ys[lo]) / (xs[hi] - xs[lo])
    for x, y in zip(xs, ys, strict=True):
        assert y == pytest.approx(ys[lo] + slope * (x - xs[lo]), abs=tolerance)


@pytest.fixture(scope="module")
def report() -> ReportData:
    return build()


@pytest.fixture(scope="module")
def page(report: ReportData) -> Page:
    return Page(render_html(report))


def seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


@pytest.mark.parametrize("chart", ["equity", "drawdown"])
def test_each_line_chart_draws_every_agent_curve_from_its_data(report, page, chart):
    data = page.data(chart)
    expected = {a.name: (a.equity if chart == "equity" else a.drawdown) for a in report.agents}
    assert [s["name"] for s in data["series"]] == [a.name for a in report.agents]
    assert [s["benchmark"] for s in data["series"]] == [a.is_benchmark for a in report.agents]
    svg = page.svg(chart)
    all_x, all_v = [], []
    ys_by_value: list[tuple[float, float]] = []
    for index, series in enumerate(data["series"]):
        points = expected[series["name"]]
        assert series["points"] == [[p.time.isoformat(), p.value] for p in points]
        drawn = vertices(svg, f"{chart}-{index}")
        assert len(drawn) == len(points)
        all_x += [x for x, _ in drawn]
        all_v += [seconds(t) for t, _ in series["points"]]
        ys_by_value += [(v, y) for (_, v), (_, y) in zip(series["points"], drawn, strict=True)]
    # one time axis and one value axis for every line: x is affine in time, y in value
    assert_affine(all_v, all_x, tolerance=0.01)
    assert_affine([v for v, _ in ys_by_value], [y for _, y in ys_by_value], tolerance=0.01)
    # larger values are drawn higher (SVG y grows downwards)
    top = min(ys_by_value, key=lambda p: p[1])
    assert top[0] == max(v for v, _ in ys_by_value)


def test_the_interval_chart_draws_each_bootstrap_interval(report, page):
    data = page.data("intervals")
    svg = page.svg("intervals")
    lows, xs = [], []
    for index, (series, a) in enumerate(zip(data["series"], report.agents, strict=True)):
        assert series["name"] == a.name
        assert series["return_pct"] == a.leaderboard.return_pct
        assert series["significant"] == a.leaderboard.significant
        ci = a.leaderboard.significance.total_return_ci
        if ci is None:  # too few points: no interval, nothing drawn
            assert series["low_pct"] is None and series["high_pct"] is None
            assert not any(g.get("id") == f"intervals-{index}" for g in svg.iter(f"{SVG}g"))
            continue
        assert series["low_pct"] == pytest.approx(ci.low * 100)
        assert series["high_pct"] == pytest.approx(ci.high * 100)
        (x0, y0), (x1, y1) = vertices(svg, f"intervals-{index}")
        assert y0 == y1
        lows += [series["low_pct"], series["high_pct"]]
        xs += [x0, x1]
    assert len(xs) >= 4
    assert_affine(lows, xs, tolerance=0.01)


def test_the_file_references_nothing_outside_itself(page):
    for tag, name, value in page.attributes:
        assert tag not in ("link", "img", "iframe", "object", "embed"), tag
        if name in ("src", "href", "xlink:href", "action", "data"):
            assert (value or "").startswith("#"), (tag, name, value)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page.text)
    assert not re.search(r"@import", page.text)
    assert not re.search(r"<script(?![^>]*application/json)", page.text)
    assert "<?xml" not in page.text and "<!DOCTYPE svg" not in page.text


def test_the_leaderboard_table_is_the_leaderboard(report, page):
    header, *rows = page.tables["leaderboard"]
    assert header[:5] == ["#", "Agent", "Model", "Equity (USD)", "Return %"]
    assert len(rows) == len(report.agents)
    for row, a in zip(rows, report.agents, strict=True):
        sig = a.leaderboard.significance
        assert row[0] == str(a.leaderboard.rank)
        assert row[1] == a.name  # escaped in the file, the same text once parsed
        assert row[3] == f"{a.leaderboard.final_equity:,.2f}"
        assert row[4] == f"{a.leaderboard.return_pct:+.2f}"
        ci = sig.total_return_ci
        assert row[5] == ("—" if ci is None else f"[{ci.low * 100:+.2f}, {ci.high * 100:+.2f}]")
        assert row[8] == ("—" if sig.psr is None else f"{sig.psr:.3f}")
        p = sig.p_beat_benchmark
        assert row[9] == ("—" if p is None else f"{p:.2f}")
    assert [r[0] for r in page.tables["behaviour"][1:]] == [a.name for a in report.agents]
    assert [r[0] for r in page.tables["cost"][1:]] == [a.name for a in report.agents]


def test_behaviour_and_cost_tables_show_the_figures(report, page):
    rows = {r[0]: r for r in page.tables["behaviour"][1:]}
    assert rows["Lucky GPT"][1:] == ["50.0", "2.00", "0.250", "75.0", "12.5", "9", "1.12", "48 (3)"]
    assert rows["Buy & Hold"][1:] == ["—"] * 8  # behaviour not computed
    cost = {r[0]: r for r in page.tables["cost"][1:]}
    gpt = next(a for a in report.agents if a.name == "Lucky GPT")
    pnl = gpt.leaderboard.final_equity - 100_000.0
    assert cost["Lucky GPT"][1:3] == ["2.5000", "1,500"]
    assert float(cost["Lucky GPT"][3].replace(",", "")) == pytest.approx(pnl / 2.5, abs=0.01)
    assert float(cost["Lucky GPT"][5].replace(",", "")) == pytest.approx(pnl / 0.0015, abs=0.01)
    assert cost["Buy & Hold"][3:] == ["—"] * 4  # nothing spent: no efficiency


def test_flags_mark_the_not_significant_the_undetermined_and_the_contaminated(report, page):
    by_name = {a.name: a for a in report.agents}
    steady, lucky = by_name["Steady </script><b>x</b>"], by_name["Lucky GPT"]
    assert steady.leaderboard.significant is True
    assert lucky.leaderboard.significant is False
    assert lucky.contamination.possibly_contaminated is True  # gpt-4.1: cut-off June 2024
    assert by_name["Three points"].leaderboard.significant is None
    flags = {
        row[1]: flag
        for row, flag in zip(
            page.tables["leaderboard"][1:], page.flags["leaderboard"][1:], strict=True
        )
    }
    assert flags[steady.name] == []
    assert flags["Lucky GPT"] == [NOT_SIGNIFICANT, CONTAMINATED]
    assert flags["Three points"] == [UNDETERMINED]
    table = {r[0]: r for r in page.tables["flags"][1:]}
    assert table["Lucky GPT"][1] == NOT_SIGNIFICANT
    assert table["Lucky GPT"][3] == CONTAMINATED
    assert table["Lucky GPT"][4] == lucky.contamination.cutoff.isoformat()
    assert table[steady.name][1] == "significant"
    assert table[steady.name][3] == "not applicable"  # no language model
    assert "Possibly contaminated" in page.text and "Lucky GPT." in page.text


def test_names_cannot_break_out_of_the_page(page):
    assert "<b>x</b>" not in page.text
    for block in page.json.values():
        assert "</script" not in block.lower()
        json.loads(block)


def test_no_flag_when_the_race_is_clean():
    clean = agent("Steady", noisy(200, 0.004, 3), 1)
    text = render_html(ReportData("live", START, START + HOUR * 199, START, [clean]))
    parsed = Page(text)
    assert parsed.flags["leaderboard"][1] == []
    assert 'class="flag' not in text
    assert parsed.tables["flags"][1][1] == "significant"
    assert "No buy-and-hold benchmark" in text


def test_long_curves_are_thinned_alike_in_the_data_and_the_picture():
    n = CHART_POINTS * 3 + 7
    report = build(n)
    parsed = Page(render_html(report))
    data = parsed.data("equity")
    svg = parsed.svg("equity")
    for index, series in enumerate(data["series"]):
        a = report.agents[index]
        if len(a.equity) <= CHART_POINTS:
            continue
        assert len(series["points"]) <= CHART_POINTS
        assert series["points"][0] == [a.equity[0].time.isoformat(), a.equity[0].value]
        assert series["points"][-1] == [a.equity[-1].time.isoformat(), a.equity[-1].value]
        assert len(vertices(svg, f"equity-{index}")) == len(series["points"])


def test_png_writes_one_file_per_chart(report, tmp_path):
    written = write_pngs(report, tmp_path / "charts")
    assert [p.name for p in written] == [f"{c}.png" for c in CHARTS]
    for path in written:
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        assert path.stat().st_size > 10_000  # a picture, not an empty canvas
    assert sorted(p.name for p in (tmp_path / "charts").iterdir()) == sorted(
        f"{c}.png" for c in CHARTS
    )


def test_the_same_data_renders_the_same_file(report, tmp_path):
    first = write_html(report, tmp_path / "a.html").read_text(encoding="utf-8")
    second = write_html(report, tmp_path / "b.html").read_text(encoding="utf-8")
    assert first == second
    assert not list(tmp_path.glob(".*.tmp"))


def test_drawdown_is_the_fall_from_the_running_peak():
    points = drawdown(curve([100.0, 120.0, 90.0, 130.0, 117.0]))
    assert [p.value for p in points] == pytest.approx([0.0, 0.0, -25.0, 0.0, -10.0])
    assert [p.time for p in points] == [START + HOUR * i for i in range(5)]
    assert drawdown([]) == []


@pytest.mark.parametrize("n", [1, 2, 10, 11, 12, 100, 1001])
def test_thin_keeps_the_ends_and_stays_within_the_limit(n):
    points = curve([float(i) for i in range(n)])
    kept = thin(points, 10)
    assert len(kept) <= 10
    assert kept[0] == points[0] and kept[-1] == points[-1]
    assert kept == sorted(kept, key=lambda p: p.time)
    if n <= 10:
        assert kept == points
    else:
        assert len(kept) >= math.ceil(10 / 2)
    with pytest.raises(ValueError):
        thin(points, 1)


def test_the_cut_off_the_fixture_relies_on():
    flag = contamination("gpt-4.1", START)
    assert flag.cutoff == date(2024, 6, 30) and flag.possibly_contaminated is True


def test_importing_the_cli_does_not_import_matplotlib():
    import subprocess
    import sys

    code = (
        "import sys; from race.cli import build_parser; build_parser(); "
        "import race.report.render, race.report.data; "
        "sys.exit('matplotlib' in sys.modules)"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_every_id_is_unique_and_every_reference_resolves(page):
    ids = [value for _, name, value in page.attributes if name == "id"]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})[:5]
    references = set(re.findall(r'(?:href="|url\()#([\w-]+)', page.text))
    assert references and references <= set(ids)
