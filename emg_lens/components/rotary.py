"""Rotary position embeddings (RoPE) for query and key vectors.

``adjacent_pairs=True`` rotates the interleaved pairs ``(x[2i], x[2i+1])`` (torchtune, GPT-J,
TinyMyo); ``False`` rotates ``(x[i], x[i + d/2])`` (GPT-NeoX, TransformerLens's default);
checkpoints are not interchangeable between them. Pair ``i`` at position ``p`` turns by ``p *
base ** (-2i / rotary_dim)``. Interleaved pairs in float32/float64 are rotated as one complex
multiplication: the same products and sums as the real formula, in one kernel instead of
seven (most of RoPE's cost at TinyMyo's 800 tokens).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import nn

COMPLEX_OF = {torch.float32: torch.complex64, torch.float64: torch.complex128}


class Rotary(nn.Module):
    """Rotates the first ``rotary_dim`` features of ``[batch, pos, head_index, d_head]`` vectors.

    The sin/cos tables are derived from the config, so they are non-persistent buffers.

    >>> rope = Rotary(rotary_dim=4, n_ctx=3, base=10000.0, adjacent_pairs=True)
    >>> q = torch.randn(1, 3, 2, 4)
    >>> torch.allclose(rope(q)[:, 0], q[:, 0])  # position 0 is not rotated
    True
    >>> # bfloat16 takes the real-valued formula: the same rotation, to bfloat16 precision
    >>> torch.allclose(rope(q.bfloat16()).float(), rope(q), atol=0.1)
    True
    """

    sin: torch.Tensor  # [pos, rotary_dim/2] buffers, as cos
    cos: torch.Tensor

    def __init__(self, rotary_dim: int, n_ctx: int, base: float, adjacent_pairs: bool):
        super().__init__()
        self.rotary_dim = rotary_dim
        self.adjacent_pairs = adjacent_pairs
        inv_freq = base ** (-torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim)
        angles = torch.arange(n_ctx, dtype=torch.float64)[:, None] * inv_freq[None, :]
        self.register_buffer("sin", angles.sin().float(), persistent=False)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self._phase_cache: tuple | None = None  # (key, complex [pos, 1, rotary_dim/2])

    def forward(
        self, x: Float[torch.Tensor, "batch pos head_index d_head"]
    ) -> Float[torch.Tensor, "batch pos head_index d_head"]:
        x_rot, x_pass = x[..., : self.rotary_dim], x[..., self.rotary_dim :]
        # A trace (emg_lens.export's, for ONNX, which has no complex tensors) records the real
        # formula.
        if self.adjacent_pairs and x.dtype in COMPLEX_OF and not torch.jit.is_tracing():
            rotated = self._rotate_complex(x_rot)
        else:
            rotated = self._rotate_real(x_rot)
        return rotated if x_pass.shape[-1] == 0 else torch.cat((rotated, x_pass), dim=-1)

    def _rotate_real(self, x_rot: torch.Tensor) -> torch.Tensor:
        n_pos = x_rot.shape[1]
        sin = self.sin[:n_pos, None, :].to(x_rot.dtype)  # [pos, 1, rotary_dim/2]
        cos = self.cos[:n_pos, None, :].to(x_rot.dtype)
        if self.adjacent_pairs:
            x1, x2 = x_rot[..., 0::2], x_rot[..., 1::2]
            return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)
        x1, x2 = x_rot.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)

    def _rotate_complex(self, x_rot: torch.Tensor) -> torch.Tensor:
        pairs = x_rot.unflatten(-1, (-1, 2))
        # view_as_complex needs unit-stride pairs at even offsets; a hook may return any strides.
        if (
            pairs.stride(-1) != 1
            or pairs.storage_offset() % 2
            or any(s % 2 for s in pairs.stride()[:-1])
        ):
            pairs = pairs.contiguous()
        phase = self._phase(x_rot.shape[1], x_rot.dtype)
        return torch.view_as_real(torch.view_as_complex(pairs) * phase).flatten(-2)

    def _apply(self, fn, recurse=True):
        self._phase_cache = None  # the tables move with .to(); their cached phase with them
        return super()._apply(fn, recurse)

    def _phase(self, n_pos: int, dtype: torch.dtype) -> torch.Tensor:
        """``cos + i sin`` for the first ``n_pos`` positions, cached until the tables move."""
        key = (self.cos.data_ptr(), self.cos.device, dtype, n_pos)
        if self._phase_cache is None or self._phase_cache[0] != key:
            # Outside inference mode, so the cached table may later meet autograd.
            with torch.inference_mode(False):
                phase = torch.complex(self.cos[:n_pos], self.sin[:n_pos]).to(COMPLEX_OF[dtype])
            self._phase_cache = (key, phase[:, None, :])
        return self._phase_cache[1]
