"""Fine-tuning a pretrained TinyMyo for classification or regression, as BioFoundation
fine-tunes it.

The encoder (every weight but the head) of a pretrained TinyMyo — usually the reconstruction
model `emg_lens.train.pretrain` saved — is copied into a classification TinyMyo of the same
config, which trains with cross-entropy (label smoothing 0.1), AdamW with layer-wise
learning-rate decay 0.9, lr 5e-4 -> 1e-5 along a cosine after 5 warm-up epochs, for at most 50
epochs with early stopping on validation accuracy (the best weights are kept). A linear probe
(``linear_probe=True``) freezes the encoder and trains the head alone.

``mask_token`` is frozen in both modes: a classifier never uses it (and DDP refuses parameters
that get no gradient).

`finetune_subjects` fine-tunes one classifier per subject of a data source from one pretrained
checkpoint and saves each where `emg_lens.studies.run_study` finds it (``subject_<N>/``).

`finetune_regression` does the same recipe with TinyMyo's regression head (NinaPro DB8's 5
degrees of actuation): an L1 (default) or MSE loss on the targets at every step of the window,
early stopping on the validation mean absolute error; `dataset_mae` reports the MAE per output
and overall, in the targets' units (degrees for DB8).
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

from emg_lens._io import atomic_write
from emg_lens.checkpoints import load_checkpoint, save_checkpoint
from emg_lens.config import EncoderConfig
from emg_lens.data.datasets import available_subjects, load_subject
from emg_lens.errors import (
    ArgumentError,
    CheckpointError,
    ConfigError,
    DataFormatError,
    InputShapeError,
    TrainingDivergedError,
    describe,
)
from emg_lens.models.tinymyo import REDUCTIONS, TinyMyo
from emg_lens.train.distributed import is_main_process
from emg_lens.train.inputs import random_holdout, window_dataset
from emg_lens.train.loop import run_recipe
from emg_lens.train.schedule import EarlyStopping, check_schedule_fields

__all__ = [
    "REGRESSION_LOSSES",
    "FinetuneConfig",
    "FinetuneHistory",
    "FinetuneResult",
    "MeanAbsoluteError",
    "RegressionHistory",
    "classifier_from_pretrained",
    "dataset_accuracy",
    "dataset_mae",
    "finetune",
    "finetune_regression",
    "finetune_subjects",
    "mean_baseline_mae",
    "regressor_from_pretrained",
]

RECIPE = "tinymyo-finetuning"
REGRESSION_RECIPE = "tinymyo-regression-finetuning"

REGRESSION_LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss}
"""The regression losses ``finetune_regression(loss=...)`` accepts."""


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning settings; defaults are BioFoundation's published TinyMyo recipe."""

    epochs: int = 50  # the most; early stopping usually ends sooner
    batch_size: int = 32  # windows per micro-batch and process
    accumulate_steps: int = 1  # micro-batches per optimiser step
    lr: float = 5e-4  # peak learning rate of the head; block l gets lr * decay^(n_layers - l)
    min_lr: float = 1e-5  # where the warm-up starts and the cosine ends (times the same decay)
    warmup_epochs: int = 5
    layer_decay: float = 0.9  # layer-wise learning-rate decay
    weight_decay: float = 0.01  # AdamW; none on biases and LayerNorm
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float | None = None  # max global gradient norm; None: no clipping
    label_smoothing: float = 0.1
    patience: int = 7  # epochs without a better validation accuracy before stopping
    linear_probe: bool = False  # True: freeze the encoder, train the head only
    reduction: str = "concat"  # how the head merges channels: "concat" or "mean"
    drop_path: float = 0.1  # stochastic depth while fine-tuning the encoder
    seed: int = 0  # data order and dropout
    progress: bool = True  # a tqdm bar (rank 0 only)

    def __post_init__(self) -> None:
        check_schedule_fields(self)
        if not 0 < self.layer_decay <= 1:
            raise ConfigError(
                f"FinetuneConfig.layer_decay must be in (0, 1], got {self.layer_decay!r}"
            )
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(
                f"FinetuneConfig.label_smoothing must be in [0, 1), got {self.label_smoothing!r}"
            )
        if not isinstance(self.patience, int) or self.patience < 1:
            raise ConfigError(f"FinetuneConfig.patience must be an int >= 1, got {self.patience!r}")
        if self.reduction not in REDUCTIONS:
            raise ConfigError(
                f"FinetuneConfig.reduction must be one of {REDUCTIONS}, got {self.reduction!r}"
            )
        if not 0 <= self.drop_path < 1:
            raise ConfigError(f"FinetuneConfig.drop_path must be in [0, 1), got {self.drop_path!r}")


@dataclass
class FinetuneHistory:
    """Mean training loss per epoch (averaged over processes), validation accuracy per epoch
    (when validation data was given), the epoch whose weights were kept (0-based; the last one
    without validation data) and whether early stopping ended the run."""

    epoch_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False
    steps: int = 0
    world_size: int = 1


class FinetuneResult(NamedTuple):
    model: TinyMyo
    history: FinetuneHistory


# ----------------------------------------------------------------------------- model


def classifier_from_pretrained(
    pretrained: TinyMyo | str | Path,
    n_classes: int,
    *,
    reduction: str = "concat",
    drop_path: float = 0.0,
    device: str | None = None,
) -> TinyMyo:
    """A classification TinyMyo with ``pretrained``'s config (``n_classes`` classes) and its
    encoder weights — every weight but the head's; the new head keeps its fresh (seeded)
    initialisation. ``pretrained`` is a TinyMyo or a checkpoint folder holding one (loaded
    onto ``device``, default: the device it was saved from).

    >>> cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 2}, n_samples=40)
    >>> source = TinyMyo(cfg, task="reconstruction")
    >>> clf = classifier_from_pretrained(source, n_classes=3)
    >>> clf.task, clf.cfg.n_classes, torch.equal(clf.blocks[0].attn.W_Q, source.blocks[0].attn.W_Q)
    ('classification', 3, True)
    """
    pretrained = _pretrained_model(pretrained, device)
    if not isinstance(n_classes, int) or isinstance(n_classes, bool) or n_classes < 2:
        raise ArgumentError(f"n_classes must be an int >= 2, got {n_classes!r}")
    return _with_new_head(
        pretrained,
        n_classes,
        device,
        task="classification",
        reduction=reduction,
        drop_path=drop_path,
    )


def regressor_from_pretrained(
    pretrained: TinyMyo | str | Path,
    n_outputs: int,
    target_len: int,
    *,
    reduction: str = "concat",
    drop_path: float = 0.0,
    device: str | None = None,
) -> TinyMyo:
    """A regression TinyMyo (``n_outputs`` outputs at ``target_len`` steps) with
    ``pretrained``'s config and encoder weights, as `classifier_from_pretrained` builds a
    classifier.

    >>> cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 2}, n_samples=40)
    >>> reg = regressor_from_pretrained(TinyMyo(cfg, task="reconstruction"), 5, 40)
    >>> reg.task, tuple(reg(torch.randn(3, 2, 40)).shape)
    ('regression', (3, 40, 5))
    """
    for name, value in (("n_outputs", n_outputs), ("target_len", target_len)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ArgumentError(f"{name} must be an int >= 1, got {value!r}")
    return _with_new_head(
        pretrained,
        n_outputs,
        device,
        task="regression",
        reduction=reduction,
        drop_path=drop_path,
        reg_target_len=target_len,
    )


def _pretrained_model(pretrained: TinyMyo | str | Path, device: str | None) -> TinyMyo:
    if isinstance(pretrained, str | Path):
        pretrained = load_checkpoint(pretrained, device=device)
    if not isinstance(pretrained, TinyMyo):
        raise CheckpointError(
            "fine-tuning starts from a TinyMyo (or a checkpoint of one), got "
            f"{type(pretrained).__name__}"
        )
    return pretrained


def _with_new_head(
    pretrained: TinyMyo | str | Path, n_outputs: int, device: str | None, **head: Any
) -> TinyMyo:
    """A TinyMyo of ``pretrained``'s config with ``n_outputs`` (``n_classes``), the head
    ``head`` describes, and every pretrained weight but the head's."""
    pretrained = _pretrained_model(pretrained, device)
    cfg = EncoderConfig.from_dict({**pretrained.cfg.to_dict(), "n_classes": n_outputs})
    model = TinyMyo(cfg, **head)
    encoder = {k: v for k, v in pretrained.state_dict().items() if not k.startswith("head.")}
    missing, unexpected = model.load_state_dict(encoder, strict=False)
    if unexpected or any(not k.startswith("head.") for k in missing):
        raise CheckpointError(
            f"the pretrained encoder does not fit: missing {sorted(missing)}, "
            f"unexpected {sorted(unexpected)}"
        )
    return model.to(next(pretrained.parameters()).device)


def _labels(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    y = torch.as_tensor(y, dtype=torch.long)
    bad = y[(y < 0) | (y >= n_classes)]
    if len(bad):
        raise DataFormatError(
            f"fine-tuning needs every label in [0, n_classes={n_classes}); found "
            f"{sorted(set(bad.tolist()))} (-1 marks an unlabeled window: leave those out)"
        )
    return y


@torch.no_grad()
def dataset_accuracy(model: TinyMyo, data: Any, *, batch_size: int = 256) -> float:
    """Fraction of the windows in ``data`` (see `window_dataset`) that ``model`` classifies
    correctly; the model is left in eval mode.

    >>> cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 2}, n_samples=40,
    ...                             n_classes=2)
    >>> model = TinyMyo(cfg)
    >>> X = torch.randn(6, 2, 40)
    >>> dataset_accuracy(model, (X, model(X).argmax(-1).numpy()))
    1.0
    """
    model.eval()
    dataset = window_dataset(data, model.input_shape, what="validation data")
    correct = total = 0
    for x, y in DataLoader(dataset, batch_size=batch_size):
        y = _labels(y, model.cfg.n_classes).to(next(model.parameters()).device)
        correct += int((model(x).argmax(-1) == y).sum())
        total += len(y)
    return correct / total


def _freeze(model: TinyMyo, linear_probe: bool) -> None:
    model.mask_token.requires_grad_(False)
    if linear_probe:
        for name, param in model.named_parameters():
            param.requires_grad_(name.startswith("head."))


def _train_mode(model: torch.nn.Module, *, linear_probe: bool) -> None:
    """Train mode, except a frozen encoder, which stays deterministic (no dropout)."""
    model.train(not linear_probe)
    if linear_probe:
        getattr(model, "module", model).head.train()


# ----------------------------------------------------------------------------- recipe


def finetune(
    pretrained: TinyMyo | str | Path,
    data: Any,
    cfg: FinetuneConfig = FinetuneConfig(),
    *,
    n_classes: int,
    val_data: Any = None,
    out: str | Path | None = None,
    device: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> FinetuneResult:
    """Fine-tune a classifier built by `classifier_from_pretrained` on labelled windows
    ``data`` (a Dataset of ``(x [C, T], y)`` items or ``(X, y)`` arrays; labels in
    ``[0, n_classes)``). With ``val_data``, early stopping on its accuracy (patience
    ``cfg.patience``) and the best epoch's weights are kept. With ``out`` the model is saved
    there by rank 0 (metadata: ``recipe``, ``finetune`` settings, ``history``, ``pretrained``,
    plus ``metadata``, e.g. the ``data_source`` and ``subject`` a study rebuilds the data from).
    ``device`` is where a checkpoint folder is loaded to (see `classifier_from_pretrained`).
    A training that diverges (a NaN or inf loss or weight) raises `TrainingDivergedError`;
    nothing is saved.

    >>> cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 2}, n_samples=40,
    ...                             d_model=16, d_head=4, n_heads=4, d_mlp=32, seed=0)
    >>> X, y = torch.randn(16, 2, 40), torch.arange(16) % 2
    >>> model, history = finetune(TinyMyo(cfg, task="reconstruction"), (X, y.numpy()),
    ...     FinetuneConfig(epochs=3, batch_size=8, warmup_epochs=1, progress=False),
    ...     n_classes=2, val_data=(X, y.numpy()))
    >>> model.task, len(history.val_accuracy), history.steps
    ('classification', 3, 6)
    """
    source = str(pretrained) if isinstance(pretrained, str | Path) else None
    model = classifier_from_pretrained(
        pretrained, n_classes, reduction=cfg.reduction, drop_path=cfg.drop_path, device=device
    )
    dataset = window_dataset(data, model.input_shape, what="data")
    if val_data is not None:
        val_data = window_dataset(val_data, model.input_shape, what="val_data")
    _freeze(model, cfg.linear_probe)
    model_device = next(model.parameters()).device

    def loss_fn(m: torch.nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        y = _labels(y, n_classes).to(model_device)
        return F.cross_entropy(m(x), y, label_smoothing=cfg.label_smoothing)

    score = None if val_data is None else functools.partial(dataset_accuracy, data=val_data)
    log, val_accuracy, best = _run_keeping_best(model, dataset, loss_fn, cfg, score, mode="max")
    history = FinetuneHistory(
        epoch_loss=log.epoch_loss,
        val_accuracy=val_accuracy,
        best_epoch=best,
        stopped_early=len(log.epoch_loss) < cfg.epochs,
        steps=log.steps,
        world_size=log.world_size,
    )
    if out is not None and log.is_main:
        recipe = {"recipe": RECIPE, "finetune": asdict(cfg), "history": asdict(history)}
        save_checkpoint(model, out, metadata={**recipe, "pretrained": source, **(metadata or {})})
    return FinetuneResult(model, history)


def _run_keeping_best(
    model: TinyMyo, dataset: Any, loss_fn: Any, cfg: FinetuneConfig, score: Any, *, mode: str
) -> tuple[Any, list[float], int]:
    """`run_recipe` with early stopping on ``score(model)`` after each epoch (``mode`` "max"
    or "min"; None: no validation data, every epoch runs); the best epoch's weights are
    restored. Returns the recipe's log, the validation scores and the kept epoch."""
    scores: list[float] = []
    stopper = EarlyStopping(cfg.patience, mode=mode)

    def after_epoch(epoch: int) -> bool:
        if score is None:
            return False
        # Every process scores the whole validation set: the same number everywhere, so every
        # replica stops at the same epoch.
        scores.append(score(model))
        return stopper.update(scores[-1], model)

    log = run_recipe(
        model,
        dataset,
        loss_fn,
        cfg,
        layer_decay=cfg.layer_decay,
        desc="finetune",
        train_mode=functools.partial(_train_mode, linear_probe=cfg.linear_probe),
        after_epoch=after_epoch,
    )
    stopper.restore(model)  # the best epoch's weights (a no-op without validation data)
    return log, scores, stopper.best_index if scores else len(log.epoch_loss) - 1


# ----------------------------------------------------------------------------- regression


@dataclass
class RegressionHistory:
    """Mean training loss per epoch, validation MAE per epoch (when validation data was
    given), the epoch whose weights were kept, and whether early stopping ended the run."""

    epoch_loss: list[float] = field(default_factory=list)
    val_mae: list[float] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False
    steps: int = 0
    world_size: int = 1


class MeanAbsoluteError(NamedTuple):
    """Mean absolute error per output (over windows and steps) and over all outputs."""

    per_output: list[float]
    overall: float


def _regression_dataset(data: Any, input_shape: tuple[int, int], what: str) -> Dataset:
    """``data`` (a Dataset of ``(x [C, T], y [steps, outputs])`` or arrays ``(X, Y)``) as a
    Dataset, its first item checked."""
    if isinstance(data, tuple) and len(data) == 2:
        X, Y = (torch.as_tensor(np.asarray(a), dtype=torch.float32) for a in data)
        if X.ndim != 3 or Y.ndim != 3 or len(X) != len(Y) or not len(X):
            raise InputShapeError(
                f"{what} must be (X [N >= 1, C, T], Y [N, steps, outputs]), got "
                f"{describe(X)} and {describe(Y)}"
            )
        data = TensorDataset(X, Y)
    if not isinstance(data, Dataset) or len(data) == 0:  # type: ignore[arg-type]
        raise DataFormatError(f"{what} must be a non-empty Dataset or (X, Y), got {describe(data)}")
    x, y = data[0]
    if tuple(np.shape(x)) != tuple(input_shape) or np.ndim(y) != 2:
        raise InputShapeError(
            f"{what} item 0 must be (x [channels={input_shape[0]}, time={input_shape[1]}], "
            f"y [steps, outputs]), got x {describe(x)} and y {describe(y)}"
        )
    return data


@torch.no_grad()
def dataset_mae(model: TinyMyo, data: Any, *, batch_size: int = 256) -> MeanAbsoluteError:
    """The mean absolute error of ``model``'s regression over ``data`` (windows and their
    targets ``[steps, outputs]``, the steps ``model`` outputs), per output and overall; the
    model is left in eval mode.

    >>> cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 2}, n_samples=40,
    ...                             n_classes=2)
    >>> model = TinyMyo(cfg, task="regression", reg_target_len=40)
    >>> X = torch.randn(4, 2, 40)
    >>> dataset_mae(model, (X, model.eval()(X) + torch.tensor([1.0, 3.0]))).per_output
    [1.0, 3.0]
    """
    model.eval()
    dataset = _regression_dataset(data, model.input_shape, "validation data")
    device = next(model.parameters()).device
    total, count = None, 0
    for x, y in DataLoader(dataset, batch_size=batch_size):
        error = (model(x) - y.to(device)).abs().sum(dim=(0, 1)).double()
        total = error if total is None else total + error
        count += y.shape[0] * y.shape[1]
    per_output = [float(v) for v in (total / count).cpu()]
    return MeanAbsoluteError(per_output, float(np.mean(per_output)))


def _target_rows(data: Any, batch_size: int = 256) -> Any:
    """The targets of ``data`` (a Dataset or ``(X, Y)``) as float64 ``[rows, outputs]``
    batches, windows and steps flattened."""
    data = TensorDataset(*map(torch.as_tensor, data)) if isinstance(data, tuple) else data
    for _, y in DataLoader(data, batch_size=batch_size):
        yield torch.as_tensor(y).double().flatten(0, -2)


@torch.no_grad()
def _target_moments(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output mean and standard deviation of the targets of ``data``."""
    count, total, squares = 0, 0.0, 0.0
    for y in _target_rows(data):
        count, total, squares = count + len(y), total + y.sum(0), squares + (y * y).sum(0)
    if not count:
        raise DataFormatError("the training data holds no window")
    mean = total / count
    return mean, (squares / count - mean * mean).clamp_min(0).sqrt()


@torch.no_grad()
def mean_baseline_mae(train: Any, test: Any) -> MeanAbsoluteError:
    """The MAE on ``test`` of predicting, for every output, the mean of the ``train`` targets
    (the bar a regressor must clear); both are Datasets of ``(x, y [steps, outputs])`` or
    ``(X, Y)`` arrays.

    >>> X = torch.zeros(2, 1, 4)
    >>> train = (X, torch.tensor([[[0.0, 2.0]], [[2.0, 4.0]]]))
    >>> mean_baseline_mae(train, (X, torch.tensor([[[3.0, 3.0]], [[1.0, 3.0]]])))
    MeanAbsoluteError(per_output=[1.0, 0.0], overall=0.5)
    """
    mean, _ = _target_moments(train)
    error, n = 0.0, 0
    for y in _target_rows(test):
        error, n = error + (y - mean).abs().sum(0), n + len(y)
    if not n:
        raise DataFormatError("mean_baseline_mae: the test data holds no window")
    per_output = [float(v) for v in error / n]
    return MeanAbsoluteError(per_output, float(np.mean(per_output)))


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
) -> FinetuneResult:
    """Fine-tune a regressor built by `regressor_from_pretrained` on windows ``data`` whose
    targets are ``[steps, outputs]`` (a Dataset, e.g. a regression
    `emg_lens.data.windows.WindowStore`, or arrays ``(X, Y)``): the recipe of `finetune`
    (``cfg``; its label smoothing does not apply) with loss ``"l1"`` (default) or ``"mse"``
    on every step, early stopping on the validation MAE. The new head's output starts at the
    training targets' per-output mean and scale. Saved to ``out`` as `finetune`
    saves (metadata ``recipe``, ``finetune``, ``loss``, ``history``, ``pretrained``).

    >>> cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 2}, n_samples=40,
    ...                             d_model=16, d_head=4, n_heads=4, d_mlp=32, seed=0)
    >>> X, Y = torch.randn(16, 2, 40), torch.randn(16, 40, 3)
    >>> model, history = finetune_regression(TinyMyo(cfg, task="reconstruction"), (X, Y),
    ...     FinetuneConfig(epochs=2, batch_size=8, warmup_epochs=0, progress=False),
    ...     val_data=(X, Y))
    >>> model.task, model.cfg.n_classes, len(history.val_mae)
    ('regression', 3, 2)
    """
    if loss not in REGRESSION_LOSSES:
        raise ArgumentError(f"loss must be one of {list(REGRESSION_LOSSES)}, got {loss!r}")
    source = str(pretrained) if isinstance(pretrained, str | Path) else None
    pretrained = _pretrained_model(pretrained, device)
    dataset = _regression_dataset(data, pretrained.input_shape, "data")
    steps, outputs = tuple(np.shape(dataset[0][1]))
    model = regressor_from_pretrained(
        pretrained, outputs, steps, reduction=cfg.reduction, drop_path=cfg.drop_path
    )
    # The fresh head starts at the training targets' mean and scale (degrees for DB8), so the
    # recipe's learning rate fits the units and training starts from the mean predictor.
    mean, std = _target_moments(dataset)
    with torch.no_grad():
        model.head.b_out.copy_(mean)
        model.head.W_out.mul_(torch.where(std > 0, std, 1.0).to(model.head.W_out))
    if val_data is not None:
        val_data = _regression_dataset(val_data, model.input_shape, "val_data")
    _freeze(model, cfg.linear_probe)
    model_device = next(model.parameters()).device
    criterion = REGRESSION_LOSSES[loss]

    def loss_fn(m: torch.nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        return criterion(m(x), y.to(model_device, torch.float32))

    def score(m: TinyMyo) -> float:
        return dataset_mae(m, val_data).overall

    log, val_mae, best = _run_keeping_best(
        model, dataset, loss_fn, cfg, None if val_data is None else score, mode="min"
    )
    history = RegressionHistory(
        epoch_loss=log.epoch_loss,
        val_mae=val_mae,
        best_epoch=best,
        stopped_early=len(log.epoch_loss) < cfg.epochs,
        steps=log.steps,
        world_size=log.world_size,
    )
    if out is not None and log.is_main:
        recipe = {"recipe": REGRESSION_RECIPE, "finetune": asdict(cfg), "loss": loss}
        recipe.update(history=asdict(history), pretrained=source)
        save_checkpoint(model, out, metadata={**recipe, **(metadata or {})})
    return FinetuneResult(model, history)


def finetune_subjects(
    pretrained: str | Path,
    source: dict[str, Any],
    out_dir: str | Path,
    cfg: FinetuneConfig = FinetuneConfig(),
    *,
    subjects: list[int] | None = None,
    val_fraction: float = 0.1,
    device: str | None = None,
) -> list[dict[str, Any]]:
    """Fine-tune one classifier per subject of ``source`` (a data source of
    `emg_lens.data.datasets`, e.g. `windows_source` or `synthetic_windows_source`, whose
    windows fit the checkpoint) from the pretrained checkpoint ``pretrained``.

    Each subject trains on its training repetitions, early-stops on a seeded random
    ``val_fraction`` of them, is scored on its test repetitions and is saved as
    ``out_dir/subject_<N>/`` with metadata ``data_source``, ``subject`` and ``classes`` (beside
    `finetune`'s), so `emg_lens.studies.run_study` (``--models out_dir``) rebuilds its test
    windows. Returns (and writes to ``out_dir/finetuning.json``) one row per subject:
    ``subject, n_train, n_test, chance, val_accuracy, test_accuracy, checkpoint``.

    >>> import tempfile
    >>> from emg_lens.checkpoints import save_checkpoint
    >>> from emg_lens.data.datasets import synthetic_windows_source
    >>> from emg_lens.data.synthetic import SyntheticSpec
    >>> cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 2}, n_samples=40,
    ...                             d_model=16, d_head=4, n_heads=4, d_mlp=32, seed=0)
    >>> root = Path(tempfile.mkdtemp())
    >>> ckpt = save_checkpoint(TinyMyo(cfg, task="reconstruction"), root / "pretrained")
    >>> spec = SyntheticSpec(n_subjects=2, n_emg=2, n_acc_sensors=1, n_acc_gestures=0,
    ...                      n_interaction_gestures=0, movement_seconds=0.3)
    >>> rows = finetune_subjects(ckpt, synthetic_windows_source(spec, window=40, step=40),
    ...     root / "models", FinetuneConfig(epochs=1, warmup_epochs=0, progress=False))
    >>> [r["subject"] for r in rows], sorted(p.name for p in (root / "models").iterdir())
    ([1, 2], ['finetuning.json', 'subject_1', 'subject_2'])
    """
    out_dir = Path(out_dir)
    rows = []
    for subject in subjects or available_subjects(source):
        data = load_subject(source, subject)
        labelled = (data.X_train, data.y_train)
        train, val = random_holdout(
            window_dataset(labelled, data.X_train.shape[1:], what=f"subject {subject} windows"),
            val_fraction,
            seed=cfg.seed,
        )
        path = out_dir / f"subject_{subject}"
        try:
            model, history = finetune(
                pretrained,
                train,
                cfg,
                n_classes=data.n_classes,
                val_data=val,
                out=path,
                device=device,
                metadata={"subject": int(subject), "classes": data.classes, "data_source": source},
            )
        except TrainingDivergedError as exc:  # say whose training it was
            raise TrainingDivergedError(f"subject {subject}: {exc}") from exc
        row = {
            "subject": int(subject),
            "n_train": len(train),
            "n_test": len(data.y_test),
            "chance": 1 / data.n_classes,
            "val_accuracy": history.val_accuracy[history.best_epoch],
            "test_accuracy": dataset_accuracy(model, (data.X_test, data.y_test)),
        }
        rows.append({**row, "checkpoint": str(path)})
    if is_main_process():
        text = json.dumps(rows, indent=2)
        atomic_write(out_dir / "finetuning.json", lambda tmp: tmp.write_text(text))
    return rows
