"""Pickle-free persistence of fitted models: skops files read with a fixed list of trusted types.

Every fitted object SmartMarket saves (the tabular baselines in the model registry, the fitted signal system of
an ensemble artifact) is written with ``skops.io``: a zip of a JSON schema and NumPy ``.npy`` arrays (read with
``allow_pickle=False``). Loading rebuilds objects only of types that skops trusts by default (Python builtins,
NumPy, scikit-learn estimators) and of the SmartMarket types the caller names in a *fixed* list; a file holding
any other type is refused before anything is built (``UnsafeFileError``, one line naming the file and the type).
No code from the file runs.

LightGBM models are kept in LightGBM's own text model format (:class:`LightGBMText`: the string from
``Booster.model_to_string()`` plus the class labels), never as a pickled ``LGBMClassifier``.

Registries written by earlier versions held joblib pickles; :func:`load_trusted_pickle` is the one place that
unpickles, used only by ``smartmarket models upgrade --trust-pickle`` (the user's explicit trust).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import skops.io as sio
from skops.io.exceptions import UntrustedTypesFoundException

from smartmarket.core.errors import DataFormatError, NotFoundError
from smartmarket.core.safe_files import UnsafeFileError

SKOPS_SUFFIX = ".skops"
UPGRADE_HINT = (
    "if you wrote this registry yourself, run `smartmarket models upgrade --trust-pickle` once; "
    "otherwise delete the entry (loading a pickle runs its code)"
)

T = TypeVar("T")


class LightGBMText:
    """A fitted LightGBM classifier as LightGBM's text model format: same ``predict_proba`` and ``classes_``.

    The text holds the trees up to the best iteration (``model_to_string()`` saves the best iteration when early
    stopping found one), so predictions equal those of the ``LGBMClassifier`` it came from."""

    def __init__(self, model: str, classes: npt.ArrayLike, best_iteration: int | None = None) -> None:
        if not isinstance(model, str) or not model.startswith("tree"):
            raise ValueError("not a LightGBM text model")
        self.model = model
        self.classes_ = np.asarray(classes)
        self.best_iteration_ = None if best_iteration is None else int(best_iteration)
        self._booster = lgb.Booster(model_str=model)

    @classmethod
    def from_classifier(cls, classifier: lgb.LGBMClassifier) -> LightGBMText:
        best = getattr(classifier, "best_iteration_", None)
        return cls(classifier.booster_.model_to_string(), np.asarray(classifier.classes_), best)

    def predict_proba(self, x: npt.ArrayLike) -> npt.NDArray[np.float64]:
        raw = np.asarray(self._booster.predict(np.asarray(x)), dtype=np.float64)
        if raw.ndim == 1:  # binary: LightGBM gives P(class 1), the classifier stacks both columns
            return np.vstack((1.0 - raw, raw)).transpose()
        return raw

    def __getstate__(self) -> dict[str, Any]:
        return {"model": self.model, "classes_": self.classes_, "best_iteration_": self.best_iteration_}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["model"], state["classes_"], state.get("best_iteration_"))  # type: ignore[misc]


def as_lightgbm_text(classifier: Any) -> Any:
    """``classifier`` as :class:`LightGBMText` when it is a fitted ``LGBMClassifier``, else unchanged."""
    if isinstance(classifier, lgb.LGBMClassifier):
        return LightGBMText.from_classifier(classifier)
    return classifier


LIGHTGBM_TEXT_TYPE = f"{LightGBMText.__module__}.{LightGBMText.__qualname__}"


def dump(obj: object, path: Path, *, trusted: Iterable[str]) -> None:
    """Write ``obj`` as a skops file at ``path`` (atomically). Refuses (``TypeError``, a bug) an object holding a
    type outside ``trusted`` and skops' defaults: such a file could not be loaded again."""
    data = sio.dumps(obj)
    extra = sorted(set(sio.get_untrusted_types(data=data)) - set(trusted))
    if extra:
        raise TypeError(f"{type(obj).__name__} holds types outside the trusted list: {', '.join(extra)}")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".partial" + SKOPS_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path, *, trusted: Iterable[str], expect: type[T] | tuple[type, ...], hint: str = UPGRADE_HINT) -> T:
    """Read a skops file, building only trusted types; the result must be an instance of ``expect``.

    One-line errors: ``NotFoundError`` (missing), ``UnsafeFileError`` (a type outside the list),
    ``DataFormatError`` (not a readable skops file, or the wrong kind of object)."""
    path, allowed = Path(path), tuple(sorted(set(trusted)))
    if not path.is_file():
        raise NotFoundError(f"{path.name} is missing", where=str(path.parent), hint=hint)
    try:
        obj = sio.load(path, trusted=list(allowed))
    except UntrustedTypesFoundException:
        types = ", ".join(sorted(set(_untrusted(path)) - set(allowed)))
        raise UnsafeFileError(
            f"refusing to load {path.name}: it holds types SmartMarket does not trust ({types or 'unknown'})",
            where=str(path), hint=hint,
        ) from None  # fmt: skip
    except Exception as exc:  # a damaged or foreign file: zip, JSON or schema errors of any kind
        first = (str(exc).splitlines() or [""])[0][:160]
        raise DataFormatError(
            f"{path.name} is not a readable SmartMarket model file ({type(exc).__name__}: {first})",
            where=str(path), hint=hint,
        ) from None  # fmt: skip
    if not isinstance(obj, expect):
        raise DataFormatError(
            f"{path.name} holds a {type(obj).__name__}, not what SmartMarket saves there", where=str(path), hint=hint
        )
    return obj  # type: ignore[return-value]


def _untrusted(path: Path) -> list[str]:
    try:
        return list(sio.get_untrusted_types(file=path))
    except Exception:
        return []


def load_trusted_pickle(path: Path) -> Any:
    """Unpickle ``path`` (runs whatever code it holds): only for ``models upgrade --trust-pickle``."""
    import joblib  # the only unpickling in SmartMarket, behind an explicit --trust-pickle

    return joblib.load(path)


__all__ = [
    "LIGHTGBM_TEXT_TYPE",
    "SKOPS_SUFFIX",
    "UPGRADE_HINT",
    "LightGBMText",
    "as_lightgbm_text",
    "dump",
    "load",
    "load_trusted_pickle",
]
