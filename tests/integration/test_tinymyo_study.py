"""TinyMyo end to end: `emg-lens pretrain` -> `finetune --per-subject` -> the channel-mixing
study file, on synthetic sEMG and on a window store made by `emg-lens windows`."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emg_lens.checkpoints import read_checkpoint_info
from emg_lens.cli import main
from emg_lens.data.datasets import load_subject
from emg_lens.studies import load_spec, run_study

STUDY = Path(__file__).resolve().parents[2] / "studies" / "tinymyo_channel_mixing.toml"
SYNTHETIC = ["--n-subjects", "2", "--movement-seconds", "0.5", "--seed", "0"]
RECIPE = ["--batch-size", "32", "--warmup-epochs", "0", "--quiet"]


def _pretrain(out: Path, data: list[str]) -> None:
    assert main(["pretrain", *data, "--out", str(out), "--epochs", "1", *RECIPE]) == 0


def _finetune(pretrained: Path, out: Path, data: list[str], epochs: str = "4") -> list[dict]:
    command = ["finetune", "--checkpoint", str(pretrained), "--per-subject", "--out", str(out)]
    assert main([*command, *data, "--epochs", epochs, "--lr", "2e-3", *RECIPE]) == 0
    return json.loads((out / "finetuning.json").read_text())


@pytest.mark.slow
def test_synthetic_pretrain_finetune_per_subject_and_channel_mixing_study(tmp_path, capsys):
    data = [*SYNTHETIC, "--window", "100", "--step", "100"]
    _pretrain(tmp_path / "pretrained", data)
    rows = _finetune(tmp_path / "pretrained", tmp_path / "models", SYNTHETIC)
    assert [r["subject"] for r in rows] == [1, 2]
    assert sorted(p.name for p in (tmp_path / "models").glob("subject_*")) == [
        "subject_1",
        "subject_2",
    ]
    for row in rows:  # 4 gestures: chance 0.25, on the held-out repetitions 2 and 5
        assert row["chance"] == 0.25 and row["test_accuracy"] > 0.5
        meta = read_checkpoint_info(row["checkpoint"])["metadata"]
        assert meta["subject"] == row["subject"]
        assert meta["data_source"]["dataset"] == "synthetic-windows"
        # beside it, the per-channel feature baseline on the same split (issue 46, item 5)
        assert meta["baseline"]["value"] == row["baseline_accuracy"]
        assert 0.25 <= row["baseline_accuracy"] <= 1
        # The checkpoint alone rebuilds the test windows: the same count as fine-tuning saw.
        rebuilt = load_subject(meta["data_source"], meta["subject"])
        assert len(rebuilt.y_test) == row["n_test"]
        # the below-baseline line counts these trials, not the windows (issue 78)
        assert row["test_trials"] == len(set(rebuilt.test_trials.tolist())) < row["n_test"]
        assert set(rebuilt.rep_test.tolist()) == {2, 5}

    capsys.readouterr()
    out = tmp_path / "study"
    command = ["study", "run", str(STUDY), "--models", str(tmp_path / "models"), "--out", str(out)]
    assert main([*command, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "tinymyo-channel-mixing: baseline accuracy" in printed
    assert "same_channel" in printed and "cross_channel" in printed
    assert "margin (Δ):" in printed  # the study file's second metric, its own table
    per_subject = pd.read_csv(out / "per_subject.csv")
    accuracy = per_subject[per_subject.metric == "accuracy"]
    baseline = accuracy[accuracy.intervention == "baseline"].set_index("subject").value
    # The study scores the very test windows fine-tuning scored.
    for row in rows:
        assert baseline[row["subject"]] == pytest.approx(row["test_accuracy"])
    summary = pd.read_csv(out / "summary.csv")
    # 2 interventions x (individual at layers 0, 1 + from_first at 0, 1) on the 2-layer models,
    # for accuracy and for the margin
    assert len(summary) == 2 * 8
    assert summary.groupby("metric").size().to_dict() == {"accuracy": 8, "margin": 8}
    margin = summary[summary.metric == "margin"]
    assert margin.delta_pct.isna().all() and margin.delta.notna().all()
    assert set(summary.intervention) == {"same_channel", "cross_channel"}
    assert set(summary["mode"]) == {"individual", "from_first"}
    assert summary.p_corr.between(0, 1).all()


@pytest.mark.slow
def test_window_store_pretrain_finetune_per_subject_and_study_dict(tmp_path):
    store = tmp_path / "synthetic.h5"
    windows = ["windows", "--source", "synthetic", "--out", str(store), *SYNTHETIC]
    assert main([*windows, "--window", "200", "--step", "200", "--quiet"]) == 0
    _pretrain(tmp_path / "pretrained", ["--windows", str(store)])
    assert read_checkpoint_info(tmp_path / "pretrained")["config"]["modalities"] == {"emg": 16}
    rows = _finetune(
        tmp_path / "pretrained",
        tmp_path / "models",
        ["--windows", str(store), "--subjects", "2"],
        epochs="1",
    )
    assert [r["subject"] for r in rows] == [2]
    meta = read_checkpoint_info(rows[0]["checkpoint"])["metadata"]
    assert meta["data_source"]["dataset"] == "windows"
    assert meta["data_source"]["path"] == str(store.resolve())
    rebuilt = load_subject(meta["data_source"], 2)
    assert rebuilt.X_test.shape[1:] == (16, 200)
    assert not np.abs(rebuilt.X_test[:, 12:]).any()  # 12 sEMG channels, zero-padded to 16

    # The study file as a dict, narrowed to one mode: the runner takes it like the file.
    spec = load_spec(STUDY).to_dict()
    spec["layers"]["modes"] = ["individual"]
    result = run_study(spec, models=tmp_path / "models", progress=False)
    assert len(result.summary) == 2 * 4  # 2 interventions x 2 layers, accuracy and margin
    assert result.baseline.tolist() == pytest.approx([rows[0]["test_accuracy"]])
