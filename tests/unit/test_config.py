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
        ({"use_hook_mlp_in": 1}, "use_hook_mlp_in must be true or false, got 1"),
    ],
)
def test_bad_config_names_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        EncoderConfig.preset("tiny", **overrides)


# Every config's fields, checked by their declared types (issue 57 item 8, issue 59): one
# validator (`emg_lens.errors.check_field_types`), so an int field refuses True in every config
# alike (d_mlp=True was a 1-unit MLP while d_model=True was refused), a float field NaN and inf,
# a bool field 1; the message names the field and the type it takes.
def _configs():
    from emg_lens.data.preprocess import PreprocessSpec
    from emg_lens.data.synthetic.eeg import SyntheticEEGSpec
    from emg_lens.data.synthetic.emg_acc import SyntheticSpec
    from emg_lens.data.synthetic.hdsemg import SyntheticHDsEMGSpec
    from emg_lens.data.windows.downstream import DownstreamPreprocess
    from emg_lens.data.windows.pipeline import TinyMyoPreprocess
    from emg_lens.inspect.features.config import FeatureConfig
    from emg_lens.train.finetune import FinetuneConfig
    from emg_lens.train.pretrain import PretrainConfig
    from emg_lens.train.supervised import TrainConfig

    return {
        EncoderConfig: {},
        TrainConfig: {},
        FinetuneConfig: {},
        PretrainConfig: {},
        FeatureConfig: {"layer": 0},
        SyntheticSpec: {},
        SyntheticEEGSpec: {},
        SyntheticHDsEMGSpec: {},
        PreprocessSpec: {},
        TinyMyoPreprocess: {},
        DownstreamPreprocess: {"dataset": "x", "sample_rate": 1000.0, "n_channels": 8},
    }


def _typed_fields():
    """(config, its required arguments, field, a value of the wrong type, the words the
    message says the field takes) for every int, float and bool field of every config."""
    import math
    import types
    import typing

    rows = []
    for cls, required in _configs().items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            hint = hints[f.name]
            union = typing.get_origin(hint) in (typing.Union, types.UnionType)
            members = typing.get_args(hint) if union else (hint,)
            optional = type(None) in members
            scalar = {t for t in (int, float, bool) if t in members}
            if scalar == {int}:
                bad, words = True, "an int"
            elif scalar == {float}:
                bad, words = math.nan, "a finite number"
            elif scalar == {bool}:
                bad, words = 1, "true or false"
            else:
                continue
            words += " or None" if optional else ""
            rows.append((cls, required, f.name, bad, words))
    return rows


TYPED = _typed_fields()


@pytest.mark.parametrize(
    ("cls", "required", "name", "bad", "words"),
    TYPED,
    ids=[f"{cls.__name__}.{name}" for cls, _, name, _, _ in TYPED],
)
def test_every_config_refuses_a_field_of_the_wrong_type_by_name(cls, required, name, bad, words):
    with pytest.raises(ConfigError, match=rf"^{cls.__name__}\.{name} must be {words}, got "):
        cls(**{**required, name: bad})


def test_the_type_table_covers_every_config_and_the_red_teams_case():
    assert {cls for cls, *_ in TYPED} == set(_configs())
    assert len(TYPED) > 140  # measured: 148 int, float and bool fields
    with pytest.raises(ConfigError, match=r"EncoderConfig\.d_mlp must be an int or None, got True"):
        EncoderConfig.preset("tiny", d_mlp=True)
    with pytest.raises(ConfigError, match=r"EncoderConfig\.d_model must be an int, got True"):
        EncoderConfig.preset("tiny", d_model=True)
    with pytest.raises(ConfigError, match=r"EncoderConfig\.eps must be a finite number, got inf"):
        EncoderConfig.preset("tiny", eps=float("inf"))
    with pytest.raises(ConfigError, match=r"EncoderConfig\.use_cls_token must be true or false"):
        EncoderConfig.preset("tiny", use_cls_token=1)


def test_numpy_numbers_are_taken_as_the_python_numbers_they_equal():
    import numpy as np

    cfg = EncoderConfig.preset("tiny", d_model=np.int64(16), sample_rate=np.float32(500))
    assert type(cfg.d_model) is int and type(cfg.sample_rate) is float
    assert json.loads(cfg.to_json())["d_model"] == 16  # it writes to JSON


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


@pytest.mark.unchecked
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
