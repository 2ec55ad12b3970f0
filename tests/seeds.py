"""The seeds a planted-truth test trains on: one per run, every one on demand.

A planted-truth test's evidence is a set of seeds (trained on one and two threads, as other
CPUs would) in every one of which what it asserts held. A run trains the first; with
``EMG_LENS_TEST_SEEDS=all`` it trains them all, and ``EMG_LENS_TEST_SEEDS=1,2`` the ones named,
as scikit-learn's ``SKLEARN_TESTS_GLOBAL_RANDOM_SEED`` does. Over several seeds a test may
tolerate one model that missed (`misses_tolerated`); over one seed it tolerates none, so it
asserts only what held in every seed measured.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

VARIABLE = "EMG_LENS_TEST_SEEDS"


def planted_seeds(measured: Sequence[int], value: str | None = None) -> tuple[int, ...]:
    """The seeds to train this run, out of those ``measured``; ``value`` is the variable's
    (read from the environment when None).

    >>> planted_seeds((0, 1, 2), ""), planted_seeds((0, 1, 2), "all")
    ((0,), (0, 1, 2))
    >>> planted_seeds((0, 1, 2), "2, 5")
    (2, 5)
    """
    value = (os.environ.get(VARIABLE, "") if value is None else value).strip()
    if value == "all":
        return tuple(measured)
    if value:
        try:
            return tuple(int(part) for part in value.split(","))
        except ValueError:
            raise ValueError(
                f"{VARIABLE}={value!r}: give 'all' or seeds separated by commas, e.g. '0,3'"
            ) from None
    return tuple(measured[:1])


def misses_tolerated(n_seeds: int) -> int:
    """How many of ``n_seeds`` models may miss: one of three or more, none of fewer.

    >>> misses_tolerated(1), misses_tolerated(3)
    (0, 1)
    """
    return 1 if n_seeds >= 3 else 0
