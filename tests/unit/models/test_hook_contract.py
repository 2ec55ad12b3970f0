"""The TransformerLens contract every emg_lens encoder keeps (docs/DESIGN.md §2).

Each test runs on every model in `MODELS`; later model families join the list, converted ones
(issue 24) included. Where a converted architecture breaks an identity TransformerLens assumes,
the test says so and checks what holds instead: a post-LN model's residual stream is not the
sum of its components (each norm rescales what came before it), but each block's sum before
its norm is; a model without a final norm has no ``ln_final`` to apply.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from transformer_lens import ActivationCache
from transformer_lens.model_protocol import TransformerLensModel
from transformer_lens.utilities import get_act_name

from emg_lens import InputShapeError, LayoutError
from tests.tiny import perturb_biases
from tests.unit.models.encoders import MODELS


@pytest.fixture(params=sorted(MODELS))
def make_model(request):
    def make(**overrides):
        model = MODELS[request.param](**overrides)
        perturb_biases(model)
        return model.eval()

    return make


def _all_hooks(model):
    return list(model.hook_dict)


def _post_norm(model):
    """A post-LN model (torch's norm_first=False): ln(resid + f(resid)) in every block."""
    return model.cfg.norm_position == "post"


def _has_final_norm(model):
    return hasattr(model.ln_final, "w")


def _needs_stack(model):
    """Skip a test about the shared stack `blocks` on a model that has none (the
    MultimodalTransformer: all its layers are in its stems, tested in test_fusion.py)."""
    if model.cfg.n_layers == 0:
        pytest.skip(f"{type(model).__name__} has no shared stack `blocks`")


# ----------------------------------------------------------------------------- contract


BLOCK_KEYS = [
    "hook_resid_pre",
    "ln1.hook_scale",
    "ln1.hook_normalized",
    "attn.hook_q",
    "attn.hook_k",
    "attn.hook_v",
    "attn.hook_attn_scores",
    "attn.hook_pattern",
    "attn.hook_z",
    "hook_attn_out",
    "hook_resid_mid",
    "ln2.hook_scale",
    "ln2.hook_normalized",
    "mlp.hook_pre",
    "mlp.hook_post",
    "hook_mlp_out",
    "hook_resid_post",
]


def test_isonet_cache_keys_in_order():
    model = MODELS["isonet"]().eval()
    _, cache = model.run_with_cache(model.example_input(2), return_type="both")
    expected = ["hook_input", "hook_embed", "hook_pos_embed"]
    for layer in range(2):
        expected += [f"blocks.{layer}.{k}" for k in BLOCK_KEYS]
    expected += [
        "ln_final.hook_scale",
        "ln_final.hook_normalized",
        "cls_head.hook_pooled",
        "avg_head.hook_pooled",
    ]
    assert list(cache.keys()) == expected


def test_isonet_cache_shapes():
    model = MODELS["isonet"]().eval()
    _, cache = model.run_with_cache(model.example_input(3))
    cfg = model.cfg
    assert cache["blocks.0.attn.hook_attn_scores"].shape == (3, cfg.n_heads, 7, 7)
    assert cache["pattern", 1].shape == (3, cfg.n_heads, 7, 7)
    assert cache["q", 0].shape == (3, 7, cfg.n_heads, cfg.d_head)
    assert cache["resid_post", 1].shape == (3, 7, cfg.d_model)
    assert cache["blocks.0.ln1.hook_scale"].shape == (3, 7, 1)


def test_weight_shapes_are_legacy(make_model):
    model = make_model()
    _needs_stack(model)
    cfg = model.cfg
    attn, mlp = model.blocks[0].attn, model.blocks[0].mlp
    h, d, dh = cfg.n_heads, cfg.d_model, cfg.d_head
    assert attn.W_Q.shape == attn.W_K.shape == attn.W_V.shape == (h, d, dh)
    assert attn.W_O.shape == (h, dh, d)
    assert attn.b_Q.shape == (h, dh) and attn.b_O.shape == (d,)
    assert mlp.W_in.shape == (d, cfg.d_mlp) and mlp.W_out.shape == (cfg.d_mlp, d)
    assert model.blocks[0].ln1.w.shape == (d,)
    if _has_final_norm(model):
        assert model.ln_final.b.shape == (d,)


def test_satisfies_the_transformer_lens_protocol(make_model):
    model = make_model()
    assert isinstance(model, TransformerLensModel)
    _, cache = model.run_with_cache(model.example_input())
    assert isinstance(cache, ActivationCache)


def test_get_act_name_names_our_hook_points(make_model):
    model = make_model()
    _needs_stack(model)
    for layer in range(model.cfg.n_layers):
        for name in ("attn_scores", "pattern", "q", "k", "v", "z", "resid_pre", "mlp_out"):
            assert get_act_name(name, layer) in model.hook_dict


# ----------------------------------------------------------------------------- ActivationCache


def test_decompose_resid_sums_to_final_residual(make_model):
    model = make_model()
    final, cache = model.run_with_cache(model.example_input(2), return_type=None)
    parts, labels = cache.decompose_resid(return_labels=True)
    assert labels[0] == "embed"
    if not _post_norm(model):
        torch.testing.assert_close(parts.sum(0), final, atol=1e-5, rtol=1e-5)
        return
    # Post-LN: the final stream is not the sum of the components (each norm rescales all that
    # came before it) ...
    assert not torch.allclose(parts.sum(0), final, atol=1e-3)
    # ... but every block adds its sub-layers' outputs before normalising the sum.
    for layer, block in enumerate(model.blocks):
        pre, mid = cache["resid_pre", layer], cache["resid_mid", layer]
        torch.testing.assert_close(block.ln1(pre + cache["attn_out", layer]), mid)
        torch.testing.assert_close(
            block.ln2(mid + cache["mlp_out", layer]), cache["resid_post", layer]
        )


def test_accumulated_resid_and_apply_ln(make_model):
    model = make_model()
    _needs_stack(model)
    if not _has_final_norm(model):
        pytest.skip("no final norm (ln_final is the identity): nothing for apply_ln_to_stack")
    _, cache = model.run_with_cache(model.example_input(2))
    n = model.cfg.n_layers
    acc, labels = cache.accumulated_resid(return_labels=True)
    assert acc.shape[0] == n + 1 and labels[-1] == "final_post"
    normed = cache.apply_ln_to_stack(acc[-1:], layer=n)
    # apply_ln_to_stack uses the cached ln_final scale: on the final residual it must equal
    # ln_final without its affine part, which is what hook_normalized holds.
    expected = cache["ln_final.hook_normalized"]
    torch.testing.assert_close(normed[0], expected, atol=1e-4, rtol=1e-4)


def _legacy_layer_norm(x, eps):
    """TransformerLens's LayerNorm by hand: ``(scale, normalized)``, normalized before w, b."""
    centred = x - x.mean(-1, keepdim=True)
    scale = (centred.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    return scale, centred / scale


def _norm_inputs(model, cache):
    """Every LayerNorm of the shared stack, with the cached stream that enters it."""
    final = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    pairs = [("ln_final", cache[final])] if _has_final_norm(model) else []
    for layer in range(model.cfg.n_layers):
        pre, mid = cache["resid_pre", layer], cache["resid_mid", layer]
        if _post_norm(model):  # the norms take each block's sums
            pairs.append((f"blocks.{layer}.ln1", pre + cache["attn_out", layer]))
            pairs.append((f"blocks.{layer}.ln2", mid + cache["mlp_out", layer]))
        else:
            pairs.append((f"blocks.{layer}.ln1", pre))
            pairs.append((f"blocks.{layer}.ln2", mid))
    return pairs


def test_layer_norm_hooks_match_the_legacy_formula(make_model):
    # hook_scale = sqrt(var + eps); hook_normalized = (x - mean) / scale, *before* w and b
    # (TransformerLens >= 3.0 and TL 4.3's bridge). perturb_biases makes w, b non-trivial.
    model = make_model()
    _needs_stack(model)
    _, cache = model.run_with_cache(model.example_input(3))
    for name, x in _norm_inputs(model, cache):
        ln = model.get_submodule(name)
        scale, normalized = _legacy_layer_norm(x, model.cfg.eps)
        torch.testing.assert_close(cache[f"{name}.hook_scale"], scale, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(
            cache[f"{name}.hook_normalized"], normalized, atol=1e-5, rtol=1e-5
        )
        # The fused path (nothing observes the norm) computes the same output.
        with torch.no_grad():
            torch.testing.assert_close(ln(x), normalized * ln.w + ln.b, atol=1e-5, rtol=1e-5)


def test_patching_hook_normalized_goes_through_the_affine():
    model = MODELS["isonet"]().eval()
    perturb_biases(model)
    x = model.example_input(2)
    ln = model.blocks[0].ln1
    seen = {}

    def patch(value, hook):
        seen["out"] = torch.full_like(value, 0.5)
        return seen["out"]

    outputs = []
    ln.register_forward_hook(lambda module, args, out: outputs.append(out))
    model.run_with_hooks(x, fwd_hooks=[("blocks.0.ln1.hook_normalized", patch)])
    torch.testing.assert_close(outputs[-1], seen["out"] * ln.w + ln.b)


def test_stack_head_results_and_full_decomposition(make_model):
    model = make_model()
    _needs_stack(model)
    final, cache = model.run_with_cache(model.example_input(2), return_type=None)
    heads, labels = cache.stack_head_results(return_labels=True)
    assert heads.shape[0] == model.cfg.n_layers * model.cfg.n_heads and labels[0] == "L0H0"
    full = cache.get_full_resid_decomposition(expand_neurons=True)
    if _post_norm(model):  # no sum across norms (see test_decompose_resid_sums_...)
        assert not torch.allclose(full.sum(0), final, atol=1e-3)
        return
    torch.testing.assert_close(full.sum(0), final, atol=1e-4, rtol=1e-4)


def test_head_sum_identity(make_model):
    model = make_model(use_attn_result=True)
    _needs_stack(model)
    _, cache = model.run_with_cache(model.example_input(2))
    for layer in range(model.cfg.n_layers):
        summed = cache["result", layer].sum(dim=-2) + model.blocks[layer].attn.b_O
        torch.testing.assert_close(summed, cache["attn_out", layer], atol=1e-6, rtol=1e-6)


# ----------------------------------------------------------------------------- hooks and paths


def test_noop_hooks_are_bit_identical(make_model):
    model = make_model()
    x = model.example_input(3)

    def noop(tensor, hook):
        return tensor

    # Hooks on the residual stream keep every fast path: bit-identical to the plain forward.
    # (Observing attention or LayerNorm internals switches those to their explicit paths.)
    outside = [
        (n, noop)
        for n in _all_hooks(model)
        if n.rsplit(".", 1)[-1].startswith(
            ("hook_resid", "hook_attn_out", "hook_mlp_out", "hook_embed", "hook_pos_embed")
        )
    ]
    assert outside
    assert torch.equal(model.run_with_hooks(x, fwd_hooks=outside), model(x))
    # Hooks everywhere take the explicit path: bit-identical to observing that path. (Not on
    # the optional hook points whose flag is off: a hook there is refused, as in TL.)
    everywhere = [(n, noop) for n in _all_hooks(model) if model.flag_off(n) is None]
    logits, _ = model.run_with_cache(x)
    assert torch.equal(model.run_with_hooks(x, fwd_hooks=everywhere), logits)


def test_hooks_see_and_change_activations(make_model):
    model = make_model()
    _needs_stack(model)
    x = model.example_input(2)
    name = get_act_name("attn_scores", 0)

    def wipe(scores, hook):
        assert hook.name == name
        return torch.zeros_like(scores)

    changed = model.run_with_hooks(x, fwd_hooks=[(name, wipe)])
    assert not torch.allclose(changed, model(x))
    assert torch.equal(model(x), model(x))  # the hook was removed afterwards


def _random_mask(model, batch=None, seed=0):
    n = model.layout.n_tokens
    gen = torch.Generator().manual_seed(seed)
    shape = (model.cfg.n_heads, n, n) if batch is None else (batch, model.cfg.n_heads, n, n)
    return torch.rand(shape, generator=gen) < 0.4


@pytest.mark.parametrize("masked", [False, True])
def test_fast_path_equals_explicit_path(make_model, masked):
    model = make_model()
    _needs_stack(model)
    x = model.example_input(4)
    masks = {layer: _random_mask(model, seed=layer) for layer in range(model.cfg.n_layers)}
    masks = masks if masked else None
    assert not any(block.attn.hooks_active() for block in model.blocks)
    fast = model(x, edge_masks=masks)
    explicit, cache = model.run_with_cache(x, edge_masks=masks)
    torch.testing.assert_close(fast, explicit, atol=1e-5, rtol=1e-5)
    if masked:
        for layer, mask in masks.items():
            assert (cache["pattern", layer][:, mask] == 0).all()


def test_fully_masked_query_row_is_zero_not_nan(make_model):
    model = make_model()
    _needs_stack(model)
    n = model.layout.n_tokens
    mask = torch.zeros(model.cfg.n_heads, n, n, dtype=torch.bool)
    mask[:, 1, :] = True  # query 1 may read nothing, in every head
    masks = {0: mask}
    x = model.example_input(2)
    fast = model(x, edge_masks=masks)
    explicit, cache = model.run_with_cache(x, edge_masks=masks)
    assert torch.isfinite(fast).all() and torch.isfinite(explicit).all()
    assert (cache["pattern", 0][:, :, 1] == 0).all()
    assert (cache["z", 0][:, 1] == 0).all()
    torch.testing.assert_close(fast, explicit, atol=1e-5, rtol=1e-5)


def test_start_and_stop_at_layer_compose(make_model):
    model = make_model()
    _needs_stack(model)
    x = model.example_input(3)
    full = model(x)
    for layer in range(model.cfg.n_layers + 1):
        resid = model(x, stop_at_layer=layer)
        if layer < model.cfg.n_layers:
            torch.testing.assert_close(resid, model.run_with_cache(x)[1]["resid_pre", layer])
            torch.testing.assert_close(model(resid, start_at_layer=layer), full)
    torch.testing.assert_close(model(x, stop_at_layer=-1), model(x, stop_at_layer=1))


def test_bad_inputs_raise_clear_errors(make_model):
    model = make_model()
    c, t = model.input_shape
    with pytest.raises(
        InputShapeError, match=rf"channels={c}, time={t}\], got \[2, {c - 1}, {t}\]"
    ):
        model(torch.zeros(2, c - 1, t))
    with pytest.raises(InputShapeError, match="residual stream"):
        model(torch.zeros(2, c, t), start_at_layer=0)
    with pytest.raises(LayoutError, match="stop_at_layer"):
        model(model.example_input(), stop_at_layer=7)
    with pytest.raises(LayoutError, match="edge_masks"):
        model(model.example_input(), edge_masks={0: torch.zeros(3, 3, dtype=torch.bool)})


# ----------------------------------------------------------------------------- reference forward


def _reference_block(block, x, eps):
    """One pre-LN block written from the TransformerLens equations with plain matmuls."""

    def layer_norm(t, ln):
        t = t - t.mean(-1, keepdim=True)
        return t / torch.sqrt(t.pow(2).mean(-1, keepdim=True) + eps) * ln.w + ln.b

    attn, mlp = block.attn, block.mlp
    h = layer_norm(x, block.ln1)
    q = torch.stack([h @ attn.W_Q[i] + attn.b_Q[i] for i in range(attn.W_Q.shape[0])], dim=1)
    k = torch.stack([h @ attn.W_K[i] + attn.b_K[i] for i in range(attn.W_K.shape[0])], dim=1)
    v = torch.stack([h @ attn.W_V[i] + attn.b_V[i] for i in range(attn.W_V.shape[0])], dim=1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # [batch, head, q, k]
    pattern = scores.softmax(-1)
    z = pattern @ v  # [batch, head, q, d_head]
    attn_out = sum(z[:, i] @ attn.W_O[i] for i in range(z.shape[1])) + attn.b_O
    mid = x + attn_out
    pre = layer_norm(mid, block.ln2) @ mlp.W_in + mlp.b_in
    return mid + F.gelu(pre) @ mlp.W_out + mlp.b_out, pattern


def test_blocks_match_an_independent_reference_forward():
    model = MODELS["isonet"](act_fn="gelu").eval()
    perturb_biases(model)
    x = model.example_input(2)
    _, cache = model.run_with_cache(x)
    resid = cache["hook_embed"] + cache["hook_pos_embed"]
    for layer, block in enumerate(model.blocks):
        resid, pattern = _reference_block(block, resid, model.cfg.eps)
        torch.testing.assert_close(pattern, cache["pattern", layer], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(resid, cache["resid_post", layer], atol=1e-5, rtol=1e-5)


def test_legacy_state_dict_loads_strictly():
    """A legacy HookedTransformer's blocks.*/ln_final.* entries, with the derived buffers it
    saved (attn.mask, attn.IGNORE), load with strict=True and compute the same thing."""
    source = MODELS["isonet"]().eval()
    perturb_biases(source)
    target = MODELS["isonet"](seed=1).eval()
    n = source.cfg.n_ctx
    legacy = {}
    for key, value in source.state_dict().items():
        if key.startswith(("blocks.", "ln_final.")):
            legacy[key] = value.clone()
    for layer in range(source.cfg.n_layers):
        legacy[f"blocks.{layer}.attn.mask"] = torch.tril(torch.ones(n, n, dtype=torch.bool))
        legacy[f"blocks.{layer}.attn.IGNORE"] = torch.tensor(-torch.inf)
    target.blocks.load_state_dict(
        {k.removeprefix("blocks."): v for k, v in legacy.items() if k.startswith("blocks.")},
        strict=True,
    )
    target.ln_final.load_state_dict(
        {k.removeprefix("ln_final."): v for k, v in legacy.items() if k.startswith("ln_final.")},
        strict=True,
    )
    resid = torch.randn(2, n, source.cfg.d_model)
    torch.testing.assert_close(
        target(resid, start_at_layer=0, return_type=None),
        source(resid, start_at_layer=0, return_type=None),
    )


def test_fast_path_sees_weight_changes_after_caching(make_model):
    """The fused q/k/v weight is cached for evaluation; changing a weight must invalidate it."""
    model = make_model()
    if model.cfg.n_layers == 0:
        pytest.skip("no shared stack")
    x = model.example_input(2)
    with torch.inference_mode():
        before = model(x)
    with torch.no_grad():
        # in place: the version counter moves. (W_V, not W_Q: with LaBraM's qk-norm a scaled
        # W_Q is normalised away.)
        model.blocks[0].attn.W_V.mul_(3.0)
    with torch.inference_mode():
        after = model(x)
    assert not torch.allclose(before, after)
    explicit, _ = model.run_with_cache(x)  # the explicit path never uses the cached weight
    torch.testing.assert_close(after, explicit, atol=1e-5, rtol=1e-5)
    # A cached weight built under inference mode must still allow input gradients later.
    x = x.clone().requires_grad_(True)
    model(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
