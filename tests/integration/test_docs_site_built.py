"""The built documentation site (issue 49), as a reader gets it: ``make docs`` writes site/, and
this checks it, in files and in a real browser (Debian's Chromium, driven by Playwright, as
test_report_browser.py does): every guide page, the ten notebooks with their figures, an API
page per public module with its docstrings' examples, and the index and a gallery page opening
from the file system with their figures shown and nothing fetched from the network.

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
from tests.unit.test_docs_site import _load

SITE = ROOT / "site"
API_MODULES = _load("hooks").API_MODULES
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
PNG = re.compile(r'<img[^>]+src="data:image/png;base64,')


def _site_or_skip():
    if not (SITE / "index.html").is_file():
        if os.environ.get("CI"):
            pytest.fail("site/ was not built: `make test` runs `make docs` before the suite")
        pytest.skip("site/ is not built: `make docs` builds it")


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
