"""error_type_daily_gold kept by the pipeline: recomputed for the groups a batch touches, rows of error
types no longer reported deleted, rebuilt from silver when behind it (docs/semantics.md)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from conftest import make_event
from test_pipeline import Lakehouse, end, start
from vhlake.lake.delta import merge_source
from vhlake.lake.tables import ERROR_TYPE_GOLD, SILVER
from vhlake.pipeline.error_types import error_type_daily
from vhlake.pipeline.incremental import SILVER_KEYS
from vhlake.samples import SampleSpec, generate_lines

ORDER = ["date", "marketplace", "category", "error_type"]


@pytest.fixture
def house(tmp_path: Path) -> Lakehouse:
    return Lakehouse(tmp_path)


def error_rows(house: Lakehouse) -> list[tuple[Any, ...]]:
    return [
        (
            str(r["date"]),
            r["category"],
            r["error_type"],
            r["jobs"],
            r["occurrences"],
            r["share_of_failed_jobs"],
        )
        for r in house.table(ERROR_TYPE_GOLD, ORDER)
    ]


def from_all_of_silver(house: Lakehouse) -> list[dict[str, Any]]:
    silver = pa.table(house.lake.open(SILVER).to_pyarrow_table())  # type: ignore[union-attr]
    rows = error_type_daily(duckdb.connect(), silver, updated_at=datetime.now(UTC)).drop_columns(
        ["updated_at"]
    )
    ordered: list[dict[str, Any]] = rows.sort_by([(c, "ascending") for c in ORDER]).to_pylist()
    return ordered


def test_a_job_refolded_with_other_errors_replaces_its_error_types(house: Lakehouse) -> None:
    house.run(
        start("j1", "2026-11-27T10:00:00Z"),
        end("j1", "2026-11-27T10:01:00Z", kind="failed", payload={"error_types": {"price": 2, "ean": 1}}),
        start("j2", "2026-11-27T11:00:00Z"),
        end("j2", "2026-11-27T11:01:00Z", payload={"error_types": {"ean": 4}}),
    )
    assert error_rows(house) == [
        ("2026-11-27", "eletrônicos", "ean", 2, 5, 0.5),
        ("2026-11-27", "eletrônicos", "price", 1, 2, 1.0),
    ]
    # a later terminal event of j1 wins: it reports ean only, so the day's price row goes
    house.run(end("j1", "2026-11-27T10:30:00Z", payload={"error_types": {"ean": 3, "price": 0}}))
    assert error_rows(house) == [("2026-11-27", "eletrônicos", "ean", 2, 7, 0.0)]


def test_a_late_start_moves_the_error_types_to_the_jobs_new_day(house: Lakehouse) -> None:
    house.run(end("j1", "2026-11-28T00:30:00Z", kind="failed", payload={"error_types": {"price": 1}}))
    assert error_rows(house) == [("2026-11-28", "eletrônicos", "price", 1, 1, 1.0)]
    house.run(start("j1", "2026-11-27T23:59:00Z"))
    assert error_rows(house) == [("2026-11-27", "eletrônicos", "price", 1, 1, 1.0)]


@pytest.mark.slow
def test_range_by_range_equals_the_table_computed_from_all_of_silver(house: Lakehouse) -> None:
    lines = generate_lines(SampleSpec(jobs=300, seed=15))["line"].to_pylist()
    for first in range(0, len(lines), 97):  # jobs cut across batches: their terminals arrive later
        house.run(*lines[first : first + 97])
    stored = house.table(ERROR_TYPE_GOLD, ORDER)
    assert len(stored) > 10
    assert stored == from_all_of_silver(house)


def test_a_lake_built_before_the_table_existed_gets_it_from_silver(house: Lakehouse) -> None:
    house.run(
        end("j1", "2026-11-27T10:01:00Z", kind="failed", payload={"error_types": {"price": 2}}),
        make_event(2, job_id="j2", event_type="validation_completed", payload={"error_types": {"ean": 1}}),
    )
    expected = error_rows(house)
    shutil.rmtree(house.lake.table_uri(ERROR_TYPE_GOLD))  # as on a lake from before this table
    upgraded = Lakehouse(house.root)  # what opens the lake next: a new process
    upgraded.run()
    assert error_rows(upgraded) == expected and len(expected) == 2
    upgraded.run(
        start("j3", "2026-11-27T12:00:00Z"),
        end("j3", "2026-11-27T12:01:00Z", payload={"error_types": {"ean": 1}}),
    )
    assert upgraded.table(ERROR_TYPE_GOLD, ORDER) == from_all_of_silver(upgraded)


def test_a_silver_row_whose_only_change_is_its_error_map_is_rewritten(house: Lakehouse) -> None:
    house.run(end("j1", "2026-11-27T10:01:00Z", kind="failed", payload={"error_types": {"price": 2}}))
    row = pa.table(house.lake.open(SILVER).to_pyarrow_table())  # type: ignore[union-attr]
    refolded = row.set_column(
        row.schema.get_field_index("error_types"),
        "error_types",
        pa.array([[("ean", 1)]], row.schema.field("error_types").type),
    )
    house.lake.upsert_once(
        SILVER,
        merge_source(SILVER, refolded, refolded.slice(0, 0)),
        keys=SILVER_KEYS,
        app_id="test",
        version=1,
        delete_flag="_deleted",
    )
    assert house.silver()["j1"]["error_types"] == [("ean", 1)]
