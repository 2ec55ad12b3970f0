"""What the tokens of a braindecode model's attention calls are, as data: a `ZooEntry` per
architecture, most of them a table of `Rule` s (which calls, what `Run` s of tokens: a token's
kind explicit, `KINDS`), and the layouts that do not fit one (PBT's patches of the flattened
window, `flat_patches`; MetaNeuromotorHand's windowed keys, `window_keys`)."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import nn

from emg_lens.errors import check_int
from emg_lens.layout import CLS, TokenLayout
from emg_lens.models.attached.intercept import Call

SIGNAL = "eeg"  # the layout group of tokens that embed one channel
TIME = "time"  # tokens that are time slices of every channel
MIXED = "mixed"  # tokens that run across two channels (the end of one, the start of the next)
QUERY = "query"  # learned queries (LUNA's, EEGPT's summary tokens)
NOW = "now"  # the query of a causal window: its last frame (MetaNeuromotorHand)
FEATURE = "feature"  # a learned feature map over the whole window (AttnSleep)
REGISTER = "register"  # a learned token placed at one channel's patch (ZUNA)
ROUTER = "granularity"  # one router token per granularity (MEDFormer)
CHANNEL, PATCH = "channel", "patch"
KINDS = {
    CHANNEL: "one whole channel",
    PATCH: "a patch (time span) of one channel",
    TIME: "a time slice mixing every channel",
    QUERY: "a learned query (summary, latent or global token)",
    CLS: "a start / CLS token",
    FEATURE: "a learned feature map over the whole window, of every channel",
    REGISTER: "a learned register token at one channel's patch (its position, not its signal)",
    ROUTER: "a router token of one granularity (one per patch length)",
}
"""The kinds of token a `Run` names, and what each is."""


@dataclass(frozen=True)
class Run:
    """``n`` tokens of one ``kind`` (`KINDS`), in a call's token order.

    ``n``: a number; None, the call's tokens the other runs leave; or a function of the call's
    index and the model. ``PATCH``: the patches of every channel, ``order`` ``"channel"``
    (channel-major: channel 0's patches first) or ``"time"`` (patch 0 of every channel
    first), each preceded by a ``REGISTER`` token where ``registers``; ``CHANNEL``: one per
    channel (its n: the channels)."""

    kind: str
    n: int | Callable[[int, nn.Module | None], int] | None = None
    order: str = "channel"
    registers: bool = False

    def fixed(self, n_channels: int, i: int, model: nn.Module | None) -> int | None:
        """Its number of tokens in call ``i`` of ``model``, of ``n_channels`` channels; None
        where it takes the rest.

        >>> [run.fixed(4, 0, None) for run in (Run(CHANNEL), Run(QUERY, 2), Run(PATCH))]
        [4, 2, None]
        """
        if self.kind == CHANNEL:
            return n_channels
        return self.n if self.n is None or isinstance(self.n, int) else self.n(i, model)

    def tokens(self, n: int, names: Sequence[str]) -> list[tuple[str, int, int]]:
        """``(group, channel, time)`` of each of its ``n`` tokens."""
        if self.kind == CHANNEL:
            return [(SIGNAL, c, 0) for c in range(len(names))]
        if self.kind != PATCH:
            timeless = self.kind in (CLS, QUERY, FEATURE, ROUTER)
            return [(self.kind, -1, -1 if timeless else t) for t in range(n)]
        per = 2 if self.registers else 1
        patches = n // (per * len(names))
        pairs = [(c, p) for c in range(len(names)) for p in range(patches)]
        if self.order == "time":
            pairs.sort(key=lambda cp: (cp[1], cp[0]))
        kinds = (REGISTER, SIGNAL) if self.registers else (SIGNAL,)
        return [(g, c, p) for c, p in pairs for g in kinds]


@dataclass(frozen=True)
class Rule:
    """The tokens of the attention calls whose module path matches ``calls`` (a glob; ``*``
    any): ``keys``, and ``queries`` where they are other tokens (cross-attention)."""

    calls: str
    keys: tuple[Run, ...]
    queries: tuple[Run, ...] | None = None


def _layout(runs: Sequence[Run], n: int, i: int, names: Sequence[str], model) -> TokenLayout:
    counts = {k: r.fixed(len(names), i, model) for k, r in enumerate(runs)}
    fixed = {k: count for k, count in counts.items() if count is not None}
    rest = n - sum(fixed.values())
    tokens = [t for k, r in enumerate(runs) for t in r.tokens(fixed.get(k, rest), names)]
    group, channel, time = zip(*tokens)
    has_channels = any(c >= 0 for c in channel)
    return TokenLayout(group, channel, time, tuple(names) if has_channels else None)


@dataclass(frozen=True)
class Rules:
    """An entry's ``layouts`` from its rules: each call's, the first rule matching its module
    (a class, so that an attached model holding it pickles).

    >>> layouts = Rules((Rule("*", (Run(CLS, 1), Run(PATCH, order="time"))),))
    >>> call = Call("sdpa", "blocks.0.attn", 2, 4, 5, 5)  # CLS, then 2 patches of 2 channels
    >>> layout = layouts([call], ["C3", "C4"], None)[0]
    >>> layout.group, layout.channel, layout.time
    (('cls', 'eeg', 'eeg', 'eeg', 'eeg'), (-1, 0, 1, 0, 1), (-1, 0, 0, 1, 1))
    """

    table: tuple[Rule, ...]

    def __call__(self, calls: Sequence[Call], names: Sequence[str], model) -> list[TokenLayout]:
        out = []
        for i, call in enumerate(calls):
            rule = next(r for r in self.table if fnmatch.fnmatchcase(call.module, r.calls))
            keys = _layout(rule.keys, call.n_key, i, names, model)
            if rule.queries is not None:
                keys = TokenLayout.cross(_layout(rule.queries, call.n_query, i, names, model), keys)
            out.append(keys)
        return out


def rules(*table: Rule) -> Rules:
    """`Rules` of ``table``."""
    return Rules(table)


@dataclass(frozen=True)
class ZooEntry:
    """How one braindecode architecture's attention calls see its tokens.

    ``tokens``: what a token is, in words; ``layouts(calls, names, model)``: one `TokenLayout`
    per attention call (``calls`` as a probe saw them, ``names`` the channel names, ``model``
    for sizes the calls do not show: PBT's ``d_input``), mostly `rules`; ``needs_names``: the
    forward takes ``ch_names``; ``converter``: a `emg_lens.models.from_braindecode` converter
    exists too (the two agree on the same cut); ``attention``: the ``attention=`` glob `attach`
    needs; ``any_size``: for a forward that runs at any input size, the ``(channels, samples)``
    to probe at (other sizes open at the call, ``layouts`` then called with ``model`` None);
    ``refuses`` / ``warns``: why an instance cannot be opened, or what to tell (None: nothing).
    """

    tokens: str
    layouts: Callable[[Sequence[Call], Sequence[str], nn.Module | None], list[TokenLayout]]
    needs_names: bool = False
    converter: bool = False
    attention: str | None = None
    any_size: Callable[[nn.Module, int | None, int | None], tuple[int, int]] | None = None
    refuses: Callable[[nn.Module], str | None] | None = None
    warns: Callable[[nn.Module], str | None] | None = None


def flat_patches(n_chans: int, n_times: int, patch: int, names: Sequence[str]) -> TokenLayout:
    """CLS, then the patches of ``patch`` samples of the flattened ``channel x time`` window
    (PBT's tokens; the samples after the last whole patch dropped). A patch inside one
    channel is that channel's token, its time the patch's start in the channel, in patches
    (rounded down); a patch that runs across channels (where ``n_times`` is not a multiple
    of ``patch``) embeds no one channel: group ``"mixed"``, channel -1, its time the start's
    in the first channel.

    >>> layout = flat_patches(2, 6, 4, ["C3", "C4"])  # samples C3 0..5, C4 0..5: 3 patches
    >>> layout.group, layout.channel, layout.time
    (('cls', 'eeg', 'mixed', 'eeg'), (-1, 0, -1, 1), (-1, 0, 1, 0))
    >>> flat_patches(2, 8, 4, ["C3", "C4"]) == TokenLayout.channel_tokens(
    ...     {"eeg": 2}, n_patches=2, cls_token=True, channel_names=["C3", "C4"])
    True
    """
    group, channel, time = [CLS], [-1], [-1]
    for k in range(n_chans * n_times // patch):
        first, last = divmod(k * patch, n_times), ((k + 1) * patch - 1) // n_times
        one = first[0] == last
        group.append(SIGNAL if one else MIXED)
        channel.append(first[0] if one else -1)
        time.append(first[1] // patch)
    return TokenLayout(tuple(group), tuple(channel), tuple(time), tuple(names))


def _lags(lags: set[int]) -> str:
    """A key group naming the lags it holds: ``lag_3``, ``lags_8to15``, ``lags_0to3_14to15``."""
    ordered, runs = sorted(lags), list[list[int]]()
    for lag in ordered:
        if runs and lag == runs[-1][1] + 1:
            runs[-1][1] = lag
        else:
            runs.append([lag, lag])
    if len(ordered) == 1:
        return f"lag_{ordered[0]}"
    return "lags_" + "_".join(str(a) if a == b else f"{a}to{b}" for a, b in runs)


def window_keys(d_model: int, window: int) -> TokenLayout:
    """The tokens of one of MetaNeuromotorHand's windowed attention calls: the query
    ``"now"`` (the window's last frame) reading ``window`` keys, in the model's key order.

    Meta's code (``generic_neuromotor_interface.networks.MultiHeadAttention``, which
    braindecode reproduces so that its checkpoints load) makes the keys and values as
    ``windows.transpose(1, 2).reshape(-1, W, D)`` from the window ``[W frames, D features]``:
    key ``j`` is not frame ``j`` but the values ``j * D`` to ``j * D + D - 1`` of the window
    flattened feature-major (``feature * W + frame``). Each key's group names the lags (0 =
    now, ``W - 1`` = the oldest frame) whose values it holds: with ``D >= W`` every key holds
    every lag (its own ``D / W`` features of each); with ``D < W`` a key holds ``D`` frames of
    one or two features. No token embeds an input channel or one time patch (channel and
    time -1).

    >>> window_keys(64, 16).group == ("lags_0to15",) * 16  # braindecode's defaults
    True
    >>> window_keys(8, 16).group[:3]  # key 0: feature 0 at frames 0..7, the oldest
    ('lags_8to15', 'lags_0to7', 'lags_8to15')
    >>> window_keys(6, 16).group[2], window_keys(1, 4).group  # D = 1: key j is frame j
    ('lags_0to3_14to15', ('lag_3', 'lag_2', 'lag_1', 'lag_0'))
    >>> window_keys(8, 16).query_side.group
    ('now',)
    """
    d_model, window = (
        check_int(d_model, "window_keys's d_model", 1),
        check_int(window, "window_keys's window", 1),
    )
    group = tuple(
        _lags({window - 1 - flat % window for flat in range(j * d_model, (j + 1) * d_model)})
        for j in range(window)
    )
    keys = TokenLayout(group, (-1,) * window, (-1,) * window)
    return TokenLayout.cross(TokenLayout((NOW,), (-1,), (-1,)), keys)
