"""The independent unit: which windows share a trial.

A window is not an observation. The windows of one *trial* (one repetition of one gesture by
one subject, or one session's, as the data give it) overlap and share the trial's noise,
posture and electrode placement, so an inference that counts windows as independent says more
than the data allow (docs/DESIGN.md §15). Every inference emg_lens makes over held-out data
counts trials (and, across a study, subjects):

- windows cut from a recording (`emg_lens.data.preprocess.prepare_subject`, a dataset's
  reader, your own files) carry their gesture and repetition: a trial is a distinct
  ``(class, repetition)`` pair of one subject (``unit = "repetition"``);
- windows made elsewhere (``SubjectData.from_windows``, ``from_epochs``,
  ``from_windows_dataset``: an ``(X, y)`` pair, MNE epochs) carry no trial: each window is its
  own trial (``unit = "window"``), the reading that is true of epochs and the only one the
  data allow otherwise.

`trial_ids` numbers the trials of an array of windows; ``SubjectData.train_trials`` and
``.test_trials`` apply it to a subject's split with the unit its ``meta["trial_unit"]`` names.

>>> trial_ids(np.array([0, 0, 1, 1, 0]), np.array([2, 2, 2, 2, 5]))
array([0, 0, 1, 1, 2])
>>> trial_ids(np.array([0, 0, 1]), np.array([2, 2, 2]), unit="window")
array([0, 1, 2])
"""

from __future__ import annotations

from typing import Any

import numpy as np
from jaxtyping import Int

from emg_lens.errors import ArgumentError

__all__ = ["TRIAL_UNITS", "trial_ids", "trial_unit"]

TRIAL_UNITS = ("repetition", "window")
"""How windows group into trials: by ``(class, repetition)``, or each window its own."""


def trial_unit(meta: dict[str, Any]) -> str:
    """The trial unit a subject's ``meta`` names (``"repetition"`` when it names none), or an
    `ArgumentError` naming the accepted units.

    >>> trial_unit({}), trial_unit({"trial_unit": "window"})
    ('repetition', 'window')
    """
    unit = meta.get("trial_unit", "repetition")
    if unit not in TRIAL_UNITS:
        raise ArgumentError(f"meta['trial_unit'] = {unit!r}; accepted: {list(TRIAL_UNITS)}")
    return unit


def trial_ids(
    y: Int[np.ndarray, " n"], rep: Int[np.ndarray, " n"], unit: str = "repetition"
) -> Int[np.ndarray, " n"]:
    """Number the trials of ``n`` windows: ``0, 1, ...`` in order of first appearance, one
    number per distinct ``(y, rep)`` pair (``unit="repetition"``) or per window
    (``unit="window"``).

    >>> trial_ids(np.array([3, 1, 3]), np.array([1, 1, 1]))
    array([0, 1, 0])
    """
    y, rep = np.asarray(y), np.asarray(rep)
    if y.ndim != 1 or rep.shape != y.shape:
        raise ArgumentError(
            f"y and rep must be 1-D arrays of one length (a class and a repetition per "
            f"window), got shapes {y.shape} and {rep.shape}"
        )
    if unit not in TRIAL_UNITS:
        raise ArgumentError(f"trial unit {unit!r}; accepted: {list(TRIAL_UNITS)}")
    if unit == "window" or len(y) == 0:
        return np.arange(len(y))
    pairs = np.stack([y.astype(np.int64), rep.astype(np.int64)], axis=1)
    _, first, inverse = np.unique(pairs, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # unique rows renumbered by first appearance
    return order[inverse.reshape(-1)]
