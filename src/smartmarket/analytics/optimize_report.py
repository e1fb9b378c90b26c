"""One self-contained HTML page per optimisation (``smartmarket optimize --out REPORT.html``).

It shows what the terminal shows — the best parameters with the figures that tell luck from skill (deflated
Sharpe, PBO, walk-forward out of sample beside in sample) — and the parameter plateau: a heat map of the
objective over each pair of searched parameters (``analytics.plateau``). Inline SVG and CSS only: the page opens
offline, weighs kilobytes, and the same study gives byte-identical files.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Mapping
from typing import Any

from smartmarket.analytics.plateau import heatmap_svg, plateau_grid
from smartmarket.core.timeutil import format_ms

MAX_PAIRS = 6  # heat maps for at most this many parameter pairs

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2rem;color:#111827;max-width:1100px}"
    "table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #e5e7eb;padding:4px 8px;text-align:left}"
    "th{background:#f9fafb}.note{color:#6b7280}.warn{color:#b91c1c}figure{margin:1rem 0}"
)


def _num(value: Any, fmt: str = "{:.3f}") -> str:
    return "—" if value is None or (isinstance(value, float) and not math.isfinite(value)) else fmt.format(value)


def _params(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def _table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def searched_parameters(evaluated: list[Mapping[str, Any]]) -> list[str]:
    """Parameters that took more than one value among the evaluated configurations, in their order."""
    names = list(evaluated[0]["params"]) if evaluated else []
    return [n for n in names if len({e["params"].get(n) for e in evaluated}) > 1]


def optimize_report_html(document: Mapping[str, Any]) -> str:
    """The page for ``document`` (``OptimizeReport.to_dict()``)."""
    objective = str(document["objective"])
    best = document["best"]
    wf = document["walk_forward"]
    pbo = document.get("pbo") or {}
    title = (
        f"optimize {document['strategy']} on {document['symbol']} {document['timeframe']} "
        f"({document['method']}, {objective})"
    )
    summary = _table(
        [
            ("best parameters", _params(best["params"])),
            (f"in-sample {objective}", _num(best["in_sample"])),
            (f"walk-forward out-of-sample {objective}", _num(wf.get("out_of_sample"))),
            ("deflated Sharpe ratio", _num(document.get("deflated_sharpe"))),
            ("Sharpe the best of N no-skill tries reaches", _num(document.get("expected_max_sharpe"))),
            ("probability of backtest overfitting (PBO)", _num(pbo.get("pbo"))),
            ("configurations tried", f"{document['n_trials']:,} of {document['n_points']:,}"),
            ("engine", str(document["engine"])),
            (
                "bars",
                f"{document['bars']:,} from {format_ms(document['start_ts'])} to {format_ms(document['end_ts'])}",
            ),
        ]
    )
    evaluated = list(document.get("evaluated") or [])
    names = searched_parameters(evaluated)
    figures = []
    for x, y in list(itertools.combinations(names, 2))[:MAX_PAIRS]:
        svg = heatmap_svg(plateau_grid(evaluated, x, y), label=objective, chosen=best["params"])
        caption = f"{objective} over {x} and {y}" + (" (best over the other parameters)" if len(names) > 2 else "")
        caption = html.escape(caption + "; outlined: the chosen pair")
        figures.append(f"<figure>{svg}<figcaption>{caption}</figcaption></figure>")
    if not figures:
        figures.append('<p class="note">no heat map: fewer than two parameters were searched</p>')
    top_rows = "".join(
        f"<tr><td>{html.escape(_params(t['params']))}</td><td>{_num(t['value'])}</td>"
        f"<td>{_num(t['total_return'], '{:.2%}')}</td><td>{t['trades']}</td>"
        f"<td>{_num(t['max_drawdown'], '{:.2%}')}</td></tr>"
        for t in document.get("top", [])
    )
    top = (
        f"<table><tr><th>parameters</th><th>{html.escape(objective)}</th><th>total return</th><th>trades</th>"
        f"<th>max drawdown</th></tr>{top_rows}</table>"
    )
    notes = "".join(f'<p class="note">{html.escape(str(n))}</p>' for n in document.get("notes", []))
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{summary}"
        "<h2>Parameter plateau</h2><p>A robust choice sits on a plateau of similar values; a lone bright cell "
        f"is more likely luck.</p>{''.join(figures)}<h2>Top configurations (in sample)</h2>{top}{notes}"
        "</body></html>"
    )


__all__ = ["optimize_report_html", "searched_parameters"]
