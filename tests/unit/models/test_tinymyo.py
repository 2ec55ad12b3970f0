"""TinyMyo against an independent forward written from the BioFoundation facts.

The reference below never touches emg_lens modules: it reads a state dict in BioFoundation's
key layout (``patch_embedding.patch_embed.proj.weight [D, 1, 1, P]``, fused
``blocks.{i}.attn.qkv`` split as ``(3, n_heads, head_dim)``, ...) and computes the published
forward with unfold + matmul patches, interleaved RoPE and plain softmax attention. Its RoPE
follows either rule: ``"head"``, what BioFoundation's released code computes (torchtune's RoPE
called on ``[B, H, N, hd]`` reads positions from dim 1, the head index), and the loader's
default; or ``"token"``, the flattened token index the thesis describes.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from emg_lens import CheckpointError, EncoderConfig
from emg_lens.errors import ArgumentError, InputShapeError
from emg_lens.models import TinyMyo
from tests.tiny import tinymyo_config

D, HEADS, LAYERS, MLP = 48, 3, 2, 96
CHANNELS, SAMPLES, PATCH = 4, 80, 10  # 4 channels x 8 patches = 32 tokens
N_PATCHES = SAMPLES // PATCH
N_TOKENS = CHANNELS * N_PATCHES


# ----------------------------------------------------------------------------- reference


def bio_state_dict(task="classification", reduction="concat", n_out=5, hidden=12, seed=0):
    """Random weights in BioFoundation's TinyMyo key layout (biases and norms non-trivial)."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.2):
        return scale * torch.randn(*shape, generator=gen)

    sd = {
        "mask_token": rand(1, 1, D),
        "patch_embedding.patch_embed.proj.weight": rand(D, 1, 1, PATCH, scale=0.3),
        "patch_embedding.patch_embed.proj.bias": rand(D),
    }
    for i in range(LAYERS):
        p = f"blocks.{i}."
        sd |= {
            p + "norm1.weight": 1 + rand(D),
            p + "norm1.bias": rand(D),
            p + "attn.qkv.weight": rand(3 * D, D),
            p + "attn.qkv.bias": rand(3 * D),
            p + "attn.proj.weight": rand(D, D),
            p + "attn.proj.bias": rand(D),
            p + "norm2.weight": 1 + rand(D),
            p + "norm2.bias": rand(D),
            p + "mlp.fc1.weight": rand(MLP, D),
            p + "mlp.fc1.bias": rand(MLP),
            p + "mlp.fc2.weight": rand(D, MLP),
            p + "mlp.fc2.bias": rand(D),
        }
    sd |= {"norm.weight": 1 + rand(D), "norm.bias": rand(D)}
    feat = CHANNELS * D if reduction == "concat" else D
    if task == "reconstruction":
        sd |= {
            "model_head.decoder_pred.weight": rand(PATCH, D),
            "model_head.decoder_pred.bias": rand(PATCH),
        }
    elif task == "classification":
        sd |= {
            "model_head.classifier.weight": rand(n_out, feat),
            "model_head.classifier.bias": rand(n_out),
        }
    else:
        sd |= {
            "model_head.regressor.0.weight": rand(hidden, feat, 1),
            "model_head.regressor.0.bias": rand(hidden),
            "model_head.regressor.3.weight": rand(hidden, 1, 3),
            "model_head.regressor.3.bias": rand(hidden),
            "model_head.regressor.5.weight": rand(n_out, hidden, 1),
            "model_head.regressor.5.bias": rand(n_out),
        }
    return sd


def rope_interleaved(x, positions, base=10000.0):
    """torchtune RoPE: pairs (x[2i], x[2i+1]) rotated by positions * base^(-2i/d).

    ``x [..., n, d]``; ``positions`` broadcasts against ``x[..., 0]``-less dims ``[..., n]``.
    """
    d = x.shape[-1]
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angle = positions.to(torch.float64)[..., None] * theta  # [..., n, d/2]
    cos, sin = angle.cos().float(), angle.sin().float()
    pairs = x.reshape(*x.shape[:-1], d // 2, 2)
    x0, x1 = pairs[..., 0], pairs[..., 1]
    return torch.stack((x0 * cos - x1 * sin, x1 * cos + x0 * sin), dim=-1).flatten(-2)


def reference_forward(
    sd, x, *, task, reduction="concat", target_len=None, patch_mask=None, rope="head"
):
    """BioFoundation TinyMyo forward (eval), from the facts, on a BioFoundation state dict."""
    batch, channels, _ = x.shape
    w = sd["patch_embedding.patch_embed.proj.weight"]
    d = w.shape[0]
    patches = x.unfold(-1, PATCH, PATCH)  # [B, C, Np, P]
    tokens = patches @ w.reshape(d, PATCH).T + sd["patch_embedding.patch_embed.proj.bias"]
    h = tokens.reshape(batch, -1, d)  # channel-major: token c * Np + t
    if patch_mask is not None:
        h = torch.where(patch_mask.reshape(batch, -1, 1), sd["mask_token"].reshape(d), h)
    n = h.shape[1]
    hd = d // HEADS
    for i in range(LAYERS):
        p = f"blocks.{i}."
        a = F.layer_norm(h, (d,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], 1e-5)
        qkv = a @ sd[p + "attn.qkv.weight"].T + sd[p + "attn.qkv.bias"]
        q, k, v = qkv.reshape(batch, n, 3, HEADS, hd).permute(2, 0, 3, 1, 4)  # [B, H, N, hd]
        if rope == "token":
            pos = torch.arange(n)  # flattened token index
            q, k = rope_interleaved(q, pos), rope_interleaved(k, pos)
        elif rope == "head":
            # The stored BioFoundation source: torchtune RoPE on [B, H, N, hd] indexes by head.
            pos = torch.arange(HEADS)[:, None].expand(HEADS, n)
            q, k = rope_interleaved(q, pos), rope_interleaved(k, pos)
        attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1)
        z = (attn @ v).transpose(1, 2).reshape(batch, n, d)
        h = h + z @ sd[p + "attn.proj.weight"].T + sd[p + "attn.proj.bias"]
        m = F.layer_norm(h, (d,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], 1e-5)
        m = F.gelu(m @ sd[p + "mlp.fc1.weight"].T + sd[p + "mlp.fc1.bias"])
        h = h + m @ sd[p + "mlp.fc2.weight"].T + sd[p + "mlp.fc2.bias"]
    latent = F.layer_norm(h, (d,), sd["norm.weight"], sd["norm.bias"], 1e-5)
    if task == "reconstruction":
        return latent @ sd["model_head.decoder_pred.weight"].T + sd["model_head.decoder_pred.bias"]
    per_patch = latent.reshape(batch, channels, -1, d)  # [B, C, Np, D]
    if reduction == "concat":  # "b (c p) d -> b p (c d)"
        feats = per_patch.permute(0, 2, 1, 3).reshape(batch, -1, channels * d)
    else:
        feats = per_patch.mean(dim=1)
    if task == "classification":
        pooled = feats.mean(dim=1)
        return pooled @ sd["model_head.classifier.weight"].T + sd["model_head.classifier.bias"]
    r = feats.transpose(1, 2)  # [B, feat, Np]
    r = F.silu(F.conv1d(r, sd["model_head.regressor.0.weight"], sd["model_head.regressor.0.bias"]))
    hid = r.shape[1]
    r = F.conv1d(
        r,
        sd["model_head.regressor.3.weight"],
        sd["model_head.regressor.3.bias"],
        padding=1,
        groups=hid,
    )
    r = F.conv1d(F.silu(r), sd["model_head.regressor.5.weight"], sd["model_head.regressor.5.bias"])
    if r.shape[-1] != target_len:
        r = F.interpolate(r, size=target_len, mode="linear", align_corners=False)
    return r.transpose(1, 2)


def signals(batch=3, seed=5):
    return torch.randn(batch, CHANNELS, SAMPLES, generator=torch.Generator().manual_seed(seed))


def load(sd, **kw):
    kw = {"n_heads": HEADS, "n_samples": SAMPLES, **kw}
    return TinyMyo.from_biofoundation(sd, **kw).eval()


# ----------------------------------------------------------------------------- heads


@pytest.mark.parametrize(
    ("task", "reduction", "kw", "shape"),
    [
        ("classification", "concat", {}, (3, 5)),
        ("classification", "mean", {"n_channels": CHANNELS}, (3, 5)),
        ("reconstruction", "concat", {"n_channels": CHANNELS}, (3, N_TOKENS, PATCH)),
        ("regression", "concat", {"reg_target_len": 20}, (3, 20, 5)),
        ("regression", "mean", {"n_channels": CHANNELS, "reg_target_len": 20}, (3, 20, 5)),
        ("regression", "concat", {"reg_target_len": N_PATCHES}, (3, N_PATCHES, 5)),
    ],
)
@pytest.mark.parametrize("rope", ["default", "head", "token"])
def test_matches_the_reference_forward(task, reduction, kw, shape, rope):
    # A BioFoundation state dict loads, by default, into BioFoundation's own function (the
    # head-index rule); rope_positions="token" is the explicit choice for token RoPE.
    sd = bio_state_dict(task, reduction)
    model = load(sd, **kw) if rope == "default" else load(sd, rope_positions=rope, **kw)
    assert model.task == task and model.init_kwargs["reduction"] == reduction
    assert model.cfg.n_channels == CHANNELS and model.cfg.n_layers == LAYERS
    x = signals()
    out = model(x)
    expected = reference_forward(
        sd,
        x,
        task=task,
        reduction=reduction,
        target_len=kw.get("reg_target_len"),
        rope="head" if rope == "default" else rope,
    )
    assert out.shape == shape
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_the_two_rope_rules_compute_different_functions():
    # So the default above is a real choice: token RoPE is far from BioFoundation's output.
    sd = bio_state_dict("reconstruction", n_out=0)
    x = signals()
    token = load(sd, n_channels=CHANNELS, rope_positions="token")(x)
    default = load(sd, n_channels=CHANNELS)(x)
    assert (token - default).abs().max() > 1e-2


def test_rope_is_applied_at_the_flattened_token_index():
    sd = bio_state_dict()
    model = load(sd, rope_positions="token")
    x = signals()
    _, cache = model.run_with_cache(x)
    q = cache["blocks.0.attn.hook_q"]  # [batch, pos, head, d_head]
    expected = rope_interleaved(q.transpose(1, 2), torch.arange(N_TOKENS)).transpose(1, 2)
    torch.testing.assert_close(cache["blocks.0.attn.hook_rot_q"], expected, atol=1e-6, rtol=1e-5)
    # Without rotation the model computes something else: RoPE is not a no-op here.
    plain = reference_forward(sd, x, task="classification", rope="none")
    assert not torch.allclose(model(x), plain, atol=1e-3)


def test_head_indexed_rope_of_the_stored_source_equals_no_rope():
    """The stored BioFoundation source rotates by head index, which cancels in q.k."""
    sd = bio_state_dict()
    model = load(sd)
    assert model.cfg.positional_embedding_type == "none"
    torch.testing.assert_close(
        reference_forward(sd, signals(), task="classification", rope="head"),
        reference_forward(sd, signals(), task="classification", rope="none"),
        atol=1e-5,
        rtol=1e-5,
    )
    x = signals()
    expected = reference_forward(sd, x, task="classification", rope="head")
    torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)


def test_patch_mask_replaces_tokens_by_the_mask_token():
    sd = bio_state_dict("reconstruction")
    model = load(sd, n_channels=CHANNELS)
    x = signals()
    gen = torch.Generator().manual_seed(3)
    sample_mask = torch.rand(3, CHANNELS, SAMPLES, generator=gen) < 0.02
    patch_mask = model.patch_mask_from_samples(sample_mask)
    assert patch_mask.shape == (3, CHANNELS, N_PATCHES)
    expected_patch = sample_mask.reshape(3, CHANNELS, N_PATCHES, PATCH).any(-1)
    assert torch.equal(patch_mask, expected_patch) and patch_mask.any() and not patch_mask.all()
    out, cache = model.run_with_cache(x, patch_mask=patch_mask)
    assert torch.equal(cache["hook_input"], x)  # the masked path still fires the input hook
    embed = cache["hook_embed"].reshape(3, CHANNELS, N_PATCHES, D)
    assert torch.equal(embed[patch_mask], model.mask_token.expand(int(patch_mask.sum()), D))
    expected = reference_forward(sd, x, task="reconstruction", patch_mask=patch_mask)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model(x, patch_mask=patch_mask), out, atol=1e-5, rtol=1e-5)
    # A [channels, patches] mask applies to every sample of the batch.
    shared = model(x, patch_mask=patch_mask[0])
    torch.testing.assert_close(shared[0], out[0], atol=1e-5, rtol=1e-5)


@pytest.mark.unchecked
def test_bad_patch_masks_raise():
    model = load(bio_state_dict())
    x = signals()
    with pytest.raises(InputShapeError, match=r"patch_mask must be a bool tensor \[batch=3"):
        model(x, patch_mask=torch.zeros(3, CHANNELS, N_PATCHES + 1, dtype=torch.bool))
    with pytest.raises(InputShapeError, match="patch_mask"):
        model(x, patch_mask=torch.zeros(3, CHANNELS, N_PATCHES))
    with pytest.raises(ArgumentError, match="start_at_layer"):
        model(x, patch_mask=torch.zeros(CHANNELS, N_PATCHES, dtype=torch.bool), start_at_layer=0)
    with pytest.raises(InputShapeError, match="sample_mask"):
        model.patch_mask_from_samples(torch.zeros(3, CHANNELS, SAMPLES - 1, dtype=torch.bool))


# ----------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize(
    ("task", "reduction", "kw"),
    [
        ("classification", "concat", {}),
        ("classification", "mean", {"n_channels": CHANNELS}),
        ("reconstruction", "concat", {"n_channels": CHANNELS}),
        ("regression", "concat", {}),
    ],
)
@pytest.mark.parametrize("rope", ["head", "token"])
def test_to_biofoundation_round_trips_exactly(task, reduction, kw, rope):
    sd = bio_state_dict(task, reduction)
    model = load(sd, rope_positions=rope, **kw)
    back = model.to_biofoundation()
    assert list(back) == list(sd)  # same keys, in the published module order
    for key, value in sd.items():
        assert back[key].shape == value.shape, key
        assert torch.equal(back[key], value), key
    again = load(back, rope_positions=rope, **kw)
    x = signals()
    torch.testing.assert_close(again(x), model(x), atol=0, rtol=0)


def test_lightning_prefix_is_stripped():
    sd = bio_state_dict()
    model = load({f"model.{k}": v for k, v in sd.items()})
    x = signals()
    torch.testing.assert_close(model(x), load(sd)(x), atol=0, rtol=0)


def test_init_kwargs_and_config_rebuild_the_model():
    sd = bio_state_dict("regression")
    model = load(sd, reg_target_len=16)
    rebuilt = TinyMyo(EncoderConfig.from_dict(model.cfg.to_dict()), **model.init_kwargs).eval()
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = signals()
    assert torch.equal(rebuilt(x), model(x))
    assert model.init_kwargs["task"] == "regression" and model.init_kwargs["reg_hidden"] == 12


def test_unknown_and_missing_keys_raise_listing_them():
    sd = bio_state_dict()
    bad = dict(sd)
    del bad["blocks.1.attn.proj.bias"], bad["norm.weight"]
    bad["blocks.0.attn.rel_bias"] = torch.zeros(3)
    with pytest.raises(CheckpointError) as info:
        load(bad)
    message = str(info.value)
    for key in ("blocks.1.attn.proj.bias", "norm.weight", "blocks.0.attn.rel_bias"):
        assert key in message


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda sd: sd.pop("patch_embedding.patch_embed.proj.weight"), "missing key"),
        (lambda sd: sd.pop("model_head.classifier.weight"), "cannot tell the task"),
        (
            lambda sd: sd.update({"model_head.decoder_pred.weight": torch.zeros(PATCH, D)}),
            "cannot tell the task",
        ),
        (
            lambda sd: sd.update({"blocks.1.mlp.fc2.weight": torch.zeros(D, MLP + 1)}),
            r"wrong shapes.*blocks\.1\.mlp\.fc2\.weight",
        ),
        (
            lambda sd: sd.update({"model_head.classifier.weight": torch.zeros(5, D + 1)}),
            "multiple",
        ),
        (
            lambda sd: [sd.pop(k) for k in list(sd) if k.startswith("blocks.")],
            r"state dict has no 'blocks.\{i\}.\*' keys",
        ),
    ],
)
def test_bad_checkpoints_raise(edit, match):
    sd = bio_state_dict()
    edit(sd)
    with pytest.raises(CheckpointError, match=match):
        load(sd)


@pytest.mark.unchecked  # a float head count, refused by emg_lens's own check
def test_arguments_that_contradict_the_checkpoint_raise():
    sd = bio_state_dict()
    with pytest.raises(CheckpointError, match="n_channels=6"):
        load(sd, n_channels=6)
    with pytest.raises(CheckpointError, match="d_model"):
        load(sd, d_model=64)
    with pytest.raises(CheckpointError, match=r"reduction='mean' needs key .* d_model=\d+, got"):
        load(sd, reduction="mean")
    with pytest.raises(ArgumentError, match=r"n_heads must be a positive divisor of .*, got 5"):
        load(sd, n_heads=5)
    for bad in (2.0, True, 0):  # an int >= 1 only: a float or a bool is no head count
        with pytest.raises(ArgumentError, match=rf"n_heads \(a divisor .*\) must .*, got {bad}$"):
            load(sd, n_heads=bad)
    with pytest.raises(ArgumentError, match="rope_positions"):
        load(sd, rope_positions="channel")


# ----------------------------------------------------------------------------- masks and training


def test_hooked_mask_equals_edge_mask_on_the_sdpa_path():
    model = load(bio_state_dict())
    layout = model.layout
    channel, time = layout.channel_ids(), layout.time_ids()
    cross_channel = channel[:, None] != channel[None, :]
    far_in_time = (time[:, None] - time[None, :]).abs() > 2
    mask = torch.stack([cross_channel, far_in_time, cross_channel & far_in_time])  # per head
    x = signals()

    def write_inf(scores, hook):
        return scores.masked_fill(mask, float("-inf"))

    names = [f"blocks.{layer}.attn.hook_attn_scores" for layer in range(LAYERS)]
    hooked = model.run_with_hooks(x, fwd_hooks=[(name, write_inf) for name in names])
    assert not any(block.attn.hooks_active() for block in model.blocks)
    fast = model(x, edge_masks=dict.fromkeys(range(LAYERS), mask))
    torch.testing.assert_close(hooked, fast, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(fast, model(x), atol=1e-4)


def test_dropout_and_drop_path_only_in_training():
    cfg = tinymyo_config(3, 20, patch_samples=5, dropout=0.2, seed=0)
    model = TinyMyo(cfg, task="regression", reg_target_len=8, head_dropout=0.3, drop_path=0.5)
    x = model.example_input(4)
    model.train()
    torch.manual_seed(0)
    a = model(x)
    b = model(x)
    assert not torch.allclose(a, b)
    model.eval()
    assert torch.equal(model(x), model(x))


def test_constructor_rejects_bad_arguments():
    cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 2}, n_samples=40)
    with pytest.raises(ArgumentError, match="task"):
        TinyMyo(cfg, task="segmentation")
    with pytest.raises(ArgumentError, match="reduction"):
        TinyMyo(cfg, reduction="max")
    with pytest.raises(Exception, match="use_cls_token"):
        TinyMyo(EncoderConfig.preset("tinymyo", use_cls_token=True, n_layers=1))
    assert TinyMyo(cfg, task="pretraining").task == "reconstruction"
    model = TinyMyo(cfg)
    with pytest.raises(ArgumentError, match="return_type"):
        model(model.example_input(), return_type="both")
    assert model(model.example_input(), return_type="latent").shape == (1, 4, 192)


def test_layout_is_channel_major_without_cls():
    cfg = EncoderConfig.preset("tinymyo")
    model = TinyMyo(cfg, task="reconstruction")
    layout = model.layout
    assert layout.n_tokens == 800 and not layout.has_cls and layout.groups == ("emg",)
    assert layout.channel[3 * 50 + 7] == 3 and layout.time[3 * 50 + 7] == 7
    assert model.embed.W_E.shape == (20, 192)
