"""``user_engagement_daily_gold`` kept from silver's changes, with its state ``user_first_seen``.

A row of engagement gold reads 28 days of its marketplace's silver and, for ``new_users``, each active
user's first date in the marketplace over all of silver. Reading all of silver per batch would make every
batch cost what the lake holds, so the first dates are kept in a state table, ``user_first_seen`` (one row
per (marketplace, user_id), partitioned by ``first_date``), updated exactly from each batch's changes:

- a batch's touched users are found in it through a key index (lake/key_index.py, keyed by a 60-bit hash
  of (marketplace, user_id)): only the partitions of their first dates are read, then filtered exactly (a
  hash collision or an entry left by a moved row costs a partition read, never a wrong date);
- the users new on the dates a batch recomputes are the state's partitions of those dates: a user active
  on a date who is not in its partition is returning there, so nothing else of the state is needed;
- silver is read only for the touched marketplaces and the days of the recomputed rows' 28-day windows
  (partition pruning), plus, rarely, the later days of a user whose first-date jobs all left that date
  with no job within 27 days after it (a job moved later, a user erased).

Why a user's new first date follows from the stored one, ``f``, and the silver rows ``W`` read (which
cover ``[d - 27, d + 27]`` for every changed job's date ``d``), ``lo`` being the user's earliest date in
``W`` after the change:

- no stored ``f``: the user had no job in silver, so all their jobs are changed ones, all in ``W``: ``lo``;
- ``f`` is not the date of a changed job of the user: their jobs on ``f`` are still there and the only
  jobs before ``f`` are changed ones (in ``W``): ``min(f, lo)``;
- ``f`` is such a date: jobs before ``f`` are changed ones and ``W`` covers ``[f, f + 27]``, so ``lo`` is
  the first date when ``lo <= f + 27``; otherwise the user's silver days after ``f + 27`` are read.

Commit order: engagement gold before the state, so a rerun after a crash in between computes from the
same stored first dates (what it recomputes for gold is then already there, and the state follows).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from vhlake.duck.arrow import registered
from vhlake.duck.lake_relations import table_relation
from vhlake.lake.delta import Lake, merge_source
from vhlake.lake.key_index import KeyIndex
from vhlake.lake.tables import SILVER, USER_ENGAGEMENT_GOLD, USER_FIRST_SEEN
from vhlake.pipeline.engagement import (
    FIRST_SEEN_SCHEMA,
    PAIRS_SCHEMA,
    WINDOW_DAYS,
    touched_pairs,
    user_engagement_daily,
)

# Commit order: gold first, its state after (module docstring).
ENGAGEMENT_TABLES = (USER_ENGAGEMENT_GOLD, USER_FIRST_SEEN)
ENGAGEMENT_KEYS = ("date", "marketplace")
FIRST_SEEN_KEYS = ("marketplace", "user_id", "first_date")
KEYS = {USER_ENGAGEMENT_GOLD.name: ENGAGEMENT_KEYS, USER_FIRST_SEEN.name: FIRST_SEEN_KEYS}
# What engagement needs of a silver row.
JOB_COLUMNS = ["marketplace", "created_date", "user_id"]
# 60 bits of md5 of (marketplace, user_id), like the job events' keys (pipeline/silver.py).
USER_KEY_SQL = "CAST(('0x' || left(md5(marketplace || chr(31) || user_id), 15)) AS BIGINT)"
# Days of engagement rows computed at once when the table is built from all of silver (each reads
# WINDOW_DAYS - 1 days more of silver).
_BUILD_DAYS = 28
_REACH = timedelta(days=WINDOW_DAYS - 1)
_JOBS_SCHEMA = pa.schema([SILVER.schema.field(name) for name in JOB_COLUMNS])
_USERS_SCHEMA = pa.schema([USER_FIRST_SEEN.schema.field(n) for n in ("marketplace", "user_id", "user_key")])

# Each touched user's first date after the change (module docstring); ``first_date`` NULL with
# ``unresolved`` when the silver days after f + 27 must be read.
_FIRST_AFTER_SQL = f"""
WITH judged AS (
    SELECT u.marketplace, u.user_id, u.user_key, s.first_date AS f, l.lo,
        EXISTS (SELECT 1 FROM changed c WHERE c.marketplace = u.marketplace AND c.user_id = u.user_id
            AND c.created_date = s.first_date) AS f_changed
    FROM users u
    LEFT JOIN stored s ON s.marketplace = u.marketplace AND s.user_id = u.user_id
    LEFT JOIN lows l ON l.marketplace = u.marketplace AND l.user_id = u.user_id
)
SELECT marketplace, user_id, user_key, f,
    CASE
        WHEN f IS NULL THEN lo
        WHEN NOT f_changed THEN CASE WHEN lo < f THEN lo ELSE f END
        WHEN lo <= f + {WINDOW_DAYS - 1} THEN lo
    END AS first_date,
    f IS NOT NULL AND f_changed AND (lo IS NULL OR lo > f + {WINDOW_DAYS - 1}) AS unresolved
FROM judged
"""  # noqa: S608
# Each user's earliest date among silver rows ``jobs``, for the users ``users``.
_LOWS_SQL = """
SELECT marketplace, user_id, min(created_date) AS lo
FROM jobs SEMI JOIN users USING (marketplace, user_id)
GROUP BY marketplace, user_id
"""
_LOWS_SCHEMA = pa.schema([("marketplace", pa.string()), ("user_id", pa.string()), ("lo", pa.date32())])
# Silver rows read for the first dates kept in memory for the engagement rows, up to this many (~30 MB
# of the three columns); past it (a change reaching many weeks) the rows' windows are read again.
_KEPT_ROWS = 1_000_000


@dataclass
class Reads:
    """What updates read, for tests and measurements: the state's partitions, silver's days (of the
    touched marketplaces) and the users whose later silver days had to be read."""

    state_partitions: set[date] = field(default_factory=set)
    silver_days: set[date] = field(default_factory=set)
    users_scanned: int = 0


class EngagementTables:
    """Computes what brings ``user_engagement_daily_gold`` and ``user_first_seen`` to silver as it is."""

    def __init__(self, lake: Lake, con: duckdb.DuckDBPyConnection) -> None:
        self._lake, self._con = lake, con
        self._index = KeyIndex(lake, USER_FIRST_SEEN, keys=("user_key",), partition="first_date")
        self.reads = Reads()

    def refresh_index(self) -> None:
        """Index the state's commits not indexed yet (after a first build: not in the next batch)."""
        self._index.refresh()

    def merge_sources(self, before: pa.Table, after: pa.Table, now: datetime) -> dict[str, pa.Table]:
        """Per table, the MERGE source after silver's changed jobs went from ``before`` to ``after`` (their
        silver rows, ``JOB_COLUMNS`` at least; silver already holds ``after``): the touched engagement
        rows recomputed (``_deleted`` markers for those left without jobs), and the changed first dates
        (a moved one as a marker for its old partition and a row in its new one)."""
        changed = pa.concat_tables([t.select(JOB_COLUMNS).cast(_JOBS_SCHEMA) for t in (before, after)])
        users = self._users(changed)
        stored = self._stored_first(users)
        empty = FIRST_SEEN_SCHEMA.empty_table()
        job_pairs = touched_pairs(self._con, changed, first_before=empty, first_after=empty)
        markets = pc.unique(changed["marketplace"])
        lows, kept = self._lows(markets, _window_days(job_pairs["date"]), users)
        first = self._first_after(users, stored, changed, lows)
        left, arrived = _moves(stored, first)
        pairs = touched_pairs(self._con, changed, first_before=left, first_after=arrived)
        # a pair whose date holds no job has no row (what gold held there goes): not computed
        with_jobs = pairs.join(self._silver_pairs(), keys=["marketplace", "date"], join_type="left semi")
        rows = self._rows(with_jobs, first, kept, now)
        return {
            USER_ENGAGEMENT_GOLD.name: merge_source(USER_ENGAGEMENT_GOLD, rows, self._gone(pairs, rows)),
            USER_FIRST_SEEN.name: merge_source(USER_FIRST_SEEN, arrived, left),
        }

    def expired_sources(self, now: datetime) -> dict[str, pa.Table] | None:
        """Per table, the MERGE source that takes the state past silver's retention (docs/semantics.md):
        the users whose first date is older than silver's earliest day get their earliest date silver
        still holds (or leave the state, with no job left), and the engagement rows of those dates are
        recomputed. None when no first date is that old (found from the file lists: nothing read)."""
        silver_days = self._silver_pairs()["date"]
        horizon = pc.min(silver_days).as_py() if len(silver_days) else None
        stale_days = [d for d in self._state_days() if horizon is None or d < horizon]
        if not stale_days:
            return None
        wanted = ds.field("first_date").isin(pa.array(stale_days, pa.date32()))
        stale = self._lake.dataset(USER_FIRST_SEEN).to_table(filter=wanted).cast(USER_FIRST_SEEN.schema)
        first = self._earliest_in_silver(stale)
        arrived = first.filter(pc.is_valid(first["first_date"])).cast(USER_FIRST_SEEN.schema)
        pairs = pa.table({"marketplace": arrived["marketplace"], "date": arrived["first_date"]})
        pairs = pairs.group_by(["marketplace", "date"]).aggregate([]).cast(PAIRS_SCHEMA)
        rows = self._rows(pairs, first, None, now)
        nothing_gone = USER_ENGAGEMENT_GOLD.schema.empty_table()
        return {
            USER_ENGAGEMENT_GOLD.name: merge_source(USER_ENGAGEMENT_GOLD, rows, nothing_gone),
            USER_FIRST_SEEN.name: merge_source(USER_FIRST_SEEN, arrived, stale),
        }

    def _state_days(self) -> set[date]:
        """The first dates the state has a partition of, from its file list."""
        if self._lake.open(USER_FIRST_SEEN) is None:
            return set()
        fragments = self._lake.dataset(USER_FIRST_SEEN).get_fragments()
        return {ds.get_partition_keys(f.partition_expression)["first_date"] for f in fragments}

    def _earliest_in_silver(self, users: pa.Table) -> pa.Table:
        """``users`` (state rows) with ``first_date`` their earliest date in all of silver (NULL: none):
        one scan of silver's (marketplace, user_id, created_date), done once per day silver expires."""
        table_relation(self._con, self._lake, SILVER).create_view("engagement_silver", replace=True)
        with registered(self._con, users=users):
            rows = self._con.sql(
                """SELECT u.marketplace, u.user_id, u.user_key, s.first_date
                FROM users u LEFT JOIN (
                    SELECT marketplace, user_id, min(created_date) AS first_date
                    FROM engagement_silver SEMI JOIN users USING (marketplace, user_id)
                    GROUP BY marketplace, user_id
                ) s USING (marketplace, user_id)"""
            ).to_arrow_table()
        return rows.cast(pa.schema([f.with_nullable(True) for f in USER_FIRST_SEEN.schema]))

    def _rows(
        self, pairs: pa.Table, first: pa.Table, kept: tuple[pa.Table, set[date]] | None, now: datetime
    ) -> pa.Table:
        """The engagement rows of ``pairs`` (each with jobs), the changed users' first dates ``first``
        standing in for the stored ones; a marketplace's few weeks at a time."""
        parts = [USER_ENGAGEMENT_GOLD.schema.empty_table()]
        for market, dates in _by_market(pairs):
            chosen, one = pa.array(dates, pa.date32()), pa.array([market], pa.string())
            jobs = self._jobs(one, _window_days(chosen), kept)
            first_seen = self._first_seen_on(chosen, one, first)
            wanted = pa.table(
                {"marketplace": pa.repeat(one[0], len(chosen)), "date": chosen}, schema=PAIRS_SCHEMA
            )
            parts.append(
                user_engagement_daily(self._con, jobs, first_seen=first_seen, pairs=wanted, updated_at=now)
            )
        return pa.concat_tables(parts)

    def _lows(
        self, markets: pa.Array, days: set[date], users: pa.Table
    ) -> tuple[pa.Table, tuple[pa.Table, set[date]] | None]:
        """Each of ``users``' earliest date in silver's ``days``, read a few weeks at a time; and those
        rows (with their days) when they are few enough to keep for the engagement rows."""
        lows, kept, rows = [_LOWS_SCHEMA.empty_table()], list[pa.Table](), 0
        for chunk in _chunks(sorted(days), _BUILD_DAYS):
            jobs = self._silver(markets, set(chunk))
            with registered(self._con, jobs=jobs, users=users):
                lows.append(self._con.sql(_LOWS_SQL).to_arrow_table().cast(_LOWS_SCHEMA))
            rows += jobs.num_rows
            kept = [*kept, jobs] if rows <= _KEPT_ROWS else []
        everything = pa.concat_tables(lows)
        low = everything.group_by(["marketplace", "user_id"]).aggregate([("lo", "min")])
        low = low.select(["marketplace", "user_id", "lo_min"]).rename_columns(_LOWS_SCHEMA.names)
        return low, ((pa.concat_tables(kept), days) if kept else None)

    def _jobs(self, markets: pa.Array, days: set[date], kept: tuple[pa.Table, set[date]] | None) -> pa.Table:
        """Silver's rows of ``days`` (of ``markets``): those kept from :meth:`_lows`, the others read."""
        if kept is None:
            return self._silver(markets, days)
        rows, have = kept
        wanted = pc.and_(
            pc.is_in(rows["created_date"], pa.array(sorted(days & have), pa.date32())),
            pc.is_in(rows["marketplace"], markets),
        )
        inside = rows.filter(wanted)
        return pa.concat_tables([inside, self._silver(markets, days - have)])

    def rebuilt(self, now: datetime) -> dict[str, pa.Table]:
        """Both tables computed from all of silver: the first dates in one aggregation of silver's
        (marketplace, user_id, created_date), then the engagement rows ``_PAIRS_AT_ONCE`` days of one
        marketplace at a time (each reading 27 days more), so memory follows a few weeks of one
        marketplace's silver, not all of it."""
        table_relation(self._con, self._lake, SILVER).create_view("engagement_silver", replace=True)
        first = self._con.sql(
            f"""SELECT marketplace, user_id, {USER_KEY_SQL} AS user_key, min(created_date) AS first_date
            FROM engagement_silver WHERE user_id IS NOT NULL GROUP BY marketplace, user_id"""  # noqa: S608
        ).to_arrow_table()
        first = first.select(USER_FIRST_SEEN.schema.names).cast(USER_FIRST_SEEN.schema)
        parts = [
            user_engagement_daily(
                self._con,
                self._silver(pa.array([market]), set(_days_from(days[0] - _REACH, days[-1]))),
                first_seen=first.filter(pc.is_in(first["first_date"], pa.array(days, pa.date32()))),
                pairs=pa.table({"marketplace": [market] * len(days), "date": days}, schema=PAIRS_SCHEMA),
                updated_at=now,
            )
            for market, days in _by_market(self._silver_pairs())
        ]
        gold = pa.concat_tables(parts) if parts else USER_ENGAGEMENT_GOLD.schema.empty_table()
        return {USER_ENGAGEMENT_GOLD.name: gold, USER_FIRST_SEEN.name: first.sort_by("first_date")}

    def _users(self, changed: pa.Table) -> pa.Table:
        """The distinct (marketplace, user_id, user_key) of the changed jobs' users."""
        with registered(self._con, changed=changed):
            rows = self._con.sql(
                f"""SELECT DISTINCT marketplace, user_id, {USER_KEY_SQL} AS user_key
                FROM changed WHERE user_id IS NOT NULL"""  # noqa: S608
            ).to_arrow_table()
        return rows.cast(_USERS_SCHEMA)

    def _stored_first(self, users: pa.Table) -> pa.Table:
        """The stored state rows of ``users``: the key index names the partitions to read (a superset),
        the rows read are matched exactly; without an index (an object store), one scan of the keys."""
        keys = pa.array(pc.unique(users["user_key"]), pa.int64())
        if len(keys) == 0:
            return USER_FIRST_SEEN.schema.empty_table()
        partitions = self._index.partitions(keys)
        wanted = ds.field("user_key").isin(keys)
        if partitions is not None:
            self.reads.state_partitions.update(partitions)
            wanted = wanted & ds.field("first_date").isin(pa.array(partitions, pa.date32()))
        if partitions == []:
            return USER_FIRST_SEEN.schema.empty_table()
        rows = self._lake.dataset(USER_FIRST_SEEN).to_table(filter=wanted).cast(USER_FIRST_SEEN.schema)
        return rows.join(
            users.select(["marketplace", "user_id"]), keys=["marketplace", "user_id"], join_type="left semi"
        )

    def _first_after(self, users: pa.Table, stored: pa.Table, changed: pa.Table, lows: pa.Table) -> pa.Table:
        """Each of ``users``' first date after the change (NULL: no job left), as state rows, from their
        earliest dates ``lows`` in the silver read around the changed jobs."""
        with registered(self._con, users=users, stored=stored, changed=changed, lows=lows):
            judged = self._con.sql(_FIRST_AFTER_SQL).to_arrow_table()
        unresolved = judged.filter(judged["unresolved"])
        if unresolved.num_rows:
            judged = self._resolve(judged, unresolved)
        rows = judged.select(USER_FIRST_SEEN.schema.names)
        return rows.cast(pa.schema([f.with_nullable(True) for f in USER_FIRST_SEEN.schema]))

    def _resolve(self, judged: pa.Table, unresolved: pa.Table) -> pa.Table:
        """``judged`` with the first dates of the ``unresolved`` users read from silver's days after
        ``f + 27`` (rare: their jobs on their first date all left it, and none is within 27 days after)."""
        self.reads.users_scanned += unresolved.num_rows
        since = pc.min(unresolved["f"]).as_py() + timedelta(days=WINDOW_DAYS)
        markets = pc.unique(unresolved["marketplace"])
        later = self._lake.dataset(SILVER).to_table(
            columns=JOB_COLUMNS,
            filter=ds.field("marketplace").isin(markets) & (ds.field("created_date") >= pa.scalar(since)),
        )
        with registered(self._con, judged=judged, later=later):
            return self._con.sql(
                f"""SELECT j.* REPLACE (CASE WHEN j.unresolved THEN (
                    SELECT min(created_date) FROM later l WHERE l.marketplace = j.marketplace
                        AND l.user_id = j.user_id AND l.created_date > j.f + {WINDOW_DAYS - 1}
                ) ELSE j.first_date END AS first_date)
                FROM judged j"""  # noqa: S608
            ).to_arrow_table()

    def _silver(self, markets: pa.Array | None, days: set[date]) -> pa.Table:
        """Silver's ``JOB_COLUMNS`` of ``days`` (and of ``markets``, unless None): their partitions only."""
        if not days:
            return _JOBS_SCHEMA.empty_table()
        self.reads.silver_days.update(days)
        wanted = ds.field("created_date").isin(pa.array(sorted(days), pa.date32()))
        if markets is not None:
            wanted = wanted & ds.field("marketplace").isin(markets)
        return self._lake.dataset(SILVER).to_table(columns=JOB_COLUMNS, filter=wanted).cast(_JOBS_SCHEMA)

    def _first_seen_on(self, dates: pa.Array, markets: pa.Array, first: pa.Table) -> pa.Table:
        """The first dates the recomputed rows need: the stored users new on ``dates`` (their partitions),
        the changed users' stored rows replaced by ``first``."""
        self.reads.state_partitions.update(dates.to_pylist())
        # marketplace is filtered after reading: a pushed-down filter on a string column meets the string
        # views delta-rs writes in its statistics (pyarrow has no kernel comparing the two)
        wanted = ds.field("first_date").isin(dates)
        stored = self._lake.dataset(USER_FIRST_SEEN).to_table(columns=FIRST_SEEN_SCHEMA.names, filter=wanted)
        stored = stored.filter(pc.is_in(stored["marketplace"], markets))
        keys = ["marketplace", "user_id"]
        others = stored.join(first.select(keys), keys=keys, join_type="left anti")
        changed = first.filter(pc.is_valid(first["first_date"])).select(FIRST_SEEN_SCHEMA.names)
        return pa.concat_tables([others.cast(FIRST_SEEN_SCHEMA), changed.cast(FIRST_SEEN_SCHEMA)])

    def _gone(self, pairs: pa.Table, rows: pa.Table) -> pa.Table:
        """The stored engagement rows of ``pairs`` that the recomputation no longer has."""
        keys = list(ENGAGEMENT_KEYS)
        if pairs.num_rows == 0 or self._lake.open(USER_ENGAGEMENT_GOLD) is None:
            stored = USER_ENGAGEMENT_GOLD.schema.empty_table().select(keys)
        else:
            dates = pc.unique(pairs["date"])
            wanted = (
                ds.field("year").isin(pc.unique(pc.year(dates)).cast(pa.int32()))
                & ds.field("month").isin(pc.unique(pc.month(dates)).cast(pa.int32()))
                & ds.field("date").isin(dates)
            )
            stored = self._lake.dataset(USER_ENGAGEMENT_GOLD).to_table(columns=keys, filter=wanted)
            stored = stored.join(pairs, keys=keys, join_type="left semi")
        gone = stored.join(rows.select(keys), keys=keys, join_type="left anti")
        return gone.append_column("year", pc.year(gone["date"])).append_column(
            "month", pc.month(gone["date"])
        )

    def _silver_pairs(self) -> pa.Table:
        """Every (marketplace, date) silver has a partition of (a partition holds jobs), from its file
        list: nothing read."""
        fragments = self._lake.dataset(SILVER).get_fragments()
        keys = {
            (part["marketplace"], part["created_date"])
            for part in (ds.get_partition_keys(f.partition_expression) for f in fragments)
        }
        markets, dates = zip(*sorted(keys), strict=True) if keys else ((), ())
        return pa.table({"marketplace": list(markets), "date": list(dates)}, schema=PAIRS_SCHEMA)


def _moves(stored: pa.Table, first: pa.Table) -> tuple[pa.Table, pa.Table]:
    """The stored rows whose first date changed or went (their old partition's row leaves), and the new
    rows (a first date that changed or appeared)."""
    keys = ["marketplace", "user_id"]
    with_before = first.join(
        stored.select([*keys, "first_date"]).rename_columns([*keys, "before"]), keys=keys
    )
    differs = pc.fill_null(pc.not_equal(with_before["first_date"], with_before["before"]), True)
    moved = with_before.filter(differs)
    arrived = moved.filter(pc.is_valid(moved["first_date"])).select(USER_FIRST_SEEN.schema.names)
    left_keys = moved.filter(pc.is_valid(moved["before"])).select(keys)
    left = stored.join(left_keys, keys=keys, join_type="left semi")
    return left.cast(USER_FIRST_SEEN.schema), arrived.cast(USER_FIRST_SEEN.schema)


# Engagement rows computed at once per marketplace: the SQL is linear in the user-days it is given, so a
# call holds this many days plus the 27 before them of one marketplace's silver (each call reads those 27
# again: more dates at once read less twice). Eight weeks: a lake of a month or two is one call per
# marketplace (at four weeks, 30 days of silver took two calls over ~55 days each: measured on the 10M
# benchmark lake, 10.6 s of a 33 s first build), and a long history is read ~1.5 times, not twice.
_PAIRS_AT_ONCE = 56


def _by_market(pairs: pa.Table) -> Iterator[tuple[str, list[date]]]:
    """``pairs`` as (marketplace, up to ``_PAIRS_AT_ONCE`` of its dates), in order."""
    dates: dict[str, list[date]] = {}
    for market, day in zip(pairs["marketplace"].to_pylist(), pairs["date"].to_pylist(), strict=True):
        dates.setdefault(market, []).append(day)
    for market in sorted(dates):
        for chunk in _chunks(sorted(dates[market]), _PAIRS_AT_ONCE):
            yield market, chunk


def _window_days(dates: pa.ChunkedArray | pa.Array) -> set[date]:
    """The days the rows of ``dates`` read: each date and the WINDOW_DAYS - 1 before it."""
    return {d - timedelta(days=k) for d in set(dates.to_pylist()) for k in range(WINDOW_DAYS)}


def _days_from(first: date, last: date) -> Iterator[date]:
    for k in range((last - first).days + 1):
        yield first + timedelta(days=k)


def _chunks(days: list[date], size: int) -> Iterator[list[date]]:
    for start in range(0, len(days), size):
        yield days[start : start + size]
