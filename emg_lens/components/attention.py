"""Bidirectional multi-head attention with the legacy TransformerLens names, shapes and hooks.

Two paths compute the same function:

- the *explicit* path fires every hook (``hook_q``, ``hook_k``, ``hook_v``, ``hook_rot_q``,
  ``hook_rot_k``, ``hook_attn_scores``, ``hook_pattern``, ``hook_z``, ``hook_result``), and
  is taken whenever any of them has a hook attached (which includes caching), and whenever
  ``use_attn_result`` is on: as in TransformerLens, that flag, not a hook, chooses the per-head
  computation, so a hook on ``hook_result`` changes no output bit;
- the *fast* path runs `torch.nn.functional.scaled_dot_product_attention` and is taken
  otherwise, so an unhooked model pays nothing for being hookable.

An ``edge_mask`` (bool, True = masked, broadcastable to ``[batch, head_index, query_pos,
key_pos]``) is honoured by both. A query whose keys are all masked attends to nothing: its
pattern row is zero and so is its attention update, never NaN (nor its gradient). Any other
NaN (from weights, inputs or a hook) propagates to the output: it is never laundered into
"attends to nothing". Both rules, the mask merge and the empty row, are
`emg_lens.components.attend`'s, which every path here calls.

Converted architectures (`emg_lens.models.from_braindecode`) add what their attention computes
beyond the plain form, with the names, shapes and hooks unchanged:

- ``qk_norm`` (`EncoderConfig`): a LayerNorm over ``d_head`` on every head's q and k after
  ``hook_q`` / ``hook_k`` (``q_norm``, ``k_norm``, with their own ``hook_scale`` and
  ``hook_normalized``), as LaBraM does; ``attn_scale`` replaces ``sqrt(d_head)``; biases named
  in ``zero_biases`` are zero buffers (a ``bias=False`` layer).
- a *structure* (`Attention.set_structure`, installed by the model, derived from its config
  and layout, so not in the state dict): a `HeadStructure` per range of heads says which slice
  of ``d_model`` they read (rows of ``W_Q``, ``W_K``, ``W_V``) and write (columns of ``W_O``),
  and which keys each query may see: one group id per token, a query attending only to the
  keys of its own group. It is the architecture's *base mask* (CBraMod's criss-cross: spatial
  heads within a patch, temporal heads within a channel, each reading and writing half of
  ``d_model``; EEGPT's attention within a time patch). On the explicit path the base mask is
  applied with the ``edge_mask`` (their union) before ``hook_attn_scores``, which therefore
  shows -inf wherever the architecture has no edge, and the weights outside a head's slices
  are multiplied by zero (so they are zero in ``W_Q``... as read, and training keeps them so);
  the fast path runs each range of heads on its own slices as one batched attention over
  all groups (tokens gathered into groups of equal size; SDPA, or matmul + softmax for groups
  of at most `SMALL_GROUP` tokens on CPU), the attention FLOPs of the original, and agrees
  with the explicit path to 1e-5.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, NamedTuple, no_type_check

import torch
import torch.nn.functional as F
from einops import einsum
from jaxtyping import Bool, Float
from torch import nn
from transformer_lens.hook_points import HookPoint

from emg_lens.components.attend import (
    as_bias,
    block_scores,
    eager_on_cpu,
    fused,
    merge_masks,
    pattern_of,
)
from emg_lens.components.init import ConfigInit
from emg_lens.components.layer_norm import LayerNorm
from emg_lens.components.mlp import add_bias
from emg_lens.components.rotary import Rotary
from emg_lens.config import EncoderConfig
from emg_lens.errors import ConfigError

# Buffers that legacy TransformerLens attention saved in its state dict. They are derived from
# the config (emg_lens encoders are bidirectional), so loading one is accepted and ignored.
LEGACY_DERIVED_BUFFERS = ("mask", "IGNORE", "rotary_sin", "rotary_cos")

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


SplitInputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""``(query_input, key_input, value_input)``, each ``[batch, pos, head_index, d_model]``."""


def row_span(rows: Sequence[int]) -> slice | None:
    """``rows`` as a slice where they run consecutively (a CLS readout's ``[0]``, every channel
    token), else None. Why: indexing a CUDA tensor by a Python list copies the list to the
    device from pageable memory, which waits for all the work queued before it; a slice is a
    view, and the study runner picks the read rows once per condition.

    >>> row_span([2, 3]), row_span([0, 3]), row_span([])
    (slice(2, 4, None), None, None)
    """
    if not rows or list(rows) != list(range(rows[0], rows[0] + len(rows))):
        return None
    return slice(rows[0], rows[0] + len(rows))


def take_rows(t: torch.Tensor, rows: Sequence[int], dim: int) -> torch.Tensor:
    """``t``'s positions ``rows`` along ``dim``: a view where they run consecutively
    (`row_span`), else an index by the list.

    >>> x = torch.arange(12).view(1, 6, 2)
    >>> take_rows(x, [2, 3], 1).tolist(), take_rows(x, [0, 3], 1).tolist()
    ([[[4, 5], [6, 7]]], [[[0, 1], [6, 7]]])
    """
    span = row_span(rows)
    where = (slice(None),) * (dim % t.ndim)
    return t[(*where, span if span is not None else list(rows))]


class Projected(NamedTuple):
    """``q, k, v`` of one input on the fast path, each ``[batch, pos, head_index, d_head]``
    (``q`` at ``rows`` alone where given; `Attention.project`), and the output bias the fast
    path adds with them (NaN where a q/k/v weight is not finite: `Attention._guarded_b_O`)."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    b_O: torch.Tensor
    rows: list[int] | None = None  # the query positions ``q`` holds (None: all)
    # For a few query rows, the input itself instead of ``k`` and ``v`` (both None): the rows'
    # attention is computed on the input's side (`Attention._from_queries`).
    x: torch.Tensor | None = None


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


def _matmul_heads(
    x: Float[torch.Tensor, "batch pos d_model"],
    W: Float[torch.Tensor, "head_index d_model d_head"],
    b: Float[torch.Tensor, "head_index d_head"],
) -> Float[torch.Tensor, "batch pos head_index d_head"]:
    """``x @ W[h] + b[h]`` for every head as one matmul (an einsum over the head axis runs as
    a batched product several times slower on CPU)."""
    out = torch.addmm(b.flatten(), x.reshape(-1, x.shape[-1]), W.permute(1, 0, 2).flatten(1))
    return out.view(*x.shape[:-1], *b.shape)


def _sdpa(
    q: Float[torch.Tensor, "batch head query d_head"],
    k: Float[torch.Tensor, "batch head key d_head"],
    v: Float[torch.Tensor, "batch head key d_head"],
    blocked: Bool[torch.Tensor, "... query key"] | None,
    scale: float,
) -> Float[torch.Tensor, "batch head query d_head"]:
    """``scaled_dot_product_attention`` with the keys ``blocked`` (True) masked, a query left
    with no key a zero row (some SDPA kernels give NaN there), with a zero gradient (`fused`)."""
    allowed = merge_masks(None, blocked, allows=True)
    return fused(
        lambda m: F.scaled_dot_product_attention(q, k, v, attn_mask=_sdpa_mask(m, q), scale=scale),
        allowed,
        allows=True,
    )


def _sdpa_mask(
    allowed: Bool[torch.Tensor, "... query key"] | None, q: torch.Tensor
) -> Bool[torch.Tensor, "... query key"] | Float[torch.Tensor, "... query key"] | None:
    """What SDPA is given for ``allowed`` (True = may attend): on a CPU, the additive mask it
    would make of it (`as_bias`: the same numbers, so the same outputs and gradients) made here
    once, where SDPA's own conversion runs in the forward and again in the backward (0.9 ms
    each for a [64, 8, 25, 25] mask on one thread, against 0.33 ms); elsewhere the bool mask."""
    if allowed is None or allowed.dtype != torch.bool or not eager_on_cpu(q):
        return allowed
    return as_bias(allowed, q.dtype, q.device, allows=True)


class Attention(ConfigInit, nn.Module):
    """Multi-head attention: ``W_Q, W_K, W_V [n_heads, d_model, d_head]``,
    ``W_O [n_heads, d_head, d_model]``, ``b_Q, b_K, b_V [n_heads, d_head]``, ``b_O [d_model]``.

    >>> attn = Attention(EncoderConfig.preset("tiny"))
    >>> attn(torch.randn(2, 7, 16)).shape
    torch.Size([2, 7, 16])
    """

    # hook point -> the cfg flag it needs
    OPTIONAL_HOOKS: ClassVar[dict[str, str]] = {"hook_result": "use_attn_result"}

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.init_std = cfg.init_range
        h, d_model, d_head = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q = nn.Parameter(torch.empty(h, d_model, d_head, dtype=cfg.dtype))
        self.W_K = nn.Parameter(torch.empty(h, d_model, d_head, dtype=cfg.dtype))
        self.W_V = nn.Parameter(torch.empty(h, d_model, d_head, dtype=cfg.dtype))
        self.W_O = nn.Parameter(torch.empty(h, d_head, d_model, dtype=cfg.dtype))
        for name in ("b_Q", "b_K", "b_V"):
            add_bias(self, name, (h, d_head), cfg)
        add_bias(self, "b_O", d_model, cfg)
        self.attn_scale = math.sqrt(d_head) if cfg.attn_scale is None else float(cfg.attn_scale)
        self.q_norm: LayerNorm | None = None
        self.k_norm: LayerNorm | None = None
        if cfg.qk_norm:  # per-head LayerNorm of q and k, one weight shared by the heads
            self.q_norm, self.k_norm = LayerNorm(cfg, d_head), LayerNorm(cfg, d_head)

        self.hook_q = HookPoint()  # [batch, pos, head_index, d_head]
        self.hook_k = HookPoint()  # [batch, pos, head_index, d_head]
        self.hook_v = HookPoint()  # [batch, pos, head_index, d_head]
        self.rotary: Rotary | None = None
        if cfg.positional_embedding_type == "rotary":
            self.rotary = Rotary(
                cfg.rotary_dim or d_head, cfg.n_ctx, cfg.rotary_base, cfg.rotary_adjacent_pairs
            )
            self.hook_rot_q = HookPoint()  # [batch, pos, head_index, d_head]
            self.hook_rot_k = HookPoint()  # [batch, pos, head_index, d_head]
        self.hook_attn_scores = HookPoint()  # [batch, head_index, query_pos, key_pos]
        self.hook_pattern = HookPoint()  # [batch, head_index, query_pos, key_pos]
        self.hook_z = HookPoint()  # [batch, pos, head_index, d_head]
        self.hook_result = HookPoint()  # [batch, pos, head_index, d_model]; use_attn_result
        self._internal_hooks = [m for m in self.modules() if isinstance(m, HookPoint)]
        self._qkv_cache: tuple | None = None  # (parameter versions, fused weights); _cached
        self.structure: tuple[HeadStructure, ...] | None = None
        self._plans: list[_Plan] = []
        # Set by set_structure (None: no structure; a None buffer is not in the state dict):
        # base_mask [head_index, query_pos, key_pos] (True: no edge), read_mask [head_index,
        # d_model, 1] and write_mask [head_index, 1, d_model] (1 where a head reads / writes).
        for name in ("base_mask", "read_mask", "write_mask"):
            self.register_buffer(name, None, persistent=False)

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
        if (
            not structure
            or edges[0][0] != 0
            or edges[-1][1] != h
            or any(a[1] != b[0] or a[0] >= a[1] for a, b in zip(edges, [*edges[1:], (h, h + 1)]))
        ):
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

    def hooks_active(self) -> bool:
        """True when a hook (or a cache) is attached to any hook point inside attention."""
        return any(hp.fwd_hooks or hp.bwd_hooks for hp in self._internal_hooks)

    def forward(
        self,
        x: Float[torch.Tensor, "batch pos d_model"] | SplitInputs,
        edge_mask: Bool[torch.Tensor, "... query_pos key_pos"] | None = None,
    ) -> Float[torch.Tensor, "batch pos d_model"]:
        """Attend over ``x``; or, given a tuple ``(query_input, key_input, value_input)``
        each ``[batch, pos, head_index, d_model]`` (a block's split q/k/v input), project
        each head's q, k and v from its own copy (always the explicit path)."""
        if isinstance(x, tuple) or self.cfg.use_attn_result or self.hooks_active():
            return self._forward_explicit(x, edge_mask)
        if self.structure is not None:
            return self._forward_structured(x, edge_mask)
        return self._forward_fast(x, edge_mask)

    # ------------------------------------------------------------------ explicit, hooked path
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

    def _forward_explicit(self, x, edge_mask):
        W_Q, W_K, W_V, W_O = self.W_Q, self.W_K, self.W_V, self.W_O
        if self.structure is not None:
            W_Q, W_K, W_V, W_O = self._structured_weights()
            edge_mask = merge_masks(self.base_mask, edge_mask)
        q_in, k_in, v_in = x if isinstance(x, tuple) else (x, x, x)
        q = self.hook_q(self._project(q_in, W_Q, self.b_Q))
        k = self.hook_k(self._project(k_in, W_K, self.b_K))
        v = self.hook_v(self._project(v_in, W_V, self.b_V))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.rotary is not None:
            q = self.hook_rot_q(self.rotary(q))
            k = self.hook_rot_k(self.rotary(k))
        # Scaling q (n * d_head values) rather than the scores (n * n) gives the same numbers.
        scores = einsum(
            q / self.attn_scale,
            k,
            "batch query_pos head_index d_head, batch key_pos head_index d_head "
            "-> batch head_index query_pos key_pos",
        )
        scores = self.hook_attn_scores(block_scores(scores, edge_mask))
        # a query row left with no key (by edge_mask or a hook at hook_attn_scores) is a zero
        # row; any other NaN (bad weights or inputs) propagates
        pattern = self.hook_pattern(pattern_of(scores))
        z = self.hook_z(
            einsum(
                v,
                pattern,
                "batch key_pos head_index d_head, batch head_index query_pos key_pos "
                "-> batch query_pos head_index d_head",
            )
        )
        if self.cfg.use_attn_result:
            result = self.hook_result(
                einsum(
                    z,
                    W_O,
                    "batch pos head_index d_head, head_index d_head d_model "
                    "-> batch pos head_index d_model",
                )
            )
            return result.sum(dim=-2) + self.b_O
        return (
            einsum(
                z,
                W_O,
                "batch pos head_index d_head, head_index d_head d_model -> batch pos d_model",
            )
            + self.b_O
        )

    def query_rows(
        self,
        x: Float[torch.Tensor, "batch pos d_model"],
        rows: Sequence[int],
        edge_mask: Bool[torch.Tensor, "... query_pos key_pos"] | None = None,
    ) -> Float[torch.Tensor, "batch row d_model"]:
        """``forward(x, edge_mask)[:, rows]``, computing only those query rows against every
        key (the keys' and values' projections, ``len(rows)`` rows of scores); no hook fires.
        The discovery screen reads the last layer at the positions the readout reads.

        >>> attn = Attention(EncoderConfig.preset("tiny")).eval()
        >>> _ = torch.manual_seed(0), [nn.init.normal_(p, std=0.3) for p in attn.parameters()]
        >>> x = torch.randn(2, 7, 16)
        >>> torch.allclose(attn.query_rows(x, [0, 3]), attn(x)[:, [0, 3]], atol=1e-6)
        True
        """
        projected = self.project(x, rows)  # the fast path, where it runs
        if projected is not None:
            return self.from_projected(projected, edge_mask)
        W_Q, W_K, W_V, W_O = self._structured_weights()
        edge_mask = merge_masks(self.base_mask, edge_mask)
        rows = list(rows)
        # rotary positions are those of the whole sequence: rotate every query, then pick
        q = _matmul_heads(x if self.rotary is not None else x[:, rows], W_Q, self.b_Q)
        kv = _matmul_heads(x, torch.cat((W_K, W_V)), torch.cat((self.b_K, self.b_V)))
        k, v = kv.split(self.cfg.n_heads, dim=2)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.rotary is not None:
            q, k = self.rotary(q)[:, rows], self.rotary(k)
        scores = einsum(
            q / self.attn_scale,
            k,
            "batch row head_index d_head, batch key_pos head_index d_head "
            "-> batch head_index row key_pos",
        )
        pattern = pattern_of(
            block_scores(scores, None if edge_mask is None else edge_mask[..., rows, :])
        )
        z = einsum(
            v,
            pattern,
            "batch key_pos head_index d_head, batch head_index row key_pos "
            "-> batch row head_index d_head",
        )
        return (
            einsum(
                z,
                W_O,
                "batch row head_index d_head, head_index d_head d_model -> batch row d_model",
            )
            + self.b_O
        )

    @staticmethod
    def _project(x, W, b):
        if x.ndim == 4:  # one copy of the input per head (split q/k/v input)
            pattern = "batch pos head_index d_model, head_index d_model d_head"
        else:
            pattern = "batch pos d_model, head_index d_model d_head"
        return einsum(x, W, f"{pattern} -> batch pos head_index d_head") + b

    # ------------------------------------------------------------------ fast, unhooked path
    def _forward_fast(self, x, edge_mask):
        return self.from_projected(self._project_fast(x), edge_mask)

    def project(
        self, x: Float[torch.Tensor, "batch pos d_model"], rows: Sequence[int] | None = None
    ) -> Projected | None:
        """The fast path's first half: ``q, k, v`` of ``x``, each ``[batch, pos, head_index,
        d_head]`` (rotated, normalised), which no edge mask changes, so every mask of one
        input can share them (`from_projected`); with ``rows``, the queries of those
        positions alone (every key and value still). None where the fast path does not run:
        a hook attached, ``use_attn_result``, a head structure.

        >>> attn = Attention(EncoderConfig.preset("tiny")).eval()
        >>> _ = torch.manual_seed(0), [nn.init.normal_(p, std=0.3) for p in attn.parameters()]
        >>> x, mask = torch.randn(2, 7, 16), torch.rand(4, 7, 7) > 0.5
        >>> shared = attn.project(x)
        >>> torch.equal(attn.from_projected(shared, mask), attn(x, mask))
        True
        """
        if self.cfg.use_attn_result or self.structure is not None or self.hooks_active():
            return None
        return self._project_fast(x, None if rows is None else list(rows))

    def _project_fast(self, x, rows=None):
        batch, n_pos, d_model = x.shape
        h, d_head = self.cfg.n_heads, self.cfg.d_head
        W_qkv, b_qkv, b_O = self._fused_weights()
        if rows is None or self.rotary is not None:  # rotary: every query rotated, then picked
            qkv = torch.addmm(b_qkv, x.reshape(batch * n_pos, -1), W_qkv)
            qkv = qkv.view(batch, n_pos, 3 * h, d_head)
        else:  # the queries of ``rows`` alone
            hd = h * d_head
            x_rows = take_rows(x, rows, 1).reshape(-1, d_model)
            q = torch.addmm(b_qkv[:hd], x_rows, W_qkv[:, :hd]).view(batch, len(rows), h, d_head)
            if self.q_norm is None and len(rows) * (d_model + n_pos * h) < n_pos * d_model:
                return Projected(q, None, None, b_O, rows, x)  # no key or value projected
            kv = torch.addmm(b_qkv[hd:], x.reshape(batch * n_pos, -1), W_qkv[:, hd:])
            k, v = kv.view(batch, n_pos, 2 * h, d_head).split(h, dim=2)
            if self.q_norm is not None:
                q, k = self._qk_norm(q, k)
            return Projected(q, k, v, b_O, rows)
        if self.rotary is None:
            q, k, v = qkv.split(h, dim=2)
        else:  # queries and keys share positions: rotate them in one pass
            q, k = self.rotary(qkv[:, :, : 2 * h]).split(h, dim=2)
            v = qkv[:, :, 2 * h :]
        if self.q_norm is not None:
            q, k = self._qk_norm(q, k)
        if rows is not None:
            q = take_rows(q, rows, 1)
        return Projected(q, k, v, b_O, rows)

    def from_projected(
        self,
        projected: Projected,
        edge_mask: Bool[torch.Tensor, "... query_pos key_pos"] | None = None,
    ) -> Float[torch.Tensor, "batch row d_model"]:
        """The fast path's second half: attention's output from `project`'s ``q, k, v`` with
        ``edge_mask``: ``[batch, pos, d_model]``, or ``[batch, row, d_model]`` for a projection
        of some query rows (equal to those rows of the whole output within float error: the
        products run on fewer rows).

        >>> attn = Attention(EncoderConfig.preset("tiny")).eval()
        >>> _ = torch.manual_seed(0), [nn.init.normal_(p, std=0.3) for p in attn.parameters()]
        >>> x = torch.randn(2, 7, 16)
        >>> out = attn.from_projected(attn.project(x, rows=[0, 3]))
        >>> torch.allclose(out, attn(x)[:, [0, 3]], atol=1e-6)
        True
        """
        q, k, v, b_O, rows, x = projected
        batch, n_query, h, d_head = q.shape
        if edge_mask is not None:
            # SDPA's CPU flash kernel takes only 4-D masks: a [head, q, k] mask sends it to the
            # math kernel, ~5x slower at the demo's 49 tokens. A view, so nothing is copied.
            edge_mask = edge_mask[(None,) * (4 - edge_mask.ndim)]
            if rows is not None:
                edge_mask = take_rows(edge_mask, rows, -2)
        if x is not None:
            return self._from_queries(q, x, edge_mask, b_O)
        z = _sdpa(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            edge_mask,
            1.0 / self.attn_scale,
        )
        z = z.transpose(1, 2).reshape(batch * n_query, h * d_head)
        out = torch.addmm(b_O, z, self.W_O.reshape(h * d_head, -1))
        return out.view(batch, n_query, -1)

    def _from_queries(self, q, x, blocked, b_O):
        """Attention of a few query rows ``q`` ``[batch, row, head, d_head]`` over the input
        ``x`` ``[batch, pos, d_model]``, computed on the input's side: a score is ``q . (x_j
        W_K + b_K) = (q W_K^T) . x_j + q . b_K``, whose last term is the same for every key of
        the row and so changes no softmax (left out; a non-finite ``b_K`` still makes the
        output NaN through ``b_O``, `_guarded_b_O`), and the update ``sum_j p_j (x_j W_V +
        b_V) = (sum_j p_j x_j) W_V + b_V sum_j p_j``, so no key or value is projected: about
        ``row * (d_model + pos * head)`` products per window and head dimension instead of
        ``pos * d_model`` (a CLS readout's last layer: 28x fewer at the paper preset). Equal
        to the projected form within float error; a row with every key cut attends to
        nothing (`pattern_of`), as everywhere."""
        scores = torch.einsum("brhe,hde->bhrd", q / self.attn_scale, self.W_K)
        scores = torch.einsum("bhrd,bnd->bhrn", scores, x)
        pattern = pattern_of(block_scores(scores, blocked))
        pooled = torch.einsum("bhrn,bnd->brhd", pattern, x)
        z = torch.einsum("brhd,hde->brhe", pooled, self.W_V)
        z = z + pattern.sum(-1).transpose(1, 2)[..., None] * self.b_V
        return torch.einsum("brhe,hem->brm", z, self.W_O) + b_O

    def _qk_norm(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d_head = (self.cfg.d_head,)
        q = F.layer_norm(q, d_head, self.q_norm.w, self.q_norm.b, self.q_norm.eps)
        return q, F.layer_norm(k, d_head, self.k_norm.w, self.k_norm.b, self.k_norm.eps)

    # ------------------------------------------------------------------ fast, structured path
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
            mask = merge_masks(self.base_mask[plan.heads], mask)
        if plan.n_groups == 0:
            z = _sdpa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask, scale)
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
            z = _sdpa(q, k, v, mask, scale)
        z = z.transpose(1, 2).reshape(batch, n_pos, n_heads, d_head)
        return z if inverse is None else z.index_select(1, inverse)

    def _fused_structured(self):
        """Per range of heads, its ``W_Q, W_K, W_V`` rows of the slice it reads as one
        ``[d_read, 3 * heads * d_head]`` matrix, their biases and its ``W_O`` columns of the
        slice it writes; and ``b_O`` (`_guarded_b_O`). Cached by `_cached`."""

        @no_type_check  # made on every forward: no runtime type checker's wrapper each time
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

    def _fused_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``W_Q, W_K, W_V`` as one ``[d_model, 3 * n_heads * d_head]`` matrix (and the
        biases), so q, k and v come from one matmul; and ``b_O`` (`_guarded_b_O`). Cached by
        `_cached`."""

        @no_type_check  # made on every forward: no runtime type checker's wrapper each time
        def build():
            W = torch.cat((self.W_Q, self.W_K, self.W_V), dim=0).permute(1, 0, 2).flatten(1)
            b = torch.cat((self.b_Q, self.b_K, self.b_V), dim=0).flatten()
            return W, b, self._guarded_b_O([W, b])

        params = (self.W_Q, self.W_K, self.W_V, self.b_Q, self.b_K, self.b_V, self.b_O)
        return self._cached(params, build)

    def _cached(self, params: tuple[torch.Tensor, ...], build):
        """``build()``, the fused copies of ``params`` a fast path runs on: rebuilt on every
        call while gradients flow to the weights (training); otherwise cached until a weight
        changes: the key holds each parameter's storage and version counter, which optimiser
        steps, ``load_state_dict`` and ``.to()`` all change. (Writing through ``param.data``
        in place bypasses the counter.)"""
        training = torch.is_grad_enabled() and any(p.requires_grad for p in params)
        key = tuple((p.data_ptr(), p._version) for p in params)
        if not training and self._qkv_cache is not None and self._qkv_cache[0] == key:
            return self._qkv_cache[1]
        # Outside inference mode, so a cached tensor may later meet autograd (input gradients).
        with torch.inference_mode(False), torch.set_grad_enabled(training):
            built = build()
        if not training:
            self._qkv_cache = (key, built)
        return built

    def _guarded_b_O(self, weights: Sequence[torch.Tensor]) -> Float[torch.Tensor, " d_model"]:
        """``b_O``, made NaN when any of ``weights`` (the fused q/k/v weights and biases) is
        not finite, without a host sync. Why: SDPA kernels return a zero row, not NaN, for a
        query row whose scores are all NaN (they read it as fully masked), so a NaN in
        ``W_Q``, ``W_K`` or their biases would be laundered into "attends to nothing" on the
        fast paths alone."""
        finite = functools.reduce(operator.and_, (torch.isfinite(t).all() for t in weights))
        return self.b_O + torch.where(finite, 0.0, float("nan")).to(self.b_O.dtype)

    def _apply(self, fn, recurse=True):
        # .to() / .double() / .cuda() replace the weights; the fused copies must not outlive
        # them (a freed storage can be reused at the same address, fooling the cache key). A
        # conversion that changes nothing (`.to()` the device the model is on: the study runner
        # and discovery do it on every call) keeps every tensor, and the copies stay valid.
        before = self._storages()
        out = super()._apply(fn, recurse)
        if self._storages() != before:
            self._qkv_cache = None
        return out

    def _storages(self) -> tuple:
        """Each of this module's tensors' storage address, dtype and device: a conversion
        that replaced any of them changes it (a new storage is allocated while the old one
        is still held, so it cannot take the old one's address)."""
        tensors = [*self.parameters(recurse=False), *self.buffers(recurse=False)]
        return tuple((t.data_ptr(), t.dtype, t.device) for t in tensors)

    # ------------------------------------------------------------------ legacy state dicts
    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in LEGACY_DERIVED_BUFFERS:
            state_dict.pop(prefix + name, None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
