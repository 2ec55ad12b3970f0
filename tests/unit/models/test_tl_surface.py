"""The TransformerLens weight surface, the classifier as an unembedding, and `.to()`.

- Stacked weights (``W_Q`` ... ``b_out``), ``QK``/``OV`` as `FactoredMatrix`, checked against
  what attention computes; the hook flags (``set_use_attn_result`` honoured, the others
  refused by name).
- ``W_U``/``tokens_to_residual_directions``: TransformerLens's own ``cache.logit_attrs``,
  ``cache.logit_lens`` and `SVDInterpreter` on a class, against hand computations and the
  model's logits; the models whose classifier is not one unembedding refuse, saying why.
- ``.to(dtype | device | "meta")`` keeps ``cfg`` and every activation consistent.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformer_lens import FactoredMatrix, SVDInterpreter
from transformer_lens.hook_points import HookPoint

from emg_lens import ArgumentError, EncoderConfig
from emg_lens.checkpoints import load_checkpoint, save_checkpoint
from emg_lens.errors import ConfigError, LayoutError, UnsupportedFeatureError
from emg_lens.models import IsoNet, MultimodalMLP, TinyMyo
from emg_lens.models.base import HookedBiosignalModel
from tests.tiny import perturb_biases, tiny_isonet
from tests.unit.models import table


def _ready(model):
    perturb_biases(model)
    return model.eval()


def _isonet(**overrides):
    return tiny_isonet(perturb=True, **overrides)


def _mlp():
    return _ready(MultimodalMLP(MultimodalMLP.default_config("tiny", seed=0)))


def _factory(name):
    def make(**overrides):
        return table.build(name, **overrides)[0]

    return make


ALL_MODELS = {name: _factory(name) for name in [*table.names("native"), *table.names("converted")]}
"""The models with TransformerLens's surface: the table's native and converted rows (fresh:
these tests change them)."""
MODELS = {name: make for name, make in ALL_MODELS.items() if name != "mlp"}
"""Those with a transformer stack (all but the MLP baseline)."""
STACKED = {
    "W_Q": "attn.W_Q",
    "W_K": "attn.W_K",
    "W_V": "attn.W_V",
    "W_O": "attn.W_O",
    "b_Q": "attn.b_Q",
    "b_K": "attn.b_K",
    "b_V": "attn.b_V",
    "b_O": "attn.b_O",
    "W_in": "mlp.W_in",
    "b_in": "mlp.b_in",
    "W_out": "mlp.W_out",
    "b_out": "mlp.b_out",
}


# ----------------------------------------------------------------------------- weights


@pytest.mark.parametrize("name", ["isonet", "hierarchical", "tinymyo"])
def test_stacked_weights_are_the_blocks_weights(name):
    model = _ready(MODELS[name]())
    cfg = model.cfg
    for attr, path in STACKED.items():
        stacked = getattr(model, attr)
        module, leaf = path.split(".")
        for layer, block in enumerate(model.blocks):
            assert torch.equal(stacked[layer], getattr(getattr(block, module), leaf)), attr
    assert model.W_Q.shape == (cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_head)
    assert model.W_O.shape == (cfg.n_layers, cfg.n_heads, cfg.d_head, cfg.d_model)
    assert model.b_O.shape == (cfg.n_layers, cfg.d_model)
    assert model.W_in.shape == (cfg.n_layers, cfg.d_model, cfg.d_mlp)
    for circuit in (model.QK, model.OV):
        assert isinstance(circuit, FactoredMatrix)
        assert circuit.shape == (cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_model)


def test_qk_and_ov_are_what_attention_computes():
    # Zero q/k/v biases (the default init): then scores = x QK x^T / sqrt(d_head) and a head's
    # result = pattern @ x @ OV, with x the ln1 output.
    model = IsoNet(EncoderConfig.preset("tiny", seed=0)).eval()
    model.set_use_attn_result(True)
    _, cache = model.run_with_cache(model.example_input(2))
    for layer in range(model.cfg.n_layers):
        x = cache[f"blocks.{layer}.ln1.hook_normalized"] * model.blocks[layer].ln1.w
        x = x + model.blocks[layer].ln1.b
        scores = torch.einsum("bqd,hde,bke->bhqk", x, model.QK.AB[layer], x)
        scores = scores / model.cfg.d_head**0.5
        torch.testing.assert_close(scores, cache["attn_scores", layer], atol=1e-6, rtol=1e-5)
        result = torch.einsum("bhqk,bkd,hde->bqhe", cache["pattern", layer], x, model.OV.AB[layer])
        torch.testing.assert_close(result, cache["result", layer], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("mode", ["Q", "K", "V"])
def test_all_composition_scores_are_legacy_hookedtransformers(mode):
    # Legacy HookedTransformer.all_composition_scores(mode): left = the writing head's OV,
    # right = the reading head's QK (Q), QK^T (K) or OV (V); ||left @ right||_F divided by both
    # norms; zero unless the reading head is in a later layer. Here by hand, pair by pair.
    model = _isonet(n_layers=3, init_range=0.3)
    scores = model.all_composition_scores(mode)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    assert scores.shape == (n_layers, n_heads, n_layers, n_heads)
    ov = (model.W_V @ model.W_O).detach()
    qk = (model.W_Q @ model.W_K.transpose(-2, -1)).detach()
    right = {"Q": qk, "K": qk.transpose(-2, -1), "V": ov}[mode]
    for l1, h1, l2, h2 in np.ndindex(n_layers, n_heads, n_layers, n_heads):
        if l2 <= l1:
            assert scores[l1, h1, l2, h2] == 0
            continue
        a, b = ov[l1, h1], right[l2, h2]
        expected = torch.linalg.norm(a @ b) / torch.linalg.norm(a) / torch.linalg.norm(b)
        torch.testing.assert_close(scores[l1, h1, l2, h2], expected, rtol=1e-4, atol=1e-6)
    assert model.all_head_labels()[n_heads] == "L1H0"
    with pytest.raises(ArgumentError, match=r"mode must be one of \['Q', 'K', 'V'\]"):
        model.all_composition_scores("q")


@pytest.mark.parametrize("name", ["multimodal_transformer", "mlp"])
@pytest.mark.parametrize("attr", ["W_Q", "b_out", "QK", "OV"])
def test_models_without_a_shared_stack_refuse_stacked_weights(name, attr):
    model = ALL_MODELS[name]()
    with pytest.raises(UnsupportedFeatureError, match="no shared stack `blocks`"):
        getattr(model, attr)


# ----------------------------------------------------------------------------- hook flags


@pytest.mark.unchecked
def test_set_use_attn_result_toggles_hook_result():
    model = _isonet()
    x = model.example_input(2)
    model.set_use_attn_result(True)
    assert model.cfg.use_attn_result
    _, cache = model.run_with_cache(x)
    heads = cache["result", 1]
    assert heads.shape == (2, model.layout.n_tokens, model.cfg.n_heads, model.cfg.d_model)
    torch.testing.assert_close(heads.sum(-2) + model.b_O[1], cache["attn_out", 1])
    model.set_use_attn_result(False)
    _, cache = model.run_with_cache(x)
    assert "blocks.1.attn.hook_result" not in cache.cache_dict
    with pytest.raises(ArgumentError, match="use_attn_result must be true or false, got 'yes'"):
        model.set_use_attn_result("yes")


def test_set_use_attn_result_reaches_the_stems():
    model = _ready(MODELS["multimodal_transformer"]())
    model.set_use_attn_result(True)
    _, cache = model.run_with_cache(model.example_input(2))
    assert "stems.emg.blocks.0.attn.hook_result" in cache.cache_dict


def test_flags_a_model_cannot_honour_are_refused_by_name():
    # (the flags themselves: tests/unit/models/tl_port/)
    mlp = _mlp()
    mlp.set_use_split_qkv_input(False)  # the state it is in: accepted
    with pytest.raises(UnsupportedFeatureError, match="no attention layers"):
        mlp.set_use_attn_result(True)
    with pytest.raises(UnsupportedFeatureError, match=r"hook_q_input.*no attention layers"):
        mlp.set_use_split_qkv_input(True)
    with pytest.raises(UnsupportedFeatureError, match="hook_mlp_in"):
        mlp.set_use_hook_mlp_in(True)


# ----------------------------------------------------------------------------- unembedding


@pytest.mark.unchecked
def test_tokens_to_residual_directions_are_w_u_columns():
    model = _isonet()
    assert model.W_U is model.cls_head.W_U and model.b_U is model.cls_head.b_U
    torch.testing.assert_close(model.tokens_to_residual_directions(2), model.W_U[:, 2])
    torch.testing.assert_close(
        model.tokens_to_residual_directions(torch.tensor(2)), model.W_U[:, 2]
    )
    both = model.tokens_to_residual_directions([3, 1])
    torch.testing.assert_close(both, model.W_U[:, [3, 1]].T)
    grid = model.tokens_to_residual_directions(torch.tensor([[0, 1, 2], [3, 2, 1]]))
    assert grid.shape == (2, 3, model.cfg.d_model)
    torch.testing.assert_close(grid[1, 0], model.W_U[:, 3])
    for bad in (4, -1, "open_hand", 1.0, [], True, torch.tensor([0.5])):
        with pytest.raises(ArgumentError, match=r"class ids in \[0, 4\)"):
            model.tokens_to_residual_directions(bad)
    with pytest.raises(ArgumentError, match=r"; got True$"):  # the value, not its tensor
        model.tokens_to_residual_directions(True)


def test_unembed_head_chooses_the_head():
    model = _isonet()
    model.unembed_head = "avg_logits"
    assert model.W_U is model.avg_head.W_U
    assert model.unembed_positions == list(range(1, model.layout.n_tokens))
    with pytest.raises(ArgumentError, match=r"unembed_head must be one of \('logits', "):
        model.unembed_head = "both"


def test_logit_attrs_on_the_cls_position_match_a_hand_computation():
    model = _isonet()
    x = model.example_input(3)
    logits, cache = model.run_with_cache(x)
    stack = cache.decompose_resid(pos_slice=0)  # [component, batch, d_model] at the CLS token
    attrs = cache.logit_attrs(stack, tokens=2, pos_slice=0)
    by_hand = cache.apply_ln_to_stack(stack, layer=-1, pos_slice=0) @ model.W_U[:, 2]
    torch.testing.assert_close(attrs, by_hand)
    # As in TransformerLens, the norm's centring and scale are applied, not its weights: with
    # ln_final.w folded into W_U the attributions plus the biases are the logit.
    ln = model.ln_final
    scaled = cache.apply_ln_to_stack(stack, layer=-1, pos_slice=0) * ln.w
    torch.testing.assert_close(
        (scaled @ model.W_U[:, 2]).sum(0) + ln.b @ model.W_U[:, 2] + model.b_U[2], logits[:, 2]
    )
    model.fold_ln_final()
    _, cache = model.run_with_cache(x)
    stack = cache.decompose_resid(pos_slice=0)
    attrs = cache.logit_attrs(stack, tokens=2, pos_slice=0)
    torch.testing.assert_close(attrs.sum(0) + model.b_U[2], logits[:, 2], atol=1e-5, rtol=1e-5)
    diff = cache.logit_attrs(stack, tokens=2, incorrect_tokens=0, pos_slice=0)
    torch.testing.assert_close(
        diff.sum(0) + model.b_U[2] - model.b_U[0], logits[:, 2] - logits[:, 0], atol=1e-5, rtol=0
    )
    per_example = cache.logit_attrs(stack, tokens=torch.tensor([0, 1, 3]), pos_slice=0)
    torch.testing.assert_close(
        per_example.sum(0) + model.b_U[[0, 1, 3]], logits[[0, 1, 2], [0, 1, 3]], atol=1e-5, rtol=0
    )


def test_logit_attrs_of_the_average_head_average_to_its_logit():
    model = _isonet()
    model.fold_ln_final()
    model.unembed_head = "avg_logits"
    x = model.example_input(2)
    avg_logits, cache = model.run_with_cache(x, return_type="avg_logits")
    channels = slice(1, None)
    stack = cache.decompose_resid(pos_slice=channels)  # [component, batch, pos, d_model]
    attrs = cache.logit_attrs(stack, tokens=1, pos_slice=channels)
    torch.testing.assert_close(
        attrs.sum(0).mean(-1) + model.b_U[1], avg_logits[:, 1], atol=1e-5, rtol=1e-5
    )


def test_logit_lens_reads_the_cls_position_through_the_head():
    model = _isonet()
    x = model.example_input(3)
    logits, cache = model.run_with_cache(x)
    lens = cache.logit_lens(positions=0)
    assert lens.labels == ["0_pre", "1_pre", "final_post"]
    assert lens.values.shape == (model.cfg.n_layers + 1, 3, model.cfg.n_classes)
    torch.testing.assert_close(lens.values[-1], logits, atol=1e-5, rtol=1e-5)
    mid = model.ln_final(cache["resid_pre", 1][:, :1])[:, 0] @ model.W_U + model.b_U
    torch.testing.assert_close(lens.values[1], mid, atol=1e-5, rtol=1e-5)
    ranks = cache.logit_lens(positions=0, targets=[2]).rank_trajectory(2)
    assert ranks.shape == (model.cfg.n_layers + 1, 3)
    assert torch.equal(ranks[-1], (logits > logits[:, 2:3]).sum(-1))


def test_logit_lens_on_the_average_head_averages_to_its_logits():
    model = _isonet()
    model.unembed_head = "avg_logits"
    avg_logits, cache = model.run_with_cache(model.example_input(2), return_type="avg_logits")
    lens = cache.logit_lens(positions=slice(1, None))
    torch.testing.assert_close(lens.values[-1].mean(1), avg_logits, atol=1e-5, rtol=1e-5)


def test_tinymyo_mean_head_is_an_unembedding():
    model = _ready(MODELS["tinymyo"]())
    model = _ready(TinyMyo(model.cfg, reduction="mean"))
    model.fold_ln_final()
    x = model.example_input(2)
    logits, cache = model.run_with_cache(x)
    stack = cache.decompose_resid()
    attrs = cache.logit_attrs(stack, tokens=3)
    torch.testing.assert_close(
        attrs.sum(0).mean(-1) + model.b_U[3], logits[:, 3], atol=1e-5, rtol=0
    )
    lens = cache.logit_lens(positions=None)
    torch.testing.assert_close(lens.values[-1].mean(1), logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("hierarchical", "own d_model block of W_U"),
        ("multimodal_transformer", "own d_model block of W_U"),
        ("tinymyo", r"W_U\[c\*d_model:\(c\+1\)\*d_model\] / n_patches"),
        ("mlp", "no residual stream"),
    ],
)
def test_classifiers_that_are_no_unembedding_say_why(name, why):
    model = ALL_MODELS[name]().eval()
    with pytest.raises(UnsupportedFeatureError, match=why):
        model.tokens_to_residual_directions(0)
    with pytest.raises(UnsupportedFeatureError, match=why):
        _ = model.b_U
    with pytest.raises(UnsupportedFeatureError, match=why):
        _ = model.unembed_positions
    if name != "mlp":
        _, cache = model.run_with_cache(model.example_input())
        with pytest.raises(UnsupportedFeatureError, match=why):
            cache.logit_lens(positions=0)
    assert "unembed.W_U" not in model.tl_parameters()


def test_tinymyo_other_tasks_have_no_unembedding():
    cfg = MODELS["tinymyo"]().cfg
    for task in ("reconstruction", "regression"):
        with pytest.raises(UnsupportedFeatureError, match=f"task='{task}'"):
            _ = TinyMyo(cfg, task=task, reg_target_len=4).W_U


def test_svd_interpreter_reads_the_ov_circuit_through_w_u():
    model = _isonet()
    # SVDInterpreter checks its output against cfg.d_vocab, which EncoderConfig leaves at
    # TransformerLens's -1 (not set): the classes are the unembedding's vocabulary.
    model.cfg.d_vocab = model.cfg.n_classes
    svd = SVDInterpreter(model)
    vectors = svd.get_singular_vectors("OV", layer_index=1, head_index=2, num_vectors=3)
    assert vectors.shape == (model.cfg.n_classes, 1, 3)
    V = model.OV[1, 2].V  # right singular vectors, [d_model, rank]
    torch.testing.assert_close(vectors[:, 0], model.W_U.T @ V[:, :3])
    assert svd.get_singular_vectors("w_out", layer_index=0, num_vectors=2).shape == (4, 1, 2)


# Converted models whose final norm no linear map reads (EEGPT's max-norm probe, a user's own
# readout): folding is refused by name.
NO_FOLD = {"braindecode_eegpt", "torch_pre_ln"}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fold_ln_final_keeps_the_function(name):
    model = _ready(MODELS[name]())
    x = model.example_input(2)
    before = model(x)
    if name in NO_FOLD:
        with pytest.raises(UnsupportedFeatureError, match="no linear map reading ln_final"):
            model.fold_ln_final()
        return
    model.fold_ln_final()  # a no-op for a model without a final norm
    torch.testing.assert_close(model(x), before, atol=1e-5, rtol=1e-5)
    if hasattr(model.ln_final, "w"):
        assert torch.equal(model.ln_final.w, torch.ones_like(model.ln_final.w))


@pytest.mark.parametrize("task", ["reconstruction", "regression"])
def test_fold_ln_final_keeps_tinymyo_heads(task):
    model = _ready(TinyMyo(MODELS["tinymyo"]().cfg, task=task, reg_target_len=4))
    x = model.example_input(2)
    before = model(x)
    model.fold_ln_final()
    torch.testing.assert_close(model(x), before, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- .to()


@pytest.mark.parametrize("name", sorted(ALL_MODELS))
def test_float64_forward_equals_float32(name):
    model = _ready(ALL_MODELS[name]())
    x = model.example_input(3)
    expected = model(x)
    assert model.to(torch.float64) is model
    assert model.cfg.dtype == torch.float64
    got = model(x.double())
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected.double(), atol=1e-5, rtol=1e-5)
    assert model(x).dtype == torch.float64  # float32 input goes to the parameters' dtype
    assert model.example_input().dtype == torch.float64
    model.float()
    assert model.cfg.dtype == torch.float32


@pytest.mark.parametrize("name", sorted(ALL_MODELS))
def test_every_activation_follows_the_dtype(name):
    model = _ready(ALL_MODELS[name]()).double()
    x = np.random.default_rng(0).standard_normal((2, *model.input_shape)).astype(np.float32)
    _, cache = model.run_with_cache(x)
    wrong = {k: v.dtype for k, v in cache.items() if v.dtype != torch.float64}
    assert not wrong
    if getattr(model, "blocks", None):
        assert model.accumulated_bias(1).dtype == torch.float64


def test_edge_masks_and_patch_masks_follow_the_model():
    model = _isonet().double()
    n = model.layout.n_tokens
    mask = torch.zeros(n, n, dtype=torch.bool)
    mask[1, 2] = True
    _, cache = model.run_with_cache(model.example_input(2), edge_masks={0: mask})
    assert cache["pattern", 0][:, :, 1, 2].abs().max() == 0
    tinymyo = _ready(MODELS["tinymyo"]()).double()
    patch_mask = torch.zeros(tinymyo.cfg.n_channels, tinymyo.cfg.n_patches, dtype=torch.bool)
    assert tinymyo(tinymyo.example_input(2), patch_mask=patch_mask).dtype == torch.float64


@pytest.mark.parametrize("name", sorted(ALL_MODELS))
def test_meta_forward_gives_a_meta_output(name):
    model = ALL_MODELS[name]().eval()
    shape = model(model.example_input(2)).shape
    model.to("meta")
    assert model.cfg.device == "meta"
    out = model(torch.randn(2, *model.input_shape))
    assert out.is_meta and out.shape == shape


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_move_updates_cfg_and_inputs_follow():
    model = _isonet()
    x = model.example_input(2)
    expected = model(x)
    model.to("cuda")
    assert model.cfg.device.startswith("cuda")
    got = model(x)  # a CPU batch goes to the parameters' device
    assert got.is_cuda
    torch.testing.assert_close(got.cpu(), expected, atol=1e-5, rtol=1e-5)


def test_loaded_models_are_in_eval_mode(tmp_path):
    model = _isonet().train()
    save_checkpoint(model, tmp_path / "ckpt")
    assert not load_checkpoint(tmp_path / "ckpt").training
    source = _ready(MODELS["tinymyo"]()).train()
    loaded = TinyMyo.from_biofoundation(
        source.to_biofoundation(), n_heads=4, n_samples=8, rope_positions="token"
    )
    assert not any(m.training for m in loaded.modules())


@pytest.mark.unchecked  # the annotation refuses it in the suite; a user's run meets this
@pytest.mark.parametrize("model", ["MultimodalMLP", "IsoNet", "HookedPBT", "HookedCBraMod"])
def test_a_model_given_no_config_is_refused_by_name(model):
    import emg_lens.models

    with pytest.raises(ArgumentError, match=rf"{model} takes an EncoderConfig, got dict"):
        getattr(emg_lens.models, model)({"d_model": 16})


def test_an_isonet_without_its_cls_token_is_refused():
    with pytest.raises(ConfigError, match=r"IsoNet needs EncoderConfig.use_cls_token=True"):
        IsoNet(EncoderConfig.preset("tiny", use_cls_token=False))


def test_the_bias_into_an_mlp_past_the_last_layer_is_refused():
    model = _isonet()
    with pytest.raises(LayoutError, match=r"mlp_input=True needs a layer below n_layers"):
        model.accumulated_bias(model.cfg.n_layers, mlp_input=True)


class _NoTokenStream(HookedBiosignalModel):
    """A user's model whose only hook point is its input ``[batch, channel, time]``."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__(cfg)
        self.hook_input = HookPoint()
        self.setup()


def test_pos_slice_on_a_model_without_a_token_axis_is_refused():
    model = _NoTokenStream(EncoderConfig.preset("tiny"))
    with pytest.raises(ArgumentError, match=r"_NoTokenStream has no token axis for pos_slice"):
        model.get_caching_hooks(pos_slice=0)
