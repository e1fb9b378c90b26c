"""``smartmarket models upgrade``: rewrite a registry written by earlier versions (joblib pickles) once in the
pickle-free formats. Loading a pickle runs its code, so nothing is loaded without the caller's explicit trust."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from smartmarket.core.safe_files import find_unsafe_files, unsafe_files_error
from smartmarket.models.registry import Registry
from smartmarket.signals.fit import upgrade_artifact

TRUST_HINT = (
    "for a registry you wrote yourself, run `smartmarket models upgrade --trust-pickle` "
    "(it loads the pickles, which runs their code); otherwise delete the entry"
)
LEFT_HINT = "only model.joblib and system.joblib of earlier versions are upgraded: delete the file or entry"


@dataclass
class UpgradeReport:
    """``upgraded``: (entry id, what was rewritten); ``left``: files still unsafe afterwards, with the reason."""

    upgraded: list[tuple[str, str]] = field(default_factory=list)
    left: list[tuple[Path, str]] = field(default_factory=list)


def upgrade_registry(registry: Registry, *, trust_pickle: bool) -> UpgradeReport:
    """Upgrade every entry of ``registry`` holding an old pickle. Without ``trust_pickle`` an unsafe file is
    refused (``UnsafeFileError`` naming it) and nothing changes."""
    directory = Path(registry.directory)
    unsafe = find_unsafe_files(directory) if directory.is_dir() else []
    if unsafe and not trust_pickle:
        raise unsafe_files_error(unsafe, what="not upgrading", hint=TRUST_HINT)
    report = UpgradeReport()
    for folder in sorted({p.parent for p, _ in unsafe if p.parent.parent == directory}):
        if folder.name.startswith(".") or not (folder / "metadata.json").is_file():
            continue
        for what in (registry.upgrade_entry(folder), upgrade_artifact(folder)):
            if what is not None:
                report.upgraded.append((folder.name, what))
    report.left = find_unsafe_files(directory) if directory.is_dir() else []
    return report


__all__ = ["LEFT_HINT", "TRUST_HINT", "UpgradeReport", "upgrade_registry"]
