"""The chain of counts from each source to gold, as links that must balance exactly (``vhlake reconcile``).

Three kinds of link, in the order data flows:

- **source** (one per ``source``, e.g. a file, the embedded log's topic, a Kafka topic-partition): what
  ``ingest_ledger`` says ingestion read and made of it, against the bronze rows and rejects the tables
  hold at those positions: records read = bronze rows + rejects, and each of those as counted.
- **events** (one, over the event dates covered): bronze's events at the version the derived tables were
  brought to = quarantined + canaries + copies dropped as duplicates + events folded into silver jobs
  (distinct ``event_id`` in ``validation_job_events``). Copies are counted from bronze itself: the events
  that passed, less their distinct ids.
- **gold** (one per (date, marketplace, category) group that does not balance, and one for the totals):
  silver's rows of the group = its distinct jobs = gold's ``total_validations``, and the same for the
  successful and failed counts; a group must have exactly one gold row.

Each count is one DuckDB query over the tables (a scan of a few columns), whatever their size: the groups
that balance are summed in SQL, only those that do not come back one by one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

import duckdb

from vhlake.pipeline.gold import UNKNOWN_CATEGORY
from vhlake.pipeline.read_ahead import CANARY_SOURCE

# The most groups that do not balance reported one by one (the totals link counts them all).
MAX_GROUPS_LISTED = 100


@dataclass(frozen=True)
class Equation:
    """``left`` must equal ``right``; ``text`` says which counts they are."""

    text: str
    left: int
    right: int

    @property
    def holds(self) -> bool:
        return self.left == self.right


@dataclass(frozen=True)
class Link:
    """One link of the chain: what it is about (``kind``, ``key``), where it was measured
    (``positions``), the counts, and the equations between them."""

    kind: str
    key: str
    positions: dict[str, Any]
    counts: dict[str, int]
    equations: tuple[Equation, ...] = field(default=())

    @property
    def balanced(self) -> bool:
        return all(e.holds for e in self.equations)

    def describe(self) -> str:
        """``kind key: the equations that do not hold``, for a message naming the link."""
        broken = [f"{e.text}: {e.left:,} ≠ {e.right:,}" for e in self.equations if not e.holds]
        return f"{self.kind} {self.key}: {'; '.join(broken) or 'balances'}"

    def canonical(self) -> dict[str, Any]:
        """The link as plain JSON values, in a fixed form (what the reconciliation's hash covers)."""
        return {
            "kind": self.kind,
            "key": self.key,
            "positions": self.positions,
            "counts": self.counts,
            "balanced": self.balanced,
        }


_SOURCES_SQL = """
WITH ledger AS (
    SELECT source,
           list(DISTINCT app_id ORDER BY app_id) AS app_ids,
           count(*) AS spans,
           sum(records_read) AS records_read,
           sum(bronze_rows) AS ledger_bronze,
           sum(rejected_rows) AS ledger_rejected,
           min(first_offset) AS first_offset,
           max(last_offset) AS last_offset,
           min(position_from) AS position_from,
           max(source_offset) AS position_to
    FROM ingest_ledger
    WHERE $since IS NULL OR ingestion_date >= $since
    GROUP BY source
),
found_bronze AS (
    SELECT b.source, count(*) AS rows
    FROM bronze_now b JOIN ledger l ON b.source = l.source
        AND b.source_offset BETWEEN l.first_offset AND l.last_offset
    GROUP BY b.source
),
found_rejected AS (
    SELECT r.source, count(*) AS rows
    FROM validation_events_rejected r JOIN ledger l ON r.source = l.source
        AND r.source_offset BETWEEN l.first_offset AND l.last_offset
    GROUP BY r.source
)
SELECT l.*, coalesce(b.rows, 0) AS bronze_rows, coalesce(r.rows, 0) AS rejected_rows
FROM ledger l LEFT JOIN found_bronze b USING (source) LEFT JOIN found_rejected r USING (source)
ORDER BY l.source
"""

_EVENTS_SQL = f"""
WITH events AS (
    SELECT source, source_offset, event_id, source_system FROM bronze_done
    WHERE $since IS NULL OR event_date >= $since
),
quarantined AS (
    SELECT source, source_offset FROM validation_events_quarantine
    WHERE $since IS NULL OR event_date >= $since
),
passed AS (
    SELECT event_id FROM events ANTI JOIN quarantined USING (source, source_offset)
    WHERE source_system IS DISTINCT FROM '{CANARY_SOURCE}'
)
SELECT
    (SELECT count(*) FROM events) AS bronze_events,
    (SELECT count(*) FROM quarantined) AS quarantined,
    (SELECT count(*) FROM events WHERE source_system = '{CANARY_SOURCE}') AS canaries,
    (SELECT count(*) - count(DISTINCT event_id) FROM passed) AS copies_dropped,
    (SELECT count(DISTINCT event_id) FROM validation_job_events
        WHERE $since_ts IS NULL OR "timestamp" >= $since_ts) AS events_folded
"""  # noqa: S608 (constants, not values)

_GROUPS_SQL = f"""
WITH silver AS (
    SELECT created_date AS date, marketplace, coalesce(category, '{UNKNOWN_CATEGORY}') AS category,
           count(*) AS silver_rows,
           count(DISTINCT job_id) AS silver_jobs,
           count(*) FILTER (WHERE status = 'success') AS silver_success,
           count(*) FILTER (WHERE status = 'failed') AS silver_failed
    FROM validation_results_silver
    WHERE $since IS NULL OR created_date >= $since
    GROUP BY ALL
),
gold AS (
    SELECT date, marketplace, category,
           count(*) AS gold_rows,
           sum(total_validations) AS total_validations,
           sum(successful_validations) AS successful_validations,
           sum(failed_validations) AS failed_validations
    FROM marketplace_daily_metrics_gold
    WHERE $since IS NULL OR date >= $since
    GROUP BY ALL
)
SELECT date, marketplace, category,
       coalesce(silver_rows, 0) AS silver_rows,
       coalesce(silver_jobs, 0) AS silver_jobs,
       coalesce(silver_success, 0) AS silver_success,
       coalesce(silver_failed, 0) AS silver_failed,
       coalesce(gold_rows, 0) AS gold_rows,
       coalesce(total_validations, 0) AS total_validations,
       coalesce(successful_validations, 0) AS successful_validations,
       coalesce(failed_validations, 0) AS failed_validations
FROM silver FULL JOIN gold USING (date, marketplace, category)
"""  # noqa: S608 (constants, not values)

_GROUP_EQUATIONS = (
    ("silver rows = silver jobs", "silver_rows", "silver_jobs"),
    ("gold rows = 1", "gold_rows", "one"),
    ("silver jobs = total_validations", "silver_jobs", "total_validations"),
    ("silver successful jobs = successful_validations", "silver_success", "successful_validations"),
    ("silver failed jobs = failed_validations", "silver_failed", "failed_validations"),
)
_GROUP_COUNTS = [column for _, left, right in _GROUP_EQUATIONS for column in (left, right) if column != "one"]


def _params(since: date | None) -> dict[str, object]:
    since_ts = None if since is None else datetime.combine(since, time(0), tzinfo=UTC)
    return {"since": since, "since_ts": since_ts}


def source_links(con: duckdb.DuckDBPyConnection, since: date | None) -> list[Link]:
    """One link per source the ledger has rows for (since ``since``, by ingestion date). Needs the views
    ``ingest_ledger``, ``bronze_now`` (bronze as it is now) and ``validation_events_rejected``."""
    rows = con.execute(_SOURCES_SQL, {"since": since}).fetchall()
    columns = [d[0] for d in con.description or ()]
    return [_source_link(dict(zip(columns, row, strict=True))) for row in rows]


def _source_link(row: dict[str, Any]) -> Link:
    counts = {
        name: int(row[name])
        for name in ("records_read", "ledger_bronze", "ledger_rejected", "bronze_rows", "rejected_rows")
    }
    positions = {
        "app_ids": list(row["app_ids"]),
        "spans": int(row["spans"]),
        "positions": [row["position_from"], row["position_to"]],
        "offsets": [row["first_offset"], row["last_offset"]],
    }
    return Link(
        "source",
        row["source"],
        positions,
        counts,
        (
            Equation(
                "records read = bronze rows + rejects",
                counts["records_read"],
                counts["bronze_rows"] + counts["rejected_rows"],
            ),
            Equation("bronze rows = bronze rows ingested", counts["bronze_rows"], counts["ledger_bronze"]),
            Equation("rejects = rejects ingested", counts["rejected_rows"], counts["ledger_rejected"]),
        ),
    )


def events_link(con: duckdb.DuckDBPyConnection, since: date | None, bronze_version: int) -> Link:
    """Bronze's events (view ``bronze_done``: bronze at the version the derived tables were brought to)
    against where each went. Needs the views of the quarantine and the job events too."""
    row = con.execute(_EVENTS_SQL, _params(since)).fetchone()
    assert row is not None  # an aggregate always has its row
    columns = [d[0] for d in con.description or ()]
    counts = {name: int(value) for name, value in zip(columns, row, strict=True)}
    parts = ("quarantined", "canaries", "copies_dropped", "events_folded")
    return Link(
        "events",
        "bronze → silver" if since is None else f"event dates from {since.isoformat()}",
        {"bronze_version": bronze_version, "since": None if since is None else since.isoformat()},
        counts,
        (
            Equation(
                "bronze events = quarantined + canaries + copies dropped + events folded",
                counts["bronze_events"],
                sum(counts[p] for p in parts),
            ),
        ),
    )


def gold_links(con: duckdb.DuckDBPyConnection, since: date | None) -> list[Link]:
    """The groups that do not balance (at most ``MAX_GROUPS_LISTED``), then one link for the totals."""
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE reconciled_groups AS {_GROUPS_SQL}",
        {"since": since},
    )
    broken = " OR ".join(
        f"{left} <> {'1' if right == 'one' else right}" for _, left, right in _GROUP_EQUATIONS
    )
    totals_sql = (
        f"SELECT count(*) AS groups, count(*) FILTER (WHERE {broken}) AS groups_not_balanced, "  # noqa: S608
        + ", ".join(f"sum({c})::BIGINT AS {c}" for c in _GROUP_COUNTS)
        + " FROM reconciled_groups"
    )
    totals = _one_row(con, totals_sql)
    listed = con.execute(
        f"SELECT * FROM reconciled_groups WHERE {broken} "  # noqa: S608
        f"ORDER BY date, marketplace, category LIMIT {MAX_GROUPS_LISTED}"
    )
    columns = [d[0] for d in listed.description or ()]
    groups = [_group_link(dict(zip(columns, row, strict=True))) for row in listed.fetchall()]
    counts = {name: int(value or 0) for name, value in totals.items()}
    total = Link(
        "gold",
        "all groups" if since is None else f"dates from {since.isoformat()}",
        {"since": None if since is None else since.isoformat()},
        counts,
        (Equation("groups not balanced = 0", counts["groups_not_balanced"], 0),),
    )
    return [*groups, total]


def _group_link(row: dict[str, Any]) -> Link:
    values = {**{c: int(row[c]) for c in _GROUP_COUNTS}, "one": 1}
    key = f"{row['date'].isoformat()} {row['marketplace']} {row['category']}"
    return Link(
        "gold",
        key,
        {"date": row["date"].isoformat(), "marketplace": row["marketplace"], "category": row["category"]},
        {c: values[c] for c in _GROUP_COUNTS},
        tuple(Equation(text, values[left], values[right]) for text, left, right in _GROUP_EQUATIONS),
    )


def _one_row(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, Any]:
    result = con.execute(sql)
    row = result.fetchone()
    assert row is not None
    return dict(zip([d[0] for d in result.description or ()], row, strict=True))
