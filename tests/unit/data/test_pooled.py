"""Windows of several subjects as one (issue 58): each window keeps its subject and its own
trial (two subjects' trials of one gesture and repetition stay two), the joint z-score keeps a
per-subject offset that a per-subject one removes, window labels are read by name; and the
synthetic subject signature sits on the accelerometers only, leaving every other draw as it
was."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from emg_lens import ArgumentError, InputShapeError
from emg_lens.data.pooled import pool_subjects, unpool, window_labels, with_window_labels
from emg_lens.data.preprocess import SubjectData
from emg_lens.data.synthetic.emg_acc import (
    SyntheticSpec,
    generate_recordings,
    subject_signature_setup,
)
from emg_lens.data.trials import record_trials
from emg_lens.errors import ConfigError


def _subject(number: int, shift: float = 0.0) -> SubjectData:
    rng = np.random.default_rng(number)
    X = rng.standard_normal((2, 8, 3, 4)).astype(np.float32) + shift
    y = np.tile([0, 1], 4)
    rep = np.repeat([1, 3], 4), np.repeat([2, 5], 4)
    return SubjectData(number, {"emg": 3}, [0, 1], X[0], y, rep[0], X[1], y, rep[1])


def test_each_window_keeps_its_subject_and_its_own_trial():
    pooled = pool_subjects([_subject(1), _subject(2)])
    assert window_labels(pooled, "subject", "train").tolist() == [1] * 8 + [2] * 8
    # a subject's trial is a (class, repetition): 4 per subject, and none shared
    assert pooled.test_trials.tolist() == [0, 1, 0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7]
    assert pooled.meta["pooled_subjects"] == [1, 2] and pooled.meta["trial_unit"] == "given"
    assert window_labels(pooled, "repetition").tolist() == [2] * 4 + [5] * 4 + [2] * 4 + [5] * 4


def test_a_selection_of_held_out_windows_keeps_each_ones_labels():
    labelled = with_window_labels(_subject(2), "session", [9] * 8, list(range(8)))
    pooled = pool_subjects([with_window_labels(_subject(1), "session", [1] * 8, [0] * 8), labelled])
    part = pooled.select_test(np.array([15, 3, 8, 8]))
    assert window_labels(part, "subject").tolist() == [2, 1, 2, 2]
    assert window_labels(part, "session").tolist() == [7, 0, 0, 0]
    assert window_labels(part, "session", "train").tolist() == [1] * 8 + [9] * 8
    assert window_labels(pooled.select_windows(2), "subject").tolist() == [1, 2]


def test_the_joint_z_score_keeps_an_offset_between_subjects():
    raw = pool_subjects([_subject(1), _subject(2, shift=3.0)], standardize=True)
    mean = raw.X_train.mean(axis=(0, 2))
    assert np.allclose(mean, 0, atol=1e-5)
    subjects = window_labels(raw, "subject", "test")
    gap = raw.X_test[subjects == 2].mean() - raw.X_test[subjects == 1].mean()
    assert gap > 1.0


def test_unpooled_each_subject_has_its_windows_as_pooled_with_their_trials_and_labels():
    labelled = with_window_labels(_subject(2, shift=3.0), "session", [9] * 8, [5] * 8)
    other = with_window_labels(_subject(1), "session", [1] * 8, [2] * 8)
    pooled = pool_subjects([other, labelled], standardize=True)
    apart = unpool(pooled)
    assert sorted(apart) == [1, 2]
    mine = window_labels(pooled, "subject", "test") == 2
    assert np.array_equal(apart[2].X_test, pooled.X_test[mine])  # the joint z-score kept
    assert apart[2].test_trials.tolist() == [0, 1, 0, 1, 2, 3, 2, 3]  # as subject 2's own
    assert window_labels(apart[2], "session", "train").tolist() == [9] * 8
    assert window_labels(apart[2], "subject").tolist() == [2] * 8
    with pytest.raises(ArgumentError, match="no pooled subject"):
        unpool(_subject(1))
    with pytest.raises(ArgumentError, match=r"labels \['session'\] are carried by some"):
        pool_subjects([_subject(1), labelled])


def test_what_does_not_pool_is_named():
    with pytest.raises(ArgumentError, match="two subjects or more"):
        pool_subjects([_subject(1)])
    with pytest.raises(ArgumentError, match=r"two subjects or more, each once, got \[1, 1\]"):
        pool_subjects([_subject(1), _subject(1)])
    other = replace(_subject(2), classes=[0, 5])
    with pytest.raises(ArgumentError, match="differ in modalities, classes or window shape"):
        pool_subjects([_subject(1), other])
    with pytest.raises(InputShapeError, match="window label 'session'"):
        with_window_labels(_subject(1), "session", [1, 2], [1] * 8)


def test_a_window_label_is_read_by_name_and_an_unknown_one_lists_the_known():
    data = with_window_labels(_subject(1), "session", [7] * 8, [8] * 8)
    assert window_labels(data, "session", "train").tolist() == [7] * 8
    assert window_labels(data, "gesture").tolist() == data.y_test.tolist()
    with pytest.raises(ArgumentError, match=r"'session'.*the data's meta has \['session'\]"):
        window_labels(data, "day")
    data.meta["window_labels"]["session"]["test"] = [8] * 3  # set by hand, one per window no more
    with pytest.raises(
        InputShapeError, match=r"\['session'\]\['test'\]: \(3,\) for \(8,\) windows"
    ):
        window_labels(data, "session")


def test_the_subject_signature_is_an_offset_on_the_accelerometers_only():
    small = {"n_subjects": 2, "movement_seconds": 0.2, "rest_seconds": 0.1}
    plain = generate_recordings(SyntheticSpec(**small))
    signed = generate_recordings(SyntheticSpec(**small, subject_offset=0.5))
    for before, after in zip(plain, signed):
        assert np.array_equal(before.signals["emg"], after.signals["emg"])
        shift = after.signals["acc"] - before.signals["acc"]
        assert np.allclose(shift, shift[:1], atol=1e-6)  # one constant per channel
        assert 0.05 < np.abs(shift[0]).mean() < 2.0
    offsets = [s.signals["acc"][0] - p.signals["acc"][0] for s, p in zip(signed, plain)]
    assert not np.allclose(offsets[0], offsets[1])  # each subject its own
    # an unset signature leaves the data source (and its digests) as before it existed
    assert "subject_offset" not in SyntheticSpec().to_dict()
    assert SyntheticSpec(**SyntheticSpec(subject_offset=0.3).to_dict()).subject_offset == 0.3
    with pytest.raises(ConfigError, match="subject_offset must be >= 0"):
        SyntheticSpec(subject_offset=-1.0)
    synthetic, _ = subject_signature_setup(2)
    assert synthetic.subject_offset > 0 and synthetic.subject_variability == 0


def test_subjects_whose_trials_are_recordings_pool_and_unpool_so():
    """Issue 78: pooled subjects of braindecode's fixed-length windows (trial unit
    "recording") stay so, and so does each unpooled one (both said "given")."""
    X, y = np.zeros((2, 1, 3), "float32"), np.array([0, 1])
    parts = [
        SubjectData.from_windows({"emg": 1}, (X, y), (X, y), subject=s,
                                 meta=record_trials([0, 1], [2, 3], "recording"))
        for s in (1, 2)
    ]  # fmt: skip
    pooled = pool_subjects(parts)
    assert pooled.meta["trial_unit"] == "recording" and len(set(pooled.test_trials)) == 4
    assert {s.meta["trial_unit"] for s in unpool(pooled).values()} == {"recording"}
    mixed = pool_subjects([parts[0], SubjectData.from_windows({"emg": 1}, (X, y), (X, y))])
    assert mixed.meta["trial_unit"] == "given"
