"""The FlexAttention backend (`emg_lens.components.flex`) on the CPU, through FlexAttention's
eager reference: every converted model with heads at least 16 wide, a native IsoNet and
attached SDPA models give SDPA's outputs within 1e-5 under a cut (a query left with no key
included: a zero row, as SDPA's path gives), with one mask per layer or one per row; and the
backend is never taken where a hook reads the pattern or the scores, where a gradient is
asked for, nor by ``"auto"`` (measured slower on an H100 than the stacked SDPA call: the
module docstring)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.nn.attention import flex_attention as torch_flex

from emg_lens import EncoderConfig
from emg_lens.components.flex import attention_backend, flex_attend
from emg_lens.errors import ArgumentError
from emg_lens.models import IsoNet, attach
from emg_lens.models.attached.zoo import attach_braindecode
from tests.unit.models import attached_models, converted_models

with warnings.catch_warnings():  # braindecode's import (~5 s) at collection, not in a test's
    warnings.simplefilter("ignore")
    import braindecode.models  # noqa: F401

TOL = 1e-5

# Each converted architecture with heads 16 wide (FlexAttention's CUDA minimum).
CONVERTED = {
    "torch_encoder": lambda: converted_models.torch_encoder_model(d_model=64),
    "labram": lambda: converted_models.labram_model(num_heads=1),
    "cbramod": lambda: converted_models.cbramod_model(nhead=2),
    "eegpt": lambda: converted_models.eegpt_model(num_heads=1),
    "pbt": lambda: converted_models.pbt_model(num_heads=1),
}


@pytest.fixture
def flex_calls(monkeypatch):
    """How many FlexAttention block masks were built: one per attention call it ran."""
    calls = []
    real = torch_flex.create_block_mask

    def counted(*args, **kwargs):
        calls.append(args[1:5])
        return real(*args, **kwargs)

    monkeypatch.setattr(torch_flex, "create_block_mask", counted)
    return calls


def _cuts(model, per_row: int | None = None, seed: int = 0) -> dict[int, torch.Tensor]:
    """A random cut per layer ``[heads, q, k]`` (``[per_row, heads, q, k]``: one per row),
    query 1 of head 0 left with no key."""
    gen = torch.Generator().manual_seed(seed)
    layout_of = getattr(model, "layout_of", lambda layer: model.layout)
    heads = getattr(model, "layer_heads", None) or (model.cfg.n_heads,) * model.cfg.n_layers
    cuts = {}
    for layer in range(model.cfg.n_layers):
        n = layout_of(layer).n_tokens
        shape = (heads[layer], n, n) if per_row is None else (per_row, heads[layer], n, n)
        cut = torch.rand(shape, generator=gen) < 0.3
        cut[..., 0, 1, :] = True
        cuts[layer] = cut
    return cuts


def _both(model, x, cuts):
    with torch.inference_mode():
        with attention_backend("sdpa"):
            sdpa = model(x, edge_masks=cuts)
        with attention_backend("flex"):
            flex = model(x, edge_masks=cuts)
    return sdpa, flex


@pytest.mark.slow  # FlexAttention's first call in a process: seconds
@pytest.mark.parametrize("name", sorted(CONVERTED))
@pytest.mark.parametrize("per_row", [None, 3])
def test_converted_models_equal_sdpa_within_1e_5(name, per_row, flex_calls):
    model, _ = CONVERTED[name]()
    sdpa, flex = _both(model, model.example_input(3), _cuts(model, per_row))
    assert flex_calls, "FlexAttention did not run"
    assert torch.isfinite(flex).all()
    assert (flex - sdpa).abs().max() <= TOL


@pytest.mark.slow  # FlexAttention's first call in a process: seconds
def test_native_model_equals_sdpa_and_keeps_the_empty_row(flex_calls):
    model = IsoNet(EncoderConfig.preset("tiny", d_model=32, n_heads=2, seed=0)).eval()
    x = model.example_input(4)
    cuts = _cuts(model, per_row=4)
    sdpa, flex = _both(model, x, cuts)
    assert len(flex_calls) == model.cfg.n_layers
    assert (flex - sdpa).abs().max() <= TOL
    # the attention of a query with no key is a zero row on both paths
    q = torch.randn(1, 1, 3, 16)
    allowed = torch.tensor([[True, True, False], [False, False, False], [True, False, True]])
    from emg_lens.components.attend import fused

    out = fused(lambda m: flex_attend(q, q, q, m), allowed, allows=True)
    assert out[0, 0, 1].eq(0).all() and out[0, 0, [0, 2]].ne(0).any()


@pytest.mark.slow  # FlexAttention's first call in a process: seconds
@pytest.mark.parametrize("kind", ["attached_sdpa", "attached_eegpt"])
def test_attached_sdpa_calls_equal_sdpa(kind, flex_calls):
    if kind == "attached_sdpa":
        net = attached_models.build("sdpa")
        model = attach(net, layout=attached_models.LAYOUT, n_samples=attached_models.N_SAMPLES)
        x = torch.randn(attached_models.BATCH, attached_models.N_CHANNELS, 8)
    else:
        _, original = converted_models.eegpt_model(num_heads=1)
        model = attach_braindecode(original.source)
        x = torch.randn(3, *converted_models.CONTRACT_SHAPE)
    sdpa, flex = _both(model, x, _cuts(model))
    assert flex_calls, "FlexAttention did not run"
    assert (flex - sdpa).abs().max() <= TOL


@pytest.mark.slow  # FlexAttention's first call in a process: seconds
def test_never_where_a_hook_reads_the_pattern_or_the_scores(flex_calls):
    model, _ = CONVERTED["labram"]()
    x = model.example_input(2)
    cuts = _cuts(model)
    with torch.inference_mode(), attention_backend("flex"):
        expected = model(x, edge_masks=cuts)
        flex_calls.clear()
        for point in ("hook_pattern", "hook_attn_scores"):
            seen = []
            hook = (lambda name, p=point: name.endswith(p), lambda t, hook, s=seen: s.append(t))
            with model.hooks(fwd_hooks=[hook]):
                got = model(x, edge_masks=cuts)
            assert len(seen) == model.cfg.n_layers and not flex_calls, point
            assert (got - expected).abs().max() <= TOL
            # a hook on layer 0 leaves layer 1 to the backend
            with model.hooks(fwd_hooks=[(f"blocks.0.attn.{point}", lambda t, hook: None)]):
                model(x, edge_masks=cuts)
            assert len(flex_calls) == 1, point
            flex_calls.clear()
        model.run_with_cache(x, names_filter=lambda name: "pattern" in name)
        assert not flex_calls
    # an attached model's hooked call is computed explicitly too, its other calls are not
    net = attached_models.build("sdpa")
    attached = attach(net, layout=attached_models.LAYOUT, n_samples=attached_models.N_SAMPLES)
    x, cuts = torch.randn(2, 4, 8), _cuts(attached)
    n_layers = attached.cfg.n_layers
    for layers, flex_runs in (((0,), n_layers - 1), (range(n_layers), 0)):
        hooks = [(f"blocks.{i}.attn.hook_pattern", lambda t, hook: None) for i in layers]
        with torch.inference_mode(), attention_backend("flex"):
            attached.run_with_hooks(x, fwd_hooks=hooks, edge_masks=cuts)
        assert len(flex_calls) == flex_runs, list(layers)
        flex_calls.clear()


@pytest.mark.slow  # FlexAttention's first call in a process: seconds
def test_never_where_a_gradient_is_asked_for(flex_calls):
    model, _ = CONVERTED["labram"]()
    x = model.example_input(2)
    cuts = _cuts(model)
    with attention_backend("flex"):
        out = model(x, edge_masks=cuts)  # the weights require grad: a training forward
        assert out.requires_grad and not flex_calls
        out.sum().backward()
        with torch.no_grad():
            model(x.requires_grad_(), edge_masks=cuts)  # no gradient asked for: it runs
    assert flex_calls


def test_auto_never_runs_it(flex_calls):
    model, _ = CONVERTED["eegpt"]()
    with torch.inference_mode():
        model(model.example_input(2), edge_masks=_cuts(model))
        with attention_backend("auto"):
            model(model.example_input(2), edge_masks=_cuts(model))
    assert not flex_calls
    with (
        pytest.raises(ArgumentError, match="attention backend 'triton'"),
        attention_backend("triton"),
    ):
        pass
