"""per_class.csv's intervals count trials, not windows (issue 46: "per-class and IIA intervals
are computed over trials"): a study's cells keep each trial's class, windows and correct
windows, and a class's interval resamples its trials; cells stored without them keep the
Clopper-Pearson interval over windows, labelled as such."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emg_lens import EncoderConfig
from emg_lens.data.preprocess import SubjectData
from emg_lens.models import IsoNet
from emg_lens.stats.compare import clopper_pearson
from emg_lens.stats.units import TRIAL_WINDOW_FIELDS, class_trial_cis, trial_counts
from emg_lens.studies import StudyResult, StudySpec, run_study

SPEC = {"name": "t", "models": "x", "layers": {"modes": ["all"]},
        "interventions": [{"name": "cross", "edges": "cross_modal"}]}  # fmt: skip


def _cells(subjects: int = 3, reps: int = 5, windows: int = 8) -> pd.DataFrame:
    """Two classes, ``reps`` trials each; every trial all right or all wrong (windows that
    repeat each other), class 1 right on 3 of its 5 trials."""
    rows = []
    trial_class = [0] * reps + [1] * reps
    for subject in range(1, subjects + 1):
        right = [1] * reps + [1, 1, 1, 0, 0]
        trial_hits = [windows * r for r in right]
        for intervention, key in (("baseline", "base"), ("cross", "k1")):
            rows.append(
                {
                    "subject": subject, "intervention": intervention,
                    "mode": "none" if key == "base" else "all", "layer": None,
                    "layers": "" if key == "base" else "0,1", "heads": "all", "key": key,
                    "metric": "accuracy", "value": float(np.mean(right)),
                    "class_correct": [reps * windows, 3 * windows],
                    "class_total": [reps * windows] * 2,
                    "trial_class": trial_class, "trial_windows": [windows] * (2 * reps),
                    "trial_hits": trial_hits,
                }
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_a_class_interval_resamples_its_trials_and_is_wider_than_over_windows(monkeypatch):
    monkeypatch.setattr(StudyResult, "figures", lambda self: {})
    per_class = StudyResult.from_table(StudySpec.from_dict(SPEC), _cells()).per_class()
    assert list(per_class.columns[-4:]) == ["ci_low", "ci_high", "trials", "unit"]
    assert (per_class["unit"] == "trial").all() and (per_class["trials"] == 5).all()
    row = per_class[per_class["class"] == 1].iloc[0]
    assert row["accuracy"] == pytest.approx(0.6)
    low, high, _ = class_trial_cis([0] * 5 + [1] * 5, [8] * 10, [8] * 8 + [0] * 2, 2)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low[1], high[1]))
    over_windows = [float(v) for v in clopper_pearson(24, 40)]  # 0.43-0.75
    assert row["ci_high"] - row["ci_low"] >= 1.5 * (over_windows[1] - over_windows[0])
    # cells stored without their trials: over windows, and said so
    old = StudyResult.from_table(
        StudySpec.from_dict(SPEC), _cells().drop(columns=list(TRIAL_WINDOW_FIELDS))
    ).per_class()
    assert (old["unit"] == "window").all() and old["trials"].isna().all()
    row = old[old["class"] == 1].iloc[0]
    assert [row["ci_low"], row["ci_high"]] == pytest.approx(over_windows)


def test_trial_counts_of_a_trial_of_two_classes_are_per_class():
    """Issue 86: a trial of two classes (a recording of two sleep stages) is counted per class
    (it was refused: a recording's runs were its trials, which are not independent)."""
    assert trial_counts(np.array([0, 1]), np.array([0, 0]), np.array([3, 3])) == {
        "trial_class": [0], "trial_windows": [2], "trial_hits": [1]
    }  # fmt: skip
    assert trial_counts(np.array([0, 0, 1]), np.array([0, 1, 1]), np.array([3, 3, 3])) == {
        "trial_class": [0, 1], "trial_windows": [1, 2], "trial_hits": [1, 1]
    }  # fmt: skip


def test_a_studys_cells_keep_their_trials():
    cfg = EncoderConfig.preset("tiny", seed=0)
    rng = np.random.default_rng(0)
    y = np.tile(np.arange(cfg.n_classes), 6)
    rep = np.repeat([2, 5], 3 * cfg.n_classes)  # 2 trials a class, 3 windows each
    X = rng.normal(size=(len(y), cfg.n_channels, cfg.n_samples)).astype("float32")
    data = SubjectData(1, dict(cfg.modalities), list(range(cfg.n_classes)),
                       np.zeros((0, *X.shape[1:]), X.dtype), np.zeros(0, int), np.zeros(0, int),
                       X, y, rep)  # fmt: skip
    result = run_study(SPEC, models={1: (IsoNet(cfg).eval(), data)}, progress=False)
    cells = result.per_subject
    assert all(len(v) == 2 * cfg.n_classes for v in cells["trial_class"])
    assert all(sum(v) == len(y) for v in cells["trial_windows"])
    for r in cells.itertuples():  # the trials' correct windows add up to the class counts
        per_class = np.bincount(r.trial_class, weights=r.trial_hits, minlength=cfg.n_classes)
        assert per_class.tolist() == list(r.class_correct)
    table = result.per_class()
    assert (table["unit"] == "trial").all() and (table["trials"] == 2).all()
    assert not set(TRIAL_WINDOW_FIELDS) & set(result.tables()["per_subject.csv"].columns)
