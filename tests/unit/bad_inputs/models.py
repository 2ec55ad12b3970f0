"""Converting models (issue 24 items 1 and 2): what `from_torch_encoder` and `from_braindecode`
cannot convert, and the configs and structures of converted architectures, each refused with
a named error naming the module's path, the tensor or the field."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from emg_lens import EncoderConfig
from emg_lens.checkpoints import load_checkpoint, save_checkpoint
from emg_lens.components import Attention, HeadStructure
from emg_lens.errors import (
    ArgumentError,
    CheckpointError,
    ConfigError,
    ConversionError,
)
from emg_lens.layout import TokenLayout
from emg_lens.models import from_braindecode, from_torch_encoder
from tests.unit.models.converted_models import torch_encoder_model


def _convert(tmp: Path, **changes):
    parts = {**torch_encoder_model(0, convert=False), "n_samples": 8, **changes}
    return from_torch_encoder(**parts)


def _with_layer(tmp: Path, path: str, module: nn.Module):
    encoder = torch_encoder_model(0, convert=False)["encoder"]
    layer, name = path.split(".")
    setattr(encoder.layers[int(layer)], name, module)
    return _convert(tmp, encoder=encoder)


def _fake_braindecode(name: str) -> nn.Module:
    """A module whose class looks like braindecode's ``name`` (the converter goes by the
    class's module and name, so no braindecode is needed to be refused)."""
    cls = type(name, (nn.Module,), {"__module__": f"braindecode.models.{name.lower()}"})
    return cls()


def _encoder_checkpoint_without_modules(tmp: Path):
    model, _ = torch_encoder_model(0)
    return load_checkpoint(save_checkpoint(model, tmp / "ckpt"))


ROWS = [
    (
        "torch encoder attention with kdim",
        lambda tmp: _with_layer(tmp, "1.self_attn", nn.MultiheadAttention(16, 4, kdim=8, vdim=8)),
        ConversionError,
        "layers.1.self_attn has kdim=8",
    ),
    (
        "torch encoder unknown attention class",
        lambda tmp: _with_layer(tmp, "0.self_attn", nn.Linear(16, 16)),
        ConversionError,
        "layers.0.self_attn is a Linear; supported: torch.nn.MultiheadAttention",
    ),
    (
        "torch encoder unknown activation",
        lambda tmp: _with_layer(tmp, "0.activation", torch.tanh),
        ConversionError,
        "layers.0.activation is the activation tanh",
    ),
    (
        "torch encoder norm without weights",
        lambda tmp: _with_layer(tmp, "1.norm2", nn.LayerNorm(16, elementwise_affine=False)),
        ConversionError,
        "layers.1.norm2 is a LayerNorm without weights",
    ),
    (
        "torch encoder readout that does not fit the tokens",
        lambda tmp: _convert(tmp, readout=nn.Linear(3, 2)),
        ConversionError,
        "readout (Linear) failed on tokens [1, 13, 16]",
    ),
    (
        "torch encoder embed that does not fit the layout",
        lambda tmp: _convert(tmp, layout=TokenLayout.channel_tokens({"emg": 6}, n_patches=3)),
        ConversionError,
        "embed (PatchTokens) returned",
    ),
    (
        "torch encoder not an encoder",
        lambda tmp: _convert(tmp, encoder=nn.Linear(16, 16)),
        ArgumentError,
        "encoder must be a torch.nn.TransformerEncoder",
    ),
    (
        "torch encoder checkpoint without its modules",
        _encoder_checkpoint_without_modules,
        CheckpointError,
        "modules={'embed': ..., 'readout': ...}",
    ),
    (
        "braindecode linear attention",
        lambda tmp: from_braindecode(_fake_braindecode("BIOT")),
        ConversionError,
        "BIOT cannot become an emg_lens model: its transformer is a linear attention",
    ),
    (
        "braindecode model not supported",
        lambda tmp: from_braindecode(_fake_braindecode("EEGNet")),
        ConversionError,
        "EEGNet is not one of the models from_braindecode converts (Labram, CBraMod",
    ),
    (
        "from_braindecode on a torch module",
        lambda tmp: from_braindecode(nn.TransformerEncoderLayer(8, 2)),
        ConversionError,
        "from_braindecode converts braindecode models",
    ),
    (
        "config norm_position",
        lambda tmp: EncoderConfig(norm_position="middle"),
        ConfigError,
        "EncoderConfig.norm_position must be one of ('pre', 'post')",
    ),
    (
        "config zero_biases",
        lambda tmp: EncoderConfig(zero_biases=["b_X"]),
        ConfigError,
        "EncoderConfig.zero_biases must be a list of bias names from ('b_Q'",
    ),
    (
        "config custom tokens without n_ctx",
        lambda tmp: EncoderConfig(tokenization="custom"),
        ConfigError,
        "EncoderConfig.n_ctx must be the number of tokens",
    ),
    (
        "head structure missing heads",
        lambda tmp: Attention(EncoderConfig()).set_structure([HeadStructure((0, 2))], 7),
        ConfigError,
        "a head structure must cover heads 0..3",
    ),
]
