"""Storage tiers by partition age: which of a table's files belong in which tier, planned without I/O.

A partition is hot while recent, then warm, then cold, by its age: today minus the partition's date (the
table's ``date_column`` when it partitions the table; for tables partitioned by ``year``/``month``, the
month's last day, so a month moves once its newest day is old enough). Files of tables partitioned by no
date stay hot: their files mix old and new rows. "Older than N days" means what retention means by it:
a date before today minus N.

Only the files of a table's current version are planned. A file compaction (or an erasure) rewrote is a
new object, in the store's default class, and the next pass moves it again; the files it replaced wait for
vacuum where they are (moving a file out of hot storage starts a minimum billed duration: 30 days for S3
Standard-IA, 90 for Glacier Instant Retrieval, longer than vacuum keeps them). Objects smaller than the
policy's minimum stay hot: S3 bills an infrequent-access object as 128 KiB at least, so moving a smaller
one costs more than it saves.
"""

from __future__ import annotations

import calendar
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date

from vhlake.errors import ConfigError
from vhlake.lake.object_tiers import StoredObject, Tier
from vhlake.lake.tables import (
    BRONZE,
    ERROR_TYPE_GOLD,
    GOLD,
    GOLD_RESTATEMENTS,
    INGEST_LEDGER,
    JOB_EVENTS,
    QUARANTINE,
    REJECTED,
    SILVER,
    USER_ENGAGEMENT_GOLD,
    TableDef,
)

TIERS: tuple[Tier, ...] = ("hot", "warm", "cold")
# S3's smallest billed size for Standard-IA and Glacier Instant Retrieval objects.
S3_MIN_BILLED_BYTES = 128 * 1024


@dataclass(frozen=True)
class TierAges:
    """After how many days a partition goes warm, and cold (None: never)."""

    warm_days: int | None = None
    cold_days: int | None = None

    def __post_init__(self) -> None:
        for days in (self.warm_days, self.cold_days):
            if days is not None and days < 0:
                raise ConfigError(f"a storage tier's age must be 0 days or more, not {days}")
        if self.warm_days is not None and self.cold_days is not None and self.cold_days < self.warm_days:
            raise ConfigError(
                f"cold after {self.cold_days} days comes before warm after {self.warm_days}: "
                "a partition goes cold after it went warm"
            )

    def tier_for(self, age_days: int) -> Tier:
        """The tier of a partition ``age_days`` old (today minus its date)."""
        if self.cold_days is not None and age_days > self.cold_days:
            return "cold"
        if self.warm_days is not None and age_days > self.warm_days:
            return "warm"
        return "hot"


ALWAYS_HOT = TierAges()


@dataclass(frozen=True)
class TierPolicy:
    """The ages per layer (docs/operations.md, "Storage tiers"), and the smallest object worth moving."""

    bronze: TierAges = TierAges(warm_days=30)
    silver: TierAges = TierAges(warm_days=90, cold_days=180)
    gold: TierAges = ALWAYS_HOT
    min_object_bytes: int = S3_MIN_BILLED_BYTES

    def tables(self) -> dict[str, TierAges]:
        """Ages by table name. A table not named here stays hot: the ops tables, the ML tables (not
        partitioned by a date), and ``user_first_seen``, whose old partitions the engagement step reads
        whenever an old user comes back."""
        layers = (
            (self.bronze, (BRONZE, REJECTED, INGEST_LEDGER, QUARANTINE)),
            (self.silver, (SILVER, JOB_EVENTS)),
            (self.gold, (GOLD, ERROR_TYPE_GOLD, USER_ENGAGEMENT_GOLD, GOLD_RESTATEMENTS)),
        )
        return {table.name: ages for ages, tables in layers for table in tables}

    def ages(self, table: TableDef) -> TierAges:
        return self.tables().get(table.name, ALWAYS_HOT)


def partition_date(table: TableDef, values: Mapping[str, object]) -> date | None:
    """The date a file's partition is aged by, from its partition values (None: not partitioned by a date)."""
    column = table.date_column
    if column is not None and column in table.partition_by:
        value = values.get(column)
        if isinstance(value, date):
            return value
        return None if value is None else date.fromisoformat(str(value))
    if {"year", "month"} <= set(table.partition_by):
        year, month = values.get("year"), values.get("month")
        if year is None or month is None:
            return None
        y, m = int(str(year)), int(str(month))
        return date(y, m, calendar.monthrange(y, m)[1])
    return None


@dataclass(frozen=True)
class DataFile:
    """One file of a table's current version: its path (relative to the table, as the store names it),
    its partition's folder and date."""

    path: str
    partition: str
    day: date | None


@dataclass(frozen=True)
class FileMove:
    path: str
    partition: str
    day: date
    size: int
    from_tier: Tier
    to_tier: Tier


@dataclass(frozen=True)
class PartitionMove:
    """What is recorded of a pass: per partition and destination tier, never per file."""

    partition: str
    day: date
    tier: Tier
    files: int
    bytes: int


@dataclass
class TierPlan:
    moves: list[FileMove] = field(default_factory=list)
    held: Counter[str] = field(default_factory=Counter)  # reason -> files left where they are

    def by_partition(self) -> list[PartitionMove]:
        totals: dict[tuple[str, date, Tier], list[int]] = {}
        for move in self.moves:
            counts = totals.setdefault((move.partition, move.day, move.to_tier), [0, 0])
            counts[0] += 1
            counts[1] += move.size
        return [
            PartitionMove(partition, day, tier, files, size)
            for (partition, day, tier), (files, size) in sorted(totals.items())
        ]


def plan_moves(
    files: Iterable[DataFile],
    stored: Mapping[str, StoredObject],
    ages: TierAges,
    *,
    today: date,
    min_object_bytes: int,
    max_object_bytes: int | None = None,
) -> TierPlan:
    """Which of ``files`` go to which tier: each to the tier its partition's age calls for, from the tier
    the store says it is in. A file already there, without a date, in a class vhlake does not manage,
    too small to be worth moving out of hot storage, or too large for the store's move, stays."""
    plan = TierPlan()
    for file in files:
        if file.day is None:
            continue
        target = ages.tier_for((today - file.day).days)
        found = stored.get(file.path)
        if found is None:
            plan.held["not found in the store"] += 1
        elif found.tier is None:
            plan.held[f"in {found.storage_class}, a class vhlake does not manage"] += 1
        elif found.tier == target:
            continue
        elif target != "hot" and found.size < min_object_bytes:
            plan.held[f"smaller than {min_object_bytes:,} bytes: kept hot"] += 1
        elif max_object_bytes is not None and found.size > max_object_bytes:
            plan.held[f"larger than {max_object_bytes:,} bytes, the store's largest in-place move"] += 1
        else:
            plan.moves.append(FileMove(file.path, file.partition, file.day, found.size, found.tier, target))
    return plan
