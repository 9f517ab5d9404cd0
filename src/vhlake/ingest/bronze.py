"""Exactly-once ingestion of raw records into bronze (and the rejects table).

A source is read in batches; each batch is parsed in bulk and appended to both tables with the same Delta
application transaction ``(app_id, version)``, where ``version`` is the source position the batch ends at
(a byte offset for files, an offset for logs). On start, the committed versions say where to resume, so a
crash at any point followed by a rerun writes every record exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from vhlake.errors import SourceError
from vhlake.ingest.fast_parse import parse_records
from vhlake.ingest.files import file_digest, read_line_batches
from vhlake.ingest.parse import ParsedBatch, new_parser_connection
from vhlake.lake.delta import Lake
from vhlake.lake.tables import BRONZE, REJECTED

ProgressCallback = Callable[[int], None]
"""Called after each committed batch with how many source units (bytes, offsets) it advanced."""


@dataclass
class IngestReport:
    """What one ingestion call did."""

    source: str
    bronze_rows: int = 0
    rejected_rows: int = 0
    batches: int = 0
    resumed_from: int | None = None
    already_ingested: bool = False
    reject_errors: dict[str, int] = field(default_factory=dict)

    def count_bronze(self, rows: pa.Table) -> None:
        self.bronze_rows += rows.num_rows

    def count_rejected(self, rows: pa.Table) -> None:
        self.rejected_rows += rows.num_rows
        for error in rows["error"].to_pylist():
            kind = error.split(":", 1)[0]
            self.reject_errors[kind] = self.reject_errors.get(kind, 0) + 1


@dataclass(frozen=True)
class RecordBatch:
    """Raw records from a source: positions ``(start, version]`` (files: bytes, logs: offsets)."""

    start: int
    version: int
    records: pa.Table
    final: bool


@dataclass(frozen=True)
class ResumePoint:
    """Where a source resumes: ``start`` (both tables have it) and ``stops`` (each table's position).

    Batches must not cross a stop, so each table either has a whole batch or none of it.
    """

    start: int
    stops: tuple[int, ...]


class BronzeIngestor:
    """Writes sources into bronze exactly once."""

    def __init__(self, lake: Lake, *, source_system: str, batch_bytes: int) -> None:
        self._lake = lake
        self._source_system = source_system
        self._batch_bytes = batch_bytes
        self._con = new_parser_connection()

    def resume_point(self, app_id: str) -> ResumePoint:
        """What bronze and rejects have committed for ``app_id`` (a table that never wrote counts as 0)."""
        versions = [self._lake.txn_version(t, app_id) or 0 for t in (BRONZE, REJECTED)]
        return ResumePoint(start=min(versions), stops=tuple(sorted(set(versions))))

    def ingest_file(self, path: Path, *, on_progress: ProgressCallback | None = None) -> IngestReport:
        """Ingest a newline-delimited JSON file; ingesting the same content again adds nothing."""
        if not path.is_file():
            raise SourceError(f"{path}: no such file")
        try:
            digest, size = file_digest(path)
        except OSError as exc:
            raise SourceError(f"{path}: {exc.strerror or exc}") from exc
        app_id = f"file:{digest}"
        source = f"file:{path.resolve()}"
        resume = self.resume_point(app_id)
        done = resume.start
        report = IngestReport(source=source, resumed_from=done or None)
        if size == 0 or done >= size:
            report.already_ingested = size > 0
            return report
        if on_progress is not None and done:
            on_progress(done)
        lines = read_line_batches(
            path, start_byte=done, end_byte=size, batch_bytes=self._batch_bytes, stops=resume.stops
        )
        batches = (RecordBatch(b.start_byte, b.end_byte, b.records, final=b.end_byte >= size) for b in lines)
        position = done
        for batch in self.ingest_batches(app_id, batches, source=source, report=report):
            if on_progress is not None:
                on_progress(batch.version - position)
            position = batch.version
        return report

    def ingest_batches(
        self, app_id: str, batches: Iterable[RecordBatch], *, source: str, report: IngestReport
    ) -> Iterator[RecordBatch]:
        """Commit batches a source produced from :meth:`resume_point`, yielding each once committed.

        The next batch is parsed on a worker thread while the current one commits: DuckDB and the Delta
        writer both release the GIL, so reading, parsing and writing overlap. At most one batch waits.
        """
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vhlake-parse") as pool:
            pending: tuple[RecordBatch, Future[ParsedBatch]] | None = None
            for batch in batches:
                parsing = pool.submit(self._parse, batch, source)
                if pending is not None:
                    self._commit(app_id, pending[0], pending[1].result(), report)
                    yield pending[0]
                pending = (batch, parsing)
            if pending is not None:
                self._commit(app_id, pending[0], pending[1].result(), report)
                yield pending[0]

    def _parse(self, batch: RecordBatch, source: str) -> ParsedBatch:
        return parse_records(
            self._con,
            batch.records,
            source=source,
            ingestion_time=datetime.now(UTC),
            default_source_system=self._source_system,
        )

    def _commit(self, app_id: str, batch: RecordBatch, parsed: ParsedBatch, report: IngestReport) -> None:
        """Commit one parsed batch to bronze and rejects, each at most once."""
        # An empty part is still committed on the final batch so the source reads as complete.
        parts = (
            (BRONZE, parsed.bronze, report.count_bronze),
            (REJECTED, parsed.rejected, report.count_rejected),
        )
        for table, rows, count in parts:
            if (rows.num_rows or batch.final) and self._lake.append_once(
                table, rows, app_id=app_id, version=batch.version, start=batch.start
            ):
                count(rows)
        report.batches += 1
