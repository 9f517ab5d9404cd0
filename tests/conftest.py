"""Shared fixtures: real Delta lakes in tmp dirs, event factories, a CLI runner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from registry_server import SchemaRegistryServer
from servers import MotoS3, Tansu
from vhlake.ingest.bronze import BronzeIngestor
from vhlake.lake.delta import Lake
from vhlake.lake.tables import BRONZE, GOLD_RESTATEMENTS, REJECTED, SILVER, TableDef

# What each marker of pyproject.toml means, set here once rather than by hand on each test: a test that takes
# one of these fixtures, or lives in one of these files, starts that server (make test-fast leaves them out).
MARKS_BY_FIXTURE = {
    "spark": "spark",
    "broker": "kafka",
    "topic": "kafka",
    "s3_server": "s3",
    "s3": "s3",  # test_lifecycle.py's and test_tiers.py's module-wide moto server
}
MARKS_BY_FILE = {
    "test_spark_cluster.py": ("spark",),
    "test_spark_delta_tables.py": ("spark",),
    "test_spark_files.py": ("spark",),
    "test_spark_jobs.py": ("spark",),
    "test_spark_streaming.py": ("spark",),
    "test_kafka.py": ("kafka",),
    "test_s3_writers.py": ("s3",),
    "test_dashboard.py": ("browser",),
    # The wheel and each extra in clean venvs: Spark, a broker and chromium among them.
    "test_packaging.py": ("spark", "kafka", "browser"),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = {MARKS_BY_FIXTURE[f] for f in getattr(item, "fixturenames", ()) if f in MARKS_BY_FIXTURE}
        names.update(MARKS_BY_FILE.get(item.path.name, ()))
        for name in sorted(names):
            item.add_marker(name)


def make_event(n: int = 1, **overrides: Any) -> dict[str, Any]:
    """A valid wire event (as a dict) with a unique id; override any field."""
    event: dict[str, Any] = {
        "event_id": f"evt-{n}",
        "event_type": "validation_started",
        "timestamp": "2026-11-27T09:00:00-03:00",
        "job_id": f"job-{n}",
        "user_id": "user-1",
        "marketplace": "mercado_livre",
        "category": "eletrônicos",
        "payload": {"ruleset": "ml_v3", "file_size_bytes": 1024},
    }
    event.update(overrides)
    return event


def make_silver_job(
    job_id: str,
    created_at: datetime,
    *,
    marketplace: str = "mercado_livre",
    user_id: str | None = None,
    category: str | None = None,
    status: str = "success",
    error_types: dict[str, int | None] | None = None,
) -> dict[str, Any]:
    """A silver row (the columns the gold transforms read; the others NULL); ``created_date`` is the UTC
    date of ``created_at``, as the fold makes it."""
    return {
        "job_id": job_id,
        "user_id": user_id,
        "marketplace": marketplace,
        "category": category,
        "status": status,
        "error_types": None if error_types is None else list(error_types.items()),
        "created_at": created_at,
        "created_date": created_at.astimezone(UTC).date(),
        "updated_at": created_at,
    }


def silver_table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=SILVER.schema)


def write_lines(path: Path, lines: Iterable[str | bytes | dict[str, Any]]) -> Path:
    """Write lines as given (dicts as compact JSON), each followed by a newline."""
    with path.open("wb") as out:
        for line in lines:
            if isinstance(line, dict):
                line = json.dumps(line, ensure_ascii=False)
            out.write((line.encode() if isinstance(line, str) else line) + b"\n")
    return path


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(str(tmp_path / "lake"))


@pytest.fixture
def ingestor(lake: Lake) -> BronzeIngestor:
    return BronzeIngestor(lake, source_system="validahub", batch_bytes=1 << 20)


def ingest(lake: Lake, path: Path, *, batch_bytes: int = 1 << 20) -> None:
    """Land a file of JSON lines in bronze, as ``vhlake ingest FILE`` does; a small ``batch_bytes`` makes
    several bronze commits of one file."""
    BronzeIngestor(lake, source_system="test", batch_bytes=batch_bytes).ingest_file(path)


def rows(lake: Lake, table: TableDef) -> pa.Table:
    """The table as the lake holds it now; a table not written yet reads as empty, with its contract's
    columns (as the query engines read it)."""
    delta = lake.open(table)
    return table.schema.empty_table() if delta is None else pa.table(delta.to_pyarrow_table())


def version(lake: Lake, table: TableDef) -> int:
    """The table's Delta version; the table must have been written."""
    delta = lake.open(table)
    assert delta is not None, f"{table.name} was never written"
    return int(delta.version())


def ordered_rows(
    table: pa.Table, keys: list[str], *, without: tuple[str, ...] = ("updated_at",)
) -> list[dict[str, Any]]:
    """The rows in key order, without the columns two correct builds of the table may differ in (by
    default when they ran), so that two builds compare with ``==``."""
    table = table.drop_columns([c for c in without if c in table.column_names])
    ordered: list[dict[str, Any]] = table.sort_by([(k, "ascending") for k in keys]).to_pylist()
    return ordered


def read_table(lake: Lake, name: str) -> pa.Table:
    """Bronze or the rejected inputs in the order they were read."""
    return rows(lake, {"bronze": BRONZE, "rejected": REJECTED}[name]).sort_by("source_offset")


def kill_when(
    process: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    *,
    session: bool = False,
    timeout_s: float = 120,
) -> None:
    """SIGKILL ``process`` once ``ready()`` (it must still be running then). With ``session``, kill every
    process of its session too (Spark's JVM and Python workers): start it with ``start_new_session``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not ready():
        assert process.poll() is None, "the process finished before it could be killed: give it more work"
        time.sleep(0.01)
    if session:
        os.killpg(process.pid, signal.SIGKILL)
    else:
        process.send_signal(signal.SIGKILL)
    process.wait()


def kill_after_commits(process: subprocess.Popen[bytes], delta_log: Path, commits: int) -> None:
    """SIGKILL ``process`` once ``delta_log`` holds ``commits`` commits (it must still be running then)."""
    kill_when(process, lambda: len(list(delta_log.glob("*.json"))) >= commits)


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    """Run the real console entry point in-process (``vhlake ARGS``) and capture its output."""
    from vhlake.cli import main

    def run(*args: str) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["vhlake", *args])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Tansu]:
    """A real Kafka-protocol broker (tansu, in memory) on a free port, killed after the test."""
    server = Tansu(tmp_path / "tansu.log").start()
    yield server
    server.stop()


@pytest.fixture
def s3_server() -> Iterator[MotoS3]:
    server = MotoS3()
    yield server
    server.stop()


@pytest.fixture
def topic(broker: Tansu, request: pytest.FixtureRequest) -> str:
    """A fresh 3-partition topic named after the test."""
    return broker.create_topic(f"events-{request.node.name[:40]}".replace("[", "-").replace("]", ""))


def build_analytics_lake(root: Path, *, jobs: int, seed: int) -> Lake:
    """A lake with bronze, silver and gold from a generated feed (the sample's 30 days up to its fixed
    end, 2026-11-27), through the real ingest and pipeline."""
    from vhlake.pipeline.runner import Pipeline
    from vhlake.samples import SampleSpec, generate_lines, write_jsonl

    feed = root / "events.jsonl"
    write_jsonl(generate_lines(SampleSpec(jobs=jobs, seed=seed, bad_event_rate=0.01)), feed)
    lake = Lake(str(root / "lake"))
    ingest(lake, feed)
    Pipeline(lake).run()
    return lake


def engagement_gold(lake: Lake) -> pa.Table:
    """``user_engagement_daily_gold`` as the pipeline wrote it, after checking it equals the pure transform
    over the lake's silver (every pair over all of silver), ``updated_at`` aside."""
    import duckdb

    from vhlake.lake.tables import USER_ENGAGEMENT_GOLD
    from vhlake.pipeline.engagement import first_seen, user_engagement_daily

    silver, written = lake.open(SILVER), lake.open(USER_ENGAGEMENT_GOLD)
    assert silver is not None and written is not None, "the pipeline has not run on this lake"
    jobs = pa.table(silver.to_pyarrow_table())
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        expected = user_engagement_daily(
            con, jobs, first_seen=first_seen(con, jobs), updated_at=datetime.now(UTC)
        )
    rows = pa.table(written.to_pyarrow_table()).select(USER_ENGAGEMENT_GOLD.schema.names)
    order = [("marketplace", "ascending"), ("date", "ascending")]
    assert (
        rows.drop_columns(["updated_at"]).sort_by(order).to_pylist()
        == expected.drop_columns(["updated_at"]).sort_by(order).to_pylist()
    )
    return rows


def restatement(
    group: Mapping[str, Any],
    restated_at: datetime,
    *,
    previous: tuple[int, int],
    now: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """A ``gold_restatements`` row for a gold group (its ``date``, ``marketplace``, ``category``), as the
    pipeline writes one: ``previous`` its (validations, failed) before the change, ``now`` after (by default
    the group's own gold numbers; (0, 0): the group was deleted)."""
    total, failed = now if now is not None else (group["total_validations"], group["failed_validations"])
    previous_total, previous_failed = previous
    day: date = group["date"]
    return {
        "run_id": f"run-{restated_at:%Y%m%dT%H%M}",
        "bronze_version": 1,
        "restated_at": restated_at,
        "date": day,
        "marketplace": group["marketplace"],
        "category": group["category"],
        "first_written_at": restated_at - timedelta(days=1),
        "previous_total_validations": previous_total,
        "new_total_validations": total,
        "previous_error_rate": previous_failed / previous_total,
        "new_error_rate": failed / total if total else None,
        "previous_p95_processing_time": None,
        "new_p95_processing_time": None,
        "events": 1,
        "max_lateness_s": 86_400.0,
        "year": day.year,
        "month": day.month,
    }


def restatements_table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=GOLD_RESTATEMENTS.schema)


RESTATED_AT = (datetime(2026, 11, 28, 3, tzinfo=UTC), datetime(2026, 11, 29, 4, 30, tzinfo=UTC))
"""When the planted restatements were written: two pipeline ranges, after the sample's last day."""


def plant_restatements(
    lake: Lake, marketplace: str, days: tuple[date, date], other: str
) -> list[dict[str, Any]]:
    """Restatements of ``lake``'s gold groups, appended to ``gold_restatements`` as late data would make them:
    on ``days[0]`` the first range changes two categories and the second one of them again (the day's latest
    change is then that category's alone); on ``days[1]`` the first range changes a category and deletes
    another (no gold row left); ``other`` has a restated group on ``days[0]``. Returns the rows written."""
    from vhlake.lake.tables import GOLD

    first, second = RESTATED_AT
    gold = rows(lake, GOLD).to_pylist()

    def groups(market: str, day: date) -> list[dict[str, Any]]:
        found = sorted(
            (g for g in gold if (g["marketplace"], g["date"]) == (market, day)), key=lambda g: g["category"]
        )
        assert found, f"no gold group of {market} on {day} to restate"
        return found

    a, b = groups(marketplace, days[0])[:2]
    c = groups(marketplace, days[1])[0]
    deleted = {"date": days[1], "marketplace": marketplace, "category": "categoria_gone"}
    elsewhere = groups(other, days[0])[0]
    planted = [
        restatement(a, first, previous=counts(a, 3, 2), now=counts(a, 1, 1)),
        restatement(a, second, previous=counts(a, 1, 1)),
        restatement(b, first, previous=counts(b, 2, 0)),
        restatement(c, first, previous=counts(c, 1, 1)),
        # a second later, by the same range (its run_id is of the minute): the day's change is both rows'
        restatement(deleted, first + timedelta(seconds=1), previous=(2, 1), now=(0, 0)),
        restatement(elsewhere, second, previous=counts(elsewhere, 5, 0)),
    ]
    lake.append(GOLD_RESTATEMENTS, restatements_table(planted))
    return planted


def counts(group: Mapping[str, Any], more_validations: int, more_failed: int) -> tuple[int, int]:
    """A gold group's (validations, failed) now, plus some."""
    return group["total_validations"] + more_validations, group["failed_validations"] + more_failed


def restated_days(
    gold: Iterable[Mapping[str, Any]], restatements: Iterable[Mapping[str, Any]], marketplace: str
) -> dict[date, dict[str, Any]]:
    """Per restated day of ``marketplace``, in plain Python from the rows (not the SQL): its latest
    ``restated_at``, and its (validations, failed) before and after the newest pipeline range (``run_id``,
    ``bronze_version``) that restated it, summed over its groups: the groups that range changed at their
    recorded numbers, the others at gold's now."""
    restatements = [r for r in restatements if r["marketplace"] == marketplace]
    now: dict[tuple[date, str], tuple[int, int]] = {
        (g["date"], g["category"]): (g["total_validations"], g["failed_validations"])
        for g in gold
        if g["marketplace"] == marketplace
    }
    ranges: dict[date, dict[tuple[str, int], list[Mapping[str, Any]]]] = {}
    for r in restatements:
        ranges.setdefault(r["date"], {}).setdefault((r["run_id"], r["bronze_version"]), []).append(r)
    days = {}
    for day, of_day in ranges.items():
        changed = max(of_day.values(), key=lambda group: max(r["restated_at"] for r in group))
        before = {(day, r["category"]): _counts(r, "previous") for r in changed}
        after = {(day, r["category"]): _counts(r, "new") for r in changed}
        others = [v for k, v in now.items() if k[0] == day and k not in before]
        days[day] = {
            "restated_at": max(r["restated_at"] for r in changed),
            "previous": tuple(map(sum, zip(*before.values(), *others, strict=True))),
            "new": tuple(map(sum, zip(*after.values(), *others, strict=True))),
        }
    return days


def _counts(row: Mapping[str, Any], when: str) -> tuple[int, int]:
    total = row[f"{when}_total_validations"]
    return total, round((row[f"{when}_error_rate"] or 0.0) * total)


def api_deps_for(lake: Lake, root: Path, *, clock: Callable[[], datetime], audit_every_s: float = 1.0) -> Any:
    """What the HTTP API needs, over ``lake``: the analytics on DuckDB, an embedded log, keys, an audit log,
    a pipeline to replay the quarantine with.
    The analytics' clock is the test's (freshness and default date ranges follow it, not the calendar)."""
    from vhlake.analytics.repository import AnalyticsRepository
    from vhlake.api.app import ApiDeps
    from vhlake.api.audit import AuditLog
    from vhlake.api.keys import KeyStore
    from vhlake.events.embedded_log import EmbeddedEventLog
    from vhlake.events.publisher import EmbeddedLogPublisher
    from vhlake.lake.object_tiers import LocalTiers
    from vhlake.lifecycle.costs import TierPrices, storage_costs
    from vhlake.pipeline.runner import Pipeline
    from vhlake.query.duckdb_engine import DuckDBEngine

    engine = DuckDBEngine(lake)
    return ApiDeps(
        repository=AnalyticsRepository(engine, clock=clock),
        publisher=EmbeddedLogPublisher(EmbeddedEventLog(root / "log.db", topic="validation-events")),
        keys=KeyStore(lake),
        audit=AuditLog(lake, flush_every_s=audit_every_s),
        replay=Pipeline(lake).replay_quarantine,  # the default rules, as the service's pipeline has
        storage_costs=lambda: storage_costs(lake, LocalTiers(), TierPrices()),
    )


_SPARK: list[Any] = []  # the one local Spark session of the test run, started by the first test that needs it


@pytest.fixture
def spark() -> Any:
    """A local Spark session (the spark extra). The CLI's Spark commands stop the session they get, which
    is this one: a stopped session is started again for the next test rather than failing it."""
    pytest.importorskip("pyspark", reason="the spark extra is installed by make and CI")
    from vhlake.spark.session import local_session

    if not _SPARK or _SPARK[0].sparkContext._jsc is None:
        _SPARK[:] = [local_session(app="vhlake-tests")]
    return _SPARK[0]


@pytest.fixture
def schema_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[SchemaRegistryServer]:
    """A Schema Registry (tests/registry_server.py) that the settings name: KAFKA_SCHEMA_REGISTRY_URL."""
    for name in (
        "KAFKA_SCHEMA_REGISTRY_USERNAME",
        "KAFKA_SCHEMA_REGISTRY_PASSWORD",
        "KAFKA_VALIDATION_TOPIC",
    ):
        monkeypatch.delenv(name, raising=False)
    with SchemaRegistryServer() as server:
        monkeypatch.setenv("KAFKA_SCHEMA_REGISTRY_URL", server.url)
        yield server
