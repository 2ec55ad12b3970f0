"""The edge-set algebra: `EdgeSet`, its compile context, and the operators ``| & - ~``.

The selectors (`emg_lens.edges.selectors`) are the leaves of an expression tree; the classes here
are its inner nodes and the machinery every node shares: compiling to a mask, naming the token
groups it reads, and writing the canonical string form with as few parentheses as the
precedence allows.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar

import torch
from jaxtyping import Bool

from emg_lens.errors import ArgumentError, LayoutError, check_int, checked, describe
from emg_lens.layout import CLS, TokenLayout

# A partial mask: ``[query_pos, key_pos]`` for head-independent selectors, ``[head, 1, 1]``
# for `heads`, and any broadcast of the two for combinations.
PartialMask = Bool[torch.Tensor, "*#head #query_pos #key_pos"]

# Binding strength in the string form: a child binding more weakly than its parent is wrapped
# in parentheses (and, binary operators being left-associative, so is an equally strong right
# child).
_PREC_UNION, _PREC_INTERSECTION, _PREC_COMPLEMENT, _PREC_ATOM = 1, 2, 3, 4


class CompileContext:
    """Layout facts as broadcastable tensors: ``*_q`` are ``[pos, 1]``, ``*_k`` ``[1, pos]``.

    Built once per `EdgeSet.compile` and handed down the expression tree, so every selector
    reads the layout through the same tensors. ``layer`` is the block the mask is compiled for
    (None when the caller compiles one mask for every layer; `layers` then refuses).
    """

    def __init__(
        self,
        layout: TokenLayout,
        n_heads: int,
        device: torch.device | str | None,
        layer: int | None = None,
    ):
        self.layout = layout
        self.n_heads = n_heads
        self.device = device
        self.layer = layer
        # A cross-attention layout has a query side of its own; the group ids number the
        # groups of both sides, so that a group on either side is one id.
        self.groups = layout.all_groups
        index = {g: i for i, g in enumerate(self.groups)}
        cls_id = index.get(CLS, -1)

        def facts(side: TokenLayout):
            gid = torch.tensor([index[g] for g in side.group], dtype=torch.long, device=device)
            return gid, side.channel_ids().to(device), side.time_ids().to(device)

        (gq, cq, tq), (gk, ck, tk) = facts(layout.query_side), facts(layout)
        self.group_q, self.group_k = gq[:, None], gk[None, :]
        self.cls_q, self.cls_k = self.group_q == cls_id, self.group_k == cls_id
        self.channel_q, self.channel_k = cq[:, None], ck[None, :]
        self.time_q, self.time_k = tq[:, None], tk[None, :]
        self.time_end = max(max(layout.query_side.time), max(layout.time)) + 1

    def group_index(self, group: str, selector: EdgeSet) -> int:
        if group not in self.groups:
            has = f"token group {group!r}; the layout has {self.groups}"
            raise LayoutError(f"edge set {selector} names {has}")
        return self.groups.index(group)

    def require_cls(self, selector: EdgeSet) -> None:
        if CLS not in self.groups:
            raise LayoutError(f"edge set {selector} needs a CLS token; its groups: {self.groups}")

    def times(self, selector: EdgeSet, distinct: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """``time_q`` ``[query, 1]`` and ``time_k`` ``[1, key]`` (-1: a token without time),
        refusing a layout whose queries or keys have no time, or whose tokens hold fewer
        than ``distinct`` times (an order needs two)."""
        sides = (("query", self.layout.query_side), ("key", self.layout))
        times = {t for _, side in sides for t in side.time if t >= 0}
        untimed = [what for what, side in sides if max(side.time) < 0]
        if untimed or len(times) < distinct:
            why = f"its {untimed[0]} tokens have no time" if untimed else f"all at {min(times)}"
            layout = f"this layout ({self.layout.describe_sides()}, groups {self.groups})"
            raise LayoutError(
                f"edge set {selector} reads the tokens' order in time, which {layout} lacks: {why}"
                "; it needs tokens at times >= 0: a channel's patches (n_patches > 1), time slices"
            )
        return self.time_q, self.time_k

    def time_bound(self, bound: float) -> float:
        """``bound`` (a time index or lag, or one in units of time steps) no further than one
        past the layout's last time: it selects what it did (no time is past it), and an int64
        comparison can hold it (``time_window(2**63)`` would wrap to a negative bound, and
        ``10**30`` overflow). A bound past every layout reaches to each one's end."""
        return min(bound, self.time_end)

    def constant(self, value: bool) -> PartialMask:
        return torch.full((1, 1), value, dtype=torch.bool, device=self.device)


@checked
class EdgeSet(abc.ABC):
    """A set of attention edges (head, query token, key token); see `emg_lens.edges`.

    Build one with the selector functions (`unimodal`, `within`, `heads`, ...) and the
    operators ``| & - ~``, or with `parse`. Instances are frozen dataclasses: equal when their
    expression trees are equal, usable as dict keys.

    >>> from emg_lens.edges import parse, unimodal
    >>> e = ~unimodal(include_cls=True)
    >>> e
    EdgeSet('~unimodal(include_cls)')
    >>> e == parse(str(e)), e.groups()
    (True, set())
    """

    _prec: ClassVar[int] = _PREC_ATOM
    parse: ClassVar[Callable[[str | EdgeSet], EdgeSet]]  # the parser, set by emg_lens.edges

    # ------------------------------------------------------------------ algebra
    def __or__(self, other: EdgeSet) -> EdgeSet:
        return EdgeUnion(self, other) if isinstance(other, EdgeSet) else NotImplemented

    def __and__(self, other: EdgeSet) -> EdgeSet:
        return EdgeIntersection(self, other) if isinstance(other, EdgeSet) else NotImplemented

    def __sub__(self, other: EdgeSet) -> EdgeSet:
        return EdgeDifference(self, other) if isinstance(other, EdgeSet) else NotImplemented

    def __invert__(self) -> EdgeSet:
        return EdgeComplement(self)

    def __bool__(self) -> bool:
        use = "combine edge sets with | & - ~, not `or`, `and`, `not`; compare with == or `is None`"
        raise TypeError(f"the truth value of an edge set ({self}) is ambiguous: {use}")

    def on_heads(self, *indices: int | Iterable[int]) -> EdgeSet:
        """These edges on the given heads only: ``self & heads(*indices)``.

        >>> from emg_lens.edges import cross_modal
        >>> str(cross_modal().on_heads([2, 0]))
        'cross_modal & heads(0,2)'
        """
        return self & Heads.of(*indices)

    def on_layers(self, *indices: int | Iterable[int]) -> EdgeSet:
        """These edges in the given blocks only: ``self & layers(*indices)``.

        >>> from emg_lens.edges import cross_modal
        >>> str(cross_modal().on_layers(1))
        'cross_modal & layers(1)'
        """
        return self & Layers.of(*indices)

    def compile(
        self,
        layout: TokenLayout,
        n_heads: int,
        *,
        device: torch.device | str | None = None,
        layer: int | None = None,
    ) -> Bool[torch.Tensor, "head_index query_pos key_pos"]:
        """The boolean mask of this edge set on ``layout``: True where (head, query, key) is
        in the set, i.e. masked when handed to ``edge_masks`` or a masking hook. ``layer`` is
        the block the mask is for; an edge set that names blocks (`layers`) needs it.

        Raises `LayoutError` for a group the layout lacks, `to_cls`/`from_cls` on a layout
        without CLS, a head index outside ``[0, n_heads)``, or `layers` without ``layer``.

        >>> from emg_lens.edges import same_channel, within
        >>> layout = TokenLayout.channel_tokens({"emg": 2}, cls_token=False)
        >>> same_channel().compile(layout, n_heads=1)
        tensor([[[ True, False],
                 [False,  True]]])
        >>> within("acc").compile(layout, n_heads=1)
        Traceback (most recent call last):
        ...
        emg_lens.errors.LayoutError: edge set within(acc) names token group 'acc'; the layout has ('emg',)
        """  # noqa: E501
        if not isinstance(layout, TokenLayout):
            raise ArgumentError(
                f"EdgeSet.compile takes a TokenLayout (model.layout), got {describe(layout)}"
            )
        n_heads = check_int(n_heads, "n_heads", minimum=1)
        if layer is not None:
            layer = check_int(layer, "layer")
        ctx = CompileContext(layout, n_heads, device, layer)
        shape = (n_heads, layout.n_queries, layout.n_tokens)  # queries != keys: cross-attention
        return torch.broadcast_to(self._mask(ctx), shape).contiguous()

    def compile_layers(
        self,
        layout: TokenLayout,
        n_heads: int,
        n_layers: int,
        *,
        device: torch.device | str | None = None,
    ) -> Bool[torch.Tensor, "layer head_index query_pos key_pos"]:
        """One mask per block, ``[n_layers, head, query, key]``: what the edge set cuts in each
        layer when it is applied to all of them (the same in every layer without `layers`).

        >>> from emg_lens.edges import heads, layers
        >>> layout = TokenLayout.channel_tokens({"emg": 2}, cls_token=False)
        >>> (heads(0) & layers(1)).compile_layers(layout, 2, 3).flatten(2).any(2).int()
        tensor([[0, 0],
                [1, 0],
                [0, 0]], dtype=torch.int32)
        """
        self.check_layers(n_layers)
        return torch.stack(
            [self.compile(layout, n_heads, device=device, layer=i) for i in range(n_layers)]
        )

    def check_layers(self, n_layers: int) -> None:
        """Refuse an edge set that names (`layers`) a block a model of ``n_layers`` blocks
        does not have: compiled for the blocks it has, it would cut nothing there, silently.

        >>> from emg_lens.edges import cross_modal, layers
        >>> (cross_modal() & layers(1)).check_layers(2)
        >>> (cross_modal() & layers(5)).check_layers(2)
        Traceback (most recent call last):
        ...
        emg_lens.errors.LayoutError: edge set cross_modal & layers(5) names layer(s) [5], but the model has n_layers=2 (valid indices 0..1)
        """  # noqa: E501
        n_layers = check_int(n_layers, "n_layers", minimum=1)
        if bad := sorted(i for i in self.layer_indices() if i >= n_layers):
            valid = f"n_layers={n_layers} (valid indices 0..{n_layers - 1})"
            raise LayoutError(f"edge set {self} names layer(s) {bad}, but the model has {valid}")

    def layer_indices(self) -> set[int]:
        """The blocks the expression names (`layers`); empty when its mask is the same in
        every layer.

        >>> from emg_lens.edges import cross_modal
        >>> cross_modal().layer_indices(), (~cross_modal().on_layers(2, 0)).layer_indices()
        (set(), {0, 2})
        """
        return set()

    @abc.abstractmethod
    def _mask(self, ctx: CompileContext) -> PartialMask: ...

    def groups(self) -> set[str]:
        """The token groups this expression names (``"cls"`` for `to_cls` and `from_cls`),
        so a spec can be checked against a layout before anything runs.

        >>> from emg_lens.edges import to_cls, unimodal, within
        >>> sorted((within("emg") | to_cls() | unimodal()).groups())
        ['cls', 'emg']
        """
        return set()

    # ------------------------------------------------------------------ string form
    @abc.abstractmethod
    def __str__(self) -> str: ...

    def __repr__(self) -> str:
        return f"EdgeSet({str(self)!r})"


def _wrap(child: EdgeSet, parens: bool) -> str:
    return f"({child})" if parens else str(child)


# ============================================================================ operators
@dataclass(frozen=True, repr=False)
class _BinaryOperator(EdgeSet):
    """``left <symbol> right``: what the three binary operators share, all but the mask."""

    left: EdgeSet
    right: EdgeSet
    _symbol: ClassVar[str]

    def groups(self) -> set[str]:
        return self.left.groups() | self.right.groups()

    def layer_indices(self) -> set[int]:
        return self.left.layer_indices() | self.right.layer_indices()

    def __str__(self) -> str:
        left = _wrap(self.left, self.left._prec < self._prec)
        right = _wrap(self.right, self.right._prec <= self._prec)
        return f"{left} {self._symbol} {right}"


@dataclass(frozen=True, repr=False)
class EdgeUnion(_BinaryOperator):
    """Edges in ``left`` or ``right`` (``left | right``)."""

    _prec: ClassVar[int] = _PREC_UNION
    _symbol: ClassVar[str] = "|"

    def _mask(self, ctx: CompileContext) -> PartialMask:
        return self.left._mask(ctx) | self.right._mask(ctx)


@dataclass(frozen=True, repr=False)
class EdgeDifference(_BinaryOperator):
    """Edges in ``left`` but not in ``right`` (``left - right``)."""

    _prec: ClassVar[int] = _PREC_UNION
    _symbol: ClassVar[str] = "-"

    def _mask(self, ctx: CompileContext) -> PartialMask:
        return self.left._mask(ctx) & ~self.right._mask(ctx)


@dataclass(frozen=True, repr=False)
class EdgeIntersection(_BinaryOperator):
    """Edges in both ``left`` and ``right`` (``left & right``)."""

    _prec: ClassVar[int] = _PREC_INTERSECTION
    _symbol: ClassVar[str] = "&"

    def _mask(self, ctx: CompileContext) -> PartialMask:
        return self.left._mask(ctx) & self.right._mask(ctx)


@dataclass(frozen=True, repr=False)
class EdgeComplement(EdgeSet):
    """Every edge (all heads x tokens x tokens) not in ``operand`` (``~operand``)."""

    operand: EdgeSet
    _prec: ClassVar[int] = _PREC_COMPLEMENT

    def _mask(self, ctx: CompileContext) -> PartialMask:
        return ~self.operand._mask(ctx)

    def groups(self) -> set[str]:
        return self.operand.groups()

    def layer_indices(self) -> set[int]:
        return self.operand.layer_indices()

    def __str__(self) -> str:
        return "~" + _wrap(self.operand, self.operand._prec < self._prec)


@dataclass(frozen=True, repr=False)
class _Indices(EdgeSet):
    """A selector of heads or blocks by index: ``indices`` kept sorted and without repeats."""

    indices: tuple[int, ...]
    _what: ClassVar[str]  # "head" or "layer": the selector is f"{_what}s(...)"

    @classmethod
    def of(cls, *indices: int | Iterable[int]):
        """From indices, or one iterable of them (what `heads`/`layers` and `on_heads`/
        `on_layers` accept)."""
        only = indices[0] if len(indices) == 1 else None
        if isinstance(only, Iterable) and not isinstance(only, str):
            return cls(tuple(only))
        return cls(indices)  # type: ignore[arg-type]  # ints, each checked by __post_init__

    def __post_init__(self) -> None:
        name = f"{self._what}s"  # indices: a tuple, as `of` (the one door) makes them
        indices = tuple(sorted({check_int(i, f"a {self._what} index") for i in self.indices}))
        if not indices:
            raise ArgumentError(f"{name}() needs at least one {self._what} index, e.g. {name}(0)")
        object.__setattr__(self, "indices", indices)

    def __str__(self) -> str:
        return f"{self._what}s({','.join(map(str, self.indices))})"


@dataclass(frozen=True, repr=False)
class Layers(_Indices):
    """See `emg_lens.edges.layers`: every edge, in the given blocks only."""

    _what: ClassVar[str] = "layer"

    def _mask(self, ctx: CompileContext) -> PartialMask:
        if ctx.layer is None:
            fix = "compile it with layer=... or compile_layers, or where the layer is known"
            raise LayoutError(
                f"edge set {self} names blocks, so its mask depends on the layer: {fix}"
            )
        return ctx.constant(ctx.layer in self.indices)

    def layer_indices(self) -> set[int]:
        return set(self.indices)


@dataclass(frozen=True, repr=False)
class Heads(_Indices):
    """See `heads`. ``indices`` is kept sorted and without repeats."""

    _what: ClassVar[str] = "head"

    def _mask(self, ctx: CompileContext) -> PartialMask:
        if bad := [i for i in self.indices if i >= ctx.n_heads]:
            valid = f"n_heads={ctx.n_heads} (valid indices 0..{ctx.n_heads - 1})"
            raise LayoutError(f"edge set {self} names head(s) {bad}, but the model has {valid}")
        on = torch.zeros(ctx.n_heads, dtype=torch.bool, device=ctx.device)
        on[list(self.indices)] = True
        return on[:, None, None]
