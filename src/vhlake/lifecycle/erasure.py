"""``vhlake forget --user-id U``: erase a user's data from every layer, and keep evidence without it.

What goes: in bronze, the rejects, the quarantine, the job events and silver, every row of the user and
every row of the user's jobs (a job's terminal event may omit the user); in the embedded event log, the
same records. Rejects are lines that never parsed, so any that contain the user id as a JSON string go.
Gold is recomputed for the (date, marketplace, category) groups the user's jobs counted in. With
``vacuum``, the files that still held the rows (older versions, change data) are removed at once: time
travel to before the erasure then fails, which is the point.

The pipeline runs first, so every bronze commit is already reflected in the derived tables (nothing
pending would bring the user back), and the deletes are MERGEs against a one-column table holding the
ids: the user id is bound data, never text spliced into a predicate. It runs again after the deletes,
before anything is vacuumed: that records the erasure's own bronze commits as processed, and processes
any commit that raced them while its files still exist (what it brought of the user is erased again).
The pipeline never reads the change data of a commit that added no event, so the purged change data of
the deletes is never missed (``vhlake pipeline run``, ``--full-refresh``, ``serve`` and later erasures
are tested after ``forget --vacuum``).

The evidence goes to ``audit_log``: who asked, when, the rows removed and the version written per table,
and the sha256 of the user id (to answer "was U erased?" without keeping U).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as fs
import pyarrow.parquet as pq

from vhlake.events.embedded_log import EmbeddedEventLog
from vhlake.lake.delta import Lake
from vhlake.lake.tables import AUDIT_LOG, BRONZE, JOB_EVENTS, QUARANTINE, REJECTED, SILVER, TableDef
from vhlake.pipeline.runner import Pipeline
from vhlake.query.lake_relations import table_relation

# Tables whose rows carry user_id and job_id.
_BY_USER_AND_JOB = (BRONZE, QUARANTINE, JOB_EVENTS, SILVER)


@dataclass
class ErasureReport:
    subject_sha256: str
    rows: dict[str, int] = field(default_factory=dict)  # removed, per table
    versions: dict[str, int] = field(default_factory=dict)  # written, per table
    gold_groups: int = 0
    log_records: int = 0
    vacuumed_files: int = 0


def forget_user(
    lake: Lake,
    pipeline: Pipeline,
    user_id: str,
    *,
    requested_by: str,
    event_log: EmbeddedEventLog | None = None,
    vacuum: bool = False,
) -> ErasureReport:
    """Erase ``user_id`` everywhere (see the module docstring) and record the evidence."""
    pipeline.run()
    report = ErasureReport(hashlib.sha256(user_id.encode()).hexdigest())
    jobs = _erase_rows(lake, user_id, report)
    # Bronze commits that raced the deletes (a running `vhlake serve`) are processed now, while the files
    # the deletes rewrote still exist; whatever of the user they brought into the derived tables goes too.
    if pipeline.run().events_in:
        jobs = pa.concat_tables([jobs, _erase_rows(lake, user_id, report)])
    folded = jobs.filter(pc.is_valid(jobs["created_date"]))  # jobs that counted in a gold group
    if folded.num_rows:
        # one transaction id per request: the same user may be erased again after new events came
        report.gold_groups = pipeline.recompute_gold(folded, app_id=f"forget:{uuid.uuid4()}")
    if event_log is not None:
        report.log_records = event_log.forget(user_id=user_id, job_ids=jobs["job_id"].to_pylist())
    if vacuum:
        report.vacuumed_files = _vacuum(lake) + _purge_change_data(lake, user_id, jobs["job_id"])
    _record(lake, report, requested_by)
    return report


def _erase_rows(lake: Lake, user_id: str, report: ErasureReport) -> pa.Table:
    """Delete the rows of the user and of the user's jobs; returns the jobs (see :func:`_jobs_of`)."""
    jobs = _jobs_of(lake, user_id)
    for table in _BY_USER_AND_JOB:
        _delete(lake, table, report, pa.table({"user_id": [user_id]}), "t.user_id = s.user_id")
        if jobs.num_rows:
            _delete(lake, table, report, jobs.select(["job_id"]), "t.job_id = s.job_id")
    needle = pa.table({"needle": [json.dumps(user_id)]})
    _delete(lake, REJECTED, report, needle, "strpos(t.raw, s.needle) > 0")
    return jobs


def _jobs_of(lake: Lake, user_id: str) -> pa.Table:
    """The user's jobs (job_id, and the gold group each counted in: NULL for a job not in silver), from
    silver and the job events."""
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        table_relation(con, lake, SILVER).create_view("silver")
        table_relation(con, lake, JOB_EVENTS).create_view("job_events")
        return con.sql(
            """SELECT job_id, created_date, marketplace, category FROM silver WHERE user_id = $user
        UNION ALL
        SELECT DISTINCT job_id, NULL, NULL, NULL FROM job_events
        WHERE user_id = $user AND job_id NOT IN (SELECT job_id FROM silver WHERE user_id = $user)""",
            params={"user": user_id},
        ).to_arrow_table()


def _delete(lake: Lake, table: TableDef, report: ErasureReport, source: pa.Table, predicate: str) -> None:
    delta = lake.open(table)
    if delta is None:
        return
    metrics = (
        delta.merge(source=source, predicate=predicate, source_alias="s", target_alias="t")
        .when_matched_delete()
        .execute()
    )
    deleted = int(metrics.get("num_target_rows_deleted", 0))
    report.rows[table.name] = report.rows.get(table.name, 0) + deleted
    if deleted:
        delta.update_incremental()
        report.versions[table.name] = delta.version()


def _vacuum(lake: Lake) -> int:
    """Remove every file no longer in the current version of the erased tables (time travel included)."""
    removed = 0
    for table in (*_BY_USER_AND_JOB, REJECTED):
        delta = lake.open(table)
        if delta is not None:
            removed += len(delta.vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False))
    return removed


def _purge_change_data(lake: Lake, user_id: str, jobs: pa.ChunkedArray) -> int:
    """Delete the change data files that hold the user's rows. The deletes above wrote them (Delta's change
    data feed records what a delete removed), and vacuum leaves change data alone. Nothing reads them: the
    pipeline skips the change data of commits that add no event."""
    known = pc.cast(jobs.combine_chunks(), pa.string())
    removed = 0
    for table in (*_BY_USER_AND_JOB, REJECTED):
        if lake.open(table) is None:
            continue
        store = lake.files(table)
        found = store.get_file_info(fs.FileSelector("_change_data", recursive=True, allow_not_found=True))
        for info in found:
            if info.is_file and info.path.endswith(".parquet") and _holds(store, info.path, user_id, known):
                store.delete_file(info.path)
                removed += 1
    return removed


def _holds(store: fs.FileSystem, path: str, user_id: str, known: pa.Array) -> bool:
    columns = pq.read_schema(path, filesystem=store).names
    if "user_id" not in columns:  # the rejects: the raw line
        raw = pc.cast(pq.read_table(path, filesystem=store, columns=["raw"])["raw"], pa.large_string())
        return bool(pc.any(pc.match_substring(raw, json.dumps(user_id))).as_py())
    rows = pq.read_table(
        path, filesystem=store, columns=["user_id", "job_id"]
    )  # delta-rs writes string views
    users, job_ids = (pc.cast(rows[c], pa.string()) for c in ("user_id", "job_id"))
    return bool(pc.any(pc.or_(pc.equal(users, user_id), pc.is_in(job_ids, value_set=known))).as_py())


def _record(lake: Lake, report: ErasureReport, requested_by: str) -> None:
    now = datetime.now(UTC)
    details = {
        "subject_sha256": report.subject_sha256,
        "rows_removed": report.rows,
        "versions_written": report.versions,
        "gold_groups_recomputed": report.gold_groups,
        "event_log_records_removed": report.log_records,
        "files_vacuumed": report.vacuumed_files,
    }
    row = {
        "at": now,
        "key_id": requested_by,
        "method": "FORGET",
        "route": "vhlake forget",
        "status": 0,
        "audit_date": now.date(),
        "details": json.dumps(details, sort_keys=True),
    }
    lake.append(AUDIT_LOG, pa.Table.from_pylist([row], schema=AUDIT_LOG.schema))
