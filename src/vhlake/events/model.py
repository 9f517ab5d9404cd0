"""The wire contract of a ValidaHub validation event (``vhlake schema`` prints it as JSON Schema).

Producers may add payload fields: the payload model keeps unknown fields instead of rejecting them, so a newer
producer never breaks an older vhlake.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

EventType = Literal["validation_started", "validation_completed", "validation_failed"]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)


class ValidationPayload(BaseModel):
    """What a validation job reports; every field is optional and unknown fields are kept."""

    model_config = ConfigDict(extra="allow")

    ruleset: str | None = None
    total_rows: int | None = Field(default=None, ge=0)
    valid_rows: int | None = Field(default=None, ge=0)
    invalid_rows: int | None = Field(default=None, ge=0)
    error_types: dict[str, int] | None = None
    processing_time_ms: int | None = None
    file_size_bytes: int | None = Field(default=None, ge=0)
    s3_path: str | None = None


class ValidationEvent(BaseModel):
    """One event of a validation job, as ValidaHub's API and workers emit it.

    Example:
        >>> event = ValidationEvent(
        ...     event_type="validation_started", job_id="job-1", user_id="u-1",
        ...     marketplace="mercado_livre", category="eletronicos",
        ...     timestamp="2026-11-27T09:00:00-03:00")
        >>> event.timestamp.isoformat()
        '2026-11-27T12:00:00+00:00'
    """

    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(default_factory=lambda: str(uuid.uuid4()), min_length=1)
    event_type: EventType
    timestamp: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    job_id: str = Field(min_length=1)
    user_id: str | None = None
    marketplace: str = Field(min_length=1)
    category: str | None = None
    payload: ValidationPayload = Field(default_factory=ValidationPayload)

    @field_validator("timestamp")
    @classmethod
    def _normalise_to_utc(cls, value: datetime) -> datetime:
        try:
            return value.astimezone(UTC)
        except OverflowError as exc:  # e.g. 9999-12-31T23:59:59-14:00 is in the year 10000 in UTC
            raise ValueError("the timestamp is outside the years 1 to 9999 once in UTC") from exc

    def to_json_bytes(self) -> bytes:
        """The event as the wire JSON (what goes into Kafka or the embedded log)."""
        return self.model_dump_json(exclude_none=False).encode()


def event_json_schema() -> dict[str, Any]:
    """The JSON Schema of the wire contract (``vhlake schema``)."""
    schema = ValidationEvent.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "ValidaHub validation event"
    return schema
