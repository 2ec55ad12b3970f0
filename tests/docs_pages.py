"""The pages whose code the tests run as printed: README.md and the documentation site's
getting-started and user-guide pages (docs/getting-started.md, docs/guide/*.md).

A code block belongs to the heading above it (headings are read outside code blocks: a ``#``
comment in a block is no heading). `section` finds the text under a heading on whichever page
holds it, so a test follows its text when the text moves between pages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pages() -> list[Path]:
    """README.md, docs/getting-started.md and docs/guide/*.md, in that order."""
    guide = sorted((ROOT / "docs" / "guide").glob("*.md"))
    return [ROOT / "README.md", ROOT / "docs" / "getting-started.md", *guide]


@dataclass(frozen=True)
class Block:
    page: Path
    heading: str  # the heading line above the block, e.g. "## Scale out"
    language: str  # the fence's info string: "python", "bash", "toml", "text", ...
    text: str
    line: int  # the fence's line number on its page, from 1

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(language: str | None = None) -> list[Block]:
    """Every fenced code block of `pages`, in order (of one ``language`` if given)."""
    found = []
    for page in pages():
        heading, fence, body, start = "", None, [], 0
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if fence is None and line.startswith("```"):
                fence, body, start = line[3:].strip(), [], number
            elif fence is not None and line.startswith("```"):
                found.append(Block(page, heading, fence, "\n".join(body) + "\n", start))
                fence = None
            elif fence is not None:
                body.append(line)
            elif re.match(r"#{1,6} ", line):
                heading = line
    return [b for b in found if language is None or b.language == language]


def section(heading: str) -> str:
    """The text under ``heading`` (a whole heading line, e.g. ``"# Scale out"``) up to the next
    heading of the same or a higher level, on the one page that has it."""
    level = len(heading) - len(heading.lstrip("#"))
    found = []
    for page in pages():
        lines, inside, fence = [], False, False
        for line in page.read_text(encoding="utf-8").splitlines():
            if line.startswith("```"):
                fence = not fence
            is_heading = not fence and re.match(r"(#{1,6}) ", line)
            if is_heading and inside and len(is_heading.group(1)) <= level:
                break
            if inside:
                lines.append(line)
            if is_heading and line == heading:
                inside = True
        if inside:
            found.append("\n".join(lines) + "\n")
    assert len(found) == 1, f"{heading!r} is on {len(found)} pages, not one"
    return found[0]
