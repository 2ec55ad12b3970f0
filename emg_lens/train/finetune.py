"""Fine-tuning a pretrained TinyMyo for classification or regression, with BioFoundation's
configured recipe.

A pretrained TinyMyo's encoder is copied into a classification TinyMyo of the same config and
trained with BioFoundation's fine-tuning configuration (``TinyMyo_finetune.yaml``:
`FinetuneConfig`'s defaults), keeping the epoch with the lowest validation loss (or, with
``monitor="accuracy"``, the most accurate); ``linear_probe=True`` trains the head alone. Where
BioFoundation's code differs: docs/guide/tinymyo.md, "The recipes and BioFoundation's code".
This module also holds what `emg_lens.train.regression` and `emg_lens.train.per_subject`
share: the config, the history, `freeze_for_finetuning` and `run_keeping_best`."""

from __future__ import annotations

import functools
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from emg_lens._hints import checked
from emg_lens.checkpoints import load_checkpoint
from emg_lens.config import EncoderConfig
from emg_lens.errors import (
    CheckpointError,
    ConfigError,
    DataFormatError,
    check_choice,
    check_int,
    fields_checked,
)
from emg_lens.models.native.tinymyo import REDUCTIONS, TinyMyo
from emg_lens.train.distributed import unwrap
from emg_lens.train.inputs import window_dataset
from emg_lens.train.loop import RecipeLog, run_recipe
from emg_lens.train.schedule import EarlyStopping, check_schedule_fields

RECIPE = "tinymyo-finetuning"
MONITORS = ("loss", "accuracy")  # FinetuneConfig.monitor: lowest validation loss, or most accurate

H = TypeVar("H", bound="RunHistory")


@fields_checked
@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning settings; defaults are BioFoundation's TinyMyo fine-tuning configuration
    (the module docstring: where its code runs otherwise)."""

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
    patience: int = 7  # epochs without a better validation score before stopping
    monitor: str = "loss"  # the validation score kept and stopped on: "loss" or "accuracy"
    linear_probe: bool = False  # True: freeze the encoder, train the head only
    reduction: str = "concat"  # how the head merges channels: "concat" or "mean"
    drop_path: float = 0.1  # stochastic depth while fine-tuning the encoder
    seed: int = 0  # data order and dropout
    progress: bool = True  # a tqdm bar (rank 0 only)

    def __post_init__(self) -> None:
        check_schedule_fields(self)
        check_int(self.patience, "FinetuneConfig.patience", 1, error=ConfigError)
        check_choice(self.reduction, REDUCTIONS, "FinetuneConfig.reduction", ConfigError)
        check_choice(self.monitor, MONITORS, "FinetuneConfig.monitor", ConfigError)


@dataclass
class RunHistory:
    """What every fine-tuning run records: mean training loss per epoch (averaged over
    processes), the epoch whose weights were kept (0-based; the last one without validation
    data), whether early stopping ended the run, optimiser steps and processes."""

    epoch_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False
    steps: int = 0
    world_size: int = 1

    @classmethod
    def of_run(cls: type[H], log: RecipeLog, best_epoch: int, epochs: int, **scores: Any) -> H:
        """The history of a run of at most ``epochs`` epochs that logged ``log`` and kept
        ``best_epoch`` (`run_keeping_best`); ``scores``: the subclass's own fields (its
        validation scores per epoch).

        >>> RunHistory.of_run(RecipeLog([0.9, 0.7], steps=4), best_epoch=0, epochs=5)
        RunHistory(epoch_loss=[0.9, 0.7], best_epoch=0, stopped_early=True, steps=4, world_size=1)
        """
        return cls(
            epoch_loss=log.epoch_loss,
            best_epoch=best_epoch,
            stopped_early=len(log.epoch_loss) < epochs,
            steps=log.steps,
            world_size=log.world_size,
            **scores,
        )


@checked
@dataclass
class FinetuneHistory(RunHistory):
    """A classifier's `RunHistory` and its validation accuracy and loss (the training's
    label-smoothed cross-entropy) per epoch, when validation data was given."""

    val_accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)


@checked
class FinetuneResult(NamedTuple):
    """What `finetune` returns: the model with the kept epoch's weights and its history."""

    model: TinyMyo
    history: FinetuneHistory


@checked
def classifier_from_pretrained(
    pretrained: TinyMyo | str | Path,
    n_classes: int,
    *,
    reduction: str = "concat",
    drop_path: float = 0.0,
    device: str | None = None,
) -> TinyMyo:
    """A classification TinyMyo with ``pretrained``'s config (``n_classes`` classes) and every
    weight but the head's (the new head seeded fresh). ``pretrained`` is a TinyMyo or a
    checkpoint folder holding one (loaded onto ``device``, default: the one it was saved from).

    >>> cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 2}, n_samples=40)
    >>> source = TinyMyo(cfg, task="reconstruction")
    >>> clf = classifier_from_pretrained(source, n_classes=3)
    >>> clf.task, clf.cfg.n_classes, torch.equal(clf.blocks[0].attn.W_Q, source.blocks[0].attn.W_Q)
    ('classification', 3, True)
    """
    n_classes = check_int(n_classes, "n_classes", minimum=2)
    head = {"reduction": reduction, "drop_path": drop_path}
    return _with_new_head(pretrained, n_classes, device, task="classification", **head)


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
    n_outputs = check_int(n_outputs, "n_outputs", 1)
    head = {"reduction": reduction, "drop_path": drop_path}
    head["reg_target_len"] = check_int(target_len, "target_len", 1)
    return _with_new_head(pretrained, n_outputs, device, task="regression", **head)


def pretrained_model(pretrained: TinyMyo | str | Path, device: str | None) -> TinyMyo:
    """The TinyMyo fine-tuning starts from: ``pretrained`` itself, or the checkpoint it names
    (loaded onto ``device``); anything else is a `CheckpointError`."""
    model = (
        load_checkpoint(pretrained, device=device)
        if isinstance(pretrained, str | Path)
        else pretrained
    )
    if not getattr(model, "head_tasks", ()):  # an encoder that takes a new head
        raise CheckpointError(
            f"fine-tuning starts from a TinyMyo (or its checkpoint), got {type(model).__name__}"
        )
    return typing.cast(TinyMyo, model)  # the one model class with head_tasks


def _with_new_head(
    pretrained: TinyMyo | str | Path, n_outputs: int, device: str | None, **head: Any
) -> TinyMyo:
    """A TinyMyo of ``pretrained``'s config with ``n_outputs`` (``n_classes``), the head
    ``head`` describes, and every pretrained weight but the head's."""
    pretrained = pretrained_model(pretrained, device)
    cfg = EncoderConfig.from_dict({**pretrained.cfg.to_dict(), "n_classes": n_outputs})
    model = type(pretrained)(cfg, **head)
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
    if len(bad := y[(y < 0) | (y >= n_classes)]):
        raise DataFormatError(
            f"fine-tuning needs labels in [0, n_classes={n_classes}); found "
            f"{sorted(set(bad.tolist()))} (-1: unlabeled)"
        )
    return y


@torch.no_grad()
@checked
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
    return dataset_scores(model, data, batch_size=batch_size)[0]


@torch.no_grad()
@checked
def dataset_scores(
    model: TinyMyo, data: Any, *, label_smoothing: float = 0.0, batch_size: int = 256
) -> tuple[float, float]:
    """``(accuracy, loss)`` of ``model`` on the windows of ``data`` (the mean cross-entropy
    with ``label_smoothing``, as training computes it); the model is left in eval mode.

    >>> cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 2}, n_samples=40,
    ...                             n_classes=2)
    >>> model = TinyMyo(cfg)
    >>> X = torch.randn(6, 2, 40)
    >>> accuracy, loss = dataset_scores(model, (X, model(X).argmax(-1).numpy()))
    >>> accuracy, 0 < loss < 0.7  # every window right, each with p > 0.5
    (1.0, True)
    """
    model.eval()
    dataset = window_dataset(data, model.input_shape, what="validation data")
    correct = total = 0
    loss = 0.0
    for x, y in DataLoader(dataset, batch_size=batch_size):
        y = _labels(y, model.cfg.n_classes).to(next(model.parameters()).device)
        logits = model(x)
        correct += int((logits.argmax(-1) == y).sum())
        loss += float(F.cross_entropy(logits, y, label_smoothing=label_smoothing, reduction="sum"))
        total += len(y)
    return correct / total, loss / total


def freeze_for_finetuning(model: TinyMyo, linear_probe: bool) -> None:
    """Freeze ``mask_token`` (a classifier or regressor never uses it, and DDP refuses
    parameters without a gradient) and, for a linear probe, every weight but the head's."""
    model.mask_token.requires_grad_(False)
    if linear_probe:
        for name, param in model.named_parameters():
            param.requires_grad_(name.startswith("head."))


def _train_mode(model: torch.nn.Module, *, linear_probe: bool) -> None:
    """Train mode, except a frozen encoder, which stays deterministic (no dropout)."""
    model.train(not linear_probe)
    if linear_probe:
        unwrap(model).get_submodule("head").train()


@checked
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
    ``data`` (see `window_dataset`; labels in ``[0, n_classes)``). With ``val_data``, early
    stopping on its loss (or accuracy: ``cfg.monitor``) keeps the best epoch's weights; the
    history holds both per epoch. With ``out`` rank 0 saves the model there (metadata: the
    recipe, settings, history, ``pretrained``, plus ``metadata``). A training that diverges
    raises `StudyError`; nothing is saved.

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
    freeze_for_finetuning(model, cfg.linear_probe)
    model_device = next(model.parameters()).device

    def loss_fn(m: torch.nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        y = _labels(y, n_classes).to(model_device)
        return F.cross_entropy(m(x), y, label_smoothing=cfg.label_smoothing)

    val: dict[str, list[float]] = {"accuracy": [], "loss": []}

    def score(m: TinyMyo) -> float:  # the monitored score, both kept
        accuracy, loss = dataset_scores(m, val_data, label_smoothing=cfg.label_smoothing)
        val["accuracy"].append(accuracy)
        val["loss"].append(loss)
        return val[cfg.monitor][-1]

    mode = "min" if cfg.monitor == "loss" else "max"
    log, _, best = run_keeping_best(
        model, dataset, loss_fn, cfg, None if val_data is None else score, mode=mode
    )
    history = FinetuneHistory.of_run(
        log, best, cfg.epochs, val_accuracy=val["accuracy"], val_loss=val["loss"]
    )
    recipe = {"recipe": RECIPE, "finetune": asdict(cfg), "history": asdict(history)}
    log.save(model, out, recipe, {"pretrained": source, **(metadata or {})})
    return FinetuneResult(model, history)


def run_keeping_best(
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
