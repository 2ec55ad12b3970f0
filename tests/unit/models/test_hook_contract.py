"""The hook contract every emg_lens model keeps (docs/DESIGN.md §2), one test over the three
tiers of docs/ARCHITECTURE.md (issue 48).

`test_contract` runs every check on every model of the table (`tests.unit.models.table`:
native, converted and attached), as scikit-learn's ``parametrize_with_checks`` runs each of its
checks on each estimator, chosen by the model's capabilities (`emg_lens.models.base.provides`):
a check is generated only for the models having what it needs (`table.traits`, declared per
model and checked against the built model in `test_capabilities`), and a model lacking a
capability is checked to refuse it by name (the ``refuses_*`` checks). Models are built once
per process and shared; a check that changes one puts it back.

Where a converted architecture breaks an identity TransformerLens assumes, the check says so and
checks what holds instead: a post-LN model's residual stream is not the sum of its components
(each norm rescales what came before it), but each block's sum before its norm is; a model
without a final norm has no ``ln_final`` to apply. The MultimodalTransformer has no shared stack
(``n_layers=0``: its layers are its stems', tested in test_fusion.py): the checks about the
stack ``blocks`` are not generated for it. A few IsoNet-specific tests follow the contract.
"""

from __future__ import annotations

import copy
import io
import math
import pickle
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from transformer_lens import ActivationCache
from transformer_lens.model_protocol import TransformerLensModel
from transformer_lens.utilities import get_act_name

from emg_lens import InputShapeError, LayoutError
from emg_lens.errors import UnsupportedFeatureError
from emg_lens.models.base import (
    ATTENTION_HOOKS,
    LAYERWISE,
    LINEAR_READOUT,
    SPLIT_QKV,
    TL_WEIGHTS,
    provides,
    require,
)
from tests.unit.models import table
from tests.unit.models.table import TABLE, layout_of

# ----------------------------------------------------------------------------- the checks

CHECKS: dict[str, Callable] = {}
"""name -> check(name, model); each has ``needs``: the capabilities it applies with."""


def check(*needs: str, stack: bool = False, lacks: tuple[str, ...] = ()):
    """Register a check that applies to the models having ``needs`` (capabilities and the
    table's traits: `table.traits`; ``stack``: a shared stack ``blocks``) and none of
    ``lacks``: `test_contract` is generated for those models only."""

    def register(fn):
        fn.needs, fn.lacks = (*needs, *((table.STACK,) if stack else ())), lacks
        CHECKS[fn.__name__.removeprefix("check_")] = fn
        return fn

    return register


# ----------------------------------------------------------------------------- helpers

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
POST_LN_KEYS = [  # a post-LN block normalises each sub-layer's sum after it
    "hook_resid_pre",
    *BLOCK_KEYS[3:10],  # attention, its output
    "ln1.hook_scale",
    "ln1.hook_normalized",
    "hook_resid_mid",
    *BLOCK_KEYS[13:16],  # the MLP, its output
    "ln2.hook_scale",
    "ln2.hook_normalized",
    "hook_resid_post",
]
ATTACHED_KEYS = ["hook_resid_pre", "attn.hook_attn_scores", "attn.hook_pattern", "hook_resid_post"]


def _noop(tensor, hook):
    return tensor


def _post_norm(model):
    """A post-LN model (torch's norm_first=False): ln(resid + f(resid)) in every block."""
    return model.cfg.norm_position == "post"


def _has_final_norm(model):
    return hasattr(model.ln_final, "w")


def _stack(model) -> str:
    """The prefix of the model's first block stack (a stem's where it has no shared one)."""
    if model.cfg.n_layers or not hasattr(model, "stems"):
        return "blocks"
    return f"stems.{next(iter(model.stems))}.blocks"


def _n_layers(model, prefix: str = "blocks") -> int:
    n = 0
    while f"{prefix}.{n}.attn.hook_pattern" in model.hook_dict:
        n += 1
    return n


def _heads(model, layer: int) -> int:
    return model.layer_heads[layer] if hasattr(model, "layer_heads") else model.cfg.n_heads


def _folds(model, layer: int) -> int:
    """Attention problems per input row that layer ``layer`` folds into its batch."""
    return (model.folds_of(layer) or 1) if hasattr(model, "folds_of") else 1


def _cut(model, layer: int, seed: int, p: float = 0.5, heads: int | None = None):
    """A random cut ``[heads, query, key]`` of layer ``layer`` that leaves every query its own
    key (query ``i`` keeps key ``i``)."""
    lay = layout_of(model, layer)
    q, k = lay.n_queries, lay.n_tokens
    gen = torch.Generator().manual_seed(seed)
    shape = (heads or _heads(model, layer), q, k)
    return (torch.rand(shape, generator=gen) < p) & ~torch.eye(q, k, dtype=torch.bool)


def _random_mask(model, layer: int, seed: int):
    """A random mask ``[heads, query, key]`` (40 %: some queries keep no key)."""
    lay = layout_of(model, layer)
    gen = torch.Generator().manual_seed(seed)
    shape = (_heads(model, layer), lay.n_queries, lay.n_tokens)
    return torch.rand(shape, generator=gen) < 0.4


def _close(a, b, atol=1e-5, rtol=1e-5):
    torch.testing.assert_close(a, b, atol=atol, rtol=rtol)


# ----------------------------------------------------------------------------- every model


@check()
def check_satisfies_the_transformer_lens_protocol(name, model):
    assert isinstance(model, TransformerLensModel)
    _, cache = model.run_with_cache(model.example_input())
    assert isinstance(cache, ActivationCache)


@check()
def check_cache_keys_in_order(name, model):
    """``hook_input`` first; each layer's keys in the order its block computes them, layer
    after layer."""
    _, cache = model.run_with_cache(model.example_input(2))
    keys = list(cache.keys())
    assert keys[0] == "hook_input"
    if not provides(model, ATTENTION_HOOKS):
        return
    prefix = _stack(model)
    if not provides(model, LAYERWISE):
        order = ATTACHED_KEYS
    else:
        order = POST_LN_KEYS if _post_norm(model) else BLOCK_KEYS
    first = []
    for layer in range(_n_layers(model, prefix)):
        mine = [k.removeprefix(f"{prefix}.{layer}.") for k in keys]
        block = [k for k, full in zip(mine, keys, strict=True) if k != full and k in order]
        assert [order.index(k) for k in block] == sorted(order.index(k) for k in block), block
        assert {"attn.hook_attn_scores", "attn.hook_pattern"} <= set(block)
        if provides(model, LAYERWISE):
            assert set(block) == set(BLOCK_KEYS)
        first.append(min(i for i, k in enumerate(keys) if k.startswith(f"{prefix}.{layer}.")))
    assert first == sorted(first)


@check()
def check_bad_signals_raise_clear_errors(name, model):
    c, t = model.input_shape
    with pytest.raises(
        InputShapeError, match=rf"channels={c}, time={t}\], got \[2, {c - 1}, {t}\]"
    ):
        model(torch.zeros(2, c - 1, t))
    with pytest.raises(InputShapeError, match="NaN"):
        model(torch.full((1, c, t), float("nan")))


@check()
def check_noop_hooks_are_bit_identical(name, model):
    x = model.example_input(3)
    # Hooks on the residual stream keep every fast path: bit-identical to the plain forward.
    # (Observing attention or LayerNorm internals switches those to their explicit paths.)
    outside = [
        (n, _noop)
        for n in model.hook_dict
        if n.rsplit(".", 1)[-1].startswith(
            ("hook_resid", "hook_attn_out", "hook_mlp_out", "hook_embed", "hook_pos_embed")
        )
    ]
    if provides(model, LAYERWISE):
        assert outside
    assert torch.equal(model.run_with_hooks(x, fwd_hooks=outside), model(x))
    # Hooks everywhere take the explicit path: bit-identical to observing that path. (Not on
    # the optional hook points whose flag is off: a hook there is refused, as in TL.)
    everywhere = [(n, _noop) for n in model.hook_dict if model.flag_off(n) is None]
    logits, _ = model.run_with_cache(x)
    assert torch.equal(model.run_with_hooks(x, fwd_hooks=everywhere), logits)


@check(table.ORIGINAL)
def check_unhooked_output_is_the_originals(name, model):
    """With nothing hooked an attached model runs its original, bit for bit (fast paths and
    all); a converted model computes its source's function (a native model is its own
    original: not generated)."""
    model, original = table.with_original(name)
    assert original is not None, name
    x = model.example_input(3)
    if TABLE[name].tier == "attached":
        with torch.no_grad():
            assert torch.equal(model(x), original(x))
        assert torch.equal(model(x), original(x))
    else:
        with torch.no_grad():
            assert (model(x) - original(x)).abs().max() <= 1e-5


def _pickling_error(obj) -> type[Exception] | None:
    """The class of the error pickling ``obj`` raises (None: it pickles)."""
    try:
        pickle.dumps(obj)
    except Exception as exc:  # the original's own refusal (braindecode's parametrized modules)
        return type(exc)
    return None


@check()
def check_a_copy_is_independent(name, model):
    """``copy.deepcopy`` works (it failed on every attached model: "cannot pickle
    '_thread.RLock'", issue 57) and gives a model computing the same, with weights, hooks and
    cuts of its own; ``torch.save`` of the module reads back the same model, where its
    original can be pickled (braindecode's ATCNet, BENDR and EEGPT hold parametrized modules,
    its LaBraM a lambda: there the original's own refusal, not ours)."""
    x = model.example_input(2)
    with torch.no_grad():
        expected = model(x)
    twin = copy.deepcopy(model)
    pairs = list(zip(model.parameters(), twin.parameters(), strict=True))
    assert pairs and all(p.data_ptr() != q.data_ptr() and torch.equal(p, q) for p, q in pairs)
    if hasattr(model, "model"):  # an attached model: the user's module copied too
        assert twin.model is not model.model
    with torch.no_grad():
        assert torch.equal(twin(x), expected)
        twin.add_hook("hook_input", lambda signals, hook: 2 * signals)
        assert not torch.equal(twin(x), expected) and torch.equal(model(x), expected)
        twin.reset_hooks()
        next(twin.parameters()).add_(1.0)
        assert torch.equal(model(x), expected)
        if provides(model, ATTENTION_HOOKS) and model.cfg.n_layers:
            cut = {0: _cut(model, 0, seed=1)}
            twin = copy.deepcopy(model)
            assert torch.equal(twin(x, edge_masks=cut), model(x, edge_masks=cut))
            assert torch.equal(model(x), expected)
    buffer = io.BytesIO()
    own = _pickling_error(model.model) if TABLE[name].tier == "attached" else None
    if own is not None:  # torch.save refuses what pickling the original refuses
        with pytest.raises(own):
            torch.save(model, buffer)
        return
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)


# ----------------------------------------------------------------------------- attention hooks


@check(ATTENTION_HOOKS, stack=True)
def check_get_act_name_names_our_hook_points(name, model):
    names = ["attn_scores", "pattern"]
    if provides(model, LAYERWISE):
        names += ["q", "k", "v", "z", "resid_pre", "mlp_out"]
    for layer in range(model.cfg.n_layers):
        for act in names:
            assert get_act_name(act, layer) in model.hook_dict


@check(ATTENTION_HOOKS, stack=True)
def check_hook_shapes_and_patterns(name, model):
    """Scores and pattern ``[batch (x folds), head, query, key]`` over the layer's layout, the
    pattern their softmax, each row summing to 1; the stack's activations in TransformerLens
    shapes, the residual stream one block writes the next one's; an attached block's stream
    ``[batch (x folds), query, d]``."""
    batch = 3
    x = model.example_input(batch)
    logits, cache = model.run_with_cache(x)
    _close(logits, model(x), atol=1e-6, rtol=1e-5)
    cfg = model.cfg
    for layer in range(cfg.n_layers):
        lay, heads = layout_of(model, layer), _heads(model, layer)
        scores, pattern = cache["attn_scores", layer], cache["pattern", layer]
        rows = batch * _folds(model, layer)
        assert scores.shape == pattern.shape == (rows, heads, lay.n_queries, lay.n_tokens)
        assert torch.allclose(scores.softmax(-1), pattern, atol=1e-6)
        assert torch.allclose(pattern.sum(-1), torch.ones(()), atol=1e-5)
        if provides(model, LAYERWISE):
            n = lay.n_tokens
            for act in ("q", "k", "v", "z"):
                assert cache[act, layer].shape == (batch, n, heads, cfg.d_head)
            assert cache["resid_post", layer].shape == (batch, n, cfg.d_model)
            assert cache[f"blocks.{layer}.ln1.hook_scale"].shape == (batch, n, 1)
            if layer + 1 < cfg.n_layers:
                assert torch.equal(cache["resid_post", layer], cache["resid_pre", layer + 1])
        elif f"blocks.{layer}.hook_resid_pre" in cache:  # folded scores, maybe not the stream
            pre, post = cache["resid_pre", layer], cache["resid_post", layer]
            assert pre.shape == post.shape and pre.shape[0] in (batch, rows)
            assert pre.shape[1] == lay.n_queries


@check(ATTENTION_HOOKS)
def check_hooks_see_and_change_activations(name, model):
    x = model.example_input(2)
    hook_name = f"{_stack(model)}.0.attn.hook_attn_scores"

    def wipe(scores, hook):
        assert hook.name == hook_name
        return torch.zeros_like(scores)

    changed = model.run_with_hooks(x, fwd_hooks=[(hook_name, wipe)])
    if provides(model, LAYERWISE):
        assert not torch.allclose(changed, model(x))
    else:  # (braindecode's LaBraM at this size reads its attention faintly)
        assert not torch.equal(changed, model(x))
    assert torch.equal(model(x), model(x))  # the hook was removed afterwards


@check(ATTENTION_HOOKS, stack=True)
def check_a_cut_at_the_scores_hook_equals_the_edge_mask(name, model):
    """-inf written into ``hook_attn_scores`` is what an edge mask does."""
    x, layer = model.example_input(3), model.cfg.n_layers - 1
    cut = _cut(model, layer, seed=4)

    def block(scores, hook):
        return scores.masked_fill(cut, float("-inf"))

    hook_name = f"blocks.{layer}.attn.hook_attn_scores"
    by_hook = model.run_with_hooks(x, fwd_hooks=[(hook_name, block)])
    # (float error of the explicit against the fused path: 1e-6 on the attached models, more
    # on CBraMod's criss-cross heads)
    atol = 1e-6 if TABLE[name].tier == "attached" else 1e-5
    _close(by_hook, model(x, edge_masks={layer: cut}), atol=atol, rtol=1e-6)


@check(ATTENTION_HOOKS, stack=True)
def check_a_cut_acts(name, model):
    """Keys cut for the first query and for the last in layer 0 (a readout may read either):
    the last and the first, and with them the next ones (a model's own mask may have left
    out the first two: CBraMod's criss-cross, EEGPT's patches): finite, and it changes the
    output."""
    x = model.example_input(3)
    lay = layout_of(model, 0)
    ends = torch.zeros(lay.n_queries, lay.n_tokens, dtype=torch.bool)
    ends[0, -1] = ends[-1, 0] = True
    cut = ends.clone()
    cut[0, 1 % lay.n_tokens] = cut[-1, -2 % lay.n_tokens] = True
    # an attached model's layouts are its calls' own tokens: the edges at the ends exist
    cuts = [cut, ends] if TABLE[name].tier == "attached" else [cut]
    with torch.no_grad():
        expected = model(x)
        for one in cuts:
            masked = model(x, edge_masks={0: one})
            assert torch.isfinite(masked).all() and not torch.equal(masked, expected)


@check(ATTENTION_HOOKS, stack=True)
def check_fast_path_equals_explicit_path(name, model):
    """Unmasked and masked (a random mask in every layer): the fast forward (nothing hooked;
    with and without gradients) equals the explicit one (caching), and a cut edge has
    pattern 0."""
    x = model.example_input(4)
    masks = {layer: _random_mask(model, layer, seed=layer) for layer in range(model.cfg.n_layers)}
    for edge_masks in (None, masks):
        if provides(model, LAYERWISE):
            assert not any(block.attn.hooks_active() for block in model.blocks)
        fast = model(x, edge_masks=edge_masks)
        with torch.no_grad():
            fast_no_grad = model(x, edge_masks=edge_masks)
        explicit, cache = model.run_with_cache(x, edge_masks=edge_masks)
        _close(fast, explicit)
        _close(fast_no_grad, explicit)
        for layer, mask in (edge_masks or {}).items():
            assert (cache["pattern", layer][:, mask] == 0).all()


@check(ATTENTION_HOOKS, stack=True)
def check_fully_masked_query_row_is_zero_not_nan(name, model):
    """A query whose keys are all cut (in every head) attends to nothing: a zero pattern row
    (and a zero z), finite outputs, the fast and the explicit path agreeing."""
    lay = layout_of(model, 0)
    row = 1 if lay.n_queries > 1 else 0
    mask = _cut(model, 0, seed=7)
    mask[:, row, :] = True
    masks = {0: mask}
    x = model.example_input(2)
    fast = model(x, edge_masks=masks)
    explicit, cache = model.run_with_cache(x, edge_masks=masks)
    assert torch.isfinite(fast).all() and torch.isfinite(explicit).all()
    assert (cache["pattern", 0][:, :, row] == 0).all()
    if provides(model, LAYERWISE):
        assert (cache["z", 0][:, row] == 0).all()
    _close(fast, explicit)
    with torch.no_grad():  # the fused kernel (a cut alone) and a hooked cut
        alone = model(x, edge_masks=masks)
        hooked = model.run_with_hooks(
            x, edge_masks=masks, fwd_hooks=[("blocks.0.attn.hook_pattern", _noop)]
        )
    assert torch.isfinite(alone).all() and (alone - hooked).abs().max() <= 1e-5


@check(ATTENTION_HOOKS, stack=True)
def check_gradients_reach_the_scores(name, model):
    kept = {}

    def keep(scores, hook):
        scores.retain_grad()
        kept[hook.name] = scores

    logits = model.run_with_hooks(
        model.example_input(3), fwd_hooks=[(lambda n: n.endswith("attn.hook_attn_scores"), keep)]
    )
    logits[:, 0].sum().backward()
    model.zero_grad(set_to_none=True)
    for layer in range(model.cfg.n_layers):
        grad = kept[f"blocks.{layer}.attn.hook_attn_scores"].grad
        assert grad is not None and torch.isfinite(grad).all()
        if layout_of(model, layer).n_tokens > 1:
            assert grad.abs().sum() > 0
        else:  # a softmax over one key is 1 whatever its score (MEDFormer's coarsest scale)
            assert (grad == 0).all()


def _cuts_leaving_a_query_no_key(model) -> dict[str, dict[int, torch.Tensor]]:
    """``{keyword: {layer: mask}}``, the forward keyword and a cut in every layer (a stemmed
    model's, ``stem_edge_masks``, where it has no shared stack) that leaves query 1 (or the only
    one) no key at all, and the other queries their own key and some others."""
    stems = model.cfg.n_layers == 0
    n_layers = model.cfg.n_stem_layers if stems else model.cfg.n_layers
    masks = {}
    for layer in range(n_layers):
        mask = _random_mask(model, 0, seed=layer) if stems else _cut(model, layer, seed=layer)
        mask[:, min(1, mask.shape[1] - 1)] = True
        masks[layer] = mask
    return {"stem_edge_masks" if stems else "edge_masks": masks}


@check(ATTENTION_HOOKS)
def check_gradients_are_finite_with_a_query_left_no_key(name, model):
    """A query whose keys are all cut attends to nothing in the backward pass too (issue 57):
    every parameter's gradient is finite, on the fast path (nothing hooked; an attached
    model's own fused kernel with the cut) and on the explicit one, and the gradient at such a
    row's scores is zero. (A softmax over -inf only has a NaN gradient; it used to reach every
    upstream parameter of the attached, explicit-softmax and zoo models.)"""
    cuts = _cuts_leaving_a_query_no_key(model)
    x = model.example_input(2)
    kept = []

    def keep(scores, hook):
        scores.retain_grad()
        kept.append(scores)

    for fwd in ([], [(lambda n: n.endswith("attn.hook_attn_scores"), keep)]):
        model.zero_grad(set_to_none=True)
        out = model.run_with_hooks(x, fwd_hooks=fwd, **cuts)
        out.square().sum().backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        model.zero_grad(set_to_none=True)
        assert grads, "no parameter has a gradient"
        bad = sorted(n for n, g in grads.items() if not torch.isfinite(g).all())
        assert not bad, f"non-finite gradients ({'hooked' if fwd else 'fast'} path): {bad}"
        assert any(g.abs().sum() > 0 for g in grads.values())
    empty = [(scores == float("-inf")).all(-1) for scores in kept]
    assert any(rows.any() for rows in empty)
    for scores, rows in zip(kept, empty, strict=True):
        assert (scores.grad[rows] == 0).all()


@check(ATTENTION_HOOKS, table.OWN_MASK, stack=True)
def check_an_edge_cut_equals_the_models_own_mask(name, model):
    """Where the original takes a mask of its own, a cut in every layer equals it computed
    with the same keys blocked by that mask, nothing hooked (torch's fast paths would run
    under no_grad if nothing stopped them) and hooked alike."""
    row = TABLE[name]
    assert row.own_mask is not None, name
    model, original = table.with_original(name)
    x = model.example_input(5)
    cut = _cut(model, 0, seed=3, heads=None if row.own_mask_per_head else 1)
    reference = row.own_mask(original, x, cut)
    masks = dict.fromkeys(range(model.cfg.n_layers), cut)
    for fwd in ([], [("blocks.0.attn.hook_pattern", _noop)]):
        with torch.no_grad():
            got = model.run_with_hooks(x, edge_masks=masks, fwd_hooks=fwd)
        assert (got - reference).abs().max() <= 1e-5
        assert (got - original(x)).abs().max() > 1e-3  # the cut changed something


@check(ATTENTION_HOOKS)
def check_bad_edge_masks_raise_clear_errors(name, model):
    x = model.example_input()
    lay, n_layers = layout_of(model, 0), model.cfg.n_layers
    q, k = lay.n_queries, lay.n_tokens
    for wrong in {(3, 3), (q + 1, k + 1)} - {(q, k)}:
        with pytest.raises(LayoutError, match="edge_masks"):
            model(x, edge_masks={0: torch.zeros(wrong, dtype=torch.bool)})
    if n_layers:
        with pytest.raises(LayoutError, match=r"edge_masks\[0\] must be a bool tensor"):
            model(x, edge_masks={0: torch.zeros(q + 1, k + 1, dtype=torch.bool)})
    with pytest.raises(LayoutError, match="must be an int in"):
        model(x, edge_masks={n_layers: torch.zeros(q, k, dtype=torch.bool)})


# ----------------------------------------------------------------------------- layer by layer


@check(LAYERWISE)
def check_decompose_resid_sums_to_final_residual(name, model):
    final, cache = model.run_with_cache(model.example_input(2), return_type=None)
    parts, labels = cache.decompose_resid(return_labels=True)
    assert labels[0] == "embed"
    if not _post_norm(model):
        _close(parts.sum(0), final)
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


@check(LAYERWISE, table.FINAL_NORM, stack=True)
def check_accumulated_resid_and_apply_ln(name, model):
    # (a model without a final norm, ln_final the identity, has nothing for apply_ln_to_stack)
    assert _has_final_norm(model), name
    _, cache = model.run_with_cache(model.example_input(2))
    n = model.cfg.n_layers
    acc, labels = cache.accumulated_resid(return_labels=True)
    assert acc.shape[0] == n + 1 and labels[-1] == "final_post"
    normed = cache.apply_ln_to_stack(acc[-1:], layer=n)
    # apply_ln_to_stack uses the cached ln_final scale: on the final residual it must equal
    # ln_final without its affine part, which is what hook_normalized holds.
    _close(normed[0], cache["ln_final.hook_normalized"], atol=1e-4, rtol=1e-4)


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


@check(LAYERWISE, stack=True)
def check_layer_norm_hooks_match_the_legacy_formula(name, model):
    # hook_scale = sqrt(var + eps); hook_normalized = (x - mean) / scale, *before* w and b
    # (TransformerLens >= 3.0 and TL 4.3's bridge). The table's weights make w, b non-trivial.
    _, cache = model.run_with_cache(model.example_input(3))
    for norm, x in _norm_inputs(model, cache):
        ln = model.get_submodule(norm)
        scale, normalized = _legacy_layer_norm(x, model.cfg.eps)
        _close(cache[f"{norm}.hook_scale"], scale, atol=1e-6, rtol=1e-5)
        _close(cache[f"{norm}.hook_normalized"], normalized)
        # The fused path (nothing observes the norm) computes the same output.
        with torch.no_grad():
            _close(ln(x), normalized * ln.w + ln.b)


@check(LAYERWISE, stack=True)
def check_patching_hook_normalized_goes_through_the_affine(name, model):
    x = model.example_input(2)
    ln = model.blocks[0].ln1
    seen, outputs = {}, []

    def patch(value, hook):
        seen["out"] = torch.full_like(value, 0.5)
        return seen["out"]

    handle = ln.register_forward_hook(lambda module, args, out: outputs.append(out))
    try:
        model.run_with_hooks(x, fwd_hooks=[("blocks.0.ln1.hook_normalized", patch)])
    finally:
        handle.remove()
    torch.testing.assert_close(outputs[-1], seen["out"] * ln.w + ln.b)


@check(LAYERWISE, stack=True)
def check_stack_head_results_and_full_decomposition(name, model):
    final, cache = model.run_with_cache(model.example_input(2), return_type=None)
    heads, labels = cache.stack_head_results(return_labels=True)
    assert heads.shape[0] == model.cfg.n_layers * model.cfg.n_heads and labels[0] == "L0H0"
    full = cache.get_full_resid_decomposition(expand_neurons=True)
    if _post_norm(model):  # no sum across norms (see check_decompose_resid_sums_...)
        assert not torch.allclose(full.sum(0), final, atol=1e-3)
        return
    _close(full.sum(0), final, atol=1e-4, rtol=1e-4)


@check(LAYERWISE, stack=True)
def check_start_and_stop_at_layer_compose(name, model):
    x = model.example_input(3)
    full = model(x)
    for layer in range(model.cfg.n_layers + 1):
        resid = model(x, stop_at_layer=layer)
        if layer < model.cfg.n_layers:
            torch.testing.assert_close(resid, model.run_with_cache(x)[1]["resid_pre", layer])
            torch.testing.assert_close(model(resid, start_at_layer=layer), full)
    torch.testing.assert_close(model(x, stop_at_layer=-1), model(x, stop_at_layer=1))


@check(LAYERWISE)
def check_bad_layer_arguments_raise_clear_errors(name, model):
    c, t = model.input_shape
    with pytest.raises(InputShapeError, match="residual stream"):
        model(torch.zeros(2, c, t), start_at_layer=0)
    with pytest.raises(LayoutError, match="stop_at_layer"):
        model(model.example_input(), stop_at_layer=7)


# ----------------------------------------------------------------------------- weights


@check(TL_WEIGHTS, stack=True)
def check_weight_shapes_are_legacy(name, model):
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
    assert model.W_Q.shape == (cfg.n_layers, h, d, dh)  # stacked over layers


@check(TL_WEIGHTS, stack=True)
def check_head_sum_identity(name, model):
    model.set_use_attn_result(True)
    _, cache = model.run_with_cache(model.example_input(2))
    for layer in range(model.cfg.n_layers):
        summed = cache["result", layer].sum(dim=-2) + model.blocks[layer].attn.b_O
        _close(summed, cache["attn_out", layer], atol=1e-6, rtol=1e-6)


@check(TL_WEIGHTS, LAYERWISE, stack=True)
def check_fast_path_sees_weight_changes_after_caching(name, model):
    """The fused q/k/v weight is cached for evaluation; changing a weight must invalidate it.
    (The weight is put back afterwards: the model is the session's.)"""
    x = model.example_input(2)
    with torch.inference_mode():
        before = model(x)
    W_V = model.blocks[0].attn.W_V
    saved = W_V.detach().clone()
    try:
        with torch.no_grad():
            # in place: the version counter moves. (W_V, not W_Q: with LaBraM's qk-norm a
            # scaled W_Q is normalised away.)
            W_V.mul_(3.0)
        with torch.inference_mode():
            after = model(x)
        assert not torch.allclose(before, after)
        explicit, _ = model.run_with_cache(x)  # the explicit path never uses the cached weight
        _close(after, explicit)
        # A cached weight built under inference mode must still allow input gradients later.
        x = x.clone().requires_grad_(True)
        model(x).sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
    finally:
        with torch.no_grad():
            W_V.copy_(saved)
        model.zero_grad(set_to_none=True)
    with torch.inference_mode():
        assert torch.equal(model(x.detach()), before)


@check(SPLIT_QKV)
def check_split_qkv_input_forks_each_heads_input(name, model):
    """Per-head copies of the attention input ``[batch, pos, head, d_model]`` fire; the
    output is unchanged."""
    prefix = _stack(model)
    x = model.example_input(2)
    with torch.no_grad():
        normal = model(x)
    model.set_use_split_qkv_input(True)
    try:
        names = [f"{prefix}.0.hook_{c}_input" for c in "qkv"]
        with torch.no_grad():
            split, cache = model.run_with_cache(
                x, names_filter=[*names, f"{prefix}.0.attn.hook_pattern"]
            )
        heads = cache[f"{prefix}.0.attn.hook_pattern"].shape[1]
        for hook in names:
            assert cache[hook].ndim == 4 and cache[hook].shape[0] == 2
            assert cache[hook].shape[2] == heads
        _close(split, normal)
    finally:
        model.set_use_split_qkv_input(False)


@check(LINEAR_READOUT, stack=True)
def check_the_readout_is_the_unembedding(name, model):
    """For each head, logits = sum over positions of ``ln_final(resid)[p] @ R[p] + b_U``
    (`readout_map`); where that map is TransformerLens's unembedding, logits = ``ln_final(resid)``
    at ``unembed_positions`` (their mean) ``@ W_U + b_U`` and a class's direction is its column
    of ``W_U``."""
    x = model.example_input(3)
    with torch.no_grad():
        resid = model(x, return_type=None)
        for head in model.readout_heads:
            R, b_U = model.readout_map(head)
            mapped = torch.einsum("bpd,pdc->bc", model.ln_final(resid), R) + b_U
            _close(mapped, model.readout(resid, head))
    try:
        W_U, b_U = model.W_U, model.b_U
    except UnsupportedFeatureError:
        return  # a linear readout that is no single unembedding (per-modality, concatenated)
    logits, cache = model.run_with_cache(x)
    final = cache[f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"]
    with torch.no_grad():
        pooled = model.ln_final(final)[:, model.unembed_positions].mean(1)
    _close(logits, pooled @ W_U + b_U)
    assert torch.equal(model.tokens_to_residual_directions(1), W_U[:, 1])


# ----------------------------------------------------------------------------- refusals


def _refuses(model, feature: str, needs: str):
    """`require` refuses ``feature`` naming the model, what is missing and, where the model
    can be converted, the converter."""
    with pytest.raises(UnsupportedFeatureError, match=rf"the contract test needs {needs}") as e:
        require(model, feature, "the contract test")
    assert f"which {type(model).__name__} does not provide" in str(e.value)
    if getattr(model, "converters", None):
        assert "convert the model first: emg_lens.models.from_torch_encoder" in str(e.value)


def _refusal(feature: str):
    """A check that applies to the models *lacking* ``feature``."""

    def register(fn):
        def refuses(name, model):
            assert not provides(model, feature), name
            fn(name, model)

        refuses.__name__ = fn.__name__
        refuses.__doc__ = fn.__doc__
        return check(lacks=(feature,))(refuses)

    return register


@_refusal(ATTENTION_HOOKS)
def check_refuses_attention_hooks(name, model):
    _refuses(model, ATTENTION_HOOKS, "attention hooks")
    n = model.layout.n_tokens
    with pytest.raises(UnsupportedFeatureError, match=r"forward\(edge_masks=\.\.\.\)"):
        model(model.example_input(), edge_masks={0: torch.zeros(n, n, dtype=torch.bool)})


@_refusal(LAYERWISE)
def check_refuses_layerwise(name, model):
    _refuses(model, LAYERWISE, "a layer-by-layer forward")
    with pytest.raises(UnsupportedFeatureError, match=r"forward\(stop_at_layer=\.\.\.\)"):
        model(model.example_input(), stop_at_layer=1)


@_refusal(TL_WEIGHTS)
def check_refuses_tl_weights(name, model):
    _refuses(model, TL_WEIGHTS, "weights in TransformerLens shapes")
    converter = "from_torch_encoder" if getattr(model, "converters", None) else ""
    with pytest.raises(UnsupportedFeatureError, match=rf"W_Q.*{converter}"):
        _ = model.W_Q


@_refusal(LINEAR_READOUT)
def check_refuses_linear_readout(name, model):
    _refuses(model, LINEAR_READOUT, "a linear readout")
    # a model with weights says why its readout is no unembedding; one without, that the
    # whole weight surface is missing
    with pytest.raises(UnsupportedFeatureError, match="unembed"):
        _ = model.unembed
    with pytest.raises(UnsupportedFeatureError, match=r"unembed|weight surface"):
        model.tokens_to_residual_directions(0)


@_refusal(SPLIT_QKV)
def check_refuses_split_qkv_input(name, model):
    _refuses(model, SPLIT_QKV, "split q/k/v input hooks")
    model.set_use_split_qkv_input(False)  # the state it is in
    with pytest.raises(UnsupportedFeatureError, match="use_split_qkv_input cannot apply"):
        model.set_use_split_qkv_input(True)
    assert not model.cfg.use_split_qkv_input


# ----------------------------------------------------------------------------- the test


CONTRACT = [
    (check_name, name)
    for check_name, fn in CHECKS.items()
    for name in table.providing(*fn.needs, lacking=fn.lacks)
]
"""Each check with each model it applies to (the table's declared traits: no model built)."""


@pytest.mark.parametrize(("check_name", "name"), CONTRACT)
def test_contract(check_name, name):
    model = table.get(name)
    fn = CHECKS[check_name]
    try:
        fn(name, model)
    finally:
        table.get(name)  # hooks removed, hook flags off again


# ----------------------------------------------------------------------------- IsoNet


def test_isonet_cache_keys_in_order():
    model = table.get("isonet")
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
    model = table.get("isonet")
    _, cache = model.run_with_cache(model.example_input(3))
    cfg = model.cfg
    assert cache["blocks.0.attn.hook_attn_scores"].shape == (3, cfg.n_heads, 7, 7)
    assert cache["pattern", 1].shape == (3, cfg.n_heads, 7, 7)
    assert cache["q", 0].shape == (3, 7, cfg.n_heads, cfg.d_head)
    assert cache["resid_post", 1].shape == (3, 7, cfg.d_model)
    assert cache["blocks.0.ln1.hook_scale"].shape == (3, 7, 1)


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
    model = table.make("isonet", act_fn="gelu")
    x = model.example_input(2)
    _, cache = model.run_with_cache(x)
    resid = cache["hook_embed"] + cache["hook_pos_embed"]
    for layer, block in enumerate(model.blocks):
        resid, pattern = _reference_block(block, resid, model.cfg.eps)
        _close(pattern, cache["pattern", layer], atol=1e-6, rtol=1e-5)
        _close(resid, cache["resid_post", layer])


def test_legacy_state_dict_loads_strictly():
    """A legacy HookedTransformer's blocks.*/ln_final.* entries, with the derived buffers it
    saved (attn.mask, attn.IGNORE), load with strict=True and compute the same thing."""
    source = table.get("isonet")
    target = table.make("isonet", seed=1)
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


def test_the_table_covers_every_tier_and_capability():
    """Every tier is in the table, and each capability has a model providing it and (but for
    attention hooks' and the weights' other side, which only the MLP and the attached models
    lack) one lacking it."""
    assert {row.tier for row in TABLE.values()} == set(table.TIERS)
    for feature in (ATTENTION_HOOKS, LAYERWISE, TL_WEIGHTS, LINEAR_READOUT, SPLIT_QKV):
        assert table.providing(feature) and table.providing(lacking=(feature,))
