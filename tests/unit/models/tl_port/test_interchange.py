"""TransformerLens's interchange-intervention tests that run a model, ported onto one model of
each tier: native (IsoNet), converted (a user's ``nn.TransformerEncoder``) and attached (two
``nn.MultiheadAttention`` blocks).

Source: TransformerLensOrg/TransformerLens v4.3.0 (its PyPI sdist,
``transformer_lens-4.3.0.tar.gz``), ``tests/unit/tools/test_interchange.py``; each test below
names the one it ports. Its toy models are a ``HookedRootModule`` with one 2-D hook point
(``hook_mid``); here the hook is the residual stream after block 0 (``[batch, pos, d_model]``),
so one position per example is given (``positions``, as its ``_Toy(seq=True)`` cases), the
inputs are signal windows and ``task_logits`` is the model itself. What is left out needs its
planted toys (a planted direction or neuron, a hook firing twice) or runs no model (bases,
placebos, labels); TL runs those on its own.
"""

from __future__ import annotations

import pytest
import torch
from transformer_lens.tools.analysis.interchange import (
    SubspaceInterchange,
    _model_device,
    collect_activations,
    fit_das,
    intervened_logits,
    random_basis,
    reinitialized,
    run_with_intervention,
)

from tests.unit.models.tl_port.conftest import get_model

MODELS = ("isonet", "torch_pre_ln", "attached_mha")
HOOK = "blocks.0.hook_resid_post"
ROWS = torch.tensor([0, 2, 1, 2])  # one position per example (TL's `rows`)

pytestmark = pytest.mark.parametrize("name", MODELS)


def _inputs(model, n: int, seed: int) -> torch.Tensor:
    shape = model.example_input(n).shape
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _pairs(model, n: int = 4):
    """``(base, source, positions)``: two batches of windows and one position per example."""
    positions = ROWS.repeat((n + 3) // 4)[:n]
    return _inputs(model, n, 0), _inputs(model, n, 1), positions


def _targets(model, n: int) -> torch.Tensor:
    n_classes = model(_inputs(model, 1, 2)).shape[-1]
    return torch.randint(n_classes, (n,), generator=torch.Generator().manual_seed(3))


def _d_model(model) -> int:
    return model.run_with_cache(_inputs(model, 1, 2), names_filter=HOOK)[1][HOOK].shape[-1]


def _forbid_reseeding(monkeypatch):  # TL's helper of the same name
    def reseeded(*args, **kwargs):
        raise AssertionError("a global or device generator was reseeded")

    for module, name in (
        (torch, "manual_seed"),
        (torch.random, "manual_seed"),
        (torch.cuda, "manual_seed"),
        (torch.cuda, "manual_seed_all"),
        (torch.mps, "manual_seed"),
    ):
        monkeypatch.setattr(module, name, reseeded)


@pytest.mark.slow
def test_a_full_interchange_replaces_exactly_the_given_position(name):
    """Ports ``test_a_full_interchange_reproduces_the_source_output`` and
    ``test_positions_select_one_vector_per_example``: the collected activations are the cache's
    at each example's position, and a full interchange there gives the model's output on the
    base with that one vector replaced by the source's (TL's ``_SumToy`` check, the rest of the
    model run by a hook)."""
    model = get_model(name)
    base, source, rows = _pairs(model)
    d_model = _d_model(model)
    full = SubspaceInterchange(torch.eye(d_model))
    _, cache = model.run_with_cache(source, names_filter=HOOK)
    acts = collect_activations(model, HOOK, source, model, positions=rows, batch_size=3)
    assert torch.allclose(acts, cache[HOOK][torch.arange(4), rows])
    out = run_with_intervention(model, HOOK, full, base, acts, model, positions=rows)

    def patch(act, hook):
        act = act.clone()
        act[torch.arange(4), rows] = cache[HOOK][torch.arange(4), rows]
        return act

    with torch.no_grad():
        expected = model.run_with_hooks(base, fwd_hooks=[(HOOK, patch)])
    assert torch.allclose(out, expected, atol=1e-5)
    with pytest.raises(ValueError, match="one position index per example"):
        collect_activations(model, HOOK, source, model)


def test_positions_must_match_the_activation(name):
    """Ports ``test_positions_must_match_the_activation``: a 4-D hook (here the attention
    pattern itself) takes no positions, and positions need one index per example."""
    model = get_model(name)
    x, at = _inputs(model, 4, 0), torch.zeros(4, dtype=torch.long)
    pattern = "blocks.0.attn.hook_pattern"
    with pytest.raises(ValueError, match="must be \\[batch, pos, d_model\\]"):
        collect_activations(model, pattern, x, model, positions=at)
    with pytest.raises(ValueError, match="must be \\[batch, pos, d_model\\]"):
        identity = SubspaceInterchange(torch.eye(3))
        run_with_intervention(model, pattern, identity, x, torch.randn(4, 3), model, positions=at)
    with pytest.raises(ValueError, match="one index per example"):
        collect_activations(model, HOOK, x, model, positions=at[:3])


def test_the_intervention_is_differentiable(name):
    """Ports ``test_the_intervention_is_differentiable``."""
    model = get_model(name)
    base, source, rows = _pairs(model)
    basis = random_basis(_d_model(model), 2, seed=0).requires_grad_(True)
    source_acts = collect_activations(model, HOOK, source, model, positions=rows)
    out = run_with_intervention(
        model, HOOK, SubspaceInterchange(basis), base, source_acts, model, positions=rows
    )
    out.sum().backward()
    model.zero_grad(set_to_none=True)  # the session's model, shared with other tests
    assert basis.grad is not None and basis.grad.abs().sum() > 0


def test_intervened_logits_matches_one_pass_in_bounded_batches(name):
    """Ports ``test_intervened_logits_matches_one_pass_in_bounded_batches``."""
    model = get_model(name)
    base, source, rows = _pairs(model, 10)
    acts = collect_activations(model, HOOK, source, model, positions=rows)
    basis = random_basis(_d_model(model), 2, seed=0).requires_grad_(True)
    intervention = SubspaceInterchange(basis)
    one = run_with_intervention(model, HOOK, intervention, base, acts, model, positions=rows)
    batched = intervened_logits(
        model, HOOK, intervention, base, acts, model, positions=rows, batch_size=3
    )
    assert torch.allclose(batched, one.detach(), atol=1e-6)
    assert not batched.requires_grad and batched.device.type == "cpu"
    with pytest.raises(ValueError, match="one row per base"):
        intervened_logits(model, HOOK, intervention, base, acts[:-1], model, positions=rows)


def _das(model, base, source, rows, targets, **kwargs):
    return fit_das(
        model, HOOK, base, source, targets, model, base_positions=rows, source_positions=rows,
        **{"rank": 1, **kwargs},
    )  # fmt: skip


@pytest.mark.slow
def test_the_epoch_loss_is_the_mean_cross_entropy_per_pair(name):
    """Ports ``test_the_epoch_loss_is_the_mean_cross_entropy_per_pair``: lr=0 keeps the basis
    at its initialisation; uneven batches of 16 and a last batch of 2."""
    model = get_model(name)
    base, source, rows = _pairs(model, 50)
    targets = _targets(model, 50)
    result = _das(model, base, source, rows, targets, epochs=2, batch_size=16, lr=0.0)
    acts = collect_activations(model, HOOK, source, model, positions=rows)
    logits = intervened_logits(
        model, HOOK, SubspaceInterchange(result.subspace), base, acts, model, positions=rows
    )
    expected = torch.nn.functional.cross_entropy(logits, targets).item()
    assert result.losses == pytest.approx((expected, expected), rel=1e-5)


@pytest.mark.slow
def test_das_leaves_the_callers_random_stream_alone_and_never_reseeds(name, monkeypatch):
    """Ports ``test_das_leaves_the_callers_random_stream_alone`` and
    ``test_das_never_reseeds_a_device_generator``."""
    model = get_model(name)
    base, source, rows = _pairs(model, 32)
    targets = _targets(model, 32)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = _das(model, base, source, rows, targets, epochs=1, seed=5)
    assert torch.equal(torch.rand(3), expected)
    again = _das(model, base, source, rows, targets, epochs=1, seed=5)
    assert torch.equal(first.basis, again.basis)  # the seed still fixes the result
    _forbid_reseeding(monkeypatch)
    _das(model, base, source, rows, targets, epochs=1, seed=5)


def test_the_subspace_defaults_to_the_models_device(name):
    """Ports ``test_the_subspace_defaults_to_the_models_device`` (its CPU model)."""
    model = get_model(name)
    base, source, rows = _pairs(model, 32)
    result = _das(model, base, source, rows, _targets(model, 32), epochs=1)
    parameter = next(model.parameters())
    assert _model_device(model) == parameter.device == result.basis.device


def test_models_in_training_mode_are_rejected(name):
    """Ports ``test_models_in_training_mode_are_rejected``."""
    model = get_model(name)
    base, source, rows = _pairs(model, 8)
    acts = torch.randn(8, _d_model(model))
    full = SubspaceInterchange(torch.eye(acts.shape[-1]))
    model.train()
    try:
        with pytest.raises(ValueError, match=r"collect_activations requires .* evaluation mode"):
            collect_activations(model, HOOK, source, model, positions=rows)
        with pytest.raises(ValueError, match=r"intervened_logits requires .* evaluation mode"):
            intervened_logits(model, HOOK, full, base, acts, model, positions=rows)
        with pytest.raises(ValueError, match=r"fit_das requires .* evaluation mode"):
            _das(model, base, source, rows, _targets(model, 8))
    finally:
        model.eval()


@pytest.mark.slow
def test_das_leaves_the_model_untouched(name):
    """Ports ``test_das_leaves_the_model_untouched`` (every parameter, where TL's toy has one)."""
    model = get_model(name)
    base, source, rows = _pairs(model, 32)
    targets = _targets(model, 32)
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)  # the session's model: other tests' backward passes
    _das(model, base, source, rows, targets, epochs=2)
    for key, param in model.named_parameters():
        assert param.requires_grad and torch.equal(param.detach(), before[key]), key
        assert param.grad is None, key  # frozen while training: no gradient reaches the model
    with pytest.raises(ValueError, match="same length"):
        _das(model, base, source[:-1], rows, targets)


def test_reinitialized_resets_every_parameter_and_keeps_buffers(name):
    """Ports ``test_reinitialized_resets_every_parameter_and_keeps_buffers``: every parameter
    moved away from what a reset draws first (as training would)."""
    model = get_model(name)
    saved = {k: p.detach().clone() for k, p in model.named_parameters()}
    try:
        with torch.no_grad():
            for param in model.parameters():
                param.add_(1.0)
        before = {k: p.detach().clone() for k, p in model.named_parameters()}
        fresh = reinitialized(model, seed=0)
        for key, parameter in fresh.named_parameters():
            assert not torch.equal(parameter, before[key]), key
            assert torch.equal(dict(model.named_parameters())[key], before[key])  # untouched
        buffers = dict(model.named_buffers())
        assert all(torch.equal(b, buffers[k]) for k, b in fresh.named_buffers())
        assert not fresh.training
        again = reinitialized(model, seed=0)
        assert all(torch.equal(a, b) for a, b in zip(again.parameters(), fresh.parameters()))
    finally:
        with torch.no_grad():
            for key, param in model.named_parameters():
                param.copy_(saved[key])


def test_reinitialized_leaves_every_random_stream_alone(name, monkeypatch):
    """Ports ``test_reinitialized_leaves_every_random_stream_alone``."""
    model = get_model(name)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _forbid_reseeding(monkeypatch)
    reinitialized(model, seed=0)
    assert torch.equal(torch.rand(3), expected)
