"""The model registry: every trained model under a versioned id, with weights and a metadata JSON.

Layout: ``<registry_dir>/<id>/metadata.json`` plus ``weights.pt`` (a network's ``state_dict``, loaded with
``weights_only=True``) or ``model.skops`` (a scikit-learn / LightGBM / majority baseline, written with skops and
read with a fixed list of trusted types; LightGBM boosters inside it in LightGBM's text model format: see
``models.persist``). No file of the registry is a pickle: before an entry is read, every file in its folder is
checked (``core.safe_files``) and a pickle (``model.joblib`` of earlier versions) or a file of an unknown kind is
refused with one line naming it; ``upgrade_entry`` (``smartmarket models upgrade --trust-pickle``) rewrites an
entry of an earlier version once. Ids read ``<kind>-<symbol>-<tf>-<YYYYmmddHHMMSS>-<hash8>``, the hash taken over
the weights and metadata. A model is written to a temporary folder and renamed into place, so a crash never
leaves half a model. Ensemble artifacts (``signals.fit``, kind ``ensemble``) live in the same folder and are listed
with the models.

Stages (kept in the metadata, with their history): every entry is saved as a *candidate*; ``promote`` makes it the
*production* entry of its (symbol, timeframe, kind) — the one the live pipeline and ``make_member`` use — and
retires the previous one; ``retire`` takes an entry out of use. Promotion needs an evaluation attached
(``evaluation.json``, written by ``ops.promotion``): out-of-sample metrics of the candidate against the production
entry *current at promotion time*, and refuses when that evaluation found production significantly better, or when
an ensemble artifact records that it can never produce a signal (``never_signals``), unless forced (recorded).

No-skill marking: a model whose validation log-loss is not significantly better than the base-rate baseline
records ``no_skill: true`` (``models.skill``); ``ModelRecord.no_skill_warning`` is the one line every command
prints for such an entry.
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

import torch

from smartmarket.core.errors import ConfigError, DataFormatError, NotFoundError, ValidationError
from smartmarket.core.safe_files import find_unsafe_files, refuse_unsafe_files
from smartmarket.core.types import Timeframe, normalize_symbol
from smartmarket.models import persist
from smartmarket.models.baselines import (
    BASELINE_TRUSTED_TYPES,
    LightGBMBaseline,
    LogisticBaseline,
    MajorityBaseline,
)
from smartmarket.models.labels import LabelConfig
from smartmarket.models.networks import NETWORK_KINDS, build_network
from smartmarket.models.pipeline import STAGES, TrainedModel
from smartmarket.models.skill import Skill, no_skill_line, skill_of
from smartmarket.models.training import NetworkClassifier, TrainConfig

METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "weights.pt"
MODEL_FILE = "model.skops"
JOBLIB_FILE = "model.joblib"  # earlier versions (a pickle): refused on load, rewritten by ``upgrade_entry``
EVALUATION_FILE = "evaluation.json"
BASELINE_CLASSES = (MajorityBaseline, LogisticBaseline, LightGBMBaseline)


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
    # files of the entry SmartMarket refuses to load (a pickle, an unknown kind): "name: reason"
    unsafe_files: tuple[str, ...] = ()

    @property
    def test_metrics(self) -> dict[str, float]:
        return dict(self.metadata.get("metrics", {}).get("test", {}))

    @property
    def skill(self) -> Skill | None:
        """The model's validation log-loss against the base rate (None: an ensemble, or not recorded)."""
        return skill_of(self.metadata.get("metrics") or {})

    @property
    def no_skill_warning(self) -> str | None:
        """One warning line when the entry has no skill or (an ensemble) can never produce a signal."""
        never = self.metadata.get("never_signals")
        if never:
            return f"warning: {self.model_id} can never produce a signal: {never}"
        return no_skill_line(self.model_id, self.skill)


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
                persist.dump(model.classifier, staging / MODEL_FILE, trusted=BASELINE_TRUSTED_TYPES)
                weights = staging / MODEL_FILE
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

    def set_stage(self, model_id: str, stage: str, *, note: str = "") -> ModelRecord:
        """Set the stage (no checks: ``promote`` and ``retire`` are the guarded ways); the change is logged."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}: use one of {STAGES}")
        record = self.show(model_id)
        change = {"stage": stage, "at": datetime.now(UTC).isoformat(timespec="seconds"), "note": note}
        meta = dict(record.metadata, stage=stage, stage_history=[*record.metadata.get("stage_history", []), change])
        _write_json(record.path / METADATA_FILE, meta)
        return self.show(record.model_id)

    def attach_evaluation(self, model_id: str, document: dict[str, Any]) -> Path:
        """Store an evaluation of ``model_id`` (``ops.promotion.evaluate_candidate``) beside its weights."""
        record = self.show(model_id)
        if document.get("candidate_id") != record.model_id:
            raise ValueError(f"the evaluation is of {document.get('candidate_id')!r}, not {record.model_id!r}")
        path = record.path / EVALUATION_FILE
        _write_json(path, document)
        return path

    def evaluation(self, model_id: str) -> dict[str, Any] | None:
        """The attached evaluation, or None."""
        path = self.show(model_id).path / EVALUATION_FILE
        return json.loads(path.read_text()) if path.is_file() else None

    def production(self, symbol: str, timeframe: str, kind: str) -> ModelRecord | None:
        """The production entry of (symbol, timeframe, kind), or None."""
        found = self.list(symbol=symbol, timeframe=timeframe, kind=kind, stage="production")
        return found[-1] if found else None

    def resolve(self, symbol: str, timeframe: str, kind: str) -> ModelRecord:
        """What to use for (symbol, timeframe, kind): the production entry, else the latest candidate."""
        return self.production(symbol, timeframe, kind) or self.latest(symbol, timeframe, kind, stage="candidate")

    def promotion_problems(self, model_id: str, *, force: bool = False) -> list[str]:
        """Why ``model_id`` cannot be promoted now (empty: it can)."""
        record = self.show(model_id)
        if record.stage == "production":
            return [f"{record.model_id} is already in production"]
        doc = self.evaluation(record.model_id)
        if doc is None:
            return ["no evaluation is attached: run `smartmarket models evaluate-candidate ID` first"]
        current = self.production(record.symbol, record.timeframe, record.kind)
        current_id = current.model_id if current else None
        problems = []
        if doc.get("against") != current_id:
            problems.append(
                f"the evaluation compared against {doc.get('against') or 'no production entry'}, but production is now "
                f"{current_id or 'empty'}: evaluate again"
            )  # fmt: skip
        never = record.metadata.get("never_signals")
        if never and not force:
            problems.append(f"it can never produce a signal ({never}); --force promotes it anyway")
        if doc.get("verdict") == "production better" and not force:
            problems.append(
                f"the evaluation found production significantly better (p = {doc.get('test', {}).get('p_value')})"
            )
        return problems

    def promote(self, model_id: str, *, force: bool = False) -> tuple[ModelRecord, ModelRecord | None]:
        """Make ``model_id`` the production entry of its series and kind; returns it and the one it retired.

        Refuses (``ValidationError``) without an attached, current evaluation; ``force`` only overrides an
        evaluation that found production better, or an artifact that can never produce a signal (recorded in the
        stage history)."""
        record = self.show(model_id)
        problems = self.promotion_problems(record.model_id, force=force)
        if problems:
            raise ValidationError(
                f"cannot promote {record.model_id}: " + "; ".join(problems), where=str(self.directory),
                hint="smartmarket models evaluate-candidate ID, then smartmarket models promote ID",
            )  # fmt: skip
        doc = self.evaluation(record.model_id) or {}
        previous = self.production(record.symbol, record.timeframe, record.kind)
        # retire first: a crash in between leaves no production entry, never two
        retired = None
        if previous is not None:
            retired = self.set_stage(previous.model_id, "retired", note=f"replaced by {record.model_id}")
        note = f"evaluation verdict: {doc.get('verdict')}" + (" (forced)" if force else "")
        return self.set_stage(record.model_id, "production", note=note), retired

    def retire(self, model_id: str) -> ModelRecord:
        """Take an entry out of use (a production entry leaves its series without one until another is promoted)."""
        record = self.show(model_id)
        if record.stage == "retired":
            return record
        return self.set_stage(record.model_id, "retired", note="retired by hand")

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

    def latest(self, symbol: str, timeframe: str, kind: str | None = None, *, stage: str | None = None) -> ModelRecord:
        records = self.list(symbol=symbol, timeframe=timeframe, kind=kind, stage=stage)
        if not records:
            what = f"{kind or 'any'} model for {symbol} {timeframe}" + (f" in stage {stage}" if stage else "")
            raise NotFoundError(f"no {what}", where=str(self.directory), hint="train one with `smartmarket train`")
        return records[-1]

    def check(self, model_id: str) -> ModelRecord:
        """The entry, after refusing (``UnsafeFileError``, one line naming the file) one holding a pickle or a file
        of an unknown kind. Reads no model file."""
        record = self.show(model_id)
        refuse_unsafe_files(record.path, hint=persist.UPGRADE_HINT)
        return record

    def load(self, model_id: str) -> TrainedModel:
        """Rebuild the trained model: same weights, same predictions. Nothing in the entry can run code: its
        folder is checked first (``check``) and the baseline file is read with a fixed list of trusted types."""
        record = self.check(model_id)
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
            classifier = persist.load(record.path / MODEL_FILE, trusted=BASELINE_TRUSTED_TYPES, expect=BASELINE_CLASSES)
            if classifier.kind != record.kind:
                raise DataFormatError(
                    f"{MODEL_FILE} holds a {classifier.kind} model, the metadata says {record.kind}",
                    where=str(record.path), hint="the entry was altered: delete it or restore it from a backup",
                )  # fmt: skip
        return TrainedModel(
            kind=record.kind,
            classifier=classifier,
            feature_columns=columns,
            groups=groups,
            label_config=LabelConfig.from_dict(meta["label_config"]),
            symbol=meta.get("symbol", ""),
            timeframe=meta.get("timeframe", ""),
            feature_set=meta.get("feature_set", ""),
            symbols=tuple(meta.get("symbols", ())),
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

    def upgrade_entry(self, path: Path) -> str | None:
        """Rewrite one entry of an earlier version (``model.joblib``, a pickle) as ``model.skops``, atomically, and
        delete the pickle; returns what was done, or None when the entry holds no ``model.joblib``.

        Unpickling runs the file's code: call this only on the user's explicit trust (``--trust-pickle``)."""
        old = Path(path) / JOBLIB_FILE
        if not old.is_file():
            return None
        meta = json.loads((Path(path) / METADATA_FILE).read_text())
        classifier = persist.load_trusted_pickle(old)
        if not isinstance(classifier, BASELINE_CLASSES) or classifier.kind != meta.get("kind"):
            raise DataFormatError(
                f"{JOBLIB_FILE} holds a {type(classifier).__name__}, not the {meta.get('kind')} baseline its metadata "
                "names", where=str(path), hint="delete the entry",
            )  # fmt: skip
        persist.dump(classifier, Path(path) / MODEL_FILE, trusted=BASELINE_TRUSTED_TYPES)
        change = {"from": JOBLIB_FILE, "to": MODEL_FILE, "at": datetime.now(UTC).isoformat(timespec="seconds")}
        _write_json(Path(path) / METADATA_FILE, dict(meta, format_history=[*meta.get("format_history", []), change]))
        old.unlink()
        return f"{JOBLIB_FILE} → {MODEL_FILE}"

    def _record(self, path: Path) -> ModelRecord:
        meta = json.loads((path / METADATA_FILE).read_text())
        unsafe = tuple(f"{p.relative_to(path)}: {reason}" for p, reason in find_unsafe_files(path))
        return ModelRecord(
            model_id=path.name,
            kind=meta.get("kind", ""),
            symbol=_symbol_slug(meta.get("symbol", "")),
            timeframe=_timeframe_slug(meta.get("timeframe", "")),
            stage=meta.get("stage", "candidate"),
            created=meta.get("created", ""),
            path=path,
            metadata=meta,
            unsafe_files=unsafe,
        )


def _write_json(path: Path, document: dict[str, Any]) -> None:
    """Replace ``path`` atomically (a crash leaves the old or the new file, never half of one)."""
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")  # a .json name: a leftover is never "unknown"
    tmp.write_text(json.dumps(document, indent=2, default=str))
    os.replace(tmp, path)


__all__ = [
    "EVALUATION_FILE",
    "JOBLIB_FILE",
    "METADATA_FILE",
    "MODEL_FILE",
    "WEIGHTS_FILE",
    "ModelRecord",
    "Registry",
]
