"""nnsight 0.8 on every tier (issue 75): a traced model's attention hook points are reached in
execution order, so an nnsight user reads and overwrites ``hook_attn_scores`` and
``hook_pattern`` with nnsight's own syntax, with no TransformerLens hook registered; and the
same for a plain torch forward hook. Both must switch attention off its fused path (which never
calls the hook points, `emg_lens.components.attend.observed`), and nothing else may: a model
wrapped by nnsight runs its fused path outside a trace.
"""

from __future__ import annotations

import pytest
import torch
from transformer_lens.hook_points import HookPoint

from emg_lens.components.attend import observed
from tests.unit.models import table

nnsight = pytest.importorskip("nnsight")

MODELS = ("isonet", "braindecode_labram", "attached_mha")
"""One model of each tier: native, converted (braindecode's LaBraM), attached."""


def _cut(scores: torch.Tensor) -> torch.Tensor:
    """A fixed [query, key] cut (key 0 always kept, so no row is emptied), as -inf."""
    q, k = scores.shape[-2:]
    generator = torch.Generator().manual_seed(q * 100 + k)
    mask = torch.rand(q, k, generator=generator) > 0.5
    mask[:, 0] = False
    return scores.masked_fill(mask, float("-inf"))


def _setup(name: str, monkeypatch):
    model = table.make(name)  # fresh: nnsight instruments the modules it wraps
    x = model.example_input(3)
    cut = [(lambda n: n.endswith("hook_attn_scores"), lambda scores, hook: _cut(scores))]
    with model.hooks(fwd_hooks=cut):
        logits, cut_cache = model.run_with_cache(x, names_filter=lambda n: n.endswith("pattern"))
    # every hook point observed, as in a trace (a cache of the patterns alone leaves the layer
    # norms on their fused kernel: the same function within float error)
    reference = {"cut": logits, "cut_cache": cut_cache, "cache": model.run_with_cache(x)[1]}
    assert not observed(model.hook_dict.values())

    def refuse(*args, **kwargs):
        raise AssertionError("a TransformerLens hook was registered during the nnsight trace")

    monkeypatch.setattr(HookPoint, "add_hook", refuse)
    return model, x, reference


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_nnsight_edits_and_reads_attention(name, monkeypatch):
    model, x, reference = _setup(name, monkeypatch)
    traced = nnsight.NNsight(model)
    assert not observed(model.hook_dict.values())  # wrapped, outside a trace: the fast path
    n_layers = len(model.blocks)
    registered = []
    with traced.trace(x):
        for layer in range(n_layers):
            attn = traced.blocks[layer].attn
            attn.hook_attn_scores.output = _cut(attn.hook_attn_scores.output)
            registered.append(
                [n for n, hp in model.hook_dict.items() if hp._forward_hooks or hp.fwd_hooks]
            )
        edited = traced.output.save()
    assert registered == [[]] * n_layers
    assert (edited - reference["cut"]).abs().max() <= 1e-5
    assert not observed(model.hook_dict.values())  # the trace over: the fast path again

    patterns = []
    with traced.trace(x):
        for layer in range(n_layers):
            patterns.append(traced.blocks[layer].attn.hook_pattern.output.save())
    for layer, pattern in enumerate(patterns):
        torch.testing.assert_close(
            pattern, reference["cache"][f"blocks.{layer}.attn.hook_pattern"], atol=0, rtol=0
        )


@pytest.mark.parametrize("name", MODELS)
def test_torch_forward_hook_fires(name, monkeypatch):
    model, x, reference = _setup(name, monkeypatch)
    seen, handles = {}, []
    for layer in range(len(model.blocks)):
        attn = model.blocks[layer].attn
        handles.append(attn.hook_attn_scores.register_forward_hook(lambda m, a, out: _cut(out)))
        handles.append(
            attn.hook_pattern.register_forward_hook(
                lambda m, a, out, i=layer: seen.update({i: out})
            )
        )
    try:
        edited = model(x)
    finally:
        for handle in handles:
            handle.remove()
    assert (edited - reference["cut"]).abs().max() <= 1e-5
    assert sorted(seen) == list(range(len(model.blocks)))
    for layer, pattern in seen.items():
        torch.testing.assert_close(
            pattern, reference["cut_cache"][f"blocks.{layer}.attn.hook_pattern"]
        )
    assert not observed(model.hook_dict.values())
