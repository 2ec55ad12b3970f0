"""Fixtures every test folder shares: torch seeded before each test, and what several tests
build the same way (trained models, converted checkpoints), built once per run for every test
and every pytest-xdist worker (`SharedOnDisk`, the ``shared`` fixture). The small models and
random windows the tests build are `tests.tiny`'s; each folder's own fixtures are in its
conftest.py."""

from __future__ import annotations

import os

import pytest
import torch

from tests import slow_marker
from tests.shared_on_disk import SharedOnDisk
from tests.slow_marker import (  # noqa: F401 (hooks: the slow marker kept true)
    pytest_runtest_logreport,
    pytest_sessionfinish,
    pytest_terminal_summary,
)


def pytest_configure(config: pytest.Config) -> None:
    slow_marker.configure(config)
    _share_the_cores()


def _share_the_cores() -> None:
    """Under pytest-xdist each worker's torch (and the processes it starts: CLI runs, torchrun,
    notebooks' kernels) gets an equal share of the cores, one thread on a 2-core machine with
    two workers, instead of every worker starting a thread per core: oversubscribed, torch's
    threads wait on each other. A thread count already set (``OMP_NUM_THREADS``) is kept. The
    tests hold at any thread count (those that train say which counts were measured)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers < 2 or "OMP_NUM_THREADS" in os.environ:
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def shared(tmp_path_factory) -> SharedOnDisk:
    """The run's `SharedOnDisk`; under pytest-xdist the workers' temporary folders share a
    parent, which is where the shared things go."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    return SharedOnDisk(base / "shared")
