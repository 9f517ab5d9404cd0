"""Kafka → bronze, exactly once, with consumer groups (docs/exactly-once.md).

Each partition is a source: ``source = kafka:<topic>:<partition>``, ``source_offset`` = the message
offset, and the Delta log records ``app_id = kafka:<group>:<topic>:<partition>`` with the last offset
written, in the same commit as the rows. So:

- on start and on every partition assignment, each partition is sought to the offset after the one the
  Delta log holds (never to Kafka's committed offset, which is only a convenience for lag tools);
- a batch is one Delta commit per table (bronze, and rejects when it has some) carrying the app ids of
  all its partitions; Kafka offsets are committed after it;
- just before each commit the stored offsets are read again, and messages another consumer of the group
  already wrote (it held the partition before a rebalance) are dropped and the partition re-sought, as
  kafka-delta-ingest does on ``ConflictingOffsets``. Two commits racing on one app id: Delta refuses one,
  which re-checks and retries.

A crash anywhere (kill -9 between the Delta and Kafka commits included) loses and duplicates nothing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vhlake.errors import ConfigError, SourceError
from vhlake.events.model import event_json_schema
from vhlake.events.registry_client import SchemaLookup
from vhlake.ingest.bronze import IngestReport, ledger_row
from vhlake.ingest.parse import ParsedBatch, new_parser_connection, rejected_rows
from vhlake.ingest.resend_window import ResendWindow, bronze_rows_before
from vhlake.ingest.wire_format import keep_frames, parse_framed, unframe
from vhlake.lake.delta import Lake
from vhlake.lake.tables import BRONZE, INGEST_LEDGER, REJECTED

KAFKA_CLIENT_LOG = "vhlake.kafka"
_LOG = logging.getLogger(KAFKA_CLIENT_LOG)  # librdkafka's own log, instead of raw lines on stderr
_POLL_S = 0.2
_REJECTS_EVERY_S = 10.0  # rejects' offsets advance at least this often, bounding what a restart re-reads


@dataclass(frozen=True)
class KafkaIngestOptions:
    batch_messages: int = 50_000
    max_wait_s: float = 2.0
    session_timeout_ms: int = 45_000
    # Offsets per partition within which a repeated event_id is a producer's re-send (ingest/resend_window.py).
    resend_window: int = 100_000


@dataclass
class KafkaIngestReport(IngestReport):
    """An :class:`IngestReport` plus what the consumer group did."""

    partitions: set[int] = field(default_factory=set)
    skipped_already_written: int = 0
    # Records a producer sent again after a broker failure (their event is in bronze already): to rejects.
    resent: int = 0
    # Per partition, messages the broker has that bronze does not, after the last commit (from the
    # high watermark of the last fetch; tansu reports it low, so read it as a lower bound there).
    lag: dict[int, int] = field(default_factory=dict)


@dataclass
class _Span:
    """One partition's records read since its last ledger row, and what they became."""

    records: int = 0
    bronze: int = 0
    rejected: int = 0
    first_offset: int | None = None
    last_offset: int | None = None

    def ledger(self, app_id: str, source: str, end: int) -> pa.Table:
        first = end if self.first_offset is None else self.first_offset - 1
        return ledger_row(
            app_id,
            source,
            position_from=first,
            position_to=end,
            offsets=(self.first_offset, self.last_offset),
            counts=(self.records, self.bronze, self.rejected),
        )


def kafka_app_id(group: str, topic: str, partition: int) -> str:
    return f"kafka:{group}:{topic}:{partition}"


def kafka_source(topic: str, partition: int) -> str:
    return f"kafka:{topic}:{partition}"


@dataclass
class _Batch:
    """Messages consumed since the last commit: per partition, the raw records and the last offset."""

    records: dict[int, tuple[list[int], list[bytes]]] = field(default_factory=dict)
    count: int = 0

    def add(self, messages: list[Any]) -> None:
        for message in messages:
            offsets, values = self.records.setdefault(message.partition(), ([], []))
            offsets.append(message.offset())
            values.append(message.value() or b"")
        self.count += len(messages)

    def table(self, partition: int) -> pa.Table:
        """A partition's records as the parser takes them: ``source_offset`` and ``raw``."""
        offsets, values = self.records[partition]
        return pa.table(
            {
                "source_offset": pa.array(np.asarray(offsets, dtype=np.int64)),
                "raw": pa.array(values, pa.large_binary()),
            }
        )


class KafkaIngest:
    """Consumes ``topic`` as a member of ``group`` and writes it into bronze exactly once."""

    def __init__(
        self,
        lake: Lake,
        client_config: Mapping[str, Any],
        *,
        topic: str,
        group: str,
        source_system: str,
        options: KafkaIngestOptions = KafkaIngestOptions(),
        schemas: SchemaLookup | None = None,
    ) -> None:
        """``schemas``: the registry that checks the schema ids of Confluent-framed messages (without one,
        their frames are stripped and their ids kept, unchecked)."""
        self._lake = lake
        self._schemas = schemas
        self._ours = event_json_schema()
        self._topic = topic
        self._group = group
        self._source_system = source_system
        self._options = options
        self._con = new_parser_connection()
        self._worker = f"{group}/{uuid.uuid4().hex[:8]}"
        self._config = {
            **client_config,
            "group.id": group,
            "client.id": self._worker,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": options.session_timeout_ms,
            "heartbeat.interval.ms": max(100, options.session_timeout_ms // 6),
            "logger": _LOG,
        }
        self._resends = ResendWindow(options.resend_window)
        self._held_rejects: list[pa.Table] = []
        self._held_ends: dict[str, tuple[str, int]] = {}
        self._held_spans: dict[str, _Span] = {}  # the ledger rows written with the held rejects
        self._rejects_flushed_at = time.monotonic()
        self._report = KafkaIngestReport(source=f"kafka:{topic}")
        self._active_at = time.monotonic()  # the last message or partition assignment

    def run(
        self,
        *,
        until_idle_s: float | None = None,
        stop: threading.Event | None = None,
        on_batch: Callable[[KafkaIngestReport], None] | None = None,
        connect_timeout_s: float | None = None,
    ) -> KafkaIngestReport:
        """Consume and commit batches until ``stop`` is set, or no message came for ``until_idle_s``.

        With ``connect_timeout_s``, a broker that does not answer within it is a :class:`SourceError`
        (the client would otherwise retry forever: right for a service, not for a command)."""
        consumer = self._consumer()
        report = self._report = KafkaIngestReport(source=f"kafka:{self._topic}")
        stop = stop or threading.Event()
        try:
            if connect_timeout_s is not None:
                self._wait_for_broker(consumer, connect_timeout_s)
            consumer.subscribe([self._topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
            # Joining takes a while, longer after a crash (the dead member's session must expire first,
            # then the group rebalances): idleness counts from the assignment, or from this much later.
            self._active_at = time.monotonic() + 3 * self._options.session_timeout_ms / 1000
            while not stop.is_set():
                batch = self._collect(consumer, stop)
                if batch.count:
                    self._active_at = time.monotonic()
                    self._commit(consumer, batch, report)
                    if on_batch is not None:
                        on_batch(report)
                elif until_idle_s is not None and time.monotonic() - self._active_at >= until_idle_s:
                    break
                self._flush_rejects(report, force=False)
            self._flush_rejects(report, force=True)
        finally:
            consumer.close()
        return report

    def _wait_for_broker(self, consumer: Any, timeout_s: float) -> None:
        from confluent_kafka import KafkaException

        try:
            consumer.list_topics(self._topic, timeout=timeout_s)
        except KafkaException as exc:
            servers = self._config.get("bootstrap.servers")
            reason = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
            raise SourceError(f"Kafka at {servers} did not answer within {timeout_s:g} s ({reason})") from exc

    def _consumer(self) -> Any:
        try:
            from confluent_kafka import Consumer
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigError(
                "ingesting from Kafka needs confluent-kafka: pip install 'vhlake[kafka]'"
            ) from exc
        return Consumer(self._config)

    def _collect(self, consumer: Any, stop: threading.Event) -> _Batch:
        """Messages until the batch is full or ``max_wait_s`` passed since the first one."""
        batch = _Batch()
        first_at: float | None = None
        while batch.count < self._options.batch_messages and not stop.is_set():
            wanted = self._options.batch_messages - batch.count
            messages = consumer.consume(num_messages=min(wanted, 10_000), timeout=_POLL_S)
            good = [m for m in messages if m.error() is None]
            if len(good) < len(messages):
                _raise_fatal(messages)
            batch.add(good)
            if batch.count and first_at is None:
                first_at = time.monotonic()
            if first_at is None and not messages:
                break  # nothing is coming: let the caller check idleness
            if first_at is not None and time.monotonic() - first_at >= self._options.max_wait_s:
                break
        return batch

    def _commit(self, consumer: Any, batch: _Batch, report: KafkaIngestReport) -> None:
        parsed, ends = self._parse(batch)
        parsed, resent = self._set_aside_resends(parsed, batch)
        metadata = {"vhlake.writer": self._worker}
        bronze = self._lake.append_positions_once(BRONZE, parsed.bronze, ends=ends, metadata=metadata)
        report.count_bronze(bronze.written)
        report.skipped_already_written += parsed.bronze.num_rows - bronze.written.num_rows
        report.partitions.update(batch.records)
        report.batches += 1
        report.resent += resent
        self._hold_rejects(parsed.rejected, ends)
        self._hold_spans(batch, parsed)
        if resent:
            self._flush_rejects(report, force=True)  # keep bronze and rejects at the same position
        self._reseek_moved(consumer, bronze.stored_before, ends)
        self._commit_kafka_offsets(consumer, ends)
        report.lag.update(self._lag(consumer, ends))

    def _parse(self, batch: _Batch) -> tuple[ParsedBatch, dict[str, tuple[str, int]]]:
        """Parse each partition's records (the parser takes one source per call) into one batch."""
        now = datetime.now(UTC)
        parts, ends = [], {}
        for partition, (offsets, _) in sorted(batch.records.items()):
            source = kafka_source(self._topic, partition)
            parts.append(
                parse_framed(
                    self._con,
                    batch.table(partition),
                    source=source,
                    ingestion_time=now,
                    default_source_system=self._source_system,
                    lookup=self._schemas,
                    ours=self._ours,
                )
            )
            ends[source] = (kafka_app_id(self._group, self._topic, partition), max(offsets))
        return (
            ParsedBatch(
                pa.concat_tables([p.bronze for p in parts]), pa.concat_tables([p.rejected for p in parts])
            ),
            ends,
        )

    def _set_aside_resends(self, parsed: ParsedBatch, batch: _Batch) -> tuple[ParsedBatch, int]:
        """Move the records a producer re-sent from the bronze rows to the rejects, with the reason."""
        resent = self._resends.admit(parsed.bronze)
        if not resent.any():
            return parsed, 0
        again = parsed.bronze.filter(pa.array(resent))
        reason = (
            f"re-sent: an earlier record of this partition (at most {self._resends.window} offsets before) "
            "has the same event_id and is in bronze"
        )
        rejects = [parsed.rejected]
        for partition in batch.records:
            source = kafka_source(self._topic, partition)
            offsets = again.filter(pc.equal(again["source"], source))["source_offset"]
            records = batch.table(partition)
            records = records.filter(pc.is_in(records["source_offset"], value_set=offsets))
            again_rows = rejected_rows(
                records, source=source, ingestion_time=again["ingestion_time"][0].as_py(), error=reason
            )
            rejects.append(keep_frames(again_rows, records, unframe(records).schema_ids))
        kept = parsed.bronze.filter(pa.array(~resent))
        return ParsedBatch(kept, pa.concat_tables(rejects)), again.num_rows

    def _hold_rejects(self, rejected: pa.Table, ends: dict[str, tuple[str, int]]) -> None:
        if rejected.num_rows:
            self._held_rejects.append(rejected)
        for source, (app_id, end) in ends.items():
            held = self._held_ends.get(source)
            self._held_ends[source] = (app_id, max(end, held[1] if held else end))

    def _hold_spans(self, batch: _Batch, parsed: ParsedBatch) -> None:
        """Count, per partition, the records of ``batch`` and the bronze rows and rejects they became."""
        bronze, rejected = _per_source(parsed.bronze), _per_source(parsed.rejected)
        for partition, (offsets, _) in batch.records.items():
            source = kafka_source(self._topic, partition)
            span = self._held_spans.setdefault(source, _Span())
            span.records += len(offsets)
            span.bronze += bronze.get(source, 0)
            span.rejected += rejected.get(source, 0)
            if offsets:
                low = min(offsets)
                span.first_offset = low if span.first_offset is None else min(span.first_offset, low)
                span.last_offset = max(offsets)

    def _flush_rejects(self, report: KafkaIngestReport, *, force: bool) -> None:
        """Commit held rejects (few: they wait up to ``_REJECTS_EVERY_S``), advancing their offsets, then
        the ledger rows of the same spans."""
        due = force or time.monotonic() - self._rejects_flushed_at >= _REJECTS_EVERY_S
        if not self._held_ends or not due:
            return
        rows = pa.concat_tables(self._held_rejects) if self._held_rejects else REJECTED.schema.empty_table()
        written = self._lake.append_positions_once(REJECTED, rows, ends=self._held_ends).written
        report.count_rejected(written)
        ledger = [
            self._held_spans.pop(source, _Span()).ledger(app_id, source, end)
            for source, (app_id, end) in self._held_ends.items()
        ]
        self._lake.append_positions_once(INGEST_LEDGER, pa.concat_tables(ledger), ends=self._held_ends)
        self._held_rejects, self._held_ends = [], {}
        self._rejects_flushed_at = time.monotonic()

    def _reseek_moved(
        self, consumer: Any, stored_before: Mapping[str, int | None], ends: Mapping[str, tuple[str, int]]
    ) -> None:
        """Partitions another consumer wrote past our batch: continue after what it wrote."""
        from confluent_kafka import KafkaException, TopicPartition

        for source, stored in stored_before.items():
            if stored is not None and stored > ends[source][1]:
                partition = int(source.rsplit(":", 1)[1])
                # no longer ours after a rebalance? its new owner seeks from the Delta log anyway
                with contextlib.suppress(KafkaException):
                    consumer.seek(TopicPartition(self._topic, partition, stored + 1))

    def _commit_kafka_offsets(self, consumer: Any, ends: Mapping[str, tuple[str, int]]) -> None:
        """Tell Kafka how far the group got (for lag tools): after the Delta commit, never before."""
        from confluent_kafka import KafkaException, TopicPartition

        offsets = [
            TopicPartition(self._topic, int(source.rsplit(":", 1)[1]), end + 1)
            for source, (_, end) in ends.items()
        ]
        with contextlib.suppress(KafkaException):  # a convenience only: the Delta log is the truth
            consumer.commit(offsets=offsets, asynchronous=True)

    def _lag(self, consumer: Any, ends: Mapping[str, tuple[str, int]]) -> dict[int, int]:
        from confluent_kafka import KafkaException, TopicPartition

        lag = {}
        for source, (_, end) in ends.items():
            partition = int(source.rsplit(":", 1)[1])
            with contextlib.suppress(KafkaException):
                _, high = consumer.get_watermark_offsets(TopicPartition(self._topic, partition), cached=True)
                if high is not None and high >= 0:
                    lag[partition] = max(0, int(high) - (end + 1))
        return lag

    def stored_offsets(self, partitions: list[int]) -> dict[int, int]:
        """Per partition, the next offset to read: after the last one bronze, the rejects and the ledger
        all hold (a partition ingested before the ledger existed is read again once, for its ledger)."""
        positions = {}
        for partition in partitions:
            app_id = kafka_app_id(self._group, self._topic, partition)
            versions = [self._lake.txn_version(t, app_id) for t in (BRONZE, REJECTED, INGEST_LEDGER)]
            done = min(-1 if v is None else v for v in versions)
            positions[partition] = done + 1
        return positions

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        from confluent_kafka import OFFSET_BEGINNING

        self._active_at = time.monotonic()
        start = self.stored_offsets([p.partition for p in partitions])
        self._resends = ResendWindow(self._options.resend_window)
        self._resends.remember(
            bronze_rows_before(
                self._lake,
                {kafka_source(self._topic, p): offset for p, offset in start.items()},
                self._resends.window,
            )
        )
        for tp in partitions:
            tp.offset = start[tp.partition] or OFFSET_BEGINNING
        consumer.assign(partitions)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        self._flush_rejects(self._report, force=True)  # hand the partitions over with nothing held
        consumer.unassign()


def _per_source(rows: pa.Table) -> dict[str, int]:
    """How many of ``rows`` each ``source`` has."""
    counts = pc.value_counts(rows["source"]).to_pylist() if rows.num_rows else []
    return {c["values"]: c["counts"] for c in counts}


def _raise_fatal(messages: list[Any]) -> None:
    """Consumer errors: end-of-partition and transient broker errors pass; the rest stop the ingest."""
    for message in messages:
        error = message.error()
        if error is not None and (error.fatal() or not error.retriable()) and not _benign(error):
            raise SourceError(f"Kafka consumer error: {error.name()}: {error.str()}")


def _benign(error: Any) -> bool:
    from confluent_kafka import KafkaError

    return bool(
        error.code()
        in {
            KafkaError._PARTITION_EOF,
            KafkaError._TRANSPORT,
            KafkaError._ALL_BROKERS_DOWN,
            KafkaError._TIMED_OUT,
        }
    )
