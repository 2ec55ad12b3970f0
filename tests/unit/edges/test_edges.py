"""Edge sets (`emg_lens.edges`): compiled masks against a brute-force oracle, set laws, the
string form, parse errors, the CLS rule, and masked forwards that stay finite.

The oracle is written here, independently of the module: every generated expression carries a
plain Python predicate over (head, query token, key token) built from the layout's fields.
"""

from __future__ import annotations

import contextlib
import functools
import pickle
import re
from collections.abc import Callable
from types import FunctionType
from typing import NamedTuple

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emg_lens import TokenLayout
from emg_lens.edges import (
    EdgeSet,
    all_edges,
    between,
    between_regions,
    channels,
    cross_channel,
    cross_modal,
    cross_region,
    from_cls,
    heads,
    layers,
    no_edges,
    parse,
    same_channel,
    time_window,
    to_cls,
    unimodal,
    within,
    within_region,
)
from emg_lens.edges.regions import HEMISPHERES, LOBES, REGIONS, place
from emg_lens.errors import (
    ArgumentError,
    LayoutError,
    SpecError,
)
from emg_lens.models import IsoNet
from tests.tiny import tiny_isonet

SETTINGS = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


# ============================================================================ oracle
class Tok(NamedTuple):
    group: str
    channel: int
    time: int
    name: str | None  # the channel's name, if the layout names its channels


Pred = Callable[[int, Tok, Tok], bool]


def tokens(layout: TokenLayout) -> list[Tok]:
    return [
        Tok(g, c, t, layout.channel_name(i))
        for i, (g, c, t) in enumerate(zip(layout.group, layout.channel, layout.time))
    ]


def brute_force(pred: Pred, layout: TokenLayout, n_heads: int) -> torch.Tensor:
    toks = tokens(layout)
    return torch.tensor(
        [[[pred(h, q, k) for k in toks] for q in toks] for h in range(n_heads)], dtype=torch.bool
    )


def touches_cls(q: Tok, k: Tok) -> bool:
    return q.group == "cls" or k.group == "cls"


# ============================================================================ strategies
# Expressions are drawn as layout-independent *templates* (group and head choices as small
# integers), built into strategies once, then instantiated on the drawn layout: rebuilding
# strategies per example would cost more than the tests themselves.
POOL = ["emg", "acc", "force", "gyro"]

# Channel names with their (lobe, hemisphere), written out by hand from the 10-10 system
# and the boundary cases the region table documents (emg_lens.edges.regions): the oracle does
# not ask the module. Spellings vary as files write them (case, old names, EEG/-REF).
PLACES = {
    "Fp1": ("frontal", "left"),
    "Nz": ("frontal", "midline"),
    "F8": ("frontal", "right"),
    "AF4": ("frontal", "right"),
    "EEG FP2-REF": ("frontal", "right"),
    "FC1": ("central", "left"),
    "C3": ("central", "left"),
    "cz": ("central", "midline"),
    "CP2": ("central", "right"),
    "P3": ("parietal", "left"),
    "Pz": ("parietal", "midline"),
    "PO4": ("occipital", "right"),
    "O1": ("occipital", "left"),
    "Iz": ("occipital", "midline"),
    "T3": ("temporal", "left"),
    "T8": ("temporal", "right"),
    "P7": ("temporal", "left"),
    "TP10": ("temporal", "right"),
    "FT9": ("temporal", "left"),
    "A2": ("temporal", "right"),
}


@st.composite
def layouts(draw, named: bool | None = None) -> TokenLayout:
    """A channel-token layout; ``named``: with channel names (None: drawn, half of them)."""
    names = draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=3, unique=True))
    modalities = {name: draw(st.integers(1, 4)) for name in names}
    n_channels = sum(modalities.values())
    channel_names = None
    if draw(st.booleans()) if named is None else named:
        channel_names = draw(st.permutations(sorted(PLACES)))[:n_channels]
    return TokenLayout.channel_tokens(
        modalities,
        n_patches=draw(st.integers(1, 3)),
        cls_token=draw(st.booleans()),
        channel_names=channel_names,
    )


def in_terms(tok: Tok, terms: tuple[str, ...]) -> bool:
    """Whether ``tok`` embeds a channel that ``terms`` (regions or channel names) name."""
    if tok.name is None:
        return False
    return tok.name in terms or any(t in PLACES[tok.name] for t in terms)


def region_terms(layout: TokenLayout) -> list[str]:
    """The regions and channel names that select at least one token of a named layout."""
    names = [n for n in layout.channel_names or () if n in [t.name for t in tokens(layout)]]
    regions = sorted({r for n in names for r in PLACES[n]})
    return regions + sorted(names)


_index = st.integers(0, 3)
_flag = st.booleans()
_terms = st.frozensets(st.integers(0, 30), min_size=1, max_size=2)
SCALP_TEMPLATES = st.one_of(  # the channel and region selectors
    st.tuples(st.just("channels"), st.frozensets(st.integers(0, 30), min_size=1, max_size=3)),
    st.tuples(st.just("within_region"), _terms),
    st.tuples(st.just("between_regions"), _terms, _terms),
    st.tuples(st.just("cross_region")),
)
LEAF_TEMPLATES = st.one_of(  # one branch per selector, so each is drawn equally often
    st.tuples(st.just("unimodal"), _flag),
    st.tuples(st.just("cross_modal"), _flag),
    st.tuples(st.just("within"), _index),
    st.tuples(st.just("between"), _index, _index),
    st.tuples(st.just("time_window"), _index, _index),
    st.tuples(st.just("heads"), st.frozensets(_index, min_size=1)),
    SCALP_TEMPLATES,
    *(
        st.tuples(st.just(name))
        for name in ("same_channel", "cross_channel", "all_edges", "no_edges", "to_cls", "from_cls")
    ),
)


@st.composite
def _templates(draw, depth: int):
    # Choose the node kind first: a plain one_of would flatten the 12 leaf branches in beside
    # the 2 operator branches and draw almost only leaves.
    kind = draw(st.sampled_from(["leaf", "~", "|", "&", "-"])) if depth else "leaf"
    if kind == "leaf":
        return draw(LEAF_TEMPLATES)
    if kind == "~":
        return ("~", draw(_templates(depth - 1)))
    return (kind, draw(_templates(depth - 1)), draw(_templates(depth - 1)))


TEMPLATES = _templates(3)  # expression trees of depth <= 3


def instantiate(template: tuple, layout: TokenLayout, n_heads: int) -> tuple[EdgeSet, Pred]:
    """The edge set a template stands for on ``layout``, and its independent oracle."""
    kind, *args = template
    groups = layout.groups
    if kind == "~":
        e, p = instantiate(args[0], layout, n_heads)
        return ~e, lambda h, q, k: not p(h, q, k)
    if kind in ("|", "&", "-"):
        (a, pa), (b, pb) = (instantiate(t, layout, n_heads) for t in args)
        if kind == "|":
            return a | b, lambda h, q, k: pa(h, q, k) or pb(h, q, k)
        if kind == "&":
            return a & b, lambda h, q, k: pa(h, q, k) and pb(h, q, k)
        return a - b, lambda h, q, k: pa(h, q, k) and not pb(h, q, k)
    if kind == "unimodal":
        (c,) = args
        return (
            unimodal(include_cls=c),
            lambda h, q, k: q.group == k.group and (c or not touches_cls(q, k)),
        )
    if kind == "cross_modal":
        (c,) = args
        return (
            cross_modal(include_cls=c),
            lambda h, q, k: q.group != k.group and (c or not touches_cls(q, k)),
        )
    if kind == "within":
        g = groups[args[0] % len(groups)]
        return within(g), lambda h, q, k: q.group == g and k.group == g
    if kind == "between":
        a, b = (groups[i % len(groups)] for i in args)
        return between(a, b), lambda h, q, k: q.group == a and k.group == b
    if kind == "time_window":
        lo, hi = sorted(args)
        return (
            time_window(hi, min_lag=lo),
            lambda h, q, k: q.time >= 0 and k.time >= 0 and lo <= abs(q.time - k.time) <= hi,
        )
    if kind == "heads":
        on = {i % n_heads for i in args[0]}
        return heads(*on), lambda h, q, k: h in on
    if kind == "same_channel":
        return (
            same_channel(),
            lambda h, q, k: q.channel >= 0 and k.channel >= 0 and q.channel == k.channel,
        )
    if kind == "cross_channel":
        return (
            cross_channel(),
            lambda h, q, k: q.channel >= 0 and k.channel >= 0 and q.channel != k.channel,
        )
    if kind in ("channels", "within_region", "between_regions", "cross_region"):
        return _instantiate_scalp(kind, args, layout)
    if kind == "all_edges":
        return all_edges(), lambda h, q, k: True
    if kind == "no_edges":
        return no_edges(), lambda h, q, k: False
    if not layout.has_cls:  # to_cls / from_cls need a CLS token: stand in a directed pair
        a, b = (groups[0], groups[-1]) if kind == "to_cls" else (groups[-1], groups[0])
        return between(a, b), lambda h, q, k: q.group == a and k.group == b
    if kind == "to_cls":
        return to_cls(), lambda h, q, k: q.group == "cls" and k.group != "cls"
    assert kind == "from_cls"
    return from_cls(), lambda h, q, k: q.group != "cls" and k.group == "cls"


def _instantiate_scalp(kind: str, args: list, layout: TokenLayout) -> tuple[EdgeSet, Pred]:
    """The channel and region selectors; on a layout without names, a stand-in (they need
    names): a directed pair of groups."""
    if layout.channel_names is None:
        a, b = layout.groups[0], layout.groups[-1]
        return between(a, b), lambda h, q, k: q.group == a and k.group == b
    if kind == "cross_region":
        return (
            cross_region(),
            lambda h, q, k: (
                q.name is not None and k.name is not None and PLACES[q.name][0] != PLACES[k.name][0]
            ),
        )
    terms = region_terms(layout)
    if kind == "channels":
        named = tuple(terms[i % len(terms)] for i in args[0])
        picked = tuple(sorted({n for n in named if n not in REGIONS})) or (terms[-1],)
        return channels(*picked), lambda h, q, k: q.name in picked and k.name in picked
    sides = [tuple(sorted({terms[i % len(terms)] for i in side})) for side in args]
    if kind == "within_region":
        (side,) = sides
        return within_region(list(side)), lambda h, q, k: in_terms(q, side) and in_terms(k, side)
    query, key = sides
    return between_regions(
        list(query), list(key)
    ), lambda h, q, k: in_terms(q, query) and in_terms(k, key)


@st.composite
def cases(draw, n_exprs: int = 1):
    layout = draw(layouts())
    n_heads = draw(st.integers(1, 4))
    exprs = [instantiate(draw(TEMPLATES), layout, n_heads) for _ in range(n_exprs)]
    return layout, n_heads, exprs


# ============================================================================ compile vs oracle
def _check_against_oracle(expr: EdgeSet, pred: Pred, layout: TokenLayout, n_heads: int) -> None:
    mask = expr.compile(layout, n_heads)
    assert mask.dtype == torch.bool
    assert mask.shape == (n_heads, layout.n_tokens, layout.n_tokens)
    assert torch.equal(mask, brute_force(pred, layout, n_heads)), f"{expr} on {layout.groups}"


@SETTINGS
@given(layouts(), st.integers(1, 4), LEAF_TEMPLATES)
def test_each_selector_matches_brute_force(layout, n_heads, template):
    _check_against_oracle(*instantiate(template, layout, n_heads), layout, n_heads)


@SETTINGS
@given(layouts(named=True), st.integers(1, 4), SCALP_TEMPLATES)
def test_each_scalp_selector_matches_brute_force(layout, n_heads, template):
    expr, pred = instantiate(template, layout, n_heads)
    _check_against_oracle(expr, pred, layout, n_heads)
    assert parse(str(expr)) == expr


@SETTINGS
@given(cases())
def test_compile_matches_brute_force(case):
    layout, n_heads, [(expr, pred)] = case
    _check_against_oracle(expr, pred, layout, n_heads)


SMALL = TokenLayout.channel_tokens({"emg": 2, "acc": 1}, n_patches=2)  # 7 tokens


@pytest.mark.parametrize(
    "expr, pred",
    [
        (unimodal(), lambda h, q, k: q.group == k.group != "cls"),
        (cross_modal(), lambda h, q, k: q.group != k.group and not touches_cls(q, k)),
        (within("emg"), lambda h, q, k: q.group == k.group == "emg"),
        (between("acc", "emg"), lambda h, q, k: (q.group, k.group) == ("acc", "emg")),
        (to_cls(), lambda h, q, k: q.group == "cls" != k.group),
        (from_cls(), lambda h, q, k: k.group == "cls" != q.group),
        (same_channel(), lambda h, q, k: q.channel == k.channel >= 0),
        (cross_channel(), lambda h, q, k: min(q.channel, k.channel) >= 0 != q.channel - k.channel),
        (time_window(0), lambda h, q, k: q.time == k.time >= 0),
        (time_window(1, min_lag=1), lambda h, q, k: min(q.time, k.time) >= 0 != q.time - k.time),
        (heads(1), lambda h, q, k: h == 1),
        (all_edges(), lambda h, q, k: True),
        (no_edges(), lambda h, q, k: False),
    ],
    # the expression names the case; a lambda's str holds its address, which differs between
    # processes (pytest-xdist workers must collect the same ids)
    ids=lambda v: None if isinstance(v, FunctionType) else str(v),
)
def test_each_selector_golden(expr, pred):
    assert torch.equal(expr.compile(SMALL, 3), brute_force(pred, SMALL, 3))


def test_compile_is_vectorised_on_large_layouts():
    layout = TokenLayout.channel_tokens({"emg": 12, "acc": 4}, n_patches=50)  # 801 tokens
    expr = (cross_channel() & time_window(3) | to_cls()).on_heads([0, 5]) - within("acc")
    mask = expr.compile(layout, n_heads=8)
    assert mask.shape == (8, 801, 801) and mask.is_contiguous()
    assert torch.equal(mask[0], mask[5]) and not mask[[1, 2, 3, 4, 6, 7]].any()
    assert mask[0, 0, 1:].all() and not mask[0, 0, 0]  # CLS reads every signal token
    # Position 1 + 50 c + t is channel c, patch t.
    assert not mask[0, 1, 2] and mask[0, 1, 51 + 3] and not mask[0, 1, 51 + 4]
    acc = 1 + 12 * 50
    assert not mask[0, acc:, acc:].any() and mask[0, acc:, :acc].any()  # acc -> acc removed


# 10-20 names over two modalities, with 2 time patches: cls, then each channel's 2 tokens.
EEG = TokenLayout.channel_tokens(
    {"eeg": 5, "eog": 1}, n_patches=2, channel_names=["Fz", "C3", "Cz", "C4", "Pz", "Fp1"]
)
EEG_LOBE = {"Fz": "frontal", "Fp1": "frontal", "C3": "central", "Cz": "central"}
EEG_LOBE |= {"C4": "central", "Pz": "parietal"}


@pytest.mark.parametrize(
    "expr, pred",
    [
        (channels("C3", "C4"), lambda h, q, k: {q.name, k.name} <= {"C3", "C4"}),
        (within_region("central"), lambda h, q, k: {q.name, k.name} <= {"C3", "Cz", "C4"}),
        (within_region("left"), lambda h, q, k: {q.name, k.name} <= {"C3", "Fp1"}),
        (within_region("frontal+Pz"), lambda h, q, k: {q.name, k.name} <= {"Fz", "Fp1", "Pz"}),
        (
            between_regions("frontal", "midline"),
            lambda h, q, k: q.name in ("Fz", "Fp1") and k.name in ("Fz", "Cz", "Pz"),
        ),
        (between_regions("C3", "C4"), lambda h, q, k: (q.name, k.name) == ("C3", "C4")),
        (
            cross_region(),
            lambda h, q, k: None not in (q.name, k.name) and EEG_LOBE[q.name] != EEG_LOBE[k.name],
        ),
    ],
    ids=lambda v: None if isinstance(v, FunctionType) else str(v),
)
def test_each_scalp_selector_golden(expr, pred):
    assert torch.equal(expr.compile(EEG, 2), brute_force(pred, EEG, 2))
    assert parse(str(expr)) == expr


def test_region_table_places_the_10_20_montage():
    """The 19 channels of the 10-20 system, old and new names, by region; parity sides."""
    lobes = {
        "frontal": ["Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8"],
        "central": ["C3", "Cz", "C4"],
        "parietal": ["P3", "Pz", "P4"],
        "occipital": ["O1", "O2"],
        "temporal": ["T7", "T8", "P7", "P8", "T3", "T4", "T5", "T6"],
    }
    for lobe, names in lobes.items():
        for name in names:
            assert place(name)[0] == lobe, name
            assert place(name.upper())[0] == lobe and place(f"EEG {name}-REF")[0] == lobe
    for name in ["Fp1", "F7", "T3", "C3", "T5", "P3", "O1", "A1", "M1", "FT9", "PO7"]:
        assert place(name)[1] == "left", name
    for name in ["Fp2", "F8", "T4", "C4", "T6", "P4", "O2", "A2", "M2", "TP10", "AF8"]:
        assert place(name)[1] == "right", name
    for name in ["Fpz", "Fz", "FCz", "Cz", "CPz", "Pz", "POz", "Oz", "Iz", "Nz"]:
        assert place(name)[1] == "midline", name
    boundary = {"FC3": "central", "CP4": "central", "PO3": "occipital", "FT7": "temporal"}
    boundary |= {"TP8": "temporal", "A1": "temporal", "M2": "temporal", "AF7": "frontal"}
    for name, lobe in boundary.items():
        assert place(name)[0] == lobe, name
    assert set(LOBES) | set(HEMISPHERES) == set(REGIONS)
    assert place("O9") == ("occipital", "left") and place("O10") == ("occipital", "right")


def test_o9_and_o10_sit_where_mne_places_them():
    """O9/O10 (10-10) are the points the 10-5 system calls I1/I2: MNE's colin27_1020 (its
    standard_1020) puts O9 exactly at colin27_1005's I1; ours sit at its spherical I1/I2."""
    import mne
    import numpy as np

    from emg_lens.geometry.ten_twenty import scalp_position

    def direction(kind, name):
        position = mne.channels.make_standard_montage(kind).get_positions()["ch_pos"][name]
        return position / np.linalg.norm(position)

    for ours, theirs in (("O9", "I1"), ("O10", "I2")):
        np.testing.assert_allclose(scalp_position(ours), scalp_position(theirs))
        np.testing.assert_allclose(
            direction("colin27_1020", ours), direction("colin27_1005", theirs), atol=1e-6
        )
        np.testing.assert_allclose(
            scalp_position(ours), direction("spherical_1005", theirs), atol=1e-3
        )


@pytest.mark.parametrize(
    "name",
    ["EMG1", "Fp1-F7", "FFC1h", "C11", "X", "Cz2", "", "C7", "TZ", "FTZ", "O5", "FP3", "I4"],
)  # C7 ... I4 match a row and a number but are no 10-10 name (C7 is a neck reference)
def test_region_table_refuses_what_it_cannot_place(name):
    with pytest.raises(LayoutError, match=r"regions=\{") as info:
        place(name)
    assert info.value.channel == name and repr(name) in str(info.value)
    assert isinstance(info.value, LayoutError)


def test_scalp_selectors_need_names_the_layout_has():
    plain = TokenLayout.channel_tokens({"eeg": 2})
    for e in (channels("C3"), within_region("frontal"), cross_region()):
        with pytest.raises(LayoutError, match=r"no channel names.*EncoderConfig\.channel_names"):
            e.compile(plain, 1)
    with pytest.raises(LayoutError, match=r"'C5', which is not a channel.*Fz, C3, Cz"):
        channels("C3", "C5").compile(EEG, 1)
    with pytest.raises(LayoutError, match=r"'motor', which is not a channel.*nor a region"):
        within_region("motor").compile(EEG, 1)
    with pytest.raises(LayoutError, match=r"region 'occipital', which holds none"):  # no O here
        between_regions("frontal", "occipital").compile(EEG, 1)
    # names matched exactly, else ignoring case
    assert torch.equal(channels("c3", "CZ").compile(EEG, 1), channels("C3", "Cz").compile(EEG, 1))


def test_region_selectors_name_a_channel_the_table_cannot_place():
    # an EEG channel the table cannot place might belong to the region: refused
    eeg = TokenLayout.channel_tokens({"eeg": 3}, channel_names=["C3", "C4", "X1"])
    for e in (within_region("central"), cross_region(), between_regions("C3", "left")):
        with pytest.raises(LayoutError, match=r"edge set .* 'X1'.*regions=") as info:
            e.compile(eeg, 1)
        assert info.value.channel == "X1"
    # an sEMG channel beside the EEG is on no scalp: in no region (tokens: cls, C3, C4, EMG1)
    layout = TokenLayout.channel_tokens({"eeg": 2, "emg": 1}, channel_names=["C3", "C4", "EMG1"])
    central = within_region("central").compile(layout, 1)[0, 1:, 1:].int().tolist()
    assert central == [[1, 1, 0], [1, 1, 0], [0, 0, 0]]
    assert between_regions("C3", "left").compile(layout, 1)[0, 1:, 1:].int().tolist() == [
        [1, 0, 0],
        [0, 0, 0],
        [0, 0, 0],
    ]
    assert not cross_region().compile(layout, 1).any()  # C3 and C4: both central
    # channel names alone, and the user's own regions, need no table
    motor = within_region("motor", regions={"motor": ["C3", "C4"]})
    assert motor == within_region("C3+C4") and str(motor) == "within_region(C3+C4)"
    assert motor.compile(layout, 1)[0, 1:, 1:].int().tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 0]]
    assert between_regions("hand", "C3", regions={"hand": ["EMG1"]}).compile(layout, 1)[0, 3, 1]


def test_scalp_selectors_on_tubelet_tokens_refuse():
    """Tubelets embed all of a modality's channels: no token has one channel's name."""
    from emg_lens.models.native.fusion import tubelet_layout

    layout = tubelet_layout({"eeg": 2}, n_patches=2, channel_names=["C3", "C4"])
    with pytest.raises(LayoutError, match="no token of this layout embeds"):
        within_region("central").compile(layout, 1)
    assert not cross_region().compile(layout, 1).any()  # no token pair has channels


@pytest.mark.parametrize(
    "expr, text",
    [
        (channels("C4", "C3", "C4"), "channels(C3,C4)"),
        (within_region("frontal"), "within_region(frontal)"),
        (within_region(["C3", "Cz", "C4"]), "within_region(C3+C4+Cz)"),
        (within_region(" C4 + frontal "), "within_region(C4+frontal)"),
        (between_regions("frontal", "parietal"), "between_regions(frontal,parietal)"),
        (channels("EEG Fp1-REF", "1"), "channels('1','EEG Fp1-REF')"),
        (within_region(["it's", "a+b"]), "within_region('a+b'+\"it's\")"),
        (cross_region() & heads(1), "cross_region & heads(1)"),
    ],
)
def test_scalp_canonical_strings(expr, text):
    assert str(expr) == text
    assert parse(text) == expr


@pytest.mark.parametrize(
    "text, expected",
    [
        ("channels(C3, 'C4')", channels("C3", "C4")),
        ('within_region("frontal" + C3)', within_region("C3+frontal")),
        ("within_region(region=left)", within_region("left")),
        (
            "between_regions(key_region=C3+C4, query_region=frontal)",
            between_regions("frontal", ["C4", "C3"]),
        ),
        ("cross_region()", cross_region()),
    ],
)
def test_scalp_parse_accepts_non_canonical_spellings(text, expected):
    assert parse(text) == expected


@pytest.mark.parametrize(
    "text, column, token, mentions",
    [
        ("within_region(C3+)", 18, ")", "unexpected ')' after '+'"),
        ("within_region(C3++C4)", 18, "+", "unexpected '+' after '+'"),
        ("channels()", 1, "channels()", "at least one channel name"),
        ("channels(C3+C4)", 10, "C3+C4", "takes one value"),
        ("within_region('')", 15, "''", "channel or region name"),
        ("within_region(3)", 15, "3", "channel or region name"),
        ("time_window(1+2)", 15, "2", "unexpected '2' after '+'"),
        ("within(emg+acc)", 8, "emg+acc", "takes one value"),
        ("channels(name=C3)", 10, "name", "takes no keyword"),
        ("within_regoin(C3)", 1, "within_regoin", "did you mean 'within_region'"),
    ],
)
def test_scalp_parse_errors_point_at_the_offending_token(text, column, token, mentions):
    test_parse_errors_point_at_the_offending_token(text, column, token, mentions)


@pytest.mark.parametrize(
    "build, says",
    [
        (lambda: channels(), "at least one channel name"),
        (lambda: channels("C3", 4), "channel or region name"),
        (lambda: channels("C3\nC4"), "newline"),
        (lambda: within_region(""), "channel or region name"),
        (lambda: within_region(3), "must be a region"),
        (lambda: within_region({"a": 1}), "must be a region"),
        (lambda: within_region("x", regions=["C3"]), "regions must be a dict"),
        (lambda: within_region("x", regions={"x": "C3"}), r"regions\['x'\] must be a list"),
        (lambda: within_region("x", regions={"x": []}), r"one or more channel names, got \[\]"),
        (lambda: between_regions("C3", ["a'b\"c"]), "both quote characters"),
    ],
)
@pytest.mark.unchecked
def test_bad_scalp_selector_arguments(build, says):
    with pytest.raises(ArgumentError, match=says):
        build()


# ============================================================================ set laws
@pytest.mark.slow  # 4-6 s of hypothesis examples under the suite's runtime checks
@SETTINGS
@given(cases(n_exprs=3))
def test_set_laws(case):
    layout, n_heads, [(a, _), (b, _), (c, _)] = case

    def m(e: EdgeSet) -> torch.Tensor:
        return e.compile(layout, n_heads)

    def same(x: EdgeSet, y: EdgeSet) -> bool:
        return torch.equal(m(x), m(y))

    full = torch.ones(n_heads, layout.n_tokens, layout.n_tokens, dtype=torch.bool)
    assert same(~(a | b), ~a & ~b)  # De Morgan
    assert same(~(a & b), ~a | ~b)
    assert same(~~a, a)
    assert same(a - b, a & ~b)
    assert same(a | b, b | a) and same(a & b, b & a)
    assert same((a | b) | c, a | (b | c)) and same((a & b) & c, a & (b & c))
    assert same(a & (b | c), (a & b) | (a & c))
    assert same(a | (b & c), (a | b) & (a | c))
    assert torch.equal(m(a | ~a), full) and not m(a & ~a).any()
    assert torch.equal(m(all_edges()), full) and not m(no_edges()).any()
    assert torch.equal(m(~a), ~m(a))


# ============================================================================ string form
@SETTINGS
@given(cases())
def test_string_round_trip(case):
    layout, n_heads, [(expr, pred)] = case
    text = str(expr)
    back = parse(text)
    assert back == expr and hash(back) == hash(expr)
    assert EdgeSet.parse(text) == expr
    assert repr(expr) == f"EdgeSet({text!r})"
    assert torch.equal(back.compile(layout, n_heads), brute_force(pred, layout, n_heads))
    # Whitespace is free; the canonical form is not the only accepted one.
    spaced = re.sub(r"([(,])", r"\1 ", text).replace(")", " )")
    assert parse(spaced) == expr


def _grouping_paren_pairs(text: str) -> list[tuple[int, int]]:
    """(open, close) indices of the parentheses that group (not a selector's argument list)."""
    pairs, stack = [], []
    for i, ch in enumerate(text):
        if ch == "(":
            stack.append((i, i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")))
        elif ch == ")":
            start, grouping = stack.pop()
            if grouping:
                pairs.append((start, i))
    return pairs


@SETTINGS
@given(cases())
def test_string_form_has_minimal_parentheses(case):
    _, _, [(expr, _)] = case
    text = str(expr)
    for start, end in _grouping_paren_pairs(text):
        fewer = text[:start] + text[start + 1 : end] + text[end + 1 :]
        with contextlib.suppress(SpecError):
            assert parse(fewer) != expr, f"parentheses in {text!r} are redundant"


a, b, c = within("emg"), to_cls(), heads(0)


@pytest.mark.parametrize(
    "expr, text",
    [
        (cross_modal() & heads(0, 2), "cross_modal & heads(0,2)"),
        (within("emg") | between("cls", "acc"), "within(emg) | between(cls,acc)"),
        (~unimodal(include_cls=True), "~unimodal(include_cls)"),
        (time_window(3, min_lag=1), "time_window(3,min_lag=1)"),
        (time_window(2), "time_window(2)"),
        ((a | b) | c, "within(emg) | to_cls | heads(0)"),
        (a | (b | c), "within(emg) | (to_cls | heads(0))"),
        ((a - b) | c, "within(emg) - to_cls | heads(0)"),
        (a - (b | c), "within(emg) - (to_cls | heads(0))"),
        (a | b & c, "within(emg) | to_cls & heads(0)"),
        ((a | b) & c, "(within(emg) | to_cls) & heads(0)"),
        (a & (b & c), "within(emg) & (to_cls & heads(0))"),
        (~(a & b), "~(within(emg) & to_cls)"),
        (~~a & b, "~~within(emg) & to_cls"),
        (unimodal().on_heads([3, 1, 3]), "unimodal & heads(1,3)"),
    ],
)
def test_canonical_strings(expr, text):
    assert str(expr) == text
    assert parse(text) == expr


@pytest.mark.parametrize(
    "text, expected",
    [
        ("unimodal()", unimodal()),
        ("unimodal(include_cls=true)", unimodal(include_cls=True)),
        ("cross_modal(include_cls=False)", cross_modal()),
        ("time_window(3, 1)", time_window(3, 1)),
        ("time_window(max_lag=3, min_lag=1)", time_window(3, 1)),
        ("heads(2, 0, 2)", heads(0, 2)),
        ("  ~ ( within( emg )|to_cls ) ", ~(within("emg") | to_cls())),
        ("all_edges - no_edges()", all_edges() - no_edges()),
        # group names quoted as the Python examples write them
        ("between('emg','acc')", between("emg", "acc")),
        ('between("emg", "acc") | within(\'acc\')', between("emg", "acc") | within("acc")),
        ("between(query_group='emg', key_group=acc)", between("emg", "acc")),
    ],
)
def test_parse_accepts_non_canonical_spellings(text, expected):
    assert parse(text) == expected


# ============================================================================ parse errors
@pytest.mark.parametrize(
    "text, column, token, mentions",
    [
        ("cross_modal & foo", 15, "foo", "unknown selector 'foo'"),
        ("within(emg", 11, "", "end of expression"),
        ("heads(a)", 7, "a", "non-negative integer"),
        ("unimodal |", 11, "", "end of expression"),
        ("", 1, "", "empty"),
        ("crossmodal", 1, "crossmodal", "did you mean 'cross_modal'"),
        ("(within(emg) | to_cls", 22, "", "'(' opened at column 1"),
        ("within(emg) within(acc)", 13, "within", "unexpected 'within'"),
        ("unimodal ^ to_cls", 10, "^", "unexpected '^'"),
        ("within(emg, acc)", 13, "acc", "takes 1 argument"),
        ("within(3)", 8, "3", "group name"),
        ("heads(-1)", 7, "-", "unexpected '-'"),
        ("heads()", 1, "heads()", "at least one head index"),
        ("time_window(1, 3)", 1, "time_window(1, 3)", "min_lag <= max_lag"),
        ("time_window(min_lag=1)", 1, "time_window(min_lag=1)", "missing its argument 'max_lag'"),
        ("time_window(2, lag=1)", 16, "lag", "no argument 'lag'"),
        ("unimodal(include_cls=maybe)", 22, "maybe", "include_cls=true|false"),
        ("between(emg,,acc)", 13, ",", "unexpected ','"),
        ("to_cls & ~", 11, "", "end of expression"),
        ("between('emg,acc)", 9, "'", 'unexpected "\'"'),
        ("within('e mg')", 8, "'e mg'", "group name"),
        ("time_window('3')", 13, "'3'", "non-negative integer"),
        ("heads(heads=0, 1)", 16, "1", "positional argument follows keyword argument"),
        ("within_region(region='C3', region='C4')", 28, "region", "got 'region' twice"),
    ],
)
def test_parse_errors_point_at_the_offending_token(text, column, token, mentions):
    with pytest.raises(SpecError) as info:
        parse(text)
    err = info.value
    msg = str(err)
    assert isinstance(err, SpecError)
    assert err.expression == text and err.column == column
    assert repr(text) in msg and f"column {column}" in msg and mentions in msg
    header, shown, caret, expected = msg.splitlines()
    assert header.startswith("invalid edge expression") and shown == "    " + text
    assert caret.index("^") == len("    ") + column - 1  # the caret sits under the token
    assert caret.strip() == "^" * max(len(token), 1)
    assert expected.startswith("expected ")


def test_parse_error_lists_the_selectors():
    with pytest.raises(SpecError) as info:
        parse("cross_modal & foo")
    for name in ("unimodal", "cross_modal", "within(group)", "heads(", "time_window(", "to_cls"):
        assert name in str(info.value)


def test_a_region_needs_a_name():
    with pytest.raises(ArgumentError, match=r"within_region\(region\) needs at least one"):
        within_region([])


@pytest.mark.unchecked
def test_parse_rejects_non_strings_and_passes_edge_sets():
    e = unimodal()
    assert parse(e) is e
    with pytest.raises(SpecError, match="must be a string"):
        parse(3)  # type: ignore[arg-type]


# ============================================================================ the CLS rule
def test_cls_rule_on_a_small_layout():
    layout = TokenLayout.channel_tokens({"emg": 1, "acc": 1})  # positions: cls, emg, acc

    def m(e):
        return e.compile(layout, 1)[0].int().tolist()

    # Without the flag, an edge touching CLS is in neither set (row/column 0 empty).
    assert m(unimodal()) == [[0, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert m(cross_modal()) == [[0, 0, 0], [0, 0, 1], [0, 1, 0]]
    # With it, CLS is a modality of its own: CLS->CLS unimodal, CLS<->signal cross-modal.
    assert m(unimodal(include_cls=True)) == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert m(cross_modal(include_cls=True)) == [[0, 1, 1], [1, 0, 1], [1, 1, 0]]
    # Partitions: with the flag the two cover everything; without, everything but CLS edges.
    touching = within("cls") | to_cls() | from_cls()
    assert m(unimodal(include_cls=True) | cross_modal(include_cls=True)) == m(all_edges())
    assert m(unimodal() | cross_modal() | touching) == m(all_edges())
    assert m(unimodal() & cross_modal()) == m(no_edges())
    assert m(unimodal() & touching) == m(no_edges())


def test_cls_flag_is_irrelevant_without_cls():
    layout = TokenLayout.channel_tokens({"emg": 2, "acc": 1}, cls_token=False)
    for sel in (unimodal, cross_modal):
        assert torch.equal(sel().compile(layout, 2), sel(include_cls=True).compile(layout, 2))


# ============================================================================ errors, groups
def test_unknown_group_names_group_and_layout_groups():
    with pytest.raises(LayoutError, match=r"'force'.*\('cls', 'emg', 'acc'\)"):
        (unimodal() | between("emg", "force")).compile(SMALL, 2)


def test_head_out_of_range_names_heads_and_n_heads():
    with pytest.raises(LayoutError, match=r"\[4, 7\].*n_heads=4"):
        cross_modal().on_heads(0, 4, 7).compile(SMALL, 4)


def test_cls_selectors_need_a_cls_token():
    layout = TokenLayout.channel_tokens({"emg": 2}, cls_token=False)
    for e in (to_cls(), ~from_cls(), within("cls")):
        with pytest.raises(LayoutError, match="cls"):
            e.compile(layout, 1)


@pytest.mark.parametrize(
    "build",
    [
        lambda: within("not a name"),
        lambda: between("emg", 3),
        lambda: time_window(1, 3),
        lambda: time_window(-1),
        lambda: heads(),
        lambda: heads(-1),
        lambda: heads(True),
        lambda: unimodal(include_cls="yes"),
    ],
)
@pytest.mark.unchecked
def test_bad_selector_arguments(build):
    with pytest.raises(ArgumentError):
        build()


@pytest.mark.unchecked
def test_compile_checks_its_arguments():
    with pytest.raises(ArgumentError, match="TokenLayout"):
        unimodal().compile("emg", 2)  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match="n_heads"):
        unimodal().compile(SMALL, 0)


def test_groups():
    e = ~(within("emg") | between("acc", "force")) & heads(1) - to_cls() | unimodal()
    assert e.groups() == {"emg", "acc", "force", "cls"}
    assert (cross_modal(include_cls=True) | time_window(2)).groups() == set()


def test_structural_equality_hashing_and_pickling():
    e = (cross_modal() | within("emg")).on_heads(2, 0)
    assert e == (cross_modal() | within("emg")) & heads([0, 2])
    assert e != (within("emg") | cross_modal()).on_heads(0, 2)  # structural, not semantic
    assert len({e, parse(str(e)), pickle.loads(pickle.dumps(e))}) == 1
    assert heads(0) != within("emg") and unimodal() != unimodal(include_cls=True)


def test_truth_value_is_an_error():
    with pytest.raises(TypeError, match=r"\| & - ~"):
        bool(unimodal())
    with pytest.raises(TypeError):
        unimodal() and cross_modal()


def test_operators_reject_non_edge_sets():
    with pytest.raises(TypeError):
        unimodal() | "cross_modal"  # type: ignore[operator]


# ============================================================================ masked forwards
@functools.cache
def _tiny_isonet() -> IsoNet:
    names = ["Fp1", "cz", "C3", "P7", "O1", "EEG FP2-REF"]  # named: the scalp selectors apply
    return tiny_isonet(perturb=True, channel_names=names)


@settings(SETTINGS, max_examples=50)
@given(TEMPLATES)
def test_masked_forward_is_finite_on_both_paths(template):
    model = _tiny_isonet()
    expr, _ = instantiate(template, model.layout, model.cfg.n_heads)
    assert model.layout.groups == ("cls", "emg", "acc") and model.cfg.n_heads == 4
    mask = expr.compile(model.layout, model.cfg.n_heads)
    masks = {layer: mask for layer in range(model.cfg.n_layers)}
    x = model.example_input(2)
    with torch.no_grad():
        fast = model(x, edge_masks=masks, return_type="both")
        explicit, cache = model.run_with_cache(x, edge_masks=masks, return_type="both")
    for f, e in zip(fast, explicit):
        assert torch.isfinite(f).all() and torch.isfinite(e).all(), str(expr)
        torch.testing.assert_close(f, e, atol=1e-5, rtol=1e-5)
    for layer in range(model.cfg.n_layers):
        pattern = cache["pattern", layer]
        assert (pattern[:, mask] == 0).all()  # every masked edge carries no attention


# ============================================================================ layers
@SETTINGS
@given(
    cases(),
    st.frozensets(st.integers(0, 3), min_size=1),
    st.frozensets(st.integers(0, 3), min_size=1),
)
def test_layers_compile_per_layer(case, first, second):
    """``(e & layers(S1)) | ~layers(S2)`` in block l is e's mask where l is in S1, every edge
    where l is outside S2; its string parses back; compile_layers stacks the per-layer masks."""
    layout, n_heads, [(e, pred)] = case
    expr = e & layers(*first) | ~layers(*second)
    assert parse(str(expr)) == expr and expr.layer_indices() == set(first | second)
    plain = brute_force(pred, layout, n_heads)
    stacked = expr.compile_layers(layout, n_heads, 4)
    for layer in range(4):
        want = (plain if layer in first else torch.zeros_like(plain)) | (layer not in second)
        assert torch.equal(expr.compile(layout, n_heads, layer=layer), want), (str(expr), layer)
        assert torch.equal(stacked[layer], want)


def test_layers_need_the_layer_and_a_model_that_has_it():
    layout = TokenLayout.channel_tokens({"emg": 2, "acc": 1})
    expr = parse("cross_modal & layers(1, 3)")
    assert str(expr) == "cross_modal & layers(1,3)" and cross_modal().on_layers(3, 1) == expr
    with pytest.raises(LayoutError, match=r"layers\(1,3\) names blocks.*layer="):
        expr.compile(layout, 2)
    with pytest.raises(LayoutError, match=r"names layer\(s\) \[3\].*n_layers=2"):
        expr.compile_layers(layout, 2, 2)
    with pytest.raises(ArgumentError, match="at least one layer index"):
        layers()
    with pytest.raises(ArgumentError, match="a layer index must be a non-negative int"):
        layers(-1)
    assert cross_modal().compile(layout, 2, layer=5).equal(cross_modal().compile(layout, 2))
