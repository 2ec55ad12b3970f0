"""The paper's Table 2 from the command line: train hierarchical transformers, zero each
modality's input, compare with the intact input (`studies/modality_zeroing.toml`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from emg_lens.checkpoints import read_checkpoint_info
from emg_lens.cli import main

STUDIES = Path(__file__).resolve().parents[2] / "studies"  # the repository's example studies

pytestmark = pytest.mark.slow


def test_train_hierarchical_then_zero_each_modality(tmp_path, capsys):
    models = tmp_path / "hier"
    train = ["train", "--architecture", "HierarchicalTransformer", "--preset", "tiny"]
    options = ["--epochs", "2", "--n-subjects", "2", "--out", str(models), "--quiet"]
    assert main([*train, *options]) == 0
    info = read_checkpoint_info(models / "subject_1")
    assert info["model_class"] == "HierarchicalTransformer"
    assert info["metadata"]["data_source"]["dataset"] == "synthetic"

    out = tmp_path / "study"
    spec = str(STUDIES / "modality_zeroing.toml")
    assert main(["study", "run", spec, "--models", str(models), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "no_emg" in printed and "no_acc" in printed
    table = pd.read_csv(out / "per_subject.csv")
    assert sorted(table["intervention"].unique()) == ["baseline", "no_acc", "no_emg"]
    assert sorted(table["subject"].unique()) == [1, 2]
    assert (out / "summary.md").is_file()
