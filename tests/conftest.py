"""Shared fixtures: small seeded models in the tiny preset, and trained models shared by every
test (and every pytest-xdist worker) of a run."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from emg_lens import EncoderConfig
from emg_lens.checkpoints import load_checkpoint, save_checkpoint
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


class TrainedModels:
    """Models that several tests train the same way, trained once per pytest run: the first
    test that asks for ``key`` trains it and saves a checkpoint under ``root``; every later
    test, in any xdist worker, loads that checkpoint (a fresh copy each time, so one test's
    hooks or in-place changes never reach another). A key names everything the training
    depends on, so two recipes never share one."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def get(self, key: str, train: Callable[[], torch.nn.Module]) -> torch.nn.Module:
        path = self.root / key
        with self._lock(key):  # another worker may be training the same key right now
            if not (path / "model.safetensors").is_file():
                save_checkpoint(train(), path)
        return load_checkpoint(path)

    @contextlib.contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        with (self.root / f"{key}.lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory) -> TrainedModels:
    """The run's `TrainedModels`; under pytest-xdist the workers' temporary folders share a
    parent, which is where the models go."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    return TrainedModels(base / "trained_models")
