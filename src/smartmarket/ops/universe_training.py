"""Universe training, the use case behind ``train --symbols S1,S2,…`` / ``train --universe all``.

Reads each symbol's stored candles, computes its causal features (the declared feature set, over its whole
stored history up to ``end``, as the one-symbol ``train`` does), keeps the scale-free model inputs, optionally
adds the cross-sectional ranks (``features.cross_section``), pools every symbol's windows into one model
(``models.universe``: split, purged and embargoed by timestamp) and returns it for the registry. The CLI only
parses options and prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from smartmarket.core.errors import ConfigError, NotFoundError
from smartmarket.core.types import Timeframe, normalize_symbol
from smartmarket.ops.signals import Progress, stage

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from smartmarket.models.pipeline import TrainedModel
    from smartmarket.models.training import ProgressCallback
    from smartmarket.signals.fit import EnsembleArtifact
    from smartmarket.store.base import CandleStore

UNIVERSE_NAME = "UNIVERSE"
"""The registry ``symbol`` of a pooled model (its id reads ``<kind>-UNIVERSE-<tf>-…``; ``symbols`` lists them)."""


def parse_symbols(text: str) -> tuple[str, ...]:
    """``"btcusdt, ETH/USDT"`` → ``("BTCUSDT", "ETHUSDT")``, duplicates dropped, order kept."""
    symbols = [normalize_symbol(part) for part in text.split(",") if part.strip()]
    return tuple(dict.fromkeys(symbols))


def resolve_universe(
    store: CandleStore, timeframe: Timeframe | str, *, symbols: Sequence[str] | None = None, universe: str | None = None
) -> tuple[str, ...]:
    """The symbols to pool: the given ones (each must be stored for ``timeframe``) or, with ``universe="all"``,
    every symbol stored for it. Fewer than two is refused: one symbol is not a universe."""
    tf = Timeframe.parse(timeframe)
    stored = {info.symbol: info for info in store.list_series() if info.timeframe == tf}
    if (symbols is None) == (universe is None):
        raise ConfigError("give either --symbols S1,S2,… or --universe all")
    if universe is not None:
        if universe.strip().lower() != "all":
            raise ConfigError(f"unknown universe {universe!r}", hint="use --universe all or --symbols S1,S2,…")
        chosen = tuple(sorted(stored))
        if not chosen:
            raise NotFoundError(f"no symbol has {tf} candles stored", where=store.url, hint="ingest some first")
    else:
        chosen = tuple(dict.fromkeys(normalize_symbol(s) for s in symbols or ()))
        for symbol in chosen:
            if symbol not in stored:
                other = sorted(str(i.timeframe) for i in store.list_series() if i.symbol == symbol)
                if other:
                    raise ConfigError(
                        f"{symbol} has no {tf} candles stored (it has {', '.join(other)})", where=store.url,
                        hint=f"use one of those timeframes or ingest {symbol} {tf}",
                    )  # fmt: skip
                raise NotFoundError(
                    f"unknown symbol {symbol}: nothing stored for it", where=store.url,
                    hint=f"stored for {tf}: {', '.join(sorted(stored)) or 'none'}",
                )  # fmt: skip
    if len(chosen) < 2:
        raise ConfigError(
            f"a universe needs at least two symbols, got {', '.join(chosen) or 'none'}",
            hint="train one symbol with --symbol" + ("" if universe is None else f"; ingest more {tf} symbols"),
        )  # fmt: skip
    return chosen


def load_universe(
    store: CandleStore,
    symbols: Sequence[str],
    timeframe: Timeframe | str,
    feature_set: str = "default",
    *,
    start: int | None = None,
    end: int | None = None,
    cross_section: int | None = None,
) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """``{symbol: (model inputs, candles)}`` with ``start ≤ ts < end``; features over each full stored history.

    ``cross_section`` = a window in bars adds ``xs_ret_rank_<n>`` and ``xs_vol_rank_<n>`` (ranks within these
    symbols at the same timestamp; see ``features.cross_section``)."""
    import numpy as np

    from smartmarket.features.cross_section import cross_section_ranks
    from smartmarket.features.pipeline import FeaturePipeline
    from smartmarket.features.scale_free import model_inputs

    tf = Timeframe.parse(timeframe)
    candles: dict[str, pd.DataFrame] = {}
    features: dict[str, pd.DataFrame] = {}
    for symbol in symbols:
        frame = store.read_candles(symbol, tf, None, end)
        if frame.empty:
            raise NotFoundError(f"no {symbol} {tf} candles stored", where=store.url, hint="ingest some first")
        candles[symbol] = frame.reset_index(drop=True)
        features[symbol] = model_inputs(FeaturePipeline(feature_set, tf).batch(candles[symbol]))
    if cross_section is not None:
        ranks = cross_section_ranks(candles, cross_section)
        for symbol in symbols:
            features[symbol] = features[symbol].join(ranks[symbol].drop(columns="ts"))
    out: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}
    for symbol in symbols:
        keep = np.ones(len(candles[symbol]), dtype=bool)
        if start is not None:
            keep &= candles[symbol]["ts"].to_numpy() >= start
        rows = np.flatnonzero(keep)
        if rows.size == 0:
            raise NotFoundError(f"no {symbol} {tf} candles in that range", where=store.url)
        out[symbol] = (
            features[symbol].iloc[rows].reset_index(drop=True),
            candles[symbol].iloc[rows].reset_index(drop=True),
        )
    return out


def train_universe(
    store: CandleStore,
    symbols: Sequence[str],
    timeframe: Timeframe | str,
    kind: str,
    *,
    feature_set: str = "default",
    start: int | None = None,
    end: int | None = None,
    cross_section: int | None = None,
    preset: str = "small",
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    batch_size: int = 64,
    horizon: int = 24,
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> TrainedModel:
    """One model pooled over ``symbols`` (a 70/15/15 split of the shared timeline, purged by timestamp)."""
    from smartmarket.models.labels import LabelConfig
    from smartmarket.models.training import TrainConfig
    from smartmarket.models.universe import pool, train_pooled

    tf = Timeframe.parse(timeframe)
    labels = LabelConfig(horizon=horizon)
    config = TrainConfig(batch_size=batch_size, steps_per_epoch=steps_per_epoch, seed=seed)
    if epochs is not None:
        config = replace(config, epochs=epochs)
    markets = load_universe(store, symbols, tf, feature_set, start=start, end=end, cross_section=cross_section)
    data = pool(markets, labels)
    options: dict[str, Any] = {"preset": preset, "train_config": config, "seed": seed, "progress": progress}
    model = train_pooled(
        kind, data, timeframe=tf.value, feature_set=feature_set, label_config=labels, name=UNIVERSE_NAME, **options
    )
    model.data["cross_section_window"] = cross_section
    return model


def fit_universe_signals(
    store: CandleStore,
    symbols: Sequence[str],
    timeframe: Timeframe | str,
    members: Sequence[str],
    registry_dir: Path,
    *,
    start: int | None = None,
    end: int | None = None,
    progress: Progress | None = None,
) -> EnsembleArtifact:
    """Fit and save one ensemble artifact over ``symbols`` (``fit-signals --symbols``). Model members resolve
    to the pooled models (registry symbol ``UNIVERSE``) of this timeframe: train them first with
    ``train --symbols``. ``progress(name, done, total)``: the fit, as one task of total 1."""
    from smartmarket.signals.fit import fit_universe_artifact, save_artifact
    from smartmarket.signals.members import make_member

    tf = Timeframe.parse(timeframe)
    built = [make_member(m, registry_dir=registry_dir, symbol=UNIVERSE_NAME, timeframe=str(tf)) for m in members]
    frames = {}
    for symbol in symbols:
        frame = store.read_candles(symbol, tf, start, end)
        if frame.empty:
            raise NotFoundError(f"no {symbol} {tf} candles in the requested range", where=store.url)
        frames[symbol] = frame.reset_index(drop=True)
    with stage(progress, f"fit the ensemble ({', '.join(members)}) on {len(frames)} symbols' {tf} candles"):
        artifact = fit_universe_artifact(frames, built, timeframe=str(tf), name=UNIVERSE_NAME)
    save_artifact(artifact, registry_dir)
    return artifact


__all__ = [
    "UNIVERSE_NAME",
    "fit_universe_signals",
    "load_universe",
    "parse_symbols",
    "resolve_universe",
    "train_universe",
]
