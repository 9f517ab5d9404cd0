"""Schemathesis over the API's OpenAPI document: generated requests (valid and not) never cause a server
error, with a read key and with an ingest key, on a real lake."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from conftest import api_deps_for, build_analytics_lake
from vhlake.api.app import install_api

pytestmark = pytest.mark.slow
KEYS: dict[str, str] = {}
SAMPLE_NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)  # the injected clock: half a day after the sample ends


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root: Path = tmp_path_factory.mktemp("schema")
    lake = build_analytics_lake(root, jobs=1_000, seed=9)
    deps = api_deps_for(lake, root, clock=lambda: SAMPLE_NOW)
    KEYS["admin"] = deps.keys.create("admin")[1]
    app = FastAPI()
    install_api(app, deps)
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    deps.audit.close()
    deps.publisher.close()


def test_no_request_makes_a_server_error(api_schema: Any) -> None:
    # schemathesis' pytest plugin does not work with this pytest; its strategies run under hypothesis directly
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 7
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def no_server_error(case: Any) -> None:
            case.call_and_validate(
                headers={"Authorization": f"Bearer {KEYS['admin']}"}, checks=[not_a_server_error]
            )

        no_server_error()
