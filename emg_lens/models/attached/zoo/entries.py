"""braindecode's architectures as data: `ZOO`, what the tokens of each one's attention calls
are (mostly a table of `Rule` s), `REFUSED` (no softmax attention over tokens) and `NOT_YET`.
See `emg_lens.models.attached.zoo` for what each family's tokens are and why."""

from __future__ import annotations

from torch import nn

from emg_lens.errors import ConversionError
from emg_lens.layout import CLS
from emg_lens.models.attached.zoo.tokens import (
    CHANNEL,
    FEATURE,
    PATCH,
    QUERY,
    ROUTER,
    TIME,
    Rule,
    Run,
    ZooEntry,
    flat_patches,
    rules,
    window_keys,
)
from emg_lens.models.braindecode_common import Braindecode, misnamed_channel


def _pbt(calls, names, model):
    layout = flat_patches(len(names), model.n_times, model.d_input, names)
    return [layout for _ in calls]


def _cbramod_size(model: Braindecode, channels: int | None, samples: int | None):
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
        raise ConversionError(
            f"braindecode's CBraMod has a classifier over {width} features, which no input of "
            f"{channels} channels gives ({emb} per channel and patch of {patch} samples)"
        )
    return channels, tokens // channels * patch


def _signal_jepa_size(model: Braindecode, channels: int | None, samples: int | None):
    """The size to probe a SignalJEPA at: the sizes known; without ``n_times``, its feature
    encoder's receptive field (one token per channel)."""
    field, stride = 1, 1
    for _, width, step in model.feature_encoder.conv_layers_spec:
        field, stride = field + (width - 1) * stride, stride * step
    return channels or model.n_chans, samples or field


def _one_channel(model: nn.Module, channels: int | None, samples: int | None):
    """AttnSleep reads the channels its first convolution takes (one: a single-channel sleep
    model), built with n_chans or not; it runs at its own n_times alone (its d_model: samples)."""
    first = next(m for m in model.modules() if isinstance(m, nn.Conv1d))
    return channels or first.in_channels, samples


def _reve_pooling(model: nn.Module) -> str | None:
    if getattr(model, "use_attention_pooling", False):
        return (
            "it was built with attention_pooling=True, whose learned query reads every token "
            "through a softmax over [batch, 1, tokens] in REVE.forward itself, which attach "
            "cannot hook: build it with attention_pooling=False (braindecode's default)"
        )
    return None


def _codebrain_window(model: nn.Module) -> str | None:
    sizes = {getattr(m, "swa_window_size", None) for m in model.modules()} - {None}
    if sizes == {1}:
        return (
            "braindecode's CodeBrain was built with swa_window_size=1 (its default): its "
            "sliding-window attention masks every key but the query's own, so each token "
            "attends to itself alone and every cut between two tokens is vacuous (it changes "
            "nothing); build it with an odd swa_window_size > 1 (e.g. 7, 9 or 11) for "
            "attention between tokens to cut"
        )
    return None


_PER_PATCH = rules(Rule("*", (Run(CHANNEL), Run(QUERY))))


def _eegpt(calls, names, model):
    """The channels of one patch, then the learned summary tokens. With a channel projection
    EEGPT's encoder sees ``n_chans_target`` projected channels (``model.channel_names``), not
    the inputs; without one, each input channel's token carries the embedding fixed at
    construction (``chans_id``), so a name braindecode would give another embedding is
    refused."""
    if model.chan_proj_type != "none":
        names = list(model.channel_names)
    elif (why := misnamed_channel(model, names)) is not None:
        raise ConversionError(why)
    return _PER_PATCH(calls, names, model)


def _causal_windows(calls, names, model):
    # Each call's D is its nn.MultiheadAttention's width (the calls show heads and keys only).
    return [window_keys(model.get_submodule(call.module).embed_dim, call.n_key) for call in calls]


def _globals_from(i: int, model: Braindecode) -> int:
    # EEGDINO prepends them after its layer global_token_layer - 1 (braindecode: >= 1)
    return model.n_global_tokens if i >= model.global_token_layer else 0


SLICES = (
    "time slices after the temporal and spatial convolutions and pooling (each mixes every channel)"
)
_TIME = rules(Rule("*", (Run(TIME),)))
_CLS_TIME = rules(Rule("*", (Run(CLS, 1), Run(TIME))))
_PATCHES = rules(Rule("*", (Run(PATCH),)))
_CLS_PATCHES = rules(Rule("*", (Run(CLS, 1), Run(PATCH))))
_CHANNEL_MAJOR = "one token per channel and time step of its convolutional encoder (channel-major)"
ZOO: dict[str, ZooEntry] = {
    "EEGConformer": ZooEntry(SLICES, _TIME),
    "ATCNet": ZooEntry(
        "the time steps of one sliding window (one attention call per window), after the "
        "convolutional block (each mixes every channel)",
        _TIME,
        attention="attention_blocks.*.mha",  # its softmax is 3-D: heads folded into the batch
    ),
    "CTNet": ZooEntry(SLICES, _TIME),
    "TCFormer": ZooEntry(SLICES, _TIME),
    "MSVTNet": ZooEntry(
        "CLS, then the time slices of its four branches' convolutions (each mixes every channel)",
        _CLS_TIME,
    ),
    "BENDR": ZooEntry("the start token, then the convolutional encoder's time slices", _CLS_TIME),
    "AttnSleep": ZooEntry(
        "the feature maps of its multi-resolution CNN (after its feature recalibration), each "
        "over the whole window",
        rules(Rule("*", (Run(FEATURE),))),
        any_size=_one_channel,
    ),
    "MEDFormer": ZooEntry(
        "patches of every channel at each granularity; one router token per granularity",
        rules(Rule("*inter_attention*", (Run(ROUTER),)), Rule("*", (Run(TIME),))),
    ),
    "LUNA": ZooEntry(
        "learned queries reading each patch's channels, then one token per patch",
        rules(
            Rule("*cross_attention", (Run(CHANNEL),), (Run(QUERY),)),
            Rule("*.query_self_attn.*", (Run(QUERY),)),
            Rule("final_layer.*", (Run(TIME),), (Run(QUERY),)),
            Rule("*", (Run(TIME),)),
        ),
    ),
    "PBT": ZooEntry(
        "CLS, then the patches of the flattened channel x time window: one token per channel "
        "and patch, and, where n_times is not a multiple of d_input, tokens running across two "
        "channels (group 'mixed'; the converter takes only multiples)",
        _pbt,
        converter=True,
    ),
    "Labram": ZooEntry(
        "CLS, then one token per channel and patch", _CLS_PATCHES, needs_names=True, converter=True
    ),
    "STEEGFormer": ZooEntry(
        "CLS, then one token per patch and channel (patch-major)",
        rules(Rule("*", (Run(CLS, 1), Run(PATCH, order="time")))),
    ),
    "MVPFormer": ZooEntry(
        "one token per segment and channel (segment-major; its own mask causal over segments)",
        rules(Rule("*", (Run(PATCH, order="time"),))),
    ),
    "EEGDINO": ZooEntry(
        "one token per channel and patch (channel-major), after global_token_layer its learned "
        "global tokens first",
        rules(Rule("*", (Run(QUERY, _globals_from), Run(PATCH)))),
    ),
    "ZUNA": ZooEntry(
        "per channel and patch (channel-major) a learned register token, then the patch",
        rules(Rule("*", (Run(PATCH, registers=True),))),
    ),
    "CodeBrain": ZooEntry(
        "one token per channel and patch (channel-major; its sliding window runs over that order)",
        _PATCHES,
        warns=_codebrain_window,
    ),
    "DANCE": ZooEntry(
        "its Perceiver's learned latents reading the time steps of its convolutional stack "
        "(every sample, after the channel merger: each mixes every channel), then the latents",
        rules(
            Rule("perceiver.layers.*.2.*", (Run(QUERY),)),
            Rule("*", (Run(TIME),), (Run(QUERY),)),
        ),
        attention="perceiver.layers.*.fn",  # its softmax is 3-D: heads folded into the batch
    ),
    "CBraMod": ZooEntry(
        "spatial calls: the channels of one patch; temporal calls: the patches of one channel "
        "(each call folds its patches or channels into the batch)",
        rules(Rule("*self_attn_s", (Run(CHANNEL),)), Rule("*", (Run(TIME),))),
        converter=True,
        any_size=_cbramod_size,
    ),
    "EEGPT": ZooEntry(
        "the channels of one patch (with a channel projection, its n_chans_target projected "
        "channels) and the learned summary tokens (the patches folded into the batch)",
        _eegpt,
        converter=True,
    ),
    "SignalJEPA": ZooEntry(_CHANNEL_MAJOR, _PATCHES, any_size=_signal_jepa_size),
    "SignalJEPA_Contextual": ZooEntry(_CHANNEL_MAJOR, _PATCHES),
    "REVE": ZooEntry(
        "one token per channel and patch (channel-major; patches overlap by patch_overlap samples)",
        _PATCHES,
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

INTERPOLATED = {
    "InterpolatedEEGPT": "EEGPT",
    "InterpolatedLaBraM": "Labram",
    "InterpolatedBENDR": "BENDR",
    "InterpolatedSignalJEPA": "SignalJEPA",
}
"""braindecode's channel-interpolating wrappers and their base models: the wrapper maps the
input's channels onto the base's own (``_TARGET_CHS_INFO``), whose attention calls then run,
so its tokens are the base's entry's over those target channels."""
ZOO.update({wrapper: ZOO[base] for wrapper, base in INTERPOLATED.items()})

_NO_TRANSFORMER = (
    "braindecode builds it without SignalJEPA's transformer (a convolutional encoder and a "
    "classifier): it has no attention; SignalJEPA and SignalJEPA_Contextual have one"
)
_LINEAR = (
    "its attention is linear attention (softmax over features, never over query-key pairs): "
    "there is no [query, key] score to hook or cut"
)
REFUSED: dict[str, str] = {
    "BIOT": _LINEAR,
    "InterpolatedBIOT": _LINEAR,
    "SignalJEPA_PostLocal": _NO_TRANSFORMER,
    "SignalJEPA_PreLocal": _NO_TRANSFORMER,
}
"""braindecode architectures with no softmax attention over tokens, refused by name."""

NOT_YET: dict[str, str] = {}
"""braindecode architectures with softmax attention that the zoo does not open yet, and why
(none in braindecode 1.8.1: tests/unit/models/test_zoo_roster.py finds every architecture of
its roster whose forward computes softmax attention, and fails on one in none of `ZOO`,
`NOT_YET` and `REFUSED`)."""
