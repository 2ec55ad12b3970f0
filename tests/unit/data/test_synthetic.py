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
    with pytest.raises(ConfigError, match=r"subjects must be .*, got \[9\]"):
        generate_recordings(SPEC, [9])


@pytest.mark.slow
def test_the_demo_names_its_channels_as_db2_does_and_channels_cuts_named_electrodes(tmp_path):
    """Issue 74: the synthetic data copies NinaPro DB2's electrodes, so it carries the names
    DB2's reader gives (electrode k: ``emg<k>``, its accelerometer ``acc<k>x/y/z``); a model
    trained on it records them, and ``channels`` selects named electrodes of it (it was
    refused: the demo's layouts named no channel)."""
    from emg_lens.checkpoints import load_checkpoint
    from emg_lens.config import EncoderConfig
    from emg_lens.data.datasets import data_source, load_subject
    from emg_lens.data.formats.ninapro_db2 import load_ninapro_db2, write_ninapro_db2
    from emg_lens.data.synthetic.emg_acc import demo_setup
    from emg_lens.edges import channels
    from emg_lens.models import IsoNet
    from emg_lens.train import TrainConfig, train_subjects

    rec = generate_recordings(SyntheticSpec(n_subjects=1, movement_seconds=0.3), [1])[0]
    write_ninapro_db2(rec, tmp_path / "db2")
    db2 = load_ninapro_db2(tmp_path / "db2", 1).meta["channel_names"]
    assert rec.meta["channel_names"] == db2 and len(db2) == 48
    assert db2[:2] + db2[8:10] + db2[12:16] + db2[-1:] == [
        *("emg1", "emg2", "emg9", "emg10"),
        *("acc1x", "acc1y", "acc1z", "acc2x", "acc12z"),
    ]
    synthetic, preprocess = demo_setup(1)
    small = SyntheticSpec(**{**synthetic.to_dict(), "movement_seconds": 0.5})
    few = PreprocessSpec(**{**preprocess.to_dict(), "step": 400})  # few windows: one epoch
    source = data_source("synthetic", synthetic=small, preprocess=few)
    data = load_subject(source, 1)
    assert data.meta["channel_names"] == db2[:12] + db2[12:24]  # 4 accelerometers
    train = TrainConfig(epochs=1, progress=False)
    cfg = EncoderConfig.preset("tiny", seed=0)
    train_subjects([data], IsoNet, cfg, train, tmp_path / "models", data_source=source)
    model = load_checkpoint(tmp_path / "models" / "subject_1")
    assert model.cfg.channel_names == data.meta["channel_names"]
    mask = channels("emg9", "EMG10").compile(model.layout, model.cfg.n_heads)  # case ignored
    cut = mask[0].nonzero().tolist()  # token 0 is CLS: electrode k's sEMG is token k
    assert cut == [[9, 9], [9, 10], [10, 9], [10, 10]] and (mask == mask[0]).all()


@pytest.mark.parametrize(
    ("spec", "exercise", "error", "match"),
    [
        ("db2", "A", "ArgumentError", "exercise must be one of 'B', 'C', 'D', got 'A'"),
        ("plain", "B", "ConfigError", r"needs a db2_spec \(DB2's 49 gestures\), got"),
    ],
)
def test_a_db2_exercise_needs_a_db2_exercise_and_spec(spec, exercise, error, match):
    import emg_lens.errors
    from emg_lens.data.synthetic.emg_acc import db2_spec, generate_db2_exercise

    spec = db2_spec(1) if spec == "db2" else SyntheticSpec(n_subjects=1)
    with pytest.raises(getattr(emg_lens.errors, error), match=match):
        generate_db2_exercise(spec, 1, exercise)
