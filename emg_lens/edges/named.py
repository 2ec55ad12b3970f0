"""The selectors of named channels and scalp regions: `channels` (named channels, e.g. EEG
electrodes "C3", "C4"), `within_region`, `between_regions` and `cross_region` (edges inside or
between scalp regions: 10-20 / 10-10 lobes and hemispheres, a channel, ``C3+Cz+C4``, or the
user's own ``regions=``). They read the layout's channel names (`EncoderConfig.channel_names`)
and place them with `emg_lens.edges.regions`.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool

from emg_lens.edges.algebra import CompileContext, EdgeSet, PartialMask
from emg_lens.edges.regions import LOBES, REGIONS, place, region_channels
from emg_lens.errors import ArgumentError, LayoutError, checked
from emg_lens.layout import TokenLayout  # noqa: F401  (TokenLayout: for the examples)


# ============================================================================ argument checks
def _check_name(name: Any, what: str) -> str:
    """A channel or region name: a non-empty string the string form can write (bare when it
    is an identifier, else quoted, so it holds no newline and not both quote characters)."""
    writable = isinstance(name, str) and "\n" not in name and not {"'", '"'} <= set(name)
    if not writable or not name.strip():
        text = "a non-empty string without a newline or both quote characters (e.g. 'C3')"
        raise ArgumentError(f"{what} must be a channel or region name: {text}, got {name!r}")
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
        forms = "a name ('frontal', 'left', 'C3'), names joined with '+' ('C3+Cz+C4') or a list"
        raise ArgumentError(f"{what} must be a region: {forms}; got {region!r}")
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
        wanted = 'a dict of region name -> channel names, e.g. {"motor": ["C3", "Cz", "C4"]}'
        raise ArgumentError(f"{what}: regions must be {wanted}, got {regions!r}")
    out = {}
    for key, channels in regions.items():
        key = _check_name(key, f"{what}: a regions key")
        listed = not isinstance(channels, str) and isinstance(channels, Iterable)
        names = (
            tuple(_check_name(c, f"{what}: regions[{key!r}]") for c in channels) if listed else ()
        )
        if not names:
            wanted = "a list of one or more channel names"
            raise ArgumentError(f"{what}: regions[{key!r}] must be {wanted}, got {channels!r}")
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
            f"edge set {selector} names channels, but this layout has no channel names: set "
            "EncoderConfig.channel_names or TokenLayout.channel_tokens(..., channel_names=...)"
        )
    return names


SCALP_GROUP = "eeg"
"""The token group whose every channel a scalp region must place, where a layout has one."""


def _on_scalp(ctx: CompileContext, names: tuple[str, ...]) -> tuple[str, ...]:
    """The channels a scalp region may hold: every channel, each of which must be placeable;
    but where the layout has an ``"eeg"`` token group, the channels of its other groups only
    where their names are 10-20 / 10-10 names (an EOG electrode at Fp1 is placed; an sEMG or
    accelerometer channel, on no scalp, is left out rather than refused)."""
    layout = ctx.layout
    if SCALP_GROUP not in layout.group:
        return names
    eeg = {c for g, c in zip(layout.group, layout.channel, strict=True) if g == SCALP_GROUP}
    return tuple(n for i, n in enumerate(names) if i in eeg or _placeable(n))


def _placeable(name: str) -> bool:
    try:
        place(name)
    except LayoutError:
        return False
    return True


def _shown(names: tuple[str, ...]) -> str:
    return ", ".join(names[:24]) + (f", ... ({len(names) - 24} more)" if len(names) > 24 else "")


def _channel(term: str, names: tuple[str, ...], selector: EdgeSet) -> str:
    """The layout's channel called ``term`` (exactly, else ignoring case)."""
    if term in names:
        return term
    folded = [n for n in names if n.casefold() == term.casefold()]
    if len(folded) == 1:
        return folded[0]
    region = "" if isinstance(selector, Channels) else f" nor a region ({', '.join(REGIONS)})"
    unknown = f"edge set {selector} names {term!r}, which is not a channel of this layout{region}"
    raise LayoutError(f"{unknown}; its channels are {_shown(names)}")


def _placed(selector: EdgeSet, fn: Any, *args: Any) -> Any:
    """``fn(*args)``, where ``fn`` places channel names; an unplaceable one names the edge set."""
    try:
        return fn(*args)
    except LayoutError as err:
        raise LayoutError(
            f"edge set {selector} needs the scalp region of every channel of this layout: {err}",
            channel=getattr(err, "channel", None),
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
            chosen = _placed(selector, region_channels, term, _on_scalp(ctx, names))
        else:
            chosen = (_channel(term, names, selector),)
        if not chosen:
            holds = f"which holds none of this layout's channels ({_shown(names)})"
            raise LayoutError(f"edge set {selector} names region {term!r}, {holds}")
        term_member = torch.zeros_like(member)
        term_member[[names.index(c) for c in chosen]] = True
        if not term_member[channel_ids].any():
            embeds = "no token of this layout embeds its channels (CLS and tubelets embed none)"
            raise LayoutError(f"edge set {selector} names {term!r}, but {embeds}")
        member |= term_member
    return member[channel_ids]


# ============================================================================ selector classes
class _WithinMembers(EdgeSet):
    """Edges whose query and key are both members: tokens that embed a channel the selector
    names (`_members`)."""

    @abc.abstractmethod
    def _members(self, ctx: CompileContext) -> Bool[torch.Tensor, " pos"]: ...

    def _mask(self, ctx: CompileContext) -> PartialMask:
        member = self._members(ctx)
        return member[:, None] & member[None, :]


@dataclass(frozen=True, repr=False)
class Channels(_WithinMembers):
    """See `channels`."""

    names: tuple[str, ...]

    def _members(self, ctx: CompileContext) -> Bool[torch.Tensor, " pos"]:
        return _region_members(ctx, self.names, self, regions=False)

    def __str__(self) -> str:
        return f"channels({','.join(map(_write_name, self.names))})"


@dataclass(frozen=True, repr=False)
class WithinRegion(_WithinMembers):
    """See `within_region`."""

    region: tuple[str, ...]

    def _members(self, ctx: CompileContext) -> Bool[torch.Tensor, " pos"]:
        return _region_members(ctx, self.region, self)

    def __str__(self) -> str:
        return f"within_region({_write_region(self.region)})"


@dataclass(frozen=True, repr=False)
class BetweenRegions(EdgeSet):
    """See `between_regions`."""

    query_region: tuple[str, ...]
    key_region: tuple[str, ...]

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
        scalp = set(_on_scalp(ctx, names))
        lobes = _placed(
            self, lambda: [LOBES.index(place(n)[0]) if n in scalp else -1 for n in names]
        )
        lobe = torch.tensor([*lobes, -1], dtype=torch.long, device=ctx.device)  # [-1]: none
        lobe_q, lobe_k = lobe[ctx.channel_q], lobe[ctx.channel_k]
        return (lobe_q >= 0) & (lobe_k >= 0) & (lobe_q != lobe_k)

    def __str__(self) -> str:
        return "cross_region"


# ---------------------------------------------------------------------------- selector functions
@checked
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
    checked = tuple(sorted({_check_name(n, "channels(...)") for n in names}))
    if not checked:
        raise ArgumentError("channels(...) needs at least one channel name, e.g. channels(C3)")
    return Channels(checked)


@checked
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


@checked
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


@checked
def cross_region() -> EdgeSet:
    """Edges between tokens of channels in two different lobes (frontal, central, parietal,
    occipital, temporal) of the 10-20 / 10-10 table; tokens without a channel are excluded.
    A channel of the layout that cannot be placed is a `LayoutError` naming it.

    >>> layout = TokenLayout.channel_tokens({"eeg": 3}, channel_names=["C3", "C4", "O1"])
    >>> cross_region().compile(layout, 1)[0].int()  # cls, C3, C4, O1
    tensor([[0, 0, 0, 0],
            [0, 0, 0, 1],
            [0, 0, 0, 1],
            [0, 1, 1, 0]], dtype=torch.int32)
    """
    return CrossRegion()
