"""Bidirectional multi-head attention with the legacy TransformerLens names, shapes and hooks.

Two paths compute the same function (docs/DESIGN.md §2, "Speed"): the *explicit* path, taken
whenever a hook is attached or ``use_attn_result`` is on (as in TransformerLens, the flag, not
a hook, chooses the per-head computation, so a hook on ``hook_result`` changes no output bit),
and the *fast* path (`emg_lens.components.fast_attention`). Both cut an ``edge_mask`` by
`emg_lens.components.attend`'s rules. Converted architectures' options (``qk_norm``,
``attn_scale``, ``zero_biases``, a head structure) keep the names, shapes and hooks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from einops import einsum
from jaxtyping import Bool, Float
from torch import nn
from transformer_lens.hook_points import HookPoint

from emg_lens._hints import checked
from emg_lens.components.attend import block_scores, merge_masks, observed, pattern_of, read_hook
from emg_lens.components.fast_attention import Projected
from emg_lens.components.head_structure import StructuredHeads
from emg_lens.components.layer_norm import LayerNorm
from emg_lens.components.mlp import add_bias
from emg_lens.components.rotary import Rotary
from emg_lens.config import EncoderConfig

# Buffers that legacy TransformerLens attention saved in its state dict. They are derived from
# the config (emg_lens encoders are bidirectional), so loading one is accepted and ignored.
LEGACY_DERIVED_BUFFERS = ("mask", "IGNORE", "rotary_sin", "rotary_cos")

SplitInputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""``(query_input, key_input, value_input)``, each ``[batch, pos, head_index, d_model]``."""


def _matmul_heads(
    x: Float[torch.Tensor, "batch pos d_model"],
    W: Float[torch.Tensor, "head_index d_model d_head"],
    b: Float[torch.Tensor, "head_index d_head"],
) -> Float[torch.Tensor, "batch pos head_index d_head"]:
    """``x @ W[h] + b[h]`` for every head as one matmul (an einsum over the head axis runs as
    a batched product several times slower on CPU)."""
    out = torch.addmm(b.flatten(), x.reshape(-1, x.shape[-1]), W.permute(1, 0, 2).flatten(1))
    return out.view(*x.shape[:-1], *b.shape)


@checked
class Attention(StructuredHeads):
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
        self.q_norm = self.k_norm = None
        if cfg.qk_norm:  # per-head LayerNorm of q and k, one weight shared by the heads
            self.q_norm, self.k_norm = LayerNorm(cfg, d_head), LayerNorm(cfg, d_head)

        self.hook_q = HookPoint()  # [batch, pos, head_index, d_head]
        self.hook_k = HookPoint()  # [batch, pos, head_index, d_head]
        self.hook_v = HookPoint()  # [batch, pos, head_index, d_head]
        self.rotary = None
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
        self._qkv_cache = self.structure = None
        self._plans = []
        # set by set_structure (None: no structure; a None buffer is not in the state dict)
        for name in ("base_mask", "read_mask", "write_mask"):
            self.register_buffer(name, None, persistent=False)

    def hooks_active(self) -> bool:
        """True when anything observes a hook point inside attention (`attend.observed`)."""
        return observed(self._internal_hooks)

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
        return self._attend(q, k, v, W_O, edge_mask, hooked=True)

    def _attend(self, q, k, v, W_O, edge_mask, hooked: bool):
        """The output of queries ``q`` attending keys ``k`` and values ``v`` (each ``[batch,
        pos, head_index, d_head]``; ``q`` may hold some query rows only, ``edge_mask`` the
        same rows), through ``hook_attn_scores`` ... ``hook_result`` where ``hooked``."""
        # Scaling q (n * d_head values) rather than the scores (n * n) gives the same numbers.
        scores = einsum(
            q / self.attn_scale,
            k,
            "batch query_pos head_index d_head, batch key_pos head_index d_head "
            "-> batch head_index query_pos key_pos",
        )
        scores = block_scores(scores, edge_mask)
        scores = read_hook(self.hook_attn_scores, scores) if hooked else scores
        # a query row left with no key (by edge_mask or a hook at hook_attn_scores) is a zero
        # row; any other NaN (bad weights or inputs) propagates
        pattern = pattern_of(scores)
        pattern = read_hook(self.hook_pattern, pattern) if hooked else pattern
        z = einsum(
            v,
            pattern,
            "batch key_pos head_index d_head, batch head_index query_pos key_pos "
            "-> batch query_pos head_index d_head",
        )
        z = self.hook_z(z) if hooked else z
        if hooked and self.cfg.use_attn_result:
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
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.rotary is not None:
            q, k = self.rotary(q)[:, rows], self.rotary(k)
        rows_mask = None if edge_mask is None else edge_mask[..., rows, :]
        return self._attend(q, k, v, W_O, rows_mask, hooked=False)

    @staticmethod
    def _project(x, W, b):
        if x.ndim == 4:  # one copy of the input per head (split q/k/v input)
            pattern = "batch pos head_index d_model, head_index d_model d_head"
        else:
            pattern = "batch pos d_model, head_index d_model d_head"
        return einsum(x, W, f"{pattern} -> batch pos head_index d_head") + b

    def project(
        self, x: Float[torch.Tensor, "batch pos d_model"], rows: Sequence[int] | None = None
    ) -> Projected | None:
        """The fast path's first half: ``q, k, v`` of ``x``, each
        ``[batch, pos, head_index, d_head]`` (rotated, normalised), which no edge mask changes,
        so every mask of one input can share them (`from_projected`); with ``rows``, the
        queries of those positions alone (every key and value still). None where the fast path
        does not run: a hook attached, ``use_attn_result``, a head structure.

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

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in LEGACY_DERIVED_BUFFERS:
            state_dict.pop(prefix + name, None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
