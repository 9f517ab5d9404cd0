"""What one API request may be and do: body size, events per request, nesting and string sizes per event,
how long the body may take to arrive, and each key's request rate.

The numbers come from the settings (``VHLAKE_API_*``, README "Settings"). They are the API's own and
stricter than the pipeline's, which bounds only a payload's size (``payload_too_large``, 1 MiB): that rule
is checked here too, so nothing the API accepts is quarantined for its size further down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vhlake.settings import Settings


@dataclass(frozen=True)
class ApiLimits:
    max_body_bytes: int = 5 * 1024 * 1024
    max_events: int = 10_000
    max_depth: int = 16  # objects and arrays inside one another in one event, the event itself counting 1
    max_string_chars: int = 2048  # any string in an event, field names included
    max_error_types: int = 256  # entries of payload.error_types
    body_timeout_s: float = 30.0  # from the first read of the body to its last byte
    rate_per_s: float = 50.0  # requests per second each key may sustain ...
    rate_burst: int = 100  # ... and make at once

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiLimits:
        return cls(
            max_body_bytes=settings.api_max_body_bytes,
            max_events=settings.api_max_events,
            max_depth=settings.api_max_depth,
            max_string_chars=settings.api_max_string_chars,
            max_error_types=settings.api_max_error_types,
            body_timeout_s=settings.api_body_timeout_s,
            rate_per_s=settings.api_rate_per_s,
            rate_burst=settings.api_rate_burst,
        )
