"""Silver jobs → user engagement per (date, marketplace) (docs/semantics.md, "Gold: user engagement").

Pure, like ``gold.daily_metrics``, but a day's row depends on more than its own jobs: the 7- and 28-day
active users read the 27 days before it, and ``new_users`` needs each user's first job ever in the
marketplace. So the caller passes three things:

- ``jobs``: every silver row of the marketplaces concerned created in ``[min(date) - 27, max(date)]``
  over the pairs to emit (more rows are harmless, fewer give wrong window counts);
- ``first_seen``: each (marketplace, user_id)'s first ``created_date`` over all of silver (``first_seen()``
  computes it from silver rows), for at least the users active on the dates to emit;
- ``pairs``: the (marketplace, date) rows to emit; ``touched_pairs()`` says which a change affects.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from vhlake.duck.arrow import registered
from vhlake.lake.tables import USER_ENGAGEMENT_GOLD

# The longest window: a day's row reads silver from WINDOW_DAYS - 1 days before it.
WINDOW_DAYS = 28
WEEK_DAYS = 7

FIRST_SEEN_SCHEMA = pa.schema(
    [
        pa.field("marketplace", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("first_date", pa.date32(), nullable=False),
    ]
)
PAIRS_SCHEMA = pa.schema(
    [pa.field("marketplace", pa.string(), nullable=False), pa.field("date", pa.date32(), nullable=False)]
)

# created_date is the UTC date of created_at, so the earliest created_date is the date of the earliest
# created_at: the day a user's first job was created.
FIRST_SEEN_SQL = """
SELECT marketplace, user_id, min(created_date) AS first_date
FROM jobs
WHERE user_id IS NOT NULL
GROUP BY marketplace, user_id
"""

# Linear in the user-days, whatever the window: a user active on the sorted dates a_1 < a_2 < ... is in the
# W-day window of date p when some a_i lies in [p - W + 1, p], that is when p lies in the union of the
# intervals [a_i, a_i + W - 1]. Cut at the previous active date, a_i newly covers [max(a_i, a_(i-1) + W),
# a_i + W - 1] (never empty), intervals disjoint per user with the same union. So active_users_Wd of p is
# the number of intervals holding p: +1 at each start, -1 the day after each end, summed per marketplace
# over the dates up to p (the pairs' dates join the steps with 0 so each has its running sum). Jobs from
# before the earliest window only cut intervals that end before it: each pair's window, which ``jobs``
# holds whole, is counted exactly. Plain window functions and equi-joins, so sqlglot translates it for
# Spark as it is (no range join left for the Spark jobs to replace).
# count() ignores the NULL user (one row of user_days with its job count): it counts jobs, never users.
ENGAGEMENT_SQL = f"""
WITH user_days AS (
    SELECT marketplace, created_date, user_id, count(*) AS jobs
    FROM jobs
    GROUP BY marketplace, created_date, user_id
),
spans AS (
    SELECT marketplace, created_date,
        lag(created_date) OVER (PARTITION BY marketplace, user_id ORDER BY created_date) AS prev
    FROM user_days
    WHERE user_id IS NOT NULL
),
steps AS (
    SELECT marketplace,
        CASE WHEN prev IS NULL OR prev + {WEEK_DAYS} < created_date THEN created_date
            ELSE prev + {WEEK_DAYS} END AS date,
        1 AS week, 0 AS month_
    FROM spans
    UNION ALL
    SELECT marketplace, created_date + {WEEK_DAYS} AS date, -1 AS week, 0 AS month_ FROM spans
    UNION ALL
    SELECT marketplace,
        CASE WHEN prev IS NULL OR prev + {WINDOW_DAYS} < created_date THEN created_date
            ELSE prev + {WINDOW_DAYS} END AS date,
        0 AS week, 1 AS month_
    FROM spans
    UNION ALL
    SELECT marketplace, created_date + {WINDOW_DAYS} AS date, 0 AS week, -1 AS month_ FROM spans
    UNION ALL
    SELECT DISTINCT marketplace, date, 0 AS week, 0 AS month_ FROM pairs
),
per_date AS (
    SELECT marketplace, date, sum(week) AS week, sum(month_) AS month_
    FROM steps
    GROUP BY marketplace, date
),
running AS (
    SELECT marketplace, date,
        sum(week) OVER (PARTITION BY marketplace ORDER BY date ROWS UNBOUNDED PRECEDING) AS active_users_7d,
        sum(month_) OVER (PARTITION BY marketplace ORDER BY date ROWS UNBOUNDED PRECEDING) AS active_users_28d
    FROM per_date
),
days AS (
    SELECT u.created_date AS date, u.marketplace,
        sum(u.jobs) AS jobs,
        count(u.user_id) AS active_users,
        count(u.user_id) FILTER (WHERE f.first_date = u.created_date) AS new_users
    FROM user_days AS u
    SEMI JOIN pairs AS p ON p.marketplace = u.marketplace AND p.date = u.created_date
    LEFT JOIN first_seen AS f ON f.marketplace = u.marketplace AND f.user_id = u.user_id
    GROUP BY u.created_date, u.marketplace
)
SELECT
    d.date,
    d.marketplace,
    CAST(d.jobs AS BIGINT) AS jobs,
    d.active_users,
    CAST(w.active_users_7d AS BIGINT) AS active_users_7d,
    CAST(w.active_users_28d AS BIGINT) AS active_users_28d,
    d.new_users,
    d.active_users - d.new_users AS returning_users,
    d.jobs / nullif(d.active_users, 0) AS jobs_per_active_user,
    year(d.date) AS year,
    month(d.date) AS month,
    $updated_at AS updated_at
FROM days AS d
JOIN running AS w ON w.marketplace = d.marketplace AND w.date = d.date
WHERE d.jobs > 0
"""  # noqa: S608

# A job counts in its own day and the WINDOW_DAYS - 1 days after it (their windows reach back to it);
# a user's first date decides new_users on that date only.
TOUCHED_SQL = f"""
SELECT DISTINCT marketplace, CAST(created_date + CAST(i AS INTEGER) AS DATE) AS date
FROM changed, range({WINDOW_DAYS}) AS days(i)
UNION
SELECT f.marketplace, f.first_date AS date
FROM (
    SELECT marketplace, user_id, first_date FROM first_before
    UNION ALL
    SELECT marketplace, user_id, first_date FROM first_after
) AS f
SEMI JOIN changed AS c ON c.marketplace = f.marketplace AND c.user_id = f.user_id
"""  # noqa: S608


def first_seen(con: duckdb.DuckDBPyConnection, jobs: pa.Table) -> pa.Table:
    """Each (marketplace, user_id)'s first ``created_date`` among ``jobs``: pass all of silver's rows of
    the users concerned, as "first job ever" means the earliest silver still holds."""
    with registered(con, jobs=jobs):
        rows = con.sql(FIRST_SEEN_SQL).to_arrow_table()
    return rows.cast(FIRST_SEEN_SCHEMA)


def user_engagement_daily(
    con: duckdb.DuckDBPyConnection,
    jobs: pa.Table,
    *,
    first_seen: pa.Table,
    pairs: pa.Table | None = None,
    updated_at: object,
) -> pa.Table:
    """Gold rows for the (marketplace, date) ``pairs`` on which ``jobs`` has at least one job.

    ``jobs`` must hold every silver row of each pair's marketplace created in ``[date - 27, date]``, and
    ``first_seen`` the first date of every user active on a pair's date (module docstring). A pair
    without jobs on its date yields no row: the caller deletes the row it held. ``pairs=None`` emits every
    (marketplace, created_date) in ``jobs``, right only when ``jobs`` is all of silver for those
    marketplaces (a first build).
    """
    if pairs is None:
        pairs = jobs.select(["marketplace", "created_date"]).rename_columns(["marketplace", "date"])
    with registered(con, jobs=jobs, first_seen=first_seen, pairs=pairs):
        rows = con.sql(ENGAGEMENT_SQL, params={"updated_at": updated_at}).to_arrow_table()
    return rows.select(USER_ENGAGEMENT_GOLD.schema.names).cast(USER_ENGAGEMENT_GOLD.schema)


def touched_pairs(
    con: duckdb.DuckDBPyConnection, changed: pa.Table, *, first_before: pa.Table, first_after: pa.Table
) -> pa.Table:
    """The (marketplace, date) rows whose values a change of silver can alter, as ``PAIRS_SCHEMA``.

    ``changed`` holds the (marketplace, user_id, created_date) of every changed job, both as silver held it
    before the change and as it holds it after (a moved job changes two places; a deleted one, only the
    first). Why these pairs are enough:

    - a job created on ``d`` counts in ``jobs`` and ``active_users`` of ``d``, and in the 7- and 28-day
      windows of ``d .. d + 27``: those are the only rows its presence, absence or user can change;
    - ``new_users`` of a date depends on who is active that date (covered above) and on which users have
      their first job that date: a change can move a user's first date only for the users of the changed
      jobs, from their first date before (``first_before``) to the one after (``first_after``), so both
      dates are touched. Passing whole first-seen tables is fine: only the changed jobs' users count.

    The answer may include pairs whose values do not change (recomputing them is harmless) and dates
    without jobs (``user_engagement_daily`` emits nothing for them: delete what gold held there).
    """
    with registered(con, changed=changed, first_before=first_before, first_after=first_after):
        rows = con.sql(TOUCHED_SQL).to_arrow_table()
    return rows.sort_by([("marketplace", "ascending"), ("date", "ascending")]).cast(PAIRS_SCHEMA)
