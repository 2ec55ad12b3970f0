"""`from_torch_encoder` (issue 24 item 1): a user's ``nn.TransformerEncoder`` model, hooked,
computes what the original computes (float32 to 1e-5, float64 to 1e-10, on the fast and the
hooked path), for every layer option torch has, and refuses what it cannot convert by name."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from emg_lens.checkpoints import load_checkpoint, save_checkpoint
from emg_lens.errors import CheckpointError, ConversionError, UnsupportedModuleError
from emg_lens.models import HookedTorchEncoder, from_torch_encoder
from tests.unit.models.converted_models import PatchTokens, TokenReadout, torch_encoder_model

D_MODEL = 16


def _both_paths(model, x):
    with torch.no_grad():
        fast = model(x)
    assert not any(block.attn.hooks_active() for block in model.blocks)
    explicit, cache = model.run_with_cache(x)  # every hook attached: the explicit path
    assert "blocks.0.attn.hook_pattern" in list(cache.keys())
    return fast, explicit


ACTIVATIONS = ["relu", "gelu", F.gelu, nn.GELU(approximate="tanh"), nn.SiLU()]
# Every pair of values of the four switches (a half fraction: bias = the parity of the other
# three), every activation, and a non-default eps; each with two seeds and input sizes.
CASES = [
    {"norm_first": nf, "batch_first": bf, "final_norm": fn, "bias": nf ^ bf ^ fn}
    for nf, bf, fn in itertools.product([True, False], repeat=3)
]
CASES += [{"activation": a} for a in ACTIVATIONS]
CASES += [{"eps": 1e-3, "norm_first": False}]


@pytest.mark.parametrize("options", CASES, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_float32_parity_on_both_paths(options):
    for seed, shape in ((0, (3, 8)), (1, (2, 12))):
        model, original = torch_encoder_model(seed, shape=shape, **options)
        x = torch.randn(3, *shape)
        expected = original(x)
        for out in _both_paths(model, x):
            assert (out - expected).abs().max() <= 1e-5


@pytest.mark.parametrize("norm_first", [True, False])
def test_float64_parity_to_1e_10(norm_first):
    for seed in (0, 1, 2):
        model, original = torch_encoder_model(seed, norm_first=norm_first, dtype=torch.float64)
        assert model.cfg.dtype == torch.float64
        x = torch.randn(4, *model.input_shape, dtype=torch.float64)
        expected = original(x)
        for out in _both_paths(model, x):
            assert (out - expected).abs().max() <= 1e-10


def test_weights_are_in_transformer_lens_shapes():
    kw = {"bias": False, "final_norm": False, "norm_first": False, "activation": "relu"}
    parts = torch_encoder_model(0, **kw, convert=False)
    encoder = parts["encoder"]
    model = from_torch_encoder(**parts, n_samples=8)
    cfg = model.cfg
    assert (cfg.n_heads, cfg.d_head, cfg.d_mlp, cfg.act_fn) == (4, 4, 32, "relu")
    assert cfg.norm_position == "post" and not cfg.final_norm and cfg.tokenization == "custom"
    assert model.W_Q.shape == (2, 4, D_MODEL, 4) and model.W_O.shape == (2, 4, 4, D_MODEL)
    assert model.W_in.shape == (2, D_MODEL, 32) and model.b_Q.shape == (2, 4, 4)
    # W_Q[l, h] is the rows h*d_head..(h+1)*d_head of in_proj_weight's query block, transposed
    in_proj = encoder.layers[1].self_attn.in_proj_weight
    assert torch.equal(model.W_Q[1, 2], in_proj[8:12].T)
    assert torch.equal(model.W_O[0, 3], encoder.layers[0].self_attn.out_proj.weight[:, 12:16].T)
    # bias=False: zero biases that are neither parameters nor saved
    assert not any(k.rsplit(".", 1)[-1].startswith("b") for k in model.blocks.state_dict())
    assert torch.equal(model.b_in, torch.zeros(2, 32))


def test_edge_masks_and_hooks_work_on_the_result():
    model, _ = torch_encoder_model(0)
    x = model.example_input(2)
    n = model.layout.n_tokens
    mask = torch.zeros(4, n, n, dtype=torch.bool)
    mask[:, 0, 1:] = True  # the CLS token reads only itself
    masked = model(x, edge_masks={0: mask, 1: mask})
    explicit, cache = model.run_with_cache(x, edge_masks={0: mask, 1: mask})
    torch.testing.assert_close(masked, explicit, atol=1e-5, rtol=1e-5)
    assert (cache["pattern", 0][:, :, 0, 1:] == 0).all()
    assert not torch.allclose(masked, model(x))


def test_checkpoint_round_trip_takes_the_users_modules(tmp_path):
    model, _ = torch_encoder_model(0, cls=False)
    path = save_checkpoint(model, tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="embed, readout"):
        load_checkpoint(path)

    def fresh(n_classes=4):  # modules of the same architecture: weights from the checkpoint
        return {
            "embed": PatchTokens(6, 8, D_MODEL, 4, False),
            "readout": TokenReadout(D_MODEL, n_classes, False),
        }

    again = load_checkpoint(path, modules=fresh())
    assert isinstance(again, HookedTorchEncoder) and again.layout == model.layout
    x = model.example_input(3)
    assert torch.equal(again(x), model(x))
    with pytest.raises(CheckpointError, match=r"head\.net\.2\.weight: model\.safetensors \[4, 8\]"):
        load_checkpoint(path, modules=fresh(n_classes=7))


def test_unsupported_modules_are_refused_by_path():
    parts = torch_encoder_model(0, convert=False)
    convert = lambda encoder: from_torch_encoder(  # noqa: E731
        encoder, embed=parts["embed"], readout=parts["readout"], layout=parts["layout"], n_samples=8
    )
    encoder = parts["encoder"]
    encoder.layers[1].self_attn = nn.MultiheadAttention(
        D_MODEL, 4, kdim=8, vdim=8, batch_first=True
    )
    with pytest.raises(UnsupportedModuleError, match=r"layers\.1\.self_attn has kdim=8.*supported"):
        convert(encoder)
    encoder.layers[1].self_attn = nn.Identity()
    with pytest.raises(
        UnsupportedModuleError, match=r"layers\.1\.self_attn is a Identity.*Multihead"
    ):
        convert(encoder)
    encoder = torch_encoder_model(0, activation=torch.tanh, convert=False)["encoder"]
    with pytest.raises(
        UnsupportedModuleError, match=r"layers\.0\.activation is the activation tanh"
    ):
        convert(encoder)
    with pytest.raises(ConversionError, match="readout"):
        from_torch_encoder(
            torch_encoder_model(0, convert=False)["encoder"],
            embed=parts["embed"],
            readout=nn.Linear(3, 3),
            layout=parts["layout"],
            n_samples=8,
        )


def test_a_layer_that_computes_something_else_is_refused():
    class Scaled(nn.TransformerEncoderLayer):
        def forward(self, src, *args, **kwargs):
            return 2 * super().forward(src, *args, **kwargs)

    parts = torch_encoder_model(0, convert=False)
    layer = Scaled(D_MODEL, 4, 32, batch_first=True)
    with pytest.raises(ConversionError, match=r"differs from the source by [0-9.e+-]+ \(max"):
        from_torch_encoder(
            [layer],
            embed=parts["embed"],
            readout=parts["readout"],
            layout=parts["layout"],
            n_samples=8,
        )


def test_hooks_and_patched_forwards_on_the_encoder_are_refused_by_name():
    """Issue 37 item 3: the encoder's layers become emg_lens blocks, so a hook or a patched
    forward on them would be dropped: refused by name. The user's embed and readout are kept
    as they are, hooks and all, so a hook there is carried (and computed)."""
    parts = torch_encoder_model(0, convert=False)
    encoder, embed, readout = parts["encoder"], parts["embed"], parts["readout"]
    convert = lambda encoder: from_torch_encoder(  # noqa: E731
        encoder, embed=embed, readout=readout, layout=parts["layout"], n_samples=8
    )
    handle = encoder.layers[1].register_forward_hook(lambda module, inputs, out: 2 * out)
    with pytest.raises(UnsupportedModuleError, match=r"encoder\.layers\.1 has a forward hook"):
        convert(encoder)
    with pytest.raises(UnsupportedModuleError, match=r"encoder\[1\] has a forward hook"):
        convert(list(encoder.layers))
    handle.remove()
    attn = encoder.layers[0].self_attn
    handle = attn.register_forward_pre_hook(lambda module, args: None)
    with pytest.raises(
        UnsupportedModuleError, match=r"encoder\.layers\.0\.self_attn has a forward pre-hook"
    ):
        convert(encoder)
    handle.remove()
    forward = encoder.layers[0].forward
    encoder.layers[0].forward = lambda *args, **kwargs: 2 * forward(*args, **kwargs)
    with pytest.raises(UnsupportedModuleError, match=r"encoder\.layers\.0 has its own forward"):
        convert(encoder)
    del encoder.layers[0].forward
    encoder.train()  # the check runs it in eval mode and gives back each module's own flag
    encoder.layers[1].eval()
    handle = embed.register_forward_hook(lambda module, inputs, out: out.flip(1))
    model = convert(encoder)
    assert encoder.training and encoder.layers[0].training and not encoder.layers[1].training
    x = model.example_input(2)
    encoder.eval()
    with torch.no_grad():
        expected = readout(encoder(embed(x)))
        assert (model(x) - expected).abs().max() <= 1e-5
    handle.remove()
    assert not torch.allclose(model(x), expected)
