"""`from_braindecode` (issue 24 item 2): braindecode's Labram, CBraMod, EEGPT and PBT, hooked,
compute what the originals compute (float32 to 1e-5, float64 to 1e-10, on the fast and the
hooked path, several seeds and input sizes), `to_braindecode` gives back a state dict
braindecode loads, structured attention is a base mask that edge sets compose with, and what
cannot convert is refused by name."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from emg_lens import EncoderConfig
from emg_lens.checkpoints import load_checkpoint, save_checkpoint
from emg_lens.errors import (
    ArgumentError,
    ConversionError,
    UnsupportedFeatureError,
)
from emg_lens.hooks import compile_edges
from emg_lens.models import (
    HookedCBraMod,
    HookedEEGPT,
    HookedLabram,
    HookedPBT,
    from_braindecode,
    to_braindecode,
)
from tests.unit.models.converted_models import (
    BRAINDECODE,
    CBRAMOD_CONVS,
    _chs,
    cbramod_model,
    eegpt_model,
    labram_model,
    pbt_model,
)

bd = pytest.importorskip("braindecode.models")

# Per architecture: (factory, input sizes (channels, time), variants of the constructor).
CASES = {
    "labram": (
        labram_model,
        [(6, 8), (4, 16)],
        [
            {},
            {"qkv_bias": True},
            {"use_mean_pooling": True},
            {"learned_patcher": True, "qk_norm": None, "init_values": None},
        ],
    ),
    "cbramod": (cbramod_model, [(6, 400), (3, 600)], [{}, {"activation": nn.ReLU}]),
    "eegpt": (
        eegpt_model,
        [(6, 8), (4, 20)],
        [
            {},
            {"chan_proj_type": "conv1d_constraint"},
            {"chan_proj_type": "linear", "qkv_bias": False},
        ],
    ),
    "pbt": (
        pbt_model,
        [(6, 8), (3, 12)],
        [{}, {"bias_transformer": True}, {"learnable_cls": False, "activation": nn.ReLU}],
    ),
}
HOOKED = {"labram": HookedLabram, "cbramod": HookedCBraMod, "eegpt": HookedEEGPT, "pbt": HookedPBT}


def _paths(model, x):
    with torch.no_grad():
        fast = model(x)
    assert not any(block.attn.hooks_active() for block in model.blocks)
    explicit, _ = model.run_with_cache(x)
    return fast, explicit


def _variants():
    for name, (_, _, variants) in CASES.items():
        for i, variant in enumerate(variants):
            yield pytest.param(name, variant, id=f"{name}-{i}")


@pytest.mark.parametrize(("name", "variant"), list(_variants()))
def test_float32_parity_on_both_paths(name, variant):
    factory, shapes, _ = CASES[name]
    for seed, shape in zip((0, 1), shapes):
        model, original = factory(seed, shape=shape, **variant)
        assert isinstance(model, HOOKED[name]) and not model.training
        x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(seed))
        expected = original(x)
        for out in _paths(model, x):
            assert out.shape == expected.shape
            assert (out - expected).abs().max() <= 1e-5, name


@pytest.mark.parametrize("name", sorted(CASES))
def test_float64_parity_to_1e_10(name):
    factory, shapes, _ = CASES[name]
    for seed in (0, 2):
        model, original = factory(seed, shape=shapes[0], dtype=torch.float64)
        assert model.cfg.dtype == torch.float64
        x = torch.randn(2, *shapes[0], dtype=torch.float64)
        expected = original(x)
        for out in _paths(model, x):
            assert (out - expected).abs().max() <= 1e-10, name


@pytest.mark.parametrize(("name", "variant"), list(_variants()))
def test_to_braindecode_round_trips(name, variant):
    factory, shapes, _ = CASES[name]
    model, original = factory(3, shape=shapes[0], **variant)
    source = original.source
    with warnings.catch_warnings():  # braindecode's channel-order and size warnings
        warnings.simplefilter("ignore")
        fresh = type(source)(**_rebuild_kwargs(source, variant))
    fresh.load_state_dict(to_braindecode(model), strict=True)
    fresh.eval()
    x = torch.randn(2, *shapes[0])
    call = {"ch_names": model.cfg.channel_names} if name == "labram" else {}
    with torch.no_grad():
        torch.testing.assert_close(fresh(x, **call), original(x), atol=1e-6, rtol=1e-5)


def _rebuild_kwargs(source, variant):
    """The constructor arguments of a factory's source model."""
    sizes = {"n_chans": source.n_chans, "n_times": source.n_times, "n_outputs": source.n_outputs}
    name = type(source).__name__
    small = {
        "Labram": {"patch_size": 4, "conv_out_channels": 16, "num_layers": 2, "num_heads": 4},
        "CBraMod": {
            "n_layer": 2,
            "nhead": 4,
            "dim_feedforward": 24,
            "emb_dim": 6,
            "channels_kernel_stride_padding_norm": CBRAMOD_CONVS,
        },
        "EEGPT": {
            "patch_size": 4,
            "patch_stride": None,
            "embed_num": 2,
            "embed_dim": 16,
            "depth": 2,
            "num_heads": 4,
            "chan_proj_type": "none",
        },
        "PBT": {"d_input": 4, "embed_dim": 16, "num_layers": 2, "num_heads": 4},
    }[name]
    return {**sizes, "chs_info": source._chs_info, **small, **variant}


def test_criss_cross_is_a_base_mask_that_edge_sets_compose_with():
    model, _ = cbramod_model(0, shape=(3, 400))  # 3 channels x 2 patches, channel-major
    layout = model.layout
    _, cache = model.run_with_cache(model.example_input(2))
    scores = cache["attn_scores", 0]  # [batch, head, query, key]
    time, chan = torch.tensor(layout.time), torch.tensor(layout.channel)
    spatial = time[:, None] != time[None, :]  # heads 0, 1: across channels within a patch
    temporal = chan[:, None] != chan[None, :]  # heads 2, 3: across patches within a channel
    assert torch.equal(torch.isneginf(scores[:, :2]), spatial.expand(2, 2, 6, 6))
    assert torch.equal(torch.isneginf(scores[:, 2:]), temporal.expand(2, 2, 6, 6))
    # The zero blocks: spatial heads read and write the first half of d_model only.
    attn, half = model.blocks[0].attn, model.cfg.d_model // 2
    assert (attn.W_Q[:2, half:] == 0).all() and (attn.W_O[2:, :, :half] == 0).all()
    assert (attn.W_Q[:2, :half] != 0).any()
    # A user's edge set is cut on top of the architecture's: their union.
    mask = torch.zeros(4, 6, 6, dtype=torch.bool)
    mask[:, 0, 1] = True  # (c0, t0) may not read (c0, t1): a temporal edge only
    x = model.example_input(2)
    _, masked = model.run_with_cache(x, edge_masks={0: mask})
    cut = torch.isneginf(masked["attn_scores", 0])
    assert torch.equal(cut[:, 2:], (temporal | mask[2:]).expand(2, 2, 6, 6))
    assert torch.equal(cut[:, :2], spatial.expand(2, 2, 6, 6))  # already no edge there
    torch.testing.assert_close(model(x, edge_masks={0: mask}), masked_out(model, x, mask))


def masked_out(model, x, mask):
    return model.run_with_cache(x, edge_masks={0: mask})[0]


def test_eegpt_attends_within_a_patch_and_names_its_summary_tokens_cls():
    model, _ = eegpt_model(0, shape=(3, 8))  # 2 patches x (3 channels + 2 summary tokens)
    layout = model.layout
    assert layout.group == ("eeg",) * 3 + ("cls",) * 2 + ("eeg",) * 3 + ("cls",) * 2
    assert layout.time == (0,) * 5 + (1,) * 5
    _, cache = model.run_with_cache(model.example_input(1))
    cross_patch = torch.tensor(layout.time)[:, None] != torch.tensor(layout.time)[None, :]
    assert torch.equal(torch.isneginf(cache["attn_scores", 1][0]), cross_patch.expand(4, 10, 10))
    # Edge sets compile against the layout: cutting what flows to the summary tokens changes
    # the logits (the probe reads only them).
    masks = compile_edges("to_cls", model)
    assert not torch.allclose(
        model(model.example_input(2), edge_masks=masks), model(model.example_input(2))
    )


def test_layouts_carry_the_channel_names():
    model, _ = labram_model(0, shape=(4, 8))
    assert model.cfg.channel_names == ["FP1", "FZ", "C3", "CZ"]
    assert model.layout.channel_name(1) == "FP1" and model.layout.channel_name(0) is None
    projected, _ = eegpt_model(0, shape=(4, 8), chan_proj_type="conv1d_constraint")
    # With EEGPT's channel projection the tokens stand for its 19 standard channels.
    assert len(projected.layout.channel_names) == 19 and projected.cfg.n_channels == 4


def test_unembedding_where_the_classifier_reads_one_token():
    labram, _ = labram_model(0)
    assert labram.W_U.shape == (16, 4) and labram.unembed_positions == [0]
    pooled, _ = labram_model(0, use_mean_pooling=True)
    for model in (pooled, cbramod_model(0)[0], eegpt_model(0)[0]):
        with pytest.raises(UnsupportedFeatureError, match="unembedding"):
            model.W_U  # noqa: B018


@pytest.mark.parametrize("factory", [labram_model, pbt_model], ids=["labram", "pbt"])
def test_direct_attribution_reads_the_cls_unembedding_and_adds_up(factory):
    """A converted model whose classifier reads one token is attributed like IsoNet's CLS
    head: the parts of each window add up to its logit (no final norm in PBT: the stream is
    read as it is); a readout that is no linear map is refused by name."""
    from emg_lens.inspect import direct_attribution

    model, _ = factory(0)
    x = model.example_input(3)
    logits, cache = model.run_with_cache(x)
    labels = logits.argmax(-1)
    table = direct_attribution(model, cache, labels, direction="logit")
    total = table.groupby("sample")["value"].sum().to_numpy()
    expected = logits[torch.arange(3), labels].detach().double().numpy()
    assert abs(total - expected).max() < 1e-4
    cbramod, _ = cbramod_model(0)
    _, cache = cbramod.run_with_cache(cbramod.example_input(2))
    with pytest.raises(ArgumentError, match="HookedCBraMod"):
        direct_attribution(cbramod, cache, [0, 1])


@pytest.mark.parametrize("name", sorted(BRAINDECODE))
def test_checkpoint_round_trip_needs_no_braindecode(name, tmp_path):
    model, _ = BRAINDECODE[name](0)
    path = save_checkpoint(model, tmp_path / name)
    again = load_checkpoint(path)
    assert type(again) is type(model) and again.init_kwargs == model.init_kwargs
    x = model.example_input(2)
    assert torch.equal(again(x), model(x))


@pytest.mark.slow
def test_emg_lens_never_imports_braindecode(tmp_path):
    model, _ = pbt_model(0)
    path = save_checkpoint(model, tmp_path / "pbt")
    code = (
        "import sys; sys.modules['braindecode'] = None\n"  # any import of it would fail
        "import emg_lens.models, emg_lens.checkpoints, emg_lens.studies, emg_lens.discovery\n"
        f"m = emg_lens.checkpoints.load_checkpoint({str(path)!r})\n"
        "print(type(m).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "HookedPBT"


def test_models_that_cannot_convert_are_refused_by_name():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        biot = bd.BIOT(n_chans=2, n_outputs=2, n_times=400, sfreq=200)
        lstm = bd.DeepSleepNet(n_chans=1, n_outputs=2, n_times=3000, sfreq=100)
        other = bd.EEGNet(n_chans=2, n_outputs=2, n_times=64)
    with pytest.raises(ConversionError, match=r"BIOT.*linear attention.*Supported: Labram"):
        from_braindecode(biot)
    with pytest.raises(ConversionError, match=r"DeepSleepNet.*LSTM"):
        from_braindecode(lstm)
    with pytest.raises(ConversionError, match=r"EEGNet is not one of.*Labram, CBraMod, EEGPT, PBT"):
        from_braindecode(other)
    with pytest.raises(ConversionError, match="converts braindecode models"):
        from_braindecode(nn.TransformerEncoderLayer(8, 2))


def test_weights_that_do_not_fit_are_refused_naming_the_tensor():
    _, original = pbt_model(0)
    source = original.source
    source.final_layer = nn.Linear(16, 5)  # the classifier no longer fits n_outputs=4
    with pytest.raises(ConversionError, match=r"final_layer\.weight .*does not fit head\.W_U"):
        from_braindecode(source)
    _, original = labram_model(0)
    with pytest.raises(ConversionError, match=r"'XX'.* not in LaBraM's channel table"):
        from_braindecode(original.source, ch_names=["FP1", "FZ", "C3", "CZ", "C4", "XX"])


# A transformer block of each architecture, where a hook or a patch changes what it computes.
BLOCKS = {
    "labram": "blocks.0",
    "cbramod": "encoder.layers.0",
    "eegpt": "target_encoder.blocks.0",
    "pbt": "transformer_encoder.encoder_block.0",
}

DOUBLED = {**BLOCKS, "labram": "final_layer", "pbt": "final_layer"}


def _doubled(module: nn.Module) -> None:
    """Swap the module's class for a subclass whose forward doubles the output: what no hook
    or instance attribute shows, so only the probe comparison can see it."""
    cls = type(module)
    module.__class__ = type(
        "Doubled", (cls,), {"forward": lambda self, *a, **k: 2 * cls.forward(self, *a, **k)}
    )


@pytest.mark.parametrize("name", sorted(BRAINDECODE))
def test_hooks_and_patched_forwards_on_the_source_are_refused_by_name(name):
    """Issue 37 item 3: the converter reads weights, so what the source's forward runs beyond
    its classes (a hook, a patched forward, a subclass) would be dropped: refused, by name
    where it can be named, by the probe comparison otherwise."""
    _, original = BRAINDECODE[name](0)
    source, path = original.source, BLOCKS[name]
    cls_name = type(source).__name__
    block = source.get_submodule(path)
    handle = block.register_forward_hook(lambda module, inputs, out: 2 * out)
    with pytest.raises(ConversionError, match=rf"{cls_name}\.{path} has a forward hook"):
        from_braindecode(source)
    handle.remove()
    handle = source.register_forward_pre_hook(lambda module, inputs: None)
    with pytest.raises(ConversionError, match=rf"{cls_name} has a forward pre-hook"):
        from_braindecode(source)
    handle.remove()
    forward = block.forward
    block.forward = lambda *args, **kwargs: 2 * forward(*args, **kwargs)
    with pytest.raises(ConversionError, match=rf"{cls_name}\.{path} has its own forward"):
        from_braindecode(source)
    del block.forward
    handle = torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: None)
    try:
        with pytest.raises(ConversionError, match="global forward hook"):
            from_braindecode(source)
    finally:
        handle.remove()
    # An output doubled by a subclass: only the probe comparison can see it. (LaBraM's and
    # PBT's tiny models barely depend on a block, behind a final norm and near-zero weights:
    # their logits are doubled instead.)
    head = source.get_submodule(DOUBLED[name])
    _doubled(head)
    with pytest.raises(ConversionError, match=r"differs from the source by [0-9.e+-]+ \(max"):
        from_braindecode(source)
    head.__class__ = type(head).__mro__[1]
    # Clean again, it converts; each module's own training flag is back where it was.
    source.train()
    source.get_submodule(path).eval()
    assert isinstance(from_braindecode(source), HOOKED[name])
    assert source.training and not source.get_submodule(path).training


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cbramod_cast_to_half_precision_runs_and_stays_close(dtype):
    """Issue 37 item 6: torch has no half or bfloat16 FFT on CPU, so CBraMod's spectrum is
    taken in float32 and cast back; the half model then computes the float32 original's
    function to half precision's rounding, on both attention paths."""
    model, original = cbramod_model(0)
    x = model.example_input(3)
    expected = original(x)
    model = model.to(dtype)
    tolerance = 8 * torch.finfo(dtype).eps * (1 + float(expected.abs().max()))
    with torch.no_grad():
        fast = model(x)
    explicit, _ = model.run_with_cache(x)
    for out in (fast, explicit):
        assert out.dtype == dtype
        assert (out.float() - expected).abs().max() <= tolerance


def test_classifiers_the_converters_do_not_compute_are_refused_by_name():
    """Issue 37 item 6: a probe or classifier replaced by another module is named, with what
    is supported, instead of a raw AttributeError or KeyError."""

    def mlp(linear: nn.Linear) -> nn.Sequential:
        return nn.Sequential(nn.Linear(linear.in_features, 8), nn.GELU(), nn.Linear(8, 4))

    source = eegpt_model(0)[1].source
    source.final_layer.probe1 = mlp(source.final_layer.probe1)
    with pytest.raises(
        ConversionError, match=r"EEGPT\.final_layer\.probe1 is a Sequential; supported"
    ):
        from_braindecode(source)
    source = pbt_model(0)[1].source
    source.final_layer = nn.Sequential(source.final_layer)
    with pytest.raises(ConversionError, match=r"PBT\.final_layer is a Sequential; support"):
        from_braindecode(source)
    source = cbramod_model(0)[1].source
    source.proj_out = nn.Sequential(mlp(source.proj_out[0]))
    with pytest.raises(ConversionError, match=r"CBraMod\.proj_out is a Sequential\(Seq"):
        from_braindecode(source)


@pytest.mark.parametrize("built_with", ["n_chans", "n_times", "neither"])
def test_cbramod_built_without_a_size_converts_at_the_size_its_classifier_takes(built_with):
    """Issue 61: braindecode builds CBraMod without n_times or n_chans with a LazyLinear
    classifier, which its first call builds for that window. Before it, the conversion is
    refused saying so; after it, the classifier (channels x patches x emb_dim features) fixes
    the size the other leaves: the model converts at it and computes the original's function.
    Built with neither, channels x patches is all it fixes: refused naming ch_names=, which
    converts it."""
    sizes = {"n_chans": {"n_chans": 3}, "n_times": {"n_times": 600}, "neither": {}}[built_with]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        source = bd.CBraMod(
            n_outputs=2,
            **sizes,
            n_layer=1,
            nhead=4,
            dim_feedforward=16,
            emb_dim=6,
            channels_kernel_stride_padding_norm=CBRAMOD_CONVS,
        ).eval()
    with pytest.raises(ConversionError, match=r"LazyLinear not yet built.*run the model once"):
        from_braindecode(source)
    x = torch.randn(2, 3, 600, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = source(x)  # builds the classifier for 3 channels x 3 patches
    given = {}
    if built_with == "neither":
        with pytest.raises(ConversionError, match=r"without n_chans .* pass .*ch_names=\[\.\.\.\]"):
            from_braindecode(source)
        given = {"ch_names": ["C3", "Cz", "C4"]}
    model = from_braindecode(source, **given)
    assert model.input_shape == (3, 600)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.unchecked  # rows that the annotation, list[int], refuses
def test_labram_position_rows_are_rows_of_its_table():
    sizes = {"n_chans": 2, "n_times": 16, "n_outputs": 3, "patch_size": 8, "num_heads": 2}
    cfg = HookedLabram.config(**sizes, conv_out_channels=8, num_layers=1)
    for rows in ([39], [39, 128], [39, True], [39, 43.0]):  # one per channel, ints in 0..127
        with pytest.raises(ArgumentError, match=r"position_rows must .*, got \[39(, |\])"):
            HookedLabram(cfg, position_rows=rows)
    rows = HookedLabram(cfg, position_rows=[39, np.int64(43)])._init_kwargs["position_rows"]
    assert rows == [39, 43] and all(type(r) is int for r in rows)  # plain ints: they go to JSON


SMALL = {
    "PBT": {"d_input": 4, "embed_dim": 16, "num_layers": 1, "num_heads": 4},
    "Labram": {"patch_size": 4, "conv_out_channels": 16, "num_layers": 1, "num_heads": 4},
    "EEGPT": {
        **{"patch_size": 4, "patch_stride": None, "embed_num": 2, "embed_dim": 16},
        **{"depth": 1, "num_heads": 4, "chan_proj_type": "none"},
    },
    "CBraMod": {
        **{"n_layer": 1, "nhead": 4, "dim_feedforward": 24, "emb_dim": 6},
        "channels_kernel_stride_padding_norm": CBRAMOD_CONVS,
    },
}


def _source(name: str, n_times: int | None = None, *, sized: bool = True, **kwargs) -> nn.Module:
    """A small braindecode ``name`` of 6 named channels (``sized=False``: built without
    n_chans, chs_info and n_times), not converted."""
    n_times = n_times or (400 if name == "CBraMod" else 8)
    sizes = {"n_chans": 6, "n_times": n_times, "chs_info": _chs(6)} if sized else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        return getattr(bd, name)(n_outputs=2, **{**SMALL[name], **sizes, **kwargs}).eval()


def _edited(name: str, edit, **kwargs) -> nn.Module:
    source = _source(name, **kwargs)
    edit(source)
    return source


def _relu_in_layer_1(pbt):
    pbt.transformer_encoder.encoder_block[1].feed_forward.activation = nn.ReLU()


def _odd_eps(cbramod):
    cbramod.encoder.layers[0].norm2.eps = 1e-3


def _half_without_bias(cbramod):
    layer = cbramod.encoder.layers[0]
    old = layer.self_attn_s
    layer.self_attn_s = nn.MultiheadAttention(
        old.embed_dim, old.num_heads, bias=False, batch_first=True
    )


def _causal(eegpt):
    eegpt.target_encoder.blocks[0].attn.is_causal = True


def _cbramod_built_at_3_channels() -> nn.Module:
    source = _source("CBraMod", sized=False)
    with torch.no_grad():
        source(torch.randn(1, 3, 600))  # builds its classifier: 3 channels x 3 patches
    return source


def _eegpt_config():
    return HookedEEGPT.config(
        n_chans=2, n_times=8, n_outputs=2, patch_size=4, patch_stride=None, embed_num=1,
        embed_dim=16, depth=1, num_heads=2, chan_proj_type="none",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: from_braindecode(_source("PBT"), ch_names="C3"),
            ArgumentError,
            r"ch_names must be a list of channel names, got str",
        ),
        (
            lambda: from_braindecode(_source("PBT"), ch_names=["C3", "C4"]),
            ArgumentError,
            r"ch_names must be n_chans=6 names, got 2",
        ),
        (
            lambda: from_braindecode(_edited("PBT", _relu_in_layer_1, num_layers=2)),
            ConversionError,
            r"encoder_block\.1\.feed_forward\.activation is relu, .*encoder_block\.0\..* gelu",
        ),
        (
            lambda: from_braindecode(_source("PBT", num_layers=0)),
            ConversionError,
            r"the model has no layer to read its activation function from",
        ),
        (
            lambda: from_braindecode(_edited("CBraMod", _odd_eps)),
            ConversionError,
            r"CBraMod: the norms must share one eps, got 1e-05, \{'encoder.layers.0.norm2': 0.001",
        ),
        (
            lambda: from_braindecode(_source("CBraMod", n_times=500)),
            ConversionError,
            r"CBraMod needs patch_size=200 and n_times a multiple of it, .*n_times=500",
        ),
        (
            lambda: from_braindecode(_cbramod_built_at_3_channels(), ch_names=["C3", "C4"]),
            ConversionError,
            r"CBraMod's classifier reads 54 features, which no window of 2 channels gives",
        ),
        (
            lambda: from_braindecode(_edited("CBraMod", _half_without_bias)),
            ConversionError,
            r"encoder\.layers\.0\.self_attn_s has bias=False, in_proj_weight \[48, 16\]",
        ),
        (
            lambda: from_braindecode(_edited("EEGPT", _causal)),
            ConversionError,
            r"target_encoder\.blocks\.0 has act='gelu', use_rope=False, is_causal=True",
        ),
        (
            lambda: from_braindecode(_source("EEGPT", chan_proj_type="linear", n_chans_target=4)),
            ConversionError,
            r"EEGPT.chans_id names 19 channels but its encoder sees 4",
        ),
        (
            lambda: from_braindecode(_source("Labram", neural_tokenizer=False)),
            ConversionError,
            r"Labram with neural_tokenizer=False and window_size=\(1, 2\); supported",
        ),
        (
            lambda: from_braindecode(_source("Labram", chs_info=None)),
            ConversionError,
            r"Labram without chs_info needs ch_names=\[\.\.\.\], 6 names of LaBraM's table",
        ),
        (
            lambda: from_braindecode(_source("Labram", n_times=200)),
            ConversionError,
            r"Labram.embed_dim=16 must be its temporal convolutions' 16 features, and >= its 50",
        ),
        (
            lambda: HookedCBraMod(EncoderConfig.preset("tiny")),
            ArgumentError,
            r"HookedCBraMod needs a config from HookedCBraMod.config",
        ),
        (
            lambda: HookedLabram(
                EncoderConfig.preset("tiny", use_cls_token=False), position_rows=[]
            ),
            ArgumentError,
            r"HookedLabram needs a config from HookedLabram.config",
        ),
        (
            lambda: HookedPBT(EncoderConfig.preset("tiny")),
            ArgumentError,
            r"HookedPBT needs a config with use_cls_token=True, final_norm=False",
        ),
        (
            lambda: HookedEEGPT(EncoderConfig.preset("tiny"), channel_ids=[0] * 6),
            ArgumentError,
            r"HookedEEGPT: n_ctx=7 is not 0 patches x \(19 channels \+ 4 summary tokens\)",
        ),
        (
            lambda: HookedEEGPT(
                _eegpt_config(),
                channel_ids=[0],
                patch_size=4,
                patch_stride=None,
                embed_num=1,
                chan_proj_type="none",
            ),
            ArgumentError,
            r"channel_ids must be 2 rows, got \[0\]",
        ),
        (
            lambda: HookedCBraMod.config(
                n_chans=3, n_times=400, n_outputs=2, nhead=3, convs=[[4, 49, 25, 24, [2, 4]]]
            ),
            ConversionError,
            r"CBraMod's nhead=3 must be even and divide d_model=32",
        ),
        (
            lambda: HookedPBT.config(n_chans=2, n_times=9, n_outputs=2, d_input=4),
            ConversionError,
            r"PBT's n_times=9 must be a multiple of d_input 4",
        ),
    ],
    ids=[
        "ch_names-a-string",
        "ch_names-not-n_chans",
        "activations-differ",
        "no-layers",
        "eps-differ",
        "cbramod-n_times-not-whole-patches",
        "cbramod-classifier-fits-no-window",
        "cbramod-half-without-bias",
        "eegpt-causal",
        "eegpt-projection-not-19",
        "labram-no-tokenizer",
        "labram-unnamed-channels",
        "labram-more-patches-than-width",
        "hooked-cbramod-other-config",
        "hooked-labram-other-config",
        "hooked-pbt-other-config",
        "hooked-eegpt-other-n_ctx",
        "hooked-eegpt-channel-ids",
        "cbramod-config-odd-heads",
        "pbt-config-n_times",
    ],
)
def test_what_a_converter_does_not_compute_is_refused_by_name(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.unchecked  # the annotation, list[str], refuses it in the suite
def test_channel_names_that_are_not_strings_are_refused():
    with pytest.raises(ArgumentError, match=r"ch_names must be a list of channel names, got \[0,"):
        from_braindecode(_source("PBT"), ch_names=list(range(6)))


def _attention_biased_in_layer_0(pbt):
    """Layer 0's attention given zero biases: the layers disagree on bias_transformer."""
    attention = pbt.transformer_encoder.encoder_block[0].mhsa
    for name in ("attn", "proj"):
        old = getattr(attention, name)
        new = nn.Linear(old.in_features, old.out_features, dtype=old.weight.dtype)
        with torch.no_grad():
            new.weight.copy_(old.weight)
            new.bias.zero_()
        setattr(attention, name, new)


def test_weights_the_key_table_does_not_have_are_refused_by_name():
    with pytest.raises(
        ConversionError,
        match=r"from_braindecode\(PBT\): the source has no transformer_encoder\.encoder_block\.0\."
        r"layer_norm_att\.bias, from which blocks\.0\.ln1\.b is read",
    ):
        from_braindecode(_edited("PBT", _attention_biased_in_layer_0, num_layers=2))
    model = from_braindecode(_source("PBT"))
    model.register_buffer("extra", torch.zeros(1))  # a user's own entry: braindecode has none
    with pytest.raises(ConversionError, match=r"no row of the key table maps extra"):
        to_braindecode(model)
