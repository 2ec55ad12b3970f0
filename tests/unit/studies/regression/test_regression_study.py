"""The regression kind (issue 46, item 6): the force-grid cut study as a study file, run and
checked by `emg-lens study`, its cells stored and reused by provenance, resumable, tested over
held-out blocks. On a small synthetic OT BioLab+ export (512 Hz, 8 s: 4 held-out blocks) and a
one-layer TinyMyo trained ten epochs (R² 0.88); the real file runs in the README's block
(tests/unit/test_quickstarts.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import scipy.io

import emg_lens.studies.regression.runner as regression_study
from emg_lens.cli import main
from emg_lens.errors import ArgumentError, DataFormatError, LayoutError, SpecError
from emg_lens.stats.compare import PERMUTATIONS, compare_rows, format_p, sign_flip_p
from emg_lens.studies import check_study, load_spec, run
from emg_lens.studies.regression.cuts import CUT_COLUMNS

CUTS = [
    {"name": "left_right", "edges": "between_regions(ch1+ch2+ch3+ch4, ch5+ch6+ch7+ch8)"},
    {"name": "all_pairs", "edges": "cross_channel"},
    {"name": "nothing", "edges": "no_edges"},  # cuts no edge: a structural zero
]


def write_contraction(path, seed: int = 0, rate: int = 512, seconds: int = 8):
    """An OT BioLab+ export of 64 electrodes whose amplitude follows a rising and falling force."""
    rng = np.random.default_rng(seed)
    n = rate * seconds
    force = 20.0 * np.sin(np.linspace(0.0, np.pi, n))
    emg = rng.standard_normal((n, 64)) * (1.0 + force[:, None] * rng.uniform(0.05, 0.15, 64))
    names = [f"VL - IN1 - GR10MM0808 ({k})[uV]" for k in range(1, 65)] + ["acquired data[%MVC]"]
    scipy.io.savemat(
        path,
        {"Data": np.c_[emg, force], "SamplingFrequency": float(rate),
         "Description": np.array(names, dtype=object)[:, None]},
    )  # fmt: skip
    return path


def study(path, **changes) -> dict:
    return {
        "kind": "regression",
        "name": "grid",
        "recording": str(path),
        "windows": {"window": 128, "step": 64, "block": 512, "test_every": 2, "bin": 16},
        "model": {"n_layers": 1, "d_model": 8, "d_head": 4, "n_heads": 2, "d_mlp": 16},
        "train": {"epochs": 10, "lr": 0.03, "batch_size": 16, "warmup_epochs": 0},
        "interventions": CUTS,
        **changes,
    }


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    return write_contraction(tmp_path_factory.mktemp("otb") / "contraction.mat")


def test_the_study_is_tested_over_held_out_blocks_and_reused_whole(recording, tmp_path):
    out = tmp_path / "out"
    first = run(study(recording), out_dir=out, progress=False)
    table = first.summary
    assert list(table.columns) == CUT_COLUMNS
    assert table["condition"].tolist() == ["none", "left_right", "all_pairs", "nothing"]
    # 8 one-second blocks, every second held out: 4 blocks are the unit, not the 28 windows
    assert sorted(first.blocks["block"].unique()) == [1, 3, 5, 7] and first.n_windows == 28
    rows = table.iloc[1:3]
    assert ((rows["p"] >= 2 / 2**4 - 1e-12) & (rows["p"] <= 1)).all()  # exact over 4 blocks
    assert (rows["p_corrected"] >= rows["p"]).all()
    for low, high in (("ci_low", "ci_high"), ("t_low", "t_high")):
        assert ((rows[low] <= rows["delta_mse"]) & (rows["delta_mse"] <= rows[high])).all()
    # the change is the mean over blocks of the blocks' changes, from blocks.csv
    blocks = first.blocks.pivot(index="block", columns="condition", values="mse")
    assert rows["delta_mse"].tolist() == pytest.approx(
        [(blocks[c] - blocks["none"]).mean() for c in ("left_right", "all_pairs")]
    )
    assert table.loc[3, "cut_edges"] == 0 and np.isnan(table.loc[3, "p"])  # structural zero
    assert first.baselines["predictor"].tolist() == ["mean of training", "RMS ridge", "TinyMyo"]
    assert (first.reused, first.recomputed) == (0, 6)  # model, baselines, none, 3 cuts
    text = (out / "summary.md").read_text()
    assert "The independent unit is the held-out block: 4 blocks of 1 s" in text
    assert "smallest possible 0.125" in text
    assert first.baselines["r2"].iloc[-1] > 0.5  # the model learned the force
    for name in ("summary.csv", "blocks.csv", "baselines.csv", "cuts.png", "report.html"):
        assert (out / name).is_file(), name
    again = run(study(recording), out_dir=out, progress=False)
    assert (again.reused, again.recomputed) == (6, 0)
    pd.testing.assert_frame_equal(again.summary, table)
    # statistics are read from the cells: another correction reuses every one of them
    bonferroni = run(study(recording, stats={"correction": "bonferroni"}), out_dir=out,
                     progress=False)  # fmt: skip
    assert bonferroni.reused == 6
    assert bonferroni.summary["p"].equals(table["p"])


def test_a_killed_run_resumes_and_cells_follow_model_data_and_code(
    recording, tmp_path, monkeypatch
):
    copy = write_contraction(tmp_path / "contraction.mat")  # the fixture's bytes, rewritten below
    out, spec = tmp_path / "out", study(copy)
    real = regression_study.block_errors
    calls = []

    def dies_on_the_second_cut(*args, **kwargs):
        calls.append(args)
        if len(calls) == 3:  # none, left_right, then killed
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(regression_study, "block_errors", dies_on_the_second_cut)
    with pytest.raises(KeyboardInterrupt):
        run(spec, out_dir=out, progress=False)
    monkeypatch.setattr(regression_study, "block_errors", real)

    def no_training(*args, **kwargs):
        raise AssertionError("the stored model was trained again")

    with monkeypatch.context() as m:
        m.setattr(regression_study, "_train", no_training)
        resumed = run(spec, out_dir=out, progress=False)
    assert (resumed.reused, resumed.recomputed) == (4, 2)  # model, baselines, none, left_right
    whole = run(study(recording), progress=False)  # in memory, no store: the same numbers
    pd.testing.assert_frame_equal(whole.summary, resumed.summary)
    # other bytes in the recording: nothing is reused, the model is trained again
    write_contraction(copy, seed=1)
    assert run(spec, out_dir=out, progress=False).reused == 0
    # the same data, another code digest: nothing is reused either
    with monkeypatch.context() as m:
        m.setattr(regression_study, "code_digest", lambda: "other+code")
        assert run(spec, out_dir=out, progress=False).reused == 0


def test_study_check_and_run_from_the_command_line(recording, tmp_path, capsys):
    path = tmp_path / "grid.toml"
    cuts = "\n".join(
        f'[[interventions]]\nname = "{c["name"]}"\nedges = "{c["edges"]}"\n' for c in CUTS
    )
    path.write_text(
        f'kind = "regression"\nname = "grid"\nrecording = "{recording}"\n'
        "[windows]\nwindow = 128\nstep = 64\nblock = 512\ntest_every = 2\nbin = 16\n"
        "[model]\nn_layers = 1\nd_model = 8\nd_head = 4\nn_heads = 2\nd_mlp = 16\n"
        "[train]\nepochs = 15\nlr = 0.03\nbatch_size = 16\nwarmup_epochs = 0\n" + cuts
    )
    assert main(["study", "check", str(path), "--epochs", "10"]) == 0
    printed = capsys.readouterr().out
    assert "28 test windows in 4 held-out blocks (the independent unit)" in printed
    assert "trained 10 epochs" in printed
    assert "nothing" in printed and "structural zero" in printed
    assert "smallest p 0.125, holm over 2 cuts: smallest corrected p 0.25" in printed
    out = tmp_path / "out"
    assert main(["study", "run", str(path), "--out", str(out), "--epochs", "10", "--quiet"]) == 0
    assert "cells: 0 reused, 6 recomputed" in capsys.readouterr().out
    assert main(["study", "run", str(path), "--models", "runs/x"]) == 2
    assert "--models: grid is a regression study, which trains its own" in capsys.readouterr().err
    assert main(["study", "run", str(path), "--root", "x", "--out", str(out)]) == 2
    assert "--root: grid is a regression study" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"tarket": "force"}, SpecError, r"unknown key\(s\) \['tarket'\]"),
        ({"interventions": []}, SpecError, r"interventions = \[\]; accepted: a non-empty list"),
        ({"interventions": [{"name": "none", "edges": "cross_channel"}]}, SpecError, "'none'"),
        ({"interventions": [{"name": "x", "edges": "cross_chanel"}]}, SpecError,
         r"interventions\[0\]\.edges"),
        ({"interventions": [CUTS[1], CUTS[1]]}, SpecError, "all_pairs"),
        ({"model": {"d_model": 10}}, SpecError, "d_model = 10 must be d_head x n_heads"),
        ({"train": {"lr": 0}}, SpecError, "train.lr must be a positive number"),
        ({"train": {"epochs": 2, "warmup_epochs": 2}}, SpecError,
         "warmup_epochs = 2 must be below train.epochs = 2"),
        ({"windows": {"window": 100}}, SpecError, "multiples of windows.bin"),
        ({"stats": {"correction": "fdr"}}, SpecError,
         r"stats.correction must be one of \['holm', 'bonferroni'\], got 'fdr'"),
        ({"recording": "missing.mat"}, DataFormatError, "missing.mat .*does not exist.*make data"),
        ({"recording": "."}, DataFormatError, r"recording \. .*is a folder, not a file"),
        ({"target": "torque"}, DataFormatError, "no extra channel 'torque'"),
        ({"target": ""}, SpecError,
         r"target must name the recording's extra channel \('force'\), got ''$"),
    ],
)  # fmt: skip
def test_bad_studies_are_refused_by_name(recording, change, error, match):
    with pytest.raises(error, match=match):
        run(load_spec(study(recording, **change)), progress=False)


@pytest.mark.parametrize("section", ["model", "train", "stats"])
def test_study_check_refuses_the_seeds_study_run_refuses(recording, tmp_path, capsys, section):
    # issue 57 item 8: `study check` accepted a [train] seed the training refused at run time
    path = tmp_path / "seed.toml"
    path.write_text(
        f'kind = "regression"\nname = "grid"\nrecording = "{recording}"\n'
        f"[{section}]\nseed = {2**40}\n"
        '[[interventions]]\nname = "all_pairs"\nedges = "cross_channel"\n'
    )
    message = f"{section}.seed must be an int in 0..2147483647, got {2**40}"
    assert main(["study", "check", str(path)]) == 2
    assert message in capsys.readouterr().err
    assert main(["study", "run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert message in capsys.readouterr().err


def test_a_spec_built_directly_is_read_as_its_file_and_its_cut_named(
    recording, tmp_path, monkeypatch
):
    spec = load_spec(study(recording))
    with pytest.raises(SpecError, match=r"interventions\[0\].edges: invalid edge expression"):
        dataclasses.replace(spec, cuts={"x": "cross_chanel"})
    heads = dataclasses.replace(spec, cuts={"y": "cross_channel & heads(9)"})  # parses; no head 9
    with pytest.raises(LayoutError, match=r"interventions 'y': "):
        check_study(heads)
    trained = []
    monkeypatch.setattr(regression_study, "_train", lambda *a: trained.append(a))
    with pytest.raises(LayoutError, match=r"interventions 'y': "):  # run: before the training
        run(heads, out_dir=tmp_path, progress=False)
    assert not trained


def test_overrides_other_than_epochs_are_refused(recording):
    spec = load_spec(study(recording))
    assert spec.with_overrides({"epochs": 3}).train["epochs"] == 3
    with pytest.raises(ArgumentError, match="--preset: grid is a regression study"):
        spec.with_overrides({"preset": "tiny"})


def test_sign_flip_p_is_exact_over_blocks_and_never_printed_as_zero():
    rng = np.random.default_rng(0)
    d = rng.normal(0.5, 1.0, (30, 11))
    base = rng.normal(size=11)
    assert np.array_equal(sign_flip_p(d), compare_rows(d + base, base, "permutation")[1])
    assert sign_flip_p(np.ones((1, 11)))[0] == pytest.approx(2 / 2**11)  # the floor
    many = sign_flip_p(rng.normal(3.0, 1.0, (1, 40)))  # seeded Monte Carlo above 12 blocks
    assert many[0] == pytest.approx(1 / (PERMUTATIONS + 1))
    assert np.isnan(sign_flip_p([[1.0, np.nan]])[0])
    assert [format_p(p) for p in (0.5, 1e-3, 5e-4, 1e-20, 0.0)] == [
        "0.5", "0.001", "0.0005", "< 1e-16", "< 1e-16",
    ]  # fmt: skip
