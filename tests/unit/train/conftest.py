"""Fixtures the training tests share."""

from __future__ import annotations

import pytest

from tests.unit.train.tinymyo_pretrained import pretrained_on_synthetic


@pytest.fixture(scope="module")
def pretrained(shared):
    """`pretrained_on_synthetic`: (checkpoint, windows, held-out masked loss before, history),
    trained by the first test of the run that asks."""
    return pretrained_on_synthetic(shared)
