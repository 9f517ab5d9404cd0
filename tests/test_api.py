"""The HTTP API on a real lake: every endpoint, keys and scopes, marketplace row filters, problem details,
size, field and rate limits, the audit log, security headers, events published through the real (embedded)
log, and the whole app (``create_app``) served by uvicorn on a real socket."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from conftest import (
    RESTATED_AT,
    api_deps_for,
    build_analytics_lake,
    engagement_gold,
    make_event,
    plant_restatements,
    restated_days,
    rows,
)
from forecast_lake import ERROR_DAY, SLOW, SPIKE, TODAY, build_forecast_lake, expected_forecast, table_rows
from servers import free_port
from vhlake import bootstrap
from vhlake.api.app import DEFAULT_LIMITS, ApiDeps, install_api
from vhlake.api.keys import KeyStore
from vhlake.api.limits import ApiLimits
from vhlake.events.embedded_log import EmbeddedEventLog
from vhlake.http_app import create_app
from vhlake.lake.delta import Lake
from vhlake.lake.tables import API_KEYS, AUDIT_LOG, GOLD, SILVER, USER_ENGAGEMENT_GOLD
from vhlake.service.runner import LakeService, ServiceOptions
from vhlake.settings import Settings

SHOPEE = "shopee"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, Path]:
    root = tmp_path_factory.mktemp("api")
    return build_analytics_lake(root, jobs=3_000, seed=5), root


@pytest.fixture(scope="module")
def newest(built: tuple[Lake, Path]) -> datetime:
    silver = pa.table(built[0].open(SILVER).to_pyarrow_table())  # type: ignore[union-attr]
    return max(silver["created_at"].to_pylist())  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def api(built: tuple[Lake, Path], newest: datetime) -> Iterator[tuple[TestClient, dict[str, str], ApiDeps]]:
    lake, root = built
    deps = api_deps_for(lake, root, clock=lambda: newest + timedelta(minutes=1), audit_every_s=3600)
    keys = deps.keys
    tokens = {
        "admin": keys.create("admin")[1],
        "reader": keys.create("read")[1],
        "shopee": keys.create("read", marketplaces=[SHOPEE])[1],
        "ingest": keys.create("ingest")[1],
        "ingest_shopee": keys.create("ingest", marketplaces=[SHOPEE])[1],
    }
    revoked_id, revoked = keys.create("read")
    keys.revoke(revoked_id)
    tokens["revoked"] = revoked
    tokens["revoked_id"] = revoked_id
    app = FastAPI()
    install_api(app, deps)

    @app.get("/v1/broken")
    def broken() -> None:  # a route with a bug: what a server error looks like and leaves behind
        raise RuntimeError("a bug")

    yield TestClient(app, raise_server_exceptions=False), tokens, deps
    deps.publisher.close()


def get(client: TestClient, path: str, token: str | None, **params: Any) -> Any:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return client.get(path, params=params, headers=headers)


METRICS = "/v1/marketplaces/{m}/metrics"


def test_every_endpoint_answers_with_data_and_freshness(api: Any, newest: datetime) -> None:
    client, tokens, _ = api
    admin = tokens["admin"]
    calls: list[tuple[str, dict[str, Any]]] = [
        (METRICS.format(m=SHOPEE), {"start": "2026-10-01", "end": "2026-11-30"}),
        (f"/v1/marketplaces/{SHOPEE}/performance", {"days": 30, "end": "2026-11-26"}),
        ("/v1/stats/realtime", {"window_minutes": 24 * 60}),
        ("/v1/predictions", {"marketplace": SHOPEE, "category": "categoria_01"}),
        (f"/v1/marketplaces/{SHOPEE}/predictions", {"days": 30, "end": "2026-11-26", "horizon": 7}),
        ("/v1/quality", {}),
        ("/v1/marketplaces", {}),
        ("/v1/alerts", {}),
    ]
    for path, params in calls:
        response = get(client, path, admin, **params)
        assert response.status_code == 200, (path, response.text)
        body = response.json()
        assert "data" in body and body["freshness"]["newest_event_at"] is not None
        assert body["freshness"]["lag_seconds"] >= 0
    metrics = get(client, METRICS.format(m=SHOPEE), admin, start="2026-10-01", end="2026-11-30").json()[
        "data"
    ]
    assert (
        metrics["summary"]["total_validations"] == sum(d["total_validations"] for d in metrics["daily"]) > 0
    )


def test_paging_the_daily_rows_keeps_the_summary(api: Any) -> None:
    client, tokens, _ = api
    full = get(
        client, METRICS.format(m=SHOPEE), tokens["reader"], start="2026-10-01", end="2026-11-30"
    ).json()
    page = get(
        client,
        METRICS.format(m=SHOPEE),
        tokens["reader"],
        start="2026-10-01",
        end="2026-11-30",
        limit=5,
        offset=5,
    ).json()
    assert page["data"]["daily"] == full["data"]["daily"][5:10]
    assert page["data"]["summary"] == full["data"]["summary"]


@pytest.mark.parametrize(
    ("token", "status"),
    [(None, 401), ("nonsense", 401), ("vhk_000000000000_forged", 401), ("revoked", 401), ("ingest", 403)],
)
def test_keys_are_required_and_checked(api: Any, token: str | None, status: int) -> None:
    client, tokens, _ = api
    response = get(client, "/v1/stats/realtime", tokens.get(token or "", token))
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status


def test_a_marketplace_key_never_sees_another_marketplace(api: Any) -> None:
    client, tokens, _ = api
    shopee = tokens["shopee"]
    assert (
        get(client, METRICS.format(m=SHOPEE), shopee, start="2026-10-01", end="2026-11-30").status_code == 200
    )
    for path, params in [
        (METRICS.format(m="mercado_livre"), {"start": "2026-10-01", "end": "2026-11-30"}),
        ("/v1/marketplaces/mercado_livre/performance", {}),
        ("/v1/predictions", {"marketplace": "mercado_livre", "category": "x"}),
        ("/v1/marketplaces/mercado_livre/predictions", {}),
        ("/v1/stats/realtime", {"marketplace": "mercado_livre"}),
        ("/v1/quality", {}),
    ]:
        assert get(client, path, shopee, **params).status_code == 403, path
    listed = get(client, "/v1/marketplaces", shopee).json()["data"]
    assert [m["marketplace"] for m in listed] == [SHOPEE]
    realtime = get(client, "/v1/stats/realtime", shopee, window_minutes=24 * 60).json()["data"]
    assert {m["marketplace"] for m in realtime["marketplaces"]} == {SHOPEE}
    everyone = get(client, "/v1/stats/realtime", tokens["reader"], window_minutes=24 * 60).json()["data"]
    assert len(everyone["marketplaces"]) > 1 and everyone["total_jobs"] > realtime["total_jobs"]


def test_bad_input_is_a_422_problem(api: Any) -> None:
    client, tokens, _ = api
    bad_date = get(client, METRICS.format(m=SHOPEE), tokens["reader"], start="yesterday", end="2026-11-30")
    assert bad_date.status_code == 422 and bad_date.json()["title"] == "invalid request"
    reversed_range = get(
        client, METRICS.format(m=SHOPEE), tokens["reader"], start="2026-11-30", end="2026-11-01"
    )
    assert reversed_range.status_code == 422 and "is after" in reversed_range.json()["detail"]
    assert get(client, "/v1/marketplaces/shopee/performance", tokens["reader"], days=0).status_code == 422


def test_events_are_validated_one_by_one_and_published(api: Any) -> None:
    client, tokens, deps = api
    log: EmbeddedEventLog = deps.publisher._log
    before = log.end_offset()
    batch = [make_event(1, marketplace=SHOPEE), {"event_type": "nope"}, make_event(2, marketplace="magalu")]
    response = client.post("/v1/events", json=batch, headers={"X-API-Key": tokens["ingest"]})
    assert response.status_code == 202
    assert response.json() | {"errors": None} == {"accepted": 2, "rejected": 1, "outboxed": 0, "errors": None}
    assert response.json()["errors"][0]["index"] == 1
    assert log.end_offset() == before + 2
    single = client.post("/v1/events", json=make_event(3), headers={"X-API-Key": tokens["ingest"]})
    assert single.json()["accepted"] == 1
    limited = client.post("/v1/events", json=batch, headers={"X-API-Key": tokens["ingest_shopee"]})
    assert limited.json()["accepted"] == 1
    assert "may not publish for marketplace 'magalu'" in json.dumps(limited.json()["errors"])
    assert client.post("/v1/events", json=batch, headers={"X-API-Key": tokens["reader"]}).status_code == 403


def test_oversized_and_malformed_bodies_are_refused(api: Any) -> None:
    client, tokens, _ = api
    headers = {"X-API-Key": tokens["ingest"], "content-type": "application/json"}
    huge = client.post(
        "/v1/events", content=b"[" + b" " * DEFAULT_LIMITS.max_body_bytes + b"]", headers=headers
    )
    assert huge.status_code == 413 and huge.headers["content-type"] == "application/problem+json"
    garbage = client.post("/v1/events", content=b"{not json", headers=headers)
    assert garbage.status_code == 400


def test_every_request_is_audited(api: Any, built: tuple[Lake, Path]) -> None:
    client, tokens, deps = api
    deps.audit.flush()
    get(client, "/v1/stats/realtime", tokens["reader"])
    get(client, "/v1/stats/realtime", None)
    assert deps.audit.flush() == 2
    audit = pa.table(built[0].open(AUDIT_LOG).to_pyarrow_table()).to_pylist()  # type: ignore[union-attr]
    last = sorted(audit, key=lambda r: r["at"])[-2:]
    assert [(r["route"], r["status"]) for r in last] == [
        ("/v1/stats/realtime", 200),
        ("/v1/stats/realtime", 401),
    ]
    assert last[0]["key_id"] is not None and last[1]["key_id"] is None


def test_keys_cli_prints_the_key_alone_on_the_last_line(run_cli: Any, tmp_path: Path) -> None:
    lake_dir = str(tmp_path / "lake")
    created = run_cli("--lake", lake_dir, "keys", "create", "--scope", "read", "--marketplace", SHOPEE)
    assert created.exit_code == 0
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("vhk_") and " " not in key
    found = KeyStore(Lake(lake_dir)).authenticate(key)
    assert found is not None and found.marketplaces == frozenset({SHOPEE})
    listed = run_cli("--lake", lake_dir, "keys", "list")
    assert found.key_id in listed.stdout and key not in listed.stdout
    assert run_cli("--lake", lake_dir, "keys", "revoke", found.key_id).exit_code == 0
    assert KeyStore(Lake(lake_dir)).authenticate(key) is None


def post_events(client: TestClient, token: str, body: bytes) -> Any:
    return client.post(
        "/v1/events", content=body, headers={"X-API-Key": token, "content-type": "application/json"}
    )


def nested(depth: int, inner: str = "1") -> str:
    return '{"x":' * depth + inner + "}" * depth


def with_payload(n: int, payload_json: str) -> str:
    """An event whose payload is the given JSON text (built as text: json.dumps would recurse)."""
    return json.dumps(make_event(n, marketplace=SHOPEE, payload="@")).replace('"@"', payload_json)


BAD_EVENTS = {
    "lone surrogate": json.dumps(make_event(90, category="\udc00")),
    "earliest instant": json.dumps(make_event(91, timestamp="0001-01-01T00:00:00+14:00")),
    "latest instant": json.dumps(make_event(92, timestamp="9999-12-31T23:59:59-14:00")),
    "JSON 5,000 deep": "[" * 5_000 + "]" * 5_000,
    "payload 900 deep": with_payload(93, nested(900)),
}


@pytest.mark.parametrize("bad", BAD_EVENTS.values(), ids=BAD_EVENTS.keys())
def test_one_bad_event_never_sinks_its_batch(api: Any, bad: str) -> None:
    client, tokens, deps = api
    log: EmbeddedEventLog = deps.publisher._log
    before = log.end_offset()
    good = [json.dumps(make_event(n, marketplace=SHOPEE)) for n in (80, 81)]
    response = post_events(client, tokens["ingest"], f"[{good[0]},{bad},{good[1]}]".encode())
    assert response.status_code == 202, response.text
    answer = response.json()
    assert (answer["accepted"], answer["rejected"]) == (2, 1)
    assert [e["index"] for e in answer["errors"]] == [1] and answer["errors"][0]["error"]
    assert log.end_offset() == before + 2


@pytest.mark.parametrize("bad", BAD_EVENTS.values(), ids=BAD_EVENTS.keys())
def test_a_bad_event_alone_is_answered_with_a_problem(api: Any, bad: str) -> None:
    client, tokens, _ = api
    response = post_events(client, tokens["ingest"], bad.encode())
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"]


def audit_rows(deps: ApiDeps, built: tuple[Lake, Path]) -> list[dict[str, Any]]:
    deps.audit.flush()
    rows = pa.table(built[0].open(AUDIT_LOG).to_pyarrow_table()).to_pylist()  # type: ignore[union-attr]
    return sorted(rows, key=lambda r: r["at"])


def test_the_audit_says_who_asked_for_what_and_how_it_ended(api: Any, built: tuple[Lake, Path]) -> None:
    client, tokens, deps = api
    deps.audit.flush()
    assert get(client, "/v1/stats/realtime", tokens["revoked"]).status_code == 401
    assert get(client, "/v1/marketplaces/mercado_livre/performance", tokens["shopee"]).status_code == 403
    failed = get(client, "/v1/broken", tokens["reader"])
    assert failed.status_code == 500 and failed.headers["content-type"] == "application/problem+json"
    assert get(client, "/v1/" + "x" * 60_000, None).status_code == 404
    revoked, forbidden, broken, missing = audit_rows(deps, built)[-4:]
    details = [json.loads(r["details"]) for r in (revoked, forbidden, broken, missing)]
    assert (revoked["key_id"], revoked["status"]) == (tokens["revoked_id"], 401)
    assert "revoked" in details[0]["outcome"]
    assert forbidden["status"] == 403 and details[1]["marketplace"] == "mercado_livre"
    assert forbidden["route"] == "/v1/marketplaces/{marketplace}/performance"
    assert (broken["route"], broken["status"]) == ("/v1/broken", 500)
    assert missing["status"] == 404 and len(missing["route"]) <= 256 and len(missing["details"]) <= 1024
    assert all(d["client"] == "testclient" for d in details)


def test_answers_carry_security_headers(api: Any) -> None:
    client, tokens, _ = api
    for response in (
        get(client, "/v1/stats/realtime", tokens["reader"]),
        get(client, "/v1/stats/realtime", None),
        get(client, "/v1/nowhere", None),
    ):
        policy = response.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"


LONGEST = "x" * DEFAULT_LIMITS.max_string_chars
MOST_ERROR_TYPES = {f"e{i}": 1 for i in range(DEFAULT_LIMITS.max_error_types)}
AT_AND_BEYOND_THE_LIMITS = [  # the event and its payload are the first two levels of nesting
    json.dumps(make_event(101, category=LONGEST, payload={"error_types": MOST_ERROR_TYPES})),
    with_payload(102, nested(DEFAULT_LIMITS.max_depth - 1)),
    json.dumps(make_event(103, category=LONGEST + "x")),
    json.dumps(make_event(104, payload={"error_types": MOST_ERROR_TYPES | {"one_more": 1}})),
    with_payload(105, nested(DEFAULT_LIMITS.max_depth)),
    with_payload(106, json.dumps({"k" * (DEFAULT_LIMITS.max_string_chars + 1): 1})),
]


@pytest.mark.parametrize("whole", [True, False], ids=["parsed whole", "parsed element by element"])
def test_events_beyond_the_field_limits_are_rejected_with_a_reason(api: Any, whole: bool) -> None:
    client, tokens, _ = api
    batch = AT_AND_BEYOND_THE_LIMITS + ([] if whole else [BAD_EVENTS["lone surrogate"]])
    answer = post_events(client, tokens["ingest"], f"[{','.join(batch)}]".encode()).json()
    assert answer["accepted"] == 2
    reasons = {e["index"]: e["error"] for e in answer["errors"]}
    assert "category: longer than 2,048 characters" in reasons[2]
    assert "payload.error_types: more than 256 entries" in reasons[3]
    assert f"nested deeper than {DEFAULT_LIMITS.max_depth} levels" in reasons[4]
    assert "field name longer than" in reasons[5]


def test_each_key_has_its_own_request_rate(
    built: tuple[Lake, Path], newest: datetime, tmp_path: Path
) -> None:
    lake, _ = built
    now = [0.0]
    deps = api_deps_for(lake, tmp_path, clock=lambda: newest, audit_every_s=3600)
    first, second = deps.keys.create("read")[1], deps.keys.create("read")[1]
    app = FastAPI()
    install_api(app, deps, ApiLimits(rate_per_s=0.5, rate_burst=2), clock=lambda: now[0])
    client = TestClient(app)
    assert [get(client, "/v1/marketplaces", first).status_code for _ in range(2)] == [200, 200]
    refused = get(client, "/v1/marketplaces", first)
    assert refused.status_code == 429 and refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "2"  # a token every 2 s, and none left
    assert get(client, "/v1/marketplaces", second).status_code == 200
    now[0] += 2.0
    assert get(client, "/v1/marketplaces", first).status_code == 200
    deps.publisher.close()


def test_a_route_asking_for_the_key_twice_spends_one_token(
    built: tuple[Lake, Path], newest: datetime, tmp_path: Path
) -> None:
    # the rejections route takes the key and the key's repository view, which takes the key too: FastAPI
    # must check it once per request, or a burst of 2 would allow a single request
    lake, _ = built
    deps = api_deps_for(lake, tmp_path, clock=lambda: newest, audit_every_s=3600)
    key = deps.keys.create("read")[1]
    app = FastAPI()
    install_api(app, deps, ApiLimits(rate_per_s=0.5, rate_burst=2), clock=lambda: 0.0)
    client = TestClient(app)
    statuses = [get(client, "/v1/quality/rejections", key).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    deps.publisher.close()


@pytest.fixture(scope="module")
def whole_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, LakeService, str]]:
    root = tmp_path_factory.mktemp("whole")
    settings = Settings(
        VHLAKE_LAKE_URI=str(root / "lake"), VHLAKE_API_BODY_TIMEOUT_S=1.0, VHLAKE_READY_MAX_FAILURES=2
    )
    service, checks = bootstrap.build_service(settings, ServiceOptions())
    app, deps = create_app(settings, service=service, checks=checks)
    yield app, service, deps.keys.create("ingest")[1]
    deps.audit.close()
    deps.publisher.close()


@pytest.fixture(scope="module")
def served(whole_app: tuple[FastAPI, LakeService, str]) -> Iterator[tuple[int, str]]:
    app, _, key = whole_app
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.05)
    yield port, key
    server.should_exit = True
    thread.join(timeout=10)


def test_the_app_serves_no_cdn_pages_and_secures_the_dashboard(
    whole_app: tuple[FastAPI, LakeService, str],
) -> None:
    client = TestClient(whole_app[0])
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404
    assert client.get("/openapi.json").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.text.count("<script") == page.text.count("<script src=")  # no inline script to allow


def test_readyz_turns_not_ready_when_a_step_keeps_failing(
    whole_app: tuple[FastAPI, LakeService, str],
) -> None:
    app, service, _ = whole_app
    client = TestClient(app)

    def broken_batch() -> None:
        raise OSError("disk full")

    assert client.get("/readyz").status_code == 200
    service._retrying("pipeline", broken_batch, once=True)
    assert client.get("/readyz").status_code == 200  # one failure is retried, not yet a verdict
    service._retrying("pipeline", broken_batch, once=True)
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503
    assert "disk full" in not_ready.json()["problems"]["pipeline"]
    service._retrying("pipeline", lambda: service._succeeded("pipeline"), once=True)
    assert client.get("/readyz").status_code == 200


@pytest.mark.slow
def test_a_client_that_never_sends_its_body_is_answered_408_and_let_go(served: tuple[int, str]) -> None:
    port, key = served
    with socket.create_connection(("127.0.0.1", port), timeout=20) as connection:
        connection.sendall(
            b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"X-API-Key: {key}\r\nContent-Length: 100\r\n\r\n".encode()
        )
        answer = b""
        while chunk := connection.recv(65536):  # until the server closes (a timeout here fails the test)
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"application/problem+json" in answer


@pytest.mark.slow
def test_healthz_answers_while_a_large_batch_is_parsed(served: tuple[int, str]) -> None:
    port, key = served
    url = f"http://127.0.0.1:{port}"
    padding = {"ruleset": "ml_v3", "s3_path": "s3://uploads/" + "p" * 300}
    body = json.dumps([make_event(n, payload=padding) for n in range(9_000)]).encode()
    assert 4_000_000 < len(body) <= DEFAULT_LIMITS.max_body_bytes
    posted: dict[str, Any] = {}

    def post() -> None:
        request = urllib.request.Request(
            f"{url}/v1/events", data=body, headers={"X-API-Key": key, "Content-Type": "application/json"}
        )
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=120) as response:
            posted["status"] = response.status
        posted["took"] = time.perf_counter() - started

    sender = threading.Thread(target=post)
    sender.start()
    waits = []
    while sender.is_alive():
        started = time.perf_counter()
        with urllib.request.urlopen(f"{url}/healthz", timeout=120) as response:
            assert response.status == 200
        waits.append(time.perf_counter() - started)
    sender.join()
    assert posted["status"] == 202
    # parsed on the event loop, one /healthz waited 55-60 % of the request (measured); off it, about 20 %
    # (what is left is the GIL: the parse and the publishing still run in this process)
    assert len(waits) >= 3 and max(waits) < 0.4 * posted["took"], (max(waits), posted["took"], len(waits))


def test_a_payload_the_pipeline_would_quarantine_for_its_size_is_refused(api: Any) -> None:
    """The pipeline quarantines a payload over MAX_PAYLOAD_BYTES of JSON (payload_too_large): the API refuses
    it up front, and accepts one just under, though every string in both is within the string limit."""
    from vhlake.pipeline.expectations import MAX_PAYLOAD_BYTES

    client, tokens, _ = api
    piece = "x" * (DEFAULT_LIMITS.max_string_chars - 48)
    fields = MAX_PAYLOAD_BYTES // (len(piece) + 12)
    under = {f"f{i:05d}": piece for i in range(fields - 5)}
    over = {f"f{i:05d}": piece for i in range(fields + 5)}
    batch = [json.dumps(make_event(201, payload=under)), json.dumps(make_event(202, payload=over))]
    answer = post_events(client, tokens["ingest"], f"[{','.join(batch)}]".encode()).json()
    assert answer["accepted"] == 1
    assert [e["index"] for e in answer["errors"]] == [1]
    assert "payload_too_large" in answer["errors"][0]["error"]


# -- /v1/marketplaces/{m}/errors on a lake built from hand-written jobs with known error maps -------------

ERRORS = "/v1/marketplaces/{m}/errors"
ERRORS_NOW = datetime(2026, 11, 27, 18, tzinfo=UTC)  # the injected clock: 30 days are 10-29 … 11-27
# (job, marketplace, day, category, terminal kind or None for a running job, its error_types)
ERROR_JOBS: list[tuple[str, str, str, str, str | None, dict[str, int]]] = [
    ("a1", SHOPEE, "2026-11-25", "moda", "failed", {"missing_sku": 3, "invalid_price": 1}),
    ("a2", SHOPEE, "2026-11-25", "moda", "completed", {"missing_sku": 2}),
    ("a3", SHOPEE, "2026-11-25", "moda", "failed", {"missing_sku": 1}),
    ("a4", SHOPEE, "2026-11-25", "moda", None, {}),
    ("b1", SHOPEE, "2026-11-26", "moda", "failed", {"missing_sku": 1, "bad_category": 4}),
    ("b2", SHOPEE, "2026-11-26", "moda", "failed", {"invalid_price": 5}),
    ("b3", SHOPEE, "2026-11-26", "moda", "completed", {"missing_sku": 0, "invalid_price": 2}),
    ("c1", SHOPEE, "2026-11-26", "casa", "completed", {"missing_sku": 7}),
    ("d1", SHOPEE, "2026-11-27", "casa", "failed", {"title_too_long": 1}),
    ("e1", SHOPEE, "2026-10-20", "moda", "failed", {"missing_sku": 100}),  # before the 30 days
    ("m1", "magalu", "2026-11-26", "moda", "failed", {"missing_sku": 50}),
]


@pytest.fixture(scope="module")
def errors_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    from test_pipeline import Lakehouse, end, start

    root = tmp_path_factory.mktemp("errors")
    house = Lakehouse(root)
    events = []
    for job, marketplace, day, category, kind, error_types in ERROR_JOBS:
        identity = {"marketplace": marketplace, "category": category}
        events.append(start(job, f"{day}T12:00:00Z", **identity))
        if kind is not None:
            payload = {"total_rows": 10, "error_types": error_types}
            events.append(end(job, f"{day}T12:01:00Z", kind=kind, payload=payload, **identity))
    house.run(*events)
    deps = api_deps_for(house.lake, root, clock=lambda: ERRORS_NOW, audit_every_s=3600)
    tokens = {
        "reader": deps.keys.create("read")[1],
        "shopee": deps.keys.create("read", marketplaces=[SHOPEE])[1],
    }
    app = FastAPI()
    install_api(app, deps)
    yield TestClient(app, raise_server_exceptions=False), tokens
    deps.audit.close()
    deps.publisher.close()


def error_totals(marketplace: str, first: str, last: str, category: str | None = None) -> dict[str, Any]:
    """The expected ranking, from ERROR_JOBS in plain Python: per type, jobs giving it a value above 0,
    their values summed, and the failed ones among them over those jobs."""
    totals: dict[str, dict[str, int]] = {}
    for _, market, day, cat, kind, error_types in ERROR_JOBS:
        if market != marketplace or not first <= day <= last or category not in (None, cat):
            continue
        for error_type, value in error_types.items():
            if value > 0:
                t = totals.setdefault(error_type, {"jobs": 0, "occurrences": 0, "failed": 0})
                t["jobs"] += 1
                t["occurrences"] += value
                t["failed"] += kind == "failed"
    ranked = sorted(totals, key=lambda e: (-totals[e]["occurrences"], e))
    return {
        e: {
            "error_type": e,
            "jobs": totals[e]["jobs"],
            "occurrences": totals[e]["occurrences"],
            "failed_jobs": totals[e]["failed"],
            "share_of_failed_jobs": pytest.approx(totals[e]["failed"] / totals[e]["jobs"]),
        }
        for e in ranked
    }


def error_trend(marketplace: str, first: str, last: str, kinds: set[str]) -> list[dict[str, Any]]:
    per_day: dict[tuple[str, str], int] = {}
    for _, market, day, _, _, error_types in ERROR_JOBS:
        if market == marketplace and first <= day <= last:
            for error_type, value in error_types.items():
                if error_type in kinds and value > 0:
                    per_day[(day, error_type)] = per_day.get((day, error_type), 0) + value
    return [{"date": d, "error_type": e, "occurrences": n} for (d, e), n in sorted(per_day.items())]


def test_error_types_are_ranked_with_their_share_of_failed_jobs_over_the_period(errors_api: Any) -> None:
    client, tokens = errors_api
    response = get(client, ERRORS.format(m=SHOPEE), tokens["reader"], top=2)
    assert response.status_code == 200, response.text
    body = response.json()
    data = body["data"]
    assert (data["start_date"], data["end_date"], data["period_days"]) == ("2026-10-29", "2026-11-27", 30)
    expected = error_totals(SHOPEE, "2026-10-29", "2026-11-27")
    assert data["error_types"] == list(expected.values())
    # by hand: missing_sku is in a1, a2, a3, b1, c1 (b3's 0 does not count): 3 + 2 + 1 + 1 + 7, and
    # a1, a3, b1 failed. 3 / 5, not the mean of the days' shares (2/3, 1/1, 0/1 ≈ 0.556)
    assert [e["error_type"] for e in data["error_types"]] == [
        "missing_sku",
        "invalid_price",
        "bad_category",
        "title_too_long",
    ]
    missing_sku = data["error_types"][0]
    assert (missing_sku["jobs"], missing_sku["occurrences"], missing_sku["failed_jobs"]) == (5, 14, 3)
    assert missing_sku["share_of_failed_jobs"] == pytest.approx(0.6)
    assert data["trend"] == error_trend(SHOPEE, "2026-10-29", "2026-11-27", {"missing_sku", "invalid_price"})
    assert body["freshness"]["newest_event_at"] == "2026-11-27T12:01:00Z"


def test_error_types_follow_days_end_and_category(errors_api: Any) -> None:
    client, tokens = errors_api
    longer = get(client, ERRORS.format(m=SHOPEE), tokens["reader"], days=40).json()["data"]
    assert longer["error_types"] == list(error_totals(SHOPEE, "2026-10-19", "2026-11-27").values())
    assert longer["error_types"][0]["occurrences"] == 114  # e1's 100 is in 40 days
    moda = get(client, ERRORS.format(m=SHOPEE), tokens["reader"], category="moda", end="2026-11-26", days=2)
    data = moda.json()["data"]
    assert data["category"] == "moda" and data["start_date"] == "2026-11-25"
    assert data["error_types"] == list(error_totals(SHOPEE, "2026-11-25", "2026-11-26", "moda").values())
    assert "title_too_long" not in {e["error_type"] for e in data["error_types"]}
    assert get(client, ERRORS.format(m=SHOPEE), tokens["reader"], top=0).status_code == 422
    assert get(client, ERRORS.format(m=SHOPEE), tokens["reader"], category="").status_code == 422


def test_a_marketplace_key_sees_only_its_marketplaces_error_types(errors_api: Any) -> None:
    client, tokens = errors_api
    refused = get(client, ERRORS.format(m="magalu"), tokens["shopee"])
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
    own = get(client, ERRORS.format(m=SHOPEE), tokens["shopee"]).json()["data"]
    assert own["error_types"] == list(error_totals(SHOPEE, "2026-10-29", "2026-11-27").values())
    magalu = get(client, ERRORS.format(m="magalu"), tokens["reader"]).json()["data"]
    assert magalu["error_types"] == list(error_totals("magalu", "2026-10-29", "2026-11-27").values())
    assert get(client, ERRORS.format(m=SHOPEE), None).status_code == 401


PREDICTIONS = "/v1/marketplaces/{m}/predictions"


@pytest.fixture(scope="module")
def predictions_api(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TestClient, dict[str, str], Lake]]:
    root = tmp_path_factory.mktemp("predictions")
    lake = build_forecast_lake(root)
    clock = datetime.combine(TODAY, datetime.min.time(), UTC) + timedelta(hours=15)
    deps = api_deps_for(lake, root, clock=lambda: clock, audit_every_s=3600)
    tokens = {
        "reader": deps.keys.create("read")[1],
        "shopee": deps.keys.create("read", marketplaces=[SHOPEE])[1],
    }
    app = FastAPI()
    install_api(app, deps)
    yield TestClient(app, raise_server_exceptions=False), tokens, lake
    deps.audit.close()
    deps.publisher.close()


def test_marketplace_predictions_equal_the_tables_each_day_from_its_newest_run(predictions_api: Any) -> None:
    client, tokens, lake = predictions_api
    response = get(client, PREDICTIONS.format(m=SHOPEE), tokens["reader"], days=30, horizon=7)
    assert response.status_code == 200, response.text
    body = response.json()
    data = body["data"]
    first, last = TODAY - timedelta(days=29), TODAY + timedelta(days=7)
    assert (data["start_date"], data["end_date"], data["forecast_end_date"]) == (
        first.isoformat(),
        TODAY.isoformat(),
        last.isoformat(),
    )
    assert data["partial_date"] == TODAY.isoformat()  # the clock's day: its numbers are still growing
    expected = expected_forecast(lake, SHOPEE, first, last)
    shown = [{k: f[k] for k in expected[0]} for f in data["forecast"]]
    assert shown == expected
    assert all(f["lower_bound"] <= f["predicted_validations"] <= f["upper_bound"] for f in data["forecast"])
    assert {f["categories"] for f in data["forecast"]} == {2}  # moda and casa, summed
    # the week before today was forecast only by the earlier run; today on by the later one
    runs = [f["model_version"] for f in data["forecast"]]
    switch = runs.index(runs[-1])
    assert len(set(runs)) == 2 and data["forecast"][switch]["date"] == TODAY.isoformat()

    flagged = sorted(
        (a["date"].isoformat(), a["metric"], a["observed"], a["expected"], a["z_score"])
        for a in table_rows(lake, "anomalies")
        if a["marketplace"] == SHOPEE and a["job_id"] is None and first <= a["date"] <= TODAY
    )
    assert [
        (a["date"], a["metric"], a["observed"], a["expected"], a["z_score"]) for a in data["anomalies"]
    ] == flagged
    planted = {
        (SPIKE.isoformat(), "validations"),
        (ERROR_DAY.isoformat(), "error_rate"),
        (SLOW.isoformat(), "p95_processing_time"),
    }
    assert planted <= {(a["date"], a["metric"]) for a in data["anomalies"]}
    assert body["freshness"].keys() == {"newest_event_at", "lag_seconds"}


def test_marketplace_predictions_follow_the_period_and_the_key(predictions_api: Any, api: Any) -> None:
    client, tokens, _ = predictions_api
    before = get(client, PREDICTIONS.format(m=SHOPEE), tokens["shopee"], days=7, end=str(SPIKE)).json()[
        "data"
    ]
    assert before["partial_date"] is None  # today is not in that week
    assert [a["date"] for a in before["anomalies"]] == [SPIKE.isoformat()]
    assert all(f["date"] <= SPIKE.isoformat() for f in before["forecast"])  # no horizon asked for
    refused = get(client, PREDICTIONS.format(m="magalu"), tokens["shopee"])
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
    magalu = get(client, PREDICTIONS.format(m="magalu"), tokens["reader"], end=str(TODAY)).json()["data"]
    assert magalu["forecast"] and all(f["categories"] == 2 for f in magalu["forecast"])
    assert get(client, PREDICTIONS.format(m=SHOPEE), tokens["reader"], horizon=91).status_code == 422
    assert get(client, PREDICTIONS.format(m=SHOPEE), None).status_code == 401
    # a lake no ML job has run on: empty lists, not an error
    untrained, untrained_tokens, _ = api
    empty = get(untrained, PREDICTIONS.format(m=SHOPEE), untrained_tokens["reader"], end="2026-11-27")
    assert empty.status_code == 200, empty.text
    assert (empty.json()["data"]["forecast"], empty.json()["data"]["anomalies"]) == ([], [])


# -- /v1/marketplaces/{m}/engagement over user_engagement_daily_gold computed from the lake's silver ------

ENGAGEMENT = "/v1/marketplaces/{m}/engagement"


@pytest.fixture(scope="module")
def engagement_api(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TestClient, dict[str, str], Lake, datetime]]:
    """A lake whose engagement gold the pipeline wrote (checked against its silver); the clock is 15:00 on its newest day."""
    root = tmp_path_factory.mktemp("engagement")
    lake = build_analytics_lake(root, jobs=1_500, seed=7)
    newest = max(pa.table(lake.open(SILVER).to_pyarrow_table())["created_date"].to_pylist())  # type: ignore[union-attr]
    now = datetime.combine(newest, datetime.min.time(), UTC) + timedelta(hours=15)
    engagement_gold(lake)
    deps = api_deps_for(lake, root, clock=lambda: now, audit_every_s=3600)
    tokens = {
        "reader": deps.keys.create("read")[1],
        "shopee": deps.keys.create("read", marketplaces=[SHOPEE])[1],
    }
    app = FastAPI()
    install_api(app, deps)
    yield TestClient(app, raise_server_exceptions=False), tokens, lake, now
    deps.audit.close()
    deps.publisher.close()


def engagement_rows(lake: Lake, marketplace: str, first: str, last: str) -> list[dict[str, Any]]:
    """The table's rows of ``marketplace`` in [first, last], read with pyarrow, as the API writes them."""
    table = pa.table(lake.open(USER_ENGAGEMENT_GOLD).to_pyarrow_table())  # type: ignore[union-attr]
    rows = [
        {k: v.isoformat() if k == "date" else v for k, v in r.items() if k not in DROPPED}
        for r in table.to_pylist()
        if r["marketplace"] == marketplace and first <= r["date"].isoformat() <= last
    ]
    return sorted(rows, key=lambda r: r["date"])


DROPPED = {"marketplace", "year", "month", "updated_at"}


def silver_users(lake: Lake, marketplace: str, first: str, last: str) -> set[str]:
    silver = pa.table(lake.open(SILVER).to_pyarrow_table()).to_pylist()  # type: ignore[union-attr]
    return {
        j["user_id"]
        for j in silver
        if j["marketplace"] == marketplace
        and first <= j["created_date"].isoformat() <= last
        and j["user_id"] is not None
    }


def test_engagement_equals_the_table_and_never_sums_distinct_counts(engagement_api: Any) -> None:
    client, tokens, lake, now = engagement_api
    response = get(client, ENGAGEMENT.format(m=SHOPEE), tokens["reader"], days=14)
    assert response.status_code == 200, response.text
    body = response.json()
    data = body["data"]
    today = now.date()
    first = (today - timedelta(days=13)).isoformat()
    assert (data["start_date"], data["end_date"], data["period_days"]) == (first, today.isoformat(), 14)
    assert data["partial_date"] == today.isoformat()  # the clock's day: still growing
    rows = engagement_rows(lake, SHOPEE, first, today.isoformat())
    assert len(rows) >= 10 and data["daily"] == rows
    users = silver_users(lake, SHOPEE, first, today.isoformat())
    summary = data["summary"]
    assert summary == {
        "days_with_data": len(rows),
        "last_date": rows[-1]["date"],
        "active_users_7d": rows[-1]["active_users_7d"],
        "active_users_28d": rows[-1]["active_users_28d"],
        "active_users": len(users),
        "jobs": sum(r["jobs"] for r in rows),
        "new_users": sum(r["new_users"] for r in rows),
        "jobs_per_active_user": pytest.approx(sum(r["jobs"] for r in rows) / len(users)),
    }
    assert summary["active_users"] < sum(r["active_users"] for r in rows)  # a user of two days is one
    assert body["freshness"]["newest_event_at"] is not None


def test_engagement_follows_end_and_the_key(engagement_api: Any, api: Any) -> None:
    client, tokens, lake, now = engagement_api
    end = (now.date() - timedelta(days=10)).isoformat()
    week = get(client, ENGAGEMENT.format(m="magalu"), tokens["reader"], days=7, end=end).json()["data"]
    first = (now.date() - timedelta(days=16)).isoformat()
    assert week["partial_date"] is None and week["daily"]
    assert week["daily"] == engagement_rows(lake, "magalu", first, end)
    refused = get(client, ENGAGEMENT.format(m="magalu"), tokens["shopee"])
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
    own = get(client, ENGAGEMENT.format(m=SHOPEE), tokens["shopee"], days=7).json()["data"]
    assert own["daily"] == engagement_rows(
        lake, SHOPEE, (now.date() - timedelta(days=6)).isoformat(), str(now.date())
    )
    assert get(client, ENGAGEMENT.format(m=SHOPEE), tokens["reader"], days=0).status_code == 422
    assert get(client, ENGAGEMENT.format(m=SHOPEE), None).status_code == 401
    # a period without rows: an empty answer, not an error
    other, other_tokens, _ = api
    empty = get(other, ENGAGEMENT.format(m=SHOPEE), other_tokens["reader"], end="2020-01-31")
    assert empty.status_code == 200, empty.text
    data = empty.json()["data"]
    assert data["daily"] == [] and data["summary"]["days_with_data"] == 0
    assert (data["summary"]["active_users_7d"], data["summary"]["jobs"]) == (None, 0)
    assert empty.json()["freshness"]["newest_event_at"] is not None


# -- restated days (gold_restatements) on the per-day answers ----------------------------------------------

RESTATED_DAYS = (date(2026, 11, 20), date(2026, 11, 24))
RESTATED_NOW = datetime(2026, 11, 30, 9, tzinfo=UTC)  # the injected clock: after both planted restatements


@pytest.fixture(scope="module")
def restated_api(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TestClient, dict[str, str], Lake, list[dict[str, Any]]]]:
    """A lake of its own whose gold the pipeline wrote, with restatements planted on two of shopee's days
    and one of magalu's."""
    root = tmp_path_factory.mktemp("restated")
    lake = build_analytics_lake(root, jobs=2_000, seed=13)
    planted = plant_restatements(lake, SHOPEE, RESTATED_DAYS, "magalu")
    deps = api_deps_for(lake, root, clock=lambda: RESTATED_NOW, audit_every_s=3600)
    tokens = {
        "reader": deps.keys.create("read")[1],
        "shopee": deps.keys.create("read", marketplaces=[SHOPEE])[1],
    }
    app = FastAPI()
    install_api(app, deps)
    yield TestClient(app, raise_server_exceptions=False), tokens, lake, planted
    deps.audit.close()
    deps.publisher.close()


def at(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def check_restated_days(days: list[dict[str, Any]], expected: dict[date, dict[str, Any]]) -> None:
    """Each day of an answer (``total_validations``, and ``error_rate`` when it has one) says when it was last
    restated, and how it moved, exactly when it was: null both otherwise."""
    assert {d["date"] for d in days if d["restated_at"]} == {str(day) for day in expected}
    for d in days:
        e = expected.get(date.fromisoformat(d["date"]))
        if e is None:
            assert (d["restated_at"], d["restatement"]) == (None, None)
            continue
        (previous, previous_failed), (new, new_failed) = e["previous"], e["new"]
        assert at(d["restated_at"]) == e["restated_at"] and d["total_validations"] == new
        assert d["restatement"] == {
            "previous_total_validations": previous,
            "new_total_validations": new,
            "previous_error_rate": pytest.approx(previous_failed / previous),
            "new_error_rate": pytest.approx(new_failed / new),
        }


def test_restated_days_say_when_and_how_they_moved_and_others_say_null(restated_api: Any) -> None:
    client, tokens, lake, planted = restated_api
    gold = rows(lake, GOLD).to_pylist()
    expected = restated_days(gold, planted, SHOPEE)
    assert set(expected) == set(RESTATED_DAYS)
    performance = get(
        client, f"/v1/marketplaces/{SHOPEE}/performance", tokens["reader"], days=13, end="2026-11-27"
    )
    assert performance.status_code == 200, performance.text
    daily = performance.json()["data"]["daily"]
    assert len(daily) >= 10 and all(d.keys() >= {"restated_at", "restatement"} for d in daily)
    check_restated_days(daily, expected)
    first = next(d for d in daily if d["date"] == str(RESTATED_DAYS[0]))
    assert at(first["restated_at"]) == RESTATED_AT[1]  # the later of its two ranges
    assert first["restatement"]["previous_total_validations"] == first["total_validations"] + 1  # by hand

    # the overview's sparklines, under the key's row filter: magalu's restated day is not shopee's
    cards = get(client, "/v1/overview", tokens["shopee"], days=13, end="2026-11-27").json()["data"]
    (card,) = cards["marketplaces"]
    assert card["marketplace"] == SHOPEE
    check_restated_days(card["sparkline"], expected)
    everyone = get(client, "/v1/overview", tokens["reader"], days=13, end="2026-11-27").json()["data"]
    magalu = next(c for c in everyone["marketplaces"] if c["marketplace"] == "magalu")
    check_restated_days(magalu["sparkline"], restated_days(gold, planted, "magalu"))

    # a period none of whose days was restated: every day null
    earlier = get(
        client, f"/v1/marketplaces/{SHOPEE}/performance", tokens["reader"], days=5, end="2026-11-19"
    )
    assert earlier.json()["data"]["daily"] and all(
        (d["restated_at"], d["restatement"]) == (None, None) for d in earlier.json()["data"]["daily"]
    )


def test_restated_groups_carry_their_own_latest_restatement(restated_api: Any) -> None:
    client, tokens, _, planted = restated_api
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for r in sorted(planted, key=lambda r: r["restated_at"]):
        if r["marketplace"] == SHOPEE:
            newest[(str(r["date"]), r["category"])] = r
    metrics = get(client, METRICS.format(m=SHOPEE), tokens["shopee"], start="2026-11-15", end="2026-11-27")
    assert metrics.status_code == 200, metrics.text
    daily = metrics.json()["data"]["daily"]
    restated = {(d["date"], d["category"]): d for d in daily if d["restated_at"]}
    # the deleted group has no gold row, so no row here; its day's other groups were not restated
    assert set(restated) == set(newest) - {(str(RESTATED_DAYS[1]), "categoria_gone")}
    for key, d in restated.items():
        row = newest[key]
        assert at(d["restated_at"]) == row["restated_at"]
        assert d["restatement"] == {
            "previous_total_validations": row["previous_total_validations"],
            "new_total_validations": d["total_validations"],
            "previous_error_rate": pytest.approx(row["previous_error_rate"]),
            "new_error_rate": d["error_rate"],
        }
    assert all(d["restatement"] is None for d in daily if not d["restated_at"])
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert set(schemas["Restatement"]["properties"]) == {
        "previous_total_validations",
        "new_total_validations",
        "previous_error_rate",
        "new_error_rate",
    }
    for model in ("DailyMetric", "DailyPerformance", "SparkPoint"):
        assert {"restated_at", "restatement"} <= set(schemas[model]["required"]), model


def test_a_store_that_fails_under_the_key_check_answers_503_until_it_is_back(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    deps = api_deps_for(lake, tmp_path, clock=lambda: datetime(2026, 11, 30, tzinfo=UTC))
    token = deps.keys.create("read")[1]
    app = FastAPI()
    install_api(app, deps)
    client = TestClient(app, raise_server_exceptions=False)
    assert get(client, "/v1/marketplaces", token).status_code == 200
    # the next commit of api_keys unreadable: every request's key check fails to read the table, as
    # when an object store refuses requests
    keys_log = Path(lake.table_uri(API_KEYS)) / "_delta_log"
    version = lake.open(API_KEYS).version()  # type: ignore[union-attr]
    broken = keys_log / f"{version + 1:020d}.json"
    broken.write_text("{not json")
    response = get(client, "/v1/marketplaces", token)
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "5"
    assert response.json()["title"] == "lake unavailable"
    broken.unlink()  # the store is back: so is the API, without a restart
    assert get(client, "/v1/marketplaces", token).status_code == 200
    deps.publisher.close()
