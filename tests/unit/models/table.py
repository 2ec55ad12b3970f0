"""The one table of every model the model tests run on (issue 48): ``TABLE``, name -> `Row` (its
tier and a factory), over the three tiers:

- native: IsoNet, the hierarchical and the multimodal transformer, TinyMyo, the MLP baseline, at
  tiny sizes;
- converted: a user's ``nn.TransformerEncoder`` (pre- and post-LN) through `from_torch_encoder`
  and LaBraM, CBraMod, EEGPT, PBT through `from_braindecode` (`converted_models`: their sources
  perturbed before conversion);
- attached: the hand-written attention forms of `attached_models` through `attach`, the models
  of `emg_lens.models.attached.examples`, and braindecode's zoo through `attach_braindecode`
  (`ZOO`, at small sizes; the four architectures that also convert are the converted rows'
  sources).

A row's factory returns ``(model, original)``: ``original(x)`` is the source model's output (None
for a native model, which is its own). `build` gives a fresh pair; `get` the session's model,
built once per process, its biases and norm weights moved away from 0 and 1 where it is native
or converted, with no hook and every hook flag off (tests that change a model build their own,
`make`, or put it back); `with_original` a model with its original. `test_hook_contract`
runs its checks on every row; the other model tests and the TransformerLens ports
(``tl_port/``) read their models from here.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch import nn

from emg_lens import EncoderConfig
from emg_lens.config import HOOK_FLAGS
from emg_lens.errors import LayoutError, UnsupportedFeatureError
from emg_lens.layout import TokenLayout
from emg_lens.models import (
    HierarchicalTransformer,
    IsoNet,
    MultimodalMLP,
    MultimodalTransformer,
    TinyMyo,
    attach,
)
from emg_lens.models.attached.examples import PatchAttention, SpectralEEG, TinyAttention
from emg_lens.models.base import (
    ATTENTION_HOOKS,
    CAPABILITIES,
    LAYERWISE,
    LINEAR_READOUT,
    SPLIT_QKV,
    TL_WEIGHTS,
    provides,
)
from tests.tiny import perturb_biases, tinymyo_config
from tests.unit.models import attached_models as am
from tests.unit.models import converted_models as cm

TIERS = ("native", "converted", "attached")

Original = Callable[[torch.Tensor], torch.Tensor]
OwnMask = Callable[[Original, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Row:
    """One model of the table. ``factory(**overrides)`` -> ``(model, original)``; ``own_mask``,
    where the original takes a mask argument of its own: ``own_mask(original, x, cut)``, the
    original computed with the keys ``cut`` (bool ``[heads or 1, query, key]``, True = blocked)
    blocked by that argument in every layer; ``own_mask_per_head``: whether that argument
    can differ between heads."""

    name: str
    tier: str
    factory: Callable[..., tuple[nn.Module, Original | None]]
    own_mask: OwnMask | None = None
    own_mask_per_head: bool = True


# ------------------------------------------------------------------------------------ native


def _native(make: Callable[..., nn.Module]) -> Callable[..., tuple[nn.Module, None]]:
    def factory(**overrides):
        return make(**overrides).eval(), None

    return factory


def _isonet(**overrides):
    return IsoNet(EncoderConfig.preset("tiny", **{"seed": 0, **overrides}))


def _hierarchical(**overrides):
    # 1 stem layer + 2 fusion layers: the contract is about the fusion stack `blocks`.
    cfg = HierarchicalTransformer.default_config(
        "tiny", **{"seed": 0, "n_stem_layers": 1, "n_layers": 2, **overrides}
    )
    return HierarchicalTransformer(cfg)


def _multimodal_transformer(**overrides):
    # No fusion stack (n_layers=0): its layers are its stems' (test_fusion.py checks them).
    cfg = MultimodalTransformer.default_config("tiny", **{"seed": 0, **overrides})
    return MultimodalTransformer(cfg)


def _tinymyo(**overrides):
    # Channel x patch tokens (6 channels x 4 patches), RoPE, no CLS; a classification head.
    return TinyMyo(tinymyo_config(6, 8, **{"patch_samples": 2, "seed": 0, **overrides}))


def _mlp(**overrides):
    return MultimodalMLP(MultimodalMLP.default_config("tiny", **{"seed": 0, **overrides}))


# --------------------------------------------------------------------------------- converted


def _converted(make: Callable[..., tuple[nn.Module, Original]]):
    def factory(**overrides):
        # A converted model's architecture is its source's: only the hook flag can change.
        model, original = make()
        if overrides.pop("use_attn_result", False):
            model.set_use_attn_result(True)
        assert not overrides, f"a converted model takes no config overrides: {sorted(overrides)}"
        return model.eval(), original

    return factory


def _torch_own_mask(original: Original, x: torch.Tensor, cut: torch.Tensor) -> torch.Tensor:
    """``nn.TransformerEncoder(mask=)`` (True = blocked; ``[batch * heads, q, k]`` per head)."""
    parts = original.parts  # type: ignore[attr-defined]
    heads = parts["encoder"].layers[0].self_attn.num_heads
    mask = cut.expand(heads, -1, -1).repeat(len(x), 1, 1)
    with torch.enable_grad():  # the layers' Python forward, as `original` runs them
        out = parts["encoder"](parts["embed"](x), mask=mask)
        return parts["readout"](out).detach()


# ---------------------------------------------------------------------------------- attached


def _attached(kind: str):
    def factory():
        net = am.build(kind)
        return attach(net, layout=am.LAYOUT, n_samples=am.N_SAMPLES), net

    return factory


def _hand_own_mask(kind: str) -> OwnMask:
    def own(net, x, cut):
        if kind == "torch_encoder":  # its mask is [query, key]: the same in every head
            return net(x, cut[0])
        if kind == "mha":  # nn.MultiheadAttention: [batch * heads, query, key]
            return net(x, cut.expand(am.HEADS, -1, -1).repeat(len(x), 1, 1))
        return net(x, am.own_mask(kind, cut))

    return own


def _bias_own_mask(net, x, cut):
    """A model whose ``bias`` argument is added to its scores (``-inf`` = blocked)."""
    return net(x, torch.zeros(cut.shape).masked_fill(cut, float("-inf")))


EXAMPLES: dict[str, Callable[[], tuple[nn.Module, int]]] = {
    "tiny": lambda: (TinyAttention(), 8),
    "patch": lambda: (PatchAttention(), 8),  # two patches of 4 folded into the batch
    "spectral": lambda: (SpectralEEG(channels=4, n_classes=3, d=16, bins=5), 8),
}
"""`emg_lens.models.attached.examples` at small sizes, 4 channels: ``(net, n_samples)``."""


def _example(name: str):
    def factory():
        net, n_samples = EXAMPLES[name]()
        net.eval()
        return attach(net, layout=am.LAYOUT, n_samples=n_samples), net

    return factory


# The zoo: braindecode's attention models at small sizes (4 channels x 256 samples, unless an
# entry says otherwise); the four that also convert are the converted rows' sources.
ZOO_C, ZOO_T = 4, 256
ZOO_CHS = [{"ch_name": name} for name in cm.EEG_NAMES[:ZOO_C]]
ZOO_CHS_LOC = [  # SignalJEPA embeds each channel from its location
    {**ch, "loc": [0.1 * (i + 1)] * 3 + [0.0] * 9} for i, ch in enumerate(ZOO_CHS)
]
SIGNAL_JEPA = {  # a 2-layer transformer over 4 channels x 15 steps of a 2-layer encoder
    "chs_info": ZOO_CHS_LOC,
    "feature_encoder__conv_layers_spec": [(8, 16, 8), (16, 2, 2)],
    "transformer__d_model": 16,
    "pos_encoder__spat_dim": 6,
    "pos_encoder__time_dim": 10,
    "transformer__nhead": 2,
    "transformer__num_encoder_layers": 2,
    "transformer__num_decoder_layers": 1,
}
ZOO_SMALL: dict[str, dict[str, Any]] = {
    "LUNA": {
        "patch_size": 32,
        "num_queries": 2,
        "embed_dim": 16,
        "depth": 2,
        "num_heads": 2,
        "chs_info": ZOO_CHS,  # LUNA embeds each channel by name; BENDR takes only its 20 names
    },
    "BENDR": {
        "encoder_h": 16,
        "contextualizer_hidden": 32,
        "transformer_layers": 2,
        "transformer_heads": 2,
    },
    "EEGConformer": {"n_filters_time": 8, "num_layers": 2, "num_heads": 2},
    "MEDFormer": {"embed_dim": 16, "num_heads": 2, "num_layers": 2, "dim_feedforward": 16},
    "ATCNet": {"sfreq": 250.0, "n_windows": 2},
    "CTNet": {
        "num_heads": 2,
        "embed_dim": 16,
        "num_layers": 2,
        "n_filters_time": 8,
        "depth_multiplier": 2,
    },
    "SignalJEPA": SIGNAL_JEPA,
    "SignalJEPA_Contextual": SIGNAL_JEPA,
    "REVE": {  # 4 channels x 4 patches of 64 samples overlapping by 8
        "chs_info": ZOO_CHS,
        "patch_size": 64,
        "patch_overlap": 8,
        "embed_dim": 16,
        "depth": 2,
        "heads": 2,
        "head_dim": 8,
    },
    "AttnSleep": {"n_chans": 1, "sfreq": 100.0, "d_model": 10, "d_ff": 16, "n_attn_heads": 2},
    "MSVTNet": {"num_heads": 2, "n_filters_list": (2, 2, 2, 2)},
    "TCFormer": {"n_filters_time": 8, "q_heads": 2, "kv_heads": 1},
    "MVPFormer": {  # 4 segments x 4 channels, segment-major; a local window of 1 segment
        "segment_len": 64,
        "d_model": 16,
        "n_heads": 2,
        "n_head_kv": 1,
        "d_inner": 16,
        "n_layers": 2,
        "local_window": 1,
    },
    "EEGDINO": {  # 4 channels x 4 patches; its global token from layer 1
        "patch_size": 64,
        "n_layer": 2,
        "nhead": 2,
        "dim_feedforward": 16,
        "channels_kernel_stride_padding_norm": ((4, 49, 25, 24, (2, 4)),),
    },
    "STEEGFormer": {  # CLS, then 4 patches x 4 channels, patch-major
        "patch_size": 64,
        "embed_dim": 16,
        "depth": 2,
        "num_heads": 2,
    },
    "ZUNA": {  # a register, then a patch, for each of 4 channels x 4 patches
        "chs_info": ZOO_CHS_LOC,
        "dim": 16,
        "n_layers": 2,
        "n_heads": 2,
        "head_dim": 8,
        "fine_time_pts": 64,
        "latent_dim": 4,
        "multiple_of": 16,
    },
    "CodeBrain": {  # 4 channels x 4 patches, a sliding window over all 16 (the ends attend)
        "patch_size": 64,
        "res_channels": 16,
        "skip_channels": 16,
        "out_channels": 16,
        "num_res_layers": 2,
        "s4_lmax": 16,
        "s4_d_state": 8,
        "swa_window_size": 31,
    },
    "DANCE": {  # 8 latents reading 256 time steps
        "chs_info": ZOO_CHS_LOC,
        "n_virtual_channels": 8,
        "fourier_emb_dim": 32,
        "embed_dim": 16,
        "conv_hidden": 16,
        "conv_depth": 2,
        "conv_initial_linear": 16,
        "num_latents": 8,
        "perceiver_depth": 2,
        "cross_dim_head": 8,
        "latent_dim_head": 8,
        "decoder_dim": 16,
        "decoder_depth": 1,
        "decoder_heads": 2,
        "n_queries": 4,
    },
    "MetaNeuromotorHand": {  # 20 frames of 50 ms; layer 0's keys hold blocks of lags (D < W),
        "n_times": 1000,  # layer 1's every lag (D >= W)
        "num_adjacent_cov": 2,
        "invariance_hidden_dims": (8,),
        "conformer_input_dim": 8,
        "conformer_ffn_dim": 16,
        "conformer_num_heads": 2,
        "conformer_num_layers": 2,
        "conformer_attn_window_size": (16, 4),
        "conformer_kernel_size": 2,
        "conformer_stride": 1,
        "time_reduction_stride": 1,
    },
}
ZOO_CONVERTED: dict[str, Callable[..., tuple[nn.Module, Original]]] = {
    "PBT": cm.pbt_model,
    "Labram": cm.labram_model,
    "CBraMod": cm.cbramod_model,
    "EEGPT": cm.eegpt_model,
}


@contextlib.contextmanager
def reve_positions(names: Sequence[str]) -> Iterator[None]:
    """While open, braindecode's REVE reads its position bank (channel name -> x, y, z) from a
    file holding ``names`` at made-up points of the unit sphere, instead of downloading the
    real one (``$REVE_POSITIONS_PATH/reve_positions.json``, which it reads when it builds):
    the positions feed its positional encoding, not which tokens its attention sees."""
    golden = math.pi * (3 - math.sqrt(5))
    bank = {}
    for i, name in enumerate(names):
        z = 1 - 2 * (i + 0.5) / len(names)
        r = math.sqrt(1 - z * z)
        bank[name] = [r * math.cos(golden * i), r * math.sin(golden * i), z]
    before = os.environ.get("REVE_POSITIONS_PATH")
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "reve_positions.json").write_text(json.dumps(bank))
        os.environ["REVE_POSITIONS_PATH"] = folder
        try:
            yield
        finally:
            if before is None:
                del os.environ["REVE_POSITIONS_PATH"]
            else:
                os.environ["REVE_POSITIONS_PATH"] = before


def offline(name: str, names: Sequence[str]) -> contextlib.AbstractContextManager:
    """While open, braindecode builds ``name`` without the network: REVE from a position bank
    on disk (`reve_positions`), STEEGFormer without its channel vocabulary (which it
    downloads; it falls back to one channel embedding per input channel, in order)."""
    if name == "REVE":
        return reve_positions(names)
    if name == "STEEGFormer":
        return mock.patch(
            "braindecode.models.steegformer._channel_index", side_effect=OSError("offline")
        )
    return contextlib.nullcontext()


def zoo_source(name: str) -> nn.Module:
    """braindecode's ``name`` at the table's small size (eval mode, biases perturbed)."""
    if name in ZOO_CONVERTED:
        return ZOO_CONVERTED[name]()[1].source  # type: ignore[attr-defined]
    import braindecode.models as bd

    kwargs = {"n_chans": ZOO_C, "n_times": ZOO_T, "n_outputs": 3, **ZOO_SMALL[name]}
    names = [ch["ch_name"] for ch in ZOO_CHS]
    with warnings.catch_warnings(), offline(name, names):
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        model = getattr(bd, name)(**kwargs)
    return cm.perturb(model).eval()


def _zoo(name: str):
    def factory():
        from emg_lens.models.attached.zoo import ZOO, attach_braindecode

        source = zoo_source(name)
        model = attach_braindecode(source)
        names = list(model.model.names) if ZOO[name].needs_names else None

        def original(x: torch.Tensor) -> torch.Tensor:
            return source(x) if names is None else source(x, ch_names=names)

        original.source = source  # type: ignore[attr-defined]
        return model, original

    return factory


# ------------------------------------------------------------------------------------- table


def _rows() -> list[Row]:
    rows = [
        Row("isonet", "native", _native(_isonet)),
        Row("hierarchical", "native", _native(_hierarchical)),
        Row("multimodal_transformer", "native", _native(_multimodal_transformer)),
        Row("tinymyo", "native", _native(_tinymyo)),
        Row("mlp", "native", _native(_mlp)),
    ]
    for name, make in cm.FACTORIES.items():
        own = _torch_own_mask if name.startswith("torch_") else None
        rows.append(Row(name, "converted", _converted(make), own))
    for kind in am.FACTORIES:
        own, per_head = _hand_own_mask(kind), kind != "torch_encoder"
        rows.append(Row(f"attached_{kind}", "attached", _attached(kind), own, per_head))
    for name in EXAMPLES:
        own = _bias_own_mask if name == "patch" else None  # the others take no mask
        rows.append(Row(f"example_{name}", "attached", _example(name), own))
    for name in sorted([*ZOO_SMALL, *ZOO_CONVERTED]):
        rows.append(Row(f"zoo_{name}", "attached", _zoo(name)))
    return rows


TABLE: dict[str, Row] = {row.name: row for row in _rows()}
"""Every model the model tests run on, by name."""


def names(tier: str | None = None) -> list[str]:
    """The table's names (of one tier), in table order."""
    assert tier is None or tier in TIERS, tier
    return [name for name, row in TABLE.items() if tier is None or row.tier == tier]


def build(name: str, **overrides: Any) -> tuple[nn.Module, Original | None]:
    """A fresh ``(model, original)`` of row ``name``; a native model takes config overrides."""
    with warnings.catch_warnings():  # braindecode's deprecation and channel-order warnings
        warnings.simplefilter("ignore")
        return TABLE[name].factory(**overrides)


def make(name: str, **overrides: Any) -> nn.Module:
    """A fresh model of row ``name`` as the session's (`get`): a native or converted one's
    biases and norm weights moved (`perturb_biases`)."""
    model = build(name, **overrides)[0]
    if TABLE[name].tier != "attached":
        perturb_biases(model)
    return model


_BUILT: dict[str, tuple[nn.Module, Original | None]] = {}


def get_pair(name: str) -> tuple[nn.Module, Original | None]:
    """The session's ``(model, original)`` of row ``name`` (built once per process), the model
    in eval mode with no hook and every hook flag off. A native or converted model's biases
    and norm weights are moved here (`perturb_biases`: so that no check passes because one
    is 0 or 1); a converted one is then no longer its original's function, and ``original``
    is None (`build` gives a converted model with its original)."""
    if name not in _BUILT:
        model, original = build(name)
        if TABLE[name].tier != "attached":
            perturb_biases(model)
            original = None
        _BUILT[name] = model, original
    model, original = _BUILT[name]
    model.reset_hooks(including_permanent=True)
    for flag in HOOK_FLAGS:
        if getattr(model.cfg, flag, False):
            getattr(model, f"set_{flag}")(False)
    model.eval()
    return model, original


def with_original(name: str) -> tuple[nn.Module, Original | None]:
    """Row ``name``'s model with its original: the session's where that is still its
    original's function (`get_pair`), else a fresh pair (`build`); None for a native model."""
    model, original = get_pair(name)
    if original is None and TABLE[name].tier != "native":
        model, original = build(name)
    return model, original


def get(name: str) -> nn.Module:
    """The session's model of row ``name`` (see `get_pair`)."""
    return get_pair(name)[0]


# ------------------------------------------------------------------------------------ traits
# What a row's model has, by name, known before it is built: the tests are generated for the
# rows that have what they check (no test generated to be skipped). `DECLARED` holds what only
# a built model says (`traits_of`; `test_capabilities` checks each row's declaration against its
# built model); `traits` adds what the row itself says.
STACK = "stack"
"""A shared stack ``blocks`` (``cfg.n_layers > 0``; the MultimodalTransformer's layers are all
its stems')."""
FINAL_NORM = "final_norm"
"""A final norm with a scale (``ln_final.w``): what ``apply_ln`` applies."""
PRE_LN = "pre_ln"
"""Pre-LN blocks (``cfg.norm_position != "post"``)."""
ONE_LAYOUT = "one_layout"
"""Every attention layer sees the model's layout, unfolded, and layer 0 has residual hooks:
what ``pos_slice`` slices (not a cross-attention, nor calls over other tokens, nor scores with
folds x batch rows)."""
UNEMBEDDING = "unembedding"
"""The classifier is a TransformerLens unembedding (``tokens_to_residual_directions``,
``unembed_positions``)."""
ORIGINAL = "original"
"""The row's model has an original other than itself (it is not native)."""
OWN_MASK = "own_mask"
"""The row's original takes a mask argument of its own (``Row.own_mask``)."""
STEMS = "stems"
"""Attention in its stems: hook points ``stems.<modality>.blocks.<l>...``."""


def _one_layout(model: Any) -> bool:
    try:
        layout = model.layout
    except LayoutError:
        return False
    folds = getattr(model, "folds_of", lambda layer: 1)
    return "blocks.0.hook_resid_pre" in model.hook_dict and all(
        layout_of(model, layer) == layout and folds(layer) == 1
        for layer in range(model.cfg.n_layers)
    )


def _unembedding(model: Any) -> bool:
    try:
        model.tokens_to_residual_directions(0)
        return model.unembed_positions is not None
    except (UnsupportedFeatureError, AttributeError):
        return False


def traits_of(model: Any) -> frozenset[str]:
    """What a built model has: its capabilities (`provides`) and the traits above that only
    a built model says (`DECLARED` declares them per row)."""
    cfg = getattr(model, "cfg", None)
    has = {feature for feature in CAPABILITIES if provides(model, feature)}
    if provides(model, ATTENTION_HOOKS):
        if cfg.n_layers > 0:
            has.add(STACK)
        if cfg.norm_position != "post":
            has.add(PRE_LN)
        if _one_layout(model):
            has.add(ONE_LAYOUT)
        if any(name.startswith("stems.") for name in model.hook_dict):
            has.add(STEMS)
    if hasattr(getattr(model, "ln_final", None), "w"):
        has.add(FINAL_NORM)
    if _unembedding(model):
        has.add(UNEMBEDDING)
    return frozenset(has)


_TL = frozenset({ATTENTION_HOOKS, LAYERWISE, TL_WEIGHTS, SPLIT_QKV, STACK, PRE_LN, ONE_LAYOUT})
_ATTACHED = frozenset({ATTENTION_HOOKS, STACK, PRE_LN})
_NOT_ONE_LAYOUT = {  # attached models whose attention calls see other tokens, or folds
    *("example_patch", "zoo_ATCNet", "zoo_CBraMod", "zoo_DANCE", "zoo_EEGDINO", "zoo_EEGPT"),
    *("zoo_LUNA", "zoo_MEDFormer", "zoo_MVPFormer", "zoo_MetaNeuromotorHand"),
}
DECLARED: dict[str, frozenset[str]] = {
    "isonet": _TL | {FINAL_NORM, LINEAR_READOUT, UNEMBEDDING},
    "hierarchical": _TL | {FINAL_NORM, LINEAR_READOUT, STEMS},
    "multimodal_transformer": _TL - {TL_WEIGHTS, STACK, ONE_LAYOUT}
    | {FINAL_NORM, LINEAR_READOUT, STEMS},
    "tinymyo": _TL | {FINAL_NORM, LINEAR_READOUT},
    "mlp": frozenset(),
    "torch_pre_ln": _TL | {FINAL_NORM},
    "torch_post_ln": _TL - {PRE_LN},
    "braindecode_labram": _TL | {FINAL_NORM, LINEAR_READOUT, UNEMBEDDING},
    "braindecode_cbramod": _TL,
    "braindecode_eegpt": _TL | {FINAL_NORM},
    "braindecode_pbt": _TL | {LINEAR_READOUT, UNEMBEDDING},
    **{
        name: _ATTACHED if name in _NOT_ONE_LAYOUT else _ATTACHED | {ONE_LAYOUT}
        for name in names("attached")
    },
}
"""Each row's `traits_of` its built model, declared (`test_capabilities` checks each against
the built model, so that the two cannot drift)."""


def traits(name: str) -> frozenset[str]:
    """Row ``name``'s traits, without building it: `DECLARED`, and `ORIGINAL` / `OWN_MASK`
    from the row."""
    row = TABLE[name]
    own = {ORIGINAL} if row.tier != "native" else set()
    if row.own_mask is not None:
        own.add(OWN_MASK)
    return DECLARED[name] | own


def providing(*features: str, lacking: tuple[str, ...] = (), tier: str | None = None) -> list[str]:
    """The names whose model has every one of ``features`` and none of ``lacking`` (the
    capabilities of `emg_lens.models.base` and the traits above, as declared: `traits`; no
    model is built to ask)."""
    return [
        name
        for name in names(tier)
        if traits(name).issuperset(features) and traits(name).isdisjoint(lacking)
    ]


def layout_of(model: Any, layer: int) -> TokenLayout:
    """The token layout attention layer ``layer`` sees (an attached model's may differ by
    layer)."""
    return model.layout_of(layer) if hasattr(model, "layout_of") else model.layout
