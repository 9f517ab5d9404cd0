"""One writer of the derived tables at a time: the pipeline and quarantine replays take turns.

Both read silver's and gold's rows, fold them with new events and MERGE the result back. Two of them at
once would each fold from what the other had not yet committed, and Delta's conflict retry re-runs a
MERGE with its source as first computed, so the second commit could put back rows the first had changed.
An exclusive ``flock`` on ``<lake>/_locks/derived.lock`` keeps them apart, between threads of one process
(each holder opens the file itself) and between processes. An object store has no such lock: there the
pipeline stays the lake's only writer of derived tables (docs/exactly-once.md).
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vhlake.errors import LakeError
from vhlake.lake.delta import Lake

_POLL_S = 0.05


class DerivedTablesBusy(LakeError):
    """Another writer (the pipeline, or another replay) holds the derived tables longer than one would wait."""


@contextmanager
def derived_tables_writer(lake: Lake, *, wait_s: float | None = None) -> Iterator[None]:
    """Hold the derived tables' write lock for the block: wait for it as long as it takes (``wait_s``
    None: the pipeline, which must run eventually), or at most ``wait_s`` seconds, then raise
    :class:`DerivedTablesBusy` (a replay asked for over HTTP: the caller is told to retry)."""
    if not lake.is_local:
        yield
        return
    path = Path(lake.uri.removeprefix("file://")).expanduser().resolve() / "_locks" / "derived.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        _acquire(handle.fileno(), wait_s)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _acquire(fd: int, wait_s: float | None) -> None:
    if wait_s is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise DerivedTablesBusy(
                    f"another writer of the derived tables (the pipeline or a replay) is running; "
                    f"waited {wait_s:g} s"
                ) from None
            time.sleep(_POLL_S)
