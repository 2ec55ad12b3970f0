"""No code from the working directory runs (issue 23, item 1; issue 37, item 5).

``python -m emg_lens.cli ...`` (and ``torchrun ... -m emg_lens.cli ...``) put the working
directory first on ``sys.path``. A user who runs a downloaded study in its own folder must not
execute a ``scipy.py`` (or ``numpy.py``, ``torch.py``, ...) lying there. Each planted module
below writes a marker file when it is imported; every documented way of running a study or a
discovery from that folder must finish without leaving one.

An ``emg_lens/`` package in that folder is found by ``-m`` before any emg_lens code runs, so
only the launch can keep it out: the guide's "Scale out" launches the installed command,
``torchrun --no-python emg-lens ...``, which is run here, as the guide writes it, beside a
planted ``emg_lens/`` (and shown to be needed: ``python -m`` does run the planted package).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs_pages import section
from tests.tiny import synthetic_checkpoint

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
    synthetic_checkpoint(root / "models")
    return root


def _user_env() -> dict[str, str]:
    """As a user's shell has it: emg_lens installed (no PYTHONPATH), its commands on PATH."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _run(folder: Path, *command: str) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=folder, env=_user_env(), capture_output=True, text=True)
    ran = sorted(p.name for p in (folder / "markers").iterdir())
    assert not ran, f"{' '.join(command)} ran {ran} from the working directory:\n{done.stderr}"
    assert done.returncode == 0, done.stderr[-3000:]
    return done


PYTHON_M = (sys.executable, "-m", "emg_lens.cli")


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
    ],
    ids=["study check", "study run", "discover"],
)
def test_no_module_of_the_working_directory_runs(folder, command):
    _run(folder, *command)


def readme_torchrun_lines() -> list[list[str]]:
    """The ``torchrun`` commands of the guide's "Scale out" (docs/guide/scale-out.md), as argv."""
    blocks = re.findall(r"```bash\n(.*?)```", section("# Scale out"), flags=re.S)
    lines = [shlex.split(b.replace("\\\n", " "), comments=True) for b in blocks]
    assert lines and all(argv[0] == "torchrun" for argv in lines), lines
    return lines


def test_the_readme_torchrun_line_runs_no_emg_lens_package_of_the_working_directory(
    folder, tmp_path
):
    # The planted modules and study of `folder`, and an emg_lens/ package that records being
    # imported: what `-m emg_lens.cli` would find first.
    here = tmp_path / "downloaded"
    shutil.copytree(folder, here, ignore=shutil.ignore_patterns("markers", "run_*", "discover_*"))
    (here / "markers").mkdir()
    (here / "emg_lens").mkdir()
    (here / "emg_lens" / "__init__.py").write_text(
        f"open({str(here / 'markers' / 'emg_lens')!r}, 'w').close()\n"
        "raise ImportError('the planted emg_lens/ ran')\n"
    )
    lines = readme_torchrun_lines()
    for argv in lines:  # every torchrun line launches the installed command
        program = argv.index("--no-python") + 1
        assert argv[program : program + 3] == ["emg-lens", "study", "run"], argv
    # The one-node line as written, on one CPU process, with this folder's study and models.
    argv = lines[0]
    program = argv.index("--no-python") + 1
    launcher = argv[:program]
    launcher[launcher.index("--nproc-per-node") + 1] = "1"
    study = ["study", "run", "study.toml", "--models", "models", "--out", "run_t"]
    done = _run(here, *launcher, "emg-lens", *study, "--device", "cpu", "--quiet")
    assert (here / "run_t" / "summary.csv").is_file(), done.stdout[-2000:]

    # The form it replaces runs the planted package: this test would see it.
    shown = subprocess.run(
        [*PYTHON_M, "study", "check", "study.toml"], cwd=here, env=_user_env(), text=True,
        capture_output=True,
    )  # fmt: skip
    assert "the planted emg_lens/ ran" in shown.stderr, shown.stderr[-2000:]
    assert sorted(p.name for p in (here / "markers").iterdir()) == ["emg_lens"]
