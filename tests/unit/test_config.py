import dataclasses

import pytest
from transformer_lens.config import TransformerLensConfig

from emg_lens import ConfigError, EmgLensError, EncoderConfig


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
        ({"use_split_qkv_input": True}, "use_split_qkv_input"),
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
