"""QuestDB adapter without a QuestDB server: URL parsing, the exact ILP bytes the official client builds, the
generated SQL, client-side folding, and the failure paths when the server is not there.

Nothing here talks to a real QuestDB (none can run on the development or CI machines); see docs/questdb.md.
"""

from __future__ import annotations

import re
import socket
import struct
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest
from questdb import Sender

from smartmarket.core.errors import ConfigError, StoreError, StoreUnavailableError
from smartmarket.core.events import CandleClosed, OrderFilled, from_json
from smartmarket.core.frame import CANDLE_COLUMNS, as_candle_frame
from smartmarket.core.types import DAY_MS, Timeframe
from smartmarket.store import questdb_sql as sql
from smartmarket.store.base import StoredEvent
from smartmarket.store.questdb_store import (
    QuestDBConfig,
    QuestDBStore,
    add_candle_rows,
    add_event_rows,
    drop_partial_tail,
    fold_candles,
    ilp_conf,
    open_ilp_sender,
    parse_questdb_url,
    plan_candle_write,
    rows_to_candles,
)

TS0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def small_frame() -> pd.DataFrame:
    return as_candle_frame(
        pd.DataFrame(
            {
                "ts": [TS0, TS0 + 3_600_000],
                "open": [1.5, 0.1],
                "high": [2.0, 1e-300],
                "low": [1.0, 3.0],
                "close": [1.25, 2.0],
                "volume": [10.0, 0.0],
            }
        )
    )


@pytest.fixture
def ilp_buffer_factory() -> Iterator[Callable[[int], Any]]:
    """Buffers from a real ``questdb`` Sender with a fixed protocol version (no server is contacted)."""
    senders: list[Sender] = []

    def make(version: int) -> Any:
        sender = Sender.from_conf(ilp_conf(QuestDBConfig(host="127.0.0.1", protocol_version=version)))
        sender.establish()
        senders.append(sender)
        return sender.new_buffer()

    yield make
    for sender in senders:
        sender.close(flush=False)


def load(shared: Path, name: str) -> pd.DataFrame:
    return as_candle_frame(pd.read_csv(shared / name))


# --------------------------------------------------------------------------------------------- URL


def test_url_defaults() -> None:
    cfg = parse_questdb_url("questdb://")
    assert (cfg.host, cfg.http_port, cfg.pg_port, cfg.user, cfg.password, cfg.dbname) == (
        "localhost", 9000, 8812, "admin", "quest", "qdb",
    )  # fmt: skip
    assert (cfg.candles_table, cfg.events_table) == ("candles", "events")
    assert cfg.protocol_version is None


def test_url_with_every_option() -> None:
    cfg = parse_questdb_url(
        "questdb://db.example:9100?pg_port=8813&user=reader&password=s%3Bcret&dbname=x&table_prefix=sm_"
        "&protocol_version=2&connect_timeout=2.5&wal_timeout=60&http_user=ilp&http_password=p"
    )
    assert (cfg.host, cfg.http_port, cfg.pg_port) == ("db.example", 9100, 8813)
    assert (cfg.user, cfg.password, cfg.dbname) == ("reader", "s;cret", "x")
    assert (cfg.candles_table, cfg.events_table) == ("sm_candles", "sm_events")
    assert (cfg.protocol_version, cfg.connect_timeout, cfg.wal_timeout) == (2, 2.5, 60.0)
    assert ilp_conf(cfg) == ("http::addr=db.example:9100;auto_flush=off;username=ilp;password=p;protocol_version=2;")


def test_url_userinfo_sets_pg_login() -> None:
    cfg = parse_questdb_url("questdb://bob:p%40ss@10.0.0.5")
    assert (cfg.user, cfg.password, cfg.host, cfg.http_port) == ("bob", "p@ss", "10.0.0.5", 9000)


def test_ilp_conf_token_and_escaping() -> None:
    cfg = QuestDBConfig(host="h", http_port=9000, http_token="a;b", http_user="ignored")
    assert ilp_conf(cfg) == "http::addr=h:9000;auto_flush=off;token=a;;b;"
    assert ilp_conf(QuestDBConfig()) == "http::addr=localhost:9000;auto_flush=off;"


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("questdb://h:9000?pg_prot=1", "unknown QuestDB URL option 'pg_prot'"),
        ("questdb://h:9000?pg_port=abc", "pg_port='abc' is not a number"),
        ("questdb://h:9000?pg_port=0", "must be positive"),
        ("questdb://h:9000?protocol_version=3", "protocol_version must be 1 or 2"),
        ("questdb://h:9000?table_prefix=x;drop", "invalid QuestDB table name"),
        ("questdb://h:99999", "bad port"),
        ("postgresql://h:9000", "not a QuestDB URL"),
    ],
)
def test_bad_urls_are_config_errors(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        parse_questdb_url(url)


# --------------------------------------------------------------------------------------------- ILP bytes


def test_candle_ilp_text_protocol_v1(ilp_buffer_factory: Callable[[int], Any]) -> None:
    buffer = ilp_buffer_factory(1)
    add_candle_rows(buffer, "candles", "BTCUSDT", Timeframe.H1, small_frame())
    assert bytes(buffer).decode() == (
        "candles,symbol=BTCUSDT,timeframe=1h open=1.5,high=2.0,low=1.0,close=1.25,volume=10.0,synthetic=f "
        "1700000000000000000\n"
        "candles,symbol=BTCUSDT,timeframe=1h open=0.1,high=1e-300,low=3.0,close=2.0,volume=0.0,synthetic=f "
        "1700003600000000000\n"
    )


def test_candle_ilp_binary_doubles_protocol_v2(ilp_buffer_factory: Callable[[int], Any]) -> None:
    buffer = ilp_buffer_factory(2)
    frame = small_frame().iloc[:1]
    add_candle_rows(buffer, "sm_candles", "ETHBTC", Timeframe.M5, frame, synthetic=True)

    def double(name: str, value: float) -> bytes:  # protocol 2: '=' '=' 0x10 then 8 little-endian bytes
        return name.encode() + b"==\x10" + struct.pack("<d", value)

    expected = (
        b"sm_candles,symbol=ETHBTC,timeframe=5m "
        + b",".join(double(c, float(frame[c].iloc[0])) for c in ("open", "high", "low", "close", "volume"))
        + b",synthetic=t 1700000000000000000n\n"
    )
    assert bytes(buffer) == expected


def test_candle_ilp_text_round_trips_real_prices_exactly(
    ilp_buffer_factory: Callable[[int], Any], shared_data: Path
) -> None:
    frame = load(shared_data, "BTCUSDT-1h.csv.gz").iloc[:3000].reset_index(drop=True)
    buffer = ilp_buffer_factory(1)
    add_candle_rows(buffer, "candles", "BTCUSDT", Timeframe.H1, frame)
    lines = bytes(buffer).decode().splitlines()
    assert len(lines) == len(frame)
    pattern = re.compile(r"^candles,symbol=BTCUSDT,timeframe=1h (\S+) (\d+)$")
    parsed = []
    for line in lines:
        match = pattern.match(line)
        assert match, line
        fields = dict(kv.split("=") for kv in match.group(1).split(","))
        parsed.append([int(match.group(2)) // 1_000_000, *(float(fields[c]) for c in CANDLE_COLUMNS[1:])])
    back = pd.DataFrame(parsed, columns=list(CANDLE_COLUMNS))
    pd.testing.assert_frame_equal(as_candle_frame(back), frame, check_exact=True)


def test_event_ilp_lines(ilp_buffer_factory: Callable[[int], Any]) -> None:
    candle = CandleClosed(
        event_id="e1", ts_event=TS0 + 3_600_000, ts_init=TS0 + 3_600_123, correlation_id="c1", symbol="BTCUSDT",
        timeframe=Timeframe.H1, ts=TS0, open=1.0, high=2.0, low=0.5, close=1.5, volume=3.0,
    )  # fmt: skip
    fill = OrderFilled(
        event_id="e2", ts_event=TS0 + 7_200_000, ts_init=TS0 + 7_200_000, correlation_id="c1", causation_id="e1",
        symbol="BTCUSDT", side="buy", quantity=0.5, price=1.5, fee=0.001, client_order_id='o"1',
    )  # fmt: skip
    buffer = ilp_buffer_factory(2)
    add_event_rows(buffer, "events", [StoredEvent(7, candle), StoredEvent(8, fill)])
    lines = bytes(buffer).decode().splitlines()
    assert len(lines) == 2
    first, second = lines
    assert first.startswith('events,type=CandleClosed seq=7i,event_id="e1",ts_init=1700003600123000t,')
    assert first.endswith(" 1700003600000000000n")
    assert ",causation_id=" not in first  # None: the field is left out, the column stays NULL
    assert second.startswith('events,type=OrderFilled seq=8i,event_id="e2",ts_init=1700007200000000t,')
    assert ',causation_id="e1",' in second
    # The payload is the event's JSON as an ILP string: quotes and backslashes escaped, decodable back.
    payload = re.search(r'payload="((?:[^"\\]|\\.)*)"', second)
    assert payload is not None
    text = re.sub(r"\\(.)", r"\1", payload.group(1))
    assert from_json(text) == fill


# --------------------------------------------------------------------------------------------- SQL


def test_ddl() -> None:
    candles = sql.candles_ddl("candles")
    assert candles.startswith("CREATE TABLE IF NOT EXISTS candles (ts TIMESTAMP, symbol SYMBOL, timeframe SYMBOL, ")
    assert "open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, volume DOUBLE, synthetic BOOLEAN" in candles
    assert candles.endswith("TIMESTAMP(ts) PARTITION BY DAY WAL DEDUP UPSERT KEYS(ts, symbol, timeframe)")
    events = sql.events_ddl("sm_events")
    assert "seq LONG, event_id VARCHAR, type SYMBOL, ts_event TIMESTAMP, ts_init TIMESTAMP" in events
    assert events.endswith("TIMESTAMP(ts_event) PARTITION BY DAY WAL DEDUP UPSERT KEYS(ts_event, seq)")
    with pytest.raises(ConfigError):
        sql.candles_ddl("candles; DROP TABLE x")


def test_ts_literal() -> None:
    assert sql.ts_literal(0) == "'1970-01-01T00:00:00.000000Z'"
    assert sql.ts_literal(TS0 + 5) == "'2023-11-14T22:13:20.005000Z'"


def test_range_read_and_latest() -> None:
    q = sql.read_candles_sql("candles", "BTCUSDT", Timeframe.H1, TS0, TS0 + 3_600_000, 10)
    assert q.text == (
        "SELECT cast(ts AS LONG) AS ts_us, open, high, low, close, volume FROM candles "
        "WHERE symbol = %s AND timeframe = %s AND ts >= '2023-11-14T22:13:20.000000Z' "
        "AND ts < '2023-11-14T23:13:20.000000Z' ORDER BY ts LIMIT 10"
    )
    assert q.params == ("BTCUSDT", "1h")
    open_ended = sql.read_candles_sql("candles", "BTCUSDT", Timeframe.D1)
    assert "ts >=" not in open_ended.text and "LIMIT" not in open_ended.text
    latest = sql.latest_sql("candles", "ETHBTC", Timeframe.M5, 200)
    assert latest.text.endswith("WHERE symbol = %s AND timeframe = %s ORDER BY ts DESC LIMIT 200")
    assert latest.params == ("ETHBTC", "5m")


def test_sample_by() -> None:
    q = sql.sample_by_sql("candles", "BTCUSDT", Timeframe.H1, "4h", TS0, None)
    assert (
        "SELECT ts, first(open) AS open, max(high) AS high, min(low) AS low, last(close) AS close, "
        "sum(volume) AS volume FROM candles WHERE symbol = %s AND timeframe = %s "
        "AND ts >= '2023-11-14T22:13:20.000000Z' SAMPLE BY 4h ALIGN TO CALENDAR"
    ) in q.text
    assert q.text.startswith("SELECT cast(ts AS LONG) AS ts_us, open, high, low, close, volume FROM (SELECT ts,")
    assert q.params == ("BTCUSDT", "1h")  # filtered on the *source* timeframe


def test_sample_units_are_calendar_safe() -> None:
    for tf in Timeframe:
        if tf in (Timeframe.W1, Timeframe.D3, Timeframe.MO1):  # folded from 1d by the adapter
            with pytest.raises(ValueError):
                sql.sample_unit(tf)
            continue
        assert sql.sample_unit(tf) == tf.value
        assert re.fullmatch(r"\d+[mhd]", sql.sample_unit(tf))
        # Each stride tiles a UTC day, so calendar (midnight) alignment equals SmartMarket's epoch alignment.
        assert DAY_MS % tf.ms == 0


def test_series_listing_sql() -> None:
    q = sql.list_series_sql("candles")
    assert "count() AS n" in q.text and "GROUP BY symbol, timeframe" in q.text
    assert "sum(CASE WHEN synthetic THEN 1 ELSE 0 END)" in q.text
    assert sql.stored_timeframes_sql("candles", "BTCUSDT") == (
        "SELECT DISTINCT timeframe FROM candles WHERE symbol = %s",
        ("BTCUSDT",),
    )
    days = sql.days_with_rows_sql("candles", "BTCUSDT", Timeframe.H1, None, TS0)
    assert "SAMPLE BY 1d ALIGN TO CALENDAR" in days.text and "ts < '2023-11-14T22:13:20.000000Z'" in days.text


def test_delete_rebuild_statements() -> None:
    day = TS0 // DAY_MS * DAY_MS
    stmts = sql.delete_rebuild_statements(
        "candles", "candles_rebuild_ab", "BTC'USDT", Timeframe.H1, TS0, None, day, day + DAY_MS
    )
    assert len(stmts) == 4
    create, drop, insert, cleanup = stmts
    assert create.startswith("CREATE TABLE candles_rebuild_ab AS (SELECT ts, symbol, timeframe,")
    assert "WHERE ts >= '2023-11-14T00:00:00.000000Z' AND ts < '2023-11-16T00:00:00.000000Z'" in create
    assert "AND NOT (symbol = 'BTC''USDT' AND timeframe = '1h' AND ts >= '2023-11-14T22:13:20.000000Z'))" in create
    assert create.endswith("TIMESTAMP(ts) PARTITION BY DAY BYPASS WAL")
    assert drop == (
        "ALTER TABLE candles DROP PARTITION WHERE ts >= '2023-11-14T00:00:00.000000Z' "
        "AND ts < '2023-11-16T00:00:00.000000Z'"
    )
    assert insert.startswith("INSERT INTO candles (ts, symbol,") and insert.endswith("FROM candles_rebuild_ab")
    assert cleanup == "DROP TABLE candles_rebuild_ab"


def test_event_sql() -> None:
    assert sql.last_seq_sql("events").text == "SELECT max(seq) FROM events"
    q = sql.read_events_sql(
        "events", 5, 9, start=TS0, end=None, types=["CandleClosed", "OrderFilled"], correlation_id="c1", limit=3
    )
    assert q.text == (
        "SELECT seq, payload FROM events WHERE seq >= %s AND seq <= %s "
        "AND ts_event >= '2023-11-14T22:13:20.000000Z' AND type IN (%s, %s) AND correlation_id = %s "
        "ORDER BY seq LIMIT 3"
    )
    assert q.params == (5, 9, "CandleClosed", "OrderFilled", "c1")
    assert sql.read_events_sql("events").text == "SELECT seq, payload FROM events ORDER BY seq"
    with pytest.raises(ValueError):
        sql.read_events_sql("events", types=[])


def test_wal_status_sql() -> None:
    q = sql.wal_status_sql("candles")
    assert q.text == "SELECT suspended, writerTxn, sequencerTxn FROM wal_tables() WHERE name = %s"
    assert q.params == ("candles",)


# --------------------------------------------------------------------------------------------- frames


def test_rows_to_candles_converts_microseconds() -> None:
    frame = rows_to_candles([(TS0 * 1000 + 3_600_000_000, 2.0, 3.0, 1.0, 2.5, 4.0), (TS0 * 1000, 1, 2, 0.5, 1, 0)])
    assert frame["ts"].tolist() == [TS0, TS0 + 3_600_000]  # sorted, epoch ms
    assert frame["ts"].dtype == np.int64 and all(frame[c].dtype == np.float64 for c in CANDLE_COLUMNS[1:])
    assert rows_to_candles([]).columns.tolist() == list(CANDLE_COLUMNS)


def test_fold_days_into_monday_weeks(shared_data: Path) -> None:
    daily = load(shared_data, "BTCUSDT-1d.csv.gz")
    weekly = fold_candles(daily, Timeframe.W1)
    assert all(datetime.fromtimestamp(ts / 1000, tz=UTC).weekday() == 0 for ts in weekly["ts"].tolist())
    assert all(Timeframe.W1.is_aligned(ts) for ts in weekly["ts"].tolist())
    # The same buckets computed another way: pandas groupby on each day's week start.
    key = daily["ts"].map(Timeframe.W1.bucket_start)
    grouped = daily.groupby(key, sort=True)
    expected = pd.DataFrame(
        {
            "ts": grouped["ts"].first().index.to_numpy(),
            "open": grouped["open"].first().to_numpy(),
            "high": grouped["high"].max().to_numpy(),
            "low": grouped["low"].min().to_numpy(),
            "close": grouped["close"].last().to_numpy(),
            "volume": grouped["volume"].sum().to_numpy(),
        }
    )
    pd.testing.assert_frame_equal(weekly, as_candle_frame(expected), check_exact=False, rtol=1e-12)
    assert weekly["open"].tolist() == expected["open"].tolist()  # first/last exact, not approximately
    assert weekly["close"].tolist() == expected["close"].tolist()


def test_plan_write_classifies_new_unchanged_and_conflicting(shared_data: Path) -> None:
    real = load(shared_data, "ETHUSDT-1h.csv.gz").iloc[:500].reset_index(drop=True)
    stored = real.iloc[:300].copy()
    stored.loc[[10, 20], "close"] += 1.0  # two stored rows differ from what arrives
    report_rows, report = plan_candle_write(real, stored, "report")
    assert (report.inserted, report.unchanged, report.overwritten, report.conflict_count) == (200, 298, 0, 2)
    assert report_rows["ts"].tolist() == real["ts"].iloc[300:].tolist()  # only new rows are sent
    assert report.conflicts.columns.tolist() == [*CANDLE_COLUMNS, *(f"stored_{c}" for c in CANDLE_COLUMNS[1:])]
    assert report.conflicts["ts"].tolist() == real["ts"].iloc[[10, 20]].tolist()
    assert report.conflicts["close"].tolist() == real["close"].iloc[[10, 20]].tolist()
    assert report.conflicts["stored_close"].tolist() == (real["close"].iloc[[10, 20]] + 1.0).tolist()

    over_rows, over = plan_candle_write(real, stored, "overwrite")
    assert (over.inserted, over.unchanged, over.overwritten, over.conflict_count) == (200, 298, 2, 0)
    assert over_rows["ts"].tolist() == [*real["ts"].iloc[[10, 20]].tolist(), *real["ts"].iloc[300:].tolist()]
    pd.testing.assert_frame_equal(over_rows.iloc[:2], real.iloc[[10, 20]].reset_index(drop=True))


def test_plan_write_against_empty_store_sends_everything(shared_data: Path) -> None:
    real = load(shared_data, "BTCUSDT-4h.csv.gz").iloc[:50].reset_index(drop=True)
    rows, result = plan_candle_write(real, rows_to_candles([]), "report")
    assert (result.inserted, result.unchanged, result.conflict_count) == (50, 0, 0)
    pd.testing.assert_frame_equal(rows, real)


def test_drop_partial_tail() -> None:
    day = 19_675 * DAY_MS
    buckets = as_candle_frame(pd.DataFrame({"ts": [day, day + DAY_MS], **{c: [1.0, 2.0] for c in CANDLE_COLUMNS[1:]}}))
    # Hourly source ending with the 23:00 candle of the second day covers it; ending at 22:00 does not.
    assert len(drop_partial_tail(buckets, Timeframe.D1, day + 2 * DAY_MS)) == 2
    trimmed = drop_partial_tail(buckets, Timeframe.D1, day + 2 * DAY_MS - 3_600_000)
    assert trimmed["ts"].tolist() == [day]


# --------------------------------------------------------------------------------------------- failures


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_closed_pg_port_is_unavailable_with_hint() -> None:
    port = closed_port()
    with pytest.raises(StoreUnavailableError) as info:
        QuestDBStore(f"questdb://127.0.0.1:{port}?pg_port={port}&connect_timeout=2")
    assert f"is QuestDB running at 127.0.0.1:{port}?" in str(info.value)
    assert "\n" not in str(info.value)


def test_closed_http_port_is_unavailable_with_hint() -> None:
    port = closed_port()
    with pytest.raises(StoreUnavailableError) as info:
        open_ilp_sender(parse_questdb_url(f"questdb://127.0.0.1:{port}"))  # negotiates the protocol: contacts it
    assert f"is QuestDB running at 127.0.0.1:{port}?" in str(info.value)


def test_a_plain_postgresql_server_is_not_mistaken_for_questdb(pg_server: str) -> None:
    """A real PostgreSQL answers on the PG wire port but refuses QuestDB's DDL: a clear StoreError."""
    pg = urlparse(pg_server)
    url = f"questdb://127.0.0.1:{closed_port()}?pg_port={pg.port}&user={pg.username}&dbname={pg.path.lstrip('/')}"
    with pytest.raises(StoreError) as info:
        QuestDBStore(url)
    assert not isinstance(info.value, StoreUnavailableError)
    assert "QuestDB rejected a query" in str(info.value)
