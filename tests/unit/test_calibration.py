"""The tool checking itself (issue 56): `benchmarks/calibration.py` runs the project's
inferences on simulated designs whose truth is known. Its small version runs here: each
check's figure must be consistent with what the inference promises (a false-verdict rate at
most its level, a coverage at least its level, read with the 95 % interval of the few draws),
and the docs page that holds the full run's table lists every check the benchmark makes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.unit.test_benchmarks import _load

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "trust.md"


@pytest.fixture(scope="module")
def calibration():
    return _load("calibration")


@pytest.mark.slow
@pytest.mark.parametrize("family", ["placement", "claims", "intervals", "chance", "cells"])
def test_every_inference_keeps_what_it_promises_on_designs_whose_truth_is_known(
    calibration, family, capsys
):
    result = calibration.main(["--quick", "--only", family])
    capsys.readouterr()
    failing = [
        (r["inference"], r["design"], r["hits"], r["draws"])
        for r in result["rows"]
        if not r["holds"] and not r["limit"]  # a limit is shown on the page, not promised
    ]
    assert not failing, failing
    assert result["checks"] == len(result["rows"]) > 0


@pytest.mark.parametrize("only", ["", ",", "claims,typo"])
def test_only_without_a_known_family_is_refused_by_name(calibration, only, capsys):
    # --only '' ran no check and died on the empty table: a raw KeyError 'holds'
    with pytest.raises(SystemExit) as exit_:
        calibration.main(["--only", only])
    assert exit_.value.code == 2
    assert f"--only {only!r}: accepted one or more of ['placement'" in capsys.readouterr().err


def test_the_docs_page_holds_the_full_table_of_every_check(calibration):
    """The page "How far each number can be trusted" shows the full run's table: a row for
    each check the benchmark defines, with as many draws as its full run takes."""
    text = PAGE.read_text(encoding="utf-8")
    rows = {
        (cells[0], cells[1]): cells
        for cells in (
            [c.strip() for c in line.strip("|").split("|")]
            for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| inference")
        )
    }
    for family, checks in calibration.FAMILIES.items():
        for check in checks():
            assert (check.inference, check.design) in rows, (family, check.design)
            assert rows[(check.inference, check.design)][-1] == str(check.draws)
    assert re.search(r"python benchmarks/calibration\.py", text)


def test_the_keep_margin_excess_is_measured_where_the_page_says(capsys):
    """The one check over its promise (a keep claim on its margin) has its cause measured by
    `benchmarks/keep_margin_skew.py`, which the page cites: per-subject Δ% lean left on that
    design (a ratio of window flips), and both t statistics are computed on the same draws."""
    result = _load("keep_margin_skew").main(["--quick"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("{") and result["benchmark"] == "keep_margin_skew"
    for row in result["rows"]:
        assert row["skewness"] < 0, row  # 40 studies of 3 or 5 subjects: 120-200 values
        assert 0 <= row["student_t"] <= 1 and 0 <= row["measurement_skew_t"] <= 1
    assert "python benchmarks/keep_margin_skew.py" in PAGE.read_text(encoding="utf-8")
