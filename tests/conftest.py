"""Fixtures every test folder shares: torch seeded before each test, and what several tests
build the same way (trained models, converted checkpoints), built once per run for every test
and every pytest-xdist worker (`SharedOnDisk`, the ``shared`` fixture). The small models and
random windows the tests build are `tests.tiny`'s; each folder's own fixtures are in its
conftest.py."""

from __future__ import annotations

import os

import pytest
import torch

from emg_lens.export import _shapes_unchecked as shapes_unchecked
from tests import slow_marker
from tests.shared_on_disk import SharedOnDisk
from tests.slow_marker import (  # noqa: F401 (hooks: the slow marker kept true)
    pytest_runtest_logreport,
    pytest_sessionfinish,
    pytest_terminal_summary,
)


def pytest_configure(config: pytest.Config) -> None:
    slow_marker.configure(config)


@pytest.fixture(autouse=True)
def _seed():
    """torch's generator at seed 0 before each test. Where no accelerator has started (a CPU
    run), the CPU's generator alone: `torch.manual_seed` also queues the seed for CUDA, MTIA and
    XPU, recording the caller's stack for each (1.4 ms a call at a test's depth, 8 s of the
    fast tests' run); once CUDA has started, it is seeded too."""
    if torch.cuda.is_initialized():
        torch.manual_seed(0)
    else:
        torch.random.default_generator.manual_seed(0)


@pytest.fixture(autouse=True)
def _unchecked(request):
    """The runtime checks of emg_lens's exported names (on in the suite: tests/typecheck.py,
    jaxtyping's switch turns them off at each call) off in a
    test marked ``unchecked``: one that passes a value its annotation refuses on purpose, to see
    emg_lens's own named error, which is what a user meets (the checks are the suite's). (The
    ONNX export turns them off itself while torch.onnx traces: `emg_lens.export`.)"""
    if request.node.get_closest_marker("unchecked") is None:
        yield
        return
    with shapes_unchecked():
        yield


@pytest.fixture(scope="session")
def shared(tmp_path_factory) -> SharedOnDisk:
    """The run's `SharedOnDisk`; under pytest-xdist the workers' temporary folders share a
    parent, which is where the shared things go."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    return SharedOnDisk(base / "shared")
