"""Weight-based channel circuits (issue 14, item 3): `qk_circuit` and `ov_circuit` against a
hand computation from the raw weights, against the model's own scores on a zero signal (where
the data-free embedding is the token), on planted structure, their figures and report entries,
and the models and arguments they refuse."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from emg_lens import EncoderConfig
from emg_lens.errors import ArgumentError, IndexOutOfRangeError, UnsupportedFeatureError
from emg_lens.inspect import (
    ov_circuit,
    plot_ov_circuit,
    plot_qk_circuit,
    qk_circuit,
)
from emg_lens.inspect import report as report_module
from emg_lens.models import (
    HierarchicalTransformer,
    IsoNet,
    MultimodalMLP,
    MultimodalTransformer,
    TinyMyo,
)
from tests.tiny import perturb_biases, tiny_isonet, tinymyo_config
from tests.unit.models.converted_models import torch_encoder_model


def _isonet(**overrides) -> IsoNet:
    return tiny_isonet(perturb=True, **{"init_range": 0.5, **overrides})


def _tinymyo(positions: str = "rotary", **kwargs) -> TinyMyo:
    # 3 channels x 4 patches, no CLS token.
    cfg = tinymyo_config(
        3, 8, patch_samples=2, seed=0, positional_embedding_type=positions, init_range=0.5
    )
    model = TinyMyo(cfg, **kwargs)
    perturb_biases(model)
    return model.eval()


def _ln(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    x = x - x.mean(-1, keepdim=True)
    return x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt() * w + b


def _grid(table: pd.DataFrame, head: int, rows: str, columns: str, value: str) -> np.ndarray:
    cell = table[table["head"] == head]
    order_r, order_c = list(dict.fromkeys(cell[rows])), list(dict.fromkeys(cell[columns]))
    grid = cell.pivot(index=rows, columns=columns, values=value)
    return grid.reindex(index=order_r, columns=order_c).to_numpy()


def _channel_means(tokens: torch.Tensor, n_lead: int, n_patches: int) -> torch.Tensor:
    """``[..., pos, pos]`` -> per channel means; the first ``n_lead`` tokens (CLS) stay alone."""
    sizes = [1] * n_lead + [n_patches] * ((tokens.shape[-1] - n_lead) // n_patches)
    index = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    member = torch.nn.functional.one_hot(index).double()
    member = member / member.sum(0)
    return member.T @ tokens.double() @ member


# ----------------------------------------------------------------------------- golden values


def test_isonet_tables_equal_a_per_head_hand_computation_from_the_raw_weights():
    model = _isonet(patch_samples=4)  # 2 patches per channel: channel rows average 2 tokens
    layer, block = 1, model.blocks[1]
    e = torch.cat([model.embed.cls_token[None], model.embed.b_E.repeat_interleave(2, 0)])
    e = (e + model.pos_embed.W_pos).detach()
    x = _ln(e, block.ln1.w, block.ln1.b, model.cfg.eps).detach()
    qk = qk_circuit(model, layer)
    assert qk["query"].unique().tolist() == ["cls", *(f"ch{c}" for c in range(6))]
    assert set(qk["query_group"]) == {"cls", "emg", "acc"}
    for head in range(model.cfg.n_heads):
        a = block.attn
        q = x @ a.W_Q[head] + a.b_Q[head]
        k = x @ a.W_K[head] + a.b_K[head]
        scores = (q @ k.T / math.sqrt(model.cfg.d_head)).detach()
        expected = _channel_means(scores, 1, 2)
        np.testing.assert_allclose(_grid(qk, head, "query", "key", "score"), expected, atol=1e-5)

    ln_f = model.ln_final
    for return_type, classifier in (("logits", model.cls_head), ("avg_logits", model.avg_head)):
        ov = ov_circuit(model, layer, return_type=return_type)
        u = ln_f.w[:, None] * classifier.W_U
        u = (u - u.mean(0)).detach()
        for head in range(model.cfg.n_heads):
            a = block.attn
            write = (x @ a.W_V[head] + a.b_V[head]) @ a.W_O[head]
            logits = (write @ u).detach().double()  # [token, class]
            expected = torch.cat([logits[:1], logits[1:].view(6, 2, -1).mean(1)])
            np.testing.assert_allclose(
                _grid(ov, head, "channel", "class", "logit"), expected, atol=1e-5
            )
        assert model.unembed_head == "logits"  # reading the avg head leaves the model as it was


def test_tinymyo_qk_equals_a_hand_computation_with_token_rope():
    model = _tinymyo()
    layer, block, n_tokens = 1, model.blocks[1], 12
    x = _ln(model.embed.b_E.expand(n_tokens, -1), block.ln1.w, block.ln1.b, model.cfg.eps)
    d_head = model.cfg.d_head
    # Interleaved pairs (2i, 2i+1) rotated by p * base^(-2i/d_head) at the token index p.
    angle = torch.arange(n_tokens)[:, None] * 10000.0 ** (-torch.arange(0, d_head, 2) / d_head)
    cos, sin = angle.cos(), angle.sin()

    def rotate(v):
        even, odd = v[:, 0::2], v[:, 1::2]
        return torch.stack([even * cos - odd * sin, even * sin + odd * cos], -1).flatten(1)

    qk = qk_circuit(model, layer)
    assert qk["query"].unique().tolist() == ["ch0", "ch1", "ch2"]
    for head in range(model.cfg.n_heads):
        a = block.attn
        q, k = rotate(x @ a.W_Q[head] + a.b_Q[head]), rotate(x @ a.W_K[head] + a.b_K[head])
        expected = _channel_means((q @ k.T / math.sqrt(d_head)).detach(), 0, 4)
        np.testing.assert_allclose(_grid(qk, head, "query", "key", "score"), expected, atol=1e-5)


# ----------------------------------------------------------------------------- the model agrees


def _torch_encoder(norm_first: bool = True):
    """A converted nn.TransformerEncoder whose tokenizer learns a position per token; pre-LN
    with a LayerNorm + Linear readout of the CLS token (an unembedding), or post-LN."""
    kwargs = {"readout": "linear", "final_norm": False} if norm_first else {"norm_first": False}
    return torch_encoder_model(3, **kwargs)[0].eval()


@pytest.mark.parametrize(
    "make",
    [_isonet, _tinymyo, _torch_encoder, lambda: _torch_encoder(norm_first=False)],
    ids=["isonet", "tinymyo_rope", "torch_pre_ln", "torch_post_ln"],
)
def test_layer0_tables_are_the_models_own_scores_on_a_zero_signal(make):
    """On a window of zeros the data-free embedding *is* the token, so the layer-0 tables must
    be what the model computes at hook_attn_scores (and hook_v) there."""
    model = make()
    names = ["blocks.0.attn.hook_attn_scores", "blocks.0.attn.hook_v"]
    _, cache = model.run_with_cache(torch.zeros(1, *model.input_shape), names_filter=names)
    scores = cache["attn_scores", 0][0]  # [head, query, key]
    n_lead = int(model.layout.has_cls)
    n_patches = (model.layout.n_tokens - n_lead) // model.cfg.n_channels
    expected = _channel_means(scores, n_lead, n_patches)
    qk = qk_circuit(model, 0)
    for head in range(model.cfg.n_heads):
        np.testing.assert_allclose(
            _grid(qk, head, "query", "key", "score"), expected[head], atol=1e-5
        )
    groups = qk_circuit(model, 0, head=3, level="group")
    group_ids = model.layout.group_ids()
    member = torch.nn.functional.one_hot(group_ids).double()
    member = member / member.sum(0)
    np.testing.assert_allclose(
        _grid(groups, 3, "query", "key", "score"), member.T @ scores[3].double() @ member, atol=1e-5
    )
    if model.cfg.norm_position == "post":  # no direct path to the logits
        with pytest.raises(UnsupportedFeatureError, match="post-LN"):
            ov_circuit(model, 0)
    elif not isinstance(model, TinyMyo):
        ov = ov_circuit(model, 0)
        u = model.ln_final.w[:, None] * model.W_U
        u = u - u.mean(0)
        values = cache["v", 0][0]  # [pos, head, d_head]
        for head in range(model.cfg.n_heads):
            per_token = (values[:, head] @ model.blocks[0].attn.W_O[head] @ u).detach()
            channels = per_token[n_lead:].reshape(model.cfg.n_channels, n_patches, -1).mean(1)
            expected = torch.cat((per_token[:n_lead], channels))  # a channel's patches averaged
            np.testing.assert_allclose(
                _grid(ov, head, "channel", "class", "logit"), expected, atol=1e-5
            )


def test_a_planted_circuit_shows_in_both_tables():
    """Head 2 of layer 0 made to read channel 3 from channel 0, and to write class 1 when it
    reads channel 2: the argmax of the tables finds both."""
    model = _isonet()
    block = model.blocks[0]
    with torch.no_grad():
        block.ln1.w.fill_(1.0), block.ln1.b.zero_()
        x = torch.nn.functional.layer_norm(
            torch.cat([model.embed.cls_token[None], model.embed.b_E]) + model.pos_embed.W_pos,
            (16,),
        )
        unit = x / x.norm(dim=-1, keepdim=True)
        basis = torch.zeros(model.cfg.d_head)
        basis[0] = 3.0
        a = block.attn
        a.W_Q[2] = torch.outer(unit[1], basis)  # channel 0 is token 1 (after CLS)
        a.W_K[2] = torch.outer(unit[4], basis)  # channel 3 is token 4
        a.b_Q[2].zero_(), a.b_K[2].zero_(), a.b_V[2].zero_()
        u = model.ln_final.w[:, None] * model.cls_head.W_U
        # The direction whose logits are class 1 alone: u_c . direction = [c == 1].
        direction = torch.linalg.pinv((u - u.mean(0)).T) @ torch.eye(4)[1]
        a.W_V[2] = torch.outer(unit[3], basis)  # channel 2 is token 3
        a.W_O[2] = torch.outer(basis, direction)
    qk = qk_circuit(model, 0, head=2)
    from_ch0 = qk[qk["query"] == "ch0"]
    assert from_ch0.loc[from_ch0["score"].idxmax(), "key"] == "ch3"
    ov = ov_circuit(model, 0, head=2)
    assert tuple(ov.loc[ov["logit"].idxmax(), ["channel", "class"]]) == ("ch2", 1)


# ----------------------------------------------------------------------------- refusals


def test_bad_arguments_and_models_without_data_free_channels_raise_named_errors():
    model = _isonet()
    with pytest.raises(
        IndexOutOfRangeError,
        match=r"layer \(of the model.s 2 layers of `blocks`\) must be an int in 0..1, got 2",
    ):
        qk_circuit(model, 2)
    with pytest.raises(
        IndexOutOfRangeError, match=r"head \(None: every head\) must be an int in 0..3, got 4"
    ):
        ov_circuit(model, 0, head=4)
    with pytest.raises(IndexOutOfRangeError, match="got True"):
        qk_circuit(model, True)
    with pytest.raises(ArgumentError, match=r"level must be one of \('channel', 'group'\)"):
        qk_circuit(model, 0, level="token")
    with pytest.raises(
        ArgumentError, match=r"return_type must be one of \('logits', 'avg_logits'\), got 'both'"
    ):
        ov_circuit(model, 0, return_type="both")
    with pytest.raises(ArgumentError, match="no shared attention stack"):
        qk_circuit(MultimodalTransformer(MultimodalTransformer.default_config("tiny")), 0)
    with pytest.raises(ArgumentError, match="expected an emg_lens encoder"):
        ov_circuit(MultimodalMLP(EncoderConfig.preset("tiny")), 0)
    hierarchical = HierarchicalTransformer(HierarchicalTransformer.default_config("tiny"))
    with pytest.raises(UnsupportedFeatureError, match="reads its stems' outputs"):
        qk_circuit(hierarchical, 0)
    with pytest.raises(UnsupportedFeatureError, match="nothing rotates them"):
        qk_circuit(_tinymyo("none"), 0)
    with pytest.raises(UnsupportedFeatureError, match="OV table would be constant"):
        ov_circuit(_tinymyo(), 0)


# ----------------------------------------------------------------------------- figures, report


def test_figures_draw_one_panel_per_head_and_refuse_other_tables():
    model = _isonet()
    qk = pd.concat([qk_circuit(model, layer) for layer in range(2)])
    fig = plot_qk_circuit(qk)
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert len(panels) == 2 * 4
    assert [t.get_text() for t in panels[0].get_yticklabels()][:2] == ["cls", "ch0"]
    fig = plot_ov_circuit(ov_circuit(model, 1))
    assert len([ax for ax in fig.axes if ax.get_images()]) == 4
    with pytest.raises(ArgumentError, match="plot_qk_circuit needs"):
        plot_qk_circuit(ov_circuit(model, 1))
    with pytest.raises(ArgumentError, match="plot_ov_circuit needs"):
        plot_ov_circuit(pd.DataFrame())
    plt.close("all")


def test_a_circuit_of_many_channels_and_classes_stays_a_figure_one_can_look_at():
    """DB2's 49 channels and 49 gestures in 2 layers x 4 heads drew a 65 x 33 inch figure:
    now the cells shrink to fit 16 inches, every cell still drawn, every third tick labelled."""
    cfg = EncoderConfig.preset("tiny", seed=0, modalities={"emg": 12, "acc": 36}, n_classes=49)
    model = IsoNet(cfg)
    for fig, n in (
        (plot_ov_circuit(pd.concat([ov_circuit(model, layer) for layer in range(2)])), 49),
        (plot_qk_circuit(pd.concat([qk_circuit(model, layer) for layer in range(2)])), 49),
    ):
        assert max(fig.get_size_inches()) <= 16
        panels = [ax for ax in fig.axes if ax.get_images()]
        assert len(panels) == 8 and all(
            ax.get_images()[0].get_array().shape[1] == n for ax in panels
        )
        rows = [t.get_text() for t in panels[0].get_yticklabels()]
        assert rows == ["cls", *(f"ch{i}" for i in range(2, 48, 3))]  # tokens 0, 3, 6, ...
    plt.close("all")


@pytest.mark.slow
def test_the_inspection_report_writes_the_circuits_beside_the_attention_flow(tmp_path):
    model = _isonet()
    X = model.example_input(8)
    y = model(X).argmax(-1)
    report = report_module.inspect_model(model, (X.numpy(), y.numpy()), batch_size=8)
    written = {p.name for p in report.save(tmp_path)}
    names = ["qk_circuit.csv", "ov_circuit.csv", "qk_circuit.png", "ov_circuit.png"]
    assert set(names) <= written
    expected = pd.concat([qk_circuit(model, layer) for layer in range(2)], ignore_index=True)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "qk_circuit.csv"), expected)
    ov = pd.read_csv(tmp_path / "ov_circuit.csv")
    assert set(ov["layer"]) == {0, 1} and len(ov) == 2 * 4 * 7 * 4
    plt.close("all")


def test_the_report_leaves_out_a_circuit_the_model_cannot_have():
    qk, ov, skipped = report_module._weight_circuits(_tinymyo())  # token RoPE: QK only
    assert set(qk["layer"]) == {0, 1} and ov is None
    assert list(skipped) == ["ov_circuit"] and "constant" in skipped["ov_circuit"]
    many = _isonet(modalities={"emg": 12, "acc": 6})  # past 16 channels: by group
    qk, ov, skipped = report_module._weight_circuits(many)
    assert set(qk["query"]) == {"cls", "emg", "acc"} and set(ov["channel"]) > {"ch17"}
