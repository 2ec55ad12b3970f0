"""Rotary position embeddings (RoPE) for query and key vectors.

Two conventions exist and checkpoints are not interchangeable between them:
``adjacent_pairs=True`` rotates the interleaved pairs ``(x[2i], x[2i+1])`` (torchtune, GPT-J,
TinyMyo); ``False`` rotates ``(x[i], x[i + d/2])`` (GPT-NeoX, TransformerLens's default). The
angle of pair ``i`` at position ``p`` is ``p * base ** (-2i / rotary_dim)``.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import nn


class Rotary(nn.Module):
    """Rotates the first ``rotary_dim`` features of ``[batch, pos, head_index, d_head]`` vectors.

    The sin/cos tables are derived from the config, so they are non-persistent buffers.

    >>> rope = Rotary(rotary_dim=4, n_ctx=3, base=10000.0, adjacent_pairs=True)
    >>> q = torch.randn(1, 3, 2, 4)
    >>> torch.allclose(rope(q)[:, 0], q[:, 0])  # position 0 is not rotated
    True
    """

    def __init__(self, rotary_dim: int, n_ctx: int, base: float, adjacent_pairs: bool):
        super().__init__()
        self.rotary_dim = rotary_dim
        self.adjacent_pairs = adjacent_pairs
        inv_freq = base ** (-torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim)
        angles = torch.arange(n_ctx, dtype=torch.float64)[:, None] * inv_freq[None, :]
        self.register_buffer("sin", angles.sin().float(), persistent=False)  # [pos, rotary_dim/2]
        self.register_buffer("cos", angles.cos().float(), persistent=False)

    def forward(
        self, x: Float[torch.Tensor, "batch pos head_index d_head"]
    ) -> Float[torch.Tensor, "batch pos head_index d_head"]:
        n_pos = x.shape[1]
        sin = self.sin[:n_pos, None, :].to(x.dtype)  # [pos, 1, rotary_dim/2]
        cos = self.cos[:n_pos, None, :].to(x.dtype)
        x_rot, x_pass = x[..., : self.rotary_dim], x[..., self.rotary_dim :]
        if self.adjacent_pairs:
            x1, x2 = x_rot[..., 0::2], x_rot[..., 1::2]
            rotated = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)
        else:
            x1, x2 = x_rot.chunk(2, dim=-1)
            rotated = torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
        return rotated if x_pass.shape[-1] == 0 else torch.cat((rotated, x_pass), dim=-1)
