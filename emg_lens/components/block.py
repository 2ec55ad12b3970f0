"""The pre-LN transformer block with the legacy TransformerLens residual hooks."""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import nn
from transformer_lens.hook_points import HookPoint

from emg_lens.components.attention import Attention
from emg_lens.components.layer_norm import make_norm
from emg_lens.components.mlp import MLP
from emg_lens.config import EncoderConfig


class TransformerBlock(nn.Module):
    """``resid_mid = resid_pre + attn(ln1(resid_pre))``; ``resid_post = resid_mid + mlp(ln2(.))``.

    Pre-LN is the form in which the residual stream is a sum of component outputs, which is
    what `ActivationCache.decompose_resid` and friends rely on. Dropout (training only) acts on
    the sub-layer outputs before their hooks, so in eval mode ``hook_attn_out`` is exactly what
    is added to the residual stream.

    >>> block = TransformerBlock(EncoderConfig.preset("tiny"), 0)
    >>> block(torch.randn(2, 7, 16)).shape
    torch.Size([2, 7, 16])
    """

    # TransformerLens's logit lens reads a block's hook_resid_post as the one residual stream
    # that ln_final normalises; it asks every block to say so.
    hook_out_is_single_residual_stream = True

    def __init__(self, cfg: EncoderConfig, block_index: int):
        super().__init__()
        self.layer = block_index
        self.ln1 = make_norm(cfg)
        self.attn = Attention(cfg)
        self.ln2 = make_norm(cfg)
        self.mlp = MLP(cfg)
        self.dropout = nn.Dropout(cfg.dropout)
        self.hook_resid_pre = HookPoint()  # [batch, pos, d_model]
        self.hook_attn_out = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_mid = HookPoint()  # [batch, pos, d_model]
        self.hook_mlp_out = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_post = HookPoint()  # [batch, pos, d_model]

    def forward(
        self,
        resid_pre: Float[torch.Tensor, "batch pos d_model"],
        edge_mask: Bool[torch.Tensor, "... query_pos key_pos"] | None = None,
    ) -> Float[torch.Tensor, "batch pos d_model"]:
        resid_pre = self.hook_resid_pre(resid_pre)
        attn_out = self.hook_attn_out(self.dropout(self.attn(self.ln1(resid_pre), edge_mask)))
        resid_mid = self.hook_resid_mid(resid_pre + attn_out)
        mlp_out = self.hook_mlp_out(self.dropout(self.mlp(self.ln2(resid_mid))))
        return self.hook_resid_post(resid_mid + mlp_out)
