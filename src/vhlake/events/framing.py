"""Event values in the Confluent wire format, written by confluent-kafka's own JSON serializer.

For consumers that read the topic with Confluent's deserializers (or check schema ids, as vhlake's own
Kafka ingest does): each value is the magic byte, the id of the event schema registered under
``<topic>-value``, then the event's wire JSON, byte for byte what an unframed publisher sends.
"""

from __future__ import annotations

from typing import Any

from vhlake.errors import ConfigError, SourceError
from vhlake.events.model import ValidationEvent, event_json_schema
from vhlake.events.registry_client import (
    RegistryConfig,
    registry_client,
    registry_error,
    schema_text,
    value_subject,
)


class FramedValues:
    """``values(event) -> bytes`` for ``topic``; the schema is registered (or found) on construction, so
    a registry that is down or refuses it is said at start, not on the first event."""

    def __init__(self, config: RegistryConfig, topic: str) -> None:
        try:
            from confluent_kafka.schema_registry import Schema
            from confluent_kafka.schema_registry.error import SchemaRegistryError
            from confluent_kafka.schema_registry.json_schema import JSONSerializer
            from confluent_kafka.serialization import MessageField, SerializationContext
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigError(
                "framed publishing needs confluent-kafka[json]: pip install 'vhlake[kafka]'"
            ) from exc
        client = self._client = registry_client(config)
        text = schema_text(event_json_schema())
        self.subject = value_subject(topic)
        try:
            # Registered here, the id is in the client's cache: the serializer's own registration is free.
            self.schema_id: int = client.register_schema(self.subject, Schema(text, "JSON"))
        except SchemaRegistryError as exc:  # e.g. 409: incompatible with the subject's versions
            client.close()
            raise SourceError(
                f"the schema registry at {config.url} refused the event schema under {self.subject}: {exc}"
            ) from exc
        except Exception as exc:  # the HTTP client's own errors (refused, timed out, TLS)
            client.close()
            raise registry_error(config, exc) from exc
        # validate=False: every event was validated against this schema's model before it gets here.
        self._serialize: Any = JSONSerializer(
            text,
            client,
            conf={"auto.register.schemas": True, "validate": False},
            json_encode=ValidationEvent.to_json_bytes,
        )
        self._context = SerializationContext(topic, MessageField.VALUE)

    def close(self) -> None:
        """Close the registry client's connections (the publisher's ``close`` calls it)."""
        self._client.close()

    def __call__(self, event: ValidationEvent) -> bytes:
        value: bytes = self._serialize(event, self._context)
        return value
