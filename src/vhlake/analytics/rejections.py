"""The quality-rejections panel from its statement's rows: the quarantined and rejected inputs summed per
day and per reason, each reason with its newest example cut short."""

from __future__ import annotations

from datetime import date
from typing import Any

from vhlake.analytics.models import RejectionDay, RejectionReason

MAX_EXAMPLE_CHARS = 200
"""The most characters of an input shown as an example of a quarantine or reject reason: enough to
recognise it, never a whole payload (the quarantine keeps the rest, for an operator to read)."""


def rejection_days(rows: list[dict[str, Any]]) -> list[RejectionDay]:
    """The statement's (day, source, reason, marketplace) rows summed over the marketplaces."""
    events: dict[tuple[date, str, str], int] = {}
    for r in rows:
        key = (r["date"], r["source"], r["reason"])
        events[key] = events.get(key, 0) + int(r["events"])
    return [
        RejectionDay(date=day, source=source, reason=reason, events=count)
        for (day, source, reason), count in sorted(events.items())
    ]


def rejection_reasons(rows: list[dict[str, Any]]) -> list[RejectionReason]:
    """Per (source, reason): the events summed, and the example of the group seen last."""
    reasons: dict[tuple[str, str], RejectionReason] = {}
    for r in sorted(rows, key=lambda r: r["last_seen"]):  # the newest group's example wins
        key = (r["source"], r["reason"])
        text = r["example"] or ""
        before = reasons.get(key)
        reasons[key] = RejectionReason(
            source=r["source"],
            reason=r["reason"],
            events=int(r["events"]) + (before.events if before else 0),
            last_seen=r["last_seen"],
            example=text[:MAX_EXAMPLE_CHARS],
            example_truncated=len(text) > MAX_EXAMPLE_CHARS,
        )
    return sorted(reasons.values(), key=lambda r: (-r.events, r.source, r.reason))
