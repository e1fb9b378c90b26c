"""``smartmarket doctor``: is this installation able to work? Each check says ok / warn / fail and the fix.

Checks: the store (connect, tables, a read), the event bus (``SMARTMARKET_BUS``: a Redis URL is PINGed; unset or
``memory://`` means the in-process bus), the model registry (every model's metadata readable), free disk space
under ``SMARTMARKET_HOME`` and the size of the quarantine. Nothing is written, except that opening a
PostgreSQL store creates its tables when they are missing, as any command would.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from smartmarket.core.config import Settings
from smartmarket.core.errors import SmartMarketError
from smartmarket.core.redaction import redact_text, redact_url, url_secrets
from smartmarket.data.quarantine import SUFFIX as QUARANTINE_SUFFIX
from smartmarket.store.url import open_store

Status = Literal["ok", "warn", "fail"]
BUS_ENV = "SMARTMARKET_BUS"
DEFAULT_MIN_FREE_BYTES = 1 << 30  # 1 GiB
DEFAULT_QUARANTINE_WARN_BYTES = 100 << 20  # 100 MiB
_METADATA_FILE = "metadata.json"  # the registry's (smartmarket.models.registry.METADATA_FILE; importing it loads torch)


@dataclass(frozen=True, slots=True)
class Check:
    """One finding: ``name`` of the part checked, its ``status``, what was seen and, unless ok, the fix."""

    name: str
    status: Status
    detail: str
    fix: str = ""


def check_store(url: str) -> Check:
    """Connect, list the series (tables present), read the event log head and the last candle of one series."""
    shown = redact_url(url)
    if url.startswith("duckdb:///") and ":memory:" not in url:
        from smartmarket.store.duckdb_store import database_path

        if not Path(database_path(url)).exists():
            return Check("store", "ok", f"{shown}: not created yet (the first ingest creates it)")
    try:
        with open_store(url, create=False) as store:
            series = store.list_series()
            last_seq = store.last_seq()
            if series:
                store.latest(series[0].symbol, series[0].timeframe, 1)
    except SmartMarketError as exc:
        locked = "locked" in exc.what
        return Check(
            "store",
            "warn" if locked else "fail",
            f"{shown}: {exc.what}",
            exc.hint or "check --store / SMARTMARKET_STORE",
        )
    except Exception as exc:  # a driver error no adapter translated: still a finding, not a crash
        detail = redact_text(f"{type(exc).__name__}: {exc}", also=url_secrets(url))
        return Check("store", "fail", f"{shown}: {detail}", "check --store / SMARTMARKET_STORE")
    candles = sum(s.count for s in series)
    return Check("store", "ok", f"{shown}: {len(series)} series, {candles:,} candles, events to seq {last_seq}")


def check_bus(url: str | None) -> Check:
    """PING the Redis bus named by ``url``; an unset URL or ``memory://`` is the in-process bus."""
    if not url or url.startswith("memory://"):
        return Check("bus", "ok", f"in-process bus ({BUS_ENV} {'not set' if not url else '= ' + redact_url(url)})")
    scheme = urlsplit(url).scheme
    if scheme not in ("redis", "rediss", "unix"):
        return Check("bus", "fail", f"unsupported bus URL {redact_url(url)}", f"set {BUS_ENV}=redis://host:6379/0")
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        return Check(
            "bus",
            "fail",
            f"cannot reach Redis at {redact_url(url)}: {redact_text(str(exc), also=url_secrets(url))}",
            f"start Redis or fix {BUS_ENV} (redis://host:6379/0)",
        )
    finally:
        client.close()
    return Check("bus", "ok", f"Redis at {redact_url(url)} answers PING")


def check_registry(registry_dir: Path) -> Check:
    """Every model folder (hidden staging folders aside) must hold readable JSON metadata."""
    if not registry_dir.is_dir():
        return Check("registry", "ok", f"{registry_dir}: no models yet")
    models = [p for p in sorted(registry_dir.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    broken: list[str] = []
    stages: dict[str, int] = {}
    production: dict[tuple[str, str, str], list[str]] = {}
    ensembles: set[tuple[str, str]] = set()
    for folder in models:
        try:
            meta = json.loads((folder / _METADATA_FILE).read_text(encoding="utf-8"))
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            broken.append(f"{folder.name} ({type(exc).__name__})")
            continue
        stage = str(meta.get("stage", "candidate"))
        stages[stage] = stages.get(stage, 0) + 1
        series = (str(meta.get("symbol", "")), str(meta.get("timeframe", "")))
        if meta.get("kind") == "ensemble" and stage != "retired":
            ensembles.add(series)
        if stage == "production":
            production.setdefault((*series, str(meta.get("kind", ""))), []).append(folder.name)
    if broken:
        return Check(
            "registry",
            "fail",
            f"{registry_dir}: unreadable metadata in {len(broken)} of {len(models)} models: {', '.join(broken[:3])}",
            "move the broken model folders out of the registry (or restore them from a backup)",
        )
    doubled = {key: ids for key, ids in production.items() if len(ids) > 1}
    if doubled:
        (symbol, timeframe, kind), ids = next(iter(doubled.items()))
        return Check(
            "registry", "fail", f"{len(ids)} production {kind} entries for {symbol} {timeframe}: {', '.join(ids)}",
            "retire all but one: smartmarket models retire ID",
        )  # fmt: skip
    by_stage = ", ".join(f"{n} {stage}" for stage, n in sorted(stages.items()))
    detail = f"{registry_dir}: {len(models)} models" + (f" ({by_stage})" if by_stage else "")
    unserved = sorted(series for series in ensembles if (*series, "ensemble") not in production)
    if unserved:
        names = ", ".join(f"{s} {tf}" for s, tf in unserved)
        return Check(
            "registry", "warn", f"{detail}; no production ensemble for {names}: `smartmarket run` refuses them",
            "evaluate and promote one: smartmarket models evaluate-candidate ID, then smartmarket models promote ID",
        )  # fmt: skip
    return Check("registry", "ok", detail)


def check_disk(home: Path, min_free_bytes: int = DEFAULT_MIN_FREE_BYTES) -> Check:
    """Free space on the file system holding ``home`` (its nearest existing parent when not created yet)."""
    probe = home
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    detail = f"{_size(free)} free under {home}"
    if free < min_free_bytes:
        return Check("disk", "warn", f"{detail} (below {_size(min_free_bytes)})", "free space or move SMARTMARKET_HOME")
    return Check("disk", "ok", detail)


def check_quarantine(quarantine_dir: Path, warn_bytes: int = DEFAULT_QUARANTINE_WARN_BYTES) -> Check:
    """How many rows wait in quarantine; warns when the files grow past ``warn_bytes``."""
    files = sorted(quarantine_dir.glob(f"*{QUARANTINE_SUFFIX}")) if quarantine_dir.is_dir() else []
    size = sum(f.stat().st_size for f in files)
    rows = sum(max(_count_lines(f) - 1, 0) for f in files)  # minus each file's header
    detail = f"{quarantine_dir}: {rows:,} rows in {len(files)} files, {_size(size)}"
    if size > warn_bytes:
        return Check(
            "quarantine",
            "warn",
            f"{detail} (above {_size(warn_bytes)})",
            "review the rejected rows (they name their reason), fix the source, then archive the files",
        )
    return Check("quarantine", "ok", detail)


def run_doctor(
    settings: Settings,
    *,
    bus_url: str | None = None,
    min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
    quarantine_warn_bytes: int = DEFAULT_QUARANTINE_WARN_BYTES,
) -> list[Check]:
    """Every check, in order. ``bus_url`` defaults to ``$SMARTMARKET_BUS``."""
    return [
        check_store(settings.store_url),
        check_bus(bus_url if bus_url is not None else os.environ.get(BUS_ENV)),
        check_registry(settings.registry_dir),
        check_disk(settings.home, min_free_bytes),
        check_quarantine(settings.quarantine_dir, quarantine_warn_bytes),
    ]


def _count_lines(path: Path) -> int:
    lines = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            lines += block.count(b"\n")
    return lines


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


__all__ = [
    "BUS_ENV",
    "DEFAULT_MIN_FREE_BYTES",
    "DEFAULT_QUARANTINE_WARN_BYTES",
    "Check",
    "Status",
    "check_bus",
    "check_disk",
    "check_quarantine",
    "check_registry",
    "check_store",
    "run_doctor",
]
