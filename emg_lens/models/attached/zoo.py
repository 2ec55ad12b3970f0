"""braindecode's attention models as data: one `ZooEntry` per architecture saying what the
tokens of each attention call are, so that `attach_braindecode` opens any of them with
`attach` (no class per model, no conversion).

An entry builds the layouts from the attention calls a probe forward shows (their number and
sizes depend on the instance: channels, window, patch size), and names what each token is:
a channel, a patch of one channel, a time slice mixing every channel, a learned query, or a
start/CLS token. braindecode is never imported: a model is recognised by its class name and
its module, as the converters do (`emg_lens.models.converted.braindecode`).

Where an architecture folds several attention problems into one call's batch (CBraMod: the
channels of each patch, the patches of each channel; EEGPT and LUNA's cross-attention: each
patch), the layout is that of one problem, and `attach` finds how many there are per window
and that they are batch-major (`AttachedModel.folds_of`): a cut may then differ between
patches or channels, ``[batch or 1, F, head or 1, query, key]``.

PBT's tokens are patches of the flattened ``channel x time`` window (`flat_patches`): where
``n_times`` is not a multiple of its ``d_input`` (braindecode's defaults: 1,000 and 64), some
patches run across two channels; they are ``"mixed"`` tokens, of no one channel.

CBraMod runs at any input size (its tokens are the patches of each channel, its positional
encoding a convolution over them), and braindecode builds it without ``n_chans``/``chs_info``
or ``n_times`` (its classifier then a ``LazyLinear``, built by its first call): its entry
opens any size (`ZooEntry.any_size`), the layouts built from the input's size at the call, a
size its forward fails on refused by name (not a whole number of patches; not the one its
built classifier takes). Every instance braindecode's own integration test builds of a zoo
architecture opens exactly; any other entry built without a size it needs is refused naming
``ch_names=`` / ``n_times=``, which open it.

MetaNeuromotorHand (Meta's sEMG handwriting conformer) attends within a causal window: each
frame, the query "now", reads the ``W`` frames of its window, every frame of every input row
folded into the batch (``[batch * frames, head, 1, W]``). Its keys are not the window's frames
one by one: Meta's code, which braindecode reproduces for its checkpoints, reshapes the window
``[frames, features]`` as if it were ``[features, frames]``, so that a key holds ``D`` values of
the feature-major flattened window (`window_keys`); at its sizes (``D`` 64, ``W`` 16 or 8)
every key holds every lag of the window, and a cut of one key removes some features of all of
them. Its own mask (the first ``W - 1`` frames block keys, in that key order) stays.

SignalJEPA and SignalJEPA_Contextual attend over one token per channel and time step of their
convolutional encoder (``nn.TransformerEncoder``); SignalJEPA, built without ``n_times``, opens
any size. REVE attends over the (overlapping) patches of each channel; built with
``attention_pooling=True`` it is refused by name (its pooling query's softmax runs in its own
forward, where attach cannot hook it).

What has no softmax over tokens is refused by name (`REFUSED`: BIOT's linear attention;
SignalJEPA's post- and pre-local variants, built without its transformer). An architecture
with softmax attention the zoo does not open yet would be said by name (`NOT_YET`, empty now).

>>> sorted(ZOO)  # doctest: +NORMALIZE_WHITESPACE
['ATCNet', 'BENDR', 'CBraMod', 'CTNet', 'EEGConformer', 'EEGPT', 'LUNA', 'Labram', 'MEDFormer',
 'MetaNeuromotorHand', 'PBT', 'REVE', 'SignalJEPA', 'SignalJEPA_Contextual']
>>> ZOO["EEGConformer"].tokens
'time slices after the temporal and spatial convolutions and pooling (each mixes every channel)'
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import SupportsIndex

import torch
from torch import nn

from emg_lens.errors import AttachError, InputShapeError, check_int, describe
from emg_lens.layout import CLS, TokenLayout
from emg_lens.models.attached.build import attach, model_size
from emg_lens.models.attached.find import Probe, named_modules_of, probe
from emg_lens.models.attached.intercept import Call
from emg_lens.models.attached.model import AttachedModel
from emg_lens.models.eegpt_channels import misnamed_channel

__all__ = [
    "NOT_YET",
    "REFUSED",
    "ZOO",
    "ZooEntry",
    "attach_braindecode",
    "braindecode_name",
    "flat_patches",
    "window_keys",
]

TIME = "time"  # tokens that are time slices of every channel
MIXED = "mixed"  # tokens that run across two channels (the end of one, the start of the next)
QUERY = "query"  # learned queries (LUNA's, EEGPT's summary tokens)
NOW = "now"  # the query of a causal window: its last frame (MetaNeuromotorHand)


@dataclass(frozen=True)
class ZooEntry:
    """How one braindecode architecture's attention calls see its tokens.

    ``tokens``: what a token is, in words; ``layouts(calls, names, model)``: one `TokenLayout`
    per attention call (``calls`` as a probe forward saw them, ``names`` the channel names,
    ``model`` the braindecode model, for sizes the calls do not show: PBT's ``d_input``);
    ``needs_names``: the forward takes ``ch_names`` (LaBraM picks embeddings by name);
    ``converter``: the `emg_lens.models.from_braindecode` converter of the same architecture
    also exists (its results and the attached model's agree on the same cut; where the
    attached calls fold patches or channels into the batch, one mask per fold there is the
    converted model's mask over every (channel, patch) token, cuts that differ between
    patches included);
    ``attention``: what `attach` takes as ``attention=`` (a module-path glob), where its
    softmax cannot be found without it;
    ``any_size``: for an architecture whose forward runs at any input size, the size
    ``(channels, samples)`` to probe at attach, from the model and the sizes known (None where
    not: it was built without them); every other size then opens at the call, its layouts
    built by ``layouts`` (called with ``model`` None: they read nothing off the model);
    ``refuses``: why an instance built with some option cannot be opened (None: it can).
    """

    tokens: str
    layouts: Callable[[Sequence[Call], Sequence[str], nn.Module | None], list[TokenLayout]]
    needs_names: bool = False
    converter: bool = False
    attention: str | None = None
    any_size: Callable[[nn.Module, int | None, int | None], tuple[int, int]] | None = None
    refuses: Callable[[nn.Module], str | None] | None = None


def _time(n: int, cls: bool = False) -> TokenLayout:
    group = (CLS,) * cls + (TIME,) * n
    return TokenLayout(group, (-1,) * len(group), (-1,) * cls + tuple(range(n)))


def _channels(names: Sequence[str], n_patches: int = 1, cls: bool = False) -> TokenLayout:
    return TokenLayout.channel_tokens(
        {"eeg": len(names)}, n_patches=n_patches, cls_token=cls, channel_names=list(names)
    )


def _queries(n: int) -> TokenLayout:
    return TokenLayout((QUERY,) * n, (-1,) * n, (-1,) * n)


def _one_patch(names: Sequence[str], extra: int = 0) -> TokenLayout:
    """The channels of one patch, then ``extra`` learned summary tokens."""
    n = len(names)
    group = ("eeg",) * n + (QUERY,) * extra
    return TokenLayout(group, (*range(n), *(-1,) * extra), (0,) * n + (-1,) * extra, tuple(names))


def _time_every_call(calls, names, model, cls=False):
    return [_time(call.n_key - cls, cls) for call in calls]


def _channel_patches(calls, names, model):
    return [_channels(names, call.n_key // len(names)) for call in calls]


def _cls_channel_patches(calls, names, model):
    n_patches = (calls[0].n_key - 1) // len(names)
    return [_channels(names, n_patches, cls=True) for _ in calls]


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
    >>> flat_patches(2, 8, 4, ["C3", "C4"]) == _channels(["C3", "C4"], 2, cls=True)
    True
    """
    group, channel, time = [CLS], [-1], [-1]
    for k in range(n_chans * n_times // patch):
        first, last = divmod(k * patch, n_times), ((k + 1) * patch - 1) // n_times
        one = first[0] == last
        group.append("eeg" if one else MIXED)
        channel.append(first[0] if one else -1)
        time.append(first[1] // patch)
    return TokenLayout(tuple(group), tuple(channel), tuple(time), tuple(names))


def _pbt(calls, names, model):
    layout = flat_patches(len(names), model.n_times, model.d_input, names)
    return [layout for _ in calls]


def _criss_cross(calls, names, model):
    # CBraMod: per layer a spatial call (the channels of one patch) and a temporal one (the
    # patches of one channel), each batched over the other axis.
    return [
        _one_patch(names) if call.module.endswith("self_attn_s") else _time(call.n_key)
        for call in calls
    ]


def _cbramod_size(model: nn.Module, channels: int | None, samples: int | None):
    """The size to probe a CBraMod at: the sizes known; where one is not, what its built
    classifier (a ``Linear`` over every token's ``emb_dim`` features) leaves, else one patch
    of one channel. A classifier that fits no input of the channels known is refused."""
    patch, emb = model._patch_size, model._emb_dim
    final = getattr(model, "final_layer", None)
    linear = final[-1] if isinstance(final, nn.Sequential) and len(final) else None
    width = linear.in_features if type(linear) is nn.Linear else None
    if width is None:  # no classifier (return_encoder_output), or one not built yet
        return channels or 1, samples or patch
    tokens = width // emb
    if samples is not None:
        patches = max(samples // patch, 1)
        return channels or max(tokens // patches, 1), samples
    channels = channels or max(tokens, 1)  # unknown: the tokens as channels of one patch
    if width % emb or not tokens or tokens % channels:
        raise AttachError(
            f"braindecode's CBraMod has a classifier over {width} features, which no input of "
            f"{channels} channels gives (each patch of {patch} samples of a channel gives "
            f"{emb}): it runs on no input"
        )
    return channels, tokens // channels * patch


def _signal_jepa_size(model: nn.Module, channels: int | None, samples: int | None):
    """The size to probe a SignalJEPA at: the sizes known; without ``n_times``, its feature
    encoder's receptive field (one token per channel)."""
    field, stride = 1, 1
    for _, width, step in model.feature_encoder.conv_layers_spec:
        field, stride = field + (width - 1) * stride, stride * step
    return channels or model.n_chans, samples or field


def _reve_pooling(model: nn.Module) -> str | None:
    if getattr(model, "use_attention_pooling", False):
        return (
            "it was built with attention_pooling=True, whose learned query reads every token "
            "through a softmax over [batch, 1, tokens] in REVE.forward itself, which attach "
            "cannot hook: build it with attention_pooling=False (braindecode's default)"
        )
    return None


def _per_patch_with_summary(calls, names, model):
    names = _eegpt_token_names(model, names)
    return [_one_patch(names, call.n_key - len(names)) for call in calls]


def _eegpt_token_names(model: nn.Module, names: Sequence[str]) -> list[str]:
    """The channels EEGPT's tokens embed. With a channel projection its encoder sees
    ``n_chans_target`` projected channels (``model.channel_names``), not the inputs; without
    one, each input channel's token carries the embedding fixed at construction
    (``chans_id``), so a name braindecode would give another embedding is refused."""
    if model.chan_proj_type != "none":
        return list(model.channel_names)
    if (why := misnamed_channel(model, names)) is not None:
        raise AttachError(why)
    return list(names)


def _luna(calls, names, model):
    # Learned queries read the channels of each patch (cross-attention, batched over patches),
    # attend among themselves, then the patches attend each other; the decoder's query reads
    # every patch.
    layouts = []
    for call in calls:
        if call.module.endswith("cross_attention"):
            layouts.append(TokenLayout.cross(_queries(call.n_query), _one_patch(names)))
        elif ".query_self_attn." in call.module:
            layouts.append(_queries(call.n_key))
        elif call.n_query != call.n_key:
            layouts.append(TokenLayout.cross(_queries(call.n_query), _time(call.n_key)))
        else:
            layouts.append(_time(call.n_key))
    return layouts


def _lags(lags: set[int]) -> str:
    """A key group naming the lags it holds: ``lag_3``, ``lags_8to15``, ``lags_0to3_14to15``."""
    ordered, runs = sorted(lags), []
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


def _causal_windows(calls, names, model):
    # Each call's D is its nn.MultiheadAttention's width (the calls show heads and keys only).
    return [window_keys(model.get_submodule(call.module).embed_dim, call.n_key) for call in calls]


def _medformer(calls, names, model):
    # Each granularity's patches attend within it (intra), then one router token per
    # granularity attends the others (inter).
    return [
        TokenLayout(("granularity",) * c.n_key, (-1,) * c.n_key, (-1,) * c.n_key)
        if "inter_attention" in c.module
        else _time(c.n_key)
        for c in calls
    ]


SLICES = (
    "time slices after the temporal and spatial convolutions and pooling (each mixes every channel)"
)
ZOO: dict[str, ZooEntry] = {
    "EEGConformer": ZooEntry(SLICES, _time_every_call),
    "ATCNet": ZooEntry(
        "the time steps of one sliding window (one attention call per window), after the "
        "convolutional block (each mixes every channel)",
        _time_every_call,
        attention="attention_blocks.*.mha",  # its softmax is 3-D: heads folded into the batch
    ),
    "CTNet": ZooEntry(SLICES, _time_every_call),
    "BENDR": ZooEntry(
        "the start token, then the convolutional encoder's time slices",
        lambda calls, names, model: _time_every_call(calls, names, model, cls=True),
    ),
    "MEDFormer": ZooEntry(
        "patches of every channel at each granularity; one router token per granularity",
        _medformer,
    ),
    "LUNA": ZooEntry(
        "learned queries reading each patch's channels, then one token per patch",
        _luna,
    ),
    "PBT": ZooEntry(
        "CLS, then the patches of the flattened channel x time window: one token per channel "
        "and patch, and, where n_times is not a multiple of d_input, tokens running across two "
        "channels (group 'mixed'; the converter takes only multiples)",
        _pbt,
        converter=True,
    ),
    "Labram": ZooEntry(
        "CLS, then one token per channel and patch",
        _cls_channel_patches,
        needs_names=True,
        converter=True,
    ),
    "CBraMod": ZooEntry(
        "spatial calls: the channels of one patch; temporal calls: the patches of one channel "
        "(each call folds its patches or channels into the batch)",
        _criss_cross,
        converter=True,
        any_size=_cbramod_size,
    ),
    "EEGPT": ZooEntry(
        "the channels of one patch (with a channel projection, its n_chans_target projected "
        "channels) and the learned summary tokens (the patches folded into the batch)",
        _per_patch_with_summary,
        converter=True,
    ),
    "SignalJEPA": ZooEntry(
        "one token per channel and time step of its convolutional encoder (channel-major)",
        _channel_patches,
        any_size=_signal_jepa_size,
    ),
    "SignalJEPA_Contextual": ZooEntry(
        "one token per channel and time step of its convolutional encoder (channel-major)",
        _channel_patches,
    ),
    "REVE": ZooEntry(
        "one token per channel and patch (channel-major; patches overlap by patch_overlap samples)",
        _channel_patches,
        refuses=_reve_pooling,
    ),
    "MetaNeuromotorHand": ZooEntry(
        "per frame (the frames folded into the batch), the query 'now' reading the W keys of "
        "its causal window as the model reshapes them: each key holds D values of the window "
        "flattened feature-major, so at D >= W every key holds every lag (group "
        "'lags_0to15'); key groups name the lags a key holds (see window_keys)",
        _causal_windows,
    ),
}
"""One entry per braindecode architecture that `attach_braindecode` opens."""

_NO_TRANSFORMER = (
    "braindecode builds it without SignalJEPA's transformer (a convolutional encoder and a "
    "classifier): it has no attention; SignalJEPA and SignalJEPA_Contextual have one"
)
REFUSED: dict[str, str] = {
    "BIOT": "its attention is linear attention (softmax over features, never over query-key "
    "pairs): there is no [query, key] score to hook or cut",
    "SignalJEPA_PostLocal": _NO_TRANSFORMER,
    "SignalJEPA_PreLocal": _NO_TRANSFORMER,
}
"""braindecode architectures with no softmax attention over tokens, refused by name."""

NOT_YET: dict[str, str] = {}
"""braindecode architectures with softmax attention that the zoo does not open yet, and why
(none now: REVE, here until issue 58, opens; its tests build it from a position bank on
disk, which braindecode otherwise downloads)."""


def braindecode_name(model: nn.Module) -> str | None:
    """The class name of a braindecode model, or None for any other module.

    >>> braindecode_name(nn.Linear(2, 2)) is None
    True
    """
    cls = type(model)
    return cls.__name__ if cls.__module__.startswith("braindecode.") else None


@dataclass(frozen=True)
class _LayoutAt:
    """An entry's layouts for inputs of any size (`attach`'s layout function): its channels
    named ``names`` where the model knows them (then an input of other channels is refused),
    ``ch0``, ``ch1`` ... otherwise."""

    name: str
    layouts: Callable[[Sequence[Call], Sequence[str], nn.Module | None], list[TokenLayout]]
    names: tuple[str, ...] | None

    def __call__(self, calls: Sequence[Call], n_channels: int, n_samples: int):
        names = self.names
        if names is None:
            names = tuple(f"ch{i}" for i in range(n_channels))
        elif len(names) != n_channels:
            raise InputShapeError(
                f"braindecode's {self.name} was opened for {len(names)} channels "
                f"({', '.join(names[:4])}{', ...' if len(names) > 4 else ''}), not "
                f"{n_channels}: one built without n_chans or chs_info, attached without "
                "ch_names, opens any"
            )
        return self.layouts(calls, names, None)


class _WithNames(nn.Module):
    """A braindecode model whose forward needs ``ch_names`` (LaBraM), called with them."""

    def __init__(self, model: nn.Module, names: Sequence[str]):
        super().__init__()
        self.model, self.names = model, list(names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, ch_names=self.names)


def attach_braindecode(
    model: nn.Module, *, ch_names: Sequence[str] | None = None, n_times: SupportsIndex | None = None
) -> AttachedModel:
    """Open a braindecode model with `attach`, the layouts read off `ZOO`'s entry.

    ``ch_names`` default to the model's ``chs_info`` (or ``ch0``, ``ch1``, ...); ``n_times``
    to the model's. An architecture that runs at any input size (CBraMod, which braindecode
    builds without ``n_chans``, ``chs_info`` or ``n_times``) opens without them, at any size
    its forward runs on (see the module docstring); ``ch_names`` or ``n_times``, given, fix
    the channels / the size probed here. Another model built without a size needs it here:
    ``ch_names``, one per input channel, and ``n_times``, the window's samples. Given where
    the model knows its own, they must agree with it.

    >>> from emg_lens.models import attach_braindecode
    >>> from emg_lens.models.attached.examples import TinyAttention
    >>> attach_braindecode(TinyAttention())
    Traceback (most recent call last):
    emg_lens.errors.AttachError: TinyAttention is not a braindecode model; ...
    """
    name = braindecode_name(model)
    if name is None:
        raise AttachError(
            f"{type(model).__name__} is not a braindecode model; open it with "
            "emg_lens.models.attach(model, layout=...)"
        )
    if name in REFUSED:
        raise AttachError(f"braindecode's {name} cannot be attached: {REFUSED[name]}")
    if name in NOT_YET:
        raise AttachError(f"braindecode's {name} is not in the zoo yet: {NOT_YET[name]}")
    if name not in ZOO:
        raise AttachError(
            f"braindecode's {name} has no entry in the zoo (emg_lens.models.attached.zoo.ZOO: "
            f"{', '.join(sorted(ZOO))}); open it with emg_lens.models.attach(model, layout=...)"
        )
    entry = ZOO[name]
    refusal = None if entry.refuses is None else entry.refuses(model)
    if refusal is not None:
        raise AttachError(f"braindecode's {name} cannot be attached: {refusal}")
    names, samples = _names(model, name, ch_names), _samples(model, n_times, name)
    if entry.any_size is not None:
        channels = None if names is None else len(names)
        channels, samples = entry.any_size(model, channels, samples)
        names_known = None if names is None else tuple(names)
        return attach(
            model,
            layout=_LayoutAt(name, entry.layouts, names_known),
            n_samples=samples,
            n_channels=channels,
            attention=entry.attention,
        )
    unknown = [
        (built, give)
        for built, give, value in (
            ("n_chans or chs_info", "ch_names=[...] (one name per input channel)", names),
            ("n_times (nor sfreq and input_window_seconds)", "n_times=... (samples)", samples),
        )
        if value is None
    ]
    if unknown:
        raise AttachError(
            f"braindecode's {name} was built without "
            f"{' and without '.join(built for built, _ in unknown)}, so its input's size is "
            f"not known: pass attach_braindecode(model, {', '.join(g for _, g in unknown)}), "
            "or build it with them"
        )
    module = _WithNames(model, names) if entry.needs_names else model
    try:
        found, example = _probe(module, len(names), samples, entry.attention)
    except AttachError:
        raise
    except Exception as exc:
        raise AttachError(
            f"braindecode's {name} failed on an example input [batch=3, channels={len(names)}, "
            f"samples={samples}] ({type(exc).__name__}: {exc}); check ch_names and n_times"
        ) from exc
    layouts = entry.layouts(found.calls, names, model)
    return attach(
        module,
        layout=layouts,
        n_samples=samples,
        n_channels=len(names),
        attention=entry.attention,
        probed=(found, example),
    )


def _names(model: nn.Module, name: str, ch_names: Sequence[str] | None) -> list[str] | None:
    n_chans = model_size(model, "n_chans")
    if ch_names is not None:
        if isinstance(ch_names, str) or not isinstance(ch_names, Sequence):
            raise AttachError(
                f"ch_names must be a list of channel names, one per input channel, got "
                f"{describe(ch_names)}"
            )
        names = list(ch_names)
        if not names:
            raise AttachError("ch_names is empty: give one name per input channel")
        if n_chans is not None and len(names) != n_chans:
            raise AttachError(
                f"ch_names names {len(names)} channels, but braindecode's {name} was built "
                f"with n_chans={n_chans}: give one name per input channel"
            )
        return names
    if n_chans is None:
        return None
    info = getattr(model, "_chs_info", None) or []
    names = [ch.get("ch_name") for ch in info if isinstance(ch, dict)]
    if len(names) == n_chans and all(names):
        return names
    if name == "Labram":  # its forward without ch_names reads LaBraM's whole table, in order
        order = getattr(sys.modules[type(model).__module__], "LABRAM_CHANNEL_ORDER", ())
        if len(order) == n_chans:
            return list(order)
    return [f"ch{i}" for i in range(n_chans)]


def _samples(model: nn.Module, n_times: SupportsIndex | None, name: str) -> int | None:
    own = model_size(model, "n_times")
    if n_times is not None:
        n_times = check_int(n_times, "n_times", 1, None, AttachError)
        if own is not None and n_times != own:
            raise AttachError(
                f"n_times={n_times}, but braindecode's {name} was built with n_times={own}: "
                "leave n_times out, or give the model's"
            )
        return n_times
    return own


def _probe(
    module: nn.Module, n_chans: int, n_times: int, attention: str | None
) -> tuple[Probe, torch.Tensor]:
    """The probe the layouts are read from, and its input (which `attach` reuses)."""
    example = torch.randn(3, n_chans, n_times, generator=torch.Generator().manual_seed(0))
    params = [p for p in module.parameters() if p.is_floating_point()]
    if params:
        example = example.to(device=params[0].device, dtype=params[0].dtype)
    return probe(module, example, named_modules_of(module, attention)), example
