"""The embedded event log: a durable, append-only, offset-addressed log in one SQLite file (WAL mode).

It is what Kafka is in production, for a single machine and no server: publishers append records (key, value)
and get back offsets; consumers read ranges of offsets. Each append is one fsync'd transaction, so a record
whose offset was returned survives a crash. Offsets start at 1 and never repeat.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from vhlake.errors import PublishError, SourceError
from vhlake.events.durable_sqlite import immediate_transaction, open_durable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    "offset" INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT,
    value BLOB NOT NULL,
    published_at_ms INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class LogRange:
    """Records ``(first, last]`` of a log read, as ``source_offset`` (int64) and ``raw`` (binary)."""

    records: pa.Table
    last_offset: int


class EmbeddedEventLog:
    """One topic of the embedded log, stored at ``path``."""

    def __init__(self, path: Path, *, topic: str) -> None:
        self.path = path
        self.topic = topic
        self._db = open_durable(path, _SCHEMA, error=SourceError, what="the event log")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> EmbeddedEventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(self, values: Sequence[bytes], keys: Sequence[str | None] | None = None) -> list[int]:
        """Append records in one durable transaction; returns their offsets, in order."""
        if keys is not None and len(keys) != len(values):
            raise ValueError("keys and values must have the same length")
        now_ms = int(time.time() * 1000)
        rows = [(None if keys is None else keys[i], value, now_ms) for i, value in enumerate(values)]
        with immediate_transaction(self._db, error=PublishError, what=f"the event log at {self.path}"):
            before = self._last_offset()
            self._db.executemany("INSERT INTO records (key, value, published_at_ms) VALUES (?, ?, ?)", rows)
            after = self._last_offset()
        # One writer at a time (BEGIN IMMEDIATE): our rows are exactly (before, after].
        return list(range(before + 1, after + 1))

    def end_offset(self) -> int:
        """The offset of the newest record ever appended (0 when none was), forgotten ones included."""
        return self._last_offset()

    def _last_offset(self) -> int:
        # AUTOINCREMENT's counter, not max(offset): records a user had erased leave gaps, never reuse
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
        return 0 if row is None else int(row[0])

    def forget(self, *, user_id: str, job_ids: Sequence[str]) -> int:
        """Delete the records of a user: those whose JSON names ``user_id``, and those keyed by one of
        ``job_ids`` (a job's events may omit the user). Offsets are never reused, so readers skip the gap.
        Returns how many records went."""
        with immediate_transaction(self._db, error=PublishError, what=f"the event log at {self.path}"):
            self._db.execute("CREATE TEMP TABLE IF NOT EXISTS forgotten_jobs (job_id TEXT PRIMARY KEY)")
            self._db.execute("DELETE FROM forgotten_jobs")
            self._db.executemany("INSERT OR IGNORE INTO forgotten_jobs VALUES (?)", [(j,) for j in job_ids])
            cursor = self._db.execute(
                "DELETE FROM records WHERE key IN (SELECT job_id FROM forgotten_jobs) OR "
                "(CASE WHEN json_valid(CAST(value AS TEXT)) "
                "THEN json_extract(CAST(value AS TEXT), '$.user_id') END) = ?",
                (user_id,),
            )
            return int(cursor.rowcount)

    def read(self, after: int, max_records: int, *, up_to: int | None = None) -> LogRange:
        """Up to ``max_records`` records with offsets in ``(after, up_to]``, oldest first."""
        limit = up_to if up_to is not None else 2**62
        try:
            rows = self._db.execute(
                'SELECT "offset", value FROM records WHERE "offset" > ? AND "offset" <= ? '
                'ORDER BY "offset" LIMIT ?',
                (after, limit, max_records),
            ).fetchall()
        except sqlite3.Error as exc:
            raise SourceError(f"cannot read the event log at {self.path}: {exc}") from exc
        offsets, values = zip(*rows, strict=True) if rows else ((), ())
        records = pa.table(
            {"source_offset": pa.array(offsets, pa.int64()), "raw": pa.array(values, pa.large_binary())}
        )
        return LogRange(records, int(offsets[-1]) if offsets else after)
