"""Publishers: how ValidaHub's API and workers hand events to the event log.

``EventPublisher`` is the port; the embedded log is the default adapter, Kafka the production one
(:mod:`vhlake.events.kafka_publisher`), chosen by ``VHLAKE_EVENT_LOG``. A publisher reports an event as
``delivered`` only once the log has it durably, so an event acknowledged to a caller is never lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from vhlake.errors import PublishError
from vhlake.events.embedded_log import EmbeddedEventLog
from vhlake.events.model import ValidationEvent

DeliveryStatus = Literal["delivered", "outboxed", "failed"]


@dataclass(frozen=True)
class Delivery:
    """What became of one event.

    ``delivered``: the log stored it at ``partition``/``offset``. ``outboxed``: the log was unreachable,
    so the event waits in the durable local outbox (``offset`` is its place there) and is re-sent when
    the log is back. ``failed``: the log refused it for good; ``error`` says why.
    """

    event_id: str
    key: str
    status: DeliveryStatus
    topic: str
    partition: int | None = None
    offset: int | None = None
    error: str | None = None

    def raise_if_failed(self) -> Delivery:
        if self.status == "failed":
            raise PublishError(f"event {self.event_id} (job {self.key}) was not published: {self.error}")
        return self


class EventPublisher(Protocol):
    """Hands validation events to the event log, keyed by ``job_id`` so a job's events stay in order."""

    async def send_event(self, event: ValidationEvent) -> Delivery:
        """Publish one event; raises :class:`PublishError` when it cannot be delivered nor kept."""
        ...

    def send_batch(self, events: Sequence[ValidationEvent]) -> list[Delivery]:
        """Publish events and wait for all of them; one result per event, in order (never raises for
        a single event's failure: look at each result's ``status``)."""
        ...

    def close(self) -> None: ...


class EmbeddedLogPublisher:
    """Publishes to the embedded log: one durable transaction per batch."""

    def __init__(self, log: EmbeddedEventLog) -> None:
        self._log = log

    async def send_event(self, event: ValidationEvent) -> Delivery:
        (delivery,) = await asyncio.to_thread(self.send_batch, [event])
        return delivery

    def send_batch(self, events: Sequence[ValidationEvent]) -> list[Delivery]:
        keys = [event.job_id for event in events]
        offsets = self._log.append([event.to_json_bytes() for event in events], keys)
        return [
            Delivery(event.event_id, event.job_id, "delivered", self._log.topic, partition=0, offset=offset)
            for offset, event in zip(offsets, events, strict=True)
        ]

    def close(self) -> None:
        self._log.close()
