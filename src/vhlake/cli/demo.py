"""``vhlake demo``: a realistic feed through the whole embedded path, then a look at the lake."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console

from vhlake import bootstrap
from vhlake.cli.output import print_ingest_report, print_table
from vhlake.events.embedded_log import EmbeddedEventLog
from vhlake.events.model import ValidationEvent, ValidationPayload
from vhlake.ingest.log_source import ingest_log
from vhlake.lake.inventory import table_inventory
from vhlake.lake.tables import ALL_TABLES
from vhlake.samples import SampleSpec, generate_lines, write_jsonl
from vhlake.settings import Settings

_DEMO_SQL = """
SELECT marketplace,
       count(*) AS events,
       count(DISTINCT job_id) AS jobs,
       count_if(event_type = 'validation_failed') AS failed,
       min(timestamp) AS first_event,
       max(timestamp) AS last_event
FROM validation_events_bronze
GROUP BY marketplace
ORDER BY events DESC
"""


_GOLD_SQL = """
SELECT marketplace,
       sum(total_validations) AS validations,
       round(sum(failed_validations) / sum(total_validations), 3) AS error_rate,
       round(max(p95_processing_time)) AS worst_daily_p95_ms,
       sum(total_rows_processed) AS rows_processed
FROM marketplace_daily_metrics_gold
WHERE date >= date_sub(current_date(), 7)
GROUP BY marketplace
ORDER BY validations DESC
"""


def run_demo(settings: Settings, *, events: int, out: Console, err: Console, serve: bool = False) -> None:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    sample = Path(settings.lake_uri).expanduser() / "_samples" / f"events-{today:%Y%m%d}-{events}.jsonl"
    out.rule("1. 30 days of ValidaHub traffic, with the awkward parts of a real feed")
    if not sample.exists():
        sample.parent.mkdir(parents=True, exist_ok=True)
        spec = SampleSpec(jobs=max(1, events // 2), end=today, bad_event_rate=0.002, garbage_rate=0.001)
        size = write_jsonl(generate_lines(spec), sample)
        out.print(f"wrote {sample} ({size / 1e6:,.1f} MB)")
    else:
        out.print(f"reusing {sample}")

    out.rule("2. publisher → embedded event log (what ValidaHub's workers do)")
    with bootstrap.open_event_log(settings) as log:
        if log.end_offset() == 0:
            _publish_sample(settings, sample, log, out)
        else:
            out.print(f"the event log already holds {log.end_offset():,} records: not publishing again")
        out.rule("3. event log → bronze, exactly once (run the demo again: nothing is added)")
        ingestor = bootstrap.build_ingestor(settings)
        started = time.perf_counter()
        report = ingest_log(ingestor, log)
        print_ingest_report(f"event log {log.topic}", report, time.perf_counter() - started)

    out.rule("4. bronze → quarantine + silver (one row per job) → gold (daily metrics)")
    started = time.perf_counter()
    run = bootstrap.build_pipeline(settings).run()
    if run.was_noop:
        out.print("nothing new in bronze: silver and gold are up to date")
    else:
        out.print(
            f"{run.events_in:,} events → {run.quarantined:,} quarantined, {run.jobs_upserted:,} jobs, "
            f"{run.gold_groups:,} daily groups in {time.perf_counter() - started:.2f} s"
        )

    out.rule("5. the lake")
    print_table(out, table_inventory(bootstrap.build_lake(settings), ALL_TABLES), max_rows=100)
    engine = bootstrap.build_query_engine(settings)
    try:
        print_table(out, engine.execute(_DEMO_SQL), max_rows=20, title="bronze by marketplace")
        print_table(out, engine.execute(_GOLD_SQL), max_rows=20, title="gold: the last 7 days")
        rejects = engine.execute(
            "SELECT source_offset AS line, error, left(raw, 60) AS raw FROM validation_events_rejected "
            "ORDER BY ingestion_time DESC, source_offset LIMIT 3"
        )
        print_table(out, rejects, max_rows=3, title="a few rejects, with their reason")
    finally:
        engine.close()
    out.print(
        'next: vhlake quarantine summary; vhlake query "SELECT * FROM marketplace_daily_metrics_gold LIMIT 5" -f json'
    )
    if serve:
        _serve_dashboard(settings, out)


def _serve_dashboard(settings: Settings, out: Console) -> None:
    from vhlake.api.keys import KeyStore
    from vhlake.cli.serve import serve_forever
    from vhlake.service.runner import ServiceOptions

    out.rule("6. the dashboard and the API")
    _, key = KeyStore(bootstrap.build_lake(settings)).create("admin", description="make demo")
    out.print(f"dashboard: http://127.0.0.1:8000/#key={key}")
    out.print(f"demo API key (admin): {key}")
    serve_forever(
        settings,
        host="127.0.0.1",
        port=8000,
        options=ServiceOptions(engagement_every_s=settings.engagement_interval_s),
    )


def _publish_sample(settings: Settings, sample: Path, log: EmbeddedEventLog, out: Console) -> None:
    """The sample's events through the publisher, in batches; its broken lines go to the log as they
    are, as a misbehaving producer would send them (ingestion must keep them, as rejects)."""
    publisher = bootstrap.build_publisher(settings)
    started, published, broken = time.perf_counter(), 0, []
    try:
        batch: list[ValidationEvent] = []
        with sample.open("rb") as lines:
            for line in lines:
                try:
                    batch.append(ValidationEvent.model_validate_json(line))
                except ValidationError:
                    broken.append(line.rstrip(b"\n"))
                if len(batch) >= 20_000:
                    published += len(publisher.send_batch(batch))
                    batch = []
        published += len(publisher.send_batch([*batch, *_live_job_events()]))
    finally:
        publisher.close()
    if broken:
        log.append(broken)
    out.print(
        f"published {published:,} events in {time.perf_counter() - started:.1f} s, "
        f"and {len(broken):,} broken lines as a faulty producer would"
    )


def _live_job_events() -> list[ValidationEvent]:
    """A job started and completed through the Python API, as ValidaHub's workers do."""
    started = datetime.now(UTC) - timedelta(seconds=2)
    job = f"demo-{started:%H%M%S%f}"
    common = {
        "job_id": job,
        "user_id": "demo-user",
        "marketplace": "mercado_livre",
        "category": "eletrônicos",
    }
    return [
        ValidationEvent(
            event_type="validation_started",
            timestamp=started,
            payload=ValidationPayload(ruleset="ml_v3", file_size_bytes=52_000),
            **common,
        ),
        ValidationEvent(
            event_type="validation_completed",
            timestamp=started + timedelta(milliseconds=1_250),
            payload=ValidationPayload(
                ruleset="ml_v3",
                total_rows=120,
                valid_rows=117,
                invalid_rows=3,
                error_types={"missing_sku": 3},
                processing_time_ms=1_250,
            ),
            **common,
        ),
    ]
