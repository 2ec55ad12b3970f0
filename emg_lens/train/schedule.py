"""Optimiser plumbing shared by the training recipes: warm-up + cosine learning rates (from
``lr_min``, where BioFoundation starts its warm-up too), layer-wise learning-rate decay, early
stopping, and the checks of the schedule fields the recipe configs share."""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from emg_lens._hints import checked
from emg_lens.components.layer_norm import LayerNorm
from emg_lens.errors import (
    ArgumentError,
    ConfigError,
    check_choice,
    check_field_types,
    check_int,
    check_number,
    check_seed,
)
from emg_lens.models.base import HookedBiosignalModel

TOKENS = ("mask_token", "cls_token")  # learned tokens: never pulled towards zero


@checked
def warmup_cosine_lr(
    step: int, *, total_steps: int, warmup_steps: int, lr_max: float, lr_min: float
) -> float:
    """Learning rate at optimiser step ``step`` (0-based): ``lr_min -> lr_max`` linearly over
    ``warmup_steps`` steps, then ``lr_max -> lr_min`` along a half cosine that reaches
    ``lr_min`` at ``total_steps``.

    >>> [warmup_cosine_lr(s, total_steps=10, warmup_steps=2, lr_max=1.0, lr_min=0.0)
    ...  for s in (0, 1, 2, 6, 10)]
    [0.0, 0.5, 1.0, 0.5, 0.0]
    """
    if step < warmup_steps:
        return lr_min + (lr_max - lr_min) * step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return lr_min + 0.5 * (lr_max - lr_min) * (1.0 + math.cos(math.pi * progress))


@checked
def warmup_cosine_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    warmup_steps: int,
    lr_max: float,
    lr_min: float,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step scheduler that scales every parameter group by
    ``warmup_cosine_lr(step) / lr_max``: a group built with ``lr = scale * lr_max`` (layer-wise
    decay) follows ``scale * lr_min -> scale * lr_max -> scale * lr_min``.

    >>> opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
    >>> sched = warmup_cosine_scheduler(opt, total_steps=3, warmup_steps=1, lr_max=2.0,
    ...                                 lr_min=0.0)
    >>> lrs = []
    >>> for _ in range(3):
    ...     lrs.append(opt.param_groups[0]["lr"]); opt.step(); sched.step()
    >>> lrs
    [0.0, 2.0, 1.0]
    """
    if not 0 <= lr_min <= lr_max or lr_max <= 0:
        raise ArgumentError(f"need 0 <= lr_min <= lr_max and lr_max > 0, got {lr_min}, {lr_max}")
    if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
        raise ArgumentError(
            f"need total_steps >= 1 and 0 <= warmup_steps <= total_steps, got "
            f"{total_steps} and {warmup_steps}"
        )

    bounds = {"total_steps": total_steps, "warmup_steps": warmup_steps}
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: warmup_cosine_lr(step, **bounds, lr_max=lr_max, lr_min=lr_min) / lr_max,
    )


def layer_of(name: str, n_layers: int) -> int:
    """Depth of a `HookedEncoder` parameter for layer-wise decay: ``blocks.{l}.*`` is ``l + 1``,
    ``ln_final`` and heads (``*head``) ``n_layers + 1``, everything else (embeddings) 0.

    >>> [layer_of(n, 4) for n in ("embed.W_E", "mask_token", "blocks.3.attn.W_Q", "head.W_U")]
    [0, 0, 4, 5]
    """
    if match := re.match(r"blocks\.(\d+)\.", name):
        return int(match.group(1)) + 1
    top = name.split(".", 1)[0]
    if top == "ln_final" or top.endswith("head"):
        return n_layers + 1
    return 0


def uses_weight_decay(module: nn.Module, leaf: str) -> bool:
    """Weight decay applies to weight matrices only: not to biases (``b_*``), LayerNorm
    parameters, nor learned tokens (``mask_token``, ``cls_token``).

    >>> from emg_lens.config import EncoderConfig
    >>> ln = LayerNorm(EncoderConfig.preset("tiny"))
    >>> uses_weight_decay(ln, "w"), uses_weight_decay(nn.Module(), "W_Q")
    (False, True)
    """
    return not (isinstance(module, LayerNorm) or leaf.startswith("b_") or leaf in TOKENS)


@checked
def layerwise_param_groups(
    model: HookedBiosignalModel, lr: float, *, weight_decay: float, layer_decay: float = 1.0
) -> list[dict[str, Any]]:
    """AdamW parameter groups with layer-wise learning-rate decay (BEiT style).

    With ``n = model.cfg.n_layers``, a parameter at depth ``d`` (`layer_of`) gets
    ``lr * layer_decay ** (n + 1 - d)``: the head ``lr``, the embeddings
    ``lr * layer_decay ** (n + 1)``. Parameters that `uses_weight_decay` exempts get weight
    decay 0; frozen ones are left out. Each group also holds ``names`` and ``lr_scale``.

    >>> from emg_lens.config import EncoderConfig
    >>> from emg_lens.models import TinyMyo
    >>> cfg = EncoderConfig.preset("tinymyo", n_layers=2, modalities={"emg": 2}, n_samples=40)
    >>> groups = layerwise_param_groups(TinyMyo(cfg), 1.0, weight_decay=0.01, layer_decay=0.5)
    >>> sorted({g["lr"] for g in groups})
    [0.125, 0.25, 0.5, 1.0]
    """
    check_number(layer_decay, "layer_decay", "a number in (0, 1]", lambda v: 0 < v <= 1)
    n_layers = model.cfg.n_layers
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for module_name, module in model.named_modules():
        for leaf, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            name = f"{module_name}.{leaf}" if module_name else leaf
            depth, decays = layer_of(name, n_layers), uses_weight_decay(module, leaf)
            scale = layer_decay ** (n_layers + 1 - depth)
            group = groups.setdefault(
                (depth, decays),
                {
                    "params": [],
                    "names": [],
                    "lr": lr * scale,
                    "lr_scale": scale,
                    "weight_decay": weight_decay if decays else 0.0,
                },
            )
            group["params"].append(param)
            group["names"].append(name)
    return [groups[key] for key in sorted(groups)]


@checked
class EarlyStopping:
    """Stop when a validation metric has not improved for ``patience`` evaluations, and keep
    (a CPU copy of) the weights of the best one.

    >>> model = nn.Linear(1, 1)
    >>> stopper = EarlyStopping(patience=2, mode="max")
    >>> [stopper.update(acc, model) for acc in (0.5, 0.7, 0.6, 0.6)]
    [False, False, False, True]
    >>> stopper.best, stopper.best_index
    (0.7, 1)
    """

    def __init__(self, patience: int, *, mode: str = "max", min_delta: float = 0.0):
        patience = check_int(patience, "patience", minimum=1)
        check_choice(mode, ("max", "min"), "mode")
        self.patience, self.mode, self.min_delta = patience, mode, min_delta
        self.best: float | None = None
        self.best_index = -1
        self.best_state: dict[str, torch.Tensor] | None = None
        self._seen = 0

    def improved(self, metric: float) -> bool:
        """Whether ``metric`` beats the best so far by more than ``min_delta``."""
        if self.best is None:
            return True
        gain = metric - self.best if self.mode == "max" else self.best - metric
        return gain > self.min_delta

    def update(self, metric: float, model: nn.Module) -> bool:
        """Record one evaluation; True when training should stop now."""
        if self.improved(metric):
            self.best, self.best_index = metric, self._seen
            self.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        self._seen += 1
        return self._seen - 1 - self.best_index >= self.patience

    def restore(self, model: nn.Module) -> None:
        """Load the best weights seen into ``model`` (a no-op before any `update`)."""
        if self.best_state is not None:
            model.load_state_dict(copy.deepcopy(self.best_state))


def check_schedule_fields(cfg: Any) -> None:
    """Validate the fields of a training config (``epochs, batch_size, lr, weight_decay,
    grad_clip``, and those of ``seed, accumulate_steps`` and `SCHEDULE_FIELDS` that ``cfg``
    has), after `check_field_types`, naming the field at fault."""
    check_field_types(cfg)
    name = type(cfg).__name__
    if hasattr(cfg, "seed"):
        check_seed(cfg.seed, f"{name}.seed")
    for field in ("epochs", "batch_size", "accumulate_steps"):
        if hasattr(cfg, field):
            check_int(getattr(cfg, field), f"{name}.{field}", 1, error=ConfigError)
    for field, (wanted, ok) in SCHEDULE_FIELDS.items():
        if hasattr(cfg, field) and not ok(value := getattr(cfg, field), cfg):
            raise ConfigError(f"{name}.{field} must be {wanted.format(cfg=cfg)}, got {value!r}")


SCHEDULE_FIELDS: dict[str, tuple[str, Callable[[Any, Any], bool]]] = {
    "lr": ("> 0", lambda v, cfg: v > 0),
    "min_lr": ("in [0, lr={cfg.lr}]", lambda v, cfg: 0 <= v <= cfg.lr),
    "warmup_epochs": (
        "an int in [0, epochs={cfg.epochs}) so the cosine phase is not empty",
        lambda v, cfg: 0 <= v < cfg.epochs,
    ),
    "weight_decay": (">= 0", lambda v, cfg: v >= 0),
    "visible_weight": (">= 0", lambda v, cfg: v >= 0),
    "betas": ("two numbers in [0, 1)", lambda v, cfg: len(v) == 2 and all(0 <= b < 1 for b in v)),
    "grad_clip": ("> 0 or None", lambda v, cfg: v is None or v > 0),
    "refits": ("an int >= 0", lambda v, cfg: v >= 0),
    "anneal_fraction": ("in [0, 1]", lambda v, cfg: 0 <= v <= 1),
    "edge_dropout": ("in [0, 1)", lambda v, cfg: 0 <= v < 1),
    "refit_below": (
        "in (0, 1] (the training accuracy under which a model is trained again)",
        lambda v, cfg: 0 < v <= 1,
    ),
    "layer_decay": ("in (0, 1]", lambda v, cfg: 0 < v <= 1),
    "label_smoothing": ("in [0, 1)", lambda v, cfg: 0 <= v < 1),
    "drop_path": ("in [0, 1)", lambda v, cfg: 0 <= v < 1),
    "mask_ratio": ("in (0, 1)", lambda v, cfg: 0 < v < 1),
}
"""What `check_schedule_fields` accepts of each range-bound field a training config has (its
type checked first): the words its message says (``{cfg.lr}``: the config's field) and the
test."""
