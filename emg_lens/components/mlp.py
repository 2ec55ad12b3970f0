"""The feed-forward sub-layer with legacy TransformerLens names (``W_in``, ``b_in``, ...)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import nn
from transformer_lens.hook_points import HookPoint

from emg_lens.components.init import ConfigInit
from emg_lens.config import EncoderConfig
from emg_lens.errors import ConfigError, checked


def add_bias(
    module: nn.Module, name: str, shape: int | tuple[int, ...], cfg: EncoderConfig
) -> None:
    """Register the zero bias ``name``: a parameter, or, where ``cfg.zero_biases`` names it (a
    layer built with ``bias=False``), a buffer that is neither learned nor saved, so the
    TransformerLens surface (``b_Q``, ``b_in``, ...) reads the same on every model.

    >>> mlp = MLP(EncoderConfig.preset("tiny", zero_biases=["b_in"]))
    >>> sorted(name for name, _ in mlp.named_parameters()), mlp.b_in.shape
    (['W_in', 'W_out', 'b_out'], torch.Size([32]))
    """
    zeros = torch.zeros(shape, dtype=cfg.dtype)
    if name in cfg.zero_biases:
        module.register_buffer(name, zeros, persistent=False)
    else:
        setattr(module, name, nn.Parameter(zeros))


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,  # exact (erf) GELU, as TransformerLens "gelu"
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
}


@checked
class MLP(ConfigInit, nn.Module):
    """``act(x W_in + b_in) W_out + b_out``, firing ``hook_pre`` and ``hook_post``.

    >>> mlp = MLP(EncoderConfig.preset("tiny"))
    >>> mlp.W_in.shape, mlp.W_out.shape
    (torch.Size([16, 32]), torch.Size([32, 16]))
    """

    b_in: torch.Tensor  # parameters, or zero buffers (`add_bias`)
    b_out: torch.Tensor

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        if (d_mlp := cfg.d_mlp) is None:
            raise ConfigError("EncoderConfig.d_mlp must be an int >= 1 for an MLP, got None")
        self.init_std = cfg.init_range
        # Registered in this order: the state dict's order is part of a model's digest.
        self.W_in = nn.Parameter(torch.empty(cfg.d_model, d_mlp, dtype=cfg.dtype))
        add_bias(self, "b_in", d_mlp, cfg)
        self.W_out = nn.Parameter(torch.empty(d_mlp, cfg.d_model, dtype=cfg.dtype))
        add_bias(self, "b_out", cfg.d_model, cfg)
        self.act_fn = ACTIVATIONS[cfg.act_fn]
        self.hook_pre = HookPoint()  # [batch, pos, d_mlp]
        self.hook_post = HookPoint()  # [batch, pos, d_mlp]

    def forward(
        self, x: Float[torch.Tensor, "batch pos d_model"]
    ) -> Float[torch.Tensor, "batch pos d_model"]:
        batch, n_pos, d_model = x.shape
        d_mlp = self.W_in.shape[1]  # named, not -1: zero positions (no row read) reshape too
        # addmm fuses the bias add; one code path, hooked or not.
        pre = torch.addmm(self.b_in, x.reshape(batch * n_pos, d_model), self.W_in)
        pre = self.hook_pre(pre.view(batch, n_pos, d_mlp))
        post = self.hook_post(self.act_fn(pre))
        out = torch.addmm(self.b_out, post.reshape(batch * n_pos, d_mlp), self.W_out)
        return out.view(batch, n_pos, d_model)
