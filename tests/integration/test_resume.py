"""The kill-and-resume guarantee (docs/DESIGN.md §5): a study killed with SIGKILL at any moment and
started again ends with exactly the tables of an uninterrupted run, and never leaves a
half-written cell behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from emg_lens.studies import run_study
from emg_lens.studies.ablation import runner
from tests.integration.killable_study import SUBJECTS, setup

REPO = Path(__file__).resolve().parents[2]


def _start(script, spec, models, out, log, delay="0") -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STUDY_TEST_DELAY": delay, "STUDY_LOG": str(log)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, str(script), str(spec), str(models), str(out)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen, timeout: float = 240) -> None:
    output, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, output


def _run_here(monkeypatch, spec: Path, models: Path, out: Path) -> dict[int, int]:
    """The uninterrupted reference run, in this process as the script runs it (on one thread,
    as the started ones): each subject and how many cells its evaluation computed."""
    logged: dict[int, int] = {}
    evaluate = runner.evaluate_subject

    def spy(spec, subject, todo, **kw):
        logged[subject.data.subject] = len(todo)
        return evaluate(spec, subject, todo, **kw)

    monkeypatch.setattr(runner, "evaluate_subject", spy)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_study(spec, models=models, out_dir=out, progress=False, allow_code=True)
    finally:
        torch.set_num_threads(threads)
        monkeypatch.setattr(runner, "evaluate_subject", evaluate)
    return logged


def _cells(out: Path) -> dict[int, list[Path]]:
    found = {}
    for subject_dir in sorted((out / "cells").glob("s*")):
        found[int(subject_dir.name[1:])] = sorted(subject_dir.glob("*.json"))
    return {s: files for s, files in found.items() if files}


def _logged(log: Path) -> list[list[int]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_killed_study_resumes_to_the_same_tables(tmp_path, monkeypatch):
    models, spec, script = setup(tmp_path)
    out, ref = tmp_path / "out", tmp_path / "ref"

    # 1. Start, wait for the first finished subject, kill without warning.
    proc = _start(script, spec, models, out, tmp_path / "killed.log", delay="0.5")
    deadline = time.monotonic() + 240
    try:
        while not _cells(out):
            if proc.poll() is not None:
                pytest.fail(f"the study ended before it could be killed:\n{proc.stdout.read()}")
            if time.monotonic() > deadline:
                pytest.fail("no cell was written within 240 s")
            time.sleep(0.05)
        proc.kill()  # SIGKILL
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -9
    assert not (out / "summary.csv").exists(), "the study finished before the kill"
    done_at_kill = _cells(out)
    assert 1 <= len(done_at_kill) < len(SUBJECTS)
    n_cells = {s: len(files) for s, files in done_at_kill.items()}

    # 2. Start again, to the end; an uninterrupted run in another folder for reference (in
    # this process: a process started for it only repeated the imports).
    resumed_log = tmp_path / "resumed.log"
    _finish(_start(script, spec, models, out, resumed_log))
    full = _run_here(monkeypatch, spec, models, ref)

    # The resumed run evaluated exactly the cells missing at the kill (the kill may land
    # between two cells of a subject: the finished ones are kept) ...
    assert full.keys() == set(SUBJECTS)
    missing = {s: full[s] - n_cells.get(s, 0) for s in SUBJECTS}
    assert dict(_logged(resumed_log)) == {s: n for s, n in missing.items() if n}

    # ... and ends with exactly the tables of the uninterrupted run.
    for name in ("per_subject.csv", "summary.csv", "summary.md"):
        assert (out / name).read_text() == (ref / name).read_text(), name

    # No half-written cell anywhere: every cell file parses and is a whole cell.
    for folder in (out, ref):
        files = list((folder / "cells").rglob("*.json"))
        assert len(files) == len(SUBJECTS) * full[1]
        for path in files:
            cell = json.loads(path.read_text())
            assert {"values", "class_correct", "class_total"} <= set(cell), path
