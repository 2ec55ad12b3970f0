"""braindecode's attention models opened by `attach_braindecode` from one table (`ZOO`,
issue 38 item 4): each is a row of the test models' table (`tests.unit.models.table`, built
small), where test_hook_contract checks its unhooked output is the original's bit for bit, a
masked forward finite and different, every attention call hooked. Here: PBT at any length (its
patches across channels are "mixed" tokens); CBraMod built without a size opens at any length
(one attached model, its layouts built from each input's size); the converted architectures'
attached cuts equal their converted models' on the same mask, also where CBraMod and EEGPT
fold patches or channels into the batch and the cut differs between them."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from emg_lens.errors import ConversionError, InputShapeError
from emg_lens.models import attach
from emg_lens.models.attached.find import unbuilt
from emg_lens.models.attached.zoo import NOT_YET, REFUSED, ZOO, attach_braindecode
from emg_lens.models.attached.zoo.entries import INTERPOLATED
from tests.unit.models import table
from tests.unit.models.softmax_attention import masked_forward

bd = pytest.importorskip("braindecode.models")

C = table.ZOO_C
CONVERTED = table.ZOO_CONVERTED


def test_the_table_covers_the_tested_models():
    # the interpolating wrappers are their bases' entries (their inputs are interpolated onto
    # the bases' whole montages): test_zoo_constructions and test_zoo_roster open them
    assert all(ZOO[wrapper] is ZOO[base] for wrapper, base in INTERPOLATED.items())
    tested = set(ZOO) - set(INTERPOLATED)
    assert tested == set(table.ZOO_SMALL) | set(CONVERTED)
    assert {f"zoo_{name}" for name in tested} <= set(table.names("attached"))
    assert {name for name in tested if ZOO[name].converter} == set(CONVERTED)


def test_attach_braindecode_is_importable_beside_attach_and_loads_nothing_until_used():
    # issue 74: the API index and a converter's refusal name emg_lens.models.attach_braindecode,
    # which raised ImportError (it lived in the zoo module only)
    from emg_lens.models import attach_braindecode as exported

    assert exported is attach_braindecode
    loaded = "import emg_lens.models, sys; print(sorted(m for m in sys.modules if 'zoo' in m"
    loaded += " or m.split('.')[0] in ('braindecode', 'torch')))"
    assert subprocess.check_output([sys.executable, "-c", loaded], text=True).strip() == "[]"


@pytest.mark.parametrize("name", ["PBT", "Labram"])
def test_attached_cuts_equal_the_converted_models(name):
    converted, original = table.build(f"braindecode_{name.lower()}")
    model = attach_braindecode(original.source)
    assert model.layout == converted.layout
    x = converted.example_input(3)
    n = converted.layout.n_tokens
    cut = torch.zeros(n, n, dtype=torch.bool)
    cut[0, 1:4] = True  # the CLS token reads no token of the first channel
    cut[5, 2] = True
    for layer in range(converted.cfg.n_layers):
        masks = {layer: cut}
        with torch.no_grad():
            gap = (model(x, edge_masks=masks) - converted(x, edge_masks=masks)).abs().max()
        assert gap <= 1e-5, (layer, gap)


def test_models_with_no_softmax_attention_are_refused_by_name():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        biot = bd.BIOT(
            n_chans=C, n_times=table.ZOO_T, n_outputs=3, embed_dim=16, num_heads=2, num_layers=1
        )
    assert "BIOT" in REFUSED
    with pytest.raises(ConversionError, match="BIOT cannot be attached: its attention is linear"):
        attach_braindecode(biot)


@pytest.mark.parametrize("name", ["SignalJEPA_PostLocal", "SignalJEPA_PreLocal"])
def test_signal_jepas_without_a_transformer_are_refused_by_name(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = getattr(bd, name)(n_chans=C, n_times=table.ZOO_T, n_outputs=3)
    with pytest.raises(
        ConversionError, match=rf"{name} cannot be attached: .* it has no attention"
    ):
        attach_braindecode(model)


def test_reve_with_attention_pooling_is_refused_by_name():
    """REVE's attention pooling (a learned query over every token) runs its softmax in
    REVE.forward itself, where no hook reaches it: refused, not opened without it."""
    kwargs = {**table.ZOO_SMALL["REVE"], "attention_pooling": True}
    with table.reve_positions([ch["ch_name"] for ch in table.ZOO_CHS]):
        reve = bd.REVE(n_chans=C, n_times=table.ZOO_T, n_outputs=3, **kwargs)
    with pytest.raises(ConversionError, match=r"REVE cannot be attached: .*attention_pooling=True"):
        attach_braindecode(reve)


def test_a_softmax_model_the_zoo_does_not_open_yet_says_why(monkeypatch):
    assert NOT_YET == {}  # REVE, the last, opens since issue 58
    monkeypatch.setitem(NOT_YET, "Future", "its tokens are not known yet")
    future = type("Future", (torch.nn.Module,), {"__module__": "braindecode.models.future"})()
    with pytest.raises(ConversionError, match="Future is not in the zoo yet: its tokens are not"):
        attach_braindecode(future)


@pytest.mark.slow
def test_a_3d_softmax_outside_named_modules_is_refused_naming_attention_and_its_modules():
    """DANCE's Perceiver computes its softmax over [batch * heads, query, key]: without
    attention= that counts nowhere, and the refusal says so, naming the modules it ran in
    (its attention modules first) and the attention= that opens it; its zoo entry names
    them, and opens it."""
    source = table.zoo_source("DANCE")
    one = table.TokenLayout(("time",), (-1,), (-1,))
    with pytest.raises(
        ConversionError,
        match=r"3-D tensor \[batch \* heads, query, key\] ran in 'perceiver.layers.0.0.fn', "
        r"'perceiver.layers.0.2.0.0.fn', .* attention='perceiver.layers.0.0.fn'",
    ):
        attach(source, layout=one, n_samples=table.ZOO_T)
    assert ZOO["DANCE"].attention == "perceiver.layers.*.fn"
    model = attach_braindecode(source)
    assert [call.kind for call in model.calls] == ["softmax"] * 4
    assert model.layout_of(0).query_side.group == ("query",) * 8


@pytest.mark.slow
def test_codebrain_cuts_within_its_sliding_window_equal_the_masked_original():
    """CodeBrain at swa_window_size=3: each token attends to its neighbours in its
    channel-major order; a cut inside the window acts and equals its forward masked with plain
    torch, one outside changes nothing (its own mask cut it already); no warning (only
    swa_window_size=1 warns)."""
    kwargs = {**table.ZOO_SMALL["CodeBrain"], "swa_window_size": 3}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        source = bd.CodeBrain(n_chans=C, n_times=table.ZOO_T, n_outputs=3, **kwargs).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = attach_braindecode(source)
    x = model.example_input(2)
    inside, outside = torch.zeros(2, 16, 16, dtype=torch.bool)
    inside[5, 4] = inside[5, 6] = True
    outside[5, 9] = True
    with torch.no_grad():
        expected = source(x)
        cut = model(x, edge_masks={1: inside})
        assert torch.equal(model(x, edge_masks={1: outside}), expected)
    assert not torch.equal(cut, expected)
    torch.testing.assert_close(cut, masked_forward(source, x, {1: inside}), atol=1e-5, rtol=1e-5)


def _folded_parity(converted, model, attached_masks, converted_masks) -> float:
    x = converted.example_input(3)
    with torch.no_grad():
        ours = model(x, edge_masks=attached_masks)
        theirs = converted(x, edge_masks=converted_masks)
    assert not torch.equal(ours, model(x))  # the cut acts
    return float((ours - theirs).abs().max())


@pytest.mark.parametrize("layer", [0, 1])
def test_cbramod_attached_per_patch_cuts_equal_the_converted_models(layer):
    """CBraMod's spatial calls see the channels of one patch and its temporal calls the
    patches of one channel, each batched over the other axis; the converted model holds both
    as one attention over every (channel, patch) token with a base mask. A cut the same in
    every patch (spatial) and every channel (temporal) is one mask on either side."""
    converted, original = table.build("braindecode_cbramod")
    model = attach_braindecode(original.source)
    channels = len(converted.cfg.channel_names)
    patches = converted.layout.n_tokens // channels
    half = converted.cfg.n_heads // 2  # heads 0..half-1 spatial, the rest temporal
    spatial = torch.zeros(channels, channels, dtype=torch.bool)
    spatial[0, 1] = spatial[2, 0] = True
    temporal = torch.zeros(patches, patches, dtype=torch.bool)
    temporal[0, 1] = True
    n = converted.layout.n_tokens
    cut = torch.zeros(converted.cfg.n_heads, n, n, dtype=torch.bool)
    for c1 in range(channels):  # converted tokens are channel-major: c * patches + p
        for c2 in range(channels):
            for p in range(patches):
                cut[:half, c1 * patches + p, c2 * patches + p] = spatial[c1, c2]
    for c in range(channels):
        for p1 in range(patches):
            for p2 in range(patches):
                cut[half:, c * patches + p1, c * patches + p2] = temporal[p1, p2]
    masks = {2 * layer: spatial, 2 * layer + 1: temporal}
    assert _folded_parity(converted, model, masks, {layer: cut}) <= 1e-5


@pytest.mark.parametrize("layer", [0, 1])
def test_eegpt_attached_per_patch_cuts_equal_the_converted_models(layer):
    """EEGPT attends within each patch (its channels, then its summary tokens), batched over
    the patches; the converted model holds every patch's tokens in one attention, patch-major,
    with a base mask between patches. A cut the same in every patch is one mask either side."""
    converted, original = table.build("braindecode_eegpt")
    model = attach_braindecode(original.source)
    per_patch = model.layout_of(0).n_tokens
    patches = converted.layout.n_tokens // per_patch
    within = torch.zeros(per_patch, per_patch, dtype=torch.bool)
    within[0, per_patch - 2] = within[per_patch - 1, 3] = True  # channel 0 - a summary token
    cut = torch.block_diag(*[within] * patches)
    assert _folded_parity(converted, model, {layer: within}, {layer: cut}) <= 1e-5


def _random_cut(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """A random cut over ``[..., q, q]`` that leaves every query its own key."""
    cut = torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < 0.4
    return cut & ~torch.eye(shape[-1], dtype=torch.bool)


@pytest.mark.parametrize("rows", [1, 3])
def test_cbramod_attached_cuts_that_differ_per_patch_and_channel_equal_the_converted_models(rows):
    """A spatial cut that differs between patches ``[rows, patches, heads, C, C]`` and a
    temporal one that differs between channels ``[rows, channels, heads, P, P]`` (``rows`` 3:
    between input windows too), in both layers, equal the converted model's cut placed on its
    (channel, patch) tokens, head by head."""
    converted, original = table.build("braindecode_cbramod")
    model = attach_braindecode(original.source)
    channels = len(converted.cfg.channel_names)
    patches = converted.layout.n_tokens // channels
    assert [model.folds_of(layer) for layer in range(4)] == [patches, channels] * 2
    assert all(fold.batch_major for fold in model.folds)
    half = converted.cfg.n_heads // 2  # heads 0..half-1 spatial, the rest temporal
    n = converted.layout.n_tokens
    attached, theirs = {}, {}
    for layer in range(converted.cfg.n_layers):
        spatial = _random_cut((rows, patches, half, channels, channels), seed=2 * layer)
        temporal = _random_cut((rows, channels, half, patches, patches), seed=2 * layer + 1)
        cut = torch.zeros(rows, converted.cfg.n_heads, n, n, dtype=torch.bool)
        for p in range(patches):  # converted tokens are channel-major: c * patches + p
            at = torch.arange(channels) * patches + p
            cut[:, :half, at[:, None], at[None, :]] = spatial[:, p]
        for c in range(channels):
            at = c * patches + torch.arange(patches)
            cut[:, half:, at[:, None], at[None, :]] = temporal[:, c]
        attached |= {2 * layer: spatial, 2 * layer + 1: temporal}
        theirs[layer] = cut
    assert _folded_parity(converted, model, attached, theirs) <= 1e-5


@pytest.mark.parametrize("rows", [1, 3])
def test_eegpt_attached_cuts_that_differ_per_patch_equal_the_converted_models(rows):
    """A cut within each patch that differs between patches (and, ``rows`` 3, between input
    windows), ``[rows, patches, heads, tokens, tokens]``, equals the converted model's cut on
    each patch's block of its patch-major tokens."""
    converted, original = table.build("braindecode_eegpt")
    model = attach_braindecode(original.source)
    per_patch = model.layout_of(0).n_tokens
    patches = converted.layout.n_tokens // per_patch
    heads = converted.cfg.n_heads
    assert model.folds_of(0) == model.folds_of(1) == patches and model.folds[0].batch_major
    n = converted.layout.n_tokens
    attached, theirs = {}, {}
    for layer in range(converted.cfg.n_layers):
        within = _random_cut((rows, patches, heads, per_patch, per_patch), seed=layer)
        cut = torch.zeros(rows, heads, n, n, dtype=torch.bool)
        for p in range(patches):
            at = p * per_patch + torch.arange(per_patch)
            cut[:, :, at[:, None], at[None, :]] = within[:, p]
        attached[layer], theirs[layer] = within, cut
    assert _folded_parity(converted, model, attached, theirs) <= 1e-5


def test_pbt_patches_that_run_across_channels_are_mixed_tokens():
    """braindecode's default PBT window (3 channels x 1,000 samples, patches of 64 of the
    flattened window): 46 patches, two of them (960..1,023 and 1,984..2,047) running across
    channels; each is a "mixed" token of no one channel, every other its channel's; a cut from
    the CLS token to a mixed token acts."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        source = bd.PBT(n_chans=3, n_times=1000, n_outputs=2, embed_dim=16, num_layers=1)
    model = attach_braindecode(source.eval())
    layout = model.layout
    assert layout.n_tokens == 1 + 3000 // 64
    mixed = [i for i, g in enumerate(layout.group) if g == "mixed"]
    assert mixed == [1 + 15, 1 + 31] and all(layout.channel[i] == -1 for i in mixed)
    for k in range(46):  # token 1 + k: flat samples 64k .. 64k + 63
        if 1 + k not in mixed:
            assert layout.channel[1 + k] == 64 * k // 1000 == (64 * k + 63) // 1000
    x = model.example_input(2)
    cut = torch.zeros(layout.n_tokens, layout.n_tokens, dtype=torch.bool)
    cut[0, mixed] = True
    with torch.no_grad():
        assert torch.equal(model(x), source(x))
        assert not torch.equal(model(x, edge_masks={0: cut}), source(x))


SMALL_CBRAMOD = {  # CBraMod at a small width: d_model 32 (4 conv channels x 8), 4 heads
    "n_layer": 1,
    "nhead": 4,
    "dim_feedforward": 16,
    "emb_dim": 8,
    "channels_kernel_stride_padding_norm": [[4, 49, 25, 24, [2, 4]]],
}


def _cbramod(**kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        return bd.CBraMod(n_outputs=2, **kwargs, **SMALL_CBRAMOD).eval()


def _cut_by_hook(model, x, layer, cut):
    """The model's output with ``cut`` ([q, k], True = cut) set to -inf at layer's scores by a
    hook: what the same edge mask must give."""

    def block(scores, hook):
        return scores.masked_fill(cut, float("-inf"))

    with torch.no_grad():
        return model.run_with_hooks(x, fwd_hooks=[(f"blocks.{layer}.attn.hook_attn_scores", block)])


@pytest.mark.parametrize("n_chans", [3, None])
def test_cbramod_built_without_n_times_opens_at_any_length(n_chans):
    """One CBraMod built without n_times (and, None, without n_chans): one attached model runs
    windows of two lengths (and, where no channel count was built in, two channel counts),
    each one's layouts built from its size: the spatial call over its channels, folded over its
    patches, the temporal call over its patches, folded over its channels. Unhooked outputs are
    the original's bit for bit; a cut acts, as a hook setting -inf there does; a length its
    forward fails on (not whole patches of 200) is refused by name."""
    source = _cbramod(n_chans=n_chans, return_encoder_output=True)
    model = attach_braindecode(source)
    sizes = [(3, 400), (3, 1000)] if n_chans else [(3, 400), (5, 1000)]
    for channels, samples in sizes:
        patches = samples // 200
        x = torch.randn(2, channels, samples, generator=torch.Generator().manual_seed(samples))
        assert model.layout_of(0, input_shape=(channels, samples)).n_tokens == channels
        assert model.layout_of(1, input_shape=(channels, samples)).n_tokens == patches
        assert model.folds_of(0, (channels, samples)) == patches
        assert model.folds_of(1, (channels, samples)) == channels
        with torch.no_grad():
            expected = source(x)
            assert torch.equal(model(x), expected)
            _, cache = model.run_with_cache(x)
        assert cache["pattern", 0].shape == (2 * patches, 2, channels, channels)
        assert cache["pattern", 1].shape == (2 * channels, 2, patches, patches)
        for layer, n in ((0, channels), (1, patches)):
            cut = torch.zeros(n, n, dtype=torch.bool)
            cut[0, 1] = True
            with torch.no_grad():
                masked = model(x, edge_masks={layer: cut})
            assert not torch.equal(masked, expected)
            torch.testing.assert_close(masked, _cut_by_hook(model, x, layer, cut))
    with pytest.raises(
        InputShapeError,
        match=r"got \[1, 3, 1100\]; CBraMod also opens other sizes, but not this one: on "
        r"inputs of 3 channels x 1100 samples its forward fails \(EinopsError",
    ):
        model(torch.randn(1, 3, 1100))
    if n_chans:
        with pytest.raises(
            InputShapeError, match=r"got \[1, 4, 400\].*opened for 3 channels .*not 4"
        ):
            model(torch.randn(1, 4, 400))


@pytest.mark.unchecked
def test_n_times_is_any_integer_numpy_ones_too():
    # np.int64(400), an integer, was refused as "not a positive int"
    model = attach_braindecode(_cbramod(n_chans=3), n_times=np.int64(400))
    assert model.layout_of(1).n_tokens == 2
    for bad in (True, 400.0, np.float64(400), 0):
        with pytest.raises(ConversionError, match="n_times must be a positive int"):
            attach_braindecode(_cbramod(n_chans=3), n_times=bad)


def test_cbramod_whose_classifier_is_not_built_yet_is_left_unbuilt():
    """braindecode gives a CBraMod built without n_times a LazyLinear classifier, built by its
    first call: attaching probes a copy, so the original's classifier stays unbuilt (its
    length still the first call's to fix). The first call through the attached model builds
    it, as calling the original would; then a window of another length is refused by name,
    as the original fails on it."""
    source = _cbramod(n_chans=3)
    model = attach_braindecode(source)
    assert unbuilt(source) and model.input_shape == (3, 200)
    x = torch.randn(2, 3, 600)
    with torch.no_grad():
        y = model(x)
        assert not unbuilt(source) and source.final_layer[1].in_features == 3 * 3 * 8
        assert torch.equal(y, source(x))
        _, cache = model.run_with_cache(x)
    assert cache["pattern", 1].shape == (6, 2, 3, 3)
    with pytest.raises(
        InputShapeError,
        match=r"not this one: on inputs of 3 channels x 400 samples its forward fails",
    ):
        model.run_with_cache(torch.randn(1, 3, 400))


def test_eegpt_with_a_channel_projection_has_a_token_per_projected_channel():
    """With a channel projection EEGPT's encoder sees its n_chans_target projected channels
    (braindecode's ``channel_names``), not the inputs: 4 inputs give 19 channel tokens and the
    2 summary tokens per patch (they were read as 4 channels and 17 summary tokens), and a
    cut the same in every patch equals the converted model's."""
    from tests.unit.models.converted_models import eegpt_model

    converted, original = eegpt_model(0, shape=(4, 8), chan_proj_type="conv1d_constraint")
    model = attach_braindecode(original.source)
    layout = model.layout_of(0)
    target = original.source.n_chans_target
    assert layout.channel_names == tuple(original.source.channel_names)
    assert [layout.group.count(g) for g in ("eeg", "query")] == [target, 2]
    per_patch = layout.n_tokens
    within = torch.zeros(per_patch, per_patch, dtype=torch.bool)
    within[0, per_patch - 1] = within[per_patch - 2, target - 1] = True
    cut = torch.block_diag(*[within] * (converted.layout.n_tokens // per_patch))
    assert _folded_parity(converted, model, {1: within}, {1: cut}) <= 1e-5


def test_eegpt_refuses_names_that_would_label_another_channels_embedding():
    """EEGPT fixes each input channel's embedding from chs_info when it is built; names that
    braindecode would embed otherwise would label a token with another channel."""
    from emg_lens.errors import ConversionError
    from emg_lens.models import from_braindecode
    from tests.unit.models.converted_models import eegpt_model

    _, original = eegpt_model(0, shape=(4, 8))
    names = [ch["ch_name"] for ch in original.source.chs_info]
    swapped = [names[1], names[0], *names[2:]]
    with pytest.raises(ConversionError, match=rf"ch_names\[0\]={names[1]!r} is EEGPT's channel"):
        attach_braindecode(original.source, ch_names=swapped)
    with pytest.raises(ConversionError, match=rf"ch_names\[0\]={names[1]!r} is EEGPT's channel"):
        from_braindecode(original.source, ch_names=swapped)
    assert attach_braindecode(original.source, ch_names=names).layout_of(0).channel_names[:4] == (
        tuple(names)
    )


def test_labram_of_the_whole_channel_table_without_chs_info_attaches_in_its_order():
    """braindecode's Labram of 128 channels without chs_info reads LaBraM's table in order
    (its forward without ch_names); attach gives its tokens those names and its output."""
    from braindecode.models.labram import LABRAM_CHANNEL_ORDER

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        original = bd.Labram(
            n_chans=128, n_times=64, n_outputs=2, patch_size=32, num_layers=1, num_heads=2
        ).eval()
    model = attach_braindecode(original)
    assert model.layout_of(0).channel_names == tuple(LABRAM_CHANNEL_ORDER)
    x = torch.randn(2, 128, 64)
    with torch.no_grad():
        assert torch.equal(model(x), original(x))


@pytest.mark.parametrize("name", ["LUNA", "ZUNA"])
def test_names_that_contradict_the_models_own_chs_info_are_refused(name):
    """LUNA and ZUNA embed each channel by its chs_info; ch_names in another order would label
    each token, and so every cut by channel name, with another electrode (issue 85)."""
    source = table.zoo_source(name)
    own = [ch["ch_name"] for ch in source.chs_info]
    with pytest.raises(ConversionError, match=rf"ch_names\[0\]={own[-1]!r}, but .*{own[0]!r}"):
        attach_braindecode(source, ch_names=own[::-1])
    assert attach_braindecode(source, ch_names=own).layout_of(0).channel_names[: len(own)] == (
        tuple(own)
    )


def _bendr_without_n_times():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        small = {"encoder_h": 16, "contextualizer_hidden": 32, "transformer_layers": 1}
        return bd.BENDR(n_outputs=2, n_chans=3, transformer_heads=2, **small)


def _cbramod_built_at_3_channels_600_samples():
    source = _cbramod()  # its LazyLinear classifier built by this first call: 9 tokens
    with torch.no_grad():
        source(torch.randn(1, 3, 600))
    return source


@pytest.mark.parametrize(
    ("make", "kwargs", "match"),
    [
        (
            _bendr_without_n_times,
            {},
            r"BENDR was built without n_times .*: pass n_times=\.\.\. \(samples\)",
        ),
        (
            lambda: _cbramod(n_chans=3),
            {"ch_names": ["C3", "C4"]},
            r"ch_names must name each input channel of braindecode's CBraMod \(n_chans=3\), got 2",
        ),
        (
            lambda: _cbramod(n_chans=3, n_times=400),
            {"n_times": 600},
            r"n_times must be CBraMod's 400 \(or left out\), got 600",
        ),
        (
            _cbramod_built_at_3_channels_600_samples,
            {"ch_names": ["C3", "C4"]},
            r"CBraMod has a classifier over 72 features, which no input of 2 channels gives",
        ),
    ],
    ids=["no-size", "names-not-n_chans", "n_times-not-its-own", "classifier-fits-no-input"],
)
def test_a_size_the_braindecode_model_does_not_have_is_refused_by_name(make, kwargs, match):
    with pytest.raises(ConversionError, match=match):
        attach_braindecode(make(), **kwargs)
