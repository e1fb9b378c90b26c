"""The config file (``smartmarket.toml``): defaults → files → environment → CLI flags, per-command option defaults
through click's ``default_map``, one-line errors, secrets never shown. Real files, the real CLI, a real DuckDB store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import typer.main
from typer.testing import CliRunner

from smartmarket.cli.app import app, main
from smartmarket.cli.config import command_defaults
from smartmarket.core.config import Settings, load_config_files
from smartmarket.core.errors import ConfigError, NotFoundError
from smartmarket.core.types import MINUTE_MS, Timeframe
from smartmarket.store import open_store

runner = CliRunner(env={"COLUMNS": "200", "SMARTMARKET_STORE": None, "SMARTMARKET_BUS": None,
                        "SMARTMARKET_CONFIG": None, "SMARTMARKET_DEBUG": None})  # fmt: skip
PASSWORD = "Pa55-w0rd-in-file"


@pytest.fixture
def cwd(tmp_path: Path, sm_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory (where ``smartmarket.toml`` is looked for) beside a private home."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for name in ("SMARTMARKET_STORE", "SMARTMARKET_BUS", "SMARTMARKET_CONFIG", "SMARTMARKET_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    return work


def invoke(*args: str, env: dict[str, str] | None = None) -> str:
    result = runner.invoke(app, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.stdout


def show(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(invoke(*args, "config", "show", "--json", env=env))
    return shown


def test_show_layers_defaults_file_environment_cli(cwd: Path, sm_home: Path) -> None:
    file = cwd / "smartmarket.toml"
    file.write_text('store = "duckdb:///from-file.duckdb"\nbus = "redis://127.0.0.1:6379/3"\n', encoding="utf-8")

    shown = show()
    assert shown["files"] == [str(file)]
    assert shown["settings"]["store"] == {"value": "duckdb:///from-file.duckdb", "source": str(file)}
    assert shown["settings"]["bus"] == {"value": "redis://127.0.0.1:6379/3", "source": str(file)}
    assert shown["settings"]["home"] == {"value": str(sm_home), "source": "SMARTMARKET_HOME"}
    assert shown["settings"]["debug"] == {"value": False, "source": "default"}

    env = {"SMARTMARKET_STORE": "duckdb:///from-env.duckdb"}
    shown = show(env=env)
    assert shown["settings"]["store"] == {"value": "duckdb:///from-env.duckdb", "source": "SMARTMARKET_STORE"}
    assert shown["settings"]["bus"]["source"] == str(file)  # the other values still come from the file

    shown = show("--store", "duckdb:///from-cli.duckdb", "--debug", env=env)
    assert shown["settings"]["store"] == {"value": "duckdb:///from-cli.duckdb", "source": "cli"}
    assert shown["settings"]["debug"] == {"value": True, "source": "cli"}


def test_home_file_then_working_directory_file_key_by_key(cwd: Path, sm_home: Path) -> None:
    home_file, cwd_file = sm_home / "smartmarket.toml", cwd / "smartmarket.toml"
    home_file.write_text('bus = "redis://h:6379/1"\n[candles]\nlimit = 3\nformat = "csv"\n', encoding="utf-8")
    cwd_file.write_text("[candles]\nlimit = 2\n", encoding="utf-8")

    shown = show()
    assert shown["files"] == [str(home_file), str(cwd_file)]
    assert shown["settings"]["bus"]["source"] == str(home_file)
    assert shown["commands"]["candles"] == {
        "limit": {"value": 2, "source": str(cwd_file)},
        "format": {"value": "csv", "source": str(home_file)},
    }
    assert invoke("config", "path").splitlines() == [f"{home_file}\tread", f"{cwd_file}\tread"]


def test_explicit_config_is_the_only_file_read(cwd: Path, tmp_path: Path) -> None:
    (cwd / "smartmarket.toml").write_text('store = "duckdb:///ignored.duckdb"\n', encoding="utf-8")
    named = tmp_path / "ci.toml"
    named.write_text('store = "duckdb:///named.duckdb"\n', encoding="utf-8")

    for args, env, how in (
        (("--config", str(named)), None, "--config"),
        ((), {"SMARTMARKET_CONFIG": str(named)}, "SMARTMARKET_CONFIG"),
    ):
        shown = show(*args, env=env)
        assert shown["files"] == [str(named)]
        assert shown["settings"]["store"] == {"value": "duckdb:///named.duckdb", "source": str(named)}
        assert invoke(*args, "config", "path", env=env) == f"{named}\tnamed by {how}\n"


def test_relative_home_in_a_file_is_relative_to_the_file(cwd: Path, tmp_path: Path) -> None:
    sub = tmp_path / "project"
    sub.mkdir()
    (sub / "smartmarket.toml").write_text('home = "state"\n', encoding="utf-8")
    shown = show("--config", str(sub / "smartmarket.toml"), env={"SMARTMARKET_HOME": None})  # type: ignore[dict-item]
    assert shown["settings"]["home"] == {"value": str(sub / "state"), "source": str(sub / "smartmarket.toml")}


def _ten_candles(home: Path) -> None:
    frame = pd.DataFrame({
        "ts": 1_704_067_200_000 + np.arange(10, dtype=np.int64) * MINUTE_MS,
        "open": np.arange(10.0) + 100, "high": np.arange(10.0) + 101, "low": np.arange(10.0) + 99,
        "close": np.arange(10.0) + 100.5, "volume": np.ones(10),
    })  # fmt: skip
    with open_store(Settings(home=home).store_url) as store:
        store.write_candles("BTCUSDT", Timeframe.M1, frame)


def _csv_rows(text: str) -> int:
    lines = text.strip().splitlines()
    assert lines[0] == "ts,open,high,low,close,volume"
    return len(lines) - 1


def test_a_command_table_defaults_options_and_the_flag_overrides_it(cwd: Path, sm_home: Path) -> None:
    _ten_candles(sm_home)
    assert _csv_rows(invoke("candles", "BTCUSDT", "1m", "--format", "csv")) == 10  # no file: the whole range

    (cwd / "smartmarket.toml").write_text('[candles]\nlimit = 3\nformat = "csv"\n', encoding="utf-8")
    out = invoke("candles", "BTCUSDT", "1m")  # both defaults from the file: csv, the last 3 candles
    assert _csv_rows(out) == 3
    assert out.strip().splitlines()[-1].startswith(str(1_704_067_200_000 + 9 * MINUTE_MS))
    assert _csv_rows(invoke("candles", "BTCUSDT", "1m", "--limit", "5")) == 5  # the flag wins over the file
    assert _csv_rows(invoke("candles", "BTCUSDT", "1m", "-n", "7")) == 7


def test_a_global_setting_defaults_every_option_reading_its_env_var(cwd: Path) -> None:
    """``bus`` in the file reaches every ``--bus`` declared with ``envvar=SMARTMARKET_BUS`` (nested commands too);
    a command's own table wins over it."""
    (cwd / "smartmarket.toml").write_text(
        'bus = "redis://global:6379/0"\n[run]\nbus = "redis://run-only:6379/0"\n', encoding="utf-8"
    )
    files = load_config_files(None, home=cwd / "no-home", cwd=cwd)
    root = typer.main.get_command(app).make_context("smartmarket", ["config", "show"])
    defaults = command_defaults(root, files)
    assert defaults["run"] == {"bus": "redis://run-only:6379/0"}
    assert defaults["worker"]["bus"] == "redis://global:6379/0"
    assert defaults["serve"]["bus_url"] == "redis://global:6379/0"
    assert defaults["bench"]["bus"]["redis"] == "redis://global:6379/0"
    assert "candles" not in defaults  # no option of candles reads SMARTMARKET_BUS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('stor = "duckdb:///x.duckdb"\n', "unknown setting 'stor' in config file at {file} — did you mean 'store'?"),
        ("[candle]\nlimit = 3\n", "unknown command table [candle] in config file at {file} — did you mean 'candles'?"),
        ("[candles]\nlimt = 3\n", "unknown option 'limt' in [candles] of config file at {file} — did you mean "
                                  "'limit'?"),
        ("[models.promot]\nforce = true\n", "unknown command table [models.promot] in config file at {file} — did "
                                            "you mean 'promote'?"),
        ("[models]\npromote = 5\n", "'promote' in [models] is a subcommand of `models`, not an option at {file} — "
                                    "give its option defaults in a [models.promote] table"),
        ("[candles.x]\ny = 1\n", "unknown command table [candles.x] in config file at {file} — `candles` has no "
                                 "subcommands"),
        ("[backtest]\nslippage = 2\n", "unknown option 'slippage' in [backtest] of config file at {file} — did you "
                                       "mean 'slippage_bps'?"),
        ('[evaluate]\nmodel_id = "x"\n', "'model_id' in [evaluate] is an argument of `evaluate`, not an option "
                                           "at {file} — give it on the command line"),
        ("[candles]\nlimit = 0\n", "invalid value for 'limit' in [candles] of config file:"),
        ('debug = "maybe"\n', "invalid setting debug (from {file}):"),
        ("[candles]\nlimit = 3\nformat = \n", "invalid TOML: Invalid value at {file}:3:10 — fix the file"),
    ],
)  # fmt: skip
def test_mistakes_are_one_line_naming_the_file(
    cwd: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    file = cwd / "smartmarket.toml"
    file.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["config", "show"])
    assert isinstance(result.exception, ConfigError)
    assert main(["symbols"]) == 2  # any command: the file is read before it runs
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: " + expected.format(file=file)), err


def test_missing_named_file_is_one_line(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(cwd / "nope.toml"), "symbols"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: config file not found at {cwd / 'nope.toml'} — check the path given to --config or " \
                  "SMARTMARKET_CONFIG\n"  # fmt: skip


def test_a_password_in_the_file_is_never_printed(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cwd / "smartmarket.toml").write_text(
        f'store = "postgresql://trader:{PASSWORD}@127.0.0.1:1/db"\n'
        f'[optimize]\nstorage = "postgresql://trader:{PASSWORD}@127.0.0.1:1/optuna"\n'
        f'[run]\nbus = "redis://:{PASSWORD}@127.0.0.1:1/0"\n',
        encoding="utf-8",
    )
    table = invoke("config", "show")
    shown = show()
    assert shown["settings"]["store"]["value"] == "postgresql://trader@127.0.0.1:1/db"
    assert shown["commands"]["optimize"]["storage"]["value"] == "postgresql://trader@127.0.0.1:1/optuna"
    assert shown["commands"]["run"]["bus"]["value"] == "redis://127.0.0.1:1/0"
    assert "postgresql://trader@127.0.0.1:1/db" in table
    assert main(["symbols"]) != 0  # nothing listens on port 1: the error names the store without its password
    err = capsys.readouterr().err
    assert "127.0.0.1" in err
    for text in (table, json.dumps(shown), err):
        assert PASSWORD not in text


def test_the_example_file_in_the_docs_is_valid(cwd: Path) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "config.md").read_text(encoding="utf-8")
    example = doc.split("# smartmarket.toml\n", 1)[1].split("```", 1)[0]
    (cwd / "smartmarket.toml").write_text(example, encoding="utf-8")
    files = load_config_files(None, home=cwd / "no-home", cwd=cwd)
    root = typer.main.get_command(app).make_context("smartmarket", ["config", "show"])
    defaults = command_defaults(root, files)
    assert defaults["backtest"] == {"slippage_bps": 2, "cash": 25000}
    assert defaults["models"]["promote"] == {"force": False}
    assert show()["settings"]["store"]["value"] == files.settings["store"]


def test_debug_from_the_file_shows_the_traceback(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = cwd / "missing" / "x.duckdb"
    (cwd / "smartmarket.toml").write_text(f'store = "duckdb:///{missing}"\ndebug = true\n', encoding="utf-8")
    with pytest.raises(NotFoundError):  # --debug's behaviour: the exception itself, not the one-line message
        main(["symbols"])
    (cwd / "smartmarket.toml").write_text(f'store = "duckdb:///{missing}"\n', encoding="utf-8")
    assert main(["symbols"]) == 2
    assert str(missing) in capsys.readouterr().err
