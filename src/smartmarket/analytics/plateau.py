"""The parameter plateau of an optimisation: the objective over two parameters, as a heat map.

A robust optimum sits on a plateau (its neighbours score almost as well); a lone bright cell among dark ones
is the signature of a lucky fit. ``plateau_grid`` arranges every evaluated configuration on the grid of two
parameters (the best value over any other parameters, so each cell shows what that pair can reach), and
``heatmap_svg`` draws it as a self-contained SVG (no script, no library), the chosen cell outlined.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

CELL = 26  # px per cell (shrunk for large grids)
MAX_SIDE = 640  # px: the heat map never grows beyond this


@dataclass(frozen=True, slots=True)
class PlateauGrid:
    """``values[i, j]``: the best objective with ``y = ys[i]`` and ``x = xs[j]`` (NaN: never evaluated)."""

    x: str
    y: str
    xs: list[Any]
    ys: list[Any]
    values: np.ndarray


def plateau_grid(evaluated: Sequence[Mapping[str, Any]], x: str, y: str) -> PlateauGrid:
    """Arrange ``evaluated`` (``{"params": {...}, "value": float | None}`` each) on the ``x`` × ``y`` grid."""
    xs = sorted({e["params"][x] for e in evaluated if x in e["params"]})
    ys = sorted({e["params"][y] for e in evaluated if y in e["params"]})
    col, row = {v: j for j, v in enumerate(xs)}, {v: i for i, v in enumerate(ys)}
    values = np.full((len(ys), len(xs)), np.nan)
    for e in evaluated:
        params, value = e["params"], e.get("value")
        if x not in params or y not in params or value is None or not math.isfinite(value):
            continue
        i, j = row[params[y]], col[params[x]]
        if not value <= values[i, j]:  # NaN (empty) or a better value
            values[i, j] = value
    return PlateauGrid(x, y, xs, ys, values)


def _colour(t: float) -> str:
    """Blue (low) → light grey (middle) → green (high) for ``t`` in [0, 1]."""
    low, mid, high = (37, 99, 235), (241, 245, 249), (21, 128, 61)
    a, b, u = (low, mid, t * 2) if t < 0.5 else (mid, high, t * 2 - 1)
    r, g, bl = (round(a[k] + (b[k] - a[k]) * u) for k in range(3))
    return f"#{r:02x}{g:02x}{bl:02x}"


def heatmap_svg(grid: PlateauGrid, *, label: str, chosen: Mapping[str, Any] | None = None) -> str:
    """The grid as an SVG heat map: one cell per pair, its value on hover (``<title>``), ``chosen`` outlined."""
    rows, cols = grid.values.shape
    cell = max(4, min(CELL, MAX_SIDE // max(rows, cols, 1)))
    left, top, bottom = 64, 16, 48
    width, height = left + cols * cell + 16, top + rows * cell + bottom
    finite = grid.values[np.isfinite(grid.values)]
    lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    span = hi - lo or 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{html.escape(label)} over {html.escape(grid.x)} and {html.escape(grid.y)}" '
        'font-family="sans-serif" font-size="10">'
    ]
    for i in range(rows):
        for j in range(cols):
            v = grid.values[i, j]
            px, py = left + j * cell, top + (rows - 1 - i) * cell  # y grows upwards
            fill = _colour((v - lo) / span) if math.isfinite(v) else "#ffffff"
            text = f"{grid.x}={grid.xs[j]}, {grid.y}={grid.ys[i]}: " + (f"{v:.3f}" if math.isfinite(v) else "—")
            parts.append(
                f'<rect class="cell" x="{px}" y="{py}" width="{cell}" height="{cell}" fill="{fill}">'
                f"<title>{html.escape(text)}</title></rect>"
            )
    step_x, step_y = max(1, cols // 10), max(1, rows // 10)
    for j in range(0, cols, step_x):
        parts.append(
            f'<text x="{left + j * cell + cell / 2}" y="{top + rows * cell + 12}" text-anchor="middle">'
            f"{html.escape(str(grid.xs[j]))}</text>"
        )
    for i in range(0, rows, step_y):
        parts.append(
            f'<text x="{left - 4}" y="{top + (rows - 1 - i) * cell + cell / 2 + 3}" text-anchor="end">'
            f"{html.escape(str(grid.ys[i]))}</text>"
        )
    parts.append(
        f'<text x="{left + cols * cell / 2}" y="{height - 12}" text-anchor="middle">{html.escape(grid.x)}</text>'
        f'<text x="12" y="{top + rows * cell / 2}" transform="rotate(-90 12 {top + rows * cell / 2})" '
        f'text-anchor="middle">{html.escape(grid.y)}</text>'
    )
    if chosen is not None and chosen.get(grid.x) in grid.xs and chosen.get(grid.y) in grid.ys:
        j, i = grid.xs.index(chosen[grid.x]), grid.ys.index(chosen[grid.y])
        parts.append(
            f'<rect class="chosen" x="{left + j * cell}" y="{top + (rows - 1 - i) * cell}" width="{cell}" '
            f'height="{cell}" fill="none" stroke="#111827" stroke-width="2"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


__all__ = ["PlateauGrid", "heatmap_svg", "plateau_grid"]
