"""The event log, consumed continuously into bronze: the embedded log (polled) or Kafka (a consumer group).

Both run until ``stop`` is set and report each committed batch as a delta (:class:`IngestDelta`), so the
service can count, wake the pipeline and export lag.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from vhlake.events.embedded_log import EmbeddedEventLog
from vhlake.ingest.bronze import BronzeIngestor, IngestReport
from vhlake.ingest.kafka_source import KafkaIngest, KafkaIngestReport
from vhlake.ingest.log_source import ingest_log, log_app_id


@dataclass(frozen=True)
class IngestDelta:
    """What one committed batch added, and the log's lag behind bronze after it (per partition)."""

    source: str
    bronze_rows: int
    rejected_rows: int
    lag: dict[str, int] = field(default_factory=dict)


OnBatch = Callable[[IngestDelta], None]


class EventSource(Protocol):
    name: str

    def run(self, stop: threading.Event, on_batch: OnBatch) -> None:
        """Ingest until ``stop`` is set; call ``on_batch`` after every commit."""
        ...


class EmbeddedLogSource:
    """Polls the embedded log every ``poll_interval_s`` and ingests what is new."""

    def __init__(self, ingestor: BronzeIngestor, log: EmbeddedEventLog, *, poll_interval_s: float) -> None:
        self.name = f"log:{log.topic}"
        self._ingestor = ingestor
        self._log = log
        self._poll_interval_s = poll_interval_s

    def run(self, stop: threading.Event, on_batch: OnBatch) -> None:
        while not stop.is_set():
            report = ingest_log(self._ingestor, self._log)
            if report.bronze_rows or report.rejected_rows:
                on_batch(IngestDelta(self.name, report.bronze_rows, report.rejected_rows, self._lag()))
            else:
                stop.wait(self._poll_interval_s)

    def _lag(self) -> dict[str, int]:
        written = self._ingestor.resume_point(log_app_id(self._log)).start
        return {"0": max(0, self._log.end_offset() - written)}


class KafkaSource:
    """A member of the consumer group; the Delta log keeps its positions (see :mod:`kafka_source`)."""

    def __init__(self, ingest: KafkaIngest, topic: str) -> None:
        self.name = f"kafka:{topic}"
        self._ingest = ingest

    def run(self, stop: threading.Event, on_batch: OnBatch) -> None:
        seen = _Totals()

        def report(totals: KafkaIngestReport) -> None:
            on_batch(seen.delta(self.name, totals, lag={str(p): n for p, n in totals.lag.items()}))

        self._ingest.run(stop=stop, on_batch=report)


@dataclass
class _Totals:
    """Turns a cumulative report into per-batch deltas."""

    bronze: int = 0
    rejected: int = 0

    def delta(self, source: str, totals: IngestReport, *, lag: dict[str, int]) -> IngestDelta:
        delta = IngestDelta(
            source, totals.bronze_rows - self.bronze, totals.rejected_rows - self.rejected, lag
        )
        self.bronze, self.rejected = totals.bronze_rows, totals.rejected_rows
        return delta
