"""Is a model above chance? Each analysed model's accuracy on the windows it is analysed on,
beside chance, and a warning for one that learned (almost) nothing.

Every command that analyses models (``emg-lens study run``, ``discover``, ``inspect``) reads
the unmasked accuracy it already computed into `chance_table`, states it beside chance at the
top of ``summary.md`` (`chance_markdown`, so ``report.html`` shows it) and on the console
(`chance_console`). Knockout effects, circuits and attributions of a model at chance describe
noise: the warning says so by name before any of them.

*Chance* is the share of the most frequent class among those windows (what always answering
that class scores; ``1 / n_classes`` when the classes are balanced). A model is **not clearly
above chance** when either

- a one-sided binomial test of its correct windows against chance is not significant
  (``p >= ALPHA``, 0.05), or
- its accuracy is below the midpoint between chance and the best model's accuracy in the run
  (a model far behind the others learned much less than they did; with one model, the
  midpoint is below its own accuracy whenever it is above chance).

>>> table = chance_table({"subject 1": (90, [50, 50]), "subject 2": (52, [50, 50])})
>>> table[["model", "accuracy", "chance", "above_chance"]].values.tolist()
[['subject 1', 0.9, 0.5, True], ['subject 2', 0.52, 0.5, False]]
>>> print(chance_console(table).splitlines()[-1])  # doctest: +NORMALIZE_WHITESPACE
WARNING: subject 2 is not clearly above chance: accuracy 0.520 on 100 windows, chance 0.500;
binomial p = 0.382 >= 0.05; below 0.700, the midpoint between chance and the best model's 0.900.
Its knockout effects, circuits and attributions describe a model that learned (almost) nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from emg_lens.errors import ArgumentError
from emg_lens.studies.stats import format_p

__all__ = [
    "ALPHA",
    "CHANCE_RULE",
    "chance_console",
    "chance_markdown",
    "chance_table",
    "chance_warnings",
    "flagged",
]

ALPHA = 0.05
CHANCE_RULE = "the share of the most frequent class in these windows"
COLUMNS = ["model", "accuracy", "correct", "n", "chance", "p", "above_chance", "why"]


def chance_table(scores: Mapping[str, tuple[int, Sequence[int]]]) -> pd.DataFrame:
    """One row per model: ``model, accuracy, correct, n, chance, p, above_chance, why``.

    Args:
        scores: model name -> ``(correct, class_counts)``: how many of its windows the
            unmasked model classified correctly, and how many windows each class has (their
            sum is ``n``; chance is the largest share).

    ``p`` is the one-sided binomial test of ``correct`` of ``n`` against chance; ``why`` says
    what failed (empty when the model is clearly above chance; see the module docstring).
    """
    if not scores:
        raise ArgumentError("chance_table needs at least one model's (correct, class_counts)")
    rows = []
    for name, (correct, counts) in scores.items():
        counts = np.asarray(counts, dtype=np.int64)
        n = int(counts.sum())
        if counts.ndim != 1 or n <= 0 or (counts < 0).any():
            raise ArgumentError(
                f"{name}: class_counts must be non-negative window counts per class with a "
                f"positive sum, got {counts.tolist()}"
            )
        if not 0 <= int(correct) <= n:
            raise ArgumentError(f"{name}: correct must be between 0 and n={n}, got {correct!r}")
        chance = float(counts.max() / n)
        p = float(sps.binomtest(int(correct), n, chance, alternative="greater").pvalue)
        rows.append({"model": str(name), "accuracy": correct / n, "correct": int(correct),
                     "n": n, "chance": chance, "p": p})  # fmt: skip
    table = pd.DataFrame(rows, columns=COLUMNS[:-2])
    best = table["accuracy"].max()
    midpoint = (table["chance"] + best) / 2
    reasons = []
    for row, mid in zip(table.itertuples(), midpoint):
        why = []
        if not row.p < ALPHA:
            why.append(f"binomial {format_p(row.p, name='p')} >= {ALPHA}")
        if row.accuracy < mid:
            why.append(
                f"below {mid:.3f}, the midpoint between chance and the best model's {best:.3f}"
            )
        reasons.append("; ".join(why))
    table["why"] = reasons
    table["above_chance"] = table["why"] == ""
    return table[COLUMNS]


def flagged(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of `chance_table` that are not clearly above chance."""
    return table[~table["above_chance"]]


def _warning(row) -> str:
    return (
        f"{row.model} is not clearly above chance: accuracy {row.accuracy:.3f} on {row.n} "
        f"windows, chance {row.chance:.3f}; {row.why}. Its knockout effects, circuits and "
        "attributions describe a model that learned (almost) nothing."
    )


def chance_warnings(table: pd.DataFrame) -> list[str]:
    """A ``WARNING:`` line per model of `chance_table` that is not clearly above chance."""
    return [f"WARNING: {_warning(r)}" for r in flagged(table).itertuples()]


def chance_console(table: pd.DataFrame) -> str:
    """Lines for the console: every model's accuracy beside chance, then a ``WARNING:`` line
    per model that is not clearly above chance."""
    parts = ", ".join(
        f"{r.model} {r.accuracy:.3f} (chance {r.chance:.3f}, {format_p(r.p, 2, 'p')})"
        for r in table.itertuples()
    )
    lines = [f"unmasked accuracy beside chance ({CHANCE_RULE}): {parts}"]
    return "\n".join(lines + chance_warnings(table))


def chance_markdown(table: pd.DataFrame, between: str = "") -> str:
    """The lines summary.md starts with, after its title: a bold warning per model that is not
    clearly above chance, then ``between`` (a study's claims: read after the warnings that
    qualify them, before the details), then every model's accuracy beside chance (a table).

    >>> print(chance_markdown(chance_table({"subject 1": (9, [5, 5])})))  # doctest: +ELLIPSIS
    Unmasked accuracy beside chance (...): a model is clearly above chance when ...
    <BLANKLINE>
    | model | accuracy | n | chance | p | above chance |
    |---|---|---|---|---|---|
    | subject 1 | 0.900 | 10 | 0.500 | 0.0107 | yes |
    <BLANKLINE>
    """
    warnings = "".join(f"**Warning: {_warning(r)}**\n\n" for r in flagged(table).itertuples())
    shown = table.assign(
        accuracy=table["accuracy"].map("{:.3f}".format),
        chance=table["chance"].map("{:.3f}".format),
        p=table["p"].map(format_p),
        above=np.where(table["above_chance"], "yes", "no"),
    )
    rows = [
        f"| {r.model} | {r.accuracy} | {r.n} | {r.chance} | {r.p} | {r.above} |"
        for r in shown.itertuples()
    ]
    return (
        warnings
        + between
        + f"Unmasked accuracy beside chance ({CHANCE_RULE}): a model is clearly above chance "
        f"when a one-sided binomial test against chance gives p < {ALPHA} and its accuracy is "
        "at least the midpoint between chance and the best model's accuracy.\n\n"
        "| model | accuracy | n | chance | p | above chance |\n|---|---|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n"
    )
