"""The fast path's fused q/k/v copies (`Attention._cached`) follow the weights: rebuilt when a
conversion or a load replaces or changes them, kept when a `.to()` changes nothing (the study
runner and discovery move every subject's model to the study's device on every call)."""

from __future__ import annotations

import torch

from tests.tiny import tiny_isonet


def _fused(model) -> list:
    return [block.attn._qkv_cache for block in model.blocks]


def test_a_to_that_changes_nothing_keeps_the_fused_copies():
    model = tiny_isonet(perturb=True).eval()
    x = model.example_input(4)
    with torch.inference_mode():
        expected = model(x)
    cached = _fused(model)
    assert all(c is not None for c in cached)
    model.to("cpu").to(torch.float32)
    assert all(a is b for a, b in zip(_fused(model), cached))
    with torch.inference_mode():
        torch.testing.assert_close(model(x), expected, rtol=0, atol=0)


def test_a_conversion_or_a_load_rebuilds_them():
    model = tiny_isonet(perturb=True).eval()
    x = model.example_input(4)
    with torch.inference_mode():
        model(x)
    model.double()
    assert all(c is None for c in _fused(model))
    with torch.inference_mode():
        got = model(x.double())
    assert all(c[1][0].dtype == torch.float64 for c in _fused(model))
    # the same function in float64: the hooked (explicit) path computes it from the weights
    explicit = [("blocks.0.attn.hook_attn_scores", lambda t, hook: t)]
    with model.hooks(explicit), torch.inference_mode():
        torch.testing.assert_close(got, model(x.double()), rtol=1e-12, atol=1e-12)

    other = tiny_isonet(seed=1, perturb=True).double().eval()
    model.load_state_dict(other.state_dict())
    with torch.inference_mode():
        torch.testing.assert_close(model(x.double()), other(x.double()), rtol=0, atol=0)
