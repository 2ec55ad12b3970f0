"""The small scikit-learn fits run on one BLAS thread (`emg_lens._blas`): OpenBLAS's threads
beside torch's made the probes of notebook 08 23 times slower on two cores (173 s against
7.5 s) and a feature baseline ten times. Each fit is watched from inside, with the BLAS allowed
two threads around it, as a user's process allows every core."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_info, threadpool_limits

from emg_lens import EncoderConfig
from emg_lens.inspect import probe_tokens
from emg_lens.models import IsoNet
from emg_lens.train.baseline import fit_baseline


def _blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


@pytest.fixture
def seen(monkeypatch):
    """The BLAS thread counts each logistic regression's fit ran with, around it two."""
    counts: list[set[int]] = []
    fit = LogisticRegression.fit

    def watched(self, *args, **kwargs):
        counts.append(_blas_threads())
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(LogisticRegression, "fit", watched)
    if not _blas_threads():
        pytest.skip("no BLAS library that threadpoolctl can see")
    with threadpool_limits(limits=2, user_api="blas"):
        assert _blas_threads() == {2}
        yield counts
        assert _blas_threads() == {2}  # restored after each fit


def test_the_probes_fit_on_one_blas_thread(seen):
    model = IsoNet(EncoderConfig.preset("tiny", seed=0)).eval()
    X = torch.randn(40, 6, 8, generator=torch.Generator().manual_seed(0))
    probe_tokens(model, (X, torch.arange(40) % 2), layers=[0], groups=["emg"])
    assert seen and all(counts == {1} for counts in seen)


def test_the_feature_baseline_fits_on_one_blas_thread(seen):
    fit_baseline(np.arange(8.0)[:, None], np.arange(8) % 2)
    assert seen == [{1}]
