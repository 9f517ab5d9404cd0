"""Evaluating alert rules: run each rule's query, check its condition per key, move each key's state
``ok → triggered → ok``, and notify on transitions (and again after the cooldown while still triggered).

State survives restarts: it is read back from ``alert_events``, where every evaluation is recorded with
the notifications it sent and each channel's outcome. A new "triggered" within the cooldown of the
previous one is not sent again, so a flapping value never storms the channels.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
from pydantic import SecretStr
from sqlglot import exp

from vhlake.alerts.channels import Notification, send
from vhlake.alerts.config import Alert, AlertsConfig, next_run
from vhlake.errors import QueryError, VhlakeError
from vhlake.lake.delta import Lake
from vhlake.lake.tables import ALERT_EVENTS
from vhlake.query.engine import QueryEngine
from vhlake.query.render import parse_one

_LOG = logging.getLogger("vhlake.alerts")
ANY_KEY = "*"


@dataclass
class KeyState:
    state: str = "ok"
    last_triggered_notice: datetime | None = None
    last_notice: datetime | None = None


@dataclass(frozen=True)
class RuleOutcome:
    rule: str
    notifications: list[Notification]
    error: str | None = None
    failed_channels: list[str] = field(default_factory=list)  # "channel 'x' for key k: the error"


class AlertRunner:
    """Evaluates the rules of ``config`` on ``engine``, keeping state in the lake."""

    def __init__(
        self,
        config: AlertsConfig,
        engine: QueryEngine,
        lake: Lake,
        *,
        smtp_password: SecretStr | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._config = config
        self._engine = engine
        self._lake = lake
        self._smtp_password = smtp_password
        self._clock = clock
        self._states = _states_from(lake)
        self._due: dict[str, datetime] = {}

    def run_all(self) -> list[RuleOutcome]:
        """Evaluate every rule now."""
        return [self.evaluate(alert) for alert in self._config.alerts]

    def run_due(self) -> list[RuleOutcome]:
        """Evaluate the rules whose schedule says so (each rule runs at once the first time)."""
        now = self._clock()
        outcomes = []
        for alert in self._config.alerts:
            if self._due.get(alert.name, now) <= now:
                outcomes.append(self.evaluate(alert))
                self._due[alert.name] = next_run(alert.schedule, now)
        return outcomes

    def evaluate(self, alert: Alert) -> RuleOutcome:
        now = self._clock()
        try:
            values = self._values(alert)
        except VhlakeError as exc:
            _LOG.error("alert %s: %s", alert.name, exc)
            return RuleOutcome(alert.name, [], error=str(exc))
        rows, sent, failed = [], [], list[str]()
        for key, value in values.items():
            triggered = alert.condition.holds(value) or (
                value is None and key == ANY_KEY and alert.no_data == "alert"
            )
            state = self._states.setdefault((alert.name, key), KeyState())
            event = _event(alert, state, triggered, now)
            results: dict[str, str] = {}
            if event is not None:
                notification = _notification(alert, key, event, value, now)
                results = self._notify(alert, notification)
                failed.extend(
                    f"channel {name!r} for {key}: {result}"
                    for name, result in results.items()
                    if result != "ok"
                )
                sent.append(notification)
                state.last_notice = now
                if event == "triggered":
                    state.last_triggered_notice = now
            rows.append(
                _row(alert, key, state.state, "triggered" if triggered else "ok", value, event, results, now)
            )
            state.state = "triggered" if triggered else "ok"
        if rows:
            self._lake.append(ALERT_EVENTS, pa.Table.from_pylist(rows, schema=ALERT_EVENTS.schema))
        for failure in failed:
            _LOG.error("alert %s: %s", alert.name, failure)
        return RuleOutcome(alert.name, sent, failed_channels=failed)

    def _values(self, alert: Alert) -> dict[str, float | None]:
        """The value per key (or ``*``) this evaluation found, plus previously triggered keys that are
        gone from the result (they count as recovered, unless ``no_data: keep``)."""
        table = self._engine.execute(alert.query)
        for column in (alert.condition.column, alert.key):
            if column is not None and column not in table.column_names:
                raise QueryError(
                    f"the query has no column {column!r} (it has {', '.join(table.column_names)})"
                )
        rows = table.to_pylist()
        condition = alert.condition
        values: dict[str, float | None]
        if condition.aggregate != "none":
            numbers = [float(r[condition.column]) for r in rows if r[condition.column] is not None]
            values = {ANY_KEY: _aggregate(condition.aggregate, numbers) if rows else None}
        else:
            values = {
                str(r[alert.key]) if alert.key else ANY_KEY: None
                if r[condition.column] is None
                else float(r[condition.column])
                for r in rows
            }
        if not rows and alert.no_data == "keep":
            return {}
        if not rows and alert.no_data == "alert":
            values[ANY_KEY] = None
        for (rule, key), state in self._states.items():
            if (
                rule == alert.name
                and state.state == "triggered"
                and key not in values
                and alert.no_data != "keep"
            ):
                values[key] = None
        return values

    def _notify(self, alert: Alert, notification: Notification) -> dict[str, str]:
        """Every channel at once; a slow or failing one never holds up the others."""
        channels = {name: self._config.channels[name] for name in alert.channels}
        with ThreadPoolExecutor(max_workers=max(1, len(channels))) as pool:
            futures = {
                name: pool.submit(send, channel, notification, smtp_password=self._smtp_password)
                for name, channel in channels.items()
            }
            return {name: future.result() for name, future in futures.items()}


def validate(config: AlertsConfig, engine: QueryEngine) -> list[str]:
    """One line per problem: a query that does not parse or run, or lacks the rule's columns."""
    problems = []
    for alert in config.alerts:
        try:
            if not isinstance(parse_one(alert.query), exp.Query):
                raise QueryError("the query is not a SELECT")
            columns = engine.execute(f"SELECT * FROM ({alert.query}) AS alert_query LIMIT 0").column_names  # noqa: S608
        except VhlakeError as exc:
            problems.append(f"alert {alert.name!r}: {exc}")
            continue
        for role, column in (("condition.column", alert.condition.column), ("key", alert.key)):
            if column is not None and column not in columns:
                problems.append(
                    f"alert {alert.name!r}: {role} {column!r} is not a column of its query ({', '.join(columns)})"
                )
    return problems


def _event(alert: Alert, state: KeyState, triggered: bool, now: datetime) -> str | None:
    cooldown = alert.cooldown_delta
    if triggered and state.state == "ok":
        recent = state.last_triggered_notice is not None and now - state.last_triggered_notice < cooldown
        return None if recent else "triggered"
    if triggered and state.state == "triggered":
        due = state.last_notice is None or now - state.last_notice >= cooldown
        return "still_triggered" if due else None
    if not triggered and state.state == "triggered":
        return "resolved"
    return None


def _notification(alert: Alert, key: str, event: str, value: float | None, now: datetime) -> Notification:
    c = alert.condition
    condition = f"{c.column} {c.op} {c.threshold:g}" + (f" ({c.aggregate})" if c.aggregate != "none" else "")
    return Notification(alert.name, key, event, alert.severity, value, c.threshold, condition, now)


def _row(
    alert: Alert,
    key: str,
    previous: str,
    state: str,
    value: float | None,
    event: str | None,
    results: Mapping[str, str],
    now: datetime,
) -> dict[str, object]:
    return {
        "evaluated_at": now,
        "rule": alert.name,
        "key": key,
        "state": state,
        "previous_state": previous,
        "value": value,
        "threshold": alert.condition.threshold,
        "severity": alert.severity,
        "notification": event,
        "channel_results": list(results.items()) if results else None,
        "evaluated_date": now.date(),
    }


def _aggregate(kind: str, numbers: list[float]) -> float | None:
    if kind == "count":
        return float(len(numbers))
    if not numbers:
        return None
    return {"max": max, "min": min, "sum": sum, "avg": lambda v: sum(v) / len(v)}[kind](numbers)  # type: ignore[no-any-return, operator]


def _states_from(lake: Lake) -> dict[tuple[str, str], KeyState]:
    """Each (rule, key)'s state and last notifications, from the evaluations recorded so far."""
    delta = lake.open(ALERT_EVENTS)
    if delta is None:
        return {}
    states: dict[tuple[str, str], KeyState] = {}
    rows = pa.table(delta.to_pyarrow_table(columns=["evaluated_at", "rule", "key", "state", "notification"]))
    for row in rows.sort_by("evaluated_at").to_pylist():
        state = states.setdefault((row["rule"], row["key"]), KeyState())
        state.state = row["state"]
        if row["notification"] is not None:
            state.last_notice = row["evaluated_at"]
            if row["notification"] == "triggered":
                state.last_triggered_notice = row["evaluated_at"]
    return states
