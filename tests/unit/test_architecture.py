"""The layers of docs/ARCHITECTURE.md hold: import-linter's contracts (pyproject.toml) pass on
the package, and fail on a copy of it with one deliberately added upward import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(
    not LINT_IMPORTS.exists(), reason="import-linter is not installed (pip install -e .[dev])"
)


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    """Run the contracts of ``root/pyproject.toml`` on the ``emg_lens`` package under ``root``."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_import_contracts_hold():
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 3 kept, 0 broken." in result.stdout


def test_an_upward_import_breaks_the_layers(tmp_path):
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(
        REPO / "emg_lens", tmp_path / "emg_lens", ignore=shutil.ignore_patterns("*.pyc")
    )
    layout = tmp_path / "emg_lens" / "layout.py"
    layout.write_text(layout.read_text() + "\nimport emg_lens.studies  # upward, on purpose\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "emg_lens.layout is not allowed to import emg_lens.studies" in result.stdout
