"""Soak: `vhlake serve` for a long while under a steady stream, with faults injected on a schedule.

    python bench/soak.py                                  # 30 minutes at 2,000 events/s
    python bench/soak.py --minutes 2 --rate 300 --json /tmp/soak.json

What runs (every piece a separate process, as in production):
- a Kafka-protocol broker (tansu, its topics kept in S3 on a moto server of its own, so a restart loses
  nothing);
- moto's S3 server holding the lake (s3://soak/lake), reached by the service through a TCP fault proxy
  (bench/faultproxy.py) that can refuse connections;
- the service, `vhlake serve` on that lake with VHLAKE_EVENT_LOG=kafka and a canary every second;
- a second, small service on a local lake kept in a tmpfs this script mounts (root needed), fed through
  an embedded log outside the tmpfs: the disk that fills up is the lake's own;
- a producer process publishing live jobs (a started and a completed event each) at --rate through
  vhlake's KafkaEventPublisher with its local outbox, plus --rate/40 events/s to the small service;
- API clients in this process reading the dashboard's routes at --api-rate requests/s.

The faults, at fixed fractions of the run (so a 2-minute run injects each once; a run of 10 minutes or
more kills the service twice), each --outage seconds long where it has a length:
- broker:  tansu SIGKILLed, restarted after the outage; producers keep publishing into the outbox;
- kill:    the service SIGKILLed and started again at once;
- s3:      the proxy resets every connection to the object store for the outage; no restart;
- disk:    the small service's tmpfs filled to the last byte for the outage, then freed.
A fault is detected when the service said so (/readyz not ready, a failing step, a process gone) and
recovered when, at most --recovery-bound seconds (60) after the fault ended, /readyz answers 200 and the
lake moves again: events reached bronze and the pipeline folded jobs into gold since the fault's end
(``recovery_s``, less the time the same service spent in a later fault meanwhile: the kill's restart
is ten seconds before the S3 outage; ``recovery_wall_s`` counts it). Each fault also reports ``fresh_again_s``: when a new batch's p95 freshness (event
timestamp → visible in gold) got under --freshness-bound (20 s), and ``freshness_p95_at_recovery_s``.
Why recovery is not judged on freshness (measured on a 2-core machine, --minutes 2 --rate 300
--api-rate 20): before the first fault a batch's p95 freshness is ~5 s; but the kill and the S3 outage
leave 17-21k events waiting in the broker, and the ingest reads the broker (tansu, its log on moto) at
little more than the producer's 300-350 events/s (82 % of the ingest thread waits in consume with that
backlog), so it drains over minutes and every batch meanwhile carries events 80-120 s old, long after
the service works again: the freshness bound would measure the emulated broker's fetch speed here, not
the recovery. It stays in the report for a real deployment. (The lake's own costs, which did make
recovery slow, were fixed: a pipeline batch took ~10 s and a compaction round 15-26 s on moto, now
~2.5 s and ~4 s.)

At the end the producer drains its outbox and the script waits (at most --drain-timeout) until gold counts
every published job in both lakes and every fault has recovered, polling gold only (small; re-reading
bronze would load the very store that is catching up); then it checks that every published event is in
bronze exactly once and writes the JSON (--json; keys: published, in_bronze, duplicates, lost, gold_jobs,
catch_up {caught_up_s: producer's end to gold complete, waited_s}, rss_mb_*, rss_slope_mb_per_h,
freshness_p95_s, api_p99_ms, api_statuses, api_errors_5xx (all) and api_errors_5xx_outside_faults (the
5xx outside every window from a fault's start to --fault-grace after its end: a 503 with Retry-After while
the store refuses is the API saying so), store_requests (what the lake asked of moto), tables at start
and end, one entry per fault) and a PNG of RSS, freshness and lag over time (--png, default
bench/soak.png). Exit status 1 when an event was lost or duplicated, gold missed a job, a fault did not
recover or the API answered 5xx outside the faults.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))  # servers.py: how the tests start tansu and moto

from faultproxy import FaultProxy  # noqa: E402
from servers import MotoS3, Tansu, free_port  # noqa: E402

TOPIC = "validation-events"
BUCKET = "soak"
MAIN_PREFIX, DISK_PREFIX = "soak", "disk"
_MARKETPLACES = ("mercado_livre", "shopee", "amazon_br")
_TICK_S = 0.1


# -- the producer process ------------------------------------------------------------------------------


def live_jobs(prefix: str, first: int, count: int) -> list[Any]:
    """Jobs happening now, two events each, with ids the checker can recompute from the job count."""
    from vhlake.events.model import ValidationEvent, ValidationPayload

    now = datetime.now(UTC)
    return [
        ValidationEvent(
            event_id=f"{prefix}-{n}-{kind}",
            event_type=kind,
            timestamp=now,
            job_id=f"{prefix}-{n}",
            user_id=f"user-{n % 97}",
            marketplace=_MARKETPLACES[n % 3],
            category=f"categoria_{n % 50:02d}",
            payload=ValidationPayload(total_rows=100 + n % 900, processing_time_ms=200 + n % 5000),
        )
        for n in range(first, first + count)
        for kind in ("validation_started", "validation_completed")
    ]


def produce(args: argparse.Namespace) -> None:
    """Publish for ``--seconds``, then drain the outbox; write counts to ``--result``. A batch whose send
    raises (the outbox itself failing) is retried: the producer never skips a job."""
    from vhlake.events.embedded_log import EmbeddedEventLog
    from vhlake.events.kafka_publisher import KafkaEventPublisher, KafkaProducerOptions
    from vhlake.events.outbox import Outbox
    from vhlake.events.publisher import EmbeddedLogPublisher

    kafka = KafkaEventPublisher(
        {"bootstrap.servers": args.bootstrap},
        topic=TOPIC,
        outbox=Outbox(Path(args.outbox)),
        options=KafkaProducerOptions(delivery_timeout_s=5, outbox_retry_s=1),
    )
    disk = EmbeddedLogPublisher(EmbeddedEventLog(Path(args.disk_log), topic=TOPIC))
    counts = {"delivered": 0, "outboxed": 0, "failed": 0}
    failed_ids: list[str] = []
    jobs_per_tick = max(1, round(args.rate * _TICK_S / 2))
    disk_every = max(1, round(40 * 2 * jobs_per_tick / max(args.rate, 1)))  # ticks per small-service job
    job = disk_job = tick = 0
    started = last_progress = time.monotonic()
    progress = Path(args.progress)
    while time.monotonic() - started < args.seconds:
        owed = int((time.monotonic() - started) * args.rate / 2) - job  # behind after a stall: catch up
        batch = min(max(jobs_per_tick, owed), 5 * args.rate)
        for delivery in _sent(kafka.send_batch, live_jobs(MAIN_PREFIX, job, batch)):
            counts[delivery.status] += 1
            if delivery.status == "failed":
                failed_ids.append(delivery.event_id)
        job += batch
        if tick % disk_every == 0:
            _sent(disk.send_batch, live_jobs(DISK_PREFIX, disk_job, 1))
            disk_job += 1
        tick += 1
        if time.monotonic() - last_progress >= 1:
            last_progress = time.monotonic()
            status = kafka.outbox_status()
            _write_json(progress, {"jobs": job, "outbox_pending": status.pending if status else 0})
        time.sleep(max(0.0, tick * _TICK_S - (time.monotonic() - started)))
    deadline = time.monotonic() + args.drain_timeout
    while (status := kafka.outbox_status()) is not None and status.pending and time.monotonic() < deadline:
        kafka.drain_outbox()
        _write_json(progress, {"jobs": job, "outbox_pending": status.pending})
        time.sleep(1)
    status = kafka.outbox_status()
    kafka.close()
    disk.close()
    result = {
        "jobs": job,
        "disk_jobs": disk_job,
        **counts,
        "failed_ids": failed_ids,
        "outbox_left": status.pending if status else 0,
        "outbox_dead": status.dead if status else 0,
    }
    _write_json(progress, {"jobs": job, "outbox_pending": result["outbox_left"]})
    _write_json(Path(args.result), result)


def _sent(send: Callable[[list[Any]], list[Any]], events: list[Any]) -> list[Any]:
    while True:
        try:
            return send(events)
        except Exception as exc:  # the outbox or the log file refused: say so and try again
            print(f"producer: send failed, retrying: {exc}", file=sys.stderr, flush=True)
            time.sleep(1)


def _write_json(path: Path, value: Any) -> None:
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(value))
    partial.replace(path)


# -- the services --------------------------------------------------------------------------------------


class Service:
    """One `vhlake serve` on a fixed port, SIGKILLed and started again at the same address."""

    def __init__(self, name: str, lake: str, env: dict[str, str], log: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._command = [sys.executable, "-m", "vhlake", "--lake", lake, "serve", "--port", str(self.port)]
        self._command += ["--canary-every", "1", "--maintenance-every", "20"]
        self._env = env
        self._log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.instance = 0  # bumps on every start: metrics reset with the process

    def start(self) -> None:
        with self._log.open("ab") as log:
            self.process = subprocess.Popen(
                self._command, stdout=log, stderr=subprocess.STDOUT, env=self._env
            )
        self.instance += 1
        deadline = time.monotonic() + 120
        while get(self.url + "/healthz")[0] != 200:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start: see {self._log}")
            time.sleep(0.2)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.kill()

    def rss_mb(self) -> float | None:
        if self.process is None or self.process.poll() is not None:
            return None
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return None


def get(url: str, *, timeout: float = 5.0, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """(status, body); status 0 when nothing answered in time."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


# -- watching ------------------------------------------------------------------------------------------


@dataclass
class Sample:
    t: float
    service: str
    instance: int
    ready: int  # /readyz status (0: no answer)
    problems: str
    freshness_p95: float | None
    batches: float  # pipeline batches that reported freshness, this process
    ingested: float  # events written to bronze, this process
    folded: float  # jobs the pipeline folded into silver and gold, this process
    failures: float
    lag: float
    outbox: float
    rss_mb: float | None


def sample(service: Service, t: float, outbox: float) -> Sample:
    from prometheus_client.parser import text_string_to_metric_families

    status, body = get(service.url + "/readyz", timeout=3)
    problems = ""
    with contextlib.suppress(ValueError):
        answer = json.loads(body)
        problems = "; ".join(f"{k}: {v}" for k, v in answer.get("problems", {}).items())
    values: dict[str, float] = {}
    _, text = get(service.url + "/metrics", timeout=3)
    with contextlib.suppress(ValueError):
        for family in text_string_to_metric_families(text.decode()):
            for s in family.samples:
                key = s.name + ("" if s.name != "vhlake_freshness_seconds" else f"@{s.labels['quantile']}")
                values[key] = values.get(key, 0.0) + s.value
    return Sample(
        t=t,
        service=service.name,
        instance=service.instance,
        ready=status,
        problems=problems[:300],
        freshness_p95=values.get("vhlake_freshness_seconds@0.95"),
        batches=values.get("vhlake_batch_freshness_p95_seconds_count", 0.0),
        ingested=values.get("vhlake_events_ingested_total", 0.0),
        folded=values.get("vhlake_jobs_upserted_total", 0.0),
        failures=values.get("vhlake_step_failures_total", 0.0),
        lag=values.get("vhlake_consumer_lag_messages", 0.0),
        outbox=outbox,
        rss_mb=service.rss_mb(),
    )


@dataclass
class Fault:
    kind: str
    target: str
    at_s: float
    injected_s: float = 0.0
    ended_s: float = 0.0
    detected: bool = False
    evidence: str = ""
    recovered: bool = False
    recovery_s: float | None = None  # from its end to ready with the lake moving, less other faults
    recovery_wall_s: float | None = None  # the same, other faults included
    fresh_again_s: float | None = None  # from the fault's end to a batch fresher than --freshness-bound
    freshness_p95_at_recovery_s: float | None = None
    notes: str = ""


def schedule(minutes: float) -> list[Fault]:
    """Faults at fixed fractions of the run: every kind once; a second kill from 10 minutes on."""
    seconds = minutes * 60
    # Early enough that the last outage ends with a third of a 2-minute run left to show the recovery.
    plan = [Fault("broker", "main", 0.08), Fault("disk", "disk", 0.15), Fault("kill", "main", 0.35)]
    plan.append(Fault("s3", "main", 0.45))
    if minutes >= 10:
        plan.append(Fault("kill", "main", 0.85))
    for fault in plan:
        fault.at_s = round(fault.at_s * seconds, 1)
    return sorted(plan, key=lambda f: f.at_s)


def judge(
    fault: Fault, samples: list[Sample], bound_s: float, within_s: float, others: Iterable[Fault] = ()
) -> None:
    """Detected: during the fault the service said so. Recovered: after it, ready with the lake moving
    again (events reached bronze and jobs were folded into gold since the fault ended), at most
    ``within_s`` after its end (``recovery_s`` says when, however late), not counting the time the same
    service spent in ``others`` meanwhile (the S3 outage that starts ten seconds after the kill's
    restart is not the kill's recovery time; ``recovery_wall_s`` counts it). Fresh again: after it, ready and
    a new batch's p95 freshness under ``bound_s``."""
    mine = [s for s in samples if s.service == fault.target]
    during = [s for s in mine if fault.injected_s <= s.t <= fault.ended_s + 5]
    if fault.kind == "kill":
        fault.detected, fault.evidence = True, "process SIGKILLed (exit -9); started again at once"
    else:
        unready = [s for s in during if s.ready != 200]
        failing = [s for s in during if s.failures > during[0].failures] if during else []
        fault.detected = bool(unready or failing)
        said = next((s.problems for s in unready if s.problems), "")
        fault.evidence = (
            f"/readyz {sorted({s.ready for s in unready})} in {len(unready)} samples; "
            f"step failures +{(max(s.failures for s in failing) - during[0].failures) if failing else 0:.0f}; "
            f"{said}"
        )
    base = next((s for s in reversed(mine) if s.t <= fault.ended_s), None)
    fault.recovered, fault.recovery_s, fault.fresh_again_s = False, None, None
    fault.freshness_p95_at_recovery_s = None
    for s in mine:
        if s.t < fault.ended_s:
            continue
        same = base is not None and s.instance == base.instance  # else counters restarted from zero
        ingested, folded = (base.ingested, base.folded) if same and base else (0.0, 0.0)
        moving = s.ingested > ingested and s.folded > folded
        if fault.recovery_s is None and s.ready == 200 and moving:
            fault.recovery_wall_s = round(s.t - fault.ended_s, 1)
            fault.recovery_s = round(fault.recovery_wall_s - overlap(fault, others, s.t), 1)
            fault.recovered = fault.recovery_s <= within_s
            fault.freshness_p95_at_recovery_s = s.freshness_p95
        new_batch = not same or (base is not None and s.batches > base.batches)
        fresh = s.freshness_p95 is not None and s.freshness_p95 <= bound_s
        if s.ready == 200 and new_batch and fresh:
            fault.fresh_again_s = round(s.t - fault.ended_s, 1)
            return


# -- the API clients -----------------------------------------------------------------------------------

_ROUTES = [
    "/v1/marketplaces",
    "/v1/overview?days=7",
    "/v1/stats/realtime",
    "/v1/quality",
    "/v1/alerts",
    "/v1/marketplaces/mercado_livre/metrics?start={start}&end={end}",  # a date range, not days
    "/v1/marketplaces/shopee/performance?days=30",
    "/v1/marketplaces/amazon_br/errors?days=30&top=5",
    "/v1/marketplaces/mercado_livre/engagement?days=30",
]


@dataclass
class ApiStats:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    five_xx: list[tuple[float, int, str]] = field(default_factory=list)  # (t, status, route)
    unanswered: list[tuple[float, int, str]] = field(default_factory=list)  # status 0: refused, timed out
    lock: threading.Lock = field(default_factory=threading.Lock)


def api_clients(url: str, key: str, rate: float, stop: threading.Event, t0: float, stats: ApiStats) -> None:
    """``rate`` requests/s over the dashboard's routes, on a few threads (a slow answer delays no other)."""
    headers = {"Authorization": f"Bearer {key}"}

    def one(route: str) -> None:
        started = time.perf_counter()
        asked_at = round(time.monotonic() - t0, 1)  # a failure belongs to when it was asked
        today = datetime.now(UTC).date()
        route = route.format(start=today - timedelta(days=29), end=today)
        status, _ = get(url + route, timeout=10, headers=headers)
        elapsed = (time.perf_counter() - started) * 1000
        with stats.lock:
            stats.statuses[status] = stats.statuses.get(status, 0) + 1
            if status == 200:
                stats.latencies_ms.append(elapsed)
            elif status >= 500:
                stats.five_xx.append((asked_at, status, route))
            elif status == 0:
                stats.unanswered.append((asked_at, status, route))

    with ThreadPoolExecutor(8) as pool:
        n = 0
        started = time.monotonic()
        while not stop.is_set():
            pool.submit(one, _ROUTES[n % len(_ROUTES)])
            n += 1
            stop.wait(max(0.0, n / rate - (time.monotonic() - started)))


# -- the lake at the start and the end -----------------------------------------------------------------


def s3_files(moto: MotoS3) -> dict[str, dict[str, int]]:
    from vhlake.lake.tables import ALL_TABLES

    counts: dict[str, dict[str, int]] = {}
    pages = moto.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="lake/")
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    for table in ALL_TABLES:
        root = f"lake/{table.relative_path}/"
        mine = [k for k in keys if k.startswith(root)]
        log = sum("/_delta_log/" in k and k.endswith(".json") for k in mine)
        data = sum(k.endswith(".parquet") and "/_delta_log/" not in k for k in mine)
        if log or data:
            counts[table.name] = {"delta_log_files": log, "data_files": data}
    return counts


def exactly_once(lake: Any, prefix: str, jobs: int) -> dict[str, int]:
    """Bronze against the ids the producer published (two per job), and gold's job count."""
    import pyarrow as pa

    from vhlake.lake.tables import BRONZE

    bronze = lake.open(BRONZE)
    ids: list[str | None] = (
        []
        if bronze is None
        else pa.table(bronze.to_pyarrow_table(columns=["event_id"]))["event_id"].to_pylist()
    )
    mine = [i for i in ids if i is not None and i.startswith(prefix + "-")]
    published = {
        f"{prefix}-{n}-{k}" for n in range(jobs) for k in ("validation_started", "validation_completed")
    }
    seen = set(mine)
    return {
        "published": len(published),
        "in_bronze": len(seen & published),
        "duplicates": len(mine) - len(seen),
        "lost": len(published - seen),
        "unexpected": len(seen - published),
        "published_jobs": jobs,
        "gold_jobs": gold_jobs(lake),
    }


# -- the run -------------------------------------------------------------------------------------------


def disk_filler(mount: Path) -> Callable[[], None]:
    """Fill ``mount`` to the last byte (unbuffered writes, smaller and smaller); returns what frees it."""
    filler = mount / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for size in (1 << 20, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler.unlink


def mount_tmpfs(path: Path, size_mb: int) -> str | None:
    """Mount a tmpfs of ``size_mb`` at ``path``; None when done, else why not."""
    path.mkdir(parents=True)
    if os.geteuid() != 0:
        return "not root: cannot mount a tmpfs"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)], check=False)
    return None if done.returncode == 0 else f"mount -t tmpfs failed ({done.returncode})"


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start everything, inject the faults, wait for the lake to catch up, report; stop what it started."""
    with contextlib.ExitStack() as cleanup:
        return soak(args, cleanup)
    raise AssertionError("unreachable")


def soak(args: argparse.Namespace, cleanup: contextlib.ExitStack) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="vhlake-soak-"))
    print(f"soak: working in {work}", flush=True)
    moto_log = work / "moto.log"  # one line per request: what the lake costs the store
    moto = MotoS3(log=moto_log)
    cleanup.callback(moto.stop)
    moto.create_bucket(BUCKET)
    # The broker's storage on a store of its own, as a broker has its own disks: on the lake's moto its
    # ~50 PUTs a second were half of that single-process server's load, and slowed the lake under test.
    broker_store = MotoS3(log=None)
    cleanup.callback(broker_store.stop)
    broker_store.create_bucket("tansu")
    broker = Tansu(work / "tansu.log", storage="s3://tansu/", env=broker_store.env).start()
    broker.create_topic(TOPIC)
    proxy = FaultProxy("127.0.0.1", moto.port)
    mount = work / "disk"
    why_not = mount_tmpfs(mount, args.disk_mb)
    if why_not:
        raise SystemExit(f"soak: the disk fault needs a tmpfs: {why_not}")
    cleanup.callback(subprocess.run, ["umount", str(mount)], check=False)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VHLAKE_", "KAFKA_"))}
    os.environ.update(moto.env)  # this process reads the lake straight from moto, never through the proxy
    common = {
        "VHLAKE_API_RATE_PER_S": "10000",
        "VHLAKE_API_RATE_BURST": "10000",
        "VHLAKE_ENGAGEMENT_INTERVAL_S": "60",
    }
    main_env = {
        **base_env,
        **moto.env,
        **common,
        "AWS_ENDPOINT": proxy.endpoint,
        "VHLAKE_EVENT_LOG": "kafka",
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "KAFKA_VALIDATION_TOPIC": TOPIC,
        "KAFKA_CONSUMER_GROUP": "soak",
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "KAFKA_DELIVERY_TIMEOUT_S": "5",
        "VHLAKE_OUTBOX_PATH": str(work / "service-outbox.db"),
        "VHLAKE_KAFKA_BATCH_MESSAGES": "20000",
        "VHLAKE_KAFKA_MAX_WAIT_S": "1",
    }
    disk_env = {**base_env, **common, "VHLAKE_EVENT_LOG_PATH": str(work / "disk-log.db")}
    from vhlake.api.keys import KeyStore
    from vhlake.lake.delta import Lake

    main_lake, disk_lake = Lake(f"s3://{BUCKET}/lake"), Lake(str(mount / "lake"))
    _, key = KeyStore(main_lake).create("read", description="soak API clients")
    main = Service("main", main_lake.uri, main_env, work / "serve.log")
    disk = Service("disk", str(mount / "lake"), disk_env, work / "serve-disk.log")
    main.start()
    disk.start()

    progress, result = work / "progress.json", work / "producer.json"
    producer = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--role",
            "producer",
            "--rate",
            str(args.rate),
            "--seconds",
            str(args.minutes * 60),
            "--bootstrap",
            broker.bootstrap,
            "--drain-timeout",
            "240",
            "--outbox",
            str(work / "producer-outbox.db"),
            "--disk-log",
            str(work / "disk-log.db"),
            "--progress",
            str(progress),
            "--result",
            str(result),
        ],
        stderr=(work / "producer.log").open("wb"),
        env={**base_env, "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
    )
    t0 = time.monotonic()
    samples: list[Sample] = []
    stop, stop_api = threading.Event(), threading.Event()

    def watch() -> None:
        while not stop.wait(1.0):
            outbox = 0.0
            with contextlib.suppress(OSError, ValueError):
                outbox = float(json.loads(progress.read_text())["outbox_pending"])
            t = round(time.monotonic() - t0, 1)
            samples.extend([sample(main, t, outbox), sample(disk, t, 0.0)])

    api = ApiStats()
    threads = [
        threading.Thread(target=watch, daemon=True),
        threading.Thread(
            target=api_clients, args=(main.url, key, args.api_rate, stop_api, t0, api), daemon=True
        ),
    ]
    for thread in threads:
        thread.start()
    faults = schedule(args.minutes)
    try:
        injectors = [
            threading.Thread(
                target=inject,
                args=(fault, t0, args.outage),
                kwargs={"broker": broker, "proxy": proxy, "main": main, "disk": disk, "mount": mount},
                daemon=True,
            )
            for fault in faults
        ]
        time.sleep(min(f.at_s for f in faults) * 0.5)
        tables_start = s3_files(moto)
        for injector in injectors:  # each sleeps until its time: a long outage delays no other fault
            injector.start()
        for injector in injectors:
            injector.join()
        while producer.poll() is None:
            time.sleep(1)
        produced = json.loads(result.read_text())
        summary = {k: v for k, v in produced.items() if k != "failed_ids"}
        print(f"soak: producer done after {time.monotonic() - t0:.0f} s: {summary}", flush=True)
        stop_api.set()
        checks = catch_up(main_lake, disk_lake, produced, args.drain_timeout, faults, samples, args)
        store_requests = moto_requests(moto_log, time.monotonic() - t0)
    finally:
        stop.set()
        stop_api.set()
        main.terminate()
        disk.terminate()
        if producer.poll() is None:
            producer.kill()
        broker.stop()
        proxy.stop()
    tables_end = s3_files(moto)
    main_check, disk_check, wait = checks
    for fault in faults:
        judge(fault, samples, args.freshness_bound, args.recovery_bound, faults)
    report = summarize(args, produced, main_check, disk_check, samples, api, faults, main_lake)
    report["catch_up"] = wait
    report["store_requests"] = store_requests
    report["tables"] = {"start": tables_start, "end": tables_end}
    report["work"] = str(work)
    if args.png:
        plot(samples, faults, args.png)
    return report


def inject(
    fault: Fault,
    t0: float,
    outage: float,
    *,
    broker: Tansu,
    proxy: FaultProxy,
    main: Service,
    disk: Service,
    mount: Path,
) -> None:
    time.sleep(max(0.0, t0 + fault.at_s - time.monotonic()))
    fault.injected_s = round(time.monotonic() - t0, 1)
    if fault.kind == "broker":
        broker.stop()
        time.sleep(outage)
        broker.start()
    elif fault.kind == "kill":
        main.kill()
        main.start()
    elif fault.kind == "s3":
        proxy.refuse()
        time.sleep(outage)
        proxy.restore()
        fault.notes = f"{proxy.refused} connections reset"
    elif fault.kind == "disk":
        free = disk_filler(mount)
        log = disk._log.read_text(errors="replace") if disk._log.exists() else ""
        time.sleep(outage)
        errors = [
            line for line in disk._log.read_text(errors="replace")[len(log) :].splitlines() if "space" in line
        ]
        fault.notes = errors[0][:300] if errors else "no 'space' error in the service log"
        free()
    fault.ended_s = round(time.monotonic() - t0, 1)
    print(f"soak: {fault.kind} at {fault.injected_s:.0f} s, over at {fault.ended_s:.0f} s", flush=True)


def catch_up(
    main_lake: Any,
    disk_lake: Any,
    produced: dict[str, Any],
    timeout_s: float,
    faults: list[Fault],
    samples: list[Sample],
    args: argparse.Namespace,
) -> tuple[dict[str, int], dict[str, int], dict[str, Any]]:
    """Wait, at most ``timeout_s``, until gold counts every published job in both lakes and every fault
    has recovered; then check bronze exactly once. Gold is small: polling it every few seconds costs the
    store little, where re-reading all of bronze would load the very store the lake is catching up on.
    Returns both lakes' checks and how the wait went (``caught_up_s``: from the producer's end to gold
    counting every job, None when it never did)."""
    started = time.monotonic()
    caught_up_s: float | None = None
    while True:
        gold = [gold_jobs(main_lake), gold_jobs(disk_lake)]
        if caught_up_s is None and gold[0] >= produced["jobs"] and gold[1] >= produced["disk_jobs"]:
            caught_up_s = round(time.monotonic() - started, 1)
        for fault in faults:
            judge(fault, samples, args.freshness_bound, args.recovery_bound, faults)
        waited = time.monotonic() - started
        if (caught_up_s is not None and all(f.recovery_s is not None for f in faults)) or waited > timeout_s:
            break
        time.sleep(3)
    main = exactly_once(main_lake, MAIN_PREFIX, produced["jobs"])
    disk = exactly_once(disk_lake, DISK_PREFIX, produced["disk_jobs"])
    wait = {
        "caught_up_s": caught_up_s,
        "waited_s": round(time.monotonic() - started, 1),
        "timeout_s": timeout_s,
    }
    return main, disk, wait


def gold_jobs(lake: Any) -> int:
    """The jobs gold counts (its ``total_validations``, summed)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from vhlake.lake.tables import GOLD

    gold = lake.open(GOLD)
    if gold is None:
        return 0
    return int(
        pc.sum(pa.table(gold.to_pyarrow_table(columns=["total_validations"]))["total_validations"]).as_py()
        or 0
    )


def overlap(fault: Fault, others: Iterable[Fault], until: float) -> float:
    """Seconds between ``fault``'s end and ``until`` that another fault of the same service filled."""
    spans = sorted(
        (max(o.injected_s, fault.ended_s), min(o.ended_s, until))
        for o in others
        if o is not fault and o.target == fault.target and o.injected_s < until and o.ended_s > fault.ended_s
    )
    total, reached = 0.0, fault.ended_s
    for start, end in spans:
        start = max(start, reached)
        if end > start:
            total, reached = total + end - start, end
    return total


def outside_faults(
    five_xx: list[tuple[float, int, str]], faults: list[Fault], grace_s: float
) -> list[tuple[float, int, str]]:
    """The 5xx answered outside every window from a fault's injection to ``grace_s`` after its end: a 503
    while the store refuses is the API saying so (with Retry-After), one after it is a bug."""
    windows = [(f.injected_s, f.ended_s + grace_s) for f in faults]
    return [e for e in five_xx if not any(start <= e[0] <= end for start, end in windows)]


def moto_requests(log: Path, seconds: float) -> dict[str, Any]:
    """What the lake asked of the store: requests per second, and the busiest (method, table) pairs."""
    counts: dict[str, int] = {}
    total = 0
    with contextlib.suppress(OSError):
        for line in log.read_text(errors="replace").splitlines():
            quoted = re.sub(r"\x1b\[[0-9;]*m", "", line).split('"')  # werkzeug colours some lines
            if len(quoted) < 2 or len(quoted[1].split()) < 2:
                continue
            method, target = quoted[1].split()[:2]
            total += 1
            path = urllib.parse.unquote(target).split("?", 1)
            where = (path[1] if len(path) > 1 and "prefix=" in path[1] else path[0]).split("lake/", 1)[-1]
            table = "/".join(where.split("/")[:2]) if "/" in where else where
            kind = "list" if "list-type" in target else ("log" if "_delta_log" in target else "data")
            key = f"{method} {kind} {table[:60]}"
            counts[key] = counts.get(key, 0) + 1
    busiest = dict(sorted(counts.items(), key=lambda kv: -kv[1])[:12])
    return {"total": total, "per_s": round(total / seconds, 1) if seconds else None, "busiest": busiest}


def slope_mb_per_h(samples: list[Sample], after_s: float) -> float | None:
    """RSS growth per hour: a least-squares line per service process after ``after_s`` (and its own first
    minute), weighted by how long each process ran."""
    slopes: list[tuple[float, float]] = []
    for instance in sorted({s.instance for s in samples}):
        mine = [s for s in samples if s.instance == instance and s.rss_mb is not None]
        if not mine:
            continue
        start = max(after_s, mine[0].t + 60)
        points = [(s.t, s.rss_mb) for s in mine if s.t >= start and s.rss_mb is not None]
        if len(points) >= 10:
            slope = statistics.linear_regression([p[0] for p in points], [p[1] for p in points]).slope
            slopes.append((slope * 3600, points[-1][0] - points[0][0]))
    total = sum(w for _, w in slopes)
    return round(sum(s * w for s, w in slopes) / total, 1) if total else None


def summarize(
    args: argparse.Namespace,
    produced: dict[str, Any],
    main: dict[str, int],
    disk: dict[str, int],
    samples: list[Sample],
    api: ApiStats,
    faults: list[Fault],
    lake: Any,
) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc

    from vhlake.lake.tables import DATA_QUALITY_METRICS

    warmup = min(300.0, args.minutes * 60 / 4)
    mine = [s for s in samples if s.service == "main" and s.rss_mb is not None]
    after = [s for s in mine if s.t >= warmup] or mine
    quality = lake.open(DATA_QUALITY_METRICS)
    per_batch: list[float] = []
    if quality is not None:
        table = pa.table(quality.to_pyarrow_table(columns=["metric", "value"]))
        per_batch = [
            v
            for v in pc.filter(table["value"], pc.equal(table["metric"], "freshness_p95_s")).to_pylist()
            if v is not None
        ]
    latencies = sorted(api.latencies_ms)
    return {
        "minutes": args.minutes,
        "rate": args.rate,
        **main,
        "producer": {k: v for k, v in produced.items() if k != "failed_ids"},
        "rss_mb_start": round(after[0].rss_mb or 0, 1) if after else None,
        "rss_mb_end": round(after[-1].rss_mb or 0, 1) if after else None,
        "rss_slope_mb_per_h": slope_mb_per_h([s for s in samples if s.service == "main"], warmup),
        "freshness_p95_s": round(statistics.quantiles(per_batch, n=20)[18], 2)
        if len(per_batch) > 1
        else None,
        "freshness_batches": len(per_batch),
        "api_requests": sum(api.statuses.values()),
        "api_statuses": {str(k): v for k, v in sorted(api.statuses.items())},
        "api_p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))], 1) if latencies else None,
        "api_errors_5xx": len(api.five_xx),
        "api_errors_5xx_outside_faults": len(outside_faults(api.five_xx, faults, args.fault_grace)),
        "api_5xx_first": api.five_xx[:10],
        "api_5xx_outside_faults_first": outside_faults(api.five_xx, faults, args.fault_grace)[:10],
        "api_unanswered_outside_faults": len(outside_faults(api.unanswered, faults, args.fault_grace)),
        "disk_lake": disk,
        "faults": [asdict(f) for f in faults],
    }


def plot(samples: list[Sample], faults: list[Fault], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main = [s for s in samples if s.service == "main"]
    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    axes = list(axes)
    series: list[tuple[str, list[float | None]]] = [
        ("RSS of the service (MB)", [s.rss_mb for s in main]),
        ("freshness p95, last batch (s)", [s.freshness_p95 for s in main]),
        ("consumer lag + producer outbox (events)", [s.lag + s.outbox for s in main]),
    ]
    for ax, (title, values) in zip(axes, series, strict=True):
        ax.plot([s.t for s in main], [float("nan") if v is None else v for v in values], lw=1)
        ax.set_ylabel(title, fontsize=8)
        for fault in faults:
            ax.axvspan(fault.injected_s, max(fault.ended_s, fault.injected_s + 1), color="red", alpha=0.15)
    for fault in faults:
        axes[0].annotate(
            fault.kind, (fault.injected_s, 1.0), xycoords=("data", "axes fraction"), fontsize=7, va="bottom"
        )
    axes[-1].set_xlabel("seconds since start")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--minutes", type=float, default=30.0, help="how long the producer publishes (default 30)"
    )
    parser.add_argument("--rate", type=int, default=2_000, help="events per second to Kafka (default 2,000)")
    parser.add_argument("--api-rate", type=float, default=50.0, help="API requests per second (default 50)")
    parser.add_argument(
        "--outage", type=float, default=30.0, help="seconds the broker, S3 and the disk stay down"
    )
    parser.add_argument(
        "--freshness-bound",
        type=float,
        default=20.0,
        help="recovered: a batch's p95 freshness under this (s)",
    )
    parser.add_argument(
        "--recovery-bound",
        type=float,
        default=60.0,
        help="recovered: ready with the lake moving again at most this long after a fault's end (s)",
    )
    parser.add_argument(
        "--fault-grace",
        type=float,
        default=10.0,
        help="a 5xx this long after a fault's end still counts as the fault's (s)",
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=300.0, help="seconds to wait for the lake to catch up"
    )
    parser.add_argument("--disk-mb", type=int, default=256, help="size of the small service's tmpfs")
    parser.add_argument("--json", type=Path, help="write the report here (it is printed too)")
    parser.add_argument(
        "--png", type=Path, default=BENCH / "soak.png", help="RSS, freshness and lag over time"
    )
    for hidden in ("--role", "--bootstrap", "--outbox", "--disk-log", "--progress", "--result", "--seconds"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "producer":
        args.seconds, args.drain_timeout = float(args.seconds), float(args.drain_timeout)
        produce(args)
        return
    report = run(args)
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    failed = (
        report["lost"]
        or report["duplicates"]
        or report["gold_jobs"] != report["published_jobs"]
        or report["disk_lake"]["gold_jobs"] != report["disk_lake"]["published_jobs"]
        or report["api_errors_5xx_outside_faults"]
        or report["disk_lake"]["lost"]
        or report["disk_lake"]["duplicates"]
        or not all(f["recovered"] for f in report["faults"])
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
