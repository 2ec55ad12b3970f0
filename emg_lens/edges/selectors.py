"""The selectors: the leaves of an edge-set expression, each asking the token layout one
question (same modality? which group? which channel, time patch or head? which named channel
or scalp region?), and the public functions that build them with their argument checks.

Every selector is a frozen dataclass whose fields are its arguments, so two selectors are equal
when their arguments are; the functions (`unimodal`, `between`, ...) are the public way in.
To add one: a class here with ``_mask``, ``__str__`` (and ``groups`` if it names token groups),
a function that builds it, and a row in the parser's table (`emg_lens.edges.parser`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool

from emg_lens.edges.algebra import (
    CompileContext,
    EdgeSet,
    Heads,
    Layers,
    PartialMask,
    check_int,
)
from emg_lens.edges.regions import LOBES, REGIONS, place, region_channels
from emg_lens.errors import ArgumentError, LayoutError, UnplacedChannelError
from emg_lens.layout import CLS, TokenLayout  # noqa: F401  (TokenLayout: for the examples)


# ============================================================================ argument checks
def _check_group(group: Any, what: str) -> str:
    if not isinstance(group, str) or not group.isidentifier():
        raise ArgumentError(
            f"{what} must be a token group name (an identifier such as 'emg' or 'cls'), "
            f"got {group!r}"
        )
    return group


def _check_flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ArgumentError(f"{what} must be True or False, got {value!r}")
    return value


def _check_name(name: Any, what: str) -> str:
    """A channel or region name: a non-empty string the string form can write (bare when it
    is an identifier, else quoted, so it holds no newline and not both quote characters)."""
    if not isinstance(name, str) or not name.strip():
        raise ArgumentError(
            f"{what} must be a channel or region name (a non-empty string such as 'C3' or "
            f"'frontal'), got {name!r}"
        )
    if "\n" in name or ("'" in name and '"' in name):
        raise ArgumentError(
            f"{what}: {name!r} cannot be written in an edge expression (a newline, or both "
            "quote characters)"
        )
    return name.strip()


def _check_region(
    region: Any, what: str, regions: Mapping[str, Any] | None = None
) -> tuple[str, ...]:
    """A region argument as its sorted, distinct names: a string (names joined with ``+``),
    or a sequence of names (each one name, ``+`` or not); names in ``regions`` (the caller's
    own groups) are replaced by their channels."""
    if isinstance(region, str):
        names = region.split("+")
    elif isinstance(region, Iterable) and not isinstance(region, Mapping):
        names = list(region)
    else:
        raise ArgumentError(
            f"{what} must be a region: a name such as 'frontal', 'left' or 'C3', names joined "
            f"with '+' ('C3+Cz+C4'), or a list of names; got {region!r}"
        )
    own = _check_own_regions(regions, what)
    out: set[str] = set()
    for name in names:
        name = _check_name(name, what)
        out.update(own.get(name, (name,)))
    if not out:
        raise ArgumentError(f"{what} needs at least one channel or region name")
    return tuple(sorted(out))


def _check_own_regions(regions: Any, what: str) -> dict[str, tuple[str, ...]]:
    if regions is None:
        return {}
    if not isinstance(regions, Mapping):
        raise ArgumentError(
            f"{what}: regions must be a dict of region name -> channel names, e.g. "
            f'{{"motor": ["C3", "Cz", "C4"]}}, got {regions!r}'
        )
    out = {}
    for key, channels in regions.items():
        key = _check_name(key, f"{what}: a regions key")
        if isinstance(channels, str) or not isinstance(channels, Iterable):
            raise ArgumentError(
                f"{what}: regions[{key!r}] must be a list of channel names, got {channels!r}"
            )
        names = tuple(_check_name(c, f"{what}: regions[{key!r}]") for c in channels)
        if not names:
            raise ArgumentError(f"{what}: regions[{key!r}] names no channel")
        out[key] = names
    return out


def _write_name(name: str) -> str:
    """A name as the string form writes it: bare when the parser reads it as a name."""
    if name.isidentifier():
        return name
    return f'"{name}"' if "'" in name else f"'{name}'"


def _write_region(names: tuple[str, ...]) -> str:
    return "+".join(map(_write_name, names))


# ============================================================================ channel lookups
def _layout_names(ctx: CompileContext, selector: EdgeSet) -> tuple[str, ...]:
    names = ctx.layout.channel_names
    if names is None:
        raise LayoutError(
            f"edge set {selector} names channels or scalp regions, but this layout has no "
            "channel names: set EncoderConfig.channel_names (one per input channel) or "
            "TokenLayout.channel_tokens(..., channel_names=...)"
        )
    return names


def _shown(names: tuple[str, ...]) -> str:
    return ", ".join(names[:24]) + (f", ... ({len(names) - 24} more)" if len(names) > 24 else "")


def _channel(term: str, names: tuple[str, ...], selector: EdgeSet) -> str:
    """The layout's channel called ``term`` (exactly, else ignoring case)."""
    if term in names:
        return term
    folded = [n for n in names if n.casefold() == term.casefold()]
    if len(folded) == 1:
        return folded[0]
    raise LayoutError(
        f"edge set {selector} names {term!r}, which is not a channel of this layout"
        + ("" if isinstance(selector, Channels) else f" nor a region ({', '.join(REGIONS)})")
        + f"; its channels are {_shown(names)}"
    )


def _placed(selector: EdgeSet, fn: Any, *args: Any) -> Any:
    """``fn(*args)``, where ``fn`` places channel names; an unplaceable one names the edge set."""
    try:
        return fn(*args)
    except UnplacedChannelError as err:
        raise UnplacedChannelError(
            f"edge set {selector} needs the scalp region of every channel of this layout: {err}",
            channel=err.channel,
        ) from None


def _region_members(
    ctx: CompileContext, terms: tuple[str, ...], selector: EdgeSet, *, regions: bool = True
) -> Bool[torch.Tensor, " pos"]:
    """Which tokens embed a channel that ``terms`` name (built-in regions when ``regions``,
    else channel names only; a region's name wins over a channel of the same name); each term
    must select at least one token."""
    names = _layout_names(ctx, selector)
    channel_ids = ctx.channel_k[0]
    member = torch.zeros(len(names) + 1, dtype=torch.bool, device=ctx.device)  # [-1]: none
    for term in terms:
        if regions and term in REGIONS:
            chosen = _placed(selector, region_channels, term, names)
        else:
            chosen = (_channel(term, names, selector),)
        if not chosen:
            raise LayoutError(
                f"edge set {selector} names region {term!r}, which holds none of this layout's "
                f"channels ({_shown(names)})"
            )
        term_member = torch.zeros_like(member)
        term_member[[names.index(c) for c in chosen]] = True
        if not term_member[channel_ids].any():
            raise LayoutError(
                f"edge set {selector} names {term!r}, but no token of this layout embeds its "
                "channels (tokens that embed no single channel, such as CLS and the fusion "
                "models' tubelets, have none)"
            )
        member |= term_member
    return member[channel_ids]


# ============================================================================ selector classes
@dataclass(frozen=True, repr=False)
class Unimodal(EdgeSet):
    """See `unimodal`."""

    include_cls: bool = False

    def __post_init__(self) -> None:
        _check_flag(self.include_cls, "unimodal(include_cls=...)")

    def _mask(self, ctx: CompileContext) -> PartialMask:
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

    def _mask(self, ctx: CompileContext) -> PartialMask:
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
class ToCls(EdgeSet):
    """See `to_cls`."""

    def _mask(self, ctx: CompileContext) -> PartialMask:
        ctx.require_cls(self)
        return ctx.cls_q & ~ctx.cls_k

    def groups(self) -> set[str]:
        return {CLS}

    def __str__(self) -> str:
        return "to_cls"


@dataclass(frozen=True, repr=False)
class FromCls(EdgeSet):
    """See `from_cls`."""

    def _mask(self, ctx: CompileContext) -> PartialMask:
        ctx.require_cls(self)
        return ~ctx.cls_q & ctx.cls_k

    def groups(self) -> set[str]:
        return {CLS}

    def __str__(self) -> str:
        return "from_cls"


@dataclass(frozen=True, repr=False)
class SameChannel(EdgeSet):
    """See `same_channel`."""

    def _mask(self, ctx: CompileContext) -> PartialMask:
        both = (ctx.channel_q >= 0) & (ctx.channel_k >= 0)
        return both & (ctx.channel_q == ctx.channel_k)

    def __str__(self) -> str:
        return "same_channel"


@dataclass(frozen=True, repr=False)
class CrossChannel(EdgeSet):
    """See `cross_channel`."""

    def _mask(self, ctx: CompileContext) -> PartialMask:
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
        object.__setattr__(self, "max_lag", check_int(self.max_lag, "time_window(max_lag)"))
        object.__setattr__(self, "min_lag", check_int(self.min_lag, "time_window(min_lag=...)"))
        if self.min_lag > self.max_lag:
            raise ArgumentError(
                f"time_window needs min_lag <= max_lag, got max_lag={self.max_lag}, "
                f"min_lag={self.min_lag}"
            )

    def _mask(self, ctx: CompileContext) -> PartialMask:
        both = (ctx.time_q >= 0) & (ctx.time_k >= 0)
        lag = (ctx.time_q - ctx.time_k).abs()
        return both & (lag >= self.min_lag) & (lag <= self.max_lag)

    def __str__(self) -> str:
        if self.min_lag == 0:
            return f"time_window({self.max_lag})"
        return f"time_window({self.max_lag},min_lag={self.min_lag})"


@dataclass(frozen=True, repr=False)
class Channels(EdgeSet):
    """See `channels`."""

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if isinstance(self.names, str) or not isinstance(self.names, Iterable):
            raise ArgumentError(f"channels(...) needs channel names, got {self.names!r}")
        names = tuple(sorted({_check_name(n, "channels(...)") for n in self.names}))
        if not names:
            raise ArgumentError("channels(...) needs at least one channel name, e.g. channels(C3)")
        object.__setattr__(self, "names", names)

    def _mask(self, ctx: CompileContext) -> PartialMask:
        member = _region_members(ctx, self.names, self, regions=False)
        return member[:, None] & member[None, :]

    def __str__(self) -> str:
        return f"channels({','.join(map(_write_name, self.names))})"


@dataclass(frozen=True, repr=False)
class WithinRegion(EdgeSet):
    """See `within_region`."""

    region: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "region", _check_region(self.region, "within_region(region)"))

    def _mask(self, ctx: CompileContext) -> PartialMask:
        member = _region_members(ctx, self.region, self)
        return member[:, None] & member[None, :]

    def __str__(self) -> str:
        return f"within_region({_write_region(self.region)})"


@dataclass(frozen=True, repr=False)
class BetweenRegions(EdgeSet):
    """See `between_regions`."""

    query_region: tuple[str, ...]
    key_region: tuple[str, ...]

    def __post_init__(self) -> None:
        for name, what in (
            ("query_region", "(query_region, ...)"),
            ("key_region", "(..., key_region)"),
        ):
            value = _check_region(getattr(self, name), f"between_regions{what}")
            object.__setattr__(self, name, value)

    def _mask(self, ctx: CompileContext) -> PartialMask:
        query = _region_members(ctx, self.query_region, self)
        key = _region_members(ctx, self.key_region, self)
        return query[:, None] & key[None, :]

    def __str__(self) -> str:
        return (
            f"between_regions({_write_region(self.query_region)},{_write_region(self.key_region)})"
        )


@dataclass(frozen=True, repr=False)
class CrossRegion(EdgeSet):
    """See `cross_region`."""

    def _mask(self, ctx: CompileContext) -> PartialMask:
        names = _layout_names(ctx, self)
        lobes = _placed(self, lambda: [LOBES.index(place(n)[0]) for n in names])
        lobe = torch.tensor([*lobes, -1], dtype=torch.long, device=ctx.device)  # [-1]: none
        lobe_q, lobe_k = lobe[ctx.channel_q], lobe[ctx.channel_k]
        return (lobe_q >= 0) & (lobe_k >= 0) & (lobe_q != lobe_k)

    def __str__(self) -> str:
        return "cross_region"


@dataclass(frozen=True, repr=False)
class AllEdges(EdgeSet):
    """See `all_edges`."""

    def _mask(self, ctx: CompileContext) -> PartialMask:
        return ctx.constant(True)

    def __str__(self) -> str:
        return "all_edges"


@dataclass(frozen=True, repr=False)
class NoEdges(EdgeSet):
    """See `no_edges`."""

    def _mask(self, ctx: CompileContext) -> PartialMask:
        return ctx.constant(False)

    def __str__(self) -> str:
        return "no_edges"


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


def channels(*names: str | Iterable[str]) -> EdgeSet:
    """Edges whose query and key both embed one of the named channels (names or one iterable
    of them; a layout's `TokenLayout.channel_names`, matched exactly or else ignoring case).
    ``channels(C3, C4)`` holds C3 <-> C4 and each channel's own edges; for one side only, name
    channels in `between_regions` (``between_regions("C3", "C4")``: C3 reads C4).

    >>> layout = TokenLayout.channel_tokens({"eeg": 3}, channel_names=["C3", "Cz", "C4"])
    >>> channels("C4", "C3").compile(layout, 1)[0].int()  # cls, C3, Cz, C4
    tensor([[0, 0, 0, 0],
            [0, 1, 0, 1],
            [0, 0, 0, 0],
            [0, 1, 0, 1]], dtype=torch.int32)
    >>> str(channels(["C4", "C3"]))
    'channels(C3,C4)'
    """
    if len(names) == 1 and isinstance(names[0], Iterable) and not isinstance(names[0], str):
        names = tuple(names[0])
    return Channels(names)  # type: ignore[arg-type]


def within_region(
    region: str | Iterable[str], *, regions: Mapping[str, Any] | None = None
) -> EdgeSet:
    """Edges whose query and key are both in ``region``: a lobe (``frontal``, ``central``,
    ``parietal``, ``occipital``, ``temporal``), a hemisphere (``left``, ``right``,
    ``midline``), a channel name, or several joined with ``+`` (or a list): their union.
    Built-in regions place the layout's channels by the 10-20 / 10-10 table
    (`emg_lens.edges.regions`); ``regions`` names your own groups of channels instead, which
    the edge set stores as their channel names.

    >>> layout = TokenLayout.channel_tokens({"eeg": 4}, channel_names=["Fz", "C3", "C4", "Pz"])
    >>> within_region("central").compile(layout, 1)[0].int()  # cls, Fz, C3, C4, Pz
    tensor([[0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0],
            [0, 0, 1, 1, 0],
            [0, 0, 1, 1, 0],
            [0, 0, 0, 0, 0]], dtype=torch.int32)
    >>> within_region("motor", regions={"motor": ["C3", "Cz", "C4"]})
    EdgeSet('within_region(C3+C4+Cz)')
    """
    return WithinRegion(_check_region(region, "within_region(region)", regions))


def between_regions(
    query_region: str | Iterable[str],
    key_region: str | Iterable[str],
    *,
    regions: Mapping[str, Any] | None = None,
) -> EdgeSet:
    """Directed edges: a query in ``query_region`` reads a key in ``key_region`` (each a region
    as in `within_region`: a lobe, a hemisphere, a channel name, or a ``+`` union).

    >>> layout = TokenLayout.channel_tokens({"eeg": 3}, channel_names=["F3", "C3", "P3"])
    >>> between_regions("frontal", "parietal+C3").compile(layout, 1)[0].int()  # F3 reads C3, P3
    tensor([[0, 0, 0, 0],
            [0, 0, 1, 1],
            [0, 0, 0, 0],
            [0, 0, 0, 0]], dtype=torch.int32)
    >>> str(between_regions("left", "right") | between_regions("right", "left"))
    'between_regions(left,right) | between_regions(right,left)'
    """
    return BetweenRegions(
        _check_region(query_region, "between_regions(query_region, ...)", regions),
        _check_region(key_region, "between_regions(..., key_region)", regions),
    )


def cross_region() -> EdgeSet:
    """Edges between tokens of channels in two different lobes (frontal, central, parietal,
    occipital, temporal) of the 10-20 / 10-10 table; tokens without a channel are excluded.
    Every channel of the layout must be placeable (`UnplacedChannelError` names one that
    is not).

    >>> layout = TokenLayout.channel_tokens({"eeg": 3}, channel_names=["C3", "C4", "O1"])
    >>> cross_region().compile(layout, 1)[0].int()  # cls, C3, C4, O1
    tensor([[0, 0, 0, 0],
            [0, 0, 0, 1],
            [0, 0, 0, 1],
            [0, 1, 1, 0]], dtype=torch.int32)
    """
    return CrossRegion()


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
    return Heads.of(*indices)


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
