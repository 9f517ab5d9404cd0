"""The dashboard's page data under load: ``python bench/dashboard.py LAKE --clients 100 --seconds 60``.

The load model: N people with the dashboard open, each with their own API key (each key has its own
rate, as each person would). A person loads a view as the page does (the marketplace list, then the
view's requests and the side tables at once, ``VIEWS`` in bench/dashboard.py), looks at it for a think
time drawn uniformly from [0.5, 1.5] x ``--think`` seconds, then loads the other view (overview and
marketplace in turn; half the people start on each, at a random moment of their first think time).
The default, 10 s (5-15 s), is a person clicking to another view every ten seconds or so: more than
people reading a dashboard do, and more than the page's own refresh (the last hour and the alerts, 2
requests every 15 s), which it stands in for. With ``--think 1`` (or 0: back to back) it measures what
the server can take at most, not 100 people.

The server is the real HTTP app (:func:`vhlake.http_app.create_app`: the API and the dashboard, what
``vhlake serve`` serves, without the pipeline's loop) under uvicorn in a child process. The clients are
one asyncio process (a minimal HTTP/1.1 client, up to six connections per person as a browser): its CPU
is measured and reported beside the server's, as both share the machine's cores.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psutil

Request = tuple[str, dict[str, Any]]
View = Callable[[list[dict[str, Any]]], list[Request]]
WARM_LOADS = 2  # page loads of each view, one after the other, before the clock starts


@dataclass
class Tally:
    """What the clients saw: each request's time per route, page loads, and the failures by status."""

    per_route: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    pages: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter[str] = field(default_factory=Counter)

    def all_requests(self) -> list[float]:
        return [ms for times in self.per_route.values() for ms in times]


def route_of(path: str) -> str:
    return re.sub(r"^/v1/marketplaces/[^/]+/", "/v1/marketplaces/{m}/", path)


def percentile(times: list[float], q: float) -> float:
    """The nearest-rank percentile: the smallest time at least ``q`` of the times are at or under."""
    ordered = sorted(times)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def spread(times: list[float]) -> str:
    if not times:
        return "no answer"
    p50, p95, p99 = (percentile(times, q) for q in (0.5, 0.95, 0.99))
    return f"p50 {p50:.0f} ms, p95 {p95:.0f} ms, p99 {p99:.0f} ms ({len(times):,})"


class Browser:
    """One person's browser: HTTP/1.1 keep-alive connections to the server, at most ``MAX_CONNECTIONS`` at
    once as a browser opens per host, each request with the person's key.

    A minimal client on asyncio streams, for a reason: httpx2 cost about as much CPU per request as the
    server itself, and the load generator shares the machine's two cores with the server it measures.
    It reads what uvicorn sends: a status line, headers and a ``content-length`` body."""

    MAX_CONNECTIONS = 6
    IDLE_S = 4.0  # a connection idle longer is closed, as uvicorn closes it after 5 s (timeout_keep_alive)

    def __init__(self, port: int, key: str) -> None:
        self._port = port
        self._headers = f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n\r\n".encode()
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self._slots = asyncio.Semaphore(self.MAX_CONNECTIONS)

    async def get(self, path: str, params: dict[str, Any]) -> tuple[int, bytes]:
        target = f"{path}?{urlencode(params)}" if params else path
        async with self._slots:
            reader, writer = await self._connection()
            try:
                writer.write(f"GET {target} HTTP/1.1\r\n".encode() + self._headers)
                status = int((await reader.readuntil(b"\r\n")).split(b" ", 2)[1])
                length, closes = 0, False
                while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                    elif name.lower() == b"connection":
                        closes = value.strip().lower() == b"close"
                body = await reader.readexactly(length)
            except BaseException:
                writer.close()
                raise
            if closes:
                writer.close()
            else:
                self._idle.append((reader, writer, time.monotonic()))
            return status, body

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The most recently used connection the server keeps open still, else a new one."""
        while self._idle:
            reader, writer, since = self._idle.pop()
            if time.monotonic() - since < self.IDLE_S:
                return reader, writer
            writer.close()
        return await asyncio.open_connection("127.0.0.1", self._port)

    def close(self) -> None:
        for _, writer, _ in self._idle:
            writer.close()
        self._idle.clear()


async def _get(browser: Browser, request: Request, tally: Tally | None) -> Any:
    """One request; its time and status go to ``tally`` (None: warming up). An error answer is tallied
    by status, a failed connection as ``connection (...)``; neither stops the person."""
    path, params = request
    started = time.perf_counter()
    try:
        status, body = await browser.get(path, params)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        if tally is not None:
            tally.statuses[f"connection ({type(exc).__name__})"] += 1
        return None
    elapsed = (time.perf_counter() - started) * 1000
    if tally is not None:
        tally.statuses[str(status)] += 1
        tally.per_route[route_of(path)].append(elapsed)
    return json.loads(body) if status == 200 else None


async def load_page(client: Browser, view: View, tally: Tally | None) -> bool:
    """The page's data as the browser asks it: the list, then the rest at once. False when the list
    failed (the page cannot ask the rest)."""
    listed = await _get(client, ("/v1/marketplaces", {}), tally)
    if listed is None or not listed["data"]:
        return False
    await asyncio.gather(*(_get(client, request, tally) for request in view(listed["data"])))
    return True


async def person(
    client: Browser,
    views: list[tuple[str, View]],
    first: int,
    think_s: float,
    until: float,
    tally: Tally,
    rng: random.Random,
) -> None:
    """One person with the dashboard open until ``until``: a view, a think time, the next view. The
    first load comes after a random part of a think time, so the people are already spread over it as
    they are in a steady state (not 100 page loads in the same instant)."""
    await asyncio.sleep(rng.uniform(0, think_s))
    turn = first
    while time.monotonic() < until:
        name, view = views[turn % len(views)]
        started = time.perf_counter()
        if await load_page(client, view, tally):
            tally.pages[name].append((time.perf_counter() - started) * 1000)
        turn += 1
        await asyncio.sleep(rng.uniform(0.5 * think_s, 1.5 * think_s))


async def run_clients(
    port: int, keys: list[str], views: list[tuple[str, View]], seconds: float, think_s: float
) -> Tally:
    """``len(keys)`` people for ``seconds``."""
    tally = Tally()
    browsers = [Browser(port, key) for key in keys]
    try:
        until = time.monotonic() + seconds
        await asyncio.gather(
            *(
                person(browser, views, i, think_s, until, tally, random.Random(i))
                for i, browser in enumerate(browsers)
            )
        )
    finally:
        for browser in browsers:
            browser.close()
    return tally


async def warm(port: int, key: str, views: list[tuple[str, View]]) -> None:
    """Each view loaded ``WARM_LOADS`` times, untimed, as a running service has been."""
    browser = Browser(port, key)
    try:
        for _, view in views:
            for _ in range(WARM_LOADS):
                await load_page(browser, view, None)
    finally:
        browser.close()


@dataclass
class Server:
    """The HTTP app over ``lake`` under uvicorn in a child process (``dashboard.py --serve-on PORT``)."""

    lake: Path
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, script: Path, timeout_s: float = 60.0) -> Server:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(script), str(self.lake), "--serve-on", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "VHLAKE_LAKE_URI": str(self.lake)},
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}: see {self.log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/openapi.json", timeout=1.0):
                    return self
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"the server did not answer within {timeout_s} s: see {self.log}")

    def cpu_s(self) -> float:
        assert self.process is not None
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)

    def stop(self) -> None:
        """SIGTERM, as a deployment stops it: uvicorn finishes and the audit log is flushed."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def serve(lake: Path, port: int) -> None:
    """The child's side: the app ``vhlake serve`` serves (API and dashboard), without the pipeline."""
    import uvicorn

    from vhlake.http_app import create_app
    from vhlake.settings import Settings

    app, deps = create_app(Settings())
    try:
        uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    finally:
        deps.audit.close()
        deps.publisher.close()


def report_lines(
    tally: Tally,
    *,
    clients: int,
    seconds: float,
    think_s: float,
    cpu: dict[str, float],
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> list[str]:
    """The load run's section of bench/RESULTS.md."""
    requests = tally.all_requests()
    server_errors = sum(n for status, n in tally.statuses.items() if status.startswith("5"))
    failures = {status: n for status, n in tally.statuses.items() if status != "200"}
    cores = os.cpu_count() or 1
    return [
        f"- load: {clients} clients for {seconds:.0f} s, think time {think_s:g} s (uniform 0.5-1.5x) "
        f"between page loads, overview and marketplace in turn, one key each",
        f"- all requests: {spread(requests)}; {len(requests) / seconds:.0f} requests/s; "
        f"{sum(len(p) for p in tally.pages.values()) / seconds:.1f} page loads/s",
        "- page loads (the list, then the rest at once): "
        + "; ".join(f"{name} {spread(times)}" for name, times in tally.pages.items()),
        "- per route: "
        + "; ".join(f"{route} {spread(times)}" for route, times in sorted(tally.per_route.items())),
        f"- errors: {server_errors} 5xx; "
        + (", ".join(f"{status}: {n}" for status, n in sorted(failures.items())) or "none other than 200"),
        f"- CPU over the run ({cores} cores = {cores * seconds:.0f} CPU-s): server {cpu['server']:.1f} CPU-s, "
        f"load generator {cpu['clients']:.1f} CPU-s",
        f"- load average (1/5/15 min) before {' / '.join(f'{x:.2f}' for x in load_before)}, "
        f"after {' / '.join(f'{x:.2f}' for x in load_after)}",
    ]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
