"""Publishers: how ValidaHub's API and workers hand events to the event log.

``EventPublisher`` is the port; the embedded log is the default adapter (Kafka joins it in production).
A publisher returns only once the log has the event durably, so an event acknowledged to a caller is never lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from vhlake.events.embedded_log import EmbeddedEventLog
from vhlake.events.model import ValidationEvent


@dataclass(frozen=True)
class Delivery:
    """Where the log stored one event."""

    topic: str
    partition: int
    offset: int
    key: str


class EventPublisher(Protocol):
    """Hands validation events to the event log, keyed by ``job_id`` so a job's events stay in order."""

    def publish(self, event: ValidationEvent) -> Delivery: ...

    def publish_batch(self, events: Sequence[ValidationEvent]) -> list[Delivery]: ...

    def close(self) -> None: ...


class EmbeddedLogPublisher:
    """Publishes to the embedded log: one durable transaction per batch."""

    def __init__(self, log: EmbeddedEventLog) -> None:
        self._log = log

    def publish(self, event: ValidationEvent) -> Delivery:
        return self.publish_batch([event])[0]

    def publish_batch(self, events: Sequence[ValidationEvent]) -> list[Delivery]:
        keys = [event.job_id for event in events]
        offsets = self._log.append([event.to_json_bytes() for event in events], keys)
        return [
            Delivery(topic=self._log.topic, partition=0, offset=offset, key=key)
            for offset, key in zip(offsets, keys, strict=True)
        ]

    def close(self) -> None:
        self._log.close()
