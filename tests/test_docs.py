"""The repository stands alone, and its documentation cannot rot quietly.

- No tracked file points outside the repository (to the team's notes beside the checkout).
- Every relative link in the README and in ``docs/`` reaches a file that exists, and every ``#anchor``
  a heading of that file.
- ``docs/tables.md`` names every table of the contracts (written or not yet) and every column of each.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from vhlake.lake.tables import ALL_TABLES

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
# Spelled in two parts so that this file does not contain what it looks for.
OUTSIDE = (b"../" + b"shared", b"DESIGN" + b".md")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def tracked_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False
    )  # a git checkout: what is committed or staged, never the untracked build outputs
    if listed.returncode != 0:
        pytest.skip("not a git checkout: the tracked files are unknown")
    return [ROOT / name for name in listed.stdout.decode().split("\0") if name]


def test_no_tracked_file_points_outside_the_repository() -> None:
    offenders = []
    for path in tracked_files():
        if not path.is_file():  # deleted in the work tree, not yet committed
            continue
        content = path.read_bytes()
        offenders += [
            f"{path.relative_to(ROOT)}: {needle.decode()}" for needle in OUTSIDE if needle in content
        ]
    assert offenders == []


def prose(text: str) -> str:
    """Markdown without its code blocks and code spans, where link-like text is not a link."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a file's headings: lower case, punctuation dropped, spaces as hyphens,
    a repeated one suffixed -1, -2..."""
    seen: dict[str, int] = {}
    found = set()
    for heading in _HEADING.findall(_FENCE.sub("", markdown)):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def headings_of(path: Path) -> set[str]:
    """The anchors a Markdown file offers (none for other files)."""
    return anchors(path.read_text(encoding="utf-8")) if path.suffix == ".md" else set()


def relative_links(path: Path) -> list[str]:
    return [
        target
        for target in _LINK.findall(prose(path.read_text(encoding="utf-8")))
        if not re.match(r"[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto: ...
    ]


@pytest.mark.parametrize("document", [ROOT / "README.md", *DOCS], ids=lambda p: p.name)
def test_every_relative_link_reaches_a_file_and_heading(document: Path) -> None:
    broken = []
    for target in relative_links(document):
        file_part, _, anchor = target.partition("#")
        destination = (document.parent / file_part).resolve() if file_part else document
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and anchor not in headings_of(destination):
            broken.append(f"{target}: no such heading in {destination.name}")
    assert broken == []


def test_the_docs_are_there_and_linked_from_the_readme() -> None:
    names = {p.name for p in DOCS}
    expected = {
        "architecture.md",
        "tables.md",
        "semantics.md",
        "exactly-once.md",
        "operations.md",
        "decisions.md",
    }
    assert expected <= names
    readme_links = set(relative_links(ROOT / "README.md"))
    assert {f"docs/{name}" for name in expected} <= readme_links


def test_anchors_follow_githubs_rule() -> None:
    text = "# Retention, maintain and forget\n## `validation_events_bronze`\n## Gold: daily metrics\n## Gold: daily metrics\n"
    assert anchors(text) == {
        "retention-maintain-and-forget",
        "validation_events_bronze",
        "gold-daily-metrics",
        "gold-daily-metrics-1",
    }


def table_sections(markdown: str) -> dict[str, str]:
    """``## `name``` sections of docs/tables.md, by table name."""
    parts = re.split(r"^## `([a-z_]+)`\s*$", markdown, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_tables_md_lists_every_contract_and_every_column() -> None:
    sections = table_sections((ROOT / "docs" / "tables.md").read_text(encoding="utf-8"))
    contracts = ALL_TABLES
    assert set(sections) == {table.name for table in contracts}
    missing = [
        f"{table.name}.{column}"
        for table in contracts
        for column in table.schema.names
        if f"`{column}`" not in sections[table.name]
    ]
    assert missing == []
