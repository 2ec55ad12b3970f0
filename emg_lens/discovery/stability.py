"""How stable a discovered circuit is: the agreement (Jaccard index) of its kept candidates with
the circuits found on bootstrap resamples of the held-out trials, and between subjects.
Resamples draw whole trials (windows of one trial share its noise, and drawing them one by one
would call a circuit stable too easily). A circuit that changes when the trials are resampled
says more about the windows than the model (arXiv 2510.00845); one that differs between
subjects is a per-subject finding.

>>> jaccard({"a", "b"}, {"b", "c"})
0.3333333333333333
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from emg_lens.data.preprocess import SubjectData
from emg_lens.data.trials import trial_unit
from emg_lens.discovery.screen import screen
from emg_lens.discovery.search import Discovery, discover
from emg_lens.errors import ArgumentError, check_int, checked, warn_caller


@checked
def jaccard(a: set, b: set) -> float:
    """``|a & b| / |a | b|``; 1 when both are empty (two empty circuits agree)."""
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def _kept(found: Discovery) -> set[str]:
    return {str(c.edge_set) for c in found.kept}


@checked
def bootstrap_stability(
    found: Discovery, *, resamples: int, verify_top: int = 10, seed: int = 0
) -> list[float]:
    """The Jaccard index between ``found``'s circuit and the circuit the same procedure (screen,
    verify ``verify_top`` and discover with everything as ``found`` was found) finds on each of
    ``resamples`` seeded bootstrap resamples of the held-out trials (windows without trials are
    each their own, and a warning says so); NaN for a resample on which cutting every candidate
    does not lower the metric (no circuit).

    >>> import warnings
    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0, init_range=0.5)).eval()
    >>> X = model.example_input(32)  # (X, y): windows without trials
    >>> found = discover(model, (X, model(X).argmax(-1)), tau=0.1)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     values = bootstrap_stability(found, resamples=2, verify_top=3)
    >>> str(caught[0].message)[:50]
    'the windows carry no trials (each is its own: (X, '
    >>> len(values), all(0 <= v <= 1 for v in values)
    (2, True)
    """
    resamples = check_int(resamples, "resamples")
    screened = found.screen
    subject, rng = screened.data, np.random.default_rng(seed)
    if resamples and trial_unit(subject.meta) == "window":
        warn_caller(
            "the windows carry no trials (each is its own: (X, y) data, or trial_unit "
            "'window'), so the bootstrap resamples single windows: overlapping windows of one "
            "recorded trial would make the circuit look more stable than it is. Give a "
            "SubjectData with repetitions, or record the trials (emg_lens.data.trials."
            "record_trials)"
        )
    out = []
    for _ in range(resamples):
        resampled = resample_trials(subject, rng)
        again = screen(
            screened.model,
            resampled,
            family=screened.family,
            metric=screened.metric,
            return_type=screened.return_type,
            base=screened.base,
            estimator=screened.estimator,
            ig_steps=screened.ig_steps,
            exact_last_layer=screened.exact_last_layer,
            exact_penultimate=screened.exact_penultimate,
        ).verify(**{**screened.verified_with, "top": min(verify_top, len(screened.family))})
        try:
            circuit = discover(
                screened.model,
                resampled,
                tau=found.tau,
                screened=again,
                method=found.method,
                keep_accuracy=found.keep_accuracy,
            )
        except ArgumentError:  # its arguments passed once: cutting everything costs nothing here
            out.append(float("nan"))
            continue
        out.append(jaccard(_kept(found), _kept(circuit)))
    return out


def resample_trials(subject: SubjectData, rng: np.random.Generator) -> SubjectData:
    """``subject`` with its held-out windows replaced by a bootstrap resample of its held-out
    trials: as many trials drawn with replacement as it has, each with all its windows.

    >>> X, y = np.zeros((4, 1, 2)), np.array([0, 0, 1, 1])
    >>> data = SubjectData.from_windows({"emg": 1}, (X, y), meta={"trial_unit": "repetition"})
    >>> resample_trials(data, np.random.default_rng(2)).y_test.tolist()  # two trials of two
    [1, 1, 0, 0]
    """
    trials = subject.test_trials
    members = [np.flatnonzero(trials == t) for t in range(int(trials.max()) + 1)]
    drawn = rng.integers(0, len(members), len(members))
    pick = np.concatenate([members[t] for t in drawn])
    return subject.select_test(pick)


@checked
def subject_agreement(kept: Mapping[Any, set[str]]) -> pd.DataFrame:
    """The Jaccard index of every pair of subjects' circuits (``{subject: kept edge sets}``):
    columns ``subject_a, subject_b, jaccard``."""
    rows = [
        {"subject_a": a, "subject_b": b, "jaccard": jaccard(kept[a], kept[b])}
        for a, b in combinations(sorted(kept), 2)
    ]
    return pd.DataFrame(rows, columns=["subject_a", "subject_b", "jaccard"])
