"""The SVG line chart's math and markup (no database): points scale to the data, gaps stay gaps, empty data
is said in words, every point has a text alternative."""

from __future__ import annotations

import re
from datetime import date, timedelta

from arrears_console.web.charts import (
    BOTTOM,
    HEIGHT,
    LEFT,
    RIGHT,
    TOP,
    WIDTH,
    Series,
    axis_top,
    line_chart,
    percent,
    plot_points,
)

PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
DAYS = [date(2026, 3, 1) + timedelta(days=i) for i in range(5)]


def test_points_scale_to_the_largest_value_and_spread_over_the_days() -> None:
    pts = plot_points([0, 50, 100, None, 25], axis_top([Series("a", [0, 50, 100, None, 25])]))
    assert pts[0] == (LEFT, TOP + PLOT_H)  # first day, zero: bottom-left corner
    assert pts[2] == (LEFT + PLOT_W / 2, TOP)  # the largest value touches the top
    assert pts[1] == (LEFT + PLOT_W / 4, TOP + PLOT_H / 2)
    assert pts[3] is None  # no figure that day
    assert pts[4] == (LEFT + PLOT_W, TOP + PLOT_H * 3 / 4)  # last day at the right edge


def test_fixed_axis_clamps_and_degenerate_inputs() -> None:
    assert plot_points([0.5, 2.0, -1.0], 1.0) == [
        (LEFT, TOP + PLOT_H / 2),
        (LEFT + PLOT_W / 2, TOP),  # above the axis: clamped to the top
        (LEFT + PLOT_W, TOP + PLOT_H),  # below zero: clamped to the bottom
    ]
    assert plot_points([7.0], 7.0) == [(LEFT + PLOT_W / 2, TOP)]  # one day: in the middle
    assert plot_points([], 1.0) == []
    assert axis_top([Series("a", [0, 0, None])]) == 1  # all zero: no division by zero
    assert axis_top([Series("a", [])]) == 1
    assert axis_top([Series("a", [3, 9]), Series("b", [12])]) == 12
    assert axis_top([Series("a", [3])], y_max=1.0) == 1.0


def test_chart_markup_has_lines_gaps_and_text_alternatives() -> None:
    svg = line_chart(
        "t",
        "Collection rate <daily>",
        DAYS,
        [Series("overall", [0.25, 0.5, None, 1.0, 0.75])],
        percent,
        y_max=1.0,
    )
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert 'role="img"' in svg and '<title id="t-title">Collection rate &lt;daily&gt;</title>' in svg
    assert "5 days from 2026-03-01 to 2026-03-05" in svg
    lines = re.findall(r'<polyline points="([^"]+)"', svg)
    assert len(lines) == 2  # broken at the missing day
    assert lines[0] == f"{LEFT:.1f},{TOP + PLOT_H * 0.75:.1f} {LEFT + PLOT_W / 4:.1f},{TOP + PLOT_H / 2:.1f}"
    titles = re.findall(r"<circle[^>]*><title>([^<]+)</title>", svg)
    assert titles == [
        "overall, 2026-03-01: 25.0%",
        "overall, 2026-03-02: 50.0%",
        "overall, 2026-03-04: 100.0%",
        "overall, 2026-03-05: 75.0%",
    ]
    assert ">100.0%</text>" in svg and ">0.0%</text>" in svg  # the y axis labels, top and bottom


def test_empty_data_is_said_in_words() -> None:
    for days, series in (([], []), (DAYS, [Series("a", [None] * 5)]), (DAYS, [])):
        svg = line_chart("e", "Nothing", days, series, percent)
        assert "No figures for this period" in svg and "<polyline" not in svg and "<circle" not in svg
