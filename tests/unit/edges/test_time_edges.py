"""Edge sets over time (`reads_earlier`, `reads_later`, `time_window`, `time_span`) against
hand-made masks and torch's own masked attention, their algebra, their refusals, and the
warning where a cut leaves a query no key.

The hand masks are written here from token times alone (the EEGConformer's slices are in
time order; a TinyMyo's patch index is ``position % n_patches``), never through the module.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from emg_lens import TokenLayout
from emg_lens.edges import (
    heads,
    layers,
    parse,
    reads_earlier,
    reads_later,
    time_span,
    time_window,
    within,
)
from emg_lens.errors import ArgumentError, LayoutError
from emg_lens.hooks.masking import attn_scores_filter, compile_edges, mask_edges
from emg_lens.models import TinyMyo
from tests.tiny import tinymyo_config

NO_KEY = "attends to nothing"


# ============================================================================ EEGConformer
@pytest.fixture(scope="module")
def conformer():
    pytest.importorskip("braindecode.models")
    from emg_lens.models.attached.zoo import attach_braindecode
    from tests.unit.models import table

    source = table.zoo_source("EEGConformer")
    return source, attach_braindecode(copy.deepcopy(source))


def _hand_masked(source, x, cut_of):
    """braindecode's own forward, each attention given ``mask=`` (added to its scores inside
    ``F.scaled_dot_product_attention``): -inf where ``cut_of(n)`` (``[query, key]``) is True."""
    from braindecode.modules import MultiHeadAttention

    def pre(module, args, kwargs):
        n = args[0].shape[1]
        bias = torch.zeros(n, n).masked_fill(cut_of(n), float("-inf"))
        return args, {**kwargs, "mask": bias}

    net = copy.deepcopy(source)
    found = [m for m in net.modules() if isinstance(m, MultiHeadAttention)]
    assert len(found) == 2  # the table's EEGConformer: 2 layers
    for module in found:
        module.register_forward_pre_hook(pre, with_kwargs=True)
    with torch.no_grad():
        return net(x)


@pytest.mark.slow
@pytest.mark.parametrize(
    "edges, cut_of",
    [
        # a later slice reads an earlier one: cut, each query keeps its own slice and later
        (reads_earlier(), lambda n: torch.ones(n, n, dtype=torch.bool).tril(-1)),
        # an earlier slice reads a later one: cut, causal attention (upper triangle at -inf)
        (reads_later(), lambda n: torch.ones(n, n, dtype=torch.bool).triu(1)),
    ],
    ids=["reads_earlier", "reads_later"],
)
def test_conformer_time_cut_in_every_layer_is_the_hand_masked_forward(conformer, edges, cut_of):
    source, model = conformer
    layout = model.layout_of(0)
    n = layout.n_tokens
    assert layout.time == tuple(range(n)) and n > 2  # time slices, in time order
    x = model.example_input(3)
    masks = compile_edges(edges, model)
    assert all(torch.equal(masks[i][0], cut_of(n)) for i in masks) and len(masks) == 2
    with torch.no_grad():
        cut, clean = model(x, edge_masks=masks), model(x)
    torch.testing.assert_close(cut, _hand_masked(source, x, cut_of), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(cut, clean, atol=1e-4)  # the cut changes the model


def test_causal_hand_mask_is_torchs_is_causal():
    """The upper-triangle hand mask above is what ``is_causal=True`` computes."""
    q, k, v = torch.randn(3, 2, 7, 4, generator=torch.Generator().manual_seed(0)).unbind(0)
    bias = torch.zeros(7, 7).masked_fill(torch.ones(7, 7, dtype=torch.bool).triu(1), -torch.inf)
    torch.testing.assert_close(
        torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias),
        torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True),
    )


@pytest.mark.slow
def test_conformer_cut_of_every_key_warns_naming_layer_heads_and_queries(conformer):
    _, model = conformer
    x, masks = model.example_input(2), compile_edges(time_span(0, 1, 0, 1000), model)
    with pytest.warns(UserWarning, match=NO_KEY) as seen, torch.no_grad():
        fused = model(x, edge_masks=masks)  # SDPA: slice 0's output row zero
        explicit, cache = model.run_with_cache(x, edge_masks=masks)
    text = [str(w.message) for w in seen if NO_KEY in str(w.message)]
    assert len(text) == 2 and "layer 0" in text[0] and "layer 1" in text[1]
    assert "query at 0 no key on head(s) 0, 1" in text[0]
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)
    for layer in range(2):  # what the warning says: a zero pattern row, the others whole
        pattern = cache["pattern", layer]
        assert (pattern[:, :, 0] == 0).all() and torch.isfinite(pattern).all()
        assert torch.allclose(pattern[:, :, 1:].sum(-1), torch.ones(1))


# ============================================================================ a native patch model
@pytest.fixture(scope="module")
def tinymyo():
    model = TinyMyo(tinymyo_config(2, 80, seed=0)).eval()  # 2 channels x 4 patches of 10 ms
    assert model.layout.time_step == pytest.approx(0.01)
    return model


def _hand(model, pred) -> torch.Tensor:
    """``[query, key]``: ``pred(t_q, t_k)`` over the patch index of each token."""
    n, p = model.layout.n_tokens, model.cfg.n_patches
    return torch.tensor([[pred(q % p, k % p) for k in range(n)] for q in range(n)])


NATIVE_CASES = [
    (time_window(1), lambda q, k: abs(q - k) <= 1),
    (time_window(2, min_lag=1), lambda q, k: 1 <= abs(q - k) <= 2),
    (time_span(3, 4, 0, 2), lambda q, k: q == 3 and k < 2),
    (time_span(0.03, 0.04, 0, 0.02, seconds=True), lambda q, k: q == 3 and k < 2),
    (time_span(0.015, 0.035, 0.02, 1, seconds=True), lambda q, k: q in (2, 3) and k >= 2),
    (reads_earlier(), lambda q, k: k < q),
    (reads_later(), lambda q, k: k > q),
]


@pytest.mark.parametrize("edges, pred", NATIVE_CASES, ids=[str(e) for e, _ in NATIVE_CASES])
def test_native_time_selectors_are_their_hand_masks(tinymyo, edges, pred):
    hand = _hand(tinymyo, pred)
    assert hand.any() and not hand.all()
    compiled = edges.compile(tinymyo.layout, tinymyo.cfg.n_heads)
    assert torch.equal(compiled, hand.expand_as(compiled))
    assert parse(str(edges)) == edges
    x = tinymyo.example_input(2)
    hooks = [(attn_scores_filter(), mask_edges(edges, tinymyo.layout))]
    with torch.no_grad():
        by_hook = tinymyo.run_with_hooks(x, fwd_hooks=hooks)
        by_hand = tinymyo(x, edge_masks={i: hand for i in range(tinymyo.cfg.n_layers)})
    torch.testing.assert_close(by_hook, by_hand, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(by_hand, tinymyo(x), atol=1e-5)


def test_time_selectors_compose_per_head_and_per_layer(tinymyo):
    layout, n_heads = tinymyo.layout, tinymyo.cfg.n_heads
    expr = (reads_earlier() & heads(1) | time_span(0, 1, 3, 4)) - time_window(1) & layers(1)
    assert parse(str(expr)) == expr
    masks = expr.compile_layers(layout, n_heads, tinymyo.cfg.n_layers)
    earlier, first_reads_last = (
        _hand(tinymyo, lambda q, k: k < q),
        _hand(tinymyo, lambda q, k: q == 0 and k == 3),
    )
    near = _hand(tinymyo, lambda q, k: abs(q - k) <= 1)
    for h in range(n_heads):
        union = (earlier if h == 1 else torch.zeros_like(earlier)) | first_reads_last
        assert torch.equal(masks[0, h], torch.zeros_like(near))  # layers(1) binds to the -
        assert torch.equal(masks[1, h], union & ~near)
    # union and difference of the two orders: every edge between two different times
    other = (reads_earlier() | reads_later()).compile(layout, n_heads)
    assert torch.equal(other, (~time_window(0)).compile(layout, n_heads))
    assert not (reads_earlier() & reads_later()).compile(layout, n_heads).any()


def test_time_selectors_refuse_layouts_without_time_order():
    from emg_lens.models.attached.zoo import window_keys

    one_patch = TokenLayout.channel_tokens({"emg": 3})  # CLS and channels, all at time 0
    with pytest.raises(
        LayoutError,
        match=r"order in time, which this layout \(4 tokens, groups \('cls', 'emg'\)\) lacks: all",
    ):
        reads_earlier().compile(one_patch, 1)
    assert time_window(0).compile(one_patch, 1).any()  # a lag of 0 is still a lag
    untimed = TokenLayout(("query",) * 2, (-1,) * 2, (-1,) * 2)
    for edges in (reads_later(), time_window(1), time_span(0, 1, 1, 2)):
        with pytest.raises(LayoutError, match=r"its query tokens have no time.*patches"):
            edges.compile(untimed, 1)
    with pytest.raises(LayoutError, match="query tokens have no time"):
        reads_earlier().compile(window_keys(64, 16), 1)  # MetaNeuromotorHand: lags mixed
    patches = TokenLayout.channel_tokens({"emg": 1}, n_patches=3)
    with pytest.raises(LayoutError, match=r"time_step is None.*time_span\(a, b, c, d\)"):
        time_span(0, 1, 0, 1, seconds=True).compile(patches, 1)
    with pytest.raises(ArgumentError, match="query_start < query_stop"):
        time_span(2, 1, 0, 1)
    with pytest.raises(ArgumentError, match="time index; seconds=True"):
        time_span(0.5, 1, 0, 1)
    with pytest.raises(ArgumentError, match="seconds >= 0"):
        time_span(-1, 1, 0, 1, seconds=True)
    with pytest.raises(LayoutError, match="time_step must be None or the seconds"):
        TokenLayout.channel_tokens({"emg": 1}, time_step=0)


# ============================================================================ the warning
@pytest.mark.slow
def test_warning_fires_for_a_query_left_no_key_and_only_then(tinymyo):
    x = tinymyo.example_input(2)
    empty = reads_later() | time_window(0)  # a patch-0 query keeps nothing
    masks = compile_edges(empty, tinymyo)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with torch.no_grad():
            _, cache = tinymyo.run_with_cache(x, edge_masks=masks)
            tinymyo(x, edge_masks=masks)  # the same masks again: looked at once
    text = [str(w.message) for w in seen if NO_KEY in str(w.message)]
    assert len(text) == 2, text  # one per layer's mask
    assert "layer 0 leaves queries at 0, 4 no key on head(s) 0, 1" in (text[0])
    assert "zero attention pattern row" in text[0] and "not NaN" in text[0]
    for layer in range(tinymyo.cfg.n_layers):  # what the warning says happens
        pattern = cache["pattern", layer]
        assert (pattern[:, :, [0, 4]] == 0).all() and torch.isfinite(pattern).all()
        assert torch.allclose(pattern[:, :, [1, 2, 3]].sum(-1), torch.ones(1))
    hooks = [(attn_scores_filter([1]), mask_edges(empty, tinymyo.layout))]
    with pytest.warns(UserWarning, match=r"layer 1 leaves queries 0 \(emg ch0 t0\)"):
        tinymyo.run_with_hooks(x, fwd_hooks=hooks)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        tinymyo(x, edge_masks=compile_edges(reads_later(), tinymyo))
        tinymyo(x, edge_masks=compile_edges(within("emg") - time_window(0), tinymyo))
        tinymyo.run_with_hooks(
            x, fwd_hooks=[(attn_scores_filter(), mask_edges(reads_earlier(), tinymyo.layout))]
        )
    assert not [w for w in seen if NO_KEY in str(w.message)]


# ================================================================= bounds past any layout
HUGE_LAYOUT = TokenLayout.channel_tokens({"emg": 1}, n_patches=4, cls_token=False, time_step=0.5)


@pytest.mark.parametrize(
    ("huge", "same"),
    [
        (time_window(2**63), time_window(3)),  # wrapped to -2**63 in int64: 0 edges
        (time_window(2**64), time_window(3)),  # an OverflowError
        (time_window(2**64, min_lag=2**63), time_window(3) - time_window(3)),
        (time_span(0, 2**63, 0, 4), time_span(0, 4, 0, 4)),
        (time_span(2**63, 2**64, 0, 4), time_span(0, 4, 0, 4) - time_span(0, 4, 0, 4)),
        (time_span(0, 10**30, 0, 4, seconds=True), time_span(0, 4, 0, 4)),
        (time_span(0, 1e300, 1e300, 2e300, seconds=True), time_span(0, 1, 0, 1) - time_window(9)),
        (parse("time_window(9223372036854775808)"), time_window(3)),
        (parse("time_span(0,9223372036854775808,0,4)"), time_span(0, 4, 0, 4)),
        (parse("time_span(0,1e300,0,2,seconds)"), time_span(0, 4, 0, 4)),
    ],
    ids=str,
)
def test_a_bound_past_every_layout_means_every_lag_or_time(huge, same):
    """A lag or time bound larger than any layout's reaches to the layout's end: the mask
    equals the one of the layout's own span (no int64 wrap, no OverflowError), from the
    functions and the parser alike."""
    assert huge.compile(HUGE_LAYOUT, 1).equal(same.compile(HUGE_LAYOUT, 1))


def test_a_tiny_time_step_places_every_second_bound_past_the_end():
    layout = TokenLayout.channel_tokens({"emg": 1}, n_patches=4, cls_token=False, time_step=1e-300)
    cut = time_span(0, 1, 0, 1e10, seconds=True).compile(layout, 1)  # 1e10 / 1e-300: inf
    assert cut.equal(time_span(0, 4, 0, 4).compile(layout, 1))
    first = time_span(0, 1e-300, 0, 1e-300, seconds=True).compile(layout, 1)
    assert first.equal(time_span(0, 1, 0, 1).compile(layout, 1))


@pytest.mark.parametrize(
    "bad", [float("inf"), float("nan"), 10**400], ids=["inf", "nan", "10**400"]
)
def test_time_span_refuses_seconds_that_are_not_finite_by_name(bad):
    with pytest.raises(ArgumentError, match=r"time_span\(query_stop\) must be a finite time"):
        time_span(0, bad, 0, 1, seconds=True)
