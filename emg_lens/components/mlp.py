"""The feed-forward sub-layer with legacy TransformerLens names (``W_in``, ``b_in``, ...)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import einsum
from jaxtyping import Float
from torch import nn
from transformer_lens.hook_points import HookPoint

from emg_lens.config import EncoderConfig

ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,  # exact (erf) GELU, as TransformerLens "gelu"
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
}


class MLP(nn.Module):
    """``act(x W_in + b_in) W_out + b_out``, firing ``hook_pre`` and ``hook_post``.

    >>> mlp = MLP(EncoderConfig.preset("tiny"))
    >>> mlp.W_in.shape, mlp.W_out.shape
    (torch.Size([16, 32]), torch.Size([32, 16]))
    """

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        d_mlp = cfg.d_mlp
        self.W_in = nn.Parameter(torch.empty(cfg.d_model, d_mlp, dtype=cfg.dtype))
        self.b_in = nn.Parameter(torch.zeros(d_mlp, dtype=cfg.dtype))
        self.W_out = nn.Parameter(torch.empty(d_mlp, cfg.d_model, dtype=cfg.dtype))
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model, dtype=cfg.dtype))
        self.act_fn = ACTIVATIONS[cfg.act_fn]
        self.hook_pre = HookPoint()  # [batch, pos, d_mlp]
        self.hook_post = HookPoint()  # [batch, pos, d_mlp]

    def forward(
        self, x: Float[torch.Tensor, "batch pos d_model"]
    ) -> Float[torch.Tensor, "batch pos d_model"]:
        pre = self.hook_pre(
            einsum(x, self.W_in, "batch pos d_model, d_model d_mlp -> batch pos d_mlp") + self.b_in
        )
        post = self.hook_post(self.act_fn(pre))
        return einsum(post, self.W_out, "batch pos d_mlp, d_mlp d_model -> batch pos d_model") + (
            self.b_out
        )
