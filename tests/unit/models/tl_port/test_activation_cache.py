"""TransformerLens's ActivationCache tests, ported onto the pre-LN tiers with weights.

Source: TransformerLensOrg/TransformerLens ``tests/acceptance/test_activation_cache.py`` (each
test below names the one it ports). Its model is a 2-layer language model read at the last
token; here each model is read at its last token too (``pos_slice=-1``), and the assertions
are TL's. (Post-LN models are left out: their residual stream is not a sum of components, see
tests/unit/models/test_hook_contract.py.)
"""

from __future__ import annotations

import copy

import pytest
import torch
from transformer_lens.utilities import Slice, get_act_name

from tests.unit.models.tl_port.conftest import NORMED, PRE_LN, get_model


@pytest.fixture(params=PRE_LN, scope="module")
def cached(request):
    # float64, so that TL's own tolerances hold (its default atol 1e-8 on sums of components)
    model = copy.deepcopy(get_model(request.param)).to(torch.float64)  # the session's stays
    with torch.no_grad():
        _, cache = model.run_with_cache(model.example_input(4))
    return model, cache


NORMED_ONLY = pytest.mark.parametrize("cached", NORMED, indirect=True)
"""On the models with a final norm (apply_ln has nothing to apply without one)."""


@torch.no_grad()
@NORMED_ONLY
def test_accumulated_resid_with_apply_ln(cached):  # test_accumulated_resid_with_apply_ln
    model, cache = cached
    accumulated = cache.accumulated_resid(layer=-1, incl_mid=True, pos_slice=-1)
    ref = cache.apply_ln_to_stack(accumulated, layer=-1, pos_slice=-1, recompute_ln=True)
    scaled = cache.accumulated_resid(layer=-1, incl_mid=True, pos_slice=-1, apply_ln=True)
    assert torch.isclose(ref, scaled, atol=1e-7).all()
    scaled, labels = cache.accumulated_resid(
        layer=None, incl_mid=True, pos_slice=Slice(-1), apply_ln=True, return_labels=True
    )
    assert torch.isclose(ref, scaled, atol=1e-7).all()
    expected = [f"{layer}_{part}" for layer in range(model.cfg.n_layers) for part in ("pre", "mid")]
    assert labels == [*expected, "final_post"]


@torch.no_grad()
@NORMED_ONLY
def test_apply_ln_recompute_ln_differs_from_cached(cached):
    _, cache = cached
    accumulated = cache.accumulated_resid(layer=-1, incl_mid=True, pos_slice=-1)
    recomputed = cache.apply_ln_to_stack(accumulated, layer=-1, pos_slice=-1, recompute_ln=True)
    from_cache = cache.apply_ln_to_stack(accumulated, layer=-1, pos_slice=-1, recompute_ln=False)
    assert recomputed.shape == from_cache.shape
    assert not torch.isclose(recomputed, from_cache, atol=1e-7).all()


def _bare(model, cache):
    """A cache of ``return_type=None`` beside ``cache`` (the logits'), and the names of
    ``ln_final``'s hooks that both hold."""
    with torch.no_grad():
        _, bare = model.run_with_cache(model.example_input(4), return_type=None)
    names = [k for k in cache.cache_dict if k.startswith("ln_final.")]
    assert names == [k for k in bare.cache_dict if k.startswith("ln_final.")]
    return bare, names


@torch.no_grad()
def test_a_cache_without_outputs_holds_ln_final(cached):
    # HookedTransformer.forward runs ln_final before `if return_type is None: return None`, so
    # the TL idiom `_, cache = model.run_with_cache(x, return_type=None)` caches its hooks
    model, cache = cached
    bare, names = _bare(model, cache)
    for name in names:
        torch.testing.assert_close(bare[name], cache[name], rtol=0, atol=0)


@torch.no_grad()
@NORMED_ONLY
def test_a_cache_without_outputs_applies_ln_final(cached):
    # ... and apply_ln=True reads the cached scale, as on a cache of the logits.
    model, cache = cached
    bare, names = _bare(model, cache)
    assert "ln_final.hook_scale" in names
    ref = cache.decompose_resid(layer=None, apply_ln=True, pos_slice=-1)
    torch.testing.assert_close(bare.decompose_resid(layer=None, apply_ln=True, pos_slice=-1), ref)
    heads = bare.stack_head_results(layer=-1, apply_ln=True, pos_slice=-1)
    torch.testing.assert_close(heads, cache.stack_head_results(-1, apply_ln=True, pos_slice=-1))


@torch.no_grad()
@NORMED_ONLY
def test_decompose_resid_with_apply_ln(cached):  # test_decompose_resid_with_apply_ln
    _, cache = cached
    per_layer = cache.decompose_resid(layer=-1, pos_slice=-1)
    ref = cache.apply_ln_to_stack(per_layer, layer=-1, pos_slice=-1)
    scaled = cache.decompose_resid(layer=None, pos_slice=Slice(-1), apply_ln=True)
    assert torch.isclose(ref, scaled, atol=1e-7).all()


@torch.no_grad()
def test_decompose_resid_including_attention(cached):  # test_decompose_resid_including_...
    model, cache = cached
    ref = torch.stack([cache["attn_out", layer][:, -1] for layer in range(model.cfg.n_layers)])
    stack = cache.decompose_resid(
        layer=1, pos_slice=Slice(-1), mlp_input=True, apply_ln=False, incl_embeds=False, mode="attn"
    )
    assert torch.isclose(ref, stack, atol=1e-7).all()


@torch.no_grad()
@NORMED_ONLY
def test_stack_head_results_with_apply_ln(cached):  # test_stack_head_results_with_apply_ln
    _, cache = cached
    per_head = cache.stack_head_results(layer=-1, pos_slice=-1)
    ref = cache.apply_ln_to_stack(per_head, layer=None, pos_slice=Slice(-1))
    scaled = cache.stack_head_results(layer=-1, pos_slice=-1, apply_ln=True)
    assert torch.isclose(ref, scaled, atol=1e-7).all()


@torch.no_grad()
def test_stack_head_results_including_remainder(cached):  # test_stack_head_results_incl...
    model, cache = cached
    ref = cache["resid_post", 0][None, :, -1]
    per_head, labels = cache.stack_head_results(
        layer=1, pos_slice=-1, incl_remainder=True, return_labels=True
    )
    remainder = ref - per_head[:-1].sum(dim=0)
    assert torch.isclose(remainder, per_head[-1]).all()
    assert labels[:-1] == [f"L0H{i}" for i in range(model.cfg.n_heads)]
    assert labels[-1] == "remainder"
    ref = cache["resid_post", -1][None, :, -1]
    per_head, labels = cache.stack_head_results(
        layer=0, pos_slice=-1, incl_remainder=True, return_labels=True
    )
    assert torch.isclose(ref, per_head, atol=1e-7).all()
    assert labels == ["remainder"]
    per_head, labels = cache.stack_head_results(
        layer=0, pos_slice=-1, incl_remainder=False, return_labels=True
    )
    assert torch.isclose(per_head, torch.zeros_like(per_head)).all()
    assert len(labels) == 0


@torch.no_grad()
def test_stack_neuron_results(cached):
    # test_stack_neuron_results_with_apply_ln / _including_remainder / _using_neuron_slice
    model, cache = cached
    ref = cache["resid_post", 0][None, :, -1]
    stack, labels = cache.stack_neuron_results(
        layer=1, pos_slice=Slice(-1), incl_remainder=True, return_labels=True
    )
    remainder = ref - stack[:-1].sum(dim=0)
    assert torch.isclose(remainder, stack[-1]).all()
    assert labels[:-1] == [f"L0N{i}" for i in range(model.cfg.d_mlp)]
    assert labels[-1] == "remainder"
    ref = cache["resid_post", -1][None, :, -1]
    stack, labels = cache.stack_neuron_results(
        layer=0, pos_slice=Slice(-1), incl_remainder=True, return_labels=True
    )
    assert torch.isclose(ref, stack, atol=1e-7).all()
    assert labels == ["remainder"]
    stack, labels = cache.stack_neuron_results(
        layer=0, pos_slice=Slice(-1), incl_remainder=False, return_labels=True
    )
    assert torch.isclose(stack, torch.zeros_like(stack)).all()
    assert len(labels) == 0
    _, labels = cache.stack_neuron_results(
        layer=1, pos_slice=Slice(-1), neuron_slice=Slice([0, 1, 2]), return_labels=True
    )
    assert labels == [f"L0N{i}" for i in range(3)]
    if hasattr(model.ln_final, "w"):
        stack = cache.stack_neuron_results(layer=-1, pos_slice=-1)
        ref = cache.apply_ln_to_stack(stack, layer=-1, pos_slice=-1)
        scaled = cache.stack_neuron_results(layer=-1, pos_slice=Slice(-1), apply_ln=True)
        assert torch.isclose(ref, scaled, atol=1e-7).all()


@torch.no_grad()
def test_remove_batch_dim(cached):  # test_remove_batch_dim / _fails_if_batch_gt_1
    model, cache = cached
    with pytest.raises(AssertionError):
        cache.remove_batch_dim()
    _, single = model.run_with_cache(model.example_input(1))
    assert single.has_batch_dim
    before = {key: single.cache_dict[key].shape for key in single.cache_dict}
    single.remove_batch_dim()
    assert not single.has_batch_dim
    assert all(before[key][1:] == single.cache_dict[key].shape for key in before)
    single.remove_batch_dim()  # again: nothing changes
    assert all(before[key][1:] == single.cache_dict[key].shape for key in before)


@torch.no_grad()
def test_retrieve_activations_and_views(cached):
    # test_retrieve_activations / test_get_items / test_get_values / test_get_keys
    model, cache = cached
    last = model.cfg.n_layers - 1
    assert torch.equal(cache[("scale", 1, "ln1")], cache[get_act_name("scale", 1, "ln1")])
    assert torch.equal(cache[("scale", -1, "ln1")], cache[f"scale{last}ln1"])
    assert torch.equal(cache[("k", -1, None)], cache[f"blocks.{last}.attn.hook_k"])
    assert torch.equal(cache["embed"], cache[get_act_name("embed")])
    assert torch.equal(cache[("embed", None)], cache[get_act_name("embed", None)])
    for (k1, v1), (k2, v2) in zip(cache.items(), cache.cache_dict.items(), strict=True):
        assert k1 == k2 and torch.equal(v1, v2)
    assert all(torch.equal(a, b) for a, b in zip(cache.values(), cache.cache_dict.values()))
    assert list(cache.keys()) == list(cache.cache_dict.keys())


@torch.no_grad()
def test_apply_slice_to_batch_dim(cached):  # test_apply_slice_to_batch_dim
    _, cache = cached
    sliced = cache.apply_slice_to_batch_dim(Slice((2, 4)))
    assert sliced.has_batch_dim
    assert all(torch.equal(cache[key][2:4], sliced[key]) for key in cache.cache_dict)
    one = cache.apply_slice_to_batch_dim(2)
    assert not one.has_batch_dim
    assert all(torch.equal(cache[key][2], one[key]) for key in cache.cache_dict)


@torch.no_grad()
def test_stack_activation(cached):  # test_stack_activation
    model, cache = cached
    stack = cache.stack_activation("scale", -1, "ln1")
    assert all(
        torch.equal(cache[("scale", layer, "ln1")], stack[layer])
        for layer in range(model.cfg.n_layers)
    )
    stack = cache.stack_activation("scale", 1, "ln1")
    assert len(stack) == 1 and torch.equal(cache[("scale", 0, "ln1")], stack[0])


def test_toggle_autodiff(cached):  # test_toggle_autodiff
    _, cache = cached
    with torch.no_grad():
        assert not torch.is_grad_enabled()
        cache.toggle_autodiff(mode=True)
        assert torch.is_grad_enabled()
    torch.set_grad_enabled(True)


@torch.no_grad()
def test_remove_batch_dim_on_one_window(cached):
    # TL's run_with_cache(remove_batch_dim=True) reads the input's first axis as the batch: a
    # single [channel, time] window gets its batch axis first, as forward gives it one.
    model, _ = cached
    window = model.example_input(1)[0]
    _, single = model.run_with_cache(window, remove_batch_dim=True)
    _, batched = model.run_with_cache(window[None], remove_batch_dim=True)
    assert single.keys() == batched.keys()
    for name in batched.keys():  # noqa: SIM118 (an ActivationCache, not a dict)
        torch.testing.assert_close(single[name], batched[name], rtol=0, atol=0)


@torch.no_grad()
@pytest.mark.parametrize("cached", [n for n in PRE_LN if n not in NORMED], indirect=True)
def test_a_model_without_a_final_norm_applies_none(cached):
    # TL's apply_ln_to_stack returns a stack unchanged for a model without norms; a model with
    # norms in its blocks but none at the end (TL has none such) applies none at the end
    # either, and still the blocks' where asked (TL looked for an ln_final scale: KeyError)
    _, cache = cached
    plain = cache.decompose_resid(layer=None, pos_slice=-1)
    torch.testing.assert_close(
        cache.decompose_resid(layer=None, apply_ln=True, pos_slice=-1), plain, rtol=0, atol=0
    )
    heads = cache.stack_head_results(layer=-1, pos_slice=-1)
    torch.testing.assert_close(
        cache.stack_head_results(layer=-1, apply_ln=True, pos_slice=-1), heads, rtol=0, atol=0
    )
    inner = cache.decompose_resid(layer=1, apply_ln=True, pos_slice=-1)  # ln1 of block 1
    scale = cache["blocks.1.ln1.hook_scale"][:, -1]
    centred = cache.decompose_resid(layer=1, pos_slice=-1)
    centred = centred - centred.mean(-1, keepdim=True)
    torch.testing.assert_close(inner, centred / scale)
