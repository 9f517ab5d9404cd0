"""Reading files in batches: lines are never split, numbers are right, blank lines are skipped."""

from __future__ import annotations

import hashlib
import itertools
import tempfile
from pathlib import Path

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from vhlake.ingest.files import count_lines_before, file_digest, read_line_batches


def all_records(path: Path, batch_bytes: int) -> list[tuple[int, bytes]]:
    size = path.stat().st_size
    batches = list(read_line_batches(path, start_byte=0, end_byte=size, batch_bytes=batch_bytes))
    assert batches[-1].end_byte == size
    for before, after in itertools.pairwise(batches):
        assert before.end_byte == after.start_byte
    table = pa.concat_tables([b.records for b in batches])
    return list(zip(table["source_offset"].to_pylist(), table["raw"].to_pylist(), strict=True))


def test_line_numbers_skip_blank_lines_but_count_them(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b'{"a":1}\n\n   \n\t\r\n{"b":2}\r\n{"c":3}')
    assert all_records(path, 1 << 20) == [(1, b'{"a":1}\n'), (5, b'{"b":2}\r\n'), (6, b'{"c":3}')]


def test_a_byte_order_mark_is_not_part_of_the_first_line(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a":1}\n')
    ((number, raw),) = all_records(path, 1 << 20)
    assert number == 1
    assert raw.strip() == b'{"a":1}'


def test_a_line_longer_than_a_batch_is_kept_whole(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    long_line = b'{"x":"' + b"y" * 5000 + b'"}'
    path.write_bytes(b'{"a":1}\n' + long_line + b"\n" + b'{"b":2}\n')
    records = all_records(path, 100)
    assert [n for n, _ in records] == [1, 2, 3]
    assert records[1][1] == long_line + b"\n"


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(st.sampled_from([b'{"a":1}', b"", b"  ", b"garbage", b'{"b":"\xc3\xa9"}']), max_size=40),
    batch_bytes=st.integers(min_value=1, max_value=64),
    trailing_newline=st.booleans(),
)
def test_any_batch_size_reads_the_same_records(
    lines: list[bytes], batch_bytes: int, trailing_newline: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.jsonl"
        data = b"\n".join(lines) + (b"\n" if trailing_newline and lines else b"")
        path.write_bytes(data)
        if not data:
            return
        expected = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
        got = [(n, raw.rstrip(b"\r\n")) for n, raw in all_records(path, batch_bytes)]
        assert got == expected


def test_resume_numbering_and_digest(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"a\nb\nc\n")
    assert count_lines_before(path, 4) == 2
    batches = list(read_line_batches(path, start_byte=4, end_byte=6, batch_bytes=10))
    assert batches[0].records["source_offset"].to_pylist() == [3]
    digest, size = file_digest(path)
    assert size == 6
    assert digest == hashlib.sha256(b"a\nb\nc\n").hexdigest()


def test_batches_end_exactly_at_resume_stops(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"".join(b'{"n":%d}\n' % i for i in range(100)))
    stop = len(b"".join(b'{"n":%d}\n' % i for i in range(37)))
    batches = list(
        read_line_batches(path, start_byte=0, end_byte=path.stat().st_size, batch_bytes=200, stops=[stop])
    )
    assert stop in {b.end_byte for b in batches}
    assert all(not (b.start_byte < stop < b.end_byte) for b in batches)
