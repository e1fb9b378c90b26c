"""Events are immutable and round-trip exactly through JSON and msgpack."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError as PydanticValidationError

from smartmarket.core.errors import DataFormatError
from smartmarket.core.events import (
    MESSAGE_TYPES,
    CandleClosed,
    Message,
    OrderFilled,
    RunStarted,
    SignalGenerated,
    deterministic_event_id,
    from_json,
    from_msgpack,
    to_json,
    to_msgpack,
)

finite = st.floats(allow_nan=False, allow_infinity=False)
any_float = st.floats(allow_nan=False)  # includes ±inf and subnormals
ints = st.integers(min_value=0, max_value=2**62)


def _roundtrips(msg: Message) -> None:
    assert from_json(to_json(msg)) == msg
    assert from_msgpack(to_msgpack(msg)) == msg
    assert type(from_json(to_json(msg))) is type(msg)


@given(ts=ints, o=any_float, h=any_float, lo=finite, c=finite, v=finite)
def test_candle_closed_roundtrips_exactly(ts: int, o: float, h: float, lo: float, c: float, v: float) -> None:
    _roundtrips(CandleClosed(ts_event=ts + 60_000, symbol="BTCUSDT", timeframe="1m", ts=ts,
                             open=o, high=h, low=lo, close=c, volume=v, correlation_id="c1"))


@given(conf=st.floats(min_value=0, max_value=1), probs=st.dictionaries(st.text(max_size=8), finite, max_size=4))
def test_signal_with_nested_mappings_roundtrips(conf: float, probs: dict[str, float]) -> None:
    sig = SignalGenerated(
        ts_event=1, symbol="ETHUSDT", timeframe="1h", ts=0, direction="short", confidence=conf,
        strength="weak", regime="ranging", member_probabilities={"transformer": probs},
        member_weights=probs, reason="test", causation_id="abc",
    )
    _roundtrips(sig)


def test_events_are_immutable() -> None:
    fill = OrderFilled(ts_event=5, symbol="BTCUSDT", side="buy", quantity=0.5, price=100.0, fee=0.05,
                       client_order_id="o1")
    with pytest.raises(PydanticValidationError):
        fill.price = 1.0  # type: ignore[misc]


def test_serialised_form_names_type_and_version() -> None:
    fill = OrderFilled(ts_event=5, symbol="BTCUSDT", side="buy", quantity=0.5, price=100.0, fee=0.05,
                       client_order_id="o1")
    data = fill.to_dict()
    assert data["type"] == "OrderFilled"
    assert data["version"] == 1
    assert set(MESSAGE_TYPES) >= {"CandleClosed", "SignalGenerated", "SubmitOrder", "OrderFilled"}


def test_nan_survives_json_as_nan() -> None:
    sig = SignalGenerated(ts_event=1, symbol="X", timeframe="1h", ts=0, direction="flat",
                          confidence=float("nan"), strength="none", regime="unknown")
    back = from_json(to_json(sig))
    assert isinstance(back, SignalGenerated) and math.isnan(back.confidence)


def test_bad_payloads_fail_with_a_clear_error() -> None:
    with pytest.raises(DataFormatError, match="unknown event type"):
        from_json('{"type": "Nope", "ts_event": 1}')
    with pytest.raises(DataFormatError, match="undecodable"):
        from_json("{not json")
    with pytest.raises(DataFormatError, match="undecodable"):
        from_msgpack(b"\xc1")
    with pytest.raises(DataFormatError, match="schema version"):
        from_json('{"type": "RiskRejected", "ts_event": 1, "version": 99, "symbol": "X", "check": "a", "reason": "b"}')


def test_deterministic_ids_depend_only_on_inputs() -> None:
    assert deterministic_event_id("candle", "BTCUSDT", 1) == deterministic_event_id("candle", "BTCUSDT", 1)
    assert deterministic_event_id("candle", "BTCUSDT", 1) != deterministic_event_id("candle", "BTCUSDT", 2)


param_values = st.one_of(st.integers(min_value=-(2**62), max_value=2**62), finite, st.booleans(), st.none(),
                         st.text(max_size=12))  # what `--params name=value` gives


@given(params=st.dictionaries(st.text(min_size=1, max_size=8), param_values, max_size=4),
       cash=st.floats(min_value=1.0, max_value=1e12), limits=st.none() | st.dictionaries(st.text(max_size=6), finite))
def test_run_started_roundtrips_exactly(
    params: dict[str, object], cash: float, limits: dict[str, float] | None
) -> None:
    run = RunStarted(
        ts_event=1_700_000_000_000, run_id="r1", symbols=["BTCUSDT", "ETHUSDT"], timeframe="1h",
        strategy="sma_cross", params=params, broker="ccxt:binance",
        trading={"initial_cash": cash, "limits": limits, "fees": {"taker": 0.001}},
        fingerprint="abc", versions={"orders": {"BTCUSDT": "strategy:x/abc"}},
    )  # fmt: skip
    _roundtrips(run)
    back = from_msgpack(to_msgpack(run))
    assert isinstance(back, RunStarted) and back.params == params and type(back.timeframe) is type(run.timeframe)
    assert {type(v) for v in back.params.values()} == {type(v) for v in params.values()}  # 1 stays int, 1.0 float
    assert "RunStarted" in MESSAGE_TYPES and run.to_dict()["version"] == RunStarted.SCHEMA_VERSION == 1


def test_run_started_refuses_what_it_cannot_hold() -> None:
    with pytest.raises(PydanticValidationError):
        RunStarted(ts_event=1, run_id="r", symbols=["X"], timeframe="7m")  # not a timeframe
    with pytest.raises(PydanticValidationError):
        RunStarted(ts_event=1, run_id="r", symbols=["X"], timeframe="1m", surprise=1)  # type: ignore[call-arg]
    with pytest.raises(DataFormatError, match="schema version"):
        from_json('{"type": "RunStarted", "ts_event": 1, "version": 2, "run_id": "r", "symbols": [], '
                  '"timeframe": "1m"}')
