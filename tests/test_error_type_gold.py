"""error_type_daily_gold (docs/semantics.md, "Gold: error types") against a plain-Python reference over
silver rows: hand-written awkward maps, a re-folded job, and seeded random jobs."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import duckdb
import pytest

from conftest import make_silver_job, silver_table
from vhlake.pipeline.error_types import error_type_daily

D = date(2024, 3, 15)
UPDATED = datetime(2024, 4, 1, 8, 30, tzinfo=UTC)

Row = dict[str, Any]
Key = tuple[date, str, str, str]


def at(days_before: int) -> datetime:
    return datetime.combine(D - timedelta(days=days_before), time(12), UTC)


def reference(silver: list[Row]) -> dict[Key, Row]:
    """The contract, read literally: per (date, marketplace, category or 'unknown', key), the jobs whose
    map gives the key a value > 0."""
    found: dict[Key, list[tuple[int, str]]] = {}
    for job in silver:
        day = job["created_at"].astimezone(UTC).date()
        for error_type, value in job["error_types"] or []:
            if value is not None and value > 0:
                key = (day, job["marketplace"], job["category"] or "unknown", error_type)
                found.setdefault(key, []).append((value, job["status"]))
    return {
        key: {
            "date": key[0],
            "marketplace": key[1],
            "category": key[2],
            "error_type": key[3],
            "jobs": len(hits),
            "occurrences": sum(value for value, _ in hits),
            "share_of_failed_jobs": sum(status == "failed" for _, status in hits) / len(hits),
            "year": key[0].year,
            "month": key[0].month,
        }
        for key, hits in found.items()
    }


def computed(silver: list[Row]) -> dict[Key, Row]:
    gold = error_type_daily(duckdb.connect(), silver_table(silver), updated_at=UPDATED)
    rows = {}
    for row in gold.to_pylist():
        assert row.pop("updated_at") == UPDATED
        rows[(row["date"], row["marketplace"], row["category"], row["error_type"])] = row
    assert len(rows) == gold.num_rows  # one row per key
    return rows


def awkward_silver() -> list[Row]:
    def job(job_id: str, errors: dict[str, Any] | None, **fields: Any) -> Row:
        fields.setdefault("created_at", at(0))
        return make_silver_job(
            job_id, marketplace=fields.pop("marketplace", "br"), error_types=errors, **fields
        )

    return [
        job("e1", {"schema": 2, "encoding": 1}, category="electronics", status="failed"),
        job("e2", {"schema": 3, "encoding": 0}, category="electronics"),
        job("e3", {}, category="electronics", status="failed"),  # empty map
        job("e4", None, category="electronics", status="failed"),  # failed with no map
        job("e5", {"schema": -1, "missing": 0}, status="failed"),  # NULL category, nothing positive
        job("e6", {"schema": 4}, status="running"),  # NULL category
        job(
            "e7", {"schema": 1}, category="unknown", status="failed"
        ),  # the real 'unknown' joins NULL's group
        job("e8", {"schema": 1}, category="electronics", status="failed", created_at=at(1)),
        job("e9", {"schema": 7}, category="electronics", status="failed", marketplace="mx"),
        job("e10", {"only_negative": -3, "null_count": None}, category="electronics", status="failed"),
    ]


def test_awkward_maps_match_the_reference_and_the_hand_counts() -> None:
    silver = awkward_silver()
    got = computed(silver)
    assert got == reference(silver)
    counts = {key: (row["jobs"], row["occurrences"], row["share_of_failed_jobs"]) for key, row in got.items()}
    assert counts == {
        (D, "br", "electronics", "schema"): (2, 5, 0.5),
        (D, "br", "electronics", "encoding"): (1, 1, 1.0),
        (D, "br", "unknown", "schema"): (2, 5, 0.5),
        (D - timedelta(days=1), "br", "electronics", "schema"): (1, 1, 1.0),
        (D, "mx", "electronics", "schema"): (1, 7, 1.0),
    }  # no row for a key seen only with 0, negative or NULL values


def test_a_refolded_job_gives_its_groups_the_new_answer() -> None:
    silver = awkward_silver()
    refolded = [
        make_silver_job(
            "e1", at(0), marketplace="br", category="electronics", error_types={"schema": 0, "timeout": 2}
        )
        if j["job_id"] == "e1"
        else j
        for j in silver
    ]
    # The group's silver rows alone, as the pipeline recomputes a touched group.
    group = [j for j in refolded if j["marketplace"] == "br" and j["category"] == "electronics"]
    got = computed([j for j in group if j["created_at"] == at(0)])
    assert got == {k: v for k, v in reference(refolded).items() if k[:3] == (D, "br", "electronics")}
    assert (D, "br", "electronics", "encoding") not in got
    assert got[(D, "br", "electronics", "timeout")]["share_of_failed_jobs"] == 0.0
    assert got[(D, "br", "electronics", "schema")]["occurrences"] == 3


def test_no_jobs_no_rows() -> None:
    assert error_type_daily(duckdb.connect(), silver_table([]), updated_at=UPDATED).num_rows == 0


def random_map(rng: random.Random) -> dict[str, int | None] | None:
    roll = rng.random()
    if roll < 0.15:
        return None
    if roll < 0.25:
        return {}
    keys = rng.sample(["schema", "encoding", "missing", "timeout"], rng.randint(1, 4))
    return {key: None if rng.random() < 0.05 else rng.randint(-2, 4) for key in keys}


@pytest.mark.parametrize("seed", [15, 16, 17])
def test_random_silver_matches_the_reference_and_groups_compute_alone(seed: int) -> None:
    rng = random.Random(seed)
    silver = [
        make_silver_job(
            f"r{n}",
            datetime.combine(D, time(0), UTC) - timedelta(seconds=rng.randrange(20 * 86400)),
            marketplace=rng.choice(["br", "mx"]),
            category=rng.choice([None, "unknown", "toys", "books"]),
            status=rng.choice(["success", "failed", "running"]),
            error_types=random_map(rng),
        )
        for n in range(400)
    ]
    full = computed(silver)
    assert full == reference(silver)
    one_day = D - timedelta(days=3)
    alone = computed([j for j in silver if j["created_date"] == one_day and j["marketplace"] == "mx"])
    assert alone == {key: row for key, row in full.items() if key[:2] == (one_day, "mx")}
    assert alone  # the day has rows to compare
