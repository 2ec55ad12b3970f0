"""The tiny model and windows the discovery tests share."""

from __future__ import annotations

import pytest
import torch

from tests.tiny import tiny_isonet


@pytest.fixture(scope="module")
def model():
    """A tiny IsoNet with large weights, so attention is far from uniform."""
    return tiny_isonet(3, init_range=0.6)


@pytest.fixture(scope="module")
def data(model):
    X = model.example_input(48)
    with torch.no_grad():
        y = model(X).argmax(-1)
    y[::4] = (y[::4] + 1) % model.cfg.n_classes  # some windows wrong: margins of both signs
    return X, y
