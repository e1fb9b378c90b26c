"""A planted pickle never runs: as ``model.joblib``, as ``system.joblib`` or renamed to ``.json`` in a registry
entry, ``models list`` flags it and ``models show``, ``evaluate``, ``signals`` and ``run`` refuse naming the file,
and its code (which would create a marker) never runs. ``models upgrade`` refuses without ``--trust-pickle`` and
changes nothing; with it, entries of the earlier (joblib) format are rewritten and load with the same predictions.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from smartmarket.cli.app import app
from smartmarket.core.config import Settings
from smartmarket.core.errors import SmartMarketError
from smartmarket.data.ingest import ingest_file
from smartmarket.models.labels import LabelConfig
from smartmarket.models.pipeline import train_model
from smartmarket.models.registry import JOBLIB_FILE, MODEL_FILE, Registry
from smartmarket.models.training import TrainConfig
from smartmarket.signals.fit import LEGACY_SYSTEM_FILE, SYSTEM_FILE, EnsembleArtifact, load_artifact, save_artifact
from smartmarket.signals.outcomes import SignalSamples
from smartmarket.signals.strength import SignalSystem, SignalSystemConfig
from smartmarket.store import open_store

runner = CliRunner(env={"COLUMNS": "250", "SMARTMARKET_STORE": None})


class Planted:
    """Unpickling this creates the marker folder: the code a hostile pickle would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.makedirs, (str(self.marker),)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _system() -> SignalSystem:
    rng = np.random.default_rng(5)
    n = 1200
    y = rng.integers(0, 3, n)
    p = rng.dirichlet([2.0, 2.0, 2.0], n)
    p[np.arange(n), y] += 0.4
    samples = SignalSamples.build(np.arange(n), np.arange(n) + 5, y, {"logreg": p / p.sum(axis=1, keepdims=True)})
    return SignalSystem(SignalSystemConfig(ensemble="skill", calibration="platt")).fit(samples, n + 10)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, Any]:
    """A home with BTCUSDT-1h stored, a logistic model and an ensemble artifact whose member is that model."""
    home = tmp_path_factory.mktemp("nopickle") / "home"
    home.mkdir()
    settings = Settings(home=home)
    with open_store(settings.store_url) as store:
        ingest_file(store, shared_data / "BTCUSDT-1h.csv.gz", quarantine_dir=settings.quarantine_dir)
    candles = pd.read_csv(shared_data / "BTCUSDT-1h.csv.gz", nrows=1500)
    features = pd.DataFrame({"ts": candles["ts"], "ret_1": np.log(candles["close"]).diff()})
    model = train_model("logreg", features, candles, symbol="BTCUSDT", timeframe="1h", feature_set="tiny",
                        label_config=LabelConfig(horizon=12), train_config=TrainConfig(batch_size=64))  # fmt: skip
    model_id = Registry(settings.registry_dir).save(model)
    artifact = EnsembleArtifact(
        system=_system(), member_specs=[{"kind": "model", "model_id": model_id, "name": "logreg"}],
        symbol="BTCUSDT", timeframe="1h", feature_set="tiny", label_config=LabelConfig(horizon=12),
        data={"last_ts": int(candles["ts"].iloc[-1])}, created="2024-01-01T00:00:00+00:00",
    )  # fmt: skip
    artifact_id = save_artifact(artifact, settings.registry_dir)
    return {"home": home, "model_id": model_id, "artifact_id": artifact_id, "features": features}


@pytest.fixture
def home(tmp_path: Path, template: dict[str, Any]) -> Path:
    """A fresh copy of the template home (the store is shared read-only through a link)."""
    home = tmp_path / "home"
    home.mkdir()
    for item in Path(template["home"]).iterdir():
        if item.name == "models":
            shutil.copytree(item, home / "models")
        else:
            (home / item.name).symlink_to(item)
    return home


def invoke(home: Path, *args: str) -> Result:
    return runner.invoke(app, ["--home", str(home), *args])


def refused(result: Result, name: str) -> str:
    """The command failed with one SmartMarket error line naming ``name``; returns the line."""
    assert result.exit_code != 0, result.output
    exc = result.exception
    assert isinstance(exc, SmartMarketError), f"{type(exc).__name__}: {exc}\n{result.output}"
    line = exc.one_line()
    assert name in line and "\n" not in line, line
    return line


COMMANDS = {
    "models show": lambda ids: ("models", "show", ids["model_id"]),
    "evaluate": lambda ids: ("evaluate", ids["model_id"]),
    "signals": lambda ids: (
        "signals",
        "BTCUSDT",
        "1h",
        "--artifact",
        ids["artifact_id"],
        "--start",
        "2018-01-01",
        "--end",
        "2018-02-01",
    ),
    "run": lambda ids: (
        "run",
        "--symbols",
        "BTCUSDT",
        "--timeframe",
        "1h",
        "--artifact",
        ids["artifact_id"],
        "--source",
        f"file:{ids['source']}",
    ),
}


def _plant(home: Path, ids: dict[str, str], where: str, marker: Path) -> tuple[str, str]:
    """Put the planted pickle in the registry; returns (file name, which entry holds it)."""
    models = home / "models"
    if where == "model.joblib":
        (models / ids["model_id"] / MODEL_FILE).unlink()
        joblib.dump(Planted(marker), models / ids["model_id"] / JOBLIB_FILE)
        return JOBLIB_FILE, ids["model_id"]
    if where == "system.joblib":
        (models / ids["artifact_id"] / SYSTEM_FILE).unlink()
        joblib.dump(Planted(marker), models / ids["artifact_id"] / LEGACY_SYSTEM_FILE)
        return LEGACY_SYSTEM_FILE, ids["artifact_id"]
    joblib.dump(Planted(marker), models / ids["model_id"] / "notes.json")  # a pickle under a harmless name
    return "notes.json", ids["model_id"]


@pytest.mark.parametrize("where", ["model.joblib", "system.joblib", "renamed.json"])
def test_a_planted_pickle_never_runs_and_is_refused_by_name(
    home: Path, template: dict[str, Any], shared_data: Path, tmp_path: Path, where: str
) -> None:
    marker = tmp_path / "MARKER-code-ran"
    ids = {"model_id": template["model_id"], "artifact_id": template["artifact_id"]}
    source = tmp_path / "BTCUSDT-1h.csv"  # a short file: a refused run must not get as far as reading it
    pd.read_csv(shared_data / "BTCUSDT-1h.csv.gz", nrows=300).to_csv(source, index=False)
    ids["source"] = str(source)
    name, entry = _plant(home, ids, where, marker)

    listed = invoke(home, "models", "list", "--json")
    assert listed.exit_code == 0, listed.output
    flagged = {doc["id"]: doc["unsafe_files"] for doc in json.loads(listed.stdout)}
    assert [f.split(":")[0] for f in flagged[entry]] == [name]
    assert all(not files for other, files in flagged.items() if other != entry)
    table = invoke(home, "models", "list")
    assert table.exit_code == 0 and f"refused: {name}" in table.stdout
    assert not marker.exists()

    for command, args in COMMANDS.items():
        if command in ("models show", "evaluate") and entry != ids["model_id"]:
            continue  # the model itself is clean in this case
        refused(invoke(home, *args(ids)), name)
        assert not marker.exists(), f"{command} ran the planted pickle"

    upgrade = invoke(home, "models", "upgrade")
    refused(upgrade, name)
    assert not marker.exists()


def test_the_cli_prints_one_error_line_and_exits_2(home: Path, template: dict[str, Any], tmp_path: Path) -> None:
    marker = tmp_path / "MARKER-code-ran"
    _plant(home, {"model_id": template["model_id"], "artifact_id": template["artifact_id"]}, "model.joblib", marker)
    done = subprocess.run(
        [sys.executable, "-m", "smartmarket.cli.app", "--home", str(home), "models", "show", template["model_id"]],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "300"},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "model.joblib" in lines[0] and "--trust-pickle" in lines[0], done.stderr
    assert "Traceback" not in done.stderr and not marker.exists()


def test_upgrade_refuses_without_trust_and_rewrites_with_it(home: Path, template: dict[str, Any]) -> None:
    """Entries of the earlier format (real joblib files of a real model and system) are rewritten once."""
    registry = Registry(home / "models")
    model_dir, artifact_dir = home / "models" / template["model_id"], home / "models" / template["artifact_id"]
    model = registry.load(template["model_id"])
    artifact = load_artifact(artifact_dir)
    joblib.dump(model.classifier, model_dir / JOBLIB_FILE)  # what an earlier version wrote
    (model_dir / MODEL_FILE).unlink()
    joblib.dump(artifact.system, artifact_dir / LEGACY_SYSTEM_FILE)
    (artifact_dir / SYSTEM_FILE).unlink()
    before = {p: p.read_bytes() for p in sorted((home / "models").rglob("*")) if p.is_file()}

    refused(invoke(home, "models", "upgrade"), ".joblib")
    assert {p: p.read_bytes() for p in sorted((home / "models").rglob("*")) if p.is_file()} == before

    done = invoke(home, "models", "upgrade", "--trust-pickle")
    assert done.exit_code == 0, done.output
    assert f"upgraded {template['model_id']}" in done.stdout and f"upgraded {template['artifact_id']}" in done.stdout
    assert not list((home / "models").rglob("*.joblib"))
    assert (model_dir / MODEL_FILE).is_file() and (artifact_dir / SYSTEM_FILE).is_file()
    upgraded = registry.load(template["model_id"])
    features = template["features"]
    pd.testing.assert_frame_equal(model.predict_frame(features), upgraded.predict_frame(features), check_exact=True)
    assert repr(load_artifact(artifact_dir).system.report()) == repr(artifact.system.report())
    assert json.loads((model_dir / "metadata.json").read_text())["format_history"][0]["from"] == JOBLIB_FILE

    again = invoke(home, "models", "upgrade", "--trust-pickle")
    assert again.exit_code == 0 and "nothing to upgrade" in again.stdout
