"""The benchmark scripts run at a tiny size and print the JSON they promise (docs/DESIGN.md §9), so
they cannot rot silently. Their speed targets are not checked here: timings of a few
milliseconds on a shared test machine mean nothing."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from emg_lens import EncoderConfig

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    # Run as scripts, the benchmarks import their shared `_harness` from their own folder.
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import does: dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--quick"], {"batch": 4, "tokens": 7, "d_model": 16, "repeats": 3}),
        # The paper's 49-token layout at the demo width: the same weight conversion, in seconds.
        (
            ["--preset", "demo", "--batch", "2", "--repeats", "1", "--warmup", "0"],
            {
                "batch": 2,
                "tokens": 49,
                "d_model": EncoderConfig.preset("demo").d_model,
                "repeats": 1,
            },
        ),
    ],
)
def test_forward_vs_sdpa_prints_one_json_line(capsys, argv, expected):
    result = _load("forward_vs_sdpa").main(argv)  # asserts ours == plain to 1e-4 itself
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == result
    assert result["benchmark"] == "forward_vs_sdpa"
    assert {k: result[k] for k in expected} == expected
    for key in ("ms_ours", "ms_plain", "ms_explicit", "speed_ratio", "explicit_overhead"):
        assert isinstance(result[key], float) and result[key] > 0, key
    assert result["speed_ratio"] == pytest.approx(result["ms_plain"] / result["ms_ours"], rel=0.01)
    assert isinstance(result["ms_matmul"], float) and result["ms_matmul"] > 0
    assert result["matmul_fraction"] == pytest.approx(
        result["ms_matmul"] / result["ms_ours"], rel=0.01, abs=1e-3
    )
    assert result["gflops_ours"] > 0 and result["gflops_peak"] > 0
    assert result["peak_fraction"] == pytest.approx(
        result["gflops_ours"] / result["gflops_peak"], rel=0.01, abs=1e-3
    )
    assert isinstance(result["threads"], int) and result["threads"] >= 1
    assert result["max_abs_diff"] < 1e-4


def test_study_vs_naive_prints_one_json_line(capsys):
    result = _load("study_vs_naive").main(["--quick"])  # asserts runner == naive itself
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == result
    assert result["benchmark"] == "study_vs_naive"
    # --quick: 1 subject, 3 layers: 2 interventions x 3 modes x 3 layers + the baseline; per
    # intervention 3 individual + 2 more from_first + 1 more from_last layer sets = 6 effects.
    assert (result["conditions"], result["grid_effects"]) == (19, 13)
    assert result["conditions_changed"] > 0  # the equality check was not vacuous
    assert result["naive_layer_evals"] == 19 * 3
    # Neither mask cuts the CLS row that the readout reads, so a last-layer mask changes
    # nothing: per intervention X, NNX is NNN, XXX is XXN and NXX is NXN; 7 effects remain.
    # Distinct prefixes (N: no mask, U/C: uni/cross): N U C at layer 0; NN NU NC UN UU CN CC at
    # layers 1 and 2: 3 + 7 + 7.
    assert result["distinct_effects"] == 7
    assert result["distinct_layer_evals"] == 17
    for key in ("s_runner", "s_naive", "s_lower_bound", "cells_per_s"):
        assert isinstance(result[key], float) and result[key] > 0, key
    for key in ("speedup_vs_naive", "runner_vs_lower_bound"):
        spread = result[key]
        assert 0 < spread["min"] <= spread["median"] <= spread["max"], key
    # One round: its ratio is the ratio of the medians, and of the fastest rounds.
    assert result["speedup_vs_naive"]["median"] == pytest.approx(
        result["s_naive"] / result["s_runner"], rel=0.01
    )
    assert result["fastest_runner_vs_fastest_bound"] == pytest.approx(
        result["s_runner"] / result["s_lower_bound"], rel=0.01
    )
    phases = result["breakdown_s"]
    assert phases["blocks"] > 0 and "verify" not in phases  # timed as run: verify=False
    assert sum(v for k, v in phases.items() if k != "total") == pytest.approx(
        phases["total"], abs=1e-3
    )


@pytest.mark.slow  # five torchrun launches of a few seconds each
def test_study_scaling_prints_one_json_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("EMG_LENS_CACHE", str(tmp_path / "cache"))
    result = _load("study_scaling").main(["--quick"])  # exits if the two runs' tables differ
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == result
    assert (result["preset"], result["subjects"], result["tables_identical"]) == ("tiny", 2, True)
    # Per subject: the baseline and 2 interventions x 3 layer modes x the tiny preset's 2 layers.
    assert result["cells"] == 2 * (1 + 2 * 3 * 2)
    # Launching alone is part of every run, and shorter than any of them.
    assert 0 < result["s_launch"] < min(result["s_1proc"], result["s_2proc"])
    assert result["speedup"] == pytest.approx(result["s_1proc"] / result["s_2proc"], rel=0.01)
    assert result["efficiency"] == pytest.approx(result["speedup"] / 2, abs=1e-3)


def test_tinymyo_forward_prints_one_json_line(capsys):
    result = _load("tinymyo_forward").main(["--quick"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == result
    assert result["benchmark"] == "tinymyo_forward"
    assert (result["batch"], result["tokens"]) == (2, 40)
    for key in ("ms_ours", "ms_plain", "ms_explicit", "ratio_speed_vs_plain"):
        assert isinstance(result[key], float) and result[key] > 0, key
    assert result["max_abs_diff"] < 1e-4  # the hooked model computes the plain one's output


@pytest.mark.slow
def test_screen_vs_exact_prints_one_json_line(capsys):
    result = _load("screen_vs_exact").main(["--quick"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == result
    assert result["benchmark"] == "screen_vs_exact"
    assert result["candidates"] == result["faithfulness_candidates"] == 2 * 4 * 9
    for key in (
        "screen_s",
        "screen_verify_s",
        "screen_ig_s",
        "screen_relp_s",
        "exact_s",
        "speedup",
    ):
        assert isinstance(result[key], float) and result[key] > 0, key
    for key in ("speedup", "speedup_verified"):
        assert result[f"{key}_min"] <= result[key] <= result[f"{key}_max"], key
    # Every candidate of the two-layer CLS model is exact: verify has nothing to measure.
    assert result["random_rho_final"] == result["random_spearman"] == 1.0
    assert result["random_measured"] == 0
    # On the seeded random model the estimates rank like the exact effects, and every
    # candidate that moves the accuracy by more than 5 points is estimated with its sign.
    assert result["spearman"] > 0.8 and result["spearman_all_heads"] > 0.8
    assert result["over_5_points"] > 0
    assert result["same_sign"] == result["over_5_points"]
    # Every screen is reported (issues 58 and 88): at this size (two layers, a CLS head) every
    # candidate is computed exactly, so they agree.
    assert result["ig_steps"] == 5
    for key in ("spearman", "spearman_all_heads", "random_spearman", "same_sign"):
        assert result[f"{key}_ig"] == result[f"{key}_relp"] == result[key], key


@pytest.mark.slow
def test_search_methods_prints_one_json_line(capsys):
    result = _load("search_methods").main(["--quick"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0]) == json.loads(json.dumps(result))
    (view,) = result["views"]
    for method in ("greedy", "gates"):
        # every circuit keeps 1 - tau of the metric: the decision rule, measured exactly
        for tau, kept_share, faithfulness in view[f"{method}_points"]:
            assert faithfulness > 1 - tau and 0 < kept_share < 1
        assert view[f"{method}_auc"] > 0 and not view[f"{method}_classes_lost"]
        assert 0 <= view[f"{method}_cmd"] < 1  # MIB's CMD beside the CPR


def test_converted_forward_prints_one_json_line_per_architecture(capsys):
    pytest.importorskip("braindecode")
    results = _load("converted_forward").main(["--quick"])  # asserts converted == original
    lines = capsys.readouterr().out.strip().splitlines()
    assert [json.loads(line) for line in lines] == results
    assert [r["architecture"] for r in results] == [
        "labram",
        "cbramod",
        "eegpt",
        "pbt",
        "torch_encoder",
    ]
    for result in results:
        ratio = result["ratio"]
        assert 0 < ratio["min"] <= ratio["median"] <= ratio["max"]
        assert result["ms_converted"] > 0 and result["ms_original"] > 0
        assert result["max_abs_diff"] <= 1e-4 and result["tokens"] > 0


def test_attach_forward_prints_one_json_line_per_architecture(capsys):
    pytest.importorskip("braindecode")
    results = _load("attach_forward").main(["--quick"])  # asserts attached == original
    lines = capsys.readouterr().out.strip().splitlines()
    assert [json.loads(line) for line in lines] == results
    assert [r["architecture"] for r in results] == ["luna", "eegconformer", "handwritten"]
    for result in results:
        for ratio in (result["ratio_unhooked"], result["ratio_masked"]):
            assert 0 < ratio["min"] <= ratio["median"] <= ratio["max"]
        assert result["max_abs_diff"] == 0.0 and 0 < result["cut_share"] < 0.5
        assert result["calls"] >= 2 and min(result[f"ms_{k}"] for k in ("original", "masked")) > 0


def test_probe_speed_prints_one_json_line(capsys):
    result = _load("probe_speed").main(["--quick", "--jobs", "1"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == result
    assert result["benchmark"] == "probe_speed"
    # tiny IsoNet: 2 layers and the stream after them x (cls, emg, acc, pooled)
    assert (result["models"], result["windows"], result["probes"]) == (2, 64, 12)
    s = result["s_all"]
    assert 0 < s["min"] <= s["median"] <= s["max"]


def test_attach_vs_convert_prints_one_json_line_per_architecture_and_grid(capsys):
    pytest.importorskip("braindecode")
    results = _load("attach_vs_convert").main(["--quick"])  # asserts attached cells == converted
    lines = capsys.readouterr().out.strip().splitlines()
    assert [json.loads(line) for line in lines] == results
    assert [(r["architecture"], r["grid"]) for r in results] == [
        ("cbramod", "layers"),
        ("cbramod", "heads"),
        ("eegpt", "layers"),
        ("eegpt", "heads"),
    ]
    for result in results:
        ratio = result["ratio"]
        assert 0 < ratio["min"] <= ratio["median"] <= ratio["max"]
        assert result["s_attached"] > 0 and result["s_converted"] > 0
        assert result["cells_checked"] > 0 and result["max_rel_diff"] <= 1e-4
    # CBraMod's attached model has two attention calls (spatial, temporal) per layer
    cbramod = results[0]["conditions"]
    assert cbramod["attached"] - 1 == 2 * (cbramod["converted"] - 1)


@pytest.mark.slow  # loading the benchmark imports discovery and the studies
def test_screen_ceiling_prints_one_json_line(capsys):
    """Where the screen's rank is lost: on the two-layer CLS model every screened candidate is
    exact (so replacing layers by their exact effects changes nothing), every rho is a rho,
    and computing more of each cut exactly costs more of the grid."""
    result = _load("screen_ceiling").main(["--quick"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0]) == result
    assert result["benchmark"] == "screen_ceiling" and result["candidates"] == 2 * 4 * 9
    view = result["unmasked"]
    assert view["screen"] == 1.0 and {v["rho"] for v in view["screen_layer"].values()} == {1.0}
    assert view["exact_layers"] == {"0": 1.0, "0-1": 1.0}
    rhos = [rho for ways in view["resid"].values() for rho in ways.values()]
    assert len(rhos) == 6 and all(-1 <= rho <= 1 for rho in rhos)
    cost = view["cost"]
    assert 0 < cost["resid_0"] <= cost["resid_1"] <= cost["resid_2"] <= 1
    assert 0 < cost["exact_layers_0"] < cost["exact_layers_0-1"] <= 1


@pytest.mark.slow
def test_the_one_at_a_time_grid_measures_what_the_exact_passes_measure():
    """screen_vs_exact's grid as a user runs it (one hooked forward per candidate) gives every
    candidate's exact margin change, as discovery's exact passes compute it: on the model as
    it is, and with a base cut in every pass (the planted model as it runs)."""
    from emg_lens.edges import parse

    bench = _load("screen_vs_exact")
    model, data = bench._random_subject("tiny", 12, seed=1)
    family = bench.default_family(model)
    X, y = torch.as_tensor(data.X_test), torch.as_tensor(data.y_test)
    views = []
    for base in (None, parse("cross_modal & layers(0) | between(emg, emg) & heads(1)")):
        ours = bench.one_at_a_time(model, X, y, family, "logits", base)
        exact = bench._exact_effects(model, data, family, "margin", "logits", base)[0]
        assert len(ours) == len(family) and any(abs(e) > 1e-3 for e in exact)
        assert ours == pytest.approx(exact, abs=1e-5)
        views.append(ours)
    assert views[0] != pytest.approx(views[1], abs=1e-3)  # the base changed the effects


@pytest.mark.slow  # loading the benchmark imports discovery and the studies
def test_the_noise_floor_counts_trials_and_the_circuits_run_from_none_to_all():
    """Issue 88's verified view: a drop is above its noise floor by the standard error over
    trials, not windows (four copies of one trial's window are one trial); recall counts the
    truth among as many first found; the halves share no trial; the faithfulness curve runs
    from the circuit of no candidate (0) to the model (1) whatever the ranking."""
    import numpy as np

    bench = _load("screen_vs_exact")
    trials = np.array([0, 0, 0, 0, 1, 2, 3, 4])
    changes = np.array(
        [
            [-1.0, -1.1, -0.9, -1.0, -1.05, -0.95, -1.0, -1.02],  # a clear drop
            [-2.0, -2.0, -2.0, -2.0, 0.3, 0.2, 0.25, 0.3],  # one trial's windows, four times
            [0.5, 0.4, 0.6, 0.5, 0.5, 0.45, 0.55, 0.5],  # a rise is no drop
        ]
    )
    windows_alone = changes.mean(1) < -2 * changes.std(1, ddof=1) / np.sqrt(8)
    assert windows_alone.tolist() == [True, True, False]  # as if windows were independent
    assert bench.needed_above_noise(changes, trials).tolist() == [True, False, False]
    assert bench.recall(np.array([4, 1, 2, 3]), np.array([1, 4, 0])) == pytest.approx(2 / 3)
    ids = np.repeat([5, 1, 4, 0, 2, 3], 2)
    drawn = bench.trial_halves(ids, draws=4)
    for a, b in drawn:  # no trial in both halves, every window in one, half the trials each
        assert not set(ids[a]) & set(ids[b]) and sorted([*a, *b]) == list(range(12))
        assert len(set(ids[a])) == len(set(ids[b])) == 3
    assert len({tuple(a) for a, _ in drawn}) > 1  # the draws differ
    model, data = bench._random_subject("tiny", 12, seed=1)
    family = bench.default_family(model)
    X, y = torch.as_tensor(data.X_test), torch.as_tensor(data.y_test)
    exact = np.asarray(bench.one_at_a_time(model, X, y, family, "logits"))
    for order in (np.argsort(exact), np.argsort(-exact)):
        areas = bench.circuit_areas(model, X, y, family, "logits", None, order)
        assert areas["curve"][0] == [0, 0.0] and areas["curve"][-1] == [len(family), 1.0]
        assert areas["cmd"] >= 0 and np.isfinite(areas["cpr"])


@pytest.mark.slow  # loading the benchmark imports discovery and the studies
def test_screen_vs_exact_names_the_method_of_each_candidate_and_its_rho():
    """The planted-paper summary: per method, its candidates, their layers and the rank
    correlation over them alone; per layer, the same with the layer's method."""
    import numpy as np
    import pandas as pd

    bench = _load("screen_vs_exact")
    table = pd.DataFrame(
        {
            "layer": [0, 0, 0, 1, 1, 1],
            "method": ["linear"] * 3 + ["exact"] * 3,
            "estimate": [1.0, 2.0, 3.0, 3.0, 2.0, 1.0],
        }
    )
    effects = np.array([0.1, 0.2, 0.3, 0.1, 0.2, 0.3])  # layer 0 in order, layer 1 reversed
    by_method = bench._rho_by(table, effects, "method", "layer")
    assert by_method == {
        "exact": {"candidates": 3, "rho": -1.0, "layer": ["1"]},
        "linear": {"candidates": 3, "rho": 1.0, "layer": ["0"]},
    }
    assert bench._rho_by(table, effects, "layer", "method")["1"]["method"] == ["exact"]
