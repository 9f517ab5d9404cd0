"""What the lake holds: per table, rows, Delta version, files and bytes (from the Delta log, no data scan)."""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from vhlake.lake.delta import Lake
from vhlake.lake.tables import TableDef


def table_inventory(lake: Lake, tables: Iterable[TableDef]) -> pa.Table:
    """One row per table: ``table, layer, rows, version, files, size_bytes`` (NULLs when not created yet)."""
    rows = []
    for table in tables:
        delta = lake.open(table)
        row: dict[str, object] = {"table": table.name, "layer": table.layer}
        if delta is None:
            row |= {"rows": None, "version": None, "files": None, "size_bytes": None}
        else:
            actions = pa.table(delta.get_add_actions(flatten=True))
            row |= {
                "rows": _sum(actions, "num_records"),
                "version": delta.version(),
                "files": actions.num_rows,
                "size_bytes": _sum(actions, "size_bytes"),
            }
        rows.append(row)
    return pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [
                ("table", pa.string()),
                ("layer", pa.string()),
                ("rows", pa.int64()),
                ("version", pa.int64()),
                ("files", pa.int64()),
                ("size_bytes", pa.int64()),
            ]
        ),
    )


def _sum(actions: pa.Table, column: str) -> int:
    if actions.num_rows == 0:
        return 0
    total = pc.sum(actions[column]).as_py()
    return int(total or 0)


def partition_sizes(lake: Lake, table: TableDef) -> pa.Table:
    """One row per partition of ``table``: its values, files, rows and bytes (from the Delta log)."""
    delta = lake.open(table)
    columns = [f"partition.{name}" for name in table.partition_by]
    if delta is None:
        return pa.table({"partition": pa.array([], pa.string())})
    actions = pa.table(delta.get_add_actions(flatten=True))
    if not columns:
        actions = actions.append_column(
            "partition.none", pa.repeat(pa.scalar("(whole table)"), actions.num_rows)
        )
        columns = ["partition.none"]
    grouped = actions.group_by(columns).aggregate(
        [("path", "count"), ("num_records", "sum"), ("size_bytes", "sum")]
    )
    texts = [pc.cast(grouped[c], pa.string()) for c in columns]
    label = texts[0] if len(texts) == 1 else pc.binary_join_element_wise(*texts, "/")
    sizes = pa.table(
        {
            "partition": label,
            "files": grouped["path_count"],
            "rows": grouped["num_records_sum"],
            "size_bytes": grouped["size_bytes_sum"],
        }
    )
    return sizes.sort_by([("partition", "ascending")])


def daily_growth(sizes: pa.Table, *, days: int = 7) -> float | None:
    """Average bytes a day over the last ``days`` date partitions (partitions named by a date first)."""
    dated = sizes.filter(pc.match_substring_regex(sizes["partition"], r"^\d{4}-\d{2}-\d{2}"))
    if dated.num_rows == 0:
        return None
    day = pc.utf8_slice_codeunits(dated["partition"], 0, 10)
    per_day = (
        pa.table({"day": day, "bytes": dated["size_bytes"]}).group_by("day").aggregate([("bytes", "sum")])
    )
    recent = per_day.sort_by([("day", "descending")]).slice(0, days)
    return float(pc.mean(recent["bytes_sum"]).as_py())
