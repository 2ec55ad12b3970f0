"""The summary's per-condition mean and std, computed in numpy, are pandas' own bit for bit
(what the summary computed with ``DataFrame.mean``/``std`` before): NaN where a subject has
no value, more subjects than numpy sums at once (8), one subject (no std)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emg_lens.studies.ablation.summary import _column_mean_std


@pytest.mark.parametrize("subjects", [1, 2, 7, 9, 23, 64])
def test_column_mean_std_is_pandas_bit_for_bit(subjects):
    rng = np.random.default_rng(subjects)
    values = rng.random((31, subjects)) * 10.0 ** rng.integers(-3, 3, (31, subjects))
    values[rng.random(values.shape) < 0.1] = np.nan
    values[0] = np.nan  # a condition no subject has
    mean, std, n = _column_mean_std(values)
    by_condition = pd.DataFrame(values.T)  # a column per condition, as the summary had it
    np.testing.assert_array_equal(mean, by_condition.mean().to_numpy())
    np.testing.assert_array_equal(std, by_condition.std(ddof=1).to_numpy())
    np.testing.assert_array_equal(n, by_condition.notna().sum().to_numpy())
