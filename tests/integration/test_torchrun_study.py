"""``emg-lens study run`` under ``torchrun --nproc-per-node 2`` (gloo's CPU world, no GPU): the
ranks split the subjects, rank 0 writes tables byte-identical to one process's, and a rank
killed mid-run loses only its unfinished cells: the rerun completes them and keeps the rest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from emg_lens.cli import main
from tests.integration.killable_study import setup

REPO = Path(__file__).resolve().parents[2]
TABLES = ("per_subject.csv", "per_class.csv", "summary.csv", "summary.md")

TRAINING = """
kind = "training"
name = "torchrun-training"
architectures = ["MultimodalMLP"]
reference = "both"
[data]
dataset = "synthetic"
subjects = [1, 2, 3]
window = 200
step = 200
[train]
preset = "tiny"
epochs = 1
lr = 0.01
[[inputs]]
name = "both"
modalities = ["emg", "acc"]
[[inputs]]
name = "emg"
modalities = ["emg"]
"""


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EMG_LENS_CACHE": str(tmp_path / "cache")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return {**env, **extra}


def _torchrun(tmp_path: Path, *args: str, **env: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    return subprocess.Popen(
        [*cmd, "-m", "emg_lens.cli", "study", "run", *args, "--quiet", "--device", "cpu"],
        cwd=tmp_path,
        env=_env(tmp_path, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen) -> str:
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output[-4000:]
    return output


def _one_process(monkeypatch, tmp_path: Path, *args: str, cache: str = "") -> None:
    """The reference: the same command in this process, on one thread like the ranks, on the
    test's own cache (``cache``: another)."""
    monkeypatch.setenv("EMG_LENS_CACHE", cache or str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["study", "run", *args, "--quiet", "--device", "cpu"]) == 0
    finally:
        torch.set_num_threads(threads)


def _writers(out: Path) -> dict[Path, int]:
    """Every stored cell and the pid that wrote it."""
    return {
        p.relative_to(out): json.loads(p.read_text())["writer"]["pid"]
        for p in (out / "cells").glob("s*/*.json")
    }


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_ranks_killed_and_rerun_write_the_single_process_tables(tmp_path, monkeypatch):
    # The resume test's study (four interventions, one a hook that sleeps on request) on four
    # subjects: rank 0 takes 1 and 3, rank 1 takes 2 and 4.
    # The session's cache, where test_resume.py leaves the data of subjects 1 to 3 (untrained
    # checkpoints: no kept training to read back).
    models, spec, _ = setup(tmp_path, subjects=(1, 2, 3, 4))
    out, ref = tmp_path / "out", tmp_path / "ref"
    common = [str(spec), "--models", str(models), "--allow-code"]
    cache = os.environ["EMG_LENS_CACHE"]
    _one_process(monkeypatch, tmp_path, *common, "--out", str(ref), cache=cache)

    # 1. Two ranks, slowed down; kill rank 1 (SIGKILL) once it has stored its first subject.
    proc = _torchrun(
        tmp_path, *common, "--out", str(out), STUDY_TEST_DELAY="0.5", EMG_LENS_CACHE=cache
    )
    deadline = time.monotonic() + 240
    try:
        while not (cells := list((out / "cells").glob("s2/*.json"))):
            assert proc.poll() is None, proc.stdout.read()[-4000:]
            assert time.monotonic() < deadline, "rank 1 stored no cell within 240 s"
            time.sleep(0.05)
        rank1 = json.loads(cells[0].read_text())["writer"]["pid"]
        os.kill(rank1, signal.SIGKILL)
        output, _ = proc.communicate(timeout=120)  # torchrun stops rank 0 and fails
    finally:
        proc.kill()
    assert proc.returncode != 0, output[-4000:]
    assert not (out / "summary.csv").exists(), "the study finished before the kill"
    before = _writers(out)
    assert rank1 in before.values()
    assert not list((out / "cells").glob("s4/*.json")), "rank 1 finished before the kill"

    # 2. The rerun completes the missing cells and keeps every stored one.
    _finish(_torchrun(tmp_path, *common, "--out", str(out), EMG_LENS_CACHE=cache))
    after = _writers(out)
    assert {cell: after[cell] for cell in before} == before  # none recomputed
    assert len(after) > len(before)
    assert set(after) == set(_writers(ref))
    for name in TABLES:
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_ranks_run_a_training_study_to_the_single_process_tables(tmp_path, monkeypatch):
    spec = tmp_path / "training.toml"
    spec.write_text(TRAINING)
    out, ref = tmp_path / "out", tmp_path / "ref"
    _one_process(monkeypatch, tmp_path, str(spec), "--out", str(ref))
    printed = _finish(_torchrun(tmp_path, str(spec), "--out", str(out)))
    assert "rank 1 of 2: its subjects' cells are in" in printed
    # train_seconds is a timing, different on every run: everything else must be equal
    tables = [pd.read_csv(f / "per_subject.csv").drop(columns="train_seconds") for f in (out, ref)]
    assert tables[0].to_csv() == tables[1].to_csv()
    assert (out / "summary.csv").read_bytes() == (ref / "summary.csv").read_bytes()
    writers = {json.loads(p.read_text())["writer"]["pid"] for p in out.glob("cells/s*/*.json")}
    assert len(writers) == 2  # both ranks trained


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_ranks_run_attached_checkpoints_through_the_builder_to_the_single_process_tables(
    tmp_path, monkeypatch
):
    """The builder route under torchrun: each rank loads its subjects' attached checkpoints
    through the user's models.py (the study's ``modules``, run with ``--allow-code``), and rank
    0 writes tables byte-identical to one process's: each subject's cells are computed whole by
    one process, on one thread in both runs, and the statistics read them in subject order, so
    no sum is reordered between the two runs (equality, not a tolerance)."""
    from tests.unit.attached_checkpoints import save_subjects, write_user_code

    write_user_code(tmp_path)
    models = save_subjects(tmp_path / "models", subjects=(1, 2))
    spec = tmp_path / "attached.toml"
    spec.write_text(
        'name = "attached"\nmodels = "models"\nmodules = "models.py:build_modules"\n'
        'metric = ["accuracy", "kl"]\n'  # kl: floats compared to the last bit
        '[[interventions]]\nname = "cross"\nedges = "cross_modal"\n'
        '[[interventions]]\nname = "acc_off"\nzero_modality = "acc"\n'
    )
    out, ref = tmp_path / "out", tmp_path / "ref"
    common = [str(spec), "--models", str(models), "--allow-code"]
    _one_process(monkeypatch, tmp_path, *common, "--out", str(ref))
    printed = _finish(_torchrun(tmp_path, *common, "--out", str(out)))
    assert "rank 1 of 2: its subjects' cells are in" in printed
    writers = {json.loads(p.read_text())["writer"]["pid"] for p in out.glob("cells/s*/*.json")}
    assert len(writers) == 2  # both ranks computed cells
    assert set(_writers(out)) == set(_writers(ref))
    for name in TABLES:
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
