"""``vhlake publish``: validate events from files and hand them to the event log."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console

from vhlake.errors import SourceError
from vhlake.events.model import ValidationEvent
from vhlake.events.publisher import EventPublisher

_BATCH = 5_000


def publish_files(publisher: EventPublisher, files: Sequence[Path], *, out: Console, err: Console) -> None:
    """Publish every valid event of ``files``; report each invalid line (file, line, first error)."""
    try:
        for path in files:
            published = invalid = 0
            for batch, problems in _validated_batches(path):
                for line_no, message in problems:
                    err.print(f"[yellow]{path.name}:{line_no}[/yellow]: {message}", highlight=False)
                invalid += len(problems)
                if batch:
                    published += len(publisher.publish_batch(batch))
            out.print(f"{path.name}: {published:,} published, {invalid:,} invalid (not published)")
    finally:
        publisher.close()


def _validated_batches(path: Path) -> Iterator[tuple[list[ValidationEvent], list[tuple[int, str]]]]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise SourceError(f"{path}: {exc.strerror or exc}") from exc
    with handle:
        batch: list[ValidationEvent] = []
        problems: list[tuple[int, str]] = []
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                batch.append(ValidationEvent.model_validate_json(line))
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first["loc"]) or "event"
                problems.append((line_no, f"{where}: {first['msg']}"))
            if len(batch) >= _BATCH:
                yield batch, problems
                batch, problems = [], []
        yield batch, problems
