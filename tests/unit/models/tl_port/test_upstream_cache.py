"""TransformerLens's tests of the cache's attributions and decompositions, of the names a cache
holds and of Main_Demo's pattern hooks, ported onto the emg_lens models.

Sources (TransformerLensOrg/TransformerLens v3.5.1, tests/; each test below names the one it
ports):

- ``acceptance/test_activation_cache.py``: the tests that
  ``tests/unit/models/tl_port/test_activation_cache.py`` does not port (logit attributions, the
  accumulated residual's variants, the full residual decomposition, head and neuron results,
  ``project_output_onto``). Its model is a 2-layer language model on 8 IOI prompts read at the
  last token; here each pre-LN model runs on ``example_input(8)`` in float64 (TL's tolerances
  are float32 ones on a model ~100x larger; float64 keeps them without loosening), and the
  logit attributions read the classifier's readout position (the CLS token: the position its
  unembedding ``W_U`` reads) with class ids for tokens.
- ``integration/test_cache_hook_names.py``: the exact list of names a cache holds.
- ``integration/test_main_demo_pattern_hooks.py``: a filter on ``"pattern"`` with
  ``hook.layer()``, each pattern hook called once.
"""

from __future__ import annotations

import copy
import re
from types import SimpleNamespace

import einops
import pytest
import torch
from fancy_einsum import einsum
from transformer_lens.utilities import Slice

from emg_lens.models.base import ATTENTION_HOOKS, SPLIT_QKV
from tests.unit.models import table
from tests.unit.models.test_hook_contract import BLOCK_KEYS
from tests.unit.models.tl_port.conftest import NORMED, PRE_LN, TIERS, UNEMBEDDED, get_model

BATCH = 8  # upstream's 8 IOI prompts (its batch slices index up to 7)


@pytest.fixture(params=PRE_LN, scope="module")
def cached(request):
    # float64, so that TL's own tolerances hold
    model = copy.deepcopy(get_model(request.param)).to(torch.float64)  # the session's stays
    x = model.example_input(BATCH)
    with torch.no_grad():
        _, cache = model.run_with_cache(x)
    return SimpleNamespace(name=request.param, model=model, cache=cache, x=x)


NORMED_ONLY = pytest.mark.parametrize("cached", NORMED, indirect=True)
"""On the models with a final norm (apply_ln at the unembed has nothing to apply without)."""
UNEMBEDDED_ONLY = pytest.mark.parametrize("cached", UNEMBEDDED, indirect=True)
"""On the models whose classifier is a TransformerLens unembedding after a final norm."""


def _unembedding(run):
    """The model's readout position (its unembedding reads one, as upstream's
    ``apply_ln_to_stack`` does after a final norm) and ``answer_tokens`` ``[batch, (correct,
    incorrect)]`` class ids."""
    run.model.tokens_to_residual_directions(0)
    positions = run.model.unembed_positions
    assert len(positions) == 1, positions
    n_classes = run.model.W_U.shape[1]
    answers = torch.tensor([[i % n_classes, (i + 1) % n_classes] for i in range(BATCH)])
    return positions[0], answers


def _directions(model, *shape, seed=0):
    """Upstream's ``torch.randn(d_model, ...)``, seeded, in the model's dtype."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(model.cfg.d_model, *shape, generator=g, dtype=model.cfg.dtype)


# ------------------------------------------------------------------------ logit attributions


@torch.no_grad()
@UNEMBEDDED_ONLY
def test_logit_attrs_matches_reference_code(cached):  # test_logit_attrs_matches_reference_code
    model, cache = cached.model, cached.cache
    pos, answer_tokens = _unembedding(cached)
    accumulated_residual = cache.accumulated_resid(layer=-1, incl_mid=True, pos_slice=pos)
    # Get ref ave logit diffs (cribbed notebook code)
    answer_residual_directions = model.tokens_to_residual_directions(answer_tokens)
    logit_diff_directions = answer_residual_directions[:, 0] - answer_residual_directions[:, 1]
    scaled_residual_stack = cache.apply_ln_to_stack(accumulated_residual, layer=-1, pos_slice=pos)
    ref_ave_logit_diffs = einsum(
        "... batch d_model, batch d_model -> ...",
        scaled_residual_stack,
        logit_diff_directions,
    ) / len(cached.x)
    logit_diffs = cache.logit_attrs(
        accumulated_residual,
        pos_slice=pos,
        tokens=answer_tokens[:, 0],
        incorrect_tokens=answer_tokens[:, 1],
    )
    ave_logit_diffs = logit_diffs.mean(dim=-1)
    assert torch.isclose(ref_ave_logit_diffs, ave_logit_diffs, atol=1.1e-7).all()


@torch.no_grad()
def test_logit_accumulated_resid_on_last_layer_variants(cached):
    # test_logit_accumulated_resid_on_last_layer_variants
    model, cache = cached.model, cached.cache
    accumulated_resid = cache.accumulated_resid(layer=-1, incl_mid=True, pos_slice=-1)
    assert torch.equal(
        accumulated_resid,
        cache.accumulated_resid(layer=model.cfg.n_layers, incl_mid=True, pos_slice=-1),
    )
    assert torch.equal(
        accumulated_resid, cache.accumulated_resid(layer=None, incl_mid=True, pos_slice=-1)
    )


@torch.no_grad()
def test_logit_accumulated_resid_without_mid(cached):  # test_logit_accumulated_resid_without_mid
    accumulated_resid, labels = cached.cache.accumulated_resid(
        layer=-1, incl_mid=False, pos_slice=-1, return_labels=True
    )
    assert len(labels) == accumulated_resid.size(0)
    assert all("mid" not in label for label in labels)


@torch.no_grad()
@UNEMBEDDED_ONLY
def test_logit_attrs_works_for_all_input_shapes(cached):
    # test_logit_attrs_works_for_all_input_shapes (less its "Single token (str)" case: a class is
    # an id, there is no tokenizer to turn a string into one)
    model, cache = cached.model, cached.cache
    pos, answer_tokens = _unembedding(cached)
    accumulated_residual = cache.accumulated_resid(
        layer=-1, incl_mid=True, pos_slice=pos, return_labels=False
    )
    answer_residual_directions = model.tokens_to_residual_directions(answer_tokens)
    logit_diff_directions = answer_residual_directions[:, 0] - answer_residual_directions[:, 1]
    scaled_residual_stack = cache.apply_ln_to_stack(accumulated_residual, layer=-1, pos_slice=pos)
    ref_logit_diffs = einsum(
        "... d_model, ... d_model -> ...", scaled_residual_stack, logit_diff_directions
    )

    # All tokens
    logit_diffs = cache.logit_attrs(
        accumulated_residual,
        pos_slice=pos,
        tokens=answer_tokens[:, 0],
        incorrect_tokens=answer_tokens[:, 1],
    )
    assert torch.isclose(ref_logit_diffs, logit_diffs, atol=1e-6, rtol=1e-4).all()

    # Single token
    batch = -1
    logit_diffs = cache.logit_attrs(
        accumulated_residual,
        batch_slice=batch,
        pos_slice=Slice(pos),
        tokens=answer_tokens[batch, 0],
        incorrect_tokens=answer_tokens[batch, 1],
    )
    assert torch.isclose(ref_logit_diffs[:, batch], logit_diffs).all()

    # Single token (int)
    logit_diffs = cache.logit_attrs(
        accumulated_residual,
        batch_slice=Slice(batch),
        pos_slice=pos,
        tokens=int(answer_tokens[batch, 0]),
        incorrect_tokens=int(answer_tokens[batch, 1]),
    )
    assert torch.isclose(ref_logit_diffs[:, batch], logit_diffs).all()

    # Single token and residual stack without batch dim
    logit_diffs = cache.logit_attrs(
        accumulated_residual[:, batch, :],
        has_batch_dim=False,
        batch_slice=batch,
        pos_slice=pos,
        tokens=answer_tokens[batch, 0],
        incorrect_tokens=answer_tokens[batch, 1],
    )
    assert torch.isclose(ref_logit_diffs[:, batch], logit_diffs).all()

    # Array slice of tokens
    batch = [2, 5, 7]
    logit_diffs = cache.logit_attrs(
        accumulated_residual,
        batch_slice=batch,
        pos_slice=pos,
        tokens=answer_tokens[batch, 0],
        incorrect_tokens=answer_tokens[batch, 1],
    )
    assert torch.isclose(ref_logit_diffs[:, batch], logit_diffs).all()

    # Different shape for tokens and incorrect_tokens
    with pytest.raises(ValueError):
        cache.logit_attrs(
            accumulated_residual[:, batch, :],
            has_batch_dim=False,
            batch_slice=batch,
            pos_slice=pos,
            tokens=answer_tokens[batch, 0],
            incorrect_tokens=answer_tokens[batch, 0:1],
        )

    # No incorrect tokens
    ref_logit_diffs = einsum(
        "... d_model, ... d_model -> ...", scaled_residual_stack, answer_residual_directions[:, 0]
    )
    logit_diffs = cache.logit_attrs(
        accumulated_residual,
        pos_slice=pos,
        tokens=answer_tokens[:, 0],
        incorrect_tokens=None,
    )
    assert torch.isclose(ref_logit_diffs, logit_diffs, atol=1e-6, rtol=1e-4).all()


# ----------------------------------------------------------------- full residual decomposition


@torch.no_grad()
@NORMED_ONLY
def test_get_full_resid_decomposition(cached):  # test_get_full_resid_decomposition
    # A model without positional embeddings (none, or rotary as in TransformerLens) has no
    # "pos_embed" component: its rows are checked where the decomposition has one.
    model, cache = cached.model, cached.cache
    ref_head_stack, ref_head_stack_labels = cache.stack_head_results(
        layer=model.cfg.n_layers, pos_slice=Slice(-1), apply_ln=True, return_labels=True
    )
    ref_mlp_stack, ref_mlp_stack_labels = cache.decompose_resid(
        layer=model.cfg.n_layers,
        mlp_input=False,
        pos_slice=Slice(-1),
        incl_embeds=False,
        mode="mlp",
        apply_ln=True,
        return_labels=True,
    )
    ref_embed = cache.apply_ln_to_stack(
        cache["embed"][None, :, -1], pos_slice=Slice(-1), mlp_input=False
    )
    ref_bias = model.accumulated_bias(model.cfg.n_layers, mlp_input=False, include_mlp_biases=False)
    ref_bias = ref_bias.expand((1, *ref_head_stack.shape[1:]))
    ref_bias = cache.apply_ln_to_stack(ref_bias, pos_slice=Slice(-1), mlp_input=False)

    head_stack_len = ref_head_stack.size(0)
    mlp_stack_len = ref_mlp_stack.size(0)

    residual_stack, residual_stack_labels = cache.get_full_resid_decomposition(
        layer=-1, pos_slice=-1, apply_ln=True, expand_neurons=False, return_labels=True
    )
    assert torch.isclose(ref_head_stack, residual_stack[:head_stack_len], atol=1e-7).all()
    assert ref_head_stack_labels == residual_stack_labels[:head_stack_len]

    assert torch.isclose(
        ref_mlp_stack, residual_stack[head_stack_len : head_stack_len + mlp_stack_len], atol=1e-7
    ).all()
    assert (
        ref_mlp_stack_labels
        == residual_stack_labels[head_stack_len : head_stack_len + mlp_stack_len]
    )

    i = head_stack_len + mlp_stack_len
    assert torch.isclose(ref_embed, residual_stack[i : i + 1], atol=1e-7).all()
    assert residual_stack_labels[i] == "embed"

    if cache.has_pos_embed:
        ref_pos_embed = cache.apply_ln_to_stack(
            cache["pos_embed"][None, :, -1], pos_slice=Slice(-1), mlp_input=False
        )
        i += 1
        assert torch.isclose(ref_pos_embed, residual_stack[i : i + 1], atol=1e-7).all()
        assert residual_stack_labels[i] == "pos_embed"
    else:
        assert "pos_embed" not in residual_stack_labels

    i += 1
    assert torch.isclose(ref_bias, residual_stack[i : i + 1], atol=1e-7).all()
    assert residual_stack_labels[i] == "bias"
    assert len(residual_stack_labels) == len(residual_stack) == i + 1


@torch.no_grad()
def test_get_full_resid_decomposition_with_neurons_expanded(cached):
    # test_get_full_resid_decomposition_with_neurons_expanded
    cache = cached.cache
    ref_head_stack, _ = cache.stack_head_results(
        layer=1, pos_slice=Slice(-1), apply_ln=True, return_labels=True
    )
    ref_neuron_stack, ref_neuron_labels = cache.stack_neuron_results(
        1, pos_slice=Slice(-1), return_labels=True
    )
    ref_neuron_stack = cache.apply_ln_to_stack(ref_neuron_stack, layer=1, pos_slice=Slice(-1))

    head_stack_len = ref_head_stack.size(0)
    neuron_stack_len = ref_neuron_stack.size(0)

    residual_stack, residual_stack_labels = cache.get_full_resid_decomposition(
        layer=1, pos_slice=Slice(-1), apply_ln=True, expand_neurons=True, return_labels=True
    )
    assert torch.isclose(
        ref_neuron_stack,
        residual_stack[head_stack_len : head_stack_len + neuron_stack_len],
        atol=1e-7,
    ).all()
    assert (
        ref_neuron_labels
        == residual_stack_labels[head_stack_len : head_stack_len + neuron_stack_len]
    )


@torch.no_grad()
def test_get_full_resid_decomposition_without_applying_ln(cached):
    # test_get_full_resid_decomposition_without_applying_ln
    cache = cached.cache
    ref_head_stack = cache.stack_head_results(
        layer=1, pos_slice=Slice(-1), apply_ln=True, return_labels=False
    )
    ref_neuron_stack = cache.stack_neuron_results(1, pos_slice=Slice(-1), return_labels=False)

    head_stack_len = ref_head_stack.size(0)
    neuron_stack_len = ref_neuron_stack.size(0)

    residual_stack = cache.get_full_resid_decomposition(
        layer=1, pos_slice=Slice(-1), apply_ln=False, expand_neurons=True, return_labels=False
    )
    assert torch.isclose(
        ref_neuron_stack,
        residual_stack[head_stack_len : head_stack_len + neuron_stack_len],
        atol=1e-7,
    ).all()


# ------------------------------------------------------------------- head and neuron results


@torch.no_grad()
def test_compute_test_head_results_does_not_compute_results_twice(cached):
    # test_compute_test_head_results_does_not_compute_results_twice (a cache of its own: this
    # one writes into it)
    model = cached.model
    _, cache = model.run_with_cache(cached.x)

    assert "blocks.0.attn.hook_result" not in cache.cache_dict
    cache.compute_head_results()
    assert "blocks.0.attn.hook_result" in cache.cache_dict

    # set infinity to the first element of the head results
    assert cache.cache_dict["blocks.0.attn.hook_result"][0, 0, 0, 0] != float("inf")
    cache.cache_dict["blocks.0.attn.hook_result"][0, 0, 0, 0] = float("inf")
    cache.compute_head_results()

    # assert the value has not changed
    assert cache.cache_dict["blocks.0.attn.hook_result"][0, 0, 0, 0] == float("inf")


@torch.no_grad()
def test_get_neuron_results(cached):  # test_get_neuron_results
    model, cache = cached.model, cached.cache
    layer = 1
    ref_neuron_acts = (
        cache[f"blocks.{layer}.mlp.hook_post"][:, -1, :2, None] * model.blocks[layer].mlp.W_out[:2]
    )
    neuron_acts = cache.get_neuron_results(layer, neuron_slice=[0, 1], pos_slice=-1)
    assert torch.isclose(ref_neuron_acts, neuron_acts).all()


@torch.no_grad()
def test_get_neuron_results_without_slice(cached):  # test_get_neuron_results_without_slice
    model, cache = cached.model, cached.cache
    layer = 1
    ref_neuron_acts = (
        cache[f"blocks.{layer}.mlp.hook_post"][..., None] * model.blocks[layer].mlp.W_out
    )
    neuron_acts = cache.get_neuron_results(layer, neuron_slice=None, pos_slice=None)
    assert torch.equal(ref_neuron_acts, neuron_acts)


# ------------------------------------------------------------------------- project_output_onto


@torch.no_grad()
def test_get_neuron_results_project_output_onto(cached):
    # test_get_neuron_results_project_output_onto_1d / _2d
    model, cache = cached.model, cached.cache
    layer = 1
    full = cache.get_neuron_results(layer)  # [batch, pos, d_mlp, d_model]
    for direction in (_directions(model), _directions(model, 3)):
        expected = full @ direction  # [batch, pos, d_mlp(, n_outs)]
        projected = cache.get_neuron_results(layer, project_output_onto=direction)
        assert projected.shape == expected.shape
        assert torch.allclose(projected, expected, atol=1e-5)


@torch.no_grad()
def test_stack_neuron_results_project_output_onto_matches_unprojected(cached):
    # test_stack_neuron_results_project_output_onto_matches_unprojected
    model, cache = cached.model, cached.cache
    direction = _directions(model)
    directions = _directions(model, 4, seed=1)
    layer = model.cfg.n_layers
    full = cache.stack_neuron_results(layer, pos_slice=-1)
    # 1D
    expected_1d = full @ direction
    projected_1d = cache.stack_neuron_results(layer, pos_slice=-1, project_output_onto=direction)
    assert projected_1d.shape == expected_1d.shape
    assert torch.allclose(projected_1d, expected_1d, atol=1e-5)
    # 2D
    expected_2d = full @ directions
    projected_2d = cache.stack_neuron_results(layer, pos_slice=-1, project_output_onto=directions)
    assert projected_2d.shape == expected_2d.shape
    assert torch.allclose(projected_2d, expected_2d, atol=1e-5)


@torch.no_grad()
def test_stack_neuron_results_project_incl_remainder(cached):
    # test_stack_neuron_results_project_incl_remainder
    model, cache = cached.model, cached.cache
    direction = _directions(model)
    layer = model.cfg.n_layers
    full = cache.stack_neuron_results(layer, pos_slice=-1, incl_remainder=True)
    expected = full @ direction
    projected = cache.stack_neuron_results(
        layer, pos_slice=-1, incl_remainder=True, project_output_onto=direction
    )
    assert projected.shape == expected.shape
    assert torch.allclose(projected, expected, atol=1e-5)


@torch.no_grad()
def test_get_full_resid_decomposition_project_output_onto(cached):
    # test_get_full_resid_decomposition_project_output_onto_1d / _2d
    model, cache = cached.model, cached.cache
    full = cache.get_full_resid_decomposition(layer=-1, pos_slice=-1, expand_neurons=True)
    for direction in (_directions(model), _directions(model, 2)):
        expected = full @ direction  # [num_components, batch(, n_outs)]
        projected = cache.get_full_resid_decomposition(
            layer=-1, pos_slice=-1, expand_neurons=True, project_output_onto=direction
        )
        assert projected.shape == expected.shape
        assert torch.allclose(projected, expected, atol=1e-4)


@torch.no_grad()
@NORMED_ONLY
def test_stack_neuron_results_apply_ln_and_project(cached):
    # test_stack_neuron_results_apply_ln_and_project_1d / _2d
    model, cache = cached.model, cached.cache
    layer = model.cfg.n_layers
    for direction in (_directions(model), _directions(model, 3)):
        ref = cache.stack_neuron_results(layer, pos_slice=-1, apply_ln=True) @ direction
        fused = cache.stack_neuron_results(
            layer, pos_slice=-1, apply_ln=True, project_output_onto=direction
        )
        assert fused.shape == ref.shape
        assert torch.allclose(fused, ref, atol=1e-5)


@torch.no_grad()
@NORMED_ONLY
def test_stack_neuron_results_apply_ln_and_project_incl_remainder(cached):
    # test_stack_neuron_results_apply_ln_and_project_incl_remainder
    model, cache = cached.model, cached.cache
    direction = _directions(model)
    layer = model.cfg.n_layers
    ref = (
        cache.stack_neuron_results(layer, pos_slice=-1, apply_ln=True, incl_remainder=True)
        @ direction
    )
    fused = cache.stack_neuron_results(
        layer, pos_slice=-1, apply_ln=True, incl_remainder=True, project_output_onto=direction
    )
    assert fused.shape == ref.shape
    assert torch.allclose(fused, ref, atol=1e-5)


@torch.no_grad()
@NORMED_ONLY
def test_get_full_resid_decomposition_apply_ln_and_project(cached):
    # test_get_full_resid_decomposition_apply_ln_and_project_1d / _2d
    model, cache = cached.model, cached.cache
    full = cache.get_full_resid_decomposition(
        layer=-1, pos_slice=-1, apply_ln=True, expand_neurons=True
    )
    for direction in (_directions(model), _directions(model, 2)):
        ref = full @ direction
        fused = cache.get_full_resid_decomposition(
            layer=-1,
            pos_slice=-1,
            apply_ln=True,
            expand_neurons=True,
            project_output_onto=direction,
        )
        assert fused.shape == ref.shape
        assert torch.allclose(fused, ref, atol=1e-4)


# ------------------------------------------------------------------------ cached hook names

TL_BLOCK = BLOCK_KEYS
"""What HookedTransformer caches of a pre-LN block with a (non-SoLU) MLP, in its order
(test_hook_contract's list): upstream's list less SoLU's ``mlp.hook_mid``/``mlp.ln.*`` (a GELU
MLP has none, in TL too)."""

FLAGGED = (
    "attn.hook_result",
    "hook_attn_in",
    "hook_q_input",
    "hook_k_input",
    "hook_v_input",
    "hook_mlp_in",
)
"""The hook points the four flags (`emg_lens.config.HOOK_FLAGS`, all off) turn on: not run,
so not cached, as in TL."""

OTHER_HEADS = {"isonet": ("avg_head.hook_pooled",)}
"""A readout head's hooks that run only with its own ``return_type`` (not the default's)."""

TL_BLOCKS = tuple(table.providing(SPLIT_QKV, table.PRE_LN))
"""The pre-LN models built of emg_lens blocks (HookedTransformer's)."""

_BLOCK = re.compile(r"^(.*?)blocks\.(\d+)\.(.+)$")


def _expected_names(name, model):
    """The names a default forward caches, from the model's ``hook_dict``: all but the
    flagged points and other heads' hooks."""
    other = OTHER_HEADS.get(name, ())
    return [
        n
        for n in model.hook_dict
        if not any(n.endswith(f".{f}") for f in FLAGGED) and n not in other
    ]


def test_cache_hook_names_of_isonet():  # test_cache_hook_names
    # The literal list, as upstream's for solu-1l: IsoNet is the native HookedTransformer.
    model = get_model("isonet")
    _, cache = model.run_with_cache(model.example_input(1))
    act_names_in_cache = [
        "hook_input",
        "hook_embed",
        "hook_pos_embed",
        *[f"blocks.{layer}.{n}" for layer in range(model.cfg.n_layers) for n in TL_BLOCK],
        "ln_final.hook_scale",
        "ln_final.hook_normalized",
        "cls_head.hook_pooled",
    ]
    assert list(cache.keys()) == act_names_in_cache


@pytest.mark.parametrize("name", TIERS)
def test_cache_hook_names(name):  # test_cache_hook_names
    model = get_model(name)
    _, cache = model.run_with_cache(model.example_input(1))
    names = list(cache.keys())
    expected = _expected_names(name, model)
    # exactly the hook points that run, each once
    assert len(names) == len(set(names))
    assert sorted(names) == sorted(expected)
    # in the order they run: the input first; each block's names together, blocks in order
    assert names[0] == "hook_input"
    runs = [(m[1], int(m[2])) for n in names if (m := _BLOCK.match(n))]
    blocks = [b for i, b in enumerate(runs) if i == 0 or runs[i - 1] != b]
    assert len(blocks) == len(set(blocks)), f"a block's names are split: {blocks}"
    for prefix in {p for p, _ in blocks}:
        layers = [layer for p, layer in blocks if p == prefix]
        assert layers == sorted(layers), (prefix, layers)
        first = min(names.index(n) for n in names if n.startswith(f"{prefix}blocks."))
        for embed in (f"{prefix}hook_embed", f"{prefix}hook_pos_embed"):
            assert embed not in names or names.index(embed) < first, embed
    last = max((i for i, n in enumerate(names) if _BLOCK.match(n)), default=0)
    for final in ("ln_final.hook_scale", "ln_final.hook_normalized"):
        assert final not in names or names.index(final) > last, final


@pytest.mark.parametrize("name", TL_BLOCKS)
def test_cache_hook_names_of_each_block_are_hookedtransformers(name):  # test_cache_hook_names
    model = get_model(name)
    _, cache = model.run_with_cache(model.example_input(1))
    names = list(cache.keys())
    blocks = sorted({(m[1], int(m[2])) for n in names if (m := _BLOCK.match(n))})
    assert blocks
    for prefix, layer in blocks:
        own = [n for n in names if n.startswith(f"{prefix}blocks.{layer}.")]
        tl = [f"{prefix}blocks.{layer}.{n}" for n in TL_BLOCK]
        assert [n for n in own if n in tl] == tl, (prefix, layer, own)


# ------------------------------------------------------------------ Main_Demo pattern hooks

ATTENDING = tuple(table.providing(ATTENTION_HOOKS))
STEMS = set(table.providing(ATTENTION_HOOKS, table.STEMS))
"""The models with attention in their stems, hook names ``stems.<modality>.blocks.<l>...``
(declared: no model is built at collection)."""
# The fusion models' stems hold their own blocks ('stems.<modality>.blocks.<l>...'), which
# TL's HookPoint.layer (int(name.split('.')[1]), for names 'blocks.<l>...') does not read:
# Main_Demo's hook.layer() runs on the models without stems, and on those with stems
# test_hook_layer_reads_the_shared_stack_and_refuses_a_stem says what it gives.
WITHOUT_STEMS = [n for n in ATTENDING if n not in STEMS]


def _pattern_hooks(model):
    return [n for n in model.hook_dict if n.endswith("pattern")]


@pytest.mark.parametrize("name", WITHOUT_STEMS)
def test_pattern_filter_hook_works(name):
    # TestMainDemoPatternHooks.test_pattern_filter_hook_works. Upstream's store is [n_layers,
    # n_heads]; here a layer -> [its heads] map (a zoo model's layers differ in their heads).
    # Upstream's stripe is the diagonal seq_len - 1 back, where its repeated tokens attend; a
    # signal repeats nothing, and a masked model (CBraMod's criss-cross heads, windows) sees no
    # such stripe: here it is the main diagonal, each token's attention to itself.
    model = get_model(name)
    induction_score_store = {}

    def induction_score_hook(pattern, hook):
        induction_stripe = pattern.diagonal(dim1=-2, dim2=-1, offset=0)
        assert induction_stripe.numel() > 0
        induction_score = einops.reduce(
            induction_stripe, "batch head_index position -> head_index", "mean"
        )
        induction_score_store[hook.layer()] = induction_score
        return pattern

    pattern_hook_names_filter = lambda name: name.endswith("pattern")  # noqa: E731
    model.run_with_hooks(
        model.example_input(1),
        return_type=None,
        fwd_hooks=[(pattern_hook_names_filter, induction_score_hook)],
    )
    assert sorted(induction_score_store) == list(range(model.cfg.n_layers))
    scores = torch.cat(list(induction_score_store.values()))
    non_zero_count = (scores != 0).sum().item()
    total_count = scores.numel()
    assert non_zero_count > 0, f"Expected some non-zero scores, got {non_zero_count}/{total_count}"
    assert non_zero_count == total_count, f"Expected all {total_count}, got {non_zero_count}"


@pytest.mark.parametrize("name", ATTENDING)
def test_pattern_hooks_called_once_per_layer(name):
    # TestMainDemoPatternHooks.test_pattern_hooks_called_once_per_layer. "Per layer": per
    # attention layer, cfg.n_layers where all are the stack's `blocks` (a stem's are not).
    model = get_model(name)
    hook_calls = {}

    def tracking_hook(pattern, hook):
        hook_calls[hook.name] = hook_calls.get(hook.name, 0) + 1
        return pattern

    pattern_filter = lambda name: name.endswith("pattern")  # noqa: E731
    model.run_with_hooks(
        model.example_input(1), return_type=None, fwd_hooks=[(pattern_filter, tracking_hook)]
    )
    for hook_name, count in hook_calls.items():
        assert count == 1, f"Hook {hook_name} was called {count} times, expected 1"
    expected = _pattern_hooks(model)
    assert sorted(hook_calls) == sorted(expected)
    if name not in STEMS:
        assert len(hook_calls) == model.cfg.n_layers


@pytest.mark.parametrize("name", WITHOUT_STEMS)
def test_hook_layer_method_works(name):  # TestMainDemoPatternHooks.test_hook_layer_method_works
    model = get_model(name)
    layer_indices = []

    def layer_tracking_hook(pattern, hook):
        layer_indices.append(hook.layer())
        return pattern

    pattern_filter = lambda name: name.endswith("pattern")  # noqa: E731
    model.run_with_hooks(
        model.example_input(1), return_type=None, fwd_hooks=[(pattern_filter, layer_tracking_hook)]
    )
    assert len(layer_indices) == model.cfg.n_layers
    assert sorted(layer_indices) == list(range(model.cfg.n_layers))


@pytest.mark.parametrize("name", sorted(STEMS))
def test_hook_layer_reads_the_shared_stack_and_refuses_a_stem(name):
    # TL's HookPoint.layer() "returns the layer index if the name has the form
    # 'blocks.{layer}.{...}'; if it doesn't have this form, raises an error"
    model = get_model(name)
    for hook_name in _pattern_hooks(model):
        hook = model.hook_dict[hook_name]
        if hook_name.startswith("blocks."):
            assert hook.layer() == int(hook_name.split(".")[1])
        else:
            assert hook_name.startswith("stems.")
            with pytest.raises(ValueError):
                hook.layer()
