"""The independent unit: which windows share a trial.

The windows of one trial overlap and share its noise, posture and placement, so inference over
held-out data counts trials, not windows (docs/DESIGN.md §15). A trial is a ``(class,
repetition)`` pair of one subject (``unit = "repetition"``); the source's own trial ids where
it records them (``"given"``, braindecode's ``i_trial_in_dataset``, `record_trials`); a
recording, for braindecode windows that record no trial (``"recording"``); or each window
(``"window"``: bare ``(X, y)`` pairs, epochs). `trial_ids` numbers them; ``SubjectData``'s
``train_trials`` and ``test_trials`` apply it with the unit of ``meta["trial_unit"]``.

>>> trial_ids(np.array([0, 0, 1, 1, 0]), np.array([2, 2, 2, 2, 5]))
array([0, 0, 1, 1, 2])
>>> trial_ids(np.array([0, 0, 1]), np.array([2, 2, 2]), unit="window")
array([0, 1, 2])
>>> trial_ids(np.array([0, 0, 1]), np.array([2, 2, 2]), unit="given", given=[7, 7, 3])
array([0, 0, 1])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from jaxtyping import Int

from emg_lens.errors import ArgumentError, check_choice, describe
from emg_lens.stats.units import TRIAL_UNITS

RECORDED = TRIAL_UNITS[2:]

GIVEN = "given_trials"
"""The ``meta`` key of a subject's recorded trials (``unit = "given"``): ``{"train": [...],
"test": [...]}``, one integer per window of each part, in window order (JSON, as the
preprocessing cache stores ``meta``)."""

WINDOW_LABELS = "window_labels"
"""The ``meta`` key of a subject's own window labels (`emg_lens.data.pooled.window_labels`):
``{name: {"train": [...], "test": [...]}}``, one JSON value per window of each part."""


def trial_unit(meta: dict[str, Any]) -> str:
    """The trial unit a subject's ``meta`` names (``"repetition"`` when it names none), or an
    `ArgumentError` naming the accepted units.

    >>> trial_unit({}), trial_unit({"trial_unit": "window"})
    ('repetition', 'window')
    """
    return check_choice(meta.get("trial_unit", "repetition"), TRIAL_UNITS, "meta['trial_unit']")


def record_trials(
    train: Int[np.ndarray, " _"] | Sequence[int],
    test: Int[np.ndarray, " _"] | Sequence[int],
    unit: str = "given",
) -> dict[str, Any]:
    """The ``meta`` entries of a subject whose windows' trials are known: ``unit`` (``"given"``
    or ``"recording"``) and each window's trial (any integers), training then held-out.

    >>> record_trials(np.array([0, 0, 1]), [2, 2])
    {'trial_unit': 'given', 'given_trials': {'train': [0, 0, 1], 'test': [2, 2]}}
    """
    return {
        "trial_unit": check_choice(unit, RECORDED, "recorded trials' unit"),
        GIVEN: {"train": [int(t) for t in train], "test": [int(t) for t in test]},
    }


def given_trials(meta: dict[str, Any], part: str) -> np.ndarray | None:
    """Each window's recorded trial in ``part`` (``"train"`` or ``"test"``) where ``meta``
    names the unit ``"given"`` or ``"recording"`` (`record_trials`); None otherwise.

    >>> given_trials(record_trials([0, 0, 1], [2, 2]), "test")
    array([2, 2])
    >>> given_trials({"trial_unit": "window"}, "test") is None
    True
    """
    unit = trial_unit(meta)
    if unit not in RECORDED:
        return None
    recorded = meta.get(GIVEN)
    if not isinstance(recorded, dict) or part not in recorded:
        raise ArgumentError(
            f"meta['trial_unit'] is {unit!r}: meta[{GIVEN!r}] must hold {part!r} (record_trials)"
        )
    return np.asarray(recorded[part], dtype=np.int64)


def _by_first_appearance(keys: np.ndarray) -> np.ndarray:
    """The rows of ``keys`` numbered ``0, 1, ...`` by the first appearance of each distinct
    row."""
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # unique rows renumbered by first appearance
    return order[inverse.reshape(-1)]


def trial_ids(
    y: Int[np.ndarray, " n"],
    rep: Int[np.ndarray, " n"],
    unit: str = "repetition",
    given: Int[np.ndarray, " n"] | Sequence[int] | None = None,
) -> Int[np.ndarray, " n"]:
    """Number the trials of ``n`` windows, ``0, 1, ...`` in order of first appearance: one
    number per distinct ``(y, rep)`` pair, per window, or per distinct recorded trial
    ``given`` (one per window; a ``"given"`` trial whose windows carry two classes is an
    `ArgumentError`, a recording may hold several).

    >>> trial_ids(np.array([3, 1, 3]), np.array([1, 1, 1]))
    array([0, 1, 0])
    """
    y, rep = np.asarray(y), np.asarray(rep)
    if y.ndim != 1 or rep.shape != y.shape:
        raise ArgumentError(f"y and rep must be 1-D of one length, got {y.shape} and {rep.shape}")
    if check_choice(unit, TRIAL_UNITS, "trial unit") in RECORDED:
        return _given_ids(y, given, unit == "given")
    if unit == "window" or len(y) == 0:
        return np.arange(len(y))
    return _by_first_appearance(np.stack([y.astype(np.int64), rep.astype(np.int64)], axis=1))


def _given_ids(y: np.ndarray, given: Any, one_class: bool) -> np.ndarray:
    """`trial_ids` of recorded trials: checked (``one_class``: one class each), numbered by
    first appearance."""
    given = np.asarray([] if given is None else given)
    if given.shape != y.shape or (len(given) and not np.issubdtype(given.dtype, np.integer)):
        raise ArgumentError(
            f"trial units 'given' and 'recording' need given=, an integer trial per window: "
            f"{len(y)} windows, got {describe(given)} (select_test keeps them)"
        )
    if len(y) == 0:
        return np.arange(0)
    ids = _by_first_appearance(given.astype(np.int64)[:, None])
    if not one_class:
        return ids
    classes = _by_first_appearance(np.stack([ids, y.astype(np.int64)], axis=1))
    if classes.max() != ids.max():  # some trial holds two (trial, class) pairs
        pairs = np.unique(np.stack([given, y], axis=1), axis=0)
        values, counts = np.unique(pairs[:, 0], return_counts=True)
        bad = values[counts > 1][0]
        mixed = sorted(pairs[pairs[:, 0] == bad, 1].tolist())
        raise ArgumentError(
            f"recorded trial {int(bad)} holds windows of classes {mixed}: a trial is one class's"
        )
    return ids
