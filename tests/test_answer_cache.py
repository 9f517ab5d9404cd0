"""Answers shared across API clients (``vhlake.analytics.answer_cache``) on real lakes: exact after a new
pipeline run, never shared across row filters, built once for many concurrent askers, and an answer over
a window ending now kept no longer than its second."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from conftest import api_deps_for, build_analytics_lake, ingest, make_event, write_lines
from vhlake.analytics.repository import AnalyticsRepository
from vhlake.api.app import ApiDeps, install_api
from vhlake.lake.delta import Lake
from vhlake.pipeline.runner import Pipeline
from vhlake.query.duckdb_engine import DuckDBEngine
from vhlake.query.engine import Params
from vhlake.result import Ok

NOW = datetime(2026, 11, 27, 23, 0, tzinfo=UTC)  # an hour after the sample's last day ends


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Lake, TestClient, dict[str, str], ApiDeps]]:
    lake = build_analytics_lake(tmp_path, jobs=600, seed=11)
    deps = api_deps_for(lake, tmp_path, clock=lambda: NOW, audit_every_s=3600)
    listed = deps.repository.get_marketplaces()
    assert isinstance(listed, Ok) and len(listed.value) >= 2
    tokens = {
        "all": deps.keys.create("read")[1],
        "first": deps.keys.create("read", marketplaces=[listed.value[0].marketplace])[1],
        "second": deps.keys.create("read", marketplaces=[listed.value[1].marketplace])[1],
    }
    app = FastAPI()
    install_api(app, deps)
    yield lake, TestClient(app), tokens, deps
    deps.publisher.close()


def get(client: TestClient, token: str, path: str, **params: Any) -> Any:
    answer = client.get(path, params=params, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def uncached(lake: Lake) -> AnalyticsRepository:
    """The same analytics read afresh: what every cached answer must equal."""
    return AnalyticsRepository(DuckDBEngine(lake), clock=lambda: NOW, cache=False)


def test_a_cached_answer_changes_with_the_next_pipeline_run(
    served: tuple[Lake, TestClient, dict[str, str], ApiDeps], tmp_path: Path
) -> None:
    lake, client, tokens, _ = served
    first = get(client, tokens["all"], "/v1/marketplaces")["data"][0]
    metrics = f"/v1/marketplaces/{first['marketplace']}/metrics"
    window = {"start": "2026-11-01", "end": "2026-11-27"}
    before = get(client, tokens["all"], metrics, **window)
    assert get(client, tokens["all"], metrics, **window) == before  # asked again: the same answer

    jobs = [
        make_event(
            n,
            job_id=f"late-job-{n}",
            marketplace=first["marketplace"],
            timestamp="2026-11-27T10:00:00-03:00",
        )
        for n in range(900_000, 900_040)
    ]
    ingest(lake, write_lines(tmp_path / "more.jsonl", jobs))
    Pipeline(lake).run()

    after = get(client, tokens["all"], metrics, **window)
    assert after["data"] != before["data"]
    fresh = uncached(lake).get_marketplace_metrics(
        first["marketplace"], datetime(2026, 11, 1).date(), datetime(2026, 11, 27).date()
    )
    assert isinstance(fresh, Ok)
    assert after["data"] == fresh.value.model_dump(mode="json")
    assert (
        after["data"]["summary"]["total_validations"] == before["data"]["summary"]["total_validations"] + 40
    )


@pytest.mark.parametrize("order", [("all", "first", "second"), ("second", "first", "all")])
def test_keys_with_different_row_filters_never_share_an_answer(
    served: tuple[Lake, TestClient, dict[str, str], ApiDeps], order: tuple[str, ...]
) -> None:
    lake, client, tokens, _ = served
    listed = uncached(lake).get_marketplaces()
    assert isinstance(listed, Ok)
    names = [m.marketplace for m in listed.value]
    expected = {"all": names, "first": [names[0]], "second": [names[1]]}
    for _ in range(2):  # the second round is answered from the cache
        for who in order:
            assert [
                m["marketplace"] for m in get(client, tokens[who], "/v1/marketplaces")["data"]
            ] == expected[who]
            overview = get(client, tokens[who], "/v1/overview", days=7, end="2026-11-27")
            assert {m["marketplace"] for m in overview["data"]["marketplaces"]} == set(expected[who])


def test_paging_a_shared_answer_leaves_it_whole(
    served: tuple[Lake, TestClient, dict[str, str], ApiDeps],
) -> None:
    _, client, tokens, _ = served
    first = get(client, tokens["all"], "/v1/marketplaces")["data"][0]["marketplace"]
    window = {"start": "2026-11-01", "end": "2026-11-27"}
    whole = get(client, tokens["all"], f"/v1/marketplaces/{first}/metrics", **window)
    page = get(client, tokens["all"], f"/v1/marketplaces/{first}/metrics", **window, limit=2)
    assert page["data"]["daily"] == whole["data"]["daily"][:2] and len(whole["data"]["daily"]) > 2
    assert get(client, tokens["all"], f"/v1/marketplaces/{first}/metrics", **window) == whole


class CountingEngine(DuckDBEngine):
    """DuckDB that counts its statements, slowly enough that concurrent askers overlap."""

    def __init__(self, lake: Lake) -> None:
        super().__init__(lake)
        self.statements = 0
        self._count_lock = threading.Lock()

    def execute(self, sql: str, params: Params = None) -> Any:
        with self._count_lock:
            self.statements += 1
        threading.Event().wait(0.05)
        return super().execute(sql, params)


def test_many_concurrent_askers_cost_one_build(tmp_path: Path) -> None:
    lake = build_analytics_lake(tmp_path, jobs=300, seed=2)
    engine = CountingEngine(lake)
    repository = AnalyticsRepository(engine, clock=lambda: NOW)
    views = [repository.restricted_to(None) for _ in range(20)]  # as each API request makes its own view
    answers: list[Any] = [None] * len(views)

    def ask(i: int) -> None:
        answers[i] = views[i].get_overview(7)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(views))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert engine.statements == 2  # overview_daily and overview_periods, once
    assert all(isinstance(a, Ok) and a.value == answers[0].value for a in answers)
    assert answers[0].value == uncached(lake).get_overview(7).value  # type: ignore[union-attr]


def test_an_answer_over_the_last_hour_is_kept_a_second_at_most(tmp_path: Path) -> None:
    lake = build_analytics_lake(tmp_path, jobs=300, seed=4)
    now = [NOW]
    repository = AnalyticsRepository(DuckDBEngine(lake), clock=lambda: now[0])
    first = repository.get_real_time_stats()
    assert isinstance(first, Ok) and first.value.as_of == NOW
    now[0] = NOW + timedelta(milliseconds=500)
    again = repository.get_real_time_stats()
    assert isinstance(again, Ok) and again.value.as_of == NOW  # shared: it says as of when it is
    now[0] = NOW + timedelta(seconds=2)
    later = repository.get_real_time_stats()
    assert isinstance(later, Ok) and later.value.as_of == NOW + timedelta(seconds=2)
