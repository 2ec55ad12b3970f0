"""Hooks that ablate inputs or activations rather than attention edges.

`zero_modality` is the paper's input ablation (Table 2): it zeroes one modality's channels of
the (standardised) signal at ``hook_input``, so the model sees that sensor as silent at its
training mean. `mean_ablate` replaces an activation — optionally only at one token group's
positions — by its mean over a reference dataset (`mean_activations`).

>>> from emg_lens import EncoderConfig
>>> from emg_lens.models import IsoNet
>>> model = IsoNet(EncoderConfig.preset("tiny", seed=0))
>>> x = model.example_input(2)
>>> silenced = x.clone()
>>> silenced[:, :2] = 0  # the two emg channels of the tiny preset
>>> out = model.run_with_hooks(x, fwd_hooks=[("hook_input", zero_modality("emg", model))])
>>> torch.equal(out, model(silenced))
True
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from jaxtyping import Float
from transformer_lens.hook_points import HookPoint

from emg_lens.errors import LayoutError, checked
from emg_lens.hooks.masking import HookFn


@checked
def channel_range(modalities: dict[str, int], group: str) -> range:
    """Input-channel rows of one modality (channels are numbered in ``modalities`` order).

    >>> channel_range({"emg": 12, "acc": 36}, "acc")
    range(12, 48)
    """
    first = 0
    for name, count in modalities.items():
        if name == group:
            return range(first, first + count)
        first += count
    raise LayoutError(f"unknown modality {group!r}; the model has {list(modalities)}")


@checked
def zero_modality(group: str, model) -> HookFn:
    """Hook for ``hook_input`` that zeroes every channel of modality ``group``."""
    rows = channel_range(model.cfg.modalities, group)

    def hook(signals: Float[torch.Tensor, "batch channel time"], hook: HookPoint):
        if hook.name is not None and hook.name != "hook_input":
            raise LayoutError(f"zero_modality belongs at 'hook_input', not {hook.name!r}")
        out = signals.clone()
        out[:, rows.start : rows.stop] = 0.0
        return out

    return hook


@torch.inference_mode()
@checked
def mean_activations(
    model, X: np.ndarray | torch.Tensor, names: Iterable[str], batch_size: int = 256
) -> dict[str, torch.Tensor]:
    """Mean of each named activation over the windows ``X`` (the batch axis averaged out)."""
    names = list(names)
    missing = [name for name in names if name not in model.hook_dict]
    if missing:
        raise LayoutError(f"no hook point named {missing}; e.g. {list(model.hook_dict)[:4]}")
    sums: dict[str, torch.Tensor] = {}
    n = 0
    for i in range(0, len(X), batch_size):
        xb = torch.as_tensor(X[i : i + batch_size])
        _, cache = model.run_with_cache(xb, names_filter=names, return_type=None)
        for name in names:
            sums[name] = sums.get(name, 0) + cache[name].sum(0)
        n += len(xb)
    return {name: total / n for name, total in sums.items()}


@checked
def mean_ablate(mean: torch.Tensor, positions: Iterable[int] | None = None) -> HookFn:
    """Hook replacing an activation by ``mean`` (its dataset mean, without the batch axis),
    everywhere or only at token ``positions`` (axis 1, e.g. ``model.layout.positions("acc")``).
    """
    index = None if positions is None else torch.as_tensor(list(positions), dtype=torch.long)

    def hook(act: torch.Tensor, hook: HookPoint):
        if tuple(act.shape[1:]) != tuple(mean.shape):
            raise LayoutError(
                f"mean_ablate got a mean of shape {list(mean.shape)} for {hook.name!r}, whose "
                f"activation is {list(act.shape)}; was it computed at another hook point?"
            )
        fill = mean.to(act.device, act.dtype).expand_as(act)
        if index is None:
            return fill.clone()
        out = act.clone()
        out[:, index] = fill[:, index]
        return out

    return hook
