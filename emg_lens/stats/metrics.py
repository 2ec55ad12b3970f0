"""Scoring a model's outputs: the metrics a study may name (`METRICS`), per window and per
subject. The prediction metrics (`PREDICTION_METRICS`) count argmax decisions; the continuous
ones read the logits, so a cut that moves them without flipping a decision still shows:
``margin`` (the true class's logit minus the largest other), ``logprob`` (the true class's
log-softmax, nats), ``kl`` (``KL(p || q)`` from the unmasked model's distribution ``p``, the
circuit-discovery convention) and ``flip_rate``. A subject's value is the mean over its test
windows; a regressor is scored by `REGRESSION_METRICS` (``mse``, ``r2``, changes absolute).
Which metrics report Δ% (`RELATIVE_METRICS`), and why: docs/DESIGN.md §5, "Scores".
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int

from emg_lens.errors import ArgumentError, check_choice, checked
from emg_lens.stats.chance import cell_fields, stacked_cell_fields
from emg_lens.stats.units import check_classes, stacked_trial_counts

PREDICTION_METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
CONTINUOUS_METRICS = ("margin", "logprob", "kl", "flip_rate")
METRICS = PREDICTION_METRICS + CONTINUOUS_METRICS
REGRESSION_METRICS = ("mse", "r2")
RELATIVE_METRICS = PREDICTION_METRICS  # Δ in percent of the baseline; the others absolute
UNITS = {
    "accuracy": "share of windows",
    "balanced_accuracy": "mean per-class recall",
    "macro_f1": "mean per-class F1",
    "margin": "logits",
    "logprob": "nats",
    "kl": "nats",
    "flip_rate": "share of windows",
    "mse": "target units squared",
    "r2": "share of the targets' variance",
}


def delta_name(metric: str) -> str:
    """How a study reports the change of ``metric``: ``"Δ%"`` (relative to the baseline) or
    ``"Δ"`` (masked − baseline, in the metric's `UNITS`).

    >>> delta_name("accuracy"), delta_name("margin")
    ('Δ%', 'Δ')
    """
    check_choice(metric, METRICS, "metric")
    return "Δ%" if metric in RELATIVE_METRICS else "Δ"


def delta_column(metric: str) -> str:
    """The summary column holding the change of ``metric`` as a study reports it: ``delta_pct``
    or ``delta`` (`delta_name`).

    >>> delta_column("macro_f1"), delta_column("kl")
    ('delta_pct', 'delta')
    """
    return "delta_pct" if delta_name(metric) == "Δ%" else "delta"


@checked
def window_metric(
    logits: Float[torch.Tensor, "*stack batch n_classes"],
    y: Int[torch.Tensor, " batch"],
    metric: str,
) -> Float[torch.Tensor, "*stack batch"]:
    """The metric of each window: ``"margin"`` (true-class logit minus the largest other) or
    ``"logprob"`` (log-softmax of the true class); leading axes of ``logits`` (several
    conditions' logits of the same windows) are kept.

    >>> logits = torch.tensor([[2.0, 0.5, 1.0], [0.0, 3.0, 1.0]])
    >>> window_metric(logits, torch.tensor([0, 2]), "margin")
    tensor([ 1., -2.])
    """
    check_choice(metric, ("margin", "logprob"), "metric")
    if metric == "logprob":
        return _true_class(logits.log_softmax(-1), y)
    others = logits.masked_fill(F.one_hot(y, logits.shape[-1]).bool(), float("-inf"))
    return _true_class(logits, y) - others.max(-1).values


def _true_class(values: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each window's value of its true class: ``values[..., i, y[i]]``."""
    return values.gather(-1, y[:, None].expand(*values.shape[:-1], 1))[..., 0]


def window_kl(
    logits: Float[torch.Tensor, "*stack batch n_classes"],
    reference: Float[torch.Tensor, "batch n_classes"],
) -> Float[torch.Tensor, "*stack batch"]:
    """``KL(p || q)`` per window in nats, ``p = softmax(reference)`` (the unmasked model),
    ``q = softmax(logits)`` (with leading axes: each of several conditions' logits); 0
    exactly where the two logits are equal, never below 0 (rounding clamped).

    >>> p = torch.tensor([[0.0, 0.0]])
    >>> float(window_kl(p, p)), round(float(window_kl(torch.tensor([[0.0, 2.0]]), p)), 4)
    (0.0, 0.4338)
    """
    return _kl(logits.log_softmax(-1), reference.log_softmax(-1))


def _kl(log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """`window_kl` of the log-probabilities ``log_q`` and the reference's ``log_p``."""
    return (log_p.exp() * (log_p - log_q)).sum(-1).clamp_min(0.0)


def score_predictions(
    pred: Int[np.ndarray, " n"],
    y: Int[np.ndarray, " n"],
    n_classes: int,
    metric: str,
    trials: Int[np.ndarray, " n"] | None = None,
) -> dict[str, Any]:
    """A stored cell of a training study: ``value`` (``metric``, one of `PREDICTION_METRICS`,
    of the predicted classes ``pred`` against the labels ``y``), and per-class
    ``class_correct`` and ``class_total`` counts (JSON-able lists); with each window's trial
    (``trials``, `SubjectData.test_trials`), also the trial counts the chance check tests
    (`emg_lens.stats.chance.cell_fields`).

    >>> cell = score_predictions(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]), 3, "accuracy")
    >>> cell["value"], cell["class_correct"], cell["class_total"]
    (0.75, [1, 2, 0], [2, 2, 0])
    >>> round(score_predictions(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]), 3,
    ...                         "macro_f1")["value"], 3)
    0.733
    """
    check_choice(metric, PREDICTION_METRICS, "metric")
    values, correct, total = _prediction_values(np.asarray(pred)[None], y, n_classes)
    cell = {"value": values[0][metric], "class_correct": correct[0], "class_total": total}
    return cell if trials is None else {**cell, **cell_fields(pred, y, trials, n_classes)}


def _prediction_values(
    pred: Int[np.ndarray, "stack n"], y: Int[np.ndarray, " n"], n_classes: int
) -> tuple[list[dict[str, float]], list[list[int]], list[int]]:
    """Every prediction metric of each row of ``pred``, its per-class correct counts, and the
    per-class totals (shared). Each mean runs along a row, as over the row alone."""
    pred, y = np.asarray(pred), np.asarray(y)
    check_classes(y, n_classes, "y")
    check_classes(pred, n_classes, "the predicted classes")
    rows = np.arange(len(pred))[:, None] * n_classes
    hit = pred == y
    correct = np.bincount((rows + y)[hit], minlength=len(pred) * n_classes)
    correct = correct.reshape(len(pred), n_classes)
    total = np.bincount(y, minlength=n_classes)
    predicted = np.bincount((rows + pred).ravel(), minlength=len(pred) * n_classes)
    predicted = predicted.reshape(len(pred), n_classes)
    zeros = np.zeros(correct.shape)
    recall = np.divide(correct, total, out=zeros.copy(), where=total > 0)
    precision = np.divide(correct, predicted, out=zeros.copy(), where=predicted > 0)
    f1 = np.divide(
        2 * precision * recall, precision + recall, out=zeros, where=(precision + recall) > 0
    )
    # each mean along a C-ordered row: numpy sums a row of a strided (column-selected) array
    # in another order, which changes the last bits
    present = total > 0
    accuracy, balanced, macro = (
        np.ascontiguousarray(a).mean(1) for a in (hit, recall[:, present], f1[:, present])
    )
    values = [
        {"accuracy": float(a), "balanced_accuracy": float(b), "macro_f1": float(f)}
        for a, b, f in zip(accuracy, balanced, macro)
    ]
    return values, correct.tolist(), total.tolist()


def score_logits(
    logits: Float[torch.Tensor, "n n_classes"],
    reference: Float[torch.Tensor, "n n_classes"],
    y: Int[np.ndarray, " n"],
    n_classes: int,
    trials: Int[np.ndarray, " n"] | None = None,
) -> dict[str, Any]:
    """A stored cell of an ablation study: ``values`` (every metric of `METRICS`, by name,
    each the mean over the windows) of a condition's ``logits`` against the labels ``y`` and
    the unmasked model's logits on the same windows (``reference``, for ``kl`` and
    ``flip_rate``), and per-class ``class_correct`` and ``class_total`` counts; with each
    window's trial (``trials``), also the trial counts (`emg_lens.stats.units.trial_counts`).
    Computed in float64 on the CPU from the logits as given.

    >>> ref = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    >>> cell = score_logits(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), ref, np.array([0, 1]), 2)
    >>> {k: round(v, 3) for k, v in cell["values"].items()}  # doctest: +NORMALIZE_WHITESPACE
    {'accuracy': 0.5, 'balanced_accuracy': 0.5, 'macro_f1': 0.333, 'margin': 0.0,
     'logprob': -0.813, 'kl': 0.265, 'flip_rate': 0.5}
    """
    return score_stacked(torch.as_tensor(logits)[None], reference, y, n_classes, trials)[0]


def score_stacked(
    logits: Float[torch.Tensor, "condition n n_classes"],
    reference: Float[torch.Tensor, "n n_classes"],
    y: Int[np.ndarray, " n"],
    n_classes: int,
    trials: Int[np.ndarray, " n"] | None = None,
) -> list[dict[str, Any]]:
    """`score_logits` of each condition's logits ``logits[c]`` against one ``reference``, in
    one vectorised pass, each cell bit for bit the one `score_logits` gives that condition
    alone (each mean is taken along one condition's row: a float sum's order decides its
    last bits).

    >>> ref = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    >>> cells = score_stacked(torch.stack([ref, ref.flip(-1)]), ref, np.array([0, 1]), 2)
    >>> [(c["values"]["accuracy"], c["values"]["flip_rate"]) for c in cells]
    [(1.0, 0.0), (0.0, 1.0)]
    """
    logits = torch.as_tensor(logits).detach().cpu().double()
    reference = torch.as_tensor(reference).detach().cpu().double()
    if logits.ndim != 3 or logits.shape[1:] != reference.shape:
        shapes = f"the reference's [n, n_classes] {tuple(reference.shape)}"
        raise ArgumentError(
            f"logits must be [condition, n, n_classes] over {shapes}, got {tuple(logits.shape)}"
        )
    labels = torch.as_tensor(np.asarray(y), dtype=torch.long)
    pred = logits.argmax(-1)
    flips = pred != reference.argmax(-1)
    log_q = logits.log_softmax(-1)  # computed once for logprob and kl
    per_window = {
        "margin": window_metric(logits, labels, "margin"),
        "logprob": _true_class(log_q, labels),
        "kl": _kl(log_q, reference.log_softmax(-1)),
        "flip_rate": flips.double(),
    }
    predictions, y = pred.numpy(), labels.numpy()
    values, correct, total = _prediction_values(predictions, y, n_classes)
    cells = []
    for c, row in enumerate(values):
        row.update({name: float(v[c].mean()) for name, v in per_window.items()})
        cells.append({"values": row, "class_correct": correct[c], "class_total": total})
    if trials is None:
        return cells
    fields = stacked_cell_fields(predictions, y, trials, n_classes)
    counts = stacked_trial_counts(predictions, y, trials)
    return [{**cell, **f, **t} for cell, f, t in zip(cells, fields, counts)]


def score_regression(
    pred: Float[np.ndarray, " n"], target: Float[np.ndarray, " n"]
) -> dict[str, float]:
    """Every metric of `REGRESSION_METRICS` of predictions ``pred`` against ``target`` (in
    float64); non-finite predictions, or targets without variance (no R²), are refused.

    >>> score_regression(np.array([1.0, 2.0, 4.0]), np.array([1.0, 3.0, 5.0]))
    {'mse': 0.6666666666666666, 'r2': 0.75}
    """
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    if pred.shape != target.shape or pred.ndim != 1 or not len(pred):
        got = f"got {pred.shape} and {target.shape}"
        raise ArgumentError(f"pred and target must be two equal non-empty 1-d arrays, {got}")
    if not np.isfinite(pred).all() or not np.isfinite(target).all():
        raise ArgumentError("pred and target must be finite (a NaN or Inf is no score)")
    variance = float(target.var())
    if variance == 0:
        raise ArgumentError("the targets do not vary: R² is undefined on them")
    mse = float(np.mean((pred - target) ** 2))
    return {"mse": mse, "r2": 1.0 - mse / variance}
