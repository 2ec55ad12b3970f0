"""Supervised training: one model per subject, with IsoNet's dual-head annealed loss.

IsoNet has two classifier heads — the CLS token's and the mean of the channel tokens' — and
trains both with ``L(t) = λ(t) L_cls + (1 − λ(t)) L_avg``, ``λ(t) = min(1, t / T_anneal)``:
early on the loss comes from the mean-pooled head, which can only be right if the channel
tokens themselves exchange information; later the CLS head takes over. Models without a second
head train on plain cross-entropy.

Training is seeded and deterministic on CPU (same seed, same data: identical weights)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from tqdm.auto import tqdm

from emg_lens._hints import checked
from emg_lens._io import atomic_write
from emg_lens.checkpoints import save_checkpoint, source_digest
from emg_lens.config import EncoderConfig, config_for_data
from emg_lens.data.preprocess import SubjectData
from emg_lens.edges import parse
from emg_lens.errors import (
    ConfigError,
    DataFormatError,
    SpecError,
    check_seed,
    fields_checked,
)
from emg_lens.models.base import HookedBiosignalModel
from emg_lens.train.baseline import feature_baseline
from emg_lens.train.loop import check_finite_loss, check_finite_weights
from emg_lens.train.reuse import TrainedEntry
from emg_lens.train.schedule import check_schedule_fields

PROGRESS_SECONDS = 5.0
"""Without a progress bar, a training given ``report`` says how far it is after its first
epoch and then at least this often (a log on a busy machine must not stay silent for minutes)."""


@fields_checked
@dataclass(frozen=True)
class TrainConfig:
    """Optimiser and schedule. Defaults are the paper's where it gives them."""

    epochs: int = 40
    batch_size: int = 64
    lr: float = 4e-5  # AdamW, as in the paper; the CPU demo uses a larger one
    weight_decay: float = 0.01
    anneal_fraction: float = 0.5  # T_anneal as a fraction of all optimiser steps
    grad_clip: float | None = 1.0
    seed: int = 0
    progress: bool = True  # a tqdm bar per model
    # Attention-edge dropout: each window has `dropout_edges` cut in every layer with this
    # probability, so the model learns to do without them where it can (0 = off, as the paper)
    edge_dropout: float = 0.0
    dropout_edges: str = "cross_modal"
    # A model left on a plateau is trained again from other seeds (`fit_until_fitted`): the
    # demo's planted XOR leaves a few models in ten with one of its two bits unlearned.
    refits: int = 0
    refit_below: float = 0.9

    def __post_init__(self) -> None:
        check_schedule_fields(self)  # types (NaN or inf trains to NaN), ranges, seed, ...
        try:
            parse(self.dropout_edges)
        except SpecError as exc:
            raise ConfigError(f"TrainConfig.dropout_edges: {exc}") from exc


@checked
@dataclass
class TrainResult:
    """Mean training loss per epoch and the last λ."""

    epoch_loss: list[float] = field(default_factory=list)
    final_lambda: float = 1.0
    steps: int = 0


@checked
def anneal_weight(step: int, anneal_steps: int) -> float:
    """λ(t) = min(1, t / T_anneal); T_anneal = 0 means the CLS loss from the start.

    >>> [anneal_weight(t, 4) for t in (0, 2, 4, 8)]
    [0.0, 0.5, 1.0, 1.0]
    """
    return 1.0 if anneal_steps <= 0 else min(1.0, step / anneal_steps)


@checked
def dual_head_loss(
    cls_logits: Float[torch.Tensor, "batch n_classes"],
    avg_logits: Float[torch.Tensor, "batch n_classes"],
    labels: Int[torch.Tensor, " batch"],
    lam: float,
) -> torch.Tensor:
    """``λ · CE(cls_logits) + (1 − λ) · CE(avg_logits)``.

    >>> logits = torch.tensor([[2.0, 0.0]])
    >>> y = torch.tensor([0])
    >>> float(dual_head_loss(logits, logits, y, 0.3)) == float(F.cross_entropy(logits, y))
    True
    """
    return lam * F.cross_entropy(cls_logits, labels) + (1 - lam) * F.cross_entropy(
        avg_logits, labels
    )


@checked
def fit(
    model: HookedBiosignalModel,
    X: Float[np.ndarray, "n channel time"],
    y: Int[np.ndarray, " n"],
    cfg: TrainConfig = TrainConfig(),
    *,
    desc: str = "train",
    edge_masks: dict[int, torch.Tensor] | None = None,
    report: Callable[[str], None] | None = None,
    reuse: bool = False,
) -> TrainResult:
    """Train ``model`` in place on windows ``X`` with class indices ``y``; returns the history.

    ``edge_masks`` (``{layer: bool [head, query, key]}``, as ``model.forward`` takes them) are
    applied in every step; with ``cfg.edge_dropout`` > 0 each window also has
    ``cfg.dropout_edges`` cut with that probability. A NaN or inf loss or weight is a
    `StudyError` naming ``desc`` and the epoch. ``report``, when there is no bar, gets a line
    after the first epoch and then every `PROGRESS_SECONDS` or so. ``reuse``: read this very
    training where it was done before (`emg_lens.train.reuse`), and keep it for the next time.

    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0))
    >>> X = np.random.default_rng(0).standard_normal((32, 6, 8)).astype(np.float32)
    >>> y = np.arange(32) % 4
    >>> result = fit(model, X, y, TrainConfig(epochs=2, lr=1e-3, progress=False))
    >>> len(result.epoch_loss), result.steps
    (2, 2)
    """
    if len(classes := np.unique(np.asarray(y))) < 2:
        raise DataFormatError(
            f"{desc}: the training windows hold one class only ({classes}): check the split"
        )
    X_t = torch.as_tensor(X, dtype=model.cfg.dtype)
    y_t = torch.as_tensor(y, dtype=torch.long)
    kept = TrainedEntry.of(model, X_t, y_t, cfg, edge_masks) if reuse else None
    if kept is not None and (history := kept.read(model, asdict(TrainResult()))) is not None:
        if report is not None:
            report(f"{desc}: the same training was done before; its weights read from {kept.path}")
        model.eval()
        return TrainResult(**history)
    torch.manual_seed(cfg.seed)  # dropout draws from the global generator
    order_gen = torch.Generator().manual_seed(cfg.seed)
    device = model.cfg.device
    n = len(X_t)
    steps_per_epoch = -(-n // cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    anneal_steps = int(cfg.anneal_fraction * total)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    dropout = _EdgeDropout(model, cfg) if cfg.edge_dropout > 0 else None
    result = TrainResult()
    model.train()
    bar = tqdm(total=total, desc=desc, disable=not cfg.progress, leave=False)
    say = report if report is not None and not cfg.progress else None
    started = last_said = time.monotonic()
    try:
        for epoch in range(cfg.epochs):
            perm = torch.randperm(n, generator=order_gen)
            losses = []
            for i in range(0, n, cfg.batch_size):
                idx = perm[i : i + cfg.batch_size]
                xb, yb = X_t[idx].to(device), y_t[idx].to(device)
                lam = anneal_weight(result.steps, anneal_steps)
                masks = edge_masks if dropout is None else dropout.masks(len(xb), edge_masks)
                loss = _loss(model, xb, yb, lam, masks)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                losses.append(loss.item())
                step = f"step {result.steps + 1}"
                check_finite_loss(losses[-1], desc, epoch, cfg.epochs, step)
                result.steps += 1
                result.final_lambda = lam
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3f}", lam=f"{lam:.2f}")
            check_finite_weights(model, desc, epoch, cfg.epochs)
            result.epoch_loss.append(float(np.mean(losses)))
            now = time.monotonic()
            if say is not None and (epoch == 0 or now - last_said >= PROGRESS_SECONDS):
                last_said = now
                say(
                    f"{desc}: epoch {epoch + 1} of {cfg.epochs}, loss "
                    f"{result.epoch_loss[-1]:.3f}, {now - started:.0f} s"
                )
    finally:
        bar.close()
        model.eval()
    if kept is not None:
        kept.write(model, asdict(result))
    return result


class _EdgeDropout:
    """Per-window masks that cut ``cfg.dropout_edges`` in every layer with probability
    ``cfg.edge_dropout``, merged with any fixed ``edge_masks``."""

    def __init__(self, model: HookedBiosignalModel, cfg: TrainConfig):
        self.n_layers, self.p = model.cfg.n_layers, cfg.edge_dropout
        self.mask = parse(cfg.dropout_edges).compile(
            model.layout, model.cfg.n_heads, device=model.cfg.device
        )  # [head, query, key]
        self.gen = torch.Generator().manual_seed(cfg.seed + 1)

    def masks(self, batch: int, fixed: dict[int, torch.Tensor] | None) -> dict[int, torch.Tensor]:
        drop = (torch.rand(batch, generator=self.gen) < self.p).to(self.mask.device)
        cut = self.mask[None] & drop[:, None, None, None]  # [batch, head, query, key]
        fixed = fixed or {}
        return {
            layer: cut | fixed[layer].to(cut.device) if layer in fixed else cut
            for layer in range(self.n_layers)
        }


def _loss(
    model: HookedBiosignalModel, xb: torch.Tensor, yb: torch.Tensor, lam: float, edge_masks
) -> torch.Tensor:
    if getattr(model, "dual_head", False):
        cls_logits, avg_logits = model(xb, return_type="both", edge_masks=edge_masks)
        return dual_head_loss(cls_logits, avg_logits, yb, lam)
    return F.cross_entropy(model(xb, edge_masks=edge_masks), yb)


@torch.inference_mode()
@checked
def predict(
    model: HookedBiosignalModel,
    X: Float[np.ndarray | torch.Tensor, "n channel time"],
    batch_size: int = 512,
    **kwargs,
) -> Int[np.ndarray, " n"]:
    """Predicted class index per window of ``X`` (an array or a tensor; extra keyword arguments
    go to ``model.forward``)."""
    model.eval()
    out = []
    for i in range(0, len(X), batch_size):
        xb = torch.as_tensor(X[i : i + batch_size], dtype=model.cfg.dtype, device=model.cfg.device)
        out.append(model(xb, **kwargs).argmax(-1).cpu())
    return torch.cat(out).numpy()


@checked
def accuracy(
    model: HookedBiosignalModel, X: np.ndarray | torch.Tensor, y: np.ndarray, **kwargs
) -> float:
    """Fraction of windows classified correctly (``X`` an array or a tensor, as `predict`)."""
    return float((predict(model, X, **kwargs) == np.asarray(y)).mean())


REFIT_SEED_STEP = 1000
"""A refit's seeds: the model's and the training's seed plus this, times the attempt."""


def training_fit(model: HookedBiosignalModel, X: np.ndarray, y: np.ndarray) -> float:
    """Accuracy on the training windows ``X``: the lowest over the model's heads (IsoNet's CLS
    and mean-pooled heads), so that a head a study may score is not left on a plateau."""
    heads = ("logits", "avg_logits") if getattr(model, "dual_head", False) else ("logits",)
    return min(accuracy(model, X, y, return_type=head) for head in heads)


@checked
def fit_until_fitted(
    model_cls: type[HookedBiosignalModel],
    model_cfg: EncoderConfig,
    data: SubjectData,
    train_cfg: TrainConfig,
    *,
    desc: str = "train",
    report: Callable[[str], None] | None = None,
    reuse: bool = False,
) -> tuple[HookedBiosignalModel, TrainResult, list[dict]]:
    """Train a ``model_cls`` of ``model_cfg`` on ``data``'s training windows with `fit`; where
    its `training_fit` is below ``train_cfg.refit_below``, train it again from another
    initialisation and data order (both seeds + `REFIT_SEED_STEP` per attempt), up to
    ``train_cfg.refits`` more times. Returns the best-fitted model (the first of equals), its
    history and every attempt's ``{model_seed, train_seed, training_fit}``. The test windows
    are never looked at. ``reuse``: each attempt's `fit` reads a training done before.

    >>> from emg_lens.data import SubjectData
    >>> from emg_lens.models import IsoNet
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((32, 6, 8)).astype(np.float32)
    >>> y, rep = np.arange(32) % 2, np.arange(32) // 8
    >>> data = SubjectData(1, {"emg": 3, "acc": 3}, [0, 1], X, y, rep, X[:4], y[:4], rep[:4])
    >>> cfg = config_for_data(IsoNet, "tiny", data.modalities, 2, 8, seed=0)
    >>> train = TrainConfig(epochs=1, lr=1e-3, progress=False, refits=1, refit_below=1.0)
    >>> model, history, attempts = fit_until_fitted(IsoNet, cfg, data, train)
    >>> [(a["model_seed"], a["train_seed"]) for a in attempts]
    [(0, 0), (1000, 1000)]
    """
    best, attempts = None, []
    seed = check_seed(model_cfg.seed, "EncoderConfig.seed")  # set: each attempt adds to it
    for attempt in range(train_cfg.refits + 1):
        step = REFIT_SEED_STEP * attempt
        cfg = dataclasses.replace(model_cfg, seed=seed + step)
        train = dataclasses.replace(train_cfg, seed=train_cfg.seed + step)
        model = model_cls(cfg)
        history = fit(
            model, data.X_train, data.y_train, train, desc=desc, report=report, reuse=reuse
        )
        fitted = training_fit(model, data.X_train, data.y_train)
        attempts.append({"model_seed": cfg.seed, "train_seed": train.seed, "training_fit": fitted})
        if best is None or fitted > best[2]:
            best = (model, history, fitted)
        if fitted >= train_cfg.refit_below:
            break
        if attempt < train_cfg.refits and report is not None:
            report(
                f"{desc}: training accuracy {fitted:.3f} (its lowest head) is below "
                f"{train_cfg.refit_below}: a plateau; training again from another "
                f"initialisation ({attempt + 2} of {train_cfg.refits + 1})"
            )
    assert best is not None  # the first attempt sets it
    model, history, _ = best
    return model, history, attempts


@checked
def train_subjects(
    subjects: list[SubjectData],
    model_cls: type[HookedBiosignalModel],
    model_cfg: str | EncoderConfig,
    train_cfg: TrainConfig,
    out_dir: str | Path,
    *,
    data_source: dict | None = None,
    device: str | None = None,
    report: Callable[[str], None] | None = None,
    reuse: bool = False,
) -> list[dict]:
    """Train one model per subject, save each as ``out_dir/subject_<N>/``, and return rows of
    ``{subject, train_accuracy, test_accuracy, baseline_accuracy, threads, attempts,
    checkpoint}`` (``threads``: torch's CPU threads, since results can differ in the last bits
    with it; ``baseline_accuracy``: `emg_lens.train.baseline.feature_baseline` on the same
    split). ``model_cfg`` is a preset name (built by `config_for_data`, seeded with
    ``train_cfg.seed``) or a config. ``data_source`` is stored in every checkpoint, so
    evaluation and studies need nothing else. ``device``: where the models train (the
    checkpoints hold CPU tensors). ``report`` and ``reuse``: as `fit`'s."""
    out_dir = Path(out_dir)
    rows = []
    overrides: dict[str, Any] = {"seed": train_cfg.seed} if isinstance(model_cfg, str) else {}
    if device is not None:
        overrides["device"] = device
    for i, data in enumerate(tqdm(subjects, desc="subjects", disable=not train_cfg.progress), 1):
        started = time.monotonic()
        which = f"subject {data.subject} ({i} of {len(subjects)})"
        if report is not None:
            report(
                f"{which}: training {model_cls.__name__}, {train_cfg.epochs} epochs on "
                f"{len(data.X_train)} windows"
            )
        names = data.meta.get("channel_names")  # the data's own names, where it has them
        cfg = config_for_data(
            model_cls,
            model_cfg,
            data.modalities,
            data.n_classes,
            data.X_train.shape[-1],
            **overrides,
            **({"channel_names": list(names)} if names is not None else {}),
        )
        desc = f"subject {data.subject}"
        model, history, attempts = fit_until_fitted(
            model_cls, cfg, data, train_cfg, desc=desc, report=report, reuse=reuse
        )
        baseline = feature_baseline(data)  # the same windows, a linear model of each channel
        row = {
            "subject": data.subject,
            "train_accuracy": accuracy(model, data.X_train, data.y_train),
            "test_accuracy": accuracy(model, data.X_test, data.y_test),
            "baseline_accuracy": baseline.value,
            "threads": torch.get_num_threads(),
            "attempts": len(attempts),
        }
        path = out_dir / f"subject_{data.subject}"
        save_checkpoint(
            model,
            path,
            metadata={
                "subject": data.subject,
                "classes": data.classes,
                "data_source": data_source,
                "data_digest": None
                if data_source is None
                else source_digest(data_source, data.subject),
                "preprocess": data.meta.get("preprocess"),
                "train": asdict(train_cfg),
                "epoch_loss": history.epoch_loss,
                "metrics": {k: row[k] for k in ("train_accuracy", "test_accuracy")},
                "baseline": baseline.to_dict(),
                "threads": row["threads"],
                "attempts": attempts,
                # emg_lens.data.placement: whether the held-out electrodes moved, and were put back
                **{k: data.meta[k] for k in ("placement_check",) if k in data.meta},
            },
        )
        rows.append({**row, "checkpoint": str(path)})
        if report is not None:
            report(
                f"{which} trained in {time.monotonic() - started:.0f} s, test accuracy "
                f"{row['test_accuracy']:.3f} (per-channel feature baseline {baseline.value:.3f})"
            )
    text = json.dumps(rows, indent=2)
    atomic_write(out_dir / "training.json", lambda tmp: tmp.write_text(text))
    return rows
