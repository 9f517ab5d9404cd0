"""``vhlake schema``: the event's JSON Schema, its stored versions, and a Confluent-compatible Schema Registry.

``push`` and ``diff`` reach ``KAFKA_SCHEMA_REGISTRY_URL`` through confluent-kafka's own client. The registry
is judged by its answers only: a registry that does not answer, or refuses the login, is one line naming
its URL (exit 1), never a traceback; a missing URL is a configuration error (exit 2).
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.text import Text

from vhlake import bootstrap
from vhlake.cli.context import settings_of
from vhlake.cli.output import err, out
from vhlake.errors import SourceError, VhlakeError
from vhlake.events.model import event_json_schema
from vhlake.events.registry_client import (
    RegistryConfig,
    registry_client,
    registry_error,
    schema_text,
    value_subject,
)
from vhlake.events.schema_registry import SchemaVersion, compatibility_problems, registered_versions

_NOT_FOUND = 404
_CONFLICT = 409
_SUBJECT_NOT_FOUND = 40401
_LOGIN_REFUSED = (401, 403)
_DIFF_STYLES = {"+": "green", "-": "red", "@": "cyan"}

schema_app = typer.Typer(
    help=(
        "The event's JSON Schema (the wire contract); `vhlake schema` prints it. `push` and `diff` work "
        "with a Confluent-compatible Schema Registry (KAFKA_SCHEMA_REGISTRY_URL)."
    ),
    invoke_without_command=True,
)

SubjectOption = Annotated[
    str | None,
    typer.Option(
        "--subject",
        help="The registry subject (default: <KAFKA_VALIDATION_TOPIC>-value, Confluent's TopicNameStrategy).",
        show_default=False,
    ),
]


class DiffFormat(StrEnum):
    text = "text"
    json = "json"


@schema_app.callback()
def schema(ctx: typer.Context) -> None:
    """Print the JSON Schema of a validation event (the wire contract)."""
    if ctx.invoked_subcommand is None:
        sys.stdout.write(json.dumps(event_json_schema(), indent=2, ensure_ascii=False) + "\n")


@schema_app.command("check")
def schema_check() -> None:
    """Check the stored schema versions are each backward compatible with the one before (new
    fields optional; required fields, types and enum values kept) and the code's model is the latest."""
    from vhlake.events.schema_registry import check_registry

    problems = check_registry()
    for problem in problems:
        err.print(f"[red]✗[/red] {problem}", highlight=False)
    if problems:
        raise typer.Exit(1)
    latest = registered_versions()[-1].version
    out.print(
        f"[green]✓[/green] schema versions v1..v{latest} are backward compatible; the model is v{latest}"
    )


@schema_app.command("push")
def schema_push(
    ctx: typer.Context,
    subject: SubjectOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say which versions the registry lacks; register nothing.")
    ] = False,
) -> None:
    """Register the stored schema versions in the Schema Registry, v1 first, as JSON schemas.

    Each version the subject already holds is left alone, so pushing again registers nothing. The
    registry checks each new version against its compatibility level (BACKWARD by default): a version it
    refuses stops the push with the registry's reason and exit code 1.
    """
    config, subject = _registry_of(ctx, subject)
    out.print(f"subject {subject} at {config.url}", highlight=False)
    with _talking_to(config) as client:
        for stored in registered_versions():
            _push_version(client, subject, stored, dry_run=dry_run)


def _push_version(client: Any, subject: str, stored: SchemaVersion, *, dry_run: bool) -> None:
    """Register one stored version unless the subject holds it; the registry's refusal (409) is exit 1."""
    from confluent_kafka.schema_registry import Schema
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    schema = Schema(schema_text(stored.schema), "JSON")
    found = _lookup(client, subject, schema)
    if found is not None:
        out.print(f"v{stored.version}: already there, id {found.schema_id} (version {found.version})")
        return
    if dry_run:
        out.print(f"v{stored.version}: not there yet, would be registered")
        return
    try:
        schema_id = client.register_schema(subject, schema)
    except SchemaRegistryError as exc:
        if exc.http_status_code != _CONFLICT:
            raise
        err.print(
            f"[red]✗[/red] v{stored.version}: the registry refused it: {exc.error_message}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from None
    out.print(f"v{stored.version}: [green]registered[/green], id {schema_id}")


@schema_app.command("diff")
def schema_diff(
    ctx: typer.Context,
    subject: SubjectOption = None,
    output_format: Annotated[
        DiffFormat, typer.Option("--format", "-f", help="text, or json for programs.")
    ] = DiffFormat.text,
) -> None:
    """Compare the registry's latest schema under the subject with the code's (the event model).

    Equal: says so, exit 0. Different: a unified diff, then whether each side reads what the other
    accepts (ours backward, the registry's forward, by `vhlake schema check`'s rules) and the registry's
    own verdict on ours under its compatibility level; exit 1. A subject with nothing registered: exit 1.
    """
    config, subject = _registry_of(ctx, subject)
    ours = event_json_schema()
    with _talking_to(config) as client:
        latest = _latest(client, subject)
        if latest is None:
            err.print(
                f"[red]✗[/red] nothing registered under {subject} at {config.url}: run `vhlake schema push`",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1)
        theirs = _parsed_json_schema(latest, subject)
        comparison = _compare(client, config, subject, latest, theirs, ours)
    if output_format is DiffFormat.json:
        sys.stdout.write(json.dumps(comparison.as_json(), indent=2) + "\n")
    else:
        _print_comparison(comparison, theirs, ours)
    if not comparison.same:
        raise typer.Exit(1)


def _compare(
    client: Any,
    config: RegistryConfig,
    subject: str,
    latest: Any,
    theirs: dict[str, Any],
    ours: dict[str, Any],
) -> Comparison:
    """The two schemas side by side; when they differ, each side's verdict and the registry's own."""
    from confluent_kafka.schema_registry import Schema

    comparison = Comparison(
        url=config.url,
        subject=subject,
        registry_version=latest.version,
        registry_id=latest.schema_id,
        ours_label=_label_of_ours(ours),
        theirs_label=_label_of_theirs(theirs),
        same=theirs == ours,
    )
    if not comparison.same:
        comparison.backward = compatibility_problems(theirs, ours)
        comparison.forward = compatibility_problems(ours, theirs)
        comparison.level = _compatibility_level(client, subject)
        comparison.registry_accepts = bool(
            client.test_compatibility(subject, Schema(schema_text(ours), "JSON"))
        )
    return comparison


@dataclass
class Comparison:
    """What ``vhlake schema diff`` found."""

    url: str
    subject: str
    registry_version: int
    registry_id: int
    ours_label: str
    theirs_label: str | None  # which stored version the registry's latest is, if any
    same: bool
    backward: list[str] | None = None  # why ours may not read what the registry's schema accepts
    forward: list[str] | None = None  # why the registry's schema may not read what ours accepts
    level: str | None = None
    registry_accepts: bool | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "registry": {
                "url": self.url,
                "version": self.registry_version,
                "id": self.registry_id,
                "stored_as": self.theirs_label,
            },
            "ours": self.ours_label,
            "same": self.same,
            "backward": None
            if self.backward is None
            else {"compatible": not self.backward, "problems": self.backward},
            "forward": None
            if self.forward is None
            else {"compatible": not self.forward, "problems": self.forward},
            "registry_verdict": None
            if self.registry_accepts is None
            else {"level": self.level, "compatible": self.registry_accepts},
        }


def _print_comparison(comparison: Comparison, theirs: dict[str, Any], ours: dict[str, Any]) -> None:
    same_as = f" (our {comparison.theirs_label})" if comparison.theirs_label else ""
    out.print(f"subject {comparison.subject} at {comparison.url}", highlight=False)
    out.print(
        f"registry: version {comparison.registry_version}, id {comparison.registry_id}{same_as}",
        highlight=False,
    )
    out.print(f"ours:     {comparison.ours_label}", highlight=False)
    if comparison.same:
        out.print("[green]✓[/green] no difference")
        return
    lines = difflib.unified_diff(
        _pretty(theirs),
        _pretty(ours),
        fromfile=f"registry (version {comparison.registry_version}, id {comparison.registry_id})",
        tofile=f"ours ({comparison.ours_label})",
        lineterm="",
    )
    for line in lines:
        out.print(Text(line, style=_DIFF_STYLES.get(line[:1], "")), soft_wrap=True)
    _print_verdict("ours reads what the registry's schema accepts (backward)", comparison.backward or [])
    _print_verdict("the registry's schema reads ours (forward)", comparison.forward or [])
    verdict = "accepts ours" if comparison.registry_accepts else "[red]refuses ours[/red]"
    out.print(f"the registry, under its compatibility level {comparison.level}: {verdict}", highlight=False)
    if comparison.theirs_label:
        out.print(
            f"the registry holds our {comparison.theirs_label}: run `vhlake schema push`", highlight=False
        )


def _print_verdict(question: str, problems: list[str]) -> None:
    out.print(f"{question}: {'[red]no[/red]' if problems else '[green]yes[/green]'}", highlight=False)
    for problem in problems:
        out.print(f"  - {problem}", highlight=False, soft_wrap=True)


def _pretty(schema: dict[str, Any]) -> list[str]:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def _label_of_ours(ours: dict[str, Any]) -> str:
    """``v<N>`` when the model is the latest stored version; else says it is not stored yet."""
    latest = registered_versions()[-1]
    if latest.schema == ours:
        return f"v{latest.version}"
    return f"the event model, not stored yet (latest stored: v{latest.version}; see vhlake schema check)"


def _label_of_theirs(theirs: dict[str, Any]) -> str | None:
    return next((f"v{stored.version}" for stored in registered_versions() if stored.schema == theirs), None)


def _registry_of(ctx: typer.Context, subject: str | None) -> tuple[RegistryConfig, str]:
    """The configured registry and the subject to work on; exit 2 when no registry is configured."""
    settings = settings_of(ctx)
    config = bootstrap.registry_config(settings)
    if config is None:
        err.print(
            "[red]error:[/red] no schema registry configured: set KAFKA_SCHEMA_REGISTRY_URL "
            "(and KAFKA_SCHEMA_REGISTRY_USERNAME / _PASSWORD if it asks for a login)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(2)
    return config, subject or value_subject(settings.kafka_validation_topic)


@contextmanager
def _talking_to(config: RegistryConfig) -> Iterator[Any]:
    """A client of the registry, closed after; what goes wrong on the way becomes one line with the URL.

    The client comes first: without confluent-kafka it is the error that says which extra to install.
    """
    client = registry_client(config)
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    try:
        yield client
    except (typer.Exit, VhlakeError):
        raise
    except SchemaRegistryError as exc:
        hint = (
            ": check KAFKA_SCHEMA_REGISTRY_USERNAME and KAFKA_SCHEMA_REGISTRY_PASSWORD"
            if exc.http_status_code in _LOGIN_REFUSED
            else ""
        )
        raise SourceError(
            f"the schema registry at {config.url} answered {exc.http_status_code}: {exc.error_message}{hint}"
        ) from exc
    except Exception as exc:  # the HTTP client's own errors (refused, timed out, TLS, not a registry)
        raise registry_error(config, exc) from exc
    finally:
        client.close()


def _lookup(client: Any, subject: str, schema: Any) -> Any:
    """The subject's registration of ``schema``, or None (no such subject, or not under it)."""
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    try:
        return client.lookup_schema(subject, schema)
    except SchemaRegistryError as exc:
        if exc.http_status_code == _NOT_FOUND:
            return None
        raise


def _latest(client: Any, subject: str) -> Any:
    """The subject's latest registered version, or None when the subject has none."""
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    try:
        return client.get_latest_version(subject)
    except SchemaRegistryError as exc:
        if exc.http_status_code == _NOT_FOUND and exc.error_code == _SUBJECT_NOT_FOUND:
            return None
        raise


def _compatibility_level(client: Any, subject: str) -> str:
    """The subject's level, or the global one when the subject has none of its own (Confluent: 40408)."""
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    try:
        return str(client.get_compatibility(subject))
    except SchemaRegistryError as exc:
        if exc.http_status_code != _NOT_FOUND:
            raise
    return str(client.get_compatibility())


def _parsed_json_schema(latest: Any, subject: str) -> dict[str, Any]:
    """The registry's latest as a JSON Schema document; a subject holding another kind is an error."""
    kind = latest.schema.schema_type or "AVRO"
    if kind != "JSON":
        raise SourceError(
            f"{subject}'s latest version is a {kind} schema, not a JSON Schema: nothing to compare"
        )
    try:
        parsed = json.loads(latest.schema.schema_str)
    except ValueError as exc:
        raise SourceError(f"{subject}'s latest version is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise SourceError(f"{subject}'s latest version is not a JSON Schema object")
    return parsed
