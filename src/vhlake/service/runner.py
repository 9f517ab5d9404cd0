"""``LakeService``: the event log → bronze → silver → gold, continuously, in micro-batches.

Threads that share a stop event:
- **ingest**: the event source commits batches to bronze and wakes the pipeline;
- **pipeline**: runs the incremental pipeline whenever bronze moved (or on the time trigger), records
  freshness and data quality; brings the engagement tables to silver at most every
  ``engagement_every_s`` (their rows span 28 days: recomputed per micro-batch, they would cost it
  seconds); compacts recent partitions and runs ``vhlake maintain`` on their schedules (all in this
  thread, so the rewrites never race the pipeline's own MERGEs; compaction spaced so that it takes at
  most ``maintenance_share`` of the thread, see :func:`maintenance_gap`);
- **canary** (optional): publishes a marked event every N seconds and measures its lag to gold;
- **alerts** (optional): evaluates the alert rules on their schedules;
- **ml** (optional): retrains the forecasts and rescores the anomalies on a schedule (a minute after
  start, then every ``ml_every_s``).
Stopping lets each thread finish the batch in hand (every batch commits whole), so a restart resumes
exactly where the Delta log says. A failing batch is logged, counted and retried with backoff; the
service stays up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from vhlake.alerts.runner import AlertRunner
from vhlake.errors import VhlakeError
from vhlake.events.model import ValidationEvent
from vhlake.events.publisher import EventPublisher
from vhlake.lake.delta import Lake
from vhlake.lake.tables import DATA_QUALITY_METRICS
from vhlake.pipeline.runner import CANARY_SOURCE, Pipeline, RunReport
from vhlake.reconciliation.run import Reconciliation
from vhlake.service.maintenance import compact_recent
from vhlake.service.metrics import ServiceMetrics
from vhlake.service.quality import quality_rows, reconciliation_rows, table_staleness
from vhlake.service.sources import EventSource, IngestDelta

_LOG = logging.getLogger("vhlake.service")
_MAX_BACKOFF_S = 30.0


@dataclass(frozen=True)
class ServiceOptions:
    """Triggers and schedules (``vhlake serve --help`` documents each)."""

    trigger_interval_s: float = 0.0  # the pipeline waits at least this long between runs
    trigger_commits: int = 1  # ... unless this many bronze commits are pending
    idle_check_s: float = 1.0  # with nothing new, how often the pipeline looks anyway
    canary_every_s: float | None = None
    maintenance_every_s: float = 30.0
    maintenance_share: float = 0.2  # ... stretched so compaction takes at most this share of the pipeline
    sla_s: float = 300.0  # a step without a success for this long counts as late
    ml_every_s: float = 6 * 3600.0  # forecasts retrained and anomalies rescored this often
    lifecycle_every_s: float = 24 * 3600.0  # retention, compaction, Z-order, vacuum, checkpoints
    engagement_every_s: float = 60.0  # user engagement brought to silver at most this often
    reconcile_every_s: float = 3600.0  # every event counted from its source to gold this often


@dataclass
class StepState:
    last_success: float | None = None
    last_error: str | None = None
    consecutive_failures: int = 0


@dataclass
class _Pending:
    """Bronze commits made since the pipeline last ran, and when the first of them came."""

    commits: int = 0
    since: float | None = None
    rejected: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class LakeService:
    """Runs the lake continuously until :meth:`stop`."""

    def __init__(
        self,
        lake: Lake,
        source: EventSource,
        pipeline: Pipeline,
        *,
        metrics: ServiceMetrics,
        options: ServiceOptions = ServiceOptions(),
        canary: EventPublisher | None = None,
        alerts: AlertRunner | None = None,
        ml: Callable[[], str] | None = None,
        lifecycle: Callable[[], str] | None = None,
        reconcile: Callable[[], Reconciliation] | None = None,
    ) -> None:
        self._lake = lake
        self._source = source
        self._pipeline = pipeline
        self.metrics = metrics
        self._options = options
        self._canary = canary
        self._alerts = alerts
        self._ml = ml  # trains and scores; returns what it did, for the log
        self._lifecycle = lifecycle  # vhlake maintain; returns what it did
        self._reconcile = reconcile  # vhlake reconcile, recorded; returns the result
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._pending = _Pending()
        self.steps = {
            step: StepState()
            for step in (
                "ingest",
                "pipeline",
                "engagement",
                "maintenance",
                "lifecycle",
                "reconcile",
                "alerts",
                "ml",
            )
        }
        self._threads: list[threading.Thread] = []
        self._last_maintenance = self._last_lifecycle = time.monotonic()
        self._last_reconcile: float | None = None  # the first after the first pipeline run
        self._maintenance_s = 0.0  # how long the last compaction took
        self._last_engagement: float | None = None  # the first pipeline run is followed by the step

    def start(self) -> None:
        workers: list[tuple[str, Callable[[], None]]] = [
            ("ingest", self._ingest_loop),
            ("pipeline", self._pipeline_loop),
        ]
        if self._canary is not None and self._options.canary_every_s:
            workers.append(("canary", self._canary_loop))
        if self._alerts is not None:
            workers.append(("alerts", self._alerts_loop))
        if self._ml is not None:
            workers.append(("ml", self._ml_loop))
        for name, target in workers:
            thread = threading.Thread(target=target, name=f"vhlake-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        _LOG.info("service started", extra={"source": self._source.name})

    def stop(self, timeout_s: float = 60.0) -> None:
        """Finish the batches in hand, then return (each batch commits whole or not at all)."""
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._canary is not None:
            self._canary.close()
        _LOG.info("service stopped")

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- ingest ----------------------------------------------------------------------------------------

    def _ingest_loop(self) -> None:
        self._retrying("ingest", lambda: self._source.run(self._stop, self._on_ingested))

    def _on_ingested(self, delta: IngestDelta) -> None:
        self.metrics.events_ingested.labels(source=delta.source).inc(delta.bronze_rows)
        self.metrics.events_rejected.inc(delta.rejected_rows)
        for partition, lag in delta.lag.items():
            self.metrics.consumer_lag.labels(partition=partition).set(lag)
        self._succeeded("ingest")
        with self._pending.lock:
            self._pending.commits += 1
            self._pending.rejected += delta.rejected_rows
            self._pending.since = self._pending.since or time.monotonic()
        self._wake.set()

    # -- pipeline --------------------------------------------------------------------------------------

    def _pipeline_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._options.idle_check_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            if not self._due():
                continue
            self._retrying("pipeline", self._run_pipeline, once=True)
            if self._engagement_due():
                self._retrying("engagement", self._run_engagement, once=True)
            gap = maintenance_gap(
                self._options.maintenance_every_s, self._maintenance_s, self._options.maintenance_share
            )
            # Not after a failed run: behind an outage the pipeline catches up first, compaction can wait.
            caught_up = self.steps["pipeline"].consecutive_failures == 0
            if caught_up and time.monotonic() - self._last_maintenance >= gap:
                self._retrying("maintenance", self._maintain, once=True)
            if (
                self._lifecycle is not None
                and time.monotonic() - self._last_lifecycle >= self._options.lifecycle_every_s
            ):
                self._retrying("lifecycle", self._run_lifecycle, once=True)
            if self._reconcile is not None and self._reconcile_due():
                self._retrying("reconcile", self._run_reconcile, once=True)

    def _due(self) -> bool:
        """Run now? When the time trigger passed, or enough commits wait (and on idle checks, to catch
        commits made by other writers)."""
        with self._pending.lock:
            pending, since = self._pending.commits, self._pending.since
        if pending >= self._options.trigger_commits:
            return True
        waited = time.monotonic() - since if since is not None else float("inf")
        return waited >= self._options.trigger_interval_s

    def _run_pipeline(self) -> None:
        with self._pending.lock:
            rejected = self._pending.rejected
            self._pending.commits, self._pending.since, self._pending.rejected = 0, None, 0
        started = time.perf_counter()
        report = self._pipeline.run(stop=self._stop, engagement=False)  # on its own schedule
        self.metrics.backlog_versions.set(self._pipeline.backlog())
        if report.was_noop:
            self._succeeded("pipeline")
            return
        self.metrics.batch_duration.labels(step="pipeline").observe(time.perf_counter() - started)
        self._record(report, rejected)
        self._succeeded("pipeline")

    def _engagement_due(self) -> bool:
        last = self._last_engagement
        return last is None or time.monotonic() - last >= self._options.engagement_every_s

    def _run_engagement(self) -> None:
        """The engagement tables brought to silver: one step for every micro-batch since the last."""
        started = time.perf_counter()
        self._last_engagement = time.monotonic()  # a failing step waits for its schedule too
        if self._pipeline.update_engagement():
            self.metrics.batch_duration.labels(step="engagement").observe(time.perf_counter() - started)
        self._succeeded("engagement")

    def _record(self, report: RunReport, rejected: int) -> None:
        m = self.metrics
        m.jobs_upserted.inc(report.jobs_upserted)
        m.events_rescued.inc(report.rescued)
        for rule, count in report.violations.items():
            if count:
                m.events_quarantined.labels(reason=rule).inc(count)
        if report.freshness_s is not None:
            p50, p95, worst = report.freshness_s
            m.freshness.labels(quantile="0.5").set(p50)
            m.freshness.labels(quantile="0.95").set(p95)
            m.freshness.labels(quantile="1").set(worst)
            m.freshness_p95.observe(p95)
        if report.canary_lag_s:
            m.canary_lag.set(report.canary_lag_s[-1])
        now = datetime.now(UTC)
        rows = quality_rows(
            report,
            rejected=rejected,
            staleness_s=table_staleness(self._lake),
            late_steps=self._late(),
            now=now,
        )
        self._lake.append(DATA_QUALITY_METRICS, rows)

    def _late(self) -> dict[str, float]:
        """Steps whose last success is older than the SLA, with how long ago it was."""
        now = time.time()
        return {
            step: now - state.last_success
            for step, state in self.steps.items()
            if state.last_success is not None and now - state.last_success > self._sla(step)
        }

    def _sla(self, step: str) -> float:
        """A scheduled step is late only once its schedule has passed too."""
        scheduled = {
            "ml": self._options.ml_every_s,
            "reconcile": self._options.reconcile_every_s,
            "lifecycle": self._options.lifecycle_every_s,
            "engagement": self._options.engagement_every_s,
        }
        return self._options.sla_s + scheduled.get(step, 0.0)

    def _maintain(self) -> None:
        started = time.perf_counter()
        caught_up = self._pipeline.backlog() == 0  # bronze's log may go only once the pipeline read it
        outcome = compact_recent(self._lake, today=datetime.now(UTC).date(), clean_bronze_log=caught_up)
        self._maintenance_s = time.perf_counter() - started
        self.metrics.batch_duration.labels(step="maintenance").observe(self._maintenance_s)
        self._last_maintenance = time.monotonic()
        self._succeeded("maintenance")
        _LOG.info(
            "compacted recent partitions",
            extra={"removed": outcome.files_removed, "added": outcome.files_added},
        )

    def _run_lifecycle(self) -> None:
        """Retention and the rest of ``vhlake maintain``, here between two pipeline runs: it never races
        the pipeline's MERGEs."""
        assert self._lifecycle is not None
        self._last_lifecycle = time.monotonic()
        _LOG.info("lifecycle: %s", self._lifecycle())
        self._succeeded("lifecycle")

    def _reconcile_due(self) -> bool:
        last = self._last_reconcile
        return last is None or time.monotonic() - last >= self._options.reconcile_every_s

    def _run_reconcile(self) -> None:
        """Every event counted from its source to gold, here between two pipeline runs (the derived
        tables stand at one bronze version); the result on /metrics and in data_quality_metrics."""
        assert self._reconcile is not None
        self._last_reconcile = time.monotonic()  # a failing reconciliation waits for its schedule too
        result = self._reconcile()
        self.metrics.reconciliation_imbalance.set(len(result.imbalances))
        if result.balanced:
            self.metrics.reconciliation_last_success.set(result.reconciled_at.timestamp())
        else:
            first = result.first_imbalance
            _LOG.warning("reconciliation: %s", first.describe() if first else "")
        self._lake.append(DATA_QUALITY_METRICS, reconciliation_rows(result))
        self._succeeded("reconcile")

    # -- alerts ----------------------------------------------------------------------------------------

    def _alerts_loop(self) -> None:
        """Evaluate the rules that are due, every second (each rule keeps its own schedule)."""
        assert self._alerts is not None
        alerts = self._alerts
        while not self._stop.wait(1.0):
            self._retrying("alerts", lambda: self._evaluate_alerts(alerts), once=True)

    def _evaluate_alerts(self, alerts: AlertRunner) -> None:
        for outcome in alerts.run_due():
            for notification in outcome.notifications:
                self.metrics.alert_notifications.labels(
                    rule=notification.rule, event=notification.event
                ).inc()
            if outcome.error:
                raise VhlakeError(f"alert {outcome.rule}: {outcome.error}")
        self._succeeded("alerts")

    # -- ml --------------------------------------------------------------------------------------------

    def _ml_loop(self) -> None:
        """Train and score a minute after start (the pipeline catches up first), then on the schedule."""
        assert self._ml is not None
        ml = self._ml
        delay = min(60.0, self._options.ml_every_s)
        while not self._stop.wait(delay):
            self._retrying("ml", lambda: self._run_ml(ml), once=True)
            delay = self._options.ml_every_s

    def _run_ml(self, ml: Callable[[], str]) -> None:
        _LOG.info("ml: %s", ml())
        self._succeeded("ml")

    # -- canary ----------------------------------------------------------------------------------------

    def _canary_loop(self) -> None:
        assert self._canary is not None and self._options.canary_every_s
        while not self._stop.wait(self._options.canary_every_s):
            canary = CanaryEvent(
                event_type="validation_started", job_id="vhlake-canary", marketplace="vhlake-canary"
            )
            try:
                self._canary.send_batch([canary])
            except Exception:  # a canary that cannot be sent is exactly what the lag gauge then shows
                _LOG.warning("canary not published", exc_info=True)

    # -- shared ----------------------------------------------------------------------------------------

    def _retrying(self, step: str, work: Callable[[], None], *, once: bool = False) -> None:
        """Run ``work`` (once, or until stopped), logging, counting and backing off on failure."""
        state = self.steps[step]
        while not self._stop.is_set():
            try:
                work()
                if once:
                    return
            except Exception as exc:  # the service must outlive a failing batch
                state.consecutive_failures += 1
                state.last_error = f"{type(exc).__name__}: {exc}"
                self.metrics.failures.labels(step=step).inc()
                _LOG.exception("%s failed (attempt %d)", step, state.consecutive_failures)
                if once:
                    return
                self._stop.wait(min(_MAX_BACKOFF_S, 0.5 * 2 ** min(state.consecutive_failures, 6)))

    def _succeeded(self, step: str) -> None:
        state = self.steps[step]
        state.last_success, state.last_error, state.consecutive_failures = time.time(), None, 0
        self.metrics.last_success.labels(step=step).set(state.last_success)


def maintenance_gap(every_s: float, last_s: float, share: float) -> float:
    """Seconds from one compaction's end to the next: ``every_s``, or more when the last one took long.

    Compaction runs in the pipeline's thread (it never races the MERGEs), so every second it takes is a
    second added to the freshness of the events waiting. On a local disk a round takes well under a
    second; on an object store it opens, lists and rewrites eight tables, seconds to tens of seconds
    (15 s a round on the soak's S3 emulator, bench/soak.py). Spacing the rounds by ``last_s / share``
    keeps compaction to at most ``share`` of the pipeline's time, however slow the store."""
    return max(every_s, last_s / share if share > 0 else every_s)


class CanaryEvent(ValidationEvent):
    """A synthetic event marked by its ``source_system``: bronze keeps it, the pipeline stops it there
    and records its lag, so it never counts in silver, gold or the quarantine."""

    source_system: str = CANARY_SOURCE
