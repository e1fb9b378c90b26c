"""``optimize --storage postgresql://… --study NAME``: two worker processes share one study on the real
PostgreSQL; one is SIGKILLed in the middle of a trial, the other completes the study, and the dead worker's
trial is failed by the heartbeat check and run again (no trial is lost)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from typing import Any

import pytest

from smartmarket.backtest.bench import random_walk_candles
from smartmarket.core.types import Timeframe
from smartmarket.ops.optimize import _sqlalchemy_url, open_study_storage, retry_callback_class
from smartmarket.store import open_store

pytestmark = pytest.mark.postgres

TRIALS = 10
STUDY = "h6-two-workers"


def _worker(pg_url: str, timeout_s: int = 180) -> subprocess.Popen[str]:
    args = [
        "--store", pg_url, "optimize", "--strategy", "smc_bos", "--symbol", "TESTUSDT", "--timeframe", "1h",
        "--space", "swing_length=2:12:1,reward_risk=1:3:0.5", "--method", "tpe", "--trials", str(TRIALS),
        "--walk-forward", "0", "--storage", pg_url, "--study", STUDY, "--heartbeat-s", "1", "--grace-s", "2",
        "--json",
    ]  # fmt: skip
    code = "import sys; from smartmarket.cli.app import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "SMARTMARKET_STORE": ""}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def _study(pg_url: str) -> Any:
    import optuna
    from optuna.storages import RDBStorage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return optuna.load_study(study_name=STUDY, storage=RDBStorage(_sqlalchemy_url(pg_url)))


def _running(pg_url: str) -> int:
    from optuna.trial import TrialState

    try:
        return len(_study(pg_url).get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    except KeyError:  # the study does not exist yet
        return 0


def test_workers_opening_a_fresh_storage_together_all_succeed(pg_url: str) -> None:
    """Workers started together race to create Optuna's tables; PostgreSQL refuses all but one creator
    (unique violation on pg_type), and the others must open the tables it made rather than fail (CI saw it)."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    workers = 6
    barrier = Barrier(workers)

    def open_together(_: int) -> str:
        barrier.wait()
        return type(open_study_storage(pg_url, heartbeat_s=5, grace_s=10)).__name__

    with ThreadPoolExecutor(workers) as pool:
        opened = list(pool.map(open_together, range(workers)))
    assert opened == ["RDBStorage"] * workers


@pytest.mark.slow
def test_two_workers_one_killed_study_completes(pg_url: str) -> None:
    from optuna.trial import TrialState

    candles = random_walk_candles(30_000, seed=5, step_ms=3_600_000)  # smc_bos: about 1 s per trial
    with open_store(pg_url) as store:
        store.write_candles("TESTUSDT", Timeframe.parse("1h"), candles)
    # B starts once A is inside its first trial, so B still has most of the study ahead when A dies: the stale
    # trial is failed only by a survivor that starts a trial after the grace period (CI once saw B finish the
    # study within A's grace period when both started together, leaving A's trial RUNNING).
    a = _worker(pg_url)
    b: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 120
        while True:
            running = _running(pg_url)
            if b is None and running >= 1:
                b = _worker(pg_url)
            elif b is not None and running >= 2:
                break  # both workers are inside a trial
            for p in (a, b):
                assert p is None or p.poll() is None, p.stderr.read() if p and p.stderr else ""
            assert time.monotonic() < deadline, "the workers never ran two trials at once"
            time.sleep(0.1)
        assert b is not None
        a.send_signal(signal.SIGKILL)
        a.wait(10)
        out, err = b.communicate(timeout=240)
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(10)
    assert b.returncode == 0, err
    report = json.loads(out)
    assert report["study"] == STUDY and report["method"] == "tpe"
    assert report["n_trials"] >= TRIALS and report["pbo"] is not None

    trials = _study(pg_url).get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(complete) >= TRIALS
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert len(failed) == 1  # the killed worker's trial, failed by the survivor's heartbeat check
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "experimental" in Optuna's terms
        retried = [t for t in complete if retry_callback_class().retried_trial_number(t) == failed[0].number]
    assert len(retried) == 1 and retried[0].params == failed[0].params  # and run again to completion
