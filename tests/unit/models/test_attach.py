"""`attach` opens hand-written attention models in place (issue 38, items 1 and 2): every call
found; SDPA's, MultiheadAttention's and explicit softmaxes' other forms; cross-attention and
folded calls, their cuts equal to the model's own masks; what cannot be attached is refused by
name. What every attached model keeps (the original's output bit for bit with no hook, a cut
equal to its own mask argument, TransformerLens shapes, gradients at the scores) is
test_hook_contract's, over the table (`tests.unit.models.table`)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from emg_lens import LayoutError
from emg_lens.errors import (
    ArgumentError,
    ConversionError,
    InputShapeError,
    UnsupportedFeatureError,
)
from emg_lens.layout import TokenLayout
from emg_lens.models import attach
from emg_lens.models.attached.examples import Block, PatchAttention, TinyAttention
from emg_lens.models.attached.find import Fold, find_folds, probe
from tests.unit.models import table
from tests.unit.models.attached_models import (
    BATCH,
    HEADS,
    LAYOUT,
    N_CHANNELS,
    N_SAMPLES,
    D,
    QKVAttention,
    build,
)

KINDS = ["qkv", "sdpa", "mha", "torch_encoder"]


def _attached(kind):
    """A fresh ``(original, attached)`` of the table's hand-written form ``kind``."""
    model, net = table.build(f"attached_{kind}")
    return net, model


def _cut(seed, per_head=True):
    """A random cut [head, query, key] that leaves every query its own key."""
    gen = torch.Generator().manual_seed(seed)
    cut = torch.rand(HEADS if per_head else 1, N_CHANNELS, N_CHANNELS, generator=gen) < 0.5
    return cut & ~torch.eye(N_CHANNELS, dtype=torch.bool)


def _x(seed=1):
    return torch.randn(BATCH, N_CHANNELS, N_SAMPLES, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", KINDS)
def test_finds_every_attention_call_and_the_blocks(kind):
    net, model = _attached(kind)
    expected = {"qkv": "softmax", "sdpa": "sdpa"}.get(kind, "mha")
    assert [c.kind for c in model.calls] == [expected] * 2
    assert model.layer_heads == (HEADS, HEADS)
    blocks = "encoder.layers" if kind == "torch_encoder" else "blocks"
    assert model.resid_modules == {0: f"{blocks}.0", 1: f"{blocks}.1"}
    assert model.model is net  # the user's module, not a copy
    assert {id(p) for p in model.parameters()} == {id(p) for p in net.parameters()}


def test_a_probe_given_stands_for_attachs_own_where_its_batch_keeps_the_rule():
    """``probed``: a probe the caller made (as attach_braindecode does to read its layouts) is
    used, with no forward of its own (nothing folded here); one whose batch is a token count
    (4 channel tokens) is not, and attach probes the model itself. Either way the model opens
    as it does from its own probe."""
    net = build("qkv")
    forwards = []
    net.register_forward_pre_hook(lambda module, args: forwards.append(args[0].shape[0]))
    plain = attach(net, layout=LAYOUT, n_samples=N_SAMPLES)
    for batch, runs in ((3, []), (N_CHANNELS, [2])):  # 2: attach's own example's batch
        example = torch.randn(batch, N_CHANNELS, N_SAMPLES)
        found = probe(net, example, None)
        forwards.clear()
        model = attach(net, layout=LAYOUT, n_samples=N_SAMPLES, probed=(found, example))
        assert forwards == runs
        # the same calls, as the probe saw them (at its batch: a checkpoint records it)
        assert [c.batch for c in model.calls] == [runs[0] if runs else batch] * 2
        assert [replace(c, batch=0) for c in model.calls] == [
            replace(c, batch=0) for c in plain.calls
        ]
        assert (model.folds, model.resid_modules, model.cfg) == (
            plain.folds,
            plain.resid_modules,
            plain.cfg,
        )
        with torch.no_grad():
            assert torch.equal(model(_x()), plain(_x()))


@pytest.mark.parametrize("kind", KINDS)
def test_each_blocks_stream_is_the_next_blocks_input(kind):
    """The hand-written forms' blocks follow each other: one writes what the next reads.
    (The scores, the pattern, the output and the cuts of every attached model are
    test_hook_contract's.)"""
    _, model = _attached(kind)
    _, cache = model.run_with_cache(_x())
    for layer in range(2):
        assert cache["resid_pre", layer].shape == (BATCH, N_CHANNELS, D)
        assert cache["resid_post", layer].shape == (BATCH, N_CHANNELS, D)
    assert torch.equal(cache["resid_post", 0], cache["resid_pre", 1])


def test_sdpa_float_masks_causal_and_three_dimensional_calls():
    """SDPA's other forms: an additive float mask, is_causal, a head-less [batch, pos, d]."""

    class Net(nn.Module):
        def __init__(self, form):
            super().__init__()
            self.form, self.embed = form, nn.Linear(N_SAMPLES, D)

        def forward(self, x, mask=None):
            h = self.embed(x)
            if self.form == "causal":
                z = F.scaled_dot_product_attention(h, h, h, is_causal=True)
            else:
                q = h.view(len(h), N_CHANNELS, HEADS, -1).transpose(1, 2)
                z = F.scaled_dot_product_attention(q, q, q, attn_mask=mask, scale=0.3)
            return z.flatten(1)

    x, cut = _x(), _cut(5)
    model = attach(Net("float"), layout=LAYOUT, n_samples=N_SAMPLES)
    bias = torch.zeros(cut.shape).masked_fill(cut, float("-inf"))
    assert (model(x, edge_masks={0: cut}) - model.model(x, bias)).abs().max() <= 1e-6
    partial = torch.randn(cut.shape)  # an additive bias of the model's own stays in
    got = model(x, partial, edge_masks={0: cut})
    assert (got - model.model(x, partial.masked_fill(cut, float("-inf")))).abs().max() <= 1e-6
    causal = attach(Net("causal"), layout=LAYOUT, n_samples=N_SAMPLES)
    _, cache = causal.run_with_cache(x)
    assert cache["pattern", 0].shape == (BATCH, 1, N_CHANNELS, N_CHANNELS)
    assert torch.equal(cache["pattern", 0][0, 0].triu(1), torch.zeros(N_CHANNELS, N_CHANNELS))
    head_cut = _cut(6, per_head=False) & torch.ones(N_CHANNELS, N_CHANNELS).tril().bool()
    blocked = head_cut[0] | ~torch.ones(N_CHANNELS, N_CHANNELS).tril().bool()
    h = causal.model.embed(x)
    expected = F.scaled_dot_product_attention(h, h, h, attn_mask=~blocked).flatten(1)
    assert (causal(x, edge_masks={0: head_cut}) - expected).abs().max() <= 1e-6


def test_key_padding_and_need_weights_of_multihead_attention():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(N_SAMPLES, D)
            self.attn = nn.MultiheadAttention(D, HEADS)  # sequence first

        def forward(self, x, padding=None):
            h = self.embed(x).transpose(0, 1)
            out, weights = self.attn(h, h, h, key_padding_mask=padding)
            return out.mean(0) + weights.mean((1, 2))[:, None]

    torch.manual_seed(0)
    net = Net().eval()
    model = attach(net, layout=LAYOUT, n_samples=N_SAMPLES)
    x = _x()
    padding = torch.zeros(BATCH, N_CHANNELS, dtype=torch.bool)
    padding[:, -1] = True
    cut = torch.zeros(N_CHANNELS, N_CHANNELS, dtype=torch.bool)
    cut[:, 2] = True
    both = padding[:, None, None, :] | cut
    with torch.no_grad():
        got = model(x, padding, edge_masks={0: cut})
        own = net(x, both[:, 0, 0] | cut[0])  # every query loses key 2 too: a padding mask
    assert (got - own).abs().max() <= 1e-5


@pytest.mark.parametrize(
    "extra", [{"add_bias_kv": True}, {"add_zero_attn": True}], ids=["bias_k", "add_zero_attn"]
)
def test_multihead_attention_with_keys_beyond_the_tokens_is_refused_by_name(extra):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(N_SAMPLES, D)
            self.attn = nn.MultiheadAttention(D, HEADS, batch_first=True, **extra)

        def forward(self, x):
            h = self.embed(x)
            return self.attn(h, h, h)[0].mean(1)

    model = attach(Net().eval(), layout=LAYOUT, n_samples=N_SAMPLES)
    name = next(iter(extra)).replace("add_bias_kv", "bias_k")
    with pytest.raises(ConversionError, match=rf"uses {name}, which adds keys beyond the tokens"):
        model(_x(), edge_masks={0: torch.zeros(N_CHANNELS, N_CHANNELS, dtype=torch.bool)})


def test_explicit_softmax_in_a_named_module_and_an_ambiguous_one():
    class TwoSoftmax(nn.Module):
        """A module computing two attentions in one forward (criss-cross style)."""

        def __init__(self):
            super().__init__()
            self.embed, self.qk = nn.Linear(N_SAMPLES, D), nn.Linear(D, 2 * D)

        def forward(self, x):
            h = self.embed(x)
            q, k = self.qk(h).view(len(h), N_CHANNELS, 2, HEADS, -1).permute(2, 0, 3, 1, 4)
            first = (q @ k.transpose(-1, -2)).softmax(-1) @ q
            second = torch.softmax(first @ k.transpose(-1, -2), dim=-1) @ k
            return second.flatten(1)

    with pytest.raises(ConversionError, match=r"<root> \(TwoSoftmax\).*2 times"):
        attach(TwoSoftmax(), layout=LAYOUT, n_samples=N_SAMPLES)
    model = attach(TwoSoftmax(), layout=LAYOUT, n_samples=N_SAMPLES, attention=TwoSoftmax)
    assert len(model.calls) == 2
    glob = attach(build("qkv"), layout=LAYOUT, n_samples=N_SAMPLES, attention="blocks.*.attn")
    assert [c.module for c in glob.calls] == ["blocks.0.attn", "blocks.1.attn"]


def test_what_cannot_be_attached_is_refused_by_name():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(N_CHANNELS * N_SAMPLES, 3), nn.Softmax(-1))
    with pytest.raises(ConversionError, match="computes no attention anywhere"):
        attach(mlp, layout=LAYOUT, n_samples=N_SAMPLES)
    with pytest.raises(ConversionError, match="names no module"):
        attach(build("qkv"), layout=LAYOUT, n_samples=N_SAMPLES, attention="encoder.*")
    wrong = TokenLayout.channel_tokens({"emg": N_CHANNELS})  # a CLS token the model lacks
    with pytest.raises(LayoutError, match="attends 4 queries to 4 keys, but the layout has 5"):
        attach(build("sdpa"), layout=wrong, n_samples=N_SAMPLES)
    with pytest.raises(ArgumentError, match="n_samples"):
        attach(build("sdpa"), layout=LAYOUT)
    model = attach(build("sdpa"), layout=LAYOUT, n_samples=N_SAMPLES)
    with pytest.raises(
        LayoutError, match=r"edge_masks\[0\] must be a bool tensor \[\.\.\., 4, 4\]"
    ):
        model(_x(), edge_masks={0: torch.zeros(5, 5, dtype=torch.bool)})
    with pytest.raises(LayoutError, match="must be an int in"):
        model(_x(), edge_masks={2: torch.zeros(4, 4, dtype=torch.bool)})
    with pytest.raises(UnsupportedFeatureError, match=r"W_Q.*from_torch_encoder"):
        _ = model.W_Q
    for name in ("start_at_layer", "stop_at_layer"):  # TransformerLens's, not the model's
        with pytest.raises(UnsupportedFeatureError, match=rf"forward\({name}=.*layer-by-layer"):
            model(_x(), **{name: 1})
        assert torch.equal(model(_x(), **{name: None}), model(_x()))  # None asks for nothing


class Perceiver(nn.Module):
    """Learned queries read the channel tokens (cross-attention, as LUNA does), then attend
    each other; the model's own mask for the cross step is ``cross_mask`` [query, key]."""

    def __init__(self, n_queries=3):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Linear(N_SAMPLES, D)
        self.queries = nn.Parameter(torch.randn(n_queries, D))
        self.read = nn.MultiheadAttention(D, HEADS, batch_first=True)
        self.mix = nn.MultiheadAttention(D, HEADS, batch_first=True)
        self.head = nn.Linear(D, 3)

    def forward(self, x, cross_mask=None):
        tokens = self.embed(x)
        q = self.queries.expand(len(x), -1, -1)
        q = q + self.read(q, tokens, tokens, attn_mask=cross_mask, need_weights=False)[0]
        q = q + self.mix(q, q, q, need_weights=False)[0]
        return self.head(q.mean(1))


def test_cross_attention_layouts_edge_sets_and_exact_cuts():
    from emg_lens.edges import between, parse
    from emg_lens.hooks import compile_edges

    keys = TokenLayout.channel_tokens({"emg": 2, "acc": 2}, cls_token=False)
    learned = TokenLayout(("query",) * 3, (-1,) * 3, (-1,) * 3)
    net = Perceiver().eval()
    with pytest.raises(LayoutError, match=r"3 queries to 4 keys.*TokenLayout\.cross"):
        attach(net, layout=keys, n_samples=N_SAMPLES)
    model = attach(net, layout=[TokenLayout.cross(learned, keys), learned], n_samples=N_SAMPLES)
    assert [(c.n_query, c.n_key) for c in model.calls] == [(3, 4), (3, 3)]
    with pytest.raises(LayoutError, match="layout_of"):
        _ = model.layout
    edges = between("query", "emg")  # every query reading the sEMG channels
    assert parse(str(edges)) == edges
    masks = compile_edges(edges, model, [0])
    assert masks[0].shape == (HEADS, 3, 4) and masks[0][:, :, :2].all()
    assert not masks[0][:, :, 2:].any()
    x = _x()
    with torch.no_grad():
        got = model(x, edge_masks=masks)
        own = net(x, masks[0][0])  # MultiheadAttention: True = may not attend
    assert (got - own).abs().max() <= 1e-5 and (got - net(x)).abs().max() > 1e-4
    _, cache = model.run_with_cache(x)
    assert cache["pattern", 0].shape == (BATCH, HEADS, 3, 4)
    assert cache["pattern", 1].shape == (BATCH, HEADS, 3, 3)
    with pytest.raises(LayoutError, match="'emg'"):  # the self-attention has no sEMG tokens
        compile_edges(edges, model, [1])


def test_a_cross_layout_round_trips_through_its_dict_form():

    keys = TokenLayout.channel_tokens({"emg": 2}, cls_token=True, channel_names=["a", "b"])
    cross = TokenLayout.cross(TokenLayout(("query",) * 2, (-1, -1), (-1, -1)), keys)
    assert TokenLayout.from_dict(cross.to_dict()) == cross
    assert "2 queries" in str(cross) and cross.describe_sides().startswith("2 query tokens")


def test_the_block_is_the_stack_element_not_a_wrapper_around_it():
    """One encoder layer: `encoder` and `encoder.layers.0` both hold the one call and map the
    stream to itself; the block is the stack's element (resid_post is not after `norm`)."""
    from tests.unit.models.attached_models import TorchEncoderModel

    torch.manual_seed(0)
    net = TorchEncoderModel().eval()
    net.encoder.layers = net.encoder.layers[:1]
    net.encoder.num_layers = 1
    net.encoder.norm = nn.LayerNorm(D)
    model = attach(net, layout=LAYOUT, n_samples=N_SAMPLES)
    assert model.resid_modules == {0: "encoder.layers.0"}
    _, cache = model.run_with_cache(_x())
    stream = net.encoder.layers[0](net.embed(_x()).transpose(0, 1)).transpose(0, 1)
    assert (cache["resid_post", 0] - stream).abs().max() <= 1e-6


def test_a_cross_attention_figure_names_both_sides():
    import matplotlib

    matplotlib.use("Agg")
    from emg_lens.inspect import plot_pattern

    keys = TokenLayout.channel_tokens({"emg": 2, "acc": 2}, cls_token=False)
    learned = TokenLayout(("query",) * 3, (-1,) * 3, (-1,) * 3)
    net = Perceiver().eval()
    model = attach(net, layout=[TokenLayout.cross(learned, keys), learned], n_samples=N_SAMPLES)
    _, cache = model.run_with_cache(_x())
    fig = plot_pattern(model, cache, 0, 1)
    main = next(ax for ax in fig.axes if ax.get_xlabel().startswith("key token"))
    left = next(ax for ax in fig.axes if ax.get_ylabel().startswith("query token"))
    assert [t.get_text() for t in main.get_xticklabels()] == ["emg0", "emg1", "acc0", "acc1"]
    assert [t.get_text() for t in main.get_yticklabels()] == ["query0", "query1", "query2"]
    assert "(queries)" in left.get_ylabel() and "(keys)" in main.get_xlabel()


def test_a_softmax_module_inside_the_attention_and_a_positive_dim():
    """`self.softmax = nn.Softmax(dim=3)`, as some repositories write it: the call belongs to
    the attention module around the nn.Softmax, and a cut still equals an -inf bias."""

    class SoftmaxModuleAttention(QKVAttention):
        def __init__(self):
            super().__init__()
            self.softmax = nn.Softmax(dim=3)

        def forward(self, x, bias=None):
            b, n, d = x.shape
            q, k, v = self.qkv(x).reshape(b, n, 3, HEADS, d // HEADS).permute(2, 0, 3, 1, 4)
            attn = (q @ k.transpose(-2, -1)) * (d // HEADS) ** -0.5
            attn = self.softmax(attn if bias is None else attn + bias)
            return self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))

    from tests.unit.models.attached_models import PreNormBlock, _Classifier

    torch.manual_seed(0)
    net = _Classifier([PreNormBlock(SoftmaxModuleAttention()) for _ in range(2)]).eval()
    model = attach(net, layout=LAYOUT, n_samples=N_SAMPLES)
    assert [c.module for c in model.calls] == ["blocks.0.attn", "blocks.1.attn"]
    cut = _cut(8)
    bias = torch.zeros(cut.shape).masked_fill(cut, float("-inf"))
    with torch.no_grad():
        assert (model(_x(), edge_masks={0: cut, 1: cut}) - net(_x(), bias)).abs().max() <= 1e-6


def test_layers_with_different_head_counts_get_masks_of_their_own():
    """A cross-attention with 4 heads, then a self-attention with 2: each layer's compiled
    mask has its own head count, and a study's cut runs."""
    from emg_lens.hooks import compile_edges

    class Net(Perceiver):
        def __init__(self):
            super().__init__()
            self.read = nn.MultiheadAttention(D, 4, batch_first=True)

    keys = TokenLayout.channel_tokens({"emg": 2, "acc": 2}, cls_token=False)
    learned = TokenLayout(("query",) * 3, (-1,) * 3, (-1,) * 3)
    model = attach(Net().eval(), layout=[TokenLayout.cross(learned, keys), learned], n_samples=8)
    assert model.layer_heads == (4, 2)
    masks = compile_edges("cross_channel | within(query)", model)
    assert masks[0].shape == (4, 3, 4) and masks[1].shape == (2, 3, 3)
    assert torch.isfinite(model(_x(), edge_masks=masks)).all()


def test_a_folded_softmax_inside_a_named_module():
    """ATCNet's form: heads folded into the batch (`torch.cat(q.split(d, -1), 0)`), a 3-D
    softmax over [batch * heads, query, key]; counted inside the modules `attention=` names
    (never by itself), and a cut equals an -inf bias."""

    class Folded(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.embed, self.qkv = nn.Linear(N_SAMPLES, D), nn.Linear(D, 3 * D)

        def forward(self, x, bias=None):
            q, k, v = self.qkv(self.embed(x)).chunk(3, -1)
            q, k, v = (torch.cat(t.split(D // HEADS, -1), 0) for t in (q, k, v))
            scores = q.bmm(k.transpose(-2, -1)) / (D // HEADS) ** 0.5
            w = torch.softmax(scores if bias is None else scores + bias, -1)
            return torch.cat(w.bmm(v).split(len(x), 0), -1).flatten(1)

    with pytest.raises(ConversionError, match="computes no attention"):
        attach(Folded(), layout=LAYOUT, n_samples=N_SAMPLES)
    model = attach(Folded(), layout=LAYOUT, n_samples=N_SAMPLES, attention=Folded)
    assert [(c.kind, c.batch, c.heads) for c in model.calls] == [("softmax", 2 * HEADS, 1)]
    assert model.folds == (Fold(HEADS, False),)  # heads folded head-major
    cut = _cut(9, per_head=False)
    bias = torch.zeros(cut.shape).masked_fill(cut, float("-inf"))
    x = _x()
    with torch.no_grad():
        assert (model(x, edge_masks={0: cut}) - model.model(x, bias)).abs().max() <= 1e-6
    _, cache = model.run_with_cache(x)
    assert cache["pattern", 0].shape == (BATCH * HEADS, 1, N_CHANNELS, N_CHANNELS)


def test_circuitsvis_refuses_a_cross_attention_by_name():
    from emg_lens.errors import UnsupportedFeatureError
    from emg_lens.inspect import to_circuitsvis

    keys = TokenLayout.channel_tokens({"emg": 2, "acc": 2}, cls_token=False)
    learned = TokenLayout(("query",) * 3, (-1,) * 3, (-1,) * 3)
    net = Perceiver().eval()
    model = attach(net, layout=[TokenLayout.cross(learned, keys), learned], n_samples=N_SAMPLES)
    _, cache = model.run_with_cache(_x())
    with pytest.raises(UnsupportedFeatureError, match="layer 0 is a cross-attention"):
        to_circuitsvis(cache, 0)


def _patch_bias(per_row: torch.Tensor, folds: int) -> torch.Tensor:
    """PatchAttention's own additive mask, written by hand: score row ``b * folds + f`` gets
    ``per_row[b, f]`` (``[batch, folds, head or 1, q, k]``) as -inf."""
    batch = per_row.shape[0]
    bias = torch.zeros(batch * folds, *per_row.shape[2:])
    for b in range(batch):
        for f in range(folds):
            bias[b * folds + f] = bias[b * folds + f].masked_fill(per_row[b, f], float("-inf"))
    return bias


class FoldMajor(PatchAttention):
    """PatchAttention with its patches folded fold-major (row ``p * batch + b``), as a model
    folding heads with ``torch.cat(q.split(d, -1), 0)`` does."""

    def fold(self, h):
        return h.permute(2, 0, 1, 3).flatten(0, 1)

    def unfold(self, h, batch):
        return h.unflatten(0, (-1, batch)).permute(1, 2, 0, 3)


@pytest.mark.parametrize("hooked", [False, True])
def test_a_cut_per_fold_equals_a_per_fold_bias_written_by_hand(hooked):
    """A model folding its patches into the batch, batch-major: a mask per (window, patch,
    head), a mask per window (every patch of it) and one for every patch each equal the model
    computed with the same cut as its own -inf bias on the folded scores."""
    net = PatchAttention(n_samples=12, patch=4).eval()  # 3 patches
    model = attach(net, layout=LAYOUT, n_samples=12)
    assert model.folds_of(0) == 3 and model.folds[0] == Fold(3, True)
    x = torch.randn(BATCH, N_CHANNELS, 12, generator=torch.Generator().manual_seed(2))
    gen, own = torch.Generator().manual_seed(3), ~torch.eye(N_CHANNELS, dtype=torch.bool)
    per_fold = (torch.rand(BATCH, 3, HEADS, N_CHANNELS, N_CHANNELS, generator=gen) < 0.5) & own
    per_window = (torch.rand(BATCH, HEADS, N_CHANNELS, N_CHANNELS, generator=gen) < 0.5) & own
    fwd = [("blocks.0.attn.hook_pattern", lambda t, hook: t)] if hooked else []
    cases = [
        (per_fold, per_fold),
        (per_fold[:1], per_fold[:1].expand(BATCH, -1, -1, -1, -1)),
        (per_window, per_window[:, None].expand(-1, 3, -1, -1, -1)),
        (per_window[0, 0], per_window[0, 0].expand(BATCH, 3, 1, -1, -1)),
    ]
    with torch.no_grad():
        for mask, by_hand in cases:
            got = model.run_with_hooks(x, edge_masks={0: mask}, fwd_hooks=fwd)
            expected = net(x, _patch_bias(by_hand, 3))
            assert (got - expected).abs().max() <= 1e-6, list(mask.shape)
            assert (got - net(x)).abs().max() > 1e-4
    _, cache = model.run_with_cache(x, edge_masks={0: per_fold})
    scores = cache["attn_scores", 0]  # the folded scores, as the model computes them
    assert scores.shape == (BATCH * 3, HEADS, N_CHANNELS, N_CHANNELS)
    assert torch.equal(scores.isneginf(), per_fold.flatten(0, 1))


def test_a_fold_that_is_not_batch_major_takes_only_fold_uniform_masks():
    """Patches folded fold-major: the probe sees it, a per-fold or per-window mask is refused
    naming the layer and what it takes, and a mask the same in every fold still equals the
    model's own bias."""
    net = FoldMajor().eval()
    model = attach(net, layout=LAYOUT, n_samples=N_SAMPLES)
    assert model.folds[0] == Fold(2, False)
    x = _x()
    per_fold = torch.zeros(1, 2, 1, N_CHANNELS, N_CHANNELS, dtype=torch.bool)
    per_window = torch.zeros(BATCH, 1, N_CHANNELS, N_CHANNELS, dtype=torch.bool)
    for mask in (per_fold, per_window):
        with pytest.raises(
            LayoutError,
            match=r"edge_masks\[0\] has shape .*layer 0 \(softmax in block\) "
            r"cannot place it: it folds 2 attention problems per input row into its batch, not "
            r"batch-major.*\[4, 4\] or \[heads or 1, 4, 4\]",
        ):
            model(x, edge_masks={0: mask})
    cut = _cut(10)
    bias = torch.zeros(cut.shape).masked_fill(cut, float("-inf"))
    with torch.no_grad():
        assert (model(x, edge_masks={0: cut}) - net(x, bias)).abs().max() <= 1e-6


@pytest.mark.parametrize(("net", "batch_major"), [(PatchAttention(), True), (FoldMajor(), False)])
def test_a_wider_example_has_its_fold_order_checked_on_two_rows(net, batch_major):
    """On a three-row example (attach_braindecode's) the order is told from its first two rows:
    three forwards of two rows, the verdict the same as on the whole example."""
    net = net.eval()
    x = torch.randn(3, N_CHANNELS, N_SAMPLES, generator=torch.Generator().manual_seed(0))
    calls = probe(net, x, None).calls
    seen = []
    handle = net.register_forward_pre_hook(lambda module, args: seen.append(len(args[0])))
    try:
        folds = find_folds(net, x, None, calls)
    finally:
        handle.remove()
    assert folds == (Fold(2, batch_major),) and seen == [2, 2, 2]


def test_per_fold_masks_of_the_wrong_shape_and_an_order_that_cannot_be_checked():
    """A per-fold mask with another fold count is refused naming the layer, the shape and the
    accepted ones (the per-fold form among them), and on a layer that does not fold; where the
    check's forward fails (here: in eval mode) the order is not known, refused as such, and
    the model's training mode is left as it was."""
    model = attach(PatchAttention(), layout=LAYOUT, n_samples=N_SAMPLES)
    x = _x()
    wrong = torch.zeros(1, 3, 1, N_CHANNELS, N_CHANNELS, dtype=torch.bool)
    with pytest.raises(
        LayoutError,
        match=r"edge_masks\[0\] has shape \[1, 3, 1, 4, 4\].*one mask per fold, "
        r"\[batch or 1, 2, n_heads or 1, 4, 4\]",
    ):
        model(x, edge_masks={0: wrong})
    flat = attach(build("qkv"), layout=LAYOUT, n_samples=N_SAMPLES)
    assert flat.folds == (Fold(1, True), Fold(1, True))
    with pytest.raises(LayoutError, match=r"edge_masks\[1\] has shape \[1, 1, 1, 4, 4\]"):
        flat(x, edge_masks={1: torch.zeros(1, 1, 1, 4, 4, dtype=torch.bool)})

    class TrainOnly(PatchAttention):
        def forward(self, x, bias=None):
            if not self.training:
                raise RuntimeError("this research code runs in training mode only")
            return super().forward(x, bias)

    net = TrainOnly().train()
    unknown = attach(net, layout=LAYOUT, n_samples=N_SAMPLES)
    assert unknown.folds[0] == Fold(2, None) and net.training and net.embed.training
    with pytest.raises(LayoutError, match="in an order attach could not check"):
        unknown(x, edge_masks={0: wrong[:, :2]})


@pytest.mark.unchecked
def test_attach_refuses_what_is_no_module_and_a_model_attached_already():
    attached = attach(PatchAttention(), layout=_channels, n_samples=8, n_channels=4)
    for model, shown in (("model.pt", "got str"), (attached, "got AttachedModel")):
        with pytest.raises(ArgumentError, match=rf"attach\(model\) takes a torch module .*{shown}"):
            attach(model, layout=_channels, n_samples=8, n_channels=4)


def _channels(calls, n_channels, n_samples):
    return TokenLayout.channel_tokens({"emg": n_channels}, cls_token=False)


class _FiveDimSDPA(nn.Module):
    """``scaled_dot_product_attention`` over ``[batch, 1, head, query, d_head]``: torch takes
    it, attach does not read it."""

    def __init__(self):
        super().__init__()
        self.embed, self.head = nn.Linear(N_SAMPLES, D), nn.Linear(D, 3)

    def forward(self, x):
        h = self.embed(x)
        q = h.view(h.shape[0], 1, N_CHANNELS, HEADS, D // HEADS).transpose(2, 3)
        z = F.scaled_dot_product_attention(q, q, q)
        return self.head(z.transpose(2, 3).reshape(h.shape[0], N_CHANNELS, D).mean(1))


class _AgainOnAsk(TinyAttention):
    """Attends a second time when asked: a forward whose calls vary."""

    def forward(self, x, again=False):
        out = super().forward(x)
        return out + super().forward(x) if again else out


class _DeeperWhenLonger(nn.Module):
    """One token per channel of any length (its mean); attends twice on windows longer than 8
    samples."""

    def __init__(self):
        super().__init__()
        self.embed, self.block, self.head = nn.Linear(1, D), Block(D, HEADS), nn.Linear(D, 3)

    def forward(self, x):
        h = self.block(self.embed(x.mean(-1, keepdim=True)))
        return self.head((self.block(h) if x.shape[-1] > 8 else h).mean(1))


def _sdpa_attached():
    return attach(build("sdpa"), layout=LAYOUT, n_samples=N_SAMPLES)


def _rebuilt(**changes):
    model = _sdpa_attached()
    kwargs = {**model.init_kwargs, **changes}
    cfg = replace(model.cfg, n_layers=kwargs.pop("n_layers", model.cfg.n_layers))
    return type(model)(cfg, model=model.model, **kwargs)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: attach(_FiveDimSDPA(), layout=LAYOUT, n_samples=N_SAMPLES),
            ConversionError,
            r"scaled_dot_product_attention in .* has a query \[2, 1, 2, 4, 8\]; attach reads",
        ),
        (
            lambda: attach(build("sdpa"), layout=LAYOUT, n_samples=7),
            ConversionError,
            r"_Classifier failed on an example input \[batch=2, channels=4, samples=7\]",
        ),
        (
            lambda: attach(PatchAttention(), layout=lambda *a: "emg", n_samples=8, n_channels=4),
            ArgumentError,
            r"layout must be a TokenLayout .*or a list of one per attention call; got str",
        ),
        (
            lambda: attach(build("sdpa"), layout=[LAYOUT], n_samples=N_SAMPLES),
            LayoutError,
            r"layout must be one per attention call \(2\), got 1",
        ),
        (
            lambda: _sdpa_attached().layout_of(0, input_shape=(4,)),
            InputShapeError,
            r"an input window must be \(channels, samples\), got \(4,\)",
        ),
        (
            lambda: _sdpa_attached().layout_of(0, input_shape=(4, 20)),
            InputShapeError,
            r"input_shape must be the model's \(4, 8\), got \(4, 20\); to open any size",
        ),
        (
            lambda: attach(
                _DeeperWhenLonger(), layout=_channels, n_samples=8, n_channels=4
            ).folds_of(0, input_shape=(4, 20)),
            ConversionError,
            r"4 channels x 20 samples its forward makes the attention calls .* not those at",
        ),
        (
            lambda: attach(_AgainOnAsk(), layout=LAYOUT, n_samples=N_SAMPLES)(
                _x(), again=True, edge_masks={0: torch.zeros(4, 4, dtype=torch.bool)}
            ),
            ConversionError,
            r"this forward's attention call 1: .*, at attach time: None; the forward must make",
        ),
        (
            lambda: _rebuilt(folds=[[1]]),
            ConversionError,
            r"folds must list one \[count, batch_major\] per attention call \(2\), got list",
        ),
        (lambda: _rebuilt(n_layers=3), ConversionError, r"EncoderConfig.n_layers=3 != 2 calls"),
    ],
    ids=[
        "sdpa-5d",
        "forward-fails",
        "layout-function-gives-no-layout",
        "too-few-layouts",
        "window-not-a-pair",
        "other-size-not-opened",
        "other-size-other-calls",
        "forward-with-other-calls",
        "folds-not-pairs",
        "n_layers-not-the-calls",
    ],
)
def test_an_attached_model_refuses_what_it_cannot_describe_by_name(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.unchecked  # the annotation refuses these in the suite; a user's run meets this
@pytest.mark.parametrize("attention", [3, []])
def test_attention_that_names_no_module_kind_or_glob_is_refused(attention):
    with pytest.raises(ArgumentError, match=r"attention must be a module class, a module-path"):
        attach(build("sdpa"), layout=LAYOUT, n_samples=N_SAMPLES, attention=attention)
