"""Answers shared across callers: a dashboard opened by 100 people asks the same page 100 times, and
each answer is a function of what it was asked, the caller's row filter and the lake tables it reads.

An entry's key is (the method, its resolved arguments — dates as the clock made them —, the row filter,
the Delta version of every table its statements read). A new commit to any of those tables changes the
key, so an entry never outlives the table version it was computed from: the cache never serves
anything older than a fresh read would. Answers over a window ending *now* (the last hour's jobs) are
kept at most ``max_age`` by the repository's clock besides, and carry the moment they were computed.

Concurrent askers of one key wait for the first one's build (one query per table version, not one per
client). Only successful builds are kept: after a failing one, each waiter tries again in turn.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")

MAX_ENTRIES = 512
"""Answers kept (the least recently used goes first): a dashboard page is ~10, one per route and
period; entries of superseded table versions are never asked again and age out."""


@runtime_checkable
class VersionedTables(Protocol):
    """An engine that can say which version of each table its next read of ``sqls`` sees."""

    def table_versions(self, sqls: Iterable[str]) -> tuple[tuple[str, int], ...]: ...


@dataclass(frozen=True)
class _Entry:
    value: Any
    made_at: datetime  # by the repository's clock


class AnswerCache:
    """Answers by key, shared by every view of one repository (thread-safe)."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._building: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()
        self.builds = 0  # answers computed (misses), for tests and the curious

    def get(
        self,
        key: Hashable,
        build: Callable[[], T],
        *,
        now: Callable[[], datetime],
        max_age: timedelta | None = None,
    ) -> T:
        """The answer under ``key``, built once by the first asker while the others wait for it."""
        with self._lock:
            gate = self._building.setdefault(key, threading.Lock())
        with gate:
            found = self._fresh(key, now(), max_age)
            if found is not None:
                return found.value  # type: ignore[no-any-return]
            made_at = now()
            try:
                value = build()
            except BaseException:
                with self._lock:
                    if key not in self._entries:  # nothing to guard: keep the gates bounded by the entries
                        self._building.pop(key, None)
                raise
            with self._lock:
                self._entries[key] = _Entry(value, made_at)
                self._entries.move_to_end(key)
                while len(self._entries) > self._max_entries:
                    evicted, _ = self._entries.popitem(last=False)
                    self._building.pop(evicted, None)
                self.builds += 1
            return value

    def _fresh(self, key: Hashable, at: datetime, max_age: timedelta | None) -> _Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if max_age is not None and not timedelta(0) <= at - entry.made_at <= max_age:
                return None
            self._entries.move_to_end(key)
            return entry
