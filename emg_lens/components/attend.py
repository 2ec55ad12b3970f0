"""The one -inf kernel (docs/ARCHITECTURE.md, components): how a cut meets a model's own mask,
and what a query with no key left attends to. Native attention (explicit, SDPA and
head-structure paths), discovery's screen and the attached models' interceptor all call it.
A query whose keys are all masked attends to nothing, never NaN (docs/DESIGN.md §2, "No NaN
from masking"); every other row is computed as before, bit for bit.

>>> q = k = v = torch.eye(3)[None, None]  # [batch, head, pos, d_head]
>>> cut = torch.tensor([[False, True, False]] * 3)  # no query reads key 1
>>> out, pattern = attend(q, k, v, scale=1.0, edge_mask=cut)
>>> pattern[0, 0, 1].tolist() == [0.5, 0.0, 0.5], bool(pattern[..., 1].eq(0).all())
(True, True)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import nn
from torch.nn.modules import module as torch_module

from emg_lens.errors import InputShapeError, describe

Hook = Callable[[torch.Tensor], torch.Tensor]
Mask = Bool[torch.Tensor, "... query key"] | Float[torch.Tensor, "... query key"]
NEG_INF = float("-inf")


def observed(points: Iterable[nn.Module]) -> bool:
    """Whether anything can see or change what passes one of ``points`` (hook points), so a
    fused kernel may not skip them: a hook by any means (torch's global module hooks too), or
    a ``forward`` set in place of its own (nnsight's, while a trace with interventions runs).

    >>> from transformer_lens.hook_points import HookPoint
    >>> point = HookPoint()
    >>> observed([point])
    False
    >>> handle = point.register_forward_pre_hook(lambda module, args: None)
    >>> observed([point]), handle.remove(), observed([point])
    (True, None, False)
    """
    g = torch_module  # torch's global module hooks
    if (
        g._global_forward_hooks
        or g._global_forward_pre_hooks
        or g._global_backward_hooks
        or g._global_backward_pre_hooks
    ):
        return True
    for p in points:
        if p._forward_hooks or p._forward_pre_hooks or p._backward_hooks or p._backward_pre_hooks:
            return True
        forward = p.__dict__.get("forward")
        if forward is not None:
            active = getattr(getattr(forward, "state", None), "active", None)  # nnsight's
            if active is None or active()[0] is not None:
                return True
    return False


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


def read_hook(point: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``point(x)``, refused (`InputShapeError`) where a hook changed ``x``'s shape or dtype,
    which would otherwise fail deep in an einsum, or broadcast silently.

    >>> from transformer_lens.hook_points import HookPoint
    >>> point = HookPoint()
    >>> point.name = "blocks.0.attn.hook_attn_scores"
    >>> _ = point.add_hook(lambda t, hook: t.double())
    >>> read_hook(point, torch.zeros(1, 2, 3, 3))
    Traceback (most recent call last):
    ...
    emg_lens.errors.InputShapeError: a hook at blocks.0.attn.hook_attn_scores returned torch.float64 [1, 2, 3, 3]; a hook there must return None or a tensor of what it was given: torch.float32 [1, 2, 3, 3] ([batch, head_index, query_pos, key_pos])
    """  # noqa: E501
    out = point(x)
    if out is x or (
        isinstance(out, torch.Tensor) and out.shape == x.shape and out.dtype == x.dtype
    ):
        return out
    raise InputShapeError(
        f"a hook at {point.name} returned {describe(out)}; a hook there must "
        f"return None or a tensor of what it was given: {describe(x)} ([batch, "
        "head_index, query_pos, key_pos])"
    )


def merge_masks(
    own: Mask | None, cut: Bool[torch.Tensor, "... query key"] | None, *, allows: bool = False
) -> Mask | None:
    """``own`` with the keys of ``cut`` (True = cut) blocked, of ``own``'s kind: a bool mask
    stays bool (True = blocked, as ``nn.MultiheadAttention`` reads it; with ``allows``, True
    = may attend, as ``scaled_dot_product_attention`` reads it), a float mask stays additive
    (-inf at the cut); ``own`` None: the cut in the bool form; ``cut`` None: ``own``.

    >>> cut = torch.tensor([[True, False]])
    >>> merge_masks(torch.tensor([[False, True]]), cut).tolist()
    [[True, True]]
    >>> merge_masks(None, cut, allows=True).tolist(), merge_masks(torch.zeros(1, 2), cut).tolist()
    ([[False, True]], [[-inf, 0.0]])
    """
    if cut is None:
        return own
    if own is None:
        return ~cut if allows else cut
    if own.dtype != torch.bool:
        return own.masked_fill(cut, NEG_INF)
    return own & ~cut if allows else own | cut


def blocked_by(mask: Mask, *, allows: bool = False) -> Bool[torch.Tensor, "... query key"]:
    """True where ``mask`` lets no attention through: a bool mask as it reads (``allows``:
    True = may attend), a float one (additive, or scores) where it is -inf.

    >>> blocked_by(torch.tensor([[0.0, -torch.inf]])).tolist()
    [[False, True]]
    """
    if mask.dtype != torch.bool:
        return mask == NEG_INF
    return ~mask if allows else mask


def as_bias(
    blocked: Bool[torch.Tensor, "... query key"],
    dtype: torch.dtype,
    device: torch.device | str,
    *,
    allows: bool = False,
) -> Float[torch.Tensor, "... query key"]:
    """A bool mask (True = blocked; with ``allows``, True = may attend) as an additive one:
    -inf where blocked, 0 elsewhere (the float mask SDPA itself makes of a bool one).

    >>> as_bias(torch.tensor([[True, False]]), torch.float32, torch.device("cpu")).tolist()
    [[-inf, 0.0]]
    >>> as_bias(torch.tensor([[True, False]]), torch.float32, "cpu", allows=True).tolist()
    [[0.0, -inf]]
    """
    allowed = (blocked if allows else ~blocked).to(device)
    if eager_on_cpu(allowed):
        # 1 - 1/x is 0 where x = 1 and -inf where x = 0: three vectorised passes, where a
        # masked fill (or SDPA's own where) takes 3-4 times as long on a CPU.
        bias = allowed.to(dtype).reciprocal_().neg_()
        return bias.add_(1.0)
    return torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill_(~allowed, NEG_INF)


def block_scores(
    scores: Float[torch.Tensor, "... query key"],
    blocked: Bool[torch.Tensor, "... query key"] | None,
) -> Float[torch.Tensor, "... query key"]:
    """``scores`` at -inf where ``blocked`` (True), whatever they were (a NaN or +inf score
    included): a boolean mask filled in, as native attention and SDPA's boolean masks do.

    >>> block_scores(torch.tensor([[torch.nan, 1.0]]), torch.tensor([[True, False]])).tolist()
    [[-inf, 1.0]]
    """
    return scores if blocked is None else scores.masked_fill(blocked, NEG_INF)


def cut_scores(
    scores: Float[torch.Tensor, "batch head query key"],
    edge_mask: Bool[torch.Tensor, "... query key"] | None,
) -> Float[torch.Tensor, "batch head query key"]:
    """``scores`` with the cut edges (True in ``edge_mask``) at -inf, added as a bias built on
    the small mask (cheaper than filling the large scores by a broadcast boolean mask).

    >>> cut_scores(torch.zeros(1, 1, 1, 2), torch.tensor([[True, False]])).tolist()
    [[[[-inf, 0.0]]]]
    """
    if edge_mask is None:
        return scores
    return scores + as_bias(edge_mask, scores.dtype, scores.device)


def empty_rows(blocked: Bool[torch.Tensor, "... query key"]) -> Bool[torch.Tensor, "... query 1"]:
    """The query rows that attend to nothing (every key blocked): the rule's one place.

    >>> empty_rows(torch.tensor([[True, True], [True, False]])).tolist()
    [[True], [False]]
    """
    if eager_on_cpu(blocked) and blocked.shape[-1] and blocked.dtype == torch.bool:
        # The same bytes as uint8, their minimum: torch's bool all() on a CPU reduces a short
        # last axis 4-15 times slower (a [64, 8, 641, 641] mask: 365 ms against 25 ms).
        return blocked.view(torch.uint8).amin(-1, keepdim=True).view(torch.bool)
    return blocked.all(-1, keepdim=True)


def eager_on_cpu(t: torch.Tensor) -> bool:
    """Whether ``t`` is on a CPU and not traced (ONNX): there a fill may be skipped after a
    look at the data (on a GPU the look would wait for the device; a trace cannot branch).

    >>> eager_on_cpu(torch.zeros(2))
    True
    """
    if t.device.type != "cpu" or torch.jit.is_tracing():
        return False
    return not torch.onnx.is_in_onnx_export()


def open_rows(
    mask: Mask, empty: Bool[torch.Tensor, "... query 1"], *, allows: bool = False
) -> Mask:
    """``mask`` with every key of the ``empty`` rows let through (in ``mask``'s own form: a bool
    mask, True = blocked, or with ``allows`` True = may attend; an additive one 0): what a
    softmax over such a row sees instead of -inf only, so that it and its gradient are finite.

    >>> blocked = torch.tensor([[True, True], [True, False]])
    >>> open_rows(blocked, empty_rows(blocked)).tolist()
    [[False, False], [True, False]]
    """
    if mask.dtype != torch.bool:
        return mask.masked_fill(empty, 0.0)
    return mask | empty if allows else mask & ~empty


def fused(
    kernel: Callable[[Any], torch.Tensor], mask: Mask | None, *, allows: bool = False
) -> Float[torch.Tensor, "... query d"]:
    """``kernel(mask)``, a fused attention given its mask (of `merge_masks`'s forms), under
    the empty-row rule: a row whose keys are all blocked is opened for the kernel (`open_rows`)
    and zero in the output; every other row, a NaN included, is what the kernel gives.

    >>> q = k = v = torch.ones(1, 1, 2, 3)
    >>> blocked = torch.tensor([[True, True], [False, True]])  # query 0 keeps no key
    >>> sdpa = lambda m: F.scaled_dot_product_attention(q, k, v, attn_mask=m)
    >>> fused(sdpa, ~blocked, allows=True)[0, 0].tolist()
    [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]
    """
    if mask is None:
        return kernel(None)
    empty = empty_rows(blocked_by(mask, allows=allows))
    if eager_on_cpu(empty) and not bool(empty.any()):
        return kernel(mask)
    return kernel(open_rows(mask, empty, allows=allows)).masked_fill(empty, 0.0)


def pattern_of(
    scores: Float[torch.Tensor, "*batch query key"],
    softmax: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Float[torch.Tensor, "*batch query key"]:
    """``softmax(scores)`` over the keys, a row whose scores are all -inf a zero row (it
    attends to nothing), with a zero gradient (its softmax is taken over zeros, then zeroed);
    ``softmax`` is the model's own call where there is one.

    >>> scores = torch.tensor([[[[0.0, 0.0], [-torch.inf, -torch.inf]]]], requires_grad=True)
    >>> pattern = pattern_of(scores)
    >>> pattern.tolist(), torch.autograd.grad(pattern[..., 0].sum(), scores)[0][0, 0].tolist()
    ([[[[0.5, 0.5], [0.0, 0.0]]]], [[0.25, -0.25], [0.0, 0.0]])
    """
    if softmax is None:
        softmax = functools.partial(F.softmax, dim=-1)
    if eager_on_cpu(scores):
        # A row of -inf only is a NaN row after the softmax, so a pattern without NaN has none
        # and needs no fill: one reduction instead of three passes over the scores.
        pattern = softmax(scores)
        if not bool(pattern.sum().isnan()):
            return pattern
    return fused(softmax, scores)


def cut_pattern(
    scores: Float[torch.Tensor, "... query key"], cut: Bool[torch.Tensor, "... query key"]
) -> Float[torch.Tensor, "... query key"]:
    """The pattern ``scores`` give with the keys ``cut`` (True) removed (`pattern_of`); every
    blocked key is filled, not only the cut's, so an empty row has a zero gradient. Discovery's
    screen computes every cut's pattern change by it.

    >>> scores = torch.tensor([[0.0, 0.0, -torch.inf], [0.0, 1.0, 2.0]])
    >>> cut_pattern(scores, torch.tensor([[False, True, False], [True, True, True]])).tolist()
    [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    """
    return pattern_of(block_scores(scores, cut | blocked_by(scores)))


def attend(
    q: Float[torch.Tensor, "batch head query d_head"],
    k: Float[torch.Tensor, "batch head key d_head"],
    v: Float[torch.Tensor, "batch head key d_value"],
    *,
    scale: float,
    bias: Float[torch.Tensor, "... query key"] | None = None,
    blocked: Bool[torch.Tensor, "... query key"] | None = None,
    edge_mask: Bool[torch.Tensor, "... query key"] | None = None,
    on_scores: Hook = _same,
    on_pattern: Hook = _same,
    dropout_p: float = 0.0,
) -> tuple[
    Float[torch.Tensor, "batch head query d_value"], Float[torch.Tensor, "batch head query key"]
]:
    """``(softmax(q k^T * scale + bias) v, pattern)`` computed explicitly: ``bias`` is the
    model's additive mask, ``blocked`` (True = may not attend) its boolean one, ``edge_mask``
    the cut; ``dropout_p`` acts on the pattern after ``on_pattern``, as in SDPA.

    >>> q, k, v = torch.randn(2, 2, 4, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 3)
    >>> out, _ = attend(q, k, v, scale=8 ** -0.5)
    >>> bool(torch.allclose(out, F.scaled_dot_product_attention(q, k, v), atol=1e-6))
    True
    """
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale
    if bias is not None:
        scores = scores + bias
    scores = on_scores(cut_scores(block_scores(scores, blocked), edge_mask))
    pattern = on_pattern(pattern_of(scores))
    used = F.dropout(pattern, p=dropout_p, training=True) if dropout_p > 0.0 else pattern
    return torch.matmul(used, v), pattern
