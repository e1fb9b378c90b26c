"""``backtest --stop-loss/--take-profit/--trailing-stop`` on crafted candles: the exits fire where documented.

buy_hold goes long at the first close (filled at the second bar's open, 100) and never trades again, so every
exit seen here comes from the flags. Percent of the entry price; levels fill inside a bar, at the open on a gap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from smartmarket.cli.app import app
from smartmarket.core.config import Settings
from smartmarket.data.ingest import ingest_file
from smartmarket.store import open_store

runner = CliRunner(env={"COLUMNS": "200", "SMARTMARKET_STORE": None})
T0 = 1_704_067_200_000  # 2024-01-01T00:00Z
HOUR = 3_600_000

# (open, high, low, close): flat at 100, a crash through 95 inside bar 3, then down to 50.
CRASH = [(100, 101, 99, 100), (100, 101, 99, 100), (100, 101, 98, 99), (99, 99, 80, 82)] + [
    (82 - 4 * i, 83 - 4 * i, 78 - 4 * i, 78 - 4 * i) for i in range(8)
]
# The same start, then a gap: bar 3 opens at 90, below a 5 % stop.
GAP = [(100, 101, 99, 100), (100, 101, 99, 100), (100, 101, 98, 99), (90, 92, 88, 91), (91, 92, 60, 60)]
# Up through 110 inside bar 3 (take-profit), or a climb to 120 then a fall (trailing stop).
RALLY = [(100, 101, 99, 100), (100, 101, 99, 100), (100, 104, 99, 103), (103, 112, 102, 111), (111, 111, 90, 90)]
CLIMB = [(100, 101, 99, 100), (100, 101, 99, 100), (100, 110, 99, 109), (109, 120, 108, 119), (119, 119, 70, 70)]


def write_series(path: Path, bars: list[tuple[float, float, float, float]]) -> None:
    lines = ["ts,open,high,low,close,volume"]
    lines += [f"{T0 + i * HOUR},{o},{h},{lo},{c},10" for i, (o, h, lo, c) in enumerate(bars)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("exits")
    home = root / "home"
    home.mkdir()
    settings = Settings(home=home)
    with open_store(settings.store_url) as store:
        for name, bars in (("CRASH", CRASH), ("GAP", GAP), ("RALLY", RALLY), ("CLIMB", CLIMB)):
            write_series(root / f"{name}USDT-1h.csv", bars)
            ingest_file(store, root / f"{name}USDT-1h.csv", quarantine_dir=settings.quarantine_dir)
    return home


def backtest(home: Path, out: Path, symbol: str, *flags: str) -> dict[str, Any]:
    args = ["--home", str(home), "backtest", "-s", symbol, "-t", "1h", "--strategy", "buy_hold", "--fee-bps", "0"]
    result = runner.invoke(app, [*args, *flags, "--out", str(out)])
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return doc


def test_stop_loss_limits_the_loss_of_a_crash(home: Path, tmp_path: Path) -> None:
    held = backtest(home, tmp_path / "held.json", "CRASHUSDT")
    stopped = backtest(home, tmp_path / "stopped.json", "CRASHUSDT", "--stop-loss", "5")
    assert held["final_equity"] / held["initial_cash"] - 1 == pytest.approx(50 / 100 - 1)  # rode it to 50
    [trade] = stopped["trades"]
    assert (trade["entry_price"], trade["exit_price"], trade["exit_reason"]) == (100, 95, "stop_loss")
    assert trade["exit_ts"] == T0 + 3 * HOUR  # inside the bar whose low went through 95
    assert stopped["final_equity"] == pytest.approx(stopped["initial_cash"] * 0.95)  # lost 5 %, nothing more


def test_a_gap_through_the_stop_fills_at_the_open(home: Path, tmp_path: Path) -> None:
    [trade] = backtest(home, tmp_path / "gap.json", "GAPUSDT", "--stop-loss", "5")["trades"]
    assert (trade["exit_price"], trade["exit_reason"]) == (90, "stop_loss")  # worse than 95: the bar opened at 90


def test_take_profit_fills_at_its_level(home: Path, tmp_path: Path) -> None:
    [trade] = backtest(home, tmp_path / "tp.json", "RALLYUSDT", "--take-profit", "10")["trades"]
    assert (trade["exit_price"], trade["exit_reason"], trade["exit_ts"]) == (
        pytest.approx(110),
        "take_profit",
        T0 + 3 * HOUR,
    )


def test_trailing_stop_follows_the_best_price(home: Path, tmp_path: Path) -> None:
    [trade] = backtest(home, tmp_path / "trail.json", "CLIMBUSDT", "--trailing-stop", "10")["trades"]
    # best price 120 (bar 3's high) → trail at 108, hit inside bar 4 (low 70); a 10 % stop from 100 would be 90.
    assert (trade["exit_price"], trade["exit_reason"]) == (pytest.approx(108), "trailing_stop")
