"""user_engagement_daily_gold (docs/semantics.md, "Gold: user engagement") against a plain-Python reference
over silver rows: hand-written awkward jobs, seeded random ones, and recomputing only the touched pairs."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from conftest import make_silver_job, silver_table
from vhlake.pipeline.engagement import first_seen, touched_pairs, user_engagement_daily

D = date(2024, 3, 15)
UPDATED = datetime(2024, 4, 1, 8, 30, tzinfo=UTC)

Row = dict[str, Any]
Pair = tuple[str, date]


def at(days_before: int, clock: time = time(12)) -> datetime:
    return datetime.combine(D - timedelta(days=days_before), clock, UTC)


def day_of(job: Row) -> date:
    created_at: datetime = job["created_at"]
    return created_at.astimezone(UTC).date()


def reference(silver: list[Row], pairs: set[Pair] | None = None) -> dict[Pair, Row]:
    """The contract, read literally: sets of users per window, first job by created_at."""
    first: dict[tuple[str, str], datetime] = {}
    for job in silver:
        if job["user_id"] is not None:
            key = (job["marketplace"], job["user_id"])
            first[key] = min(first.get(key, job["created_at"]), job["created_at"])

    def users(market: str, since: date, until: date) -> set[str]:
        return {
            j["user_id"]
            for j in silver
            if j["marketplace"] == market and since <= day_of(j) <= until and j["user_id"] is not None
        }

    rows = {}
    for market, day in {(j["marketplace"], day_of(j)) for j in silver}:
        if pairs is not None and (market, day) not in pairs:
            continue
        jobs = sum(1 for j in silver if j["marketplace"] == market and day_of(j) == day)
        active = users(market, day, day)
        new = {u for u in active if first[(market, u)].astimezone(UTC).date() == day}
        rows[(market, day)] = {
            "date": day,
            "marketplace": market,
            "jobs": jobs,
            "active_users": len(active),
            "active_users_7d": len(users(market, day - timedelta(days=6), day)),
            "active_users_28d": len(users(market, day - timedelta(days=27), day)),
            "new_users": len(new),
            "returning_users": len(active) - len(new),
            "jobs_per_active_user": jobs / len(active) if active else None,
            "year": day.year,
            "month": day.month,
        }
    return rows


def by_pair(gold: pa.Table) -> dict[Pair, Row]:
    rows = {}
    for row in gold.to_pylist():
        assert row.pop("updated_at") == UPDATED
        rows[(row["marketplace"], row["date"])] = row
    assert len(rows) == gold.num_rows  # one row per pair
    return rows


def computed(silver: list[Row], pairs: set[Pair] | None = None) -> dict[Pair, Row]:
    """The transform over all of ``silver``, first-seen dates from all of it."""
    con = duckdb.connect()
    table = silver_table(silver)
    wanted = None if pairs is None else pairs_table(pairs)
    gold = user_engagement_daily(
        con, table, first_seen=first_seen(con, table), pairs=wanted, updated_at=UPDATED
    )
    return by_pair(gold)


def pair_set(pairs: pa.Table) -> set[Pair]:
    return set(zip(pairs["marketplace"].to_pylist(), pairs["date"].to_pylist(), strict=True))


def pairs_table(pairs: set[Pair]) -> pa.Table:
    return pa.table(
        {"marketplace": [m for m, _ in pairs], "date": pa.array([d for _, d in pairs], pa.date32())}
    )


def awkward_silver() -> list[Row]:
    job = make_silver_job
    return [
        job("j1", at(10), marketplace="br", user_id="u1"),
        job("j2", at(0), marketplace="mx", user_id="u1"),  # the same user in a second marketplace
        job("j3", at(0), marketplace="br", user_id="u1"),
        job("j4", at(0), marketplace="br"),  # no user: counts as a job, never as a user
        job("j5", at(0), marketplace="br", status="failed"),
        job("j6", at(2), marketplace="br", user_id="u2"),
        job("j8", at(6, time(0)), marketplace="br", user_id="u3"),  # first instant of the 7-day window
        job("j9", at(7, time(23, 59, 59, 999999)), marketplace="br", user_id="u4"),  # last instant before it
        job("j10", at(27, time(0)), marketplace="br", user_id="u5"),  # first instant of the 28-day window
        job("j11", at(28, time(23, 59)), marketplace="br", user_id="u6"),  # just before it
        # 23:30 at UTC-3 the day before is 02:30 UTC on D: the UTC date counts
        job("j12", datetime.combine(D - timedelta(days=1), time(23, 30), timezone(timedelta(hours=-3))),
            marketplace="mx", user_id="u7", status="running"),
        job("j13", at(0), marketplace="amazon"),  # a day with jobs and no user at all
    ]  # fmt: skip


def test_awkward_jobs_match_the_reference_and_the_hand_counts() -> None:
    silver = awkward_silver()
    got = computed(silver)
    assert got == reference(silver)
    br = got[("br", D)]
    assert (br["jobs"], br["active_users"], br["active_users_7d"], br["active_users_28d"]) == (3, 1, 3, 5)
    assert (br["new_users"], br["returning_users"], br["jobs_per_active_user"]) == (0, 1, 3.0)
    mx = got[("mx", D)]
    assert (mx["jobs"], mx["active_users"], mx["new_users"], mx["returning_users"]) == (2, 2, 2, 0)
    assert got[("amazon", D)]["active_users"] == 0
    assert got[("amazon", D)]["jobs_per_active_user"] is None
    assert got[("br", D - timedelta(days=2))]["new_users"] == 1


def test_a_late_job_makes_its_day_the_users_first_and_the_old_first_day_returning() -> None:
    silver = awkward_silver()
    late = [*silver, make_silver_job("j7", at(40), marketplace="br", user_id="u2")]
    got = computed(late)
    assert got == reference(late)
    assert got[("br", D - timedelta(days=40))]["new_users"] == 1
    assert got[("br", D - timedelta(days=2))]["new_users"] == 0
    assert got[("br", D - timedelta(days=2))]["returning_users"] == 1


def test_only_the_asked_pairs_with_jobs_are_emitted_and_their_window_suffices() -> None:
    silver = awkward_silver()
    con = duckdb.connect()
    everything = silver_table(silver)
    # Only br's rows of [D - 27, D]: what the contract asks the caller to pass for (br, D).
    window = silver_table(
        j for j in silver if j["marketplace"] == "br" and D - timedelta(days=27) <= day_of(j) <= D
    )
    asked = {("br", D), ("br", D + timedelta(days=1))}  # the second has no job: no row
    gold = user_engagement_daily(
        con, window, first_seen=first_seen(con, everything), pairs=pairs_table(asked), updated_at=UPDATED
    )
    assert by_pair(gold) == reference(silver, {("br", D)})


def test_no_silver_no_rows() -> None:
    con = duckdb.connect()
    empty = silver_table([])
    assert (
        user_engagement_daily(con, empty, first_seen=first_seen(con, empty), updated_at=UPDATED).num_rows == 0
    )


def random_silver(rng: random.Random, jobs: int, *, prefix: str = "r") -> list[Row]:
    users = [f"u{i}" for i in range(25)]
    return [
        make_silver_job(
            f"{prefix}{n}",
            datetime.combine(D, time(0), UTC) - timedelta(seconds=rng.randrange(70 * 86400)),
            marketplace=rng.choice(["br", "mx", "cl"]),
            user_id=None if rng.random() < 0.15 else rng.choice(users),
            status=rng.choice(["success", "failed", "running"]),
        )
        for n in range(jobs)
    ]


@pytest.mark.parametrize("seed", [15, 16, 17])
def test_random_silver_matches_the_reference(seed: int) -> None:
    silver = random_silver(random.Random(seed), 400)
    assert computed(silver) == reference(silver)


def incremental(
    gold: dict[Pair, Row], before: list[Row], after: list[Row], changed: set[str]
) -> dict[Pair, Row]:
    """Gold after a change, recomputing only the pairs ``touched_pairs`` names from the window the
    contract asks for; every other row is kept as it was."""
    con = duckdb.connect()
    versions = [j for j in before + after if j["job_id"] in changed]
    first_after = first_seen(con, silver_table(after))
    pairs = touched_pairs(
        con,
        silver_table(versions).select(["marketplace", "user_id", "created_date"]),
        first_before=first_seen(con, silver_table(before)),
        first_after=first_after,
    )
    touched = pair_set(pairs)
    since = min(d for _, d in touched) - timedelta(days=27)
    until = max(d for _, d in touched)
    markets = {m for m, _ in touched}
    window = silver_table(j for j in after if j["marketplace"] in markets and since <= day_of(j) <= until)
    fresh = user_engagement_daily(con, window, first_seen=first_after, pairs=pairs, updated_at=UPDATED)
    kept = {pair: row for pair, row in gold.items() if pair not in touched}
    return {**kept, **by_pair(fresh)}


def test_touched_pairs_cover_a_late_job_whose_user_was_first_seen_much_later() -> None:
    rng = random.Random(21)
    before = random_silver(rng, 300)
    gold = computed(before)
    user_first = min((j for j in before if j["marketplace"] == "br" and j["user_id"] == "u3"), key=day_of)
    late = make_silver_job(
        "late", user_first["created_at"] - timedelta(days=45), marketplace="br", user_id="u3"
    )
    after = [*before, late]

    assert incremental(gold, before, after, {"late"}) == computed(after)
    con = duckdb.connect()
    pairs = touched_pairs(
        con,
        silver_table([late]).select(["marketplace", "user_id", "created_date"]),
        first_before=first_seen(con, silver_table(before)),
        first_after=first_seen(con, silver_table(after)),
    )
    # The old first day is beyond the late job's window: only first_before reaches it.
    assert day_of(user_first) - day_of(late) > timedelta(days=27)
    assert ("br", day_of(user_first)) in pair_set(pairs)


def test_touched_pairs_cover_a_moved_and_a_deleted_job() -> None:
    rng = random.Random(22)
    before = random_silver(rng, 300)
    gold = computed(before)
    # The user's first job moves to another marketplace 30 days later; another user's first job goes.
    mover = min((j for j in before if j["user_id"] == "u5"), key=day_of)
    moved = {**mover, "marketplace": "pe", "created_at": mover["created_at"] + timedelta(days=30)}
    moved["created_date"] = day_of(moved)
    gone = min((j for j in before if j["user_id"] == "u6"), key=day_of)
    after = [moved if j is mover else j for j in before if j is not gone]

    assert incremental(gold, before, after, {mover["job_id"], gone["job_id"]}) == computed(after)


@pytest.mark.parametrize("seed", [31, 32])
def test_random_pairs_from_only_their_windows_match_the_reference(seed: int) -> None:
    """The windows are counted from intervals cut at each user's previous active date: jobs cut off
    before the earliest window (a user's earlier days unseen) must not change a pair's counts."""
    rng = random.Random(seed)
    silver = random_silver(rng, 600)
    days = sorted({day_of(j) for j in silver})
    asked = {(m, d) for m in ("br", "mx", "cl") for d in rng.sample(days[27:], 5)}
    since = min(d for _, d in asked) - timedelta(days=27)
    until = max(d for _, d in asked)
    con = duckdb.connect()
    window = silver_table(j for j in silver if since <= day_of(j) <= until)
    gold = user_engagement_daily(
        con, window, first_seen=first_seen(con, silver_table(silver)), pairs=pairs_table(asked),
        updated_at=UPDATED,
    )  # fmt: skip
    got = by_pair(gold)
    assert got == reference(silver, asked)
    assert any(row["active_users_28d"] > row["active_users_7d"] > 0 for row in got.values())
