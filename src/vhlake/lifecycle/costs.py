"""What the lake costs to store: every object the store holds under the lake, per layer and tier, priced
per GB-month, next to what the same bytes would cost all hot.

The objects are listed from the store itself, not read from the Delta logs: the bill covers what is
there, so the Delta logs and checkpoints, the change data, the files old versions still need until vacuum,
and the lake's other folders (the embedded event log, the outbox, indexes) count as well. A layer is the
lake's first folder (``bronze``, ``silver``, ``gold``, ``ops``, ``_eventlog``...). A GB is 2^30 bytes, as
the providers bill. Requests, retrievals and minimum durations are not in it: storage only.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from vhlake.lake.delta import Lake
from vhlake.lake.object_tiers import ObjectTiers

_GB = 1024**3
_ORDER = {"hot": 0, "warm": 1, "cold": 2}


class TierPrices(BaseModel):
    """USD per GB-month of each tier (defaults: S3 us-east-1 list prices, docs/operations.md)."""

    hot: float = Field(default=0.023, ge=0)
    warm: float = Field(default=0.0125, ge=0)
    cold: float = Field(default=0.004, ge=0)

    def of(self, tier: str) -> float | None:
        """The price of ``tier`` (None: not one of the three)."""
        return {"hot": self.hot, "warm": self.warm, "cold": self.cold}.get(tier)


class StorageCostRow(BaseModel):
    layer: str
    tier: str  # hot | warm | cold, or "other": a class vhlake does not manage (not priced)
    storage_class: str
    objects: int
    bytes: int
    monthly_usd: float | None  # None: not priced
    all_hot_usd: float  # the same bytes in the hot tier


class StorageCosts(BaseModel):
    provider: str  # s3 | azure | gcs | local
    rows: list[StorageCostRow]
    objects: int
    bytes: int
    monthly_usd: float  # of the priced rows
    all_hot_monthly_usd: float  # every byte in the hot tier
    unpriced_bytes: int  # in classes vhlake does not manage
    prices: TierPrices


def storage_costs(lake: Lake, store: ObjectTiers, prices: TierPrices) -> StorageCosts:
    """List every object under the lake and price it by its tier."""
    totals: dict[tuple[str, str, str], list[int]] = {}
    for found in store.list(lake.root_uri):
        layer = found.key.split("/", 1)[0] if "/" in found.key else "(lake root)"
        counts = totals.setdefault((layer, found.tier or "other", found.storage_class), [0, 0])
        counts[0] += 1
        counts[1] += found.size
    rows = [
        StorageCostRow(
            layer=layer,
            tier=tier,
            storage_class=storage_class,
            objects=objects,
            bytes=size,
            monthly_usd=_monthly(size, prices.of(tier)),
            all_hot_usd=size / _GB * prices.hot,
        )
        for (layer, tier, storage_class), (objects, size) in sorted(
            totals.items(), key=lambda item: (item[0][0], _ORDER.get(item[0][1], 3), item[0][2])
        )
    ]
    return StorageCosts(
        provider=store.provider,
        rows=rows,
        objects=sum(row.objects for row in rows),
        bytes=sum(row.bytes for row in rows),
        monthly_usd=sum(row.monthly_usd or 0.0 for row in rows),
        all_hot_monthly_usd=sum(row.all_hot_usd for row in rows),
        unpriced_bytes=sum(row.bytes for row in rows if row.monthly_usd is None),
        prices=prices,
    )


def _monthly(size: int, price: float | None) -> float | None:
    return None if price is None else size / _GB * price
