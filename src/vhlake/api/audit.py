"""Every API request, audited to ``audit_log`` (key id, method, route, status).

Rows are buffered and appended once a second (a Delta commit per request would cost more than most
requests); ``close`` flushes what is left, so only a hard kill can lose the last second.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from vhlake.lake.delta import Lake
from vhlake.lake.tables import AUDIT_LOG

_LOG = logging.getLogger("vhlake.audit")


class AuditLog:
    def __init__(self, lake: Lake, *, flush_every_s: float = 1.0) -> None:
        self._lake = lake
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._flusher = threading.Thread(
            target=self._flush_loop, args=(flush_every_s,), name="vhlake-audit", daemon=True
        )
        self._flusher.start()

    def record(self, *, key_id: str | None, method: str, route: str, status: int) -> None:
        now = datetime.now(UTC)
        row = {
            "at": now,
            "key_id": key_id,
            "method": method,
            "route": route,
            "status": status,
            "audit_date": now.date(),
        }
        with self._lock:
            self._rows.append(row)

    def flush(self) -> int:
        with self._lock:
            rows, self._rows = self._rows, []
        if rows:
            self._lake.append(AUDIT_LOG, pa.Table.from_pylist(rows, schema=AUDIT_LOG.schema))
        return len(rows)

    def close(self) -> None:
        self._closed.set()
        self._flusher.join(timeout=5)
        self.flush()

    def _flush_loop(self, every_s: float) -> None:
        while not self._closed.wait(every_s):
            try:
                self.flush()
            except Exception:  # the lake is briefly unwritable: keep serving, retry next second
                _LOG.exception("audit rows not written yet")
