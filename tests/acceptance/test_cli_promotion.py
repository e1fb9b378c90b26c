"""Rollout through the CLI: evaluate-candidate → promote → run on production with a shadow → ab-report → replay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smartmarket.cli.app import app
from smartmarket.core.config import Settings
from smartmarket.core.errors import NotFoundError, ValidationError
from smartmarket.data.synthetic import generate_market
from smartmarket.models.labels import LabelConfig
from smartmarket.signals.fit import default_system_config, fit_artifact, save_artifact
from smartmarket.signals.members import SMCMember, TechnicalMember

runner = CliRunner(env={"COLUMNS": "200", "SMARTMARKET_STORE": None})
SYMBOL = "BTCUSDT"
FIT, LIVE = 1_500, 400


@pytest.fixture
def setup(sm_home: Path, tmp_path: Path) -> tuple[str, str, Path]:
    """Two candidate artifacts fitted on the first FIT candles; every candle ingested; the live ones as a file."""
    candles = generate_market(FIT + LIVE, seed=5, start_price=20_000.0)
    config = default_system_config(ensemble="stacking", strength_targets=(0.0, 0.0, 0.0), regime_target=0.0, z=0.0,
                                   min_count=5, require_skill=False)  # synthetic members: let signals flow  # fmt: skip
    ids = []
    for members in ([TechnicalMember(), SMCMember()], [TechnicalMember()]):
        artifact = fit_artifact(candles.iloc[:FIT], members, symbol=SYMBOL, timeframe="1m",
                                label_config=LabelConfig(horizon=12), config=config)  # fmt: skip
        ids.append(save_artifact(artifact, Settings().registry_dir))
    every = tmp_path / "all" / f"{SYMBOL}-1m.csv.gz"
    live = tmp_path / "live" / f"{SYMBOL}-1m.csv.gz"
    for path, frame in ((every, candles), (live, candles.iloc[FIT:])):
        path.parent.mkdir()
        frame.to_csv(path, index=False)
    code, out = invoke("ingest", str(every))
    assert code == 0, out
    return ids[0], ids[1], live.parent


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_rollout_with_a_shadow_candidate(setup: tuple[str, str, Path]) -> None:
    production, candidate, live = setup
    run = ("run", "--symbols", SYMBOL, "--timeframe", "1m", "--source", f"file:{live}", "--no-risk-checks", "--json")

    with pytest.raises(NotFoundError, match="promote one"):
        invoke(*run)  # nothing in production yet: the pipeline will not guess
    code, out = invoke("doctor")
    assert "no production ensemble for BTCUSDT 1m" in out and "smartmarket models promote" in out
    with pytest.raises(ValidationError, match="no evaluation is attached"):
        invoke("models", "promote", production)

    code, out = invoke("models", "evaluate-candidate", production)
    assert code == 0, out
    assert "nothing in production (the base rates" in out and "Diebold-Mariano" in out and "verdict" in out
    code, out = invoke("models", "promote", production)
    assert code == 0 and f"{production}: production" in out
    code, out = invoke("doctor")
    assert "no production ensemble" not in out and "1 production" in out

    code, out = invoke(*run, "--shadow", candidate)
    assert code == 0, out
    summary = json.loads(out)
    assert summary["drained"]
    assert summary["published"]["SignalGenerated"] == summary["published"]["ShadowSignalGenerated"] == LIVE

    code, out = invoke("events", "--type", "SignalGenerated", "--limit", "1", "--format", "json")
    assert json.loads(out)[0]["model_id"] == production
    code, out = invoke("ab-report", "--json")
    assert code == 0
    (comparison,) = json.loads(out)["comparisons"]
    assert comparison["candidate_id"] == candidate and comparison["production_ids"] == production
    assert comparison["candles"] > LIVE - 100 and 0.0 <= comparison["test"]["p_value"] <= 1.0
    code, out = invoke("ab-report", "--symbol", SYMBOL)
    assert code == 0 and "paired block bootstrap" in out and comparison["verdict"] in out

    # the run recorded what it ran: replay finds the artifact and the trading set-up without being told
    code, out = invoke("replay")
    assert code == 0, out
    assert "identical" in out

    result = runner.invoke(app, ["models", "evaluate-candidate", candidate, "--json"])
    doc = json.loads(result.stdout)  # stdout is the document alone: progress lines go to stderr
    assert result.exit_code == 0 and doc["against"] == production and " 100 %, " in result.stderr
    verdict = doc["verdict"]
    code, out = invoke("models", "promote", candidate, *(["--force"] if verdict == "production better" else []))
    assert code == 0 and f"{production}: retired" in out
    code, out = invoke("models", "list", "--json")
    stages = {m["id"]: m["stage"] for m in json.loads(out)}
    assert stages == {production: "retired", candidate: "production"}
    code, out = invoke("models", "retire", candidate)
    assert code == 0 and "retired" in out


def test_bad_ab_report_level_is_a_one_line_error(sm_home: Path) -> None:
    result = runner.invoke(app, ["ab-report", "--level", "2"])
    assert result.exit_code != 0 and "--level must be in (0, 1)" in str(result.exception)
    code, out = invoke("ab-report")
    assert code == 0 and "no shadow signals recorded" in out
