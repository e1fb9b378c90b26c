"""Volatility forecasting: the realised-variance target over the label horizon and forecasters of its log.

Target at bar ``t`` (closed candles only): the forward realised variance over the next ``H`` bars,

    RV_fwd[t] = sum_{k=1..H} r[t+k]^2,   r[i] = log(close[i] / close[i-1]),

so it uses the closes ``t .. t+H`` and nothing else (``r[t+1]`` starts from ``close[t]``, known at ``t``). It is
undefined (NaN) for the last ``H`` bars and where it is zero (no price change over the whole horizon: its log and
QLIKE are undefined). Every forecaster sees bars ``≤ t`` only and predicts ``log σ̂²``, the log of a forecast of
``RV_fwd[t]`` (a forecast of its *mean*: models fitted on the log of RV add the smearing term
``log mean exp(residual)`` of Duan (1983), so that ``exp`` of the forecast is unbiased for the variance itself).

Forecasters (one interface: ``fit(data, train, validation)`` on bar indices, ``predict(data, rows)``):

* ``constant`` — the unconditional mean of ``RV_fwd`` over the training bars (the no-skill baseline);
* ``ewma`` — RiskMetrics: ``H × σ²_EWMA`` with ``execution.sizing.ewma_volatility`` (λ = 0.94 over its
  75-return window), the same estimate ``--vol-target`` sizes with; nothing fitted;
* ``har`` — HAR-RV (Corsi 2009): OLS (numpy ``lstsq``) of ``log RV_fwd`` on a constant and the logs of the
  trailing "daily", "weekly" and "monthly" realised variances. A "day" is ``H`` bars (the label horizon; one
  calendar day for 1h bars and the default H = 24), so the components average r² over the last ``H``, ``5H`` and
  ``22H`` bars, each scaled to ``H`` bars. ``log=False`` regresses the plain variances instead;
* ``lightgbm`` — gradient-boosted trees on the same target from the HAR components plus the scale-free model
  inputs of the feature set (``features.scale_free.model_inputs``), early stopping on the validation bars.

All inputs are log returns or functions of them (and scale-free features), so multiplying every price by a constant
changes no forecast. Losses: ``qlike`` (``σ²/σ̂² − log(σ²/σ̂²) − 1``, 0 for a perfect forecast) and the squared
error of the log-variance.
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from smartmarket.core.errors import ConfigError
from smartmarket.execution.sizing import EWMA_DECAY, EWMA_LOOKBACK, ewma_volatility
from smartmarket.execution.vol_forecast import HAR_DAYS, VARIANCE_FLOOR, har_fit, smearing

if TYPE_CHECKING:
    import pandas as pd

VOLATILITY_KINDS: tuple[str, ...] = ("constant", "ewma", "har", "lightgbm")
VOLATILITY_LABELS: dict[str, str] = {
    "constant": "Constant (training mean)",
    "ewma": "EWMA (RiskMetrics λ=0.94)",
    "har": "HAR-RV (log, OLS)",
    "har_plain": "HAR-RV (plain, OLS)",
    "lightgbm": "LightGBM",
    "transformer": "Transformer (regression head)",
}
ALL_KINDS: tuple[str, ...] = (*VOLATILITY_KINDS, "har_plain", "transformer")
"""Every forecaster; ``VOLATILITY_KINDS`` is the default set (the Transformer is opt-in: it costs minutes)."""


def log_returns(close: np.ndarray) -> np.ndarray:
    """``r[t] = log(close[t] / close[t-1])``; ``r[0]`` is NaN. Non-positive closes are refused."""
    close = np.asarray(close, dtype=np.float64)
    if close.ndim != 1 or close.size < 2:
        raise ConfigError("volatility needs a series of at least 2 closes")
    if not (np.isfinite(close).all() and (close > 0).all()):
        raise ConfigError("closes must be finite and positive to take log returns", hint="check the candle data")
    out = np.full(close.size, np.nan)
    out[1:] = np.diff(np.log(close))
    return out


def forward_realised_variance(close: np.ndarray, horizon: int) -> np.ndarray:
    """``RV_fwd[t] = sum r[t+1..t+H]^2`` (NaN for the last ``horizon`` bars)."""
    if horizon < 1:
        raise ConfigError(f"the volatility horizon must be >= 1 bar, got {horizon}")
    r2 = np.square(log_returns(close))
    r2[0] = 0.0
    csum = np.cumsum(r2)  # csum[i] = sum r2[1..i]
    out = np.full(r2.size, np.nan)
    n = r2.size
    if n > horizon:
        out[: n - horizon] = csum[horizon:] - csum[: n - horizon]
    return out


def trailing_realised_variance(close: np.ndarray, window: int, scale: int) -> np.ndarray:
    """Mean of ``r²`` over the last ``window`` returns (``r[t-window+1..t]``) times ``scale`` (NaN before)."""
    r2 = np.square(log_returns(close))
    r2[0] = 0.0
    csum = np.cumsum(r2)
    out = np.full(r2.size, np.nan)
    if r2.size > window:
        out[window:] = (csum[window:] - csum[:-window]) / window * scale
    return out


def qlike(log_realised: np.ndarray, log_forecast: np.ndarray) -> np.ndarray:
    """Per-sample QLIKE ``x − log x − 1`` with ``x = σ²/σ̂²`` (from logs: ``e^d − d − 1``, ``d = log σ² − log σ̂²``)."""
    d = np.asarray(log_realised, dtype=np.float64) - np.asarray(log_forecast, dtype=np.float64)
    return np.expm1(d) - d


def squared_log_error(log_realised: np.ndarray, log_forecast: np.ndarray) -> np.ndarray:
    """Per-sample squared error of the log-variance."""
    return np.square(np.asarray(log_realised, dtype=np.float64) - np.asarray(log_forecast, dtype=np.float64))


@dataclass(frozen=True)
class VolatilityData:
    """Aligned per-bar inputs and the target of a volatility forecast over ``horizon`` bars."""

    close: np.ndarray
    horizon: int
    target: np.ndarray
    """``log RV_fwd`` (NaN where undefined)."""
    har: np.ndarray
    """``(T, len(HAR_DAYS))``: log trailing realised variance over ``d × H`` bars, scaled to ``H`` bars."""
    features: np.ndarray | None = None
    feature_names: tuple[str, ...] = ()
    har_days: tuple[int, ...] = HAR_DAYS
    _closes: list[float] = field(default_factory=list, repr=False, compare=False)

    @property
    def n(self) -> int:
        return int(self.close.size)

    @property
    def t1(self) -> np.ndarray:
        """The last bar each target uses (``t + H``), −1 where the target is undefined (for the splits)."""
        bars = np.arange(self.n, dtype=np.int64)
        return np.where(np.isfinite(self.target), bars + self.horizon, -1)

    def eligible(self, context: int = 1) -> np.ndarray:
        """Bars where every forecaster has its inputs and the target is defined; with ``context`` > 1, also a
        window of that many bars of complete inputs (the Transformer's)."""
        ok = np.isfinite(self.target) & np.isfinite(self.har).all(axis=1)
        ok &= np.arange(self.n) >= EWMA_LOOKBACK
        if self.features is not None:
            ok &= np.isfinite(self.features).all(axis=1)
        if context > 1:
            from smartmarket.models.datasets import complete_windows

            ok &= complete_windows(window_inputs(self), context)
        return ok

    def closes(self) -> list[float]:
        if not self._closes:
            self._closes.extend(self.close.tolist())
        return self._closes


def volatility_data(
    close: np.ndarray,
    horizon: int,
    features: pd.DataFrame | None = None,
    *,
    har_days: tuple[int, ...] = HAR_DAYS,
) -> VolatilityData:
    """Target and inputs for ``close``; ``features`` (row-aligned) must hold scale-free model inputs only."""
    close = np.asarray(close, dtype=np.float64)
    rv = forward_realised_variance(close, horizon)
    with np.errstate(divide="ignore"):
        target = np.where(rv > 0, np.log(np.where(rv > 0, rv, 1.0)), np.nan)
    har = np.column_stack(
        [np.log(np.maximum(trailing_realised_variance(close, d * horizon, horizon), VARIANCE_FLOOR)) for d in har_days]
    )
    matrix: np.ndarray | None = None
    names: tuple[str, ...] = ()
    if features is not None:
        from smartmarket.features.scale_free import check_model_inputs

        frame = features.drop(columns=["ts"], errors="ignore")
        if len(frame) != close.size:
            raise ConfigError(f"{len(frame)} feature rows for {close.size} closes: they must be aligned")
        names = tuple(str(c) for c in frame.columns)
        check_model_inputs(names, where="volatility forecaster")
        matrix = frame.to_numpy(dtype=np.float64)
    return VolatilityData(close, horizon, target, har, matrix, names, har_days)


class VolatilityForecaster(ABC):
    """Fit on training bars, predict ``log σ̂²`` of the realised variance over the next ``H`` bars."""

    kind: str = ""

    def fit(
        self, data: VolatilityData, train: np.ndarray, validation: np.ndarray | None = None
    ) -> VolatilityForecaster:
        return self

    @abstractmethod
    def predict(self, data: VolatilityData, rows: np.ndarray) -> np.ndarray: ...

    def hyperparameters(self) -> dict[str, Any]:
        return {}


class ConstantVariance(VolatilityForecaster):
    """The unconditional variance: mean of ``RV_fwd`` over the training bars, whatever the bar."""

    kind = "constant"

    def __init__(self) -> None:
        self.log_variance = math.nan

    def fit(self, data: VolatilityData, train: np.ndarray, validation: np.ndarray | None = None) -> ConstantVariance:
        y = data.target[train]
        y = y[np.isfinite(y)]
        if y.size == 0:
            raise ConfigError("no training bar with a defined realised variance")
        self.log_variance = smearing(y)  # log mean RV
        return self

    def predict(self, data: VolatilityData, rows: np.ndarray) -> np.ndarray:
        return np.full(len(rows), self.log_variance)

    def hyperparameters(self) -> dict[str, Any]:
        return {"log_variance": self.log_variance}


class EWMAForecaster(VolatilityForecaster):
    """RiskMetrics: ``H × ewma_volatility(last lookback + 1 closes, decay)²`` (random-walk variance forecast)."""

    kind = "ewma"

    def __init__(self, decay: float = EWMA_DECAY, lookback: int = EWMA_LOOKBACK) -> None:
        if not 0 < decay < 1 or lookback < 2:
            raise ConfigError(f"EWMA needs 0 < decay < 1 and lookback >= 2, got {decay!r}, {lookback!r}")
        self.decay, self.lookback = decay, lookback

    def predict(self, data: VolatilityData, rows: np.ndarray) -> np.ndarray:
        closes = data.closes()
        out = np.full(len(rows), np.nan)
        for i, t in enumerate(np.asarray(rows, dtype=np.int64)):
            if t < self.lookback:
                continue
            vol = ewma_volatility(closes[t - self.lookback : t + 1], self.decay)
            out[i] = math.log(max(data.horizon * vol * vol, VARIANCE_FLOOR))
        return out

    def hyperparameters(self) -> dict[str, Any]:
        return {"decay": self.decay, "lookback": self.lookback}


class HARForecaster(VolatilityForecaster):
    """HAR-RV by OLS: ``y = b0 + b_d x_d + b_w x_w + b_m x_m`` on logs (``log=True``) or plain variances."""

    def __init__(self, log: bool = True) -> None:
        self.log = log
        self.kind = "har" if log else "har_plain"
        self.coef: np.ndarray | None = None
        self.smearing = 0.0
        self.har_days: tuple[int, ...] = HAR_DAYS

    def design(self, data: VolatilityData, rows: np.ndarray) -> np.ndarray:
        x = data.har[rows]
        if not self.log:
            x = np.exp(x)
        return np.column_stack([np.ones(len(rows)), x])

    def fit(self, data: VolatilityData, train: np.ndarray, validation: np.ndarray | None = None) -> HARForecaster:
        rows = np.asarray(train, dtype=np.int64)
        rows = rows[np.isfinite(data.target[rows]) & np.isfinite(data.har[rows]).all(axis=1)]
        self.har_days = data.har_days
        y = data.target[rows] if self.log else np.exp(data.target[rows])
        self.coef, self.smearing = har_fit(self.design(data, rows), y, log=self.log)  # the sizer's HAR fit too
        return self

    def predict(self, data: VolatilityData, rows: np.ndarray) -> np.ndarray:
        if self.coef is None:
            raise RuntimeError("fit the model first")
        rows = np.asarray(rows, dtype=np.int64)
        fitted = self.design(data, rows) @ self.coef
        if self.log:
            return fitted + self.smearing
        return np.log(np.maximum(fitted, VARIANCE_FLOOR))

    def hyperparameters(self) -> dict[str, Any]:
        coef = None if self.coef is None else [float(c) for c in self.coef]
        return {"log": self.log, "har_days": list(self.har_days), "coef": coef, "smearing": self.smearing}


class LightGBMVolatility(VolatilityForecaster):
    """LightGBM regression of ``log RV_fwd`` on the HAR components and the scale-free features at ``t``."""

    kind = "lightgbm"

    def __init__(
        self,
        *,
        n_estimators: int = 400,
        learning_rate: float = 0.03,
        num_leaves: int = 15,
        min_child_samples: int = 100,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        early_stopping_rounds: int = 40,
        seed: int = 0,
        n_jobs: int = 2,
    ) -> None:
        from smartmarket.models.baselines import lightgbm_params

        self.params: dict[str, Any] = lightgbm_params(
            n_estimators=n_estimators, learning_rate=learning_rate, num_leaves=num_leaves,
            min_child_samples=min_child_samples, subsample=subsample, colsample_bytree=colsample_bytree, seed=seed,
            n_jobs=n_jobs,
        )  # fmt: skip
        self.early_stopping_rounds = early_stopping_rounds
        self.model: Any = None
        self.smearing = 0.0

    @staticmethod
    def inputs(data: VolatilityData, rows: np.ndarray) -> np.ndarray:
        parts = [data.har[rows]]
        if data.features is not None:
            parts.append(data.features[rows])
        return np.column_stack(parts)

    def fit(self, data: VolatilityData, train: np.ndarray, validation: np.ndarray | None = None) -> LightGBMVolatility:
        import lightgbm as lgb

        train = np.asarray(train, dtype=np.int64)
        model = lgb.LGBMRegressor(**self.params)
        fit_args: dict[str, Any] = {}
        if validation is not None and len(validation) > 0:
            validation = np.asarray(validation, dtype=np.int64)
            xv, yv = self.inputs(data, validation), data.target[validation]
            if "eval_X" in inspect.signature(model.fit).parameters:  # LightGBM >= 4.6 renamed eval_set
                fit_args.update(eval_X=(xv,), eval_y=(yv,))
            else:
                fit_args["eval_set"] = [(xv, yv)]
            fit_args["callbacks"] = [lgb.early_stopping(self.early_stopping_rounds, verbose=False)]
        model.fit(self.inputs(data, train), data.target[train], **fit_args)
        self.model = model
        held = validation if validation is not None and len(validation) > 0 else train
        self.smearing = smearing(data.target[held] - model.predict(self.inputs(data, held)))
        return self

    def predict(self, data: VolatilityData, rows: np.ndarray) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("fit the model first")
        rows = np.asarray(rows, dtype=np.int64)
        return np.asarray(self.model.predict(self.inputs(data, rows)), dtype=np.float64) + self.smearing

    def hyperparameters(self) -> dict[str, Any]:
        best = getattr(self.model, "best_iteration_", None) if self.model is not None else None
        return {**self.params, "early_stopping_rounds": self.early_stopping_rounds, "best_iteration": best}


def window_inputs(data: VolatilityData) -> np.ndarray:
    """``(T, 3 + F)`` per-bar inputs of the windowed network: the HAR components, then the scale-free features."""
    parts = [data.har] + ([data.features] if data.features is not None else [])
    return np.column_stack(parts)


class TransformerVolatility(VolatilityForecaster):
    """The project's group-patch Transformer with a one-output regression head on ``log RV_fwd``.

    Inputs: windows of ``context`` bars of the HAR components and the scale-free features, scaled by training
    statistics (no per-window RevIN: it would remove the volatility level, the thing to forecast). Target
    standardised by its training mean and std; MSE loss, AdamW, ``epochs`` × ``steps_per_epoch`` random batches,
    early stopping on the validation MSE (best weights kept), smearing term from the validation residuals.
    """

    kind = "transformer"

    def __init__(
        self,
        *,
        preset: str = "small",
        epochs: int = 6,
        steps_per_epoch: int = 100,
        batch_size: int = 64,
        lr: float = 1e-3,
        patience: int = 2,
        validation_cap: int = 2000,
        seed: int = 0,
    ) -> None:
        from smartmarket.models.networks import network_config

        self.config = network_config("transformer", preset, n_classes=1, revin=False)
        self.preset, self.epochs, self.steps_per_epoch, self.batch_size = preset, epochs, steps_per_epoch, batch_size
        self.lr, self.patience, self.validation_cap, self.seed = lr, patience, validation_cap, seed
        self.context = int(self.config.context)
        self.module: Any = None
        self.y_mean, self.y_std, self.smearing = 0.0, 1.0, 0.0
        self.best_epoch = 0

    def _dataset(self, data: VolatilityData, rows: np.ndarray) -> Any:
        from smartmarket.models.datasets import WindowDataset

        values = np.nan_to_num(window_inputs(data), nan=0.0, posinf=0.0, neginf=0.0)
        return WindowDataset(values, rows, np.zeros(len(rows), dtype=np.int64), self.context)

    def _raw(self, data: VolatilityData, rows: np.ndarray) -> np.ndarray:
        import torch

        dataset = self._dataset(data, rows)
        self.module.eval()
        out = []
        with torch.inference_mode():
            for start in range(0, len(dataset), 512):
                positions = np.arange(start, min(start + 512, len(dataset)))
                out.append(self.module(dataset.batch(positions)).float()[:, 0].numpy())
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)

    def fit(
        self, data: VolatilityData, train: np.ndarray, validation: np.ndarray | None = None
    ) -> TransformerVolatility:
        import torch

        from smartmarket.models.datasets import training_statistics
        from smartmarket.models.device import deterministic
        from smartmarket.models.networks import build_network

        train = np.asarray(train, dtype=np.int64)
        train = train[train >= self.context - 1]
        if train.size == 0:
            raise ConfigError(f"the Transformer needs training bars with {self.context} bars of history")
        y = data.target[train]
        self.y_mean, self.y_std = float(y.mean()), float(y.std()) or 1.0
        dataset = self._dataset(data, train)
        with deterministic(self.seed):
            module = build_network("transformer", self.config, dataset.n_features)
            module.normaliser.set_statistics(*training_statistics(dataset))
            self.module = module
            target = torch.as_tensor((y - self.y_mean) / self.y_std, dtype=torch.float32)
            optimiser = torch.optim.AdamW(module.parameters(), lr=self.lr, weight_decay=1e-4)
            generator = torch.Generator().manual_seed(self.seed)
            val = None
            if validation is not None and len(validation) > 0:
                val = np.asarray(validation, dtype=np.int64)
                if val.size > self.validation_cap:  # evenly spaced: early stopping only needs a fair sample
                    val = val[np.linspace(0, val.size - 1, self.validation_cap).astype(np.int64)]
            best, best_state, bad = math.inf, None, 0
            for epoch in range(1, self.epochs + 1):
                module.train()
                for _ in range(self.steps_per_epoch):
                    positions = torch.randint(0, len(dataset), (self.batch_size,), generator=generator).numpy()
                    optimiser.zero_grad(set_to_none=True)
                    loss = torch.nn.functional.mse_loss(module(dataset.batch(positions))[:, 0], target[positions])
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
                    optimiser.step()
                if val is None:
                    continue
                pred = self._raw(data, val) * self.y_std + self.y_mean
                mse = float(np.mean(np.square(data.target[val] - pred)))
                if mse < best:
                    best, bad, self.best_epoch = mse, 0, epoch
                    best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
                else:
                    bad += 1
                    if bad >= self.patience:
                        break
            if best_state is not None:
                module.load_state_dict(best_state)
            module.eval()
        held = val if val is not None else train
        self.smearing = smearing(data.target[held] - (self._raw(data, held) * self.y_std + self.y_mean))
        return self

    def predict(self, data: VolatilityData, rows: np.ndarray) -> np.ndarray:
        if self.module is None:
            raise RuntimeError("fit the model first")
        return self._raw(data, np.asarray(rows, dtype=np.int64)) * self.y_std + self.y_mean + self.smearing

    def hyperparameters(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {
            "network": asdict(self.config), "preset": self.preset, "epochs": self.epochs,
            "steps_per_epoch": self.steps_per_epoch, "batch_size": self.batch_size, "lr": self.lr,
            "patience": self.patience, "best_epoch": self.best_epoch, "smearing": self.smearing,
        }  # fmt: skip


def check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    """The forecaster names, deduplicated in order; ``ConfigError`` for an empty list or an unknown name."""
    out = tuple(dict.fromkeys(k.strip() for k in kinds if k.strip()))
    unknown = [k for k in out if k not in ALL_KINDS]
    if unknown or not out:
        names = ", ".join(map(repr, unknown))
        what = f"unknown volatility forecaster {names}" if unknown else "no volatility forecaster"
        raise ConfigError(what, hint="choose from " + ", ".join(ALL_KINDS))
    return out


def volatility_forecaster(kind: str, *, seed: int = 0, **options: Any) -> VolatilityForecaster:
    """A fresh forecaster of ``kind`` (``VOLATILITY_KINDS``, ``har_plain`` or ``transformer``; ``options`` go to
    the Transformer: preset, epochs, steps_per_epoch, batch_size)."""
    if kind == "constant":
        return ConstantVariance()
    if kind == "ewma":
        return EWMAForecaster()
    if kind == "har":
        return HARForecaster(log=True)
    if kind == "har_plain":
        return HARForecaster(log=False)
    if kind == "lightgbm":
        return LightGBMVolatility(seed=seed)
    if kind == "transformer":
        return TransformerVolatility(seed=seed, **options)
    raise ConfigError(f"unknown volatility forecaster {kind!r}", hint="choose from " + ", ".join(ALL_KINDS))


__all__ = [
    "ALL_KINDS",
    "HAR_DAYS",
    "VOLATILITY_KINDS",
    "VOLATILITY_LABELS",
    "ConstantVariance",
    "EWMAForecaster",
    "HARForecaster",
    "LightGBMVolatility",
    "TransformerVolatility",
    "VolatilityData",
    "VolatilityForecaster",
    "check_kinds",
    "forward_realised_variance",
    "log_returns",
    "qlike",
    "squared_log_error",
    "trailing_realised_variance",
    "volatility_data",
    "volatility_forecaster",
]
