"""`emg_lens.inspect` (issue 6): attention flow against hand-computed masses, head importance on
a model built so the answer is known, attribution that adds up to the logit, MMD that sees a
shift and no shift, figures, the CLI, and refusing caches of other models."""

from __future__ import annotations

import sys

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from transformer_lens import ActivationCache

from emg_lens import ArgumentError, EncoderConfig, InputShapeError, LayoutError
from emg_lens.checkpoints import save_checkpoint
from emg_lens.data.preprocess import SubjectData
from emg_lens.errors import MissingDependencyError, SpecError
from emg_lens.inspect import (
    as_subject_data,
    attention_flow,
    attribution_hooks,
    default_kinds,
    direct_attribution,
    distribution_shift,
    edge_mass,
    head_importance,
    mass_effect_correlation,
    mean_patterns,
    median_bandwidth,
    mmd2_unbiased,
    plot_attention_flow,
    plot_attribution,
    plot_distribution_shift,
    plot_head_importance,
    plot_mass_vs_effect,
    plot_patching,
    plot_pattern,
    readout_map,
    to_circuitsvis,
    token_bins,
)
from emg_lens.inspect import report as report_module
from emg_lens.models import HierarchicalTransformer, IsoNet, TinyMyo
from tests.tiny import perturb_biases, tiny_isonet, tinymyo_config

# ----------------------------------------------------------------------------- models


def _isonet(**overrides) -> IsoNet:
    return tiny_isonet(perturb=True, **overrides)


def _tinymyo(**kwargs) -> TinyMyo:
    # 3 channels x 4 patches, RoPE, no CLS token.
    model = TinyMyo(tinymyo_config(3, 8, patch_samples=2, seed=0), **kwargs)
    perturb_biases(model)
    return model.eval()


def _hierarchical(**overrides) -> HierarchicalTransformer:
    cfg = HierarchicalTransformer.default_config(
        "tiny", **{"seed": 0, "n_stem_layers": 1, "n_layers": 2, "patch_samples": 4, **overrides}
    )
    model = HierarchicalTransformer(cfg)
    perturb_biases(model)
    return model.eval()


def _one_head_model(head: int = 2) -> IsoNet:
    """A 2-layer IsoNet in which only ``head`` of layer 0 writes to the residual stream (W_O of
    the other layer-0 heads is zero). Cutting unimodal or cross-modal edges can then change the
    CLS logits only through that head: other layer-0 heads write nothing, and layer-1 edges
    between signal tokens never reach the CLS token the classifier reads."""
    model = _isonet(init_range=0.5)  # sharp attention: masks change predictions
    with torch.no_grad():
        for h in range(model.cfg.n_heads):
            if h != head:
                model.blocks[0].attn.W_O[h] = 0.0
    return model


def _windows(model, n: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, *model.input_shape, generator=gen)


# ----------------------------------------------------------------------------- attention flow


def _flow_cell(flow: pd.DataFrame, layer, head, query, key) -> pd.Series:
    sel = flow[
        (flow["layer"] == layer)
        & (flow["head"] == head)
        & (flow["query_group"] == query)
        & (flow["key_group"] == key)
    ]
    assert len(sel) == 1
    return sel.iloc[0]


def _hand_made_cache(model: IsoNet) -> ActivationCache:
    """Patterns for the tiny layout (cls 0 | emg 1, 2 | acc 3-6), 2 windows, 4 heads:

    - head 0: window 0 puts every query's attention on acc token 3, window 1 on emg token 1;
    - head 1: cls reads all 7 tokens evenly, emg queries split cls / emg token 2, acc queries
      read the 4 acc tokens evenly;
    - heads 2, 3: every token reads itself.
    """
    n = model.layout.n_tokens
    pattern = torch.zeros(2, model.cfg.n_heads, n, n)
    pattern[0, 0, :, 3] = 1.0
    pattern[1, 0, :, 1] = 1.0
    pattern[:, 1, 0, :] = 1.0 / 7
    pattern[:, 1, 1:3, 0] = 0.5
    pattern[:, 1, 1:3, 2] = 0.5
    pattern[:, 1, 3:, 3:] = 0.25
    pattern[:, 2:] = torch.eye(n)
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layers)]
    return ActivationCache({name: pattern.clone() for name in names}, model)


def test_flow_of_a_hand_made_pattern_is_the_hand_computed_mass():
    model = _isonet()
    flow = attention_flow(model, _hand_made_cache(model))
    expected = {
        (0, "emg", "acc"): 0.5,  # half the windows read acc token 3, half emg token 1
        (0, "emg", "emg"): 0.5,
        (0, "cls", "cls"): 0.0,
        (1, "cls", "cls"): 1 / 7,
        (1, "cls", "emg"): 2 / 7,
        (1, "cls", "acc"): 4 / 7,
        (1, "emg", "cls"): 0.5,
        (1, "emg", "emg"): 0.5,
        (1, "acc", "acc"): 1.0,
        (1, "acc", "emg"): 0.0,
        (2, "acc", "acc"): 1.0,
        (3, "emg", "acc"): 0.0,
    }
    for layer in (0, 1):
        for (head, query, key), mass in expected.items():
            row = _flow_cell(flow, layer, head, query, key)
            assert row["mass"] == pytest.approx(mass, abs=1e-6)
    row = _flow_cell(flow, 0, 1, "cls", "acc")
    assert row["uniform"] == pytest.approx(4 / 7)
    assert row["ratio"] == pytest.approx(1.0)  # reading all tokens evenly is uniform
    # The same patterns as an edge set: cross-modal mass of head 0 is (2 emg queries reading
    # acc in window 0 + 4 acc queries reading emg in window 1) / 7 queries / 2 windows.
    mass = edge_mass(model, _hand_made_cache(model), "cross_modal").set_index(["layer", "head"])
    assert mass.loc[(0, 0), "mass"] == pytest.approx(3 / 7)
    assert mass.loc[(0, 1), "mass"] == pytest.approx(0.0)  # CLS edges are not cross-modal


@pytest.mark.parametrize(
    "make, by, bins, n_groups",
    [
        (_isonet, "group", None, 3),
        (_tinymyo, "channel", None, 3),
        (_tinymyo, "channel", 2, 2),
        (_tinymyo, "time", 2, 2),
        (_isonet, "channel", 3, 4),
    ],
)
def test_flow_rows_sum_to_one(make, by, bins, n_groups):
    model = make()
    flow = attention_flow(model, _windows(model, 5), by=by, bins=bins)
    assert flow["query_group"].nunique() == n_groups
    sums = flow.groupby(["layer", "head", "query_group"])["mass"].sum()
    assert len(sums) == model.cfg.n_layers * model.cfg.n_heads * n_groups
    np.testing.assert_allclose(sums.to_numpy(), 1.0, atol=1e-5)
    uniform = flow.drop_duplicates("key_group")["uniform"].sum()
    assert uniform == pytest.approx(1.0)


def test_mean_patterns_from_signals_equal_those_of_a_cache():
    model = _tinymyo()
    x = _windows(model, 7)
    _, cache = model.run_with_cache(x)
    from_cache = mean_patterns(model, cache)
    from_signals = mean_patterns(model, x, batch_size=3)  # batches of 3, 3, 1
    torch.testing.assert_close(from_signals, from_cache, atol=1e-6, rtol=1e-5)


def test_token_bins_and_their_errors():
    layout = _tinymyo().layout
    assert token_bins(layout, "channel")[:5] == ["ch0", "ch0", "ch0", "ch0", "ch1"]
    assert set(token_bins(layout, "time", bins=2)) == {"t0-1", "t2-3"}
    with pytest.raises(ArgumentError, match="by must be one of"):
        token_bins(layout, "modality")
    with pytest.raises(ArgumentError, match="bins"):
        token_bins(layout, "group", bins=2)
    with pytest.raises(
        ArgumentError,
        match=r"bins \(None: one per distinct channel value\) must be an int in 1\.\.3",
    ):
        token_bins(layout, "channel", bins=4)


# ----------------------------------------------------------------------------- head importance


def test_head_importance_ranks_the_one_head_that_matters():
    model = _one_head_model(head=2)
    X = _windows(model, 64)
    y = model(X).argmax(-1)  # baseline accuracy 1: any change of prediction is a drop
    table = head_importance(model, (X, y))
    assert set(table["kind"]) == {"unimodal", "cross_modal"}
    assert (table["baseline"] == 1.0).all()
    for kind, rows in table.groupby("kind"):
        rows = rows.set_index(["layer", "head"])
        assert rows.loc[(0, 2), "rank"] == 1
        assert rows.loc[(0, 2), "delta"] < -0.05
        others = rows.drop(index=(0, 2))
        assert (others["delta"] == 0).all(), kind  # exactly no effect, as constructed
        assert (others["rank"] == 2).all()
        # The silent heads still attend: mass is no evidence of use.
        assert others.loc[(0, 0), "mass"] > 0.1
    # Mass is the edge set's share of attention over the same windows.
    mass = edge_mass(model, X, "cross_modal").set_index(["layer", "head"])["mass"]
    cross = table[table["kind"] == "cross_modal"].set_index(["layer", "head"])["mass"]
    pd.testing.assert_series_equal(cross, mass.reindex(cross.index), atol=1e-6)
    corr = mass_effect_correlation(table).set_index("kind")
    for kind, rows in table.groupby("kind"):
        assert rows["spearman_rho"].iloc[0] == pytest.approx(corr.loc[kind, "spearman_rho"])


def test_head_importance_takes_subject_data_and_arrays_alike():
    model = _isonet(init_range=0.5)
    X = _windows(model, 24).numpy()
    y = np.arange(24) % model.cfg.n_classes
    data = as_subject_data(model, (X, y))
    assert isinstance(data, SubjectData) and data.X_test.shape == X.shape
    from_arrays = head_importance(model, (X, y), kinds=["between(emg, acc)"])
    from_data = head_importance(model, data, kinds=["between(emg, acc)"])
    pd.testing.assert_frame_equal(from_arrays, from_data)
    assert from_arrays["kind"].unique().tolist() == ["between(emg,acc)"]


@pytest.mark.unchecked  # a string for the list of kinds, refused by emg_lens's own check
@pytest.mark.parametrize(
    ("kinds", "match"),
    [
        (
            "cross_modal",
            r"kinds must be a non-empty list of edge expressions, .* got 'cross_modal'",
        ),
        ([], r"kinds must be a non-empty list of edge expressions, .* got \[\]"),
        (
            ["cross_modal", "cross_modal "],
            r"kinds repeats an edge set: \['cross_modal', 'cross_modal'\]",
        ),
    ],
)
def test_head_importance_kinds_it_cannot_use_are_named(kinds, match):
    model = _isonet(init_range=0.5)
    X = _windows(model, 4)
    with pytest.raises(ArgumentError, match=match):
        head_importance(model, (X, np.arange(4) % model.cfg.n_classes), kinds=kinds)


@pytest.mark.unchecked
def test_head_importance_rejects_bad_inputs():
    model = _isonet()
    X = _windows(model, 4)
    with pytest.raises(ArgumentError, match=r"labels y must be class indices in \[0, 3\]"):
        head_importance(model, (X, [0, 1, 2, 4]))
    with pytest.raises(InputShapeError):
        head_importance(model, (X[:, :5], [0, 1, 2, 3]))
    with pytest.raises(ArgumentError, match="SubjectData or a tuple"):
        head_importance(model, X)
    with pytest.raises(SpecError, match="metric"):
        head_importance(model, (X, [0, 1, 2, 3]), metric="auc")
    tinymyo = _tinymyo()
    assert default_kinds(tinymyo.layout) == ("same_channel", "cross_channel")
    with pytest.raises(ArgumentError, match="'cross_modal' selects no edge"):
        head_importance(tinymyo, (_windows(tinymyo, 4), [0, 1, 2, 3]), kinds=["cross_modal"])
    dropout = IsoNet(EncoderConfig.preset("tiny", dropout=0.1))  # training mode by default
    with pytest.raises(ArgumentError, match=r"model.eval\(\)"):
        head_importance(dropout, (X, [0, 1, 2, 3]))


# ----------------------------------------------------------------------------- attribution


ATTRIBUTION_MODELS = {
    "isonet-cls": (_isonet, {}),
    "isonet-avg": (_isonet, {"head": "avg"}),
    "tinymyo-concat": (lambda: _tinymyo(reduction="concat"), {}),
    "tinymyo-mean": (lambda: _tinymyo(reduction="mean"), {}),
    "hierarchical": (_hierarchical, {}),
    "hierarchical-no-cls": (lambda: _hierarchical(use_cls_token=False), {}),
}


@pytest.mark.parametrize("name", sorted(ATTRIBUTION_MODELS))
@pytest.mark.parametrize("direction", ["logit", "logit_diff"])
def test_attribution_adds_up_to_the_logit(name, direction):
    make, kwargs = ATTRIBUTION_MODELS[name]
    model = make()
    x = _windows(model, 5)
    labels = torch.tensor([0, 1, 2, 3, 1])
    return_type = "both" if kwargs.get("head") == "avg" else "logits"
    out, cache = model.run_with_cache(x, return_type=return_type)
    logits = (out[1] if kwargs.get("head") == "avg" else out).detach()
    table = direct_attribution(model, cache, labels, direction=direction, **kwargs)
    expected = logits[torch.arange(5), labels]
    if direction == "logit_diff":
        expected = expected - logits.mean(-1)
    total = table.groupby("sample")["value"].sum().to_numpy()
    np.testing.assert_allclose(total, expected.numpy(), atol=1e-4)
    n_comp = 2 + model.cfg.n_layers * (model.cfg.n_heads + 2) + (2 if "isonet" in name else 1)
    assert len(table) == 5 * n_comp
    heads = table[table["kind"] == "head"]
    assert heads.groupby(["layer", "head"]).ngroups == model.cfg.n_layers * model.cfg.n_heads


def test_attribution_of_silent_heads_is_zero_and_uses_only_the_needed_cache():
    model = _one_head_model(head=2)
    x = _windows(model, 4)
    _, cache = model.run_with_cache(x, names_filter=attribution_hooks(model))
    table = direct_attribution(model, cache, [0, 1, 2, 3])
    layer0 = table[(table["kind"] == "head") & (table["layer"] == 0)]
    silent = layer0[layer0["head"] != 2]["value"]
    assert (silent == 0).all()
    assert layer0[layer0["head"] == 2]["value"].abs().max() > 1e-3


def test_readout_map_reproduces_each_classifier():
    for make in (_isonet, _tinymyo, _hierarchical):
        model = make()
        R, b_U = readout_map(model)
        resid = model(_windows(model, 3), return_type=None)
        logits = torch.einsum("bpd,pdc->bc", model.ln_final(resid), R) + b_U
        torch.testing.assert_close(logits, model.readout(resid, "logits"), atol=1e-5, rtol=1e-5)


def test_attribution_rejects_bad_inputs():
    model = _isonet()
    x = _windows(model, 3)
    _, cache = model.run_with_cache(x)
    with pytest.raises(InputShapeError, match=r"labels must be integer class indices \[batch=3\]"):
        direct_attribution(model, cache, [0, 1])
    with pytest.raises(ArgumentError, match=r"labels must be in \[0, 3\]"):
        direct_attribution(model, cache, [0, 1, 7])
    with pytest.raises(ArgumentError, match="direction must be one of"):
        direct_attribution(model, cache, [0, 1, 2], direction="prob")
    with pytest.raises(ArgumentError, match="head must be 'cls'"):
        direct_attribution(model, cache, [0, 1, 2], head="max")
    _, patterns_only = model.run_with_cache(x, names_filter=lambda name: "pattern" in name)
    with pytest.raises(ArgumentError, match="the cache lacks"):
        direct_attribution(model, patterns_only, [0, 1, 2])
    regression = _tinymyo(task="regression", reg_target_len=4)
    _, cache = regression.run_with_cache(_windows(regression, 2))
    with pytest.raises(ArgumentError, match=r"TinyMyo \(task='regression'\)"):
        direct_attribution(regression, cache, [0, 1])


# ----------------------------------------------------------------------------- caches


def _flow(model, cache):
    return attention_flow(model, cache)


def _attribution(model, cache):
    return direct_attribution(model, cache, [0, 1])


def _pattern(model, cache):
    return plot_pattern(model, cache, 0, 0)


@pytest.mark.parametrize("use", [_flow, _attribution, _pattern, mean_patterns])
def test_every_cache_consumer_refuses_another_models_cache(use):
    model, twin = _isonet(), _isonet()  # same architecture and weights, another model
    _, cache = twin.run_with_cache(_windows(twin, 2))
    with pytest.raises(ArgumentError, match="the cache was made by another model"):
        use(model, cache)


@pytest.mark.parametrize("use", [_flow, _pattern, mean_patterns])
def test_every_cache_consumer_refuses_patterns_that_do_not_fit_the_layout(use):
    model = _isonet()
    bad = torch.full((2, 4, 9, 9), 1 / 9)  # 9 tokens, but the model has 7
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(2)]
    cache = ActivationCache(dict.fromkeys(names, bad), model)
    with pytest.raises(LayoutError, match="7 tokens"):
        use(model, cache)


@pytest.mark.unchecked
def test_cache_checks_name_what_is_wrong():
    model = _isonet()
    x = _windows(model, 2)
    with pytest.raises(ArgumentError, match="expected a transformer_lens ActivationCache"):
        attention_flow(model, {"blocks.0.attn.hook_pattern": torch.zeros(1)})
    with pytest.raises(ArgumentError, match="expected a transformer_lens ActivationCache"):
        direct_attribution(model, {"hook_embed": torch.zeros(1)}, [0])
    _, cache = model.run_with_cache(x, names_filter="blocks.0.attn.hook_pattern")
    with pytest.raises(ArgumentError, match=r"blocks.1.attn.hook_pattern"):
        attention_flow(model, cache)
    _, cache = model.run_with_cache(x[:1], remove_batch_dim=True)
    with pytest.raises(ArgumentError, match="no batch axis"):
        attention_flow(model, cache)
    _, cache = model.run_with_cache(x)
    resid = {"hook_embed": torch.zeros(2, 5, 16)}
    with pytest.raises(LayoutError, match="5 token positions"):
        direct_attribution(model, ActivationCache({**cache.cache_dict, **resid}, model), [0, 1])


# ----------------------------------------------------------------------------- distribution shift


@pytest.mark.unchecked
def test_mmd_sees_a_shift_and_no_shift():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 8, generator=gen), torch.randn(400, 8, generator=gen)
    same = float(mmd2_unbiased(a, b))
    assert abs(same) < 5e-3
    shifted = float(mmd2_unbiased(a, b + 0.5))
    assert shifted > 20 * abs(same)
    assert float(mmd2_unbiased(a, b + 1.0)) > shifted  # a larger shift, a larger MMD
    # Batched: one estimate per leading index, equal to the single ones.
    batched = mmd2_unbiased(torch.stack([a, a]), torch.stack([b, b + 0.5]))
    np.testing.assert_allclose(batched.numpy(), [same, shifted], rtol=1e-9)
    assert float(median_bandwidth(torch.tensor([[0.0, 0.0], [3.0, 4.0]]))) == 5.0
    assert float(median_bandwidth(torch.zeros(3, 2))) == 1.0  # all points equal
    with pytest.raises(InputShapeError):
        mmd2_unbiased(a, b[:, :4])
    with pytest.raises(ArgumentError, match="bandwidth must be > 0"):
        mmd2_unbiased(a, b, bandwidth=0.0)


def test_distribution_shift_starts_at_the_masked_layer():
    model = _isonet(n_layers=3, init_range=0.5)
    # Every token reads only itself in layer 1: a large change of the stream.
    shift = distribution_shift(model, _windows(model, 64), "~same_channel", [1])
    assert set(shift["group"]) == {"all", "cls", "emg", "acc"}
    everything = shift[shift["group"] == "all"].set_index("layer")
    assert everything["masked"].tolist() == [False, True, False]
    assert everything["n_windows"].tolist() == [32, 32, 32]
    assert everything.loc[0, "cosine_distance"] < 1e-9
    assert everything.loc[0, "mmd2"] == everything.loc[0, "mmd2_null"]  # no shift yet
    assert everything.loc[1, "cosine_distance"] > 1e-2
    for layer in (1, 2):
        assert everything.loc[layer, "mmd2"] > everything.loc[layer, "mmd2_null"] + 0.01
    # Cutting no edge shifts nothing anywhere.
    none = distribution_shift(model, _windows(model, 8), "no_edges", [0, 1, 2])
    assert none["cosine_distance"].max() < 1e-9
    np.testing.assert_allclose(none["mmd2"], none["mmd2_null"], atol=1e-6)


def test_distribution_shift_rejects_bad_layers_and_edges():
    model = _isonet()
    x = _windows(model, 4)
    with pytest.raises(
        ArgumentError, match=r"layers must be one or more integers in 0\.\.1, got \[2\]"
    ):
        distribution_shift(model, x, "cross_modal", [2])
    with pytest.raises(ArgumentError, match="layers"):
        distribution_shift(model, x, "cross_modal", [])
    with pytest.raises(ArgumentError, match="at least 4 windows"):
        distribution_shift(model, x[:3], "cross_modal", [0])
    with pytest.raises(LayoutError, match="force"):
        distribution_shift(model, x, "within(force)", [0])


# ----------------------------------------------------------------------------- figures


def test_figures_draw_every_table():
    model = _one_head_model()
    X = _windows(model, 16)
    y = model(X).argmax(-1)
    flow = attention_flow(model, X)
    importance = head_importance(model, (X, y))
    _, cache = model.run_with_cache(X)
    attribution = direct_attribution(model, cache, y)
    shift = distribution_shift(model, X, "cross_modal", [0, 1])
    figures = {
        "flow": (plot_attention_flow(flow), 8 + 1),  # 2 layers x 4 heads + colour bar
        "ratio": (plot_attention_flow(flow, value="ratio"), 9),
        "importance": (plot_head_importance(importance), 2 + 1),
        "mass": (plot_mass_vs_effect(importance), 2),
        "attribution": (plot_attribution(attribution), 3),
        "shift": (plot_distribution_shift(shift), 2),
        "pattern": (plot_pattern(model, cache, 1, 2, window=0), 4),  # pattern, 2 strips, bar
    }
    for name, (fig, n_axes) in figures.items():
        assert isinstance(fig, plt.Figure), name
        assert len(fig.axes) == n_axes, name
        plt.close(fig)
    title = plot_mass_vs_effect(importance).axes[0].get_title()
    assert "Spearman ρ" in title
    # the head-importance suptitle sits above its panel titles; the axis labels are inside
    fig = plot_head_importance(importance)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    suptitle = fig._suptitle.get_window_extent(renderer)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 2
    for ax in panels:
        assert not suptitle.overlaps(ax.title.get_window_extent(renderer))
        assert ax.xaxis.label.get_window_extent(renderer).y0 >= fig.bbox.y0
    plt.close("all")
    with pytest.raises(ArgumentError, match="plot_head_importance needs"):
        plot_head_importance(flow)
    with pytest.raises(ArgumentError, match="plot_patching needs"):
        plot_patching(pd.DataFrame())


@pytest.mark.unchecked
def test_circuitsvis_export_is_optional(monkeypatch):
    model = _isonet()
    _, cache = model.run_with_cache(_windows(model, 2))
    bad = ActivationCache({"blocks.0.attn.hook_pattern": torch.zeros(2, 4, 6, 6)}, model)
    with pytest.raises(LayoutError, match="7 tokens"):
        to_circuitsvis(bad, 0)
    with pytest.raises(ArgumentError, match=r"view's cache .* must be an ActivationCache, got"):
        to_circuitsvis(cache.cache_dict, 0)
    monkeypatch.setitem(sys.modules, "circuitsvis", None)  # importing it fails
    with pytest.raises(MissingDependencyError, match=r"pip install circuitsvis") as missing:
        to_circuitsvis(cache, 0)
    assert isinstance(missing.value, ImportError) and missing.value.name == "circuitsvis"

    calls = {}

    class Attention:
        @staticmethod
        def attention_heads(attention, tokens, **options):
            calls.update(tokens=tokens, shape=tuple(attention.shape), **options)
            return "view"

    fake = type(sys)("circuitsvis")
    fake.attention = Attention
    monkeypatch.setitem(sys.modules, "circuitsvis", fake)
    monkeypatch.setitem(sys.modules, "circuitsvis.attention", Attention)
    assert to_circuitsvis(cache, 1, window=1) == "view"
    with pytest.warns(DeprecationWarning, match=r"to_circuitsvis\(sample=\.\.\.\).*window=1"):
        assert to_circuitsvis(cache, 1, sample=1) == "view"
    assert calls["tokens"] == ["cls", "emg0", "emg1", "acc0", "acc1", "acc2", "acc3"]
    assert calls["shape"] == (4, 7, 7)
    assert calls["mask_upper_tri"] is False  # an encoder attends both ways
    assert calls["attention_head_names"] == ["L1H0", "L1H1", "L1H2", "L1H3"]
    with pytest.raises(ArgumentError, match=r"window must be an int in 0\.\.1"):
        to_circuitsvis(cache, 1, window=2)


@pytest.mark.unchecked
def test_one_input_is_a_window_and_sample_is_its_deprecated_name():
    """``window=`` names one cached input (a *sample* is one time sample in this field);
    ``sample=``, its old name, still works for one release with a `DeprecationWarning` at the
    caller's line that names the new one, and giving both is refused by name."""
    model = _isonet()
    _, cache = model.run_with_cache(_windows(model, 2))
    drawn = plot_pattern(model, cache, 1, 2, window=1)
    assert drawn.axes[2].get_title() == "layer 1, head 2: window 1"
    with pytest.warns(
        DeprecationWarning, match=r"plot_pattern\(sample=\.\.\.\) is deprecated"
    ) as w:
        old = plot_pattern(model, cache, 1, 2, sample=1)
    assert "window=1" in str(w[0].message) and w[0].filename == __file__
    assert old.axes[2].get_title() == drawn.axes[2].get_title()
    with pytest.raises(ArgumentError, match=r"plot_pattern got both window=0 and sample=1"):
        plot_pattern(model, cache, 1, 2, window=0, sample=1)
    with pytest.raises(ArgumentError, match=r"window \(None: the mean\) must be an int in 0\.\.1"):
        plot_pattern(model, cache, 1, 2, window=2)
    plt.close("all")


# ----------------------------------------------------------------------------- CLI


@pytest.mark.slow  # six figures as PNG and SVG: ~30 s on a busy core
def test_inspect_command_writes_tables_and_figures(tmp_path, monkeypatch, capsys):
    from emg_lens.cli import main

    model = _one_head_model()
    source = {"dataset": "synthetic", "note": "replaced by the test"}
    path = save_checkpoint(
        model, tmp_path / "subject_3", metadata={"subject": 3, "data_source": source}
    )
    X = _windows(model, 40).numpy()
    y = model(torch.as_tensor(X)).argmax(-1).numpy()
    data = SubjectData.from_windows(
        dict(model.cfg.modalities), (X, y), subject=3, classes=[0, 1, 2, 3]
    )
    asked = []

    def load_subject(src, subject):
        asked.append((src, subject))
        return data

    monkeypatch.setattr("emg_lens.data.datasets.load_subject", load_subject)  # checkpoint data
    out = tmp_path / "inspect"
    argv = ["inspect", "--checkpoint", str(path), "--out", str(out), "--n-windows", "20"]
    assert main(argv) == 0
    assert asked == [(source, 3)]
    for name in (
        "attention_flow",
        "head_importance",
        "mass_effect_correlation",
        "attribution",
        "distribution_shift",
    ):
        assert (out / f"{name}.csv").is_file(), name
    for name in (
        "attention_flow",
        "head_importance",
        "mass_vs_effect",
        "attribution",
        "distribution_shift",
        "pattern",
    ):
        assert (out / f"{name}.png").is_file() and (out / f"{name}.svg").is_file(), name
    importance = pd.read_csv(out / "head_importance.csv")
    top = importance[importance["rank"] == 1]
    assert set(zip(top["layer"], top["head"])) == {(0, 2)}
    assert pd.read_csv(out / "attribution.csv")["sample"].nunique() == 20
    printed = capsys.readouterr().out
    assert "subject 3" in printed and "L0H2" in printed and "Spearman" in printed
    channels = pd.read_csv(out / "channel_importance.csv")
    assert len(channels) == model.cfg.n_channels and channels["delta_accuracy"].le(0.01).all()
    for name in ("group_flow", "qk_matrix"):  # no placement here: no figure on the body
        assert (out / f"{name}.png").is_file(), name
    assert not (out / "channel_effect.png").exists()
    page = (out / "report.html").read_text()
    assert f"report: {out / 'report.html'}" in printed
    assert 'id="figure-head_importance"' in page and "<summary>channel_importance.csv" in page

    no_data = save_checkpoint(model, tmp_path / "bare", metadata={})
    assert main(["inspect", "--checkpoint", str(no_data), "--out", str(out)]) == 2
    assert "records no data_source" in capsys.readouterr().err


def test_inspect_model_on_a_single_modality_model_uses_channels():
    model = _tinymyo()
    X = _windows(model, 12).numpy()
    y = model(torch.as_tensor(X)).argmax(-1).numpy()
    data = as_subject_data(model, (X, y))
    selected = data.select_windows(8)
    report = report_module.inspect_model(model, selected, batch_size=3)  # batches of 3, 3, 2
    assert set(report.flow["query_group"]) == {"ch0", "ch1", "ch2"}
    assert set(report.importance["kind"]) == {"same_channel", "cross_channel"}
    assert report.shift_edges == "cross_channel"
    assert sorted(report.attribution["sample"].unique()) == list(range(8))
    _, cache = model.run_with_cache(torch.as_tensor(selected.X_test))
    whole = direct_attribution(model, cache, selected.y_test)
    batched = report.attribution.set_index(["sample", "component"])["value"]
    whole = whole.set_index(["sample", "component"])["value"]
    pd.testing.assert_series_equal(batched.sort_index(), whole.sort_index(), atol=1e-5)
    assert "mask cross_channel" in report.summary()
    regression = _tinymyo(task="regression", reg_target_len=4)
    with pytest.raises(ArgumentError, match="linear classifier"):
        report_module.inspect_model(regression, data)


# ---------------------------------------------------------------- converted encoders (issue 41)


def _converted(linear: bool, names: list[str] | None):
    """A converted nn.TransformerEncoder of 6 channels x 2 patches after a CLS token: pre-LN
    with a LayerNorm + Linear readout of the CLS token, or post-LN with an MLP readout; the
    channels named (10-20 names place them on the scalp) or not."""
    from emg_lens.layout import TokenLayout
    from emg_lens.models import from_torch_encoder
    from tests.unit.models.converted_models import torch_encoder_model

    kwargs = {"readout": "linear", "final_norm": False} if linear else {"norm_first": False}
    parts = torch_encoder_model(4, convert=False, **kwargs)
    layout = TokenLayout.channel_tokens({"eeg": 6}, n_patches=2, channel_names=names)
    model = from_torch_encoder(
        parts["encoder"], embed=parts["embed"], readout=parts["readout"], layout=layout,
        n_samples=8,
    )  # fmt: skip
    X = model.example_input(12)
    with torch.no_grad():
        y = model(X).argmax(-1)
    return model, (X.numpy(), y.numpy())


def test_a_converted_encoder_gets_every_table_and_figure_it_can_have(tmp_path):
    names = ["C3", "Cz", "C4", "P3", "Pz", "P4"]
    model, data = _converted(linear=True, names=names)
    report = report_module.inspect_model(model, data, batch_size=12)
    assert {"attribution", "qk_circuit", "ov_circuit"} <= set(report.tables())
    figures = report.geometry_figures()
    assert {"attention_received", "channel_effect", "qk_matrix", "qk_cls_query"} <= set(figures)
    plt.close("all")
    assert [line for line in report.left_out() if "attention_view" not in line] == []


def test_what_a_converted_encoder_cannot_have_is_listed_with_why():
    model, data = _converted(linear=False, names=None)
    report = report_module.inspect_model(model, data, batch_size=12)
    assert report.attribution is None and report.ov is None and report.qk is not None
    left = report.left_out()
    markdown = report.to_markdown()
    assert "\n## Left out\n" in markdown
    for line in left:
        assert f"- Left out: {line}" in markdown
    (attribution,) = [line for line in left if line.startswith("attribution")]
    assert "post-LN" in attribution  # the stream is no sum of components
    (ov,) = [line for line in left if line.startswith("ov_circuit")]
    assert "post-LN" in ov
    (placement,) = [line for line in left if "no electrode placement of eeg" in line]
    assert "no data source" in placement and "names no channels" in placement


def _labels_of(model, n: int) -> np.ndarray:
    return np.arange(n) % model.cfg.n_classes


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (
            lambda m, X: SubjectData.from_windows({"emg": 6}, (X, [0] * 4), classes=[0]),
            ArgumentError,
            r"n_classes=4 and test windows; it has 1 classes",
        ),
        (lambda m, X: (X, _labels_of(m, 3)), InputShapeError, r"integer labels y \[n\]"),
        (lambda m, X: (X, np.zeros(4)), InputShapeError, r"got X \[4, 6, 8\], y float64 \[4\]"),
    ],
    ids=["subject-data-classes", "labels-not-one-per-window", "float-labels"],
)
def test_data_that_does_not_fit_the_model_is_refused(make, error, match):
    model = _isonet()
    X = _windows(model, 4).numpy()
    with pytest.raises(error, match=match):
        head_importance(model, make(model, X))
