"""The selectors: the leaves of an edge-set expression, each asking the token layout one
question (same modality? which group? which channel, time patch or head?), and the public
functions that build them with their argument checks. The selectors of named channels and
scalp regions are `emg_lens.edges.named`.

Every selector is a frozen dataclass whose fields are its arguments, so two selectors are equal
when their arguments are; to add one: docs/ARCHITECTURE.md, "An edge selector".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from emg_lens.edges.algebra import CompileContext, EdgeSet, Heads, Layers, PartialMask
from emg_lens.errors import ArgumentError, LayoutError, check_bool, check_int, check_number, checked
from emg_lens.layout import CLS, TokenLayout  # noqa: F401  (TokenLayout: for the examples)


# ============================================================================ argument checks
def _check_group(group: Any, what: str) -> str:
    if not isinstance(group, str) or not group.isidentifier():
        raise ArgumentError(f"{what} must be a token group name (e.g. emg or cls), got {group!r}")
    return group


# ============================================================================ selector classes
@dataclass(frozen=True, repr=False)
class Modal(EdgeSet):
    """See `unimodal` (``cross`` False) and `cross_modal` (``cross`` True)."""

    include_cls: bool = False
    cross: bool = False

    def __post_init__(self) -> None:
        check_bool(self.include_cls, f"{self._name()}(include_cls=...)")

    def _name(self) -> str:
        return "cross_modal" if self.cross else "unimodal"

    def _mask(self, ctx: CompileContext) -> PartialMask:
        pair = (ctx.group_q != ctx.group_k) if self.cross else (ctx.group_q == ctx.group_k)
        return pair if self.include_cls else pair & ~ctx.cls_q & ~ctx.cls_k

    def __str__(self) -> str:
        return self._name() + ("(include_cls)" if self.include_cls else "")


@dataclass(frozen=True, repr=False)
class Within(EdgeSet):
    """See `within`."""

    group: str

    def __post_init__(self) -> None:
        _check_group(self.group, "within(group)")

    def _mask(self, ctx: CompileContext) -> PartialMask:
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

    def _mask(self, ctx: CompileContext) -> PartialMask:
        gq = ctx.group_index(self.query_group, self)
        gk = ctx.group_index(self.key_group, self)
        return (ctx.group_q == gq) & (ctx.group_k == gk)

    def groups(self) -> set[str]:
        return {self.query_group, self.key_group}

    def __str__(self) -> str:
        return f"between({self.query_group},{self.key_group})"


@dataclass(frozen=True, repr=False)
class Cls(EdgeSet):
    """See `to_cls` (``to`` True) and `from_cls` (``to`` False)."""

    to: bool = True

    def _mask(self, ctx: CompileContext) -> PartialMask:
        ctx.require_cls(self)
        return ctx.cls_q & ~ctx.cls_k if self.to else ~ctx.cls_q & ctx.cls_k

    def groups(self) -> set[str]:
        return {CLS}

    def __str__(self) -> str:
        return "to_cls" if self.to else "from_cls"


@dataclass(frozen=True, repr=False)
class Channel(EdgeSet):
    """See `same_channel` (``same`` True) and `cross_channel` (``same`` False)."""

    same: bool = True

    def _mask(self, ctx: CompileContext) -> PartialMask:
        both = (ctx.channel_q >= 0) & (ctx.channel_k >= 0)
        return both & ((ctx.channel_q == ctx.channel_k) == self.same)

    def __str__(self) -> str:
        return "same_channel" if self.same else "cross_channel"


@dataclass(frozen=True, repr=False)
class TimeWindow(EdgeSet):
    """See `time_window`."""

    max_lag: int
    min_lag: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_lag", check_int(self.max_lag, "time_window(max_lag)"))
        object.__setattr__(self, "min_lag", check_int(self.min_lag, "time_window(min_lag=...)"))
        if self.min_lag > self.max_lag:
            lags = f"{self.min_lag} > {self.max_lag}"
            raise ArgumentError(f"time_window needs min_lag <= max_lag, got {lags}")

    def _mask(self, ctx: CompileContext) -> PartialMask:
        time_q, time_k = ctx.times(self)
        lag = (time_q - time_k).abs()
        low, high = (int(ctx.time_bound(b)) for b in (self.min_lag, self.max_lag))
        return (time_q >= 0) & (time_k >= 0) & (lag >= low) & (lag <= high)

    def __str__(self) -> str:
        if self.min_lag == 0:
            return f"time_window({self.max_lag})"
        return f"time_window({self.max_lag},min_lag={self.min_lag})"


@dataclass(frozen=True, repr=False)
class Order(EdgeSet):
    """See `reads_earlier` (``later=False``) and `reads_later` (``later=True``)."""

    later: bool = False

    def _mask(self, ctx: CompileContext) -> PartialMask:
        time_q, time_k = ctx.times(self, distinct=2)
        timed = (time_q >= 0) & (time_k >= 0)
        return timed & (time_k > time_q if self.later else time_k < time_q)

    def __str__(self) -> str:
        return "reads_later" if self.later else "reads_earlier"


_SECONDS = "a finite time in seconds >= 0 (one past the window's end reaches to it)"


@dataclass(frozen=True, repr=False)
class TimeSpan(EdgeSet):
    """See `time_span`."""

    query_start: float
    query_stop: float
    key_start: float
    key_stop: float
    seconds: bool = False

    def __post_init__(self) -> None:
        check_bool(self.seconds, "time_span(seconds=...)")
        names = ("query_start", "query_stop", "key_start", "key_stop")
        for name in names:
            value = getattr(self, name)
            if not self.seconds:
                check_int(value, f"time_span({name}) (a time index; seconds=True for seconds)")
            else:
                check_number(value, f"time_span({name})", _SECONDS, lambda t: 0 <= t < math.inf)
        for start, stop in (names[:2], names[2:]):
            if (a := getattr(self, start)) >= (b := getattr(self, stop)):
                span = f"{start} < {stop} (a span [start, stop))"
                raise ArgumentError(f"time_span needs {span}, got {a!r} and {b!r}")

    def _mask(self, ctx: CompileContext) -> PartialMask:
        time_q, time_k = ctx.times(self)
        spans = [(time_q, ctx.layout.query_side, self.query_start, self.query_stop)]
        spans += [(time_k, ctx.layout, self.key_start, self.key_stop)]
        inside = []
        for time, side, start, stop in spans:
            if self.seconds:  # the time indices whose start, t * time_step, is in [start, stop)
                if side.time_step is None:
                    none = f"edge set {self} spans seconds, but TokenLayout.time_step is None"
                    raise LayoutError(f"{none}: give time indices (time_span(a, b, c, d))")
                start, stop = (ctx.time_bound(x / side.time_step - 1e-9) for x in (start, stop))
            start, stop = (math.ceil(ctx.time_bound(x)) for x in (start, stop))
            inside.append((time >= start) & (time < stop))
        return inside[0] & inside[1]

    def __str__(self) -> str:
        bounds = ",".join(
            map(repr, (self.query_start, self.query_stop, self.key_start, self.key_stop))
        )
        return f"time_span({bounds}{',seconds' if self.seconds else ''})"


@dataclass(frozen=True, repr=False)
class Constant(EdgeSet):
    """See `all_edges` (``value`` True) and `no_edges` (``value`` False)."""

    value: bool

    def _mask(self, ctx: CompileContext) -> PartialMask:
        return ctx.constant(self.value)

    def __str__(self) -> str:
        return "all_edges" if self.value else "no_edges"


# ---------------------------------------------------------------------------- selector functions
@checked
def unimodal(include_cls: bool = False) -> EdgeSet:
    """Edges whose query and key are in the same modality, self edges included. Edges that
    touch the CLS token are neither unimodal nor cross-modal unless ``include_cls=True``,
    which makes CLS a modality of its own (CLS -> CLS is unimodal).

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
    return Modal(include_cls, cross=False)


@checked
def cross_modal(include_cls: bool = False) -> EdgeSet:
    """Edges whose query and key are in different modalities; CLS is a modality of its own
    only with ``include_cls=True`` (as in `unimodal`; CLS <-> signal is then cross-modal).

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
    return Modal(include_cls, cross=True)


@checked
def within(group: str) -> EdgeSet:
    """Edges whose query and key are both in ``group`` (a modality name or ``"cls"``).

    >>> str(within("emg") | between("cls", "acc"))
    'within(emg) | between(cls,acc)'
    """
    return Within(group)


@checked
def between(query_group: str, key_group: str) -> EdgeSet:
    """Directed edges: the query is in ``query_group`` and reads a key in ``key_group``.

    >>> layout = TokenLayout.channel_tokens({"emg": 1, "acc": 1})  # cls, emg, acc
    >>> between("acc", "emg").compile(layout, 1)[0].int()  # acc reads emg: row acc, column emg
    tensor([[0, 0, 0],
            [0, 0, 0],
            [0, 1, 0]], dtype=torch.int32)
    """
    return Between(query_group, key_group)


@checked
def to_cls() -> EdgeSet:
    """Edges in which CLS reads a non-CLS token (information flowing to CLS).

    >>> layout = TokenLayout.channel_tokens({"emg": 2})  # cls, emg, emg
    >>> to_cls().compile(layout, 1)[0].int()
    tensor([[0, 1, 1],
            [0, 0, 0],
            [0, 0, 0]], dtype=torch.int32)
    """
    return Cls(to=True)


@checked
def from_cls() -> EdgeSet:
    """Edges in which a non-CLS token reads CLS (information flowing from CLS).

    >>> layout = TokenLayout.channel_tokens({"emg": 2})  # cls, emg, emg
    >>> from_cls().compile(layout, 1)[0].int()
    tensor([[0, 0, 0],
            [1, 0, 0],
            [1, 0, 0]], dtype=torch.int32)
    """
    return Cls(to=False)


@checked
def same_channel() -> EdgeSet:
    """Edges between two tokens of the same input channel (both must embed a channel).

    >>> layout = TokenLayout.channel_tokens({"emg": 2}, n_patches=2)  # cls, (c0,t0), (c0,t1), ...
    >>> int(same_channel().compile(layout, 1).sum())  # 2 channels x 2 x 2 patch pairs
    8
    """
    return Channel(same=True)


@checked
def cross_channel() -> EdgeSet:
    """Edges between tokens of two different input channels (both must embed a channel).

    >>> layout = TokenLayout.channel_tokens({"emg": 2}, n_patches=2)
    >>> int(cross_channel().compile(layout, 1).sum())  # 2 ordered channel pairs x 2 x 2
    8
    """
    return Channel(same=False)


@checked
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


@checked
def reads_earlier() -> EdgeSet:
    """Edges in which a later token reads an earlier one: the key's time is before the
    query's (``t_k < t_q``, `TokenLayout.time`); tokens without a time are excluded. Cut, each
    query keeps the keys at its own time and later. Refused (`LayoutError`) on a layout
    whose tokens are not ordered in time.

    >>> layout = TokenLayout.channel_tokens({"emg": 1}, n_patches=3, cls_token=False)
    >>> reads_earlier().compile(layout, 1)[0].int()  # row = query, column = key
    tensor([[0, 0, 0],
            [1, 0, 0],
            [1, 1, 0]], dtype=torch.int32)
    """
    return Order(later=False)


@checked
def reads_later() -> EdgeSet:
    """Edges in which an earlier token reads a later one (``t_k > t_q``); tokens without a
    time are excluded. Cut, each query keeps the keys at its own time and earlier: causal
    attention (``scaled_dot_product_attention(is_causal=True)`` on tokens in time order).

    >>> layout = TokenLayout.channel_tokens({"emg": 2}, n_patches=2)  # cls, (c0,t0), (c0,t1), ...
    >>> reads_later().compile(layout, 1)[0].nonzero().tolist()  # any channels: t0 reads t1
    [[1, 2], [1, 4], [3, 2], [3, 4]]
    """
    return Order(later=True)


@checked
def time_span(
    query_start: float,
    query_stop: float,
    key_start: float,
    key_stop: float,
    *,
    seconds: bool = False,
) -> EdgeSet:
    """Edges from a span of time to another: the query's time in
    ``[query_start, query_stop)`` reads a key whose time is in ``[key_start, key_stop)``. The
    bounds are time indices (`TokenLayout.time`, the patch or slice index), or with
    ``seconds=True`` seconds into the window, where the layout knows them
    (`TokenLayout.time_step`: a token is in the span when its start, ``time * time_step``, is).

    >>> layout = TokenLayout.channel_tokens({"emg": 1}, n_patches=4, cls_token=False,
    ...                                     time_step=0.5)  # 4 patches of half a second
    >>> time_span(3, 4, 0, 2).compile(layout, 1)[0].int()  # the last patch reads the first two
    tensor([[0, 0, 0, 0],
            [0, 0, 0, 0],
            [0, 0, 0, 0],
            [1, 1, 0, 0]], dtype=torch.int32)
    >>> half = time_span(1.5, 2, 0, 1, seconds=True)  # the last half second reads the first
    >>> str(half), half.compile(layout, 1).equal(time_span(3, 4, 0, 2).compile(layout, 1))
    ('time_span(1.5,2,0,1,seconds)', True)
    """
    return TimeSpan(query_start, query_stop, key_start, key_stop, seconds)


@checked
def all_edges() -> EdgeSet:
    """Every edge on every head.

    >>> (~no_edges()).compile(TokenLayout.channel_tokens({"emg": 1}), 2).all().item()
    True
    """
    return Constant(True)


@checked
def no_edges() -> EdgeSet:
    """No edge at all (masking it changes nothing).

    >>> (all_edges() - all_edges()).compile(TokenLayout.channel_tokens({"emg": 1}), 2).any()
    tensor(False)
    """
    return Constant(False)


@checked
def heads(*indices: int | Iterable[int]) -> EdgeSet:
    """Every edge on the given heads (indices or one iterable of them) and none elsewhere.

    >>> heads(2, 0) == heads([0, 2])
    True
    >>> heads(0, 2).compile(TokenLayout.channel_tokens({"emg": 1}), 4).flatten(1).all(1)
    tensor([ True, False,  True, False])
    """
    return Heads.of(*indices)


@checked
def layers(*indices: int | Iterable[int]) -> EdgeSet:
    """Every edge, in the given blocks (``blocks.{l}``) only: an edge set that names layers
    compiles per layer (``compile(..., layer=l)``, `EdgeSet.compile_layers`), so one
    expression can cut different edges in different layers, e.g. a discovered circuit's
    complement applied with layer mode ``all``.

    >>> layout = TokenLayout.channel_tokens({"emg": 1})
    >>> e = cross_channel() & layers(1) | same_channel() & layers(0)
    >>> str(e)
    'cross_channel & layers(1) | same_channel & layers(0)'
    >>> [int(e.compile(layout, 1, layer=i).sum()) for i in range(3)]
    [1, 0, 0]
    """
    return Layers.of(*indices)
