"""The per-channel feature baseline beside every trained model (issue 46, item 5): it learns
what a channel's amplitude tells, is at chance on noise, is deterministic, does not depend on
the data's per-channel z-score, refuses bad input by name, and scores LibEMG's Myo folds as
measured."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emg_lens.data.datasets import data_source, dataset_preprocess, load_subject
from emg_lens.data.preprocess import SubjectData
from emg_lens.errors import ArgumentError, DataFormatError, InputShapeError
from emg_lens.train.baseline import below_baseline, feature_baseline

MYO = Path(__file__).resolve().parents[2] / "data" / "libemg_myo"


def loud_channel(seed: int, n: int = 120, *, effect: float = 1.0) -> SubjectData:
    """Four classes, each louder on its own channel by ``1 + effect`` (0: noise alone)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    X = np.abs(rng.standard_normal((n, 4, 50)))
    X[np.arange(n), y] *= 1 + effect
    half = n // 2
    return SubjectData.from_windows({"emg": 4}, (X[half:], y[half:]), (X[:half], y[:half]))


def test_learns_the_loud_channel_and_is_deterministic():
    data = loud_channel(0)
    first, again = feature_baseline(data), feature_baseline(data)
    assert first.metric == "accuracy" and first.value > 0.95
    assert first.kind == "log RMS + MAD, logistic regression"
    assert (first.predictions == again.predictions).all() and first.value == again.value
    assert (first.n_train, first.n_test, first.predictions.shape) == (60, 60, (60,))


def test_is_at_chance_on_noise():
    # 20 seeds of 400 test windows of pure noise, 4 classes: the mean stays near 0.25
    values = [feature_baseline(loud_channel(seed, 800, effect=0.0)).value for seed in range(20)]
    assert abs(np.mean(values) - 0.25) < 0.03 and max(values) < 0.35


def test_does_not_depend_on_a_per_channel_scale_and_offset():
    data = loud_channel(1, effect=0.3)
    scale, offset = np.array([3.0, 0.1, 10.0, 1.0]), np.array([-2.0, 5.0, 0.0, 1.0])
    moved = SubjectData.from_windows(
        {"emg": 4},
        (data.X_test * scale[:, None] + offset[:, None], data.y_test),
        (data.X_train * scale[:, None] + offset[:, None], data.y_train),
    )
    a, b = feature_baseline(data), feature_baseline(moved)
    assert (a.predictions == b.predictions).mean() > 0.95 and abs(a.value - b.value) < 0.05


def test_regression_target_is_a_ridge_on_channel_rms_scored_by_r2():
    rng = np.random.default_rng(0)
    amplitude = rng.uniform(0.5, 3.0, (200, 3))
    X = np.abs(rng.standard_normal((200, 3, 40))) * amplitude[:, :, None]
    force = amplitude @ np.array([2.0, -1.0, 0.5])

    class Split:
        X_train, y_train, X_test, y_test = X[:150], force[:150], X[150:], force[150:]

    score = feature_baseline(Split)
    assert score.metric == "r2" and score.kind == "channel RMS, ridge"
    assert 0.8 < score.value <= 1.0 and score.predictions.shape == (50, 1)  # measured 0.881
    Split.y_train = np.stack([force, -force], 1)[:150]  # two outputs: R² averaged over them
    Split.y_test = np.stack([force, -force], 1)[150:]
    assert feature_baseline(Split).value == pytest.approx(score.value, abs=1e-9)
    Split.X_train = rng.standard_normal((150, 3, 40))  # amplitude unrelated: R² near 0 or below
    assert feature_baseline(Split).value < 0.1


def bad(**changes):
    data = loud_channel(0)
    fields = {k: getattr(data, k) for k in ("X_train", "y_train", "X_test", "y_test")}
    return type("Split", (), {**fields, **changes})


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"X_test": np.zeros((3, 4))}, InputShapeError, "X_test must be windows"),
        ({"X_train": np.zeros((0, 4, 50))}, InputShapeError, "X_train must be windows"),
        ({"X_test": np.zeros((60, 4, 1))}, InputShapeError, "time >= 2"),
        ({"X_test": np.zeros((60, 3, 50))}, InputShapeError, "same channels"),
        ({"X_train": np.full((60, 4, 50), np.nan)}, InputShapeError, "X_train holds 12000 non"),
        ({"y_train": np.zeros(59, int)}, InputShapeError, r"y_train .* one per window \(60\)"),
        ({"y_test": np.full(60, np.inf)}, InputShapeError, "y_test must be integer"),
        ({"y_test": np.zeros(60)}, InputShapeError, "both be class labels"),
        ({"y_train": np.zeros(60, int)}, DataFormatError, "y_train holds one class"),
        ({"y_train": np.zeros(60), "y_test": np.ones(60)}, DataFormatError, "do not vary"),
    ],
)
def test_bad_input_is_refused_by_name(changes, error, message):
    with pytest.raises(error, match=message):
        feature_baseline(bad(**changes))


def test_the_below_line_names_the_subject_both_scores_and_the_baseline():
    assert below_baseline("subject 3", 0.273, 0.409) == (
        "subject 3: the model's 0.273 is below the per-channel feature baseline's 0.409 "
        "(log RMS + MAD, logistic regression)"
    )
    assert below_baseline("subject 3", 0.409, 0.409) is None
    assert below_baseline("subject 3", 0.5, 0.409) is None
    assert "R² 0.903" in below_baseline("force", 0.903, 0.935, "r2")
    # issue 78: a one-window gap is not "below"; a clear one carries its interval
    assert below_baseline("subject 3", 13 / 14, 1.0, n=14) is None
    assert below_baseline("subject 3", 0.273, 0.409, n=300).endswith(
        "regression; difference -0.136, 95 % interval [-0.210, -0.060] over 300 windows)"
    )
    with pytest.raises(ArgumentError, match="metric must be one of"):
        below_baseline("subject 3", 0.2, 0.4, "f1")


def fold(held_out: int) -> SubjectData:
    """Notebook 09's fold of LibEMG's Myo set holding out repetition ``held_out`` (1-4)."""
    train = tuple(r for r in (1, 2, 3, 4) if r != held_out)
    preprocess = dataset_preprocess(
        "files", window=200, step=50, test_repetitions=(held_out,), train_repetitions=train
    )
    source = data_source(
        "files", root=MYO, pattern="R_{repetition}_C_{gesture}_EMG.csv", sample_rate=200,
        preprocess=preprocess,
    )  # fmt: skip
    return load_subject(source, 1, cache_dir=None)


def test_libemg_myo_folds_score_as_measured():
    # the three repetitions recorded alike are learned whole; R_3 (the armband mirrored) is not
    values = [feature_baseline(fold(rep)).value for rep in (1, 2, 3, 4)]
    assert values[:3] == [1.0, 1.0, 1.0]
    assert values[3] == pytest.approx(0.409, abs=0.05)  # 18 of 44 windows as measured


def test_the_streamed_ridge_of_a_window_store_is_the_feature_baselines_ridge():
    from emg_lens.train.regression import ridge_baseline_mae

    rng = np.random.default_rng(1)
    amplitude = rng.uniform(0.5, 3.0, (90, 3))
    X = (np.abs(rng.standard_normal((90, 3, 40))) * amplitude[:, :, None]).astype(np.float32)
    Y = (amplitude @ np.array([[2.0, 0.0], [-1.0, 1.0], [0.5, 3.0]]))[:, None, :]  # 1 step

    class Split:
        X_train, y_train, X_test, y_test = X[:60], Y[:60, 0], X[60:], Y[60:, 0]

    whole = feature_baseline(Split)
    # read 256 windows a batch: one batch here; the same ridge, the same predictions
    streamed = ridge_baseline_mae((X[:60], Y[:60]), (X[60:], Y[60:]))
    expected = np.abs(whole.predictions - Y[60:, 0]).mean(0)
    assert streamed.per_output == pytest.approx(expected.tolist(), rel=1e-9)
    with pytest.raises(InputShapeError, match="non-finite"):
        ridge_baseline_mae((np.full_like(X, np.nan), Y), (X, Y))


def with_float_labels(data: SubjectData) -> SubjectData:
    """``data`` with its class labels held as floats (0.0, 1.0, ...)."""
    return SubjectData.from_windows(
        {"emg": data.X_train.shape[1]},
        (data.X_test, data.y_test.astype(float)),
        (data.X_train, data.y_train.astype(float)),
    )


def test_class_labels_held_as_floats_are_scored_by_accuracy_never_r2():
    # issue 57 item 8: float class labels turned the baseline into a ridge R² that the tables
    # showed as baseline_accuracy
    data = loud_channel(0)
    floats = with_float_labels(data)
    integers, as_floats = feature_baseline(data), feature_baseline(floats)
    assert as_floats.metric == "accuracy" and as_floats.value == integers.value
    assert (as_floats.predictions == integers.predictions).all()
    split = bad(y_train=data.y_train.astype(float), y_test=data.y_test.astype(float))
    assert feature_baseline(split, "accuracy").value == integers.value  # asked for: accuracy
    assert feature_baseline(split).metric == "r2"  # a plain split of floats: targets
    halves = bad(y_train=data.y_train + 0.5)
    with pytest.raises(InputShapeError, match=r"y_train must be integer class labels.*0\.5"):
        feature_baseline(halves, "accuracy")
    with pytest.raises(InputShapeError, match="y_test must be integer class labels"):
        feature_baseline(SubjectData.from_windows(
            {"emg": 4}, (data.X_test, data.y_test + 0.5), (data.X_train, data.y_train)
        ))  # fmt: skip
    with pytest.raises(ArgumentError, match="metric must be one of"):
        feature_baseline(data, "f1")


def test_a_subjects_known_baseline_is_an_accuracy_with_float_labels():
    from emg_lens.studies.subjects import known_of

    data = loud_channel(0)
    floats = with_float_labels(data)
    assert known_of((None, floats))["baseline_accuracy"] == feature_baseline(data).value


def test_targets_too_large_to_score_are_named_not_scored_nan():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 2, 20)), rng.standard_normal(40) * 1e300

    class Split:
        X_train, y_train, X_test, y_test = X[:30], y[:30], X[30:], y[30:]

    with (
        np.errstate(all="ignore"),
        pytest.raises(DataFormatError, match="r2 is nan: it overflowed"),
    ):
        feature_baseline(Split)


def test_the_regression_floors_name_data_without_windows_or_a_finite_error():
    import torch

    from emg_lens.train.regression import mean_baseline_mae, ridge_baseline_mae

    rng = np.random.default_rng(0)
    X, Y = torch.as_tensor(rng.standard_normal((12, 2, 8))), torch.ones(12, 3, 1).double()
    with pytest.raises(DataFormatError, match=r"^the training data holds no window"):
        mean_baseline_mae((X[:0], Y[:0]), (X, Y))
    with pytest.raises(DataFormatError, match="ridge_baseline_mae: the training data holds no"):
        ridge_baseline_mae((X[:0], Y[:0]), (X, Y))
    huge = torch.full((12, 3, 1), 1e308, dtype=torch.float64)
    with (
        np.errstate(all="ignore"),
        pytest.raises(DataFormatError, match=r"a non-finite error \[inf\]"),
    ):
        ridge_baseline_mae((X, Y), (X, huge))
