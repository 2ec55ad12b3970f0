"""The head structure of converted architectures (CBraMod, EEGPT), a base of `Attention`.

A *structure* (`Attention.set_structure`, installed by the model, not in the state dict) gives
each range of heads a `HeadStructure` (docs/ARCHITECTURE.md, components). The explicit path
applies its base mask with the ``edge_mask`` before ``hook_attn_scores``; the fast path runs
each range of heads on its own slices as one batched attention over all groups: the
original's FLOPs, and the explicit path's numbers to 1e-5.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F
from jaxtyping import Float

from emg_lens.components.attend import block_scores, fused, merge_masks
from emg_lens.components.fast_attention import FastAttention, sdpa
from emg_lens.errors import ConfigError

# Groups of at most this many tokens are attended with matmul + softmax on CPU (see
# `Attention._attend_groups`); longer ones, and every group on a GPU, with SDPA.
SMALL_GROUP = 64


@dataclass(frozen=True)
class HeadStructure:
    """What the heads ``heads[0]..heads[1]-1`` of an `Attention` read, write and see.

    ``reads`` / ``writes``: the ``[start, stop)`` slice of ``d_model`` their ``W_Q``, ``W_K``,
    ``W_V`` rows read and their ``W_O`` columns write (None: all of it); ``groups``: one group
    id per token, a query attending only to keys of its own group (None: every key).

    >>> HeadStructure(heads=(0, 2), reads=(0, 8), groups=(0, 0, 1, 1)).n_heads
    2
    """

    heads: tuple[int, int]
    reads: tuple[int, int] | None = None
    writes: tuple[int, int] | None = None
    groups: tuple[int, ...] | None = None

    @property
    def n_heads(self) -> int:
        return self.heads[1] - self.heads[0]


class _Plan:
    """A `HeadStructure` prepared for the fast path: slices, and the token permutation that
    makes every group contiguous (None where it already is), the number and size of groups
    (``n_groups`` 0: groups of unequal size, attended with the full base mask instead)."""

    def __init__(self, structure: HeadStructure, n_tokens: int):
        self.structure = structure
        self.heads = slice(*structure.heads)
        self.reads = slice(*structure.reads) if structure.reads else None
        self.writes = slice(*structure.writes) if structure.writes else None
        self.perm: torch.Tensor | None = None
        self.inverse: torch.Tensor | None = None
        self.n_groups = self.group_size = 0
        if structure.groups is None:
            return
        groups = torch.tensor(structure.groups)
        sizes = torch.unique(groups, return_counts=True)[1]
        if not bool((sizes == sizes[0]).all()):
            return
        self.n_groups, self.group_size = len(sizes), int(sizes[0])
        perm = torch.sort(groups, stable=True).indices
        if not torch.equal(perm, torch.arange(n_tokens)):
            self.perm, self.inverse = perm, torch.argsort(perm)


class StructuredHeads(FastAttention):
    """`Attention`'s head structure: installed, applied to the weights and run on the fast
    path (the base of `Attention`, which sets these to None until `set_structure`)."""

    structure: tuple[HeadStructure, ...] | None
    _plans: list[_Plan]  # one per range of heads
    # buffers, None without a structure: base_mask [head_index, query_pos, key_pos] (True: no
    # edge), read_mask [head_index, d_model, 1] and write_mask [head_index, 1, d_model] (1
    # where a head reads / writes)
    base_mask: torch.Tensor | None
    read_mask: torch.Tensor | None
    write_mask: torch.Tensor | None

    def draw_parameter(self, name: str, param: torch.Tensor) -> None:
        """The config's draw, then zero where a head structure has no weight: the rows of
        ``W_Q``, ``W_K``, ``W_V`` a head does not read, the columns of ``W_O`` it does not
        write (as a converted model's source holds them)."""
        super().draw_parameter(name, param)
        reads = name in ("W_Q", "W_K", "W_V")
        mask = self.read_mask if reads else self.write_mask if name == "W_O" else None
        if mask is not None:
            with torch.no_grad():
                param.masked_fill_(mask == 0, 0)

    def set_structure(self, structure: Sequence[HeadStructure], n_tokens: int) -> None:
        """Install the architecture's head structure (see the module docstring): one
        `HeadStructure` per range of heads, the ranges in order and covering every head.
        Stored as buffers that are not saved (the model derives them from its config).

        >>> from emg_lens import EncoderConfig
        >>> from emg_lens.models import Attention
        >>> cfg = EncoderConfig.preset("tiny")
        >>> attn = Attention(cfg)
        >>> attn.set_structure([HeadStructure((0, 2), groups=(0, 0, 0, 1, 1, 1, 1)),
        ...                     HeadStructure((2, 4))], n_tokens=7)
        >>> attn.base_mask[0, 0].tolist(), bool(attn.base_mask[3].any())
        ([False, False, False, True, True, True, True], False)
        """
        h, d_model = self.cfg.n_heads, self.cfg.d_model
        structure = tuple(structure)
        edges = [s.heads for s in structure]
        ends = [(0, 0), *edges, (h, h + 1)]  # each range starts where the one before ended
        if not structure or any(a[1] != b[0] or b[0] >= b[1] for a, b in pairwise(ends)):
            raise ConfigError(
                f"a head structure must cover heads 0..{h - 1} in consecutive ranges, got {edges}"
            )
        if self.rotary is not None:
            raise ConfigError("a head structure is not supported with rotary positions")
        for s in structure:
            for what, part in (("reads", s.reads), ("writes", s.writes)):
                if part is not None and not 0 <= part[0] < part[1] <= d_model:
                    raise ConfigError(f"HeadStructure.{what}={part} is not a slice of d_model")
            if s.groups is not None and len(s.groups) != n_tokens:
                raise ConfigError(
                    f"HeadStructure.groups has {len(s.groups)} entries for {n_tokens} tokens"
                )
        device = self.W_Q.device
        self.structure = structure
        self._plans = [_Plan(s, n_tokens) for s in structure]
        base = torch.zeros(h, n_tokens, n_tokens, dtype=torch.bool)
        reads = torch.zeros(h, d_model, 1, dtype=self.W_Q.dtype)
        writes = torch.zeros(h, 1, d_model, dtype=self.W_Q.dtype)
        for s in structure:
            heads = slice(*s.heads)
            if s.groups is not None:
                g = torch.tensor(s.groups)
                base[heads] = g[:, None] != g[None, :]
            reads[heads, slice(*(s.reads or (0, d_model)))] = 1
            writes[heads, :, slice(*(s.writes or (0, d_model)))] = 1
        restricted = any(s.reads or s.writes for s in structure)
        for name, value in (
            ("base_mask", base if bool(base.any()) else None),
            ("read_mask", reads if restricted else None),
            ("write_mask", writes if restricted else None),
        ):
            self.register_buffer(name, None if value is None else value.to(device), False)
        for i, plan in enumerate(self._plans):  # buffers, so that .to() moves them
            rows = None
            if plan.n_groups:
                order = plan.perm if plan.perm is not None else torch.arange(n_tokens)
                rows = order.view(plan.n_groups, plan.group_size)
            for name, value in (("perm", plan.perm), ("inverse", plan.inverse), ("rows", rows)):
                self.register_buffer(
                    f"_{name}_{i}", None if value is None else value.to(device), False
                )
        self._qkv_cache = None

    def _structured_weights(self):
        """``W_Q, W_K, W_V, W_O`` with the entries outside every head's slices multiplied by
        zero (so they stay zero in training); the weights themselves without a structure."""
        W_Q, W_K, W_V, W_O = self.W_Q, self.W_K, self.W_V, self.W_O
        if self.read_mask is not None:
            W_Q, W_K, W_V = (W * self.read_mask for W in (W_Q, W_K, W_V))
            W_O = W_O * self.write_mask
        return W_Q, W_K, W_V, W_O

    def output_weights(self) -> Float[torch.Tensor, "head_index d_head d_model"]:
        """``W_O`` as the forward applies it (a head structure's zero blocks included): what
        a change of ``z`` adds to the output, ``dz @ W_O``."""
        return self._structured_weights()[3]

    def _forward_structured(self, x, edge_mask):
        """The fast path of a structured attention: each range of heads projects its own slice
        of ``d_model``, attends within its groups (one batched call over ``batch * n_groups``
        sequences) and writes its own slice; the sum of the ranges plus ``b_O``."""
        batch, n_pos, d_model = x.shape
        d_head = self.cfg.d_head
        parts, b_O = self._fused_structured()
        mask = None if edge_mask is None else edge_mask[(None,) * (4 - edge_mask.ndim)]
        out = None
        for i, (plan, (W, b, W_O)) in enumerate(zip(self._plans, parts)):
            n_heads = plan.structure.n_heads
            x_in = x if plan.reads is None else x[..., plan.reads]
            qkv = torch.addmm(b, x_in.reshape(batch * n_pos, -1), W)
            q, k, v = qkv.view(batch, n_pos, 3 * n_heads, d_head).split(n_heads, dim=2)
            if self.q_norm is not None:
                q, k = self._qk_norm(q, k)
            heads_mask = None
            if mask is not None:
                heads_mask = mask[:, plan.heads] if mask.shape[1] != 1 else mask
            z = self._attend_groups(q, k, v, heads_mask, plan, i)  # [batch, pos, heads, d_head]
            y = torch.mm(z.reshape(batch * n_pos, n_heads * d_head), W_O)
            if plan.writes is not None:
                y = F.pad(y, (plan.writes.start, d_model - plan.writes.stop))
            out = y if out is None else out + y
        return (out + b_O).view(batch, n_pos, d_model)

    def _attend_groups(self, q, k, v, mask, plan: _Plan, index: int) -> torch.Tensor:
        """``softmax(q k^T / scale) v`` of one range of heads, each query over the keys of its
        own group; ``mask`` (True = masked) ``[batch or 1, heads or 1, pos, pos]`` or None."""
        batch, n_pos, n_heads, d_head = q.shape
        scale = 1.0 / self.attn_scale
        if plan.structure.groups is not None and plan.n_groups == 0:  # groups of unequal size
            assert self.base_mask is not None  # set: unequal groups do not all see each other
            mask = merge_masks(self.base_mask[plan.heads], mask)
        if plan.n_groups == 0:
            z = sdpa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask, scale)
            return z.transpose(1, 2)
        n_groups, size = plan.n_groups, plan.group_size
        perm, inverse = getattr(self, f"_perm_{index}"), getattr(self, f"_inverse_{index}")
        if perm is not None:
            q, k, v = (t.index_select(1, perm) for t in (q, k, v))
        q, k, v = (
            t.reshape(batch * n_groups, size, n_heads, d_head).transpose(1, 2) for t in (q, k, v)
        )
        if mask is not None:
            # Each group's block of the mask, gathered by position (an ONNX-friendly gather):
            # [b, h, pos, pos] -> [b, h, G, s, s] -> [b * G, h, s, s]
            rows = getattr(self, f"_rows_{index}")  # [G, s]: the positions of each group
            mask = mask[:, :, rows[:, :, None], rows[:, None, :]].transpose(1, 2)
            mask = mask.expand(batch, -1, -1, -1, -1).reshape(batch * n_groups, -1, size, size)
        if size <= SMALL_GROUP and q.device.type == "cpu":
            # Many short sequences (CBraMod's 19 channels of a patch, its few patches of a
            # channel): a batched matmul and softmax, as torch's own MultiheadAttention runs
            # them, costs a third of SDPA's CPU kernel, whose per-sequence set-up dominates.
            scores = torch.matmul(q, k.transpose(-1, -2)) * scale
            z = fused(
                lambda blocked: torch.matmul(block_scores(scores, blocked).softmax(-1), v), mask
            )
        else:
            z = sdpa(q, k, v, mask, scale)
        z = z.transpose(1, 2).reshape(batch, n_pos, n_heads, d_head)
        return z if inverse is None else z.index_select(1, inverse)

    def _fused_structured(self):
        """Per range of heads, its ``W_Q, W_K, W_V`` rows of the slice it reads as one
        ``[d_read, 3 * heads * d_head]`` matrix, their biases and its ``W_O`` columns of the
        slice it writes; and ``b_O`` (`_guarded_b_O`). Cached by `_cached`."""

        def build():
            parts = []
            for plan in self._plans:
                reads = plan.reads or slice(None)
                heads = plan.heads
                W = torch.cat((self.W_Q[heads], self.W_K[heads], self.W_V[heads]), dim=0)
                W = W[:, reads].permute(1, 0, 2).flatten(1)
                b = torch.cat((self.b_Q[heads], self.b_K[heads], self.b_V[heads]), dim=0)
                b = b.flatten()
                # a copy: a view of W_O would still require grad (and be a trace's constant)
                W_O = self.W_O[heads][..., plan.writes or slice(None)].flatten(0, 1).clone()
                parts.append((W, b, W_O))
            return parts, self._guarded_b_O([t for W, b, _ in parts for t in (W, b)])

        params = (self.W_Q, self.W_K, self.W_V, self.W_O, self.b_Q, self.b_K, self.b_V, self.b_O)
        return self._cached(params, build)
