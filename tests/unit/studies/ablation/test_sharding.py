"""Studies split across torchrun ranks, with the ranks' environment set by hand (the real
launch is tests/integration/test_torchrun_study.py): each rank computes its own subjects into
the shared store, only rank 0 writes tables, and rank 0 names what it still waits for."""

from __future__ import annotations

import pytest

from emg_lens.errors import StudyError
from emg_lens.studies import run_study, run_training_study
from tests.tiny import tiny_subject, two_class_subjects

SPEC = {
    "name": "shards",
    "models": "unused",
    "layers": {"modes": ["all"]},
    "interventions": [{"name": "cross", "edges": "cross_modal"}],
}


def _models(subjects=(1, 2, 3)) -> dict:
    return {s: tiny_subject(s, 8, perturb=True, subject=s) for s in subjects}


def _rank(monkeypatch, rank: int, world: int = 2) -> None:
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", str(world))
    monkeypatch.setenv("LOCAL_RANK", str(rank))


def _cell_subjects(out) -> list[int]:
    return sorted(int(p.name[1:]) for p in (out / "cells").glob("s*") if any(p.iterdir()))


@pytest.mark.slow  # four table-and-figure writes
def test_ranks_compute_disjoint_subjects_and_rank_0_writes_the_single_process_tables(
    tmp_path, monkeypatch
):
    models = _models()
    single = tmp_path / "single"
    run_study(SPEC, models=models, out_dir=single, progress=False)

    out = tmp_path / "sharded"
    _rank(monkeypatch, 1)
    assert run_study(SPEC, models=models, out_dir=out, progress=False) is None
    assert _cell_subjects(out) == [2]  # sorted [1, 2, 3][1::2]
    assert not (out / "per_subject.csv").exists()  # only rank 0 writes tables

    _rank(monkeypatch, 0)
    result = run_study(SPEC, models=models, out_dir=out, progress=False)
    assert result.recomputed == 2 * 2  # subjects 1 and 3 (baseline + one condition each)
    for name in ("per_subject.csv", "per_class.csv", "summary.csv", "summary.md"):
        assert (out / name).read_bytes() == (single / name).read_bytes(), name


def test_rank_0_names_the_subjects_another_rank_never_stored(tmp_path, monkeypatch):
    _rank(monkeypatch, 0)
    with pytest.raises(StudyError, match=r"missing: subject 2 \(.*to be computed by rank 1 of 2"):
        run_study(SPEC, models=_models(), out_dir=tmp_path, progress=False, wait_timeout=0.3)
    assert _cell_subjects(tmp_path) == [1, 3]  # its own share is stored for the rerun


def test_a_sharded_study_needs_a_store(monkeypatch):
    _rank(monkeypatch, 0)
    with pytest.raises(StudyError, match=r"WORLD_SIZE=2\).*without an out_dir"):
        run_study(SPEC, models=_models((1,)), progress=False)


@pytest.mark.slow  # trains six models
def test_training_study_ranks_train_disjoint_subjects(tmp_path, monkeypatch):
    data = two_class_subjects((1, 2, 3), 16)
    spec = {
        "name": "t",
        "data": {"subjects": [1, 2, 3], "window": 8},
        "architectures": ["MultimodalMLP"],
        "reference": "both",
        "train": {"preset": "tiny", "epochs": 1, "lr": 0.01},
        "inputs": [{"name": "both", "modalities": ["emg", "acc"]}],
    }
    single = run_training_study(spec, data=data, out_dir=tmp_path / "single", progress=False)
    out = tmp_path / "sharded"
    _rank(monkeypatch, 1)
    assert run_training_study(spec, data=data, out_dir=out, progress=False) is None
    assert _cell_subjects(out) == [2]
    _rank(monkeypatch, 0)
    result = run_training_study(spec, data=data, out_dir=out, progress=False)
    columns = ["subject", "architecture", "input", "electrodes", "value"]
    assert result.per_subject[columns].equals(single.per_subject[columns])
    assert (out / "summary.csv").read_bytes() == (tmp_path / "single" / "summary.csv").read_bytes()
