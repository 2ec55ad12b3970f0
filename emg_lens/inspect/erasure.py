"""Erasing a concept from a token group (`erase_concept`, with `emg_lens.hooks.erasure`'s
eraser), and the report of a fresh probe before, after and under the placebo
(`ConceptErasure.report`); how to read it: docs/guide/what-an-edge-carries.md, "Erasing a
concept".

>>> from emg_lens import EncoderConfig
>>> from emg_lens.models import IsoNet
>>> model = IsoNet(EncoderConfig.preset("tiny", seed=0)).eval()
>>> X = torch.randn(80, 6, 8, generator=torch.Generator().manual_seed(0))
>>> y = torch.arange(80) % 2
>>> X[:, 3] += 2.0 * y[:, None]  # the concept is in ACC channel 0
>>> erasure = erase_concept(model, X, y, at="blocks.0.hook_resid_pre", tokens="acc", folds=4)
>>> row = erasure.report.iloc[0]
>>> int(row["rank"]), round(float(row["accuracy_before"]), 3), float(row["accuracy_after"])
(1, 0.975, 0.5)
>>> out = model.run_with_hooks(X, fwd_hooks=[(erasure.at, erasure)])  # the hook
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from emg_lens._hints import checked
from emg_lens.data.pooled import window_labels
from emg_lens.data.preprocess import SubjectData
from emg_lens.data.trials import trial_unit
from emg_lens.edges import EdgeSet
from emg_lens.errors import (
    ArgumentError,
    InputShapeError,
    LayoutError,
    check_int,
    check_seed,
    describe,
)
from emg_lens.hooks.erasure import (
    PlaceboEraser,
    TokenEraser,
    concept_codes,
    fit_token_eraser,
    group_vectors,
)
from emg_lens.inputs import check_deterministic, check_model
from emg_lens.inspect.probes import fold_windows, held_out_accuracy, token_activations
from emg_lens.inspect.tl_analysis import token_positions

REPORT_COLUMNS = [
    *("concept", "at", "group", "rank", "accuracy_before", "accuracy_after"),
    *("placebo_accuracy", "chance", "moved", "n", "trials", "folds", "fold_unit"),
]


@checked
@dataclass(frozen=True, eq=False)
class ConceptErasure:
    """A fitted eraser (`erase_concept`): called as a TransformerLens hook at ``at``
    (``model.run_with_hooks(x, fwd_hooks=erasure.fwd_hooks)``, ``model.hooks(...)``), with
    ``report``, one row of `REPORT_COLUMNS`: the eraser's ``rank``, the held-out probe accuracy
    before and after erasure and under the placebo, ``chance``, ``moved`` (the eraser's mean
    displacement over the mean norm of the centred group vectors), windows, trials and folds."""

    eraser: TokenEraser
    concept: str
    group: str
    report: pd.DataFrame

    def __call__(self, act: torch.Tensor, hook: Any = None) -> torch.Tensor:
        return self.eraser(act, hook)

    @property
    def at(self) -> str:
        return self.eraser.at

    @property
    def positions(self) -> tuple[int, ...]:
        return self.eraser.positions

    @property
    def rank(self) -> int:
        return self.eraser.rank

    @property
    def fwd_hooks(self) -> list[tuple[str, Any]]:
        """``[(at, self)]``, for ``run_with_hooks`` and ``hooks()``."""
        return [(self.at, self)]

    def placebo(self, seed: int = 0) -> PlaceboEraser:
        """The eraser's norm-matched random-subspace placebo (`TokenEraser.placebo`), a hook
        at the same point."""
        return self.eraser.placebo(seed)


def _windows(
    X: Any, labels: Any, trials: Any
) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, str, str]:
    """(windows, labels, trials, repetitions, trial unit, the concept's name)."""
    if isinstance(X, SubjectData):
        if trials is not None:
            raise ArgumentError("trials= is for windows in an array; a SubjectData has its own")
        if not len(X.y_train):
            raise ArgumentError(f"SubjectData {X.subject} has no training windows to fit on")
        name = "gesture" if labels is None else labels
        if isinstance(name, str):
            values = window_labels(X, name, "train")
        else:
            values, name = np.asarray(labels), "labels"
        unit = trial_unit(X.meta)
        return X.X_train, values, X.train_trials, np.asarray(X.rep_train), unit, name
    if labels is None or isinstance(labels, str):
        raise ArgumentError(
            f"windows given as an array need their concept's labels, one per window, got {labels!r}"
        )
    values = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    n = len(X)
    if trials is None:
        trials, unit = np.arange(n), "window"
    else:
        trials, unit = np.asarray(trials), "given"
    if values.shape != (n,) or trials.shape != (n,):
        raise InputShapeError(
            f"labels, trials must be one value per window ({n}), got {values.shape}, {trials.shape}"
        )
    return X, values, trials, np.zeros(n, np.int64), unit, "labels"


@checked
def erase_concept(
    model: Any,
    X: SubjectData | Any,
    labels: Any = None,
    *,
    at: str,
    tokens: str | EdgeSet | Any,
    trials: Any = None,
    folds: int = 5,
    seed: int = 0,
    batch_size: int = 256,
) -> ConceptErasure:
    """Fit a LEACE eraser of a concept at the token group ``tokens`` of hook point ``at`` on
    the windows ``X``, and report what it does on held-out trials.

    ``X`` is a `SubjectData` (its training windows; ``labels`` a concept name, default
    ``"gesture"``, or one value per training window) or windows ``[window, channel, time]``
    with ``labels`` one value per window (each its own trial unless ``trials`` says). ``folds``
    (`fold_windows`) and ``seed`` are the report's folds and the placebo's seed; the eraser
    returned is fitted on every window of ``X``. A bad ``seed``, ``folds`` below 2,
    ``batch_size`` below 1 and missing labels are `EmgLensError` s before anything runs.

    >>> erase_concept(None, np.zeros((4, 6, 8)), [0, 1, 0, 1], at="blocks.0.hook_resid_pre",
    ...               tokens="acc", seed=-3)
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: seed (the placebo's and the folds') must be an int in \
0..2147483647, got -3
    """
    seed = check_seed(seed, "seed (the placebo's and the folds')", ArgumentError)
    folds, batch_size = check_int(folds, "folds", 2), check_int(batch_size, "batch_size", 1)
    check_model(model)
    check_deterministic(model)
    windows, values, trial_ids, repetitions, unit, concept = _windows(X, labels, trials)
    codes, _ = concept_codes(values)
    if at not in model.hook_dict:
        raise LayoutError(
            f"no hook point {at!r} on {type(model).__name__}; e.g. 'blocks.0.hook_resid_pre'"
        )
    group, positions = token_positions(model, tokens)
    acts = token_activations(model, windows, [at], batch_size=batch_size)[at]
    if acts.ndim != 3 or acts.shape[1] != model.layout.n_tokens:
        raise InputShapeError(
            f"{at} gives {describe(acts)}: an eraser reads [window, position, d_model] of tokens"
        )
    found = fold_windows(codes, trial_ids, repetitions, folds, seed=seed, unit=unit,
                         what="concept value")  # fmt: skip
    flat = group_vectors(acts, positions)
    scores = np.zeros(3)
    for train, test in found.splits:
        fold = fit_token_eraser(acts[train], codes[train], at=at, positions=positions)
        for i, features in enumerate((flat, fold.erase(flat), fold.placebo(seed).erase(flat))):
            scores[i] += held_out_accuracy(features.numpy(), codes, train, test) / found.n
    eraser = fit_token_eraser(acts, codes, at=at, positions=positions)
    centred = flat - flat.mean(0)
    moved = (eraser.erase(flat) - flat).norm(dim=1).mean() / centred.norm(dim=1).mean()
    report = pd.DataFrame(
        [[concept, at, group, eraser.rank, *scores.tolist(),
          float(np.bincount(codes).max() / len(codes)), float(moved), len(codes), found.trials,
          found.n, found.unit]],
        columns=REPORT_COLUMNS,
    )  # fmt: skip
    return ConceptErasure(eraser, concept, group, report)
