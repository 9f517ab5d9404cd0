"""The data's quality: the latest quality measurements, what was quarantined or rejected and why
(``GET /v1/quality``, ``GET /v1/quality/rejections``), and the replay that re-checks the quarantine
(``POST /v1/quality/replay``, admin keys that see every marketplace)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from vhlake.analytics.models import QualityMeasure, QualityRejections
from vhlake.api.answer import Answer, answer
from vhlake.api.dependencies import Admin, Reader, Services, VisibleRepository
from vhlake.api.keys import ApiKey
from vhlake.api.problems import Problem
from vhlake.lake.delta import CommitConflict
from vhlake.lake.writer_lock import DerivedTablesBusy
from vhlake.result import Ok

# How long a replay waits for a pipeline run (or another replay) to finish before answering 409: runs of
# a streaming service take a second or two; a first build or a long backlog takes longer, and the client
# is better told to retry than held.
REPLAY_WAIT_S = 10.0

router = APIRouter()


class ReplayRequest(BaseModel):
    """Which quarantined events to re-check: one reason (a rule's name), or every reason when absent."""

    reason: str | None = Field(default=None, min_length=1, max_length=200)


class Replayed(BaseModel):
    reason: str | None
    replayed: int


def may_replay(key: ApiKey) -> bool:
    """A replay re-checks the whole quarantine, every marketplace's events: admin keys that see them all."""
    return key.scope == "admin" and key.marketplaces is None


@router.get("/v1/quality", response_model=Answer[list[QualityMeasure]])
def quality(
    repository: VisibleRepository, hours: Annotated[int, Query(ge=1, le=8784)] = 24
) -> Answer[list[QualityMeasure]]:
    """The latest data-quality measurements (keys restricted to marketplaces may not read them)."""
    return answer(repository, repository.get_quality(hours=hours), None)


@router.get("/v1/quality/rejections", response_model=Answer[QualityRejections])
def quality_rejections(
    key: Reader,
    repository: VisibleRepository,
    deps: Services,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
    end: date | None = None,
) -> Answer[QualityRejections]:
    """Events quarantined and inputs rejected over ``days`` days of ingestion ending today (or
    ``end``): per day and reason, and per reason a short example (untrusted text). A key restricted
    to marketplaces sees its marketplaces' quarantined events and no rejects (they name none)."""
    result = repository.get_quality_rejections(days, end_date=end)
    if isinstance(result, Ok):  # a copy: the repository's answers are shared between keys
        result = Ok(
            result.value.model_copy(update={"can_replay": may_replay(key) and deps.replay is not None})
        )
    return answer(repository, result, None)


@router.post("/v1/quality/replay", response_model=Replayed)
async def quality_replay(
    request: Request, key: Admin, deps: Services, body: ReplayRequest | None = None
) -> Replayed:
    """Re-check the quarantined events (of one ``reason``, or all) with the pipeline's current rules;
    those that pass are folded into silver and gold and leave the quarantine. Admin keys that see
    every marketplace only. Idempotent; 409 while the pipeline (or another replay) is writing."""
    if not may_replay(key):
        raise Problem(
            403,
            "not allowed",
            "replaying the quarantine needs an admin key that sees every marketplace",
        )
    if deps.replay is None:
        raise Problem(503, "replay unavailable", "this API was started without a pipeline to replay with")
    reason = body.reason if body else None
    try:
        replayed = await run_in_threadpool(deps.replay, reason=reason, wait_s=REPLAY_WAIT_S)
    except (DerivedTablesBusy, CommitConflict) as exc:  # a replay is idempotent: retrying is safe
        raise Problem(409, "the lake is busy", f"{exc}: retry shortly", headers={"Retry-After": "5"}) from exc
    request.state.outcome = f"replayed {replayed} ({'all reasons' if reason is None else reason})"
    return Replayed(reason=reason, replayed=replayed)
