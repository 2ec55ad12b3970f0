"""The wheel is what a user of the published package gets, not the repository: build it, install
it into a fresh virtual environment outside the checkout, and run `emg-lens demo` there, from a
folder with no checkout in it. A command that reads a file of the repository instead of package
data (``Path(__file__).parents[2] / "studies"``) fails here, not on a user's machine.

Offline: the wheel is built with the installed build backend (``--no-build-isolation``) and
installed without its dependencies, which the fresh environment takes from this one's
site-packages through a ``.pth`` line (that folder's own ``.pth`` files, among them the
editable install's pointer to the checkout, are not read there: Python processes ``.pth`` files
of site directories only).
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(REPO)], dist
    )
    (built,) = dist.glob("emg_lens-*.whl")
    return built


def test_the_wheel_ships_the_package_and_its_data_only(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "emg_lens/studies/planted_demo.toml" in names  # what `emg-lens demo` reads
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"emg_lens"}, top


def test_demo_runs_from_the_installed_wheel_outside_the_checkout(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
    python = venv / "bin" / "python"
    site = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp_path
        ).strip()
    )
    # the dependencies (torch, transformer_lens, ...) from this environment, after the wheel's own
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", str(python)]
    _run([*pip, "install", "-q", "--no-deps", str(wheel)], tmp_path)

    elsewhere = tmp_path / "elsewhere"  # no checkout here or above: /tmp
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    where = _run([str(python), "-c", "import emg_lens; print(emg_lens.__file__)"], elsewhere, env)
    assert Path(where.strip()).is_relative_to(venv), where  # the installed wheel, not the checkout

    out = _run(
        [
            str(venv / "bin" / "emg-lens"),
            "demo",
            "--n-subjects",
            "2",
            "--epochs",
            "1",
            "--refits",  # train_subjects' (tested there): here only time
            "0",
            "--quiet",
            "--out",
            "demo",
        ],
        elsewhere,
        env,
    )
    assert "planted_demo.toml" in out, out
    assert (elsewhere / "demo" / "study" / "summary.md").is_file(), out
    assert not (elsewhere / "runs").exists()  # --out was honoured
