"""``vhlake publish``: validate events from files and hand them to the event log (embedded or Kafka)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console

from vhlake.cli.output import file_progress
from vhlake.errors import SourceError
from vhlake.events.model import ValidationEvent
from vhlake.events.publisher import EventPublisher
from vhlake.ingest.files import file_app_id, file_digest
from vhlake.lake.delta import Lake
from vhlake.lake.tables import BRONZE

_BATCH = 10_000


@dataclass
class PublishSummary:
    """Per status (delivered, outboxed, failed), how many events; plus the invalid lines."""

    statuses: Counter[str] = field(default_factory=Counter)
    invalid: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def failed(self) -> int:
        return self.statuses["failed"]


def publish_files(
    publisher: EventPublisher, files: Sequence[Path], *, out: Console, err: Console
) -> PublishSummary:
    """Publish every valid event of ``files``; report each invalid line (file, line, first error)."""
    summary = PublishSummary()
    try:
        for path in files:
            _publish_file(publisher, path, summary, err=err)
    finally:
        publisher.close()
    _print_summary(summary, out)
    return summary


def warn_if_ingested_from_file(lake: Lake, files: Sequence[Path], *, err: Console) -> None:
    """Warn about a file whose content bronze already holds from ``vhlake ingest FILE``: published, its
    events reach bronze a second time through the event log (silver dedupes them, bronze keeps both)."""
    for path in files:
        if lake.txn_version(BRONZE, file_app_id(file_digest(path)[0])) is not None:
            err.print(
                f"[yellow]warning:[/yellow] {path.name} was already ingested into bronze from the file "
                "(vhlake ingest); published too, its events will be in bronze twice once the event log "
                "is ingested",
                highlight=False,
                soft_wrap=True,
            )


def _publish_file(publisher: EventPublisher, path: Path, summary: PublishSummary, *, err: Console) -> None:
    total = path.stat().st_size if path.is_file() else 0
    with file_progress(show=True) as progress:
        task = progress.add_task(f"publishing {path.name}", total=total)
        for batch, problems, consumed in _validated_batches(path):
            for line_no, message in problems:
                err.print(f"[yellow]{path.name}:{line_no}[/yellow]: {message}", highlight=False)
            summary.invalid += len(problems)
            if batch:
                for delivery in publisher.send_batch(batch):
                    summary.statuses[delivery.status] += 1
                    if delivery.error:
                        summary.errors[delivery.error] += 1
            progress.update(task, completed=consumed)


def _print_summary(summary: PublishSummary, out: Console) -> None:
    s = summary.statuses
    out.print(
        f"[green]{s['delivered']:,} delivered[/green], "
        f"[{'yellow' if s['outboxed'] else 'green'}]{s['outboxed']:,} waiting in the outbox[/], "
        f"[{'red' if s['failed'] else 'green'}]{s['failed']:,} failed[/], "
        f"{summary.invalid:,} invalid (not published)"
    )
    if s["outboxed"]:
        out.print(
            "[yellow]the event log is unreachable: outboxed events are re-sent when it is back "
            "(vhlake outbox status / drain)[/yellow]"
        )
    for error, count in summary.errors.most_common(5):
        out.print(f"[red]  {count:,} × {error}[/red]", highlight=False)


def _validated_batches(path: Path) -> Iterator[tuple[list[ValidationEvent], list[tuple[int, str]], int]]:
    """Batches of valid events, the invalid lines seen meanwhile, and how many bytes were read so far."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise SourceError(f"{path}: {exc.strerror or exc}") from exc
    with handle:
        batch: list[ValidationEvent] = []
        problems: list[tuple[int, str]] = []
        consumed = 0
        for line_no, line in enumerate(handle, start=1):
            consumed += len(line)
            if not line.strip():
                continue
            try:
                batch.append(ValidationEvent.model_validate_json(line))
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first["loc"]) or "event"
                problems.append((line_no, f"{where}: {first['msg']}"))
            if len(batch) >= _BATCH:
                yield batch, problems, consumed
                batch, problems = [], []
        yield batch, problems, consumed
