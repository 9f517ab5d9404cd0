"""The embedded event log as a bronze source: ``app_id = log:<topic>``, version = last offset written."""

from __future__ import annotations

from collections.abc import Iterator

from vhlake.events.embedded_log import EmbeddedEventLog
from vhlake.ingest.bronze import BronzeIngestor, IngestReport, RecordBatch

DEFAULT_MAX_RECORDS = 100_000


def log_app_id(log: EmbeddedEventLog) -> str:
    return f"log:{log.topic}"


def ingest_log(
    ingestor: BronzeIngestor, log: EmbeddedEventLog, *, max_records: int = DEFAULT_MAX_RECORDS
) -> IngestReport:
    """Ingest every record published since the last ingest, in batches of at most ``max_records``."""
    app_id = log_app_id(log)
    source = f"log:{log.topic}"
    start = ingestor.resume_position(app_id) or 0
    report = IngestReport(source=source, resumed_from=start or None)
    for _ in ingestor.ingest_batches(
        app_id, _batches(log, start, log.end_offset(), max_records), source=source, report=report
    ):
        pass
    return report


def _batches(log: EmbeddedEventLog, start: int, end: int, max_records: int) -> Iterator[RecordBatch]:
    """Ranges of the log up to ``end`` (the end when the drain began: later records wait for the next run)."""
    position = start
    while position < end:
        chunk = log.read(position, min(max_records, end - position))
        if chunk.records.num_rows == 0:
            return
        position = chunk.last_offset
        yield RecordBatch(position, chunk.records, final=position >= end)
