"""Fine-tuning a pretrained TinyMyo to regress NinaPro DB8's 5 degrees of actuation, as
TinyMyo's thesis benchmarks it: `emg_lens.train.finetune`'s recipe with the regression head, an
L1 (default) or MSE loss at every step of the window, early stopping on the validation MAE.
`dataset_mae` reports the MAE per output and overall; `mean_baseline_mae` (the training mean)
and `ridge_baseline_mae` (a ridge on each channel's RMS) are the floors a regressor must beat."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from emg_lens.errors import ArgumentError, DataFormatError, check_choice, checked
from emg_lens.models.native.tinymyo import ConvRegressionHead, TinyMyo
from emg_lens.train.baseline import channel_rms, fit_baseline
from emg_lens.train.finetune import (
    FinetuneConfig,
    RunHistory,
    freeze_for_finetuning,
    pretrained_model,
    regressor_from_pretrained,
    run_keeping_best,
)
from emg_lens.train.inputs import regression_dataset

REGRESSION_RECIPE = "tinymyo-regression-finetuning"

REGRESSION_LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss}
"""The regression losses ``finetune_regression(loss=...)`` accepts."""


@checked
@dataclass
class RegressionHistory(RunHistory):
    """A regressor's `RunHistory` and its validation MAE per epoch (when validation data was
    given)."""

    val_mae: list[float] = field(default_factory=list)


@checked
class RegressionResult(NamedTuple):
    """What `finetune_regression` returns: the model with the kept epoch's weights and its
    history."""

    model: TinyMyo
    history: RegressionHistory


class MeanAbsoluteError(NamedTuple):
    """Mean absolute error per output (over windows and steps) and over all outputs."""

    per_output: list[float]
    overall: float


@torch.no_grad()
@checked
def dataset_mae(model: TinyMyo, data: Any, *, batch_size: int = 256) -> MeanAbsoluteError:
    """The mean absolute error of ``model``'s regression over ``data`` (windows and their
    targets ``[steps, outputs]``, the steps ``model`` outputs), per output and overall; the
    model is left in eval mode.

    >>> from emg_lens import EncoderConfig
    >>> cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 2}, n_samples=40,
    ...                             n_classes=2)
    >>> model = TinyMyo(cfg, task="regression", reg_target_len=40)
    >>> X = torch.randn(4, 2, 40)
    >>> dataset_mae(model, (X, model.eval()(X) + torch.tensor([1.0, 3.0]))).per_output
    [1.0, 3.0]
    """
    model.eval()
    dataset = regression_dataset(data, model.input_shape, what="validation data")
    device = next(model.parameters()).device
    total, count = torch.zeros((), dtype=torch.float64), 0
    for x, y in DataLoader(dataset, batch_size=batch_size):
        total = total + (model(x) - y.to(device)).abs().sum(dim=(0, 1)).double()
        count += y.shape[0] * y.shape[1]
    _check_counted(count, "dataset_mae: the data")
    per_output = [float(v) for v in (total / count).cpu()]
    return MeanAbsoluteError(per_output, float(np.mean(per_output)))


def _check_counted(n: int, what: str) -> None:
    """Refuse data ``what`` of which ``n`` target rows (windows x steps) were read: none."""
    if not n:
        raise DataFormatError(f"{what} holds no window")


def _window_batches(data: Any, batch_size: int = 256) -> Any:
    """``(x [b, C, T], y [b, steps, outputs])`` float64 numpy batches of ``data`` (a Dataset
    or ``(X, Y)``)."""
    data = TensorDataset(*map(torch.as_tensor, data)) if isinstance(data, tuple) else data
    for x, y in DataLoader(data, batch_size=batch_size):
        yield torch.as_tensor(x).double().numpy(), torch.as_tensor(y).double().numpy()


def _target_rows(data: Any) -> Any:
    """The targets of ``data`` as float64 ``[rows, outputs]`` batches, windows and steps
    flattened."""
    return (torch.from_numpy(y).flatten(0, -2) for _, y in _window_batches(data))


@torch.no_grad()
def _target_moments(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output mean and standard deviation of the targets of ``data``."""
    count, total = 0, torch.zeros((), dtype=torch.float64)
    squares = total
    for y in _target_rows(data):
        count, total, squares = count + len(y), total + y.sum(0), squares + (y * y).sum(0)
    _check_counted(count, "the training data")
    mean = total / count
    return mean, (squares / count - mean * mean).clamp_min(0).sqrt()


@torch.no_grad()
@checked
def mean_baseline_mae(train: Any, test: Any) -> MeanAbsoluteError:
    """The MAE on ``test`` of predicting, for every output, the mean of the ``train`` targets
    (both Datasets of ``(x, y [steps, outputs])`` or ``(X, Y)`` arrays).

    >>> X = torch.zeros(2, 1, 4)
    >>> train = (X, torch.tensor([[[0.0, 2.0]], [[2.0, 4.0]]]))
    >>> mean_baseline_mae(train, (X, torch.tensor([[[3.0, 3.0]], [[1.0, 3.0]]])))
    MeanAbsoluteError(per_output=[1.0, 0.0], overall=0.5)
    """
    mean, _ = _target_moments(train)
    error, n = torch.zeros((), dtype=torch.float64), 0
    for y in _target_rows(test):
        error, n = error + (y - mean).abs().sum(0), n + len(y)
    _check_counted(n, "mean_baseline_mae: the test data")
    per_output = [float(v) for v in error / n]
    return MeanAbsoluteError(per_output, float(np.mean(per_output)))


@torch.no_grad()
def ridge_baseline_mae(train: Any, test: Any) -> MeanAbsoluteError:
    """The MAE on ``test`` of the per-channel feature baseline for a target (a ridge on each
    channel's RMS, fitted on ``train``, predicting each window's mean target for every step),
    reading both a batch at a time (a window store need not fit in memory); both Datasets of
    ``(x, y [steps, outputs])`` or ``(X, Y)`` arrays.

    >>> amplitude = torch.linspace(1.0, 4.0, 12)
    >>> X = amplitude[:, None, None] * torch.tensor([1.0, -1.0]).repeat(2, 4)[None]
    >>> Y = (2 * amplitude)[:, None, None].repeat(1, 3, 1)  # 3 steps, 1 output
    >>> ridge_baseline_mae((X, Y), (X, Y)).overall < mean_baseline_mae((X, Y), (X, Y)).overall
    True
    """
    low = None
    for x, _ in _window_batches(train):
        lowest = x.min(axis=(0, 2))
        low = lowest if low is None else np.minimum(low, lowest)
    if low is None:
        raise DataFormatError("ridge_baseline_mae: the training data holds no window")
    features, targets = [], []
    for x, y in _window_batches(train):
        features.append(channel_rms(x, low))
        targets.append(y.mean(axis=1))  # [b, outputs]: the window's mean target
    ridge = fit_baseline(np.concatenate(features), np.concatenate(targets), "r2")
    error, n = 0.0, 0
    for x, y in _window_batches(test):
        pred = ridge.predict(channel_rms(x, low)).reshape(len(x), 1, -1)
        error, n = error + np.abs(y - pred).sum(axis=(0, 1)), n + y.shape[0] * y.shape[1]
    _check_counted(n, "ridge_baseline_mae: the test data")
    per_output = [float(v) for v in np.atleast_1d(error / n)]
    if not np.isfinite(per_output).all():
        raise DataFormatError(f"ridge_baseline_mae: a non-finite error {per_output}")
    return MeanAbsoluteError(per_output, float(np.mean(per_output)))


@checked
def finetune_regression(
    pretrained: TinyMyo | str | Path,
    data: Any,
    cfg: FinetuneConfig = FinetuneConfig(),
    *,
    loss: str = "l1",
    val_data: Any = None,
    out: str | Path | None = None,
    device: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> RegressionResult:
    """Fine-tune a regressor built by `regressor_from_pretrained` on windows ``data`` whose
    targets are ``[steps, outputs]`` (a Dataset, e.g. a regression
    `emg_lens.data.windows.store.WindowStore`, or arrays ``(X, Y)``): `finetune`'s recipe
    (without label smoothing) with loss ``"l1"`` or ``"mse"`` on every step, early stopping on
    the validation MAE. The new head's output starts at the training targets' per-output mean
    and scale. Saved to ``out`` as `finetune` saves (with the ``loss``).

    >>> from emg_lens import EncoderConfig
    >>> cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 2}, n_samples=40,
    ...                             d_model=16, d_head=4, n_heads=4, d_mlp=32, seed=0)
    >>> X, Y = torch.randn(16, 2, 40), torch.randn(16, 40, 3)
    >>> model, history = finetune_regression(TinyMyo(cfg, task="reconstruction"), (X, Y),
    ...     FinetuneConfig(epochs=2, batch_size=8, warmup_epochs=0, progress=False),
    ...     val_data=(X, Y))
    >>> model.task, model.cfg.n_classes, len(history.val_mae)
    ('regression', 3, 2)
    """
    check_choice(loss, REGRESSION_LOSSES, "loss")
    if cfg.monitor != "loss":
        raise ArgumentError(
            f"FinetuneConfig.monitor={cfg.monitor!r}: a regression has no accuracy; use 'loss'"
        )
    source = str(pretrained) if isinstance(pretrained, str | Path) else None
    pretrained = pretrained_model(pretrained, device)
    dataset = regression_dataset(data, pretrained.input_shape, what="data")
    steps, outputs = tuple(np.shape(dataset[0][1]))
    model = regressor_from_pretrained(
        pretrained, outputs, steps, reduction=cfg.reduction, drop_path=cfg.drop_path
    )
    # The fresh head starts at the training targets' mean and scale (degrees for DB8), so the
    # recipe's learning rate fits the units and training starts from the mean predictor.
    mean, std = _target_moments(dataset)
    head = model.head
    assert isinstance(head, ConvRegressionHead)  # regressor_from_pretrained's
    with torch.no_grad():
        head.b_out.copy_(mean)
        head.W_out.mul_(torch.where(std > 0, std, 1.0).to(head.W_out))
    if val_data is not None:
        val_data = regression_dataset(val_data, model.input_shape, what="val_data")
    freeze_for_finetuning(model, cfg.linear_probe)
    model_device = next(model.parameters()).device
    criterion = REGRESSION_LOSSES[loss]

    def loss_fn(m: torch.nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        return criterion(m(x), y.to(model_device, torch.float32))

    def score(m: TinyMyo) -> float:
        return dataset_mae(m, val_data).overall

    log, val_mae, best = run_keeping_best(
        model, dataset, loss_fn, cfg, None if val_data is None else score, mode="min"
    )
    history = RegressionHistory.of_run(log, best, cfg.epochs, val_mae=val_mae)
    recipe = {"recipe": REGRESSION_RECIPE, "finetune": asdict(cfg), "loss": loss}
    log.save(model, out, recipe | {"history": asdict(history), "pretrained": source}, metadata)
    return RegressionResult(model, history)
