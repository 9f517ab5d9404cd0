"""Errors as RFC 9457 problem details (``application/problem+json``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from vhlake.errors import LakeError

PROBLEM = "application/problem+json"
MAX_INSTANCE_CHARS = 256  # a problem names its path, but never echoes an arbitrarily long one


class Problem(Exception):
    """An error the client should see: ``extensions`` are extra members of the document (RFC 9457 §3.2)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail = status, title, detail
        self.headers, self.extensions = dict(headers or {}), dict(extensions or {})


def problem_body(status: int, title: str, path: str, detail: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "instance": path[:MAX_INSTANCE_CHARS],
    }
    if detail is not None:
        body["detail"] = detail
    return body


# What a 503 tells a client: the lake or the analytics failed for now; try again in a few seconds.
RETRY_AFTER = {"Retry-After": "5"}


def problem_response(
    request: Request,
    status: int,
    title: str,
    detail: Any = None,
    *,
    headers: Mapping[str, str] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> JSONResponse:
    if getattr(request.state, "outcome", None) is None:  # a route may have said more precisely
        request.state.outcome = title  # what the audit log records
    body = problem_body(status, title, request.url.path, detail) | dict(extensions or {})
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            request, exc.status, exc.title, exc.detail, headers=exc.headers, extensions=exc.extensions
        )

    @app.exception_handler(LakeError)
    async def _lake_unavailable(request: Request, exc: LakeError) -> JSONResponse:
        # The lake's store failed (an object store refusing requests, a disk error) where a route or its
        # key check reads a table: the request may succeed once the store is back, so 503 and when to
        # retry, never a 500 that reads as a bug.
        return problem_response(request, 503, "lake unavailable", str(exc), headers=RETRY_AFTER)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return problem_response(request, exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()
        ]
        return problem_response(request, 422, "invalid request", errors)
