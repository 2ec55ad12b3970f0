"""TransformerLens's tests of the optional hook points and their flags, ported onto every
emg_lens tier that has the weights, and the refusals where a tier has not.

Sources (TransformerLensOrg/TransformerLens, tests/): ``integration/test_hooks.py::
test_conditional_hooks`` (a hook on a point whose flag is off is refused, on is accepted; the
shapes cached), ``unit/test_split_qkv.py::test_split_qkv_normal_attn_correct`` and
``unit/test_use_attn_result.py::test_atten_result_normal_attn_correct`` (the flag changes no
output; per-head shapes; heads sum to the attention output), and TransformerLens 4's rules for
filters and caches (``model_bridge/bridge_core.py``: a filter or ``run_with_cache`` skips such
points, warning when they were asked for).
"""

from __future__ import annotations

import copy

import pytest
import torch
from transformer_lens.utilities import get_act_name

from emg_lens.errors import ArgumentError, HookFlagError, UnsupportedFeatureError
from tests.unit.models.tl_port.conftest import ATTACHED, WEIGHTED, get_model

# hook name (layer 0), the setter, the number of dimensions of its activation
CONDITIONAL = [
    ("blocks.0.attn.hook_result", "set_use_attn_result", 4),
    ("blocks.0.hook_q_input", "set_use_split_qkv_input", 4),
    ("blocks.0.hook_k_input", "set_use_split_qkv_input", 4),
    ("blocks.0.hook_v_input", "set_use_split_qkv_input", 4),
    ("blocks.0.hook_attn_in", "set_use_attn_in", 4),
    ("blocks.0.hook_mlp_in", "set_use_hook_mlp_in", 3),
]


def _identity(z, hook):
    return z


def _stack(model) -> str:
    """The prefix of the model's first block stack (a stem's for the hierarchical model)."""
    return "blocks" if model.cfg.n_layers else "stems.emg.blocks"


@pytest.fixture(params=WEIGHTED)
def model(request):
    model = get_model(request.param)
    yield model
    get_model(request.param)


@pytest.mark.parametrize(("hook_name", "setter", "ndim"), CONDITIONAL)
def test_conditional_hooks(model, hook_name, setter, ndim):
    # test_conditional_hooks: refused while the flag is off (TL: an error), accepted once on;
    # the cache then holds it alone with the legacy shape.
    set_flag = getattr(model, setter)
    set_flag(False)
    with pytest.raises(HookFlagError, match=rf"{hook_name}.*{setter}\(True\)"):
        model.add_hook(hook_name, _identity)
    with pytest.raises(HookFlagError, match=setter):
        model.run_with_hooks(model.example_input(), fwd_hooks=[(hook_name, _identity)])
    # HookedTransformer's test expects an AssertionError, TransformerLens 4's bridge a ValueError
    with pytest.raises(AssertionError):
        model.add_hook(hook_name, _identity)
    with pytest.raises(ValueError):
        model.add_hook(hook_name, _identity)
    set_flag(True)
    model.add_hook(hook_name, _identity)
    set_flag(False)  # TL's test turns the flag off with the hook still on: no error
    set_flag(True)
    model.reset_hooks()
    _, cache = model.run_with_cache(model.example_input(1), names_filter=lambda n: n == hook_name)
    assert list(cache.keys()) == [hook_name]
    n, cfg = model.layout.n_tokens, model.cfg
    width = cfg.d_model
    expected = {3: (1, n, width), 4: (1, n, cfg.n_heads, width)}[ndim]
    assert cache[hook_name].shape == expected
    # As on a HookedTransformer, the flag (not a hook) chooses the computation: the hook fires
    # once a forward while the flag is on, an identity hook changes no output bit, and with
    # the flag off the point is not computed, so the hook left on it does not fire.
    x, fired = model.example_input(2), []
    with torch.no_grad():
        unhooked = model(x)
        model.add_hook(hook_name, lambda z, hook: fired.append(hook.name))
        hooked = model(x)
        assert fired == [hook_name]
        assert torch.equal(hooked, unhooked)
        set_flag(False)
        model(x)
    model.reset_hooks()
    assert fired == [hook_name]


@pytest.mark.parametrize("setter", ["set_use_split_qkv_input", "set_use_attn_in"])
def test_split_qkv_normal_attn_correct(model, setter):
    # unit/test_split_qkv.py::test_split_qkv_normal_attn_correct: the per-head forks fire
    # with n_heads copies and the output does not change.
    model = copy.deepcopy(model).to(torch.float64)  # TL's tolerance (below)
    x = model.example_input(2)
    with torch.no_grad():
        normal = model(x)
        getattr(model, setter)(True)
        names = (
            ["hook_q_input", "hook_k_input", "hook_v_input"]
            if setter == "set_use_split_qkv_input"
            else ["hook_attn_in"]
        )
        hooks = [f"{_stack(model)}.{layer}.{h}" for layer in range(2) for h in names]
        split, cache = model.run_with_cache(x, names_filter=hooks)
    for name in hooks:
        assert name in cache, f"{name} did not fire after {setter}(True)"
        assert cache[name].shape[2] == model.cfg.n_heads
        # each head's copy is the residual stream entering the block
        resid = cache[name][:, :, 0]
        torch.testing.assert_close(cache[name], resid[:, :, None].expand_as(cache[name]))
    # TL's tolerance (allclose, atol 1e-6), in float64: the unflagged forward here runs the
    # fused SDPA kernel and the cached one the explicit path, which differ by float32 rounding
    torch.testing.assert_close(normal, split, atol=1e-6, rtol=1e-5)
    getattr(model, setter)(False)


def test_atten_result_normal_attn_correct(model):
    # unit/test_use_attn_result.py::test_atten_result_normal_attn_correct
    model = copy.deepcopy(model).to(torch.float64)  # TL's tolerance (see the test above)
    x = model.example_input(2)
    stack = _stack(model)
    with torch.no_grad():
        normal = model(x)
        model.set_use_attn_result(True)
        split, cache = model.run_with_cache(x)
    torch.testing.assert_close(normal, split, atol=1e-6, rtol=1e-5)
    result = cache[f"{stack}.0.attn.hook_result"]
    n = result.shape[1]
    assert result.shape == (2, n, model.cfg.n_heads, model.cfg.d_model)
    b_O = model.get_submodule(f"{stack}.0.attn").b_O
    torch.testing.assert_close(
        result.sum(dim=2) + b_O, cache[f"{stack}.0.hook_attn_out"], atol=1e-5, rtol=1e-5
    )
    model.set_use_attn_result(False)


def test_hook_mlp_in_is_the_mlp_input_only(model):
    # legacy HookedTransformer: hook_mlp_in is a copy of resid_mid that only the MLP reads.
    model.set_use_hook_mlp_in(True)
    stack = _stack(model)
    x = model.example_input(2)
    with torch.no_grad():
        _, cache = model.run_with_cache(x)
        torch.testing.assert_close(
            cache[f"{stack}.0.hook_mlp_in"], cache[f"{stack}.0.hook_resid_mid"]
        )
        seen = {}

        def zero(z, hook):
            return torch.zeros_like(z)

        def grab(z, hook):
            seen[hook.name] = z

        model.run_with_hooks(
            x,
            fwd_hooks=[
                (f"{stack}.0.hook_mlp_in", zero),
                (f"{stack}.0.hook_resid_mid", grab),
                (f"{stack}.0.hook_mlp_out", grab),
            ],
        )
    # the residual stream is untouched; the MLP saw zeros (its output is input-independent)
    torch.testing.assert_close(
        seen[f"{stack}.0.hook_resid_mid"], cache[f"{stack}.0.hook_resid_mid"]
    )
    out = seen[f"{stack}.0.hook_mlp_out"]
    torch.testing.assert_close(out, out[:1, :1].expand_as(out))
    model.set_use_hook_mlp_in(False)


def test_filters_and_caches_skip_points_whose_flag_is_off(model):
    # TL 4 (bridge_core): caching everything, or a filter (a sweep), skips them; naming one
    # is refused (TL 4 warns for a names_filter list; emg_lens refuses, as for a hook); a
    # filter that matches nothing else would hook nothing, and is refused too.
    x = model.example_input()
    _, cache = model.run_with_cache(x)
    assert not any(model.flag_off(name) for name in cache)
    assert get_act_name("result", 0) not in cache
    _, cache = model.run_with_cache(x, names_filter=lambda n: n.endswith(("hook_result", "hook_z")))
    assert cache.keys() and all(k.endswith("hook_z") for k in cache)
    with pytest.raises(HookFlagError, match="matched only hook points whose flag is off"):
        model.run_with_cache(x, names_filter=lambda n: n.endswith("hook_result"))
    stack = _stack(model)
    with pytest.raises(HookFlagError, match=r"names hook points.*set_use_split_qkv_input"):
        model.run_with_cache(x, names_filter=[f"{stack}.0.hook_q_input", f"{stack}.0.hook_z"])
    count = []
    model.run_with_hooks(
        x,
        fwd_hooks=[
            (lambda n: n.endswith(("mlp_in", "resid_pre")), lambda z, hook: count.append(1))
        ],
    )
    assert len(count) == sum(name.endswith("resid_pre") for name in model.hook_dict)
    with pytest.raises(HookFlagError, match="use_hook_mlp_in"):
        model.add_hook(lambda n: n.endswith("mlp_in"), _identity)
    assert not any(hp.has_hooks() for hp in model.hook_dict.values())


@pytest.mark.unchecked  # a flag set to 1 on purpose: the named error
def test_flags_are_exclusive_and_checked(model):
    # TL 4's set_use_split_qkv_input / set_use_attn_in: mutually exclusive.
    model.set_use_split_qkv_input(True)
    with pytest.raises(
        ArgumentError, match=r"mutually exclusive.*set_use_split_qkv_input\(False\)"
    ):
        model.set_use_attn_in(True)
    model.set_use_split_qkv_input(False)
    model.set_use_attn_in(True)
    with pytest.raises(ArgumentError, match="mutually exclusive"):
        model.set_use_split_qkv_input(True)
    model.set_use_attn_in(False)
    with pytest.raises(ArgumentError, match=r"use_hook_mlp_in must be true or false, got 1$"):
        model.set_use_hook_mlp_in(1)


def test_transformer_lens_4_names_of_the_forks(model):
    # TL 4 names the forks blocks.{l}.attn.hook_q_input (its patching hooks those): the same
    # hook points as the legacy blocks.{l}.hook_q_input, neither cached twice.
    stack = _stack(model)
    model.set_use_split_qkv_input(True)
    seen = []
    model.run_with_hooks(
        model.example_input(),
        fwd_hooks=[(f"{stack}.1.attn.hook_k_input", lambda z, hook: seen.append(hook.name))],
    )
    assert seen == [f"{stack}.1.hook_k_input"]
    _, cache = model.run_with_cache(
        model.example_input(), names_filter=[f"{stack}.1.attn.hook_v_input"]
    )
    assert list(cache.keys()) == [f"{stack}.1.hook_v_input"]
    assert f"{stack}.1.attn.hook_v_input" not in model.hook_dict
    model.set_use_split_qkv_input(False)


@pytest.mark.parametrize("name", ATTACHED)
@pytest.mark.parametrize(
    "setter",
    ["set_use_attn_result", "set_use_split_qkv_input", "set_use_attn_in", "set_use_hook_mlp_in"],
)
def test_attached_models_refuse_the_flags_by_name(name, setter):
    # An attached model runs its own attention code: no per-head weights to fork or split.
    model = get_model(name)
    getattr(model, setter)(False)  # the state it is in
    with pytest.raises(UnsupportedFeatureError, match=r"its own code") as info:
        getattr(model, setter)(True)
    assert "convert" in str(info.value)


def test_split_qkv_independence(model):
    # model_bridge/compatibility/test_split_qkv.py::test_split_qkv_independence: zeroing the
    # query input leaves the keys and values bit for bit (and changes the queries).
    stack = _stack(model)
    model.set_use_split_qkv_input(True)
    x = model.example_input(2)
    names = [f"{stack}.0.attn.hook_{c}" for c in "qkv"]
    with torch.no_grad():
        _, base = model.run_with_cache(x, names_filter=names)
        seen = {}

        def grab(z, hook):
            seen[hook.name] = z.clone()

        model.run_with_hooks(
            x,
            fwd_hooks=[
                (f"{stack}.0.attn.hook_q_input", lambda z, hook: torch.zeros_like(z)),
                *[(name, grab) for name in names],
            ],
        )
    model.set_use_split_qkv_input(False)
    assert torch.equal(seen[names[1]], base[names[1]])
    assert torch.equal(seen[names[2]], base[names[2]])
    assert not torch.allclose(seen[names[0]], base[names[0]])


def test_block_level_hook_alias_parity(model):
    # model_bridge/compatibility/test_split_qkv.py::test_block_level_hook_alias_parity: the
    # block-level and attention-level names are one hook point each, four distinct ones; and
    # (test_split_qkv_mutual_exclusivity) the exclusivity error is a ValueError, as in TL.
    stack = _stack(model)
    points = []
    for leaf in ("hook_attn_in", "hook_q_input", "hook_k_input", "hook_v_input"):
        block_level = model.mod_dict[f"{stack}.0.{leaf}"]
        assert model.mod_dict[f"{stack}.0.attn.{leaf}"] is block_level
        points.append(id(block_level))
    assert len(set(points)) == 4
    model.set_use_attn_in(True)
    with pytest.raises(ValueError, match="mutually exclusive"):
        model.set_use_split_qkv_input(True)
    model.set_use_attn_in(False)
