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
