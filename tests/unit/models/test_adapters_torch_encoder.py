"""`from_torch_encoder` (issue 24 item 1): a user's ``nn.TransformerEncoder`` model, hooked,
computes what the original computes (float32 to 1e-5, float64 to 1e-10, on the fast and the
hooked path), for every layer option torch has, and refuses what it cannot convert by name."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from emg_lens.checkpoints import load_checkpoint, save_checkpoint
from emg_lens.errors import (
    ArgumentError,
    CheckpointError,
    ConversionError,
    InputShapeError,
    LayoutError,
    UnsupportedFeatureError,
)
from emg_lens.layout import TokenLayout
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
    with pytest.raises(ConversionError, match=r"layers\.1\.self_attn has kdim=8.*supported"):
        convert(encoder)
    encoder.layers[1].self_attn = nn.Identity()
    with pytest.raises(ConversionError, match=r"layers\.1\.self_attn is a Identity.*Multihead"):
        convert(encoder)
    encoder = torch_encoder_model(0, activation=torch.tanh, convert=False)["encoder"]
    with pytest.raises(ConversionError, match=r"layers\.0\.activation is the activation tanh"):
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

    class Broken(nn.TransformerEncoderLayer):
        def forward(self, src, *args, **kwargs):
            raise RuntimeError("not today")

    parts = torch_encoder_model(0, convert=False)
    for layer, match in (
        (Scaled(D_MODEL, 4, 32, batch_first=True), r"differs from the source by [0-9.e+-]+ \(max"),
        (Broken(D_MODEL, 4, 32, batch_first=True), r"source failed on the probe input.*not today"),
    ):
        with pytest.raises(ConversionError, match=match):
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
    with pytest.raises(ConversionError, match=r"encoder\.layers\.1 has a forward hook"):
        convert(encoder)
    with pytest.raises(ConversionError, match=r"encoder\[1\] has a forward hook"):
        convert(list(encoder.layers))
    handle.remove()
    attn = encoder.layers[0].self_attn
    handle = attn.register_forward_pre_hook(lambda module, args: None)
    with pytest.raises(
        ConversionError, match=r"encoder\.layers\.0\.self_attn has a forward pre-hook"
    ):
        convert(encoder)
    handle.remove()
    forward = encoder.layers[0].forward
    encoder.layers[0].forward = lambda *args, **kwargs: 2 * forward(*args, **kwargs)
    with pytest.raises(ConversionError, match=r"encoder\.layers\.0 has its own forward"):
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


def _original_with_masks(parts, x, **masks):
    """The user's model run as their code runs it, passing masks to the encoder (the Python
    path, with gradients on: see `torch_encoder_model`)."""
    encoder, embed, readout = parts["encoder"], parts["embed"], parts["readout"]
    batch_first = encoder.layers[0].self_attn.batch_first
    with torch.enable_grad():
        tokens = embed(x)
        out = encoder(tokens if batch_first else tokens.transpose(0, 1), **masks)
        return readout(out if batch_first else out.transpose(0, 1)).detach()


@pytest.mark.parametrize(
    "options",
    [{}, {"norm_first": False, "batch_first": False, "final_norm": False}],
    ids=["pre-ln", "post-ln-seq-first"],
)
def test_masks_the_users_code_passes_are_taken_with_torchs_meaning(options):
    """Issue 37 item 4: the converted model given the original's ``mask=`` (causal, float or
    bool, 2-D or per head) and ``src_key_padding_mask=`` computes what the original computes,
    on the fast and the hooked path; the masks are cut before hook_attn_scores, on top of
    edge masks."""
    parts = torch_encoder_model(0, convert=False, **options)
    model = from_torch_encoder(**parts, n_samples=8)
    n, batch = model.layout.n_tokens, 3
    x = model.example_input(batch)
    causal = nn.Transformer.generate_square_subsequent_mask(n)  # float: 0 and -inf
    padding = torch.zeros(batch, n, dtype=torch.bool)
    padding[0, -3:] = True  # window 0: its last 3 tokens are padding
    padding[2, 5:] = True
    per_head = torch.rand(batch * 4, n, n, generator=torch.Generator().manual_seed(0)) < 0.3
    per_head[:, :, 0] = False  # every query keeps a key
    cases = [
        {"mask": causal},
        {"mask": causal.isinf()},  # the same as bool
        {"src_key_padding_mask": padding},
        {"mask": causal.isinf(), "src_key_padding_mask": padding},  # torch wants one dtype
        {"mask": per_head},
    ]
    unmasked = model(x)
    for masks in cases:
        expected = _original_with_masks(parts, x, **masks)
        assert not torch.allclose(expected, unmasked, atol=1e-4)  # the mask matters
        with torch.no_grad():
            fast = model(x, **masks)
        explicit, cache = model.run_with_cache(x, **masks)
        for out in (fast, explicit):
            assert (out - expected).abs().max() <= 1e-5, sorted(masks)
    # is_causal alone is the causal mask, the masks act in the layers that run (as TL's
    # start/stop_at_layer split them), and the scores a hook sees carry the cut, with an edge
    # mask's cut on top.
    with torch.no_grad():
        whole = model(x, mask=causal)
        assert torch.allclose(model(x, is_causal=True), whole, atol=1e-6)
        mid = model(x, stop_at_layer=1, mask=causal)
        assert torch.allclose(model(mid, start_at_layer=1, mask=causal), whole, atol=1e-6)
    edge = torch.zeros(n, n, dtype=torch.bool)
    edge[-1, 0] = True
    _, cache = model.run_with_cache(x, mask=causal, edge_masks={1: edge})
    cut = causal.isinf()
    assert torch.equal(torch.isneginf(cache["attn_scores", 0]), cut.expand(batch, 4, n, n))
    assert torch.equal(torch.isneginf(cache["attn_scores", 1]), (cut | edge).expand(batch, 4, n, n))


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")
def test_padding_matches_torchs_nested_tensor_fast_path_where_tokens_are_real():
    """torch's fast path (eval, no grad, nested tensors) returns zeros at padded positions;
    the converted model computes them as torch's Python path does, so the two agree on the
    real tokens only, and the converted model's padded rows are not zero."""
    # torch nests post-LN layers only; a final norm would turn the zeros into its bias
    options = {"cls": False, "norm_first": False, "final_norm": False}
    parts = torch_encoder_model(1, **options, convert=False)
    model = from_torch_encoder(**parts, n_samples=8)
    encoder = nn.TransformerEncoder(parts["encoder"].layers[0], 2, enable_nested_tensor=True)
    encoder.layers = parts["encoder"].layers
    n, x = model.layout.n_tokens, model.example_input(2)
    padding = torch.zeros(2, n, dtype=torch.bool)
    padding[1, -4:] = True
    with torch.no_grad():
        theirs = encoder.eval()(parts["embed"](x), src_key_padding_mask=padding)
        ours = model(x, return_type="latent", src_key_padding_mask=padding)
    assert (theirs[padding] == 0).all() and (ours[padding] != 0).any()
    assert (ours[~padding] - theirs[~padding]).abs().max() <= 1e-5


@pytest.mark.unchecked
def test_masks_that_torch_would_not_take_or_that_are_biases_are_refused():
    model, _ = torch_encoder_model(0)
    n, x = model.layout.n_tokens, model.example_input(2)
    with pytest.raises(
        ArgumentError, match=r"mask must be .*tensor \[13, 13\] .*got torch.bool \[5, 5\]"
    ):
        model(x, mask=torch.zeros(5, 5, dtype=torch.bool))
    bias = torch.zeros(n, n)
    bias[0, 1] = 0.5  # an additive bias, not a mask
    with pytest.raises(ArgumentError, match=r"mask holds 1 values other than 0 and -inf"):
        model(x, mask=bias)
    with pytest.raises(
        ArgumentError,
        match=r"src_key_padding_mask must .*\[batch=2, 13\].*got torch.bool \[3, 13\]",
    ):
        model(x, src_key_padding_mask=torch.zeros(3, n, dtype=torch.bool))
    with pytest.raises(ArgumentError, match="src_key_padding_mask must be a bool or float tensor"):
        model(x, src_key_padding_mask=[[False] * n] * 2)


# ------------------------------------------------------------------------- linear readouts
# (issue 41, item 5): a readout that is one Linear of a token or of the mean, after at most
# one LayerNorm, is found, checked and read as TransformerLens's unembedding.


@pytest.mark.parametrize("cls", [True, False], ids=["token0", "mean"])
@pytest.mark.parametrize("final_norm", [False, True], ids=["own_norm", "encoder_norm"])
def test_a_norm_and_linear_readout_is_an_unembedding_that_attribution_adds_up(cls, final_norm):
    from emg_lens.inspect import direct_attribution

    model, original = torch_encoder_model(3, readout="linear", cls=cls, final_norm=final_norm)
    x = model.example_input(4)
    with torch.no_grad():
        assert torch.allclose(model(x), original(x), atol=1e-5)
    form = model.init_kwargs.get("linear_readout")
    if final_norm:  # the encoder's norm, then the readout's: two norms are no one ln_final
        assert form is None and "two norms" in model.linear_readout_note
        with pytest.raises(UnsupportedFeatureError, match="two norms"):
            _ = model.W_U
        return
    assert form == {"pool": 0 if cls else "mean", "linear": "linear", "norm": "norm"}
    assert model.W_U.shape == (D_MODEL, 4) and model.cfg.final_norm
    assert model.read_positions("logits") == ([0] if cls else None)
    logits, cache = model.run_with_cache(x)
    labels = [0, 1, 2, 3]
    table = direct_attribution(model, cache, labels, direction="logit")
    total = table.groupby("sample")["value"].sum().to_numpy()
    assert np.allclose(total, logits[range(4), labels].detach().numpy(), atol=1e-4)


def test_a_readout_of_the_users_code_has_no_unembedding_and_says_why():
    model, _ = torch_encoder_model(0)  # a small MLP on the CLS token
    assert "linear_readout" not in model.init_kwargs
    assert "2 nn.Linear" in model.linear_readout_note
    with pytest.raises(UnsupportedFeatureError, match=r"2 nn\.Linear"):
        _ = model.W_U
    parts = torch_encoder_model(0, convert=False)
    flatten = nn.Sequential(nn.Flatten(), nn.Linear(parts["layout"].n_tokens * D_MODEL, 4))
    flat = from_torch_encoder(
        parts["encoder"], embed=parts["embed"], readout=flatten, layout=parts["layout"],
        n_samples=8,
    )  # fmt: skip
    assert "flattening readout" in flat.linear_readout_note


def test_a_declared_linear_readout_is_checked_and_none_is_respected():
    parts = torch_encoder_model(1, readout="linear", final_norm=False, convert=False)
    kwargs = {**parts, "n_samples": 8}
    kwargs["embed"] = kwargs.pop("embed")
    with pytest.raises(ConversionError, match="linear_readout=3 was declared"):
        from_torch_encoder(kwargs.pop("encoder"), linear_readout=3, **kwargs)
    declared = from_torch_encoder(parts["encoder"], linear_readout=0, **kwargs)
    assert declared.unembed_positions == [0]
    none = from_torch_encoder(parts["encoder"], linear_readout="none", **kwargs)
    assert "linear_readout" not in none.init_kwargs and not none.cfg.final_norm
    with pytest.raises(ArgumentError, match="linear_readout must be"):
        from_torch_encoder(parts["encoder"], linear_readout="cls", **kwargs)


@pytest.mark.unchecked  # a bool and numpy's int where the annotation says int or str
def test_a_linear_readout_position_is_an_int_numpy_s_too_never_a_bool():
    parts = torch_encoder_model(1, readout="linear", final_norm=False, convert=False)
    kwargs = {**parts, "n_samples": 8}
    encoder = kwargs.pop("encoder")
    with pytest.raises(ArgumentError, match=r"linear_readout must be a token position .*got True$"):
        from_torch_encoder(encoder, linear_readout=True, **kwargs)
    model = from_torch_encoder(encoder, linear_readout=np.int64(0), **kwargs)
    form = model.init_kwargs["linear_readout"]
    assert form["pool"] == 0 and type(form["pool"]) is int  # a plain int: it goes to JSON
    modules = {"embed": nn.Module(), "readout": nn.Module()}
    for pool in (True, 0.0, model.layout.n_tokens):  # read back: an int position or "mean"
        bad = {**model.init_kwargs, "linear_readout": {**form, "pool": pool}}
        with pytest.raises(ArgumentError, match=rf"linear_readout must be .*'pool': {pool!r},"):
            HookedTorchEncoder(model.cfg, **modules, **bad)


def test_a_linear_readout_survives_the_checkpoint(tmp_path):
    from tests.unit.models.converted_models import NormLinearReadout

    model, _ = torch_encoder_model(2, readout="linear", final_norm=False)
    path = save_checkpoint(model, tmp_path / "ckpt")
    modules = {
        "embed": PatchTokens(6, 8, D_MODEL, 4, True),
        "readout": NormLinearReadout(D_MODEL, 4, True),
    }
    again = load_checkpoint(path, modules=modules)
    x = model.example_input(3)
    assert again.init_kwargs == model.init_kwargs and torch.equal(again(x), model(x))
    assert torch.equal(again.W_U, model.W_U)
    # `study check` builds the config with stand-in modules: the form is read, not used
    stand_in = HookedTorchEncoder(
        model.cfg, embed=nn.Module(), readout=nn.Module(), **model.init_kwargs
    )
    with pytest.raises(ArgumentError, match=r"readout\.linear as its nn\.Linear"):
        _ = stand_in.W_U


def test_a_linear_readout_is_found_on_an_encoder_left_in_training_mode():
    """Dropout is off for the parity checks (as the README's models.py converts a fresh
    encoder, in training mode)."""
    parts = torch_encoder_model(1, readout="linear", final_norm=False, cls=False, convert=False)
    parts["encoder"].train()
    encoder = parts.pop("encoder")
    model = from_torch_encoder(encoder, n_samples=8, **parts)
    assert model.init_kwargs["linear_readout"]["pool"] == "mean" and encoder.training


class _DropsTheLastToken(nn.TransformerEncoderLayer):
    def forward(self, src, *args, **kwargs):
        return super().forward(src, *args, **kwargs)[:, :-1]


def _converted(edit=None, build=None, **kwargs):
    """`from_torch_encoder` of `torch_encoder_model`'s parts (built with ``build``), after
    ``edit(parts)``."""
    parts = torch_encoder_model(0, convert=False, **(build or {}))
    if edit is not None:
        edit(parts)
    encoder = parts.pop("encoder")
    return from_torch_encoder(encoder, n_samples=8, **parts, **kwargs)


def _set(*changes):
    """An edit of the parts: each ``(path, value)`` sets ``path`` (a part's name, then
    attributes and layer indices, dotted) to ``value`` (a function of the parts: its value)."""

    def edit(parts):
        for path, value in changes:
            key, *names = path.split(".")
            value = value(parts) if callable(value) and not isinstance(value, nn.Module) else value
            if not names:
                parts[key] = value
                continue
            owner = parts[key]
            for name in names[:-1]:
                owner = owner[int(name)] if name.isdigit() else getattr(owner, name)
            setattr(owner, names[-1], value)

    return edit


def _layout_of(**fields):
    def layout(parts):
        return TokenLayout.from_dict({**parts["layout"].to_dict(), **fields})

    return layout


_SIGNAL = [-1] + [c for c in range(1, 7) for _ in range(2)]  # each EMG token's channel + 1


@pytest.mark.parametrize(
    ("edit", "build", "kwargs", "error", "match"),
    [
        pytest.param(
            _set(
                ("encoder", lambda parts: [parts["encoder"].layers[0], nn.Linear(D_MODEL, D_MODEL)])
            ),
            None,
            {},
            ConversionError,
            r"\[1\] is a Linear; supported: torch.nn.TransformerEncoderLayer",
            # the annotation refuses the list where beartype's sampled item is the Linear
            marks=pytest.mark.unchecked,
        ),
        (
            _set(("encoder.layers.0.norm2.eps", 1e-3)),
            None,
            {},
            ConversionError,
            r"layers\.0: its norms \(eps 1e-05, 0\.001\) and linear layers disagree on eps",
        ),
        (
            _set(("encoder.layers.1.norm1.eps", 1e-3), ("encoder.layers.1.norm2.eps", 1e-3)),
            None,
            {},
            ConversionError,
            r"layers\.1 differs from layers\.0 in \{'eps': \(1e-05, 0\.001\)\}",
        ),
        (
            _set(("encoder.norm.eps", 1e-3)),
            None,
            {},
            ConversionError,
            r"norm's eps=0\.001 must be its layers' 1e-05",
        ),
        (
            _set(("readout", nn.Identity())),
            None,
            {},
            ConversionError,
            r"readout \(Identity\) returned torch.float32 \[1, 13, 16\] .* logits \[batch",
        ),
        (
            _set(("encoder", lambda parts: [_DropsTheLastToken(D_MODEL, 4, 32, batch_first=True)])),
            None,
            {},
            ConversionError,
            r"the source returned torch.float32 \[2, 12, 16\], the converted model .*\[2, 13, 16\]",
        ),
        (
            None,
            {"readout": "linear", "final_norm": False},
            {"linear_readout": 99},
            ArgumentError,
            r"linear_readout=99 is no token position of the 13 tokens",
        ),
        (
            _set(("layout", _layout_of(channel=_SIGNAL))),
            None,
            {},
            LayoutError,
            r"layout group 'emg' embeds channels \[1, 2, 3, 4, 5, 6\], not the next input rows",
        ),
        (
            _set(("layout", _layout_of(group=["cls"] * 13, channel=[-1] * 13, time=[-1] * 13))),
            None,
            {},
            LayoutError,
            r"the layout has no signal tokens, only \('cls',\)",
        ),
    ],
    ids=[
        "not-a-layer",
        "norms-of-a-layer-differ",
        "layers-differ",
        "final-norm-eps",
        "readout-not-logits",
        "source-drops-a-token",
        "readout-position-past-the-tokens",
        "channels-not-the-input-rows",
        "no-signal-tokens",
    ],
)
def test_an_encoder_the_converter_cannot_read_is_refused_by_name(edit, build, kwargs, error, match):
    with pytest.raises(error, match=match):
        _converted(edit, build, **kwargs)


def test_modules_given_back_that_do_not_fit_the_config_are_refused():
    """What a checkpoint is rebuilt from: a config without final_norm for a readout's folded
    norm, or an embed that gives other tokens than the layout's."""
    model = _converted(build={"readout": "linear", "final_norm": False})
    modules = {"embed": model.embed, "readout": model.head}
    no_ln_final = replace(model.cfg, final_norm=False)
    with pytest.raises(ArgumentError, match=r"linear_readout's norm needs a config with final_"):
        HookedTorchEncoder(no_ln_final, **modules, **model.init_kwargs)
    other = HookedTorchEncoder(
        model.cfg, embed=nn.Identity(), readout=modules["readout"], **model.init_kwargs
    )
    with pytest.raises(
        InputShapeError, match=r"embed must return \[2, 13, 16\], got .*\[2, 6, 8\]"
    ):
        other(other.example_input(2))


class _SameTokens(nn.Module):
    """A tokenizer without a position or bias per channel: a window of zeros gives zeros."""

    def forward(self, x):
        return x.new_zeros(x.shape[0], 12, D_MODEL)


def test_a_tokenizer_that_does_not_tell_channels_apart_has_no_data_free_tokens():
    model = _converted(build={"cls": False})
    same = HookedTorchEncoder(
        model.cfg, embed=_SameTokens(), readout=model.head, **model.init_kwargs
    )
    with pytest.raises(UnsupportedFeatureError, match=r"_SameTokens\) has no data-free channel"):
        same.data_free_tokens()
