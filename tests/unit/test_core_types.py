"""Timeframes, symbols, time parsing, the one candle type and the one direction type."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import smartmarket
from smartmarket.core.errors import ConfigError
from smartmarket.core.timeutil import format_ms, parse_time
from smartmarket.core.types import DAY_MS, HOUR_MS, WEEK_MS, Candle, Direction, Timeframe, normalize_symbol


def test_every_timeframe_listed_in_the_spec_exists_with_its_length() -> None:
    expected = {
        "1m": 1,
        "3m": 3,
        "5m": 5,
        "15m": 15,
        "30m": 30,
        "1h": 60,
        "2h": 120,
        "4h": 240,
        "6h": 360,
        "8h": 480,
        "12h": 720,
        "1d": 1440,
        "3d": 4320,
        "1w": 10080,
        "1M": 43800,  # nominal: 365 days / 12 (calendar bounds come from bucket_start / next_open)
    }
    assert {t.value: t.ms // 60_000 for t in Timeframe} == expected


def test_parse_accepts_aliases_and_rejects_unknown_with_a_hint() -> None:
    assert Timeframe.parse("1h") is Timeframe.H1
    assert Timeframe.parse("60m") is Timeframe.H1
    with pytest.raises(ConfigError) as err:
        Timeframe.parse("7m")
    assert "1m 3m 5m" in (err.value.hint or "")


def test_weeks_open_on_monday_and_days_at_midnight_utc() -> None:
    monday = parse_time("2024-01-01")  # a Monday
    assert monday is not None
    wednesday_noon = monday + 2 * DAY_MS + 12 * HOUR_MS
    assert Timeframe.W1.bucket_start(wednesday_noon) == monday
    assert Timeframe.W1.bucket_start(monday + WEEK_MS - 1) == monday
    assert Timeframe.D1.bucket_start(wednesday_noon) == monday + 2 * DAY_MS
    assert not Timeframe.H4.is_aligned(monday + HOUR_MS)


def test_divides_knows_which_timeframes_tile_which() -> None:
    assert Timeframe.M1.divides(Timeframe.H1)
    assert Timeframe.H1.divides(Timeframe.W1)
    assert Timeframe.D1.divides(Timeframe.W1)
    assert not Timeframe.H4.divides(Timeframe.H6)
    assert not Timeframe.H1.divides(Timeframe.M30)


def test_symbols_are_normalised_and_validated() -> None:
    assert normalize_symbol("btc/usdt") == "BTCUSDT"
    assert normalize_symbol("BTC_USDT") == "BTCUSDT"
    with pytest.raises(ConfigError):
        normalize_symbol("BTC$")


def test_time_parsing_formats() -> None:
    assert parse_time("2024-01-01") == 1_704_067_200_000
    assert parse_time("2024-01-01T01:00:00Z") == 1_704_067_200_000 + HOUR_MS
    assert parse_time("2024-01-01T03:00:00+02:00") == 1_704_067_200_000 + HOUR_MS
    assert parse_time("1704067200000") == 1_704_067_200_000
    assert parse_time(None) is None
    assert format_ms(1_704_067_200_000) == "2024-01-01T00:00:00Z"
    with pytest.raises(ConfigError):
        parse_time("yesterday")


def test_candle_is_one_named_tuple_the_hot_paths_unpack() -> None:
    candle = Candle(HOUR_MS, 1.0, 2.0, 0.5, 1.5, 10.0)
    ts, o, h, lo, c, v = candle
    assert (ts, o, h, lo, c, v) == (HOUR_MS, 1.0, 2.0, 0.5, 1.5, 10.0)
    assert candle.close_ts(Timeframe.H4) == 5 * HOUR_MS and candle.close_ts(Timeframe.M1) == HOUR_MS + 60_000
    assert Candle._fields == ("ts", "open", "high", "low", "close", "volume")
    with pytest.raises(AttributeError):
        candle.close = 3.0  # type: ignore[misc]


def test_direction_equals_its_string_and_its_sign() -> None:
    assert [Direction.from_sign(s) for s in (5, 0, -2)] == ["long", "flat", "short"]
    assert [d.sign for d in Direction] == [1, 0, -1]
    assert Direction("short") is Direction.SHORT and str(Direction.LONG) == "long"
    with pytest.raises(ValueError):
        Direction("up")


def test_the_other_candle_and_direction_names_are_the_core_types() -> None:
    from smartmarket.engine.strategy import Bar
    from smartmarket.signals import members, strength

    assert Bar is Candle and members.Candle is Candle and strength.Direction is Direction


def _candle_and_direction_definitions() -> set[tuple[str, str]]:
    """Every class with OHLC fields, and every class or name called Candle, Bar or Direction, in the package."""
    root = Path(smartmarket.__file__).parent
    found: set[tuple[str, str]] = set()
    for path in sorted(root.rglob("*.py")):
        where = path.relative_to(root).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                annotated = [n for n in node.body if isinstance(n, ast.AnnAssign)]  # scalar float fields: a candle
                fields = {
                    n.target.id
                    for n in annotated
                    if isinstance(n.target, ast.Name) and ast.unparse(n.annotation) == "float"
                }
                if {"open", "high", "low", "close"} <= fields or node.name in ("Candle", "Bar", "Direction"):
                    found.add((where, f"class {node.name}"))
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name) and target.id in ("Candle", "Bar", "Direction") and node.value:
                        found.add((where, f"{target.id} = {ast.unparse(node.value)}"))
    return found


def test_one_candle_type_and_one_direction_type_in_the_code_base() -> None:
    assert _candle_and_direction_definitions() == {
        ("core/types.py", "class Candle"),
        ("core/types.py", "class Direction"),
        ("engine/strategy.py", "Bar = Candle"),  # the same type under its older name
        ("core/events.py", "class CandleClosed"),  # the bus event; it carries one candle
        ("api/schemas.py", "class CandleOut"),  # the HTTP response shape
    }
