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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Int

from emg_lens.errors import LayoutError

__all__ = ["CLS", "TokenLayout", "check_mask_shape"]

CLS = "cls"


@dataclass(frozen=True)
class TokenLayout:
    """Per-position token metadata: ``group[i]``, ``channel[i]`` and ``time[i]``.

    ``channel`` is the index of the input channel the token embeds (its row in the signal
    batch), or -1 for tokens that embed no channel (CLS); ``time`` is the patch index within
    the window, or -1.
    """

    group: tuple[str, ...]
    channel: tuple[int, ...]
    time: tuple[int, ...]

    def __post_init__(self) -> None:
        if not (len(self.group) == len(self.channel) == len(self.time)):
            raise LayoutError(
                "TokenLayout.group, .channel and .time must have one entry per token; got "
                f"lengths {len(self.group)}, {len(self.channel)}, {len(self.time)}"
            )
        if not self.group:
            raise LayoutError("TokenLayout must have at least one token")

    @classmethod
    def channel_tokens(
        cls, modalities: Mapping[str, int], *, n_patches: int = 1, cls_token: bool = True
    ) -> TokenLayout:
        """The layout of channel(-patch) tokens, channel-major, after an optional CLS token.

        Channels are numbered across modalities in ``modalities`` order, so token ``channel``
        is the row of the ``[batch, channels, time]`` input it embeds.

        >>> TokenLayout.channel_tokens({"emg": 2}, n_patches=2, cls_token=False).time
        (0, 1, 0, 1)
        """
        group, channel, time = [], [], []
        if cls_token:
            group.append(CLS), channel.append(-1), time.append(-1)
        first = 0
        for name, count in modalities.items():
            for c in range(first, first + count):
                for t in range(n_patches):
                    group.append(name), channel.append(c), time.append(t)
            first += count
        return cls(tuple(group), tuple(channel), tuple(time))

    # ------------------------------------------------------------------ queries
    @property
    def n_tokens(self) -> int:
        return len(self.group)

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

    def time_ids(self) -> Int[torch.Tensor, " pos"]:
        return torch.tensor(self.time, dtype=torch.long)

    def check_matches(self, n_tokens: int, what: str = "tensor") -> None:
        """Raise `LayoutError` unless ``n_tokens`` equals this layout's token count."""
        if n_tokens != self.n_tokens:
            raise LayoutError(
                f"{what} has {n_tokens} token positions but the layout has {self.n_tokens}; "
                "was it made by another model or input shape?"
            )

    # ------------------------------------------------------------------ display
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
        return "\n".join(lines)


def check_mask_shape(shape: Sequence[int], target: Sequence[int], what: str = "edge mask") -> None:
    """Refuse an edge mask that does not broadcast to ``target`` = ``[batch, n_heads, query_pos,
    key_pos]``: it must end in ``[query_pos, key_pos]`` and each leading dim must be 1 or
    ``target``'s (a mask ``[h, q, k]`` with ``h`` not in ``{1, n_heads}`` is someone else's).

    >>> check_mask_shape((4, 7, 7), (3, 4, 7, 7))
    >>> check_mask_shape((3, 7, 7), (3, 4, 7, 7))
    Traceback (most recent call last):
    ...
    emg_lens.errors.LayoutError: edge mask has shape [3, 7, 7], which does not broadcast to [batch=3, n_heads=4, 7, 7]; accepted: [7, 7], [n_heads or 1, 7, 7] or [batch or 1, n_heads or 1, 7, 7]
    """  # noqa: E501
    shape, target = tuple(shape), tuple(target)
    lead = shape[:-2]
    if (
        len(shape) < 2
        or len(shape) > len(target)
        or shape[-2:] != target[-2:]
        or any(d not in (1, t) for d, t in zip(lead, target[len(target) - 2 - len(lead) : -2]))
    ):
        batch, heads, q, k = target
        raise LayoutError(
            f"{what} has shape {list(shape)}, which does not broadcast to [batch={batch}, "
            f"n_heads={heads}, {q}, {k}]; accepted: [{q}, {k}], [n_heads or 1, {q}, {k}] or "
            f"[batch or 1, n_heads or 1, {q}, {k}]"
        )
