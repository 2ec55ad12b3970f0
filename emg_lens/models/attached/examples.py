"""Small hand-written attention models, as research repositories write them: the examples'
and tests' models for `emg_lens.models.attach`.

>>> TinyAttention()(torch.randn(2, 4, 8)).shape
torch.Size([2, 3])
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TinyAttention"]


class TinyAttention(nn.Module):
    """A hand-written one-block attention classifier, as research code writes it (the
    examples' model): one token per channel, ``qkv = nn.Linear(d, 3d)``, ``.softmax(-1)``."""

    def __init__(self, n_samples: int = 8, d: int = 16, heads: int = 2, n_classes: int = 3):
        super().__init__()
        with torch.random.fork_rng():  # seeded weights, the caller's random state untouched
            torch.manual_seed(0)
            self.embed = nn.Linear(n_samples, d)
            self.block = _TinyBlock(d, heads)
            self.head = nn.Linear(d, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.embed(x)).mean(1))


class _TinyBlock(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads, self.qkv, self.proj = heads, nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5).softmax(-1)
        return x + self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))
