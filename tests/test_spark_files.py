"""How the Spark file source cuts a JSON-lines file: ranges on line breaks, numbered as ``vhlake ingest``
numbers lines, the file's identity as ``vhlake ingest`` names it, cut where earlier commits ended."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from vhlake.ingest.files import file_digest, read_line_batches, split_lines
from vhlake.spark.files import plan_file


def lines_file(path: Path) -> Path:
    # Lines of every length (one longer than a range), blank lines, a BOM, no final line break.
    body = [b'{"n": %d, "pad": "%s"}' % (i, b"x" * (i * 37 % 300)) for i in range(400)]
    body[50] = b'{"long": "' + b"y" * 5000 + b'"}'
    body[7] = body[8] = b""
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(body))
    return path


def records_of(path: Path, ranges: list[tuple[int, int, int]]) -> pa.Table:
    data = path.read_bytes()
    parts = [
        split_lines(memoryview(data)[start:end], first_line=first, at_file_start=start == 0)[0]
        for start, end, first in ranges
    ]
    return pa.concat_tables(parts)


def test_ranges_cut_on_line_breaks_and_number_lines_as_ingest_does(tmp_path: Path) -> None:
    path = lines_file(tmp_path / "events.jsonl")
    plan = plan_file(path, range_bytes=1000)
    size = path.stat().st_size
    assert len(plan.ranges) > 20
    assert plan.ranges[0][0] == 0 and plan.ranges[-1][1] == size == plan.size
    assert all(a[1] == b[0] for a, b in zip(plan.ranges, plan.ranges[1:], strict=False))  # contiguous
    data = path.read_bytes()
    assert all(data[end - 1 : end] == b"\n" for _, end, _ in plan.ranges[:-1])
    assert plan.app_id == f"file:{file_digest(path)[0]}"

    ingest = pa.concat_tables(
        batch.records for batch in read_line_batches(path, start_byte=0, end_byte=size, batch_bytes=1 << 20)
    )
    ours = records_of(path, plan.ranges)
    assert ours["source_offset"].to_pylist() == ingest["source_offset"].to_pylist()
    assert ours["raw"].to_pylist() == ingest["raw"].to_pylist()
    assert 8 not in ours["source_offset"].to_pylist()  # a blank line is counted, not kept


def test_ranges_also_end_where_earlier_commits_ended(tmp_path: Path) -> None:
    path = lines_file(tmp_path / "events.jsonl")
    cut = next(b for b in (batch.end_byte for batch in read_line_batches(
        path, start_byte=0, end_byte=path.stat().st_size, batch_bytes=3000
    )))  # fmt: skip
    assert cut not in {end for _, end, _ in plan_file(path, range_bytes=1000).ranges}
    plan = plan_file(path, range_bytes=1000, stops=[cut])
    assert cut in {end for _, end, _ in plan.ranges}
    whole = records_of(path, plan_file(path, range_bytes=1 << 20).ranges)
    assert records_of(path, plan.ranges)["source_offset"].to_pylist() == whole["source_offset"].to_pylist()
