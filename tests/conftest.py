"""Fixtures every test folder shares: torch seeded before each test, and what several tests
build the same way (trained models, converted checkpoints), built once per run for every test
and every pytest-xdist worker (`SharedOnDisk`, the ``shared`` fixture). The small models and
random windows the tests build are `tests.tiny`'s; each folder's own fixtures are in its
conftest.py."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


class SharedOnDisk:
    """What several tests build the same way (a trained model's checkpoint, converted
    checkpoints), built once per pytest run and shared by every test and every pytest-xdist
    worker: the first test that asks for ``key`` builds it under ``root``, every later one, in
    any worker, reads it. Tests only read what they are given. A key names everything the
    building depends on, so two recipes never share one."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def folder(self, key: str, build: Callable[[Path], object]) -> Path:
        """``root / key``, made by ``build(path)`` unless a complete one is there already (one
        that a build interrupted by an error is thrown away and built again)."""
        path, done = self.root / key, self.root / f"{key}.complete"
        with self.lock(key):
            if not done.is_file():
                shutil.rmtree(path, ignore_errors=True)
                build(path)
                done.touch()
        return path

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Held while ``key`` is built: another worker may be building it right now."""
        with (self.root / f"{key}.lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def shared(tmp_path_factory) -> SharedOnDisk:
    """The run's `SharedOnDisk`; under pytest-xdist the workers' temporary folders share a
    parent, which is where the shared things go."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    return SharedOnDisk(base / "shared")
