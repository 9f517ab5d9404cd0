"""Compaction of recent partitions while streaming: fewer files, same rows, and the pipeline (which reads
bronze's change data feed) neither misses nor repeats anything after it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import ingest, make_event, rows, version, write_lines
from vhlake.lake.delta import Lake
from vhlake.lake.tables import BRONZE, QUARANTINE, SILVER, TableDef
from vhlake.pipeline.ranges import bronze_log
from vhlake.pipeline.runner import Pipeline
from vhlake.service.maintenance import compact_recent


def stream(lake: Lake, tmp_path: Path, batch: int, *, jobs: int = 20) -> None:
    now = datetime.now(UTC).isoformat()
    events = [make_event(batch * 1000 + n, timestamp=now) for n in range(jobs)]
    events.append(make_event(batch * 1000 + 999, timestamp=now, marketplace=""))  # quarantined
    ingest(lake, write_lines(tmp_path / f"batch-{batch}.jsonl", events))
    Pipeline(lake).run()


def files(lake: Lake, table: TableDef) -> int:
    delta = lake.open(table)
    assert delta is not None, f"{table.name} was never written"
    return len(delta.file_uris())


@pytest.mark.slow
def test_compaction_merges_small_files_and_the_pipeline_carries_on_exactly(
    lake: Lake, tmp_path: Path
) -> None:
    for batch in range(6):
        stream(lake, tmp_path, batch)
    before = {t.name: (files(lake, t), rows(lake, t).num_rows) for t in (BRONZE, SILVER, QUARANTINE)}
    assert before[BRONZE.name][0] >= 6

    report = compact_recent(lake, today=datetime.now(UTC).date())
    assert report.files_removed > report.files_added > 0
    for table in (BRONZE, SILVER, QUARANTINE):
        assert files(lake, table) < before[table.name][0]
        assert rows(lake, table).num_rows == before[table.name][1]

    assert Pipeline(lake).run().events_in == 0  # compaction added no data to bronze's change feed
    for batch in range(6, 8):
        stream(lake, tmp_path, batch)
    assert rows(lake, SILVER).num_rows == 8 * 20
    assert rows(lake, QUARANTINE).num_rows == 8
    assert rows(lake, BRONZE).num_rows == 8 * 21


def test_the_pipeline_reads_bronze_commit_numbers_right_while_the_ingest_commits(
    lake: Lake, tmp_path: Path
) -> None:
    """deltalake's ``history`` numbers commits down from the handle's version but reads them from the
    store: a commit made meanwhile shifted every number, the compaction took the number of the append
    before it, and that append's events were skipped (seen in bench/soak.py)."""
    now = datetime.now(UTC)
    for batch in range(3):
        ingest(
            lake, write_lines(tmp_path / f"b{batch}.jsonl", [make_event(batch, timestamp=now.isoformat())])
        )
    assert compact_recent(lake, today=now.date()).files_removed >= 3
    compaction = version(lake, BRONZE)
    ingest(lake, write_lines(tmp_path / "b3.jsonl", [make_event(3, timestamp=now.isoformat())]))
    target = version(lake, BRONZE)  # what the pipeline's handle says
    ingest(
        Lake(lake.uri), write_lines(tmp_path / "b4.jsonl", [make_event(4, timestamp=now.isoformat())])
    )  # the ingest, meanwhile

    log = bronze_log(lake, since=0, target=target)
    assert log.without_events == {compaction}
    assert sorted(log.added) == list(range(1, target + 1))
    assert all(log.added[v] == 1 for v in log.added if v != compaction)
    assert Pipeline(lake).run().events_in == 5
