"""The alert rules file (``alerts.yaml``): channels, and alerts made of a SQL query and a condition.

```yaml
channels:
  ops-webhook: {type: webhook, url: "http://127.0.0.1:9000/hook"}
alerts:
  - name: high_error_rate
    query: SELECT marketplace, error_rate FROM marketplace_daily_metrics_gold WHERE date = current_date()
    condition: {column: error_rate, op: ">", threshold: 0.1}
    key: marketplace
    schedule: every 5m
    cooldown: 1h
    channels: [ops-webhook]
```
Without a file, the seed's two rules (``high_error_rate``, ``processing_delays``) and
``reconciliation_imbalance`` apply on the log channel.
Every problem is reported as one line naming the rule.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vhlake.errors import ConfigError

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
_DURATION = re.compile(r"(\d+)\s*(s|m|h|d)")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """``30s``, ``5m``, ``1h``, ``2d``."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise ValueError(f"not a duration: {text!r} (use 30s, 5m, 1h or 2d)")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


class Channel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["log", "webhook", "slack", "email"]
    url: str | None = None
    timeout_s: float = Field(default=5.0, gt=0)
    retries: int = Field(default=3, ge=1, le=10)
    smtp_host: str | None = None
    smtp_port: int = 25
    starttls: bool = False
    username: str | None = None
    sender: str = "vhlake@localhost"
    to: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _complete(self) -> Channel:
        if self.type in ("webhook", "slack") and not self.url:
            raise ValueError(f"a {self.type} channel needs a url")
        if self.type == "email" and (not self.smtp_host or not self.to):
            raise ValueError("an email channel needs smtp_host and to")
        return self


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    column: str
    op: Literal[">", ">=", "<", "<=", "==", "!="]
    threshold: float
    # none: each row is checked (per key); otherwise the rows are reduced to one value first
    aggregate: Literal["none", "max", "min", "avg", "sum", "count"] = "none"

    def holds(self, value: float | None) -> bool:
        return value is not None and OPERATORS[self.op](value, self.threshold)


class Alert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    query: str
    condition: Condition
    key: str | None = None
    schedule: str = "every 5m"
    severity: Literal["info", "warning", "critical"] = "warning"
    cooldown: str = "1h"
    channels: list[str] = Field(default_factory=lambda: ["log"])
    # with no rows: ok (every key recovers), keep (nothing changes) or alert (key * triggers)
    no_data: Literal["ok", "keep", "alert"] = "ok"

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        next_run(value, datetime(2026, 1, 1))
        return value

    @field_validator("cooldown")
    @classmethod
    def _cooldown(cls, value: str) -> str:
        parse_duration(value)
        return value

    @property
    def cooldown_delta(self) -> timedelta:
        return parse_duration(self.cooldown)


class AlertsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channels: dict[str, Channel] = Field(default_factory=dict)
    alerts: list[Alert]

    @model_validator(mode="after")
    def _references(self) -> AlertsConfig:
        self.channels.setdefault("log", Channel(type="log"))
        names = [a.name for a in self.alerts]
        for name in {n for n in names if names.count(n) > 1}:
            raise ValueError(f"alert {name!r} is defined twice")
        for alert in self.alerts:
            unknown = [c for c in alert.channels if c not in self.channels]
            if unknown:
                raise ValueError(f"alert {alert.name!r}: unknown channel {', '.join(unknown)}")
        return self


def next_run(schedule: str, after: datetime) -> datetime:
    """The first run time of ``schedule`` (``every 5m`` or a cron line) strictly after ``after``."""
    text = schedule.strip()
    if text.startswith("every "):
        return after + parse_duration(text.removeprefix("every "))
    from croniter import croniter

    if not croniter.is_valid(text):
        raise ValueError(f"not a schedule: {schedule!r} (use 'every 5m' or a cron line like '*/5 * * * *')")
    moment: datetime = croniter(text, after).get_next(datetime)
    return moment


SEED_RULES = """
alerts:
  - name: high_error_rate
    query: >-
      SELECT marketplace, sum(failed_validations) / sum(total_validations) AS error_rate
      FROM marketplace_daily_metrics_gold WHERE date = current_date() GROUP BY marketplace
    condition: {column: error_rate, op: ">", threshold: 0.1}
    key: marketplace
    schedule: every 5m
    severity: critical
  - name: processing_delays
    query: >-
      SELECT marketplace,
             sum(avg_processing_time_ms * (successful_validations + failed_validations))
               / sum(successful_validations + failed_validations) AS avg_processing_time_ms
      FROM marketplace_daily_metrics_gold WHERE date = current_date() GROUP BY marketplace
    condition: {column: avg_processing_time_ms, op: ">", threshold: 5000}
    key: marketplace
    schedule: every 5m
  - name: reconciliation_imbalance
    query: >-
      SELECT imbalances FROM reconciliation
      WHERE reconciled_date >= date_sub(current_date(), 2)
      ORDER BY reconciled_at DESC LIMIT 1
    condition: {column: imbalances, op: ">", threshold: 0}
    schedule: every 15m
    severity: critical
"""


def load_config(path: Path | None) -> AlertsConfig:
    """The rules in ``path`` (the default rules when None); any problem is one ConfigError line."""
    where = "the seed rules" if path is None else str(path)
    try:
        text = SEED_RULES if path is None else path.read_text(encoding="utf-8")
        raw = yaml.safe_load(text)
    except OSError as exc:
        raise ConfigError(f"{where}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{where}:{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with 'alerts' (and 'channels')")
    try:
        return AlertsConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_first_problem(raw, exc)}") from exc


def _first_problem(raw: dict[str, object], exc: ValidationError) -> str:
    error = exc.errors()[0]
    loc = list(error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if len(loc) >= 2 and loc[0] == "alerts" and isinstance(loc[1], int):
        alerts = raw.get("alerts")
        name = (
            alerts[loc[1]].get("name", f"#{loc[1] + 1}")
            if isinstance(alerts, list) and isinstance(alerts[loc[1]], dict)
            else f"#{loc[1] + 1}"
        )
        field = ".".join(str(p) for p in loc[2:]) or "rule"
        return f"alert {name!r}: {field}: {message}"
    return f"{'.'.join(str(p) for p in loc) or 'file'}: {message}"
