"""`TokenLayout`: what every token position of a biosignal encoder is.

Language models index tokens by position alone; biosignal tokens also have a *group* (the
modality they come from, or ``"cls"``), a *channel* and a *time* patch. Edge sets, hooks and
inspection tools all ask the layout, never the raw position, so one edge expression works on
every model.

>>> layout = TokenLayout.channel_tokens({"emg": 2, "acc": 3}, cls_token=True)
>>> layout.n_tokens, layout.groups
(6, ('cls', 'emg', 'acc'))
>>> layout.positions("acc")
[3, 4, 5]

A layout may also name its channels (``channel_names``, e.g. the 10-20 EEG names), which edge
sets use to select channels and scalp regions (`emg_lens.edges`):

>>> named = TokenLayout.channel_tokens({"eeg": 2}, channel_names=["C3", "C4"])
>>> named.channel_name(2), named.channel_name(0)  # CLS embeds no channel
('C4', None)
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Int

from emg_lens._hints import checked
from emg_lens.errors import (
    LayoutError,
    check_channel_names,
    check_int,
    check_names,
    check_number,
    check_type,
    describe,
    fields_checked,
    warn_caller,
)

__all__ = ["CLS", "TokenLayout", "check_mask_shape", "checked_edge_masks"]

CLS = "cls"
"""The group name of the CLS token."""


@fields_checked
@dataclass(frozen=True)
class TokenLayout:
    """Per-position token metadata: ``group[i]``, ``channel[i]`` and ``time[i]``.

    ``channel`` is the input channel the token embeds (its row in the signal batch), or -1
    (CLS); ``time`` is the patch index within the window, or -1 (the time edge sets read it).
    ``channel_names`` (optional) names the input channels by ``channel`` id (a model's
    `EncoderConfig.channel_names`); ``time_step`` (optional), the seconds from one time index
    to the next, places a token of time ``t`` at ``t * time_step`` seconds into the window."""

    group: tuple[str, ...]
    channel: tuple[int, ...]
    time: tuple[int, ...]
    channel_names: tuple[str, ...] | None = None
    queries: TokenLayout | None = None
    time_step: float | None = None

    def __post_init__(self) -> None:
        side = self.queries
        if side is not None and not (isinstance(side, TokenLayout) and side.queries is None):
            queries = "the TokenLayout of the query tokens (with no queries of its own)"
            raise LayoutError(f"TokenLayout.queries must be {queries}, got {side!r}")
        lengths = (len(self.group), len(self.channel), len(self.time))
        if len(set(lengths)) > 1 or not self.group:
            fields = "TokenLayout.group, .channel and .time"
            raise LayoutError(f"{fields} must have one entry per token (1 or more), got {lengths}")
        check_names(dict.fromkeys(self.group), "TokenLayout groups", LayoutError)  # name tokens
        if self.channel_names is not None:
            object.__setattr__(self, "channel_names", self._checked_names(self.channel_names))
        if self.time_step is not None:
            what = "TokenLayout.time_step"
            wanted = "None or the seconds from one time index to the next (a positive number)"
            step = check_number(
                self.time_step, what, wanted, lambda v: 0 < v < math.inf, LayoutError
            )
            object.__setattr__(self, "time_step", step)  # a plain float: it goes to JSON

    def _checked_names(self, names: object) -> tuple[str, ...]:
        what = "TokenLayout.channel_names"
        form = "a sequence of channel names indexed by the channel ids (e.g. ('C3', 'Cz', 'C4'))"
        strings = check_channel_names(names, what, LayoutError, Sequence, form)
        twice = "".join(sorted({f", got {n!r} twice" for n in strings if strings.count(n) > 1})[:1])
        top = max(self.channel, default=-1)
        if top >= len(strings) or twice:
            ids = f"a unique name for every channel id 0..{top} (a token embeds channel {top})"
            raise LayoutError(f"{what} has {len(strings)} names, needs {ids}{twice}")
        return tuple(strings)

    @classmethod
    def channel_tokens(
        cls,
        modalities: Mapping[str, int],
        *,
        n_patches: int = 1,
        cls_token: bool = True,
        channel_names: Sequence[str] | None = None,
        time_step: float | None = None,
    ) -> TokenLayout:
        """The layout of channel(-patch) tokens, channel-major, after an optional CLS token.

        Channels are numbered across modalities in ``modalities`` order (a token's ``channel``
        is its row of the input), named by ``channel_names``; ``time_step``: the seconds a
        patch lasts. Channel counts and ``n_patches`` must be positive ints.

        >>> TokenLayout.channel_tokens({"emg": 2}, n_patches=2, cls_token=False).time
        (0, 1, 0, 1)
        >>> TokenLayout.channel_tokens({"emg": 2, "acc": -1})
        Traceback (most recent call last):
        ...
        emg_lens.errors.LayoutError: channel_tokens modalities['acc'] (a channel count) must be a positive int, got -1
        """  # noqa: E501
        n_patches = check_int(n_patches, "channel_tokens n_patches", 1, None, LayoutError)
        what = "channel_tokens modalities[{!r}] (a channel count)"
        counts = {
            name: check_int(count, what.format(name), 1, None, LayoutError)
            for name, count in modalities.items()
        }
        head = 1 if cls_token else 0
        group: list[str] = [CLS] * head
        channel: list[int] = [-1] * head
        time: list[int] = [-1] * head
        first = 0
        for name, count in counts.items():
            for c in range(first, first + count):
                group += [name] * n_patches
                channel += [c] * n_patches
                time += range(n_patches)
            first += count
        return cls(tuple(group), tuple(channel), tuple(time), channel_names, None, time_step)  # type: ignore[arg-type]

    @property
    def n_tokens(self) -> int:
        """The token count (of the key side, for cross-attention)."""
        return len(self.group)

    @property
    def n_queries(self) -> int:
        """The query tokens' count: ``n_tokens`` unless the queries are other tokens."""
        return self.n_tokens if self.queries is None else self.queries.n_tokens

    @property
    def query_side(self) -> TokenLayout:
        """The layout of the query tokens (this one, unless ``queries`` is set)."""
        return self if self.queries is None else self.queries

    @classmethod
    def cross(cls, queries: TokenLayout, keys: TokenLayout) -> TokenLayout:
        """Cross-attention: ``queries`` attend ``keys`` (learned queries reading channel
        tokens, as in Perceiver or LUNA). Edge sets select (query group, key group) pairs over
        both sides' groups; a mask is ``[head, n_queries, n_tokens]``.

        >>> keys = TokenLayout.channel_tokens({"emg": 3, "acc": 2}, cls_token=False)
        >>> learned = TokenLayout(("query",) * 4, (-1,) * 4, (-1,) * 4)
        >>> layout = TokenLayout.cross(learned, keys)
        >>> layout.n_queries, layout.n_tokens, layout.all_groups
        (4, 5, ('emg', 'acc', 'query'))
        """
        check_type(queries, TokenLayout, "TokenLayout.cross(queries)", LayoutError)
        check_type(keys, TokenLayout, "TokenLayout.cross(keys)", LayoutError)
        return cls(keys.group, keys.channel, keys.time, keys.channel_names, queries, keys.time_step)

    @property
    def all_groups(self) -> tuple[str, ...]:
        """The groups of both sides: the keys', then the queries' not among them."""
        if self.queries is None:
            return self.groups
        return tuple(dict.fromkeys((*self.groups, *self.queries.groups)))

    @property
    def groups(self) -> tuple[str, ...]:
        """Distinct groups in order of first appearance."""
        return tuple(dict.fromkeys(self.group))

    @property
    def modalities(self) -> tuple[str, ...]:
        """Groups that hold signal tokens (every group but CLS)."""
        return tuple(g for g in self.groups if g != CLS)

    @property
    def has_cls(self) -> bool:
        return CLS in self.group

    def check_group(self, group: str) -> str:
        """Return ``group`` if this layout has it, else raise `LayoutError` naming the choices."""
        if group not in self.groups:
            raise LayoutError(f"unknown token group {group!r}; this layout has {self.groups}")
        return group

    def positions(self, group: str) -> list[int]:
        """Token positions of one group."""
        self.check_group(group)
        return [i for i, g in enumerate(self.group) if g == group]

    def group_ids(self) -> Int[torch.Tensor, " pos"]:
        """Each token's group as an index into `groups`."""
        index = {g: i for i, g in enumerate(self.groups)}
        return torch.tensor([index[g] for g in self.group], dtype=torch.long)

    def channel_ids(self) -> Int[torch.Tensor, " pos"]:
        return torch.tensor(self.channel, dtype=torch.long)

    def channel_name(self, position: int) -> str | None:
        """The name of the channel token ``position`` embeds; None for a token that embeds no
        channel (CLS, a tubelet) or a layout without ``channel_names``.

        >>> TokenLayout.channel_tokens({"eeg": 1}, channel_names=["Cz"]).channel_name(1)
        'Cz'
        """
        position = check_int(position, f"position {position!r}", 0, self.n_tokens - 1, LayoutError)
        channel = self.channel[position]
        if self.channel_names is None or channel < 0:
            return None
        return self.channel_names[channel]

    def time_ids(self) -> Int[torch.Tensor, " pos"]:
        return torch.tensor(self.time, dtype=torch.long)

    def token_name(self, position: int) -> str:
        """Token ``position`` in words: its position, group, channel and time.

        >>> TokenLayout.channel_tokens({"eeg": 1}, n_patches=2, channel_names=["Cz"]).token_name(2)
        '2 (eeg Cz t1)'
        """
        channel, time = self.channel[position], self.time[position]
        shown = [self.group[position]]
        shown += [self.channel_name(position) or f"ch{channel}"] * (channel >= 0)
        return f"{position} ({' '.join(shown + [f't{time}'] * (time >= 0))})"

    def describe_sides(self) -> str:
        """``"n tokens"``, or ``"n query tokens attending m key tokens"`` for cross-attention."""
        if self.queries is None:
            return f"{self.n_tokens} tokens"
        return f"{self.n_queries} query tokens attending {self.n_tokens} key tokens"

    def check_matches(self, n_tokens: int, what: str = "tensor") -> None:
        """Raise `LayoutError` unless ``n_tokens`` equals this layout's token count."""
        if n_tokens != self.n_tokens:
            has = f"{what} has {n_tokens} token positions but the layout has {self.n_tokens}"
            raise LayoutError(f"{has}; was it made by another model or input shape?")

    def to_dict(self) -> dict[str, object]:
        """The layout as JSON-ready lists (what a checkpoint's ``config.json`` holds).

        >>> layout = TokenLayout.channel_tokens({"emg": 2}, n_patches=2)
        >>> TokenLayout.from_dict(layout.to_dict()) == layout
        True
        """
        out: dict[str, object] = {
            "group": list(self.group),
            "channel": list(self.channel),
            "time": list(self.time),
        }
        if self.channel_names is not None:
            out["channel_names"] = list(self.channel_names)
        if self.queries is not None:
            out["queries"] = self.queries.to_dict()
        if self.time_step is not None:
            out["time_step"] = self.time_step
        return out

    @classmethod
    def from_dict(cls, data: object) -> TokenLayout:
        """Inverse of `to_dict`; anything else is a `LayoutError` saying what is expected."""
        if not isinstance(data, Mapping) or not {"group", "channel", "time"} <= set(data):
            lists = "lists 'group', 'channel', 'time' (one per token), optionally 'channel_names'"
            raise LayoutError(f"a layout must be a dict with {lists}, got {describe(data)}")
        fields: dict[str, Any] = {  # JSON values: the fields check them
            key: value if key == "time_step" else tuple(value)
            for key, value in data.items()
            if key != "queries"
        }
        queries = data.get("queries")
        return cls(**fields, queries=None if queries is None else cls.from_dict(queries))

    def summary(self) -> list[tuple[str, int, int, int]]:
        """One row per group: (group, n_tokens, first position, last position)."""
        rows = []
        for g in self.groups:
            pos = self.positions(g)
            rows.append((g, len(pos), pos[0], pos[-1]))
        return rows

    def __str__(self) -> str:
        lines = [f"TokenLayout: {self.n_tokens} tokens", "  group  tokens  positions"]
        for g, n, lo, hi in self.summary():
            lines.append(f"  {g:<6} {n:>6}  {lo}..{hi}")
        if self.queries is not None:
            lines[0] += f" (keys), {self.queries.n_tokens} queries"
            for g, n, lo, hi in self.queries.summary():
                lines.append(f"  {g:<6} {n:>6}  {lo}..{hi}  (queries)")
        if self.channel_names is not None:
            shown = ", ".join(self.channel_names[:12])
            more = len(self.channel_names) - 12
            shown += f", ... ({more} more)" if more > 0 else ""
            lines.append(f"  channels: {shown}")
        return "\n".join(lines)


@checked
def check_mask_shape(
    shape: Sequence[int], target: Sequence[int], what: str = "edge mask", *, folds: int = 1
) -> None:
    """Refuse an edge mask that does not broadcast to ``target``,
    ``[batch, n_heads, query_pos, key_pos]``. ``folds`` above 1 (an attention call folding that
    many problems per input row into its batch) also accepts one mask per fold,
    ``[batch or 1, folds, n_heads or 1, query_pos, key_pos]``.

    >>> check_mask_shape((4, 7, 7), (3, 4, 7, 7))
    >>> check_mask_shape((1, 5, 4, 7, 7), (3, 4, 7, 7), folds=5)
    >>> check_mask_shape((3, 7, 7), (3, 4, 7, 7))
    Traceback (most recent call last):
    ...
    emg_lens.errors.LayoutError: edge mask has shape [3, 7, 7], which does not broadcast to [batch=3, n_heads=4, 7, 7]; accepted: [7, 7], [n_heads or 1, 7, 7] or [batch or 1, n_heads or 1, 7, 7]
    """  # noqa: E501
    given, target = list(shape), tuple(target)
    shape = tuple(shape)
    if folds > 1 and len(shape) == 5 and shape[1] == folds:
        shape = shape[:1] + shape[2:]  # the fold axis checked: the rest as [batch, heads, ...]
    lead = shape[:-2]
    if (
        len(shape) < 2
        or len(shape) > len(target)
        or shape[-2:] != target[-2:]
        or any(d not in (1, t) for d, t in zip(lead, target[len(target) - 2 - len(lead) : -2]))
    ):
        batch, heads, q, k = target
        accepted = f"[{q}, {k}], [n_heads or 1, {q}, {k}]"
        if folds > 1:
            accepted += (
                f", [batch or 1, n_heads or 1, {q}, {k}] or, one mask per fold, "
                f"[batch or 1, {folds}, n_heads or 1, {q}, {k}]"
            )
        else:
            accepted += f" or [batch or 1, n_heads or 1, {q}, {k}]"
        bad = f"{what} has shape {given}, which does not broadcast to"
        raise LayoutError(f"{bad} [batch={batch}, n_heads={heads}, {q}, {k}]; accepted: {accepted}")


@checked
def checked_edge_masks(
    edge_masks: Any,
    *,
    n_layers: int,
    scores: Any,
    layers: str,
    what: str = "edge_masks",
) -> dict[int, Bool[torch.Tensor, "... query key"]]:
    """``edge_masks`` checked as every tier's forward takes them: a dict of layer (an int in
    ``[0, n_layers)``; ``layers`` says what counts them) -> a bool mask whose last two sizes
    are that layer's ``scores(layer)`` ``(query, key)``; anything else is a `LayoutError`
    naming the key or mask and what is accepted. Broadcasting over batch and heads is the
    caller's to check. A mask that leaves a query no key is warned of (`warn_keyless_queries`).

    >>> checked_edge_masks({0: torch.zeros(2, 2, dtype=torch.bool)}, n_layers=1,
    ...                    scores=lambda layer: (2, 2), layers="n_layers=1")[0].shape
    torch.Size([2, 2])
    >>> checked_edge_masks({1: torch.zeros(2, 2, dtype=torch.bool)}, n_layers=1,
    ...                    scores=lambda layer: (2, 2), layers="n_layers=1")
    Traceback (most recent call last):
    ...
    emg_lens.errors.LayoutError: edge_masks key 1 (a layer of n_layers=1) must be an int in 0..0, got 1
    """  # noqa: E501
    if not edge_masks:
        return {}
    if not isinstance(edge_masks, Mapping):
        wanted = "a dict {layer: bool mask [..., query, key]}"
        raise LayoutError(f"{what} must be {wanted}, got {describe(edge_masks)}")
    for layer, mask in edge_masks.items():
        check_int(
            layer, f"{what} key {layer!r} (a layer of {layers})", 0, n_layers - 1, LayoutError
        )
        shape = tuple(scores(layer))
        if getattr(mask, "dtype", None) != torch.bool or tuple(mask.shape[-2:]) != shape:
            whole = f"a bool tensor [..., {shape[0]}, {shape[1]}] over the whole layout"
            raise LayoutError(f"{what}[{layer}] must be {whole}, got {describe(mask)}")
        warn_keyless_queries(mask, layer)
    return dict(edge_masks)


_CHECKED: dict[int, weakref.ref] = {}  # the masks already looked at, by id (once per mask)


def warn_keyless_queries(
    mask: Bool[torch.Tensor, "... query key"], layer: int | None, layout: TokenLayout | None = None
) -> None:
    """Warn where ``mask`` (True = cut) cuts every key of a query on a head (in any row of a
    batched mask), naming the layer, the heads and the query tokens (by ``layout``, where
    given). Each mask tensor is looked at once, however many forwards it is used in.

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as seen:
    ...     warnings.simplefilter("always")
    ...     warn_keyless_queries(torch.tensor([[[True, True], [False, True]]]), 0, None)
    >>> print(seen[0].message)  # doctest: +ELLIPSIS
    the cut in layer 0 leaves query at 0 no key on head(s) 0: ...
    """
    key = id(mask)
    if (key in _CHECKED and _CHECKED[key]() is mask) or not mask.shape[-1] * mask.shape[-2]:
        return
    empty = mask.all(-1)  # [..., head, query], or [query]
    heads = empty[None] if empty.ndim == 1 else empty.reshape(-1, *empty.shape[-2:]).any(0)
    by_rows: dict[tuple[int, ...], list[str]] = {}  # the heads that leave these rows
    for h, row in enumerate(heads.cpu()):
        if rows := tuple(row.nonzero().flatten().tolist()):
            by_rows.setdefault(rows, []).append(str(h))
    side, parts = None if layout is None else layout.query_side, []
    for rows, on in by_rows.items():
        named = [str(q) if side is None else side.token_name(q) for q in rows[:4]]
        more = f" and {len(rows) - 4} more" if len(rows) > 4 else ""
        head = "every head" if empty.ndim == 1 else f"head(s) {', '.join(on)}"
        query = ("queries" if len(rows) > 1 else "query") + (" at" if side is None else "")
        parts.append(f"{query} {', '.join(named)}{more} no key on {head}")
    if parts:
        warn_caller(
            f"the cut{'' if layer is None else f' in layer {layer}'} leaves {'; '.join(parts)}: "
            "every key of such a query is cut, so it attends to nothing; emg_lens gives it a zero "
            "attention pattern row (its attention output is 0 there, not NaN nor a uniform row) "
            "and only its residual stream goes on"
        )
    _CHECKED[key] = weakref.ref(mask, lambda _: _CHECKED.pop(key, None))
