"""Where notifications go: the log, a generic webhook (JSON), a Slack-compatible webhook, or e-mail (SMTP).

Each send retries with backoff within its timeout and returns ``"ok"`` or the error; it never raises, so
one failing channel never keeps the others from getting their notification.
"""

from __future__ import annotations

import json
import logging
import smtplib
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

from pydantic import SecretStr

from vhlake.alerts.config import Channel

_LOG = logging.getLogger("vhlake.alerts")


@dataclass(frozen=True)
class Notification:
    rule: str
    key: str
    event: str  # triggered | still_triggered | resolved
    severity: str
    value: float | None
    threshold: float
    condition: str
    at: datetime

    def summary(self) -> str:
        verb = {"triggered": "TRIGGERED", "still_triggered": "STILL TRIGGERED", "resolved": "resolved"}[
            self.event
        ]
        value = "no data" if self.value is None else f"{self.value:g}"
        return f"[{self.severity}] {self.rule} {verb} for {self.key}: {value} ({self.condition})"

    def as_slack(self) -> dict[str, object]:
        """A Slack incoming-webhook payload."""
        return {"text": self.summary()}

    def as_json(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "key": self.key,
            "event": self.event,
            "severity": self.severity,
            "value": self.value,
            "threshold": self.threshold,
            "condition": self.condition,
            "at": self.at.isoformat(),
        }


def send(channel: Channel, notification: Notification, *, smtp_password: SecretStr | None = None) -> str:
    """Deliver ``notification``; ``"ok"`` or what went wrong (after the retries)."""
    if channel.type == "log":
        _LOG.warning(notification.summary(), extra={"alert": notification.as_json()})
        return "ok"
    last = "not attempted"
    for attempt in range(channel.retries):
        try:
            if channel.type == "email":
                _email(channel, notification, smtp_password)
            else:
                _post(
                    channel, notification.as_json() if channel.type == "webhook" else notification.as_slack()
                )
            return "ok"
        except (OSError, smtplib.SMTPException) as exc:
            last = f"{type(exc).__name__}: {exc}"
            if attempt + 1 < channel.retries:
                time.sleep(0.2 * 2**attempt)
    return f"failed after {channel.retries} attempt{'s' if channel.retries > 1 else ''}: {last}"


def _post(channel: Channel, body: dict[str, object]) -> None:
    assert channel.url is not None
    request = urllib.request.Request(  # noqa: S310 - the url comes from the operator's own alerts file
        channel.url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=channel.timeout_s) as response:  # noqa: S310
        if response.status >= 300:
            raise OSError(f"HTTP {response.status}")


def _email(channel: Channel, notification: Notification, password: SecretStr | None) -> None:
    assert channel.smtp_host is not None
    message = EmailMessage()
    message["Subject"] = notification.summary()
    message["From"] = channel.sender
    message["To"] = ", ".join(channel.to)
    message.set_content(json.dumps(notification.as_json(), indent=2))
    with smtplib.SMTP(channel.smtp_host, channel.smtp_port, timeout=channel.timeout_s) as smtp:
        if channel.starttls:
            smtp.starttls()
        if channel.username and password is not None:
            smtp.login(channel.username, password.get_secret_value())
        smtp.send_message(message)
