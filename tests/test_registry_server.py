"""The test registry answers as Confluent's API documents it, through confluent-kafka's own client and raw HTTP."""

from __future__ import annotations

import base64
import contextlib
import copy
import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from registry_server import CONTENT_TYPE, MAX_BODY_BYTES, SchemaRegistryServer
from vhlake.events.model import event_json_schema

SUBJECT = "validation-events-value"


def json_schema(schema: dict[str, Any]) -> Schema:
    return Schema(json.dumps(schema), "JSON")


def with_required(field: str) -> dict[str, Any]:
    """The event's schema with one more required field: not backward compatible."""
    schema = copy.deepcopy(event_json_schema())
    schema["required"].append(field)
    return schema


def with_optional_payload_field() -> dict[str, Any]:
    schema = copy.deepcopy(event_json_schema())
    schema["$defs"]["ValidationPayload"]["properties"]["rows_per_second"] = {"type": "number"}
    return schema


@pytest.fixture
def registry() -> Iterator[SchemaRegistryServer]:
    with SchemaRegistryServer() as server:
        yield server


@pytest.fixture
def connect() -> Iterator[Callable[..., SchemaRegistryClient]]:
    """A factory of confluent-kafka clients (``connect(url, "user:password")``), each closed after the test."""
    with contextlib.ExitStack() as clients:

        def make(url: str, user_info: str | None = None) -> SchemaRegistryClient:
            conf = {"url": url} if user_info is None else {"url": url, "basic.auth.user.info": user_info}
            client = SchemaRegistryClient(conf)
            clients.callback(client.close)
            return client

        yield make


@pytest.fixture
def client(
    registry: SchemaRegistryServer, connect: Callable[..., SchemaRegistryClient]
) -> SchemaRegistryClient:
    return connect(registry.url)


def raw(
    url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, str, Any]:
    """Status, content type and parsed body of one request, error answers included."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers["Content-Type"], json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], json.loads(exc.read())


def test_register_then_read_back_by_id_subject_and_version(client: SchemaRegistryClient) -> None:
    schema_id = client.register_schema(SUBJECT, json_schema(event_json_schema()))
    fetched = client.get_schema(schema_id)
    assert (fetched.schema_type, json.loads(fetched.schema_str or "")) == ("JSON", event_json_schema())
    latest = client.get_latest_version(SUBJECT)
    assert (latest.subject, latest.version, latest.schema_id) == (SUBJECT, 1, schema_id)
    assert client.get_versions(SUBJECT) == [1]
    assert client.get_subjects() == [SUBJECT]
    found = client.lookup_schema(SUBJECT, json_schema(event_json_schema()))
    assert (found.schema_id, found.version) == (schema_id, 1)
    assert [(v.subject, v.version) for v in client.get_schema_versions(schema_id)] == [(SUBJECT, 1)]


def test_registering_again_adds_no_version_and_ids_are_global(
    registry: SchemaRegistryServer, connect: Callable[..., SchemaRegistryClient]
) -> None:
    first = connect(registry.url).register_schema(SUBJECT, json_schema(event_json_schema()))
    # A fresh client, so its cache cannot answer for the server; whitespace does not make another schema.
    again = connect(registry.url)
    spaced = Schema(json.dumps(event_json_schema(), indent=2), "JSON")
    assert again.register_schema(SUBJECT, spaced) == first
    assert again.get_versions(SUBJECT) == [1]
    assert again.register_schema("other-value", json_schema(event_json_schema())) == first
    assert again.get_versions("other-value") == [1]
    assert again.register_schema(SUBJECT, json_schema(with_optional_payload_field())) == first + 1
    assert again.get_versions(SUBJECT) == [1, 2]


def test_an_incompatible_schema_is_refused_with_409_unless_the_level_is_none(
    client: SchemaRegistryClient,
) -> None:
    client.register_schema(SUBJECT, json_schema(event_json_schema()))
    assert client.get_compatibility() == "BACKWARD"
    incompatible = json_schema(with_required("category"))
    assert client.test_compatibility(SUBJECT, incompatible) is False
    assert client.test_compatibility(SUBJECT, json_schema(with_optional_payload_field())) is True
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(SUBJECT, incompatible)
    assert (refused.value.http_status_code, refused.value.error_code) == (409, 409)
    assert "event.category became required" in refused.value.error_message
    answer: Any = client.set_compatibility(SUBJECT, "NONE")  # typed str; the client returns the body
    assert answer == {"compatibility": "NONE"}
    assert client.get_compatibility(SUBJECT) == "NONE"
    assert client.get_compatibility() == "BACKWARD"  # the global level is untouched
    client.register_schema(SUBJECT, incompatible)
    assert client.get_versions(SUBJECT) == [1, 2]


def test_forward_checks_the_other_way_round(client: SchemaRegistryClient) -> None:
    client.register_schema(SUBJECT, json_schema(with_required("category")))
    client.set_compatibility(SUBJECT, "FORWARD")
    # Dropping a requirement: the new schema reads old data (backward), the old one does not read new data.
    assert client.test_compatibility(SUBJECT, json_schema(event_json_schema())) is False
    client.set_compatibility(SUBJECT, "BACKWARD")
    assert client.test_compatibility(SUBJECT, json_schema(event_json_schema())) is True


def test_unknown_ids_subjects_and_versions_have_confluents_error_codes(client: SchemaRegistryClient) -> None:
    with pytest.raises(SchemaRegistryError) as unknown_id:
        client.get_schema(99)
    assert (unknown_id.value.http_status_code, unknown_id.value.error_code) == (404, 40403)
    assert unknown_id.value.error_message == "Schema 99 not found"
    with pytest.raises(SchemaRegistryError) as unknown_subject:
        client.get_latest_version(SUBJECT)
    assert unknown_subject.value.error_code == 40401
    client.register_schema(SUBJECT, json_schema(event_json_schema()))
    with pytest.raises(SchemaRegistryError) as unknown_version:
        client.get_version(SUBJECT, 7)
    assert unknown_version.value.error_code == 40402
    with pytest.raises(SchemaRegistryError) as not_registered:
        client.lookup_schema(SUBJECT, json_schema(with_optional_payload_field()))
    assert not_registered.value.error_code == 40403
    with pytest.raises(SchemaRegistryError) as no_subject_level:
        client.get_compatibility(SUBJECT)
    assert no_subject_level.value.error_code == 40408


def test_a_soft_deleted_subject_is_gone_from_the_lists_but_its_ids_stay(client: SchemaRegistryClient) -> None:
    schema_id = client.register_schema(SUBJECT, json_schema(event_json_schema()))
    assert client.delete_subject(SUBJECT) == [1]
    assert client.get_subjects() == []
    assert client.get_subjects(deleted=True) == [SUBJECT]
    assert client.get_schema(schema_id).schema_type == "JSON"
    assert client.delete_subject(SUBJECT, permanent=True) == [1]
    assert client.get_subjects(deleted=True) == []


def test_an_invalid_schema_is_422_42201(client: SchemaRegistryClient) -> None:
    with pytest.raises(SchemaRegistryError) as invalid:
        client.register_schema(SUBJECT, Schema("{not json", "JSON"))
    assert (invalid.value.http_status_code, invalid.value.error_code) == (422, 42201)


def test_credentials_are_required_when_configured(connect: Callable[..., SchemaRegistryClient]) -> None:
    with SchemaRegistryServer(user="key", password="secret") as registry:
        anonymous = connect(registry.url)
        with pytest.raises(SchemaRegistryError) as refused:
            anonymous.get_subjects()
        assert (refused.value.http_status_code, refused.value.error_code) == (401, 401)
        wrong = connect(registry.url, "key:guess")
        with pytest.raises(SchemaRegistryError):
            wrong.get_subjects()
        allowed = connect(registry.url, "key:secret")
        assert allowed.get_subjects() == []


def test_raw_answers_have_the_documented_bodies_and_content_type(registry: SchemaRegistryServer) -> None:
    url = registry.url
    status, content_type, body = raw(
        f"{url}/subjects/{SUBJECT}/versions?normalize=false", "POST", {"schema": '{"type":"string"}'}
    )
    assert (status, content_type, body) == (200, CONTENT_TYPE, {"id": 1})
    assert raw(f"{url}/schemas/ids/1")[2] == {"schema": '{"type":"string"}'}  # Avro: no schemaType
    status, _, body = raw(f"{url}/subjects/{SUBJECT}/versions/latest")
    assert body == {"subject": SUBJECT, "version": 1, "id": 1, "schema": '{"type":"string"}'}
    assert raw(f"{url}/schemas/ids/2") == (
        404,
        CONTENT_TYPE,
        {"error_code": 40403, "message": "Schema 2 not found"},
    )
    assert raw(f"{url}/nothing/here") == (
        404,
        CONTENT_TYPE,
        {"error_code": 404, "message": "HTTP 404 Not Found"},
    )
    assert raw(f"{url}/subjects/{SUBJECT}/versions/zero")[2]["error_code"] == 42202
    assert raw(f"{url}/config") == (200, CONTENT_TYPE, {"compatibilityLevel": "BACKWARD"})
    assert raw(f"{url}/config", "PUT", {"compatibility": "FULL"})[2] == {"compatibility": "FULL"}
    assert raw(f"{url}/config", "PUT", {"compatibility": "SOMETIMES"})[2]["error_code"] == 42203
    status, _, body = raw(
        f"{url}/compatibility/subjects/{SUBJECT}/versions/latest?verbose=true",
        "POST",
        {"schema": '{"type":"string"}'},
    )
    assert (status, body) == (200, {"is_compatible": True, "messages": []})


def test_raw_json_schema_verdicts_carry_messages_only_when_verbose(registry: SchemaRegistryServer) -> None:
    url = f"{registry.url}/compatibility/subjects/{SUBJECT}/versions/1"
    candidate = {"schema": json.dumps(with_required("category")), "schemaType": "JSON"}
    raw(
        f"{registry.url}/subjects/{SUBJECT}/versions",
        "POST",
        {**candidate, "schema": json.dumps(event_json_schema())},
    )
    assert raw(url, "POST", candidate)[2] == {"is_compatible": False}
    verbose = raw(f"{url}?verbose=true", "POST", candidate)[2]
    assert verbose["is_compatible"] is False
    assert any("event.category became required" in m for m in verbose["messages"])


def test_basic_auth_and_body_size_are_checked_on_raw_requests() -> None:
    with SchemaRegistryServer(user="key", password="secret") as registry:
        assert raw(f"{registry.url}/subjects") == (
            401,
            CONTENT_TYPE,
            {"error_code": 401, "message": "Unauthorized"},
        )
        login = {"Authorization": "Basic " + base64.b64encode(b"key:secret").decode()}
        assert raw(f"{registry.url}/subjects", headers=login) == (200, CONTENT_TYPE, [])
        # Refused on its Content-Length, before any of it is read.
        connection = http.client.HTTPConnection(registry.url.removeprefix("http://"), timeout=10)
        try:
            connection.putrequest("POST", "/subjects/s/versions")
            for name, value in {**login, "Content-Length": str(MAX_BODY_BYTES + 1)}.items():
                connection.putheader(name, value)
            connection.endheaders()
            answer = connection.getresponse()
            assert (answer.status, json.loads(answer.read())["error_code"]) == (413, 413)
        finally:
            connection.close()
