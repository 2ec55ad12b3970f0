"""Screening and discovery (`emg_lens.discovery`) against exact passes and hand computations.

- the screen's masked pattern is the pattern the model computes with the candidate cut;
- its estimate is the first-order effect of that pattern change (a finite difference in
  float64 along the same direction);
- discovery's circuit keeps 1 - tau of the metric, and its complement, pasted into a study,
  gives the accuracy discovery reported;
- bad input gets named errors.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from emg_lens import EncoderConfig
from emg_lens.components.attend import cut_pattern
from emg_lens.discovery import (
    Candidate,
    ExactPasses,
    compile_family,
    cut_edge_set,
    default_family,
    discover,
    family_from_edges,
    layer_masks,
    plot_screen,
    plot_screen_vs_exact,
    screen,
    window_metric,
)
from emg_lens.discovery.exact import base_layer_masks
from emg_lens.discovery.metrics import spearman_p
from emg_lens.discovery.screen_hooks import capture as _capture
from emg_lens.discovery.spec import DiscoverySpec
from emg_lens.discovery.study import run_discovery, screen_note
from emg_lens.edges import between, from_cls, heads, parse
from emg_lens.errors import ArgumentError, LayoutError, SpecError
from emg_lens.hooks import name_filter
from emg_lens.models import IsoNet, MultimodalMLP, TinyMyo
from emg_lens.stats.compare import format_p
from emg_lens.studies import run_study
from tests.tiny import synthetic_checkpoint, tiny_isonet


def test_the_family_is_compiled_once_and_carried_down(model, data):
    """A `CompiledFamily` holds each candidate's mask as `layer_masks` compiles it, its size,
    rows and the union; a screen keeps a family compiled already (with another base cut, its
    masks), and its `Screen.family` is what the search and a resample's screen read."""
    compiled = compile_family(model)
    for i, c in enumerate(compiled):
        mask = layer_masks(model, [c])[c.layer]
        assert torch.equal(compiled.masks[i], mask) and compiled.sizes[i] == int(mask.sum())
        h, q, cut = compiled.rows[i]
        assert torch.equal(cut, mask[h, q]) and bool(mask[h, q].any(-1).all())
    union = layer_masks(model, list(compiled))
    assert all(torch.equal(compiled.everything[k], m) for k, m in union.items())
    assert screen(model, data, family=compiled).family is compiled
    base = parse("cross_modal & layers(1)")
    based = screen(model, data, family=compiled, base=base).family
    assert based.masks is compiled.masks and based.base_edges is base
    assert torch.equal(based.base[1], base.compile_layers(model.layout, 4, 2)[1])


def test_default_family_partitions_every_edge(model):
    family = default_family(model)
    n = model.cfg.n_layers * model.cfg.n_heads * len(model.layout.groups) ** 2
    assert len(family) == n
    cover = torch.stack([layer_masks(model, [c])[c.layer] for c in family if c.layer == 0])
    assert bool((cover.sum(0) == 1).all())  # every (head, query, key) in exactly one candidate


def _linear_downstream_isonet(seed: int) -> IsoNet:
    """One layer, no LayerNorm, an MLP that adds a constant: everything after the attention
    pattern is affine in it, so a first-order estimate of a cut is the cut's exact effect."""
    cfg = EncoderConfig.preset(
        "tiny", seed=seed, n_layers=1, normalization_type=None, init_range=0.5
    )
    model = IsoNet(cfg)
    with torch.no_grad():
        model.blocks[0].mlp.W_in.zero_()
        model.blocks[0].mlp.b_in.zero_()
    return model.eval()


@pytest.mark.parametrize("seed", [0, 1])
def test_the_screen_is_exact_where_the_model_is_linear_after_the_cut(seed):
    """Where everything downstream of the masked pattern is affine, the screen's estimates are
    the exact effects, with one known difference: the estimate follows each window's clean
    runner-up class, which the cut may let another class overtake. So the margin and accuracy
    estimates equal the exact masked logits read against the clean runner-up, the accuracy
    estimate is never below the exact accuracy effect, and every large exact accuracy effect
    is estimated with its sign. (Built, not trained: these hold for every CPU. On trained
    models, where later layers and LayerNorm sit downstream, the sign is not guaranteed, even
    in the last layer, for cuts that remove most of a row's attention: issue 25.)"""
    model = _linear_downstream_isonet(seed)
    X = model.example_input(256)
    with torch.no_grad():
        clean = model(X, return_type="avg_logits")
    y = clean.argmax(-1)
    y[::3] = (y[::3] + 1) % model.cfg.n_classes  # windows the model gets wrong, too
    rows = torch.arange(len(y))
    others = clean.masked_fill(torch.nn.functional.one_hot(y, clean.shape[-1]).bool(), -torch.inf)
    runner_up = others.argmax(-1)
    clean_margin = clean[rows, y] - clean[rows, runner_up]
    clean_accuracy = (clean.argmax(-1) == y).double().mean()
    pairs = [f"between({q},{k})" for q in model.layout.groups for k in model.layout.groups]
    family = family_from_edges(model, pairs, per_head=True)
    screened = screen(
        model, (X, y), family=family, return_type="avg_logits", exact_last_layer=False
    )
    table = screened.table.sort_index()
    large = 0
    for i, candidate in enumerate(family):
        with torch.no_grad():
            cut = model(X, return_type="avg_logits", edge_masks=layer_masks(model, [candidate]))
        margin = cut[rows, y] - cut[rows, runner_up]
        estimate, estimate_accuracy = table[["estimate", "estimate_accuracy"]].iloc[i]
        assert estimate == pytest.approx(float((margin - clean_margin).mean()), abs=1e-5)
        linear_accuracy = float((margin > 0).double().mean() - clean_accuracy)
        assert estimate_accuracy == pytest.approx(linear_accuracy, abs=1e-9)
        exact_accuracy = float((cut.argmax(-1) == y).double().mean() - clean_accuracy)
        assert estimate_accuracy >= exact_accuracy - 1e-9, candidate.label
        if abs(exact_accuracy) > 0.05:
            large += 1
            assert np.sign(estimate_accuracy) == np.sign(exact_accuracy), candidate.label
    assert large >= 5, "too few large effects: the sign check would be vacuous"


def _change(scores, pattern, mask, rows):
    """``A' - A`` on a candidate's rows, as the screen computes it (`cut_pattern`)."""
    heads, queries = rows
    return cut_pattern(scores[:, heads, queries], mask[rows]) - pattern[:, heads, queries]


def test_the_screens_pattern_is_the_masked_models_pattern(model, data):
    X, _ = data
    with torch.no_grad():
        _, scores, patterns, _, _ = _capture(model, X, "logits")
    for c in default_family(model)[::7]:
        mask = layer_masks(model, [c])[c.layer]
        rows = mask.any(-1).nonzero(as_tuple=True)
        change = _change(scores[c.layer], patterns[c.layer], mask, rows)
        _, cache = model.run_with_cache(
            X, edge_masks={c.layer: mask}, names_filter=name_filter("attn.hook_pattern")
        )
        masked = cache["pattern", c.layer]
        torch.testing.assert_close(
            patterns[c.layer][:, rows[0], rows[1]] + change, masked[:, rows[0], rows[1]]
        )
        untouched = ~mask.any(-1)
        torch.testing.assert_close(masked[:, untouched], patterns[c.layer][:, untouched])


def test_the_estimate_is_the_first_order_effect_of_the_exact_pattern_change(model, data):
    """A finite difference in float64: patch the pattern to A + eps (A' - A) in the candidate's
    layer and compare the metric's slope with the screen's estimate."""
    double = tiny_isonet(3, init_range=0.6)
    double.load_state_dict(model.state_dict())
    double = double.to(torch.float64)
    X, y = data
    X = X.double()
    family = default_family(double)[3::11]
    s = screen(double, (X, y), family=family, metric="logprob", exact_last_layer=False)
    with torch.no_grad():
        clean_logits, scores, patterns, _, _ = _capture(double, X, "logits")
    clean = float(window_metric(clean_logits, y, "logprob").mean())
    eps = 1e-5
    for i, c in enumerate(family):
        mask = layer_masks(double, [c])[c.layer]
        rows = mask.any(-1).nonzero(as_tuple=True)
        change = _change(scores[c.layer], patterns[c.layer], mask, rows)

        def nudge(pattern, hook, rows=rows, change=change):
            pattern = pattern.clone()
            pattern[:, rows[0], rows[1]] += eps * change
            return pattern

        point = f"blocks.{c.layer}.attn.hook_pattern"
        with torch.no_grad():
            logits = double.run_with_hooks(X, fwd_hooks=[(point, nudge)])
        slope = (float(window_metric(logits, y, "logprob").mean()) - clean) / eps
        estimate = float(s.table.loc[i, "estimate"])
        assert abs(slope - estimate) <= 1e-4 * max(1.0, abs(slope)), (c.label, slope, estimate)


def test_the_cls_readout_screens_candidates_whose_rows_it_does_not_read(model, data):
    """On the CLS head (``"logits"``), a last-layer candidate of tokens reading CLS
    (`from_cls`) changes no row the readout reads: its exact effect is 0, as the masked run
    measures, where the screen used to stop on the empty set of rows it patched. Every
    candidate's estimate equals its masked run where the screen computed it exactly."""
    X, y = data
    family = [
        Candidate(layer, from_cls() & heads(h), h, "from_cls")
        for layer in range(model.cfg.n_layers)
        for h in range(model.cfg.n_heads)
    ]
    s = screen(model, (X, y), family=family, return_type="logits")
    last = s.table[s.table["layer"] == model.cfg.n_layers - 1]
    assert len(last) == model.cfg.n_heads and (last["method"] == "exact").all()
    assert (last["estimate"] == 0).all() and (last["estimate_accuracy"] == 0).all()
    for row in s.table[s.table["method"] == "exact"].itertuples():
        with torch.no_grad():
            logits = model(X, edge_masks=layer_masks(model, [s.candidate(row.rank)]))
        effect = float(window_metric(logits, y, "margin").mean()) - s.baseline
        assert row.estimate == pytest.approx(effect, abs=1e-5), row.layer


def test_verify_adds_exact_effects_that_match_masked_runs(model, data):
    X, y = data
    s = screen(model, (X, y), exact_penultimate=False).verify(top=5)  # layer 0 linearised
    top = s.table[s.table["verified"] == "top"]
    assert len(top) == 5 and (top["exact"].notna() | (top["method"] == "exact")).all()
    assert (s.table.head(5)["exact"].notna() | (s.table.head(5)["method"] == "exact")).all()
    done = s.table[s.table["exact"].notna() & (s.table["method"] != "exact")]  # measured
    assert (
        {"flagged", "top", "sample"}
        <= set(done["verified"])
        <= {"flagged", "top", "sample", "ranked"}
    )
    for rank, exact, exact_acc in zip(done["rank"], done["exact"], done["exact_accuracy"]):
        c = s.candidate(int(rank))
        with torch.no_grad():
            logits = model(X, edge_masks=layer_masks(model, [c]))
        metric = float(window_metric(logits, y, "margin").mean()) - s.baseline
        accuracy = float((logits.argmax(-1) == y).double().mean()) - s.baseline_accuracy
        assert exact == pytest.approx(metric, abs=1e-5)
        assert exact_acc == pytest.approx(accuracy, abs=1e-9)
    assert -1 <= s.agreement["spearman"] <= 1


def test_discovery_keeps_the_metric_and_its_complement_runs_in_a_study(model, data):
    X, y = data
    found = discover(model, (X, y), tau=0.1)
    assert found.faithfulness > 0.9 and 0 < found.n_kept < found.n_candidates
    assert found.n_kept + len(found.cut) == found.n_candidates
    # The circuit's score, measured again with plain masked forward passes.
    with torch.no_grad():
        logits = model(X, edge_masks=layer_masks(model, found.cut))
    assert found.circuit_score.metric == pytest.approx(
        float(window_metric(logits, y, "margin").mean()), abs=1e-5
    )
    # The complement parses back and, cut in every layer by a study, runs only the circuit.
    complement = parse(str(found.complement))
    assert complement == found.complement
    data_ = _subject_data(model, X, y)
    spec = found.study_spec(models="in-memory")
    per = run_study(spec, models={1: (model, data_)}, progress=False).per_subject
    only = float(per.loc[per["intervention"] == "only_circuit", "value"].iloc[0])
    assert only == pytest.approx(found.circuit_score.accuracy, abs=1e-9)
    curve = found.curve
    assert curve["candidates_kept"].iloc[-1] == found.n_kept
    assert (curve["faithfulness"] > 0.9).all()


def _subject_data(model, X, y):
    from emg_lens.inspect import as_subject_data

    return as_subject_data(model, (X.numpy(), y.numpy()))


@pytest.mark.slow
@pytest.mark.parametrize("return_type", ["logits", "avg_logits"])
def test_exact_scores_of_the_clean_model_equal_masked_forward_passes(return_type):
    """`ExactPasses.score` computes a cut's first block at the rows it touches and, on the CLS
    head, the last block at the CLS row alone: candidates of every layer, head and group pair
    of a three-layer model, with and without a base cut, and a cut over several layers, score
    as whole masked forwards."""
    model = tiny_isonet(5, init_range=0.6, n_layers=3)
    X = model.example_input(24)
    with torch.no_grad():
        y = model(X).argmax(-1)
    y[::3] = (y[::3] + 1) % model.cfg.n_classes  # margins of both signs
    family = default_family(model)
    for base in (None, parse("cross_modal & layers(0, 2)")):
        passes = ExactPasses(model, X, y, metric="margin", return_type=return_type, base=base)
        assert passes.by_rows and passes.read == ([0] if return_type == "logits" else None)
        base_masks = base_layer_masks(model, base) or {}
        for cut in [[c] for c in family[::7]] + [[family[7], family[40], family[100]]]:
            masks = layer_masks(model, cut)
            both = {
                k: masks.get(k, False) | base_masks.get(k, False) for k in {*masks, *base_masks}
            }
            with torch.no_grad():
                logits = model(X, edge_masks=both, return_type=return_type)
            got = passes.score(masks)
            assert got.metric == pytest.approx(
                float(window_metric(logits, y, "margin").double().mean()), abs=1e-5
            ), cut[0].label
            assert got.accuracy == float((logits.argmax(-1) == y).double().mean())


def test_exact_passes_from_a_later_layer_equal_a_full_pass(model, data):
    X, y = data
    passes = ExactPasses(model, X, y, metric="margin", return_type="logits", batch_size=20)
    c = default_family(model)[-1]  # the last layer
    masks = layer_masks(model, [c])
    score, _ = passes.trial(masks[c.layer], c.layer)
    with torch.no_grad():
        logits = model(X, edge_masks=masks)
    assert score.metric == pytest.approx(float(window_metric(logits, y, "margin").mean()), 1e-6)


def test_exact_passes_check_their_metric_once_where_they_are_built(model, data):
    """The metric is checked at the door (`Scorer`), before any pass runs, with screening's
    words for a metric it cannot differentiate."""
    X, y = data
    with pytest.raises(ArgumentError, match="'accuracy' is not differentiable"):
        ExactPasses(model, X, y, metric="accuracy", return_type="logits")


def test_cut_greedily_is_the_trial_by_trial_search_and_refuses_a_random_model(model, data):
    """`ExactPasses.cut_greedily` decides each candidate as a `trial` on the accepted cut,
    kept by `Score.keeps`; the circuit it returns is scored from the clean model, and a model
    whose runs differ (dropout in training mode) is refused, not given a circuit."""
    X, y = data[0][:16], data[1][:16]
    family = compile_family(model)
    candidates = [(c.layer, mask) for c, mask in zip(family, family.masks)][::2]
    passes = ExactPasses(model, X, y, metric="margin", return_type="logits")
    full, empty = passes.score({}), passes.score(family.everything)
    trials, circuit = passes.cut_greedily(candidates, full, empty, 0.1)
    by_hand = ExactPasses(model, X, y, metric="margin", return_type="logits")
    for (layer, mask), (score, cut) in zip(candidates, trials):
        expected, trial = by_hand.trial(mask, layer)
        assert score == expected and cut == expected.keeps(full, empty, 0.1)
        if cut:
            by_hand.accept(trial)
    assert 0 < sum(cut for _, cut in trials) < len(candidates)
    assert circuit.metric == pytest.approx(by_hand.score(by_hand.cut).metric, abs=1e-6)
    noisy = tiny_isonet(3, init_range=0.6, dropout=0.5).train()
    torch.manual_seed(0)
    passes = ExactPasses(noisy, X, y, metric="margin", return_type="logits")
    with pytest.raises(ArgumentError, match="differs between the incremental passes"):
        passes.cut_greedily(candidates[:8], full, empty, 0.1)


def test_tinymyo_family_and_screen():
    cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 2}, n_samples=160)
    model = TinyMyo(cfg, task="classification").eval()
    X = model.example_input(4)
    with torch.no_grad():
        y = model(X).argmax(-1)
    s = screen(model, (X, y))
    assert len(s.table) == cfg.n_heads * 6 and np.isfinite(s.table["estimate"]).all()


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda m, d: family_from_edges(m, ["between(emg, force)"]), LayoutError, "'force'"),
        (lambda m, d: family_from_edges(m, []), ArgumentError, "family is empty"),
        (lambda m, d: screen(m, d, metric="accuracy"), ArgumentError, "not differentiable"),
        (lambda m, d: discover(m, d, tau=0.0), ArgumentError, r"tau must be a number in \(0, 1\)"),
        (lambda m, d: discover(m, d, tau=1), ArgumentError, r"tau must be a number in \(0, 1\)"),
        (
            lambda m, d: screen(MultimodalMLP(EncoderConfig.preset("tiny")), d),
            ArgumentError,
            "got MultimodalMLP",
        ),
        (
            lambda m, d: screen(m, d, family=[Candidate(5, between("emg", "acc") & heads(0))]),
            ArgumentError,
            r"family\[0\] must be a Candidate of layers 0\.\.\d+, got .* in layer 5",
        ),
        (lambda m, d: screen(m, d).verify(top=0), ArgumentError, "top must be an int"),
        (lambda m, d: family_from_edges(m, "cross_modal"), ArgumentError, "wrap it in a list"),
        (
            lambda m, d: family_from_edges(m, ["cross_modal"], layers=[5]),
            ArgumentError,
            r"layers \[5\] are out of range: the model has 0\.\.1",
        ),
        (
            lambda m, d: family_from_edges(m, ["cross_mod"]),
            ArgumentError,
            "family edge set 'cross_mod': invalid edge expression",
        ),
        (
            lambda m, d: family_from_edges(m, ["cross_modal & layers(0)"]),
            ArgumentError,
            r"names layers: give the layers with layers=",
        ),
        (
            lambda m, d: screen(m, d, family=[Candidate(0, heads(0), 0, "x")] * 2),
            ArgumentError,
            r"family\[1\] repeats family\[0\]",
        ),
        (lambda m, d: screen(m, d, metric="foo"), ArgumentError, r"accepted: \['margin'"),
        (
            lambda m, d: cut_edge_set([Candidate(1, between("emg", "acc"), 2, "x")]),
            ArgumentError,
            r"candidate L1 H2 x: its edges \(between\(emg,acc\)\) do not end in heads\(2\)",
        ),
        (lambda m, d: screen(m, d).candidate(10**6), ArgumentError, r"rank must be in 1\.\.\d+"),
        (
            lambda m, d: discover(m, d, screened=screen(tiny_isonet(3), (d[0][:4], d[1][:4]))),
            ArgumentError,
            "screened was made for another model",
        ),
        (  # the last layer's emg rows: the CLS readout does not read them
            lambda m, d: discover(m, d, family=[Candidate(1, between("emg", "acc") & heads(0))]),
            ArgumentError,
            r"cutting every candidate does not lower the margin",
        ),
        (
            lambda m, d: plot_screen(pd.DataFrame({"layer": [0]})),
            ArgumentError,
            "plot_screen draws one head per cell",
        ),
        (
            lambda m, d: plot_screen(pd.DataFrame({"layer": [0], "estimate": [0.1]})),
            ArgumentError,
            r"one head per cell of a screen's table \(layer, head, kind",
        ),
        (
            lambda m, d: plot_screen_vs_exact(pd.DataFrame({"layer": [0]})),
            ArgumentError,
            "needs a verified screen",
        ),
    ],
)
def test_bad_input_gets_named_errors(model, data, call, error, match):
    with pytest.raises(error, match=match):
        call(model, data)


def test_a_study_and_the_cli_ask_for_more_draws_to_bound_what_was_missed():
    """Issue 88, item 3: the summary's advice to draw more is a study key and a flag; the
    default keeps the fingerprint studies had before."""
    from emg_lens.cli.discover import _spec
    from emg_lens.cli.main import build_parser

    base = {"kind": "discovery", "name": "c", "models": "m"}
    spec = DiscoverySpec.from_dict({**base, "verify_sample": 59})
    assert spec.verify_sample == 59 and DiscoverySpec.from_dict(spec.to_dict()) == spec
    default = DiscoverySpec.from_dict(base)
    assert default.verify_sample == 10 and "verify_sample" not in default.to_dict()
    assert spec.fingerprint() != default.fingerprint()
    with pytest.raises(SpecError, match="verify_sample must be a non-negative int, got -1"):
        DiscoverySpec.from_dict({**base, "verify_sample": -1})
    args = build_parser().parse_args(["discover", "--models", "m", "--verify-sample", "59"])
    assert _spec(args).verify_sample == 59


def test_spec_round_trip_and_errors():
    spec = DiscoverySpec.from_dict(
        {"kind": "discovery", "name": "c", "models": "m", "family": ["cross_modal", "from_cls"]}
    )
    assert DiscoverySpec.from_dict(spec.to_dict()) == spec
    assert spec.method == "greedy" and spec.with_changes(method="gates").method == "gates"
    assert spec.fingerprint() != spec.with_changes(method="gates").fingerprint()
    for bad, match in [
        ({"method": "acdc"}, r"method = 'acdc'; accepted: \['greedy', 'gates'\]"),
        ({"tau": 2}, "tau"),
        ({"metric": "macro_f1"}, "not differentiable"),
        ({"family": []}, r"family = \[\]; accepted: 'default' or a non-empty list"),
        ({"family": ["between(emg"]}, r"family\[0\]"),
        ({"verify": 3}, "verify"),
        ({"resamples": -1}, "resamples must be a non-negative int"),
    ]:
        with pytest.raises(SpecError, match=match):
            DiscoverySpec.from_dict({"name": "c", "models": "m", **bad})


def test_the_summary_states_the_screens_spearman_and_the_bound_on_missed_candidates(model, data):
    """Issue 46: discover's summary says how far the screen agreed with the exact effects and
    how many candidates it may have ranked too low, in words, from the verification's numbers."""
    screened = screen(model, data, exact_penultimate=False)  # layer 0 linearised
    agreement = screened.verify(top=3, flagged=2, sample=4).agreement
    assert agreement["sampled"] == 4 and agreement["measured"] >= 4  # linearised ones measured
    two = pd.DataFrame([agreement, {**agreement, "spearman": 0.5, "missed_upper": 99.0}])
    text = " ".join(screen_note(two).split())
    # issue 86: each subject's ρ with the points it is over and its p, never a median of them
    assert "Spearman ρ of the screen's estimate against the exact effect over those of the" in text
    points, rho = agreement["screened_top"], agreement["spearman"]
    p = format_p(spearman_p(rho, int(points)), 2, "p")
    assert f"subject 1 {rho:.2f} over {points:.0f} points ({p}); subject 2 0.50 over" in text
    assert f"Scored by the screen (plain attribution; `screen`): {agreement['screened']:.0f}" in (
        " ".join(screen_note(two.assign(screen="plain")).split())
    )
    measured = agreement["measured"]
    assert f"subject 1 {agreement['spearman_measured']:.2f} over {measured:.0f} points (p" in text
    assert "top 3, 99.0 (subjects " in text and " candidates (`missed_upper`)" in text
    rate = math.ceil(100 * agreement["missed_rate_upper"])  # an upper bound, rounded up
    assert f"at most {rate} % of the {agreement['unmeasured']:.0f} candidates left " in text
    assert "`missed_upper`), from 4 draws: " in text  # issue 88: the sample beside the bound
    # 4 draws with no miss bound the rate at 53 %: the summary says what would certify it
    assert "4 draws cannot certify a miss rate below 53 %: draw more" in text
    assert "`verify_sample = N` in the study file" in text and "59 draws" in text


def test_a_two_layer_models_candidates_are_all_exact_and_the_summary_names_no_screen_rho(
    model, data
):
    """Issue 78: a two-layer CLS model's every candidate is computed exactly; the summary
    said "Screen vs exact (EAP-IG): Spearman rho 1.00" of the exact effects against themselves."""
    verified = screen(model, data, estimator="ig").verify(top=3, sample=4)
    assert set(verified.table["method"]) == {"exact"}
    # issue 86: an effect computed exactly sits in `exact` too, never blank beside `estimate`
    table = verified.table
    assert table["exact"].notna().all() and (table["exact"] == table["estimate"]).all()
    assert (table["exact_accuracy"] == table["estimate_accuracy"]).all()
    agreement = verified.agreement
    assert (agreement["screened"], agreement["screened_top"]) == (0, 0)
    assert np.isnan(agreement["spearman"])
    text = " ".join(
        screen_note(pd.DataFrame([{**agreement, "screen": "ig", "ig_steps": 5}])).split()
    )
    assert text.startswith("Scored by exact masked passes: every candidate's effect was computed")
    assert "Spearman" not in text and "EAP-IG" in text


@pytest.mark.slow
def test_discovery_study_stores_and_reuses_each_subject(tmp_path, model, data):
    X, y = data
    subject = _subject_data(model, X, y)
    spec = {"kind": "discovery", "name": "t", "models": "x", "tau": 0.1, "verify_top": 3}
    first = run_discovery(spec, models={1: (model, subject)}, out_dir=tmp_path, progress=False)
    again = run_discovery(spec, models={1: (model, subject)}, out_dir=tmp_path, progress=False)
    assert (first.recomputed, again.reused) == (1, 1)
    assert first.circuits.equals(again.circuits)
    for name in ("screen.csv", "circuits.csv", "consensus.csv", "curve.csv", "summary.md"):
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "faithfulness.png").exists() and (tmp_path / "screen.png").exists()
    summary = " ".join((tmp_path / "summary.md").read_text().split())
    assert screen_note(first.circuits) in summary  # two layers: every candidate exact
    assert "Scored by exact masked passes" in summary and "Spearman ρ" not in summary


@pytest.mark.slow
def test_a_study_writes_its_miss_bound_with_the_draws_it_came_from(tmp_path, model, data):
    """Issue 88, item 3: summary.md and circuits.csv carry the bound's draws and population,
    and the summary says what 3 draws cannot certify (the mean head linearises layer 0)."""
    X = data[0]
    with torch.no_grad():
        y = model(X, return_type="avg_logits").argmax(-1)
    spec = {"kind": "discovery", "name": "t", "models": "x", "tau": 0.1, "verify_top": 3}
    spec |= {"return_type": "avg_logits", "verify_sample": 3}
    subject = _subject_data(model, X, y)
    run_discovery(spec, models={1: (model, subject)}, out_dir=tmp_path, progress=False)
    circuits = pd.read_csv(tmp_path / "circuits.csv")
    assert circuits["sampled"].tolist() == [3] and circuits["unmeasured"].iloc[0] > 3
    summary = " ".join((tmp_path / "summary.md").read_text().split())
    rate = math.ceil(100 * circuits["missed_rate_upper"].iloc[0])
    assert (
        f"at most {rate} % of the {circuits['unmeasured'].iloc[0]:.0f} candidates left" in summary
    )
    assert (
        "from 3 draws: " in summary and "3 draws cannot certify a miss rate below 64 %" in summary
    )
    assert "| missed_upper | sampled |" in summary  # the table's column beside the bound


@pytest.mark.slow
def test_the_cli_runs_a_discovery_study_from_flags_and_from_a_study_file(tmp_path):
    """`emg-lens discover --models DIR` and `emg-lens study run` of a ``kind = "discovery"``
    file write the same circuits (the second reuses the first's stored subject)."""
    from emg_lens.cli import discover as discover_cli
    from emg_lens.cli.main import run
    from emg_lens.discovery import METRICS, SEARCH_METHODS

    assert discover_cli.DISCOVERY_METRICS == METRICS  # the parser's light copies
    assert discover_cli.SEARCH_METHODS == SEARCH_METHODS
    synthetic_checkpoint(tmp_path / "models")
    out = tmp_path / "out"
    flags = run(
        [
            "discover",
            "--models",
            str(tmp_path / "models"),
            "--out",
            str(out),
            "--tau",
            "0.2",
            "--verify-top",
            "2",
            "--quiet",
            "--device",
            "cpu",
        ]
    )
    assert flags.recomputed == 1 and (out / "circuits.csv").exists()
    study = tmp_path / "circuit.toml"
    models = (tmp_path / "models").as_posix()
    study.write_text(
        f'kind = "discovery"\nname = "discovery"\nmodels = "{models}"\ntau = 0.2\nverify_top = 2\n'
    )
    again = run(["study", "run", str(study), "--out", str(out), "--quiet"])
    assert again.reused == 1 and again.circuits.equals(flags.circuits)
    from emg_lens.studies import load_spec, run_study

    assert load_spec(study) == again.spec  # every kind is read by load_spec, once
    with pytest.raises(SpecError, match="not kind = 'ablation': use run_discovery"):
        run_study(study, progress=False)


def test_a_base_mask_is_cut_in_every_pass(model, data):
    """With ``base`` (the model as it runs, e.g. as trained with masks), the clean pass is the
    masked model, a candidate inside the base changes nothing (exactly, without a pass), and
    verify's exact effects are
    measured on top of the base, through the study runner too."""
    X, y = data
    base = parse(
        "cross_modal & layers(0) | (cross_modal - between(emg,acc) & heads(2)) & layers(1)"
    )
    s = screen(model, (X, y), base=base).verify(top=4)
    masks = {layer: m for layer, m in enumerate(base.compile_layers(model.layout, 4, 2)) if m.any()}
    with torch.no_grad():
        logits = model(X, edge_masks=masks)
    assert s.baseline == pytest.approx(float(window_metric(logits, y, "margin").mean()), 1e-6)
    cross = s.table[s.table["kind"].isin(["emg->acc", "acc->emg"])]
    inside = cross[(cross["layer"] == 0) | (cross["head"] != 2) | (cross["kind"] == "acc->emg")]
    assert (inside["estimate"] == 0).all() and len(inside) == 15  # all cross-modal but one
    # known exactly (a structural zero), so verify spends no pass on them, nor draws them
    assert (inside["method"] == "exact").all() and (inside["verified"] == "").all()
    assert (inside["exact"] == 0).all() and "15 cut by the base already (exactly 0)" in repr(s)
    for rank in (1, 2):
        c = s.candidate(rank)
        cut = {**masks}
        cut[c.layer] = cut[c.layer] | layer_masks(model, [c])[c.layer]
        with torch.no_grad():
            logits = model(X, edge_masks=cut)
        row = s.table[s.table["rank"] == rank].iloc[0]
        assert row["final"] == pytest.approx(  # measured, or exact from the screen
            float(window_metric(logits, y, "margin").mean()) - s.baseline, abs=1e-5
        )
        accuracy = float((logits.argmax(-1) == y).double().mean()) - s.baseline_accuracy
        assert row["final_accuracy"] == pytest.approx(accuracy, abs=1e-9)
    found = discover(model, (X, y), tau=0.1, screened=s)
    assert found.faithfulness > 0.9
    per = run_study(
        found.study_spec(models="x"),
        models={1: (model, _subject_data(model, X, y))},
        progress=False,
    ).per_subject.set_index("intervention")["value"]
    assert per["base"] == pytest.approx(found.full.accuracy, abs=1e-9)
    assert per["only_circuit"] == pytest.approx(found.circuit_score.accuracy, abs=1e-9)


def test_the_shipped_discovery_study_is_valid():
    from pathlib import Path

    from emg_lens.studies import load_spec

    path = Path(__file__).resolve().parents[3] / "studies" / "discovery_demo.toml"
    spec = load_spec(path)
    assert (spec.models, spec.return_type, spec.tau, spec.family) == (
        "demo",
        "avg_logits",
        0.05,
        None,
    )


@pytest.mark.slow
def test_a_planted_training_read_back_says_so():
    """``train_planted(reuse=True)`` reads a training done before, and tells ``report``."""
    from emg_lens.discovery.planted import planted_data, train_planted

    data, told = planted_data(), []
    first = train_planted(data, None, seed=11, epochs=1, reuse=True)
    again = train_planted(data, None, seed=11, epochs=1, reuse=True, report=told.append)
    assert any("the same training was done before" in line for line in told)
    for a, b in zip(first.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)


def test_the_screen_vs_exact_figure_gives_each_rho_its_points_and_p(model, data):
    """Issue 86: every ρ printed with the number of points it is over and its p; the points
    are the candidates the screen estimated and a masked pass measured (an exact candidate's
    estimate is its exact effect, no evidence of the screen)."""
    import matplotlib.pyplot as plt

    from emg_lens.discovery.plots import plot_screen_vs_exact

    s = screen(model, data, exact_penultimate=False).verify(top=5)
    fig = plot_screen_vs_exact(s)
    measured = s.table[s.table["exact"].notna() & (s.table["method"] != "exact")]
    title = fig.axes[0].get_title()
    plt.close(fig)
    assert (
        f"over {len(measured)} candidates (p = " in title
        or f"{len(measured)} candidates (p <" in title
    )


def test_a_model_that_overflows_is_named_by_the_screen_and_the_exact_passes(data):
    X, y = data[0][:8], data[1][:8]
    model = tiny_isonet(3, init_range=0.6)
    with torch.no_grad():
        model.blocks[0].attn.W_V.fill_(float("inf"))
    with pytest.raises(ArgumentError, match="screening gave non-finite margin values"):
        screen(model, (X, y))
    passes = ExactPasses(model, X, y, metric="margin", return_type="logits")
    with pytest.raises(ArgumentError, match="an exact masked pass gave non-finite logits"):
        passes.score({})
