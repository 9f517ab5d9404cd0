"""The data-quality view's API on a real lake: quarantined and rejected inputs per day and reason, equal to
the tables summed in Python; examples bounded and returned verbatim (the page shows them as text); the row
filter of marketplace keys; and the admin-only replay that moves events out of the quarantine, once,
refused with a 409 while another writer holds the derived tables."""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from conftest import api_deps_for, make_event, write_lines
from vhlake.analytics.rejections import MAX_EXAMPLE_CHARS
from vhlake.api.app import install_api
from vhlake.api.routes import quality as quality_routes
from vhlake.ingest.bronze import BronzeIngestor
from vhlake.lake.delta import Lake
from vhlake.lake.tables import AUDIT_LOG, QUARANTINE, REJECTED, SILVER
from vhlake.lake.writer_lock import DerivedTablesBusy, derived_tables_writer
from vhlake.pipeline.expectations import DEFAULT_EXPECTATIONS, Expectation
from vhlake.pipeline.runner import Pipeline

CLOCK = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)  # the analytics' clock: nothing here is "today"
XSS = "<img src=x onerror=alert(1)>"
# A rule the lake was first run with and the pipeline no longer has: what the replay brings back.
NO_KABUM = Expectation("known_marketplace", "marketplace <> 'kabum'")


def bad_inputs() -> list[Any]:
    return [
        *(make_event(i) for i in range(1, 4)),
        make_event(10, job_id=""),  # missing_job_id
        make_event(11, job_id=""),
        make_event(12, event_type=XSS, marketplace="shopee"),  # unknown_event_type, a marketplace key's
        make_event(13, event_id="x" * 500, event_type="nope", marketplace="magalu"),  # a long example
        make_event(14, marketplace=""),  # missing_marketplace: seen by unrestricted keys only
        make_event(20, marketplace="kabum"),  # pass the rules in force, broke NO_KABUM
        make_event(21, marketplace="kabum"),
        '{"event_id": "truncated-1", "event_type": "valid',  # rejected: invalid JSON
        "[1, 2, 3]",  # rejected: an array
        b'{"event_id": "\xff\xfe"}',  # rejected: invalid UTF-8
        '{"x": "' + "y" * 5000,  # rejected: invalid JSON, long
    ]


def build_lake(root: Path) -> Lake:
    """Bad inputs through the real ingest and a pipeline with NO_KABUM; then copies of some quarantined
    and rejected rows filed two days earlier (other sources), so the answer spans days."""
    lake = Lake(str(root / "lake"))
    BronzeIngestor(lake, source_system="test", batch_bytes=1 << 20).ingest_file(
        write_lines(root / "bad.jsonl", bad_inputs())
    )
    Pipeline(lake, expectations=[*DEFAULT_EXPECTATIONS, NO_KABUM]).run()
    for table in (QUARANTINE, REJECTED):
        rows = read(lake, table)
        older = rows.filter(pc.field("reason") != NO_KABUM.name) if table is QUARANTINE else rows
        shifted = older.set_column(
            older.schema.get_field_index("source"), "source", pa.array(["file:older"] * older.num_rows)
        )
        moment = pc.subtract(shifted["ingestion_time"], pa.scalar(timedelta(days=2)))
        shifted = shifted.set_column(
            shifted.schema.get_field_index("ingestion_time"), "ingestion_time", moment
        )
        days = pc.cast(pc.cast(moment, pa.timestamp("us")), pa.date32())  # UTC dates
        shifted = shifted.set_column(shifted.schema.get_field_index("ingestion_date"), "ingestion_date", days)
        lake.append(table, shifted)
    return lake


def read(lake: Lake, table: Any) -> pa.Table:
    delta = lake.open(table)
    return table.schema.empty_table() if delta is None else pa.table(delta.to_pyarrow_table())


def reject_reason(error: str) -> str:
    """The documented grouping of rejects: the error up to its first ':', byte positions dropped."""
    return "invalid UTF-8" if error.startswith("invalid UTF-8") else error.split(":", 1)[0]


def expected_days(lake: Lake, visible: set[str] | None) -> Counter[tuple[str, str, str]]:
    """(date, source, reason) -> events, summed in Python from the two tables."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for row in read(lake, QUARANTINE).to_pylist():
        if visible is None or row["marketplace"] in visible:
            counts[(row["ingestion_date"].isoformat(), "quarantine", row["reason"])] += 1
    if visible is None:
        for row in read(lake, REJECTED).to_pylist():
            counts[(row["ingestion_date"].isoformat(), "rejected", reject_reason(row["error"]))] += 1
    return counts


@dataclasses.dataclass
class Site:
    client: TestClient
    lake: Lake
    tokens: dict[str, str]
    deps: Any


def make_site(root: Path) -> Site:
    lake = build_lake(root)
    deps = api_deps_for(lake, root, clock=lambda: CLOCK, audit_every_s=3600)
    tokens = {
        "admin": deps.keys.create("admin")[1],
        "admin_shopee": deps.keys.create("admin", marketplaces=["shopee"])[1],
        "reader": deps.keys.create("read")[1],
        "shopee": deps.keys.create("read", marketplaces=["shopee"])[1],
        "ingest": deps.keys.create("ingest")[1],
    }
    app = FastAPI()
    install_api(app, deps)
    return Site(TestClient(app, raise_server_exceptions=False), lake, tokens, deps)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    made = make_site(tmp_path_factory.mktemp("quality"))
    yield made
    made.deps.publisher.close()


@pytest.fixture
def fresh_site(tmp_path: Path) -> Iterator[Site]:
    """A lake of its own: the replays change it."""
    made = make_site(tmp_path)
    yield made
    made.deps.publisher.close()


def newest_day(lake: Lake) -> str:
    days = (
        read(lake, QUARANTINE)["ingestion_date"].to_pylist()
        + read(lake, REJECTED)["ingestion_date"].to_pylist()
    )
    return max(days).isoformat()  # type: ignore[no-any-return]


def rejections(site: Site, token: str, **params: Any) -> Any:
    return site.client.get(
        "/v1/quality/rejections", params=params, headers={"Authorization": f"Bearer {site.tokens[token]}"}
    )


def replay(site: Site, token: str, body: Any = None) -> Any:
    return site.client.post(
        "/v1/quality/replay", json=body, headers={"Authorization": f"Bearer {site.tokens[token]}"}
    )


def by_day(answer: dict[str, Any]) -> Counter[tuple[str, str, str]]:
    return Counter({(d["date"], d["source"], d["reason"]): d["events"] for d in answer["daily"]})


def test_counts_per_day_and_reason_equal_the_tables(site: Site) -> None:
    response = rejections(site, "reader", days=30, end=newest_day(site.lake))
    assert response.status_code == 200, response.text
    body = response.json()
    answer = body["data"]
    assert "freshness" in body and answer["rejects_visible"] is True and answer["can_replay"] is False
    expected = expected_days(site.lake, None)
    assert len({day for day, _, _ in expected}) == 2 and {s for _, s, _ in expected} == {
        "quarantine",
        "rejected",
    }
    assert by_day(answer) == expected
    totals: Counter[tuple[str, str]] = Counter()
    for (_, source, reason), count in expected.items():
        totals[(source, reason)] += count
    assert {(r["source"], r["reason"]): r["events"] for r in answer["reasons"]} == totals
    assert [r["events"] for r in answer["reasons"]] == sorted(totals.values(), reverse=True)
    assert {"invalid JSON", "JSON array is not an object", "invalid UTF-8"} <= {
        reason for source, reason in totals if source == "rejected"
    }


def test_examples_are_bounded_verbatim_and_the_newest(site: Site) -> None:
    answer = rejections(site, "admin", days=30, end=newest_day(site.lake)).json()["data"]
    reasons = {(r["source"], r["reason"]): r for r in answer["reasons"]}
    assert all(len(r["example"]) <= MAX_EXAMPLE_CHARS for r in answer["reasons"])
    assert answer["can_replay"] is True
    unknown = reasons[("quarantine", "unknown_event_type")]
    # the two events of the reason were ingested together: either is the newest; both are cut or shown whole
    assert unknown["example_truncated"] == (
        "x" * 500 in unknown["example"] or "event_id=xxx" in unknown["example"]
    )
    long_json = reasons[("rejected", "invalid JSON")]
    raws = [r for r in read(site.lake, REJECTED).to_pylist() if r["error"].startswith("invalid JSON")]
    assert long_json["example"] in {raw["raw"][:MAX_EXAMPLE_CHARS] for raw in raws}
    assert long_json["example_truncated"] == any(
        len(raw["raw"]) > MAX_EXAMPLE_CHARS and raw["raw"].startswith(long_json["example"]) for raw in raws
    )
    newest = max(
        r["ingestion_time"]
        for r in read(site.lake, QUARANTINE).to_pylist()
        if r["reason"] == "missing_job_id"
    )
    assert datetime.fromisoformat(reasons[("quarantine", "missing_job_id")]["last_seen"]) == newest


def test_an_xss_looking_input_comes_back_as_the_text_it_was(site: Site) -> None:
    answer = rejections(site, "shopee", days=30, end=newest_day(site.lake)).json()["data"]
    (unknown,) = answer["reasons"]  # shopee's one quarantined event
    assert unknown["reason"] == "unknown_event_type" and f"event_type={XSS}" in unknown["example"]


def test_a_marketplace_key_sees_its_quarantined_events_and_no_rejects(site: Site) -> None:
    answer = rejections(site, "shopee", days=30, end=newest_day(site.lake)).json()["data"]
    assert answer["rejects_visible"] is False and answer["can_replay"] is False
    assert by_day(answer) == expected_days(site.lake, {"shopee"})
    assert sum(by_day(answer).values()) == 2  # the event and its copy two days earlier
    assert all(d["source"] == "quarantine" for d in answer["daily"])


def test_the_period_follows_days_and_end(site: Site) -> None:
    last = date.fromisoformat(newest_day(site.lake))
    earlier = (last - timedelta(days=2)).isoformat()
    answer = rejections(site, "reader", days=1, end=earlier).json()["data"]
    assert (answer["start_date"], answer["end_date"]) == (earlier, earlier)
    expected = Counter({k: v for k, v in expected_days(site.lake, None).items() if k[0] == earlier})
    assert by_day(answer) == expected and sum(expected.values()) > 0
    assert rejections(site, "reader", days=400).status_code == 422


@pytest.mark.parametrize("token", ["reader", "shopee", "ingest", "admin_shopee"])
def test_only_unrestricted_admin_keys_replay(site: Site, token: str) -> None:
    before = read(site.lake, QUARANTINE).num_rows
    response = replay(site, token, {"reason": NO_KABUM.name})
    assert response.status_code == 403 and response.headers["content-type"] == "application/problem+json"
    assert read(site.lake, QUARANTINE).num_rows == before


def test_an_admin_replay_moves_passing_events_out_once(fresh_site: Site) -> None:
    site = fresh_site
    quarantined = read(site.lake, QUARANTINE)
    kabum = quarantined.filter(pc.equal(quarantined["reason"], NO_KABUM.name)).num_rows
    assert kabum == 2 and "job-20" not in set(read(site.lake, SILVER)["job_id"].to_pylist())

    response = replay(site, "admin", {"reason": NO_KABUM.name})
    assert response.status_code == 200, response.text
    assert response.json() == {"reason": NO_KABUM.name, "replayed": kabum}
    after = read(site.lake, QUARANTINE)
    assert after.num_rows == quarantined.num_rows - kabum
    assert NO_KABUM.name not in set(after["reason"].to_pylist())
    assert {"job-20", "job-21"} <= set(read(site.lake, SILVER)["job_id"].to_pylist())
    answer = rejections(site, "admin", days=30, end=newest_day(site.lake)).json()["data"]
    assert NO_KABUM.name not in {r["reason"] for r in answer["reasons"]}

    assert replay(site, "admin").json() == {"reason": None, "replayed": 0}  # the rest still fail the rules
    assert read(site.lake, QUARANTINE).num_rows == after.num_rows
    site.deps.audit.flush()
    audited = [r for r in read(site.lake, AUDIT_LOG).to_pylist() if r["route"] == "/v1/quality/replay"]
    assert [(r["method"], r["status"]) for r in audited] == [("POST", 200), ("POST", 200)]
    assert f"replayed {kabum} ({NO_KABUM.name})" in audited[0]["details"]


def test_a_replay_while_another_writer_holds_the_lake_is_a_409(
    fresh_site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = fresh_site
    monkeypatch.setattr(quality_routes, "REPLAY_WAIT_S", 0.2)
    before = read(site.lake, QUARANTINE).num_rows
    with derived_tables_writer(site.lake):  # as a pipeline run does
        response = replay(site, "admin", {"reason": NO_KABUM.name})
    assert response.status_code == 409 and response.headers["retry-after"] == "5"
    assert "retry" in response.json()["detail"]
    assert read(site.lake, QUARANTINE).num_rows == before
    assert replay(site, "admin", {"reason": NO_KABUM.name}).json()["replayed"] == 2  # once it is free


def test_the_derived_tables_have_one_writer_at_a_time(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    order: list[str] = []

    def pipeline_run() -> None:
        with derived_tables_writer(lake):  # waits as long as it takes
            order.append("second")

    with derived_tables_writer(lake):
        with pytest.raises(DerivedTablesBusy), derived_tables_writer(lake, wait_s=0.1):
            pass
        waiting = threading.Thread(target=pipeline_run)
        waiting.start()
        waiting.join(timeout=0.3)
        order.append("first")
    waiting.join(timeout=10)
    assert order == ["first", "second"]
