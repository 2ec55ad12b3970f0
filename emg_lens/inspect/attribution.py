"""Direct attribution: how much each head, MLP and embedding writes into the correct-class
logit, read through the classification head.

A linear readout makes the logits ``sum_p ln_final(resid)[p] @ R[p] + b_U`` with each model's
*readout map* ``R`` (`readout_map`, the `emg_lens.models.base.LINEAR_READOUT` capability); a
model without one, or with post-LN blocks, has no attribution. The final stream is a sum of
components (TransformerLens's ``decompose_resid`` and ``stack_head_results``, plus each layer's
``b_O``), each scaled by the cached ``ln_final`` scale and read along ``u = R[..., label]``;
with the LayerNorm and unembedding biases they add up to the logit exactly.
``direction="logit_diff"`` (the default) reads ``u`` minus its mean over classes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from einops import einsum, rearrange, repeat
from jaxtyping import Float
from transformer_lens import ActivationCache

from emg_lens.components.layer_norm import LayerNorm
from emg_lens.errors import ArgumentError, InputShapeError, check_choice, checked, describe
from emg_lens.inputs import check_model
from emg_lens.inspect.checks import check_cache
from emg_lens.models.base import LINEAR_READOUT, TL_WEIGHTS, provides, require

DIRECTIONS = ("logit_diff", "logit")
HEADS = {"cls": "logits", "avg": "avg_logits"}
"""The classifier heads attribution reads, by the ``return_type`` that gives their logits:
``"cls"`` the scored one (every model's), ``"avg"`` IsoNet's mean-pooled one."""


@checked
def readout_map(
    model: Any, *, head: str = "cls"
) -> tuple[Float[torch.Tensor, "pos d_model n_classes"], Float[torch.Tensor, " n_classes"]]:
    """``(R, b_U)`` with ``logits = sum_p ln_final(resid)[p] @ R[p] + b_U`` (see the module
    docstring), for a pre-LN model. ``head`` picks IsoNet's ``"cls"`` or ``"avg"`` head.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0))
    >>> R, b_U = readout_map(model)
    >>> resid = model(model.example_input(2), return_type=None)
    >>> logits = einsum(model.ln_final(resid), R, "b p d, p d c -> b c") + b_U
    >>> torch.allclose(logits, model.readout(resid, "logits"), atol=1e-6)
    True
    """
    check_model(model)
    require(model, TL_WEIGHTS, "readout_map")
    return_type = HEADS.get(head) if isinstance(head, str) else None
    if return_type not in model.readout_heads:
        raise ArgumentError(f"head must be 'cls' (or 'avg' for IsoNet), got {head!r}")
    task = f" (task={model.task!r})" if model.head_tasks else ""
    why = (
        f"direct attribution needs a linear classifier after ln_final (IsoNet, "
        f"TinyMyo(task='classification'), HierarchicalTransformer, or a model with a "
        f"TransformerLens unembedding); got {type(model).__name__}{task}"
    )
    if model.cfg.norm_position != "pre":
        raise ArgumentError(f"{why}, whose post-LN blocks make the stream no sum of components")
    if not provides(model, LINEAR_READOUT):
        raise ArgumentError(f"{why}: {model.lacks(LINEAR_READOUT)}")
    return model.readout_map(return_type)


@checked
def attribution_hooks(model: Any) -> list[str]:
    """The activations `direct_attribution` reads: pass them as ``names_filter`` to cache only
    those (attention patterns, the largest activations, are not among them).

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> attribution_hooks(IsoNet(EncoderConfig.preset("tiny", n_layers=1)))[2:]
    ['blocks.0.attn.hook_z', 'blocks.0.hook_mlp_out', 'ln_final.hook_scale']
    """
    names = ["hook_embed", *(["hook_pos_embed"] if "hook_pos_embed" in model.hook_dict else [])]
    for layer in range(model.cfg.n_layers):
        names += [f"blocks.{layer}.attn.hook_z", f"blocks.{layer}.hook_mlp_out"]
    if isinstance(model.ln_final, LayerNorm):
        names.append("ln_final.hook_scale")
    return names


def _labels(labels: Any, batch: int, n_classes: int) -> torch.Tensor:
    array = np.asarray(labels.cpu() if torch.is_tensor(labels) else labels)
    if array.shape != (batch,) or array.dtype.kind not in "biu":  # not text, floats, objects
        got = describe(torch.as_tensor(array)) if array.dtype.kind in "biufc" else repr(labels)
        raise InputShapeError(
            f"labels must be integer class indices [batch={batch}] (one per cached window), "
            f"got {got}"
        )
    labels = torch.as_tensor(array)
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise ArgumentError(
            f"labels must be in [0, {n_classes - 1}], got {int(labels.min())}..{int(labels.max())}"
        )
    return labels.long()


def _components(cache: ActivationCache, model: Any, positions: list[int]):
    """The final residual stream at ``positions`` as a stack of components, with labels, kinds,
    layers and heads, in reading order (embeddings, then per layer: heads, b_O, MLP)."""
    resid, resid_labels = cache.decompose_resid(
        layer=-1, mode="mlp", pos_slice=positions, return_labels=True
    )
    heads, head_labels = cache.stack_head_results(layer=-1, pos_slice=positions, return_labels=True)
    n_embeds = len(resid_labels) - model.cfg.n_layers
    parts = [resid[:n_embeds]]
    meta: list[tuple[str, str, int | None, int | None]]
    meta = [(name, name, None, None) for name in resid_labels[:n_embeds]]
    n_heads = model.cfg.n_heads
    for layer in range(model.cfg.n_layers):
        parts.append(heads[layer * n_heads : (layer + 1) * n_heads])
        meta += [(head_labels[layer * n_heads + h], "head", layer, h) for h in range(n_heads)]
        bias = model.blocks[layer].attn.b_O.detach()
        parts.append(repeat(bias, "d -> 1 batch pos d", batch=resid.shape[1], pos=len(positions)))
        meta.append((f"L{layer} b_O", "attn_bias", layer, None))
        parts.append(resid[n_embeds + layer][None])
        meta.append((f"L{layer} mlp", "mlp", layer, None))
    return torch.cat(parts), meta


@torch.inference_mode()
@checked
def direct_attribution(
    model: Any,
    cache: ActivationCache,
    labels: Any,
    *,
    direction: str = "logit_diff",
    head: str = "cls",
) -> pd.DataFrame:
    """Per window: each component's direct contribution to the correct-class logit (or to
    the logit difference, see the module docstring), from a cache of ``model`` holding at
    least `attribution_hooks`.

    One row per (window, component): ``sample, label, component, kind, layer, head, value``,
    kinds ``embed``, ``pos_embed``, ``head`` (``L{l}H{h}``), ``attn_bias`` (``b_O``), ``mlp``,
    ``ln_bias`` and ``unembed_bias``; one window's values add up to its logit (difference).

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0))
    >>> logits, cache = model.run_with_cache(model.example_input(2))
    >>> table = direct_attribution(model, cache, [1, 3], direction="logit")
    >>> total = table.groupby("sample")["value"].sum()
    >>> bool(np.allclose(total, logits[[0, 1], [1, 3]].detach().numpy(), atol=1e-5))
    True
    """
    check_model(model)
    require(model, TL_WEIGHTS, "direct_attribution")
    check_choice(direction, DIRECTIONS, "direction")
    R, b_U = readout_map(model, head=head)
    check_cache(cache, model, attribution_hooks(model))
    ln = model.ln_final if isinstance(model.ln_final, LayerNorm) else None
    batch = cache["hook_embed"].shape[0]
    labels = _labels(labels, batch, model.cfg.n_classes).to(R.device)

    positions = [p for p in range(len(R)) if R[p].any()]  # tokens the classifier reads
    R = R[positions]
    if direction == "logit_diff":
        R, b_U = R - R.mean(-1, keepdim=True), b_U - b_U.mean()
    u = rearrange(R[..., labels], "pos d_model batch -> batch pos d_model")
    stack, meta = _components(cache, model, positions)
    if ln is not None:
        scaled = cache.apply_ln_to_stack(stack, layer=-1, pos_slice=positions) * ln.w.detach()
    else:  # no final norm (ln_final is the identity): the classifier reads the stream as is
        scaled = stack
    values = einsum(scaled, u, "comp batch pos d_model, batch pos d_model -> comp batch")
    if ln is not None:
        ln_bias = einsum(u, ln.b.detach(), "batch pos d_model, d_model -> batch")
    else:
        ln_bias = torch.zeros(batch, dtype=values.dtype, device=values.device)
    values = torch.cat([values, ln_bias[None], b_U[labels][None]]).cpu()
    meta += [("ln_final b", "ln_bias", None, None), ("b_U", "unembed_bias", None, None)]
    component, kind, layer, head_index = zip(*meta)
    n_comp = len(meta)
    return pd.DataFrame(
        {
            "sample": np.tile(np.arange(batch), n_comp),
            "label": np.tile(labels.cpu().numpy(), n_comp),
            "component": np.repeat(component, batch),
            "kind": np.repeat(kind, batch),
            "layer": pd.array(np.repeat(layer, batch), dtype="Int64"),
            "head": pd.array(np.repeat(head_index, batch), dtype="Int64"),
            "value": values.double().numpy().ravel(),
        }
    )
