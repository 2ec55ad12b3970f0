"""report.html: one self-contained page per output folder. What a reader relies on: the
summary table and the design line, every figure (embedded, nothing fetched), the study as a
file says it, every table behind a fold, the provenance; written again only when it changes,
and built from a folder alone (`emg-lens report DIR`)."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pandas as pd
import pytest

from emg_lens import EncoderConfig
from emg_lens.cli import main
from emg_lens.data.preprocess import SubjectData
from emg_lens.models import IsoNet
from emg_lens.report import report_html, spec_toml
from emg_lens.report.markdown import to_html
from emg_lens.studies import run_study
from tests.tiny import uni_and_cross

STUDY = {
    "name": "report-study",
    "models": "in-memory",
    "interventions": uni_and_cross(),
    "layers": {"modes": ["individual", "all"]},
}


def _write_study(out):
    """An ablation study of three tiny random models, written with its report into ``out``."""
    models = {}
    for subject in (1, 2, 3):
        cfg = EncoderConfig.preset("tiny", seed=subject, init_range=0.5)
        rng = np.random.default_rng(subject)
        X = rng.standard_normal((24, cfg.n_channels, cfg.n_samples))
        y = np.arange(24) % cfg.n_classes
        data = SubjectData.from_windows(cfg.modalities, (X, y), subject=subject)
        models[subject] = (IsoNet(cfg).eval(), data)
    run_study(STUDY, models=models, out_dir=out, progress=False)
    return out


@pytest.fixture(scope="module")
def study_folder(tmp_path_factory):
    """`_write_study`, once for the tests that only read it."""
    return _write_study(tmp_path_factory.mktemp("study"))


def test_the_report_holds_the_summary_every_figure_the_study_tables_and_provenance(
    study_folder,
):
    page = (study_folder / "report.html").read_text()
    manifest = json.loads((study_folder / "outputs.json").read_text())
    assert "Design: 3 subjects" in page  # the design line of summary.md
    summary = page.split('id="summary"')[1].split("</section>")[0]
    assert "<table" in summary and ">cross<" in summary and "p_corr" in summary
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', page)
    assert [alt.replace(" ", "_") for alt, _ in images] == manifest["figures"]
    for name, data in zip(manifest["figures"], (d for _, d in images)):
        assert base64.b64decode(data) == (study_folder / f"{name}.png").read_bytes()
    assert '[[interventions]]\nname = "cross"\nedges = "cross_modal"' in page
    for table in ("per_subject.csv", "per_class.csv", "summary.csv"):
        assert f"<summary>{table} (" in page
    provenance = page.split('id="provenance"')[1]
    assert provenance.count("<tr>") == 1 + 3  # a header and one row per subject
    # issue 78: every page says where its verdicts' error rates are measured
    header = page.split("</header>")[0]
    assert "How far each number can be trusted (docs/trust.md)" in header


def test_the_page_fetches_nothing(study_folder):
    page = (study_folder / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert not re.search(r"@import|url\(", page)  # no stylesheet or font from elsewhere
    assert page.count("<script>") == 1  # the page's own, inline


@pytest.mark.slow
def test_an_unchanged_study_rewrites_no_report_and_the_folder_alone_builds_it(tmp_path):
    study_folder = _write_study(tmp_path)  # its own: it removes a file the others read
    report = study_folder / "report.html"
    before = report.stat().st_mtime_ns, report.read_bytes()
    assert main(["report", str(study_folder)]) == 0
    assert (report.stat().st_mtime_ns, report.read_bytes()) == before
    (study_folder / "outputs.json").unlink()  # a folder written before reports existed
    page = report_html(study_folder)
    assert 'id="figure-heatmap"' in page and "report-study" in page


def test_markdown_is_rendered_and_nothing_of_it_runs():
    page = to_html("# T\n\n<script>alert(1)</script> and *x* < y\n\n- one\n- two")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<ul><li>one</li><li>two</li></ul>" in page and "<em>x</em> &lt; y" in page


def test_the_spec_reads_as_a_study_file():
    text = spec_toml({"kind": "ablation", "name": "t", "heads": ["all"], "stats": {"test": "x"}})
    assert text == 'kind = "ablation"\nname = "t"\nheads = ["all"]\n\n[stats]\ntest = "x"'


def test_report_of_no_folder_is_refused(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_significance_stars_in_table_cells_are_shown_as_written_never_as_emphasis():
    # Two `**` cells in one row (emphasis must not span the cells between them), `***`, `*`
    # and ns; prose keeps its emphasis, but a run of stars there is text too (issue 41.1).
    markdown = (
        "Delta **-30%**, *italic*; *** p < 0.001, ** p < 0.01\n\n"
        "| layer | uni | cross | both |\n|---|---|---|---|\n"
        "| 0 | -22.1% *** | -3.0% ns | -9.5% * |\n"
        "| 1 | -12.0% ** | +1.0% ns | -14.2% ** |\n"
    )
    page = to_html(markdown)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", page)
    assert cells == [
        *("0", "-22.1% ***", "-3.0% ns", "-9.5% *"),
        *("1", "-12.0% **", "+1.0% ns", "-14.2% **"),
    ]
    assert (
        "<p>Delta <strong>-30%</strong>, <em>italic</em>; *** p &lt; 0.001, ** p &lt; 0.01</p>"
        in page
    )
    assert page.count("<strong>") == 1 and page.count("<em>") == 1


def test_a_p_value_that_underflowed_is_never_shown_as_zero_in_a_table(tmp_path):
    """Issue 46: a window binomial over hundreds of windows underflows to 0.0 in chance.csv;
    the page shows ``< 1e-16`` there (the CSV keeps what was computed), and a 0.0 that is not a
    p stays 0.0."""
    (tmp_path / "chance.csv").write_text(
        "model,accuracy,p,window_p,p_corrected,design_effect\nsubject 1,0.0,1.5e-14,0.0,0.0,0.0\n"
    )
    (tmp_path / "outputs.json").write_text(
        json.dumps(
            {"kind": "study", "title": "t", "spec": None, "tables": ["chance.csv"], "figures": []}
        )
    )
    page = report_html(tmp_path)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", page)
    assert cells == ["subject 1", "0.0", "1.5e-14", "&lt; 1e-16", "&lt; 1e-16", "0.0"]


def test_a_study_files_text_is_text_in_summary_md_and_on_the_page():
    # summary.md carried a study file's raw HTML: a description's "<!--" hid every results
    # table on GitHub; a label's "<td>" could forge a cell
    from emg_lens.output import markdown_table, one_line, prose
    from emg_lens.report.markdown import to_html

    table = markdown_table(pd.DataFrame({"label <i>": ["a & b <td>", "&lt;"]}))
    md = f"# {one_line('n <b>')}\n\n{prose('All fine. <!-- hidden')}\n\n{table}\n"
    assert "<!--" not in md and "<b>" not in md and "<td>" not in md and "<i>" not in md
    page = to_html(md)
    assert "<h2>n &lt;b&gt;</h2>" in page and "<p>All fine. &lt;!-- hidden</p>" in page
    assert "<th>label &lt;i&gt;</th>" in page and "<td>a &amp; b &lt;td&gt;</td>" in page
    assert "<td>&amp;lt;</td>" in page  # a file's own "&lt;" stays those four characters
