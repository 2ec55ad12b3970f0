"""The planted claims' verdicts (`emg_lens.studies.planted.claim_verdict`): a collapse is a
significant drop; "keeps its accuracy" is non-inferiority, decided by the size of the change and
its interval, never by a p-value (which calls a consistent -0.5 % significant with enough
subjects, and any change "ns" with too few)."""

from __future__ import annotations

import numpy as np
import pytest

from emg_lens.errors import ArgumentError
from emg_lens.studies.planted import KEEP_MARGIN_PCT, claim_verdict
from emg_lens.studies.stats import bootstrap_delta_ci

BASE = np.array([0.99, 1.0, 0.995, 1.0, 0.98, 1.0, 0.99, 0.995])


@pytest.mark.parametrize("test", ["mannwhitneyu", "wilcoxon"])
def test_a_tiny_consistent_drop_is_significant_and_still_keeps_the_accuracy(test):
    base = np.ones(8)  # the controls at ceiling, as on the demo
    verdict = claim_verdict("keep", base - np.linspace(0.003, 0.007, 8), base, test)
    assert verdict["p"] < 0.05  # the old rule ("no significant change") called this lost
    assert -1 < verdict["ci_low"] < verdict["ci_high"] < 0
    assert verdict["found"]


def test_a_drop_past_the_margin_is_not_kept_whatever_its_p_value():
    masked = BASE * (1 - 2 * KEEP_MARGIN_PCT / 100)
    verdict = claim_verdict("keep", masked, BASE, "mannwhitneyu")
    assert verdict["delta_pct"] == pytest.approx(-2 * KEEP_MARGIN_PCT)
    assert not verdict["found"]


def test_keeping_needs_the_whole_interval_above_the_margin_not_only_the_mean():
    """A mean change of -2 % whose interval reaches past -5 % is not shown to keep the
    accuracy: two subjects of eight lost a quarter of it."""
    masked = BASE.copy()
    masked[:2] -= 0.25
    masked[2:] += 0.04
    verdict = claim_verdict("keep", masked, BASE, "mannwhitneyu")
    assert verdict["delta_pct"] > -KEEP_MARGIN_PCT
    assert verdict["ci_low"] < -KEEP_MARGIN_PCT
    assert (verdict["ci_low"], verdict["ci_high"]) == bootstrap_delta_ci(masked, BASE)
    assert not verdict["found"]


def test_one_subject_shows_nothing():
    assert not claim_verdict("keep", [0.99], [0.99], "mannwhitneyu")["found"]


def test_a_collapse_is_a_significant_fall_and_a_rise_is_not_one():
    low = np.full(8, 0.25) + np.linspace(0, 0.02, 8)
    high = np.full(8, 0.6) + np.linspace(0, 0.02, 8)
    assert claim_verdict("drop", low, high, "mannwhitneyu")["found"]
    assert not claim_verdict("drop", high, low, "mannwhitneyu")["found"]  # significant, upward
    assert not claim_verdict("drop", high[:2] - 0.3, high[:2], "mannwhitneyu")["found"]  # n = 2


def test_an_unknown_expectation_is_named():
    with pytest.raises(ArgumentError, match="'drop' or 'keep'"):
        claim_verdict("no change", BASE, BASE, "mannwhitneyu")
