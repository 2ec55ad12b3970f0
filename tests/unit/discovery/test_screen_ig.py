"""Integrated-gradient screens (EAP-IG) and MIB's areas over faithfulness (issue 58).

- for a family of one candidate, the EAP-IG path is that candidate's own cut, so its estimate
  converges to the exact knockout as the steps grow (IG's completeness), on native and
  attached models, in every layer;
- candidates computed exactly stay exact, the others are marked ``ig``, every estimate is
  finite (rows the path cuts whole, a base cut), and `Screen.verify` measures them;
- CPR and CMD are MIB's trapezoid areas, by hand on a known curve, and a discovery's areas are
  those of its curve closed by the empty circuit;
- bad input gets named errors.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emg_lens.discovery import (
    default_family,
    discover,
    faithfulness_areas,
    layer_masks,
    screen,
    window_metric,
)
from emg_lens.errors import ArgumentError
from tests.tiny import tiny_isonet


def _exact(model, X, y, candidate, metric: str) -> float:
    with torch.no_grad():
        cut = model(X, edge_masks=layer_masks(model, [candidate]))
        clean = model(X)
    return float((window_metric(cut, y, metric) - window_metric(clean, y, metric)).mean())


def _estimate(model, X, y, candidate, **kwargs) -> float:
    s = screen(model, (X, y), family=[candidate], exact_last_layer=False, **kwargs)
    return float(s.table["estimate"].iloc[0])


@pytest.fixture(scope="module")
def double(model, data):
    """The model in float64 on 16 of the windows: the sums, not the rounding, decide."""
    double = tiny_isonet(3, init_range=0.6)
    double.load_state_dict(model.state_dict())
    return double.to(torch.float64), data[0][:16].double(), data[1][:16]


def test_one_candidates_ig_estimate_converges_to_its_exact_effect(double):
    """Completeness: with one candidate, the path runs from the model to that candidate cut
    along the straight line in its layer's pattern space, so the midpoint sums of the
    gradient along it tend to the exact change of the metric (the log-probability: smooth,
    so the error falls about as 1/steps^2), in layer 0 (a large effect, where the plain
    screen's first-order estimate is far off) as in the last layer."""
    model, X, y = double
    family = default_family(model)
    chosen = [family[20], family[38]]  # layer 0 (CLS -> ACC), layer 1 (CLS -> ACC)
    assert [c.layer for c in chosen] == [0, 1]
    for c in chosen:
        exact = _exact(model, X, y, c, "logprob")
        plain = abs(_estimate(model, X, y, c, metric="logprob") - exact)
        errors = [
            abs(_estimate(model, X, y, c, metric="logprob", estimator="ig", ig_steps=n) - exact)
            for n in (2, 8, 32)
        ]
        assert errors[0] > errors[1] > errors[2], (c.label, errors)
        assert errors[2] <= errors[0] / 50, (c.label, errors)  # 1/steps^2: 256 times less
        assert errors[2] <= 1e-3 * max(1.0, abs(exact)), (c.label, errors, exact)
        assert errors[1] < plain, (c.label, errors, plain)


def test_the_margins_ig_estimate_converges_too(double):
    """The margin follows the best other class, which may change along the path (a kink):
    the sums still tend to the exact change of the margin itself."""
    model, X, y = double
    c = default_family(model)[5]
    exact = _exact(model, X, y, c, "margin")
    plain = abs(_estimate(model, X, y, c) - exact)
    fine = abs(_estimate(model, X, y, c, estimator="ig", ig_steps=16) - exact)
    assert fine <= 5e-3 * max(1.0, abs(exact)) and fine < plain / 5, (fine, plain, exact)


@pytest.mark.parametrize(("kind", "seed"), [("qkv", 0), ("mha", 1)])
def test_an_attached_models_ig_estimate_converges_to_its_exact_effect(kind, seed):
    """The path's patterns are written at ``hook_pattern`` and read by the interceptor's
    attention as by native attention: on an attached model (every layer linearised), a
    layer-0 candidate's estimate tends to its exact knockout, far closer than the plain
    screen's."""
    from emg_lens.layout import TokenLayout
    from emg_lens.models import attach
    from tests.unit.models.attached_models import N_CHANNELS, N_SAMPLES, build

    layout = TokenLayout.channel_tokens({"emg": 2, "acc": 2}, cls_token=False)
    model = attach(build(kind, seed), layout=layout, n_samples=N_SAMPLES)
    X = torch.as_tensor(
        np.random.default_rng(0).standard_normal((8, N_CHANNELS, N_SAMPLES)), dtype=torch.float32
    )
    with torch.no_grad():
        y = model(X).argmax(-1)
    c = default_family(model)[1]
    assert c.layer == 0
    exact = _exact(model, X, y, c, "logprob")
    plain = abs(_estimate(model, X, y, c, metric="logprob") - exact)
    ig = abs(_estimate(model, X, y, c, metric="logprob", estimator="ig", ig_steps=8) - exact)
    assert ig <= 1e-5 and ig <= plain / 50, (c.label, ig, plain, exact)


def test_the_ig_screen_keeps_exact_candidates_exact_and_marks_the_rest(model, data):
    """On the mean head the last layer is exact in both screens (the same values), layer 0 is
    estimated along the path (``method`` ig, finite: the default family cuts every row whole
    at the path's end); on the CLS head of a two-layer model everything is exact and the two
    screens agree; verify flags and measures the ig rows."""
    X, y = data
    plain = screen(model, (X, y), return_type="avg_logits")
    ig = screen(model, (X, y), return_type="avg_logits", estimator="ig", ig_steps=3)
    assert (ig.estimator, ig.ig_steps, plain.estimator) == ("ig", 3, "plain")
    p, g = plain.table.sort_index(), ig.table.sort_index()
    assert set(g.loc[g["layer"] == 1, "method"]) == {"exact"}
    assert set(g.loc[g["layer"] == 0, "method"]) == {"ig"}
    assert set(p.loc[p["layer"] == 0, "method"]) == {"linear"}
    last = g["layer"] == 1
    np.testing.assert_array_equal(g.loc[last, "estimate"], p.loc[last, "estimate"])
    assert np.isfinite(g["estimate"]).all() and not np.allclose(
        g.loc[~last, "estimate"], p.loc[~last, "estimate"]
    )
    np.testing.assert_array_equal(g["risk"], p["risk"])  # the same pattern change
    verified = ig.verify(top=4, flagged=3, sample=2)
    table = verified.table
    measured = table[table["exact"].notna() & (table["method"] != "exact")]  # flagged, top, sampled
    assert len(measured) >= 3 + 2 and (measured["method"] == "ig").all()
    assert verified.agreement["sampled"] == 2
    cls_plain = screen(model, (X, y)).table.sort_index()
    cls_ig = screen(model, (X, y), estimator="ig").table.sort_index()
    assert (cls_ig["method"] == "exact").all()
    np.testing.assert_array_equal(cls_ig["estimate"], cls_plain["estimate"])


def test_the_ig_path_is_finite_under_a_base_cut_and_discover_uses_it(model, data):
    """With a base cut (the model as it runs), candidates inside the base change nothing
    along the path either: 0, never NaN; `discover` keeps the metric with the ig screen."""
    X, y = data
    base = "cross_modal & layers(0) | (cross_modal - between(emg,acc) & heads(2)) & layers(1)"
    s = screen(model, (X, y), base=base, estimator="ig", exact_last_layer=False)
    assert np.isfinite(s.table["estimate"]).all()
    cross = s.table[s.table["kind"].isin(["emg->acc", "acc->emg"])]
    inside = cross[(cross["layer"] == 0) | (cross["head"] != 2) | (cross["kind"] == "acc->emg")]
    assert len(inside) == 15 and (inside["estimate"] == 0).all()
    found = discover(model, (X, y), tau=0.1, screened=s.verify(top=3))
    assert found.faithfulness > 0.9 and found.screen.estimator == "ig"


@pytest.mark.unchecked
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"estimator": "eap-ig"}, r"screen = 'eap-ig'; accepted: \['plain', 'ig', 'relp'\]"),
        (
            {"estimator": "ig", "ig_steps": 0},
            r"ig_steps \(points on the integrated-gradient path\) must be a positive int",
        ),
        (
            {"estimator": "ig", "ig_steps": 2.5},
            r"ig_steps \(points on the integrated-gradient path\) must be a positive int",
        ),
    ],
)
def test_bad_estimators_get_named_errors(model, data, kwargs, match):
    with pytest.raises(ArgumentError, match=match):
        screen(model, data, **kwargs)


# ---------------------------------------------------------------- MIB's CPR and CMD


def test_cpr_and_cmd_are_mibs_trapezoid_areas_of_a_hand_computed_curve():
    """Sizes 0, 0.1, 0.4, 1 (given unsorted) with faithfulness 0, 0.5, 1.2, 1:
    CPR = 0.1 (0 + 0.5) / 2 + 0.3 (0.5 + 1.2) / 2 + 0.6 (1.2 + 1) / 2 = 0.025 + 0.255 + 0.66
    = 0.94; CMD over |1 - f| = 1, 0.5, 0.2, 0: 0.1 (1.5) / 2 + 0.3 (0.7) / 2 + 0.6 (0.2) / 2
    = 0.075 + 0.105 + 0.06 = 0.24. A faithful curve (f = 1 everywhere) has CPR 1, CMD 0."""
    cpr, cmd = faithfulness_areas([0.4, 0.0, 1.0, 0.1], [1.2, 0.0, 1.0, 0.5])
    assert cpr == pytest.approx(0.94, abs=1e-12) and cmd == pytest.approx(0.24, abs=1e-12)
    assert faithfulness_areas([0.0, 1.0], [1.0, 1.0]) == (1.0, 0.0)
    for sizes, faith, match in [
        ([0.5], [1.0], "two or more"),
        ([0.0, 1.0], [1.0], "two or more"),
        ([0.0, 1.5], [0.0, 1.0], r"in \[0, 1\]"),
        ([0.0, 1.0], [np.nan, 1.0], "finite"),
    ]:
        with pytest.raises(ArgumentError, match=match):
            faithfulness_areas(sizes, faith)


def test_a_discoverys_areas_are_those_of_its_curve_closed_by_the_empty_circuit(model, data):
    X, y = data
    found = discover(model, (X, y), tau=0.1)
    curve = found.curve
    assert curve["edges_kept_share"].iloc[0] == 1.0 and curve["faithfulness"].iloc[0] == 1.0
    np.testing.assert_allclose(curve["edges_kept_share"], curve["edges_kept"] / found.n_edges)
    x = [*curve["edges_kept_share"], 0.0]
    f = [*curve["faithfulness"], 0.0]
    order = np.argsort(x)
    xs, fs = np.array(x)[order], np.array(f)[order]
    by_hand = np.sum(np.diff(xs) * (fs[1:] + fs[:-1]) / 2)
    gap = np.abs(1 - fs)
    assert found.areas[0] == pytest.approx(by_hand, abs=1e-12)
    assert found.areas[1] == pytest.approx(np.sum(np.diff(xs) * (gap[1:] + gap[:-1]) / 2))
    summary = found.summary()
    assert (summary["cpr"], summary["cmd"]) == found.areas
    # the circuit keeps > 1 - tau of the metric from its size up: CPR at least that share
    assert summary["cpr"] >= (1 - 0.1) * (1 - found.n_kept_edges / found.n_edges)


# ---------------------------------------------------------------- the study and the command


def test_the_spec_takes_the_screen_and_keeps_a_plain_studys_fingerprint():
    from emg_lens.discovery.spec import DiscoverySpec
    from emg_lens.errors import SpecError

    plain = DiscoverySpec.from_dict({"name": "c", "models": "m"})
    assert (plain.screen, plain.ig_steps) == ("plain", 5)
    assert "screen" not in plain.fingerprint() and "ig_steps" not in plain.fingerprint()
    ig = DiscoverySpec.from_dict({"name": "c", "models": "m", "screen": "ig", "ig_steps": 8})
    assert DiscoverySpec.from_dict(ig.to_dict()) == ig and ig.fingerprint() != plain.fingerprint()
    assert ig.to_dict()["screen"] == "ig" and ig.to_dict()["ig_steps"] == 8
    for bad, match in [
        ({"screen": "eap"}, r"screen = 'eap'; accepted: \['plain', 'ig', 'relp'\]"),
        (
            {"screen": "ig", "ig_steps": 0},
            r"ig_steps \(points on the integrated-gradient path\) must be a positive int",
        ),
        ({"ig_steps": 8}, "ig_steps = 8 is for screen = 'ig'"),
    ]:
        with pytest.raises(SpecError, match=match):
            DiscoverySpec.from_dict({"name": "c", "models": "m", **bad})


def test_discover_takes_the_screen_from_its_flags(tmp_path):
    """`emg-lens discover --screen ig --ig-steps 2` studies with EAP-IG at 2 path points; a
    study file's screen holds unless a flag replaces it, and ``--screen plain`` over a file's
    ig screen drops the file's ``ig_steps`` with it."""
    from emg_lens.cli import build_parser
    from emg_lens.cli import discover as discover_cli
    from emg_lens.discovery import ESTIMATORS

    assert discover_cli.SCREENS == ESTIMATORS  # the parser's light copy

    def spec(*argv):
        return discover_cli._spec(build_parser().parse_args(["discover", *argv]))

    flags = spec("--models", "m", "--screen", "ig", "--ig-steps", "2")
    assert (flags.screen, flags.ig_steps) == ("ig", 2)
    assert spec("--models", "m").screen == "plain"
    study = tmp_path / "circuit.toml"
    study.write_text('kind = "discovery"\nname = "c"\nmodels = "m"\nscreen = "ig"\nig_steps = 8\n')
    assert (spec(str(study)).screen, spec(str(study)).ig_steps) == ("ig", 8)
    assert spec(str(study), "--ig-steps", "3").ig_steps == 3
    assert spec(str(study), "--screen", "plain").to_dict().get("ig_steps") is None


@pytest.mark.slow  # two discovery studies: 1.5 s on an idle core, 2.7 s under load
def test_an_ig_study_writes_the_plain_studys_tables_and_says_which_screen(model, data):
    """A discovery study with ``screen = "ig"`` (what ``discover --screen ig`` runs) writes
    the plain study's tables with the same columns; ``circuits.csv`` and the summary name the
    screen (``screen``, ``ig_steps``) and give MIB's CPR and CMD."""
    from emg_lens.discovery.study import run_discovery
    from emg_lens.inspect import as_subject_data

    X = data[0]
    with torch.no_grad():  # the mean head's own classes: cutting everything lowers its margin
        y = model(X, return_type="avg_logits").argmax(-1)
    models = {1: (model, as_subject_data(model, (X.numpy(), y.numpy())))}
    spec = {"kind": "discovery", "name": "c", "models": "m", "return_type": "avg_logits"}
    spec |= {"tau": 0.1, "verify_top": 3}
    plain, ig = (
        run_discovery({**spec, **screen_}, models=models, progress=False)
        for screen_ in ({}, {"screen": "ig", "ig_steps": 2})
    )
    assert plain.tables().keys() == ig.tables().keys()
    for name, table in plain.tables().items():
        assert list(table.columns) == list(ig.tables()[name].columns), name
    assert plain.circuits[["screen", "ig_steps"]].values.tolist() == [["plain", None]]
    assert ig.circuits[["screen", "ig_steps"]].values.tolist() == [["ig", 2]]
    assert set(ig.screen["method"]) == {"ig", "exact"}
    assert set(plain.screen["method"]) == {"linear", "exact"}
    summary = " ".join(ig.to_markdown().split())
    assert "screen (integrated gradients, EAP-IG, 2 path points; `screen`)" in summary
    assert "(plain attribution; `screen`)" in " ".join(plain.to_markdown().split())
    for result in (plain, ig):
        cpr, cmd = result.circuits[["cpr", "cmd"]].iloc[0]
        assert 0 < cpr <= 1.5 and cmd >= 0 and np.isfinite([cpr, cmd]).all()
        text = " ".join(result.to_markdown().split())
        assert f"CPR {cpr:.2f}, the area under the curve" in text
        assert f"CMD {cmd:.2f}, the area between the curve and 1" in text
