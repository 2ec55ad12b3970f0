"""The encoders every contract test runs on (`MODELS`: name -> a factory taking config
overrides): each native model family at a tiny size, and every converted architecture
(`tests.unit.models.converted_models`). `test_hook_contract` checks the TransformerLens contract on
them, `test_tl_surface` TransformerLens's own utilities."""

from __future__ import annotations

from emg_lens import EncoderConfig
from emg_lens.models import HierarchicalTransformer, IsoNet, MultimodalTransformer, TinyMyo
from tests.tiny import tinymyo_config
from tests.unit.models.converted_models import FACTORIES as CONVERTED


def _isonet(**overrides):
    return IsoNet(EncoderConfig.preset("tiny", **{"seed": 0, **overrides}))


def _hierarchical(**overrides):
    # 1 stem layer + 2 fusion layers: the contract is about the fusion stack `blocks`.
    cfg = HierarchicalTransformer.default_config(
        "tiny", **{"seed": 0, "n_stem_layers": 1, "n_layers": 2, **overrides}
    )
    return HierarchicalTransformer(cfg)


def _multimodal_transformer(**overrides):
    # No fusion stack (n_layers=0): the stack-level tests skip; tests/unit/models/test_fusion.py
    # checks its stems.
    cfg = MultimodalTransformer.default_config("tiny", **{"seed": 0, **overrides})
    return MultimodalTransformer(cfg)


def _tinymyo(**overrides):
    # Channel x patch tokens (6 channels x 4 patches), RoPE, no CLS; a classification head.
    return TinyMyo(tinymyo_config(6, 8, **{"patch_samples": 2, "seed": 0, **overrides}))


def _converted(name):
    def make(**overrides):
        # A converted model's architecture is its source's: only the hook flag can change.
        model = CONVERTED[name]()[0]
        if overrides.pop("use_attn_result", False):
            model.set_use_attn_result(True)
        assert not overrides, f"{name} takes no config overrides, got {sorted(overrides)}"
        return model

    return make


MODELS = {
    "isonet": _isonet,
    "hierarchical": _hierarchical,
    "multimodal_transformer": _multimodal_transformer,
    "tinymyo": _tinymyo,
    **{name: _converted(name) for name in CONVERTED},
}
