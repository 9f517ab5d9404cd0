"""A Confluent-compatible Schema Registry in a thread, for tests: the REST API confluent-kafka's client speaks.

A **test double**, held to the documented request and response shapes and error codes of Confluent's API
(https://docs.confluent.io/platform/current/schema-registry/develop/api.html): subjects and their
versions, global schema ids (the same schema under two subjects has one id), lookup, soft and permanent
delete, compatibility levels per subject and globally, and the compatibility test endpoint. It does **not**
implement Confluent's JSON Schema compatibility rules: a JSON schema is judged by vhlake's own
:func:`~vhlake.events.schema_registry.compatibility_problems` (BACKWARD: the candidate reads what the
latest accepted; FORWARD: the other way round), Avro and Protobuf schemas are always compatible, and a
schema type change never is. Everything lives in memory; nothing is normalized beyond parsing JSON.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from vhlake.events.schema_registry import compatibility_problems

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
MAX_BODY_BYTES = 1 << 20
TYPES = ("AVRO", "JSON", "PROTOBUF")
LEVELS = (
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
)
_MAX_VERSION = 2**31 - 1


class RegistryError(Exception):
    """An error answer: its HTTP status, Confluent's error code and message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def subject_not_found(subject: str) -> RegistryError:
    return RegistryError(404, 40401, f"Subject '{subject}' not found.")


@dataclass(frozen=True)
class StoredSchema:
    schema_id: int
    schema_type: str
    text: str
    references: list[Any]

    def body(self) -> dict[str, Any]:
        """The schema as the API shows it: ``schemaType`` left out for Avro, as Confluent does."""
        shown: dict[str, Any] = {"schema": self.text}
        if self.schema_type != "AVRO":
            shown["schemaType"] = self.schema_type
        if self.references:
            shown["references"] = self.references
        return shown


@dataclass
class Version:
    number: int
    schema_id: int
    deleted: bool = False


@dataclass
class Registry:
    """The registry's state; every method runs under the server's one lock."""

    compatibility: str = "BACKWARD"
    schemas: dict[int, StoredSchema] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)  # identity of a schema -> its global id
    subjects: dict[str, list[Version]] = field(default_factory=dict)
    subject_levels: dict[str, str] = field(default_factory=dict)

    def versions(self, subject: str, *, deleted: bool = False) -> list[Version]:
        """The subject's versions (soft-deleted ones only with ``deleted``); 40401 when there are none."""
        found = [v for v in self.subjects.get(subject, []) if deleted or not v.deleted]
        if not found:
            raise subject_not_found(subject)
        return found

    def version(self, subject: str, version: str, *, deleted: bool = False) -> Version:
        versions = self.versions(subject, deleted=deleted)
        if version in ("latest", "-1"):
            return versions[-1]
        number = parse_version(version)
        for candidate in versions:
            if candidate.number == number:
                return candidate
        raise RegistryError(404, 40402, f"Version {number} not found.")

    def level(self, subject: str) -> str:
        return self.subject_levels.get(subject, self.compatibility)

    def register(self, subject: str, request: dict[str, Any]) -> int:
        schema_type, text, references = parse_schema(request)
        key = identity(schema_type, text, references)
        live = [v for v in self.subjects.get(subject, []) if not v.deleted]
        known = self.ids.get(key)
        if known is not None and any(v.schema_id == known for v in live):
            return known  # already under the subject: no new version
        candidate = StoredSchema(known or 0, schema_type, text, references)
        problems = incompatibilities(
            self.level(subject), candidate, [self.schemas[v.schema_id] for v in live]
        )
        if problems:
            raise RegistryError(
                409,
                409,
                f'Schema being registered is incompatible with an earlier schema for subject "{subject}", '
                f"details: {json.dumps(problems)}",
            )
        if known is None:
            known = max(self.schemas, default=0) + 1
            self.schemas[known] = StoredSchema(known, schema_type, text, references)
            self.ids[key] = known
        every = self.subjects.setdefault(subject, [])
        every.append(Version(max((v.number for v in every), default=0) + 1, known))
        return known

    def lookup(self, subject: str, request: dict[str, Any], *, deleted: bool) -> dict[str, Any]:
        versions = self.versions(subject, deleted=deleted)
        schema_id = self.ids.get(identity(*parse_schema(request)))
        for version in reversed(versions):
            if version.schema_id == schema_id:
                return self.shown(subject, version)
        raise RegistryError(404, 40403, "Schema not found")

    def shown(self, subject: str, version: Version) -> dict[str, Any]:
        schema = self.schemas[version.schema_id]
        return {"subject": subject, "version": version.number, "id": schema.schema_id, **schema.body()}

    def delete(self, subject: str, *, permanent: bool) -> list[int]:
        every = self.subjects.get(subject)
        if not every:
            raise subject_not_found(subject)
        live = [v for v in every if not v.deleted]
        if permanent:
            if live:
                raise RegistryError(
                    404, 40405, f"Subject '{subject}' was not deleted first before being permanently deleted"
                )
            del self.subjects[subject]
            return [v.number for v in every]
        if not live:
            raise RegistryError(
                404, 40404, f"Subject '{subject}' was soft deleted.Set permanent=true to delete permanently"
            )
        for version in live:
            version.deleted = True
        self.subject_levels.pop(subject, None)
        return [v.number for v in live]

    def test(self, subject: str, version: str | None, request: dict[str, Any]) -> list[str]:
        """Why ``request``'s schema may not follow ``version`` (None: every version) under the subject's level."""
        candidate = StoredSchema(0, *parse_schema(request))
        if version is None:
            against = [self.schemas[v.schema_id] for v in self.versions(subject)]
            return incompatibilities(self.level(subject), candidate, against)
        base = self.level(subject).removesuffix(
            "_TRANSITIVE"
        )  # one given version: nothing to be transitive over
        return incompatibilities(base, candidate, [self.schemas[self.version(subject, version).schema_id]])


def parse_version(version: str) -> int:
    if not version.isdigit() or not 1 <= int(version) <= _MAX_VERSION:
        raise RegistryError(
            422,
            42202,
            f"The specified version '{version}' is not a valid version id. Allowed values are between "
            f'[1, 2^31-1] and the string "latest"',
        )
    return int(version)


def parse_schema(request: dict[str, Any]) -> tuple[str, str, list[Any]]:
    """A request's schema type, text and references, checked as Confluent checks them (42201)."""
    text, schema_type = request.get("schema"), request.get("schemaType", "AVRO")
    references = request.get("references") or []
    if schema_type not in TYPES:
        raise RegistryError(422, 42201, f"Invalid schema type {schema_type}")
    if not isinstance(text, str) or not text.strip():
        raise RegistryError(422, 42201, "Empty schema")
    if schema_type != "PROTOBUF":  # Avro and JSON Schema are JSON documents
        try:
            json.loads(text)
        except ValueError as exc:
            raise RegistryError(422, 42201, f"Invalid schema {text[:60]!r}: {exc}") from exc
    return schema_type, text, references


def identity(schema_type: str, text: str, references: list[Any]) -> str:
    """What makes two registrations the same schema: its type, its parsed content (whitespace aside), its
    references."""
    content = text if schema_type == "PROTOBUF" else json.dumps(json.loads(text), separators=(",", ":"))
    return json.dumps([schema_type, content, references], sort_keys=True)


def incompatibilities(level: str, candidate: StoredSchema, earlier: list[StoredSchema]) -> list[str]:
    """Why ``candidate`` may not follow ``earlier`` (oldest first) under ``level``; empty: it may."""
    if level == "NONE" or not earlier:
        return []
    against = earlier if level.endswith("_TRANSITIVE") else earlier[-1:]
    problems = []
    for old in against:
        if old.schema_type != candidate.schema_type:
            problems.append(f"schema type changed from {old.schema_type} to {candidate.schema_type}")
            continue
        if candidate.schema_type != "JSON":
            continue
        before, after = json.loads(old.text), json.loads(candidate.text)
        if not isinstance(before, dict) or not isinstance(after, dict):
            continue
        if level.startswith(("BACKWARD", "FULL")):
            problems += [f"backward: {p}" for p in compatibility_problems(before, after)]
        if level.startswith(("FORWARD", "FULL")):
            problems += [f"forward: {p}" for p in compatibility_problems(after, before)]
    return problems


Query = dict[str, str]
Handler = Callable[[Registry, list[str], Query, dict[str, Any]], Any]


def flag(query: Query, name: str) -> bool:
    return query.get(name, "false").lower() == "true"


def get_types(reg: Registry, args: list[str], query: Query, body: dict[str, Any]) -> Any:
    return list(TYPES)


def get_schema(reg: Registry, args: list[str], query: Query, body: dict[str, Any]) -> Any:
    schema = reg.schemas.get(int(args[0])) if args[0].isdigit() else None
    if schema is None:
        raise RegistryError(404, 40403, f"Schema {args[0]} not found")
    return schema.body()


def get_schema_versions(reg: Registry, args: list[str], query: Query, body: dict[str, Any]) -> Any:
    get_schema(reg, args, query, body)
    return [
        {"subject": subject, "version": v.number}
        for subject, versions in sorted(reg.subjects.items())
        for v in versions
        if v.schema_id == int(args[0]) and (flag(query, "deleted") or not v.deleted)
    ]


def get_schema_subjects(reg: Registry, args: list[str], query: Query, body: dict[str, Any]) -> Any:
    return sorted({pair["subject"] for pair in get_schema_versions(reg, args, query, body)})


def get_subjects(reg: Registry, args: list[str], query: Query, body: dict[str, Any]) -> Any:
    deleted = flag(query, "deleted") or flag(query, "deleted_only")
    prefix = query.get("subjectPrefix", "")
    return sorted(
        subject
        for subject, versions in reg.subjects.items()
        if subject.startswith(prefix) and any(deleted or not v.deleted for v in versions)
    )


def get_versions(reg: Registry, args: list[str], query: Query, body: dict[str, Any]) -> Any:
    return [v.number for v in reg.versions(args[0], deleted=flag(query, "deleted"))]


def get_version(reg: Registry, args: list[str], query: Query, body: dict[str, Any]) -> Any:
    subject, version = args
    return reg.shown(subject, reg.version(subject, version, deleted=flag(query, "deleted")))


def post_version(reg: Registry, args: list[str], query: Query, body: dict[str, Any]) -> Any:
    return {"id": reg.register(args[0], body)}


def post_lookup(reg: Registry, args: list[str], query: Query, body: dict[str, Any]) -> Any:
    return reg.lookup(args[0], body, deleted=flag(query, "deleted"))


def delete_subject(reg: Registry, args: list[str], query: Query, body: dict[str, Any]) -> Any:
    return reg.delete(args[0], permanent=flag(query, "permanent"))


def post_compatibility(reg: Registry, args: list[str], query: Query, body: dict[str, Any]) -> Any:
    problems = reg.test(args[0], args[1] if len(args) > 1 else None, body)
    answer: dict[str, Any] = {"is_compatible": not problems}
    if flag(query, "verbose"):
        answer["messages"] = problems
    return answer


def get_config(reg: Registry, args: list[str], query: Query, body: dict[str, Any]) -> Any:
    if not args:
        return {"compatibilityLevel": reg.compatibility}
    level = reg.subject_levels.get(args[0])
    if level is None and flag(query, "defaultToGlobal"):
        level = reg.compatibility
    if level is None:
        raise RegistryError(
            404, 40408, f"Subject '{args[0]}' does not have subject-level compatibility configured"
        )
    return {"compatibilityLevel": level}


def put_config(reg: Registry, args: list[str], query: Query, body: dict[str, Any]) -> Any:
    level = str(body.get("compatibility", "")).upper()
    if level not in LEVELS:
        raise RegistryError(
            422,
            42203,
            "Invalid compatibility level. Valid values are none, backward, forward, full, "
            "backward_transitive, forward_transitive, and full_transitive",
        )
    if args:
        reg.subject_levels[args[0]] = level
    else:
        reg.compatibility = level
    return {"compatibility": level}


_SEGMENT = "([^/]+)"
_ENDPOINTS: list[tuple[str, dict[str, Handler]]] = [
    ("/schemas/types", {"GET": get_types}),
    ("/schemas/ids/{}", {"GET": get_schema}),
    ("/schemas/ids/{}/versions", {"GET": get_schema_versions}),
    ("/schemas/ids/{}/subjects", {"GET": get_schema_subjects}),
    ("/subjects", {"GET": get_subjects}),
    ("/subjects/{}", {"POST": post_lookup, "DELETE": delete_subject}),
    ("/subjects/{}/versions", {"GET": get_versions, "POST": post_version}),
    ("/subjects/{}/versions/{}", {"GET": get_version}),
    ("/compatibility/subjects/{}/versions", {"POST": post_compatibility}),
    ("/compatibility/subjects/{}/versions/{}", {"POST": post_compatibility}),
    ("/config", {"GET": get_config, "PUT": put_config}),
    ("/config/{}", {"GET": get_config, "PUT": put_config}),
]
ROUTES = [(re.compile(pattern.replace("{}", _SEGMENT)), handlers) for pattern, handlers in _ENDPOINTS]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    registry: Registry
    lock: threading.Lock
    authorization: str | None  # the one accepted Authorization header, or None: no login


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects
    server: _Server

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def do_PUT(self) -> None:
        self._answer()

    def do_DELETE(self) -> None:
        self._answer()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a test's output is its own."""

    def _answer(self) -> None:
        try:
            status, answer = 200, self._handle()
        except RegistryError as exc:
            status, answer = exc.status, {"error_code": exc.code, "message": exc.message}
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(payload)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="SchemaRegistry"')
        self.end_headers()
        self.wfile.write(payload)

    def _handle(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the body stays unread
            raise RegistryError(413, 413, f"Request body larger than {MAX_BODY_BYTES} bytes")
        raw = self.rfile.read(length) if length else b""
        expected = self.server.authorization
        given = self.headers.get("Authorization") or ""
        if expected is not None and not hmac.compare_digest(given.encode(), expected.encode()):
            raise RegistryError(401, 401, "Unauthorized")
        url = urlsplit(self.path)
        query = {name: values[-1] for name, values in parse_qs(url.query).items()}
        handler, args = route(self.command, url.path.rstrip("/") or "/")
        try:
            body = json.loads(raw) if raw else {}
        except ValueError as exc:
            raise RegistryError(400, 400, f"Unrecognized request body: {exc}") from exc
        if not isinstance(body, dict):
            raise RegistryError(422, 422, "The request body must be a JSON object")
        with self.server.lock:
            return handler(self.server.registry, args, query, body)


def route(method: str, path: str) -> tuple[Handler, list[str]]:
    for pattern, handlers in ROUTES:
        match = pattern.fullmatch(path)
        if match:
            if method not in handlers:
                raise RegistryError(405, 405, "HTTP 405 Method Not Allowed")
            return handlers[method], [unquote(part) for part in match.groups()]
    raise RegistryError(404, 404, "HTTP 404 Not Found")


class SchemaRegistryServer:
    """The registry on 127.0.0.1 and a port of its own (the system picks a free one when it binds),
    served by a background thread; ``with SchemaRegistryServer() as registry: registry.url``."""

    def __init__(
        self, *, user: str | None = None, password: str = "", compatibility: str = "BACKWARD"
    ) -> None:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.registry = Registry(compatibility=compatibility)
        self._httpd.lock = threading.Lock()
        self._httpd.authorization = (
            None if user is None else "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        )
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.02,), name="schema-registry", daemon=True
        )  # polled often, so that stopping it is quick

    @property
    def registry(self) -> Registry:
        """The state, for a test to look at (under no lock: read it between requests)."""
        return self._httpd.registry

    def start(self) -> SchemaRegistryServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> SchemaRegistryServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
