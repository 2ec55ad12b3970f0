"""Shared fixtures: small seeded models in the tiny preset, and what several tests build the
same way (trained models, converted checkpoints), built once per run for every test and every
pytest-xdist worker (`SharedOnDisk`)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from emg_lens import EncoderConfig
from emg_lens.models import IsoNet


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def tiny_cfg() -> EncoderConfig:
    return EncoderConfig.preset("tiny", seed=0)


@pytest.fixture
def tiny_isonet(tiny_cfg) -> IsoNet:
    model = IsoNet(tiny_cfg)
    perturb_biases(model)
    return model.eval()


def perturb_biases(model: torch.nn.Module) -> None:
    """Give biases and LayerNorm weights non-trivial values, so tests that compare two
    computations cannot pass just because a bias or scale is zero or one."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf.startswith("b") or leaf == "w":
                param.add_(0.1 * torch.randn(param.shape, generator=gen, dtype=param.dtype))


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
