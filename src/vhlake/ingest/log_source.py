"""The embedded event log as a bronze source: ``app_id = log:<topic>``, version = last offset written."""

from __future__ import annotations

from collections.abc import Iterator

from vhlake.events.embedded_log import EmbeddedEventLog
from vhlake.ingest.bronze import BronzeIngestor, IngestReport, RecordBatch, ResumePoint

DEFAULT_MAX_RECORDS = 100_000


def log_app_id(log: EmbeddedEventLog) -> str:
    return f"log:{log.topic}"


def ingest_log(
    ingestor: BronzeIngestor, log: EmbeddedEventLog, *, max_records: int = DEFAULT_MAX_RECORDS
) -> IngestReport:
    """Ingest every record published since the last ingest, in batches of at most ``max_records``."""
    app_id = log_app_id(log)
    source = f"log:{log.topic}"
    resume = ingestor.resume_point(app_id)
    report = IngestReport(source=source, resumed_from=resume.furthest)
    batches = _batches(log, resume, log.end_offset(), max_records)
    for _ in ingestor.ingest_batches(app_id, batches, source=source, report=report):
        pass
    return report


def _batches(log: EmbeddedEventLog, resume: ResumePoint, end: int, max_records: int) -> Iterator[RecordBatch]:
    """Ranges of the log up to ``end`` (the end when the drain began: later records wait for the next run).

    Ranges never cross a resume stop, so each table gets whole batches only.
    """
    position = resume.start
    for boundary in sorted({s for s in resume.stops if s > position} | {end}):
        while position < min(boundary, end):
            chunk = log.read(position, max_records, up_to=min(boundary, end))
            if chunk.records.num_rows == 0:
                return
            start, position = position, chunk.last_offset
            yield RecordBatch(start, position, chunk.records, final=position >= end)
