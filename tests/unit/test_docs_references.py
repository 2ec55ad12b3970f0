"""Every design reference points at a file and a section that exist (issue 27, item 5).

Comments, docstrings and docs cite the design notes as ``docs/DESIGN.md §N``. A citation of a
design document by any other path (a bare ``DESIGN``, or a copy outside the repository) would
send a reader to a file they do not have, and a section number that docs/DESIGN.md has no
heading for, to a section that is not there; both fail here, naming the file and line.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DESIGN = ROOT / "docs" / "DESIGN.md"
THIS_FILE = Path(__file__).resolve()
SCANNED = ("emg_lens", "tests", "benchmarks", "docs", "studies", "notebooks", "hooks", "README.md")
"""What is searched: the package, its tests, benchmarks, docs, study files, notebooks, the user
recipes and the README (folders that do not exist are skipped)."""
TEXT_SUFFIXES = {".py", ".md", ".toml", ".yaml", ".yml", ".ipynb", ".txt", ".rst", ".cfg"}
SKIPPED_FOLDERS = {"__pycache__", ".ipynb_checkpoints"}

# A citation: the word DESIGN (optionally with a path before it and .md after it), then one or
# more section numbers: "docs/DESIGN.md §5, §10".
CITATION = re.compile(r"(?P<path>[\w./-]*)DESIGN(?P<md>\.md)?\s*(?P<sections>§\d+(?:,\s*§\d+)*)")
# Any mention of a DESIGN.md file, cited or not (a link, a path in prose).
MENTION = re.compile(r"(?P<path>[\w./-]*)DESIGN\.md")
HEADING = re.compile(r"^#{2,6}[ \t]+(\d+)\.[ \t]", flags=re.M)


def _files() -> list[Path]:
    files = []
    for name in SCANNED:
        path = ROOT / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += [
                p
                for p in sorted(path.rglob("*"))
                if p.is_file()
                and p.suffix in TEXT_SUFFIXES
                and not SKIPPED_FOLDERS & set(p.relative_to(ROOT).parts)
                and p != THIS_FILE  # whose patterns and examples would match themselves
            ]
    return files


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _design_sections() -> set[int]:
    return {int(n) for n in HEADING.findall(DESIGN.read_text(encoding="utf-8"))}


def test_design_notes_exist_and_architecture_links_them():
    assert DESIGN.is_file(), "docs/DESIGN.md is missing, but the code cites it"
    assert _design_sections(), "docs/DESIGN.md has no numbered section headings ('## 2. ...')"
    architecture = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    assert "](DESIGN.md)" in architecture, "docs/ARCHITECTURE.md does not link the design notes"


def _problems(text: str, path: Path, sections: set[int]) -> list[str]:
    """What is wrong with the design citations and mentions in ``text`` (the file ``path``)."""
    where = path.relative_to(ROOT)
    problems = []
    for match in CITATION.finditer(text):
        line, cited = _line(text, match.start()), match.group(0).strip()
        # Within docs/DESIGN.md a section cites another as a bare "§N", which this pattern does
        # not match; every other citation must spell out the file.
        if match.group("path") != "docs/" or not match.group("md"):
            problems.append(f"{where}:{line}: {cited!r} does not cite docs/DESIGN.md")
        cited_sections = [int(n) for n in re.findall(r"§(\d+)", match.group("sections"))]
        missing = [n for n in cited_sections if n not in sections]
        if missing:
            have = ", ".join(f"§{n}" for n in sorted(sections))
            problems.append(
                f"{where}:{line}: {cited!r} cites §{missing[0]}, which docs/DESIGN.md has no "
                f"heading for (it has {have})"
            )
    for match in MENTION.finditer(text):
        prefix = match.group("path")  # a link relative to the file, or a path from the root
        if prefix != "docs/" and (path.parent / f"{prefix}DESIGN.md").resolve() != DESIGN:
            line = _line(text, match.start())
            problems.append(f"{where}:{line}: {match.group(0)!r} is not docs/DESIGN.md")
    return problems


@pytest.mark.slow
def test_every_design_citation_names_docs_design_md_and_an_existing_section():
    sections = _design_sections()
    problems = []
    for path in _files():
        problems += _problems(path.read_text(encoding="utf-8", errors="replace"), path, sections)
    assert not problems, "\n".join(problems)


def test_the_checks_catch_what_they_are_for():
    """A bare citation, a design file outside the repository and a section without a heading
    are each reported; a correct citation and a relative link are not."""
    text = (
        "(DESIGN §5)\n"
        "../shared/DESIGN.md\n"
        "docs/DESIGN.md §5, §7\n"
        "docs/DESIGN.md §5, §2 and [the notes](DESIGN.md)\n"
    )
    problems = _problems(text, ROOT / "docs" / "example.md", sections={2, 5})
    lines = [p.split(": ", 1)[0] for p in problems]  # citations first, then mentions
    assert lines == ["docs/example.md:1", "docs/example.md:3", "docs/example.md:2"]
    assert "'DESIGN §5' does not cite docs/DESIGN.md" in problems[0]
    assert "cites §7" in problems[1] and "'../shared/DESIGN.md' is not" in problems[2]
