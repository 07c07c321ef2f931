"""Server-rendered SVG line charts (no JavaScript library): one line per series over a run of days, a gap where
a day has no value, every point with a <title> text alternative, and the chart's own <title>/<desc>.

`plot_points` holds the math (kept apart so it can be tested): x spreads the days evenly across the plot,
y scales each value to the top of the axis (the largest value, or a fixed `y_max` such as 1.0 for rates)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from html import escape

# Okabe-Ito colours (told apart with colour-blindness too), each line also has its own dash pattern
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
DASHES = ("", "6 3", "2 3", "8 3 2 3", "1 2", "10 4", "4 4")

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 12, 28  # room for the y labels on the left, the days below


@dataclass
class Series:
    label: str
    values: Sequence[float | None]  # one per day; None = no figure that day (a gap in the line)


def axis_top(series: Sequence[Series], y_max: float | None = None) -> float:
    """The value at the top of the y axis: `y_max` when given, else the largest value (1 when all are 0)."""
    if y_max is not None:
        return y_max
    found = [v for s in series for v in s.values if v is not None]
    return max(found, default=0) or 1


def plot_points(
    values: Sequence[float | None],
    top: float,
    *,
    width: float = WIDTH - LEFT - RIGHT,
    height: float = HEIGHT - TOP - BOTTOM,
    x0: float = LEFT,
    y0: float = TOP,
) -> list[tuple[float, float] | None]:
    """(x, y) in SVG units for each value (None stays None). The first day is at the left edge, the last at
    the right edge (a single day in the middle); 0 is at the bottom, `top` at the top (clamped to the plot)."""
    n = len(values)
    out: list[tuple[float, float] | None] = []
    for i, v in enumerate(values):
        if v is None:
            out.append(None)
            continue
        x = x0 + (width / 2 if n == 1 else i * width / (n - 1))
        share = min(max(v / top, 0.0), 1.0) if top else 0.0
        out.append((round(x, 1), round(y0 + height - height * share, 1)))
    return out


def _segments(points: list[tuple[float, float] | None]) -> list[list[tuple[float, float]]]:
    runs: list[list[tuple[float, float]]] = [[]]
    for p in points:
        if p is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append(p)
    return [r for r in runs if r]


def line_chart(
    chart_id: str,
    title: str,
    days: Sequence[date],
    series: Sequence[Series],
    fmt: Callable[[float], str],
    *,
    y_max: float | None = None,
) -> str:
    """An SVG line chart of `series` over `days`, labelled with `fmt` (e.g. a percentage or money)."""
    has_data = bool(days) and any(v is not None for s in series for v in s.values)
    legend_rows = (len(series) + 2) // 3 if has_data else 0
    total_h = HEIGHT + 18 * legend_rows
    tid, did = f"{chart_id}-title", f"{chart_id}-desc"
    desc = (
        f"{len(days)} days from {days[0].isoformat()} to {days[-1].isoformat()}; lines: "
        + ", ".join(s.label for s in series)
        if has_data
        else "No figures for this period."
    )
    parts = [
        f'<svg viewBox="0 0 {WIDTH} {total_h}" role="img" aria-labelledby="{tid} {did}" '
        f'xmlns="http://www.w3.org/2000/svg" id="{escape(chart_id)}">',
        f'<title id="{tid}">{escape(title)}</title><desc id="{did}">{escape(desc)}</desc>',
    ]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    if not has_data:
        parts.append(
            f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#e3e6eb"/>'
            f'<text x="{LEFT + plot_w / 2:.0f}" y="{TOP + plot_h / 2:.0f}" text-anchor="middle" font-size="13" '
            'fill="#5b6473">No figures for this period</text></svg>'
        )
        return "".join(parts)
    top = axis_top(series, y_max)
    for frac in (0, 0.25, 0.5, 0.75, 1):  # grid lines and y labels
        y = TOP + plot_h - plot_h * frac
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e6eb"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#5b6473">'
            f"{escape(fmt(top * frac))}</text>"
        )
    label_days = sorted({0, len(days) - 1, (len(days) - 1) // 2})
    n = len(days)
    for i in label_days:  # first, middle and last day under the axis
        x = LEFT + (plot_w / 2 if n == 1 else i * plot_w / (n - 1))
        anchor = "middle" if n == 1 or 0 < i < n - 1 else ("start" if i == 0 else "end")
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}" font-size="11" fill="#5b6473">'
            f"{days[i].isoformat()}</text>"
        )
    for k, s in enumerate(series):
        colour, dash = COLOURS[k % len(COLOURS)], DASHES[k % len(DASHES)]
        points = plot_points(s.values, top)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<g class="series" data-label="{escape(s.label)}">')
        for run in _segments(points):
            coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
            parts.append(
                f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"{dash_attr}/>'
            )
        for day, v, p in zip(days, s.values, points, strict=True):
            if p is not None and v is not None:
                parts.append(
                    f'<circle cx="{p[0]:.1f}" cy="{p[1]:.1f}" r="3" fill="{colour}">'
                    f"<title>{escape(s.label)}, {day.isoformat()}: {escape(fmt(v))}</title></circle>"
                )
        parts.append("</g>")
        lx, ly = LEFT + (k % 3) * 190, HEIGHT + 8 + (k // 3) * 18
        parts.append(
            f'<line x1="{lx}" x2="{lx + 24}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="3"{dash_attr}/>'
            f'<text x="{lx + 30}" y="{ly + 4}" font-size="12">{escape(s.label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def percent(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.1f}%"
