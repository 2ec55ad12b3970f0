"""TransformerLens's patching tests, ported: direct path patching on an IsoNet (and the other
pre-LN tiers with weights), checked against a path patch computed by hand.

Sources (TransformerLensOrg/TransformerLens, tests/unit/): ``test_direct_path_patching.py``
(shapes, causal structure, clean == corrupted, correctness against an independent forward,
all sources against one, a last-layer source) and ``test_patching.py``
(``get_act_patch_attn_head_all_pos_every``: shape, values vary, finite). TransformerLens 4.3's
``get_act_patch_direct_path`` adds the source head's clean-minus-corrupted write to one
destination head's own pre-``ln1`` copy of the residual stream (``blocks.{l}.attn.hook_q_input``
...), which needs `set_use_split_qkv_input`.
"""

from __future__ import annotations

import pytest
import torch
from transformer_lens.patching import (
    get_act_patch_attn_head_all_pos_every,
    get_act_patch_direct_path,
    get_act_patch_direct_path_all_sources,
    get_act_patch_resid_pre,
)

from emg_lens import EncoderConfig, LayoutError
from emg_lens.models import IsoNet
from tests.tiny import perturb_biases
from tests.unit.models.tl_port.conftest import PATCHABLE, get_model

COMPONENTS = ("q", "k", "v")


def _isonet3():
    # 3 layers (two later layers for a layer-0 source) and weights large enough that heads
    # differ (the tiny preset's init_range gives near-uniform attention)
    model = IsoNet(EncoderConfig.preset("tiny", n_layers=3, init_range=0.4, seed=0))
    perturb_biases(model)
    return model.eval()


_MODELS = {}


def _model(name):
    if name == "isonet3":
        if name not in _MODELS:
            _MODELS[name] = _isonet3()
        model = _MODELS[name]
        model.reset_hooks(including_permanent=True)
        return model
    return get_model(name)


def _signals(model, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(2, *model.input_shape, generator=gen) * 2


def metric(logits):
    return logits[:, 0].sum()


@pytest.fixture(params=["isonet3", *(n for n in PATCHABLE if n != "isonet")])
def setting(request):
    model = _model(request.param)
    clean, corrupted = _signals(model, 1), _signals(model, 2)
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean)
        _, corrupted_cache = model.run_with_cache(corrupted)
    return model, corrupted, clean_cache, corrupted_cache


def _direct(model, corrupted, clean_cache, corrupted_cache, src_layer, src_head, component="q"):
    with torch.no_grad():
        return get_act_patch_direct_path(
            model,
            corrupted,
            clean_cache,
            corrupted_cache,
            metric,
            src_layer=src_layer,
            src_head=src_head,
            component=component,
            verbose=False,
        )


def _by_hand(model, corrupted, clean_cache, corrupted_cache, src, dst, component):
    """The path src -> dst patched without the forks: dst's own q (k, v) recomputed from
    ln1(its corrupted resid_pre + src's clean-minus-corrupted write), put in at hook_q (k, v)
    for that head only; every other reader keeps the corrupted stream."""
    (src_layer, src_head), (dst_layer, dst_head) = src, dst
    W_O = model.blocks[src_layer].attn.W_O[src_head]
    z = f"blocks.{src_layer}.attn.hook_z"
    delta = (clean_cache[z][:, :, src_head] - corrupted_cache[z][:, :, src_head]) @ W_O
    block = model.blocks[dst_layer]
    resid = corrupted_cache[f"blocks.{dst_layer}.hook_resid_pre"]
    normed = torch.nn.functional.layer_norm(
        resid + delta, (model.cfg.d_model,), block.ln1.w, block.ln1.b, model.cfg.eps
    )
    W = getattr(block.attn, f"W_{component.upper()}")[dst_head]
    b = getattr(block.attn, f"b_{component.upper()}")[dst_head]
    value = normed @ W + b

    def put(activation, hook):
        activation = activation.clone()
        activation[:, :, dst_head] = value
        return activation

    with torch.no_grad():
        logits = model.run_with_hooks(
            corrupted, fwd_hooks=[(f"blocks.{dst_layer}.attn.hook_{component}", put)]
        )
    return metric(logits).item()


@pytest.mark.parametrize("component", COMPONENTS)
def test_correctness_against_a_path_patch_by_hand(setting, component):
    # TestCorrectness::test_correctness_against_actual_ln_forward: TL checks q to 1e-3 on a
    # folded model; TL 4.3 forks before ln1, so here every component agrees to float error.
    model, corrupted, clean_cache, corrupted_cache = setting
    src_head = 1
    results = _direct(model, corrupted, clean_cache, corrupted_cache, 0, src_head, component)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    assert results.shape == (n_layers, n_heads)  # TestOutputShape
    for dst_layer in range(1, n_layers):
        for dst_head in range(n_heads):
            expected = _by_hand(
                model,
                corrupted,
                clean_cache,
                corrupted_cache,
                (0, src_head),
                (dst_layer, dst_head),
                component,
            )
            assert abs(results[dst_layer, dst_head].item() - expected) < 1e-4 * (
                1 + abs(expected)
            ), (dst_layer, dst_head)
    assert not model.cfg.use_split_qkv_input  # the helper restored the flag


def test_causal_structure(setting):
    # TestCausalStructure::test_earlier_layers_are_zero / test_later_layers_are_nonzero /
    # TestEdgeCases::test_last_layer_source_all_zero / test_returns_cpu_tensor
    model, corrupted, clean_cache, corrupted_cache = setting
    results = _direct(model, corrupted, clean_cache, corrupted_cache, 0, 0)
    assert results[:1].eq(0).all()
    assert not results[1:].eq(0).all()
    assert results.is_cpu
    last = model.cfg.n_layers - 1
    assert _direct(model, corrupted, clean_cache, corrupted_cache, last, 0).eq(0).all()


def test_clean_equals_corrupted_gives_the_baseline(setting):
    # TestCausalStructure::test_clean_equals_corrupted_gives_zero_delta
    model, corrupted, _, corrupted_cache = setting
    with torch.no_grad():
        baseline = metric(model(corrupted)).item()
    results = _direct(model, corrupted, corrupted_cache, corrupted_cache, 0, 0)
    later = results[1:]
    torch.testing.assert_close(later, torch.full_like(later, baseline), atol=1e-4, rtol=1e-5)


def test_heads_differ_and_all_sources_match_one():
    # TestCorrectness::test_all_sources_consistent_with_single (IsoNet, 3 layers), and that
    # the destinations are told apart (a patch of each head gives its own value).
    model = _model("isonet3")
    corrupted, clean = _signals(model, 2), _signals(model, 1)
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean)
        _, corrupted_cache = model.run_with_cache(corrupted)
        single = _direct(model, corrupted, clean_cache, corrupted_cache, 0, 2)
        every = get_act_patch_direct_path_all_sources(
            model, corrupted, clean_cache, corrupted_cache, metric, verbose=False
        )
    n, h = model.cfg.n_layers, model.cfg.n_heads
    assert every.shape == (n, h, n, h)  # TestOutputShape::test_all_sources_shape
    torch.testing.assert_close(single, every[0, 2], atol=1e-5, rtol=1e-5)
    assert len(set(single[1:].flatten().tolist())) > 1


def test_get_act_patch_attn_head_all_pos_every():
    # test_patching.py: shape [5, n_layers, n_heads]; values vary; all finite
    model = _model("isonet3")
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(_signals(model, 1))
        result = get_act_patch_attn_head_all_pos_every(
            model, _signals(model, 2), clean_cache, metric
        )
    assert result.shape == (5, model.cfg.n_layers, model.cfg.n_heads)
    assert not torch.all(result == result[0, 0, 0])
    assert torch.isfinite(result).all()


def test_a_helper_that_sweeps_time_samples_as_positions_is_refused():
    model = IsoNet(EncoderConfig.preset("tiny", seed=0)).eval()  # 8 samples, 7 tokens
    x = model.example_input(2)
    _, cache = model.run_with_cache(x)
    with pytest.raises(
        LayoutError, match=r"sweeps 8 positions of blocks.0.hook_resid_pre, but the model has 7 "
    ):
        get_act_patch_resid_pre(model, x, cache, lambda out: out.sum())
