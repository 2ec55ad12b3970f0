"""Hand-written attention models as research repositories write them, each taking its OWN mask
argument: the specification of `emg_lens.models.attach` is that an edge cut equals the model
computed with the same keys blocked by that argument (issue 38, item 2).

Every model maps signals ``[batch, 4 channels, 8 samples]`` to 3 logits through one token per
channel (`LAYOUT`), two attention layers, and a mean over tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from emg_lens.layout import TokenLayout

N_CHANNELS, N_SAMPLES, D, HEADS, N_CLASSES = 4, 8, 16, 2, 3
LAYOUT = TokenLayout.channel_tokens({"emg": N_CHANNELS}, cls_token=False)


class _Classifier(nn.Module):
    """embed -> blocks (each given the model's own ``mask``) -> mean -> head."""

    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.embed = nn.Linear(N_SAMPLES, D)
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(D, N_CLASSES)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.embed(x)
        for block in self.blocks:
            h = block(h, mask)
        return self.head(h.mean(1))


class QKVAttention(nn.Module):
    """``qkv = nn.Linear(d, 3d)``, ``(q @ k^T) * scale``, an additive bias (``-inf`` = blocked,
    ``[head or 1, query, key]``), ``.softmax(-1)``, dropout."""

    def __init__(self):
        super().__init__()
        self.qkv, self.proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.attn_drop = nn.Dropout(0.1)

    def forward(self, x, bias=None):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, HEADS, d // HEADS).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1)) * (d // HEADS) ** -0.5
        if bias is not None:
            attn = attn + bias
        attn = self.attn_drop(attn.softmax(dim=-1))
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))


class SDPAAttention(nn.Module):
    """``F.scaled_dot_product_attention`` with its ``attn_mask`` (bool, True = may attend)."""

    def __init__(self):
        super().__init__()
        self.q, self.kv, self.out = nn.Linear(D, D), nn.Linear(D, 2 * D), nn.Linear(D, D)

    def forward(self, x, attn_mask=None):
        b, n, d = x.shape
        q = self.q(x).view(b, n, HEADS, -1).transpose(1, 2)
        k, v = self.kv(x).view(b, n, 2, HEADS, -1).permute(2, 0, 3, 1, 4)
        z = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.out(z.transpose(1, 2).reshape(b, n, d))


class PreNormBlock(nn.Module):
    """``x + attn(ln(x))`` then ``x + mlp(ln(x))``; ``attn`` is one of the attentions above,
    or ``nn.MultiheadAttention`` called with ``need_weights=False``."""

    def __init__(self, attn: nn.Module):
        super().__init__()
        self.ln1, self.ln2, self.attn = nn.LayerNorm(D), nn.LayerNorm(D), attn
        self.mlp = nn.Sequential(nn.Linear(D, 2 * D), nn.GELU(), nn.Linear(2 * D, D))

    def forward(self, x, mask=None):
        y = self.ln1(x)
        if isinstance(self.attn, nn.MultiheadAttention):
            y = self.attn(y, y, y, attn_mask=mask, need_weights=False)[0]
        else:
            y = self.attn(y, mask)
        x = x + y
        return x + self.mlp(self.ln2(x))


class TorchEncoderModel(nn.Module):
    """``nn.TransformerEncoder`` (sequence first) between a tokenizer and a readout; ``mask``
    is the encoder's (bool, True = blocked)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(N_SAMPLES, D)
        layer = nn.TransformerEncoderLayer(D, HEADS, 2 * D, dropout=0.1)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(D, N_CLASSES)

    def forward(self, x, mask=None):
        h = self.encoder(self.embed(x).transpose(0, 1), mask=mask)
        return self.head(h.mean(0))


def qkv_model() -> nn.Module:
    return _Classifier([PreNormBlock(QKVAttention()) for _ in range(2)])


def sdpa_model() -> nn.Module:
    return _Classifier([PreNormBlock(SDPAAttention()) for _ in range(2)])


def mha_model() -> nn.Module:
    return _Classifier(
        [PreNormBlock(nn.MultiheadAttention(D, HEADS, batch_first=True)) for _ in range(2)]
    )


def own_mask(kind: str, cut: torch.Tensor) -> torch.Tensor:
    """``cut`` (bool ``[head, query, key]``, True = blocked) in the form the model's own mask
    argument takes."""
    if kind == "qkv":
        return torch.zeros(cut.shape).masked_fill(cut, float("-inf"))
    if kind == "sdpa":
        return ~cut
    return cut.repeat(BATCH, 1, 1)  # nn.MultiheadAttention: [batch * heads, query, key]


BATCH = 5
FACTORIES = {
    "qkv": qkv_model,
    "sdpa": sdpa_model,
    "mha": mha_model,
    "torch_encoder": TorchEncoderModel,
}


def build(kind: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = FACTORIES[kind]()
    with torch.no_grad():  # biases away from zero, so that a wrong bias handling shows
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.normal_(std=0.1)
    return model.eval()
