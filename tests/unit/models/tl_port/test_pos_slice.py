"""TransformerLens's ``run_with_cache(pos_slice=...)`` tests, ported onto every tier.

Source: TransformerLensOrg/TransformerLens ``tests/integration/test_cache_pos_slice.py``
(``test_run_with_cache_pos_slice_keep_batch`` and ``..._remove_batch``): with ``pos_slice=i``
every cached activation keeps position ``i`` of its token axis only (the query axis of
attention scores and patterns), equal to the unsliced cache there. Its model's activations all
have a token axis; here those that have none (the signals ``hook_input``, pooled vectors) are
cached whole, and what cannot be sliced is refused by name.
"""

from __future__ import annotations

import pytest
import torch

from emg_lens import EncoderConfig, LayoutError
from emg_lens.models import MultimodalMLP
from emg_lens.models.tl_surface import token_axis
from tests.unit.models.tl_port.conftest import SLICEABLE, get_model


def _names(model):
    """What to cache: everything but a stem's own tokens (refused; see the last test)."""
    return lambda name: not name.startswith("stems.")


def _slice_at(tensor, axis, index):
    return tensor.narrow(axis, index % tensor.shape[axis], 1)


@pytest.mark.parametrize("tier_model", SLICEABLE, indirect=True)
def test_run_with_cache_pos_slice_keep_batch(tier_model):
    model = tier_model
    x = model.example_input(2)
    n = model.layout.n_tokens
    _, full = model.run_with_cache(x, names_filter=_names(model))
    for i in [0, n // 2, n - 1, -1]:
        _, sliced = model.run_with_cache(x, names_filter=_names(model), pos_slice=i)
        assert list(sliced.keys()) == list(full.keys())
        for name in full:
            axis = token_axis(name)
            if axis is None:  # no token axis: whole
                assert torch.equal(sliced[name], full[name]), name
                continue
            assert sliced[name].shape[axis] == 1, name
            assert torch.equal(sliced[name], _slice_at(full[name], axis, i)), name
    if "hook_embed" in full:  # the TL test's explicit shapes
        assert sliced["hook_embed"].shape == (2, 1, model.cfg.d_model)
    if "blocks.0.attn.hook_q" in full:
        assert sliced["q", 0].shape == (2, 1, model.cfg.n_heads, model.cfg.d_head)
    assert sliced["blocks.0.attn.hook_pattern"].shape[2:] == (1, n)


@pytest.mark.parametrize("tier_model", SLICEABLE, indirect=True)
def test_run_with_cache_pos_slice_remove_batch(tier_model):
    model = tier_model
    x = model.example_input(1)
    n = model.layout.n_tokens
    _, full = model.run_with_cache(x, names_filter=_names(model), remove_batch_dim=True)
    for i in [0, n - 1, -1]:
        _, sliced = model.run_with_cache(
            x, names_filter=_names(model), remove_batch_dim=True, pos_slice=i
        )
        for name in full:
            axis = token_axis(name)
            if axis is None:
                assert torch.equal(sliced[name], full[name]), name
                continue
            assert sliced[name].shape[axis - 1] == 1, name
            assert torch.equal(sliced[name], _slice_at(full[name], axis - 1, i)), name
    assert sliced["blocks.0.hook_resid_pre"].shape[0] == 1


@pytest.mark.parametrize("tier_model", ["isonet", "attached_qkv"], indirect=True)
@pytest.mark.parametrize("pos_slice", [(1, 3), [0, 2], torch.tensor([3, 1])])
def test_pos_slice_ranges_and_lists(tier_model, pos_slice):
    # TL's Slice: a tuple is a range, a list or tensor picks those positions in that order.
    model = tier_model
    x = model.example_input(2)
    _, full = model.run_with_cache(x)
    _, sliced = model.run_with_cache(x, pos_slice=pos_slice)
    index = list(range(*pos_slice)) if isinstance(pos_slice, tuple) else list(pos_slice)
    for name in ("blocks.0.hook_resid_pre", "blocks.0.attn.hook_pattern"):
        axis = token_axis(name)
        expected = full[name].index_select(axis, torch.tensor(index))
        assert torch.equal(sliced[name], expected)
    assert torch.equal(sliced["hook_input"], full["hook_input"])  # [batch, channel, time]


def test_pos_slice_refusals_name_what_is_wrong():
    model = get_model("isonet")
    x = model.example_input()
    with pytest.raises(
        LayoutError, match=r"pos_slice \[7\] selects a position IsoNet does not have.*7 tokens"
    ):
        model.run_with_cache(x, pos_slice=7)
    with pytest.raises(LayoutError, match=r"pos_slice slice\(3, 3, None\) selects no position"):
        model.run_with_cache(x, pos_slice=(3, 3))
    # A stem's activations run over the stem's own tokens, not the layout's.
    hierarchical = get_model("hierarchical")
    with pytest.raises(LayoutError, match=r"stems\.emg\..*names_filter"):
        hierarchical.run_with_cache(hierarchical.example_input(), pos_slice=0)
    # The MLP baseline's only "tokens" are hook_embed's modality rows; the rest stays whole.
    mlp = MultimodalMLP(EncoderConfig.preset("tiny", seed=0)).eval()
    _, full = mlp.run_with_cache(mlp.example_input(2))
    _, sliced = mlp.run_with_cache(mlp.example_input(2), pos_slice=1)
    assert torch.equal(sliced["hook_embed"], full["hook_embed"][:, 1:2])
    assert torch.equal(sliced["classifier.hook_pooled"], full["classifier.hook_pooled"])


def test_every_hook_point_has_a_known_token_axis():
    # The table behind pos_slice: on every tier, an activation said to have a token axis has
    # the layout's tokens along it, and hook_input (the signals) has none.
    for name in SLICEABLE:
        model = get_model(name)
        n = model.layout.n_tokens
        _, cache = model.run_with_cache(model.example_input(2), names_filter=_names(model))
        for hook, act in cache.items():
            axis = token_axis(hook)
            if axis is not None:
                assert act.shape[axis] == n, (name, hook)
        assert token_axis("hook_input") is None
