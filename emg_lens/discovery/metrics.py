"""The metrics screening and discovery measure: differentiable per-window scores of the
true class, and the rank agreement of estimated and exact effects."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from scipy import stats as sps

from emg_lens.errors import ArgumentError

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
    if metric in ("accuracy", "balanced_accuracy", "macro_f1"):
        raise ArgumentError(
            f"metric = {metric!r} is not differentiable, and screening linearises the metric; "
            "use 'margin' (the true class's logit margin: the window is correct when it is "
            "> 0) or 'logprob'. The accuracy effect is reported beside it."
        )
    raise ArgumentError(f"metric = {metric!r}; accepted: {list(METRICS)}")


def window_metric(
    logits: Float[torch.Tensor, "batch n_classes"], y: Int[torch.Tensor, " batch"], metric: str
) -> Float[torch.Tensor, " batch"]:
    """The metric of each window: ``"margin"`` (true-class logit minus the largest other) or
    ``"logprob"`` (log-softmax of the true class).

    >>> logits = torch.tensor([[2.0, 0.5, 1.0], [0.0, 3.0, 1.0]])
    >>> window_metric(logits, torch.tensor([0, 2]), "margin")
    tensor([ 1., -2.])
    """
    if metric == "logprob":
        return logits.log_softmax(-1).gather(1, y[:, None])[:, 0]
    true = logits.gather(1, y[:, None])[:, 0]
    others = logits.masked_fill(F.one_hot(y, logits.shape[-1]).bool(), float("-inf"))
    return true - others.max(-1).values


def spearman(a: Any, b: Any) -> float:
    """Spearman's rho of two equally long sequences (NaN when either is constant).

    >>> spearman([1, 2, 3], [10, 30, 20])
    0.5
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(sps.spearmanr(a, b)[0])
