"""`emg_lens.train.inputs`: `labeled_subset`, labels from ``dataset.labels`` where it has them;
`regression_dataset`, a regression recipe's windows checked as `window_dataset` checks them."""

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from emg_lens.data.windows.pipeline import WindowBatch
from emg_lens.data.windows.store import WindowStore, write_window_store
from emg_lens.errors import ArgumentError, DataFormatError, InputShapeError
from emg_lens.train.inputs import labeled_subset, random_holdout, regression_dataset, window_dataset

LABELS = np.array([-1, 2, 0, -1, 4, 1])


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A window store whose windows cannot be read: only its label column can."""
    x = np.zeros((len(LABELS), 16, 1000), np.float32)
    batch = WindowBatch(x, LABELS, np.ones(len(LABELS), np.int64), 1, "synthetic")
    path = write_window_store(tmp_path / "w.h5", [batch], progress=False)

    def unread(self):
        raise AssertionError("a window was read")

    monkeypatch.setattr(WindowStore, "_windows", unread)
    return WindowStore(path)


def test_a_window_store_gives_its_labels_without_reading_a_window(store):
    subset, n_classes = labeled_subset(store)
    assert subset.indices == [1, 2, 4, 5]
    assert n_classes == 5


class _Items(Dataset):
    """A dataset known only through its items, optionally with a ``labels`` attribute."""

    def __init__(self, labels, attribute=None):
        self.items = TensorDataset(torch.zeros(len(labels), 1, 4), torch.as_tensor(labels))
        if attribute is not None:
            self.labels = attribute

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


@pytest.mark.parametrize(
    "attribute",
    [None, ["a class name per class"] * 2],  # no labels, or ones that are not one per item
    ids=["no labels", "labels of another length"],
)
def test_other_datasets_are_read_item_by_item(attribute):
    subset, n_classes = labeled_subset(_Items(LABELS, attribute))
    assert (subset.indices, n_classes) == ([1, 2, 4, 5], 5)


def test_no_labelled_window_is_an_error():
    with pytest.raises(DataFormatError, match="none of the 2 windows is labelled"):
        labeled_subset(_Items(np.array([-1, -1]), attribute=np.array([-1, -1])))


def test_a_regression_dataset_is_checked_at_its_first_item():
    targets = TensorDataset(torch.zeros(3, 1, 4), torch.zeros(3, 4, 2))
    assert regression_dataset(targets, (1, 4)) is targets
    with pytest.raises(InputShapeError, match=r"val_data item 0 .*y \[steps, outputs\]\), got"):
        regression_dataset(_Items(LABELS), (1, 4), what="val_data")  # scalar labels
    with pytest.raises(DataFormatError, match=r"val_data items must be .* got an empty dataset"):
        regression_dataset(TensorDataset(torch.zeros(0, 1, 4)), (1, 4), what="val_data")
    with pytest.raises(DataFormatError, match=r"items must be \(x \[C, T\], y\) pairs"):
        regression_dataset(TensorDataset(torch.zeros(2, 1, 4)), (1, 4))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: window_dataset((np.zeros((2, 1, 4)),) * 3, (1, 4), what="val"),
            ArgumentError,
            r"val as a tuple must be \(X, y\), got 3 items",
        ),
        (
            lambda: window_dataset((np.zeros((2, 1, 4)), np.array([0.5, 1.0])), (1, 4)),
            DataFormatError,
            r"data labels must be 2 integers \(-1 = unlabeled\), got",
        ),
        (
            lambda: regression_dataset([1, 2], (1, 4), what="val_data"),
            DataFormatError,
            "val_data must be a Dataset or \\(X, Y\\), got",
        ),
        (
            lambda: random_holdout(TensorDataset(torch.zeros(10, 1)), 1.0),
            ArgumentError,
            r"a held-out fraction must be in \(0, 1\) of at least 2 windows, got 1\.0 of 10",
        ),
        (
            lambda: random_holdout(TensorDataset(torch.zeros(1, 1)), 0.5),
            ArgumentError,
            "got 0.5 of 1",
        ),
    ],
)
def test_inputs_that_are_no_windows_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call()
