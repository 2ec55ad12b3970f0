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
from emg_lens.errors import ArgumentError, CheckpointError, check_choice, check_int, describe
from emg_lens.models import key_table as keys

PATCH = "patch_embedding.patch_embed.proj"  # BioFoundation's patch embedding, a Conv2d
# How BioFoundation's heads merge channels (EMGClassificationHead, EMGRegressionHead).
REDUCTIONS = ("concat", "mean")
# Where the loaded model's rotary angle comes from: the token index ("token"), or, as
# BioFoundation's code computes it, the head index, which cancels in every score ("head")
ROPE_POSITIONS = ("token", "head")


HEAD_ROWS = {
    "reconstruction": keys.linear_rows("head", "model_head.decoder_pred", "W_U", "b_U"),
    "classification": keys.linear_rows("head", "model_head.classifier", "W_U", "b_U"),
    "regression": [  # Conv1d layers: kernel 1, then depthwise, then kernel 1
        keys.Row("head.W_in", "model_head.regressor.0.weight", keys.Unsqueezed((2,), True)),
        keys.Row("head.b_in", "model_head.regressor.0.bias"),
        keys.Row("head.W_dw", "model_head.regressor.3.weight", keys.Unsqueezed((1,))),
        keys.Row("head.b_dw", "model_head.regressor.3.bias"),
        keys.Row("head.W_out", "model_head.regressor.5.weight", keys.Unsqueezed((2,), True)),
        keys.Row("head.b_out", "model_head.regressor.5.bias"),
    ],
}


def key_table(cfg: EncoderConfig, task: str) -> keys.KeyTable:
    """emg_lens TinyMyo key <-> BioFoundation key, both ways (`KeyTable`), its rows in the
    published module's order (block prefixes are the same on both sides)."""
    rows = [
        keys.Row("mask_token", "mask_token", keys.Unsqueezed((0, 1))),
        keys.Row("embed.W_E", f"{PATCH}.weight", keys.Unsqueezed((1, 2), transpose=True)),
        keys.Row("embed.b_E", f"{PATCH}.bias"),
    ]
    for p in (f"blocks.{i}" for i in range(cfg.n_layers)):
        rows += [
            *keys.norm_rows((f"{p}.ln1", f"{p}.norm1")),
            *keys.qkv_rows(f"{p}.attn", f"{p}.attn.qkv.weight", cfg.n_heads),
            *keys.qkv_rows(f"{p}.attn", f"{p}.attn.qkv.bias", cfg.n_heads, bias=True),
            keys.Row(f"{p}.attn.W_O", f"{p}.attn.proj.weight", keys.HeadsOut(cfg.n_heads)),
            keys.Row(f"{p}.attn.b_O", f"{p}.attn.proj.bias"),
            *keys.norm_rows((f"{p}.ln2", f"{p}.norm2")),
            *keys.linear_rows(f"{p}.mlp", f"{p}.mlp.fc1"),
            *keys.linear_rows(f"{p}.mlp", f"{p}.mlp.fc2", "W_out", "b_out"),
        ]
    return keys.KeyTable([*rows, *keys.norm_rows(("ln_final", "norm")), *HEAD_ROWS[task]])


def to_biofoundation_keys(model: Any) -> dict[str, torch.Tensor]:
    """A TinyMyo's weights in BioFoundation's key layout, shapes and key order
    (`TinyMyo.to_biofoundation`)."""
    table = key_table(model.cfg, model.task)
    theirs = table.to_theirs(model.state_dict())
    return {key: theirs[key] for key in dict.fromkeys(row.theirs for row in table.rows)}


HEAD_KEYS = {task: rows[0].theirs for task, rows in HEAD_ROWS.items()}  # each head's first weight


def strip_prefix(sd: dict[str, Any]) -> dict[str, Any]:
    """Drop a ``model.`` prefix that every key carries (PyTorch Lightning checkpoints)."""
    if sd and all(k.startswith("model.") for k in sd):
        return {k.removeprefix("model."): v for k, v in sd.items()}
    return sd


def _require(sd: dict[str, Any], key: str, ndim: int) -> torch.Tensor:
    value = sd.get(key)
    if not isinstance(value, torch.Tensor) or value.ndim != ndim:
        raise CheckpointError(
            f"BioFoundation TinyMyo state dict key {key!r} must be a {ndim}-d tensor, got "
            + (describe(value) if key in sd else f"a missing key (it has {sorted(sd)[:5]}...)")
        )
    return value


def _channels_from_width(width: int, d_model: int, key: str, n_channels: int | None) -> int:
    channels = width // d_model
    if width % d_model or n_channels not in (None, channels):
        raise CheckpointError(
            f"key {key!r} has input width {width}; accepted: a multiple of d_model={d_model}, "
            f"n_channels={n_channels} (None: any) times it"
        )
    return channels


def infer_architecture(
    sd: dict[str, Any], n_heads: int, n_channels: int | None, reduction: str | None
) -> dict[str, Any]:
    """Task and sizes of a BioFoundation TinyMyo from its state dict's keys and shapes."""
    patch_w = _require(sd, f"{PATCH}.weight", 4)
    d_model, patch_samples = patch_w.shape[0], patch_w.shape[-1]
    if d_model % check_int(n_heads, f"n_heads (a divisor of d_model={d_model})", 1):
        raise ArgumentError(
            f"n_heads must be a positive divisor of d_model={d_model}, got {n_heads}"
        )
    check_choice(reduction, (*REDUCTIONS, None), "reduction")
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
    computes, which its released checkpoints were trained with: RoPE by the head index, whose
    scores are those of no RoPE (docs/DESIGN.md §10), so it is built with
    ``positional_embedding_type="none"``. ``rope_positions="token"`` rotates at the flattened
    token index, as the thesis describes the model: for weights trained with token RoPE, such
    as a `to_biofoundation` export of an emg_lens TinyMyo.

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
    check_choice(rope_positions, ROPE_POSITIONS, "rope_positions")
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
    got = {k: list(v.shape) for k, v in sd.items()}
    wrong = {
        k: (got.get(k), list(v.shape)) for k, v in expected.items() if got.get(k) != list(v.shape)
    }
    unknown = sorted(set(sd) - set(expected))
    if wrong or unknown:
        raise CheckpointError(
            f"BioFoundation TinyMyo state dict (task={arch['task']!r}, n_layers={cfg.n_layers}, "
            f"d_model={cfg.d_model}): wrong shapes (got, expected; None: missing key) for keys "
            f"{wrong}; unknown keys {unknown}"
        )
    key_table(cfg, arch["task"]).load(sd, model, "BioFoundation TinyMyo")
    return model.eval()  # a loaded model is for reading; TransformerLens patching needs eval
