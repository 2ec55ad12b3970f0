"""Small hand-written attention models, as research repositories write them: the examples'
and tests' models for `emg_lens.models.attach`.

>>> TinyAttention()(torch.randn(2, 4, 8)).shape, PatchAttention()(torch.randn(2, 4, 8)).shape
(torch.Size([2, 3]), torch.Size([2, 3]))
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PatchAttention", "TinyAttention"]


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


class PatchAttention(nn.Module):
    """A hand-written attention over the channels of each patch, the patches folded into the
    batch as CBraMod's spatial attention and EEGPT fold them: each channel's window is cut
    into patches of ``patch`` samples, embedded (``[batch, channel, patch, d]``), and one
    ``qkv`` + ``.softmax(-1)`` call attends ``[batch * patches, head, channel, channel]``,
    batch-major (input row ``b`` owns rows ``b * patches`` to ``b * patches + patches - 1``).
    ``bias`` is the model's own additive mask on those scores (``-inf`` = blocked)."""

    def __init__(
        self, n_samples: int = 8, patch: int = 4, d: int = 16, heads: int = 2, n_classes: int = 3
    ):
        super().__init__()
        self.patch, self.heads = patch, heads
        with torch.random.fork_rng():  # seeded weights, the caller's random state untouched
            torch.manual_seed(0)
            self.embed = nn.Linear(patch, d)
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.head = nn.Linear(d, n_classes)

    def fold(self, h: torch.Tensor) -> torch.Tensor:
        """``[batch, channel, patch, d]`` -> ``[batch * patch, channel, d]``, batch-major."""
        return h.transpose(1, 2).flatten(0, 1)

    def unfold(self, h: torch.Tensor, batch: int) -> torch.Tensor:
        """The inverse of `fold`."""
        return h.unflatten(0, (batch, -1)).transpose(1, 2)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        b, c, t = x.shape
        h = self.embed(x.view(b, c, t // self.patch, self.patch))
        folded = self.fold(h)
        n, _, d = folded.shape
        q, k, v = self.qkv(folded).view(n, c, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
        attn = (scores if bias is None else scores + bias).softmax(-1)
        out = self.proj((attn @ v).transpose(1, 2).reshape(n, c, d))
        return self.head((h + self.unfold(out, b)).mean((1, 2)))
