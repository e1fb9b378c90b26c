"""``smartmarket candles`` and ``smartmarket symbols`` end to end on a temporary home with a small stored frame."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from smartmarket.cli.app import app, main
from smartmarket.core.config import Settings
from smartmarket.core.errors import ConfigError, NotFoundError
from smartmarket.core.types import MINUTE_MS, Timeframe
from smartmarket.store import open_store
from smartmarket.store.resample import resample_frame

MONDAY = 1_704_067_200_000  # 2024-01-01T00:00Z
runner = CliRunner(env={"COLUMNS": "200"})


def minutes(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    close = 42000 + rng.standard_normal(n).cumsum() * 10
    open_ = np.r_[42000.0, close[:-1]]
    return pd.DataFrame(
        {
            "ts": MONDAY + np.arange(n, dtype=np.int64) * MINUTE_MS,
            "open": open_,
            "high": np.maximum(open_, close) + 1.25,
            "low": np.minimum(open_, close) - 0.75,
            "close": close,
            "volume": rng.random(n) * 3,
        }
    )


@pytest.fixture
def home(sm_home: Path) -> Path:
    """A home whose embedded store holds 3 hours of BTCUSDT 1m candles and a synthetic ETHUSDT 1h series."""
    with open_store(Settings(home=sm_home).store_url) as store:
        store.write_candles("BTCUSDT", Timeframe.M1, minutes(180))
        store.write_candles("ETHUSDT", Timeframe.H1, resample_frame(minutes(180), Timeframe.M1, Timeframe.H1),
                            synthetic=True)  # fmt: skip
    return sm_home


def run(home: Path, *args: str) -> str:
    result = runner.invoke(app, ["--home", str(home), *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.stdout


def test_csv_is_exact_with_the_documented_header(home: Path) -> None:
    out = run(home, "candles", "-s", "BTCUSDT", "-t", "1m", "--format", "csv")
    assert out.splitlines()[0] == "ts,open,high,low,close,volume"
    got = pd.read_csv(io.StringIO(out))
    pd.testing.assert_frame_equal(got, minutes(180), check_exact=True)


def test_limit_is_the_most_recent_unless_start_is_given(home: Path) -> None:
    frame = minutes(180)
    recent = pd.read_csv(io.StringIO(run(home, "candles", "btc/usdt", "1m", "--limit", "5", "-f", "csv")))
    assert recent["ts"].tolist() == frame["ts"][-5:].tolist()
    first = pd.read_csv(io.StringIO(run(home, "candles", "-s", "BTCUSDT", "-t", "1m", "--start", "2024-01-01T00:10Z",
                                        "--limit", "3", "-f", "csv")))  # fmt: skip
    assert first["ts"].tolist() == frame["ts"][10:13].tolist()
    before = pd.read_csv(io.StringIO(run(home, "candles", "-s", "BTCUSDT", "-t", "5m", "--end", "2024-01-01T01:00Z",
                                         "--limit", "2", "-f", "csv")))  # fmt: skip
    assert before["ts"].tolist() == [MONDAY + 50 * MINUTE_MS, MONDAY + 55 * MINUTE_MS]


def test_json_of_a_resampled_timeframe(home: Path) -> None:
    records = json.loads(run(home, "candles", "-s", "BTCUSDT", "-t", "1h", "--format", "json"))
    want = resample_frame(minutes(180), Timeframe.M1, Timeframe.H1)
    assert [r["ts"] for r in records] == want["ts"].tolist()
    assert set(records[0]) == {"ts", "open", "high", "low", "close", "volume"}
    assert [r["high"] for r in records] == want["high"].tolist()
    np.testing.assert_allclose([r["volume"] for r in records], want["volume"], rtol=1e-12)


def test_table_shows_iso_times(home: Path) -> None:
    out = run(home, "candles", "-s", "BTCUSDT", "-t", "1h", "--start", "2024-01-01", "--end", "2024-01-01T02:00")
    assert "BTCUSDT 1h" in out and "resampled" in out
    assert "2024-01-01T00:00:00Z" in out and "2024-01-01T01:00:00Z" in out
    assert "2024-01-01T02:00:00Z" not in out  # the end is exclusive
    assert "2 candles" in out


def test_table_shows_the_last_30_unless_asked(home: Path) -> None:
    out = run(home, "candles", "-s", "BTCUSDT", "-t", "1m")
    assert "showing the last 30 of 180 candles" in out
    assert "2024-01-01T02:30:00Z" in out and "2024-01-01T02:59:00Z" in out  # candles 150..179
    assert "2024-01-01T02:29:00Z" not in out
    everything = run(home, "candles", "-s", "BTCUSDT", "-t", "1m", "--all")
    assert "2024-01-01T00:00:00Z" in everything and "180 candles" in everything and "showing" not in everything
    assert "40 candles" in run(home, "candles", "-s", "BTCUSDT", "-t", "1m", "--limit", "40")
    assert "showing the last 30 of 36 candles" in run(
        home, "candles", "-s", "BTCUSDT", "-t", "5m"
    )  # resampled: counted
    ranged = run(
        home, "candles", "-s", "BTCUSDT", "-t", "1m", "--start", "2024-01-01T01:00Z", "--end", "2024-01-01T02:00Z"
    )
    assert "showing the last 30 of 60 candles" in ranged and "2024-01-01T01:30:00Z" in ranged
    result = runner.invoke(app, ["--home", str(home), "candles", "-s", "BTCUSDT", "-t", "1m", "--all", "--limit", "5"])
    assert isinstance(result.exception, ConfigError)


def test_symbols_table_and_json(home: Path) -> None:
    series = json.loads(run(home, "symbols", "--format", "json"))
    assert [(s["symbol"], s["timeframe"], s["count"], s["synthetic"]) for s in series] == [
        ("BTCUSDT", "1m", 180, False),
        ("ETHUSDT", "1h", 3, True),
    ]
    assert series[0]["first_ts"] == MONDAY and series[0]["last"] == "2024-01-01T02:59:00Z"
    table = run(home, "symbols")
    assert "BTCUSDT" in table and "ETHUSDT" in table and "180" in table and "2024-01-01T02:59:00Z" in table
    assert "yes" in table.splitlines()[-1]  # ETHUSDT, listed last, is synthetic


def test_empty_store_lists_nothing(sm_home: Path) -> None:
    assert json.loads(run(sm_home, "symbols", "-f", "json")) == []


def test_unknown_series_is_one_clear_line(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = runner.invoke(app, ["--home", str(home), "candles", "-s", "NOPEUSDT", "-t", "1h"])
    assert isinstance(result.exception, NotFoundError)
    assert main(["--home", str(home), "candles", "-s", "NOPEUSDT", "-t", "1h"]) == 2
    err = capsys.readouterr().err
    assert "NOPEUSDT" in err and "smartmarket symbols" in err


def test_bad_time_is_a_config_error(home: Path) -> None:
    result = runner.invoke(
        app, ["--home", str(home), "candles", "-s", "BTCUSDT", "-t", "1m", "--start", "yesterday-ish"]
    )
    assert isinstance(result.exception, ConfigError)


def test_help_has_an_example() -> None:
    out = runner.invoke(app, ["candles", "--help"]).stdout
    assert "smartmarket candles -s BTCUSDT -t 1h --limit 24" in out
    assert "smartmarket symbols --format json" in runner.invoke(app, ["symbols", "--help"]).stdout


def test_calendar_months_from_real_days(sm_home: Path, shared_data: Path) -> None:
    """``candles BTCUSDT 1M`` resamples the real daily history into UTC calendar months (pandas ``MS`` agrees)."""
    from smartmarket.data.ingest import ingest_file

    settings = Settings(home=sm_home)
    with open_store(settings.store_url) as store:
        ingest_file(store, shared_data / "BTCUSDT-1d.csv.gz", quarantine_dir=settings.quarantine_dir)
        days = store.read_candles("BTCUSDT", Timeframe.D1)
    months = pd.read_csv(
        io.StringIO(run(sm_home, "candles", "-s", "BTCUSDT", "-t", "1M", "--start", "2020-01-01", "-f", "csv"))
    )
    by_month = days.set_index(pd.to_datetime(days["ts"], unit="ms")).resample("MS")
    want = by_month.agg({"open": "first", "high": "max", "low": "min", "close": "last"}).loc["2020-01-01":]
    assert months["ts"].tolist() == (want.index.as_unit("ms").asi8).tolist()  # the history ends on Dec 31: all whole
    assert months[["open", "high", "low", "close"]].to_numpy().tolist() == want.to_numpy().tolist()
    table = run(sm_home, "candles", "-s", "BTCUSDT", "-t", "1M", "--limit", "2")
    assert "BTCUSDT 1M" in table and "2024-11-01T00:00:00Z" in table and "2024-12-01T00:00:00Z" in table
    assert "2 candles" in table
