"""Activation patching on signal inputs (issue 6): patching everything restores the clean
output exactly, patching nothing leaves the corrupted one unchanged, single patches equal a
hand-built mixed run, and TransformerLens's head-level helpers agree with `patch_heads`."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from transformer_lens import patching as tl_patching

from emg_lens import ArgumentError, InputShapeError, LayoutError
from emg_lens.inspect import (
    patch_heads,
    patch_residual,
    patch_token_group,
    plot_patching,
    run_patched,
    tl_index_df,
)
from emg_lens.inspect.patching import ALL
from emg_lens.models import IsoNet, TinyMyo
from tests.tiny import perturb_biases, tiny_isonet, tinymyo_config


def _isonet() -> IsoNet:
    return tiny_isonet(perturb=True, init_range=0.5)


def _tinymyo() -> TinyMyo:
    model = TinyMyo(tinymyo_config(3, 8, patch_samples=2, seed=0))
    perturb_biases(model)
    return model.eval()


MODELS = {"isonet": _isonet, "tinymyo": _tinymyo}


def _pair(model, batch: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    clean = torch.randn(batch, *model.input_shape, generator=gen)
    return clean, torch.randn(batch, *model.input_shape, generator=gen)


def _logit0(out: torch.Tensor) -> torch.Tensor:
    return out[:, 0].mean()


@pytest.fixture(params=sorted(MODELS))
def model(request):
    return MODELS[request.param]()


def test_patching_everything_restores_the_clean_output_exactly(model):
    clean, corrupted = _pair(model)
    names = [f"blocks.{layer}.hook_resid_pre" for layer in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(clean, names_filter=names)
    for name in names:
        out = run_patched(model, corrupted, cache, {name: (ALL, ALL)})
        assert torch.equal(out, model(clean)), name
    table = patch_token_group(model, clean, corrupted, _logit0, list(model.layout.groups))
    assert (table["metric"] == table["clean"]).all()
    assert (table["restored"] == 1.0).all()
    assert (table["n_positions"] == model.layout.n_tokens).all()


def test_patching_nothing_leaves_the_corrupted_output_unchanged(model):
    clean, corrupted = _pair(model)
    _, cache = model.run_with_cache(clean)
    expected = model(corrupted)
    assert torch.equal(run_patched(model, corrupted, cache, {}), expected)
    nothing = {f"blocks.{layer}.hook_resid_pre": (ALL, []) for layer in range(2)}
    assert torch.equal(run_patched(model, corrupted, cache, nothing), expected)
    # A hook on hook_z makes attention take its explicit (hooked) path: equal up to rounding.
    no_head = {"blocks.0.attn.hook_z": (ALL, ALL, [])}
    torch.testing.assert_close(run_patched(model, corrupted, cache, no_head), expected)
    assert not torch.allclose(model(clean), expected)  # so the tests above can fail


def test_one_position_patch_equals_a_hand_mixed_residual_stream(model):
    clean, corrupted = _pair(model)
    table = patch_residual(model, clean, corrupted, _logit0, positions=[0, 5], layers=[1])
    assert table[["layer", "position"]].values.tolist() == [[1, 0], [1, 5]]
    with torch.no_grad():
        clean_mid = model(clean, stop_at_layer=1)
        corrupted_mid = model(corrupted, stop_at_layer=1)
        for row in table.itertuples():
            mixed = corrupted_mid.clone()
            mixed[:, row.position] = clean_mid[:, row.position]
            expected = _logit0(model(mixed, start_at_layer=1))
            assert row.metric == pytest.approx(float(expected), abs=1e-6)
            assert row.clean == pytest.approx(float(_logit0(model(clean))))
            assert row.corrupted == pytest.approx(float(_logit0(model(corrupted))))
            assert row.restored == pytest.approx(
                (row.metric - row.corrupted) / (row.clean - row.corrupted)
            )
    layout = model.layout
    assert table["group"].tolist() == [layout.group[0], layout.group[5]]
    assert table["channel"].tolist() == [layout.channel[0], layout.channel[5]]


def test_group_patch_equals_patching_its_positions_together():
    model = _isonet()
    clean, corrupted = _pair(model)
    table = patch_token_group(model, clean, corrupted, _logit0, "acc", layers=[0])
    positions = model.layout.positions("acc")
    _, cache = model.run_with_cache(clean, names_filter="blocks.0.hook_resid_pre")
    out = run_patched(model, corrupted, cache, {"blocks.0.hook_resid_pre": (ALL, positions)})
    assert table["metric"].item() == pytest.approx(float(_logit0(out)))
    assert table[["group", "n_positions"]].values.tolist() == [["acc", 4]]


def test_patch_heads_agrees_with_transformer_lens_head_helper(model):
    clean, corrupted = _pair(model)
    ours = patch_heads(model, clean, corrupted, _logit0)
    assert len(ours) == model.cfg.n_layers * model.cfg.n_heads
    _, clean_cache = model.run_with_cache(clean)
    theirs = tl_patching.get_act_patch_attn_head_out_all_pos(
        model, corrupted, clean_cache, _logit0
    )  # [layer, head]; it iterates layers and heads only, so signal inputs work
    grid = ours.pivot(index="layer", columns="head", values="metric").to_numpy()
    torch.testing.assert_close(torch.tensor(grid, dtype=torch.float32), theirs, atol=1e-5, rtol=0)
    assert ours["metric"].nunique() > 1  # heads differ: the comparison means something


def test_transformer_lens_position_helpers_work_through_index_df(model):
    # Called plainly, TL takes positions from the signal's last axis (samples), not tokens.
    clean, corrupted = _pair(model)
    _, clean_cache = model.run_with_cache(clean)
    n_layers, n_tokens = model.cfg.n_layers, model.layout.n_tokens
    assert corrupted.shape[-1] != n_tokens  # the two would coincide only by accident
    df = tl_index_df(model, "layer", "pos")
    theirs = tl_patching.get_act_patch_resid_pre(
        model, corrupted, clean_cache, _logit0, index_axis_names=None, index_df=df
    ).reshape(n_layers, n_tokens)
    ours = patch_residual(model, clean, corrupted, _logit0)
    grid = ours.pivot(index="layer", columns="position", values="metric").to_numpy()
    torch.testing.assert_close(torch.tensor(grid, dtype=torch.float32), theirs, atol=1e-5, rtol=0)
    assert ours["metric"].nunique() > 1
    with pytest.raises(ArgumentError, match="layer first"):
        tl_index_df(model, "layer", "sample")


def test_transformer_lens_position_helpers_called_plainly_point_to_tl_index_df():
    # Called plainly, TL's helper iterates positions over the signal's 8 samples; the tiny
    # IsoNet has 7 tokens, so position 7 does not exist: a named error, not a bare IndexError.
    model = _isonet()
    clean, corrupted = _pair(model)
    _, clean_cache = model.run_with_cache(clean)
    assert corrupted.shape[-1] > model.layout.n_tokens
    with pytest.raises(LayoutError, match=r"blocks.0.hook_resid_pre.*tl_index_df"):
        tl_patching.get_act_patch_resid_pre(model, corrupted, clean_cache, _logit0)
    assert not any(hp.fwd_hooks for hp in model.hook_dict.values())


@pytest.mark.parametrize(
    "helper", ["get_act_patch_resid_pre", "get_act_patch_attn_head_out_by_pos"]
)
def test_a_window_shorter_than_the_tokens_is_refused_not_swept_in_part(helper):
    # 4 samples, 7 tokens: called plainly, TL's helper would sweep positions 0-3 and return a
    # complete-looking table that never patched tokens 4-6
    model = tiny_isonet(perturb=True, init_range=0.5, n_samples=4)
    clean, corrupted = _pair(model)
    _, clean_cache = model.run_with_cache(clean)
    assert corrupted.shape[-1] < model.layout.n_tokens
    with pytest.raises(LayoutError, match=r"sweeps 4 positions .* 7 tokens.*leave tokens out"):
        getattr(tl_patching, helper)(model, corrupted, clean_cache, _logit0)
    axes = ("layer", "pos") if helper.endswith("pre") else ("layer", "pos", "head")
    flat = getattr(tl_patching, helper)(
        model, corrupted, clean_cache, _logit0, index_axis_names=None,
        index_df=tl_index_df(model, *axes),
    )  # fmt: skip
    assert flat.shape == (model.cfg.n_layers * 7 * (1 if len(axes) == 2 else model.cfg.n_heads),)


def test_patching_a_silent_head_changes_nothing():
    model = _isonet()
    with torch.no_grad():
        model.blocks[1].attn.W_O[3] = 0.0  # head 3 of layer 1 writes nothing
    clean, corrupted = _pair(model)
    table = patch_heads(model, clean, corrupted, _logit0, layers=[1]).set_index("head")
    assert table.loc[3, "metric"] == pytest.approx(table.loc[3, "corrupted"], abs=1e-6)
    assert (table.drop(index=3)["metric"] - table.loc[3, "corrupted"]).abs().max() > 1e-4
    fig = plot_patching(table.reset_index())
    assert len(fig.axes) == 2  # heatmap and colour bar


@pytest.mark.unchecked
def test_patching_rejects_bad_inputs():
    model = _isonet()
    clean, corrupted = _pair(model)
    with pytest.raises(InputShapeError, match="same shape"):
        patch_heads(model, clean, corrupted[:2], _logit0)
    with pytest.raises(ArgumentError, match="metric must return a scalar"):
        patch_heads(model, clean, corrupted, lambda out: out[:, 0])
    with pytest.raises(ArgumentError, match="metric must be a callable"):
        patch_heads(model, clean, corrupted, "logit_diff")
    with pytest.raises(ArgumentError, match=r"layers\[0\] must be an int in 0\.\.1"):
        patch_heads(model, clean, corrupted, _logit0, layers=[2])
    with pytest.raises(ArgumentError, match=r"positions\[0\] must be an int in 0\.\.6"):
        patch_residual(model, clean, corrupted, _logit0, positions=[7])
    with pytest.raises(LayoutError, match="unknown token group 'force'"):
        patch_token_group(model, clean, corrupted, _logit0, "force")
    with pytest.raises(ArgumentError, match="non-empty list"):
        patch_token_group(model, clean, corrupted, _logit0, [])
    other = _isonet()
    _, cache = other.run_with_cache(clean)
    with pytest.raises(ArgumentError, match="another model"):
        run_patched(model, corrupted, cache, {"blocks.0.hook_resid_pre": (ALL, ALL)})
    _, cache = model.run_with_cache(clean)
    with pytest.raises(ArgumentError, match="no hook point named"):
        run_patched(model, corrupted, cache, {"blocks.0.hook_resid": (ALL, ALL)})
    with pytest.raises(InputShapeError, match="pair window by window"):
        run_patched(model, corrupted[:2], cache, {"blocks.0.hook_resid_pre": (ALL, ALL)})


def test_patching_tables_plot():
    model = _isonet()
    clean, corrupted = _pair(model)
    tables = [
        patch_residual(model, clean, corrupted, _logit0),
        patch_token_group(model, clean, corrupted, _logit0, "emg"),
    ]
    for table in tables:
        assert isinstance(table, pd.DataFrame)
        fig = plot_patching(table)
        assert fig.axes[0].get_title().startswith("Activation patching")
