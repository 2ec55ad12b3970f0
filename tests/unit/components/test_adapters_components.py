"""The component extensions converted architectures use (issue 24): post-LN blocks, biases held
at zero, no final norm, qk-norm, a custom attention scale, and a head structure (per-head
slices of d_model and a base mask of token groups), each on both attention paths."""

from __future__ import annotations

import pytest
import torch

from emg_lens import EncoderConfig
from emg_lens.components import Attention, HeadStructure, TransformerBlock, make_norm
from emg_lens.errors import ConfigError
from tests.tiny import perturb_biases


def _cfg(**overrides):
    return EncoderConfig.preset("tiny", **{"seed": 0, "dtype": torch.float64, **overrides})


def _attention(cfg, structure=None, n_tokens=12):
    attn = Attention(cfg)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in attn.parameters():
            param.copy_(torch.randn(param.shape, generator=gen, dtype=param.dtype))
    if structure is not None:
        attn.set_structure(structure, n_tokens)
    return attn.eval()


def _explicit(attn, x, mask=None):
    seen = {}
    attn.hook_attn_scores.add_hook(lambda t, hook: seen.setdefault("scores", t))
    try:
        return attn(x, mask), seen["scores"]
    finally:
        attn.hook_attn_scores.remove_hooks()


# 12 tokens as 3 channels x 4 patches (channel-major): "spatial" heads see the tokens of their
# patch (a permutation gathers them), "temporal" heads those of their channel (contiguous).
PATCH = tuple(t % 4 for t in range(12))
CHANNEL = tuple(t // 4 for t in range(12))
CRISS_CROSS = [
    HeadStructure((0, 2), reads=(0, 8), writes=(0, 8), groups=PATCH),
    HeadStructure((2, 4), reads=(8, 16), writes=(8, 16), groups=CHANNEL),
]
STRUCTURES = {
    "criss_cross": CRISS_CROSS,
    "one_group_set": [HeadStructure((0, 4), groups=CHANNEL)],
    "unequal_groups": [HeadStructure((0, 4), groups=(0,) * 5 + (1,) * 7)],
    "slices_only": [HeadStructure((0, 1), reads=(4, 12)), HeadStructure((1, 4), writes=(0, 6))],
    "mixed": [HeadStructure((0, 3), groups=PATCH), HeadStructure((3, 4))],
}


def _masks():
    gen = torch.Generator().manual_seed(3)
    yield None
    yield torch.rand(12, 12, generator=gen) < 0.3
    yield torch.rand(4, 12, 12, generator=gen) < 0.3
    yield torch.rand(2, 1, 12, 12, generator=gen) < 0.3
    full = torch.zeros(2, 4, 12, 12, dtype=torch.bool)
    full[:, :, 5] = True  # query 5 may read nothing: a zero row, never NaN
    yield full


@pytest.mark.parametrize("kernel", ["matmul", "sdpa"])
@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_structured_fast_path_equals_the_explicit_path(name, kernel, monkeypatch):
    """Both kernels of the grouped fast path: matmul + softmax (short groups on CPU) and SDPA
    (longer groups, and every group on a GPU)."""
    import emg_lens.components.head_structure as head_structure

    monkeypatch.setattr(head_structure, "SMALL_GROUP", 64 if kernel == "matmul" else 0)
    attn = _attention(_cfg(), STRUCTURES[name])
    x = torch.randn(2, 12, 16, dtype=torch.float64)
    for mask in _masks():
        fast = attn(x, mask)
        explicit, scores = _explicit(attn, x, mask)
        torch.testing.assert_close(fast, explicit, atol=1e-10, rtol=1e-10)
        # hook_attn_scores shows -inf where the architecture has no edge, and where the edge
        # mask cuts one: their union
        cut = attn.base_mask if attn.base_mask is not None else torch.zeros(4, 12, 12, dtype=bool)
        if mask is not None:
            cut = cut | mask
        assert torch.equal(torch.isneginf(scores), cut.expand(2, 4, 12, 12))
        assert torch.isfinite(fast).all()


def test_structure_is_the_original_computation():
    # The criss-cross heads computed by hand: spatial heads over the first half of d_model
    # within a patch, temporal heads over the second half within a channel.
    attn = _attention(_cfg(), CRISS_CROSS)
    x = torch.randn(2, 12, 16, dtype=torch.float64)
    out = torch.zeros(2, 12, 16, dtype=torch.float64)
    grid = x.view(2, 3, 4, 16)  # [batch, channel, patch, d_model]
    for head in range(4):
        half = slice(0, 8) if head < 2 else slice(8, 16)
        seqs = grid.transpose(1, 2) if head < 2 else grid  # [batch, group, member, d_model]
        xs = seqs[..., half]
        q = xs @ attn.W_Q[head, half] + attn.b_Q[head]
        k = xs @ attn.W_K[head, half] + attn.b_K[head]
        v = xs @ attn.W_V[head, half] + attn.b_V[head]
        z = torch.softmax(q @ k.transpose(-1, -2) / 2.0, -1) @ v
        y = z @ attn.W_O[head][:, half]
        y = y.transpose(1, 2) if head < 2 else y
        out[..., half] += y.reshape(2, 12, 8)
    out += attn.b_O
    torch.testing.assert_close(attn(x), out, atol=1e-10, rtol=1e-10)
    # The weights outside a head's slices take no part (zero blocks in W_Q ... W_O)
    with torch.no_grad():
        attn.W_Q[0, 8:] += 5.0
        attn.W_O[3, :, :8] += 5.0
    torch.testing.assert_close(attn(x), out, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(_explicit(attn, x)[0], out, atol=1e-10, rtol=1e-10)


def test_structure_keeps_zero_blocks_zero_in_training():
    attn = _attention(_cfg(), CRISS_CROSS).train()
    with torch.no_grad():
        attn.W_Q[:2, 8:] = 0.0
    x = torch.randn(2, 12, 16, dtype=torch.float64)
    attn(x).sum().backward()
    assert (attn.W_Q.grad[:2, 8:] == 0).all() and (attn.W_Q.grad[:2, :8] != 0).any()
    attn.zero_grad()
    _explicit(attn, x)[0].sum().backward()
    assert (attn.W_Q.grad[:2, 8:] == 0).all() and (attn.W_O.grad[2:, :, :8] == 0).all()


def test_bad_structures_are_refused():
    attn = Attention(_cfg())
    with pytest.raises(ConfigError, match=r"cover heads 0\.\.3"):
        attn.set_structure([HeadStructure((0, 2))], 12)
    with pytest.raises(ConfigError, match="12 tokens"):
        attn.set_structure([HeadStructure((0, 4), groups=(0, 1))], 12)
    with pytest.raises(ConfigError, match="slice of d_model"):
        attn.set_structure([HeadStructure((0, 4), reads=(8, 20))], 12)


@pytest.mark.parametrize(
    "overrides",
    [
        {"qk_norm": True},
        {"attn_scale": 0.7},
        {"zero_biases": ["b_K", "b_O"]},
        {"qk_norm": True, "zero_biases": ["b_Q", "b_K", "b_V"]},
    ],
)
def test_attention_options_on_both_paths(overrides):
    attn = _attention(_cfg(**overrides))
    x = torch.randn(2, 12, 16, dtype=torch.float64)
    for mask in _masks():
        torch.testing.assert_close(attn(x, mask), _explicit(attn, x, mask)[0], atol=1e-10, rtol=0)
    saved = set(attn.state_dict())
    for name in overrides.get("zero_biases", []):
        assert name not in saved and torch.equal(
            getattr(attn, name), torch.zeros_like(getattr(attn, name))
        )


def test_qk_norm_and_scale_compute_the_formula():
    attn = _attention(_cfg(qk_norm=True, attn_scale=0.5))
    perturb_biases(attn)
    x = torch.randn(2, 12, 16, dtype=torch.float64)
    q = torch.einsum("bpd,hde->bphe", x, attn.W_Q) + attn.b_Q
    k = torch.einsum("bpd,hde->bphe", x, attn.W_K) + attn.b_K
    v = torch.einsum("bpd,hde->bphe", x, attn.W_V) + attn.b_V
    q = torch.nn.functional.layer_norm(q, (4,), attn.q_norm.w, attn.q_norm.b, 1e-5)
    k = torch.nn.functional.layer_norm(k, (4,), attn.k_norm.w, attn.k_norm.b, 1e-5)
    pattern = torch.softmax(torch.einsum("bqhe,bkhe->bhqk", q, k) / 0.5, -1)
    z = torch.einsum("bhqk,bkhe->bqhe", pattern, v)
    expected = torch.einsum("bqhe,hed->bqd", z, attn.W_O) + attn.b_O
    torch.testing.assert_close(attn(x), expected, atol=1e-10, rtol=1e-10)


def test_post_norm_block_is_torch_norm_first_false():
    cfg = _cfg(norm_position="post", act_fn="relu")
    block = TransformerBlock(cfg, 0)
    perturb_biases(block)
    torch.nn.init.normal_(block.attn.W_O)
    for w in (block.attn.W_Q, block.attn.W_K, block.attn.W_V, block.mlp.W_in, block.mlp.W_out):
        torch.nn.init.normal_(w, std=0.3)
    block.eval()
    x = torch.randn(2, 7, 16, dtype=torch.float64)
    seen = {}
    names = ("hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post")
    for name in names:
        block.get_submodule(name).add_hook(lambda t, hook, n=name: seen.__setitem__(n, t))
    out = block(x)
    ln = torch.nn.functional.layer_norm
    mid = ln(x + seen["hook_attn_out"], (16,), block.ln1.w, block.ln1.b, cfg.eps)
    torch.testing.assert_close(seen["hook_resid_mid"], mid)
    mlp = torch.relu(mid @ block.mlp.W_in + block.mlp.b_in) @ block.mlp.W_out + block.mlp.b_out
    torch.testing.assert_close(seen["hook_mlp_out"], mlp)
    expected = ln(mid + mlp, (16,), block.ln2.w, block.ln2.b, cfg.eps)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(seen["hook_resid_post"], expected)


def test_norm_options():
    cfg = _cfg(final_norm=False, zero_biases=["ln2.b"])
    assert isinstance(make_norm(cfg, "ln_final"), torch.nn.Identity)
    block = TransformerBlock(cfg, 0)
    params = dict(block.named_parameters())
    assert "ln1.b" in params and "ln2.b" not in params and "ln2.b" not in block.state_dict()


def test_new_config_fields_leave_existing_configs_unchanged():
    # A native model's config.json (and so its checkpoint and provenance digests) does not
    # mention the converters' fields; a converted model's round-trips.
    assert not {"norm_position", "final_norm", "zero_biases", "attn_scale", "qk_norm"} & set(
        EncoderConfig.preset("demo").to_dict()
    )
    cfg = _cfg(norm_position="post", final_norm=False, zero_biases=["b_O", "b_K"], qk_norm=True)
    again = EncoderConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.zero_biases == ["b_K", "b_O"]
    for bad in ({"norm_position": "middle"}, {"zero_biases": ["b_X"]}, {"attn_scale": 0.0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            _cfg(**bad)
