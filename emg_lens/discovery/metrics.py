"""The metrics screening and discovery measure: the differentiable per-window scores of the
true class (`emg_lens.studies.metrics.window_metric`, which studies score with too), and the
rank agreement of estimated and exact effects."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats as sps

from emg_lens.errors import ArgumentError
from emg_lens.studies.metrics import PREDICTION_METRICS, window_metric

__all__ = ["METRICS", "check_metric", "spearman", "window_metric"]

METRICS = ("margin", "logprob")
"""The differentiable metrics screening and discovery linearise and measure."""


def check_metric(metric: Any) -> str:
    """``metric`` if screening can differentiate it, else `ArgumentError` naming the choices.

    >>> check_metric("accuracy")
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: metric = 'accuracy' is not differentiable, and screening linearises the metric; use 'margin' (the true class's logit margin: the window is correct when it is > 0) or 'logprob'. The accuracy effect is reported beside it.
    """  # noqa: E501
    if metric in METRICS:
        return metric
    if metric in PREDICTION_METRICS:
        raise ArgumentError(
            f"metric = {metric!r} is not differentiable, and screening linearises the metric; "
            "use 'margin' (the true class's logit margin: the window is correct when it is "
            "> 0) or 'logprob'. The accuracy effect is reported beside it."
        )
    raise ArgumentError(f"metric = {metric!r}; accepted: {list(METRICS)}")


def spearman(a: Any, b: Any) -> float:
    """Spearman's rho of two equally long sequences (NaN when either is constant).

    >>> spearman([1, 2, 3], [10, 30, 20])
    0.5
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(sps.spearmanr(a, b)[0])
