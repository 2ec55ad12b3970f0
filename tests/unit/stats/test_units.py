"""The independent unit: trial numbering and the statistics that count trials."""

from __future__ import annotations

import numpy as np
import pytest

from emg_lens.data.preprocess import SubjectData
from emg_lens.data.trials import given_trials, trial_ids
from emg_lens.errors import ArgumentError
from emg_lens.stats.units import (
    class_trial_cis,
    cluster_bootstrap_ci,
    design_effect,
    design_effects,
    trial_votes,
)


def test_trials_are_class_and_repetition_pairs_numbered_by_first_appearance():
    y = np.array([2, 2, 0, 0, 2, 2, 0])
    rep = np.array([5, 5, 5, 5, 2, 2, 2])
    assert trial_ids(y, rep).tolist() == [0, 0, 1, 1, 2, 2, 3]
    assert trial_ids(y, rep, unit="window").tolist() == list(range(7))


def test_windows_made_elsewhere_are_each_their_own_trial_unless_meta_says_otherwise():
    X, y = np.zeros((4, 1, 3)), np.array([0, 0, 1, 1])
    assert SubjectData.from_windows({"emg": 1}, (X, y)).test_trials.tolist() == [0, 1, 2, 3]
    grouped = SubjectData.from_windows({"emg": 1}, (X, y), meta={"trial_unit": "repetition"})
    assert grouped.test_trials.tolist() == [0, 0, 1, 1]


@pytest.mark.unchecked
@pytest.mark.parametrize(
    "call",
    [
        lambda: trial_ids(np.zeros(3), np.zeros(2)),
        lambda: trial_ids(np.zeros(3), np.zeros(3), unit="session"),
        lambda: cluster_bootstrap_ci(np.array([np.nan, 1.0]), np.array([0, 1])),
        lambda: cluster_bootstrap_ci(np.array([]), np.array([])),
    ],
)
def test_bad_inputs_are_named(call):
    with pytest.raises(ArgumentError):
        call()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: given_trials({"trial_unit": "given"}, "test"),
            r"meta\['given_trials'\] must hold 'test'",
        ),
        (
            lambda: trial_ids(np.zeros(3), np.zeros(3), unit="given"),
            r"need given=, an integer trial per window: 3 windows",
        ),
        (
            lambda: trial_ids(np.array([0, 1]), np.ones(2), unit="given", given=np.array([4, 4])),
            r"recorded trial 4 holds windows of classes \[0, 1\]",
        ),
    ],
)
def test_recorded_trials_that_are_missing_or_mixed_are_named(call, match):
    with pytest.raises(ArgumentError, match=match):
        call()


@pytest.mark.unchecked  # levels that the annotation, float, refuses
def test_an_interval_level_is_a_number_between_0_and_1():
    hits, clusters = np.array([1.0, 0.0, 1.0, 0.0]), np.arange(4)
    for bad in (1.0, 90, True, "0.9"):
        with pytest.raises(ArgumentError, match=rf"level must be between 0 and 1, got {bad!r}$"):
            cluster_bootstrap_ci(hits, clusters, level=bad)


def test_a_tied_vote_is_not_a_correct_trial():
    votes = trial_votes(np.array([0, 1, 0, 0]), np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1]))
    assert votes.correct.tolist() == [False, False]
    assert votes.class_counts(3).tolist() == [1, 1, 0]


def test_cluster_interval_is_wider_than_treating_windows_as_independent():
    rng = np.random.default_rng(1)
    trial_level = rng.random(12) < 0.5  # each trial right or wrong as a whole
    hits = np.repeat(trial_level, 9).astype(float)
    trials = np.repeat(np.arange(12), 9)
    lo, hi = cluster_bootstrap_ci(hits, trials)
    lo_w, hi_w = cluster_bootstrap_ci(hits, np.arange(len(hits)))
    assert hi - lo > 2 * (hi_w - lo_w)
    assert lo <= hits.mean() <= hi
    assert cluster_bootstrap_ci(hits, trials) == (lo, hi)  # seeded


def test_design_effect_of_independent_windows_is_near_one_and_of_copied_windows_is_m():
    rng = np.random.default_rng(0)
    trials = np.repeat(np.arange(200), 5)
    icc, deff = design_effect((rng.random(1000) < 0.5).astype(float), trials)
    assert icc < 0.1 and deff < 1.4
    copied = np.repeat(rng.random(200) < 0.5, 5).astype(float)
    assert design_effect(copied, trials) == (1.0, 5.0)


@pytest.mark.unchecked  # shapes the annotations refuse: what a user's run meets
@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: trial_votes(np.zeros(3, int), np.zeros((3, 1), int), np.zeros(3, int)),
         r"y and trials must be 1-D, one entry per window"),
        (lambda: trial_votes(np.zeros(2, int), np.zeros(3, int), np.zeros(3, int)),
         r"pred must have one class per window: shape \(2,\) vs \(3,\)"),
        (lambda: design_effects(np.zeros(4), np.zeros(4, int)),
         r"hits must be \[rows, window\], got shape \(4,\)"),
        (lambda: class_trial_cis([0, 1], [3], [1, 2], 2),
         r"trial_class, _windows and _hits must be 1-D, one per trial"),
    ],
)  # fmt: skip
def test_window_and_trial_shapes_are_named(call, match):
    with pytest.raises(ArgumentError, match=match):
        call()
