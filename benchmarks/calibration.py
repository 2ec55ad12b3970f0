"""How far each number can be trusted: the project's inferences run on simulated designs whose
truth is known (`_designs`), each reporting its false-verdict rate or its interval's coverage
beside the level it claims (docs/DESIGN.md §16: the tool checking itself, as scikit-learn's
estimator checks check estimators).

Every check goes through the project's own public functions, as a user's data would:

- the placement check (`emg_lens.data.placement.check_recording`) on repetitions that did not
  move (a ring of 8 with a dead channel, weak spatial structure, both, neighbour crosstalk, a
  baseline wander or drifting gains in the held-out repetition, two training repetitions of
  which one moved; a 13 × 5 grid; the 10-20 scalp, also at MNE's standard_1020 positions,
  paired by name): how often a move is named (at most 5 %), and on real moves (rings turned
  or mirrored, also with a flat or a noise-only channel, grids flipped, turned or transposed,
  the scalp's sides swapped): how often the move is named with the right map (at least 5 in
  6);
- the claims (`emg_lens.studies.ablation.verdicts.evaluate_claims`): keep claims where 70 % of
  subjects are unchanged and the rest lose everything (hold at most 8 %), keep claims whose true
  change is their margin (hold at most 5 %), drop claims whose true drop is their margin ("fails"
  at most 5 %), drop claims of no change with skewed per-subject changes ("holds" at most 5 %);
- intervals: per-class accuracy over 2–20 trials, polarised (trials all right or all wrong) or
  alike (`emg_lens.stats.units.class_trial_cis`, 95 %), and the study table's Δ% over 2–20
  subjects (`emg_lens.stats.compare.delta_t_intervals`, 95 %; also on exponential losses and
  on two clusters of subjects): their coverage;
- chance over trials (`emg_lens.stats.chance.chance_table`): a model at chance per trial
  called above chance (at most 5 %; on braindecode's overlapping windows, read through
  `SubjectData.from_windows_dataset`, at most 8 %), a model at chance per recording on
  braindecode's fixed-length windows (one label per recording, or two classes a recording:
  at most 5 %), and a perfect model on a design too small to tell (4 held-out trials, or
  recordings).

It prints the table (markdown: the docs' page "How far each number can be trusted" holds the
full run's) and one JSON line. ``--quick`` runs each check on a few draws, which the test
suite does (tests/unit/test_calibration.py), asserting each figure within a stated tolerance.

    python benchmarks/calibration.py            # every check, the docs' table (~15 min)
    python benchmarks/calibration.py --quick    # a few draws of each
    python benchmarks/calibration.py --only placement,claims
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from _designs import (
    MNE_SCALP,
    POPULATION_CHANGE,
    Placement,
    braindecode_fixed_subject,
    braindecode_subject,
    braindecode_two_class_subject,
    claim_counts,
    class_trials,
    moves_of,
    per_trial_chance,
    placement_recording,
    subject_changes,
)

from emg_lens.data.placement import cable_swaps, check_recording
from emg_lens.data.preprocess import SubjectData
from emg_lens.stats.chance import TrialScore, chance_table
from emg_lens.stats.compare import SKEW_FLOOR, clopper_pearson, compare_rows, delta_t_intervals
from emg_lens.stats.units import class_trial_cis
from emg_lens.studies.ablation.claims import Claim
from emg_lens.studies.ablation.verdicts import evaluate_claims


@dataclass(frozen=True)
class Check:
    """One inference on one design: ``run(draws)`` returns how many of ``draws`` simulated
    data sets gave the event counted (a false verdict, or an interval that covered the truth).
    ``bound`` is what the inference promises of that share, read with ``sense``: ``"at most"``
    (a false-verdict rate) or ``"at least"`` (a coverage, a detection rate), or ``"stated"``
    (a power: what the inference pays for its promise, measured and reported). ``limit``: a
    design on which no inference can keep the promise (an effect a few subjects carry: Bahadur
    & Savage 1956), measured to show how far it falls short, not asserted."""

    family: str
    inference: str
    design: str
    sense: str
    bound: float
    run: Callable[[int], int]
    draws: int
    quick: int
    limit: bool = False  # a promise no method can keep on this design: shown, never asserted


# ----------------------------------------------------------------------------- placement


def _placement_check(design: Placement, seed: int, moved=None):
    recording, montage = placement_recording(design, seed, moved)
    last = design.repetitions
    (check,) = check_recording(recording, {"emg": montage}, tuple(range(1, last)), (last,))
    return check


def _false_moves(design: Placement) -> Callable[[int], int]:
    """Over ``draws`` seeds, how often a move is named in a held-out repetition that did not
    move (with ``moved_repetition``, that training repetition recorded under each real move of
    the montage in turn)."""
    moves = moves_of(design.montage) if design.moved_repetition else [None]
    return lambda draws: sum(
        _placement_check(design, seed, moves[seed % len(moves)]).moved for seed in range(draws)
    )


def _moves(design: Placement, event: str, moves=None, only: str | None = None):
    """Over ``draws`` seeds, each a different real move of the montage (in turn; ``only``: that
    one; ``moves``: these instead, cable swaps): how often the check gives ``event``: the right
    map named a move (``"found"``), a wrong map named a move (``"wrong"``), or "no move"."""
    moves = [m for m in moves or moves_of(design.montage) if only in (None, m.name)]

    def run(draws: int) -> int:
        count = 0
        for seed in range(draws):
            moved = moves[seed % len(moves)]
            check = _placement_check(design, 1000 + seed, moved)
            right = check.best.name == moved.name
            count += {"found": check.moved and right, "wrong": check.moved and not right,
                      "no move": check.decision == "no move"}[event]  # fmt: skip
        return count

    return run


def _blamed(design: Placement) -> Callable[[int], int]:
    """Over ``draws`` seeds, how often the check blames a training repetition other than the
    one recorded moved (``design.moved_repetition``, under each real move in turn)."""
    moves = moves_of(design.montage)
    others = [r for r in range(1, design.repetitions) if r != design.moved_repetition]
    return lambda draws: sum(
        any(f"training repetition {r}," in check.reason for r in others)
        for check in (_placement_check(design, seed, moves[seed % len(moves)])
                      for seed in range(draws))
    )  # fmt: skip


FALSE_MOVE = "a channel move reported where the electrodes did not move"
FOUND_MOVE = "a real electrode move found, with the right channel map"
WRONG_MAP = "a real electrode move named with a wrong channel map"
SWAP_MISSED = "two cables swapped (channels i and i + 1 exchanged) read as no move"
BLAMED = "a training repetition that did not move blamed"


def _placement_checks() -> list[Check]:
    unmoved = {
        "ring of 8, one dead channel": Placement(dead=(2,)),
        "ring of 8, weak structure (3 sources, noisy)": Placement(sources=3, noise=1.0),
        "ring of 8, weak structure and a dead channel": Placement(sources=3, noise=1.0, dead=(2,)),
        "ring of 8, neighbour crosstalk": Placement(crosstalk=0.4),
        "13 x 5 grid": Placement(montage="13 x 5 grid", sources=8),
        "10-20 scalp, weak structure": Placement(montage="10-20 scalp", sources=3, noise=1.0),
        f"{MNE_SCALP}": Placement(montage=MNE_SCALP, sources=6),
        "ring of 8, held-out repetition on a 0.3 Hz wander of 3x the spread": Placement(
            wander=3.0, samples=1000
        ),
        "ring of 8, held-out repetition's gains drifting ±50 %": Placement(gain_drift=0.5),
        "ring of 8, two training repetitions, one of them moved": Placement(
            repetitions=3, moved_repetition=2
        ),
        "ring of 8, three training repetitions, the second moved": Placement(moved_repetition=2),
        "ring of 16": Placement(montage="ring of 16"),
    }
    moved = {
        "ring of 8 turned or mirrored": (Placement(), None),
        "13 x 5 grid flipped or turned": (Placement(montage="13 x 5 grid", sources=8), None),
        "10-20 scalp, sides swapped": (Placement(montage="10-20 scalp", sources=6), None),
        f"{MNE_SCALP}, sides swapped": (Placement(montage=MNE_SCALP, sources=6), None),
        "ring of 8 turned by 5, one flat channel": (Placement(flat=(2,)), "rotation by 5"),
        "ring of 8 turned by 5, one noise-only channel": (Placement(dead=(2,)), "rotation by 5"),
        "8 x 8 grid flipped, turned or transposed": (
            Placement(montage="8 x 8 grid", sources=8),
            None,
        ),
    }
    # quick draws (default 6): a 64-channel check takes seconds; the newer designs, a few
    quick = dict.fromkeys(list(unmoved)[-5:] + list(moved)[-3:-1], 3)
    quick.update({"13 x 5 grid": 4, "13 x 5 grid flipped or turned": 3, list(moved)[-1]: 1})
    return [
        *(Check("placement", FALSE_MOVE, name, "at most", 0.05,
                _false_moves(design), 100, quick.get(name, 6))
          for name, design in unmoved.items()),
        *(Check("placement", FOUND_MOVE, name, "at least", 5 / 6,
                _moves(design, "found", only=only), 48, quick.get(name, 6))
          for name, (design, only) in moved.items()),
        Check("placement", WRONG_MAP, "ring of 8 turned or mirrored, 4 of 8 channels dead",
              "at most", 0.05, _moves(Placement(dead=(0, 1, 2, 3)), "wrong"), 48, 6),
        *(Check("placement", SWAP_MISSED, name, "at most", 0.05,
                _moves(Placement(montage=name), "no move", cable_swaps(n)), 40, 6)
          for name, n in (("ring of 8", 8), ("ring of 16", 16))),
        Check("placement", WRONG_MAP, "ring of 8, two cables swapped", "at most", 0.05,
              _moves(Placement(), "wrong", cable_swaps(8)), 40, 6),
        Check("placement", BLAMED, "ring of 8, three training repetitions, the second moved",
              "at most", 0.05, _blamed(Placement(moved_repetition=2)), 100, 6),
    ]  # fmt: skip


# ----------------------------------------------------------------------------- claims

KEEP = Claim.from_dict(
    {"intervention": "cut", "layers": "all", "classes": [0], "expect": "keep", "margin": 0.05}
)
DROP = Claim.from_dict({"intervention": "cut", "layers": "all", "classes": [0], "expect": "drop"})


def _verdicts(claim: Claim, kind: str, n: int, verdict: str) -> Callable[[int], int]:
    def run(draws: int) -> int:
        rng = np.random.default_rng([n, draws, len(kind)])
        hits = 0
        for _ in range(draws):
            counts = pd.DataFrame(claim_counts(subject_changes(kind, n, rng), rng))
            table = evaluate_claims([claim], {}, counts, "mannwhitneyu", "bonferroni")
            hits += table.verdict[0] == verdict
        return hits

    return run


def _held_past_a_loser(n: int) -> Callable[[int], int]:
    """Keep claims on the rare-subgroup design that hold although a subject that lost 41–71 %
    was drawn: what a verdict that states its reach must never do unseen."""

    def run(draws: int) -> int:
        rng = np.random.default_rng([n, draws, 78])
        hits = 0
        for _ in range(draws):
            changes = subject_changes("rare subgroup", n, rng)
            counts = pd.DataFrame(claim_counts(changes, rng))
            table = evaluate_claims([KEEP], {}, counts, "mannwhitneyu", "bonferroni")
            hits += table.verdict[0] == "holds" and bool((changes < -40).any())
        return hits

    return run


def _room_short(n: int) -> Callable[[int], int]:
    """Keep claims on the moderate-subgroup design (30 % of subjects lose 10 %, the rest
    nothing) that hold while their reach leaves room for fewer 10 % losers than the
    population's 30 % (``−ci_low / 10``): a reach sentence that understates what it missed."""

    def run(draws: int) -> int:
        rng = np.random.default_rng([n, draws, 86])
        short = 0
        for _ in range(draws):
            counts = pd.DataFrame(claim_counts(subject_changes("moderate subgroup", n, rng), rng))
            row = evaluate_claims([KEEP], {}, counts, "mannwhitneyu", "bonferroni").iloc[0]
            short += row.verdict == "holds" and -row.ci_low / 10 < 0.3
        return short

    return run


def _held_past_an_unscored(draws: int) -> int:
    """Keep claims over 8 unchanged subjects and one whose baseline accuracy over the class is
    0 and whose cut scores 0.5 (no Δ%: a change relative to nothing) that hold."""
    rng = np.random.default_rng(87)
    held = 0
    for _ in range(draws):
        rows = claim_counts(np.zeros(9), rng)
        for row in rows[:2]:  # subject 1: baseline all wrong, the cut half right
            hits = [0] * 20 if row["key"] == "baseline" else [5] * 20
            row.update(class_correct=[sum(hits)], trial_hits=hits)
        table = evaluate_claims([KEEP], {}, pd.DataFrame(rows), "mannwhitneyu", "bonferroni")
        held += table.verdict[0] == "holds"
    return held


SKEWED_LOSSES = {
    "exponential": "losses of mean 5 % (the margin), exponential (skewness −2)",
    "lognormal": "losses of mean 5 % (the margin), lognormal of σ 0.9 (skewness −4.7)",
    "gamma": "losses of mean 5 % (the margin), Gamma of shape 2 (skewness −1.4)",
}
"""Keep claims on their margin where the subjects' losses lean towards large ones, as cuts'
effects do (`_designs.subject_changes`)."""


ON_MARGIN = "every subject −5 % (the margin) ± 2"
CLAIM_DESIGNS = [
    # (inference, design, promised at most, claim, subjects' changes, verdict counted, draws)
    ("a keep claim holds", "70 % unchanged, the rest lose all", 0.08, KEEP, "zero-inflated",
     "holds", 1000),
    ("a keep claim holds", ON_MARGIN, 0.055, KEEP, "on the margin", "holds", 3000),
    ("a drop claim fails", ON_MARGIN, 0.055, DROP, "on the margin", "fails", 3000),
    ("a drop claim holds", "no change on average, skewed", 0.05, DROP, "skewed", "holds", 1000),
]  # fmt: skip


def _claim_checks() -> list[Check]:
    return [
        *(Check("claims", inference, f"{design}; {n} subjects", "at most",
                0.065 if n == 2 and design == ON_MARGIN else bound,
                _verdicts(claim, kind, n, verdict), draws if n in (3, 5, 8, 20) else 1000, 10)
          for n in (2, 3, 5, 8, 12, 20)
          for inference, design, bound, claim, kind, verdict, draws in CLAIM_DESIGNS),
        *(Check("claims", "a keep claim holds", f"{design}; {n} subjects", "at most", 0.055,
                _verdicts(KEEP, kind, n, "holds"), 3000, 10)
          for kind, design in SKEWED_LOSSES.items() for n in (5, 8, 12, 20)),
        *(Check("claims", "a keep claim holds", f"losses of mean 5 % (the margin), lognormal of "
                f"σ 1 (skewness −6.2, past the {SKEW_FLOOR:g} assumed); {n} subjects", "at most",
                0.055, _verdicts(KEEP, "lognormal, σ 1", n, "holds"), 1000, 10, limit=True)
          for n in (8, 20)),
        *(Check("claims", "a keep claim holds (its power)",
                f"every subject −2.5 % (half the margin) ± 2; {n} subjects", "stated", 0.0,
                _verdicts(KEEP, "half the margin", n, "holds"), 1000, 10)
          for n in (3, 5, 8, 12)),
        *(Check("claims", "a keep claim holds leaving room for fewer 10 % losers than there are",
                f"30 % of subjects lose 10 %, the rest nothing; {n} subjects", "at most", 0.05,
                _room_short(n), 1000, 10)
          for n in (8, 20, 30)),
        Check("claims", "a keep claim holds though a subject without a Δ% changed",
              "8 subjects unchanged, one going from 0 to 0.5 over the class", "at most", 0.0,
              _held_past_an_unscored, 200, 5),
        *(Check("claims", "a keep claim holds though a subject losing 41–71 % was drawn",
                f"10 % of subjects lose 41–71 %, the rest 1 %; {n} subjects", "at most", 0.05,
                _held_past_a_loser(n), 1000, 10)
          for n in (4, 8, 15)),
    ]  # fmt: skip


# ----------------------------------------------------------------------------- intervals


def _class_coverage(trials: int, concentration: float) -> Callable[[int], int]:
    def run(draws: int) -> int:
        rng = np.random.default_rng([trials, int(min(concentration, 1e6))])
        covered = 0
        for _ in range(draws):
            accuracy = rng.choice([0.5, 0.8, 0.95])
            low, high, _ = class_trial_cis(*class_trials(accuracy, trials, rng, concentration), 1)
            covered += low[0] <= accuracy <= high[0]
        return covered

    return run


def _delta_coverage(n: int, kind: str) -> Callable[[int], int]:
    """The study table's 95 % Δ% (ratio of means) interval over ``n`` subjects, each
    subject's accuracy measured over 200 windows and the cut scored on the same windows (as a
    study scores it, and as `_designs.claim_counts` draws it: each right window turned wrong
    with probability ``−change / 100``, a rise turning wrong ones right), scored against the
    population's Δ% (`_designs.POPULATION_CHANGE`), not the drawn subjects' own."""

    def run(draws: int) -> int:
        rng = np.random.default_rng([n, len(kind)])
        covered = 0
        for _ in range(draws):
            base = rng.uniform(0.8, 0.95, n)
            change = subject_changes(kind, n, rng, base)[:, None] / 100
            right = rng.uniform(size=(n, 200)) < base[:, None]
            flip = rng.uniform(size=right.shape)
            rise = np.minimum(1.0, base[:, None] * change / (1 - base[:, None]))
            cut = np.where(change <= 0, right & (flip >= -change), right | (flip < rise))
            low, high = delta_t_intervals(cut.mean(1)[None], right.mean(1))
            covered += low[0] <= POPULATION_CHANGE[kind] <= high[0]
        return covered

    return run


def _claim_coverage(n: int, kind: str) -> Callable[[int], int]:
    """A claim's 90 % interval of per-subject Δ% (``ci_low``, ``ci_high`` of
    `evaluate_claims`, as a study writes them) scored against the population's mean change."""

    def run(draws: int) -> int:
        rng = np.random.default_rng([n, len(kind), 90])
        covered = 0
        for _ in range(draws):
            counts = pd.DataFrame(claim_counts(subject_changes(kind, n, rng), rng))
            row = evaluate_claims([KEEP], {}, counts, "mannwhitneyu", "bonferroni").iloc[0]
            covered += row.ci_low <= POPULATION_CHANGE[kind] <= row.ci_high
        return covered

    return run


EXPONENTIAL = "every subject loses, −Exp(mean 5) % (left-skewed)"
TWO_CLUSTERS = "half of the subjects unchanged, half −10 %"
SHAPES = {
    "−5 % ± 2": "on the margin",
    "−5 %, heavy tails (t₃)": "heavy-tailed",
    "10 % of subjects lose 41–71 %, the rest 1 %": "rare subgroup",
}


def _interval_checks() -> list[Check]:
    return [
        *(Check("intervals", "a per-class 95 % interval covers", f"{trials} trials, {name}",
                "at least", 0.95, _class_coverage(trials, concentration), 400, 40)
          for trials in (2, 3, 5, 10, 20)
          for name, concentration in (("polarised trials", 1.0), ("trials alike", 50.0))),
        *(Check("intervals", "the table's 95 % Δ% interval covers the population's",
                f"{n} subjects, {shape}", "at least", 0.95, _delta_coverage(n, kind), 400, 40,
                limit=kind == "rare subgroup")
          for shape, kind in SHAPES.items()
          for n in (2, 3, 5, 8, 12, 20)),
        *(Check("intervals", "the table's 95 % Δ% interval covers the population's",
                f"{n} subjects, change growing with the baseline (0 to −10 %)", "at least",
                0.95, _delta_coverage(n, "proportional"), 400, 40)
          for n in (2, 3, 5, 8, 12, 20)),
        # a skewed population, where Student's t alone covered 0.885-0.91 (issue 86)
        *(Check("intervals", "the table's 95 % Δ% interval covers the population's",
                f"{n} subjects, {EXPONENTIAL}", "at least", 0.95,
                _delta_coverage(n, "exponential"), 2000, 40)
          for n in (6, 8, 12, 20)),
        # every subject drawn from one cluster in 2^(1 - n) of studies: over 5 % up to 5
        *(Check("intervals", "the table's 95 % Δ% interval covers the population's",
                f"{n} subjects, {TWO_CLUSTERS}", "at least", 0.95,
                _delta_coverage(n, "two clusters"), 400, 40, limit=n <= 5)
          for n in (2, 3, 5, 8, 12, 20)),
        *(Check("intervals", "a claim's 90 % Δ% interval covers the population's",
                f"{n} subjects, {shape}", "at least", 0.90, _claim_coverage(n, kind), 1000, 100,
                limit=kind == "rare subgroup")
          for shape, kind in SHAPES.items()
          for n in (5, 20)),
    ]  # fmt: skip


# ----------------------------------------------------------------------------- chance


def _chance_rate(n_classes: int, reps: int) -> Callable[[int], int]:
    def run(draws: int) -> int:
        rng = np.random.default_rng([n_classes, reps])
        above = 0
        for _ in range(draws):
            pred, y, trials = per_trial_chance(n_classes, reps, rng)
            score = TrialScore.from_predictions(pred, y, trials, n_classes)
            above += bool(chance_table({"m": score}).above_chance[0])
        return above

    return run


def _braindecode_chance(subject: Callable[[], SubjectData]) -> Callable[[int], int]:
    """A model at chance per trial (per recording, on fixed-length windows) on braindecode's
    overlapping windows of ``subject()``, read through `SubjectData.from_windows_dataset`,
    which reads each window's trial: one random class per trial for all its windows."""

    def run(draws: int) -> int:
        data = subject()
        trials, unit = data.test_trials, data.meta["trial_unit"]
        rng = np.random.default_rng(56)
        above = 0
        for _ in range(draws):
            pred = rng.integers(0, 2, trials.max() + 1)[trials]
            score = TrialScore.from_predictions(pred, data.y_test, trials, 2, unit=unit)
            above += bool(chance_table({"m": score}).above_chance[0])
        return above

    return run


def _recording_chance(subject: Callable[[], SubjectData], together: bool) -> Callable[[int], int]:
    """A model at chance per recording on recordings that each hold two classes, read through
    `SubjectData.from_windows_dataset`: ``together``, each held-out recording's windows all
    right or all wrong (one coin a recording: the worst case of its runs' dependence); else
    one random class for each run of one class (each recording's class in its own coin)."""

    def run(draws: int) -> int:
        data = subject()
        trials, unit, y = data.test_trials, data.meta["trial_unit"], data.y_test
        runs = trials * 2 + y  # two runs a recording, one of each class
        rng = np.random.default_rng(86)
        above = 0
        for _ in range(draws):
            if together:
                pred = np.where(rng.integers(0, 2, trials.max() + 1)[trials] == 1, y, 1 - y)
            else:
                pred = rng.integers(0, 2, runs.max() + 1)[runs]
            score = TrialScore.from_predictions(pred, y, trials, 2, unit=unit)
            above += bool(chance_table({"m": score}).above_chance[0])
        return above

    return run


def _too_small(draws: int) -> int:
    """A perfect 2-class model on 4 held-out trials (p = 0.0625 at best): called too small to
    tell, never a model that does not transfer."""
    told = 0
    for _ in range(draws):
        pred = y = np.repeat([0, 1, 0, 1], 9)
        score = TrialScore.from_predictions(pred, y, np.repeat(np.arange(4), 9), 2)
        told += chance_table({"m": score}).verdict[0] == "too small to tell"
    return told


def _too_small_recordings(draws: int) -> int:
    """A perfect model on braindecode's fixed-length windows of 4 held-out recordings."""
    data = braindecode_fixed_subject()
    unit = data.meta["trial_unit"]
    score = TrialScore.from_predictions(data.y_test, data.y_test, data.test_trials, 2, unit=unit)
    return draws * int(chance_table({"m": score}).verdict[0] == "too small to tell")


def _chance_checks() -> list[Check]:
    at_chance = "a model at chance per trial called above chance"
    return [
        *(Check("chance", at_chance, f"{k} classes x {r} trials of 9 windows", "at most", 0.05,
                _chance_rate(k, r), 400, 60)
          for k, r in ((2, 10), (5, 1), (5, 12))),
        Check("chance", at_chance, "braindecode windows, 12 held-out trials of 16 overlapping "
              "windows", "at most", 0.08, _braindecode_chance(braindecode_subject), 400, 60),
        *(Check("chance", "a model at chance per recording called above chance",
                f"braindecode fixed-length windows, {n // 5} held-out recordings of 36 "
                "overlapping windows", "at most", 0.05,
                _braindecode_chance(partial(braindecode_fixed_subject, n)), 400, 60)
          for n in (20, 60)),
        *(Check("chance", "a model at chance per recording called above chance",
                f"recordings holding two classes (braindecode targets_from='channels'), {n} "
                f"held-out recordings, 2 runs of 16-20 overlapping windows each, {how}", "at most",
                0.05, _recording_chance(partial(braindecode_two_class_subject, n), together),
                400, 60)
          for together, how in ((True, "the runs of one recording right or wrong together"),
                                (False, "one random class a run"))
          for n in (12, 20)),
        Check("chance", "a design too small to tell said so", "2 classes x 2 trials, all right",
              "at least", 1.0, _too_small, 1, 1),
        Check("chance", "a design too small to tell said so", "braindecode fixed-length "
              "windows, 4 held-out recordings, all right", "at least", 1.0,
              _too_small_recordings, 1, 1),
    ]  # fmt: skip


# ----------------------------------------------------------------------------- table cells


def _starred(n: int, test: str) -> Callable[[int], int]:
    """A study table's cell under a cut that changes no subject's expected accuracy: each
    subject's baseline accuracy in 0.80–0.95 over 200 windows, the cut's predictions drawn
    anew with the same accuracy; how often the cell gets a star (p < 0.05, one comparison)."""

    def run(draws: int) -> int:
        rng = np.random.default_rng([n, len(test), 12])
        base = rng.uniform(0.8, 0.95, (draws, n))
        measured = rng.binomial(200, base) / 200
        masked = rng.binomial(200, base) / 200
        starred = 0
        for row_masked, row_base in zip(masked, measured):
            starred += compare_rows(row_masked[None], row_base, test)[1][0] < 0.05
        return starred

    return run


def _cell_checks() -> list[Check]:
    return [
        Check("cells", "a table cell starred where the cut changed no subject's accuracy",
              f"{n} subjects, {name}", "at most", 0.05, _starred(n, test), 1000, 40)
        for name, test in (("Mann–Whitney U (the paper's)", "mannwhitneyu"),
                           ("exact sign-flip (paired)", "permutation"))
        for n in (4, 8, 15)
    ]  # fmt: skip


FAMILIES = {
    "placement": _placement_checks,
    "claims": _claim_checks,
    "intervals": _interval_checks,
    "chance": _chance_checks,
    "cells": _cell_checks,
}


def run_checks(families: list[str], quick: bool) -> pd.DataFrame:
    """Each check of ``families`` run on its draws (``quick``: its few), one row each:
    ``family, inference, design, sense, bound, hits, draws, share, low, high, holds, seconds``
    (``low``/``high``: the share's 95 % Clopper–Pearson interval over the draws; ``holds``: the
    draws are consistent with the bound, i.e. the interval reaches it: a rate promised at most
    5 % measured 4 of 60 times holds, 12 of 60 does not)."""
    rows = []
    for family in families:
        for check in FAMILIES[family]():
            draws = check.quick if quick else check.draws
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                hits = int(check.run(draws))
            low, high = clopper_pearson(hits, draws)
            share = hits / draws
            holds = {"at most": low <= check.bound, "at least": high >= check.bound}.get(
                check.sense, True
            )
            rows.append(
                {
                    "family": family,
                    "inference": check.inference,
                    "design": check.design,
                    "sense": check.sense,
                    "bound": check.bound,
                    "hits": hits,
                    "draws": draws,
                    "share": share,
                    "low": float(low),
                    "high": float(high),
                    "holds": holds,
                    "limit": check.limit,
                    "seconds": round(time.perf_counter() - start, 1),
                }
            )
    return pd.DataFrame(rows)


def _mark(row) -> str:
    """✗ beside a share that does not reach its promise; "limit" where no method can."""
    if row.holds:
        return ""
    return " ✗ (a limit)" if getattr(row, "limit", False) else " ✗"


def markdown(table: pd.DataFrame) -> str:
    """The table as the docs page shows it."""
    lines = [
        "| inference | design | promised | measured | 95 % interval | draws |",
        "|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.inference} | {r.design} | "
            f"{'stated' if r.sense == 'stated' else f'{r.sense} {r.bound:.3g}'} | {r.share:.3f}"
            f"{_mark(r)} | {r.low:.3f}–{r.high:.3f} | {r.draws} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few draws of each check")
    parser.add_argument(
        "--only", default=",".join(FAMILIES), help=f"families, comma-separated: {list(FAMILIES)}"
    )
    args = parser.parse_args(argv)
    families = [f for f in args.only.split(",") if f]
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown or not families:  # --only '' names no family: no check, no table
        parser.error(f"--only {args.only!r}: accepted one or more of {list(FAMILIES)}")
    table = run_checks(families, args.quick)
    print(markdown(table))
    result = {
        "benchmark": "calibration",
        "quick": args.quick,
        "checks": len(table),
        "holding": int(table["holds"].sum()),
        "rows": table.to_dict(orient="records"),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
