"""Property-based fuzzing of the web API from its own OpenAPI document (schemathesis).

For every operation, schemathesis generates requests from the schema (valid and invalid), sends them to the app
(over a real DuckDB store with real BTCUSDT-4h candles and stored signals) and checks: no 5xx, status codes,
content types and bodies as documented. Bounded: 20 examples per operation.

Excluded: schemathesis' "schema-valid data must be accepted" check. Some validity is semantic and is not in
the schema: a time string must be a real date, ``end`` after ``start``, the strategy registered with parameters
it takes. Those get a clear 400, which that check would count as a failure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from smartmarket.api import SecurityConfig, create_app
from smartmarket.core.config import Settings
from smartmarket.core.events import SignalGenerated
from smartmarket.core.types import Timeframe
from smartmarket.data.ingest import ingest_file
from smartmarket.store import open_store

API_KEY = "fuzz-key"


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Any:
    home = tmp_path_factory.mktemp("fuzz") / "home"
    home.mkdir()
    config = Settings(home=home)
    store = open_store(config.store_url)
    ingest_file(store, shared_data / "BTCUSDT-4h.csv.gz", quarantine_dir=config.quarantine_dir)
    last = store.latest("BTCUSDT", Timeframe.H4, 50)["ts"].tolist()
    store.append_events(
        SignalGenerated(
            ts_event=ts + Timeframe.H4.ms, symbol="BTCUSDT", timeframe=Timeframe.H4, ts=ts, direction="long",
            confidence=0.6, strength="moderate", regime="ranging", member_probabilities={"m": {"long": 0.6}},
            member_weights={"m": 1.0}, correlation_id=f"fuzz-{ts}",
        )
        for ts in last[::5]
    )
    app = create_app(config, store=store, security=SecurityConfig(api_key=API_KEY))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_api_answers_as_documented_and_never_with_5xx(api_schema: Any) -> None:
    """Every operation of the spec, fuzzed; all failing operations are reported together."""
    failures: dict[str, str] = {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15  # the whole API, not an empty spec
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)  # fmt: skip
        def answers_as_documented(case: Any) -> None:
            case.call_and_validate(headers={"X-API-Key": API_KEY}, excluded_checks=[positive_data_acceptance])

        try:
            answers_as_documented()
        except (Exception, BaseExceptionGroup) as exc:  # collect, then fail once with every operation's problem
            failures[operation.label] = str(exc)[:2000]
    assert not failures, "\n\n".join(f"{label}:\n{problem}" for label, problem in failures.items())
