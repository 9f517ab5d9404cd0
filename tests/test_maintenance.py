"""Compaction of recent partitions while streaming: fewer files, same rows, and the pipeline (which reads
bronze's change data feed) neither misses nor repeats anything after it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from conftest import make_event, write_lines
from vhlake.ingest.bronze import BronzeIngestor
from vhlake.lake.delta import Lake
from vhlake.lake.tables import BRONZE, QUARANTINE, SILVER
from vhlake.pipeline.runner import Pipeline
from vhlake.service.maintenance import compact_recent


def stream(lake: Lake, tmp_path: Path, batch: int, *, jobs: int = 20) -> None:
    now = datetime.now(UTC).isoformat()
    events = [make_event(batch * 1000 + n, timestamp=now) for n in range(jobs)]
    events.append(make_event(batch * 1000 + 999, timestamp=now, marketplace=""))  # quarantined
    BronzeIngestor(lake, source_system="t", batch_bytes=1 << 20).ingest_file(
        write_lines(tmp_path / f"batch-{batch}.jsonl", events)
    )
    Pipeline(lake).run()


def files(lake: Lake, table: object) -> int:
    return len(lake.open(table).file_uris())  # type: ignore[arg-type, union-attr]


def rows(lake: Lake, table: object) -> int:
    return int(pa.table(lake.open(table).to_pyarrow_table()).num_rows)  # type: ignore[arg-type, union-attr]


def test_compaction_merges_small_files_and_the_pipeline_carries_on_exactly(
    lake: Lake, tmp_path: Path
) -> None:
    for batch in range(6):
        stream(lake, tmp_path, batch)
    before = {t.name: (files(lake, t), rows(lake, t)) for t in (BRONZE, SILVER, QUARANTINE)}
    assert before[BRONZE.name][0] >= 6

    report = compact_recent(lake, today=datetime.now(UTC).date())
    assert report.files_removed > report.files_added > 0
    for table in (BRONZE, SILVER, QUARANTINE):
        assert files(lake, table) < before[table.name][0]
        assert rows(lake, table) == before[table.name][1]

    assert Pipeline(lake).run().events_in == 0  # compaction added no data to bronze's change feed
    for batch in range(6, 8):
        stream(lake, tmp_path, batch)
    assert rows(lake, SILVER) == 8 * 20
    assert rows(lake, QUARANTINE) == 8
    assert rows(lake, BRONZE) == 8 * 21
