"""user_engagement_daily_gold kept by the pipeline (docs/semantics.md, "Gold: user engagement"): after
every batch it equals a plain-Python reference over silver as it is, and its state (user_first_seen) the
first dates silver gives; built whole, range by range, rebuilt behind silver, after an erasure and a
replay; and a batch reads only the partitions its days and users need."""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from conftest import make_event
from test_engagement_gold import reference
from test_pipeline import Lakehouse, end, start
from vhlake.lake.tables import QUARANTINE, SILVER, USER_ENGAGEMENT_GOLD, USER_FIRST_SEEN
from vhlake.lifecycle.erasure import forget_user
from vhlake.lifecycle.maintain import Retention, maintain
from vhlake.pipeline import engagement_tables
from vhlake.pipeline.engagement_step import silver_changes
from vhlake.pipeline.engagement_tables import Reads
from vhlake.pipeline.expectations import DEFAULT_EXPECTATIONS
from vhlake.pipeline.runner import Pipeline
from vhlake.samples import SampleSpec, generate_lines

KEYS = ["date", "marketplace"]


@pytest.fixture
def house(tmp_path: Path) -> Lakehouse:
    return Lakehouse(tmp_path)


def silver_rows(house: Lakehouse) -> list[dict[str, Any]]:
    delta = house.lake.open(SILVER)
    return [] if delta is None else pa.table(delta.to_pyarrow_table()).to_pylist()


def stored(house: Lakehouse) -> dict[tuple[str, date], dict[str, Any]]:
    rows = house.table(USER_ENGAGEMENT_GOLD, KEYS)
    keyed = {(r["marketplace"], r["date"]): r for r in rows}
    assert len(keyed) == len(rows)  # one row per pair
    return keyed


def first_dates(house: Lakehouse) -> dict[tuple[str, str], date]:
    rows = house.table(USER_FIRST_SEEN, ["marketplace", "user_id"])
    return {(r["marketplace"], r["user_id"]): r["first_date"] for r in rows}


def expected_first_dates(silver: list[dict[str, Any]]) -> dict[tuple[str, str], date]:
    first: dict[tuple[str, str], date] = {}
    for job in silver:
        if job["user_id"] is not None:
            key = (job["marketplace"], job["user_id"])
            first[key] = min(first.get(key, job["created_date"]), job["created_date"])
    return first


def matches_silver(house: Lakehouse) -> dict[tuple[str, date], dict[str, Any]]:
    """Check both tables against plain Python over silver as it is; returns the engagement rows."""
    silver = silver_rows(house)
    got = stored(house)
    assert got == reference(silver)
    assert first_dates(house) == expected_first_dates(silver)
    return got


def job(name: str, ts: str, user: str | None, market: str = "br", **kw: Any) -> list[dict[str, Any]]:
    """A started and completed job."""
    return [
        start(name, ts, user_id=user, marketplace=market, **kw),
        end(name, ts.replace("T10", "T11"), user_id=user, marketplace=market, **kw),
    ]


def test_awkward_batches_match_the_reference_after_each(house: Lakehouse) -> None:
    house.run(
        *job("a1", "2026-03-10T10:00:00Z", "u1"),
        *job("a2", "2026-03-10T10:00:00Z", None),  # no user: a job, never a user
        *job("a3", "2026-03-12T10:00:00Z", "u1", market="mx"),  # the same user elsewhere: new there
        *job("a4", "2026-03-20T10:00:00Z", "u2"),
    )
    got = matches_silver(house)
    assert got[("br", date(2026, 3, 10))]["new_users"] == 1
    assert got[("mx", date(2026, 3, 12))]["new_users"] == 1

    # a late job created before u2's first one: its day becomes u2's first, 03-20 a returning day
    house.run(*job("a5", "2026-03-05T10:00:00Z", "u2"))
    got = matches_silver(house)
    assert got[("br", date(2026, 3, 20))]["returning_users"] == 1
    assert got[("br", date(2026, 3, 5))]["new_users"] == 1
    assert first_dates(house)[("br", "u2")] == date(2026, 3, 5)

    # a job re-folded: a later terminal event changes nothing but its status
    house.run(end("a1", "2026-03-10T12:00:00Z", kind="failed", user_id="u1", marketplace="br"))
    matches_silver(house)

    # a job moved: a late start with an earlier timestamp takes u2's first job to 03-01
    house.run(start("a5", "2026-03-01T09:00:00Z", user_id="u2", marketplace="br"))
    got = matches_silver(house)
    assert ("br", date(2026, 3, 5)) not in got  # its only job left the day: the row goes
    assert first_dates(house)[("br", "u2")] == date(2026, 3, 1)

    # a job that only had a terminal event (no user) gets its start, with a user, on u1's first day
    house.run(end("a6", "2026-03-10T15:00:00Z", marketplace="br", user_id=None))
    house.run(start("a6", "2026-03-10T14:00:00Z", marketplace="br", user_id="u3"))
    got = matches_silver(house)
    assert got[("br", date(2026, 3, 10))]["new_users"] == 2


def test_a_first_date_that_leaves_with_no_job_near_is_found_in_later_silver(house: Lakehouse) -> None:
    # b1 has no start yet: created at its terminal event
    house.run(end("b1", "2026-01-02T10:00:00Z", user_id="u1", marketplace="br"))
    house.run(*job("b2", "2026-03-20T10:00:00Z", "u1"))
    assert first_dates(house)[("br", "u1")] == date(2026, 1, 2)
    house.pipeline.engagement.reads = Reads()
    # b1's start, later than its terminal event, moves it after b2: u1's first date is now 03-20, far
    # past 01-02's window
    house.run(start("b1", "2026-04-01T10:00:00Z", user_id="u1", marketplace="br"))
    matches_silver(house)
    assert first_dates(house)[("br", "u1")] == date(2026, 3, 20)
    assert house.pipeline.engagement.reads.users_scanned == 1


@pytest.mark.parametrize("pairs_at_once", [None, 5], ids=["default", "five-days-a-call"])
def test_range_by_range_equals_a_first_build_and_the_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pairs_at_once: int | None
) -> None:
    if pairs_at_once is not None:  # the sample's weeks then take several calls per marketplace
        monkeypatch.setattr(engagement_tables, "_PAIRS_AT_ONCE", pairs_at_once)
    lines = generate_lines(SampleSpec(jobs=600, seed=7, duplicate_rate=0.05))["line"].to_pylist()
    (tmp_path / "ranged").mkdir()
    (tmp_path / "built").mkdir()
    ranged, built = Lakehouse(tmp_path / "ranged"), Lakehouse(tmp_path / "built")
    for first in range(0, len(lines), 211):  # jobs cut across batches: their terminals arrive later
        ranged.run(*lines[first : first + 211])
    built.ingest(*lines)
    built.pipeline = Pipeline(built.lake, rows_per_batch=500, build_bucket_rows=700)
    built.pipeline.run()
    assert built.lake.open(USER_ENGAGEMENT_GOLD).version() == 1  # type: ignore[union-attr]  # created, written once
    got = matches_silver(ranged)
    assert len(got) > 20 and sum(r["new_users"] for r in got.values()) > 10
    assert matches_silver(built) == got
    assert first_dates(built) == first_dates(ranged)


def test_a_batch_reads_only_its_days_windows_and_its_users_partitions(house: Lakehouse) -> None:
    day0 = date(2026, 1, 1)
    history = []
    for k in range(120):  # a user a day, each seen again 40 days later
        when = day0 + timedelta(days=k)
        history += job(f"h{k}", f"{when}T10:00:00Z", f"u{k}")
        history += job(f"r{k}", f"{when + timedelta(days=40)}T10:00:00Z", f"u{k}")
    house.run(*history)
    house.pipeline.engagement.reads = Reads()
    touched = date(2026, 3, 15)
    house.run(*job("new", f"{touched}T10:00:00Z", "u3"), *job("n2", f"{touched}T10:00:00Z", "fresh"))
    reads = house.pipeline.engagement.reads
    matches_silver(house)
    # silver: the windows of the rows the job touches (touched .. touched + 27), nothing else
    assert reads.silver_days == {touched + timedelta(days=k) for k in range(-27, 28)}
    # the state: u3's first-date partition (found through the key index) and the recomputed dates'
    recomputed = {touched + timedelta(days=k) for k in range(28)}
    assert reads.state_partitions - recomputed == {date(2026, 1, 4)}
    assert reads.users_scanned == 0


def test_a_lake_built_before_the_tables_existed_gets_them_from_silver(house: Lakehouse) -> None:
    house.run(*job("c1", "2026-03-10T10:00:00Z", "u1"), *job("c2", "2026-03-11T10:00:00Z", "u2"))
    expected = matches_silver(house)
    for table in (USER_ENGAGEMENT_GOLD, USER_FIRST_SEEN):
        shutil.rmtree(house.lake.table_uri(table))  # as on a lake from before them
    upgraded = Lakehouse(house.root)  # what opens the lake next: a new process
    upgraded.run()
    assert matches_silver(upgraded) == expected
    upgraded.run(*job("c3", "2026-03-09T10:00:00Z", "u2"))
    assert matches_silver(upgraded)[("br", date(2026, 3, 9))]["new_users"] == 1


def test_an_erased_user_leaves_the_engagement_rows_and_the_state(house: Lakehouse) -> None:
    house.run(
        *job("d1", "2026-03-10T10:00:00Z", "gone"),
        *job("d2", "2026-03-12T10:00:00Z", "gone"),
        *job("d3", "2026-03-12T10:00:00Z", "stays"),
    )
    assert stored(house)[("br", date(2026, 3, 12))]["active_users"] == 2
    forget_user(house.lake, house.pipeline, "gone", requested_by="test")
    got = matches_silver(house)
    assert ("br", date(2026, 3, 10)) not in got
    assert got[("br", date(2026, 3, 12))]["active_users"] == 1
    assert ("br", "gone") not in first_dates(house)


def test_replayed_events_reach_engagement(house: Lakehouse) -> None:
    house.run(
        *job("e1", "2026-03-10T10:00:00Z", "u1"),
        make_event(1, job_id="e2", event_id="e2-s", user_id="u2", marketplace="br", category=None,
                   timestamp="2026-03-08T10:00:00Z", payload="x" * (1024 * 1024 + 1)),
    )  # fmt: skip
    assert len(house.table(QUARANTINE, ["event_id"])) == 1
    lenient = [e for e in DEFAULT_EXPECTATIONS if e.name != "payload_too_large"]
    assert Pipeline(house.lake, expectations=lenient).replay_quarantine() == 1
    got = matches_silver(house)
    assert got[("br", date(2026, 3, 8))]["new_users"] == 1


def count_calls(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[int]:
    """Count calls of ``owner.name`` (the calls still happen)."""
    calls: list[int] = []
    original = getattr(owner, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def test_a_run_of_several_ranges_computes_engagement_once(
    house: Lakehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    house.run(*job("f0", "2026-03-01T10:00:00Z", "u0"))
    silver_before = house.lake.open(SILVER).version()  # type: ignore[union-attr]
    gold_before = house.lake.open(USER_ENGAGEMENT_GOLD).version()  # type: ignore[union-attr]
    for k in range(3):  # three bronze commits, one range each
        house.ingest(*job(f"f{k + 1}", f"2026-03-0{k + 2}T10:00:00Z", f"u{k % 2}"))
    house.pipeline = Pipeline(house.lake, versions_per_batch=1)
    merges = count_calls(monkeypatch, house.pipeline.engagement, "merge_sources")
    rebuilds = count_calls(monkeypatch, house.pipeline.engagement, "rebuilt")
    house.pipeline.run()
    assert house.lake.open(SILVER).version() - silver_before >= 3  # type: ignore[union-attr]  # a MERGE per range
    assert (len(merges), len(rebuilds)) == (1, 0)
    assert house.lake.open(USER_ENGAGEMENT_GOLD).version() == gold_before + 1  # type: ignore[union-attr]
    got = matches_silver(house)
    assert got[("br", date(2026, 3, 4))]["returning_users"] == 1  # u0 again, two ranges later


def test_engagement_catches_up_after_a_run_that_stopped_before_its_step(house: Lakehouse) -> None:
    house.run(*job("g1", "2026-03-10T10:00:00Z", "u1"))
    house.ingest(*job("g2", "2026-03-12T10:00:00Z", "u2"))
    house.pipeline.run(engagement=False)  # what the service does between its engagement steps
    assert ("br", date(2026, 3, 12)) not in stored(house)  # silver has it, engagement not yet
    Lakehouse(house.root).run()  # a new process: nothing to ingest, the step catches up
    assert matches_silver(house)[("br", date(2026, 3, 12))]["new_users"] == 1


def test_a_crash_between_engagement_gold_and_its_state_is_completed_once(
    house: Lakehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    house.run(*job("h1", "2026-03-10T10:00:00Z", "u1"))
    house.ingest(*job("h2", "2026-03-05T10:00:00Z", "u1"), *job("h3", "2026-03-11T10:00:00Z", "u2"))
    upsert = house.lake.upsert_once

    def crash_at_the_state(table: Any, *args: Any, **kwargs: Any) -> bool:
        if table is USER_FIRST_SEEN:
            raise RuntimeError("killed")
        return upsert(table, *args, **kwargs)

    monkeypatch.setattr(house.lake, "upsert_once", crash_at_the_state)
    with pytest.raises(RuntimeError):
        house.pipeline.run()
    monkeypatch.undo()
    assert first_dates(house)[("br", "u1")] == date(2026, 3, 10)  # the state is behind gold
    gold_version = house.lake.open(USER_ENGAGEMENT_GOLD).version()  # type: ignore[union-attr]
    Lakehouse(house.root).run()
    assert house.lake.open(USER_ENGAGEMENT_GOLD).version() == gold_version  # type: ignore[union-attr]  # not twice
    assert matches_silver(house)[("br", date(2026, 3, 5))]["new_users"] == 1
    assert first_dates(house)[("br", "u1")] == date(2026, 3, 5)


def test_the_step_reads_only_the_changed_jobs_from_silvers_change_data(house: Lakehouse) -> None:
    house.run(*(e for k in range(30) for e in job(f"i{k}", "2026-03-10T10:00:00Z", f"u{k}")))
    since = house.lake.open(SILVER).version()  # type: ignore[union-attr]
    house.run(end("i7", "2026-03-10T12:00:00Z", kind="failed", user_id="u7", marketplace="br"))
    silver = house.lake.open(SILVER)
    assert silver is not None
    changes = silver_changes(house.lake, silver, since=since, until=silver.version())
    assert changes is not None
    # the job's row before and after, not the 29 others its file holds
    assert set(changes.rows["user_id"].to_pylist()) == {"u7"}
    assert not changes.expired
    matches_silver(house)


def test_silver_expiring_moves_first_dates_to_what_silver_still_holds(house: Lakehouse) -> None:
    house.run(
        *job("k1", "2025-01-02T10:00:00Z", "u1"),
        *job("k2", "2026-03-10T10:00:00Z", "u1"),  # u1 comes back after their first job expired
        *job("k3", "2025-01-03T10:00:00Z", "u2"),  # u2 never comes back
        *job("k4", "2025-01-03T10:00:00Z", "u3", market="mx"),
        *job("k5", "2025-06-01T10:00:00Z", "u3", market="mx"),
        *job("k6", "2025-06-01T10:00:00Z", "u4", market="mx"),  # first date kept
    )
    before = stored(house)
    assert before[("br", date(2026, 3, 10))]["new_users"] == 0
    maintain(house.lake, Retention(), today=date(2026, 3, 20))  # silver keeps 365 days: 2025-01-0x go
    silver = silver_rows(house)
    assert all(r["created_date"] > date(2025, 3, 20) for r in silver)
    house.run()
    # the state is what silver gives, as a rebuild would make it: u2 has left it
    assert first_dates(house) == expected_first_dates(silver)
    assert first_dates(house) == {
        ("br", "u1"): date(2026, 3, 10),
        ("mx", "u3"): date(2025, 6, 1),
        ("mx", "u4"): date(2025, 6, 1),
    }
    got = stored(house)
    expected = reference(silver)
    # the rows of the new first dates are recomputed: u1 is new again on 03-10, u3 on 06-01
    assert got[("br", date(2026, 3, 10))] == expected[("br", date(2026, 3, 10))]
    assert got[("br", date(2026, 3, 10))]["new_users"] == 1
    assert got[("mx", date(2025, 6, 1))]["new_users"] == 2
    # the expired days' rows stay (gold keeps 730 days), as they were
    for key in [("br", date(2025, 1, 2)), ("br", date(2025, 1, 3)), ("mx", date(2025, 1, 3))]:
        assert got[key] == before[key]
    # a later batch starts from the moved first dates: u1's job on 03-12 is returning
    house.run(*job("k7", "2026-03-12T10:00:00Z", "u1"))
    assert stored(house)[("br", date(2026, 3, 12))]["returning_users"] == 1
    assert first_dates(house) == expected_first_dates(silver_rows(house))


def test_a_crash_between_expired_gold_and_its_state_is_completed(
    house: Lakehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    house.run(*job("q1", "2025-01-02T10:00:00Z", "u1"), *job("q2", "2026-03-10T10:00:00Z", "u1"))
    maintain(house.lake, Retention(), today=date(2026, 3, 20))
    real = house.lake.upsert_once

    def crash_on_state(table: Any, *args: Any, **kwargs: Any) -> bool:
        if table.name == USER_FIRST_SEEN.name:
            raise OSError("power cut")
        return real(table, *args, **kwargs)

    monkeypatch.setattr(house.lake, "upsert_once", crash_on_state)
    with pytest.raises(OSError, match="power cut"):
        house.pipeline.update_engagement()
    assert first_dates(house)[("br", "u1")] == date(2025, 1, 2)  # the state did not move yet
    monkeypatch.setattr(house.lake, "upsert_once", real)
    house.pipeline.update_engagement()
    assert first_dates(house) == {("br", "u1"): date(2026, 3, 10)}
    assert stored(house)[("br", date(2026, 3, 10))]["new_users"] == 1
