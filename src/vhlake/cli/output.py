"""Rendering query results for people (table) and for programs (json, csv)."""

from __future__ import annotations

import base64
import io
import sys
from decimal import Decimal
from enum import StrEnum
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from vhlake.ingest.bronze import IngestReport

# Piped output is read by programs and people with wide windows: do not wrap tables at 80 columns.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], tuple):
        return dict(value)  # an Arrow map comes back as key/value pairs
    raise TypeError(f"cannot render {type(value).__name__} as JSON")


def to_json(table: pa.Table) -> bytes:
    """A JSON array of row objects; dates and timestamps as ISO-8601 strings."""
    return orjson.dumps(table.to_pylist(), default=_json_default, option=orjson.OPT_NON_STR_KEYS)


def to_csv(table: pa.Table) -> bytes:
    """CSV with a header row; nested values (maps, lists, structs) as JSON text."""
    columns = []
    for column in table.columns:
        if pa.types.is_nested(column.type):
            column = pa.array(
                [
                    None if v is None else orjson.dumps(v, default=_json_default).decode()
                    for v in column.to_pylist()
                ],
                pa.string(),
            )
        columns.append(column)
    buffer = io.BytesIO()
    pacsv.write_csv(pa.table(columns, names=table.column_names), buffer)
    return buffer.getvalue()


def print_table(
    console: Console, table: pa.Table, *, max_rows: int, title: str | None = None, more: str | None = None
) -> None:
    """A rich table of at most ``max_rows`` rows, saying how many were left out (and ``more``: how the
    command shows them)."""
    view = Table(title=title, header_style="bold cyan")
    for name in table.column_names:
        view.add_column(name, overflow="fold")
    for row in table.slice(0, max_rows).to_pylist():
        view.add_row(*("NULL" if v is None else str(v) for v in row.values()))
    console.print(view)
    hidden = table.num_rows - max_rows
    if hidden > 0:
        console.print(f"[dim]… {hidden:,} more rows{f' ({more})' if more else ''}[/dim]")
    else:
        console.print(f"[dim]{table.num_rows:,} row{'s' if table.num_rows != 1 else ''}[/dim]")


def print_ingest_report(name: str, report: IngestReport, seconds: float) -> None:
    """One line: what an ingest added to bronze and rejects, how fast, and whether it resumed."""
    if report.already_ingested:
        out.print(f"{name}: already ingested, nothing to add")
        return
    rate = (report.bronze_rows + report.rejected_rows) / seconds if seconds > 0 else 0.0
    reasons = ", ".join(f"{kind}: {count:,}" for kind, count in sorted(report.reject_errors.items()))
    resumed = f" (resumed at position {report.resumed_from:,})" if report.resumed_from else ""
    out.print(
        f"{name}: [green]{report.bronze_rows:,} ingested[/green], "
        f"[{'yellow' if report.rejected_rows else 'green'}]{report.rejected_rows:,} rejected[/]"
        f"{f' ({reasons})' if reasons else ''} in {seconds:.2f} s ({rate:,.0f} events/s){resumed}"
    )


def step_progress() -> Progress:
    """A transient progress bar per phase of a long run (pipeline), on stderr when it is a terminal."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )


def file_progress(*, show: bool) -> Progress:
    """A transient progress bar over a file's bytes, on stderr (hidden when not a terminal)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not (show and err.is_terminal),
    )
