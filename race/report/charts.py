"""The report's charts, drawn with matplotlib (imported here only, on first use, so no
other command pays for it).

Each chart is a :class:`Chart`: its name, the data it draws (a JSON-ready dict, embedded in
the HTML next to it so a reader or a test can check the picture against the numbers), and
a function that saves it as SVG or PNG. Every drawn series gets an SVG group id
(``<chart>-<index>``, the index of the series in the data) so its path can be found.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from race.domain.timeutil import iso
from race.report.model import Point, ReportData
from race.report.series import thin

CHART_POINTS = 1500
"""At most this many points per drawn curve (the first and last always kept)."""
WIDTH, HEIGHT = 11.0, 5.0
BENCHMARK_COLOUR = "#222222"
_RC = {
    "svg.fonttype": "none",  # text stays text: smaller, selectable
    "svg.hashsalt": "race-report",  # stable ids: the same data gives the same file
    "path.simplify": False,  # every point of the data is a vertex of its path
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_PROLOGUE = re.compile(r"^.*?(?=<svg\b)", re.DOTALL)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)
_ID = re.compile(r' id="([^"]+)"')


@dataclass(frozen=True)
class Chart:
    name: str
    title: str
    data: dict[str, Any]
    draw: Callable[[Any], None]
    """Draws on a matplotlib ``Figure``."""

    def figure(self) -> Any:
        from matplotlib.figure import Figure

        figure = Figure(figsize=(WIDTH, HEIGHT), layout="constrained")
        self.draw(figure)
        return figure

    def svg(self) -> str:
        """The chart as an ``<svg>`` element to inline in HTML (no XML prologue, no
        metadata, no external reference)."""
        import matplotlib

        with matplotlib.rc_context(_RC):
            buffer = io.StringIO()
            self.figure().savefig(buffer, format="svg", metadata={"Date": None})
        text = _METADATA.sub("", _PROLOGUE.sub("", buffer.getvalue(), count=1))
        return self._unique_ids(text).strip()

    def _unique_ids(self, text: str) -> str:
        """matplotlib numbers its groups (``axes_1``…) and names markers and clip paths by a
        hash of their shape: two charts of one page would share ids. Prefixed by the chart's
        name (the series' own ``<chart>-<index>`` excepted), ids are unique in the page."""
        ids = {i for i in _ID.findall(text) if not i.startswith(f"{self.name}-")}
        if not ids:
            return text
        names = "|".join(re.escape(i) for i in sorted(ids, key=len, reverse=True))
        pattern = re.compile(rf'(id="|#)({names})(?=[")])')
        return pattern.sub(rf"\1{self.name}-\2", text)

    def png(self, dpi: int = 120) -> bytes:
        import matplotlib

        with matplotlib.rc_context(_RC):
            buffer = io.BytesIO()
            self.figure().savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
        return buffer.getvalue()


def _series(points: Sequence[Point]) -> list[list[Any]]:
    return [[iso(p.time), p.value] for p in thin(points, CHART_POINTS)]


def _time_axis(axes: Any, period: str) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(tz=UTC, minticks=4, maxticks=9)
    axes.xaxis.set_major_locator(locator)
    # Every tick says its day and month (the year where it changes or on the first tick of
    # a yearly axis): no offset label, which shows the year of the last tick only.
    axes.xaxis.set_major_formatter(
        mdates.ConciseDateFormatter(
            locator,
            tz=UTC,
            formats=["%Y", "%b %Y", "%d %b", "%H:%M", "%H:%M", "%S.%f"],
            zero_formats=["", "%b %Y", "%d %b", "%d %b", "%H:%M", "%H:%M"],
            show_offset=False,
        )
    )
    axes.set_xlabel(f"time (UTC), {period}")
    axes.grid(True, color="#dddddd", linewidth=0.6)


def _legend(axes: Any) -> None:
    """Outside the plot, on the right: never over a line."""
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)


def _lines(
    figure: Any, chart: str, data: dict[str, Any], ylabel: str, yfmt: Callable[[float, Any], str]
) -> None:
    from datetime import datetime

    from matplotlib.ticker import FuncFormatter

    axes = figure.subplots()
    for index, series in enumerate(data["series"]):
        times = [datetime.fromisoformat(t) for t, _ in series["points"]]
        values = [v for _, v in series["points"]]
        benchmark = series["benchmark"]
        (line,) = axes.plot(
            times,
            values,
            label=series["label"],
            linewidth=1.8 if benchmark else 1.3,
            linestyle="--" if benchmark else "-",
            color=BENCHMARK_COLOUR if benchmark else f"C{index % 10}",
            zorder=3 if benchmark else 2,
        )
        line.set_gid(f"{chart}-{index}")
    axes.set_title(data["title"], loc="left", fontsize=12)
    axes.set_ylabel(ylabel)
    axes.yaxis.set_major_formatter(FuncFormatter(yfmt))
    _time_axis(axes, data["period"])
    if data["series"]:
        _legend(axes)


def period(report: ReportData) -> str:
    """The race's period, as the charts' time axis states it (its ticks omit the year)."""
    if report.start is None or report.end is None:
        return "no snapshot yet"
    return f"{report.start:%Y-%m-%d %H:%M} → {report.end:%Y-%m-%d %H:%M}"


def _label(name: str, benchmark: bool) -> str:
    return f"{name} (benchmark)" if benchmark else name


def equity_chart(report: ReportData) -> Chart:
    """Every agent's equity curve on one chart, with the buy-and-hold benchmark dashed."""
    series = [
        {
            "name": a.name,
            "label": _label(a.name, a.is_benchmark),
            "benchmark": a.is_benchmark,
            "points": _series(a.equity),
        }
        for a in report.agents
    ]
    if report.buy_and_hold and not any(a.is_benchmark for a in report.agents):
        name = report.buy_and_hold_name or "buy-and-hold"
        series.append(
            {
                "name": name,
                "label": _label(name, True),
                "benchmark": True,
                "points": _series(report.buy_and_hold),
            }
        )
    data = {"title": "Equity (USD)", "unit": "USD", "period": period(report), "series": series}

    def draw(figure: Any) -> None:
        _lines(figure, "equity", data, "equity (USD)", lambda v, _: f"{v:,.0f}")

    return Chart("equity", "Equity curves", data, draw)


def drawdown_chart(report: ReportData) -> Chart:
    """Every agent's drawdown from its running peak, in percent."""
    data = {
        "title": "Drawdown from the running peak (%)",
        "unit": "percent",
        "period": period(report),
        "series": [
            {
                "name": a.name,
                "label": _label(a.name, a.is_benchmark),
                "benchmark": a.is_benchmark,
                "points": _series(a.drawdown),
            }
            for a in report.agents
        ],
    }

    def draw(figure: Any) -> None:
        _lines(figure, "drawdown", data, "drawdown (%)", lambda v, _: f"{v:.0f} %")

    return Chart("drawdown", "Drawdowns", data, draw)


def _pct(value: float | None) -> float | None:
    return None if value is None else value * 100.0


def _interval_series(report: ReportData) -> list[dict[str, Any]]:
    """One row per agent: its total return and 95 % interval (%), and whether significant."""
    series = []
    for a in report.agents:
        sig = a.leaderboard.significance
        ci = sig.total_return_ci
        series.append(
            {
                "name": a.name,
                "benchmark": a.is_benchmark,
                "return_pct": a.leaderboard.return_pct,
                "low_pct": None if ci is None else _pct(ci.low),
                "high_pct": None if ci is None else _pct(ci.high),
                "significant": a.leaderboard.significant,
            }
        )
    return series


def _interval_legend(with_benchmark: bool) -> list[Any]:
    """The intervals chart's legend entries (the buy-and-hold line only when drawn)."""
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color="#555555", linewidth=2.5, label="95 % interval"),
        Line2D([], [], marker="o", color="#555555", linestyle="none", label="significant"),
        Line2D(
            [],
            [],
            marker="o",
            color="#555555",
            markerfacecolor="white",
            linestyle="none",
            label="not significant",
        ),
    ]
    if with_benchmark:
        handles.append(Line2D([], [], color=BENCHMARK_COLOUR, linestyle="--", label="buy-and-hold"))
    return handles


def intervals_chart(report: ReportData) -> Chart:
    """Each agent's total return with its 95 % bootstrap interval (hollow marker: not
    significant), rank 1 at the top."""
    series = _interval_series(report)
    benchmark = next((a for a in report.agents if a.is_benchmark), None)
    data = {
        "title": "Total return with its 95 % bootstrap interval (%)",
        "unit": "percent",
        "benchmark_return_pct": None if benchmark is None else benchmark.leaderboard.return_pct,
        "series": series,
    }

    def draw(figure: Any) -> None:
        axes = figure.subplots()
        count = len(series)
        for index, row in enumerate(series):
            y = count - 1 - index
            colour = BENCHMARK_COLOUR if row["benchmark"] else f"C{index % 10}"
            if row["low_pct"] is not None:
                (bar,) = axes.plot(
                    [row["low_pct"], row["high_pct"]], [y, y], color=colour, linewidth=2.5
                )
                bar.set_gid(f"intervals-{index}")
            axes.plot(
                [row["return_pct"]],
                [y],
                marker="o",
                markersize=8,
                color=colour,
                markerfacecolor=colour if row["significant"] else "white",
                markeredgewidth=1.8,
                linestyle="none",
            )
        axes.axvline(0.0, color="#888888", linewidth=0.8)
        if data["benchmark_return_pct"] is not None:
            axes.axvline(
                data["benchmark_return_pct"], color=BENCHMARK_COLOUR, linestyle="--", linewidth=1
            )
        axes.set_yticks(range(count), [r["name"] for r in reversed(series)])
        axes.set_ylim(-0.7, max(count - 0.3, 0.7))
        axes.set_xlabel("total return (%)")
        axes.grid(True, axis="x", color="#dddddd", linewidth=0.6)
        axes.set_title(data["title"], loc="left", fontsize=12)
        handles = _interval_legend(data["benchmark_return_pct"] is not None)
        axes.legend(
            handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9
        )

    return Chart("intervals", "Returns with intervals", data, draw)


def charts(report: ReportData) -> list[Chart]:
    """The report's charts, in the order the HTML shows them."""
    return [equity_chart(report), drawdown_chart(report), intervals_chart(report)]
