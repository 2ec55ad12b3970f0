r"""A griffe extension (mkdocs.yml loads it for mkdocstrings): emg_lens's docstrings, written to
be read in a terminal and run as doctests, as Markdown for the API reference.

Three forms would not render as written: a doctest (``>>>`` lines and their output, which
Markdown reads as nested quotes) becomes a ``pycon`` code block; a reStructuredText simple
table (rules of ``=``) becomes a plain-text block, as it is read in the source; and a literal
block announced by ``::`` becomes a code block. The text of the docstring is not changed.

>>> to_markdown("Say:\n\n>>> 1 + 1\n2\n\nDone.").splitlines()
['Say:', '', '```pycon', '>>> 1 + 1', '2', '```', '', 'Done.']
>>> to_markdown("A file::\n\n    a = 1\n\nafter").splitlines()
['A file:', '', '```text', 'a = 1', '```', '', 'after']
"""

from __future__ import annotations

import re
import textwrap

import griffe

RULE = re.compile(r"^=+(\s+=+)+\s*$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _fenced(lines: list[str], indent: int, language: str) -> list[str]:
    pad = " " * indent
    body = textwrap.dedent("\n".join(lines)).splitlines()
    return [f"{pad}```{language}", *(f"{pad}{line}" if line else "" for line in body), f"{pad}```"]


def to_markdown(text: str) -> str:
    """``text`` (a docstring) with its doctests, simple tables and literal blocks fenced."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        line, stripped = lines[i], lines[i].strip()
        if stripped.startswith("```"):  # already a fenced block: copied as it is
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith("```"):
                j += 1
            out += lines[i : j + 1]
            i = j + 1
        elif stripped.startswith(">>>"):  # a doctest: up to the next blank line
            j = i
            while j < len(lines) and lines[j].strip():
                j += 1
            out += _fenced(lines[i:j], _indent(line), "pycon")
            i = j
        elif RULE.match(stripped):  # a simple table: its three rules and what lies between
            rules, j = 1, i + 1
            while j < len(lines) and rules < 3:
                rules += bool(RULE.match(lines[j].strip()))
                j += 1
            out += _fenced(lines[i:j], _indent(line), "text")
            i = j
        elif stripped.endswith("::") and not stripped.startswith(".."):  # a literal block
            out.append(line[:-1])
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            k = j
            while k < len(lines) and (not lines[k].strip() or _indent(lines[k]) > _indent(line)):
                k += 1
            while k > j and not lines[k - 1].strip():
                k -= 1
            if k > j:
                out += ["", *_fenced(lines[j:k], _indent(line), "text")]
                i = k
            else:
                i += 1
        else:
            out.append(line)
            i += 1
    return "\n".join(out)


class MarkdownDocstrings(griffe.Extension):
    """Rewrites every docstring with `to_markdown` as griffe loads it."""

    def on_instance(self, *, obj, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
