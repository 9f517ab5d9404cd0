"""The re-send rule of ingest/resend_window.py, on plain Arrow rows: a record repeating the event_id of an
earlier record of its partition, at most ``window`` offsets before it, is a re-send."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from vhlake.ingest.resend_window import ResendWindow, bronze_rows_before
from vhlake.lake.delta import Lake
from vhlake.lake.tables import BRONZE


def keys(*rows: tuple[str, int, str | None]) -> pa.Table:
    source, offset, event_id = zip(*rows, strict=True)
    return pa.table(
        {
            "source": pa.array(source, pa.string()),
            "source_offset": pa.array(offset, pa.int64()),
            "event_id": pa.array(event_id, pa.string()),
        }
    )


def test_a_repeated_id_is_a_resend_of_the_held_row_or_of_an_earlier_row_of_the_batch() -> None:
    window = ResendWindow(100)
    window.remember(keys(("p0", 1, "a"), ("p0", 2, "b")))
    batch = keys(
        ("p0", 3, "a"), ("p0", 4, "c"), ("p0", 5, "c"), ("p0", 6, "d"), ("p0", 7, None), ("p0", 8, None)
    )
    assert window.admit(batch).tolist() == [True, False, True, False, False, False]


def test_the_same_id_in_another_partition_or_beyond_the_window_is_kept() -> None:
    window = ResendWindow(10)
    window.remember(keys(("p0", 100, "a"), ("p0", 101, "b")))
    batch = keys(("p1", 102, "a"), ("p0", 111, "b"), ("p0", 112, "a"))
    assert window.admit(batch).tolist() == [False, True, False]  # 111 - 101 = 10: still inside


def test_a_record_read_again_is_not_a_resend_of_itself() -> None:
    """After a crash the consumer may read records bronze already holds: the same position is the same record."""
    window = ResendWindow(100)
    window.remember(keys(("p0", 1, "a"), ("p0", 2, "b")))
    assert window.admit(keys(("p0", 1, "a"), ("p0", 2, "b"), ("p0", 3, "a"))).tolist() == [
        False,
        False,
        True,
    ]


def test_the_window_lets_go_of_old_rows_and_still_finds_recent_ones() -> None:
    window = ResendWindow(1_000)
    for first in range(0, 20_000, 500):
        offsets = np.arange(first, first + 500)
        window.remember(keys(*(("p0", int(o), f"e{o}") for o in offsets)))
    assert len(window) <= 2 * 1_000 + 500
    recent, old = 19_500, 100
    batch = keys(("p0", 20_000, f"e{recent}"), ("p0", 20_001, f"e{old}"))
    assert window.admit(batch).tolist() == [True, False]


def test_bronze_rows_before_reads_the_window_of_each_partition(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    for first in (0, 50, 100):  # three commits, three files
        rows = keys(
            *(("p0", o, f"e{o}") for o in range(first, first + 50)),
            *(("p1", o, f"f{o}") for o in range(first, first + 50)),
        )
        lake.append(BRONZE, _as_bronze(rows))
    held = bronze_rows_before(lake, {"p0": 120, "p1": 60}, 30)
    got = sorted(zip(held["source"].to_pylist(), held["source_offset"].to_pylist(), strict=True))
    assert got == [("p0", o) for o in range(90, 120)] + [("p1", o) for o in range(30, 60)]
    assert bronze_rows_before(Lake(str(tmp_path / "empty")), {"p0": 10}, 5).num_rows == 0


def _as_bronze(rows: pa.Table) -> pa.Table:
    count = rows.num_rows
    columns = {name: rows[name] for name in rows.column_names}
    filled = {
        field.name: columns.get(field.name, pa.nulls(count, field.type))
        for field in BRONZE.schema
        if field.name not in columns
    }
    table = pa.table({**columns, **filled})
    table = table.set_column(
        table.schema.get_field_index("ingestion_time"),
        "ingestion_time",
        pa.array([0] * count, pa.int64()).cast(BRONZE.schema.field("ingestion_time").type),
    )
    table = table.set_column(
        table.schema.get_field_index("event_date"),
        "event_date",
        pa.array([0] * count, pa.int32()).cast(pa.date32()),
    )
    return table.select(BRONZE.schema.names).cast(BRONZE.schema)
