"""The metrics screening and discovery measure: the differentiable per-window scores of the
true class (`emg_lens.stats.metrics.window_metric`, which studies score with too), checked
once and handed down as a `Scorer`, the rank agreement of estimated and exact effects, and
MIB's areas over a faithfulness curve (`faithfulness_areas`: CPR and CMD)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats as sps

from emg_lens.errors import ArgumentError, checked
from emg_lens.stats.metrics import PREDICTION_METRICS, window_metric

METRICS = ("margin", "logprob")
"""The differentiable metrics screening and discovery linearise and measure."""


def check_metric(metric: Any) -> str:
    """``metric`` if screening can differentiate it, else `ArgumentError` naming the choices.

    >>> check_metric("accuracy")
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: metric = 'accuracy' is not differentiable (screening linearises the metric; the accuracy effect is reported beside it): use 'margin' (the true class's logit margin: correct when > 0) or 'logprob'
    """  # noqa: E501
    if metric in METRICS:
        return metric
    if metric in PREDICTION_METRICS:
        use = "use 'margin' (the true class's logit margin: correct when > 0) or 'logprob'"
        why = "screening linearises the metric; the accuracy effect is reported beside it"
        raise ArgumentError(f"metric = {metric!r} is not differentiable ({why}): {use}")
    raise ArgumentError(f"metric = {metric!r}; accepted: {list(METRICS)}")


@dataclass(frozen=True)
class Scorer:
    """The metrics ``names`` a screen or an exact pass scores logits by, checked once
    (`check_metric`) where it builds them and handed down: each one's `window_metric`.

    >>> values = Scorer(("logprob", "margin"))(torch.tensor([[2.0, 0.0]]), torch.tensor([0]))
    >>> list(values), values["margin"]
    (['logprob', 'margin'], tensor([2.]))
    """

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        for name in self.names:
            check_metric(name)

    def __call__(self, logits: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: window_metric(logits, y, name) for name in self.names}

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)


def spearman(a: Any, b: Any) -> float:
    """Spearman's rho of two equally long sequences (NaN when either is constant).

    >>> spearman([1, 2, 3], [10, 30, 20])
    0.5
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(sps.spearmanr(a, b)[0])


def spearman_p(rho: float, n: int) -> float:
    """The two-sided p of Spearman's ``rho`` over ``n`` points against no association: exact
    up to 8 points (the share of the ``n!`` orderings of ranks whose ρ is as far from 0), above
    Student's t on ``n - 2`` degrees of freedom (scipy's); NaN for a NaN ``rho`` or under 2
    points. Ties are not accounted for (the exact p is then approximate).

    >>> round(spearman_p(-0.8, 4), 2), spearman_p(1.0, 2), round(spearman_p(0.5, 30), 4)
    (0.33, 1.0, 0.0049)
    """
    if not np.isfinite(rho) or n < 2:
        return float("nan")
    if n <= 8:
        ranks = np.array(list(itertools.permutations(range(n))), float)
        null = 1 - 6 * ((ranks - np.arange(n)) ** 2).sum(1) / (n * (n * n - 1))
        return float((np.abs(null) >= abs(rho) - 1e-9).mean())
    if abs(rho) >= 1:
        return 0.0
    t = abs(rho) * np.sqrt((n - 2) / (1 - rho * rho))
    return float(2 * sps.t.sf(t, n - 2))


@checked
def faithfulness_areas(kept_share: Any, faithfulness: Any) -> tuple[float, float]:
    """MIB's CPR and CMD (Mueller et al., "MIB: A Mechanistic Interpretability Benchmark",
    ICML 2025, arXiv 2504.13151, circuit localization track) of a faithfulness curve given
    as points: each circuit's size ``kept_share`` (the share of the edges it keeps, in
    [0, 1]) and its normalised ``faithfulness`` ``(m(C) - m(empty)) / (m(full) - m(empty))``.

    CPR is the area under the curve, CMD the area between it and 1 (``integral of |1 - f|``),
    as MIB's ``evaluate_area_under_curve`` computes them (``log_scale=False``), over the sizes
    the measured circuits cover (how that differs from MIB's scores: docs/guide/discovery.md).
    Non-finite points, sizes outside [0, 1] or fewer than two points are an `ArgumentError`.

    >>> cpr, cmd = faithfulness_areas([0.0, 0.5, 1.0], [0.0, 1.1, 1.0])  # two trapezoids
    >>> round(cpr, 6), round(cmd, 6)  # (0 + 1.1) / 4 + (1.1 + 1) / 4, (1 + 0.1) / 4 + 0.1 / 4
    (0.8, 0.3)
    """
    x, f = np.asarray(kept_share, float), np.asarray(faithfulness, float)
    if x.shape != f.shape or x.ndim != 1 or len(x) < 2:
        got = f"got sizes of shape {x.shape} and faithfulness of shape {f.shape}"
        raise ArgumentError(
            f"a faithfulness curve needs two or more (size, faithfulness) points; {got}"
        )
    if not (np.isfinite(x).all() and np.isfinite(f).all()):
        raise ArgumentError("a faithfulness curve's sizes and faithfulness must be finite")
    if x.min() < 0 or x.max() > 1:
        got = f"got {x.min():.4g} to {x.max():.4g}"
        raise ArgumentError(f"circuit sizes are shares of the edges, in [0, 1]; {got}")
    order = np.argsort(x, kind="stable")
    x, f = x[order], f[order]
    width = np.diff(x)
    cpr = float(np.sum(width * (f[1:] + f[:-1]) / 2))
    gap = np.abs(1.0 - f)
    cmd = float(np.sum(width * (gap[1:] + gap[:-1]) / 2))
    return cpr, cmd
