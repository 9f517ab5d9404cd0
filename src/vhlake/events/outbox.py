"""The outbox: where events wait, on local disk, while the event log (Kafka) is unreachable.

One SQLite file (WAL, fsync on commit), so an event handed to the outbox survives a crash or a restart.
Events leave it in the order they entered (a job's events are re-sent in order); the ones the broker
refuses for good (too large, not authorised, ...) move to a ``dead`` table with the broker's error, shown
by ``vhlake outbox status`` and never dropped silently.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vhlake.errors import PublishError
from vhlake.events.durable_sqlite import immediate_transaction, open_durable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    queued_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dead (
    seq INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    queued_at_ms INTEGER NOT NULL,
    failed_at_ms INTEGER NOT NULL,
    error TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class OutboxEntry:
    seq: int
    key: str
    value: bytes


@dataclass(frozen=True)
class OutboxStatus:
    """How many events wait (and since when), and how many the broker refused for good."""

    path: Path
    pending: int
    oldest_queued_at_ms: int | None
    dead: int
    dead_errors: dict[str, int]

    @property
    def oldest_age_s(self) -> float | None:
        if self.oldest_queued_at_ms is None:
            return None
        return max(0.0, time.time() - self.oldest_queued_at_ms / 1000)


class Outbox:
    """A durable FIFO of (key, value) records, in one SQLite file at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = open_durable(path, _SCHEMA, error=PublishError, what="the outbox")

    def close(self) -> None:
        self._db.close()

    def add(self, keys: Sequence[str], values: Sequence[bytes]) -> list[int]:
        """Queue records in one durable transaction; returns their places (increasing)."""
        if not values:
            return []
        now_ms = int(time.time() * 1000)
        with self._transaction():
            self._db.executemany(
                "INSERT INTO pending (key, value, queued_at_ms) VALUES (?, ?, ?)",
                [(key, value, now_ms) for key, value in zip(keys, values, strict=True)],
            )
            (after,) = self._db.execute("SELECT coalesce(max(seq), 0) FROM pending").fetchone()
        # One writer at a time (BEGIN IMMEDIATE) and AUTOINCREMENT: ours are the last len(values) seqs.
        return list(range(after - len(values) + 1, after + 1))

    def oldest(self, limit: int) -> list[OutboxEntry]:
        rows = self._query("SELECT seq, key, value FROM pending ORDER BY seq LIMIT ?", (limit,))
        return [OutboxEntry(int(seq), str(key), bytes(value)) for seq, key, value in rows]

    def has_pending(self) -> bool:
        return bool(self._query("SELECT 1 FROM pending LIMIT 1", ()))

    def remove(self, seqs: Sequence[int]) -> None:
        """Forget records the broker has acknowledged."""
        with self._transaction():
            self._db.executemany("DELETE FROM pending WHERE seq = ?", [(s,) for s in seqs])

    def bury(self, failures: Sequence[tuple[int, str]]) -> None:
        """Move records the broker refused for good, ``(seq, error)``, to the dead table."""
        now_ms = int(time.time() * 1000)
        with self._transaction():
            for seq, error in failures:
                self._db.execute(
                    "INSERT INTO dead SELECT seq, key, value, queued_at_ms, ?, ? FROM pending WHERE seq = ?",
                    (now_ms, error, seq),
                )
                self._db.execute("DELETE FROM pending WHERE seq = ?", (seq,))

    def status(self) -> OutboxStatus:
        ((pending, oldest),) = self._query("SELECT count(*), min(queued_at_ms) FROM pending", ())
        errors: dict[str, int] = dict(
            self._query("SELECT error, count(*) FROM dead GROUP BY error ORDER BY 2 DESC", ())
        )
        return OutboxStatus(self.path, int(pending), oldest, sum(errors.values()), errors)

    def _query(self, sql: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise PublishError(f"cannot read the outbox at {self.path}: {exc}") from exc

    def _transaction(self) -> AbstractContextManager[None]:
        return immediate_transaction(self._db, error=PublishError, what=f"the outbox at {self.path}")
