"""Exact replay: re-run the pipeline from the event log and compare what it regenerates with what was recorded.

``replay(store, spec)`` reads the recorded ``CandleClosed`` events in log order and feeds them, one candle at a
time, through the same stage code the live pipeline runs (features → predictions → signals → risk, with the
same model/artifact versions and trading set-up), then the paper broker and the portfolio, without a bus and
without writing anything. Derived event ids are deterministic (orders and fills included: the paper broker's
ids derive from the client order id, never from a process's counter), so every regenerated event has the id
of the one the live run recorded; each pair is compared field by field (all fields but ``ts_init``):
``SignalGenerated``, ``SubmitOrder``, ``RiskRejected``, and for a paper-trading run ``OrderSubmitted``,
``OrderRejected``, ``OrderFilled``, ``OrderCancelled`` and ``PositionChanged``. (An exchange's fills cannot be
regenerated, and the orders that follow them neither: for a run through a live broker only signals are compared.)

:func:`replay_run` rebuilds the spec from the run's ``RunStarted`` record (``engine.run_record``): the latest
run in the range, or one named by id. When the log holds other runs, the window defaults to this run's part.

Differences: ``changed`` (same id, different content), ``missing`` (regenerated, not in the log: lost or never
recorded) and ``extra`` (in the log, not regenerated: a duplicate, or another version's event). ``from_seq``
/ ``to_seq`` / ``start`` / ``end`` bound the candles whose outputs are compared; earlier candles are still
folded (the state at the window's start is the live state there).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from smartmarket.core.errors import ConfigError
from smartmarket.core.events import CandleClosed, Message, OrderFilled, PredictionMade, RunStarted, SignalGenerated
from smartmarket.pipeline.run_record import find_run, recorded_runs, spec_from_run
from smartmarket.pipeline.stages import ChainCache
from smartmarket.pipeline.stages.base import differing_fields, same_payload
from smartmarket.pipeline.stages.execution import ExecutionStage
from smartmarket.pipeline.stages.features import FeaturesStage
from smartmarket.pipeline.stages.portfolio import PortfolioStage
from smartmarket.pipeline.stages.predictions import PredictionsStage
from smartmarket.pipeline.stages.risk import RiskStage
from smartmarket.pipeline.stages.signals import SignalInputs, SignalsStage
from smartmarket.pipeline.stages.spec import PipelineSpec
from smartmarket.store.base import EventStore

DECISION_TYPES: tuple[str, ...] = ("SignalGenerated", "SubmitOrder", "RiskRejected")
"""What any run's replay compares."""
EXECUTION_TYPES: tuple[str, ...] = (
    "OrderSubmitted", "OrderRejected", "OrderFilled", "OrderCancelled", "PositionChanged",
)  # fmt: skip
"""What the replay of a paper-trading run compares too (the paper broker's answers and the positions)."""
COMPARED_TYPES: tuple[str, ...] = DECISION_TYPES + EXECUTION_TYPES


@dataclass(frozen=True)
class Difference:
    """One event that does not replay identically."""

    kind: Literal["changed", "missing", "extra"]
    type: str
    symbol: str
    event_id: str
    ts_event: int
    fields: tuple[str, ...] = ()
    recorded: dict[str, Any] | None = None
    regenerated: dict[str, Any] | None = None

    def describe(self) -> str:
        what = f"{self.type} {self.symbol} ts_event={self.ts_event} id={self.event_id}"
        if self.kind == "changed":
            parts = []
            for name in self.fields:
                old = (self.recorded or {}).get(name)
                new = (self.regenerated or {}).get(name)
                parts.append(f"{name}: recorded {old!r} != replayed {new!r}")
            return f"changed {what}: " + "; ".join(parts)
        if self.kind == "missing":
            return f"missing {what}: replay produced it, the log does not hold it"
        return f"extra {what}: the log holds it, replay did not produce it"


@dataclass
class ReplayReport:
    candles: int = 0
    compared: dict[str, int] = field(default_factory=dict)
    differences: list[Difference] = field(default_factory=list)
    run_id: str | None = None  # the recorded run replayed (replay_run)

    @property
    def identical(self) -> bool:
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "candles": self.candles,
            "compared": self.compared,
            "identical": self.identical,
            "differences": [vars(d) | {"description": d.describe()} for d in self.differences],
        }


class StageCores:
    """The stages' deterministic steps, called directly (no bus, no event log): replay and parity checks.

    Paper trading: the execution stage fills each order at the next candle's open, its answers go back to the
    risk stage's book, as on the bus, and the portfolio stage books each fill (``PositionChanged``)."""

    def __init__(self, spec: PipelineSpec) -> None:
        self.spec = spec
        self.risk = RiskStage(spec, None)
        self.execution = ExecutionStage(spec, None)
        self.portfolio = PortfolioStage(spec, None)
        self.chains: ChainCache | None = None
        if spec.trades_signals:
            chains = self.chains = ChainCache(spec)
            self.features = FeaturesStage(spec, chains, None)
            self.predictions = PredictionsStage(spec, chains, None)
            self.signals = SignalsStage(spec, chains, None)

    def on_candle(self, candle: CandleClosed) -> list[Message]:
        """Everything the pipeline derives from one candle, in order: fills due at its open, then features,
        predictions, the signal and the risk stage's verdict."""
        symbol = candle.symbol
        answers = self.execution.step(candle)
        for answer in answers:
            self.risk.learn(answer)
        positions = self._book(answers)
        derived: list[Message] = []
        signal: SignalGenerated | None = None
        if self.chains is not None:
            features = self.features.step(symbol, candle)
            predictions = self.predictions.step(symbol, features[0])  # type: ignore[arg-type]
            members = {p.member: p for p in predictions if isinstance(p, PredictionMade)}
            signals = self.signals.step(symbol, SignalInputs(features[0], members))  # type: ignore[arg-type]
            signal = signals[0]  # type: ignore[assignment]
            derived = [*features, *predictions, *signals]
        orders = self.risk.step(symbol, (candle, signal))
        later: list[Message] = []
        waiting = list(orders)
        while waiting:  # a protective exit fills inside this candle; the decision it held back follows (resume)
            filled = self.execution.step(waiting.pop(0))
            for answer in filled:
                self.risk.learn(answer)
            later.extend(filled)
            resumed = self.risk.resume(symbol) if filled else []
            orders.extend(resumed)
            waiting.extend(resumed)
        return [*answers, *positions, *derived, *orders, *later, *self._book(later)]

    def _book(self, answers: Sequence[Message]) -> list[Message]:
        """The portfolio stage's ``PositionChanged`` for each fill among ``answers``."""
        out: list[Message] = []
        for fill in answers:
            if isinstance(fill, OrderFilled) and fill.symbol in self.spec.symbols:
                out.extend(self.portfolio.step(fill.symbol, fill))
        return out


def _in_window(
    seq: int, ts_event: int, from_seq: int | None, to_seq: int | None, start: int | None, end: int | None
) -> bool:
    return (
        (from_seq is None or seq >= from_seq)
        and (to_seq is None or seq <= to_seq)
        and (start is None or ts_event >= start)
        and (end is None or ts_event < end)
    )


def replay(
    store: EventStore, spec: PipelineSpec, *, from_seq: int | None = None, to_seq: int | None = None,
    start: int | None = None, end: int | None = None, types: Sequence[str] = COMPARED_TYPES,
) -> ReplayReport:  # fmt: skip
    """Regenerate and compare the events of ``types`` (see the module docstring). An event belongs to the window
    when the candle that started its chain (its ``correlation_id``) does: the fill of an order decided on the
    window's last candle is compared though it comes at the next candle's open."""
    report = ReplayReport()
    compared = tuple(types)
    symbols = set(spec.symbols)
    cores = StageCores(spec)
    recorded: dict[str, Message] = {}
    window_candles: set[str] = set()  # correlation ids of candles inside the window
    regenerated: dict[str, Message] = {}
    seen: set[str] = set()
    candles: list[tuple[int, CandleClosed]] = []
    for stored in store.read_events(types=["CandleClosed"]):
        candle = stored.message
        if not isinstance(candle, CandleClosed) or candle.symbol not in symbols or candle.event_id in seen:
            continue
        if candle.timeframe != spec.timeframe:
            continue
        seen.add(candle.event_id)
        candles.append((stored.seq, candle))
    # The stages fold each symbol's candles in time order, whatever order the log got them in: after a lost bus a
    # candle re-published from the outbox is recorded after later ones (stable: log order within one time).
    candles.sort(key=lambda item: item[1].ts)
    for seq, candle in candles:
        report.candles += 1
        if _in_window(seq, candle.ts_event, from_seq, to_seq, start, end):
            window_candles.add(candle.event_id)
        for message in cores.on_candle(candle):
            if message.type_name in compared:
                regenerated.setdefault(message.event_id, message)
    regenerated = {i: m for i, m in regenerated.items() if m.correlation_id in window_candles}
    for stored in store.read_events(types=list(compared)):
        m = stored.message
        if getattr(m, "symbol", None) in symbols and m.correlation_id in window_candles:
            recorded.setdefault(m.event_id, m)
    report.differences = compare(recorded.values(), regenerated.values())
    for m in regenerated.values():
        report.compared[m.type_name] = report.compared.get(m.type_name, 0) + 1
    return report


def replay_run(
    store: EventStore, registry_dir: str | Path, *, run_id: str | None = None, symbols: Sequence[str] | None = None,
    from_seq: int | None = None, to_seq: int | None = None, start: int | None = None, end: int | None = None,
) -> ReplayReport:  # fmt: skip
    """Replay a recorded run: ``run_id`` (an id or unique prefix), else the latest ``RunStarted`` recorded before the
    range's last candle, covering ``symbols``; its spec comes from the record (``spec_from_run``), artifacts from
    ``registry_dir``. With no ``from_seq``/``start`` (``to_seq``/``end``) and other runs in the log, the window
    starts at this run's record (ends before the next other run's). Raises ``ConfigError`` when the log records
    no such run."""
    bound = to_seq  # the run record sits before its candles in the log: bound it by seq, not by candle time
    if bound is None and (start is not None or end is not None):
        in_range = [e.seq for e in store.read_events(types=["CandleClosed"], start=start, end=end)]
        bound = max(in_range, default=None)
    found = find_run(store, run_id=run_id, symbols=symbols or (), to_seq=bound)
    if found is None:
        raise ConfigError(
            "the event log records no run start (RunStarted)" + (f" covering {', '.join(symbols)}" if symbols else ""),
            hint="a log written before runs were recorded: give --artifact ID (or production) and the run's options",
        )
    run = found.message
    assert isinstance(run, RunStarted)
    spec = spec_from_run(run, registry_dir, symbols=symbols)
    others = [e for e in recorded_runs(store) if e.message.event_id != run.event_id]
    if from_seq is None and start is None and any(e.seq < found.seq for e in others):
        from_seq = found.seq
    if to_seq is None and end is None:
        after = [e.seq for e in others if e.seq > found.seq]
        to_seq = min(after) - 1 if after else None
    types = COMPARED_TYPES if run.broker == "paper" else ("SignalGenerated",)
    report = replay(store, spec, from_seq=from_seq, to_seq=to_seq, start=start, end=end, types=types)
    report.run_id = run.run_id
    return report


def compare(recorded: Iterable[Message], regenerated: Iterable[Message]) -> list[Difference]:
    """Pair events by id and list every difference, in event time order."""
    old = {m.event_id: m for m in recorded}
    new = {m.event_id: m for m in regenerated}
    out: list[Difference] = []
    for event_id, m in new.items():
        r = old.get(event_id)
        if r is None:
            out.append(Difference("missing", m.type_name, _symbol(m), event_id, m.ts_event, regenerated=m.to_dict()))
        elif not same_payload(r, m):
            out.append(
                Difference(
                    "changed", m.type_name, _symbol(m), event_id, m.ts_event, tuple(differing_fields(r, m)),
                    recorded=r.to_dict(), regenerated=m.to_dict(),
                )
            )  # fmt: skip
    for event_id, r in old.items():
        if event_id not in new:
            out.append(Difference("extra", r.type_name, _symbol(r), event_id, r.ts_event, recorded=r.to_dict()))
    return sorted(out, key=lambda d: (d.ts_event, d.type, d.event_id))


def _symbol(message: Message) -> str:
    return str(getattr(message, "symbol", ""))


__all__ = [
    "COMPARED_TYPES",
    "DECISION_TYPES",
    "EXECUTION_TYPES",
    "Difference",
    "ReplayReport",
    "StageCores",
    "compare",
    "replay",
    "replay_run",
]
