"""The README's commands, run in its order on a fresh lake: the README cannot drift from the program.

The commands are extracted from the README's own ```sh blocks. Which run is an explicit rule, tested too:
every command line of a ```sh block either runs here (it must then be a ``vhlake`` command), or is in a
section of ``SKIPPED_SECTIONS``, or starts with a prefix of ``SKIPPED_COMMANDS``, each with the reason it
cannot run in a test; an entry that skips nothing is an error, so the lists cannot go stale either.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import CliResult
from vhlake.samples import SampleSpec, generate_lines, write_jsonl

README = Path(__file__).resolve().parents[1] / "README.md"
Run = Callable[..., CliResult]

SKIPPED_SECTIONS = {
    "The always-on service": "runs until stopped (tests/test_service.py runs it)",
    "Kafka (production)": "needs a Kafka broker (tests/test_kafka.py starts one)",
}
SKIPPED_COMMANDS = {
    "make ": "installs into .venv and runs the suite: what runs this test",
    "vhlake serve": "runs until stopped (tests/test_service.py, tests/test_api.py)",
    "curl ": "needs `vhlake serve` running",
    "vhlake alerts run": "sends to the example's webhook, Slack and SMTP channels (network)",
    "vhlake query --engine databricks": "needs a Databricks SQL warehouse",
    "vhlake spark ": "PySpark takes minutes (tests/test_spark_streaming.py, tests/test_spark_jobs.py)",
    "databricks bundle": "needs a Databricks workspace",
}
# What a command's output must show, beyond exit code 0 (the first matching prefix applies).
EXPECTED = {
    ".venv/bin/vhlake --help": "Usage",
    "vhlake ingest events.jsonl": "ingested",
    "vhlake ingest --from-log": "ingested",
    "vhlake publish": "delivered",
    "vhlake pipeline run": "jobs upserted",
    "vhlake quarantine summary": "reason",
    "vhlake quarantine replay": "replayed",
    "vhlake tables": "validation_events_bronze",
    "vhlake schema check": "backward compatible",
    "vhlake schema push": "v1: registered",
    "vhlake schema diff": "no difference",
    "vhlake schema": '"event_type"',
    "vhlake alerts validate": "alert rules are valid",
    "vhlake ml score": "anomalies",
    "vhlake ml train": "model",
    "vhlake maintain": "validation_events_bronze",
    "vhlake forget": "forgot user",
    "vhlake lineage": "validation_results_silver",
    "vhlake history": "version",
    "vhlake databricks render": "CREATE",
}


def readme_commands(text: str) -> list[tuple[str, str]]:
    """(section, command) for every line of every ```sh block, in order; comments dropped."""
    commands, section, block = [], "", None
    for line in text.splitlines():
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        elif line.startswith("```"):
            block = line[3:].strip() if block is None else None
        elif block == "sh" and line.strip():
            commands.append((section, line.split(" #")[0].strip()))
    return commands


def skip_reason(section: str, command: str) -> str | None:
    """Why ``command`` is not run: its section's reason, else the first matching command prefix's."""
    if section in SKIPPED_SECTIONS:
        return SKIPPED_SECTIONS[section]
    return next((why for prefix, why in SKIPPED_COMMANDS.items() if command.startswith(prefix)), None)


def test_the_selection_rule_covers_every_line_and_each_skip_is_used() -> None:
    commands = readme_commands(README.read_text(encoding="utf-8"))
    ran = [c for s, c in commands if skip_reason(s, c) is None]
    for command in ran:  # what runs is a vhlake command: nothing else is meant to run unskipped
        assert re.match(r"(\.venv/bin/)?vhlake ", command), f"{command!r}: run it or add a skip rule"
    used = {s for s, _ in commands if s in SKIPPED_SECTIONS}
    used |= {p for p in SKIPPED_COMMANDS for s, c in commands if c.startswith(p) and s not in used}
    assert used == set(SKIPPED_SECTIONS) | set(SKIPPED_COMMANDS), "a skip rule skips nothing: remove it"
    for needed in ("vhlake ingest events.jsonl", "vhlake pipeline run", "vhlake query "):
        assert any(c.startswith(needed) for c in ran), f"the README test would not run {needed!r}"
    assert len(ran) >= 20


@pytest.mark.slow
@pytest.mark.usefixtures("schema_registry")
def test_every_readme_command_runs_in_order_on_a_fresh_lake(
    run_cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = README.read_text(encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # the README's default lake, ./lake, is fresh here
    monkeypatch.delenv("VHLAKE_LAKE_URI", raising=False)
    now = datetime.now(UTC)
    write_jsonl(
        generate_lines(SampleSpec(jobs=1500, end=now, bad_event_rate=0.01, garbage_rate=0.01)),
        tmp_path / "events.jsonl",
    )
    write_jsonl(generate_lines(SampleSpec(jobs=200, seed=8, end=now)), tmp_path / "more-events.jsonl")
    (tmp_path / "alerts.yaml").write_text(re.search(r"```yaml\n(.*?)```", text, re.S).group(1))  # type: ignore[union-attr]
    for section, command in readme_commands(text):
        if skip_reason(section, command) is not None:
            continue
        args = shlex.split(command)
        result = run_cli(*args[1:])
        output = result.stdout + result.stderr
        assert result.exit_code == 0, f"{command}\n{output}"
        assert "Traceback" not in output, command
        expected = next((want for prefix, want in EXPECTED.items() if command.startswith(prefix)), None)
        if expected is not None:
            assert expected in output, f"{command}: {expected!r} not in\n{output}"
        if "--format json" in command:
            json.loads(result.stdout)
