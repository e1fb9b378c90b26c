"""Copy candles and events between any two stores, in chunks, resumable and verified.

Each candle series is copied in time chunks of ``chunk_rows`` candles; events in blocks of sequence numbers.
After a chunk is written (and, with ``verify``, read back from the target and compared) its end is recorded
in a checkpoint file written atomically. A process killed at any moment resumes from the checkpoint with no
loss: candle writes are idempotent (a re-copied chunk counts as *unchanged*, never duplicated), and events
resume from the target's own last sequence number, since each event block is written in one transaction.
A candle in the target that differs from the source is a conflict and stops the migration: nothing is
overwritten silently.

The checkpoint holds the *redacted* source and target URLs (no password: the one rule of
``core.redaction``), is written with mode 0600, and is named after the redacted URLs; a resume reconnects with
the URLs given again on the command line (or from the environment) and refuses a checkpoint recorded for other
stores. A checkpoint that cannot be read is refused with its file name and the fix.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smartmarket.core.errors import ConfigError, StoreError
from smartmarket.core.redaction import redact_url
from smartmarket.core.types import Timeframe
from smartmarket.store.base import SeriesInfo, Store
from smartmarket.store.checksum import EMPTY, Summary, summarize_candles, summarize_events

ProgressFn = Callable[[str, int, int], None]
"""``progress(task, done, total)``: called after each chunk, ``task`` names a series or ``events``."""


@dataclass
class SeriesResult:
    """What happened to one series (or to the event log, ``name == "events"``)."""

    name: str
    source: Summary = EMPTY
    target: Summary = EMPTY
    copied: int = 0
    unchanged: int = 0
    chunks: int = 0
    chunk_mismatches: list[str] = field(default_factory=list)
    resumed_from: int | None = None

    @property
    def verified(self) -> bool:
        return not self.chunk_mismatches and self.source.matches(self.target)


@dataclass
class MigrationReport:
    source_url: str  # redacted: no password (the report is printed)
    target_url: str
    results: list[SeriesResult] = field(default_factory=list)
    verify: bool = True

    @property
    def ok(self) -> bool:
        return all(r.verified for r in self.results) if self.verify else True


class Checkpoint:
    """Progress of one source→target migration, kept in a JSON file (mode 0600) replaced atomically on every
    save. It records the redacted URLs only: reconnecting needs the URLs given again."""

    MODE = 0o600

    def __init__(self, path: Path, source_url: str, target_url: str) -> None:
        self.path = path
        self.state: dict[str, Any] = {
            "source": redact_url(source_url),
            "target": redact_url(target_url),
            "series": {},
            "events_seq": 0,
        }

    @staticmethod
    def path_for(directory: Path, source_url: str, target_url: str) -> Path:
        """The checkpoint file of a migration, named after the redacted URLs (a password never shapes it)."""
        key = f"{redact_url(source_url)}\n{redact_url(target_url)}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        return directory / f"migration-{digest}.json"

    def load(self) -> bool:
        """Read the saved progress; ``False`` when there is none. A file that is not a checkpoint of this
        migration raises ``ConfigError`` naming it and the fix."""
        if not self.path.exists():
            return False
        fix = "delete that file to start the migration over, or run without --resume"
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else type(exc).__name__
            raise ConfigError(
                f"the migration checkpoint cannot be read ({reason})", where=str(self.path), hint=fix
            ) from None
        if (
            not isinstance(state, dict)
            or not isinstance(state.get("series"), dict)
            or not isinstance(state.get("events_seq", 0), int)
            or not all(isinstance(v, int) for v in state["series"].values())
        ):
            raise ConfigError("the migration checkpoint is damaged (unexpected content)", where=str(self.path),
                              hint=fix)  # fmt: skip
        for side in ("source", "target"):
            if state.get(side) != self.state[side]:
                raise ConfigError(
                    f"the migration checkpoint was recorded for another {side} ({state.get(side)!r}, "
                    f"not {self.state[side]!r})",
                    where=str(self.path),
                    hint=fix,
                )
        state.setdefault("events_seq", 0)
        self.state = state
        return True

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, self.MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), self.MODE)  # an older file of that name may have had another mode
            fh.write(json.dumps(self.state, sort_keys=True))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def series_done_until(self, key: str) -> int | None:
        value = self.state["series"].get(key)
        return int(value) if value is not None else None

    def mark_series(self, key: str, done_until_ts: int) -> None:
        self.state["series"][key] = done_until_ts
        self.save()

    def mark_events(self, seq: int) -> None:
        self.state["events_seq"] = seq
        self.save()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def series_key(symbol: str, timeframe: Timeframe) -> str:
    return f"{symbol}/{timeframe.value}"


def migrate(
    source: Store,
    target: Store,
    *,
    checkpoint_path: Path,
    symbols: Sequence[str] | None = None,
    resume: bool = False,
    verify: bool = True,
    chunk_rows: int = 200_000,
    event_chunk: int = 50_000,
    include_events: bool = True,
    progress: ProgressFn | None = None,
) -> MigrationReport:
    """Copy every stored series (optionally only ``symbols``) and the event log from ``source`` to ``target``."""
    checkpoint = Checkpoint(checkpoint_path, source.url, target.url)
    if resume:
        checkpoint.load()
    report = MigrationReport(source_url=redact_url(source.url), target_url=redact_url(target.url), verify=verify)
    wanted = {s.upper() for s in symbols} if symbols else None
    for info in source.list_series():
        if wanted is not None and info.symbol not in wanted:
            continue
        report.results.append(_copy_series(source, target, info, checkpoint, verify, chunk_rows, progress))
    if include_events and wanted is None:
        report.results.append(_copy_events(source, target, checkpoint, verify, event_chunk, progress))
    if report.ok:
        checkpoint.remove()
    return report


def _copy_series(
    source: Store,
    target: Store,
    info: SeriesInfo,
    checkpoint: Checkpoint,
    verify: bool,
    chunk_rows: int,
    progress: ProgressFn | None,
) -> SeriesResult:
    key = series_key(info.symbol, info.timeframe)
    result = SeriesResult(name=key)
    span = chunk_rows * info.timeframe.ms
    end_all = info.last_ts + info.timeframe.ms
    done_until = checkpoint.series_done_until(key)
    result.resumed_from = done_until
    start = info.first_ts
    while start < end_all:
        stop = min(start + span, end_all)
        chunk = source.read_candles(info.symbol, info.timeframe, start, stop)
        chunk_summary = summarize_candles(chunk)
        result.source = result.source.combine(chunk_summary)
        if done_until is not None and stop <= done_until:
            # Already copied by an earlier run: count it on the target side after verification only.
            if verify:
                result.target = result.target.combine(
                    summarize_candles(target.read_candles(info.symbol, info.timeframe, start, stop))
                )
            start = stop
            continue
        if not chunk.empty:
            written = target.write_candles(info.symbol, info.timeframe, chunk, synthetic=info.synthetic)
            if written.conflict_count:
                first = int(written.conflicts["ts"].iloc[0])
                raise StoreError(
                    f"{written.conflict_count} candles of {key} differ in the target (first ts={first})",
                    where=redact_url(target.url),
                    hint="the target already holds different data; delete that range there or migrate elsewhere",
                )
            result.copied += written.inserted
            result.unchanged += written.unchanged
        if verify:
            copied = summarize_candles(target.read_candles(info.symbol, info.timeframe, start, stop))
            result.target = result.target.combine(copied)
            if not copied.matches(chunk_summary):
                result.chunk_mismatches.append(f"{key} [{start}, {stop}): source {chunk_summary} target {copied}")
        result.chunks += 1
        checkpoint.mark_series(key, stop)
        if progress:
            progress(key, stop - info.first_ts, end_all - info.first_ts)
        start = stop
    return result


def _copy_events(
    source: Store,
    target: Store,
    checkpoint: Checkpoint,
    verify: bool,
    event_chunk: int,
    progress: ProgressFn | None,
) -> SeriesResult:
    result = SeriesResult(name="events")
    last = source.last_seq()
    # Each block is one transaction in the target, so its own last_seq is the true resume point.
    done = target.last_seq()
    if done > last:
        raise StoreError(
            f"the target's event log ends at seq {done}, past the source's {last}",
            where=redact_url(target.url),
            hint="migrate events into an empty event log",
        )
    result.resumed_from = done or None
    seq = 1
    while seq <= last:
        upper = min(seq + event_chunk - 1, last)
        block = source.read_events(seq, upper)
        block_summary = summarize_events(block)
        result.source = result.source.combine(block_summary)
        if upper > done:
            fresh = [e for e in block if e.seq > done]
            if fresh:
                result.copied += target.import_events(fresh)
            checkpoint.mark_events(upper)
            result.chunks += 1
        if verify:
            copied = summarize_events(target.read_events(seq, upper))
            result.target = result.target.combine(copied)
            if not copied.matches(block_summary):
                result.chunk_mismatches.append(f"events [{seq}, {upper}]: source {block_summary} target {copied}")
        if progress:
            progress("events", upper, last)
        seq = upper + 1
    return result


__all__ = ["Checkpoint", "MigrationReport", "SeriesResult", "migrate", "series_key"]
