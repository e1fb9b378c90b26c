"""Probability of backtest overfitting by combinatorially symmetric cross-validation (Bailey, Borwein,
López de Prado and Zhu, 2015, "The probability of backtest overfitting").

The bar returns of ``N`` configurations (trials) are cut into ``S`` consecutive blocks of equal length (``S``
even). For every way of choosing ``S/2`` blocks as the in-sample set (the other half is out-of-sample):

1. the configuration with the best in-sample Sharpe ratio is selected;
2. its out-of-sample Sharpe is ranked among all ``N`` out-of-sample Sharpes: relative rank
   ``ω = rank / (N + 1)`` (average rank for ties, undefined Sharpes lowest), logit ``λ = ln(ω / (1 - ω))``.

PBO is the share of splits with ``λ ≤ 0``: how often the in-sample winner is no better than the median
configuration out of sample. Skill gives PBO near 0; pure selection luck gives PBO near 0.5 or above.

Sharpe ratios are per bar (mean / std ddof=1). A block is summarised by (count, sum, sum of squares) of its
returns, which is all a Sharpe over any union of blocks needs: :func:`pbo_from_blocks` works on those
sums (what the compiled sweep keeps), :func:`probability_of_backtest_overfitting` on a return matrix.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from smartmarket.core.errors import ValidationError


@dataclass(frozen=True, slots=True)
class PBOResult:
    """PBO and the distribution behind it (one logit per split)."""

    pbo: float
    logits: np.ndarray  # λ of every split
    n_splits: int
    n_trials: int
    n_blocks: int
    prob_oos_loss: float  # share of splits where the selected configuration lost money out of sample
    is_sharpe: np.ndarray  # per-bar in-sample Sharpe of the selected configuration, per split
    oos_sharpe: np.ndarray  # its out-of-sample Sharpe, per split

    @property
    def degradation_slope(self) -> float | None:
        """Least-squares slope of out-of-sample on in-sample Sharpe across splits (negative: overfit)."""
        x, y = self.is_sharpe, self.oos_sharpe
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.sum() < 2 or float(np.var(x[ok])) <= 0:
            return None
        return float(np.polyfit(x[ok], y[ok], 1)[0])

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "pbo": self.pbo,
            "n_splits": self.n_splits,
            "n_trials": self.n_trials,
            "n_blocks": self.n_blocks,
            "prob_oos_loss": self.prob_oos_loss,
            "median_logit": float(np.median(self.logits)) if len(self.logits) else None,
            "degradation_slope": self.degradation_slope,
        }


def block_sums(returns: np.ndarray, n_blocks: int) -> np.ndarray:
    """``(N, S, 3)`` count, sum and sum of squares of the returns ``(T, N)`` in ``S`` equal consecutive blocks
    (block of row ``j``: ``j * S // T``, the sweep's rule)."""
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 2:
        raise ValidationError(f"returns must be a (bars, trials) matrix, got shape {r.shape}")
    t = r.shape[0]
    which = np.arange(t) * n_blocks // max(t, 1)
    out = np.zeros((r.shape[1], n_blocks, 3))
    for b in range(n_blocks):
        part = r[which == b]
        out[:, b, 0] = len(part)
        out[:, b, 1] = part.sum(axis=0)
        out[:, b, 2] = (part * part).sum(axis=0)
    return out


def _sharpe(n: np.ndarray, total: np.ndarray, sumsq: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = total / n
        var = (sumsq - n * mean * mean) / (n - 1.0)
        out = mean / np.sqrt(var)
    return np.where((n >= 2) & (var > 0), out, -np.inf)


def pbo_from_blocks(blocks: np.ndarray, *, max_splits: int = 20_000) -> PBOResult:
    """PBO from per-trial block sums ``(N, S, ≥3)``: count, sum, sum of squares of each block's returns.

    Every one of the ``C(S, S/2)`` splits is used (``S = 16`` gives 12,870); ``ValidationError`` if that
    exceeds ``max_splits``, if ``S`` is odd or below 2, or with fewer than 2 trials.
    """
    b = np.asarray(blocks, dtype=np.float64)
    if b.ndim != 3 or b.shape[2] < 3:
        raise ValidationError(f"blocks must have shape (trials, blocks, 3+), got {b.shape}")
    n_trials, n_blocks = b.shape[0], b.shape[1]
    if n_trials < 2:
        raise ValidationError(f"PBO needs at least 2 trials, got {n_trials}", hint="try more parameter sets")
    if n_blocks < 2 or n_blocks % 2:
        raise ValidationError(f"PBO needs an even number of blocks >= 2, got {n_blocks}")
    n_splits = math.comb(n_blocks, n_blocks // 2)
    if n_splits > max_splits:
        raise ValidationError(f"{n_blocks} blocks make {n_splits} splits (limit {max_splits})", hint="use fewer")
    sums = b[:, :, :3].transpose(1, 0, 2).reshape(n_blocks, n_trials * 3)  # (S, N*3)
    total = sums.sum(axis=0)
    combos = np.array(list(itertools.combinations(range(n_blocks), n_blocks // 2)), dtype=np.int64)
    logits = np.empty(len(combos))
    is_best = np.empty(len(combos))
    oos_best = np.empty(len(combos))
    oos_loss = 0
    chunk = max(1, 2_000_000 // max(1, n_trials * 3))
    for first in range(0, len(combos), chunk):
        part = combos[first : first + chunk]
        mask = np.zeros((len(part), n_blocks))
        np.put_along_axis(mask, part, 1.0, axis=1)
        ins = (mask @ sums).reshape(len(part), n_trials, 3)
        oos = total.reshape(1, n_trials, 3) - ins
        is_sr = _sharpe(ins[..., 0], ins[..., 1], ins[..., 2])
        oos_sr = _sharpe(oos[..., 0], oos[..., 1], oos[..., 2])
        best = np.argmax(is_sr, axis=1)  # first of equals
        rows = np.arange(len(part))
        chosen = oos_sr[rows, best]
        below = (oos_sr < chosen[:, None]).sum(axis=1)
        equal = (oos_sr == chosen[:, None]).sum(axis=1)
        rank = below + (equal + 1) / 2.0  # average rank, 1 = worst
        omega = rank / (n_trials + 1.0)
        logits[first : first + len(part)] = np.log(omega / (1.0 - omega))
        is_best[first : first + len(part)] = is_sr[rows, best]
        oos_best[first : first + len(part)] = chosen
        oos_loss += int((oos[rows, best, 1] < 0).sum())
    return PBOResult(
        pbo=float(np.mean(logits <= 0.0)),
        logits=logits,
        n_splits=len(combos),
        n_trials=n_trials,
        n_blocks=n_blocks,
        prob_oos_loss=oos_loss / len(combos),
        is_sharpe=np.where(np.isfinite(is_best), is_best, np.nan),
        oos_sharpe=np.where(np.isfinite(oos_best), oos_best, np.nan),
    )


def probability_of_backtest_overfitting(returns: np.ndarray, n_blocks: int = 16) -> PBOResult:
    """PBO of the trials whose per-bar returns are the columns of ``returns`` ``(T, N)``."""
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] < 2 * n_blocks:
        raise ValidationError(
            f"PBO needs a (bars, trials) matrix with at least {2 * n_blocks} bars, got shape {r.shape}"
        )
    return pbo_from_blocks(block_sums(r, n_blocks))


__all__ = ["PBOResult", "block_sums", "pbo_from_blocks", "probability_of_backtest_overfitting"]
