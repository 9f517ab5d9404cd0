"""A Confluent-compatible Schema Registry, reached through confluent-kafka's own client.

The Confluent REST API (subjects, versions, schema ids, compatibility) is spoken by Confluent's registry,
Karapace, Redpanda and Apicurio's ccompat endpoint alike; vhlake only uses confluent-kafka's
``SchemaRegistryClient`` for it (``pip install 'vhlake[kafka]'`` brings it with its ``json`` extra), imported
here only. Subjects follow Confluent's default ``TopicNameStrategy``: a topic's values are ``<topic>-value``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import SecretStr

from vhlake.errors import ConfigError, SourceError

_NOT_FOUND = 404
_KEPT_IDS = 10_000  # schema ids a lookup remembers


@dataclass(frozen=True)
class RegistryConfig:
    """Where the registry is and how to log in (basic auth; Confluent Cloud: API key and secret)."""

    url: str
    username: str | None = None
    password: SecretStr | None = None

    def client_conf(self) -> dict[str, str]:
        conf = {"url": self.url}
        if self.username is not None:
            secret = "" if self.password is None else self.password.get_secret_value()
            conf["basic.auth.user.info"] = f"{self.username}:{secret}"
        return conf


@dataclass(frozen=True)
class RegistrySchema:
    """A schema the registry holds: its type (``JSON``, ``AVRO``, ``PROTOBUF``) and its text."""

    schema_type: str
    text: str


class SchemaLookup(Protocol):
    """Schemas by id, as a consumer needs them."""

    def schema(self, schema_id: int) -> RegistrySchema | None:
        """The schema with ``schema_id``, or None when the registry has no such id.

        Raises:
            SourceError: the registry did not answer (the caller must not decide anything then).
        """
        ...


def value_subject(topic: str) -> str:
    """The subject of ``topic``'s values under Confluent's default ``TopicNameStrategy``."""
    return f"{topic}-value"


def schema_text(schema: dict[str, Any]) -> str:
    """The one text vhlake registers for a JSON Schema: keys sorted, no whitespace.

    A registry tells schemas apart by their text (Confluent keeps the order of keys), so ``vhlake schema
    push`` and the publisher must send the same text for the same schema, or one schema gets two ids.
    """
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


def registry_client(config: RegistryConfig) -> Any:
    """confluent-kafka's ``SchemaRegistryClient`` for ``config``."""
    try:
        from confluent_kafka.schema_registry import SchemaRegistryClient
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(
            "a schema registry needs confluent-kafka's registry client: pip install 'vhlake[kafka]'"
        ) from exc
    try:
        return SchemaRegistryClient(config.client_conf())
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"KAFKA_SCHEMA_REGISTRY_URL={config.url!r}: {exc}") from exc


def registry_error(config: RegistryConfig, exc: Exception) -> SourceError:
    """A registry that failed to answer, said in one line with where it is."""
    return SourceError(f"the schema registry at {config.url} did not answer: {exc}")


class ConfluentSchemaLookup:
    """:class:`SchemaLookup` over a registry, with each id's schema kept once fetched (ids are immutable)."""

    def __init__(self, config: RegistryConfig) -> None:
        self._config = config
        self._known: dict[int, RegistrySchema | None] = {}

    def schema(self, schema_id: int) -> RegistrySchema | None:
        if schema_id not in self._known:
            if len(self._known) >= _KEPT_IDS:  # bounded, whatever ids producers make up: oldest out
                del self._known[next(iter(self._known))]
            self._known[schema_id] = self._fetch(schema_id)
        return self._known[schema_id]

    def _fetch(self, schema_id: int) -> RegistrySchema | None:
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            with registry_client(self._config) as client:  # a new id is rare: no connection kept open
                found = client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == _NOT_FOUND:
                return None
            raise registry_error(self._config, exc) from exc
        except Exception as exc:  # the HTTP client's own errors (refused, timed out, TLS)
            raise registry_error(self._config, exc) from exc
        return RegistrySchema(schema_type=found.schema_type or "AVRO", text=found.schema_str)
