"""A day's restatement in an answer: the statements of the per-day series add its latest restatement's
``restated_at`` and the day's ``previous_total_validations`` and ``previous_error_rate`` (NULL for a day
never restated); the answers carry them as ``restated_at`` and a :class:`Restatement` whose new numbers are
the day's own, so the change reads alone (the dashboard's tooltip) without repeating columns in SQL."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vhlake.analytics.models import Restatement

RESTATEMENT_COLUMNS = ("restated_at", "previous_total_validations", "previous_error_rate")


def restatement(row: Mapping[str, Any], error_rate: float | None) -> Restatement | None:
    """How the day of ``row`` moved at its latest restatement (None: never restated); ``error_rate`` is
    the day's now, which an overview row leaves to be computed."""
    if row["restated_at"] is None:
        return None
    return Restatement(
        previous_total_validations=row["previous_total_validations"],
        new_total_validations=row["total_validations"],
        previous_error_rate=row["previous_error_rate"],
        new_error_rate=error_rate,
    )


def day_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """A day's row (with its own ``error_rate``) as its model's fields: the restatement columns folded
    into ``restated_at`` and ``restatement``."""
    fields = {k: v for k, v in row.items() if k not in RESTATEMENT_COLUMNS}
    return fields | {"restated_at": row["restated_at"], "restatement": restatement(row, row["error_rate"])}
