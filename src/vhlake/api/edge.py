"""What every HTTP answer gets, whatever route made it: the security headers, a deadline for the request
body (a client that declares a body and never sends it is answered 408 and let go), and a problem
document instead of a plain-text 500 when a route fails."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio
import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vhlake.api.problems import PROBLEM, Problem, problem_body

_LOG = logging.getLogger("vhlake.api")

# Scripts and stylesheets only from this server (the dashboard has no inline script). ECharts positions
# its tooltips with style attributes, hence style-src-attr; <style> elements and injected sheets stay out.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


class EdgeMiddleware:
    """The outermost layer of the app (inside it, routes raise :class:`Problem` for what clients see)."""

    def __init__(self, app: ASGIApp, *, body_timeout_s: float) -> None:
        self._app = app
        self._body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = False

        async def send_secured(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [header for header in SECURITY_HEADERS if header[0] not in present]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self._app(scope, body_deadline(receive, self._body_timeout_s), send_secured)
        except Exception:
            _LOG.exception("%s %s failed", scope["method"], scope["path"][:256])
            if started:  # the answer is under way: nothing else can be said on this connection
                raise
            await _send_server_error(scope, send_secured)


def body_deadline(receive: Receive, timeout_s: float) -> Receive:
    """``receive``, but the request body must have arrived whole within ``timeout_s`` of the first read.

    uvicorn has no body timeout of its own: without this a client that declares ``Content-Length: 100``
    and sends nothing holds its connection (and a worker's await) forever."""
    deadline: float | None = None
    body_done = False

    async def receive_in_time() -> Message:
        nonlocal deadline, body_done
        if body_done:  # what is left are disconnect notices: those may take as long as they take
            return await receive()
        deadline = deadline if deadline is not None else anyio.current_time() + timeout_s
        with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
            message = await receive()
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message
        raise Problem(
            408,
            "request body not received in time",
            f"the whole body must arrive within {timeout_s:g} s",
            headers={"Connection": "close"},
        )

    return receive_in_time


async def _send_server_error(scope: Scope, send: Callable[[Message], Awaitable[None]]) -> None:
    body = orjson.dumps(problem_body(500, "internal server error", scope["path"]))
    headers = [(b"content-type", PROBLEM.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": body})
