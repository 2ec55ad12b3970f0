"""The training loop that masked pretraining and fine-tuning share.

`run_recipe` opens the (possibly one-process) data-parallel run, builds AdamW over layer-wise
parameter groups with the warm-up + cosine schedule, and trains epoch by epoch with
`train_epoch`; a recipe supplies only its loss and what to do after each epoch.

`train_epoch` steps the optimiser once every ``accumulate_steps`` micro-batches (the DDP
all-reduce only on the micro-batch that ends a step). Every training loop (this one and
`emg_lens.train.supervised.fit`) stops a training that diverges (docs/DESIGN.md §10): a
non-finite loss or weight is a `StudyError` (`check_finite_loss`, `check_finite_weights`)."""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from emg_lens.checkpoints import save_checkpoint
from emg_lens.errors import StudyError
from emg_lens.models.base import HookedBiosignalModel
from emg_lens.train.distributed import DistributedRun, distributed_run
from emg_lens.train.schedule import layerwise_param_groups, warmup_cosine_scheduler

LossFn = Callable[[nn.Module, Sequence[torch.Tensor]], torch.Tensor]


def check_finite_loss(loss: float, what: str, epoch: int, epochs: int, step: str) -> None:
    """Raise `StudyError` when a training loss is NaN or inf (``epoch`` 0-based;
    ``step`` says where in the epoch).

    >>> check_finite_loss(0.7, "subject 1", 0, 5, "step 3")
    >>> check_finite_loss(float("nan"), "subject 1", 1, 5, "step 3")
    Traceback (most recent call last):
    ...
    emg_lens.errors.StudyError: subject 1: training diverged in epoch 2 of 5 (step 3: the loss is nan); it was stopped there, and the model is neither scored nor saved: train again with a smaller learning rate
    """  # noqa: E501
    if not math.isfinite(loss):
        raise _diverged(what, epoch, epochs, f"{step}: the loss is {loss}")


def check_finite_weights(model: nn.Module, what: str, epoch: int, epochs: int) -> None:
    """Raise `StudyError`, naming the first such parameter, when a weight of
    ``model`` is NaN or inf (one device synchronisation for all parameters).

    >>> model = nn.Linear(2, 1)
    >>> check_finite_weights(model, "pretrain", 0, 3)
    >>> with torch.no_grad():
    ...     _ = model.bias.fill_(float("inf"))
    >>> check_finite_weights(model, "pretrain", 0, 3)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emg_lens.errors.StudyError: pretrain: ... (weight 'bias' holds NaN or inf ...
    """
    named = [(n, p) for n, p in model.named_parameters() if p.is_floating_point()]
    if not named:
        return
    finite = torch.stack([p.detach().isfinite().all() for _, p in named]).cpu()
    if not bool(finite.all()):
        name = named[int((~finite).nonzero()[0])][0]
        raise _diverged(what, epoch, epochs, f"weight {name!r} holds NaN or inf at its end")


def _diverged(what: str, epoch: int, epochs: int, problem: str) -> StudyError:
    return StudyError(
        f"{what}: training diverged in epoch {epoch + 1} of {epochs} ({problem}); it was "
        "stopped there, and the model is neither scored nor saved: train again with a smaller "
        "learning rate"
    )


def optimizer_steps(n_batches: int, accumulate_steps: int) -> int:
    """Optimiser steps in an epoch of ``n_batches`` micro-batches.

    >>> optimizer_steps(10, 4)
    3
    """
    return math.ceil(n_batches / accumulate_steps)


def train_epoch(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    run: DistributedRun,
    accumulate_steps: int = 1,
    grad_clip: float | None = None,
    bar: tqdm | None = None,
    desc: str = "train",
    epoch: int = 0,
    epochs: int = 1,
) -> float:
    """Train ``model`` (possibly DDP-wrapped, already in train mode) for one pass over
    ``loader``; returns this process's mean micro-batch loss. A non-finite micro-batch loss
    raises `StudyError` naming ``desc`` and ``epoch`` (0-based) of ``epochs``.

    >>> from emg_lens.train import warmup_cosine_scheduler
    >>> model = nn.Linear(2, 1)
    >>> data = torch.utils.data.TensorDataset(torch.randn(8, 2), torch.zeros(8, 1))
    >>> loader = DistributedRun().loader(data, 2, shuffle=False)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> sched = warmup_cosine_scheduler(opt, total_steps=2, warmup_steps=0, lr_max=0.1, lr_min=0)
    >>> def mse(m, batch):
    ...     return ((m(batch[0]) - batch[1]) ** 2).mean()
    >>> loss = train_epoch(model, loader, mse, opt, sched, run=DistributedRun(),
    ...                    accumulate_steps=2)
    >>> sched.last_epoch  # two optimiser steps for four micro-batches
    2
    """
    n_batches = len(loader)
    trainable = [p for p in model.parameters() if p.requires_grad]
    losses = []
    optimizer.zero_grad(set_to_none=True)
    for i, batch in enumerate(loader):
        group_start = i - i % accumulate_steps
        group_size = min(accumulate_steps, n_batches - group_start)
        ends_step = i == group_start + group_size - 1
        with run.no_sync(model, skip=not ends_step):
            loss = loss_fn(model, batch)
            (loss / group_size).backward()
        losses.append(loss.item())
        # Under torchrun a rank whose loss alone is NaN fails here and torchrun stops the others;
        # a NaN gradient reaches every rank through the all-reduce, so they stop a step later.
        check_finite_loss(losses[-1], desc, epoch, epochs, f"micro-batch {i + 1} of {n_batches}")
        if ends_step:
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(trainable, grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{optimizer.param_groups[-1]['lr']:.2e}")
    return sum(losses) / max(1, len(losses))


@dataclass
class RecipeLog:
    """What `run_recipe` did: mean training loss per epoch (averaged over processes), optimiser
    steps, processes, and whether this process was rank 0."""

    epoch_loss: list[float] = field(default_factory=list)
    steps: int = 0
    world_size: int = 1
    is_main: bool = True

    def save(
        self,
        model: HookedBiosignalModel,
        out: str | Path | None,
        recipe: dict,
        more: dict | None = None,
    ) -> None:
        """With ``out``, rank 0 saves the trained ``model`` there (`save_checkpoint`), its
        metadata ``recipe``, torch's CPU threads (results can differ in the last bits with
        them), then ``more``."""
        if out is not None and self.is_main:
            threads = {"threads": torch.get_num_threads()}
            save_checkpoint(model, out, metadata={**recipe, **threads, **(more or {})})


def run_recipe(
    model: HookedBiosignalModel,
    dataset: Dataset,
    loss_fn: LossFn,
    cfg: Any,
    *,
    layer_decay: float = 1.0,
    desc: str = "train",
    train_mode: Callable[[nn.Module], Any] = nn.Module.train,
    after_epoch: Callable[[int], bool] | None = None,
) -> RecipeLog:
    """Train ``model`` in place for ``cfg.epochs`` epochs (a recipe config,
    `emg_lens.train.PretrainConfig` or `emg_lens.train.FinetuneConfig`), data-parallel under
    torchrun. ``loss_fn(model, batch)`` gets the (possibly DDP-wrapped) model; ``train_mode``
    puts it in training mode each epoch; ``after_epoch(epoch)`` returning True ends training
    early. The model is left in eval mode.

    >>> from emg_lens.config import EncoderConfig
    >>> from emg_lens.models import TinyMyo
    >>> from emg_lens.train import PretrainConfig
    >>> cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 2}, n_samples=40)
    >>> model = TinyMyo(cfg, task="reconstruction")
    >>> data = torch.utils.data.TensorDataset(torch.randn(8, 2, 40), torch.zeros(8))
    >>> recipe = PretrainConfig(epochs=2, batch_size=4, accumulate_steps=1, warmup_epochs=0,
    ...                         progress=False)
    >>> log = run_recipe(model, data, lambda m, batch: m(batch[0]).pow(2).mean(), recipe)
    >>> len(log.epoch_loss), log.steps
    (2, 4)
    """
    with distributed_run(next(model.parameters()).device) as run:
        torch.manual_seed(cfg.seed)  # dropout and drop-path draw from the global generator
        wrapped = run.wrap(model)
        loader = run.loader(dataset, cfg.batch_size, shuffle=True, seed=cfg.seed)
        steps_per_epoch = optimizer_steps(len(loader), cfg.accumulate_steps)
        groups = layerwise_param_groups(
            model, cfg.lr, weight_decay=cfg.weight_decay, layer_decay=layer_decay
        )
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)
        scheduler = warmup_cosine_scheduler(
            optimizer,
            total_steps=cfg.epochs * steps_per_epoch,
            warmup_steps=cfg.warmup_epochs * steps_per_epoch,
            lr_max=cfg.lr,
            lr_min=cfg.min_lr,
        )
        log = RecipeLog(world_size=run.world_size, is_main=run.is_main)
        show = cfg.progress and run.is_main
        bar = tqdm(total=cfg.epochs * len(loader), desc=desc, disable=not show, leave=False)
        try:
            for epoch in range(cfg.epochs):
                typing.cast(DistributedSampler, loader.sampler).set_epoch(epoch)  # run.loader's
                train_mode(wrapped)
                loss = train_epoch(
                    wrapped,
                    loader,
                    loss_fn,
                    optimizer,
                    scheduler,
                    run=run,
                    accumulate_steps=cfg.accumulate_steps,
                    grad_clip=cfg.grad_clip,
                    bar=bar,
                    desc=desc,
                    epoch=epoch,
                    epochs=cfg.epochs,
                )
                check_finite_weights(model, desc, epoch, cfg.epochs)  # the same on every rank
                log.epoch_loss.append(run.mean(loss))
                log.steps += steps_per_epoch
                if after_epoch is not None and after_epoch(epoch):
                    break
        finally:
            bar.close()
            model.eval()
    return log
