"""One compiled cut (issue 85, docs/DESIGN.md §4): every notebook entrance that turns an edge
set into masks (`compile_edges`, `mask_edges` / `zero_edges` added to a model, ``edge_masks=``)
refuses a layer the model lacks and a cut that selects no edge, and says once when the
model's readout cannot see the cut; layers are read by the one integer validator."""

from __future__ import annotations

import warnings

import pytest
import torch

from emg_lens import EncoderConfig
from emg_lens.edges import (
    channels,
    cross_modal,
    layers,
    reads_earlier,
    reads_later,
    time_span,
    time_window,
)
from emg_lens.errors import ArgumentError, LayoutError
from emg_lens.hooks import attn_scores_filter, compile_edges, mask_edges, zero_edges
from emg_lens.models import IsoNet
from tests import tiny


@pytest.fixture(scope="module")
def model() -> IsoNet:
    return tiny.tiny_isonet(perturb=True, init_range=0.3)  # 2 layers, 4 heads, CLS head


@pytest.fixture(scope="module")
def patched() -> IsoNet:
    """An IsoNet of 4 time patches per channel (times 0..3)."""
    cfg = EncoderConfig.preset("tiny", n_samples=8, patch_samples=2, seed=0)
    return IsoNet(cfg).eval()


def _run(model, hook, layers=None):
    x = model.example_input(2)
    return model.run_with_hooks(x, fwd_hooks=[(attn_scores_filter(layers), hook)])


def test_a_layer_the_model_lacks_is_refused_on_every_entrance(model):
    cut = cross_modal() & layers(3)
    with pytest.raises(LayoutError, match=r"names layer\(s\) \[3\].*n_layers=2"):
        compile_edges(cut, model)
    with pytest.raises(LayoutError, match=r"names layer\(s\) \[5\].*n_layers=2"):
        _run(model, mask_edges(layers(5) & cross_modal(), model.layout))
    with pytest.raises(ArgumentError, match=r"layers must be .* in 0\.\.1, got \[3\]"):
        compile_edges(cross_modal(), model, [3])
    with pytest.raises(LayoutError, match=r"names layers \[3\]"):
        _run(model, mask_edges(cross_modal(), model.layout), layers=[3])


@pytest.mark.parametrize(
    "edges",
    [
        time_span(5, 9, 0, 4),  # query times past the layout's 0..3
        time_window(5, min_lag=4),  # lags of 4..5 on 4 patches
        reads_earlier() & reads_later(),
        "within(emg) & within(acc)",
    ],
    ids=["span_past_times", "window_past_lags", "earlier_and_later", "two_groups"],
)
def test_a_cut_that_selects_no_edge_is_refused_by_name(patched, edges):
    with pytest.raises(LayoutError, match=r"selects no edge in layers \[0, 1\].*change nothing"):
        compile_edges(edges, patched)
    for factory in (mask_edges, zero_edges):
        point = attn_scores_filter() if factory is mask_edges else "blocks.0.attn.hook_pattern"
        with pytest.raises(LayoutError, match=r"selects no edge .*change nothing"):
            patched.run_with_hooks(
                patched.example_input(1), fwd_hooks=[(point, factory(edges, patched.layout))]
            )


def test_an_edge_set_that_skips_a_named_layer_says_so(model):
    with pytest.raises(LayoutError, match=r"layers\(1\) leave layer 0 out"):
        compile_edges(cross_modal() & layers(1), model, [0])
    with pytest.warns(UserWarning, match=r"selects no edge in layer 0 .* which you named"):
        cut = compile_edges(cross_modal() & layers(1), model, [0, 1])
    assert not cut[0].any() and cut[1].any()
    with warnings.catch_warnings():  # applied to every layer: its own layers() say where
        warnings.simplefilter("error")
        _run(model, mask_edges(cross_modal() & layers(0), model.layout))
        assert compile_edges("no_edges", model)[0].sum() == 0  # the uncut condition, by name


def test_the_compiled_cut_shows_what_it_cuts(model):
    cut = compile_edges(cross_modal() & layers(0), model)
    assert repr(cut) == (
        "Cut('cross_modal & layers(0)' on IsoNet: layer 0: 64 edges (16 on each of 4 heads); "
        "layer 1: 0 edges (0 on each of 4 heads))"
    )
    by_hand = _cut_by_hand(model, cut)
    assert torch.allclose(model(model.example_input(2), edge_masks=cut), by_hand, atol=1e-5)


def _cut_by_hand(model, cut):
    x = model.example_input(2)
    return model.run_with_hooks(
        x,
        fwd_hooks=[
            (f"blocks.{i}.attn.hook_attn_scores", mask_edges(m, model.layout))
            for i, m in cut.items()
            if m.any()
        ],
    )


@pytest.mark.unchecked  # values the annotation, Iterable[int], refuses
@pytest.mark.parametrize("bad", ["10", [1.7], 99, [True]])
def test_layers_of_a_name_filter_are_integers(bad):
    with pytest.raises(ArgumentError, match=r"layers must be .*integers"):
        attn_scores_filter(bad)


def test_a_cut_the_readout_cannot_see_is_said_once(model):
    channel_queries = "within(emg) | within(acc)"  # every query row but CLS's
    last = attn_scores_filter([1])
    x = model.example_input(2)
    hook = mask_edges(channel_queries, model.layout)
    with pytest.warns(UserWarning, match=r"only in the last layer \(1\).*'logits' readout"):
        cut = model.run_with_hooks(x, fwd_hooks=[(last, hook)])
    assert torch.allclose(cut, model(x), atol=1e-5)  # it could not move a logit
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        model.run_with_hooks(x, fwd_hooks=[(last, hook)])  # once per hook and readout
    assert not [w for w in again if "last layer" in str(w.message)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # an earlier layer cut too, or a readout that reads the channel tokens: it can show
        model.run_with_hooks(
            x, fwd_hooks=[(attn_scores_filter(), mask_edges(channel_queries, model.layout))]
        )
        model.run_with_hooks(x, return_type="avg_logits", fwd_hooks=[(last, hook)])
    masks = compile_edges(channel_queries, model, [1])
    with pytest.warns(UserWarning, match=r"edge_masks cuts edges only in the last layer"):
        model(x, edge_masks=masks)


def test_a_channel_cut_by_name_reads_the_layout():
    names = ["e1", "e2", "a1", "a2", "a3", "a4"]
    named = IsoNet(EncoderConfig.preset("tiny", channel_names=names))
    cut = compile_edges(channels("e1", "a1"), named)
    assert cut[0].sum() == 4 * 4  # e1 <-> a1 and each with itself, on 4 heads


def test_a_span_in_seconds_between_patch_starts_is_refused_on_an_attached_model():
    """Tokens at 0, 0.5, 1 and 1.5 s: a span of 0.1-0.4 s holds no token's start."""
    from emg_lens.layout import TokenLayout
    from emg_lens.models import attach
    from emg_lens.models.attached.examples import TinyAttention

    layout = TokenLayout(("t",) * 4, (0, 1, 2, 3), (0, 1, 2, 3), None, None, 0.5)
    model = attach(TinyAttention(), layout=layout, n_samples=8)
    between = time_span(0.1, 0.4, 0, 2, seconds=True)
    with pytest.raises(LayoutError, match=r"selects no edge in layer 0 of this AttachedModel"):
        compile_edges(between, model)
    with pytest.raises(LayoutError, match=r"selects no edge"):
        _run(model, mask_edges(between, layout))
    # the token at 0.5 s reads every key, all within 0-2 s, on both heads
    assert compile_edges(time_span(0.4, 0.6, 0, 2, seconds=True), model)[0].sum() == 4 * 2
