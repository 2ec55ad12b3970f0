"""What every analysis checks of what it is given, written once for inspection and discovery:
a model with attention hooks at every layer (`check_model`), one whose runs are deterministic
(`check_deterministic`), and the windows to evaluate as a `SubjectData` (`as_subject_data`).

>>> from emg_lens import EncoderConfig
>>> from emg_lens.models import IsoNet
>>> model = check_model(IsoNet(EncoderConfig.preset("tiny")).eval())
>>> check_deterministic(model)
>>> as_subject_data(model, (np.zeros((2, 6, 8)), [0, 1])).y_test.tolist()
[0, 1]
"""

from __future__ import annotations

import typing
from typing import Any

import numpy as np
import torch
from torch import nn

from emg_lens.data.preprocess import SubjectData
from emg_lens.errors import ArgumentError, InputShapeError, checked, describe
from emg_lens.models.base import ATTENTION_HOOKS, HookedBiosignalModel, provides


def check_model(model: object) -> HookedBiosignalModel:
    """Return ``model`` if it is an emg_lens model with attention hooks at every layer
    (`ATTENTION_HOOKS`), else raise `ArgumentError`. Tools that read more also call
    `emg_lens.models.base.require`."""
    if not provides(model, ATTENTION_HOOKS):
        raise ArgumentError(
            f"expected an emg_lens encoder (IsoNet, TinyMyo, ...), got {type(model).__name__}"
        )
    model = typing.cast(HookedBiosignalModel, model)  # what provides its contract
    if model.cfg.n_layers == 0:
        raise ArgumentError(
            f"{type(model).__name__} has no shared attention stack `blocks` (n_layers=0) to inspect"
        )
    return model


def check_deterministic(model: nn.Module) -> None:
    """Raise `ArgumentError` if dropout or drop-path would make two runs differ (training mode
    with a non-zero rate): patching and attribution compare runs exactly."""
    if model.training and any(getattr(m, "p", 0.0) > 0 for m in model.modules()):
        raise ArgumentError(
            f"{type(model).__name__} is in training mode with dropout active: call model.eval()"
        )


@checked
def as_subject_data(model: Any, data: SubjectData | tuple[Any, Any]) -> SubjectData:
    """``data`` as a `SubjectData` whose *test* windows are the ones to evaluate: a
    `SubjectData` passes through (checked against the model), and ``(X, y)`` — windows
    ``[n, channels, time]`` and integer labels ``[n]`` — becomes one.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny"))
    >>> as_subject_data(model, (np.zeros((3, 6, 8)), [0, 1, 3])).X_test.shape
    (3, 6, 8)
    """
    n_classes = model.cfg.n_classes
    if isinstance(data, SubjectData):
        if data.n_classes != n_classes or len(data.y_test) == 0:
            raise ArgumentError(
                f"SubjectData {data.subject} must have the model's n_classes={n_classes} and test "
                f"windows; it has {data.n_classes} classes, {len(data.y_test)} test windows"
            )
        model.to_tokens(data.X_test[:1])  # shape check, InputShapeError naming it
        return data
    if not (isinstance(data, tuple) and len(data) == 2):
        raise ArgumentError(
            f"data must be a SubjectData or a tuple (X windows, y labels), got {describe(data)}"
        )
    X = np.asarray(data[0].cpu() if isinstance(data[0], torch.Tensor) else data[0])
    y = np.asarray(data[1].cpu() if isinstance(data[1], torch.Tensor) else data[1])
    model.to_tokens(X[:1] if X.ndim else data[0])  # InputShapeError unless [n, channels, time]
    if X.ndim != 3 or y.shape != (len(X),) or not np.issubdtype(y.dtype, np.integer):
        raise InputShapeError(
            f"data (X, y) needs X [n, channels, time] and integer labels y [n]; got X "
            f"{list(X.shape)}, y {y.dtype} {list(y.shape)}"
        )
    if len(y) == 0 or y.min() < 0 or y.max() >= n_classes:
        raise ArgumentError(
            f"labels y must be class indices in [0, {n_classes - 1}] (n_classes={n_classes}), at "
            f"least one; got {len(y)} labels, of values {np.unique(y)[:10].tolist()}"
        )
    return SubjectData.from_windows(
        model.cfg.modalities, (X, y), classes=list(range(n_classes)), repetitions=(0, 0)
    )
