"""Shared fixtures: small seeded models in the tiny preset."""

from __future__ import annotations

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
