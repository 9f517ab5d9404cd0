"""Publishing (``POST /v1/events``, ingest keys): one event or a batch, each judged on its own against
the body's field limits, the event contract and the key's marketplaces, the accepted ones stored durably
by the publisher."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ValidationError

from vhlake.api.body import field_limit_breach, split_events
from vhlake.api.dependencies import Ingester, Limits, Services
from vhlake.api.keys import ApiKey
from vhlake.api.limits import ApiLimits
from vhlake.api.problems import Problem
from vhlake.events.model import ValidationEvent

# Events validated per trip to the threadpool: between trips the event loop has the GIL to itself, so
# other requests wait for one slice (milliseconds), not for the whole batch (a second for 10,000).
_EVENTS_PER_SLICE = 250

router = APIRouter()


class Rejected(BaseModel):
    index: int
    error: str


class Accepted(BaseModel):
    accepted: int
    rejected: int
    outboxed: int
    errors: list[Rejected]


@router.post("/v1/events", status_code=202, response_model=Accepted)
async def events(request: Request, key: Ingester, deps: Services, limits: Limits) -> Accepted:
    """One event or a JSON array of them, each judged on its own: a bad one is rejected with a
    reason and never sinks the others. 202 once the accepted ones are stored durably (in the event
    log, or the outbox while Kafka is down); 422 when none is."""
    body = await _read_limited(request, limits.max_body_bytes)
    judged = await run_in_threadpool(split_events, body, limits)
    accepted: list[tuple[int, ValidationEvent]] = []
    errors = [Rejected(index=i, error=reason) for i, reason in judged.refused]
    for start in range(0, len(judged.events), _EVENTS_PER_SLICE):
        chunk = judged.events[start : start + _EVENTS_PER_SLICE]
        await run_in_threadpool(_validate, chunk, key, limits, accepted, errors)
    deliveries = (
        await run_in_threadpool(deps.publisher.send_batch, [e for _, e in accepted]) if accepted else []
    )
    errors += [
        Rejected(index=i, error=d.error or "not published")
        for (i, _), d in zip(accepted, deliveries, strict=True)
        if d.status == "failed"
    ]
    errors.sort(key=lambda r: r.index)
    stored = sum(d.status != "failed" for d in deliveries)
    if accepted and not stored:
        raise Problem(503, "the event log refused the events", errors[0].error)
    if not stored:
        raise Problem(
            422 if judged.count else 400,
            "no event accepted",
            errors[0].error if errors else "the body holds no event",
            extensions={"errors": [e.model_dump() for e in errors[:100]]},
        )
    return Accepted(
        accepted=stored,
        rejected=judged.count - stored,
        outboxed=sum(d.status == "outboxed" for d in deliveries),
        errors=errors[:100],
    )


def _validate(
    items: list[tuple[int, Any]],
    key: ApiKey,
    limits: ApiLimits,
    accepted: list[tuple[int, ValidationEvent]],
    errors: list[Rejected],
) -> None:
    """Judge each parsed item alone: the field limits, the contract, the key's marketplaces."""
    for i, item in items:
        breach = field_limit_breach(item, limits)
        if breach is not None:
            errors.append(Rejected(index=i, error=breach))
            continue
        try:
            event = ValidationEvent.model_validate(item)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "event"
            errors.append(Rejected(index=i, error=f"{where}: {first['msg']}"))
            continue
        if not key.sees(event.marketplace):
            errors.append(
                Rejected(index=i, error=f"this key may not publish for marketplace {event.marketplace!r}")
            )
            continue
        accepted.append((i, event))


async def _read_limited(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise Problem(413, "request body too large", f"at most {max_bytes:,} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise Problem(413, "request body too large", f"at most {max_bytes:,} bytes")
    return bytes(body)
