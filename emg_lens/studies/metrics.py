"""Scoring a model's predictions: the metrics a study may name (`METRICS`) and
`score_predictions`, which turns predicted and true classes into a stored cell. Ablation and
training studies score with it alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from jaxtyping import Int

from emg_lens.errors import ArgumentError

__all__ = ["METRICS", "score_predictions"]

METRICS = ("accuracy", "balanced_accuracy", "macro_f1")


def score_predictions(
    pred: Int[np.ndarray, " n"], y: Int[np.ndarray, " n"], n_classes: int, metric: str
) -> dict[str, Any]:
    """A stored cell: ``value`` (``metric`` of the predicted classes ``pred`` against the labels
    ``y``), and per-class ``class_correct`` and ``class_total`` counts (JSON-able lists).

    >>> cell = score_predictions(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]), 3, "accuracy")
    >>> cell["value"], cell["class_correct"], cell["class_total"]
    (0.75, [1, 2, 0], [2, 2, 0])
    >>> round(score_predictions(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]), 3,
    ...                         "macro_f1")["value"], 3)
    0.733
    """
    if metric not in METRICS:
        raise ArgumentError(f"metric = {metric!r}; accepted: {list(METRICS)}")
    correct = np.bincount(y[pred == y], minlength=n_classes)
    total = np.bincount(y, minlength=n_classes)
    recall = np.divide(correct, total, out=np.zeros(n_classes), where=total > 0)
    if metric == "accuracy":
        value = float((pred == y).mean())
    elif metric == "balanced_accuracy":
        value = float(recall[total > 0].mean())
    else:  # macro_f1
        predicted = np.bincount(pred, minlength=n_classes)
        precision = np.divide(correct, predicted, out=np.zeros(n_classes), where=predicted > 0)
        f1 = np.divide(
            2 * precision * recall,
            precision + recall,
            out=np.zeros(n_classes),
            where=(precision + recall) > 0,
        )
        value = float(f1[total > 0].mean())
    return {"value": value, "class_correct": correct.tolist(), "class_total": total.tolist()}
