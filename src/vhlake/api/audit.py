"""Every API request, audited to ``audit_log``: the key id presented (even a revoked or unknown one), the
method, the route, the status, and as JSON ``details`` the client's address, the outcome and the
marketplace asked for. Every value is bounded: a request cannot write an arbitrarily long row.

Rows are buffered and appended once a second (a Delta commit per request would cost more than most
requests); ``close`` flushes what is left, so only a hard kill can lose the last second.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import pyarrow as pa
from starlette.datastructures import QueryParams
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vhlake.lake.delta import Lake
from vhlake.lake.tables import AUDIT_LOG

_LOG = logging.getLogger("vhlake.audit")
MAX_ROUTE_CHARS = 256  # an unmatched path is kept only this long
MAX_DETAIL_CHARS = 128  # each value in details


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

    def record(
        self,
        *,
        key_id: str | None,
        method: str,
        route: str,
        status: int,
        details: Mapping[str, str] | None = None,
    ) -> None:
        now = datetime.now(UTC)
        row = {
            "at": now,
            "key_id": key_id[:MAX_DETAIL_CHARS] if key_id else key_id,
            "method": method[:16],
            "route": route[:MAX_ROUTE_CHARS],
            "status": status,
            "audit_date": now.date(),
            "details": json.dumps({k: v[:MAX_DETAIL_CHARS] for k, v in details.items()}) if details else None,
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


class AuditMiddleware:
    """Audits each request under ``prefix`` once it is answered, a route's crash (500) included.

    Routes leave what they learn in the request state: ``key_id`` (the id the presented key names) and
    ``outcome`` (why it was refused); the route template, path parameters and status come from the scope."""

    def __init__(self, app: ASGIApp, *, audit: AuditLog, prefix: str = "/v1/") -> None:
        self._app, self._audit, self._prefix = app, audit, prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self._prefix):
            await self._app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        status = 500  # unless a response starts: a route that raised is answered 500 further out

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_noting_status)
        finally:
            route = scope.get("route")
            self._audit.record(
                key_id=state.get("key_id"),
                method=scope["method"],
                route=getattr(route, "path", None) or scope["path"],
                status=status,
                details=_details(scope, state, status),
            )


def _details(scope: Scope, state: Mapping[str, Any], status: int) -> dict[str, str]:
    client = scope.get("client")
    outcome = state.get("outcome") or ("ok" if status < 400 else _phrase(status))
    details = {"client": str(client[0]) if client else "unknown", "outcome": str(outcome)}
    marketplace = scope.get("path_params", {}).get("marketplace") or QueryParams(
        scope.get("query_string", b"")
    ).get("marketplace")
    if marketplace:
        details["marketplace"] = str(marketplace)
    return details


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return str(status)
