"""Realistic ValidaHub validation events, generated in bulk (seeded, vectorised).

Used by ``make demo``, the tests and the benchmark. Marketplaces are skewed as in ValidaHub's traffic,
categories follow a long tail, processing times are lognormal, and a feed can be made awkward on purpose:
duplicate deliveries, events that fail expectations, lines that are not JSON, and out-of-order arrival.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MARKETPLACES = ("mercado_livre", "amazon_br", "shopee", "magalu", "americanas", "casas_bahia")
MARKETPLACE_SHARE = (0.42, 0.2, 0.18, 0.1, 0.06, 0.04)
CATEGORIES = (*tuple(f"categoria_{i:02d}" for i in range(1, 49)), "eletrônicos", "moda_íntima")
RULESETS = ("ml_v3", "amazon_br_v2", "shopee_v1", "magalu_v2", "default_v1")
ERROR_TYPES = ("missing_sku", "invalid_price", "missing_gtin", "bad_category", "title_too_long")


@dataclass(frozen=True)
class SampleSpec:
    """What to generate. Rates are fractions of the clean events."""

    jobs: int
    seed: int = 7
    end: datetime = datetime(2026, 11, 27, tzinfo=UTC)
    days: int = 30
    running_rate: float = 0.03
    failed_rate: float = 0.12
    duplicate_rate: float = 0.005
    bad_event_rate: float = 0.0
    garbage_rate: float = 0.0
    max_disorder_s: float = 600.0


def generate_lines(spec: SampleSpec) -> pa.Table:
    """Events as JSON lines: one string column ``line``, in arrival order."""
    rng = np.random.default_rng(spec.seed)
    jobs = _job_columns(spec, rng)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("jobs", jobs)
    events = con.sql(_EVENTS_SQL, params={"seed": spec.seed}).to_arrow_table()
    # 64-bit offsets: ten million ~400-byte lines overflow a plain string column when taken together.
    events = events.set_column(0, "line", pc.cast(events["line"], pa.large_string()))
    events = _add_awkward_events(events, spec, rng)
    arrival = pc.add(events["arrival"], pa.array(rng.uniform(0, spec.max_disorder_s, events.num_rows)))
    return events.select(["line"]).take(pc.sort_indices(arrival))


def write_jsonl(lines: pa.Table, path: Path, chunk_rows: int = 100_000) -> int:
    """Write the ``line`` column to ``path``, one event per line; returns the number of bytes."""
    with path.open("wb") as out:
        for start in range(0, lines.num_rows, chunk_rows):
            # Sample writing only (not a hot path): plain joins avoid Arrow's 2 GiB offset limits.
            chunk = lines["line"].slice(start, chunk_rows).to_pylist()
            out.write("\n".join(chunk).encode() + b"\n")
    return path.stat().st_size


def _job_columns(spec: SampleSpec, rng: np.random.Generator) -> pa.Table:
    n = spec.jobs
    start_s = spec.end.timestamp() - rng.uniform(0, spec.days * 86400, n)
    category_weights = 1.0 / np.arange(1, len(CATEGORIES) + 1)
    category = rng.choice(len(CATEGORIES), n, p=category_weights / category_weights.sum())
    total_rows = np.maximum(1, rng.lognormal(6.5, 1.2, n)).astype(np.int64)
    outcome = rng.choice(
        3, n, p=(1 - spec.failed_rate - spec.running_rate, spec.failed_rate, spec.running_rate)
    )
    return pa.table(
        {
            "job_idx": np.arange(n, dtype=np.int64),
            "marketplace": rng.choice(len(MARKETPLACES), n, p=MARKETPLACE_SHARE),
            "category": np.where(rng.random(n) < 0.02, -1, category),
            "user_idx": rng.integers(0, max(1, n // 8), n),
            "start_us": (start_s * 1e6).astype(np.int64),
            "processing_ms": rng.lognormal(7.5, 0.9, n).astype(np.int64),
            "total_rows": total_rows,
            "invalid_rows": (total_rows * rng.beta(1, 12, n)).astype(np.int64),
            "error_kind": rng.integers(0, len(ERROR_TYPES), n),
            "outcome": outcome,
            "file_kb": rng.integers(5, 50_000, n),
        }
    )


# Names come from the constant tuples above; the seed is a bound parameter.
_EVENTS_SQL = f"""
WITH named AS (
    SELECT *,
        'job-' || $seed || '-' || job_idx AS job_id,
        'user-' || user_idx AS user_id,
        {list(MARKETPLACES)}[marketplace + 1] AS marketplace_name,
        CASE WHEN category >= 0 THEN {list(CATEGORIES)}[category + 1] END AS category_name,
        {list(RULESETS)}[(job_idx % {len(RULESETS)}) + 1] AS ruleset,
        make_timestamptz(start_us) AS started_at
    FROM jobs
), events AS (
    SELECT job_idx, 0 AS kind, started_at AS ts, * EXCLUDE (job_idx) FROM named
    UNION ALL
    SELECT job_idx, 1 + outcome AS kind, started_at + to_milliseconds(processing_ms + 250) AS ts,
        * EXCLUDE (job_idx)
    FROM named WHERE outcome < 2
)
SELECT
    to_json({{
        'event_id': md5($seed || ':' || job_idx || ':' || kind),
        'event_type': ['validation_started', 'validation_completed', 'validation_failed'][kind + 1],
        'timestamp': strftime(ts - INTERVAL 3 HOUR, '%Y-%m-%dT%H:%M:%S.%g') || '-03:00',
        'job_id': job_id,
        'user_id': user_id,
        'marketplace': marketplace_name,
        'category': category_name,
        'payload': CASE WHEN kind = 0 THEN to_json({{
                'ruleset': ruleset, 'file_size_bytes': file_kb * 1024,
                's3_path': 's3://validahub-uploads/' || job_id || '.csv'}})
            ELSE to_json({{
                'ruleset': ruleset, 'total_rows': total_rows, 'valid_rows': total_rows - invalid_rows,
                'invalid_rows': invalid_rows,
                'error_types': map([{list(ERROR_TYPES)}[error_kind + 1]], [invalid_rows]),
                'processing_time_ms': processing_ms, 'file_size_bytes': file_kb * 1024,
                's3_path': 's3://validahub-uploads/' || job_id || '.csv'}})
            END
    }})::VARCHAR AS line,
    epoch(ts) AS arrival
FROM events
"""  # noqa: S608


def _add_awkward_events(events: pa.Table, spec: SampleSpec, rng: np.random.Generator) -> pa.Table:
    """Duplicates (same event again), events that fail expectations, and lines that are not JSON."""
    n = events.num_rows
    parts = [events]
    duplicates = rng.choice(n, int(n * spec.duplicate_rate), replace=False)
    if len(duplicates):
        dup = events.take(duplicates)
        parts.append(dup.set_column(1, "arrival", pc.add(dup["arrival"], 3600.0)))
    bad = int(n * spec.bad_event_rate)
    if bad:
        templates = [
            '{"event_id":"bad-%d","event_type":"validation_started","timestamp":"2026-11-20T10:00:00Z",'
            '"job_id":"","user_id":"u","marketplace":"shopee","category":null,"payload":{}}',
            '{"event_id":"bad-%d","event_type":"validation_paused","timestamp":"2026-11-20T10:00:00Z",'
            '"job_id":"job-x","user_id":"u","marketplace":"shopee","category":null,"payload":{}}',
            '{"event_id":"bad-%d","event_type":"validation_started","timestamp":"20/11/2026 10h",'
            '"job_id":"job-y","user_id":"u","marketplace":"magalu","category":null,"payload":{}}',
        ]
        lines = [templates[i % len(templates)] % i for i in range(bad)]
        parts.append(_lines_at_random_times(lines, events, rng))
    garbage = int(n * spec.garbage_rate)
    if garbage:
        lines = [f'{{"event_id": "truncated-{i}", "event_type": "valid' for i in range(garbage)]
        parts.append(_lines_at_random_times(lines, events, rng))
    return pa.concat_tables(parts)


def _lines_at_random_times(lines: list[str], events: pa.Table, rng: np.random.Generator) -> pa.Table:
    arrival = events["arrival"].to_numpy()
    return pa.table(
        {
            "line": pa.array(lines, pa.string()),
            "arrival": rng.uniform(arrival.min(), arrival.max(), len(lines)),
        },
        schema=events.schema,
    )


def day_span(spec: SampleSpec) -> tuple[datetime, datetime]:
    """The first and last instants events of ``spec`` can carry."""
    return spec.end - timedelta(days=spec.days), spec.end + timedelta(days=1)
