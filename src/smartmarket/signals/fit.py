"""Fitting a deployable ensemble: calibrators + ensemble + confidence + thresholds, saved as a versioned artifact.

``fit_artifact(candles, members, ...)`` works on one candle frame:

1. features (the set the members need) and raw member probabilities over the frame (research batch path,
   ``pipeline.research_data``), triple-barrier outcomes and regimes;
2. samples start after the members' own training: the first bar later than the last candle any model member
   learned from (training or early-stopping validation, from its registry metadata) plus the label horizon,
   so calibration never sees a bar a member was fitted on;
3. the decision bar is the end of the frame: only samples whose outcome was known by then are used
   (``SignalSamples.known_before``); ``SignalSystem.fit`` cuts them chronologically, purged, into calibration |
   ensemble weights | confidence (meta-labelling hold-out inside) and strength/regime thresholds.

The sample coordinate is the candle open time in ms (not the row position), so the artifact is used on any
candle range by the engine. Default ensemble: skill-weighted (``SignalSystemConfig(ensemble="skill")``): with
members of no skill it gives them exact zero weight, where stacking still spreads some (docs/signals.md compares
the two out of sample).

Artifacts live in the model registry directory, ``<registry_dir>/<id>/metadata.json`` (kind ``ensemble``,
symbol, timeframe, member specs with model ids, the data range, the fit report) plus ``system.skops`` (the
fitted ``SignalSystem`` written with skops and read with the fixed list ``SIGNAL_TRUSTED_TYPES``; a LightGBM
meta-labelling model inside it in LightGBM's text model format; see ``models.persist``). Nothing in an artifact
folder can run code: it is checked (``core.safe_files``) before anything is read, and a pickle (``system.joblib``
of earlier versions) or a file of an unknown kind is refused with one line naming it; ``upgrade_artifact``
(``smartmarket models upgrade --trust-pickle``) rewrites an artifact of an earlier version once. Ids read
``ensemble-<symbol>-<tf>-<YYYYmmddHHMMSS>-<hash8>``; written to a temporary folder and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from smartmarket.core.errors import DataFormatError, NotFoundError, ValidationError
from smartmarket.core.safe_files import refuse_unsafe_files
from smartmarket.core.types import Timeframe, normalize_symbol
from smartmarket.models import persist
from smartmarket.models.labels import LabelConfig
from smartmarket.signals.members import Member, ModelMember
from smartmarket.signals.outcomes import SignalSamples
from smartmarket.signals.pipeline import ResearchData, research_data
from smartmarket.signals.strength import SignalSystem, SignalSystemConfig

ARTIFACT_KIND = "ensemble"
ARTIFACT_VERSION = 1
METADATA_FILE = "metadata.json"
SYSTEM_FILE = "system.skops"
LEGACY_SYSTEM_FILE = "system.joblib"  # earlier versions (a pickle): refused on load, rewritten by upgrade_artifact

# The types a saved SignalSystem may hold besides those skops trusts itself (builtins, NumPy, scikit-learn
# estimators). A fixed list: never whatever a file asks for.
SIGNAL_TRUSTED_TYPES: tuple[str, ...] = (
    "smartmarket.signals.strength.SignalSystem",
    "smartmarket.signals.strength.SignalSystemConfig",
    "smartmarket.signals.strength.StrengthThresholds",
    "smartmarket.signals.strength.RegimeFilter",
    "smartmarket.signals.calibration.TemperatureCalibrator",
    "smartmarket.signals.calibration.PlattCalibrator",
    "smartmarket.signals.calibration.IsotonicCalibrator",
    "smartmarket.signals.ensemble.StackingEnsemble",
    "smartmarket.signals.ensemble._StackFit",
    "smartmarket.signals.ensemble.SkillWeightedEnsemble",
    "smartmarket.signals.ensemble._SkillGroup",
    "smartmarket.signals.confidence.ConfidenceModel",
    "smartmarket.signals.confidence.ConfidenceChoice",
    "smartmarket.signals.confidence.SignalHistory",
    persist.LIGHTGBM_TEXT_TYPE,
)


def default_system_config(**overrides: Any) -> SignalSystemConfig:
    """The deployed configuration: skill-weighted ensemble, Platt (matrix-scaling) calibration, the core's
    defaults otherwise (docs/signals.md: isotonic calibration lost ≈1 nat/sample on a model member out of sample)."""
    return SignalSystemConfig(**{"ensemble": "skill", "calibration": "platt", **overrides})


@dataclass
class EnsembleArtifact:
    """A fitted signal system with what it needs to run again and what it was fitted on."""

    system: SignalSystem
    member_specs: list[dict[str, Any]]
    symbol: str
    timeframe: str
    feature_set: str
    label_config: LabelConfig
    data: dict[str, Any] = field(default_factory=dict)
    artifact_id: str | None = None
    created: str = ""
    stage: str = "candidate"

    @property
    def member_names(self) -> tuple[str, ...]:
        return tuple(str(s["name"]) for s in self.member_specs)

    def metadata(self) -> dict[str, Any]:
        return {
            "id": self.artifact_id,
            "kind": ARTIFACT_KIND,
            "version": ARTIFACT_VERSION,
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "stage": self.stage,
            "created": self.created,
            "feature_set": self.feature_set,
            "members": self.member_specs,
            "member_model_ids": [s["model_id"] for s in self.member_specs if s.get("model_id")],
            "label_config": self.label_config.to_dict(),
            "data": self.data,
            "report": self.system.report(),
            "never_signals": self.system.never_signals(),
        }


def _ts_text(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def first_sample_bar(candles: pd.DataFrame, members: Sequence[Member], horizon: int) -> int:
    """First bar after every model member's training data plus ``horizon`` bars (0 without model members)."""
    ends = [m.training_end_ts() for m in members if isinstance(m, ModelMember)]
    known = [e for e in ends if e is not None]
    if not known:
        return 0
    ts = candles["ts"].to_numpy(np.int64)
    return int(np.searchsorted(ts, max(known), side="right")) + horizon


def _fit_system(
    samples: SignalSamples, decision_ts: int, cfg: SignalSystemConfig
) -> tuple[SignalSystem, SignalSamples, np.ndarray]:
    """The system fitted on the samples whose outcomes are known at ``decision_ts`` (purged); also returns those
    samples and their time coordinates. Too few is one ValidationError line."""
    known = samples.known_before(decision_ts, purge=cfg.purge)
    if len(known) < cfg.min_fit_samples:
        raise ValidationError(
            f"only {len(known)} samples with known outcomes after the members' training (need {cfg.min_fit_samples})",
            where="signals fit", hint="give more candles (a longer --start/--end span)",
        )  # fmt: skip
    system = SignalSystem(cfg).fit(known, decision_ts)
    return system, known, known.ts if known.ts is not None else known.t


def fit_artifact(
    candles: pd.DataFrame,
    members: Sequence[Member],
    *,
    symbol: str,
    timeframe: str,
    label_config: LabelConfig | None = None,
    config: SignalSystemConfig | None = None,
    feature_set: str | None = None,
    data: ResearchData | None = None,
) -> EnsembleArtifact:
    """Fit the signal system on ``candles`` (see the module docstring); ``data`` reuses a prepared batch."""
    labels = label_config or LabelConfig()
    cfg = config or default_system_config()
    frame = candles.reset_index(drop=True)
    prepared = data or research_data(frame, members, timeframe=timeframe, label_config=labels, feature_set=feature_set)
    first = first_sample_bar(frame, members, labels.horizon)
    samples, _ = prepared.samples(coordinate="ts", first_bar=first)
    ts = frame["ts"].to_numpy(np.int64)
    decision_ts = int(ts[-1]) + 1  # the end of the frame: every outcome known by its last close
    system, known, fit_ts = _fit_system(samples, decision_ts, cfg)
    return EnsembleArtifact(
        system=system,
        member_specs=[m.spec() for m in members],
        symbol=symbol,
        timeframe=str(Timeframe.parse(timeframe)),
        feature_set=_feature_set_of(members, feature_set),
        label_config=labels,
        data={
            "rows": len(frame),
            "first_ts": int(ts[0]),
            "last_ts": int(ts[-1]),
            "first": _ts_text(int(ts[0])),
            "last": _ts_text(int(ts[-1])),
            "samples": len(known),
            "sample_first_ts": int(fit_ts.min()),
            "sample_last_ts": int(fit_ts.max()),
            "first_sample_bar": first,
            "decision_ts": decision_ts,
        },
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def concat_samples(parts: Sequence[SignalSamples]) -> SignalSamples:
    """Several symbols' samples as one set (``ts`` coordinate), sorted by decision time (stable)."""
    if not parts:
        raise ValueError("no samples to pool")
    names = parts[0].member_names
    extra = None if any(p.extra is None for p in parts) else np.concatenate([p.extra for p in parts])
    ts = None if any(p.ts is None for p in parts) else np.concatenate([p.ts for p in parts])
    pooled = SignalSamples(
        t=np.concatenate([p.t for p in parts]),
        t1=np.concatenate([p.t1 for p in parts]),
        y=np.concatenate([p.y for p in parts]),
        members={n: np.concatenate([p.members[n] for p in parts]) for n in names},
        regimes=np.concatenate([p.regimes for p in parts]),
        extra=extra,
        ts=ts,
    )
    return pooled.take(np.argsort(pooled.t, kind="stable"))


def fit_universe_artifact(
    frames: Mapping[str, pd.DataFrame],
    members: Sequence[Member],
    *,
    timeframe: str,
    name: str = "UNIVERSE",
    label_config: LabelConfig | None = None,
    config: SignalSystemConfig | None = None,
    feature_set: str | None = None,
) -> EnsembleArtifact:
    """One signal system fitted on several symbols' samples pooled by timestamp (``fit-signals --symbols``).

    Each symbol's samples are made as in :func:`fit_artifact` (its own features, member probabilities, outcomes;
    from after the members' training); they are pooled in time order and cut chronologically *by timestamp*
    (the sample coordinate is the candle open time), so calibration, weights and thresholds are fitted on
    earlier timestamps of every symbol than the parts that judge them. No symbol identity enters the system."""
    labels = label_config or LabelConfig()
    cfg = config or default_system_config()
    if len(frames) < 2:
        raise ValidationError("a universe needs at least two symbols", where="signals fit")
    parts: list[SignalSamples] = []
    per_symbol: dict[str, dict[str, Any]] = {}
    decision_ts = 0
    for symbol, candles in frames.items():
        frame = candles.reset_index(drop=True)
        prepared = research_data(frame, members, timeframe=timeframe, label_config=labels, feature_set=feature_set)
        first = first_sample_bar(frame, members, labels.horizon)
        samples, _ = prepared.samples(coordinate="ts", first_bar=first)
        parts.append(samples)
        ts = frame["ts"].to_numpy(np.int64)
        decision_ts = max(decision_ts, int(ts[-1]) + 1)
        per_symbol[symbol] = {
            "rows": len(frame),
            "first_ts": int(ts[0]),
            "last_ts": int(ts[-1]),
            "first_sample_bar": first,
        }
    system, known, fit_ts = _fit_system(concat_samples(parts), decision_ts, cfg)
    symbols = list(frames)
    return EnsembleArtifact(
        system=system,
        member_specs=[m.spec() for m in members],
        symbol=name,
        timeframe=str(Timeframe.parse(timeframe)),
        feature_set=_feature_set_of(members, feature_set),
        label_config=labels,
        data={
            "symbols": symbols,
            "per_symbol": per_symbol,
            "rows": sum(p["rows"] for p in per_symbol.values()),
            "first_ts": min(p["first_ts"] for p in per_symbol.values()),
            "last_ts": max(p["last_ts"] for p in per_symbol.values()),
            "samples": len(known),
            "sample_first_ts": int(fit_ts.min()),
            "sample_last_ts": int(fit_ts.max()),
            "decision_ts": decision_ts,
        },
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def _feature_set_of(members: Sequence[Member], requested: str | None) -> str:
    from smartmarket.signals.pipeline import choose_feature_set

    return choose_feature_set(members, requested)


# ------------------------------------------------------------------------------------------ storage


def _slug(symbol: str) -> str:
    try:
        return normalize_symbol(symbol)
    except Exception:
        return "".join(ch for ch in symbol if ch.isalnum()) or "any"


def save_artifact(artifact: EnsembleArtifact, registry_dir: str | Path) -> str:
    """Write the artifact under a new id (set on it too) and return the id."""
    directory = Path(registry_dir)
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".saving-", dir=directory))
    try:
        persist.dump(artifact.system, staging / SYSTEM_FILE, trusted=SIGNAL_TRUSTED_TYPES)
        meta = artifact.metadata()
        meta["id"] = None
        digest = hashlib.sha256((staging / SYSTEM_FILE).read_bytes())
        digest.update(json.dumps(meta, sort_keys=True, default=str).encode())
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        artifact_id = "-".join(
            [ARTIFACT_KIND, _slug(artifact.symbol), str(Timeframe.parse(artifact.timeframe)), stamp,
             digest.hexdigest()[:8]]
        )  # fmt: skip
        artifact.artifact_id = artifact_id
        meta["id"] = artifact_id
        (staging / METADATA_FILE).write_text(json.dumps(meta, indent=2, default=_json_default))
        os.replace(staging, directory / artifact_id)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return artifact_id


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float | int):
        return value
    return str(value)


def list_artifacts(
    registry_dir: str | Path, symbol: str | None = None, timeframe: str | None = None, stage: str | None = None
) -> list[Path]:
    """Artifact folders, oldest first, filtered by symbol / timeframe / stage."""
    directory = Path(registry_dir)
    if not directory.exists():
        return []
    found: list[tuple[str, str, Path]] = []
    for path in directory.iterdir():
        meta_file = path / METADATA_FILE
        has_system = (path / SYSTEM_FILE).is_file() or (path / LEGACY_SYSTEM_FILE).is_file()
        if path.name.startswith(".") or not meta_file.is_file() or not has_system:
            continue  # (an artifact of an earlier version is listed: loading it refuses, naming the pickle)
        meta = json.loads(meta_file.read_text())
        if meta.get("kind") != ARTIFACT_KIND:
            continue
        if symbol is not None and meta.get("symbol") != _slug(symbol):
            continue
        if timeframe is not None and meta.get("timeframe") != str(Timeframe.parse(timeframe)):
            continue
        if stage is not None and meta.get("stage", "candidate") != stage:
            continue
        found.append((str(meta.get("created", "")), path.name, path))
    return [p for _, _, p in sorted(found)]


def _stage(path: Path) -> str:
    return str(json.loads((path / METADATA_FILE).read_text()).get("stage", "candidate"))


def load_artifact(
    ref: str | Path,
    registry_dir: str | Path | None = None,
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
) -> EnsembleArtifact:
    """An artifact by folder path, id (or unique id prefix) in ``registry_dir``, or for ``symbol``/``timeframe``
    ``"production"`` (the promoted one) or ``"latest"`` (the newest candidate or production one)."""
    path = Path(ref)
    if not (path / METADATA_FILE).is_file():
        if registry_dir is None:
            raise NotFoundError(f"no ensemble artifact {str(ref)!r}", hint="give --registry or a folder path")
        what = f"{symbol or 'any symbol'} {timeframe or ''}".strip()
        if str(ref) == "production":
            matches = list_artifacts(registry_dir, symbol, timeframe, stage="production")[-1:]
            hint = (
                "evaluate and promote one: `smartmarket models evaluate-candidate ID` then `smartmarket models promote "
                "ID` (or run a candidate with --artifact latest)"
            )
        else:
            candidates = list_artifacts(registry_dir, symbol, timeframe)
            if str(ref) == "latest":
                matches = [p for p in candidates if _stage(p) != "retired"][-1:]
            else:
                matches = [p for p in candidates if p.name.startswith(str(ref))]
            hint = (
                "ambiguous id prefix"
                if matches
                else f"fit one with `smartmarket fit-signals -s {symbol or 'SYMBOL'} -t {timeframe or 'TIMEFRAME'}`"
            )
        if len(matches) != 1:
            raise NotFoundError(f"no ensemble artifact {str(ref)!r} for {what}", where=str(registry_dir), hint=hint)
        path = matches[0]
    refuse_unsafe_files(path, hint=persist.UPGRADE_HINT)
    meta = json.loads((path / METADATA_FILE).read_text())
    _refuse_unsafe_members(path.parent, meta.get("members", []))
    system = persist.load(path / SYSTEM_FILE, trusted=SIGNAL_TRUSTED_TYPES, expect=SignalSystem)
    return EnsembleArtifact(
        system=system,
        member_specs=list(meta["members"]),
        symbol=meta["symbol"],
        timeframe=meta["timeframe"],
        feature_set=meta["feature_set"],
        label_config=LabelConfig.from_dict(meta["label_config"]),
        data=dict(meta.get("data", {})),
        artifact_id=meta.get("id") or path.name,
        created=meta.get("created", ""),
        stage=meta.get("stage", "candidate"),
    )


def _refuse_unsafe_members(registry_dir: Path, specs: Sequence[dict[str, Any]]) -> None:
    """Refuse now, naming the file, an artifact whose model member's registry entry holds a pickle or a file of an
    unknown kind (rather than when a pipeline stage first builds the member)."""
    for spec in specs:
        model_id = str(spec.get("model_id") or "") if spec.get("kind") == "model" else ""
        entry = registry_dir / model_id
        if model_id and Path(model_id).name == model_id and entry.is_dir():
            refuse_unsafe_files(entry, hint=persist.UPGRADE_HINT)


def upgrade_artifact(path: str | Path) -> str | None:
    """Rewrite one artifact of an earlier version (``system.joblib``, a pickle) as ``system.skops``, atomically,
    and delete the pickle; returns what was done, or None when the folder holds no ``system.joblib``.

    Unpickling runs the file's code: call this only on the user's explicit trust (``--trust-pickle``)."""
    folder = Path(path)
    old = folder / LEGACY_SYSTEM_FILE
    if not old.is_file():
        return None
    system = persist.load_trusted_pickle(old)
    if not isinstance(system, SignalSystem):
        raise DataFormatError(
            f"{LEGACY_SYSTEM_FILE} holds a {type(system).__name__}, not a fitted signal system", where=str(folder),
            hint="delete the artifact",
        )  # fmt: skip
    persist.dump(system, folder / SYSTEM_FILE, trusted=SIGNAL_TRUSTED_TYPES)
    meta_file = folder / METADATA_FILE
    meta = json.loads(meta_file.read_text())
    change = {"from": LEGACY_SYSTEM_FILE, "to": SYSTEM_FILE, "at": datetime.now(UTC).isoformat(timespec="seconds")}
    meta["format_history"] = [*meta.get("format_history", []), change]
    tmp = folder / f".{meta_file.stem}.partial.json"
    tmp.write_text(json.dumps(meta, indent=2, default=_json_default))
    os.replace(tmp, meta_file)
    old.unlink()
    return f"{LEGACY_SYSTEM_FILE} → {SYSTEM_FILE}"


__all__ = [
    "ARTIFACT_KIND",
    "ARTIFACT_VERSION",
    "LEGACY_SYSTEM_FILE",
    "SIGNAL_TRUSTED_TYPES",
    "SYSTEM_FILE",
    "EnsembleArtifact",
    "default_system_config",
    "first_sample_bar",
    "fit_artifact",
    "list_artifacts",
    "load_artifact",
    "save_artifact",
    "upgrade_artifact",
]
