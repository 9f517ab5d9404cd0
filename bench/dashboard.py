"""How long the dashboard waits for its data, on the demo lake.

    python bench/dashboard.py LAKE            # a lake made by `vhlake demo` (200k events by default)

What the page asks (src/vhlake/dashboard/static/app.js): start() lists /v1/marketplaces, then sends at once
the view's data (route()) and the side tables (last hour, data quality, alerts). Two views are timed:

- the landing page, the Overview: showOverview() asks /v1/overview for the last 7 days;
- the busiest marketplace's view, 30 days to its last day: showMarketplace() asks its metrics and
  performance, showErrorTypes() its error types (/v1/marketplaces/{m}/errors, top 5), showEngagement()
  its engagement (/v1/marketplaces/{m}/engagement) and fetchPredictions() the forecast and anomalies over
  its charts (/v1/marketplaces/{m}/predictions, 7 days ahead: the period ends on the marketplace's last day).

Each load is timed twice through the real API app: one request after the other (an upper bound) and as
the page sends them (the list first, then the rest on parallel threads: what the browser waits for). Over
repeated loads this appends p50/p95 of both, each request's own p50/p95 (to see which one is slow) and the
machine's load average to bench/RESULTS.md (the target is p95 ≤ 300 ms).

    python bench/dashboard.py LAKE --clients 100 --seconds 60 [--think 10]

is the load mode (bench/load.py): that many people with the dashboard open at once against the real HTTP
app under uvicorn in another process, each loading the overview and the marketplace view in turn with a
think time of 0.5-1.5x ``--think`` seconds between loads (default 10 s: a person switching view every
5-15 s; 1 or 0, back to back, measures the server's most, not people). It appends p50/p95/p99 per
route and overall, requests/s, the errors by status and the CPU of the server and of the load generator
to bench/RESULTS.md (the target is p99 ≤ 300 ms and no 5xx).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psutil
from fastapi import FastAPI
from fastapi.testclient import TestClient

import load
from run import BENCH, machine, report
from vhlake.analytics.repository import AnalyticsRepository
from vhlake.api.app import ApiDeps, install_api
from vhlake.api.audit import AuditLog
from vhlake.api.keys import KeyStore
from vhlake.events.embedded_log import EmbeddedEventLog
from vhlake.events.publisher import EmbeddedLogPublisher
from vhlake.lake.delta import Lake
from vhlake.query.duckdb_engine import DuckDBEngine

Request = tuple[str, dict[str, Any]]  # a path and its query
SIDE_TABLES: list[Request] = [("/v1/stats/realtime", {}), ("/v1/quality", {}), ("/v1/alerts", {})]


def overview_requests(listed: list[dict[str, Any]]) -> list[Request]:
    """The landing page's requests after the list: the Overview's default 7 days ending today."""
    return [("/v1/overview", {"days": 7}), *SIDE_TABLES]


def marketplace_requests(listed: list[dict[str, Any]]) -> list[Request]:
    """The marketplace view's requests after the list: the busiest marketplace, the 30 days up to its last
    day, as pickDates() chooses them."""
    m = listed[0]["marketplace"]
    end = date.fromisoformat(listed[0]["last_date"])
    start = end - timedelta(days=29)
    window = {"days": 30, "end": end.isoformat()}
    return [
        (
            f"/v1/marketplaces/{m}/metrics",
            {"start": start.isoformat(), "end": end.isoformat(), "limit": 50_000},
        ),
        (f"/v1/marketplaces/{m}/performance", window),
        (f"/v1/marketplaces/{m}/errors", {**window, "top": 5}),
        (f"/v1/marketplaces/{m}/engagement", window),
        (f"/v1/marketplaces/{m}/predictions", {**window, "horizon": 7}),
        *SIDE_TABLES,
    ]


VIEWS: dict[str, Callable[[list[dict[str, Any]]], list[Request]]] = {
    "overview (landing)": overview_requests,
    "marketplace": marketplace_requests,
}


class Timer:
    """Sends a view's requests and keeps each one's time in ms under a name without the marketplace."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.per_request: dict[str, list[float]] = defaultdict(list)

    def get(self, request: Request) -> Any:
        path, params = request
        started = time.perf_counter()
        answer = self.client.get(path, params=params)
        self.per_request[re.sub(r"^/v1/marketplaces/[^/]+/", "/v1/marketplaces/{m}/", path)].append(
            (time.perf_counter() - started) * 1000
        )
        assert answer.status_code == 200, (path, answer.text)
        return answer.json()

    def load(
        self, view: Callable[[list[dict[str, Any]]], list[Request]], pool: ThreadPoolExecutor | None
    ) -> float:
        """One page load in ms: the list, then the view's requests one by one, or all at once on ``pool``."""
        started = time.perf_counter()
        listed = self.get(("/v1/marketplaces", {}))["data"]
        requests = view(listed)
        if pool is None:
            for request in requests:
                self.get(request)
        else:
            list(pool.map(self.get, requests))
        return (time.perf_counter() - started) * 1000


def p95(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[max(0, int(len(ordered) * 0.95) - 1)]


def spread(times: list[float]) -> str:
    return f"p50 {statistics.median(times):.0f} ms, p95 {p95(times):.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("lake", type=Path)
    parser.add_argument("--loads", type=int, default=30)
    parser.add_argument("--results", type=Path, default=BENCH / "RESULTS.md")
    parser.add_argument("--clients", type=int, help="load mode: this many people at once")
    parser.add_argument("--seconds", type=float, default=60.0, help="load mode: for this long")
    parser.add_argument(
        "--think",
        type=float,
        default=10.0,
        help="load mode: mean seconds between a person's page loads (0.5-1.5x; 10: a person switching "
        "view every 5-15 s; 0: back to back, the server's most)",
    )
    parser.add_argument("--serve-on", type=int, help=argparse.SUPPRESS)  # the load mode's server process
    args = parser.parse_args()
    if args.serve_on is not None:
        load.serve(args.lake, args.serve_on)
    elif args.clients is not None:
        under_load(args.lake, args.clients, args.seconds, args.think, args.results)
    else:
        one_client(args.lake, args.loads, args.results)


def one_client(lake_path: Path, loads: int, results: Path) -> None:
    """Each view's loads timed one by one and as the page sends them, through the app in this process."""
    lake = Lake(str(lake_path))
    keys = KeyStore(lake)
    _, key = keys.create("admin", description="bench/dashboard.py")
    deps = ApiDeps(
        repository=AnalyticsRepository(DuckDBEngine(lake)),
        publisher=EmbeddedLogPublisher(EmbeddedEventLog(lake_path / "_eventlog" / "bench.db", topic="bench")),
        keys=keys,
        audit=AuditLog(lake),
    )
    app = FastAPI()
    install_api(app, deps)
    client = TestClient(app, headers={"Authorization": f"Bearer {key}"})
    load_before = os.getloadavg()
    lines = [
        f"## {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC · dashboard page data, {lake_path.name}",
        f"- machine: {machine()}; {loads} loads of each view, after one to warm up",
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for name, view in VIEWS.items():
            warm = Timer(client)
            warm.load(view, None)  # warm, as a running service is
            sequential, parallel = Timer(client), Timer(client)
            one_by_one = [sequential.load(view, None) for _ in range(loads)]
            at_once = [parallel.load(view, pool) for _ in range(loads)]
            lines += [
                f"- {name}, {len(sequential.per_request)} requests: "
                f"as the page sends them {spread(at_once)}; one after the other {spread(one_by_one)}",
                "  - each request, one after the other: "
                + "; ".join(f"{path} {spread(times)}" for path, times in sequential.per_request.items()),
            ]
    deps.audit.close()
    load_after = os.getloadavg()
    lines.append(
        f"- load average (1/5/15 min) before {' / '.join(f'{x:.2f}' for x in load_before)}, "
        f"after {' / '.join(f'{x:.2f}' for x in load_after)}"
    )
    report(lines, results)


def under_load(lake_path: Path, clients: int, seconds: float, think_s: float, results: Path) -> None:
    """``clients`` people on the dashboard for ``seconds`` against a server in another process."""
    store = KeyStore(Lake(str(lake_path)))
    keys = [
        store.create("read", description=f"bench/dashboard.py load client {i}")[1] for i in range(clients)
    ]
    server = load.Server(lake_path, load.free_port(), lake_path.parent / "bench-server.log").start(
        Path(__file__)
    )
    views = list(VIEWS.items())
    try:
        asyncio.run(load.warm(server.port, keys[0], views))
        load_before, me = os.getloadavg(), psutil.Process()
        cpu_before = (server.cpu_s(), _cpu_s(me))
        tally = asyncio.run(load.run_clients(server.port, keys, views, seconds, think_s))
        cpu_after = (server.cpu_s(), _cpu_s(me))
        load_after = os.getloadavg()
    finally:
        server.stop()
    spent = {
        name: after - before
        for name, before, after in zip(("server", "clients"), cpu_before, cpu_after, strict=True)
    }
    lines = [
        f"## {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC · dashboard page data under load, "
        f"{lake_path.name}",
        f"- machine: {machine()}; server: the HTTP app under uvicorn (one process), bench/load.py",
        *load.report_lines(
            tally,
            clients=clients,
            seconds=seconds,
            think_s=think_s,
            cpu=spent,
            load_before=load_before,
            load_after=load_after,
        ),
    ]
    report(lines, results)


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


if __name__ == "__main__":
    main()
