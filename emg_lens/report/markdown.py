"""The Markdown that emg_lens writes (``summary.md``), as HTML: headings, paragraphs, lists,
GitHub-flavoured tables, ``code``, **bold** and *italic*. Everything else is text, escaped: no
raw HTML of a file reaches the page.

Stars are significance marks before they are emphasis: a table cell is shown as written (only
its code spans set as code), and in prose a run of three or more stars, or a star beside a
space or another star on its inner side, is text (``*** p < 0.001, ** p < 0.01``).

>>> print(to_html("# Study\\n\\nDelta **-30%** in `layer 1`.\\n\\n| a | b |\\n|---|---|\\n| 1 | x |"))
<h2>Study</h2>
<p>Delta <strong>-30%</strong> in <code>layer 1</code>.</p>
<div class="scroll"><table class="sortable"><thead><tr><th>a</th><th>b</th></tr></thead><tbody><tr><td class="num">1</td><td>x</td></tr></tbody></table></div>
"""  # noqa: E501

from __future__ import annotations

import html
import re

_CODE = re.compile(r"`([^`]+)`")
# A delimiter is exactly two (bold) or one (italic) star, never part of a longer run, with no
# space or star on its inner side: ``**x**`` and ``*x*``, not ``***`` nor ``** p < 0.01 **``.
_BOLD = re.compile(r"(?<!\*)\*\*(?![\s*])(.+?)(?<![\s*])\*\*(?!\*)")
_ITALIC = re.compile(r"(?<![\w*])\*(?![\s*])(.+?)(?<![\s*])\*(?![\w*])")
_ENTITY = re.compile(r"&(lt|gt|amp);")  # one pass: "&amp;lt;" is "&lt;" as text
_ENTITIES = {"lt": "<", "gt": ">", "amp": "&"}
_NUMBER = re.compile(r"^[-+−]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?%?( [*]+| ns)?$")


def inline(text: str, *, emphasis: bool = True) -> str:
    """One line of Markdown as HTML: escaped, then code spans, and (unless ``emphasis`` is
    false, as in a table cell) bold and italic. Outside code spans, the entities
    `emg_lens.output.one_line` writes (``&lt;``, ``&gt;``, ``&amp;``) are the characters they
    stand for, as on GitHub.

    >>> inline("a < b, *italic*, `x*y`, *** p < 0.001")
    'a &lt; b, <em>italic</em>, <code>x*y</code>, *** p &lt; 0.001'
    >>> inline("&lt;!-- &amp;amp; `&lt;`")
    '&lt;!-- &amp;amp; <code>&amp;lt;</code>'
    >>> inline("-22.1% ***", emphasis=False)
    '-22.1% ***'
    """
    codes = [f"<code>{html.escape(m.group(1), quote=False)}</code>" for m in _CODE.finditer(text)]
    spans = iter(range(len(codes)))  # code spans first: their stars are not emphasis
    text = _CODE.sub(lambda _: f"\x00{next(spans)}\x00", text)
    text = html.escape(_ENTITY.sub(lambda m: _ENTITIES[m.group(1)], text), quote=False)
    if emphasis:
        text = _BOLD.sub(r"<strong>\1</strong>", text)
        text = _ITALIC.sub(r"<em>\1</em>", text)
    return re.sub(r"\x00(\d+)\x00", lambda m: codes[int(m.group(1))], text)


def _cell(text: str, tag: str) -> str:
    """One table cell, exactly as written: its stars are significance marks, not emphasis."""
    numeric = tag == "td" and bool(_NUMBER.match(text.strip()))
    klass = ' class="num"' if numeric else ""
    return f"<{tag}{klass}>{inline(text.strip(), emphasis=False)}</{tag}>"


def table_html(header: list[str], rows: list[list[str]]) -> str:
    """A sortable HTML table (the page's script sorts by a clicked header); numbers are
    right-aligned.

    >>> table_html(["n"], [["3"]])
    '<div class="scroll"><table class="sortable"><thead><tr><th>n</th></tr></thead><tbody><tr><td class="num">3</td></tr></tbody></table></div>'
    """  # noqa: E501
    head = "".join(_cell(h, "th") for h in header)
    body = "".join("<tr>" + "".join(_cell(c, "td") for c in row) + "</tr>" for row in rows)
    return (
        f'<div class="scroll"><table class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _split_row(line: str) -> list[str]:
    r"""A table row's cells; ``\|`` is a ``|`` inside a cell (an edge expression's union), as in
    GitHub's tables.

    >>> _split_row(r"| cross_modal \| from_cls | 0.5 |")
    [' cross_modal | from_cls ', ' 0.5 ']
    """
    line = line.strip()
    line = line[1:] if line.startswith("|") else line
    line = line[:-1] if line.endswith("|") and not line.endswith("\\|") else line
    return [cell.replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line)]


def to_html(markdown: str, *, top: int = 2, skip_title: str | None = None) -> str:
    """``markdown`` as HTML; its ``#`` headings become ``<h{top}>`` and below (the page has
    its own ``<h1>``); a first heading that only repeats ``skip_title`` is left out."""
    out: list[str] = []
    paragraph: list[str] = []
    items: list[str] = []
    lines = markdown.splitlines()

    def flush() -> None:
        if paragraph:
            out.append(f"<p>{inline(' '.join(paragraph))}</p>")
            paragraph.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in items) + "</ul>")
            items.clear()

    i = 0
    if skip_title is not None:
        first = next((line.strip() for line in lines if line.strip()), "")
        if first.lstrip("#").strip() == skip_title.strip() and first.startswith("#"):
            i = [line.strip() for line in lines].index(first) + 1
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        heading = re.match(r"^(#{1,6})\s+(.*)$", stripped)
        if not stripped:
            flush()
        elif heading:
            flush()
            level = min(6, len(heading.group(1)) + top - 1)
            out.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
        elif (
            stripped.startswith("|")
            and i + 1 < len(lines)
            and re.match(r"^\|?\s*:?-{3,}", lines[i + 1].strip())
        ):
            flush()
            header = _split_row(stripped)
            i += 2
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(_split_row(lines[i]))
                i += 1
            out.append(table_html(header, rows))
            continue
        elif re.match(r"^[-*]\s+", stripped):
            if paragraph:
                flush()
            items.append(re.sub(r"^[-*]\s+", "", stripped))
        elif items and line.startswith("  "):
            items[-1] += " " + stripped  # a list item continued on the next line
        else:
            paragraph.append(stripped)
        i += 1
    flush()
    return "\n".join(out)
