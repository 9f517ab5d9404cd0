"""Publishing to Kafka (or any Kafka-protocol endpoint, e.g. Azure Event Hubs) with confluent-kafka.

The producer is idempotent (``enable.idempotence``: no duplicates or reordering from its own retries),
compresses (snappy unless configured) and batches (``linger.ms``, ``batch.size``); the key is the
``job_id``, so a job's events stay ordered in one partition, and the value is the event's wire JSON.

When the broker is unreachable (a delivery times out, the connection is gone), events go to the durable
local :class:`~vhlake.events.outbox.Outbox` instead of failing, and a background thread re-sends them, in
order, once the broker answers again. While anything waits in the outbox, new events queue behind it, so
a job's events never overtake each other. Events the broker refuses for good (too large, not authorised)
are reported as ``failed`` with the broker's error: never swallowed.

confluent-kafka is imported here only, so the embedded mode does not need it installed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vhlake.errors import ConfigError, PublishError
from vhlake.events.model import ValidationEvent
from vhlake.events.outbox import Outbox, OutboxStatus
from vhlake.events.publisher import Delivery

# Outcome of one produce: (partition, offset) when stored, else the KafkaError.
_Outcome = tuple[int, int] | Any
_GRACE_S = 5.0  # librdkafka reports every message by message.timeout.ms; allow for scheduling
_DRAIN_CHUNK = 10_000


@dataclass(frozen=True)
class KafkaProducerOptions:
    """Producer tuning; the defaults suit ValidaHub's small JSON events."""

    compression: str = "snappy"
    linger_ms: int = 5
    batch_size: int = 1_000_000
    delivery_timeout_s: float = 30.0
    outbox_retry_s: float = 5.0


def _import_producer() -> Any:
    try:
        from confluent_kafka import Producer
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(
            "VHLAKE_EVENT_LOG=kafka needs confluent-kafka: pip install 'vhlake[kafka]'"
        ) from exc
    return Producer


def _import_kafka_exception() -> type[Exception]:
    from confluent_kafka import KafkaException

    return KafkaException


class KafkaEventPublisher:
    """Publishes events to ``topic``; with an ``outbox``, an unreachable broker never loses an event."""

    def __init__(
        self,
        client_config: Mapping[str, Any],
        *,
        topic: str,
        outbox: Outbox | None,
        options: KafkaProducerOptions = KafkaProducerOptions(),
        value_of: Callable[[ValidationEvent], bytes] = ValidationEvent.to_json_bytes,
    ) -> None:
        """``value_of``: an event's Kafka value (default its wire JSON; :class:`~vhlake.events.framing.
        FramedValues` for the Confluent wire format)."""
        self.topic = topic
        self._value_of = value_of
        self._outbox = outbox
        self._options = options
        self._config = {
            **client_config,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": options.compression,
            "linger.ms": options.linger_ms,
            "batch.size": options.batch_size,
            "message.timeout.ms": int(options.delivery_timeout_s * 1000),
            "error_cb": self._on_error,
            "logger": logging.getLogger("vhlake.kafka"),  # librdkafka's log, not raw lines on stderr
        }
        self._producer = _import_producer()(self._config)
        self._kafka_exception: type[Exception] = _import_kafka_exception()
        self._fatal: str | None = None
        self._lock = threading.RLock()  # one send or drain at a time: the outbox decides the order
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._serve_callbacks, name="vhlake-kafka-poll", daemon=True)
        self._poller.start()
        self._drainer: threading.Thread | None = None
        if outbox is not None:
            self._drainer = threading.Thread(target=self._drain_loop, name="vhlake-outbox", daemon=True)
            self._drainer.start()

    async def send_event(self, event: ValidationEvent) -> Delivery:
        """Publish one event; returns once Kafka stored it (or the outbox holds it).

        Many calls may be in flight at once (each waits only for its own delivery report), so an async
        API server is not limited to one round trip per event.

        Raises:
            PublishError: the broker refused the event, or (without an outbox) did not answer within
                the delivery timeout.
        """
        if self._outbox is not None and self._outbox.has_pending():  # queue behind what waits
            (delivery,) = await asyncio.to_thread(self.send_batch, [event])
            return delivery.raise_if_failed()
        key, value = event.job_id, self._value_of(event)
        loop = asyncio.get_running_loop()
        reported: asyncio.Future[_Outcome] = loop.create_future()

        def report(err: Any, msg: Any) -> None:
            outcome = err if err is not None else (msg.partition(), msg.offset())
            loop.call_soon_threadsafe(_settle_future, reported, outcome)

        self._recover_if_fatal()
        while True:
            try:
                self._producer.produce(self.topic, value=value, key=key, on_delivery=report)
                break
            except BufferError:
                await asyncio.sleep(0.005)
            except self._kafka_exception as exc:
                _settle_future(reported, exc.args[0])
                break
        try:
            outcome = await asyncio.wait_for(reported, self._options.delivery_timeout_s + _GRACE_S)
        except TimeoutError:
            outcome = _NoReport(self._options.delivery_timeout_s)
        (delivery,) = self._settle([event.event_id], [key], [value], [outcome])
        return delivery.raise_if_failed()

    def send_batch(self, events: Sequence[ValidationEvent]) -> list[Delivery]:
        """Publish ``events`` and wait for every delivery report: one :class:`Delivery` per event."""
        keys = [event.job_id for event in events]
        values = [self._value_of(event) for event in events]
        ids = [event.event_id for event in events]
        with self._lock:
            if self._outbox is not None and self._outbox.has_pending():
                self._drain()
                if self._outbox.has_pending():  # still unreachable: queue behind what waits
                    places = self._outbox.add(keys, values)
                    return [
                        Delivery(i, k, "outboxed", self.topic, offset=p)
                        for i, k, p in zip(ids, keys, places, strict=True)
                    ]
            outcomes = self._produce(keys, values)
            return self._settle(ids, keys, values, outcomes)

    def outbox_status(self) -> OutboxStatus | None:
        """What waits in the outbox (None without one): for metrics and health checks."""
        return None if self._outbox is None else self._outbox.status()

    def drain_outbox(self) -> int:
        """Re-send what waits in the outbox, oldest first; returns how many the broker acknowledged."""
        with self._lock:
            return self._drain()

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is in flight (or leave it in the outbox), then stop."""
        with self._lock:
            self._producer.flush(timeout_s)
            self._closed.set()
        self._poller.join(timeout=2)
        if self._drainer is not None:
            self._drainer.join(timeout=2)
        self._producer = None  # librdkafka's client (and its reconnect attempts) ends with the object
        close_values = getattr(self._value_of, "close", None)  # FramedValues' registry client
        if close_values is not None:
            close_values()
        if self._outbox is not None:
            self._outbox.close()

    def _produce(self, keys: Sequence[str], values: Sequence[bytes]) -> list[_Outcome]:
        """Hand every record to librdkafka, then wait for all their delivery reports.

        confluent-kafka takes one record per ``produce`` call, so this loops in Python (about 2 µs a
        record); librdkafka batches and compresses underneath.
        """
        self._recover_if_fatal()
        reports = _Reports(len(values))
        produce = self._producer.produce
        for i, (key, value) in enumerate(zip(keys, values, strict=True)):
            while True:
                try:
                    produce(self.topic, value=value, key=key, on_delivery=reports.callback(i))
                    break
                except BufferError:  # librdkafka's queue is full: let deliveries make room
                    time.sleep(0.005)
                except self._kafka_exception as exc:  # refused before sending (e.g. over message.max.bytes)
                    reports.record(i, exc.args[0])
                    break
        reports.wait(self._options.delivery_timeout_s + _GRACE_S)
        return [_NoReport(self._options.delivery_timeout_s) if o is None else o for o in reports.outcomes]

    def _settle(
        self, ids: Sequence[str], keys: Sequence[str], values: Sequence[bytes], outcomes: Sequence[_Outcome]
    ) -> list[Delivery]:
        """Deliveries for the outcomes; records the broker could not be reached for go to the outbox."""
        self._replace_if_stale(outcomes)
        results: list[Delivery | None] = []
        unreachable = []
        for i, outcome in enumerate(outcomes):
            if isinstance(outcome, tuple):
                results.append(Delivery(ids[i], keys[i], "delivered", self.topic, *outcome))
            elif _is_transient(outcome) and self._outbox is not None:
                results.append(None)
                unreachable.append(i)
            else:
                results.append(Delivery(ids[i], keys[i], "failed", self.topic, error=_describe(outcome)))
        if unreachable:
            assert self._outbox is not None
            places = self._outbox.add([keys[i] for i in unreachable], [values[i] for i in unreachable])
            for i, place in zip(unreachable, places, strict=True):
                results[i] = Delivery(ids[i], keys[i], "outboxed", self.topic, offset=place)
        return [r for r in results if r is not None]

    def _drain(self) -> int:
        """Re-send the outbox in chunks, stopping at the first chunk the broker did not take whole."""
        assert self._outbox is not None
        sent = 0
        while entries := self._outbox.oldest(_DRAIN_CHUNK):
            outcomes = self._produce([e.key for e in entries], [e.value for e in entries])
            self._replace_if_stale(outcomes)
            delivered = [e.seq for e, o in zip(entries, outcomes, strict=True) if isinstance(o, tuple)]
            refused = [
                (e.seq, _describe(o))
                for e, o in zip(entries, outcomes, strict=True)
                if not isinstance(o, tuple) and not _is_transient(o)
            ]
            self._outbox.remove(delivered)
            self._outbox.bury(refused)
            sent += len(delivered)
            if len(delivered) + len(refused) < len(entries):
                break  # the broker is still unreachable: try again later
        return sent

    def _drain_loop(self) -> None:
        assert self._outbox is not None
        while not self._closed.wait(self._options.outbox_retry_s):
            try:
                if self._outbox.has_pending():
                    self.drain_outbox()
            except PublishError:
                continue  # the outbox file is busy or gone; the next round retries

    def _serve_callbacks(self) -> None:
        """Serve delivery reports until closed. A producer that hit a fatal error (the broker lost its
        sequence numbers, e.g. ``OUT_OF_ORDER_SEQUENCE_NUMBER`` after a restart) raises from ``poll``:
        that marks it for replacement, and this thread goes on serving its successor; had the thread
        died, no report would ever arrive again and every event would wait in the outbox for good."""
        while not self._closed.is_set():
            try:
                self._producer.poll(0.1)
            except self._kafka_exception as exc:
                self._fatal = self._fatal or str(exc)
                self._closed.wait(0.1)

    def _on_error(self, err: Any) -> None:
        if err.fatal():
            self._fatal = str(err)

    def _replace_if_stale(self, outcomes: Sequence[_Outcome]) -> None:
        """A broker that restarted may no longer know this producer's id and epoch, and then fences every
        record it sends (PRODUCER_FENCED, for good). Those records were refused, not stored: a new producer
        (a new id) sends them again from the outbox."""
        stale = next((o for o in outcomes if _is_stale_identity(o)), None)
        if stale is not None:
            self._fatal = _describe(stale)

    def _recover_if_fatal(self) -> None:
        """An idempotent producer that hit a fatal error refuses everything: start a new one."""
        if self._fatal is not None:
            self._fatal = None
            old, self._producer = self._producer, _import_producer()(self._config)
            old.flush(0)


def _settle_future(future: asyncio.Future[_Outcome], outcome: _Outcome) -> None:
    if not future.done():
        future.set_result(outcome)


class _Reports:
    """The delivery reports of one batch, by position; ``wait`` returns when all have arrived."""

    def __init__(self, count: int) -> None:
        self.outcomes: list[_Outcome | None] = [None] * count
        self._missing = count
        self._lock = threading.Lock()  # reports come from the poll thread, or from flush() in close()
        self._complete = threading.Event()
        if count == 0:
            self._complete.set()

    def callback(self, i: int) -> Callable[[Any, Any], None]:
        return lambda err, msg: self.record(i, err if err is not None else (msg.partition(), msg.offset()))

    def record(self, i: int, outcome: _Outcome) -> None:
        self.outcomes[i] = outcome
        with self._lock:
            self._missing -= 1
            if self._missing == 0:
                self._complete.set()

    def wait(self, timeout_s: float) -> None:
        self._complete.wait(timeout_s)


class _NoReport:
    """Stands for a KafkaError when librdkafka gave no delivery report in time."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __str__(self) -> str:
        return f"no delivery report from Kafka within {self.seconds + _GRACE_S:.0f} s"


def _is_stale_identity(outcome: Any) -> bool:
    """True when the broker refused the record because it no longer accepts this producer's id, epoch or
    sequence numbers (a restarted broker that kept no producer state), or the producer hit any other
    fatal error: the record was not stored, and only a new producer can send it."""
    if isinstance(outcome, tuple | _NoReport):
        return False
    from confluent_kafka import KafkaError

    stale = {
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.UNKNOWN_PRODUCER_ID,
        KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
    }
    return bool(outcome.code() in stale or outcome.fatal())


def _is_transient(outcome: Any) -> bool:
    """True when the broker was unreachable or too slow, gave no report, or refused a stale producer
    identity: re-sending later (from a new producer) can succeed. A record that was stored after all is
    then in the partition twice, close together: the consumer takes the second for a re-send and files it
    with the rejects (ingest/resend_window.py), so re-sending never duplicates an event in bronze."""
    if isinstance(outcome, _NoReport):
        return True
    if _is_stale_identity(outcome):
        return True
    from confluent_kafka import KafkaError

    unreachable = {
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._RESOLVE,
        KafkaError._FATAL,
        KafkaError._PURGE_QUEUE,
        KafkaError._PURGE_INFLIGHT,
    }
    return bool(outcome.code() in unreachable or outcome.retriable())


def _describe(outcome: Any) -> str:
    if isinstance(outcome, _NoReport):
        return str(outcome)
    return f"{outcome.name()}: {outcome.str()}"
