"""An analytics answer: the data and its freshness (the newest event it includes, and the lag behind now),
so a client never mistakes stale numbers for current ones; a repository's error becomes a problem."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from vhlake.analytics.models import Freshness
from vhlake.analytics.repository import AnalyticsRepository
from vhlake.api.problems import RETRY_AFTER, Problem
from vhlake.result import Err, Ok, Result

T = TypeVar("T")


class Answer(BaseModel, Generic[T]):
    """An analytics answer and how current it is."""

    data: T
    freshness: Freshness


def answer(repository: AnalyticsRepository, result: Result[T], marketplace: str | None) -> Answer[T]:
    """``result`` with the freshness of ``marketplace`` (or of all it sees) in ``repository``, the view
    that answered it."""
    data = unwrap(result)
    return Answer[Any](data=data, freshness=unwrap(repository.get_freshness(marketplace)))


def unwrap(result: Result[T]) -> T:
    if isinstance(result, Ok):
        return result.value
    assert isinstance(result, Err)
    status = {"invalid_argument": 422, "forbidden": 403, "query": 503}[result.kind]
    raise Problem(
        status,
        {422: "invalid request", 403: "not allowed", 503: "analytics unavailable"}[status],
        result.message,
        headers=RETRY_AFTER if status == 503 else None,
    )
