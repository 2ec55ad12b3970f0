"""The windows the pretraining and fine-tuning recipes read.

A recipe takes any `torch.utils.data.Dataset` of ``(x: float32 [channels, time], y: int64
scalar)`` items (``y = -1`` unlabeled, as `emg_lens.data.windows.store.WindowStore` keeps), or
arrays ``X [N, C, T]`` or ``(X, y)``. `window_dataset` turns either into a Dataset and checks
the window shape against the model where the data enters; `regression_dataset` does the same
for targets ``y: float32 [steps, outputs]``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset, random_split

from emg_lens.data.synthetic.windows import UNLABELED
from emg_lens.errors import ArgumentError, DataFormatError, InputShapeError, checked, describe


@checked
def window_dataset(data: Any, input_shape: tuple[int, int], *, what: str = "data") -> Dataset:
    """``data`` as a Dataset of ``(x [C, T], y)`` items whose windows have ``input_shape``
    ``(C, T)``; ``what`` names the argument in error messages.

    >>> ds = window_dataset(np.zeros((5, 2, 40), np.float32), (2, 40))
    >>> len(ds), ds[0][0].shape, int(ds[0][1])
    (5, torch.Size([2, 40]), -1)
    """
    if isinstance(data, Dataset):
        _check_item(data, input_shape, what)
        return data
    labels = None
    if isinstance(data, tuple):
        if len(data) != 2:
            raise ArgumentError(f"{what} as a tuple must be (X, y), got {len(data)} items")
        data, labels = data
    X = data if isinstance(data, torch.Tensor) else np.asarray(data)
    numeric = isinstance(X, torch.Tensor) or X.dtype.kind in "biuf"
    if not numeric or X.ndim != 3 or tuple(X.shape[1:]) != tuple(input_shape) or len(X) == 0:
        raise InputShapeError(
            f"{what} must hold windows [N >= 1, channels={input_shape[0]}, "
            f"time={input_shape[1]}] of numbers, got {describe(X)}"
        )
    X = torch.as_tensor(X).to(torch.float32)
    if labels is None:
        y = torch.full((len(X),), UNLABELED, dtype=torch.long)
    else:
        y_arr = np.asarray(labels)
        if y_arr.shape != (len(X),) or not np.issubdtype(y_arr.dtype, np.integer):
            raise DataFormatError(
                f"{what} labels must be {len(X)} integers (-1 = unlabeled), got {describe(y_arr)}"
            )
        y = torch.as_tensor(y_arr, dtype=torch.long)
    return TensorDataset(X, y)


def regression_dataset(data: Any, input_shape: tuple[int, int], *, what: str = "data") -> Dataset:
    """``data`` (a Dataset of ``(x [C, T], y [steps, outputs])`` items or arrays ``(X, Y)``) as
    a Dataset whose windows have ``input_shape`` ``(C, T)``, its first item checked as
    `window_dataset` checks it; ``what`` names the argument in error messages.

    >>> ds = regression_dataset((np.zeros((3, 2, 40)), np.zeros((3, 40, 5))), (2, 40))
    >>> len(ds), tuple(ds[0][1].shape)
    (3, (40, 5))
    >>> regression_dataset((np.zeros((3, 2, 40)), np.zeros(3)), (2, 40))
    Traceback (most recent call last):
    ...
    emg_lens.errors.InputShapeError: data must be (X [N >= 1, C, T], Y [N, steps, outputs]), \
got torch.float32 [3, 2, 40] and torch.float32 [3]
    """
    if isinstance(data, tuple) and len(data) == 2:
        X, Y = (torch.as_tensor(np.asarray(a), dtype=torch.float32) for a in data)
        if X.ndim != 3 or Y.ndim != 3 or len(X) != len(Y) or not len(X):
            raise InputShapeError(
                f"{what} must be (X [N >= 1, C, T], Y [N, steps, outputs]), got {describe(X)} and "
                f"{describe(Y)}"
            )
        data = TensorDataset(X, Y)
    if not isinstance(data, Dataset):
        raise DataFormatError(f"{what} must be a Dataset or (X, Y), got {describe(data)}")
    _check_item(data, input_shape, what, y_ndim=2, y_form="y [steps, outputs]")
    return data


def _check_item(
    dataset: Dataset,
    input_shape: tuple[int, int],
    what: str,
    y_ndim: int = 0,
    y_form: str = "scalar y",
) -> None:
    """Refuse an empty ``dataset``, or one whose item 0 is not ``(x [C, T], y)`` with ``x`` of
    ``input_shape`` and ``y`` of ``y_ndim`` dimensions (``y_form``, in words)."""
    n = len(dataset)  # type: ignore[arg-type]
    if not n or not isinstance(item := dataset[0], tuple | list) or len(item) != 2:
        got = describe(item) if n else "an empty dataset"
        raise DataFormatError(f"{what} items must be (x [C, T], y) pairs, one or more, got {got}")
    x, y = item
    if tuple(np.shape(x)) != tuple(input_shape) or np.ndim(y) != y_ndim:
        raise InputShapeError(
            f"{what} item 0 must be (x {list(input_shape)}, {y_form}), got {describe(x)}, "
            f"{describe(y)}"
        )


def labeled_subset(dataset: Dataset) -> tuple[Dataset, int]:
    """The labelled windows (``y >= 0``) of ``dataset`` and the number of classes they imply
    (largest label + 1), read from ``dataset.labels`` where it has them
    (`emg_lens.data.windows.store.WindowStore`: no window is read), else from each item once.

    >>> ds = window_dataset((np.zeros((4, 1, 20), np.float32), np.array([0, -1, 2, 1])), (1, 20))
    >>> subset, n_classes = labeled_subset(ds)
    >>> len(subset), n_classes
    (3, 3)
    """
    labels = _labels(dataset)
    keep = [i for i, y in enumerate(labels) if y >= 0]
    if not keep:
        raise DataFormatError(
            f"none of the {len(labels)} windows is labelled (y >= 0): fine-tuning needs labels"
        )
    return Subset(dataset, keep), max(labels) + 1


def _labels(dataset: Dataset) -> list[int]:
    """Each item's label: ``dataset.labels`` where it holds one per item, else read."""
    n = len(dataset)  # type: ignore[arg-type]
    given = getattr(dataset, "labels", None)
    if given is not None and np.shape(given) == (n,):
        return np.asarray(given, dtype=np.int64).tolist()
    return [int(dataset[i][1]) for i in range(n)]


def random_holdout(dataset: Dataset, fraction: float, *, seed: int = 0) -> tuple[Subset, Subset]:
    """(train, held-out) with a seeded random ``fraction`` of the windows held out (at least
    one, and at least one left to train on).

    >>> train, val = random_holdout(TensorDataset(torch.zeros(10, 1)), 0.2)
    >>> len(train), len(val)
    (8, 2)
    """
    n = len(dataset)  # type: ignore[arg-type]
    if not 0 < fraction < 1 or n < 2:
        raise ArgumentError(
            f"a held-out fraction must be in (0, 1) of at least 2 windows, got {fraction!r} of {n}"
        )
    n_val = min(n - 1, max(1, round(fraction * n)))
    train, val = random_split(dataset, [n - n_val, n_val], torch.Generator().manual_seed(seed))
    return train, val
