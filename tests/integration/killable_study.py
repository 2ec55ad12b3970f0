"""A study that a test can kill mid-way and run again: three subjects' untrained IsoNets on
synthetic data, a hook factory that sleeps on request (``STUDY_TEST_DELAY``), and a script
that runs the study and logs each subject it starts on. The kill-and-resume test and the
torchrun test share it."""

from __future__ import annotations

import textwrap
from pathlib import Path

from emg_lens.data.datasets import data_source
from emg_lens.data.preprocess import PreprocessSpec
from emg_lens.data.synthetic.emg_acc import SyntheticSpec
from tests.tiny import db2_checkpoint

SUBJECTS = (1, 2, 3)
N_SUBJECTS = 4  # of the data source, whatever subjects a test saves: the torchrun test's four

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
    from emg_lens.studies.ablation import runner

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


def setup(root: Path, subjects: tuple[int, ...] = SUBJECTS) -> tuple[Path, Path, Path]:
    """Checkpoints of ``subjects``, the study file (its hook beside it) and the script, under
    ``root``. One data source for every test (the session's cache keeps its subjects for the
    next test)."""
    source = data_source(
        "synthetic",
        synthetic=SyntheticSpec(n_subjects=N_SUBJECTS, movement_seconds=1.0),
        preprocess=PreprocessSpec(segment=(0.25, 1.0), step=100),
    )
    models = root / "models"
    for subject in subjects:
        db2_checkpoint(models, subject, source, perturb=True)
    (root / "studies" / "hooks").mkdir(parents=True)
    (root / "studies" / "hooks" / "slow.py").write_text(SLOW_HOOK)
    spec = root / "studies" / "resume.toml"  # the hook lives beside it, in studies/hooks/
    spec.write_text(SPEC)
    script = root / "run.py"
    script.write_text(SCRIPT)
    return models, spec, script
