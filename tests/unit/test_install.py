"""The install the README gives (issue 85): emg_lens from the clone or from the wheel `make wheel`
builds, never `pip install emg_lens` (the name is not published on PyPI); torch's range stated in
pyproject.toml and on the install pages, its two ends the Makefile's pins (`TORCH_LOWER`, which
`make test-lower` runs `make test-fast`'s tests on, and `TORCH_SPEC`, which `make test` and CI
run); and `make` saying which torch build it installs and why.

The Makefile's set-up runs here with a stand-in for Python that records its calls (and an
``nvidia-smi`` that finds a GPU or not): what `make` would install, without installing it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.version import Version

from tests.docs_pages import ROOT, blocks, pages

MAKEFILE = ROOT / "Makefile"
INSTALL_PAGES = (ROOT / "README.md", ROOT / "docs" / "getting-started.md")
CPU_INDEX = "--index-url https://download.pytorch.org/whl/cpu"


def _pin(name: str) -> Version:
    (version,) = re.findall(rf"^{name} \?= torch==(\S+)$", MAKEFILE.read_text(), flags=re.M)
    return Version(version)


def _torch_range() -> str:
    (spec,) = re.findall(r'^ +"torch([<>=][^"]*)",', (ROOT / "pyproject.toml").read_text(), re.M)
    return spec


def test_the_torch_range_runs_from_the_lower_pin_to_the_tested_one():
    """The upper end is what CI runs: a user's pip cannot take an untested newer minor."""
    lower, upper = _pin("TORCH_LOWER"), _pin("TORCH_SPEC")
    assert _torch_range() == f">={lower.major}.{lower.minor},<{upper.major}.{upper.minor + 1}"


def test_the_install_pages_state_the_range_and_install_torch_within_it():
    spec = _torch_range()
    lower, upper = _pin("TORCH_LOWER"), _pin("TORCH_SPEC")
    cpu_first = f'pip install "torch{spec}" {CPU_INDEX}\npip install .'
    for page in INSTALL_PAGES:
        text = page.read_text()
        assert f"`torch{spec}`" in text, page
        assert f"torch {lower.major}.{lower.minor} to {upper.major}.{upper.minor}" in text, page
        assert "make test-lower" in text and "make wheel" in text, page
        (block,) = [b.text for b in blocks("bash") if b.page == page and "pip install" in b.text]
        assert block.startswith(cpu_first), (page, block)


def test_no_page_installs_a_name_pypi_does_not_publish():
    """`pip install emg_lens` is a 404 on PyPI, and anyone could take the name."""
    bare = re.compile(r"""pip install +["']?emg_lens\b""")
    for block in blocks():
        assert not bare.search(block.text), block.where
    for page in pages():  # nor in the prose: `pip install "emg_lens[braindecode]"`
        assert not re.search(r"""pip install +["']?emg_lens\[""", page.read_text()), page


def _make(tmp_path: Path, target: str, *, gpu: bool, torch_index: str = "") -> tuple[str, str]:
    """Runs ``make target`` (``setup``: .venv's set-up) with its Python replaced by a recorder,
    in a fresh folder of ``tmp_path`` named ``target``: (make's output, the recorded calls)."""
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    tmp_path = tmp_path / target
    bin_ = tmp_path / "bin"
    bin_.mkdir(parents=True)
    log = tmp_path / "calls.log"
    python = bin_ / "python"
    # records each call; `-m venv DIR` makes DIR/bin/python a recorder too
    python.write_text(
        '#!/bin/sh\necho "$*" >> "$STUB_LOG"\n'
        'if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; fi\n'
    )
    nvidia = bin_ / "nvidia-smi"
    nvidia.write_text(f"#!/bin/sh\nexit {0 if gpu else 1}\n")
    for stub in (python, nvidia):
        stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_}{os.pathsep}{os.environ['PATH']}", "STUB_LOG": str(log)}
    done = subprocess.run(
        [
            "make",
            "-s",
            "-C",
            str(ROOT),
            f"PYTHON={python}",
            f"VENV={tmp_path / 'venv'}",
            f"LOWER={tmp_path / 'lower'}",
            f"REAL_DATA={tmp_path / 'data' / 'file.mat'}",
            f"TORCH_INDEX={torch_index}",
            "PYTEST_ARGS=",
            str(tmp_path / "venv" / ".installed") if target == "setup" else target,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, log.read_text()


def test_make_says_which_torch_build_it_installs_and_why(tmp_path):
    spec = f"torch=={_pin('TORCH_SPEC')}"
    out, calls = _make(tmp_path, "setup", gpu=False)
    assert "CPU build of" not in out, out  # no index was given: it cannot know
    assert f"No NVIDIA GPU and no TORCH_INDEX: installing {spec} from pip's configured" in out
    assert f"-m pip install --quiet {spec}\n" in calls
    assert "import torch; print('installed: torch'" in calls  # then names the build installed

    out, calls = _make(tmp_path / "cpu", "setup", gpu=False, torch_index=CPU_INDEX)
    assert f"No NVIDIA GPU: installing {spec} from TORCH_INDEX ({CPU_INDEX})" in out, out
    assert f"-m pip install --quiet {spec} {CPU_INDEX}\n" in calls

    out, calls = _make(tmp_path / "gpu", "setup", gpu=True, torch_index=CPU_INDEX)
    assert f"NVIDIA GPU found: installing {spec}" in out and CPU_INDEX not in calls, out


def test_make_test_lower_runs_test_fasts_tests_on_the_lower_torch(tmp_path):
    _, fast = _make(tmp_path, "test-fast", gpu=False)
    _, lower = _make(tmp_path, "test-lower", gpu=False)
    assert f"-m pip install --quiet torch=={_pin('TORCH_LOWER')}\n" in lower
    assert "-m pip install --quiet -e .[dev,docs]\n" in lower
    assert "tools/fetch_real_data.py" in lower  # the real recording its tests read

    def pytest_call(calls: str) -> str:
        (line,) = [c for c in calls.splitlines() if c.startswith("-m pytest")]
        return line

    assert pytest_call(lower) == pytest_call(fast)
    assert "-m not slow" in pytest_call(fast)
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "/.venv-lower/" in ignored
