"""No code from the working directory runs (issue 23, item 1).

``python -m emg_lens.cli ...`` and the README's ``torchrun ... -m emg_lens.cli ...`` put the
working directory first on ``sys.path``. A user who runs a downloaded study in its own folder
must not execute a ``scipy.py`` (or ``numpy.py``, ``torch.py``, ...) lying there. Each planted
module below writes a marker file when it is imported; every documented way of running a study
or a discovery from that folder must finish without leaving one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from emg_lens import EncoderConfig
from emg_lens.checkpoints import save_checkpoint
from emg_lens.data.datasets import data_source
from emg_lens.data.preprocess import PreprocessSpec
from emg_lens.data.synthetic.emg_acc import SyntheticSpec
from emg_lens.models import IsoNet

pytestmark = pytest.mark.slow

# Modules emg_lens imports after start-up (standard library and dependencies alike).
PLANTED = (
    "__future__",
    "argparse",
    "dataclasses",
    "einops",
    "h5py",
    "jaxtyping",
    "json",
    "matplotlib",
    "numpy",
    "pandas",
    "safetensors",
    "scipy",
    "tomllib",
    "torch",
    "tqdm",
    "transformer_lens",
    "typing",
    "yaml",
)

STUDY = """
name = "downloaded"
models = "models"
metric = "accuracy"
return_type = "avg_logits"
[[interventions]]
name = "cross"
edges = "cross_modal"
[layers]
modes = ["all"]
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A study's folder as a user unpacked it: the study file, one subject's checkpoint, and
    modules named like emg_lens's imports that record being run."""
    root = tmp_path_factory.mktemp("downloaded_study")
    (root / "markers").mkdir()
    for name in PLANTED:
        (root / f"{name}.py").write_text(
            f"open({str(root / 'markers' / name)!r}, 'w').close()\n"
            f"raise ImportError('the planted {name}.py ran')\n"
        )
    (root / "study.toml").write_text(STUDY)
    source = data_source(
        "synthetic",
        synthetic=SyntheticSpec(n_subjects=1, movement_seconds=1.0),
        preprocess=PreprocessSpec(segment=(0.25, 1.0), step=200),
    )
    cfg = EncoderConfig.preset(
        "tiny",
        seed=1,
        modalities={"emg": 12, "acc": 36},
        n_samples=200,
        n_classes=12,
        init_range=0.5,  # large enough weights that cutting edges moves the margin
    )
    save_checkpoint(
        IsoNet(cfg), root / "models" / "subject_1", metadata={"subject": 1, "data_source": source}
    )
    return root


def _run(folder: Path, *command: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)  # as a user's shell has it: emg_lens is installed
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    ran = sorted(p.name for p in (folder / "markers").iterdir())
    assert not ran, f"{' '.join(command)} ran {ran} from the working directory:\n{done.stderr}"
    assert done.returncode == 0, done.stderr[-3000:]


PYTHON_M = (sys.executable, "-m", "emg_lens.cli")
TORCHRUN = (str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc-per-node")


@pytest.mark.parametrize(
    "command",
    [
        (*PYTHON_M, "study", "check", "study.toml"),
        (*PYTHON_M, "study", "run", "study.toml", "--out", "run_m", "--quiet"),
        (
            *PYTHON_M,
            "discover",
            "--models",
            "models",
            "--out",
            "discover_m",
            "--tau",
            "0.2",
            "--quiet",
        ),
        # the README's scale-out command, on one process
        (*TORCHRUN, "1", "-m", "emg_lens.cli", "study", "run", "study.toml", "--out", "run_t"),
    ],
    ids=["study check", "study run", "discover", "torchrun study run"],
)
def test_no_module_of_the_working_directory_runs(folder, command):
    _run(folder, *command)
