"""Raw records (lines of a file, messages of a log) into bronze rows and rejects, in bulk.

The hot path runs inside DuckDB over an Arrow batch: UTF-8 decoding, JSON parsing (yyjson), type checks,
timestamp normalisation and the ``_rescued_data`` column are all vectorised. Python only looks at the rare
records DuckDB flags: lines it rejected (to give a precise error) and lines its lenient parser accepted that
strict JSON (RFC 8259) does not (``NaN``, ``Infinity``, trailing commas).

Every input record ends in exactly one of the two outputs, keyed by its ``source_offset``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from vhlake.duck.arrow import registered
from vhlake.lake.tables import BRONZE, REJECTED, UTC_MICROS

STRING_FIELDS: tuple[str, ...] = (
    "event_id",
    "event_type",
    "job_id",
    "user_id",
    "marketplace",
    "category",
    "source_system",
)
KNOWN_FIELDS: tuple[str, ...] = (*STRING_FIELDS, "timestamp", "payload")

_SCAN_ROWS = 8192
_WHITESPACE = " \t\r\n"
# One pass for what only a lenient parser accepts: NaN/Infinity in any case as a value (after ':', '[' or
# ','; "informática" inside a string does not match) and trailing commas.
_LENIENT_JSON = r"[:\[,][ \t\r\n]*[-+]?(?i:nan|inf)|,[ \t\r\n]*[\]}]"


def _sql_literal(text: str) -> str:
    """A constant of our own (never user input) as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _json_kind(value: str) -> str:
    """SQL for the JSON kind of an extracted JSON text, from its first character (no re-parse)."""
    return (
        f"CASE left({value}, 1) WHEN '\"' THEN 'string' WHEN '{{' THEN 'object' WHEN '[' THEN 'array' "
        f"WHEN 'n' THEN 'null' WHEN 't' THEN 'boolean' WHEN 'f' THEN 'boolean' ELSE 'number' END"
    )


def _unquoted(value: str) -> str:
    """SQL for the text of a JSON string value; only strings with escapes pay for a JSON decode."""
    return f"CASE WHEN contains({value}, '\\') THEN {value} ->> '$' ELSE {value}[2:-2] END"


def _build_parse_sql() -> str:
    """The bulk parse, written once from the field lists.

    yyjson parses each line three times (validate, extract the known fields as JSON texts, list the keys),
    vectorised and parallel. Kinds and string values come from the extracted texts without another parse,
    and DuckDB evaluates a CASE branch only for the rows that take it, so ``_rescued_data`` costs nothing
    on clean events.
    """
    spec = _sql_literal(json.dumps(dict.fromkeys(KNOWN_FIELDS, "JSON")))
    known_list = "[" + ", ".join(_sql_literal(name) for name in KNOWN_FIELDS) + "]"
    known_nulls = _sql_literal(json.dumps(dict.fromkeys(KNOWN_FIELDS)))
    allowed = dict.fromkeys((*STRING_FIELDS, "timestamp"), ("string",)) | {"payload": ("object", "string")}

    kinds = ",\n        ".join(f"{_json_kind(f'f.{n}')} AS k_{n}" for n in KNOWN_FIELDS)
    strings = ",\n    ".join(
        f"CASE WHEN k_{n} = 'string' THEN {_unquoted(f'f.{n}')} END AS {n}" for n in STRING_FIELDS
    )
    bad_flags = {
        n: f"coalesce(k_{n} NOT IN ({', '.join(map(_sql_literal, (*ok, 'null')))}), false)"
        for n, ok in allowed.items()
    }
    bad_flags["timestamp"] += " OR (k_timestamp = 'string' AND ts IS NULL)"
    any_bad = " OR ".join(f"({flag})" for flag in bad_flags.values())
    rescued_parts = ",\n            ".join(
        f"CASE WHEN {flag} THEN json_object('{n}', f.{n}) ELSE '{{}}' END" for n, flag in bad_flags.items()
    )
    # Built once from our own constants (field names, JSON specs): no value ever reaches this text.
    return f"""
WITH decoded AS (
    SELECT source_offset, try(decode(raw)) AS txt FROM lines
), objects AS (
    SELECT source_offset, txt FROM decoded
    WHERE json_valid(txt) AND starts_with(ltrim(txt, {_sql_literal(_WHITESPACE)}), '{{')
), parsed AS (
    SELECT source_offset, txt,
        json_transform(txt, {spec}) AS f,
        list_has_all({known_list}, json_keys(txt)) AS known_only
    FROM objects
), kinded AS (
    SELECT source_offset, txt, f, known_only,
        {kinds}
    FROM parsed
), typed AS (
    SELECT *,
    {strings},
    try_cast(CASE WHEN k_timestamp = 'string' THEN {_unquoted("f.timestamp")} END AS TIMESTAMPTZ) AS ts,
    CASE k_payload WHEN 'object' THEN CAST(f.payload AS VARCHAR) WHEN 'string' THEN {_unquoted("f.payload")} END
        AS payload_text
    FROM kinded
)
SELECT
    event_id, event_type, ts AS "timestamp", job_id, user_id, marketplace, category,
    payload_text AS payload,
    source_system,
    CAST(ts AS DATE) AS event_date,
    source_offset,
    CASE WHEN NOT known_only OR {any_bad} THEN nullif(
        json_merge_patch(
            CASE WHEN known_only THEN '{{}}' ELSE json_merge_patch(txt, {known_nulls}) END,
            {rescued_parts}
        ), '{{}}')
    END AS _rescued_data,
    -- yyjson accepts NaN/inf (any case) and trailing commas; strict JSON does not: flag lines that may hold them.
    regexp_matches(txt, {_sql_literal(_LENIENT_JSON)})
        AS needs_recheck
FROM typed
"""  # noqa: S608


_PARSE_SQL = _build_parse_sql()


@dataclass(frozen=True)
class ParsedBatch:
    """The outcome of parsing one batch of raw records."""

    bronze: pa.Table
    rejected: pa.Table

    @property
    def rows_in(self) -> int:
        return int(self.bronze.num_rows + self.rejected.num_rows)


def new_parser_connection() -> duckdb.DuckDBPyConnection:
    """A DuckDB connection set up for parsing: UTC session, so naive timestamps are read as UTC."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def parse_records(
    con: duckdb.DuckDBPyConnection,
    records: pa.Table,
    *,
    source: str,
    ingestion_time: datetime,
    default_source_system: str,
) -> ParsedBatch:
    """Parse raw records into bronze rows and rejects.

    Args:
        con: a connection from :func:`new_parser_connection` (not shared between threads).
        records: columns ``source_offset`` (int64) and ``raw`` (binary), one row per non-empty record.
        source: where the records come from, e.g. ``file:/data/events.jsonl`` (kept on every row).
        ingestion_time: when this batch is ingested (UTC), the same for all its rows.
        default_source_system: ``source_system`` for events that do not carry their own.
    """
    # Batches of a few thousand rows let DuckDB scan the Arrow table on all cores.
    with registered(con, lines=pa.Table.from_batches(records.to_batches(max_chunksize=_SCAN_ROWS))):
        candidates = con.sql(_PARSE_SQL).to_arrow_table()
    candidates = add_batch_columns(
        candidates, source=source, ingestion_time=ingestion_time, default_source_system=default_source_system
    )
    bronze = _drop_lenient_json(candidates, records)
    accepted = pc.is_in(records["source_offset"], value_set=bronze["source_offset"])
    rejected = rejected_rows(
        records.filter(pc.invert(accepted)), source=source, ingestion_time=ingestion_time
    )
    return ParsedBatch(bronze=bronze, rejected=rejected)


def add_batch_columns(
    rows: pa.Table, *, source: str, ingestion_time: datetime, default_source_system: str
) -> pa.Table:
    """Columns that are the same for the whole batch, filled in Arrow rather than carried through SQL."""
    count = rows.num_rows
    ingestion = pa.scalar(ingestion_time, UTC_MICROS)
    rows = rows.append_column("ingestion_time", pa.repeat(ingestion, count))
    rows = rows.append_column("source", pa.repeat(pa.scalar(source, pa.string()), count))
    rows = rows.append_column("schema_id", pa.nulls(count, pa.int32()))  # a framed source fills it in
    source_system = pc.fill_null(rows["source_system"], default_source_system)
    rows = rows.set_column(rows.schema.get_field_index("source_system"), "source_system", source_system)
    # Rows whose timestamp did not parse are filed under the ingestion date (their original is rescued).
    event_date = pc.fill_null(rows["event_date"], pa.scalar(ingestion_time.date(), pa.date32()))
    return rows.set_column(rows.schema.get_field_index("event_date"), "event_date", event_date)


def _drop_lenient_json(candidates: pa.Table, records: pa.Table) -> pa.Table:
    """Bronze rows without the lines that only DuckDB's lenient parser accepts."""
    needs = candidates["needs_recheck"]
    bronze = candidates.drop_columns(["needs_recheck"])
    if pc.any(needs).as_py():
        suspect_offsets = bronze["source_offset"].filter(needs)
        suspects = records.filter(pc.is_in(records["source_offset"], value_set=suspect_offsets))
        failing = [
            offset
            for offset, raw in zip(
                suspects["source_offset"].to_pylist(), suspects["raw"].to_pylist(), strict=True
            )
            if strict_json_problem(raw) is not None
        ]
        if failing:
            bronze = bronze.filter(pc.invert(pc.is_in(bronze["source_offset"], pa.array(failing))))
    return bronze.select(BRONZE.schema.names).cast(BRONZE.schema)


_JSON_KINDS = {
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON value")


def strict_json_problem(raw: bytes) -> str | None:
    """Why ``raw`` is not a strict (RFC 8259) JSON object, or None when it is one."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8 at byte {exc.start}"
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        return "invalid JSON: nested too deeply"
    except ValueError as exc:
        return f"invalid JSON: {exc}"
    if not isinstance(value, dict):
        return f"JSON {_JSON_KINDS.get(type(value), 'value')} is not an object"
    return None


def _without_line_break(raw: bytes) -> bytes:
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    return raw[:-1] if raw.endswith(b"\r") else raw


def rejected_rows(
    records: pa.Table, *, source: str, ingestion_time: datetime, error: str | None = None
) -> pa.Table:
    """Rows of ``validation_events_rejected`` for records that are not JSON objects (or, given ``error``,
    that are refused for that reason).

    Rejects are rare, so describing each one in Python keeps the bulk path free of per-record work.
    """
    offsets = records["source_offset"].to_pylist()
    raws = [_without_line_break(raw) for raw in records["raw"].to_pylist()]
    errors = [
        error or strict_json_problem(raw) or "not a JSON object the bulk parser can read" for raw in raws
    ]
    texts = [raw.decode("utf-8", errors="replace") for raw in raws]
    # Keep the exact bytes only where the text had to be repaired, so nothing a producer sent is lost.
    exact = [
        raw if error.startswith("invalid UTF-8") else None for raw, error in zip(raws, errors, strict=True)
    ]
    count = len(offsets)
    return pa.table(
        {
            "raw": pa.array(texts, pa.large_string()),
            "raw_bytes": pa.array(exact, pa.large_binary()),
            "error": pa.array(errors, pa.string()),
            "source": pa.array([source] * count, pa.string()),
            "source_offset": pa.array(offsets, pa.int64()),
            "ingestion_time": pa.array([ingestion_time] * count, BRONZE.schema.field("ingestion_time").type),
            "ingestion_date": pa.array([ingestion_time.date()] * count, pa.date32()),
        },
        schema=REJECTED.schema,
    )
