"""The service's Prometheus metrics, in a registry of its own (``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LAG_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 120.0)


class ServiceMetrics:
    """Everything ``vhlake serve`` exports; one instance per service."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_ingested = Counter(
            "vhlake_events_ingested", "Events written to bronze.", ["source"], registry=r
        )
        self.events_rejected = Counter(
            "vhlake_events_rejected",
            "Inputs that were not JSON objects (validation_events_rejected).",
            registry=r,
        )
        self.events_quarantined = Counter(
            "vhlake_events_quarantined", "Events that failed an expectation, by rule.", ["reason"], registry=r
        )
        self.events_rescued = Counter(
            "vhlake_events_rescued",
            "Bronze events with fields kept in _rescued_data (schema violations).",
            registry=r,
        )
        self.jobs_upserted = Counter("vhlake_jobs_upserted", "Silver rows written (jobs folded).", registry=r)
        self.batch_duration = Histogram(
            "vhlake_batch_duration_seconds",
            "How long one batch took, by step.",
            ["step"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.freshness = Gauge(
            "vhlake_freshness_seconds",
            "Last pipeline batch: seconds from an event's timestamp to its job being visible in gold.",
            ["quantile"],
            registry=r,
        )
        self.freshness_p95 = Histogram(
            "vhlake_batch_freshness_p95_seconds",
            "Per pipeline batch, the p95 of event timestamp → visible in gold.",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.canary_lag = Gauge(
            "vhlake_canary_lag_seconds", "The last canary event: publish → processed past gold.", registry=r
        )
        self.consumer_lag = Gauge(
            "vhlake_consumer_lag_messages",
            "Messages in the event log not yet in bronze, per partition.",
            ["partition"],
            registry=r,
        )
        self.backlog_versions = Gauge(
            "vhlake_pipeline_backlog_commits",
            "Bronze commits the pipeline has not processed yet.",
            registry=r,
        )
        self.last_success = Gauge(
            "vhlake_last_success_timestamp_seconds",
            "When each step last succeeded (Unix time).",
            ["step"],
            registry=r,
        )
        self.alert_notifications = Counter(
            "vhlake_alert_notifications",
            "Alert notifications sent, by rule and event.",
            ["rule", "event"],
            registry=r,
        )
        self.outbox_pending = Gauge(
            "vhlake_outbox_pending",
            "Events waiting in the Kafka outbox for the broker to come back.",
            registry=r,
        )
        self.reconciliation_imbalance = Gauge(
            "vhlake_reconciliation_imbalance",
            "Links of the last reconciliation (source → bronze → silver → gold) that did not balance.",
            registry=r,
        )
        self.reconciliation_last_success = Gauge(
            "vhlake_reconciliation_last_success_timestamp_seconds",
            "When a reconciliation last balanced in full (Unix time).",
            registry=r,
        )
        self.failures = Counter("vhlake_step_failures", "Failed batches, by step.", ["step"], registry=r)
