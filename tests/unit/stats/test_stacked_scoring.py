"""`score_stacked` scores every condition of a subject in one vectorised pass: each cell must be
the one the per-condition scoring gives, bit for bit, on the edge cases a study meets (tied
logits, a class without windows, one trial, every window its own trial, one window).

The reference below is the per-condition scoring as it was before the stack (one condition at a
time: its metrics, its trial votes with ``np.add.at``, its design effect on 1-d arrays), kept
here as the oracle."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emg_lens.errors import ArgumentError
from emg_lens.stats.metrics import score_logits, score_regression, score_stacked
from emg_lens.stats.units import design_effects


def _votes(pred, y, trials):
    numbers, trial = np.unique(trials, return_inverse=True)
    n_classes = int(max(pred.max(), y.max())) + 1
    votes = np.zeros((len(numbers), n_classes), np.int64)
    np.add.at(votes, (trial, pred), 1)
    labels = np.zeros((len(numbers), n_classes), np.int64)
    np.add.at(labels, (trial, y), 1)
    label = labels.argmax(1)
    true_votes = votes[np.arange(len(numbers)), label]
    others = votes.copy()
    others[np.arange(len(numbers)), label] = -1
    return true_votes > others.max(1), label, votes.sum(1), trial


def _design_effect(hits, trials):
    _, trial = np.unique(trials, return_inverse=True)
    k, n = int(trial.max()) + 1, len(hits)
    sizes = np.bincount(trial).astype(np.float64)
    means = np.bincount(trial, weights=hits) / sizes
    if k < 2 or n == k or hits.var() == 0:
        return 1.0
    between = float((sizes * (means - hits.mean()) ** 2).sum() / (k - 1))
    within = float(((hits - means[trial]) ** 2).sum() / (n - k))
    m0 = (n - (sizes**2).sum() / n) / (k - 1)
    icc = (between - within) / (between + (m0 - 1) * within) if between + within > 0 else 0.0
    icc = float(np.clip(icc, 0.0, 1.0))
    return round(1 + (n / k - 1) * icc, 12)


def _reference_cell(logits, reference, y, n_classes, trials):
    """One condition's cell, scored alone (the scoring before `score_stacked`)."""
    logits, reference = logits.double(), reference.double()
    labels = torch.as_tensor(y)
    pred_t = logits.argmax(-1)
    pred = pred_t.numpy()
    correct = np.bincount(y[pred == y], minlength=n_classes)
    total = np.bincount(y, minlength=n_classes)
    recall = np.divide(correct, total, out=np.zeros(n_classes), where=total > 0)
    predicted = np.bincount(pred, minlength=n_classes)
    precision = np.divide(correct, predicted, out=np.zeros(n_classes), where=predicted > 0)
    f1 = np.divide(
        2 * precision * recall,
        precision + recall,
        out=np.zeros(n_classes),
        where=(precision + recall) > 0,
    )
    true = logits.gather(1, labels[:, None])[:, 0]
    others = logits.masked_fill(F.one_hot(labels, n_classes).bool(), float("-inf"))
    log_p, log_q = reference.log_softmax(-1), logits.log_softmax(-1)
    values = {
        "accuracy": float((pred == y).mean()),
        "balanced_accuracy": float(recall[total > 0].mean()),
        "macro_f1": float(f1[total > 0].mean()),
        "margin": float((true - others.max(-1).values).mean()),
        "logprob": float(log_q.gather(1, labels[:, None])[:, 0].mean()),
        "kl": float((log_p.exp() * (log_p - log_q)).sum(-1).clamp_min(0.0).mean()),
        "flip_rate": float((pred_t != reference.argmax(-1)).double().mean()),
    }
    cell = {"values": values, "class_correct": correct.tolist(), "class_total": total.tolist()}
    won, label, windows, trial = _votes(pred, y, trials)
    hits = (pred == y).astype(np.float64)
    return {
        **cell,
        "trial_correct": np.bincount(label[won], minlength=n_classes).tolist(),
        "trial_total": np.bincount(label, minlength=n_classes).tolist(),
        "design_effect": _design_effect(hits, trials),
        "trial_class": label.tolist(),
        "trial_windows": windows.tolist(),
        "trial_hits": np.bincount(trial, weights=hits, minlength=len(label))
        .astype(np.int64)
        .tolist(),
    }


def _case(name: str, seed: int):
    """(logits [conditions, n, classes], reference, y, n_classes, trials) of one edge case."""
    rng = np.random.default_rng(seed)
    n_classes, n, conditions = 14, 97, 9  # 13 classes with windows: numpy sums 8 at a time
    if name == "one window":
        n = 1
    y = rng.integers(0, n_classes - 1, n)  # the last class has no window
    trials = y * 10 + rng.integers(0, 4, n)  # trials of one class each, uneven sizes
    if name == "one trial":
        y, trials = np.full(n, 2), np.zeros(n, int)
    elif name == "window trials":
        trials = np.arange(n)[::-1]
    if name == "ties":  # small integer logits: tied maxima, margins of 0, equal predictions
        logits = torch.as_tensor(rng.integers(-1, 2, (conditions, n, n_classes)), dtype=torch.float)
    else:
        logits = torch.as_tensor(rng.normal(0, 3, (conditions, n, n_classes)), dtype=torch.float)
    logits[1] = logits[0]  # a condition equal to the reference: kl and flip_rate exactly 0
    logits[2] = logits[0].mean(-1, keepdim=True)  # every class tied: argmax picks class 0
    if name != "one window":
        logits[3, :, :] = -5.0
        logits[3, torch.arange(n), torch.as_tensor(y)] = 5.0  # every window right
    return logits, logits[0], y, n_classes, trials


CASES = ["random", "ties", "one trial", "window trials", "one window"]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", CASES)
def test_stacked_scoring_is_the_per_condition_scoring_bit_for_bit(name, seed):
    logits, reference, y, n_classes, trials = _case(name, seed)
    cells = score_stacked(logits, reference, y, n_classes, trials)
    assert len(cells) == len(logits)
    for c, cell in enumerate(cells):
        expected = _reference_cell(logits[c], reference, y, n_classes, trials)
        assert cell == expected, (name, c)
        assert json.dumps(cell) == json.dumps(expected)  # the stored bytes too
        # one condition alone, through score_logits, is the same cell
        assert score_logits(logits[c], reference, y, n_classes, trials) == expected


def test_stacked_scoring_without_trials_holds_no_trial_fields():
    logits, reference, y, n_classes, trials = _case("random", 0)
    cells = score_stacked(logits, reference, y, n_classes)
    full = score_stacked(logits, reference, y, n_classes, trials)
    for cell, whole in zip(cells, full):
        assert set(cell) == {"values", "class_correct", "class_total"}
        assert cell == {k: whole[k] for k in cell}


def test_design_effects_of_a_stack_are_each_rows_own():
    rng = np.random.default_rng(3)
    trials = np.repeat(np.arange(12), rng.integers(1, 9, 12))
    hits = (rng.random((7, len(trials))) < 0.6).astype(float)
    hits[0] = 1.0  # constant: no correlation to estimate
    hits[1] = np.repeat(rng.random(12) < 0.5, np.bincount(trials))  # whole trials: deff = m
    got = [deff for _, deff in design_effects(hits, trials)]
    assert got == [_design_effect(row, trials) for row in hits]
    assert got[0] == 1.0


@pytest.mark.unchecked  # shapes the annotations refuse: what a user's run meets
@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: score_stacked(torch.zeros(2, 3), torch.zeros(2, 3), np.zeros(2, int), 3),
         r"logits must be \[condition, n, n_classes\] over the reference's .* got \(2, 3\)"),
        (lambda: score_regression(np.zeros(3), np.zeros(2)),
         r"pred and target must be two equal non-empty 1-d arrays, got \(3,\) and \(2,\)"),
        (lambda: score_regression(np.zeros(0), np.zeros(0)),
         r"two equal non-empty 1-d arrays"),
    ],
)  # fmt: skip
def test_scoring_shapes_are_named(call, match):
    with pytest.raises(ArgumentError, match=match):
        call()
