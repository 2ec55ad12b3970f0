"""BioFoundation's TinyMyo checkpoint format: its key layout, how its shapes say the
architecture, and the mapping to and from emg_lens's TinyMyo state dict.

BioFoundation's ``models/TinyMyo.py`` stores a fused ``blocks.{i}.attn.qkv`` (rows ``(3,
n_heads, d_head)``), a ``Conv2d`` patch embedding ``[d_model, 1, 1, patch]``, ``norm1``/``norm2``
/``norm`` LayerNorms, ``mlp.fc1``/``fc2`` and one of three heads under ``model_head.``. This
module knows only that format and a model's attributes; `TinyMyo.from_biofoundation` and
`TinyMyo.to_biofoundation` are the public entry points, and `emg_lens.checkpoints` reads the
files (``.safetensors``, or pickled ``.ckpt`` / ``.pt`` with ``weights_only=True``).

>>> sd = {"patch_embedding.patch_embed.proj.weight": torch.zeros(192, 1, 1, 20),
...       "blocks.0.mlp.fc1.weight": torch.zeros(768, 192),
...       "model_head.decoder_pred.weight": torch.zeros(20, 192)}
>>> arch = infer_architecture(sd, n_heads=3, n_channels=16, reduction=None)
>>> arch["task"], arch["d_model"], arch["patch_samples"], arch["d_mlp"]
('reconstruction', 192, 20, 768)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from emg_lens.config import EncoderConfig
from emg_lens.errors import ArgumentError, CheckpointError, check_int, describe

__all__ = [
    "HEAD_KEYS",
    "REDUCTIONS",
    "ROPE_POSITIONS",
    "build_from_biofoundation",
    "from_biofoundation_keys",
    "infer_architecture",
    "strip_prefix",
    "to_biofoundation_keys",
]

# How BioFoundation's heads merge channels (EMGClassificationHead, EMGRegressionHead).
REDUCTIONS = ("concat", "mean")
# Where the loaded model's rotary angle comes from: the token index ("token"), or, as
# BioFoundation's code computes it, the head index, which cancels in every score ("head")
ROPE_POSITIONS = ("token", "head")


def to_biofoundation_keys(model: Any) -> dict[str, torch.Tensor]:
    """A TinyMyo's weights in BioFoundation's key layout and shapes (`TinyMyo.to_biofoundation`)."""
    cfg = model.cfg
    d, h, dh = cfg.d_model, cfg.n_heads, cfg.d_head
    out: dict[str, torch.Tensor] = {
        "mask_token": model.mask_token.reshape(1, 1, d),
        "patch_embedding.patch_embed.proj.weight": model.embed.W_E.T.reshape(d, 1, 1, -1),
        "patch_embedding.patch_embed.proj.bias": model.embed.b_E,
    }
    for i, block in enumerate(model.blocks):
        attn, mlp, p = block.attn, block.mlp, f"blocks.{i}."
        W_qkv = torch.stack((attn.W_Q, attn.W_K, attn.W_V))  # [3, h, d_model, d_head]
        b_qkv = torch.stack((attn.b_Q, attn.b_K, attn.b_V))  # [3, h, d_head]
        out |= {
            p + "norm1.weight": block.ln1.w,
            p + "norm1.bias": block.ln1.b,
            p + "attn.qkv.weight": W_qkv.permute(0, 1, 3, 2).reshape(3 * h * dh, d),
            p + "attn.qkv.bias": b_qkv.reshape(3 * h * dh),
            p + "attn.proj.weight": attn.W_O.reshape(h * dh, d).T,
            p + "attn.proj.bias": attn.b_O,
            p + "norm2.weight": block.ln2.w,
            p + "norm2.bias": block.ln2.b,
            p + "mlp.fc1.weight": mlp.W_in.T,
            p + "mlp.fc1.bias": mlp.b_in,
            p + "mlp.fc2.weight": mlp.W_out.T,
            p + "mlp.fc2.bias": mlp.b_out,
        }
    out["norm.weight"], out["norm.bias"] = model.ln_final.w, model.ln_final.b
    head = model.head
    if model.task == "reconstruction":
        out["model_head.decoder_pred.weight"] = head.W_U.T
        out["model_head.decoder_pred.bias"] = head.b_U
    elif model.task == "classification":
        out["model_head.classifier.weight"] = head.W_U.T
        out["model_head.classifier.bias"] = head.b_U
    else:
        out |= {
            "model_head.regressor.0.weight": head.W_in.T[:, :, None],
            "model_head.regressor.0.bias": head.b_in,
            "model_head.regressor.3.weight": head.W_dw[:, None, :],
            "model_head.regressor.3.bias": head.b_dw,
            "model_head.regressor.5.weight": head.W_out.T[:, :, None],
            "model_head.regressor.5.bias": head.b_out,
        }
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def from_biofoundation_keys(model: Any, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BioFoundation tensors (keys and shapes already checked) -> our state dict."""
    cfg = model.cfg
    d, h, dh = cfg.d_model, cfg.n_heads, cfg.d_head
    kw = {"dtype": cfg.dtype, "device": cfg.device}
    sd = {k: v.detach().to(**kw) for k, v in sd.items()}
    out = {
        "mask_token": sd["mask_token"].reshape(d),
        "embed.W_E": sd["patch_embedding.patch_embed.proj.weight"].reshape(d, -1).T,
        "embed.b_E": sd["patch_embedding.patch_embed.proj.bias"],
        "ln_final.w": sd["norm.weight"],
        "ln_final.b": sd["norm.bias"],
    }
    for i in range(cfg.n_layers):
        p = f"blocks.{i}."  # block prefixes are the same on both sides
        # Rows of the fused qkv weight are (3, n_heads, d_head); columns d_model.
        W_qkv = sd[p + "attn.qkv.weight"].reshape(3, h, dh, d).permute(0, 1, 3, 2)
        b_qkv = sd[p + "attn.qkv.bias"].reshape(3, h, dh)
        out |= {
            p + "ln1.w": sd[p + "norm1.weight"],
            p + "ln1.b": sd[p + "norm1.bias"],
            p + "attn.W_Q": W_qkv[0],
            p + "attn.W_K": W_qkv[1],
            p + "attn.W_V": W_qkv[2],
            p + "attn.b_Q": b_qkv[0],
            p + "attn.b_K": b_qkv[1],
            p + "attn.b_V": b_qkv[2],
            p + "attn.W_O": sd[p + "attn.proj.weight"].T.reshape(h, dh, d),
            p + "attn.b_O": sd[p + "attn.proj.bias"],
            p + "ln2.w": sd[p + "norm2.weight"],
            p + "ln2.b": sd[p + "norm2.bias"],
            p + "mlp.W_in": sd[p + "mlp.fc1.weight"].T,
            p + "mlp.b_in": sd[p + "mlp.fc1.bias"],
            p + "mlp.W_out": sd[p + "mlp.fc2.weight"].T,
            p + "mlp.b_out": sd[p + "mlp.fc2.bias"],
        }
    if model.task == "reconstruction":
        out["head.W_U"] = sd["model_head.decoder_pred.weight"].T
        out["head.b_U"] = sd["model_head.decoder_pred.bias"]
    elif model.task == "classification":
        out["head.W_U"] = sd["model_head.classifier.weight"].T
        out["head.b_U"] = sd["model_head.classifier.bias"]
    else:
        out |= {
            "head.W_in": sd["model_head.regressor.0.weight"][:, :, 0].T,
            "head.b_in": sd["model_head.regressor.0.bias"],
            "head.W_dw": sd["model_head.regressor.3.weight"][:, 0, :],
            "head.b_dw": sd["model_head.regressor.3.bias"],
            "head.W_out": sd["model_head.regressor.5.weight"][:, :, 0].T,
            "head.b_out": sd["model_head.regressor.5.bias"],
        }
    return {k: v.contiguous() for k, v in out.items()}


HEAD_KEYS = {
    "reconstruction": "model_head.decoder_pred.weight",
    "classification": "model_head.classifier.weight",
    "regression": "model_head.regressor.0.weight",
}


def strip_prefix(sd: dict[str, Any]) -> dict[str, Any]:
    """Drop a ``model.`` prefix that every key carries (PyTorch Lightning checkpoints)."""
    if sd and all(k.startswith("model.") for k in sd):
        return {k.removeprefix("model."): v for k, v in sd.items()}
    return sd


def _require(sd: dict[str, Any], key: str, ndim: int) -> torch.Tensor:
    if key not in sd:
        raise CheckpointError(
            f"BioFoundation TinyMyo state dict is missing key {key!r}, needed to infer the "
            f"architecture; it has {len(sd)} keys, e.g. {sorted(sd)[:5]}"
        )
    value = sd[key]
    if not isinstance(value, torch.Tensor) or value.ndim != ndim:
        raise CheckpointError(f"key {key!r} must be a {ndim}-d tensor, got {describe(value)}")
    return value


def _channels_from_width(width: int, d_model: int, key: str, n_channels: int | None) -> int:
    if width % d_model:
        raise CheckpointError(
            f"key {key!r} has input width {width}, which is neither d_model={d_model} ('mean') "
            "nor a multiple of it ('concat': n_channels * d_model)"
        )
    channels = width // d_model
    if n_channels is not None and n_channels != channels:
        raise CheckpointError(
            f"n_channels={n_channels} disagrees with key {key!r}, whose input width {width} = "
            f"{channels} channels x d_model={d_model}"
        )
    return channels


def infer_architecture(
    sd: dict[str, Any], n_heads: int, n_channels: int | None, reduction: str | None
) -> dict[str, Any]:
    """Task and sizes of a BioFoundation TinyMyo from its state dict's keys and shapes."""
    patch_w = _require(sd, "patch_embedding.patch_embed.proj.weight", 4)
    d_model, patch_samples = patch_w.shape[0], patch_w.shape[-1]
    if d_model % check_int(n_heads, f"n_heads (a divisor of d_model={d_model})", 1):
        raise ArgumentError(
            f"n_heads must be a positive divisor of d_model={d_model}, got {n_heads}"
        )
    if reduction is not None and reduction not in REDUCTIONS:
        raise ArgumentError(f"reduction must be one of {REDUCTIONS} or None, got {reduction!r}")
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))}
    if not layers:
        raise CheckpointError("BioFoundation TinyMyo state dict has no 'blocks.{i}.*' keys")
    fc1 = _require(sd, f"blocks.{min(layers)}.mlp.fc1.weight", 2)
    tasks = [task for task, key in HEAD_KEYS.items() if key in sd]
    if len(tasks) != 1:
        raise CheckpointError(
            "cannot tell the task: a BioFoundation TinyMyo state dict holds exactly one of "
            f"{sorted(HEAD_KEYS.values())}, this one holds {[HEAD_KEYS[t] for t in tasks]}"
        )
    arch: dict[str, Any] = {
        "task": tasks[0],
        "d_model": d_model,
        "patch_samples": patch_samples,
        "n_layers": max(layers) + 1,
        "d_mlp": fc1.shape[0],
        "reduction": reduction or "concat",
        "n_channels": n_channels if n_channels is not None else 16,
    }
    if arch["task"] == "reconstruction":
        return arch
    key = HEAD_KEYS[arch["task"]]
    weight = _require(sd, key, 2 if arch["task"] == "classification" else 3)
    width = weight.shape[1]
    if arch["task"] == "regression":
        arch["reg_hidden"] = weight.shape[0]
        arch["n_classes"] = _require(sd, "model_head.regressor.5.weight", 3).shape[0]
    else:
        arch["n_classes"] = weight.shape[0]
    if reduction is None:
        arch["reduction"] = "mean" if width == d_model else "concat"
    if arch["reduction"] == "concat":
        arch["n_channels"] = _channels_from_width(width, d_model, key, n_channels)
    elif width != d_model:
        raise CheckpointError(
            f"reduction='mean' needs key {key!r} to have input width d_model={d_model}, got {width}"
        )
    return arch


def build_from_biofoundation(
    cls: type,
    state_dict: Mapping[str, torch.Tensor],
    *,
    n_heads: int = 3,
    n_channels: int | None = None,
    n_samples: int = 1000,
    reduction: str | None = None,
    reg_target_len: int = 500,
    rope_positions: str = "head",
    **overrides: Any,
) -> Any:
    """Build ``cls`` (`emg_lens.models.TinyMyo`) from a BioFoundation ``models/TinyMyo.py``
    state dict (what `TinyMyo.from_biofoundation` calls).

    The task, ``d_model``, ``patch_samples``, ``n_layers``, ``d_mlp``, the number of
    classes/outputs and (for ``"concat"`` heads) the number of channels are read from the
    keys and shapes. What shapes cannot tell is an argument: ``n_heads`` (published 3),
    ``n_channels`` (for reconstruction and ``"mean"`` heads; published 16), ``n_samples``
    (published 1000) and ``reg_target_len`` (published 500). A PyTorch Lightning prefix
    ``model.`` on every key is stripped. ``overrides`` go to `EncoderConfig` (``device``,
    ``dtype``, ``sample_rate``, ...) and must not contradict the checkpoint.

    By default (``rope_positions="head"``) the model computes what BioFoundation's own code
    computes, which its released checkpoints were trained with: it calls torchtune's RoPE
    (expecting ``[b, s, n_h, h_d]``) on ``[b, n_h, s, h_d]`` tensors, so the angle follows the
    *head* index, cancels in each head's q.k products, and the scores are those of no RoPE:
    the model is built with ``positional_embedding_type="none"``. ``rope_positions="token"``
    rotates at the flattened token index, as the thesis describes the model: for weights
    trained with token RoPE, such as a `to_biofoundation` export of an emg_lens TinyMyo.

    Missing or unknown keys, and shapes that disagree, raise `CheckpointError` naming them.
    The model is returned in eval mode; `emg_lens.checkpoints.load_biofoundation` reads files.

    >>> cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 2}, n_samples=40)
    >>> from emg_lens.models import TinyMyo
    >>> source = TinyMyo(cfg, task="regression", reg_target_len=10)  # token RoPE
    >>> sd = source.to_biofoundation()
    >>> model = build_from_biofoundation(TinyMyo, sd, n_samples=40, reg_target_len=10,
    ...                                  rope_positions="token")
    >>> model.task, model.cfg.n_channels, model.cfg.n_layers
    ('regression', 2, 1)
    >>> x = source.example_input(2)
    >>> torch.allclose(model(x), source(x))
    True
    >>> as_biofoundation = TinyMyo.from_biofoundation(sd, n_samples=40, reg_target_len=10)
    >>> as_biofoundation.cfg.positional_embedding_type  # what BioFoundation's code computes
    'none'
    """
    sd = strip_prefix(dict(state_dict))
    if rope_positions not in ROPE_POSITIONS:
        raise ArgumentError(
            f"rope_positions must be one of {ROPE_POSITIONS}, got {rope_positions!r}"
        )
    arch = infer_architecture(sd, n_heads, n_channels, reduction)
    inferred: dict[str, Any] = {
        "d_model": arch["d_model"],
        "d_head": arch["d_model"] // n_heads,
        "n_heads": n_heads,
        "n_layers": arch["n_layers"],
        "d_mlp": arch["d_mlp"],
        "patch_samples": arch["patch_samples"],
        "modalities": {"emg": arch["n_channels"]},
        "n_samples": n_samples,
    }
    if "n_classes" in arch:  # classes (classification) or outputs (regression)
        inferred["n_classes"] = arch["n_classes"]
    if rope_positions == "head":
        inferred["positional_embedding_type"] = "none"
    clashes = {
        k: (v, inferred[k]) for k, v in overrides.items() if k in inferred and v != inferred[k]
    }
    if clashes:
        raise CheckpointError(
            f"EncoderConfig overrides contradict the checkpoint (override, checkpoint): {clashes}"
        )
    cfg = EncoderConfig.preset("tinymyo", **{**overrides, **inferred})
    model = cls(
        cfg,
        task=arch["task"],
        reduction=arch["reduction"],
        reg_hidden=arch.get("reg_hidden", 256),
        reg_target_len=reg_target_len,
    )
    expected = model.to_biofoundation()
    missing = sorted(set(expected) - set(sd))
    unknown = sorted(set(sd) - set(expected))
    if missing or unknown:
        raise CheckpointError(
            f"BioFoundation TinyMyo state dict does not fit the inferred architecture "
            f"(task={arch['task']!r}, n_layers={cfg.n_layers}, d_model={cfg.d_model}): "
            f"missing keys {missing}; unknown keys {unknown}"
        )
    bad = {
        k: (list(sd[k].shape), list(v.shape))
        for k, v in expected.items()
        if tuple(sd[k].shape) != tuple(v.shape)
    }
    if bad:
        raise CheckpointError(f"wrong shapes (got, expected) for keys: {bad}")
    model.load_state_dict(from_biofoundation_keys(model, sd), strict=True)
    return model.eval()  # a loaded model is for reading; TransformerLens patching needs eval
