"""SQLite files whose commits are on disk before they return: the embedded event log and the outbox.

WAL mode with ``synchronous=FULL`` (a commit is fsync'd), ``BEGIN IMMEDIATE`` transactions (one writer at
a time, so a writer knows the rows it added), and SQLite errors turned into vhlake's own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vhlake.errors import VhlakeError


def open_durable(path: Path, schema: str, *, error: type[VhlakeError], what: str) -> sqlite3.Connection:
    """Open (creating it and its folder if needed) the SQLite file at ``path`` and apply ``schema``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(schema)
    except (sqlite3.Error, OSError) as exc:
        raise error(f"cannot open {what} at {path}: {exc}") from exc
    return db


@contextmanager
def immediate_transaction(db: sqlite3.Connection, *, error: type[VhlakeError], what: str) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error; SQLite errors become ``error``."""
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        raise error(f"cannot write {what}: {exc}") from exc
