"""Newline-delimited JSON files as a source of raw records, read in bounded batches.

A batch always ends on a line boundary, so its end byte is a safe place to resume from. Records are numbered
by line (1-based, as editors show them); blank lines are skipped but still counted.

Gzip and zstd files are read as the lines they hold (recognised by their first bytes, not their name):
positions, sizes and the digest are those of the decompressed content, so a file and its compressed copy
are the same source.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from vhlake.errors import SourceError

_BOM = b"\xef\xbb\xbf"
_HASH_CHUNK = 8 * 1024 * 1024
_READABLE = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd"}
_UNREADABLE = {b"PK\x03\x04": "zip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"7z\xbc\xaf": "7z"}
_SNIFF_BYTES = 64 * 1024
_SNIFF_LINES = 20
JSON_LINES_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst")


@dataclass(frozen=True)
class LineBatch:
    """Lines ``[start_byte, end_byte)`` of a file as records (``source_offset`` = line number, ``raw``)."""

    start_byte: int
    end_byte: int
    records: pa.Table
    lines_seen: int


class _Stream(Protocol):
    def read(self, size: int, /) -> bytes: ...
    def seek(self, position: int, /) -> int: ...


def input_files(paths: Iterable[Path]) -> list[Path]:
    """The files to ingest: each file given, and a directory's JSON-lines files (``*.jsonl``, ``.gz``,
    ``.zst``) in name order; a missing path or a directory without any is a :class:`SourceError`."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(JSON_LINES_SUFFIXES))
            if not found:
                raise SourceError(f"{path} is a directory with no {', '.join(JSON_LINES_SUFFIXES)} files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise SourceError(f"{path}: no such file")
    return files


def compression_of(path: Path) -> str | None:
    """``gzip`` or ``zstd`` when the file is compressed with it (by its first bytes), else None."""
    head = _head(path)
    return next((codec for magic, codec in _READABLE.items() if head.startswith(magic)), None)


def check_json_lines(path: Path) -> None:
    """Refuse, with the reason in one line, a file that is plainly not JSON lines (a CSV, an archive,
    binary data): ingesting it would only fill the rejects table, for good. A file whose lines are merely
    broken here and there passes: those lines are the rejects table's to keep."""
    head = _head(path)
    for magic, kind in _UNREADABLE.items():
        if head.startswith(magic):
            raise SourceError(
                f"{path}: a {kind} archive, not JSON lines (plain, gzip or zstd files are read)"
            )
    with open_lines(path) as stream:
        sample = _read_or_refuse(path, stream, _SNIFF_BYTES)
    if b"\x00" in sample:
        raise SourceError(f"{path}: binary data, not JSON lines (one JSON object per line, UTF-8)")
    lines = [line.strip() for line in sample.removeprefix(_BOM).splitlines() if line.strip()][:_SNIFF_LINES]
    if not lines or any(line.startswith(b"{") for line in lines):
        return
    first = lines[0][:60].decode("utf-8", "replace")
    if b"," in lines[0] and not lines[0].startswith((b"[", b'"')):
        raise SourceError(f"{path}: looks like CSV, not JSON lines (first line: {first!r})")
    raise SourceError(f"{path}: not JSON lines: no line starts with '{{' (first line: {first!r})")


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(8)
    except OSError as exc:
        raise SourceError(f"{path}: {exc.strerror or exc}") from exc


@contextmanager
def open_lines(path: Path) -> Iterator[_Stream]:
    """The file's (decompressed) bytes: a plain file seeks anywhere, a compressed one as the batch reader
    needs (see :class:`_ForwardReader`)."""
    codec = compression_of(path)
    if codec is None:
        with path.open("rb") as handle:
            yield handle
        return
    # gzip from the standard library (it reads concatenated members, as `cat a.gz b.gz` makes them),
    # zstd from pyarrow, which vhlake already needs.
    if codec == "gzip":
        with gzip.open(path, "rb") as unzipped:
            yield _ForwardReader(unzipped, path)
        return
    with pa.CompressedInputStream(str(path), "zstd") as unpacked:
        yield _ForwardReader(unpacked, path)


class _ForwardReader:
    """A decompressing stream read forward. ``seek`` goes forward by reading, or back into the bytes the
    last read returned: the batch reader only ever steps back to read a partial line again, and a resume
    skips forward."""

    def __init__(self, stream: gzip.GzipFile | pa.NativeFile, path: Path) -> None:
        self._stream = stream
        self._path = path
        self._position = 0
        self._last = b""  # what the last read returned, ending at _position
        self._replay = b""  # bytes to return again before reading the stream further

    def read(self, size: int, /) -> bytes:
        replay, self._replay = self._replay[:size], self._replay[size:]
        fresh = _read_or_refuse(self._path, self._stream, size - len(replay)) if size > len(replay) else b""
        data = replay + fresh if replay else fresh
        self._last = data
        self._position += len(data)
        return data

    def seek(self, position: int, /) -> int:
        while position > self._position:
            if not self.read(min(_HASH_CHUNK, position - self._position)):
                break
        back = self._position - position
        if back > len(self._last):
            raise SourceError(f"{self._path}: a compressed file cannot be read backwards")
        if back > 0:
            self._replay = self._last[len(self._last) - back :] + self._replay
            self._last = self._last[: len(self._last) - back]
            self._position = position
        return self._position


def _read_or_refuse(path: Path, stream: _Stream | gzip.GzipFile | pa.NativeFile, size: int) -> bytes:
    """``stream.read(size)``, a damaged compressed file becoming a :class:`SourceError` naming it."""
    try:
        data = stream.read(size)
    except (OSError, EOFError, zlib.error) as exc:
        raise SourceError(f"{path}: cannot be decompressed: {exc}") from exc
    return bytes(data)


def file_app_id(digest: str) -> str:
    """The Delta application id a file's content is ingested under (one per content, whatever its name)."""
    return f"file:{digest}"


def file_digest(path: Path) -> tuple[str, int]:
    """SHA-256 (hex) and size of the file's (decompressed) content: its identity for exactly-once ingestion."""
    digest = hashlib.sha256()
    size = 0
    with open_lines(path) as handle:
        while chunk := _read_or_refuse(path, handle, _HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def count_lines_before(path: Path, end_byte: int) -> int:
    """How many line breaks the first ``end_byte`` bytes hold (to number lines after a resume)."""
    count = 0
    with open_lines(path) as handle:
        remaining = end_byte
        while remaining > 0 and (chunk := handle.read(min(_HASH_CHUNK, remaining))):
            count += chunk.count(b"\n")
            remaining -= len(chunk)
    return count


def read_line_batches(
    path: Path, *, start_byte: int, end_byte: int, batch_bytes: int, stops: Iterable[int] = ()
) -> Iterator[LineBatch]:
    """Batches of about ``batch_bytes`` covering ``[start_byte, end_byte)``; lines are never split.

    No batch crosses one of ``stops`` (positions where an earlier run ended a batch), so a resumed ingest
    lines its batches up with what each table already committed. A line longer than ``batch_bytes`` makes
    its batch larger rather than being cut.
    """
    boundaries = sorted({p for p in stops if start_byte < p < end_byte} | {end_byte})
    next_line = count_lines_before(path, start_byte) + 1
    with open_lines(path) as handle:
        handle.seek(start_byte)
        position = start_byte
        carry = b""
        for boundary in boundaries:
            while position < boundary or carry:
                chunk = handle.read(min(batch_bytes, boundary - position)) if position < boundary else b""
                if not chunk and position < boundary:
                    boundary = end_byte = position  # the file shrank while we read it: stop at what exists
                position += len(chunk)
                data = carry + chunk if carry else chunk
                cut = len(data) if position >= boundary else data.rfind(b"\n") + 1
                if cut == 0:  # no complete line yet (a line longer than a batch): keep reading
                    carry = data
                    continue
                # The partial last line is read again with the next batch rather than copied along, and
                # the batch is a view of what was read: no copy of the 32 MiB body.
                position -= len(data) - cut
                handle.seek(position)
                carry = b""
                body = memoryview(data)[:cut]
                batch_start = position - cut
                records, seen = split_lines(body, first_line=next_line, at_file_start=batch_start == 0)
                next_line += seen
                yield LineBatch(batch_start, position, records, seen)
            if position >= end_byte:
                return


_WHITESPACE_BYTES = np.frombuffer(b" \t\r\n", dtype=np.uint8)


def split_lines(body: bytes | memoryview, *, first_line: int, at_file_start: bool) -> tuple[pa.Table, int]:
    """The non-blank lines of ``body`` as records, and how many lines ``body`` holds.

    The lines are zero-copy slices of ``body`` (Arrow offsets over one buffer), each keeping its line break:
    JSON allows trailing whitespace and the rejects path strips it.
    """
    if at_file_start and body[: len(_BOM)] == _BOM:
        body = b" " * len(_BOM) + bytes(
            body[len(_BOM) :]
        )  # keeps byte positions, and blanks are JSON whitespace
    ends = _line_ends(body)
    offsets = np.empty(len(ends) + 1, dtype=np.int64)
    offsets[0] = 0
    offsets[1:] = ends
    lines = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(ends), [None, pa.py_buffer(offsets), pa.py_buffer(body)]
    )
    numbers = pa.array(np.arange(first_line, first_line + len(ends), dtype=np.int64))
    records = pa.table({"source_offset": numbers, "raw": lines})
    # Only a line that starts with whitespace can be blank: the regex runs on those few alone.
    starts = np.frombuffer(body, dtype=np.uint8)[offsets[:-1]] if len(ends) else np.empty(0, np.uint8)
    maybe_blank = np.flatnonzero(np.isin(starts, _WHITESPACE_BYTES))
    if len(maybe_blank) == 0:
        return records, len(ends)
    blank = pc.match_substring_regex(lines.take(pa.array(maybe_blank)), r"^[ \t\r\n]*$")
    drop = np.zeros(len(ends), dtype=bool)
    drop[maybe_blank[np.asarray(blank.to_numpy(zero_copy_only=False), dtype=bool)]] = True
    return records.filter(pa.array(~drop)), len(ends)


def _line_ends(body: bytes | memoryview) -> npt.NDArray[np.int64]:
    """Offsets just past each line (a final line without a break ends at ``len(body)``)."""
    ends = np.flatnonzero(np.frombuffer(body, dtype=np.uint8) == ord("\n")).astype(np.int64) + 1
    if len(body) and body[-1:] != b"\n":
        ends = np.append(ends, len(body))
    return ends
