"""Fixtures the data tests share: an HD-sEMG file written once per module, and a count of the
subjects preprocessed."""

from __future__ import annotations

import pytest

import emg_lens.data.preprocess as preprocess
from emg_lens.data.synthetic.hdsemg import SyntheticHDsEMGSpec, write_synthetic_hdsemg


@pytest.fixture(scope="module")
def hdsemg_root(tmp_path_factory):
    """A folder holding one synthetic HD-sEMG subject (``s1.mat``: 2 gestures)."""
    root = tmp_path_factory.mktemp("hdsemg")
    spec = SyntheticHDsEMGSpec(n_subjects=1, n_gestures=2, movement_seconds=0.3, rest_seconds=0.1)
    write_synthetic_hdsemg(spec, root)
    return root


@pytest.fixture
def filter_calls(monkeypatch):
    """Counts the calls of filter_signals (each one means a subject was preprocessed)."""
    calls = []
    real = preprocess.filter_signals

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(preprocess, "filter_signals", counting)
    return calls
