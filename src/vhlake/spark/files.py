"""JSON-lines files into bronze and rejects from Spark, by lines, whatever the file's size.

A file is never one record. The driver reads it once, in bounded chunks, for what only a sequential pass
can give: its SHA-256 (its identity, as ``vhlake ingest`` names it: ``file:<sha256>``) and where to cut it
into ranges of about ``range_bytes`` on line boundaries, with the number of the first line of each range.
Executors then each read one range (seek, read, split into lines), parse it with the embedded ingest's
parser and write the bronze and reject rows as Parquet files of the tables; the driver commits each range's
files, in file order, with the application transaction ``vhlake ingest`` uses (``file:<sha256>``, the
range's end byte). So records keep ``vhlake ingest``'s line numbers, a file ingested by either engine is not
ingested again by the other, and a run killed at any point resumes at the last committed range.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from vhlake.lake.tables import BRONZE, REJECTED
from vhlake.spark.jobs import schema_ddl
from vhlake.spark.tables import ADDS, LocalDeltaTables, add_actions, add_rows

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_CHUNK = 8 * 1024 * 1024
RANGE_BYTES = 64 * 1024 * 1024
_MIN_RANGE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Plan:
    """A file cut into line ranges: ``ranges`` are ``(start byte, end byte, number of the first line)``."""

    path: Path
    digest: str
    size: int
    ranges: list[tuple[int, int, int]]

    @property
    def app_id(self) -> str:
        return f"file:{self.digest}"

    @property
    def source(self) -> str:
        return f"file:{self.path}"


def plan_file(path: Path, *, range_bytes: int = RANGE_BYTES, stops: Sequence[int] = ()) -> Plan:
    """Read ``path`` once (``_CHUNK`` at a time): its digest, and ranges of about ``range_bytes`` ending on
    line breaks, also cut at each of ``stops`` (positions earlier commits ended at)."""
    digest, ranges = hashlib.sha256(), []
    pending = sorted(set(stops))
    start = first_line = position = lines = 0  # lines: breaks before position
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            at = 0  # how far into chunk lines are counted
            while True:
                wanted = start + range_bytes - 1 - position  # the break ending the range at or after
                found = chunk.find(b"\n", max(wanted, at))
                cut = position + found + 1 if found >= 0 else None
                while pending and pending[0] <= start:
                    pending.pop(0)
                if pending and pending[0] <= position + len(chunk) and (cut is None or pending[0] < cut):
                    cut = pending.pop(0)
                if cut is None:
                    break
                lines += chunk.count(b"\n", at, cut - position)
                ranges.append((start, cut, first_line + 1))
                start, first_line, at = cut, lines, cut - position
            lines += chunk.count(b"\n", at)
            position += len(chunk)
    if start < position:
        ranges.append((start, position, first_line + 1))
    return Plan(path, digest.hexdigest(), position, ranges)


# One range of one file for an executor: which file, which bytes, its first line's number.
RANGES = pa.schema(
    [
        ("part", pa.int64()),
        ("path", pa.string()),
        ("source", pa.string()),
        ("start", pa.int64()),
        ("end", pa.int64()),
        ("first_line", pa.int64()),
    ]
)


def parse_ranges_task(
    bronze_root: str, rejected_root: str, *, ingestion_time: datetime, source_system: str
) -> Any:
    """A ``mapInArrow`` function: each range read, split into lines, parsed and written; yields ADDS."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from vhlake.ingest.fast_parse import parse_records
        from vhlake.ingest.files import split_lines
        from vhlake.ingest.parse import new_parser_connection
        from vhlake.lake.partition_files import write_files

        con = new_parser_connection()
        for batch in batches:
            for work in batch.to_pylist():
                with Path(work["path"]).open("rb") as handle:
                    handle.seek(work["start"])
                    body = handle.read(work["end"] - work["start"])
                records, _ = split_lines(
                    memoryview(body), first_line=work["first_line"], at_file_start=work["start"] == 0
                )
                parsed = parse_records(
                    con,
                    records,
                    source=work["source"],
                    ingestion_time=ingestion_time,
                    default_source_system=source_system,
                )
                yield add_rows(BRONZE, work["part"], write_files(Path(bronze_root), BRONZE, parsed.bronze))
                yield add_rows(
                    REJECTED, work["part"], write_files(Path(rejected_root), REJECTED, parsed.rejected)
                )

    return run


def ingest_files(
    spark: SparkSession,
    tables: LocalDeltaTables,
    paths: Sequence[Path],
    *,
    ingestion_time: datetime,
    source_system: str,
    range_bytes: int = RANGE_BYTES,
) -> int:
    """Ingest ``paths`` into bronze and rejects exactly once (see the module); the ranges committed."""
    lake = tables.lake
    work: list[tuple[Plan, int, int, int]] = []  # (plan, start, end, part)
    # At least two ranges per core where the files allow (a small batch is still read in parallel).
    total = sum(path.stat().st_size for path in paths)
    cores = spark.sparkContext.defaultParallelism
    range_bytes = min(range_bytes, max(_MIN_RANGE_BYTES, total // (2 * cores) + 1))
    for path in paths:
        plan = plan_file(path, range_bytes=range_bytes)
        stored = [lake.txn_version(t, plan.app_id) or 0 for t in (BRONZE, REJECTED)]
        if any(stored) and not set(stored) <= {0, *(end for _, end, _ in plan.ranges)}:
            plan = plan_file(path, range_bytes=range_bytes, stops=stored)  # another cut: line up with it
        for start, end, first_line in plan.ranges:
            if end > min(stored):
                work.append((plan, start, end, first_line))
    if not work:
        return 0
    ranges = pa.table(
        {
            "part": list(range(len(work))),
            "path": [str(plan.path) for plan, *_ in work],
            "source": [plan.source for plan, *_ in work],
            "start": [start for _, start, _, _ in work],
            "end": [end for _, _, end, _ in work],
            "first_line": [first for *_, first in work],
        },
        schema=RANGES,
    )
    task = parse_ranges_task(
        lake.table_uri(BRONZE),
        lake.table_uri(REJECTED),
        ingestion_time=ingestion_time,
        source_system=source_system,
    )
    frame = spark.createDataFrame(ranges).repartition(len(work))  # round robin: a range per task
    written = frame.mapInArrow(task, schema_ddl(ADDS)).collect()
    by_part: dict[tuple[str, int], list[Any]] = {}
    for row in written:
        by_part.setdefault((row["table"], row["part"]), []).append(row)
    for part, (plan, start, end, _) in enumerate(work):
        for table in (BRONZE, REJECTED):
            actions = add_actions(by_part.get((table.name, part), []))
            lake.add_files_once(table, actions, app_id=plan.app_id, version=end, start=start)
    return len(work)
