"""Masked-signal pretraining of TinyMyo, with BioFoundation's configured recipe.

A masked patch's token is replaced by ``mask_token`` and the reconstruction head predicts every
patch's samples; the settings are BioFoundation's (`PretrainConfig`'s defaults; where its code
differs: docs/guide/tinymyo.md, "The recipes and BioFoundation's code"). The mask is drawn per
patch, MAE style (`random_sample_mask`), so ``mask_ratio`` of the tokens are masked, rather
than almost all of them as a per-sample coin flip would do."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from jaxtyping import Bool, Float
from torch.utils.data import DataLoader, Dataset

from emg_lens.errors import ArgumentError, checked, fields_checked
from emg_lens.models.native.tinymyo import TinyMyo
from emg_lens.train.distributed import process_rank, unwrap
from emg_lens.train.inputs import UNLABELED, window_dataset
from emg_lens.train.loop import run_recipe
from emg_lens.train.schedule import check_schedule_fields

RECIPE = "tinymyo-masked-pretraining"


@fields_checked
@dataclass(frozen=True)
class PretrainConfig:
    """Masked pretraining settings; defaults are BioFoundation's TinyMyo pretraining
    configuration (the module docstring: where its code runs otherwise)."""

    epochs: int = 50
    batch_size: int = 128  # windows per micro-batch and process
    accumulate_steps: int = 8  # micro-batches per optimiser step
    mask_ratio: float = 0.5  # fraction of patches masked in every window
    visible_weight: float = 0.1  # weight of the visible patches' loss
    lr: float = 1e-4  # peak learning rate, after the warm-up
    min_lr: float = 1e-6  # where the warm-up starts and the cosine ends
    warmup_epochs: int = 10
    weight_decay: float = 0.01  # AdamW; none on biases, LayerNorm and mask_token
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float | None = 3.0  # max global gradient norm
    seed: int = 0  # data order, masks and dropout
    progress: bool = True  # a tqdm bar (rank 0 only)

    def __post_init__(self) -> None:
        check_schedule_fields(self)  # types (NaN or inf trains to NaN), ranges, seed, ...


@checked
@dataclass
class PretrainHistory:
    """Mean training loss per epoch (averaged over processes), the held-out masked-patch loss
    after each epoch (when held-out data was given), optimiser steps and processes."""

    epoch_loss: list[float] = field(default_factory=list)
    val_masked_loss: list[float] = field(default_factory=list)
    steps: int = 0
    world_size: int = 1


class ReconstructionLoss(NamedTuple):
    """``total = masked + visible_weight * visible``; each part a mean Smooth-L1 over the
    samples of the masked (visible) patches, 0 when there are none."""

    total: torch.Tensor
    masked: torch.Tensor
    visible: torch.Tensor


@checked
def random_sample_mask(
    batch: int,
    n_channels: int,
    n_samples: int,
    patch_samples: int,
    mask_ratio: float,
    *,
    generator: torch.Generator | None = None,
) -> Bool[torch.Tensor, "batch channel time"]:
    """A per-sample mask (True = masked) drawn at patch granularity: in each window exactly
    ``max(1, round(mask_ratio * n_patches_total))`` patches, uniformly over channels and time.

    >>> mask = random_sample_mask(2, 3, 40, 20, 0.5, generator=torch.Generator().manual_seed(0))
    >>> mask.shape, mask.sum(dim=(1, 2)).tolist()  # 3 of 6 patches, 20 samples each
    (torch.Size([2, 3, 40]), [60, 60])
    """
    if n_samples % patch_samples:
        raise ArgumentError(f"patch_samples={patch_samples} must divide n_samples={n_samples}")
    n_patches = n_samples // patch_samples
    n_tokens = n_channels * n_patches
    n_masked = min(n_tokens, max(1, round(mask_ratio * n_tokens)))
    order = torch.rand(batch, n_tokens, generator=generator).argsort(dim=1)
    patch_mask = torch.zeros(batch, n_tokens, dtype=torch.bool)
    patch_mask.scatter_(1, order[:, :n_masked], True)
    patch_mask = rearrange(
        patch_mask, "batch (channel patch) -> batch channel patch", patch=n_patches
    )
    return patch_mask.repeat_interleave(patch_samples, dim=-1)


@checked
def masked_reconstruction_loss(
    reconstruction: Float[torch.Tensor, "batch pos patch_samples"],
    signals: Float[torch.Tensor, "batch channel time"],
    patch_mask: Bool[torch.Tensor, "batch channel patch"],
    visible_weight: float = 0.1,
) -> ReconstructionLoss:
    """Smooth-L1 (beta 1) between the reconstruction head's output (tokens channel-major:
    token ``c * n_patches + t``) and the signal's patches, on masked and visible patches.

    >>> signals = torch.tensor([[[0.0, 0.0, 2.0, 2.0]]])  # 1 channel, 2 patches of 2
    >>> recon = torch.zeros(1, 2, 2)
    >>> mask = torch.tensor([[[False, True]]])  # the second patch is masked
    >>> masked_reconstruction_loss(recon, signals, mask, 0.1).total.item()  # |2 - 0| - 0.5
    1.5
    """
    target = rearrange(
        signals.to(reconstruction.dtype),
        "batch channel (patch sample) -> batch (channel patch) sample",
        sample=reconstruction.shape[-1],
    )
    per_sample = F.smooth_l1_loss(reconstruction, target, reduction="none", beta=1.0)
    masked = rearrange(patch_mask, "batch channel patch -> batch (channel patch) 1").to(
        per_sample.device
    )
    masked_loss = _mean_where(per_sample, masked)
    visible_loss = _mean_where(per_sample, ~masked)
    return ReconstructionLoss(
        masked_loss + visible_weight * visible_loss, masked_loss, visible_loss
    )


def _mean_where(values: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    where = where.expand_as(values)
    count = where.sum()
    return (values * where).sum() / count.clamp(min=1)


def _masked_step(
    model: torch.nn.Module, signals: torch.Tensor, mask_ratio: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw a mask for ``signals`` and reconstruct them through ``model`` (a TinyMyo, maybe
    DDP-wrapped); returns (reconstruction, signals on the model's device, patch mask)."""
    tiny = cast(TinyMyo, unwrap(model))  # what pretraining runs (_check_model refuses others)
    cfg = tiny.cfg
    signals = tiny.to_tokens(signals)
    sample_mask = random_sample_mask(
        len(signals),
        cfg.n_channels,
        cfg.n_samples,
        cfg.token_samples,
        mask_ratio,
        generator=generator,
    ).to(signals.device)
    patch_mask = tiny.patch_mask_from_samples(sample_mask)
    reconstruction = model(signals, patch_mask=patch_mask)
    return reconstruction, signals, patch_mask


def _check_model(model: Any) -> TinyMyo:
    # a model that can be built with a reconstruction head (`head_tasks`), built with it
    if "reconstruction" not in getattr(model, "head_tasks", ()) or model.task != "reconstruction":
        task = f" with task={model.task!r}" if getattr(model, "task", None) else ""
        raise ArgumentError(
            f"pretraining needs TinyMyo(cfg, task='reconstruction'), got "
            f"{type(model).__name__}{task}"
        )
    return model


class _SignalsOnly(Dataset):
    """The windows of a Dataset without what its items carry beside them: masked pretraining
    reads no label, so a regression store's float targets ``[time, output]`` (NinaPro DB8's)
    are not taken for malformed class labels."""

    def __init__(self, data: Dataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.data[index][0], UNLABELED


def _signals(data: Any) -> Any:
    """``data`` (see `pretrain`) with its labels or targets dropped: windows only."""
    if isinstance(data, Dataset):
        return _SignalsOnly(data)
    if isinstance(data, tuple) and len(data) == 2:
        return data[0]  # (X, y): X alone
    return data


def _mask_generator(seed: int, rank: int = 0) -> torch.Generator:
    """Every process draws its own masks, reproducibly from (seed, rank)."""
    state = np.random.SeedSequence([seed, rank]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


@torch.no_grad()
@checked
def evaluate_masked_loss(
    model: TinyMyo,
    data: Any,
    *,
    mask_ratio: float = 0.5,
    batch_size: int = 128,
    seed: int = 0,
) -> float:
    """Mean Smooth-L1 on the masked patches of ``data`` (see `window_dataset`), the masks
    drawn from ``seed``: the same on every call, so epochs and models compare. The model is
    left in eval mode.

    >>> from emg_lens.config import EncoderConfig
    >>> cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 2}, n_samples=40)
    >>> model = TinyMyo(cfg, task="reconstruction")
    >>> X = np.random.default_rng(0).standard_normal((4, 2, 40)).astype(np.float32)
    >>> evaluate_masked_loss(model, X) == evaluate_masked_loss(model, X)
    True
    """
    model = _check_model(model).eval()
    dataset = window_dataset(_signals(data), model.input_shape, what="held-out data")
    generator = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    for signals, _ in DataLoader(dataset, batch_size=batch_size):
        reconstruction, signals, patch_mask = _masked_step(model, signals, mask_ratio, generator)
        n_masked = int(patch_mask.sum())
        loss = masked_reconstruction_loss(reconstruction, signals, patch_mask).masked
        total += loss.item() * n_masked
        count += n_masked
    return total / count


@checked
def pretrain(
    model: TinyMyo,
    data: Any,
    cfg: PretrainConfig = PretrainConfig(),
    *,
    val_data: Any = None,
    out: str | Path | None = None,
) -> PretrainHistory:
    """Pretrain a reconstruction ``TinyMyo`` in place on windows ``data`` (see
    `window_dataset`; labels, or a regression store's targets, are ignored). With ``val_data``
    the masked-patch loss on it (`evaluate_masked_loss`, fixed masks) is recorded after every
    epoch. With ``out`` rank 0 saves the model there; under torchrun every process trains a
    replica on its shard. A training that diverges raises `StudyError`; nothing is saved.

    >>> from emg_lens.config import EncoderConfig
    >>> cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 2}, n_samples=40,
    ...                             d_model=16, d_head=4, n_heads=4, d_mlp=32, seed=0)
    >>> model = TinyMyo(cfg, task="reconstruction")
    >>> X = np.random.default_rng(0).standard_normal((16, 2, 40)).astype(np.float32)
    >>> history = pretrain(model, X, PretrainConfig(epochs=2, batch_size=8, accumulate_steps=1,
    ...                                              warmup_epochs=1, progress=False))
    >>> len(history.epoch_loss), history.steps
    (2, 4)
    """
    model = _check_model(model)
    dataset = window_dataset(_signals(data), model.input_shape, what="data")
    if val_data is not None:
        val_data = window_dataset(_signals(val_data), model.input_shape, what="val_data")
    generator = _mask_generator(cfg.seed, process_rank())
    val_masked_loss: list[float] = []

    def loss_fn(m: torch.nn.Module, batch: Any) -> torch.Tensor:
        reconstruction, signals, patch_mask = _masked_step(m, batch[0], cfg.mask_ratio, generator)
        return masked_reconstruction_loss(
            reconstruction, signals, patch_mask, cfg.visible_weight
        ).total

    def after_epoch(epoch: int) -> bool:
        if val_data is not None:
            loss = evaluate_masked_loss(
                model,
                val_data,
                mask_ratio=cfg.mask_ratio,
                batch_size=cfg.batch_size,
                seed=cfg.seed,
            )
            val_masked_loss.append(loss)
        return False

    log = run_recipe(model, dataset, loss_fn, cfg, desc="pretrain", after_epoch=after_epoch)
    history = PretrainHistory(
        epoch_loss=log.epoch_loss,
        val_masked_loss=val_masked_loss,
        steps=log.steps,
        world_size=log.world_size,
    )
    log.save(model, out, {"recipe": RECIPE, "pretrain": asdict(cfg), "history": asdict(history)})
    return history
