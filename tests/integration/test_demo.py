"""`emg-lens demo` finds what its synthetic data planted (issue 12, item 6).

The same pipeline as the demo (planted synthetic subjects, one IsoNet per subject trained with
every cross-modal route dropped on half the windows, the ``planted_demo`` study of the
mean-pooled head) at a smaller size: 6 subjects, 15 epochs and no refits (the demo's 40 epochs
and refits keep every model off the one-XOR-bit plateau; `train_subjects`' refits are tested in
tests/unit/train). The study must find the planted cross-modal effect (interaction gestures
collapse to chance when every route between the modalities is cut) and must *not* find an
effect on the gestures one modality identifies, also when most models stall on the plateau.

Measured (6 subjects, 15 epochs, 42 s on two idle cores, 2 threads; 4 of 6 models on the
plateau; Mann-Whitney U, before the claims were tested paired): interaction 0.629 -> 0.246
(chance 0.25), p = 0.005; single-modality gestures 0.992 -> 0.988, p = 0.15. On one thread
(53 s): 0.672 -> 0.242, p = 0.0022; 0.989 -> 0.990, p = 0.74. The claims are now tested paired
(issue 46 item 2): over 6 subjects the exact sign-flip test's smallest p is 2/64 = 0.031, which
every subject's drop reaches; the control is TOST's (the 90 % t-interval within ±5 %). Measured
so (one thread, on a machine busy with other jobs: 408 s): interaction 0.597 -> 0.245, p =
0.031 (*); control 0.990 -> 0.991, Δ +0.1 % [90 % CI -0.7, +0.9], TOST p = 3.8e-05.

The demo runs once per pytest run (`tests.demo_run`, which the browser test of its report
reads too); this test checks what it printed, returned and wrote.
"""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from emg_lens.cli.demo import DEMO_STUDY
from emg_lens.studies import load_spec
from emg_lens.studies.ablation.planted import PLANTED_MARGIN
from emg_lens.studies.ablation.summary import legend
from tests.demo_run import N_SUBJECTS, demo_run
from tests.seeds import planted_seeds

pytestmark = pytest.mark.slow

SEEDS = (0, 1, 2, 3)  # the demo's --seed; a run trains 0, ``EMG_LENS_TEST_SEEDS=all`` all


@pytest.mark.parametrize("seed", planted_seeds(SEEDS))
def test_demo_finds_the_planted_cross_modal_effect_and_not_the_control(shared, seed):
    out, printed, findings, cell = demo_run(shared, seed)  # out: the demo's --out folder
    print(printed)
    assert sorted(p.name for p in (out / "models").iterdir() if p.is_dir()) == [
        f"subject_{s}" for s in range(1, N_SUBJECTS + 1)
    ]

    # the planted claims are the demo study's declared claims, tested by the run
    found = findings.set_index("classes")
    interaction, unimodal = found.loc["interaction"], found.loc["unimodal"]
    # The planted effect: the interaction gestures fall to chance (1 in 4) ... (Bounds that
    # held for seeds 0-3 trained on one thread, i.e. other floating-point paths, as on another
    # CPU: baseline 0.47-0.64, masked 0.22-0.25; on an AMD EPYC 0.48-0.67 and 0.24-0.27.
    # Paired, every subject falls: the exact sign-flip p is its floor, 2/64, and the
    # matched-pairs r_rb -1.)
    assert interaction["verdict"] == "holds", interaction
    assert interaction["test"] == "permutation" and interaction["p_corr"] < 0.05
    assert interaction["r_rb"] <= -0.8
    assert interaction["masked"] < 0.35 and interaction["baseline"] > interaction["masked"] + 0.15
    # ... and the control: the single-modality gestures keep their accuracy (equivalence, TOST:
    # the 90 % interval of the change within ±5 %; a test of difference is not the verdict,
    # and a consistent -0.5 % over 6 subjects came out p = 0.03 on this project's machine, 0.17
    # on another). It never fails; whether 6 subjects show it depends on how many came out
    # exactly unchanged, each flooring the spread at one test trial's change, against the
    # 2.4 points the skew every claim assumes leaves 6 subjects (held on models this project's
    # machine cached; cannot tell, at 2.6, on models another worktree trained): then its
    # reason says so.
    assert unimodal["test"] == "tost" and unimodal["verdict"] in ("holds", "cannot tell")
    assert unimodal["ci_low"] <= 0 <= unimodal["ci_high"] and unimodal["ci_low"] > -10
    if unimodal["verdict"] == "holds":
        assert -100 * PLANTED_MARGIN <= unimodal["ci_low"] <= unimodal["ci_high"]
        assert unimodal["ci_high"] <= 100 * PLANTED_MARGIN
    else:
        assert "may spread (SD) at most 2.4 points" in unimodal["reason"], unimodal["reason"]
    assert unimodal["masked"] > 0.95 and unimodal["baseline"] > 0.95
    held = 1 + (unimodal["verdict"] == "holds")

    # The table's cell that cuts every cross-modal route carries the effect too (-15 % to
    # -26 % over those seeds, -14 % to -26 % on the EPYC; "**", perfect separation, in all
    # four, but one subject out of order would make it "*", so significance is what is
    # asserted).
    assert cell["delta_pct"] < -10 and cell["p_corr"] < 0.05, cell
    assert printed.count("->  holds") == held and "Planted vs found (cross · all" in printed
    # Its output is no terminal here (no bars): a line per subject says how far it is, as it
    # happens (issue 23, item 10: twenty minutes of one line on a busy machine).
    for i in range(1, N_SUBJECTS + 1):
        assert re.search(
            rf"subject {i} \({i} of {N_SUBJECTS}\) trained in \d+ s, test accuracy", printed
        )
    assert re.search(rf"{N_SUBJECTS} subjects evaluated in \d+ s; \d+ s so far", printed)
    rows = json.loads((out / "models" / "training.json").read_text())
    assert [r["subject"] for r in rows] == list(range(1, N_SUBJECTS + 1))
    assert "smallest corrected p" in printed
    for name in ("summary.md", "summary.csv", "per_class.csv", "class_deltas.png"):
        assert (out / "study" / name).stat().st_size > 0
    # the conclusion is saved, not only printed: claims.csv, the top of summary.md and of the
    # report (issue 41, item 2)
    saved = pd.read_csv(out / "study" / "claims.csv")
    assert saved["verdict"].tolist() == ["holds", unimodal["verdict"]]
    assert saved["p"].tolist() == pytest.approx(findings["p"].tolist())
    summary = (out / "study" / "summary.md").read_text()
    assert summary.index("## Claims") < summary.index("Baseline accuracy")
    assert summary.count("| holds |") == held
    report = (out / "study" / "report.html").read_text()
    assert report.index(">Claims<") < report.index("Baseline accuracy")
    # what the stars and r_rb are, and why the unimodal cut costs the interaction gestures too
    # (the study's description), in each (issue 59)
    assert legend() in printed and legend(markdown=True) in summary
    assert "r_rb: the rank-biserial correlation" in report and "<code>**</code>" in report
    why = "What the planted truth predicts is therefore relative"
    assert why in load_spec(DEMO_STUDY).description
    assert why in printed and why in summary and why in report
    # Every model is clearly above chance (issue 41, item 3): said, and nothing warned of.
    assert "unmasked accuracy beside chance" in printed and "WARNING" not in printed
    assert "beside chance" in summary and "Warning" not in summary
    # tested over the demo's trials, and no p printed as 0 (issue 46)
    chance = pd.read_csv(out / "study" / "chance.csv")
    assert (chance["unit"] == "trial").all() and (chance["trials"] < chance["n"]).all()
    assert "tested over trials" in printed and "p = 0 " not in printed and "p = 0)" not in printed
