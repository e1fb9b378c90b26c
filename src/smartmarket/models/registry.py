"""The model registry: every trained model under a versioned id, with weights and a metadata JSON.

Layout: ``<registry_dir>/<id>/metadata.json`` plus ``weights.pt`` (a network's ``state_dict``, loaded with
``weights_only=True``) or ``model.joblib`` (a scikit-learn / LightGBM / majority baseline; joblib is pickle, so
load only registries you wrote). Ids read ``<kind>-<symbol>-<tf>-<YYYYmmddHHMMSS>-<hash8>``, the hash taken over
the weights and metadata. A model is written to a temporary folder and renamed into place, so a crash never
leaves half a model. ``stage`` (candidate / production / retired) is kept in the metadata.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import torch

from smartmarket.core.errors import ConfigError, NotFoundError
from smartmarket.core.types import Timeframe, normalize_symbol
from smartmarket.models.labels import LabelConfig
from smartmarket.models.networks import NETWORK_KINDS, build_network
from smartmarket.models.pipeline import STAGES, TrainedModel
from smartmarket.models.training import NetworkClassifier, TrainConfig

METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "weights.pt"
JOBLIB_FILE = "model.joblib"


@dataclass(frozen=True)
class ModelRecord:
    """One registry entry as listed: the id, the headline fields, and the full metadata."""

    model_id: str
    kind: str
    symbol: str
    timeframe: str
    stage: str
    created: str
    path: Path
    metadata: dict[str, Any]

    @property
    def test_metrics(self) -> dict[str, float]:
        return dict(self.metadata.get("metrics", {}).get("test", {}))


def _symbol_slug(text: str) -> str:
    if not text:
        return "any"
    try:
        return normalize_symbol(text)
    except ConfigError:
        return "".join(ch for ch in text if ch.isalnum()) or "any"


def _timeframe_slug(text: str) -> str:
    if not text:
        return "any"
    try:
        return Timeframe.parse(text).value
    except ConfigError:
        return "".join(ch for ch in text if ch.isalnum()) or "any"


class Registry:
    """Versioned model storage in one directory (``Settings().registry_dir`` by default)."""

    def __init__(self, directory: str | Path | None = None) -> None:
        if directory is None:
            from smartmarket.core.config import Settings

            directory = Settings().registry_dir
        self.directory = Path(directory)

    # -- writing ---------------------------------------------------------------------------------------------
    def save(self, model: TrainedModel) -> str:
        """Store ``model`` under a new id (set on the model too) and return the id."""
        self.directory.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".saving-", dir=self.directory))
        try:
            if model.kind in NETWORK_KINDS:
                module = getattr(model.classifier, "module")  # noqa: B009
                torch.save(module.state_dict(), staging / WEIGHTS_FILE)
                weights = staging / WEIGHTS_FILE
            else:
                joblib.dump(model.classifier, staging / JOBLIB_FILE)
                weights = staging / JOBLIB_FILE
            meta = model.metadata()
            meta["id"] = None
            digest = hashlib.sha256(weights.read_bytes())
            digest.update(json.dumps(meta, sort_keys=True, default=str).encode())
            stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
            parts = [model.kind, _symbol_slug(model.symbol), _timeframe_slug(model.timeframe), stamp]
            model_id = "-".join([*parts, digest.hexdigest()[:8]])
            model.model_id = model_id
            meta["id"] = model_id
            (staging / METADATA_FILE).write_text(json.dumps(meta, indent=2, default=str))
            os.replace(staging, self.directory / model_id)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return model_id

    def set_stage(self, model_id: str, stage: str) -> ModelRecord:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}: use one of {STAGES}")
        record = self.show(model_id)
        meta = dict(record.metadata, stage=stage)
        tmp = record.path / (METADATA_FILE + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2, default=str))
        os.replace(tmp, record.path / METADATA_FILE)
        return self.show(record.model_id)

    # -- reading ---------------------------------------------------------------------------------------------
    def list(
        self,
        *,
        symbol: str | None = None,
        timeframe: str | None = None,
        kind: str | None = None,
        stage: str | None = None,
    ) -> list[ModelRecord]:
        """Entries, oldest first, filtered by any of symbol / timeframe / kind / stage."""
        if not self.directory.exists():
            return []
        records = []
        for path in sorted(self.directory.iterdir()):
            if path.name.startswith(".") or not (path / METADATA_FILE).is_file():
                continue
            record = self._record(path)
            if symbol is not None and record.symbol != _symbol_slug(symbol):
                continue
            if timeframe is not None and record.timeframe != _timeframe_slug(timeframe):
                continue
            if kind is not None and record.kind != kind:
                continue
            if stage is not None and record.stage != stage:
                continue
            records.append(record)
        return sorted(records, key=lambda r: (r.created, r.model_id))

    def show(self, model_id: str) -> ModelRecord:
        """The entry for an id, or a unique prefix of one."""
        path = self.directory / model_id
        if (path / METADATA_FILE).is_file():
            return self._record(path)
        matches = [r for r in self.list() if r.model_id.startswith(model_id)] if model_id else []
        if len(matches) == 1:
            return matches[0]
        hint = "ambiguous prefix: give more of the id" if matches else "see `smartmarket models` for the ids"
        raise NotFoundError(f"no model {model_id!r}", where=str(self.directory), hint=hint)

    def latest(
        self, symbol: str, timeframe: str, kind: str | None = None, *, stage: str | None = None
    ) -> ModelRecord:
        records = self.list(symbol=symbol, timeframe=timeframe, kind=kind, stage=stage)
        if not records:
            what = f"{kind or 'any'} model for {symbol} {timeframe}" + (f" in stage {stage}" if stage else "")
            raise NotFoundError(f"no {what}", where=str(self.directory), hint="train one with `smartmarket train`")
        return records[-1]

    def load(self, model_id: str) -> TrainedModel:
        """Rebuild the trained model: same weights, same predictions."""
        record = self.show(model_id)
        meta = record.metadata
        groups = {g: tuple(idx) for g, idx in meta["feature_groups"].items()}
        columns = tuple(meta["feature_columns"])
        if record.kind in NETWORK_KINDS:
            hyper = meta["hyperparameters"]
            module = build_network(record.kind, hyper["network"], len(columns), groups)
            state = torch.load(record.path / WEIGHTS_FILE, map_location="cpu", weights_only=True)
            module.load_state_dict(state)
            module.eval()
            classifier: Any = NetworkClassifier(record.kind, module, TrainConfig(**hyper["training"]))
        else:
            classifier = joblib.load(record.path / JOBLIB_FILE)
        return TrainedModel(
            kind=record.kind,
            classifier=classifier,
            feature_columns=columns,
            groups=groups,
            label_config=LabelConfig.from_dict(meta["label_config"]),
            symbol=meta.get("symbol", ""),
            timeframe=meta.get("timeframe", ""),
            feature_set=meta.get("feature_set", ""),
            metrics=meta.get("metrics", {}),
            split=meta.get("split", {}),
            data=meta.get("data", {}),
            history=meta.get("history", []),
            seed=meta.get("seed", 0),
            created=meta.get("created", ""),
            model_id=record.model_id,
            stage=meta.get("stage", "candidate"),
            code_version=meta.get("code_version", {}),
        )

    def _record(self, path: Path) -> ModelRecord:
        meta = json.loads((path / METADATA_FILE).read_text())
        return ModelRecord(
            model_id=path.name,
            kind=meta.get("kind", ""),
            symbol=_symbol_slug(meta.get("symbol", "")),
            timeframe=_timeframe_slug(meta.get("timeframe", "")),
            stage=meta.get("stage", "candidate"),
            created=meta.get("created", ""),
            path=path,
            metadata=meta,
        )


__all__ = ["JOBLIB_FILE", "METADATA_FILE", "WEIGHTS_FILE", "ModelRecord", "Registry"]
