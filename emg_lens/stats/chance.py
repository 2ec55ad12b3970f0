"""Is a model above chance? Each analysed model's held-out score beside chance, tested over
its trials (`chance_table`), and a warning that names the fault of a model that is not
(`chance_console`, `chance_markdown`: the top of ``summary.md``). The rules as users read them:
docs/guide/bring-your-own-model.md, "Studies and commands on such checkpoints"; why trials:
docs/DESIGN.md §15. Data without trials count each window as its own trial.

>>> table = chance_table({"subject 1": (90, [50, 50]), "subject 2": (52, [50, 50])})
>>> table[["model", "unit", "accuracy", "chance", "above_chance"]].values.tolist()
[['subject 1', 'window', 0.9, 0.5, True], ['subject 2', 'window', 0.52, 0.5, False]]
>>> console = chance_console(table, below_baseline=None)
>>> print(console.splitlines()[-1])  # doctest: +NORMALIZE_WHITESPACE
WARNING: subject 2 is not clearly above chance: accuracy 0.520 on 100 windows, each counted
as its own trial, chance 0.500; binomial p = 0.382 >= 0.05; window accuracy 0.520 below 0.700,
the midpoint between chance and the best model's 0.900. Its training accuracy is not known
here, so whether it did not learn or does not transfer to these windows cannot be told: its
knockout effects, circuits and attributions describe a model that is not above chance on
them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

import numpy as np
import pandas as pd
from jaxtyping import Int
from scipy import stats as sps

from emg_lens.errors import ArgumentError, check_choice, check_number
from emg_lens.stats.compare import ALPHA, format_p
from emg_lens.stats.units import TRIAL_UNITS, check_classes, design_effects, trial_votes

if TYPE_CHECKING:
    from typing_extensions import Unpack

BelowBaseline = Callable[..., "str | None"]
"""The rule that says a model's score is below the feature baseline's: ``(model, score,
baseline, n=count, unit=what it counts) -> line or None``
(`emg_lens.train.baseline.below_baseline`)."""

CHANCE_RULE = "the share of the most frequent class"
COLUMNS = [
    *("model", "accuracy", "correct", "n", "chance", "p", "above_chance", "why", "unit"),
    *("trials", "trials_correct", "trial_accuracy", "windows_per_trial", "window_chance"),
    *("window_p", "design_effect", "train_accuracy", "placement", "baseline_accuracy"),
    *("verdict", "best_p", "trials_needed"),
]
VERDICTS = ("above chance", "not above chance", "too small to tell")
"""What the table says of a model: ``too small to tell`` where even every held-out trial right
would not give ``p < ALPHA`` (``best_p``, ``trials_needed``), so no score could show it."""
KNOWN = ("design_effect", "train_accuracy", "baseline_accuracy")  # NaN in the table where None
TRIAL_IS = {"trial": "one repetition of one class", "recording": "one recording, each class it "
            "holds voted apart"}  # fmt: skip
PLACEMENT_CHECK = "see the placement check (emg-lens evaluate prints it; --realign)"


def _p_is(p: float) -> str:
    """``"p = 0.263"``, or ``"p < 1e-16"``."""
    return format_p(p, name="p")


class Known(TypedDict, total=False):
    """What is known of a model beside its counts (`TrialScore`'s fields of these names)."""

    train_accuracy: float | None
    placement: bool
    baseline_accuracy: float | None
    unit: str | None


@dataclass(frozen=True)
class TrialScore:
    """One model's held-out score as the chance check counts it: ``correct`` of the windows
    (``class_counts`` per class), ``trials_correct`` of the trials by majority vote
    (``trial_counts`` per class; a trial of several classes counts once, so these may be
    fractions), the windows' ``design_effect``, what names the fault (``train_accuracy``;
    ``placement``: the data have one), ``baseline_accuracy`` (the per-channel feature
    baseline's, `emg_lens.train.baseline.feature_baseline`) and ``unit`` (the data's trial
    unit, `emg_lens.stats.units.TRIAL_UNITS`); None where unknown.

    >>> pred, y = np.array([0, 0, 1, 1, 1, 1]), np.array([0, 0, 0, 1, 1, 1])
    >>> s = TrialScore.from_predictions(pred, y, np.array([0, 0, 0, 1, 1, 1]), 2)
    >>> s.correct, s.class_counts, s.trials_correct, s.trial_counts
    (5, (3, 3), 2, (1, 1))
    >>> TrialScore.from_windows(5, [3, 3]).trial_counts  # each window its own trial
    (3, 3)
    """

    correct: int
    class_counts: tuple[int, ...]
    trials_correct: float
    trial_counts: tuple[float, ...]
    design_effect: float | None = None
    train_accuracy: float | None = None
    placement: bool = False
    baseline_accuracy: float | None = None  # the per-channel feature baseline, same windows
    unit: str | None = None

    @classmethod
    def from_windows(
        cls, correct: int, class_counts: Sequence[int], **known: Unpack[Known]
    ) -> TrialScore:
        """A score of windows that carry no trials: each window its own trial, and how much
        the windows of one trial repeat each other unknown (``design_effect`` None, not 1: 1
        would say they do not)."""
        counts = tuple(int(c) for c in np.asarray(class_counts).reshape(-1))
        return cls(int(correct), counts, int(correct), counts, None, **known)

    @classmethod
    def from_predictions(
        cls,
        pred: Int[np.ndarray, " window"],
        y: Int[np.ndarray, " window"],
        trials: Int[np.ndarray, " window"],
        n_classes: int,
        **known: Unpack[Known],
    ) -> TrialScore:
        """Score predicted classes ``pred`` against ``y``, each window in trial ``trials``
        (``SubjectData.test_trials``); ``known``: ``train_accuracy``, ``placement``, ``unit``
        (``trial_unit(data.meta)``)."""
        pred, y = np.asarray(pred), np.asarray(y)
        hits = np.bincount(y[pred == y], minlength=n_classes)
        cell = {"class_correct": hits, "class_total": np.bincount(y, minlength=n_classes)}
        return cls.from_cell({**cell, **cell_fields(pred, y, trials, n_classes)}, **known)

    @classmethod
    def from_cell(cls, cell: Mapping, **known: Unpack[Known]) -> TrialScore:
        """The unmasked score a stored cell holds (`cell_fields`' and ``class_correct``,
        ``class_total``); a cell stored without trial fields is read as windows only."""
        correct = int(np.sum(cell["class_correct"]))
        if "trial_total" not in cell:
            return cls.from_windows(correct, cell["class_total"], **known)
        return cls(
            correct,
            tuple(int(c) for c in cell["class_total"]),
            _count(np.sum(cell["trial_correct"])),
            tuple(_count(c) for c in cell["trial_total"]),
            cell.get("design_effect"),
            **known,
        )


def _count(value: float | np.number) -> float:
    """A count as JSON keeps it: an int where whole (up to rounding), else the fraction."""
    whole = round(float(value))
    return whole if abs(float(value) - whole) < 1e-9 else round(float(value), 12)


def cell_fields(
    pred: Int[np.ndarray, " window"],
    y: Int[np.ndarray, " window"],
    trials: Int[np.ndarray, " window"],
    n_classes: int,
) -> dict[str, list[float] | float]:
    """What a stored cell keeps of its trials (JSON-able): ``trial_correct`` and
    ``trial_total`` per class (trials right by majority vote, and trials; fractions where a
    trial holds several classes, `TrialScore`) and the windows' ``design_effect``.

    >>> cell_fields(np.array([0, 1, 1]), np.array([0, 0, 1]), np.array([0, 0, 1]), 2)
    {'trial_correct': [0, 1], 'trial_total': [1, 1], 'design_effect': 1.0}
    """
    return stacked_cell_fields(np.asarray(pred)[None], y, trials, n_classes)[0]


def stacked_cell_fields(
    pred: Int[np.ndarray, "stack window"],
    y: Int[np.ndarray, " window"],
    trials: Int[np.ndarray, " window"],
    n_classes: int,
) -> list[dict[str, list[float] | float]]:
    """`cell_fields` of each row of ``pred`` (several conditions' predictions of the same
    windows), in one pass.

    >>> [c["trial_correct"] for c in stacked_cell_fields(np.array([[0, 1, 1], [0, 0, 1]]),
    ...     np.array([0, 0, 1]), np.array([0, 0, 1]), 2)]
    [[0, 1], [1, 1]]
    """
    pred, y = np.asarray(pred), np.asarray(y)
    check_classes(y, n_classes, "y")
    votes = trial_votes(pred, y, trials)
    hits = (pred == y).astype(np.float64)
    # per row, the true classes of its correct trials: counted in one bincount
    cell = np.arange(len(pred))[:, None] * n_classes + votes.label
    weights = np.broadcast_to(votes.weight, votes.correct.shape)[votes.correct]
    trial_correct = np.bincount(cell[votes.correct], weights, minlength=len(pred) * n_classes)
    trial_correct = trial_correct.reshape(len(pred), n_classes)
    deffs = design_effects(hits, np.asarray(trials))
    return [
        {
            "trial_correct": [_count(c) for c in correct],
            "trial_total": [_count(c) for c in votes.class_counts(n_classes)],
            "design_effect": deff,
        }
        for correct, (_, deff) in zip(trial_correct, deffs)
    ]


def _score(name: str, score: TrialScore | tuple[int, Sequence[int]]) -> TrialScore:
    """A checked `TrialScore` of a model (the ``(correct, class_counts)`` form: windows)."""
    if not isinstance(score, TrialScore):
        try:
            correct, class_counts = score
        except (TypeError, ValueError):
            accepted = "a TrialScore or (correct, class_counts)"
            raise ArgumentError(f"{name}: a score is {accepted}, got {score!r}") from None
        score = TrialScore.from_windows(correct, class_counts)
    for what, hit, per_class in [
        ("window", score.correct, score.class_counts),
        ("trial", score.trials_correct, score.trial_counts),
    ]:
        counts = np.asarray(per_class, dtype=np.float64)
        wanted = "non-negative with a positive sum"
        if counts.ndim != 1 or counts.sum() <= 0 or (counts < 0).any():
            raise ArgumentError(
                f"{name}: {what} counts per class must be {wanted}, got {counts.tolist()}"
            )
        if not 0 <= hit <= counts.sum() + 1e-9:
            raise ArgumentError(
                f"{name}: correct {what}s must be in 0..{counts.sum()}, got {hit!r}"
            )
    if score.unit is not None:
        check_choice(score.unit, list(TRIAL_UNITS), f"{name}: the trial unit")
    if score.train_accuracy is not None:
        check_number(
            score.train_accuracy, f"{name}: train_accuracy", "in [0, 1]", lambda v: 0 <= v <= 1
        )
    return score


def _binomial_p(correct: float, class_counts: Sequence[float]) -> tuple[float, float]:
    """``(chance, p)``: the largest class share, and the one-sided exact binomial p; at a
    fractional count ``k`` of ``n`` (`TrialScore`), its tail continued through the regularised
    incomplete beta ``I_chance(k, n - k + 1)``, which it equals at whole ``k``."""
    counts = np.asarray(class_counts, dtype=np.float64)
    n, chance = round(counts.sum()), float(counts.max() / counts.sum())
    if correct > 0 and not float(correct).is_integer():
        return chance, float(sps.beta.cdf(chance, correct, n - correct + 1))
    return chance, float(sps.binomtest(int(correct), n, chance, alternative="greater").pvalue)


def trials_needed(chance: float, alpha: float = ALPHA) -> int:
    """The fewest held-out trials with which a model right on all of them is above
    ``chance`` at ``alpha`` (one-sided exact binomial: ``chance ** T < alpha``).

    >>> trials_needed(0.5), trials_needed(0.25), trials_needed(1 / 49)
    (5, 3, 1)
    """
    check_number(chance, "chance", "a number strictly between 0 and 1", lambda v: 0 < v < 1)
    t = max(1, int(np.ceil(np.log(alpha) / np.log(chance))))
    return t + 1 if chance**t >= alpha else t


def chance_table(scores: Mapping[str, TrialScore | tuple[int, Sequence[int]]]) -> pd.DataFrame:
    """One row per model: ``model``, the window figures, the trial test and what names the
    fault (`COLUMNS`).

    Args:
        scores: model name -> its `TrialScore`, or ``(correct, class_counts)`` over windows,
            each window then its own trial.

    ``accuracy``, ``correct`` and ``n`` are over windows; ``chance`` and ``p`` are the one-sided
    exact binomial of ``trials_correct`` of ``trials`` over the table's ``unit`` (``"trial"``,
    ``"recording"`` or ``"window"``); ``window_chance`` and ``window_p`` the same test over
    windows, shown beside it, and ``design_effect`` how much they repeat each other (NaN where
    unknown); ``train_accuracy`` and ``placement`` name the fault. ``why`` says what failed
    (empty when the model is clearly above chance; the rules:
    docs/guide/bring-your-own-model.md), ``verdict`` says it in a word (`VERDICTS`): where even
    every trial right (``best_p``) is not below `ALPHA` the design is ``too small to tell``
    (``trials_needed``), which blames nothing on the model.

    A model right on 2 of 5 trials (all 9 windows of each): clear over windows, not over trials.

    >>> score = TrialScore(18, (9,) * 5, 2, (1,) * 5, 7.1, train_accuracy=1.0)
    >>> row = chance_table({"R_3": score}).iloc[0]
    >>> row.unit, float(row.trial_accuracy), round(float(row.p), 2), format_p(row.window_p)
    ('trial', 0.4, 0.26, '0.00165')
    >>> bool(row.above_chance)
    False
    """
    if not scores:
        raise ArgumentError("chance_table needs at least one model's score")
    checked = [(str(name), _score(str(name), score)) for name, score in scores.items()]
    best = max(s.correct / sum(s.class_counts) for _, s in checked)
    rows = []
    for name, s in checked:
        n, trials = sum(s.class_counts), _count(sum(s.trial_counts))
        accuracy = s.correct / n
        window_chance, window_p = _binomial_p(s.correct, s.class_counts)
        chance, p = _binomial_p(s.trials_correct, s.trial_counts)
        best_p = chance**trials if chance < 1 else 1.0
        needed = trials_needed(chance) if best_p >= ALPHA and chance < 1 else 0
        unit = "window" if trials == n else "recording" if s.unit == "recording" else "trial"
        why = []
        small = not best_p < ALPHA
        if small:
            why.append(
                f"too small to tell: even all {trials} {unit}s right would give "
                f"p = {format_p(best_p)} >= {ALPHA} at chance {chance:.3f}"
                + (f"; at least {needed} are needed" if needed else "")
            )
        elif not p < ALPHA:
            over = "binomial" if unit == "window" else f"over {trials} {unit}s"
            why.append(f"{over} p = {format_p(p)} >= {ALPHA}")
        mid = (window_chance + best) / 2
        if accuracy < mid:
            why.append(
                f"window accuracy {accuracy:.3f} below {mid:.3f}, the midpoint between "
                f"chance and the best model's {best:.3f}"
            )
        rows.append(
            {
                "model": name,
                "accuracy": accuracy,
                "correct": s.correct,
                "n": n,
                "chance": chance,
                "p": p,
                "unit": unit,
                "trials": trials,
                "trials_correct": s.trials_correct,
                "trial_accuracy": s.trials_correct / trials,
                "windows_per_trial": n / trials,
                "window_chance": window_chance,
                "window_p": window_p,
                **{k: np.nan if getattr(s, k) is None else float(getattr(s, k)) for k in KNOWN},
                "placement": bool(s.placement),
                "best_p": best_p,
                "trials_needed": needed,
                "why": "; ".join(why),
                "above_chance": not why,
                "verdict": VERDICTS[0 if not why else 2 if small else 1],
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def flagged(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of `chance_table` that are not clearly above chance."""
    return table[~table["above_chance"]]


def _fault(row) -> str:
    """What the training accuracy says is wrong with a model that is not above chance; of a
    design too small to tell, that the design is (no fault of the model's can be told)."""
    if row.verdict == VERDICTS[2]:
        return (
            "The held-out design cannot show any model above chance, whatever it learned: hold "
            f"out more {row.unit}s (at least {row.trials_needed}) before reading its knockout "
            "effects, circuits and attributions as those of a model that transfers."
        )
    held_out = f"accuracy {row.accuracy:.3f}"
    if row.unit != "window":
        held_out += f" over windows, {row.trial_accuracy:.3f} over {row.unit}s"
    if pd.isna(row.train_accuracy):
        return (
            "Its training accuracy is not known here, so whether it did not learn or does not "
            f"transfer to these {row.unit}s cannot be told: its knockout effects, circuits and "
            "attributions describe a model that is not above chance on them."
        )
    if row.train_accuracy < (row.chance + 1) / 2:
        return (
            f"It did not learn: its training accuracy is {row.train_accuracy:.3f}, near chance "
            f"({row.chance:.3f}). Its knockout effects, circuits and attributions describe a "
            "model that learned (almost) nothing."
        )
    where = f"; {PLACEMENT_CHECK}: the electrodes may have moved" if row.placement else ""
    return (
        f"It learned its training windows (training accuracy {row.train_accuracy:.3f}) but "
        f"does not transfer to these held-out ones ({held_out}){where}. Its knockout effects, "
        "circuits and attributions describe a model that does not transfer to these data, not "
        "how it solves the task."
    )


def _warning(row) -> str:
    over = ""
    if row.unit == "window":
        score = (
            f"accuracy {row.accuracy:.3f} on {row.n} windows, each counted as its own trial, "
            f"chance {row.chance:.3f}"
        )
    else:
        score = (
            f"{row.trials_correct:g} of {row.trials} held-out {row.unit}s right by the majority "
            f"vote of their windows ({row.trial_accuracy:.3f}), chance {row.chance:.3f}"
        )
        over = (
            f" Over its {row.n} windows ({row.windows_per_trial:.3g} per {row.unit}) accuracy "
            f"is {row.accuracy:.3f}: a window binomial gives {_p_is(row.window_p)}, "
            f"counting the overlapping windows of a {row.unit} as independent"
            + ("" if pd.isna(row.design_effect) else f" (design effect {row.design_effect:.1f})")
            + "."
        )
    told = f"{row.model} is not clearly above chance"
    if row.verdict == VERDICTS[2]:
        told = f"whether {row.model} is above chance cannot be told"
    return f"{told}: {score}; {row.why}.{over} {_fault(row)}"


def chance_warnings(table: pd.DataFrame) -> list[str]:
    """A ``WARNING:`` line per model of `chance_table` that is not clearly above chance."""
    return [f"WARNING: {_warning(r)}" for r in flagged(table).itertuples()]


def _unit_phrase(table: pd.DataFrame) -> str:
    units = set(table["unit"])
    if units == {"window"}:
        return "tested over windows, each its own trial (these data carry no trials)"
    what = " or ".join(TRIAL_IS[u] for u in sorted(units - {"window"}))
    return (
        f"tested over trials (a trial: {what}, decided by the majority vote of its windows"
        + (", or a window where the data carry no trials" if "window" in units else "") + ")"
    )  # fmt: skip


def _console_row(r) -> str:
    if r.unit == "window":
        return f"{r.model} {r.accuracy:.3f} on {r.n} windows (chance {r.chance:.3f}, {_p_is(r.p)})"
    deff = "" if pd.isna(r.design_effect) else f", design effect {r.design_effect:.1f}"
    return (
        f"{r.model} {r.trials_correct:g}/{r.trials} {r.unit}s {r.trial_accuracy:.3f} (chance "
        f"{r.chance:.3f}, {_p_is(r.p)}); windows {r.accuracy:.3f} of {r.n}, "
        f"{r.windows_per_trial:.3g} per {r.unit} (window {_p_is(r.window_p)}{deff})"
    )


def below_baselines(table: pd.DataFrame, below_baseline: BelowBaseline) -> list[str]:
    """A line per model of `chance_table` whose window accuracy is below the per-channel
    feature baseline's on the same windows, as ``below_baseline`` says it (the training
    floor's rule, `emg_lens.train.baseline.below_baseline`, passed in from above)."""
    lines = []
    for r in table.itertuples():
        if not pd.isna(r.baseline_accuracy):
            n, unit = (r.n, "windows") if r.unit == "window" else (r.trials, f"{r.unit}s")
            line = below_baseline(r.model, r.accuracy, r.baseline_accuracy, n=n, unit=unit)
            lines += [] if line is None else [line]
    return lines


def chance_console(table: pd.DataFrame, *, below_baseline: BelowBaseline | None) -> str:
    """Lines for the console: every model's held-out score beside chance, then a
    ``WARNING:`` line per model that is not clearly above chance, then a line per model below
    the per-channel feature baseline: ``below_baseline`` is the rule that says so
    (`emg_lens.train.baseline.below_baseline`; every caller stands above training and passes
    it), None where no line about the baseline is wanted."""
    lines = [
        f"unmasked accuracy beside chance ({CHANCE_RULE}), {_unit_phrase(table)}, one-sided "
        "exact binomial:",
        *(f"  {_console_row(r)}" for r in table.itertuples()),
    ]
    below = [] if below_baseline is None else below_baselines(table, below_baseline)
    return "\n".join(lines + chance_warnings(table) + below)


def _above(r) -> str:
    """The table's last column: yes, no, or that the design cannot tell."""
    return "yes" if r.above_chance else "too small to tell" if r.verdict == VERDICTS[2] else "no"


def chance_markdown(table: pd.DataFrame, between: str = "") -> str:
    """The lines summary.md starts with, after its title: a bold warning per model that is not
    clearly above chance, then ``between`` (a study's claims: read after the warnings that
    qualify them, before the details), then every model's score beside chance (a table).

    >>> print(chance_markdown(chance_table({"subject 1": (9, [5, 5])})))  # doctest: +ELLIPSIS
    Unmasked accuracy beside chance (...): a model is clearly above chance when ...
    <BLANKLINE>
    | model | unit | correct | of | accuracy | chance | p | windows | per unit | window accuracy | window p | design effect | training accuracy | feature baseline | above chance |
    |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
    | subject 1 | window | 9 | 10 | 0.900 | 0.500 | 0.0107 | 10 | 1 | 0.900 | 0.0107 | – | – | – | yes |
    <BLANKLINE>
    """  # noqa: E501
    warnings = "".join(f"**Warning: {_warning(r)}**\n\n" for r in flagged(table).itertuples())
    unit = _unit_phrase(table).removeprefix("tested over ")

    def number(value: float, fmt: str) -> str:
        return "–" if pd.isna(value) else format(value, fmt)

    rows = [
        f"| {r.model} | {r.unit} | {r.trials_correct:g} | {r.trials} | {r.trial_accuracy:.3f} | "
        f"{r.chance:.3f} | {format_p(r.p)} | {r.n} | {r.windows_per_trial:.3g} | "
        f"{r.accuracy:.3f} | {format_p(r.window_p)} | {number(r.design_effect, '.1f')} | "
        f"{number(r.train_accuracy, '.3f')} | {number(r.baseline_accuracy, '.3f')} | "
        f"{_above(r)} |"
        for r in table.itertuples()
    ]
    return (
        warnings
        + between
        + f"Unmasked accuracy beside chance ({CHANCE_RULE}): a model is clearly above chance "
        f"when a one-sided exact binomial test of its {unit} "
        f"against chance gives p < {ALPHA} and its window accuracy is at least the midpoint "
        "between chance and the best model's. The window p beside it counts the windows of a "
        "trial as independent, which they are not (the design effect: how many windows one "
        "independent observation is worth); the feature baseline is a logistic regression on "
        "each channel's log RMS and mean absolute difference, fitted on the same training "
        "windows.\n\n"
        "| model | unit | correct | of | accuracy | chance | p | windows | per unit | "
        "window accuracy | window p | design effect | training accuracy | feature baseline | "
        "above chance |\n" + "|---|" * 1 + "---|" * 14 + "\n" + "\n".join(rows) + "\n"
    )
