"""The built documentation site (issue 49), as a reader gets it: ``make docs`` writes site/, and
this checks it, in files and in a real browser (Debian's Chromium, driven by Playwright, as
test_report_browser.py does): every guide page, the ten notebooks with their figures, an API
page per public module with its docstrings' examples and an entry for each name it exports, no
raw reStructuredText on them, table-of-contents links that reach their headings, and the index
and a gallery page opening from the file system with their figures shown and nothing fetched
from the network.

The site takes minutes to build (the notebooks execute), so `make test` builds it first
(``make docs``) and then runs the suite with this file. Without site/ (a bare pytest) it
skips, saying so, and fails in CI (``CI`` set), where `make test` has built it.
"""

from __future__ import annotations

import os
import re

import pytest

from tests.browser import images, visit
from tests.docs_pages import ROOT
from tests.unit.test_docs_site import _load, api_entry, public_names

SITE = ROOT / "site"
API_MODULES = _load("hooks").API_MODULES
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
PNG = re.compile(r'<img[^>]+src="data:image/png;base64,')


def _site_or_skip():
    built = (SITE / "index.html").is_file() and (SITE / "gallery").is_dir()
    if not built:  # none, or only `make docs-api`'s pages: the notebooks not executed
        if os.environ.get("CI"):
            pytest.fail("site/ was not built: `make test` runs `make docs` before the suite")
        pytest.skip("site/ is not built whole (no gallery/): `make docs` builds it")


def test_the_site_holds_every_guide_page_notebook_and_api_page():
    _site_or_skip()
    guide = sorted((ROOT / "docs" / "guide").glob("*.md"))
    for page in guide:
        assert (SITE / "guide" / f"{page.stem}.html").is_file(), page.name
    for name in NOTEBOOKS:  # rendered with their outputs: the figures inline
        html = (SITE / "gallery" / f"{name}.html").read_text(encoding="utf-8")
        assert len(PNG.findall(html)) >= 2, f"{name}: fewer than 2 figures"
        assert "Traceback (most recent call last)" not in html, name
    for name in API_MODULES:  # rendered from the docstrings, examples included
        html = (SITE / "api" / f"{name}.html").read_text(encoding="utf-8")
        assert f"emg_lens.{name}" in html and "&gt;&gt;&gt;" in html, name
    for page in SITE.rglob("*.html"):  # nothing loads from the network
        html = page.read_text(encoding="utf-8")
        remote = re.search(r"""<(?:script|link|img)\b[^>]*(?:src|href)=["'](?:https?:)?//""", html)
        assert remote is None, f"{page.relative_to(SITE)}: {remote.group(0)}"


def test_every_public_name_has_its_entry_in_the_api_reference():
    # issue 59: load_checkpoint, TokenLayout, EncoderConfig, TrainConfig, read_files had none
    _site_or_skip()
    html = "".join(page.read_text(encoding="utf-8") for page in (SITE / "api").glob("*.html"))
    ids = set(re.findall(r'id="(emg_lens\.[^"]+)"', html))
    missing = [f"{m}.{n}" for m, n in public_names() if api_entry(m, n) not in ids]
    assert not missing, missing


def shown_text(html: str) -> str:
    """A page's text as a reader sees it, less its code (inline code and the blocks of a
    language) but with its plain-text blocks, shown as they are: `docs/griffe_docstrings.py`
    makes a docstring's literal blocks and tables such blocks."""
    html = re.sub(
        r'<div class="language-(?!text\b)[\w-]+ highlight">.*?</div>', "", html, flags=re.S
    )
    html = re.sub(r"<(script|style)\b.*?</\1>", "", html, flags=re.S)
    html = re.sub(
        r"<pre\b.*?</pre>", lambda m: re.sub(r"<[^>]+>", "", m.group(0)), html, flags=re.S
    )
    html = re.sub(r"<code\b.*?</code>", "", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)


def test_no_api_page_shows_raw_restructuredtext():
    # issue 59: the edges page showed a reStructuredText table (its rules and double backticks,
    # in a plain-text block); Markdown ends a code span at the end of its line, so a wrapped
    # one shows its backticks too
    _site_or_skip()
    raw = re.compile(r"``|^\s*={5,}|:(?:func|class|meth|mod|attr):`|^\s*\.\. \w+::", flags=re.M)
    shown = []
    for page in sorted((SITE / "api").glob("*.html")):
        text = shown_text(page.read_text(encoding="utf-8"))
        shown += [
            f"{page.name}: {text[m.start() - 40 : m.end() + 40]!r}" for m in raw.finditer(text)
        ]
    assert not shown, shown


def test_every_table_of_contents_entry_links_to_a_heading_of_its_page():
    # issue 59: mkdocs-jupyter drops a notebook heading's code from the table of contents
    # ("The circuit ()"), whose link then missed the heading's anchor
    _site_or_skip()
    broken = []
    for page in sorted(SITE.rglob("*.html")):
        html = page.read_text(encoding="utf-8")
        toc = re.search(r'<nav class="md-nav md-nav--secondary".*?class="md-content"', html, re.S)
        ids = set(re.findall(r'\bid="([^"]+)"', html))
        links = re.findall(r'href="#([^"]+)"', toc.group(0) if toc else "")
        broken += [f"{page.relative_to(SITE)}#{link}" for link in links if link not in ids]
    assert not broken, broken


@pytest.mark.slow
@pytest.mark.parametrize("page", ["index.html", "gallery/01_hook_ablation.html"])
def test_a_browser_opens_the_page_from_the_file_system_and_shows_its_figures(page, tmp_path):
    _site_or_skip()
    with visit(SITE / page, width=1400, height=1000) as seen:
        shown = images(seen.page, "article img")
        seen.page.screenshot(path=str(tmp_path / "page.png"), full_page=False)
    console, failed, requests = seen.console, seen.failed, seen.requests
    assert not failed, failed
    assert not [m for m in console if m.startswith("error")], console
    assert all(r.startswith("file://") or r.startswith("data:") for r in requests), requests
    assert shown, f"{page} shows no figure"
    for alt, (complete, width, height), box in shown:
        assert complete and width > 100 and height > 100, alt  # decoded, not broken
        assert box is not None and box["width"] > 200 and box["height"] > 100, alt
