"""The CLI's one progress helper: rich bars on a terminal, plain lines when stderr is piped, nothing with --quiet."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from smartmarket.cli.context import PlainProgress, stage, task, task_progress


class Clock:
    """A clock the test moves by hand (the lines show the seconds since a task started)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _console(*, terminal: bool) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=terminal, width=100), buffer


def test_plain_lines_one_per_tenth_with_elapsed_seconds() -> None:
    out, buffer = _console(terminal=False)
    clock = Clock()
    progress = PlainProgress(out, clock=clock)
    for done in range(0, 1001):
        progress("backtest sma_cross", done, 1000)
        clock.now += 0.01
    progress("backtest sma_cross", 1000, 1000)  # a repeated end is not printed twice
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 11  # the start, 10 %, 20 %, …, 90 %, the end
    assert lines[0] == "backtest sma_cross: 0 %, 0.0 s"
    assert lines[1] == "backtest sma_cross: 10 %, 1.0 s"
    assert lines[-1] == "backtest sma_cross: 100 %, 10.0 s"
    assert "\r" not in buffer.getvalue() and "\x1b" not in buffer.getvalue()


def test_plain_stage_lines_and_independent_tasks() -> None:
    out, buffer = _console(terminal=False)
    clock = Clock()
    progress = PlainProgress(out, clock=clock)
    with stage(progress, "demo stage 3/9: features"):
        clock.now += 2.5
        task(progress, "ingest BTCUSDT-1h.csv.gz")(500, 2000)
    assert buffer.getvalue().splitlines() == [
        "demo stage 3/9: features …",
        "ingest BTCUSDT-1h.csv.gz: 25 %, 0.0 s",
        "demo stage 3/9: features: done in 2.5 s",
    ]


def test_a_failed_stage_does_not_claim_to_be_done() -> None:
    out, buffer = _console(terminal=False)
    progress = PlainProgress(out, clock=Clock())
    with pytest.raises(RuntimeError), stage(progress, "fit the ensemble"):
        raise RuntimeError("boom")
    assert buffer.getvalue().splitlines() == ["fit the ensemble …"]


def test_switch_terminal_plain_quiet() -> None:
    plain_out, plain = _console(terminal=False)
    with task_progress(out=plain_out) as progress:
        assert isinstance(progress, PlainProgress)
        progress("walk-forward", 4, 4)
    assert plain.getvalue() == "walk-forward: 100 %, 0.0 s\n"

    tty_out, tty = _console(terminal=True)
    with task_progress(out=tty_out) as progress:
        assert not isinstance(progress, PlainProgress)
        progress("walk-forward", 2, 4)
    assert "\x1b[" in tty.getvalue()  # a live rich display (cursor control), not plain lines
    assert "walk-forward: 50 %" not in tty.getvalue()

    quiet_out, quiet = _console(terminal=True)
    with task_progress(quiet=True, out=quiet_out) as progress:
        progress("walk-forward", 4, 4)
    assert quiet.getvalue() == ""


def test_unknown_total_prints_its_start_only() -> None:
    out, buffer = _console(terminal=False)
    progress = PlainProgress(out, clock=Clock())
    for done in (0, 10, 20):
        progress("download", done, 0)
    assert buffer.getvalue().splitlines() == ["download: started"]
