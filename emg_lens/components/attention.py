"""Bidirectional multi-head attention with the legacy TransformerLens names, shapes and hooks.

Two paths compute the same function:

- the *explicit* path fires every hook (``hook_q``, ``hook_k``, ``hook_v``, ``hook_rot_q``,
  ``hook_rot_k``, ``hook_attn_scores``, ``hook_pattern``, ``hook_z``, ``hook_result``), and
  is taken whenever any of them has a hook attached (which includes caching);
- the *fast* path runs `torch.nn.functional.scaled_dot_product_attention` and is taken
  otherwise, so an unhooked model pays nothing for being hookable.

An ``edge_mask`` (bool, True = masked, broadcastable to ``[batch, head_index, query_pos,
key_pos]``) is honoured by both. A query whose keys are all masked attends to nothing: its
pattern row is zero and so is its attention update, never NaN. Any other NaN (from weights,
inputs or a hook) propagates to the output: it is never laundered into "attends to nothing".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import einsum
from jaxtyping import Bool, Float
from torch import nn
from transformer_lens.hook_points import HookPoint

from emg_lens.components.rotary import Rotary
from emg_lens.config import EncoderConfig

# Buffers that legacy TransformerLens attention saved in its state dict. They are derived from
# the config (emg_lens encoders are bidirectional), so loading one is accepted and ignored.
LEGACY_DERIVED_BUFFERS = ("mask", "IGNORE", "rotary_sin", "rotary_cos")


class Attention(nn.Module):
    """Multi-head attention: ``W_Q, W_K, W_V [n_heads, d_model, d_head]``,
    ``W_O [n_heads, d_head, d_model]``, ``b_Q, b_K, b_V [n_heads, d_head]``, ``b_O [d_model]``.

    >>> attn = Attention(EncoderConfig.preset("tiny"))
    >>> attn(torch.randn(2, 7, 16)).shape
    torch.Size([2, 7, 16])
    """

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        h, d_model, d_head = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q = nn.Parameter(torch.empty(h, d_model, d_head, dtype=cfg.dtype))
        self.W_K = nn.Parameter(torch.empty(h, d_model, d_head, dtype=cfg.dtype))
        self.W_V = nn.Parameter(torch.empty(h, d_model, d_head, dtype=cfg.dtype))
        self.W_O = nn.Parameter(torch.empty(h, d_head, d_model, dtype=cfg.dtype))
        self.b_Q = nn.Parameter(torch.zeros(h, d_head, dtype=cfg.dtype))
        self.b_K = nn.Parameter(torch.zeros(h, d_head, dtype=cfg.dtype))
        self.b_V = nn.Parameter(torch.zeros(h, d_head, dtype=cfg.dtype))
        self.b_O = nn.Parameter(torch.zeros(d_model, dtype=cfg.dtype))
        self.attn_scale = math.sqrt(d_head)

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
        self._qkv_cache: tuple | None = None  # (parameter versions, W_qkv, b_qkv, b_O)

    def hooks_active(self) -> bool:
        """True when a hook (or a cache) is attached to any hook point inside attention."""
        return any(hp.fwd_hooks or hp.bwd_hooks for hp in self._internal_hooks)

    def forward(
        self,
        x: Float[torch.Tensor, "batch pos d_model"],
        edge_mask: Bool[torch.Tensor, "... query_pos key_pos"] | None = None,
    ) -> Float[torch.Tensor, "batch pos d_model"]:
        if self.hooks_active():
            return self._forward_explicit(x, edge_mask)
        return self._forward_fast(x, edge_mask)

    # ------------------------------------------------------------------ explicit, hooked path
    def _forward_explicit(self, x, edge_mask):
        q = self.hook_q(self._project(x, self.W_Q, self.b_Q))
        k = self.hook_k(self._project(x, self.W_K, self.b_K))
        v = self.hook_v(self._project(x, self.W_V, self.b_V))
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
        if edge_mask is not None:
            scores = scores.masked_fill(edge_mask, float("-inf"))
        scores = self.hook_attn_scores(scores)
        pattern = F.softmax(scores, dim=-1)
        # A query row whose keys are all masked (-inf, by edge_mask or a hook at
        # hook_attn_scores) softmaxes to NaN; it attends to nothing instead. Any other NaN
        # (bad weights or inputs) propagates.
        fully_masked = torch.isneginf(scores).all(-1, keepdim=True)
        pattern = self.hook_pattern(pattern.masked_fill(fully_masked, 0.0))
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
                    self.W_O,
                    "batch pos head_index d_head, head_index d_head d_model "
                    "-> batch pos head_index d_model",
                )
            )
            return result.sum(dim=-2) + self.b_O
        return (
            einsum(
                z,
                self.W_O,
                "batch pos head_index d_head, head_index d_head d_model -> batch pos d_model",
            )
            + self.b_O
        )

    @staticmethod
    def _project(x, W, b):
        return (
            einsum(
                x, W, "batch pos d_model, head_index d_model d_head -> batch pos head_index d_head"
            )
            + b
        )

    # ------------------------------------------------------------------ fast, unhooked path
    def _forward_fast(self, x, edge_mask):
        batch, n_pos, _ = x.shape
        h, d_head = self.cfg.n_heads, self.cfg.d_head
        W_qkv, b_qkv, b_O = self._fused_weights()
        qkv = torch.addmm(b_qkv, x.reshape(batch * n_pos, -1), W_qkv)
        qkv = qkv.view(batch, n_pos, 3 * h, d_head)
        if self.rotary is None:
            q, k, v = qkv.split(h, dim=2)
        else:  # queries and keys share positions: rotate them in one pass
            q, k = self.rotary(qkv[:, :, : 2 * h]).split(h, dim=2)
            v = qkv[:, :, 2 * h :]
        allowed = None
        if edge_mask is not None:
            # SDPA's CPU flash kernel takes only 4-D masks: a [head, q, k] mask sends it to the
            # math kernel, ~5x slower at the demo's 49 tokens. A view, so nothing is copied.
            edge_mask = edge_mask[(None,) * (4 - edge_mask.ndim)]
            allowed = ~edge_mask
        z = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            attn_mask=allowed,
            scale=1.0 / self.attn_scale,
        )  # [batch, head_index, pos, d_head]
        if edge_mask is not None:
            # Fully masked query rows: some SDPA kernels return NaN, TransformerLens semantics
            # say 0. Only those rows are zeroed, so a NaN from weights or inputs propagates.
            # The fill copies z (~10% of a demo block on CPU), so it is skipped where no row is
            # fully masked; the check reads the mask on the host, so it is made on CPU only.
            fully_masked = edge_mask.all(-1, keepdim=True)
            if fully_masked.device.type != "cpu" or fully_masked.any():
                z = z.masked_fill(fully_masked, 0.0)
        z = z.transpose(1, 2).reshape(batch * n_pos, h * d_head)
        out = torch.addmm(b_O, z, self.W_O.reshape(h * d_head, -1))
        return out.view(batch, n_pos, -1)

    def _fused_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``W_Q, W_K, W_V`` as one ``[d_model, 3 * n_heads * d_head]`` matrix (and the
        biases), so q, k and v come from one matmul; and ``b_O``, made NaN when any of those
        weights is not finite. Rebuilt on every call while gradients flow to the weights
        (training); otherwise cached until a weight changes: the key holds each parameter's
        storage and version counter, which optimiser steps, ``load_state_dict`` and ``.to()``
        all change. (Writing through ``param.data`` in place bypasses the counter.)

        Why the NaN ``b_O``: SDPA kernels return a zero row, not NaN, for a query row whose
        scores are all NaN (they read it as fully masked), so a NaN in ``W_Q``, ``W_K`` or their
        biases would be laundered into "attends to nothing" on this path alone.
        """
        params = (self.W_Q, self.W_K, self.W_V, self.b_Q, self.b_K, self.b_V, self.b_O)
        training = torch.is_grad_enabled() and any(p.requires_grad for p in params)
        key = tuple((p.data_ptr(), p._version) for p in params)
        if not training and self._qkv_cache is not None and self._qkv_cache[0] == key:
            return self._qkv_cache[1:]
        # Outside inference mode, so a cached tensor may later meet autograd (input gradients).
        with torch.inference_mode(False), torch.set_grad_enabled(training):
            W = torch.cat((self.W_Q, self.W_K, self.W_V), dim=0).permute(1, 0, 2).flatten(1)
            b = torch.cat((self.b_Q, self.b_K, self.b_V), dim=0).flatten()
            finite = torch.isfinite(W).all() & torch.isfinite(b).all()  # no host sync
            b_O = self.b_O + torch.where(finite, 0.0, float("nan")).to(self.b_O.dtype)
        if not training:
            self._qkv_cache = (key, W, b, b_O)
        return W, b, b_O

    def _apply(self, fn, recurse=True):
        # .to() / .double() / .cuda() replace the weights; the fused copies must not outlive
        # them (a freed storage can be reused at the same address, fooling the cache key).
        self._qkv_cache = None
        return super()._apply(fn, recurse)

    # ------------------------------------------------------------------ legacy state dicts
    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in LEGACY_DERIVED_BUFFERS:
            state_dict.pop(prefix + name, None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
