"""Edge sets: which query token may read which key token, per attention head.

An `EdgeSet` is a predicate over (head, query token, key token). An *edge* ``(q, k)`` means
that query token ``q`` reads key token ``k``, so information flows ``k -> q``: masking it stops
``q`` from seeing ``k`` on that head. Edge sets are built from selectors, which ask the token
layout (`emg_lens.layout.TokenLayout`), never raw positions, so one expression works on every
model:

=====================================  ======================================================
selector                               edges (q reads k)
=====================================  ======================================================
`unimodal` ``(include_cls=False)``     q and k in the same modality (self edges included)
`cross_modal` ``(include_cls=False)``  q and k in different modalities
`within` ``(group)``                   q and k both in ``group``
`between` ``(query_group, key_group)`` q in ``query_group``, k in ``key_group`` (directed)
`to_cls`                               q is CLS, k is not (information flowing *to* CLS)
`from_cls`                             k is CLS, q is not (information flowing *from* CLS)
`same_channel` / `cross_channel`       both tokens embed a channel; equal / different channel
`time_window` ``(max_lag, min_lag=0)`` both tokens have a time patch, ``min_lag <= |t_q - t_k|
                                       <= max_lag``
`heads` ``(*indices)``                 every edge, on the given heads only
`all_edges` / `no_edges`               every edge / none
=====================================  ======================================================

The CLS rule: edges that touch the CLS token are neither unimodal nor cross-modal unless
``include_cls=True``, which makes CLS a modality of its own (CLS -> CLS is unimodal, CLS <->
signal is cross-modal). So ``unimodal(include_cls=True) | cross_modal(include_cls=True)`` is
every edge, while without the flag the two leave out exactly the edges that touch CLS. Note that
masking ``cross_modal`` alone does not isolate the modalities beyond one layer: information can
still travel emg -> CLS -> acc across two layers; ``cross_modal | from_cls`` cuts that route
while CLS still reads every token.

Edge sets combine with ``|`` (union), ``&`` (intersection), ``-`` (difference) and ``~``
(complement over all heads x tokens x tokens); ``e.on_heads([0, 2])`` is ``e & heads(0, 2)``.
They are frozen, hashable and compared structurally. `EdgeSet.compile` turns one into a boolean
``[head_index, query_pos, key_pos]`` mask (True = masked, i.e. in the set), the form that
``model(x, edge_masks={layer: mask})`` and the masking hooks take.

Every edge set has a canonical string form, used by study files, that `parse` reads back to an
equal edge set. Its precedence is ``~`` over ``&`` over ``|`` and ``-`` (which share a level and
associate to the left, as SQL's INTERSECT over UNION / EXCEPT); this differs from Python, where
``-`` binds tighter than ``&``, so parenthesise mixed ``-`` in code.

>>> layout = TokenLayout.channel_tokens({"emg": 1, "acc": 2})
>>> edges = cross_modal() & heads(0, 2)
>>> str(edges)
'cross_modal & heads(0,2)'
>>> parse("cross_modal & heads(0, 2)") == edges
True
>>> mask = edges.compile(layout, n_heads=4)
>>> mask.shape
torch.Size([4, 4, 4])
>>> mask[0].int()  # tokens: cls, emg, acc, acc; row = query, column = key
tensor([[0, 0, 0, 0],
        [0, 0, 1, 1],
        [0, 1, 0, 0],
        [0, 1, 0, 0]], dtype=torch.int32)
>>> bool(mask[1].any())
False
"""

from __future__ import annotations

import difflib
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from jaxtyping import Bool

from emg_lens.errors import ArgumentError, EdgeExpressionError, LayoutError
from emg_lens.layout import CLS, TokenLayout

__all__ = [
    "EdgeSet",
    "all_edges",
    "between",
    "cross_channel",
    "cross_modal",
    "from_cls",
    "heads",
    "no_edges",
    "parse",
    "same_channel",
    "time_window",
    "to_cls",
    "unimodal",
    "within",
]

# A partial mask: ``[query_pos, key_pos]`` for head-independent selectors, ``[head, 1, 1]``
# for `heads`, and any broadcast of the two for combinations.
PartialMask = Bool[torch.Tensor, "*#head #query_pos #key_pos"]

# Binding strength in the string form: a child binding more weakly than its parent is wrapped
# in parentheses (and, binary operators being left-associative, so is an equally strong right
# child).
_PREC_UNION, _PREC_INTERSECTION, _PREC_COMPLEMENT, _PREC_ATOM = 1, 2, 3, 4


# ============================================================================ compile context
class _Context:
    """Layout facts as broadcastable tensors: ``*_q`` are ``[pos, 1]``, ``*_k`` ``[1, pos]``."""

    def __init__(self, layout: TokenLayout, n_heads: int, device: torch.device | str | None):
        self.layout = layout
        self.n_heads = n_heads
        self.device = device
        gid = layout.group_ids().to(device)
        cls_id = layout.groups.index(CLS) if layout.has_cls else -1
        ch = layout.channel_ids().to(device)
        t = layout.time_ids().to(device)
        self.group_q, self.group_k = gid[:, None], gid[None, :]
        self.cls_q, self.cls_k = self.group_q == cls_id, self.group_k == cls_id
        self.channel_q, self.channel_k = ch[:, None], ch[None, :]
        self.time_q, self.time_k = t[:, None], t[None, :]

    def group_index(self, group: str, selector: EdgeSet) -> int:
        if group not in self.layout.groups:
            raise LayoutError(
                f"edge set {selector} names token group {group!r}, but this layout has groups "
                f"{self.layout.groups}"
            )
        return self.layout.groups.index(group)

    def require_cls(self, selector: EdgeSet) -> None:
        if not self.layout.has_cls:
            raise LayoutError(
                f"edge set {selector} needs a CLS token, but this layout has none (groups "
                f"{self.layout.groups})"
            )

    def constant(self, value: bool) -> PartialMask:
        return torch.full((1, 1), value, dtype=torch.bool, device=self.device)


# ============================================================================ base class
class EdgeSet:
    """A set of attention edges (head, query token, key token); see the module docstring.

    Build one with the selector functions (`unimodal`, `within`, `heads`, ...) and the
    operators ``| & - ~``, or with `parse`. Instances are frozen dataclasses: equal when their
    expression trees are equal, usable as dict keys.

    >>> e = ~unimodal(include_cls=True)
    >>> e
    EdgeSet('~unimodal(include_cls)')
    >>> e == parse(str(e)), e.groups()
    (True, set())
    """

    _prec: ClassVar[int] = _PREC_ATOM

    # ------------------------------------------------------------------ algebra
    def __or__(self, other: EdgeSet) -> EdgeSet:
        return Union(self, other) if isinstance(other, EdgeSet) else NotImplemented

    def __and__(self, other: EdgeSet) -> EdgeSet:
        return Intersection(self, other) if isinstance(other, EdgeSet) else NotImplemented

    def __sub__(self, other: EdgeSet) -> EdgeSet:
        return Difference(self, other) if isinstance(other, EdgeSet) else NotImplemented

    def __invert__(self) -> EdgeSet:
        return Complement(self)

    def __bool__(self) -> bool:
        raise TypeError(
            f"the truth value of an edge set ({self}) is ambiguous: combine edge sets with "
            "| & - ~, not `or`, `and`, `not`; compare with == or `is None`"
        )

    def on_heads(self, *indices: int | Iterable[int]) -> EdgeSet:
        """These edges on the given heads only: ``self & heads(*indices)``.

        >>> str(cross_modal().on_heads([2, 0]))
        'cross_modal & heads(0,2)'
        """
        return self & heads(*indices)

    # ------------------------------------------------------------------ compile
    def compile(
        self, layout: TokenLayout, n_heads: int, *, device: torch.device | str | None = None
    ) -> Bool[torch.Tensor, "head_index query_pos key_pos"]:
        """The boolean mask of this edge set on ``layout``: True where (head, query, key) is
        in the set, i.e. masked when handed to ``edge_masks`` or a masking hook.

        Raises `LayoutError` for a group the layout lacks, `to_cls`/`from_cls` on a layout
        without CLS, or a head index outside ``[0, n_heads)``.

        >>> layout = TokenLayout.channel_tokens({"emg": 2}, cls_token=False)
        >>> same_channel().compile(layout, n_heads=1)
        tensor([[[ True, False],
                 [False,  True]]])
        >>> within("acc").compile(layout, n_heads=1)
        Traceback (most recent call last):
        ...
        emg_lens.errors.LayoutError: edge set within(acc) names token group 'acc', but this layout has groups ('emg',)
        """  # noqa: E501
        if not isinstance(layout, TokenLayout):
            raise ArgumentError(
                f"EdgeSet.compile needs a TokenLayout (e.g. model.layout), got "
                f"{type(layout).__name__}"
            )
        if not isinstance(n_heads, int) or isinstance(n_heads, bool) or n_heads < 1:
            raise ArgumentError(f"n_heads must be a positive int, got {n_heads!r}")
        ctx = _Context(layout, n_heads, device)
        n = layout.n_tokens
        return torch.broadcast_to(self._mask(ctx), (n_heads, n, n)).contiguous()

    def _mask(self, ctx: _Context) -> PartialMask:
        raise NotImplementedError

    def groups(self) -> set[str]:
        """The token groups this expression names (``"cls"`` for `to_cls` and `from_cls`),
        so a spec can be checked against a layout before anything runs.

        >>> sorted((within("emg") | to_cls() | unimodal()).groups())
        ['cls', 'emg']
        """
        return set()

    # ------------------------------------------------------------------ string form
    def __str__(self) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"EdgeSet({str(self)!r})"

    @staticmethod
    def parse(expr: str | EdgeSet) -> EdgeSet:
        """Alias of `emg_lens.edges.parse`.

        >>> EdgeSet.parse("within(emg)") == within("emg")
        True
        """
        return parse(expr)


def _wrap(child: EdgeSet, parens: bool) -> str:
    return f"({child})" if parens else str(child)


# ============================================================================ operators
@dataclass(frozen=True, repr=False)
class Union(EdgeSet):
    """Edges in ``left`` or ``right`` (``left | right``)."""

    left: EdgeSet
    right: EdgeSet
    _prec: ClassVar[int] = _PREC_UNION
    _symbol: ClassVar[str] = "|"

    def _mask(self, ctx: _Context) -> PartialMask:
        return self.left._mask(ctx) | self.right._mask(ctx)

    def groups(self) -> set[str]:
        return self.left.groups() | self.right.groups()

    def __str__(self) -> str:
        left = _wrap(self.left, self.left._prec < self._prec)
        right = _wrap(self.right, self.right._prec <= self._prec)
        return f"{left} {self._symbol} {right}"


@dataclass(frozen=True, repr=False)
class Difference(Union):
    """Edges in ``left`` but not in ``right`` (``left - right``)."""

    _symbol: ClassVar[str] = "-"

    def _mask(self, ctx: _Context) -> PartialMask:
        return self.left._mask(ctx) & ~self.right._mask(ctx)


@dataclass(frozen=True, repr=False)
class Intersection(Union):
    """Edges in both ``left`` and ``right`` (``left & right``)."""

    _prec: ClassVar[int] = _PREC_INTERSECTION
    _symbol: ClassVar[str] = "&"

    def _mask(self, ctx: _Context) -> PartialMask:
        return self.left._mask(ctx) & self.right._mask(ctx)


@dataclass(frozen=True, repr=False)
class Complement(EdgeSet):
    """Every edge (all heads x tokens x tokens) not in ``operand`` (``~operand``)."""

    operand: EdgeSet
    _prec: ClassVar[int] = _PREC_COMPLEMENT

    def _mask(self, ctx: _Context) -> PartialMask:
        return ~self.operand._mask(ctx)

    def groups(self) -> set[str]:
        return self.operand.groups()

    def __str__(self) -> str:
        return "~" + _wrap(self.operand, self.operand._prec < self._prec)


# ============================================================================ selectors
def _check_group(group: Any, what: str) -> str:
    if not isinstance(group, str) or not group.isidentifier():
        raise ArgumentError(
            f"{what} must be a token group name (an identifier such as 'emg' or 'cls'), "
            f"got {group!r}"
        )
    return group


def _check_int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise ArgumentError(f"{what} must be a non-negative int, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise ArgumentError(f"{what} must be a non-negative int, got {value!r}") from None
    if value < 0:
        raise ArgumentError(f"{what} must be a non-negative int, got {value!r}")
    return value


def _check_flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ArgumentError(f"{what} must be True or False, got {value!r}")
    return value


@dataclass(frozen=True, repr=False)
class Unimodal(EdgeSet):
    """See `unimodal`."""

    include_cls: bool = False

    def __post_init__(self) -> None:
        _check_flag(self.include_cls, "unimodal(include_cls=...)")

    def _mask(self, ctx: _Context) -> PartialMask:
        same = ctx.group_q == ctx.group_k
        return same if self.include_cls else same & ~ctx.cls_q & ~ctx.cls_k

    def __str__(self) -> str:
        return "unimodal(include_cls)" if self.include_cls else "unimodal"


@dataclass(frozen=True, repr=False)
class CrossModal(EdgeSet):
    """See `cross_modal`."""

    include_cls: bool = False

    def __post_init__(self) -> None:
        _check_flag(self.include_cls, "cross_modal(include_cls=...)")

    def _mask(self, ctx: _Context) -> PartialMask:
        differ = ctx.group_q != ctx.group_k
        return differ if self.include_cls else differ & ~ctx.cls_q & ~ctx.cls_k

    def __str__(self) -> str:
        return "cross_modal(include_cls)" if self.include_cls else "cross_modal"


@dataclass(frozen=True, repr=False)
class Within(EdgeSet):
    """See `within`."""

    group: str

    def __post_init__(self) -> None:
        _check_group(self.group, "within(group)")

    def _mask(self, ctx: _Context) -> PartialMask:
        g = ctx.group_index(self.group, self)
        return (ctx.group_q == g) & (ctx.group_k == g)

    def groups(self) -> set[str]:
        return {self.group}

    def __str__(self) -> str:
        return f"within({self.group})"


@dataclass(frozen=True, repr=False)
class Between(EdgeSet):
    """See `between`."""

    query_group: str
    key_group: str

    def __post_init__(self) -> None:
        _check_group(self.query_group, "between(query_group, ...)")
        _check_group(self.key_group, "between(..., key_group)")

    def _mask(self, ctx: _Context) -> PartialMask:
        gq = ctx.group_index(self.query_group, self)
        gk = ctx.group_index(self.key_group, self)
        return (ctx.group_q == gq) & (ctx.group_k == gk)

    def groups(self) -> set[str]:
        return {self.query_group, self.key_group}

    def __str__(self) -> str:
        return f"between({self.query_group},{self.key_group})"


@dataclass(frozen=True, repr=False)
class ToCls(EdgeSet):
    """See `to_cls`."""

    def _mask(self, ctx: _Context) -> PartialMask:
        ctx.require_cls(self)
        return ctx.cls_q & ~ctx.cls_k

    def groups(self) -> set[str]:
        return {CLS}

    def __str__(self) -> str:
        return "to_cls"


@dataclass(frozen=True, repr=False)
class FromCls(EdgeSet):
    """See `from_cls`."""

    def _mask(self, ctx: _Context) -> PartialMask:
        ctx.require_cls(self)
        return ~ctx.cls_q & ctx.cls_k

    def groups(self) -> set[str]:
        return {CLS}

    def __str__(self) -> str:
        return "from_cls"


@dataclass(frozen=True, repr=False)
class SameChannel(EdgeSet):
    """See `same_channel`."""

    def _mask(self, ctx: _Context) -> PartialMask:
        both = (ctx.channel_q >= 0) & (ctx.channel_k >= 0)
        return both & (ctx.channel_q == ctx.channel_k)

    def __str__(self) -> str:
        return "same_channel"


@dataclass(frozen=True, repr=False)
class CrossChannel(EdgeSet):
    """See `cross_channel`."""

    def _mask(self, ctx: _Context) -> PartialMask:
        both = (ctx.channel_q >= 0) & (ctx.channel_k >= 0)
        return both & (ctx.channel_q != ctx.channel_k)

    def __str__(self) -> str:
        return "cross_channel"


@dataclass(frozen=True, repr=False)
class TimeWindow(EdgeSet):
    """See `time_window`."""

    max_lag: int
    min_lag: int = 0

    def __post_init__(self) -> None:
        _check_int(self.max_lag, "time_window(max_lag)")
        _check_int(self.min_lag, "time_window(min_lag=...)")
        object.__setattr__(self, "max_lag", operator.index(self.max_lag))
        object.__setattr__(self, "min_lag", operator.index(self.min_lag))
        if self.min_lag > self.max_lag:
            raise ArgumentError(
                f"time_window needs min_lag <= max_lag, got max_lag={self.max_lag}, "
                f"min_lag={self.min_lag}"
            )

    def _mask(self, ctx: _Context) -> PartialMask:
        both = (ctx.time_q >= 0) & (ctx.time_k >= 0)
        lag = (ctx.time_q - ctx.time_k).abs()
        return both & (lag >= self.min_lag) & (lag <= self.max_lag)

    def __str__(self) -> str:
        if self.min_lag == 0:
            return f"time_window({self.max_lag})"
        return f"time_window({self.max_lag},min_lag={self.min_lag})"


@dataclass(frozen=True, repr=False)
class AllEdges(EdgeSet):
    """See `all_edges`."""

    def _mask(self, ctx: _Context) -> PartialMask:
        return ctx.constant(True)

    def __str__(self) -> str:
        return "all_edges"


@dataclass(frozen=True, repr=False)
class NoEdges(EdgeSet):
    """See `no_edges`."""

    def _mask(self, ctx: _Context) -> PartialMask:
        return ctx.constant(False)

    def __str__(self) -> str:
        return "no_edges"


@dataclass(frozen=True, repr=False)
class Heads(EdgeSet):
    """See `heads`. ``indices`` is kept sorted and without repeats."""

    indices: tuple[int, ...]

    def __post_init__(self) -> None:
        raw = self.indices
        if not isinstance(raw, Iterable) or isinstance(raw, str):
            raise ArgumentError(f"heads(...) needs head indices, got {raw!r}")
        indices = tuple(sorted({_check_int(i, "a head index") for i in raw}))
        if not indices:
            raise ArgumentError("heads(...) needs at least one head index, e.g. heads(0, 2)")
        object.__setattr__(self, "indices", indices)

    def _mask(self, ctx: _Context) -> PartialMask:
        bad = [i for i in self.indices if i >= ctx.n_heads]
        if bad:
            raise LayoutError(
                f"edge set {self} names head(s) {bad}, but the model has n_heads={ctx.n_heads} "
                f"(valid indices 0..{ctx.n_heads - 1})"
            )
        on = torch.zeros(ctx.n_heads, dtype=torch.bool, device=ctx.device)
        on[list(self.indices)] = True
        return on[:, None, None]

    def __str__(self) -> str:
        return f"heads({','.join(map(str, self.indices))})"


# ---------------------------------------------------------------------------- selector functions
def unimodal(include_cls: bool = False) -> EdgeSet:
    """Edges whose query and key are in the same modality, self edges included.

    Edges that touch the CLS token are neither unimodal nor cross-modal unless
    ``include_cls=True``, which makes CLS a modality of its own (CLS -> CLS is unimodal).

    >>> layout = TokenLayout.channel_tokens({"emg": 1, "acc": 1})  # cls, emg, acc
    >>> unimodal().compile(layout, 1)[0].int()
    tensor([[0, 0, 0],
            [0, 1, 0],
            [0, 0, 1]], dtype=torch.int32)
    >>> unimodal(include_cls=True).compile(layout, 1)[0].int()
    tensor([[1, 0, 0],
            [0, 1, 0],
            [0, 0, 1]], dtype=torch.int32)
    """
    return Unimodal(include_cls)


def cross_modal(include_cls: bool = False) -> EdgeSet:
    """Edges whose query and key are in different modalities.

    Edges that touch the CLS token are neither unimodal nor cross-modal unless
    ``include_cls=True``, which makes CLS a modality of its own (CLS <-> signal is cross-modal).

    >>> layout = TokenLayout.channel_tokens({"emg": 1, "acc": 1})  # cls, emg, acc
    >>> cross_modal().compile(layout, 1)[0].int()
    tensor([[0, 0, 0],
            [0, 0, 1],
            [0, 1, 0]], dtype=torch.int32)
    >>> cross_modal(include_cls=True).compile(layout, 1)[0].int()
    tensor([[0, 1, 1],
            [1, 0, 1],
            [1, 1, 0]], dtype=torch.int32)
    """
    return CrossModal(include_cls)


def within(group: str) -> EdgeSet:
    """Edges whose query and key are both in ``group`` (a modality name or ``"cls"``).

    >>> str(within("emg") | between("cls", "acc"))
    'within(emg) | between(cls,acc)'
    """
    return Within(group)


def between(query_group: str, key_group: str) -> EdgeSet:
    """Directed edges: the query is in ``query_group`` and reads a key in ``key_group``.

    >>> layout = TokenLayout.channel_tokens({"emg": 1, "acc": 1})  # cls, emg, acc
    >>> between("acc", "emg").compile(layout, 1)[0].int()  # acc reads emg: row acc, column emg
    tensor([[0, 0, 0],
            [0, 0, 0],
            [0, 1, 0]], dtype=torch.int32)
    """
    return Between(query_group, key_group)


def to_cls() -> EdgeSet:
    """Edges in which CLS reads a non-CLS token (information flowing to CLS).

    >>> layout = TokenLayout.channel_tokens({"emg": 2})  # cls, emg, emg
    >>> to_cls().compile(layout, 1)[0].int()
    tensor([[0, 1, 1],
            [0, 0, 0],
            [0, 0, 0]], dtype=torch.int32)
    """
    return ToCls()


def from_cls() -> EdgeSet:
    """Edges in which a non-CLS token reads CLS (information flowing from CLS).

    >>> layout = TokenLayout.channel_tokens({"emg": 2})  # cls, emg, emg
    >>> from_cls().compile(layout, 1)[0].int()
    tensor([[0, 0, 0],
            [1, 0, 0],
            [1, 0, 0]], dtype=torch.int32)
    """
    return FromCls()


def same_channel() -> EdgeSet:
    """Edges between two tokens of the same input channel (both must embed a channel).

    >>> layout = TokenLayout.channel_tokens({"emg": 2}, n_patches=2)  # cls, (c0,t0), (c0,t1), ...
    >>> int(same_channel().compile(layout, 1).sum())  # 2 channels x 2 x 2 patch pairs
    8
    """
    return SameChannel()


def cross_channel() -> EdgeSet:
    """Edges between tokens of two different input channels (both must embed a channel).

    >>> layout = TokenLayout.channel_tokens({"emg": 2}, n_patches=2)
    >>> int(cross_channel().compile(layout, 1).sum())  # 2 ordered channel pairs x 2 x 2
    8
    """
    return CrossChannel()


def time_window(max_lag: int, min_lag: int = 0) -> EdgeSet:
    """Edges between time-patch tokens at most ``max_lag`` and at least ``min_lag`` patches
    apart (``min_lag <= |t_q - t_k| <= max_lag``); tokens without a time patch are excluded.

    >>> layout = TokenLayout.channel_tokens({"emg": 1}, n_patches=3, cls_token=False)
    >>> time_window(1).compile(layout, 1)[0].int()
    tensor([[1, 1, 0],
            [1, 1, 1],
            [0, 1, 1]], dtype=torch.int32)
    >>> str(time_window(3, min_lag=1))
    'time_window(3,min_lag=1)'
    """
    return TimeWindow(max_lag, min_lag)


def all_edges() -> EdgeSet:
    """Every edge on every head.

    >>> (~no_edges()).compile(TokenLayout.channel_tokens({"emg": 1}), 2).all().item()
    True
    """
    return AllEdges()


def no_edges() -> EdgeSet:
    """No edge at all (masking it changes nothing).

    >>> (all_edges() - all_edges()).compile(TokenLayout.channel_tokens({"emg": 1}), 2).any()
    tensor(False)
    """
    return NoEdges()


def heads(*indices: int | Iterable[int]) -> EdgeSet:
    """Every edge on the given heads (indices or one iterable of them) and none elsewhere.

    >>> heads(2, 0) == heads([0, 2])
    True
    >>> heads(0, 2).compile(TokenLayout.channel_tokens({"emg": 1}), 4).flatten(1).all(1)
    tensor([ True, False,  True, False])
    """
    if len(indices) == 1 and isinstance(indices[0], Iterable) and not isinstance(indices[0], str):
        indices = tuple(indices[0])
    return Heads(tuple(indices))


# ============================================================================ parser
@dataclass(frozen=True)
class _Param:
    name: str
    kind: str  # "group", "int", "flag" or "ints" (any number of ints)
    default: Any = None  # None: required


@dataclass(frozen=True)
class _Selector:
    name: str
    factory: Callable[..., EdgeSet]
    params: tuple[_Param, ...] = ()

    @property
    def signature(self) -> str:
        if not self.params:
            return self.name
        parts = []
        for p in self.params:
            if p.kind == "flag":
                parts.append(p.name)
            elif p.kind == "ints":
                parts.append(f"{p.name},...")
            elif p.default is None:
                parts.append(p.name)
            else:
                parts.append(f"{p.name}={p.default}")
        return f"{self.name}({','.join(parts)})"


_GROUP, _INT, _FLAG, _INTS = "group", "int", "flag", "ints"
_SELECTORS: dict[str, _Selector] = {
    s.name: s
    for s in (
        _Selector("all_edges", all_edges),
        _Selector("between", between, (_Param("query_group", _GROUP), _Param("key_group", _GROUP))),
        _Selector("cross_channel", cross_channel),
        _Selector("cross_modal", cross_modal, (_Param("include_cls", _FLAG, False),)),
        _Selector("from_cls", from_cls),
        _Selector("heads", heads, (_Param("index", _INTS),)),
        _Selector("no_edges", no_edges),
        _Selector("same_channel", same_channel),
        _Selector(
            "time_window", time_window, (_Param("max_lag", _INT), _Param("min_lag", _INT, 0))
        ),
        _Selector("to_cls", to_cls),
        _Selector("unimodal", unimodal, (_Param("include_cls", _FLAG, False),)),
        _Selector("within", within, (_Param("group", _GROUP),)),
    )
}

_KNOWN_SELECTORS = ", ".join(s.signature for s in _SELECTORS.values())
_EXPECT_OPERAND = f"a selector ({_KNOWN_SELECTORS}), '~' or '('"
_OPERATORS = "an operator ('|', '&', '-')"
_EXPECT_OPERATOR = f"{_OPERATORS} or the end of the expression"

_TOKEN_RE = re.compile(
    r"\s*(?:(?P<name>[^\W\d]\w*)|(?P<int>\d+)|(?P<punct>[()|&~,=-])|(?P<bad>\S))"
)


@dataclass(frozen=True)
class _Token:
    kind: str  # "name", "int", "punct", "bad" or "end"
    text: str
    start: int

    @property
    def end(self) -> int:
        return self.start + max(len(self.text), 1)

    def describe(self) -> str:
        return "end of expression" if self.kind == "end" else repr(self.text)


def _tokenize(expr: str) -> list[_Token]:
    tokens = []
    pos = 0
    while True:
        m = _TOKEN_RE.match(expr, pos)
        if m is None:  # only trailing whitespace is left
            break
        kind = m.lastgroup
        assert kind is not None
        tokens.append(_Token(kind, m.group(kind), m.start(kind)))
        pos = m.end()
    tokens.append(_Token("end", "", len(expr)))
    return tokens


class _Parser:
    """Recursive descent over ``expr := term (("|" | "-") term)*``, ``term := factor ("&"
    factor)*``, ``factor := "~" factor | "(" expr ")" | selector ["(" args ")"]``."""

    def __init__(self, expr: str):
        self.expr = expr
        self.tokens = _tokenize(expr)
        self.i = 0

    # ------------------------------------------------------------------ helpers
    def peek(self) -> _Token:
        return self.tokens[self.i]

    def advance(self) -> _Token:
        tok = self.tokens[self.i]
        if tok.kind != "end":
            self.i += 1
        return tok

    def at(self, *texts: str) -> bool:
        tok = self.peek()
        return tok.kind == "punct" and tok.text in texts

    def fail(self, message: str, start: int, end: int, expected: str) -> EdgeExpressionError:
        shown = "".join(" " if c.isspace() else c for c in self.expr)
        width = max(end - start, 1)
        column = start + 1
        return EdgeExpressionError(
            f"invalid edge expression {self.expr!r} at column {column}: {message}\n"
            f"    {shown}\n"
            f"    {' ' * start}{'^' * width}\n"
            f"expected {expected}",
            expression=self.expr,
            column=column,
        )

    def fail_at(self, tok: _Token, message: str, expected: str) -> EdgeExpressionError:
        return self.fail(message, tok.start, tok.end, expected)

    # ------------------------------------------------------------------ grammar
    def parse(self) -> EdgeSet:
        if self.peek().kind == "end":
            raise self.fail_at(self.peek(), "the expression is empty", _EXPECT_OPERAND)
        result = self.expression()
        tok = self.peek()
        if tok.kind != "end":
            raise self.fail_at(tok, f"unexpected {tok.describe()}", _EXPECT_OPERATOR)
        return result

    def expression(self) -> EdgeSet:
        left = self.term()
        while self.at("|", "-"):
            op = self.advance().text
            right = self.term()
            left = Union(left, right) if op == "|" else Difference(left, right)
        return left

    def term(self) -> EdgeSet:
        left = self.factor()
        while self.at("&"):
            self.advance()
            left = Intersection(left, self.factor())
        return left

    def factor(self) -> EdgeSet:
        tok = self.advance()
        if tok.kind == "punct" and tok.text == "~":
            return Complement(self.factor())
        if tok.kind == "punct" and tok.text == "(":
            inner = self.expression()
            close = self.peek()
            if not self.at(")"):
                raise self.fail_at(
                    close,
                    f"unexpected {close.describe()} inside the '(' opened at column "
                    f"{tok.start + 1}",
                    f"')' or {_OPERATORS}",
                )
            self.advance()
            return inner
        if tok.kind == "name":
            return self.selector(tok)
        if tok.kind == "bad":
            raise self.fail_at(tok, f"unexpected character {tok.text!r}", _EXPECT_OPERAND)
        raise self.fail_at(tok, f"unexpected {tok.describe()}", _EXPECT_OPERAND)

    def selector(self, name_tok: _Token) -> EdgeSet:
        sel = _SELECTORS.get(name_tok.text)
        if sel is None:
            close = difflib.get_close_matches(name_tok.text, list(_SELECTORS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.fail_at(
                name_tok,
                f"unknown selector {name_tok.text!r}{hint}",
                f"a selector: {_KNOWN_SELECTORS}",
            )
        positional: list[_Token] = []
        keywords: dict[str, tuple[_Token, _Token]] = {}
        end = name_tok.end
        if self.at("("):
            open_tok = self.advance()
            if self.at(")"):
                end = self.advance().end
            else:
                while True:
                    arg = self.advance()
                    if arg.kind not in ("name", "int"):
                        raise self.fail_at(
                            arg,
                            f"unexpected {arg.describe()} in the arguments of {sel.name}",
                            f"the arguments of {sel.signature}",
                        )
                    if arg.kind == "name" and self.at("="):
                        self.advance()
                        value = self.advance()
                        if value.kind not in ("name", "int"):
                            raise self.fail_at(
                                value,
                                f"unexpected {value.describe()} after '{arg.text}='",
                                f"a value for {arg.text} in {sel.signature}",
                            )
                        if arg.text in keywords:
                            raise self.fail_at(
                                arg, f"{sel.name} got {arg.text!r} twice", sel.signature
                            )
                        keywords[arg.text] = (arg, value)
                    elif keywords:
                        raise self.fail_at(
                            arg,
                            "a positional argument follows a keyword argument",
                            f"the arguments of {sel.signature}",
                        )
                    else:
                        positional.append(arg)
                    sep = self.advance()
                    if sep.kind == "punct" and sep.text == ")":
                        end = sep.end
                        break
                    if not (sep.kind == "punct" and sep.text == ","):
                        raise self.fail_at(
                            sep,
                            f"unexpected {sep.describe()} in the arguments of {sel.name}, "
                            f"whose '(' is at column {open_tok.start + 1}",
                            f"',' or ')' (the form is {sel.signature})",
                        )
        args, kwargs = self.bind(sel, name_tok, positional, keywords, end)
        try:
            return sel.factory(*args, **kwargs)
        except ArgumentError as err:
            raise self.fail(str(err), name_tok.start, end, sel.signature) from None

    def bind(
        self,
        sel: _Selector,
        name_tok: _Token,
        positional: list[_Token],
        keywords: dict[str, tuple[_Token, _Token]],
        end: int,
    ) -> tuple[list[Any], dict[str, Any]]:
        """Check the arguments against ``sel.params``: positional and keyword values."""
        params = {p.name: p for p in sel.params}
        if sel.params and sel.params[0].kind == "ints":
            if keywords:
                key_tok, _ = next(iter(keywords.values()))
                raise self.fail_at(key_tok, f"{sel.name} takes no keyword", sel.signature)
            if not positional:
                raise self.fail(
                    f"{sel.name} needs at least one head index", name_tok.start, end, sel.signature
                )
            return [self.value(sel, sel.params[0], t, positional=True) for t in positional], {}
        if len(positional) > len(sel.params):
            extra = positional[len(sel.params)]
            n = len(sel.params)
            raise self.fail_at(
                extra,
                f"{sel.name} takes {n} argument{'s' if n != 1 else ''}, got {len(positional)}",
                sel.signature,
            )
        values: dict[str, Any] = {}
        for param, tok in zip(sel.params, positional):
            values[param.name] = self.value(sel, param, tok, positional=True)
        for key, (key_tok, value_tok) in keywords.items():
            param = params.get(key)
            if param is None:
                accepted = ", ".join(params) or "none"
                raise self.fail_at(
                    key_tok,
                    f"{sel.name} has no argument {key!r}",
                    f"{sel.signature} (keywords: {accepted})",
                )
            if param.name in values:
                raise self.fail_at(key_tok, f"{sel.name} got {key!r} twice", sel.signature)
            values[param.name] = self.value(sel, param, value_tok, positional=False)
        for param in sel.params:
            if param.name not in values and param.default is None:
                raise self.fail(
                    f"{sel.name} is missing its argument {param.name!r}",
                    name_tok.start,
                    end,
                    sel.signature,
                )
        return [], values

    def value(self, sel: _Selector, param: _Param, tok: _Token, *, positional: bool) -> Any:
        if param.kind == "group":
            if tok.kind != "name":
                raise self.fail_at(
                    tok,
                    f"{sel.name}: {param.name} must be a group name, got {tok.text!r}",
                    f"a group name (an identifier such as emg, acc or cls) in {sel.signature}",
                )
            return tok.text
        if param.kind in ("int", "ints"):
            if tok.kind != "int":
                raise self.fail_at(
                    tok,
                    f"{sel.name}: {param.name} must be a non-negative integer, got {tok.text!r}",
                    f"a non-negative integer in {sel.signature}",
                )
            return int(tok.text)
        # flag
        if positional and tok.kind == "name" and tok.text == param.name:
            return True
        if not positional and tok.text in ("true", "True", "false", "False"):
            return tok.text in ("true", "True")
        raise self.fail_at(
            tok,
            f"{sel.name}: unexpected {tok.describe()} for {param.name}",
            f"{param.name} or {param.name}=true|false in {sel.signature}",
        )


def parse(expr: str | EdgeSet) -> EdgeSet:
    """Parse the string form of an edge set (an `EdgeSet` is returned as is).

    The grammar is the one ``str(edge_set)`` writes: selector names as in Python (zero-argument
    selectors with or without ``()``), arguments as in Python (``time_window(3, min_lag=1)``,
    ``unimodal(include_cls)`` or ``unimodal(include_cls=true)``), group names unquoted, and
    ``~`` over ``&`` over ``|``/``-`` (left-associative). ``parse(str(e)) == e`` for every
    edge set ``e``. A bad expression raises `EdgeExpressionError` naming the column.

    >>> parse("~(within(emg) | to_cls) & heads(1)")
    EdgeSet('~(within(emg) | to_cls) & heads(1)')
    >>> parse("cross_modal & foo")
    Traceback (most recent call last):
    ...
    emg_lens.errors.EdgeExpressionError: invalid edge expression 'cross_modal & foo' at column 15: unknown selector 'foo'
        cross_modal & foo
                      ^^^
    expected a selector: all_edges, between(query_group,key_group), cross_channel, cross_modal(include_cls), from_cls, heads(index,...), no_edges, same_channel, time_window(max_lag,min_lag=0), to_cls, unimodal(include_cls), within(group)
    """  # noqa: E501
    if isinstance(expr, EdgeSet):
        return expr
    if not isinstance(expr, str):
        raise EdgeExpressionError(
            f"an edge expression must be a string such as 'cross_modal & heads(0,2)' or an "
            f"EdgeSet, got {type(expr).__name__}"
        )
    return _Parser(expr).parse()
