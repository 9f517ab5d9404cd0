"""Exactly-once ingestion of raw records into bronze (and the rejects table).

A source is read in batches; each batch is parsed in bulk and appended to both tables with the same Delta
application transaction ``(app_id, version)``, where ``version`` is the source position the batch ends at
(a byte offset for files, an offset for logs). On start, the committed versions say where to resume, so a
crash at any point followed by a rerun writes every record exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from vhlake.errors import SourceError
from vhlake.ingest.fast_parse import parse_records
from vhlake.ingest.files import check_json_lines, file_app_id, file_digest, read_line_batches
from vhlake.ingest.parse import ParsedBatch, new_parser_connection
from vhlake.lake.delta import Lake
from vhlake.lake.tables import BRONZE, INGEST_LEDGER, REJECTED

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

    @property
    def furthest(self) -> int | None:
        """How far the furthest table got (bronze, usually: rejects are committed less often)."""
        return max(self.stops, default=0) or None


_REJECTS_PER_COMMIT = 10_000


@dataclass
class _HeldSpan:
    """What the batches of source positions ``(start, last batch]`` read and made, not committed yet: their
    rejected rows, and the counts of their ``ingest_ledger`` row."""

    app_id: str
    source: str
    start: int | None = None
    parts: list[pa.Table] = field(default_factory=list)
    rows: int = 0
    records: int = 0
    bronze: int = 0
    first_offset: int | None = None
    last_offset: int | None = None

    def hold(self, batch: RecordBatch, parsed: ParsedBatch) -> None:
        if self.start is None:
            self.start = batch.start
        if parsed.rejected.num_rows:
            self.parts.append(parsed.rejected)
            self.rows += parsed.rejected.num_rows
        self.records += batch.records.num_rows
        self.bronze += parsed.bronze.num_rows
        if batch.records.num_rows:
            low, high = pc.min_max(batch.records["source_offset"]).values()
            self.first_offset = low.as_py() if self.first_offset is None else self.first_offset
            self.last_offset = high.as_py()

    def take(self) -> pa.Table:
        held = pa.concat_tables(self.parts) if self.parts else REJECTED.schema.empty_table()
        self.parts, self.rows = [], 0
        return held

    def ledger(self, version: int, rejected: int) -> pa.Table:
        """The span's ``ingest_ledger`` row, up to position ``version``; the counts start again."""
        row = ledger_row(
            self.app_id,
            self.source,
            position_from=self.start or 0,
            position_to=version,
            offsets=(self.first_offset, self.last_offset),
            counts=(self.records, self.bronze, rejected),
        )
        self.records = self.bronze = 0
        self.first_offset = self.last_offset = None
        return row


def ledger_row(
    app_id: str,
    source: str,
    *,
    position_from: int,
    position_to: int,
    offsets: tuple[int | None, int | None],
    counts: tuple[int, int, int],
) -> pa.Table:
    """One ``ingest_ledger`` row: positions ``(position_from, position_to]`` of ``source`` read as records
    with ``offsets`` (first, last), and their ``counts`` (records read, bronze rows, rejected rows)."""
    now = datetime.now(UTC)
    records, bronze, rejected = counts
    return pa.Table.from_pylist(
        [
            {
                "app_id": app_id,
                "source": source,
                "position_from": position_from,
                "source_offset": position_to,
                "first_offset": offsets[0],
                "last_offset": offsets[1],
                "records_read": records,
                "bronze_rows": bronze,
                "rejected_rows": rejected,
                "committed_at": now,
                "ingestion_date": now.date(),
            }
        ],
        schema=INGEST_LEDGER.schema,
    )


class BronzeIngestor:
    """Writes sources into bronze exactly once."""

    def __init__(self, lake: Lake, *, source_system: str, batch_bytes: int) -> None:
        self._lake = lake
        self._source_system = source_system
        self._batch_bytes = batch_bytes
        self._con = new_parser_connection()

    def resume_point(self, app_id: str) -> ResumePoint:
        """What bronze, the rejects and the ledger have committed for ``app_id`` (a table that never wrote
        counts as 0: a source ingested before the ledger existed is read again once, bronze and the
        rejects skipping what they hold, so that its ledger rows are written)."""
        versions = [self._lake.txn_version(t, app_id) or 0 for t in (BRONZE, REJECTED, INGEST_LEDGER)]
        return ResumePoint(start=min(versions), stops=tuple(sorted(set(versions))))

    def ingest_file(self, path: Path, *, on_progress: ProgressCallback | None = None) -> IngestReport:
        """Ingest a newline-delimited JSON file; ingesting the same content again adds nothing."""
        if not path.is_file():
            raise SourceError(f"{path}: {'a directory' if path.is_dir() else 'no such file'}")
        check_json_lines(path)  # before anything is written: rejects are permanent
        try:
            digest, size = file_digest(path)
        except OSError as exc:
            raise SourceError(f"{path}: {exc.strerror or exc}") from exc
        app_id = file_app_id(digest)
        source = f"file:{path.resolve()}"
        resume = self.resume_point(app_id)
        done = resume.start
        report = IngestReport(source=source, resumed_from=resume.furthest)
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

        The next batch is read and parsed on a worker thread while the current one commits: DuckDB, the
        scanner and the Delta writer release the GIL, so reading, parsing and writing overlap. At most one
        batch waits.
        """
        source_batches = iter(batches)
        held = _HeldSpan(app_id, source)
        stops = frozenset(self.resume_point(app_id).stops)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vhlake-parse") as pool:
            pending = pool.submit(self._read_and_parse, source_batches, source)
            while (ready := pending.result()) is not None:
                pending = pool.submit(self._read_and_parse, source_batches, source)
                self._commit(app_id, *ready, report, held, flush=ready[0].version in stops)
                yield ready[0]

    def _read_and_parse(
        self, batches: Iterator[RecordBatch], source: str
    ) -> tuple[RecordBatch, ParsedBatch] | None:
        """The next batch, read and parsed (on the worker: only it advances ``batches``), or None at the end."""
        batch = next(batches, None)
        return None if batch is None else (batch, self._parse(batch, source))

    def _parse(self, batch: RecordBatch, source: str) -> ParsedBatch:
        return parse_records(
            self._con,
            batch.records,
            source=source,
            ingestion_time=datetime.now(UTC),
            default_source_system=self._source_system,
        )

    def _commit(
        self,
        app_id: str,
        batch: RecordBatch,
        parsed: ParsedBatch,
        report: IngestReport,
        held: _HeldSpan,
        *,
        flush: bool,
    ) -> None:
        """Commit one parsed batch to bronze, and its rejects and ledger row when enough are held, each at
        most once.

        Rejects are few, and a commit costs ~40 ms whatever its size, so they are held back and written
        for several batches at once, the ledger row of those batches right after them (always with the
        final batch, so the source reads as complete, and at a position another table stopped at, so
        the tables stay aligned). A crash loses nothing: the rejects table or the ledger then records an
        earlier position, and a rerun re-reads from there, the tables skipping what they already have.
        """
        if (parsed.bronze.num_rows or batch.final) and self._lake.append_once(
            BRONZE, parsed.bronze, app_id=app_id, version=batch.version, start=batch.start
        ):
            report.count_bronze(parsed.bronze)
        held.hold(batch, parsed)
        if held.rows >= _REJECTS_PER_COMMIT or batch.final or flush:
            start, rejected = held.start, held.rows
            rows = held.take()
            if (rows.num_rows or batch.final or flush) and self._lake.append_once(
                REJECTED, rows, app_id=app_id, version=batch.version, start=start
            ):
                report.count_rejected(rows)
            ledger = held.ledger(batch.version, rejected)
            self._lake.append_once(INGEST_LEDGER, ledger, app_id=app_id, version=batch.version, start=start)
            held.start = batch.version
        report.batches += 1
