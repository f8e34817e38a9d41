"""The forecast chart: the last two years of history, the forecast and its
interval, as a standalone SVG (pygal), with a title and alt text."""

from __future__ import annotations

import pygal
from pygal.style import Style

from .model import Forecast

HISTORY_SHOWN = 24

_STYLE = Style(
    background="white",
    plot_background="white",
    colors=("#1f77b4", "#d62728", "#ff9896", "#ff9896"),
)


def money(value: float) -> str:
    if abs(value) >= 1e6:
        return f"${value / 1e6:.2f}M"
    if abs(value) >= 1e3:
        return f"${value / 1e3:.1f}K"
    return f"${value:.0f}"


def alt_text(f: Forecast) -> str:
    first, last = f.points[0], f.points[-1]
    return (
        f"Monthly revenue from {f.history[-min(len(f.history), HISTORY_SHOWN)][0]} to "
        f"{f.history[-1][0]}, then the forecast for {first.month} to {last.month}: "
        f"{money(f.total.revenue)} in all ({round(f.level * 100)}% interval "
        f"{money(f.total.lower)} to {money(f.total.upper)})."
    )


def render(f: Forecast) -> bytes:
    history = f.history[-HISTORY_SHOWN:]
    n, h = len(history), len(f.points)
    chart = pygal.Line(
        style=_STYLE,
        js=[],
        disable_xml_declaration=True,
        width=900,
        height=450,
        x_label_rotation=45,
        show_minor_x_labels=False,
        value_formatter=money,
        legend_at_bottom=True,
        title=f"Revenue forecast, {f.points[0].month} to {f.points[-1].month}",
        y_title="Revenue (USD)",
        x_title="Month",
    )
    chart.x_labels = [m for m, _ in history] + [p.month for p in f.points]
    chart.x_labels_major = chart.x_labels[:: max(1, (n + h) // 8)]
    last = history[-1][1]
    chart.add("Revenue", [v for _, v in history] + [None] * h)
    chart.add("Forecast", [None] * (n - 1) + [last] + [p.revenue for p in f.points])
    pct = round(f.level * 100)
    chart.add(f"{pct}% interval, low", [None] * n + [p.lower for p in f.points], stroke_style={"dasharray": "4, 4"})
    chart.add(f"{pct}% interval, high", [None] * n + [p.upper for p in f.points], stroke_style={"dasharray": "4, 4"})
    return chart.render(is_unicode=True).encode("utf-8")
