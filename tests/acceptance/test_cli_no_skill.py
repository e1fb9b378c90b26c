"""The no-skill guards as users see them: one warning line with the baseline figure in train, evaluate and the
registry views; fit-signals warns about an artifact that can never signal and `models promote` refuses it unless
--force."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from smartmarket.cli.app import app
from smartmarket.core.config import Settings
from smartmarket.core.errors import ValidationError
from smartmarket.data.synthetic import generate_market
from smartmarket.models.labels import LabelConfig
from smartmarket.models.pipeline import train_model
from smartmarket.models.registry import Registry

runner = CliRunner(env={"COLUMNS": "200", "SMARTMARKET_STORE": None})
SYMBOL = "BTCUSDT"


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def warnings(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("warning:")]


@pytest.fixture
def market(sm_home: Path, tmp_path: Path) -> pd.DataFrame:
    candles = generate_market(3000, seed=5, start_price=20_000.0)
    path = tmp_path / f"{SYMBOL}-1m.csv.gz"
    candles.to_csv(path, index=False)
    code, out = invoke("ingest", str(path))
    assert code == 0, out
    return candles


def test_registry_views_show_one_warning_line_with_the_baseline(market: pd.DataFrame) -> None:
    features = pd.DataFrame(np.random.default_rng(6).normal(size=(len(market), 6)), columns=[f"z{i}" for i in range(6)])
    model = train_model("lightgbm", features, market, label_config=LabelConfig(horizon=10), symbol=SYMBOL,
                        timeframe="1m", overrides={"n_estimators": 200})  # fmt: skip
    assert model.skill is not None and model.skill.no_skill
    model_id = Registry(Settings().registry_dir).save(model)
    baseline = f"{model.skill.baseline_log_loss:.3f}"
    for command in (("models", "list"), ("models", "show", model_id), ("models", "compare")):
        code, out = invoke(*command)
        assert code == 0, out
        lines = warnings(out)
        assert len(lines) == 1 and model_id in lines[0] and baseline in lines[0], (command, out)
    code, out = invoke("models", "show", model_id, "--json")
    assert code == 0 and len(warnings(out)) == 1 and '"no_skill": true' in out


def test_train_and_evaluate_warn_exactly_when_the_model_has_no_skill(market: pd.DataFrame) -> None:
    code, out = invoke("train", "--model", "logistic", "-s", SYMBOL, "--timeframe", "1m", "--horizon", "12")
    assert code == 0, out
    record = Registry(Settings().registry_dir).list()[-1]
    skill = record.skill
    assert skill is not None and record.metadata["no_skill"] is skill.no_skill
    assert len(warnings(out)) == int(skill.no_skill)
    if skill.no_skill:
        assert f"{skill.baseline_log_loss:.3f}" in warnings(out)[0]
    code, out = invoke("evaluate", record.model_id, "--json")
    assert code == 0, out
    doc = json.loads(out[out.index("{") :])
    metrics = doc["metrics"]
    assert doc["no_skill"] is (metrics["log_loss"] > metrics["baseline_log_loss"])
    assert len(warnings(out)) == int(doc["no_skill"])


def test_fit_signals_warns_and_promote_refuses_a_never_signalling_artifact(market: pd.DataFrame) -> None:
    end = str(int(market["ts"].iloc[2000]))
    code, out = invoke("fit-signals", "-s", SYMBOL, "-t", "1m", "--members", "technical,smc", "--end", end)
    assert code == 0, out
    lines = warnings(out)
    assert len(lines) == 1 and "can never produce a signal" in lines[0] and "--force" in lines[0], out
    artifact_id = lines[0].split()[1]
    code, out = invoke("models", "evaluate-candidate", artifact_id)
    assert code == 0, out
    with pytest.raises(ValidationError, match="can never produce a signal"):
        invoke("models", "promote", artifact_id)
    code, out = invoke("models", "promote", artifact_id, "--force")
    assert code == 0 and f"{artifact_id}: production" in out and len(warnings(out)) == 1, out
