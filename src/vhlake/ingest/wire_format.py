"""Kafka values in the Confluent Schema Registry wire format: recognised, unframed, and screened.

Confluent's serializers (and Karapace's, Redpanda's) write each value as a magic byte ``0``, the schema's
registry id as a 4-byte big-endian integer, then the payload: for a JSON Schema, the JSON text itself
(https://docs.confluent.io/platform/current/schema-registry/fundamentals/serdes-develop/index.html#wire-format).
A JSON text never starts with a NUL byte, so a framed value is told from a plain one by its first byte
alone, and both kinds can share a topic.

Here, in bulk over a batch's ``raw`` column:

- :func:`unframe` strips the frames and returns each record's schema id (NULL for a plain record);
- :func:`schema_verdicts` decides, once per distinct id, whether its events may enter bronze: the id must
  be in the registry, name a JSON schema, and be one whose events vhlake's own schema accepts;
- :func:`keep_frames` puts the exact framed bytes back on the rejects, so nothing a producer sent is lost.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from vhlake.events.registry_client import SchemaLookup
from vhlake.events.schema_registry import compatibility_problems
from vhlake.ingest.fast_parse import parse_records
from vhlake.ingest.parse import ParsedBatch, rejected_rows

MAGIC_BYTE = 0
FRAME_BYTES = 5  # the magic byte and the 4-byte schema id
MAX_IDS_PER_BATCH = 64  # distinct schema ids of one batch looked up in the registry (batch_verdicts)
_PROBLEMS_SHOWN = 3


@dataclass(frozen=True)
class Unframed:
    """A batch's records with their frames stripped, and each record's schema id (NULL: no frame)."""

    records: pa.Table
    schema_ids: pa.Array

    @property
    def framed(self) -> bool:
        return bool(self.schema_ids.null_count < len(self.schema_ids))


def unframe(records: pa.Table) -> Unframed:
    """Strip the Confluent frame from the ``raw`` values that have one (columns ``source_offset``, ``raw``).

    Linear in the batch's bytes and free of per-record Python: the frames are found and cut out with
    numpy over the column's offset and data buffers."""
    raw = records["raw"].combine_chunks().cast(pa.large_binary())
    count = len(raw)
    if count == 0 or raw.null_count:
        return Unframed(records, pa.nulls(count, pa.int32()))
    offsets, data = _buffers(raw)
    starts, lengths = offsets[:-1], np.diff(offsets)
    framed = lengths >= FRAME_BYTES
    framed[framed] = data[starts[framed]] == MAGIC_BYTE
    if not framed.any():
        return Unframed(records, pa.nulls(count, pa.int32()))
    heads = starts[framed]
    ids = np.zeros(count, dtype=np.int32)
    ids[framed] = data[heads[:, None] + np.arange(1, FRAME_BYTES)].copy().view(">i4").ravel()
    stripped = records.set_column(
        records.schema.get_field_index("raw"), "raw", _without_frames(offsets, data, framed, heads)
    )
    return Unframed(stripped, pa.array(ids, pa.int32(), mask=~framed))


def _buffers(raw: pa.LargeBinaryArray) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
    """The value offsets (rebased to 0) and bytes of ``raw``."""
    _, offset_buffer, data_buffer = raw.buffers()
    offsets = np.frombuffer(offset_buffer, dtype=np.int64)[raw.offset : raw.offset + len(raw) + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.empty(0, np.uint8)
    return offsets - offsets[0], data[offsets[0] : offsets[-1]]


def _without_frames(
    offsets: npt.NDArray[np.int64],
    data: npt.NDArray[np.uint8],
    framed: npt.NDArray[np.bool_],
    heads: npt.NDArray[np.int64],
) -> pa.Array:
    keep = np.ones(len(data), dtype=bool)
    keep[(heads[:, None] + np.arange(FRAME_BYTES)).ravel()] = False
    cut = np.concatenate(([0], np.cumsum(framed, dtype=np.int64) * FRAME_BYTES))
    new_offsets = offsets - cut
    return pa.LargeBinaryArray.from_buffers(
        pa.large_binary(),
        len(framed),
        [None, pa.py_buffer(new_offsets), pa.py_buffer(np.ascontiguousarray(data[keep]))],
    )


def schema_verdicts(
    schema_ids: Iterable[int], lookup: SchemaLookup, ours: Mapping[str, Any]
) -> dict[int, str | None]:
    """Per schema id, why its events are refused (None: accepted). ``ours`` is vhlake's event schema.

    An id is accepted when the registry has it, it is a JSON schema, and every event valid under it is
    valid under ``ours`` (the backward-compatibility rule of ``vhlake schema check``)."""
    return {schema_id: _verdict(schema_id, lookup, ours) for schema_id in sorted(set(schema_ids))}


def _verdict(schema_id: int, lookup: SchemaLookup, ours: Mapping[str, Any]) -> str | None:
    found = lookup.schema(schema_id)
    if found is None:
        return f"schema id {schema_id} is not in the schema registry"
    if found.schema_type.upper() != "JSON":
        return f"schema id {schema_id} is a {found.schema_type} schema; vhlake reads JSON events"
    try:
        theirs = json.loads(found.text)
    except ValueError:
        return f"schema id {schema_id} is not valid JSON"
    if not isinstance(theirs, dict):
        return f"schema id {schema_id} is not a JSON Schema object"
    problems = compatibility_problems(theirs, dict(ours))
    if not problems:
        return None
    shown = "; ".join(problems[:_PROBLEMS_SHOWN])
    more = f" (and {len(problems) - _PROBLEMS_SHOWN} more)" if len(problems) > _PROBLEMS_SHOWN else ""
    return f"schema id {schema_id} is incompatible with vhlake's event schema: {shown}{more}"


def batch_verdicts(
    schema_ids: pa.Array, lookup: SchemaLookup, ours: Mapping[str, Any]
) -> dict[int, str | None]:
    """:func:`schema_verdicts` for a batch's ids, the most frequent :data:`MAX_IDS_PER_BATCH` of them.

    A producer uses a handful of schema ids; a batch with hundreds is garbage or an attack, and asking
    the registry about each would cost a request per id. Ids past the bound are refused unasked: their
    records go to the rejects, from where they can be replayed."""
    counts = pc.value_counts(schema_ids.drop_null())
    by_frequency = counts.field("values").take(
        pc.array_sort_indices(counts.field("counts"), order="descending")
    )
    ids = by_frequency.to_pylist()
    verdicts = schema_verdicts(ids[:MAX_IDS_PER_BATCH], lookup, ours)
    too_many = (
        f"schema id not checked: the batch had {len(ids)} distinct schema ids and only the "
        f"{MAX_IDS_PER_BATCH} most frequent are looked up in the registry"
    )
    verdicts.update(dict.fromkeys(ids[MAX_IDS_PER_BATCH:], too_many))
    return verdicts


def _refused_by_reason(schema_ids: pa.Array, verdicts: Mapping[int, str | None]) -> dict[str, pa.Array]:
    """Per reason of ``verdicts``, which records carry an id refused for it (one pass per reason)."""
    grouped: dict[str, list[int]] = {}
    for schema_id, reason in verdicts.items():
        if reason is not None:
            grouped.setdefault(reason, []).append(schema_id)
    return {
        reason: pc.fill_null(pc.is_in(schema_ids, value_set=pa.array(ids, pa.int32())), False)
        for reason, ids in grouped.items()
    }


def keep_frames(rejected: pa.Table, originals: pa.Table, schema_ids: pa.Array) -> pa.Table:
    """``rejected`` with ``raw_bytes`` set to the exact framed value of each reject that had a frame.

    ``originals`` are the records as consumed (``source_offset``, ``raw`` with frames); ``schema_ids`` is
    theirs, in the same order. Rejects are few, so this is per reject."""
    if rejected.num_rows == 0 or schema_ids.null_count == len(schema_ids):
        return rejected
    wanted = pc.and_(schema_ids.is_valid(), pc.is_in(originals["source_offset"], rejected["source_offset"]))
    framed = originals.filter(wanted)
    if framed.num_rows == 0:
        return rejected
    exact = dict(zip(framed["source_offset"].to_pylist(), framed["raw"].to_pylist(), strict=True))
    kept = rejected["raw_bytes"].to_pylist()
    restored = [
        exact.get(offset, current)
        for offset, current in zip(rejected["source_offset"].to_pylist(), kept, strict=True)
    ]
    column = rejected.schema.get_field_index("raw_bytes")
    return rejected.set_column(column, rejected.schema.field(column), pa.array(restored, pa.large_binary()))


def with_schema_ids(bronze: pa.Table, records: pa.Table, schema_ids: pa.Array) -> pa.Table:
    """``bronze`` (rows of ``records``, matched by ``source_offset``) with their ``schema_id`` filled in."""
    if bronze.num_rows == 0 or schema_ids.null_count == len(schema_ids):
        return bronze
    offsets = records["source_offset"].to_numpy()
    order = np.argsort(offsets, kind="stable")
    at = order[np.searchsorted(offsets, bronze["source_offset"].to_numpy(), sorter=order)]
    column = bronze.schema.get_field_index("schema_id")
    return bronze.set_column(column, bronze.schema.field(column), schema_ids.take(pa.array(at)))


def parse_framed(
    con: duckdb.DuckDBPyConnection,
    records: pa.Table,
    *,
    source: str,
    ingestion_time: datetime,
    default_source_system: str,
    lookup: SchemaLookup | None,
    ours: Mapping[str, Any],
) -> ParsedBatch:
    """:func:`~vhlake.ingest.fast_parse.parse_records` for Kafka values, framed or plain.

    Frames are stripped and their schema ids kept in bronze's ``schema_id``; with a registry
    (``lookup``), the records of a refused id go to the rejects with the reason, their bytes exact."""
    unframed = unframe(records)
    kept, kept_ids = unframed.records, unframed.schema_ids
    refused = [rejected_rows(records.slice(0, 0), source=source, ingestion_time=ingestion_time)]
    if lookup is not None and unframed.framed:
        verdicts = batch_verdicts(unframed.schema_ids, lookup, ours)
        by_reason = _refused_by_reason(kept_ids, verdicts)
        if by_reason:
            refused += [
                rejected_rows(kept.filter(rows), source=source, ingestion_time=ingestion_time, error=reason)
                for reason, rows in by_reason.items()
            ]
            accepted = pc.invert(functools.reduce(pc.or_, by_reason.values()))
            kept, kept_ids = kept.filter(accepted), kept_ids.filter(accepted)
    parsed = parse_records(
        con, kept, source=source, ingestion_time=ingestion_time, default_source_system=default_source_system
    )
    rejected = pa.concat_tables([parsed.rejected, *refused])
    if len(refused) > 1:
        rejected = rejected.take(pc.sort_indices(rejected["source_offset"]))
    return ParsedBatch(
        bronze=with_schema_ids(parsed.bronze, kept, kept_ids),
        rejected=keep_frames(rejected, records, unframed.schema_ids),
    )
