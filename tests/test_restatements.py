"""gold_restatements (docs/semantics.md, "Late data and restatements"): every change of a gold group already
written is recorded once, with its values before and after as gold held them, and nothing else is.

Events are dated from a fixed clock (``BASE``); what the pipeline stamps (``updated_at``, ``restated_at``) is
read back from gold, never assumed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from conftest import make_event, rows
from test_pipeline import Lakehouse, end, start
from vhlake.lake.delta import Lake
from vhlake.lake.tables import BRONZE, GOLD, GOLD_RESTATEMENTS, SILVER
from vhlake.lifecycle.erasure import forget_user
from vhlake.lifecycle.lineage import lineage
from vhlake.lifecycle.maintain import Retention, maintain
from vhlake.pipeline import incremental
from vhlake.pipeline.expectations import Expectation
from vhlake.pipeline.gold_groups import GROUP_KEYS
from vhlake.pipeline.incremental import Incremental
from vhlake.pipeline.ranges import processed
from vhlake.pipeline.restatements import COMPARED, events_by_group, no_events, restatements
from vhlake.pipeline.runner import Pipeline, RunReport
from vhlake.pipeline.silver import TYPED_SCHEMA

BASE = datetime(2026, 3, 10, 12, tzinfo=UTC)  # the feed's clock
Key = tuple[Any, ...]


@pytest.fixture
def house(tmp_path: Path) -> Lakehouse:
    return Lakehouse(tmp_path)


def at(days: float = 0, minutes: float = 0) -> datetime:
    return BASE + timedelta(days=days, minutes=minutes)


def ts(moment: datetime) -> str:
    return moment.isoformat()


def begin(job: str, moment: datetime, **kw: Any) -> dict[str, Any]:
    return start(job, ts(moment), **kw)


def finish(job: str, moment: datetime, kind: str = "completed", ms: int = 100, **kw: Any) -> dict[str, Any]:
    return end(job, ts(moment), kind=kind, payload={"processing_time_ms": ms, "total_rows": 10}, **kw)


def gold(house: Lakehouse) -> dict[Key, dict[str, Any]]:
    """Gold as it is now, by group, ``updated_at`` included."""
    return {tuple(r[k] for k in GROUP_KEYS): r for r in rows(house.lake, GOLD).to_pylist()}


def restated(house: Lakehouse) -> list[dict[str, Any]]:
    table = rows(house.lake, GOLD_RESTATEMENTS)
    found: list[dict[str, Any]] = table.sort_by(
        [(c, "ascending") for c in ("restated_at", *GROUP_KEYS)]
    ).to_pylist()
    return found


def run(house: Lakehouse, *events: dict[str, Any]) -> RunReport:
    house.ingest(*events)
    return house.pipeline.run()


def changed_groups(before: dict[Key, dict[str, Any]], after: dict[Key, dict[str, Any]]) -> set[Key]:
    """The groups stored before whose values differ after (or that are gone): read from gold alone."""
    values = [c for c in GOLD.schema.names if c != "updated_at"]
    return {
        key for key, row in before.items() if key not in after or any(row[c] != after[key][c] for c in values)
    }


def lateness(first_written_at: datetime, earliest: datetime) -> float:
    return ((first_written_at - earliest) // timedelta(microseconds=1)) / 1e6


def expected_row(
    key: Key,
    before: dict[Key, dict[str, Any]],
    after: dict[Key, dict[str, Any]],
    report: RunReport,
    *,
    event_times: list[datetime],
    first_written_at: datetime | None = None,
) -> dict[str, Any]:
    """The restatement of ``key`` by the run of ``report``, from gold before and after it and the times
    of the run's events in the group."""
    old, new = before[key], after.get(key)
    first = first_written_at or old["updated_at"]
    return {
        "run_id": report.run_id,
        "bronze_version": report.bronze_to,
        "date": key[0],
        "marketplace": key[1],
        "category": key[2],
        "first_written_at": first,
        "previous_total_validations": old["total_validations"],
        "new_total_validations": 0 if new is None else new["total_validations"],
        "previous_error_rate": old["error_rate"],
        "new_error_rate": None if new is None else new["error_rate"],
        "previous_p95_processing_time": old["p95_processing_time"],
        "new_p95_processing_time": None if new is None else new["p95_processing_time"],
        "events": len(event_times),
        "max_lateness_s": lateness(first, min(event_times)) if event_times else None,
        "year": key[0].year,
        "month": key[0].month,
    }


def without_restated_at(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "restated_at"}


def group(day: datetime, marketplace: str = "mercado_livre", category: str = "eletrônicos") -> Key:
    return (day.date(), marketplace, category)


# The second batch of the main feed, and which of its events fall in which restated group.
LATE = {
    "completion": finish("late", at(0, 30), ms=300),  # the late job's terminal arrives now
    "retry": finish("retried", at(0, 50), kind="failed", ms=900),  # a later terminal: failed, slower
    "older_start": begin("older", at(1, 5), marketplace="shopee"),  # a new job of an already written day
    "older_end": finish("older", at(1, 6), ms=40, marketplace="shopee"),
}


def first_batch() -> list[dict[str, Any]]:
    return [
        begin("late", at(0)),  # running until its terminal comes late
        begin("retried", at(0, 10)),
        finish("retried", at(0, 20), ms=200),
        begin("twice", at(0, 1), marketplace="shopee"),
        finish("twice", at(0, 2), ms=10, marketplace="shopee"),
        begin("shopee-day-1", at(1), marketplace="shopee"),
        finish("shopee-day-1", at(1, 1), ms=70, marketplace="shopee"),
        begin("untouched", at(2), category="moda"),
        finish("untouched", at(2, 1), ms=5, category="moda"),
    ]


def test_late_retried_and_older_events_restate_the_groups_they_change_and_nothing_else(
    house: Lakehouse,
) -> None:
    run(house, *first_batch())
    before = gold(house)
    report = run(
        house,
        *LATE.values(),
        LATE["completion"],  # received twice in the batch: counted once
        finish("retried", at(0, 20), ms=200),  # an event the lake holds already: not counted
        finish("twice", at(0, 2), ms=10, marketplace="shopee"),  # the very same event again: no change
        begin("new-group", at(3), marketplace="magalu"),  # a group written for the first time
        finish("new-group", at(3, 1), marketplace="magalu"),
    )
    after = gold(house)

    day0, day1 = group(at(0)), group(at(1), "shopee")
    assert changed_groups(before, after) == {day0, day1}  # gold's own account of what moved
    assert group(at(3), "magalu") in set(after) - set(before)
    expected = [
        expected_row(day0, before, after, report, event_times=[at(0, 30), at(0, 50)]),
        expected_row(day1, before, after, report, event_times=[at(1, 5), at(1, 6)]),
    ]
    found = restated(house)
    assert [without_restated_at(r) for r in found] == expected
    # written with gold's MERGE: at the time the restated groups' rows were stamped
    assert {r["restated_at"] for r in found} == {after[day0]["updated_at"]} == {after[day1]["updated_at"]}
    assert found[0]["previous_p95_processing_time"] == 200.0 and found[0]["new_p95_processing_time"] > 200
    assert found[0]["new_error_rate"] == 0.5  # the retried job failed, the late one succeeded

    # Nothing new: nothing restated again.
    assert house.pipeline.run().was_noop
    assert restated(house) == found


def test_a_job_moving_day_restates_the_group_it_left_to_zero(house: Lakehouse) -> None:
    run(house, begin("mover", at(2)), finish("mover", at(2, 5), kind="failed"), *first_batch())
    before = gold(house)
    report = run(house, begin("mover", at(-1)))  # a start that happened earlier, on another day
    after = gold(house)

    left, arrived = group(at(2)), group(at(-1))
    assert left not in after and arrived not in before
    assert changed_groups(before, after) == {left}
    (row,) = restated(house)
    assert without_restated_at(row) == expected_row(left, before, after, report, event_times=[at(-1)])
    assert (row["new_total_validations"], row["new_error_rate"], row["new_p95_processing_time"]) == (
        0,
        None,
        None,
    )
    assert row["previous_error_rate"] == 1.0


def test_first_written_at_is_kept_across_successive_restatements(house: Lakehouse) -> None:
    run(house, begin("a", at(0)), finish("a", at(0, 1), ms=10))
    first_write = gold(house)[group(at(0))]["updated_at"]
    run(house, begin("b", at(0, 2)), finish("b", at(0, 3), ms=20))
    middle = gold(house)
    report = run(house, finish("b", at(0, 9), kind="failed", ms=30))
    after = gold(house)

    first, second = restated(house)
    assert first["first_written_at"] == second["first_written_at"] == first_write
    assert middle[group(at(0))]["updated_at"] == first["restated_at"] != first_write
    assert without_restated_at(second) == expected_row(
        group(at(0)), middle, after, report, event_times=[at(0, 9)], first_written_at=first_write
    )
    assert second["previous_total_validations"] == first["new_total_validations"] == 2


def crash_once(monkeypatch: pytest.MonkeyPatch, target: Any, name: str) -> None:
    """Make ``target.name`` raise the first time it is called, as a process killed there would stop."""
    real = getattr(target, name)
    calls = []

    def crashing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError(f"killed in {name}")
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, crashing)


@pytest.mark.parametrize(
    ("target", "name"),
    [(Incremental, "upsert_groups"), (incremental, "file_events")],
    ids=["before-gold-merge", "after-gold-merge"],
)
def test_a_range_run_again_after_a_crash_records_its_restatements_once(
    house: Lakehouse, monkeypatch: pytest.MonkeyPatch, target: Any, name: str
) -> None:
    run(house, *first_batch())
    before = gold(house)
    house.ingest(*LATE.values())
    crash_once(monkeypatch, target, name)
    with pytest.raises(RuntimeError, match="killed"):
        Pipeline(house.lake).run()
    crashed = restated(house)
    assert len(crashed) == 2  # appended before gold's MERGE, in either case

    rerun = Pipeline(house.lake).run()
    assert not rerun.was_noop and restated(house) == crashed  # the rerun skips them: no duplicate
    after = gold(house)
    assert changed_groups(before, after) == {(r["date"], r["marketplace"], r["category"]) for r in crashed}
    for row in crashed:
        key = (row["date"], row["marketplace"], row["category"])
        assert row["previous_total_validations"] == before[key]["total_validations"]
        assert row["new_p95_processing_time"] == after[key]["p95_processing_time"]
        assert row["new_error_rate"] == after[key]["error_rate"]


def test_a_quarantine_replay_restates_what_its_events_change(house: Lakehouse) -> None:
    house.ingest(begin("j", at(0)), finish("j", at(0, 1), kind="failed"), begin("k", at(0, 2)))
    Pipeline(house.lake, expectations=[Expectation("no_failures", "event_type <> 'validation_failed'")]).run()
    before = gold(house)
    assert house.pipeline.replay_quarantine(reason="no_failures") == 1
    (row,) = restated(house)
    key = group(at(0))
    assert row["run_id"].startswith("replay:")
    assert row["bronze_version"] == house.lake.open(BRONZE).version()  # type: ignore[union-attr]
    assert (row["previous_error_rate"], row["new_error_rate"]) == (0.0, gold(house)[key]["error_rate"])
    assert row["new_error_rate"] == 0.5
    assert row["first_written_at"] == before[key]["updated_at"]
    assert (row["events"], row["max_lateness_s"]) == (1, lateness(row["first_written_at"], at(0, 1)))


def test_an_erasure_restates_the_groups_its_jobs_counted_in(house: Lakehouse) -> None:
    run(
        house,
        begin("ana-1", at(0), user_id="ana"),
        finish("ana-1", at(0, 1), ms=500),
        begin("bia-1", at(0, 2), user_id="bia"),
        finish("bia-1", at(0, 3), ms=10),
        begin("ana-2", at(1), user_id="ana"),
    )
    before = gold(house)
    forget_user(house.lake, house.pipeline, "ana", requested_by="dpo")
    after = gold(house)

    shared, alone = group(at(0)), group(at(1))
    assert changed_groups(before, after) == {shared, alone}
    found = {(r["date"], r["marketplace"], r["category"]): r for r in restated(house)}
    assert set(found) == {shared, alone}
    for key, row in found.items():
        assert row["run_id"].startswith("forget:") and row["events"] == 0 and row["max_lateness_s"] is None
        assert row["bronze_version"] == processed(house.lake, GOLD)
        assert row["previous_total_validations"] == before[key]["total_validations"]
    assert (found[shared]["new_total_validations"], found[shared]["new_p95_processing_time"]) == (1, 10.0)
    assert found[alone]["new_total_validations"] == 0 and found[alone]["new_error_rate"] is None


def test_a_first_build_and_a_full_refresh_restate_nothing(tmp_path: Path) -> None:
    house = Lakehouse(tmp_path)
    house.pipeline = Pipeline(house.lake, rows_per_batch=3)  # more than a batch: the first build's path
    feed = [make_event(n, job_id=f"job-{n % 4}", timestamp=ts(at(0, n))) for n in range(12)]
    run(house, *feed)
    assert restated(house) == []
    # (a Pipeline of its own: on main, a full refresh by the Lake that made the first build fails to commit)
    Pipeline(Lake(house.lake.uri)).run(full_refresh=True)
    assert restated(house) == []
    refreshed = gold(house)
    report = run(house, finish("job-1", at(0, 30), kind="failed"))
    (row,) = restated(house)
    assert row["run_id"] == report.run_id and row["events"] == 1
    assert (
        row["first_written_at"] == refreshed[(row["date"], row["marketplace"], row["category"])]["updated_at"]
    )


def gold_row(**values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "date": BASE.date(),
        "marketplace": "m",
        "category": "c",
        "total_validations": 2,
        "successful_validations": 2,
        "failed_validations": 0,
        "total_rows_processed": 0,
        "avg_processing_time_ms": None,
        "p50_processing_time": None,
        "p95_processing_time": None,
        "p99_processing_time": None,
        "unique_users": 1,
        "error_rate": 0.0,
        "year": BASE.year,
        "month": BASE.month,
        "updated_at": BASE,
    }
    return row | values


def restate(stored: list[dict[str, Any]], recomputed: list[dict[str, Any]]) -> pa.Table:
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    keys = pa.Table.from_pylist(stored + recomputed, schema=GOLD.schema).select(list(GROUP_KEYS))
    return restatements(
        con,
        groups=keys,
        stored=pa.Table.from_pylist(stored, schema=GOLD.schema),
        recomputed=pa.Table.from_pylist(recomputed, schema=GOLD.schema),
        counted=no_events(),
        earlier=GOLD_RESTATEMENTS.schema.empty_table(),
        run_id="r",
        bronze_version=1,
        restated_at=at(1),
    )


@pytest.mark.parametrize("column", COMPARED)
def test_any_gold_value_changing_is_a_restatement_and_nulls_equal_nulls(column: str) -> None:
    stored = gold_row()
    assert restate([stored], [gold_row(updated_at=at(1))]).num_rows == 0  # NULL percentiles on both sides
    value = stored[column]
    other = 1.5 if value is None or isinstance(value, float) else value + 1
    (row,) = restate([stored], [gold_row(**{column: other}, updated_at=at(1))]).to_pylist()
    assert row["first_written_at"] == BASE and row["restated_at"] == at(1)


def typed(*events: dict[str, Any]) -> pa.Table:
    base = {"ingestion_time": BASE, "source": "s", "job_key": 0, "event_key": 0, "marketplace": "m"}
    return pa.Table.from_pylist([base | e for e in events], schema=TYPED_SCHEMA)


def test_events_count_once_per_new_event_in_every_group_their_job_was_or_is_in() -> None:
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    event = {"event_type": "validation_started", "job_id": "moved"}
    events = typed(
        event | {"event_id": "e1", "timestamp": at(0, 5), "source_offset": 1},
        event | {"event_id": "e1", "timestamp": at(0, 1), "source_offset": 2},  # a later copy: not again
        event | {"event_id": "stored", "timestamp": at(0, 0), "source_offset": 3},  # held already
        event | {"event_id": "e2", "timestamp": at(0, 9), "source_offset": 4, "job_id": "stays"},
    )
    jobs = pa.table(
        {
            "job_id": ["moved", "moved", "stays"],
            "created_date": [at(0).date(), at(1).date(), at(1).date()],
            "marketplace": ["m", "m", "m"],
            "category": [None, None, None],
        }
    )
    counted = events_by_group(con, events, pa.table({"event_id": ["stored"]}), jobs)
    by_day = {r["date"]: (r["events"], r["earliest"]) for r in counted.to_pylist()}
    assert by_day == {at(0).date(): (1, at(0, 5)), at(1).date(): (2, at(0, 5))}
    assert set(counted["category"].to_pylist()) == {"unknown"}


def test_restatements_expire_with_gold_and_name_their_lineage(house: Lakehouse) -> None:
    run(house, *first_batch())
    run(house, *LATE.values())
    restated_days = {r["date"] for r in restated(house)}
    assert restated_days == {at(0).date(), at(1).date()}
    # the day after the first restated day's last in gold's retention
    maintain(house.lake, Retention(), today=at(0).date() + timedelta(days=Retention().gold_days + 1))
    assert {r["date"] for r in restated(house)} == {at(1).date()}
    assert at(0).date() not in {key[0] for key in gold(house)}
    assert lineage(house.lake, GOLD_RESTATEMENTS)["upstream"] == [SILVER.name, GOLD.name]


def test_a_crash_before_the_restatements_are_appended_restates_from_gold_rebuilt(
    house: Lakehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after silver's commit, before the range's restatements: the rerun rebuilds gold from silver
    and restates what that changes, without the range's events (not known there)."""
    run(house, *first_batch())
    before = gold(house)
    house.ingest(*LATE.values())
    crash_once(monkeypatch, Incremental, "restate")
    with pytest.raises(RuntimeError, match="killed"):
        Pipeline(house.lake).run()
    assert restated(house) == []

    rerun = Pipeline(house.lake).run()
    after = gold(house)
    found = restated(house)
    assert {(r["date"], r["marketplace"], r["category"]) for r in found} == changed_groups(before, after)
    for row in found:
        key = (row["date"], row["marketplace"], row["category"])
        assert row["previous_total_validations"] == before[key]["total_validations"]
        assert row["new_total_validations"] == after[key]["total_validations"]
        assert row["new_error_rate"] == after[key]["error_rate"]
        assert (row["events"], row["max_lateness_s"]) == (0, None)
        assert row["first_written_at"] == before[key]["updated_at"] and row["run_id"] == rerun.run_id
    assert Pipeline(house.lake).run().was_noop and restated(house) == found
