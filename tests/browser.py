"""A page in a real browser, for the tests that look at what emg_lens writes as a reader would
(report.html, the documentation site): Debian's Chromium driven by Playwright, with what the
page logged, threw and requested recorded. `.ci/run` installs Chromium; without one a test
skips, saying why, except in CI (``CI`` set), where it fails."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = [  # no sandbox as root; and nothing of Chromium's own reaching out to the network
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def browser_or_skip() -> str:
    """Chromium's path; skips the test without one, fails it in CI."""
    if BROWSER is None:
        if os.environ.get("CI"):
            pytest.fail("no Chromium in CI: .ci/run installs it (apt-get install chromium)")
        pytest.skip("no Chromium on this machine (apt-get install chromium): page untested")
    return BROWSER


@dataclasses.dataclass
class Visit:
    """An open page and what it did: console messages (``"type: text"``), uncaught errors
    and every URL it requested."""

    page: Any
    console: list[str] = dataclasses.field(default_factory=list)
    failed: list[str] = dataclasses.field(default_factory=list)
    requests: list[str] = dataclasses.field(default_factory=list)


@contextlib.contextmanager
def visit(path: Path, width: int = 1280, height: int = 900) -> Iterator[Visit]:
    """The file at ``path`` loaded in Chromium (a ``width`` x ``height`` window), recorded
    from its first request; the browser closes on leaving the block, so read the page in it."""
    executable = browser_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            seen = Visit(page)
            page.on("console", lambda m: seen.console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: seen.failed.append(str(e)))
            page.on("request", lambda r: seen.requests.append(r.url))
            page.goto(Path(path).resolve().as_uri(), wait_until="load")
            yield seen
        finally:
            browser.close()


def images(page: Any, selector: str) -> list[tuple[str | None, list, dict | None]]:
    """Each image ``selector`` finds, scrolled into view: its alt text, ``[complete,
    naturalWidth, naturalHeight]`` and its box on the page."""
    found = page.locator(selector)
    shown = []
    for i in range(found.count()):
        image = found.nth(i)
        image.scroll_into_view_if_needed()
        natural = image.evaluate("e => [e.complete, e.naturalWidth, e.naturalHeight]")
        shown.append((image.get_attribute("alt"), natural, image.bounding_box()))
    return shown
