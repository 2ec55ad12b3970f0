import dataclasses
import json

import pytest
from transformer_lens.config import TransformerLensConfig

from emg_lens import ConfigError, EmgLensError, EncoderConfig
from emg_lens.config import config_for_data


def test_is_a_transformer_lens_config():
    cfg = EncoderConfig.preset("tiny")
    assert isinstance(cfg, TransformerLensConfig)
    assert dataclasses.is_dataclass(cfg)


def test_paper_preset_is_the_published_backbone():
    cfg = EncoderConfig.preset("paper")
    assert (cfg.d_model, cfg.n_heads, cfg.n_layers, cfg.d_mlp) == (512, 8, 5, 128)
    assert cfg.modalities == {"emg": 12, "acc": 36}
    assert cfg.n_ctx == 1 + 48


def test_derived_sizes_with_patches():
    cfg = EncoderConfig.preset("tiny", n_samples=20, patch_samples=5, use_cls_token=False)
    assert (cfg.n_patches, cfg.n_tokens, cfg.n_ctx, cfg.token_samples) == (4, 24, 24, 5)


def test_dict_round_trip():
    cfg = EncoderConfig.preset("demo", seed=3)
    again = EncoderConfig.from_dict(cfg.to_dict())
    assert again == cfg


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"d_model": 0}, "d_model"),
        ({"n_heads": -2}, "n_heads"),
        ({"d_mlp": 0}, "d_mlp"),
        ({"act_fn": "swish"}, "act_fn"),
        ({"normalization_type": "RMS"}, "normalization_type"),
        ({"positional_embedding_type": "alibi"}, "positional_embedding_type"),
        ({"dropout": 1.0}, "dropout"),
        ({"modalities": {}}, "modalities"),
        ({"modalities": {"emg": 0}}, "modalities['emg']"),
        ({"modalities": {"cls": 2}}, "modalities"),
        ({"patch_samples": 3}, "patch_samples"),
        ({"n_ctx": 99}, "n_ctx"),
        ({"eps": 0.0}, "eps"),
        ({"positional_embedding_type": "rotary", "rotary_dim": 3}, "rotary_dim"),
        ({"use_split_qkv_input": True, "use_attn_in": True}, "mutually exclusive"),
        ({"use_hook_mlp_in": 1}, "use_hook_mlp_in must be True or False"),
    ],
)
def test_bad_config_names_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        EncoderConfig.preset("tiny", **overrides)


def test_unknown_preset_and_override():
    with pytest.raises(EmgLensError, match="unknown preset 'huge'"):
        EncoderConfig.preset("huge")
    with pytest.raises(ConfigError, match="n_layer"):
        EncoderConfig.preset("tiny", n_layer=3)


# ----------------------------------------------------------------------------- config_for_data


def test_config_for_data_from_a_preset_or_a_config():
    from emg_lens.models import HierarchicalTransformer, IsoNet

    shape = ({"emg": 3, "acc": 9}, 5, 80)
    from_preset = config_for_data(IsoNet, "demo", *shape, seed=1)
    assert from_preset == EncoderConfig.preset(
        "demo", modalities={"emg": 3, "acc": 9}, n_classes=5, n_samples=80, seed=1
    )
    base = EncoderConfig.preset("demo", d_model=64, seed=2)  # built for 48 channels, 200 samples
    fitted = config_for_data(IsoNet, base, *shape)
    assert (fitted.modalities, fitted.n_classes, fitted.n_samples) == shape
    assert (fitted.d_model, fitted.seed, fitted.n_ctx) == (64, 2, 1 + 12)
    # a class with default_config builds through it: tubelets that fit the window
    fusion = config_for_data(HierarchicalTransformer, "demo", *shape)
    assert fusion == HierarchicalTransformer.default_config(
        "demo", modalities={"emg": 3, "acc": 9}, n_classes=5, n_samples=80
    )
    assert (fusion.tokenization, fusion.patch_samples) == ("tubelet", 40)


def test_config_for_data_refuses_what_the_data_decides():
    from emg_lens.models import IsoNet

    for base in ("tiny", EncoderConfig.preset("tiny")):  # n_ctx follows from the data
        with pytest.raises(ConfigError, match=r"n_ctx=5 disagrees with the signal shape"):
            config_for_data(IsoNet, base, {"emg": 2}, 3, 8, n_ctx=5)
    with pytest.raises(ConfigError, match=r"base must be a preset name \(\[.*'tiny'.*got dict"):
        config_for_data(IsoNet, {"d_model": 8}, {"emg": 2}, 3, 8)
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        config_for_data(IsoNet, "huge", {"emg": 2}, 3, 8)
    with pytest.raises(ConfigError, match=r"unknown EncoderConfig field\(s\) \['width'\]"):
        config_for_data(IsoNet, EncoderConfig.preset("tiny"), {"emg": 2}, 3, 8, width=3)


# ----------------------------------------------------------------------------- channel_names


def test_channel_names_are_kept_and_round_trip():
    names = ["C3", "Cz", "C4", "Fz", "Pz", "Oz"]  # tiny: 2 emg + 4 acc channels
    cfg = EncoderConfig.preset("tiny", channel_names=names)
    assert cfg.channel_names == names and cfg.channel_names is not names  # a copy
    again = EncoderConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg and again.channel_names == names
    assert EncoderConfig.preset("tiny", channel_names=tuple(names)).channel_names == names
    assert EncoderConfig.preset("tiny").channel_names is None  # absent by default


@pytest.mark.parametrize(
    ("names", "says"),
    [
        (["C3", "Cz"], r"6 names.*n_channels=6.*got 2"),
        (["C3", "Cz", "C4", "Fz", "Pz", "C3"], r"unique.*'C3'"),
        (["C3", "Cz", "C4", "Fz", "Pz", 7], r"non-empty strings.*7"),
        (["C3", "Cz", "C4", "Fz", "Pz", ""], r"non-empty strings.*''"),
        ("C3 Cz C4 Fz Pz Oz", r"a list of channel names"),
    ],
)
def test_bad_channel_names_name_the_field(names, says):
    with pytest.raises(ConfigError, match=r"EncoderConfig\.channel_names.*" + says):
        EncoderConfig.preset("tiny", channel_names=names)
