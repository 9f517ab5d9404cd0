"""Reading files in batches: lines are never split, numbers are right, blank lines are skipped."""

from __future__ import annotations

import hashlib
import itertools
import tempfile
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vhlake.errors import SourceError
from vhlake.ingest.files import (
    check_json_lines,
    compression_of,
    count_lines_before,
    file_digest,
    input_files,
    read_line_batches,
)


def all_records(path: Path, batch_bytes: int) -> list[tuple[int, bytes]]:
    size = file_digest(path)[1]
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


# ---- compressed files and files that are not JSON lines ---------------------------------------------------


def _compressed(path: Path, data: bytes, codec: str) -> Path:
    if codec == "gzip":
        import gzip

        path.write_bytes(gzip.compress(data))
    else:
        with pa.CompressedOutputStream(str(path), codec) as out:
            out.write(data)
    return path


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_compressed_files_read_as_their_lines_whatever_the_batch_size(tmp_path: Path, codec: str) -> None:
    data = b"".join(b'{"n":%d}\n' % i for i in range(500)) + b"\n" + b'{"last":1}'
    plain = tmp_path / "plain.jsonl"
    plain.write_bytes(data)
    packed = _compressed(tmp_path / f"events.jsonl.{codec}", data, codec)
    assert compression_of(packed) == codec and compression_of(plain) is None
    assert file_digest(packed) == file_digest(plain)  # the content's identity, not the container's
    assert all_records(packed, 97) == all_records(plain, 1 << 20)
    stop = len(data) // 2
    resumed = list(read_line_batches(packed, start_byte=stop, end_byte=len(data), batch_bytes=64))
    expected = list(read_line_batches(plain, start_byte=stop, end_byte=len(data), batch_bytes=64))
    assert [b.records for b in resumed] == [b.records for b in expected]
    assert count_lines_before(packed, stop) == count_lines_before(plain, stop)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"event_id,event_type,job_id\nevt-1,validation_started,job-1\n", "CSV"),
        (bytes(range(256)) * 40, "binary"),
        (b"PK\x03\x04" + b"\x00" * 100, "zip"),
        (b"hello\nworld\n", "no line starts with '{'"),
    ],
)
def test_a_file_that_is_plainly_not_json_lines_is_refused_with_the_reason(
    tmp_path: Path, content: bytes, why: str
) -> None:
    path = tmp_path / "events.bin"
    path.write_bytes(content)
    with pytest.raises(SourceError) as refused:
        check_json_lines(path)
    assert why in str(refused.value) and "\n" not in str(refused.value)


def test_json_lines_with_some_broken_lines_are_not_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl.gz"
    check_json_lines(_compressed(path, b'\xef\xbb\xbf\n{broken\n{"a":1}\nnot json\n', "gzip"))
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    check_json_lines(empty)


def test_a_corrupt_compressed_file_is_a_source_error(tmp_path: Path) -> None:
    path = _compressed(tmp_path / "events.jsonl.gz", b'{"a":1}\n' * 1000, "gzip")
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(SourceError, match=r"events\.jsonl\.gz"):
        file_digest(path)


def test_a_directory_means_its_json_lines_files(tmp_path: Path) -> None:
    folder = tmp_path / "feed"
    folder.mkdir()
    for name in ("b.jsonl", "a.jsonl.gz", "c.jsonl.zst", "notes.txt"):
        (folder / name).write_bytes(b"")
    (folder / "sub").mkdir()
    assert [p.name for p in input_files([folder])] == ["a.jsonl.gz", "b.jsonl", "c.jsonl.zst"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="is a directory with no"):
        input_files([tmp_path / "empty"])
    with pytest.raises(SourceError, match="no such file"):
        input_files([tmp_path / "missing.jsonl"])
