"""How long the dashboard waits for its data, on the demo lake.

    python bench/dashboard.py LAKE            # a lake made by `vhlake demo` (200k events by default)

One page load asks /v1/marketplaces, then the busiest marketplace's metrics (30 days) and performance,
the last hour and the data quality. This times the whole set, one request after the other through the
real API app (an upper bound: the page sends the last four at once), over repeated loads, and appends
p50/p95 to bench/RESULTS.md (the target is p95 ≤ 300 ms).
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date, timedelta
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from run import BENCH, machine, report
from vhlake.api.app import ApiDeps, install_api
from vhlake.api.audit import AuditLog
from vhlake.api.keys import KeyStore
from vhlake.events.embedded_log import EmbeddedEventLog
from vhlake.events.publisher import EmbeddedLogPublisher
from vhlake.lake.delta import Lake
from vhlake.query.duckdb_engine import DuckDBEngine
from vhlake.query.repository import AnalyticsRepository


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("lake", type=Path)
    parser.add_argument("--loads", type=int, default=30)
    parser.add_argument("--results", type=Path, default=BENCH / "RESULTS.md")
    args = parser.parse_args()

    lake = Lake(str(args.lake))
    keys = KeyStore(lake)
    _, key = keys.create("admin", description="bench/dashboard.py")
    deps = ApiDeps(
        repository=AnalyticsRepository(DuckDBEngine(lake)),
        publisher=EmbeddedLogPublisher(EmbeddedEventLog(args.lake / "_eventlog" / "bench.db", topic="bench")),
        keys=keys,
        audit=AuditLog(lake),
    )
    app = FastAPI()
    install_api(app, deps)
    client = TestClient(app, headers={"Authorization": f"Bearer {key}"})

    def page() -> float:
        started = time.perf_counter()
        listed = client.get("/v1/marketplaces").json()["data"]
        busiest = listed[0]
        end = date.fromisoformat(busiest["last_date"])
        start = end - timedelta(days=29)
        m = busiest["marketplace"]
        for path, params in (
            (
                f"/v1/marketplaces/{m}/metrics",
                {"start": start.isoformat(), "end": end.isoformat(), "limit": 50_000},
            ),
            (f"/v1/marketplaces/{m}/performance", {"days": 30, "end": end.isoformat()}),
            ("/v1/stats/realtime", {}),
            ("/v1/quality", {}),
        ):
            assert client.get(path, params=params).status_code == 200, path
        return (time.perf_counter() - started) * 1000

    page()  # warm, as a running service is
    times = sorted(page() for _ in range(args.loads))
    deps.audit.close()
    p95 = times[max(0, int(len(times) * 0.95) - 1)]
    lines = [
        f"## {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC · dashboard page data, {args.lake.name}",
        f"- machine: {machine()}; the five requests of one page load, one after the other, {args.loads} loads",
        f"- p50 {statistics.median(times):.0f} ms, p95 {p95:.0f} ms",
    ]
    report(lines, args.results)


if __name__ == "__main__":
    main()
