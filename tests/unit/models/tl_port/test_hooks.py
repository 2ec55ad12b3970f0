"""TransformerLens's tests of hook points and hooks, ported onto every emg_lens tier.

Sources (TransformerLensOrg/TransformerLens, tests/): ``integration/test_hooks.py`` (run with
hooks, permanent hooks, the ``hooks()`` context manager, nesting, backward hooks, resetting,
prepending), ``unit/test_hook_points.py`` (``HookPoint.add_hook`` and ``has_hooks``) and
``unit/test_hooked_root_module.py`` (hooks enabled by name and by filter). Their models are
language models; here every hook point is one of an emg_lens model's, and the facts asserted
are theirs. (Their conditional-hook test is in test_flags.py.)
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.unit.models.tl_port.conftest import TIERS, probe_hook

pytestmark = pytest.mark.parametrize("tier_model", TIERS, indirect=True)


class Counter:
    def __init__(self):
        self.count = 0

    def inc(self, *args, **kwargs):
        self.count += 1


def _named(name):
    return lambda n: n == name


def _n_fwd(model, name):
    return len(model.hook_dict[name].fwd_hooks)


# ------------------------------------------------------------ integration/test_hooks.py


def test_hook_attaches_normally(tier_model):  # test_hook_attaches_normally
    model, c = tier_model, Counter()
    name = probe_hook(model)
    model.run_with_hooks(model.example_input(), fwd_hooks=[(_named(name), c.inc)])
    assert all(len(hp.fwd_hooks) == 0 for hp in model.hook_dict.values())
    assert c.count == 1


def test_perma_hook_attaches_normally(tier_model):  # test_perma_hook_attaches_normally
    model, c = tier_model, Counter()
    name = probe_hook(model)
    model.add_perma_hook(_named(name), c.inc)
    assert _n_fwd(model, name) == 1
    model.run_with_hooks(model.example_input(), fwd_hooks=[])
    assert _n_fwd(model, name) == 1
    assert c.count == 1


def test_hook_context_manager(tier_model):  # test_hook_context_manager
    model, c = tier_model, Counter()
    name = probe_hook(model)
    with model.hooks(fwd_hooks=[(_named(name), c.inc)]):
        assert _n_fwd(model, name) == 1
        model(model.example_input())
    assert _n_fwd(model, name) == 0
    assert c.count == 1


def test_nested_hook_context_manager(tier_model):  # test_nested_hook_context_manager
    model, c = tier_model, Counter()
    name, x = probe_hook(model), tier_model.example_input()
    with model.hooks(fwd_hooks=[(_named(name), c.inc)]):
        assert _n_fwd(model, name) == 1
        model(x)
        assert c.count == 1
        with model.hooks(fwd_hooks=[(_named(name), c.inc)]):
            assert _n_fwd(model, name) == 2
            model(x)
            assert c.count == 3  # 2 from the outer context, 1 from the inner
        assert _n_fwd(model, name) == 1
    assert _n_fwd(model, name) == 0
    assert c.count == 3


def test_context_manager_run_with_cache(tier_model):  # test_context_manager_run_with_cache
    model, c = tier_model, Counter()
    name = probe_hook(model)
    with model.hooks(fwd_hooks=[(_named(name), c.inc)]):
        assert _n_fwd(model, name) == 1
        _, cache = model.run_with_cache(model.example_input())
        assert _n_fwd(model, name) == 1  # the cache's own hooks are gone, the context's stay
        assert name in cache
    assert _n_fwd(model, name) == 0
    assert c.count == 1


def test_backward_hook_runs_successfully(tier_model):  # test_backward_hook_runs_successfully
    model, c = tier_model, Counter()
    name = probe_hook(model)

    def skip_grad(output_grad: torch.Tensor, hook: Any):
        c.inc()
        return (output_grad,)

    with model.hooks(bwd_hooks=[(_named(name), skip_grad)]):
        assert len(model.hook_dict[name].bwd_hooks) == 1
        out = model(model.example_input())
        assert c.count == 0
        out.sum().backward()  # runs the hook
        assert len(model.hook_dict[name].bwd_hooks) == 1
    assert len(model.hook_dict[name].bwd_hooks) == 0
    assert c.count == 1
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("returned", ["bare", "none"])
def test_backward_hook_returning_bare_tensor_or_none(tier_model, returned):
    # test_backward_hook_returning_bare_tensor (issue #1160) / ..._returning_none
    model, c = tier_model, Counter()
    name = probe_hook(model)

    def grad_hook(grad: torch.Tensor, hook: Any):
        c.inc()
        return grad if returned == "bare" else None

    with model.hooks(bwd_hooks=[(name, grad_hook)]):
        model(model.example_input()).sum().backward()
    assert c.count == 1
    model.zero_grad(set_to_none=True)


def test_hook_context_manager_with_permanent_hook(tier_model):
    # test_hook_context_manager_with_permanent_hook
    model, c = tier_model, Counter()
    name = probe_hook(model)
    model.add_perma_hook(_named(name), c.inc)
    assert _n_fwd(model, name) == 1
    with model.hooks(fwd_hooks=[(_named(name), c.inc)]):
        assert _n_fwd(model, name) == 2
        model(model.example_input())
    assert _n_fwd(model, name) == 1
    assert c.count == 2  # 1 from the permanent hook, 1 from the context's


def test_nested_context_manager_with_failure(tier_model):  # test_nested_context_manager_...
    model, c = tier_model, Counter()
    name = probe_hook(model)

    def fail_hook(z, hook):
        raise ValueError("fail")

    with model.hooks(fwd_hooks=[(_named(name), c.inc)]):
        with (
            pytest.raises(ValueError, match="fail"),
            model.hooks(fwd_hooks=[(_named(name), fail_hook)]),
        ):
            assert _n_fwd(model, name) == 2
            model(model.example_input())
        assert _n_fwd(model, name) == 1
        assert c.count == 1
    assert _n_fwd(model, name) == 0


def test_reset_hooks_in_context_manager(tier_model):  # test_reset_hooks_in_context_manager
    model, c = tier_model, Counter()
    name = probe_hook(model)
    with model.hooks(fwd_hooks=[(_named(name), c.inc)]):
        assert _n_fwd(model, name) == 1
        model.reset_hooks()
        assert _n_fwd(model, name) == 0
    assert _n_fwd(model, name) == 0


def test_remove_hook(tier_model):  # test_remove_hook
    model, c = tier_model, Counter()
    name = probe_hook(model)
    model.add_perma_hook(_named(name), c.inc)
    assert _n_fwd(model, name) == 1
    model.remove_all_hook_fns()
    assert _n_fwd(model, name) == 1  # permanent: not removed without the flag
    model.remove_all_hook_fns(including_permanent=True)
    assert _n_fwd(model, name) == 0
    model.run_with_hooks(model.example_input(), fwd_hooks=[])
    assert c.count == 0


@pytest.mark.parametrize("zero_attach_pos", [0, 1])
@pytest.mark.parametrize("prepend", [True, False])
def test_prepending_hooks(tier_model, zero_attach_pos, prepend):
    # test_prepending_hooks: of two hooks on one point (one zeroes the activation, one
    # replaces it by noise) the output is the zeroed one's exactly when the zero hook runs
    # last, i.e. when it was added last XOR it is prepended. (TL's zeroed output is its
    # unembedding bias; here it is the output with that activation zeroed.)
    model = tier_model
    name, x = probe_hook(model), tier_model.example_input()

    def set_to_zero(z, hook):
        return torch.zeros_like(z)

    def set_to_randn(z, hook):
        return torch.randn_like(z) * 0.1

    with torch.no_grad():
        zeroed = model.run_with_hooks(x, fwd_hooks=[(name, set_to_zero)])
        for hook_idx in range(2):
            fn = set_to_zero if hook_idx == zero_attach_pos else set_to_randn
            model.add_hook(name, fn, prepend=prepend)
        out = model(x)
    expected_zeroed = (zero_attach_pos == 1) != prepend
    assert torch.allclose(out, zeroed) == expected_zeroed


# ------------------------------------------------------------ unit/test_hook_points.py


def _point(model):
    return model.hook_dict[probe_hook(model)]


def _identity(activation, hook):
    return activation


def test_add_hook_directions_permanence_and_level(tier_model):
    # test_add_hook_forward / _backward / _permanent / _with_level
    hp = _point(tier_model)
    hp.add_hook(_identity, dir="fwd")
    assert len(hp.fwd_hooks) == 1
    hp.add_hook(_identity, dir="bwd")
    assert len(hp.bwd_hooks) == 1
    hp.remove_hooks("both")
    hp.add_hook(_identity, dir="fwd", is_permanent=True)
    assert hp.fwd_hooks[0].is_permanent
    hp.remove_hooks("both", including_permanent=True)
    hp.add_hook(_identity, dir="fwd", level=5)
    assert hp.fwd_hooks[0].context_level == 5


def test_add_hook_prepend_runs_first(tier_model):  # test_add_hook_prepend
    model = tier_model
    hp, order = _point(model), []
    hp.add_hook(lambda a, hook: order.append(1), dir="fwd")
    hp.add_hook(lambda a, hook: order.append(2), dir="fwd", prepend=True)
    assert len(hp.fwd_hooks) == 2
    model(model.example_input())
    assert order == [2, 1]


def test_has_hooks(tier_model):  # TestHookPointHasHooks
    hp = _point(tier_model)
    # test_no_hooks_returns_false
    assert not hp.has_hooks()
    assert not hp.has_hooks(dir="fwd") and not hp.has_hooks(dir="bwd")
    # test_forward_hook_detection
    hp.add_hook(_identity, dir="fwd")
    assert hp.has_hooks() and hp.has_hooks(dir="fwd") and hp.has_hooks(dir="both")
    assert not hp.has_hooks(dir="bwd")
    # test_both_direction_hooks
    hp.add_hook(_identity, dir="bwd")
    assert hp.has_hooks(dir="fwd") and hp.has_hooks(dir="bwd") and hp.has_hooks(dir="both")
    # test_hook_removal_affects_detection
    hp.remove_hooks(dir="both")
    assert not hp.has_hooks()
    # test_permanent_hook_detection / test_only_permanent_hooks
    hp.add_hook(_identity, dir="fwd", is_permanent=True)
    assert hp.has_hooks() and hp.has_hooks(including_permanent=True)
    assert not hp.has_hooks(including_permanent=False)
    # test_mixed_permanent_hooks
    hp.add_hook(_identity, dir="fwd", is_permanent=False)
    assert hp.has_hooks(including_permanent=False)
    hp.remove_hooks("both", including_permanent=True)
    # test_context_level_filtering / _with_direction
    hp.add_hook(_identity, dir="fwd", level=0)
    hp.add_hook(_identity, dir="fwd", level=1)
    hp.add_hook(_identity, dir="bwd", level=2)
    assert hp.has_hooks(level=0) and hp.has_hooks(level=1) and hp.has_hooks(level=2)
    assert not hp.has_hooks(level=3) and not hp.has_hooks(level=-1)
    assert hp.has_hooks(dir="bwd", level=2) and not hp.has_hooks(dir="bwd", level=0)
    assert not hp.has_hooks(dir="fwd", level=2)
    hp.remove_hooks("both", including_permanent=True)
    # test_context_level_with_permanent_flags
    hp.add_hook(_identity, dir="fwd", level=0, is_permanent=True)
    hp.add_hook(_identity, dir="fwd", level=1, is_permanent=False)
    assert hp.has_hooks(level=0, including_permanent=True)
    assert not hp.has_hooks(level=0, including_permanent=False)
    assert hp.has_hooks(level=1, including_permanent=False)
    hp.remove_hooks("both", including_permanent=True)
    # test_edge_case_empty_after_filtering
    hp.add_hook(_identity, dir="fwd", is_permanent=True, level=5)
    assert not hp.has_hooks(including_permanent=False)
    assert not hp.has_hooks(dir="bwd") and not hp.has_hooks(level=0)
    hp.remove_hooks("both", including_permanent=True)


def test_hook_execution_and_return_values(tier_model):
    # test_functional_hook_execution_still_works / test_hook_point_with_conversions /
    # test_reshape_functionality_hook_returns_none_integration: a hook returning None leaves
    # the activation as it was; one returning a tensor replaces it.
    model = tier_model
    name, x = probe_hook(model), tier_model.example_input(2)
    seen = []
    with torch.no_grad():
        plain = model(x)
        observed = model.run_with_hooks(x, fwd_hooks=[(name, lambda a, hook: seen.append(1))])
        doubled = model.run_with_hooks(x, fwd_hooks=[(name, lambda a, hook: a * 2)])
    assert seen == [1]
    if all(call.kind == "softmax" for call in getattr(model, "calls", ())):
        assert torch.equal(observed, plain)
    else:  # a hooked attached model runs torch's fused attention (sdpa, mha) in Python
        torch.testing.assert_close(observed, plain, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(doubled, plain)


# ------------------------------------------------------------ unit/test_hooked_root_module.py


def test_enable_hook_by_name_and_by_filter(tier_model):
    # test_enable_hook_with_name / test_enable_hooks_for_points / test_enable_hook_with_*:
    # a name enables exactly that point at the current context level; a filter every point
    # it accepts and no other.
    model = tier_model
    name = probe_hook(model)
    other = next(n for n in model.hook_dict if n != name)
    model.context_level = 5
    try:
        model._enable_hook(name, hook=_identity, dir="fwd")
        assert model.hook_dict[name].fwd_hooks[0].context_level == 5
        assert not model.hook_dict[other].has_hooks()
        model._enable_hook(lambda n: n == other, hook=_identity, dir="bwd")
        assert model.hook_dict[other].has_hooks(dir="bwd", level=5)
        assert not model.hook_dict[name].has_hooks(dir="bwd")
    finally:
        model.context_level = 0
