"""The fusion baselines: MultimodalMLP, MultimodalTransformer, HierarchicalTransformer.

The TransformerLens contract of the fusion stack runs in test_hook_contract.py; here: sizes and
layouts, where cross-modal edges exist (and where they do not), the stems' own attention (masks,
fast = explicit path, head sums), the MLP's hooks, config errors, and a planted two-modality
task each model learns beyond what either modality alone allows.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformer_lens import ActivationCache
from transformer_lens.model_protocol import TransformerLensModel

from emg_lens import EncoderConfig
from emg_lens.errors import ArgumentError, ConfigError, LayoutError, UnsupportedFeatureError
from emg_lens.models import HierarchicalTransformer, IsoNet, MultimodalMLP, MultimodalTransformer
from tests.tiny import perturb_biases

# Two modalities, two 40-sample tubelets per window (the paper's tubelet length).
SMALL = {"modalities": {"emg": 3, "acc": 2}, "n_samples": 80, "n_classes": 4, "seed": 0}


def _mmt(**overrides):
    cfg = MultimodalTransformer.default_config("tiny", **{**SMALL, **overrides})
    return MultimodalTransformer(cfg)


def _hier(**overrides):
    cfg = HierarchicalTransformer.default_config(
        "tiny", **{**SMALL, "n_stem_layers": 1, "n_layers": 2, **overrides}
    )
    return HierarchicalTransformer(cfg)


def _mlp(**overrides):
    return MultimodalMLP(MultimodalMLP.default_config("tiny", **{**SMALL, **overrides}))


BUILDERS = {"mlp": _mlp, "mmt": _mmt, "hierarchical": _hier}
TRANSFORMERS = {"mmt": _mmt, "hierarchical": _hier}


def _ready(model):
    perturb_biases(model)
    return model.eval()


def _stem_cross_mask(model, n_heads=None):
    """True where query and key belong to different stems (CLS tokens by their stem)."""
    stem_of = torch.empty(model.layout.n_tokens, dtype=torch.long)
    for i, positions in enumerate(model.stem_positions.values()):
        stem_of[positions] = i
    mask = stem_of[:, None] != stem_of[None, :]
    return mask if n_heads is None else mask.expand(n_heads, -1, -1).clone()


def _random_mask(model, seed):
    n = model.layout.n_tokens
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(model.cfg.n_heads, n, n, generator=gen) < 0.4


# ----------------------------------------------------------------------------- sizes, layouts


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_builds_and_gives_logits(name):
    model = _ready(BUILDERS[name]())
    x = model.example_input(5)
    assert x.shape == (5, 5, 80)
    logits = model(x)
    assert logits.shape == (5, 4) and torch.isfinite(logits).all()
    assert isinstance(model, TransformerLensModel)
    _, cache = model.run_with_cache(x)
    assert isinstance(cache, ActivationCache)


def test_default_configs_follow_the_paper():
    hier = HierarchicalTransformer.default_config("paper")
    assert (hier.n_stem_layers, hier.n_layers, hier.d_model, hier.n_heads, hier.d_mlp) == (
        2,
        3,
        512,
        8,
        128,
    )
    assert (hier.tokenization, hier.patch_samples, hier.n_patches) == ("tubelet", 40, 25)
    assert hier.n_ctx == 2 * (1 + 25)
    mmt = MultimodalTransformer.default_config("paper")
    assert (mmt.n_stem_layers, mmt.n_layers) == (5, 0)
    assert MultimodalMLP.default_config("paper").d_hidden == 200
    assert MultimodalMLP.default_config("tiny").d_hidden is None  # d_model


@pytest.mark.parametrize("name", sorted(TRANSFORMERS))
def test_tubelet_layout(name):
    model = TRANSFORMERS[name]()
    layout = model.layout
    assert layout.group == ("cls", "emg", "emg", "cls", "acc", "acc")
    assert layout.channel == (-1,) * 6
    assert layout.time == (-1, 0, 1, -1, 0, 1)
    assert layout.modalities == ("emg", "acc")
    assert model.cls_positions == {"emg": 0, "acc": 3}
    assert model.stem_positions == {"emg": [0, 1, 2], "acc": [3, 4, 5]}
    assert model.cfg.n_ctx == layout.n_tokens == 6
    _, cache = model.run_with_cache(model.example_input(2))
    assert cache["hook_embed"].shape == (2, 6, model.cfg.d_model)
    assert cache["stems.emg.hook_embed"].shape == (2, 3, model.cfg.d_model)
    assert cache["stems.acc.hook_pos_embed"].shape == (2, 3, model.cfg.d_model)


@pytest.mark.parametrize("name", sorted(TRANSFORMERS))
def test_without_cls_tokens_pools_the_tubelets(name):
    model = _ready(TRANSFORMERS[name](use_cls_token=False))
    assert model.layout.group == ("emg", "emg", "acc", "acc")
    assert model.cls_positions == {}
    _, cache = model.run_with_cache(model.example_input(3))
    # hook_normalized is before the affine; the head pools ln_final's output
    normalized = cache["ln_final.hook_normalized"] * model.ln_final.w + model.ln_final.b
    pooled = torch.cat((normalized[:, 0:2].mean(1), normalized[:, 2:4].mean(1)), dim=-1)
    torch.testing.assert_close(cache["classifier.hook_pooled"], pooled)


def test_mlp_layout_is_one_position_per_modality():
    model = _mlp()
    assert model.layout.group == ("emg", "acc")
    assert model.layout.channel == model.layout.time == (-1, -1)
    _, cache = model.run_with_cache(model.example_input(2))
    assert cache["hook_embed"].shape == (2, 2, model.d_hidden)


def test_stems_have_the_legacy_names_and_shapes():
    model = _hier()
    cfg = model.cfg
    state = model.state_dict()
    assert state["stems.emg.blocks.0.attn.W_Q"].shape == (cfg.n_heads, cfg.d_model, cfg.d_head)
    assert state["stems.acc.blocks.0.attn.W_O"].shape == (cfg.n_heads, cfg.d_head, cfg.d_model)
    assert state["stems.emg.embed.W_E"].shape == (3, 40, cfg.d_model)  # channel, sample, d_model
    assert state["stems.acc.pos_embed.W_pos"].shape == (3, cfg.d_model)  # CLS + 2 tubelets
    assert state["classifier.W_U"].shape == (2 * cfg.d_model, cfg.n_classes)
    for inner in ("attn.hook_pattern", "hook_resid_post", "ln1.hook_scale", "mlp.hook_post"):
        assert f"stems.emg.blocks.0.{inner}" in model.hook_dict
        assert f"blocks.1.{inner}" in model.hook_dict


def test_seeded_models_are_reproducible():
    for build in BUILDERS.values():
        a, b = build(), build()
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(p, q), name


# ----------------------------------------------------------------------------- cross-modal edges


def test_multimodal_transformer_has_no_cross_modal_edges():
    model = _ready(_mmt())
    x = model.example_input(3)
    _, cache = model.run_with_cache(x)
    # Every attention pattern is a stem's: its keys are that stem's 3 tokens, never the other's.
    patterns = [k for k in cache.cache_dict if k.endswith("hook_pattern")]
    assert patterns and all(k.startswith("stems.") for k in patterns)
    assert all(cache[k].shape[-2:] == (3, 3) for k in patterns)
    # So the EMG stream cannot see ACC input, before the linear fusion.
    y = x.clone()
    y[:, 3:] = torch.randn_like(y[:, 3:])
    _, cache_y = model.run_with_cache(y)
    torch.testing.assert_close(cache_y["hook_embed"][:, :3], cache["hook_embed"][:, :3])
    assert not torch.allclose(cache_y["hook_embed"][:, 3:], cache["hook_embed"][:, 3:])
    # There is nothing to mask: no fusion layer exists, and the cross-modal entries of a stem
    # mask are edges that do not exist, so masking all of them changes nothing.
    with pytest.raises(LayoutError, match="edge_masks key 0"):
        model(x, edge_masks={0: _stem_cross_mask(model)})
    cross = {layer: _stem_cross_mask(model) for layer in range(model.cfg.n_stem_layers)}
    assert torch.equal(model(x, stem_edge_masks=cross), model(x))


def test_hierarchical_fusion_stage_carries_cross_modal_edges():
    model = _ready(_hier())
    x = model.example_input(3)
    cross = {layer: _stem_cross_mask(model) for layer in range(model.cfg.n_layers)}
    assert not torch.allclose(model(x, edge_masks=cross), model(x), atol=1e-6)
    # Only the fusion stage mixes: with every cross-stem edge masked, the EMG stream's final
    # residual no longer depends on the ACC input; unmasked it does.
    y = x.clone()
    y[:, 3:] = torch.randn_like(y[:, 3:])
    masked_x = model(x, edge_masks=cross, return_type=None)
    masked_y = model(y, edge_masks=cross, return_type=None)
    torch.testing.assert_close(masked_y[:, :3], masked_x[:, :3])
    free_x, free_y = model(x, return_type=None), model(y, return_type=None)
    assert not torch.allclose(free_y[:, :3], free_x[:, :3], atol=1e-6)
    # Masking cross-modal edges on tubelets only (CLS exempt, the CLS rule of docs/DESIGN.md §3)
    # also matters.
    groups = model.layout.group_ids()
    is_cls = torch.tensor([g == "cls" for g in model.layout.group])
    tubelet_cross = (groups[:, None] != groups[None, :]) & ~is_cls[:, None] & ~is_cls[None, :]
    assert not torch.allclose(model(x, edge_masks={0: tubelet_cross}), model(x), atol=1e-6)


@pytest.mark.parametrize("name", sorted(TRANSFORMERS))
def test_stem_edge_masks_reach_only_their_stem(name):
    model = _ready(TRANSFORMERS[name]())
    x = model.example_input(2)
    n = model.layout.n_tokens
    within_acc = torch.zeros(n, n, dtype=torch.bool)
    within_acc[3:, 3:] = True
    within_acc[3:, 3] = False  # acc tokens still read their CLS token
    _, plain = model.run_with_cache(x)
    _, masked = model.run_with_cache(x, stem_edge_masks={0: within_acc})
    torch.testing.assert_close(masked["hook_embed"][:, :3], plain["hook_embed"][:, :3])
    assert not torch.allclose(masked["hook_embed"][:, 3:], plain["hook_embed"][:, 3:])
    pattern = masked["stems.acc.blocks.0.attn.hook_pattern"]
    assert (pattern[..., :, 1:] == 0).all()  # only the CLS key remains
    with pytest.raises(ArgumentError, match="stem_edge_masks"):
        model(plain["hook_embed"], start_at_layer=0, stem_edge_masks={0: within_acc})


# ----------------------------------------------------------------------------- stem attention


@pytest.mark.parametrize("name", sorted(TRANSFORMERS))
@pytest.mark.parametrize("masked", [False, True])
def test_stems_fast_path_equals_explicit_path(name, masked):
    model = _ready(TRANSFORMERS[name]())
    x = model.example_input(4)
    stem_masks = {layer: _random_mask(model, layer) for layer in range(model.cfg.n_stem_layers)}
    stem_masks = stem_masks if masked else None
    fast = model(x, stem_edge_masks=stem_masks)
    explicit, cache = model.run_with_cache(x, stem_edge_masks=stem_masks)
    torch.testing.assert_close(fast, explicit, atol=1e-5, rtol=1e-5)
    if masked:
        for layer, mask in stem_masks.items():
            for stem, positions in model.stem_positions.items():
                block = mask[:, positions][:, :, positions]
                pattern = cache[f"stems.{stem}.blocks.{layer}.attn.hook_pattern"]
                assert (pattern[:, block] == 0).all()


@pytest.mark.parametrize("name", sorted(TRANSFORMERS))
def test_stems_head_sum_identity(name):
    model = _ready(TRANSFORMERS[name](use_attn_result=True))
    _, cache = model.run_with_cache(model.example_input(2))
    for stem_name, stem in model.stems.items():
        for layer, block in enumerate(stem.blocks):
            prefix = f"stems.{stem_name}.blocks.{layer}"
            summed = cache[f"{prefix}.attn.hook_result"].sum(dim=-2) + block.attn.b_O
            torch.testing.assert_close(summed, cache[f"{prefix}.hook_attn_out"])


def test_multimodal_transformer_is_linear_fusion_of_stem_cls_vectors():
    model = _ready(_mmt())
    x = model.example_input(3)
    logits, cache = model.run_with_cache(x)
    embed = model(x, stop_at_layer=0)
    torch.testing.assert_close(embed, cache["hook_embed"])
    torch.testing.assert_close(model(embed, start_at_layer=0), logits)
    # The stems' outputs are their final residual streams, concatenated.
    for stem, positions in model.stem_positions.items():
        last = model.cfg.n_stem_layers - 1
        stem_out = cache[f"stems.{stem}.blocks.{last}.hook_resid_post"]
        torch.testing.assert_close(cache["hook_embed"][:, positions], stem_out)
    # Linear fusion, by hand: LayerNorm each CLS vector, concatenate, one matmul.
    ln = model.ln_final
    cls = embed[:, [0, 3]]
    normed = F.layer_norm(cls, (model.cfg.d_model,), ln.w, ln.b, eps=model.cfg.eps)
    expected = normed.flatten(1) @ model.W_U + model.classifier.b_U
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    # The residual decomposition of a model without fusion layers is just the embedding.
    final, cache = model.run_with_cache(x, return_type=None)
    parts, labels = cache.decompose_resid(return_labels=True)
    assert labels == ["embed"]
    torch.testing.assert_close(parts.sum(0), final)


# ----------------------------------------------------------------------------- MLP baseline


def test_mlp_hooks_fire_and_cache():
    model = _ready(_mlp())
    x = model.example_input(3)
    logits, cache = model.run_with_cache(x)
    assert isinstance(cache, ActivationCache)
    assert sorted(cache.keys()) == sorted(model.hook_dict)  # every hook fired
    d = model.d_hidden
    assert cache["heads.emg.hook_input"].shape == (3, 3 * 80)
    assert cache["heads.acc.layers.1.hook_post"].shape == (3, d)
    assert cache["fusion.hook_pre"].shape == (3, d)
    torch.testing.assert_close(cache["classifier.hook_pooled"], cache["fusion.hook_post"])
    torch.testing.assert_close(logits, cache["fusion.hook_post"] @ model.W_U + model.classifier.b_U)
    torch.testing.assert_close(model(x, return_type=None), cache["fusion.hook_post"])


def test_mlp_noop_hooks_are_bit_identical_and_hooks_patch():
    model = _ready(_mlp())
    x = model.example_input(3)

    def noop(tensor, hook):
        return tensor

    everywhere = [(name, noop) for name in model.hook_dict]
    assert torch.equal(model.run_with_hooks(x, fwd_hooks=everywhere), model(x))

    def zero(tensor, hook):
        return torch.zeros_like(tensor)

    # A hook's return value is used: with the heads' outputs zeroed, only biases remain.
    patched = model.run_with_hooks(x, fwd_hooks=[("hook_embed", zero)])
    expected = torch.relu(model.fusion.b) @ model.W_U + model.classifier.b_U
    torch.testing.assert_close(patched, expected.expand(3, -1))
    assert not torch.allclose(patched, model(x))


def test_mlp_modalities_meet_only_in_the_fusion_layer():
    model = _ready(_mlp())
    x = model.example_input(2)
    y = x.clone()
    y[:, 3:] = torch.randn_like(y[:, 3:])
    _, cx = model.run_with_cache(x)
    _, cy = model.run_with_cache(y)
    torch.testing.assert_close(cy["hook_embed"][:, 0], cx["hook_embed"][:, 0])
    assert not torch.allclose(cy["hook_embed"][:, 1], cx["hook_embed"][:, 1])


def test_mlp_rejects_transformer_arguments():
    model = _mlp()
    x = model.example_input()
    for kwargs, error, words in [  # what it lacks is refused as `require` refuses it
        ({"start_at_layer": 1}, UnsupportedFeatureError, r"start_at_layer=.*layer-by-layer"),
        ({"stop_at_layer": 0}, UnsupportedFeatureError, r"stop_at_layer=.*layer-by-layer"),
        ({"edge_masks": {0: torch.zeros(2, 2, dtype=torch.bool)}}, UnsupportedFeatureError,
         r"edge_masks=.*attention hooks.*no attention layers"),
        ({"return_type": "both"}, ArgumentError, "return_type"),
    ]:  # fmt: skip
        with pytest.raises(error, match=words):
            model(x, **kwargs)
    assert model(x, edge_masks={}).shape == (1, 4)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: _mmt(n_layers=2), "n_layers"),
        (lambda: _hier(n_layers=0), "n_layers"),
        (lambda: HierarchicalTransformer(EncoderConfig.preset("tiny")), "tokenization"),
        (lambda: IsoNet(EncoderConfig.preset("tiny", tokenization="tubelet")), "tokenization"),
        (lambda: _hier(positional_embedding_type="rotary"), "positional_embedding_type"),
        (lambda: _hier(patch_samples=30), "patch_samples"),
        (lambda: EncoderConfig.preset("tiny", tokenization="tubelets"), "tokenization"),
        (lambda: EncoderConfig.preset("tiny", n_stem_layers=-1), "n_stem_layers"),
        (lambda: EncoderConfig.preset("tiny", n_layers=-1), "n_layers"),
        (lambda: EncoderConfig.preset("tiny", d_hidden=0), "d_hidden"),
    ],
)
def test_bad_configs_name_the_field(build, field):
    with pytest.raises(ConfigError, match=field):
        build()


@pytest.mark.parametrize("name", sorted(TRANSFORMERS))
def test_bad_stem_masks_and_return_types(name):
    model = TRANSFORMERS[name]()
    x = model.example_input()
    with pytest.raises(LayoutError, match=r"stem_edge_masks key 5 .*n_stem_layers"):
        model(x, stem_edge_masks={5: torch.zeros(6, 6, dtype=torch.bool)})
    with pytest.raises(LayoutError, match=r"stem_edge_masks\[0\] .*\[\.\.\., 6, 6\]"):
        model(x, stem_edge_masks={0: torch.zeros(3, 3, dtype=torch.bool)})
    with pytest.raises(ArgumentError, match="return_type"):
        model(x, return_type="both")


# ----------------------------------------------------------------------------- planted task


def _planted(n, seed):
    """Label = 2 * (EMG offset sign) + (ACC offset sign): each modality alone gives at most
    50% accuracy (it tells two classes apart), both together 100%; chance is 25%."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=gen)
    x = torch.randn(n, 5, 80, generator=gen)
    x[:, :3] += (2.0 * (labels // 2) - 1.0)[:, None, None]
    x[:, 3:] += (2.0 * (labels % 2) - 1.0)[:, None, None]
    return x, labels


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_learns_a_planted_two_modality_task(name):
    torch.manual_seed(0)
    model = BUILDERS[name]().train()
    x_train, y_train = _planted(512, seed=1)
    x_test, y_test = _planted(256, seed=2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(25):
        idx = torch.arange(step * 64, (step + 1) * 64) % len(x_train)
        loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(-1) == y_test).float().mean().item()
    assert accuracy > 0.7, f"{name}: accuracy {accuracy:.2f} (one modality alone: <= 0.5)"
