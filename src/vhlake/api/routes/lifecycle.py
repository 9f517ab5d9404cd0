"""What the lake costs to store (``GET /v1/lifecycle/costs``): the store's bytes per layer and storage
tier and their monthly cost, next to the same bytes all hot, for admin keys that see every marketplace
(the figures are the whole lake's)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from vhlake.api.dependencies import Admin, Services
from vhlake.api.problems import Problem
from vhlake.errors import ConfigError
from vhlake.lifecycle.costs import StorageCosts

router = APIRouter()


@router.get("/v1/lifecycle/costs", response_model=StorageCosts)
async def lifecycle_costs(key: Admin, deps: Services) -> StorageCosts:
    """Every object the store holds under the lake, per layer and tier (hot, warm, cold), priced per
    GB-month (``VHLAKE_PRICE_*_GB_MONTH``), and the cost of the same bytes all hot. It lists the store:
    seconds on a large object-store lake."""
    if key.marketplaces is not None:
        raise Problem(
            403, "not allowed", "the lake's storage costs need an admin key that sees every marketplace"
        )
    if deps.storage_costs is None:
        raise Problem(503, "costs unavailable", "this API was started without the lake's store to list")
    try:
        return await run_in_threadpool(deps.storage_costs)  # a store error is a LakeError: 503, retry later
    except ConfigError as exc:  # the store's SDK is not installed
        raise Problem(503, "costs unavailable", str(exc)) from exc
