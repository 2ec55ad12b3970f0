"""The synthetic data's planted structure is the ground truth studies are judged against."""

import numpy as np
import pytest

from emg_lens import ConfigError
from emg_lens.data.preprocess import PreprocessSpec, prepare_subject
from emg_lens.data.synthetic.emg_acc import SyntheticSpec, generate_recordings, gesture_kinds

SPEC = SyntheticSpec(n_subjects=2, movement_seconds=1.0, seed=3)


@pytest.fixture(scope="module")
def data():
    rec = generate_recordings(SPEC, [1])[0]
    return prepare_subject(rec, PreprocessSpec(segment=(0.25, 1.0), step=100))


def _features(X, modality_slice):
    return X[:, modality_slice].mean(axis=2)  # mean rectified sEMG / mean ACC per channel


def _nearest_centroid_accuracy(F_train, y_train, F_test, y_test, classes):
    centroids = np.stack([F_train[y_train == c].mean(0) for c in classes])
    keep = np.isin(y_test, classes)
    d = ((F_test[keep][:, None] - centroids[None]) ** 2).sum(-1)
    return float((np.asarray(classes)[d.argmin(1)] == y_test[keep]).mean())


def _knn_accuracy(F_train, y_train, F_test, y_test, classes):
    keep_tr, keep_te = np.isin(y_train, classes), np.isin(y_test, classes)
    d = ((F_test[keep_te][:, None] - F_train[keep_tr][None]) ** 2).sum(-1)
    return float((y_train[keep_tr][d.argmin(1)] == y_test[keep_te]).mean())


def test_recordings_have_the_db2_shape():
    rec = generate_recordings(SPEC, [2])[0]
    assert rec.modalities == {"emg": 12, "acc": 36} and rec.sample_rate == 2000.0
    assert rec.subject == 2 and rec.gestures == list(range(1, 13))
    assert sorted(set(rec.repetition.tolist()) - {0}) == [1, 2, 3, 4, 5, 6]
    assert rec.signals["emg"].dtype == np.float32


def test_each_kind_is_separable_exactly_where_it_was_planted(data):
    kinds = gesture_kinds(SPEC)
    by_kind = {
        k: [i for i, g in enumerate(data.classes) if kinds[g] == k]
        for k in ("emg", "acc", "interaction")
    }
    emg, acc = slice(0, 12), slice(12, 48)
    both = slice(0, 48)
    Xtr, Xte, ytr, yte = data.X_train, data.X_test, data.y_train, data.y_test
    k = SPEC.n_interaction_gestures

    def acc_of(features, classes, fn=_nearest_centroid_accuracy):
        return fn(_features(Xtr, features), ytr, _features(Xte, features), yte, classes)

    # sEMG-only gestures: told apart by sEMG, not by ACC; and vice versa.
    assert acc_of(emg, by_kind["emg"]) > 0.95
    assert acc_of(acc, by_kind["emg"]) < 0.5
    assert acc_of(acc, by_kind["acc"]) > 0.95
    assert acc_of(emg, by_kind["acc"]) < 0.5
    # Interaction gestures: each modality alone is at chance (1/k) even for a flexible
    # nearest-neighbour rule; together they are separable.
    for modality in (emg, acc):
        assert acc_of(modality, by_kind["interaction"], _knn_accuracy) < 1 / k + 0.15
    assert acc_of(both, by_kind["interaction"], _knn_accuracy) > 0.9


@pytest.mark.slow
def test_subjects_do_not_depend_on_who_else_is_generated():
    alone = generate_recordings(SPEC, [2])[0]
    together = generate_recordings(SPEC)[1]
    assert np.array_equal(alone.signals["emg"], together.signals["emg"])


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"n_subjects": 0}, "n_subjects"),
        ({"n_interaction_gestures": 1}, "n_interaction"),
        ({"n_emg_gestures": -1}, "gesture counts"),
        ({"movement_seconds": 0}, "movement_seconds"),
    ],
)
def test_bad_specs_name_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field):
        SyntheticSpec(**overrides)


def test_unknown_subject_is_refused():
    with pytest.raises(ConfigError, match=r"subjects \[9\]"):
        generate_recordings(SPEC, [9])
