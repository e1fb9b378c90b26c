"""The parameter plateau: every evaluated configuration lands in its (x, y) cell, the best over the other
parameters, and the SVG draws one cell per pair with the chosen one outlined."""

from __future__ import annotations

import math

import numpy as np

from smartmarket.analytics.optimize_report import searched_parameters
from smartmarket.analytics.plateau import heatmap_svg, plateau_grid


def ev(a: int, b: int, c: int, value: float | None) -> dict[str, object]:
    return {"params": {"a": a, "b": b, "c": c}, "value": value}


EVALUATED = [
    ev(1, 10, 0, 0.5), ev(1, 10, 1, 0.9),  # best over c: 0.9
    ev(2, 10, 0, -0.2), ev(2, 10, 1, None),  # undefined values are skipped
    ev(1, 20, 0, 0.1),
    ev(3, 20, 1, float("nan")),  # only undefined: the cell stays empty
]  # fmt: skip


def test_cells_hold_the_best_value_over_other_parameters() -> None:
    grid = plateau_grid(EVALUATED, "a", "b")
    assert grid.xs == [1, 2, 3] and grid.ys == [10, 20]
    expected = np.array([[0.9, -0.2, np.nan], [0.1, np.nan, np.nan]])
    np.testing.assert_array_equal(grid.values, expected)


def test_searched_parameters_are_those_that_vary() -> None:
    assert searched_parameters(EVALUATED) == ["a", "b", "c"]
    fixed_c = [e for e in EVALUATED if e["params"]["c"] == 0]  # type: ignore[index]
    assert searched_parameters(fixed_c) == ["a", "b"]


def test_svg_has_one_cell_per_pair_and_outlines_the_chosen_pair() -> None:
    grid = plateau_grid(EVALUATED, "a", "b")
    svg = heatmap_svg(grid, label="sharpe", chosen={"a": 1, "b": 10, "c": 1})
    assert svg.count('<rect class="cell"') == 6 and svg.count('class="chosen"') == 1
    assert "a=1, b=10: 0.900</title>" in svg and "a=3, b=20: —</title>" in svg
    # the best cell is the greenest, the worst the bluest
    assert 'fill="#15803d"><title>a=1, b=10' in svg and 'fill="#2563eb"><title>a=2, b=10' in svg
    assert heatmap_svg(grid, label="sharpe", chosen={"a": 9, "b": 9}).count('class="chosen"') == 0
    assert math.isnan(grid.values[1, 2])
