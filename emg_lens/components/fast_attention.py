"""The fast path of `emg_lens.components.attention.Attention`: what runs when nothing watches.

`FastAttention` runs SDPA on q, k and v from one matmul of fused weights (cached until a weight
changes), whole, in two halves that every edge mask of one input can share, or for a few query
rows alone; it agrees with the explicit path to 1e-5 (docs/ARCHITECTURE.md, components).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import nn

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
from emg_lens.components.rotary import Rotary
from emg_lens.config import EncoderConfig

T = TypeVar("T")


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
    index = (*(slice(None),) * (dim % t.ndim), span if span is not None else list(rows))
    return t[index]


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


def sdpa(
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


class FastAttention(ConfigInit, nn.Module):
    """`Attention`'s fast path and the fused weights it runs on: the base of `Attention`
    (through `emg_lens.components.head_structure.StructuredHeads`), which builds what is
    declared here."""

    cfg: EncoderConfig
    W_Q: nn.Parameter  # [head_index, d_model, d_head], as W_K and W_V
    W_K: nn.Parameter
    W_V: nn.Parameter
    W_O: nn.Parameter  # [head_index, d_head, d_model]
    b_Q: torch.Tensor  # [head_index, d_head], as b_K and b_V; parameters or zero buffers
    b_K: torch.Tensor
    b_V: torch.Tensor
    b_O: torch.Tensor  # [d_model]
    attn_scale: float
    q_norm: LayerNorm | None  # both or neither (qk_norm)
    k_norm: LayerNorm | None
    rotary: Rotary | None
    _qkv_cache: tuple[tuple[tuple[int, int], ...], Any] | None  # (versions, fused): _cached

    def _forward_fast(self, x, edge_mask):
        return self.from_projected(self._project_fast(x), edge_mask)

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

        >>> from torch import nn
        >>> from emg_lens import EncoderConfig
        >>> from emg_lens.models import Attention
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
        z = sdpa(
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
        d_head, q_norm, k_norm = (self.cfg.d_head,), self.q_norm, self.k_norm
        assert q_norm is not None and k_norm is not None  # called where qk_norm is on
        q = F.layer_norm(q, d_head, q_norm.w, q_norm.b, q_norm.eps)
        return q, F.layer_norm(k, d_head, k_norm.w, k_norm.b, k_norm.eps)

    def _fused_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``W_Q, W_K, W_V`` as one ``[d_model, 3 * n_heads * d_head]`` matrix (and the
        biases), so q, k and v come from one matmul; and ``b_O`` (`_guarded_b_O`). Cached by
        `_cached`."""

        def build():
            W = torch.cat((self.W_Q, self.W_K, self.W_V), dim=0).permute(1, 0, 2).flatten(1)
            b = torch.cat((self.b_Q, self.b_K, self.b_V), dim=0).flatten()
            return W, b, self._guarded_b_O([W, b])

        params = (self.W_Q, self.W_K, self.W_V, self.b_Q, self.b_K, self.b_V, self.b_O)
        return self._cached(params, build)

    def _cached(self, params: tuple[torch.Tensor, ...], build: Callable[[], T]) -> T:
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
