"""Windows of several subjects as one, and the per-window labels a concept is read from.

`pool_subjects` joins subjects' `SubjectData` into one whose windows keep each its subject (a
window label, ``meta["window_labels"]["subject"]``) and its trial (the sources' own, numbered
apart per subject), so folds never split a trial and two subjects' trials stay two;
`window_labels` reads a concept per window, `unpool` takes a pooled subject apart again.

>>> X, y = np.zeros((4, 2, 5), "float32"), np.array([0, 1, 0, 1])
>>> a = SubjectData.from_windows({"emg": 2}, (X, y), (X, y), subject=1)
>>> b = SubjectData.from_windows({"emg": 2}, (X + 1, y), (X + 1, y), subject=2)
>>> pooled = pool_subjects([a, b])
>>> window_labels(pooled, "subject", "test").tolist()
[1, 1, 1, 1, 2, 2, 2, 2]
>>> pooled.test_trials.tolist()  # each window its own trial, as in each source
[0, 1, 2, 3, 4, 5, 6, 7]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from emg_lens.data.preprocess import SubjectData
from emg_lens.data.trials import WINDOW_LABELS, record_trials, trial_unit
from emg_lens.errors import ArgumentError, InputShapeError, check_choice, checked

"""The ``meta`` key of a subject's per-window labels: ``{name: {"train": [...], "test": [...]}}``,
one value per window of each part, in window order (JSON, as the preprocessing cache stores
``meta``)."""

BUILT_IN = ("gesture", "repetition", "trial", "subject")
"""The concepts every `SubjectData` has a value of per window (`window_labels`)."""

PARTS = ("train", "test")


def window_labels(data: SubjectData, name: str, part: str = "test") -> np.ndarray:
    """Each window's value of the concept ``name`` (`BUILT_IN`, or a column of
    ``meta["window_labels"]``) in ``part``; another name is an `ArgumentError` listing them.

    >>> X, y = np.zeros((3, 1, 2)), np.array([0, 1, 1])
    >>> data = SubjectData.from_windows({"emg": 1}, (X, y), (X, y), subject=7)
    >>> window_labels(data, "gesture").tolist(), window_labels(data, "subject").tolist()
    ([0, 1, 1], [7, 7, 7])
    >>> window_labels(data, "session")
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: the windows carry no label 'session': accepted are 'gesture', 'repetition', 'trial', 'subject' (no meta window_labels)
    """  # noqa: E501
    check_choice(part, list(PARTS), "part")
    y = np.asarray(data.y_train if part == "train" else data.y_test)
    columns = data.meta.get(WINDOW_LABELS) or {}
    if name in columns:
        values = np.asarray(columns[name][part])
        if values.shape != y.shape:
            raise InputShapeError(
                f"meta[{WINDOW_LABELS!r}][{name!r}][{part!r}]: {values.shape} for {y.shape} windows"
            )
        return values
    if name == "gesture":
        return y
    if name == "repetition":
        return np.asarray(data.rep_train if part == "train" else data.rep_test)
    if name == "trial":
        return data.train_trials if part == "train" else data.test_trials
    if name == "subject":
        return np.full(len(y), data.subject)
    listed = ", ".join(repr(n) for n in dict.fromkeys([*BUILT_IN, *columns]))
    where = f"the data's meta has {sorted(columns)}" if columns else "no meta window_labels"
    raise ArgumentError(f"the windows carry no label {name!r}: accepted are {listed} ({where})")


def with_window_labels(
    data: SubjectData, name: str, train: Sequence[Any], test: Sequence[Any]
) -> SubjectData:
    """``data`` with the window label ``name`` (one value per training window, one per
    held-out window), JSON values.

    >>> X, y = np.zeros((2, 1, 2)), np.array([0, 1])
    >>> data = SubjectData.from_windows({"emg": 1}, (X, y), (X, y))
    >>> window_labels(with_window_labels(data, "session", [1, 2], [2, 2]), "session").tolist()
    [2, 2]
    """
    columns = {}
    for part, values, y in (("train", train, data.y_train), ("test", test, data.y_test)):
        array = np.asarray(values)
        if array.shape != np.shape(y):
            raise InputShapeError(
                f"window label {name!r}: {array.shape} {part} values for {len(y)} windows"
            )
        columns[part] = array.tolist()
    labels = {**(data.meta.get(WINDOW_LABELS) or {}), name: columns}
    return replace(data, meta={**data.meta, WINDOW_LABELS: labels})


@checked
def pool_subjects(subjects: Sequence[SubjectData], *, standardize: bool = False) -> SubjectData:
    """The windows of ``subjects`` (same modalities, classes and window length) as one
    `SubjectData` (subject 0), training and held-out windows each in subject order; each
    window keeps its subject (window label ``"subject"``), repetition, trial (a subject's
    trial stays its own: unit ``"given"``) and the window labels every subject carries (one
    that only some carry is refused). With ``standardize``, every channel is z-scored over the
    pooled training windows (for subjects prepared with ``standardize=False``: a per-subject
    z-score removes any per-subject offset or gain)."""
    subjects = list(subjects)
    numbers = [s.subject for s in subjects]
    if len(set(numbers)) != len(numbers) or len(numbers) < 2:
        raise ArgumentError(f"pool_subjects needs two subjects or more, each once, got {numbers}")
    first = subjects[0]
    shared = (first.modalities, first.classes, first.X_test.shape[1:])
    for s in subjects[1:]:
        if (same := (s.modalities, s.classes, s.X_test.shape[1:])) != shared:
            raise ArgumentError(
                f"subjects {first.subject} and {s.subject} differ in modalities, classes or window "
                f"shape ({shared} against {same}): only windows one model reads alike pool"
            )

    def joined(name: str) -> np.ndarray:
        return np.concatenate([np.asarray(getattr(s, name)) for s in subjects])

    X_train, X_test = joined("X_train"), joined("X_test")
    if standardize:
        mean = X_train.mean(axis=(0, 2), keepdims=True)
        std = X_train.std(axis=(0, 2), keepdims=True)
        X_train, X_test = (X_train - mean) / (std + 1e-8), (X_test - mean) / (std + 1e-8)
    trials = {}
    for part in PARTS:  # (subject, its trial) -> one id
        pairs = [(s.subject, t) for s in subjects for t in window_labels(s, "trial", part)]
        ids = {pair: i for i, pair in enumerate(dict.fromkeys(pairs))}
        trials[part] = [ids[pair] for pair in pairs]
    unit = "recording" if {trial_unit(s.meta) for s in subjects} == {"recording"} else "given"
    meta = {"pooled_subjects": numbers, **record_trials(trials["train"], trials["test"], unit)}
    pooled = SubjectData(
        subject=0,
        modalities=dict(first.modalities),
        classes=list(first.classes),
        X_train=X_train.astype(np.float32),
        y_train=joined("y_train"),
        rep_train=joined("rep_train"),
        X_test=X_test.astype(np.float32),
        y_test=joined("y_test"),
        rep_test=joined("rep_test"),
        meta=meta,
    )
    part_subjects = {p: [s.subject for s in subjects for _ in getattr(s, f"y_{p}")] for p in PARTS}
    for name in _shared_labels(subjects):  # the subjects' own window labels, joined
        joined_labels = {p: [v for s in subjects for v in window_labels(s, name, p)] for p in PARTS}
        pooled = with_window_labels(pooled, name, joined_labels["train"], joined_labels["test"])
    return with_window_labels(pooled, "subject", part_subjects["train"], part_subjects["test"])


def _shared_labels(subjects: Sequence[SubjectData]) -> list[str]:
    """The window labels (other than ``"subject"``) that every subject carries; one that only
    some carry is an `ArgumentError`: the pooled windows could not all have it."""
    names = [set(s.meta.get(WINDOW_LABELS) or {}) - {"subject"} for s in subjects]
    partial = sorted(set().union(*names) - set.intersection(*names))
    if partial:
        raise ArgumentError(
            f"window labels {partial} are carried by some of the subjects only: pool subjects "
            "that all carry a label, or none (dataclasses.replace(data, meta=...) drops one)"
        )
    return sorted(names[0])


@checked
def unpool(pooled: SubjectData) -> dict[int, SubjectData]:
    """``subject -> SubjectData``: each subject's windows of ``pooled`` (a `pool_subjects`
    result), as ``pooled`` holds them (after its joint z-score, if any), with their
    repetitions, trials and other window labels.

    >>> X, y = np.zeros((2, 1, 3), "float32"), np.array([0, 1])
    >>> parts = [SubjectData.from_windows({"emg": 1}, (X + s, y), (X + s, y), subject=s)
    ...          for s in (4, 7)]
    >>> apart = unpool(pool_subjects(parts))
    >>> sorted(apart), float(apart[7].X_test.max()), apart[7].test_trials.tolist()
    ([4, 7], 7.0, [0, 1])
    """
    if "subject" not in (pooled.meta.get(WINDOW_LABELS) or {}):
        raise ArgumentError(f"subject {pooled.subject} is no pooled subject (pool_subjects)")
    owners = {part: window_labels(pooled, "subject", part) for part in PARTS}
    columns = {n: v for n, v in pooled.meta[WINDOW_LABELS].items() if n != "subject"}
    subjects = {}
    for number in dict.fromkeys([*owners["train"].tolist(), *owners["test"].tolist()]):
        mine = {part: owners[part] == number for part in PARTS}
        trials = {part: window_labels(pooled, "trial", part)[mine[part]] for part in PARTS}
        meta = {k: v for k, v in pooled.meta.items() if k not in ("pooled_subjects", WINDOW_LABELS)}
        meta.update(record_trials(trials["train"], trials["test"], trial_unit(pooled.meta)))
        if columns:
            meta[WINDOW_LABELS] = {
                name: {part: np.asarray(v[part])[mine[part]].tolist() for part in PARTS}
                for name, v in columns.items()
            }
        subjects[int(number)] = replace(
            pooled,
            subject=int(number),
            X_train=pooled.X_train[mine["train"]],
            y_train=np.asarray(pooled.y_train)[mine["train"]],
            rep_train=np.asarray(pooled.rep_train)[mine["train"]],
            X_test=pooled.X_test[mine["test"]],
            y_test=np.asarray(pooled.y_test)[mine["test"]],
            rep_test=np.asarray(pooled.rep_test)[mine["test"]],
            meta=meta,
        )
    return subjects
