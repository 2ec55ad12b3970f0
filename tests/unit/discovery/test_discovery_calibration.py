"""The calibrated screen (issue 25): exact last-layer effects, the risk of each estimate,
`Screen.verify`'s flagged, top and sampled exact passes with the bound on what it missed, and
a circuit search that keeps every class's accuracy.

- a last-layer cut's screen effect is the masked model's effect, on every model kind the
  screen takes (pre- and post-LN, CLS and mean-pooled readouts, a head structure, a base cut);
- the risk is 0 where nothing is estimated and grows with the change a cut writes;
- verify measures what it says it measures, and its bound is a Clopper-Pearson bound;
- learned edge gates at 0 and 1 compute the masked model, and rank what the output needs
  above what it cannot use.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy import stats as sps

from emg_lens import EncoderConfig
from emg_lens.discovery import ExactPasses, default_family, discover, layer_masks, screen
from emg_lens.discovery.exact import Score, base_layer_masks
from emg_lens.discovery.family import RowChunk
from emg_lens.discovery.gates import fit_gates, gate_hooks
from emg_lens.discovery.last_layers import AttentionOutput, supports_exact_penultimate
from emg_lens.discovery.screen import _clopper_pearson_upper, miss_note
from emg_lens.edges import parse
from emg_lens.errors import ArgumentError
from emg_lens.models import IsoNet, TinyMyo
from tests.tiny import tiny_isonet
from tests.unit.models.converted_models import cbramod_model, torch_encoder_model


def _isonet():
    return tiny_isonet(3, init_range=0.6)


def _tinymyo():
    cfg = EncoderConfig.preset(
        "tinymyo", n_layers=2, modalities={"emg": 2}, n_samples=160, init_range=0.3
    )
    return TinyMyo(cfg, task="classification").eval()


MODELS = {
    "isonet_cls": (_isonet, "logits", None),
    "isonet_mean": (_isonet, "avg_logits", None),
    "isonet_base": (_isonet, "avg_logits", "cross_modal & layers(1) - between(emg,acc)"),
    "tinymyo": (_tinymyo, "logits", None),
    "torch_pre_ln": (lambda: torch_encoder_model(1)[0].eval(), "logits", None),
    "torch_post_ln": (lambda: torch_encoder_model(2, norm_first=False)[0].eval(), "logits", None),
    # a LayerNorm and a Linear of the CLS token, read as an unembedding (issue 41, item 5)
    "torch_linear_readout": (
        lambda: torch_encoder_model(5, readout="linear", final_norm=False)[0].eval(),
        "logits",
        None,
    ),
    "cbramod": (lambda: cbramod_model(4)[0].eval(), "logits", None),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_exact_effects_are_the_masked_models_effects(name):
    """Every candidate the screen calls exact (the last layer's; the layer before it on a
    two-layer model whose readout reads a few tokens) has the masked model's effect."""
    build, return_type, base = MODELS[name]
    if name == "cbramod":
        pytest.importorskip("braindecode")
    model = build()
    X = model.example_input(24)
    with torch.no_grad():
        y = model(X, return_type=return_type).argmax(-1)
    y[::3] = (y[::3] + 1) % 3  # wrong windows too: margins of both signs
    base = None if base is None else parse(base)
    s = screen(model, (X, y), return_type=return_type, base=base, batch_size=10)
    passes = ExactPasses(model, X, y, metric="margin", return_type=return_type, base=base)
    full = passes.score({})
    table = s.table.sort_index()
    last = model.cfg.n_layers - 1
    exact_layers = {last}
    if last == 1 and supports_exact_penultimate(model, return_type):
        exact_layers.add(0)
    assert (table["method"] == np.where(table["layer"].isin(exact_layers), "exact", "linear")).all()
    assert name != "isonet_cls" or exact_layers == {0, 1}
    for i, candidate in enumerate(s.family):
        if candidate.layer not in exact_layers:
            continue
        got = passes.score(layer_masks(model, [candidate]))
        assert table.loc[i, "estimate"] == pytest.approx(got.metric - full.metric, abs=2e-5)
        assert table.loc[i, "estimate_accuracy"] == pytest.approx(got.accuracy - full.accuracy)
        assert table.loc[i, "risk"] == 0.0


@pytest.mark.parametrize("name", list(MODELS))
def test_a_block_computes_chosen_query_rows_as_its_forward_does(name):
    """`TransformerBlock.rows_forward` (what the exact penultimate effects and the study
    runner's last layer read) is the block's forward at those rows, with and without an edge
    mask, a row with every key cut included, on every model kind: rotary positions (TinyMyo),
    post-LN, a head structure (CBraMod), and a CLS row alone (computed on the input's side,
    `Attention._from_queries`, where the model has no rotary positions or q/k norm)."""
    build = MODELS[name][0]
    if name == "cbramod":
        pytest.importorskip("braindecode")
    model = build()
    n = model.layout.n_tokens
    x = torch.randn(3, n, model.cfg.d_model)
    mask = torch.rand(model.cfg.n_heads, n, n) < 0.3
    cut_row = mask.clone()
    cut_row[1, 0] = True  # head 1's query 0 attends to nothing
    with torch.no_grad():
        for block in model.blocks:
            for rows in ([0], [0, n - 1]):
                for m in (None, mask, cut_row):
                    got, want = block.rows_forward(x, rows, m), block(x, m)[:, rows]
                    scale = float(want.abs().max())  # float32 sums in another order
                    assert torch.allclose(got, want, atol=1e-5 * scale), (name, block.layer)


def test_a_cut_the_readout_cannot_see_is_exactly_zero():
    """The CLS head reads token 0 only: a last-layer cut of other query rows changes nothing,
    and so does a cut inside the base."""
    model = _isonet()
    X = model.example_input(16)
    y = model(X).argmax(-1)
    base = parse("cross_modal & layers(1)")
    table = screen(model, (X, y), base=base).table
    last = table[table["layer"] == 1]
    unseen = last[last["query_group"] != "cls"]
    inside = last[last["kind"].isin(["emg->acc", "acc->emg"])]
    assert (unseen["estimate"] == 0).all() and (inside["estimate"] == 0).all()
    assert (last[last["query_group"] == "cls"]["estimate"] != 0).any()


def test_the_risk_grows_with_the_change_a_cut_writes():
    """Risk is the mean squared change of the attention output: a candidate inside the base
    has none (and is known exactly: verify neither measures nor draws it); scaling the values
    (W_V) by 2 scales every risk by 4."""
    model = _isonet()
    X = model.example_input(16)
    y = model(X).argmax(-1)
    base = parse("cross_modal & layers(0)")
    linear_first = {"base": base, "exact_penultimate": False}  # two layers: layer 0 estimated
    screened = screen(model, (X, y), **linear_first)
    before = screened.table.sort_index()
    first = before[before["layer"] == 0]
    inside = first["kind"].isin(["emg->acc", "acc->emg"])
    assert inside.sum() == 8 and (first.loc[inside, "method"] == "exact").all()
    assert (first.loc[~inside, "method"] == "linear").all()
    assert (first.loc[inside, ["estimate", "estimate_accuracy"]] == 0).all().all()
    assert (first.loc[inside, "risk"] == 0).all() and (first.loc[~inside, "risk"] > 0).all()
    verified = screened.verify(top=2, sample=100).table.sort_index()
    assert (verified.loc[first.index[inside], "verified"] == "").all()  # no pass, no draw
    assert (verified.loc[first.index[~inside], "verified"] != "").all()  # each measured
    with torch.no_grad():
        model.blocks[0].attn.W_V.mul_(2)
        model.blocks[0].attn.b_V.mul_(2)
    after = screen(model, (X, y), **linear_first).table.sort_index()
    ratio = after.loc[first.index[~inside], "risk"] / first.loc[~inside, "risk"]
    assert len(ratio) == 28 and np.allclose(ratio, 4.0, rtol=1e-4)


@pytest.mark.parametrize("heads_per_slot", [1, 2])
def test_the_risk_energy_is_the_squared_norm_of_the_attention_output_change(heads_per_slot):
    """The fast energy (through ``W_O``'s QR factor, never ``d_model`` wide) equals the
    squared norm of `AttentionOutput.change` per slot, one head per slot or two summed;
    a ``W_O`` with zero blocks (a head structure) included."""
    torch.manual_seed(0)
    batch, n_tok, n_heads, d_head, d_model = 5, 7, 3, 4, 16
    v = torch.randn(batch, n_tok, n_heads, d_head)
    W_O = torch.randn(n_heads, d_head, d_model)
    W_O[1, :, 8:] = 0
    queries = torch.tensor([0, 2, 5, 2, 6, 1])
    heads = torch.tensor([0, 1, 2, 2, 1, 0])
    owner = torch.tensor([0, 0, 1, 2, 3, 3])
    if heads_per_slot == 2:  # candidate 0 is two heads on query 2
        queries, heads = torch.tensor([2, 2, 5, 2, 6, 1]), torch.tensor([0, 1, 2, 2, 1, 0])
    change = torch.randn(batch, len(heads), n_tok)
    rows = RowChunk(0, heads, queries, torch.zeros(len(heads), n_tok, dtype=torch.bool), owner)
    output = AttentionOutput(v, W_O, n_tok)
    got_owner, energy = output.energy(change, rows)
    _, want_owner, d_attn = output.change(change, rows)
    want = (d_attn.double() ** 2).sum((0, 2))
    per_candidate = [
        torch.zeros(4, dtype=torch.float64).index_add_(0, o, e.double())
        for o, e in ((got_owner, energy), (want_owner, want))
    ]
    assert len(energy) == len(heads) - (heads_per_slot - 1)
    assert torch.allclose(*per_candidate, rtol=1e-5)


def test_verify_measures_the_flagged_the_top_and_a_sample():
    model = _isonet()
    X = model.example_input(32)
    y = model(X).argmax(-1)
    s = screen(model, (X, y), exact_penultimate=False)  # layer 0 linearised
    v = s.verify(top=5, flagged=6, sample=8, seed=1)
    table = v.table
    linear = s.table[s.table["method"] == "linear"]
    riskiest = set(linear["risk"].nlargest(6).index)
    measured = table[table["exact"].notna() & (table["method"] != "exact")]  # by verify
    assert riskiest <= set(measured.index)  # a flagged row in the top is labelled "top"
    assert set(table.index[table["verified"] == "flagged"]) <= riskiest
    assert (table["verified"] == "sample").sum() == 8
    assert (measured["method"] == "linear").all()
    assert (table["final"] == table["exact"].fillna(table["estimate"])).all()
    passes = ExactPasses(model, X, y, metric="margin", return_type="logits")
    full = passes.score({})
    for i in measured.index[:6]:
        assert table.loc[i, "exact"] == pytest.approx(
            passes.score(layer_masks(model, [s.family[i]])).metric - full.metric, abs=1e-5
        )
    # every candidate ranked above the top-5 threshold is known exactly
    top = table.head(5)
    assert (top["exact"].notna() | (top["method"] == "exact")).all()
    assert list(table["rank"]) == list(range(1, len(table) + 1))
    hits = int(v.agreement["sample_hits"])
    assert v.agreement["missed_rate_upper"] == pytest.approx(_clopper_pearson_upper(hits, 8))
    left = (table["exact"].isna() & (table["method"] == "linear")).sum()  # after the draw
    assert v.agreement["missed_upper"] == pytest.approx(
        max(0.0, v.agreement["missed_rate_upper"] * (left + 8) - hits)
    )
    # the same seed draws the same sample
    again = s.verify(top=5, flagged=6, sample=8, seed=1).table
    assert list(again["verified"]) == list(table["verified"])


@pytest.mark.slow
def test_group_testing_finds_the_drops_a_blind_screen_ranks_last():
    """Issue 88: the layer-0 cuts a first-order screen estimates near 0 (their effect cascades
    through later blocks) are found by exact passes over groups. A screen whose layer-0
    estimates are all 0 (blind) verifies no layer-0 candidate into its top 3 without group
    testing; with ``groups=1`` its top 3 is the exact top 3 of all 72 candidates, each group
    tested on 4 of the 32 windows (an eighth of a pass) and every member of a group that is
    not cleared measured on all of them. A fixed, untrained model (seed 0; seeds 1-5 pass
    too): its largest drop (-1.04) is 3x the 4th (-0.33); a group whose members cancel could
    clear a large one, see `verify_candidates`."""
    model = tiny_isonet(0, init_range=0.6)
    X = model.example_input(32)
    y = model(X).argmax(-1)
    s = screen(model, (X, y), exact_penultimate=False)  # layer 0 linearised
    blind = s.table.copy()
    blind.loc[blind["method"] == "linear", "estimate"] = 0.0
    s = dataclasses.replace(s, table=blind)
    passes = ExactPasses(model, X, y, metric="margin", return_type="logits")
    full = passes.score({}).metric
    exact = [passes.score(layer_masks(model, [c])).metric - full for c in s.family]
    truth = set(np.argsort(exact, kind="stable")[:3].tolist())
    assert truth & set(s.table.index[s.table["method"] == "linear"])  # a layer-0 one
    plain = s.verify(top=3, flagged=0, sample=0)
    assert set(plain.table.head(3).index) != truth and plain.agreement["group_passes"] == 0
    batches: list[int] = []
    hook = model.register_forward_pre_hook(lambda _, args: batches.append(len(args[0])))
    try:
        grouped = s.verify(top=3, flagged=0, sample=0, groups=1)
    finally:
        hook.remove()
    table, agreement = grouped.table, grouped.agreement
    assert set(table.head(3).index) == truth
    assert agreement["group_passes"] == 9  # one per kind of cut of layer 0
    assert batches.count(4) == 1 + 9  # on 4 windows (and once uncut), the rest on 32
    tested = table[table["verified"].isin(["group", "top"])]  # a group's top 3 say "top"
    assert tested["exact"].notna().all() and len(tested) == agreement["measured"]
    assert agreement["cleared"] + agreement["measured"] == 36  # layer 0's


def test_a_verified_screens_repr_prints_its_bound_with_the_draws_it_came_from():
    """Issue 88, item 3: the bound was printed without its sample size; 8 draws cannot bound
    the miss rate below 32 % even when none missed, and the repr says so, with the cost."""
    model = _isonet()
    X = model.example_input(32)
    s = screen(model, (X, model(X).argmax(-1)), exact_penultimate=False)  # layer 0 linearised
    assert "not verified" in repr(s)
    v = s.verify(top=5, flagged=6, sample=8, seed=1)
    a, text = v.agreement, repr(v)
    unmeasured = (v.table["method"] == "linear").sum() - a["measured"] + 8
    assert a["unmeasured"] == unmeasured
    rate = math.ceil(100 * a["missed_rate_upper"])  # an upper bound, rounded up
    assert f"missed: at most {rate} % of the {unmeasured:.0f} unmeasured (" in text
    assert "), from 8 draws" in text and "DataFrame" not in text and "\n" not in text
    assert "8 draws cannot certify a miss rate below 32 %: draw more" in text
    assert "verify(..., sample=N)" in text and "59 draws that find no miss bound it at 5 %" in text


def test_draws_that_certify_a_miss_rate_are_the_clopper_pearson_count():
    """Zero misses in n draws bound the rate at 1 - 0.05 ** (1 / n): 5 % from n = 59."""
    assert _clopper_pearson_upper(0, 59) <= 0.05 < _clopper_pearson_upper(0, 58)
    assert miss_note(59) == "" and miss_note(100) == ""
    assert miss_note(58).startswith("58 draws cannot certify a miss rate below 5.1 %")
    assert "59 draws that find no miss" in miss_note(1, ask="`verify_sample = N`")


def test_the_miss_bound_covers_what_a_large_draw_leaves_unmeasured():
    """A tiny mean-head model where 23 candidates are unmeasured and the draw of 10 found none
    of the 4 that beat the top-5 threshold: the bound applied to the 13 left after the draw
    said 3.37; on all 23 it says 5.95."""
    model = IsoNet(EncoderConfig.preset("tiny", seed=18, init_range=0.5)).eval()
    torch.manual_seed(18)
    X = model.example_input(32)
    y = model(X, return_type="avg_logits").argmax(-1)
    s = screen(model, (X, y), return_type="avg_logits")
    v = s.verify(top=5, seed=8)
    passes = s.exact_passes()
    full = passes.score({}).metric
    table = v.table
    threshold = float(table.loc[table["verified"] == "top", "final"].max())
    unmeasured = table.index[(table["method"] != "exact") & table["exact"].isna()]
    missed = sum(
        passes.score(s.family.layer_masks([i])).metric - full < threshold for i in unmeasured
    )
    assert (missed, v.agreement["sample_hits"]) == (4, 0)  # the case the old bound missed
    assert v.agreement["missed_upper"] >= missed


def test_a_screen_exact_everywhere_has_nothing_to_verify_or_miss():
    model = _isonet()
    X = model.example_input(24)
    s = screen(model, (X, model(X).argmax(-1)))
    v = s.verify(top=5)
    assert (v.table["method"] == "exact").all() and v.agreement["measured"] == 0
    assert v.agreement["missed_upper"] == 0 and v.agreement["missed_rate_upper"] == 0
    # no screen ran: its rho is undefined (it was the exact effects' against themselves, 1.0)
    rho = {k: v.agreement.pop(k) for k in ("spearman", "spearman_accuracy")}
    assert np.isnan(list(rho.values())).all() and v.agreement["screened"] == 0
    assert all(np.isfinite(value) for value in v.agreement.values())


@pytest.mark.parametrize(("hits", "n"), [(0, 1), (0, 10), (2, 10), (5, 7), (9, 10)])
def test_the_miss_bound_is_the_one_sided_clopper_pearson_bound(hits, n):
    """A one-sided 95 % upper bound is the upper end of the two-sided 90 % interval."""
    ci = sps.binomtest(hits, n).proportion_ci(confidence_level=0.90, method="exact")
    assert _clopper_pearson_upper(hits, n) == pytest.approx(ci.high, rel=1e-9)
    assert _clopper_pearson_upper(n, n) == 1.0 and np.isnan(_clopper_pearson_upper(0, 0))


@pytest.mark.unchecked
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"flagged": -1}, "flagged must be a non-negative int"),
        ({"flagged": 1.5}, "flagged must be a non-negative int"),
        ({"sample": True}, "sample must be a non-negative int"),
        ({"top": 0}, "top must be an int"),
    ],
)
def test_verify_refuses_bad_budgets(kwargs, match):
    model = _isonet()
    X = model.example_input(8)
    s = screen(model, (X, model(X).argmax(-1)), family=default_family(model)[:9])
    with pytest.raises(ArgumentError, match=match):
        s.verify(**{"top": 3, **kwargs})


def test_the_circuit_keeps_every_class_and_says_so():
    """By default the search keeps every class's accuracy within tau of its range; the
    per-class accuracies it reports are those of masked forwards of the circuit."""
    model = _isonet()
    X = model.example_input(64)
    with torch.no_grad():
        y = model(X).argmax(-1)
    found = discover(model, (X, y), tau=0.2)
    assert found.classes_lost == []
    cut = layer_masks(model, found.cut)
    with torch.no_grad():
        predicted = model(X, edge_masks=cut).argmax(-1)
    for label, accuracy in found.circuit_score.class_accuracy.items():
        on = y == label
        assert accuracy == pytest.approx(float((predicted[on] == label).double().mean()))
    summary = found.summary()
    assert summary["classes_lost"] == [] and set(summary["class_accuracy_circuit"]) == {
        str(int(k)) for k in y.unique()
    }


def test_a_class_is_lost_when_its_accuracy_falls_by_more_than_tau_of_its_range():
    full = Score(1.0, 0.9, {0: 1.0, 1: 0.8, 2: 0.9})
    empty = Score(0.0, 0.5, {0: 0.0, 1: 0.8, 2: 0.5})
    assert Score(0.9, 0.8, {0: 0.95, 1: 0.8, 2: 0.86}).classes_lost(full, empty, 0.1) == []
    # class 0 loses 0.11 > 0.1 of its range; class 1 loses anything of an empty range
    lost = Score(0.9, 0.8, {0: 0.89, 1: 0.79, 2: 0.9})
    assert lost.classes_lost(full, empty, 0.1) == [0, 1]


@pytest.mark.slow
def test_a_discovery_study_reports_stability_within_and_across_subjects(tmp_path):
    """``resamples`` bootstrap circuits per subject (``stability_jaccard``), the Jaccard index
    of every two subjects' circuits (``stability.csv``), and the classes each circuit keeps."""
    from emg_lens.discovery.stability import jaccard
    from emg_lens.discovery.study import run_discovery
    from emg_lens.inspect import as_subject_data

    model = _isonet()
    subjects = {}
    for s in (1, 2):
        X = model.example_input(32 + 16 * s)  # two subjects, different windows
        with torch.no_grad():
            y = model(X).argmax(-1)
        subjects[s] = (model, as_subject_data(model, (X.numpy(), y.numpy())))
    spec = {"kind": "discovery", "name": "t", "models": "x", "tau": 0.2, "verify_top": 3}
    with pytest.warns(UserWarning, match="carry no trials"):  # (X, y): each window a trial
        result = run_discovery({**spec, "resamples": 2}, models=subjects, out_dir=tmp_path)
    circuits = result.circuits.set_index("subject")
    assert ((circuits["stability_jaccard"] >= 0) & (circuits["stability_jaccard"] <= 1)).all()
    assert (circuits["resamples"] == 2).all() and (circuits["classes_lost"] == "").all()
    kept = result.screen[result.screen["kept"]].groupby("subject")["edges"].agg(set)
    pairs = result.stability
    assert list(pairs[["subject_a", "subject_b"]].iloc[0]) == [1, 2]
    assert pairs["jaccard"].iloc[0] == pytest.approx(jaccard(kept[1], kept[2]))
    saved = (tmp_path / "stability.csv").read_text()
    assert saved.splitlines()[0] == "subject_a,subject_b,jaccard"
    assert "Jaccard" in (tmp_path / "summary.md").read_text()


# ---------------------------------------------------------------- learned edge gates


@pytest.mark.parametrize("name", list(MODELS))
def test_gates_at_zero_and_one_compute_the_masked_model(name):
    """A closed gate is the -inf cut, an open one changes nothing, on every model kind; with a
    base cut too, and with rows whose keys are all closed (they attend to nothing)."""
    build, return_type, base = MODELS[name]
    if name == "cbramod":
        pytest.importorskip("braindecode")
    model = build()
    family = default_family(model)
    X = model.example_input(6)
    base_masks = base_layer_masks(model, None if base is None else parse(base))
    rng = np.random.default_rng(0)
    half = [i for i in range(len(family)) if rng.random() < 0.5]
    # closing everything closes every key of every row: those rows attend to nothing
    for closed in (half, list(range(len(family)))):
        log_gates = torch.zeros(len(family))
        log_gates[closed] = float("-inf")
        masks = layer_masks(model, [family[i] for i in closed])
        for layer, mask in (base_masks or {}).items():
            masks[layer] = masks[layer] | mask if layer in masks else mask
        with torch.no_grad():
            hooked = model.run_with_hooks(
                X,
                return_type=return_type,
                edge_masks=base_masks,
                fwd_hooks=gate_hooks(model, family, log_gates),
            )
            expected = model(X, return_type=return_type, edge_masks=masks)
        torch.testing.assert_close(hooked, expected, atol=2e-5, rtol=1e-4)
    with torch.no_grad():
        open_all = model.run_with_hooks(
            X,
            return_type=return_type,
            edge_masks=base_masks,
            fwd_hooks=gate_hooks(model, family, torch.zeros(len(family))),
        )
        clean = model(X, return_type=return_type, edge_masks=base_masks)
    torch.testing.assert_close(open_all, clean, atol=2e-5, rtol=1e-4)


def test_gates_rank_a_needed_candidate_above_ones_the_base_already_cuts():
    """Candidates whose edges the base cuts change nothing: only the penalty moves their gates,
    so they close first, whatever the seed; a candidate the output needs survives longer."""
    model = _isonet()
    X = model.example_input(64)
    family = default_family(model)
    ablations = [
        model(X, edge_masks=layer_masks(model, [c])).detach() for c in family[: len(family) // 2]
    ]
    clean = model(X).detach()
    effects = [float((a - clean).abs().mean()) for a in ablations]
    needed = int(np.argmax(effects))  # layer 0: the base cuts layer 1 and the rest of layer 0
    others = [c for i, c in enumerate(family) if i != needed]
    base = layer_masks(model, others)
    for seed in (0, 1):
        survival = fit_gates(model, X, family, return_type="logits", base=base, steps=40, seed=seed)
        assert survival.shape == (len(family),)
        assert ((survival > 0) & (survival < 1)).all()
        assert survival[needed] > np.delete(survival, needed).max() + 0.05


def test_fit_gates_is_seeded_and_rejects_a_family_that_changes_nothing_and_bad_rates():
    model = _isonet()
    X = model.example_input(32)
    family = default_family(model)
    one = fit_gates(model, X, family, return_type="logits", steps=5, seed=3)
    np.testing.assert_array_equal(
        one, fit_gates(model, X, family, return_type="logits", steps=5, seed=3)
    )
    with pytest.raises(ArgumentError, match="steps must be a positive int"):
        fit_gates(model, X, family, return_type="logits", steps=0)
    with pytest.raises(ArgumentError, match="penalty must be a finite number >= 0, got nan"):
        fit_gates(model, X, family, return_type="logits", penalty=float("nan"))
    with pytest.raises(ArgumentError, match="lr must be a finite number > 0, got inf"):
        fit_gates(model, X, family, return_type="logits", lr=float("inf"))
    everything = layer_masks(model, family)
    with pytest.raises(ArgumentError, match="nothing for the gates to keep"):
        fit_gates(model, X, family, return_type="logits", base=everything, steps=5)
    with torch.no_grad():  # an overflow is named as one, not as a family that changes nothing
        model.blocks[0].attn.W_V.fill_(float("inf"))
    with pytest.raises(ArgumentError, match="non-finite log-probabilities: its outputs overflow"):
        fit_gates(model, X, family, return_type="logits", steps=5)


def test_discover_with_gates_keeps_the_metric_and_says_how_it_ordered():
    model = _isonet()
    X = model.example_input(64)
    data = (X, model(X).argmax(-1))
    found = discover(model, data, tau=0.1, method="gates")
    assert found.method == "gates" and found.summary()["method"] == "gates"
    assert found.faithfulness > 0.9 and not found.classes_lost
    assert found.n_kept < found.n_candidates
    assert list(found.table.sort_values("step")["survival"]) == sorted(found.table["survival"])
    with pytest.raises(ArgumentError, match="method = 'acdc'; accepted"):
        discover(model, data, method="acdc")


def test_stability_resamples_whole_trials_not_windows():
    """Issue 46: the bootstrap of a circuit's stability draws trials, each with all its
    windows (drawing overlapping windows one by one understates the variation)."""
    import numpy as np

    from emg_lens.data.preprocess import SubjectData
    from emg_lens.discovery.stability import resample_trials

    y, rep = np.repeat([0, 1, 0, 1], 5), np.repeat([1, 1, 2, 2], 5)  # 4 trials of 5 windows
    X = np.arange(20, dtype=np.float32).reshape(20, 1, 1)
    data = SubjectData(1, {"emg": 1}, [0, 1], X, y, rep, X, y, rep)
    for seed in range(20):
        drawn = resample_trials(data, np.random.default_rng(seed))
        assert len(drawn.y_test) == 20
        starts = drawn.X_test[::5, 0, 0].astype(int)
        assert (starts % 5 == 0).all()  # each block of five is one whole trial, in order
        assert (drawn.X_test[:, 0, 0].reshape(4, 5) == starts[:, None] + np.arange(5)).all()


@pytest.mark.parametrize(
    ("keep_accuracy", "exact_penultimate"), [(False, None), (True, False), (False, False)]
)
def test_the_bootstrap_reruns_the_procedure_that_found_the_circuit(
    monkeypatch, keep_accuracy, exact_penultimate
):
    """Resampled to the same windows, the bootstrap finds the same circuit: it reruns the
    screen's exact layers, verify's budgets and discover's accuracy rule (without them, a
    circuit found with keep_accuracy=False scored Jaccard 0.097 against itself)."""
    from emg_lens.discovery import stability

    model = IsoNet(EncoderConfig.preset("tiny", seed=0, init_range=0.5)).eval()
    X = model.example_input(32)
    y = model(X).argmax(-1)
    screened = screen(model, (X, y), exact_penultimate=exact_penultimate).verify(
        top=10, flagged=4, sample=6, seed=3
    )
    found = discover(model, (X, y), tau=0.2, screened=screened, keep_accuracy=keep_accuracy)
    monkeypatch.setattr(stability, "resample_trials", lambda subject, rng: subject)
    with pytest.warns(UserWarning, match="carry no trials .* resamples single windows"):
        assert stability.bootstrap_stability(found, resamples=1, verify_top=10) == [1.0]
