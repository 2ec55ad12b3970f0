"""The kill-and-resume guarantee (docs/DESIGN.md §5): a study killed with SIGKILL at any moment and
started again ends with exactly the tables of an uninterrupted run, and never leaves a
half-written cell behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from emg_lens import EncoderConfig
from emg_lens.checkpoints import save_checkpoint
from emg_lens.data.datasets import data_source
from emg_lens.data.preprocess import PreprocessSpec
from emg_lens.data.synthetic import SyntheticSpec
from emg_lens.models import IsoNet
from tests.conftest import perturb_biases

REPO = Path(__file__).resolve().parents[2]
SUBJECTS = (1, 2, 3)

# A hook factory that sleeps when asked to by an environment variable: the test's way of
# slowing a study down enough to kill it mid-way (the library knows nothing about it).
SLOW_HOOK = textwrap.dedent(
    """
    import os
    import time

    from emg_lens.hooks import pattern_filter, zero_edges


    def zero_cross(model, layers):
        time.sleep(float(os.environ.get("STUDY_TEST_DELAY", "0")))
        return [(pattern_filter(layers), zero_edges("cross_modal", model.layout))]
    """
)

SPEC = """
name = "resume"
models = "unused: the script passes the folder"

[[interventions]]
name = "uni"
edges = "unimodal"

[[interventions]]
name = "cross"
edges = "cross_modal"

[[interventions]]
name = "slow"
hook = "hooks/slow.py:zero_cross"

[[interventions]]
name = "acc_off"
zero_modality = "acc"

[layers]
modes = ["individual", "from_first", "from_last"]
"""

# Runs the study; logs which subject each evaluation started on (a spy in the script, not in
# the library).
SCRIPT = textwrap.dedent(
    """
    import json
    import os
    import sys

    from emg_lens.studies import run_study
    from emg_lens.studies import runner

    real = runner.evaluate_subject


    def evaluate(spec, subject, todo, **kw):
        with open(os.environ["STUDY_LOG"], "a") as log:
            log.write(json.dumps([subject.data.subject, len(todo)]) + "\\n")
        return real(spec, subject, todo, **kw)


    runner.evaluate_subject = evaluate
    run_study(
        sys.argv[1], models=sys.argv[2], out_dir=sys.argv[3], progress=False, allow_code=True
    )
    """
)


def _setup(root: Path) -> tuple[Path, Path, Path]:
    source = data_source(
        "synthetic",
        synthetic=SyntheticSpec(n_subjects=len(SUBJECTS), movement_seconds=1.0),
        preprocess=PreprocessSpec(segment=(0.25, 1.0), step=100),
    )
    models = root / "models"
    for subject in SUBJECTS:
        cfg = EncoderConfig.preset(
            "tiny",
            seed=subject,
            modalities={"emg": 12, "acc": 36},
            n_samples=200,
            n_classes=12,
            init_range=0.5,
        )
        model = IsoNet(cfg)
        perturb_biases(model)
        save_checkpoint(
            model,
            models / f"subject_{subject}",
            metadata={"subject": subject, "data_source": source},
        )
    (root / "studies" / "hooks").mkdir(parents=True)
    (root / "studies" / "hooks" / "slow.py").write_text(SLOW_HOOK)
    spec = root / "studies" / "resume.toml"  # the hook lives beside it, in studies/hooks/
    spec.write_text(SPEC)
    script = root / "run.py"
    script.write_text(SCRIPT)
    return models, spec, script


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


def _cells(out: Path) -> dict[int, list[Path]]:
    found = {}
    for subject_dir in sorted((out / "cells").glob("s*")):
        found[int(subject_dir.name[1:])] = sorted(subject_dir.glob("*.json"))
    return {s: files for s, files in found.items() if files}


def _logged(log: Path) -> list[list[int]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_killed_study_resumes_to_the_same_tables(tmp_path):
    models, spec, script = _setup(tmp_path)
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

    # 2. Start again, to the end; an uninterrupted run in another folder for reference.
    resumed_log = tmp_path / "resumed.log"
    _finish(_start(script, spec, models, out, resumed_log))
    _finish(_start(script, spec, models, ref, tmp_path / "ref.log"))

    # The resumed run evaluated exactly the cells missing at the kill (the kill may land
    # between two cells of a subject: the finished ones are kept) ...
    full = dict(_logged(tmp_path / "ref.log"))
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
