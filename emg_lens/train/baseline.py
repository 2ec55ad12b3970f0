"""A per-channel feature baseline beside every trained model: is the transformer above what a
linear model of each channel's amplitude gets on the same split?

`feature_baseline` fits on a split's training windows (a `SubjectData`, or contraction windows)
and scores its held-out ones, the windows the model is trained and scored on: for class labels,
each channel's log RMS and mean absolute difference into a logistic regression (accuracy); for
a continuous target, each channel's RMS into a ridge (R²). Each channel is first shifted so
that its training minimum is 0: after the data's z-score an RMS would measure the distance from
the channel's mean, not its amplitude (docs/ARCHITECTURE.md, ``train/``). Deterministic; a
non-finite window, target or result is an error, never a score.

>>> rng = np.random.default_rng(0)
>>> y = np.arange(40) % 2
>>> X = rng.standard_normal((40, 3, 20)) * (1 + y[:, None, None])  # class 1: twice as loud
>>> data = SubjectData.from_windows({"emg": 3}, (X[20:], y[20:]), (X[:20], y[:20]))
>>> score = feature_baseline(data)
>>> score.metric, score.value, score.n_train, score.n_test
('accuracy', 1.0, 20, 20)
>>> print(below_baseline("subject 3", 0.5, score.value))  # doctest: +NORMALIZE_WHITESPACE
subject 3: the model's 0.500 is below the per-channel feature baseline's 1.000
(log RMS + MAD, logistic regression)
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Protocol, runtime_checkable

import numpy as np
from jaxtyping import Float

from emg_lens._blas import one_blas_thread
from emg_lens.data.preprocess import SubjectData, check_window_range
from emg_lens.errors import DataFormatError, InputShapeError, check_choice, describe

LOGISTIC_C = 1.0
"""Inverse L2 strength of the classification baseline's logistic regression (scikit-learn's
default), on standardised features."""

RIDGE_ALPHA = 1.0
"""L2 strength of the regression baseline's ridge, on standardised features."""

BASELINE_KINDS = {
    "accuracy": "log RMS + MAD, logistic regression",
    "r2": "channel RMS, ridge",
}
"""What the baseline of each metric is, in the words a report prints."""

LOG_FLOOR = 1e-6
"""The log RMS's floor, as a share of the channel's RMS over the training windows."""


@runtime_checkable
class Split(Protocol):
    """Training and held-out windows with their labels or targets (a `SubjectData`, or
    `emg_lens.data.windows.contraction.ContractionWindows`)."""

    X_train: Any
    y_train: Any
    X_test: Any
    y_test: Any


@dataclass(frozen=True)
class BaselineScore:
    """The baseline's score on the held-out windows: ``metric`` (``"accuracy"`` or ``"r2"``),
    its ``value``, the windows it was fitted and scored on, what it is (``kind``, e.g. ``"log
    RMS + MAD, logistic regression"``) and its prediction for every held-out window (a class
    index, or ``[n, outputs]`` values), so a caller can score it by trial."""

    metric: str
    value: float
    n_train: int
    n_test: int
    kind: str
    predictions: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """What a checkpoint's metadata records (without the predictions).

        >>> BaselineScore("r2", 0.5, 10, 4, "channel RMS, ridge", np.zeros(4)).to_dict()
        {'metric': 'r2', 'value': 0.5, 'n_train': 10, 'n_test': 4, 'kind': 'channel RMS, ridge'}
        """
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "predictions"}


def _windows(X: Any, field: str) -> np.ndarray:
    X = np.asarray(X) if hasattr(X, "shape") else X
    shape: tuple[int, ...] = X.shape if isinstance(X, np.ndarray) and X.dtype.kind in "iuf" else ()
    if len(shape) != 3 or not shape[0] or shape[2] < 2:
        raise InputShapeError(
            f"{field} must be windows [n >= 1, channel, time >= 2] of numbers, got {describe(X)}"
        )
    if bad := int(X.size - np.isfinite(X).sum()) if X.dtype.kind == "f" else 0:
        raise InputShapeError(f"{field} holds {bad} non-finite values (NaN or inf)")
    check_window_range(X, field)
    return X


CHUNK = 512
"""Windows per pass of `_amplitudes` (bounds the float64 copy it works on)."""


def _amplitudes(X: np.ndarray, low: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per window and channel, the RMS and the mean absolute difference of ``X - low``
    (float64, a chunk of windows at a time)."""
    rms, mad = [], []
    for start in range(0, len(X), CHUNK):
        shifted = X[start : start + CHUNK].astype(np.float64) - low[None, :, None]
        rms.append(np.sqrt(np.einsum("nct,nct->nc", shifted, shifted) / X.shape[2]))
        mad.append(np.abs(np.diff(shifted, axis=-1)).mean(-1))
    return np.concatenate(rms), np.concatenate(mad)


def channel_rms(
    X: Float[np.ndarray, "n channel time"], low: Float[np.ndarray, " channel"]
) -> Float[np.ndarray, "n channel"]:
    """The regression baseline's features (each channel's RMS of ``X`` shifted by ``low``),
    for a caller that reads its windows a batch at a time.

    >>> channel_rms(np.array([[[1.0, 3.0, 1.0, 3.0]]]), np.array([1.0])).round(3).tolist()
    [[1.414]]
    """
    return _amplitudes(_windows(X, "X"), np.asarray(low, np.float64))[0]


def _features(
    amplitudes: tuple[np.ndarray, np.ndarray], reference_rms: np.ndarray | None, metric: str
) -> np.ndarray:
    rms, mad = amplitudes
    if metric == "r2":
        return rms
    assert reference_rms is not None  # every metric but r2 is passed one
    scale = np.sqrt((reference_rms**2).mean(0))  # the channel's RMS over the training windows
    floor = LOG_FLOOR * np.where(scale > 0, scale, 1.0)
    return np.concatenate([np.log(rms + floor), mad], axis=1)


def _training_low(
    train: np.ndarray, other: np.ndarray, names: tuple[str, str]
) -> Float[np.ndarray, " channel"]:
    """Each channel's lowest value in the training windows ``train`` (float64), by which the
    windows of both sides of a split are shifted; ``other``, the other side, must have the
    same channels (``names`` name the two sides in the error)."""
    if train.shape[1] != other.shape[1]:
        raise InputShapeError(
            f"{names} need the same channels, got {train.shape[1]}, {other.shape[1]}"
        )
    return train.min(axis=(0, 2)).astype(np.float64)


def channel_features(
    X: Float[np.ndarray, "n channel time"],
    reference: Float[np.ndarray, "m channel time"],
    metric: str = "accuracy",
) -> Float[np.ndarray, "n feature"]:
    """The baseline's features of windows ``X``, each channel shifted by its lowest value in
    the training windows ``reference`` (see the module docstring): for ``metric="accuracy"``
    ``[log RMS of every channel, then its mean absolute difference]``, for ``"r2"`` the RMS of
    every channel.

    >>> X = np.array([[[1.0, 3.0, 1.0, 3.0]], [[1.0, 1.0, 1.0, 1.0]]])
    >>> channel_features(X, X, "r2").round(3).tolist()  # shifted by 1: |x - 1|
    [[1.414], [0.0]]
    >>> channel_features(X, X).round(3).tolist()  # the silent window: log of the floor
    [[0.347, 2.0], [-13.816, 0.0]]
    """
    check_choice(metric, BASELINE_KINDS, "metric")
    X, reference = _windows(X, "X"), _windows(reference, "reference")
    low = _training_low(reference, X, ("reference", "X"))
    reference_rms = _amplitudes(reference, low)[0] if metric != "r2" else None
    return _features(_amplitudes(X, low), reference_rms, metric)


def _labels(y: Any, n: int, field: str) -> np.ndarray:
    y = np.asarray(y)
    finite = y.dtype.kind in "iub" or (y.dtype.kind == "f" and np.isfinite(y).all())
    if y.ndim < 1 or len(y) != n or not finite:
        raise InputShapeError(
            f"{field} must be integer class labels or finite float targets (no NaN or inf), one "
            f"per window ({n}), got {describe(y)}"
        )
    return y


def _class_labels(y: np.ndarray, field: str) -> np.ndarray:
    """``y`` as integer class labels: integers as they are, floats only when every one is a
    whole number (``2.0``), refused by name otherwise (a classifier's accuracy is reported)."""
    if y.dtype.kind in "iub":
        return y
    if len(fractional := y[y != np.round(y)]):
        raise InputShapeError(
            f"{field} must be integer class labels (a classifier's accuracy; metric='r2' reads "
            f"targets), got {len(fractional)} non-integral values, e.g. {fractional.flat[0]!r}"
        )
    return y.astype(np.int64)


def _r2(pred: np.ndarray, target: np.ndarray) -> float:
    """R² per output (columns), averaged; a target that does not vary has none."""
    variance = target.var(axis=0)
    if flat := np.flatnonzero(variance == 0).tolist():
        raise DataFormatError(f"y_test outputs {flat} do not vary: R² is undefined on them")
    return float(np.mean(1.0 - ((pred - target) ** 2).mean(axis=0) / variance))


def fit_baseline(
    features: Float[np.ndarray, "n feature"], y: np.ndarray, metric: str = "accuracy"
) -> Any:
    """The baseline's model fitted on ``features`` (of `channel_features`): a scikit-learn
    pipeline, standardisation then a logistic regression (``metric="accuracy"``, class labels
    ``y``, ``C = LOGISTIC_C``) or a ridge (``"r2"``, targets ``y [n, outputs]``,
    ``alpha = RIDGE_ALPHA``).

    >>> fit_baseline(np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1])).predict(
    ...     np.array([[0.5], [2.5]])).tolist()
    [0, 1]
    """
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    check_choice(metric, BASELINE_KINDS, "metric")
    if metric == "accuracy":
        model = LogisticRegression(C=LOGISTIC_C, max_iter=1000)
    else:
        model = Ridge(alpha=RIDGE_ALPHA)
    with one_blas_thread():  # small matrices: BLAS threads cost more than they share
        return make_pipeline(StandardScaler(), model).fit(features, y)


def feature_baseline(data: Split | SubjectData, metric: str | None = None) -> BaselineScore:
    """Fit the per-channel feature baseline on ``data``'s training windows and score it on its
    held-out windows (see the module docstring). Without ``metric``: accuracy for a
    `SubjectData` and for integer labels, R² for float targets. Class labels held as floats
    are read only when each is a whole number (``2.0``): a ``baseline_accuracy`` is always a
    classifier's accuracy, never an R².

    Refused by name: windows that are not ``[n, channel, time >= 2]`` or hold NaN or inf,
    labels that do not match them, class labels that are not whole numbers, fewer than two
    classes among the training labels, a target that does not vary.

    >>> X = np.random.default_rng(0).standard_normal((4, 2, 5))
    >>> y = np.array([0.0, 1.0, 0.0, 1.0])  # class labels held as floats
    >>> feature_baseline(SubjectData.from_windows({"emg": 2}, (X, y), (X, y))).metric
    'accuracy'
    >>> feature_baseline(SubjectData.from_windows({"emg": 2}, (X, y + 0.5), (X, y)))
    Traceback (most recent call last):
    ...
    emg_lens.errors.InputShapeError: y_test must be integer class labels (a classifier...

    >>> X = np.ones((4, 2, 5))
    >>> feature_baseline(SubjectData.from_windows({"emg": 2}, (X, [0, 0, 0, 0]), (X, [1] * 4)))
    Traceback (most recent call last):
    ...
    emg_lens.errors.DataFormatError: y_train holds one class ([1]); a classifier needs two or more
    """
    check_choice(metric, (*BASELINE_KINDS, None), "metric")
    X_train, X_test = _windows(data.X_train, "X_train"), _windows(data.X_test, "X_test")
    y_train = _labels(data.y_train, len(X_train), "y_train")
    y_test = _labels(data.y_test, len(X_test), "y_test")
    if metric is None and isinstance(data, SubjectData):
        metric = "accuracy"
    if metric is None and (y_train.dtype.kind in "iub") != (y_test.dtype.kind in "iub"):
        raise InputShapeError(
            f"y_train ({y_train.dtype}) and y_test ({y_test.dtype}) must both be "
            "class labels (integers) or both targets (floats)"
        )
    if metric is None:
        metric = "accuracy" if y_train.dtype.kind in "iub" else "r2"
    classify = metric == "accuracy"
    if classify:
        y_train, y_test = _class_labels(y_train, "y_train"), _class_labels(y_test, "y_test")
    low = _training_low(X_train, X_test, ("X_train", "X_test"))
    train = _amplitudes(X_train, low)
    F_train = _features(train, train[0], metric)
    F_test = _features(_amplitudes(X_test, low), train[0], metric)
    if classify:
        if len(classes := np.unique(y_train)) < 2:
            raise DataFormatError(
                f"y_train holds one class ({classes.tolist()}); a classifier needs two or more"
            )
        predictions = fit_baseline(F_train, y_train).predict(F_test)
        value = float((predictions == y_test).mean())
    else:
        targets = y_train.reshape(len(y_train), -1).astype(np.float64)
        predictions = fit_baseline(F_train, targets, "r2").predict(F_test)
        predictions = predictions.reshape(len(y_test), -1)
        value = _r2(predictions, y_test.reshape(len(y_test), -1).astype(np.float64))
    if not np.isfinite(value) or not np.isfinite(np.asarray(predictions, np.float64)).all():
        raise DataFormatError(
            f"the feature baseline's {metric} is {value}: it overflowed; check the windows' scale"
        )
    return BaselineScore(metric, value, len(X_train), len(X_test), BASELINE_KINDS[metric],
                         np.asarray(predictions))  # fmt: skip


def below_baseline(
    model: str,
    model_value: float,
    baseline_value: float,
    metric: str = "accuracy",
    n: int | None = None,
    unit: str = "windows",
) -> str | None:
    """The line a report prints when a model's score ``model_value`` is below the feature
    baseline's ``baseline_value`` (both in ``metric``, ``"accuracy"`` or ``"r2"``), to three
    decimals; None otherwise. ``model`` names the model as the line starts with it (``"subject
    3"``, a chance table's ``model`` column), word for word. With ``n``, the independent ``unit``
    s the accuracies are over, the line carries the difference's 95 % interval (Newcombe's,
    taken as unpaired, so wider than the paired one) and is None where that interval reaches
    0: a gap of a window or two is not "below".

    >>> print(below_baseline("force", 0.903, 0.935, "r2"))  # doctest: +NORMALIZE_WHITESPACE
    force: the model's R² 0.903 is below the per-channel feature baseline's R² 0.935
    (channel RMS, ridge)
    >>> below_baseline("subject 1", 0.9996, 1.0) is None  # the same to three decimals
    True
    >>> print(below_baseline("subject 3", 0.27, 0.41, n=200))  # doctest: +NORMALIZE_WHITESPACE
    subject 3: the model's 0.270 is below the per-channel feature baseline's 0.410 (log RMS +
    MAD, logistic regression; difference -0.140, 95 % interval [-0.230, -0.047] over 200 windows)
    >>> below_baseline("subject 3", 13 / 14, 1.0, n=14) is None  # one window of 14
    True
    """
    check_choice(metric, BASELINE_KINDS, "metric")
    if round(model_value, 3) >= round(baseline_value, 3):
        return None
    r2, interval = "R² " if metric == "r2" else "", ""
    if n is not None and metric == "accuracy":
        low, high = _difference_interval(model_value, baseline_value, int(n))
        if high >= 0:
            return None
        interval = (
            f"; difference {model_value - baseline_value:+.3f}, 95 % interval [{low:.3f}, "
            f"{high:.3f}] over {int(n)} {unit}"
        )
    return (
        f"{model}: the model's {r2}{model_value:.3f} is below the per-channel "
        f"feature baseline's {r2}{baseline_value:.3f} ({BASELINE_KINDS[metric]}{interval})"
    )


def _difference_interval(a: float, b: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Newcombe's (1998, method 10) 95 % interval of ``a - b``, two accuracies over ``n``
    windows each, from their Wilson intervals."""

    def wilson(p: float) -> tuple[float, float]:
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return centre - half, centre + half

    (la, ua), (lb, ub) = wilson(a), wilson(b)
    d = a - b
    return d - float(np.hypot(a - la, ub - b)), d + float(np.hypot(ua - a, b - lb))
