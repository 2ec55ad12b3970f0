"""Attention calls seen where they are computed, during an attached model's forward only.

`Interceptor` is a `torch.overrides.TorchFunctionMode`: while active, every call of
``scaled_dot_product_attention``, ``multi_head_attention_forward`` and of a softmax over 4-D
scores (inside a module counted as attention) is one *attention call*, numbered in call order,
run untouched, with a cut, or computed explicitly with its hooks (``on_call``'s `Site`).

A torch function mode is per thread, but a hook on a user's module fires for whoever runs it:
every hook `attach` places is made by a `Scope` open around one forward and acts only inside it
(a context variable, per thread and task), so another thread or attachment passes untouched.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from emg_lens.components.attend import (
    as_bias,
    attend,
    blocked_by,
    cut_scores,
    empty_rows,
    fused,
    merge_masks,
    pattern_of,
)
from emg_lens.errors import ConversionError

SDPA = F.scaled_dot_product_attention
MHA = F.multi_head_attention_forward
SOFTMAXES = (torch.softmax, torch.Tensor.softmax, F.softmax)
SDPA_ARGS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
SDPA_DEFAULTS = {"attn_mask": None, "dropout_p": 0.0, "is_causal": False, "scale": None}
MHA_SIGNATURE = inspect.signature(MHA)


@dataclass(frozen=True)
class Call:
    """One attention call as the interceptor saw it: ``kind`` (``"sdpa"``, ``"mha"`` or
    ``"softmax"``), the path of the module running it (``""``: the root), and the shape of its
    scores ``[batch, heads, n_query, n_key]``."""

    kind: str
    module: str
    batch: int
    heads: int
    n_query: int
    n_key: int


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


@dataclass
class Site:
    """What one attention call does beyond the original: cut ``edge_mask`` (bool, True = cut,
    broadcastable to the scores) and call the hooks; ``hooked`` False and no mask: nothing."""

    edge_mask: torch.Tensor | None = None
    hooked: bool = False
    on_scores: Callable[[torch.Tensor], torch.Tensor] = field(default=_same)
    on_pattern: Callable[[torch.Tensor], torch.Tensor] = field(default=_same)

    @property
    def active(self) -> bool:
        return self.hooked or self.edge_mask is not None


OnCall = Callable[[Call], Site | None]

_OPEN: ContextVar[Scope | None] = ContextVar("emg_lens_attached_forward", default=None)


class Scope:
    """One forward of an attached model (or of a probe): while it is open (``with scope:``),
    in this thread (or task), the hooks it made (`guard`) act; anywhere else, and in a forward
    another scope opened inside it, they pass through (return None: the module's own input and
    output).

    >>> scope, seen = Scope(), []
    >>> hook = scope.guard(lambda *args: seen.append(args) or "acted")
    >>> hook(1), seen
    (None, [])
    >>> with scope:
    ...     hook(2), seen
    ('acted', [(2,)])
    """

    def __enter__(self) -> Scope:
        self._token = _OPEN.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _OPEN.reset(self._token)

    def guard(self, hook: Callable[..., Any]) -> Callable[..., Any]:
        """``hook``, acting only while this scope is the innermost one open here."""

        @functools.wraps(hook)
        def guarded(*args: Any) -> Any:
            return hook(*args) if _OPEN.get() is self else None

        return guarded


class ModuleTracker:
    """The stack of running modules among ``modules`` (path -> module), kept by forward pre-
    and post-hooks while the context of `track` is open, for the forwards run inside
    ``scope`` only (see the module docstring; default: a scope of its own, opened by
    `track`)."""

    def __init__(self, modules: Mapping[str, nn.Module], scope: Scope | None = None):
        self.modules = dict(modules)
        self.stack: list[str] = []
        self.scope = scope

    @property
    def current(self) -> str:
        """The innermost running module's path (``""`` when none is running)."""
        return self.stack[-1] if self.stack else ""

    @contextmanager
    def track(self) -> Iterator[ModuleTracker]:
        own = self.scope is None
        scope = Scope() if self.scope is None else self.scope
        handles = []
        try:
            for path, module in self.modules.items():
                enter, leave = scope.guard(self._enter(path)), scope.guard(self._exit(path))
                handles.append(module.register_forward_pre_hook(enter))
                handles.append(module.register_forward_hook(leave, always_call=True))
            if own:
                with scope:
                    yield self
            else:
                yield self
        finally:
            for handle in handles:
                handle.remove()
            self.stack.clear()

    def _enter(self, path: str) -> Callable:
        def hook(module: nn.Module, args: tuple) -> None:
            self.stack.append(path)

        return hook

    def _exit(self, path: str) -> Callable:
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            if self.stack and self.stack[-1] == path:
                self.stack.pop()

        return hook


class Interceptor(TorchFunctionMode):
    """See the module docstring. ``on_call`` gets each attention call in order and returns
    its `Site`; ``softmax_here()`` says whether a 4-D softmax now is an attention's (inside
    a module counted as attention); ``where(kind)`` names the module running a call of that
    kind."""

    def __init__(
        self,
        on_call: OnCall,
        *,
        softmax_here: Callable[[], bool],
        where: Callable[[str], str],
        folded: bool = False,
    ):
        super().__init__()
        self.on_call = on_call
        self.softmax_here = softmax_here
        self.where = where
        self.folded = folded  # a 3-D softmax [batch * heads, query, key] is one too
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is SDPA:
            return self._sdpa(func, args, kwargs)
        if func is MHA:
            return self._mha(func, args, kwargs)
        if (
            func in SOFTMAXES
            and is_scores_softmax(args, kwargs, self.folded)
            and self.softmax_here()
        ):
            return self._softmax(func, args, kwargs)
        return func(*args, **kwargs)

    def _site(self, kind: str, batch: int, heads: int, n_query: int, n_key: int) -> Site | None:
        call = Call(kind, self.where(kind), batch, heads, n_query, n_key)
        self.count += 1
        site = self.on_call(call)
        return site if site is not None and site.active else None

    def _softmax(self, func, args, kwargs):
        scores = args[0]
        folded = scores.ndim == 3  # [batch * heads, query, key]: seen as one head
        if folded:
            scores = scores.unsqueeze(1)
        site = self._site("softmax", *scores.shape)
        if site is None:
            return func(*args, **kwargs)
        scores = site.on_scores(cut_scores(scores, site.edge_mask))
        dim = -1  # the keys, whatever the model wrote (-1 or the last axis' index)
        rest = {k: v for k, v in kwargs.items() if k not in ("dim", "input")}
        pattern = site.on_pattern(pattern_of(scores, lambda s: func(s, dim, *args[2:], **rest)))
        return pattern.squeeze(1) if folded else pattern

    def _sdpa(self, func, args, kwargs):
        a = {**SDPA_DEFAULTS, "enable_gqa": False, **dict(zip(SDPA_ARGS, args)), **kwargs}
        q, k, v = a["query"], a["key"], a["value"]
        if q.ndim not in (3, 4):
            where = self.where("sdpa") or "the model's forward"
            raise ConversionError(
                f"scaled_dot_product_attention in {where} has a query {list(q.shape)}; attach "
                "reads [batch, head, query, d_head] or [batch, query, d_head]"
            )
        flat = q.ndim == 3
        batch, heads = q.shape[0], 1 if flat else q.shape[1]
        site = self._site("sdpa", batch, heads, q.shape[-2], k.shape[-2])
        if site is None:
            return func(*args, **kwargs)
        mask = a["attn_mask"]
        if not site.hooked and not flat:  # a cut alone: the fused kernel with one more mask
            return _sdpa_cut(func, a, site.edge_mask)
        if flat:
            q, k, v = q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)
            if mask is not None and mask.ndim == 3:
                mask = mask.unsqueeze(1)
        bias = blocked = None
        if mask is not None:
            if mask.dtype == torch.bool:
                blocked = blocked_by(mask, allows=True)  # SDPA: True = may attend
            else:
                bias = mask
        if a["is_causal"]:
            blocked = merge_masks(blocked, _future(q, k))
        if a["enable_gqa"] and k.shape[-3] != q.shape[-3]:
            repeat = q.shape[-3] // k.shape[-3]
            k, v = k.repeat_interleave(repeat, dim=-3), v.repeat_interleave(repeat, dim=-3)
        scale = a["scale"] if a["scale"] is not None else 1.0 / math.sqrt(q.shape[-1])
        out, _ = attend(
            q,
            k,
            v,
            scale=scale,
            bias=bias,
            blocked=blocked,
            edge_mask=site.edge_mask,
            on_scores=site.on_scores,
            on_pattern=site.on_pattern,
            dropout_p=float(a["dropout_p"]),
        )
        return out.squeeze(1) if flat else out

    def _mha(self, func, args, kwargs):
        bound = MHA_SIGNATURE.bind(*args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        query, key = a["query"], a["key"]
        batched = query.dim() == 3
        n_query, n_key = query.shape[0], key.shape[0]
        batch = query.shape[1] if batched else 1
        site = self._site("mha", batch, a["num_heads"], n_query, n_key)
        if site is None:
            return func(*args, **kwargs)
        for name in ("bias_k", "static_k", "static_v", "add_zero_attn"):
            if a[name] is not None and a[name] is not False:
                raise ConversionError(
                    f"nn.MultiheadAttention in {self.where('mha') or 'the model'} uses {name}, "
                    "which adds keys beyond the tokens; attach cuts edges between tokens only"
                )
        if not site.hooked:  # a cut alone: torch's own function with the cut in its mask
            merged = _mha_cut_mask(a, batched, site.edge_mask)
            if merged is not None:
                return func(**{**a, "attn_mask": merged, "is_causal": False})
        return _mha_explicit(a, batched, site)


def is_scores_softmax(args: tuple, kwargs: dict, folded: bool = False) -> bool:
    """A softmax over the last axis of a 4-D tensor (``[batch, head, query, key]`` scores),
    or, with ``folded``, of a 3-D one (``[batch * heads, query, key]``)."""
    x = args[0] if args else kwargs.get("input", kwargs.get("self"))
    dim = args[1] if len(args) > 1 else kwargs.get("dim")
    if not isinstance(x, torch.Tensor) or x.ndim not in ((3, 4) if folded else (4,)):
        return False
    return dim in (-1, x.ndim - 1)


def _mha_explicit(a: dict, batched: bool, site: Site):
    """``F.multi_head_attention_forward`` computed with `attend` (no extra keys, see
    `Interceptor._mha`); its masks keep their meaning: a bool ``attn_mask`` or
    ``key_padding_mask`` is True where attention is not allowed, a float one is added."""
    query, key, value = a["query"], a["key"], a["value"]
    kpm = a["key_padding_mask"]
    if not batched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        kpm = None if kpm is None else kpm.unsqueeze(0)
    n_query, batch, embed = query.shape
    n_key, heads = key.shape[0], a["num_heads"]
    d_head = embed // heads
    b = a["in_proj_bias"]
    if not a["use_separate_proj_weight"]:
        W = a["in_proj_weight"]  # torch's private helpers, absent from its stubs:
        q, k, v = F._in_projection_packed(query, key, value, W, b)  # type: ignore[attr-defined]
    else:
        b_q, b_k, b_v = (None, None, None) if b is None else b.chunk(3)
        q, k, v = F._in_projection(  # type: ignore[attr-defined]
            query,
            key,
            value,
            a["q_proj_weight"],
            a["k_proj_weight"],
            a["v_proj_weight"],
            b_q,
            b_k,
            b_v,
        )
    q = q.reshape(n_query, batch, heads, d_head).permute(1, 2, 0, 3)
    k = k.reshape(n_key, batch, heads, d_head).permute(1, 2, 0, 3)
    v = v.reshape(n_key, batch, heads, -1).permute(1, 2, 0, 3)
    bias, blocked = _mha_masks(a["attn_mask"], kpm, batch, heads, n_query, n_key)
    out, pattern = attend(
        q,
        k,
        v,
        scale=1.0 / math.sqrt(d_head),
        bias=bias,
        blocked=blocked,
        edge_mask=site.edge_mask,
        on_scores=site.on_scores,
        on_pattern=site.on_pattern,
        dropout_p=a["dropout_p"] if a["training"] else 0.0,
    )
    out = out.permute(2, 0, 1, 3).reshape(n_query * batch, -1)
    out = F.linear(out, a["out_proj_weight"], a["out_proj_bias"]).view(n_query, batch, -1)
    weights = None
    if a["need_weights"]:
        weights = pattern.mean(dim=1) if a["average_attn_weights"] else pattern
    if not batched:
        out = out.squeeze(1)
        weights = None if weights is None else weights.squeeze(0)
    return out, weights


def _mha_masks(attn_mask, kpm, batch, heads, n_query, n_key):
    """``nn.MultiheadAttention``'s ``attn_mask`` (``[query, key]`` or ``[batch * heads,
    query, key]``) and ``key_padding_mask`` (``[batch, key]``) as an additive bias and a
    boolean block, both broadcastable to ``[batch, heads, query, key]``."""
    bias = blocked = None
    for mask in (attn_mask, kpm):
        if mask is None:
            continue
        if mask is kpm:
            mask = mask.view(batch, 1, 1, n_key)
        elif mask.ndim == 3:
            mask = mask.view(batch, heads, n_query, n_key)
        if mask.dtype == torch.bool:
            blocked = merge_masks(blocked, mask)
        else:
            bias = mask if bias is None else bias + mask
    return bias, blocked


def _sdpa_cut(func, a: dict, edge_mask: torch.Tensor):
    """``scaled_dot_product_attention`` as called, with the cut keys blocked in its
    ``attn_mask`` (and ``is_causal`` made a mask); a query left with no key attends to
    nothing (a zero row, as `attend` gives, where kernels differ; `fused`)."""
    mask = a["attn_mask"]
    if a["is_causal"]:
        mask = merge_masks(mask, _future(a["query"], a["key"]), allows=True)
    mask = merge_masks(mask, edge_mask, allows=True)
    return fused(lambda m: func(**{**a, "attn_mask": m, "is_causal": False}), mask, allows=True)


def _future(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``is_causal``'s mask as SDPA applies it: True where a key lies after its query."""
    allowed = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
    return ~allowed


def _mha_cut_mask(a: dict, batched: bool, edge_mask: torch.Tensor) -> torch.Tensor | None:
    """``nn.MultiheadAttention``'s ``attn_mask`` with the cut added, as ``[query, key]`` or
    ``[batch * heads, query, key]``; None where a query would be left with no key (torch
    gives NaN there: the explicit path gives the zero row)."""
    query, key = a["query"], a["key"]
    n_query, n_key = query.shape[0], key.shape[0]
    batch, heads = (query.shape[1] if batched else 1), a["num_heads"]
    own, kpm = a["attn_mask"], a["key_padding_mask"]
    cut = edge_mask
    if cut.ndim > 2 or (own is not None and own.ndim == 3):
        cut = cut.expand(batch, heads, n_query, n_key).reshape(batch * heads, n_query, n_key)
        if own is not None and own.ndim == 2:
            own = own.expand(batch * heads, n_query, n_key)
    merged = merge_masks(own, cut)
    assert merged is not None  # a cut is given
    blocked = blocked_by(merged)
    if kpm is not None:
        pad = blocked_by(kpm)
        pad = pad.view(batch, 1, 1, n_key) if batched else pad.view(1, 1, 1, n_key)
        per_head = blocked.view(-1, heads, n_query, n_key) if blocked.ndim == 3 else blocked
        blocked = per_head | pad
    if bool(empty_rows(blocked).any()):
        return None
    if kpm is not None and kpm.dtype != torch.bool and merged.dtype == torch.bool:
        # nn.MultiheadAttention has made its masks float: keep both of one type
        merged = as_bias(merged, kpm.dtype, merged.device)
    return merged
