"""The evidence for a move: when the placement check names a map, and when it says it cannot
tell.

The best-scoring map is not evidence by itself: a move is named only when a permutation test
over trials finds the held-out repetition placed differently (``p < ALPHA``), the training
repetitions show that a move could show, the map restores the repetition (within `RESTORED_Z`)
and the runner-up map is ruled out. Dead channels are left out of every score; too few live
pairs (`MIN_PAIRS`) is "cannot tell". The rules and their measured rates
(``benchmarks/calibration.py``): docs/DESIGN.md §16 and docs/trust.md."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from jaxtyping import Float, Int

from emg_lens.errors import DataFormatError

ALPHA = 0.05
"""The level at which the permutation test rejects "the held-out repetition did not move"."""
ALPHA_WHICH = 0.10
"""The level at which the runner-up map is rejected (the move itself is decided at `ALPHA`)."""
PERMUTATIONS = 1999
"""Seeded reassignments of the trials drawn at most (fewer where the p is clearly above ALPHA)."""
PERMUTATION_SEED = 0
DEAD_R = 0.1
"""A channel whose every correlation with another channel stays below this (and below a quarter
of the typical strongest of the channels that reach it) is dead."""
RESTORED_Z = 1.0
"""How far (Fisher z) below the least-fitting training repetition a map may leave the held-out
repetition and still restore it: no real move puts it back exactly (LibEMG's mirrored R_3: r
0.72 against 0.95–0.99, 0.89 below); an unfiltered wander's best map, r 0.42 against 0.99, 2.2."""
MIN_PAIRS = 3  # a map scored over fewer channel pairs says nothing
_CLIP = 1 - 1e-9  # Fisher z of a correlation of exactly ±1
_CHUNK_FLOATS = 1 << 23  # floats of one batch of draws' pair correlations: 64 MB


@dataclass(frozen=True)
class TrialSums:
    """What the check reads of each trial: its gesture (``classes``), its repetition's place
    (``groups``: 0 … k − 1 the training repetitions, k the held-out one), and the sums of its
    rectified samples, from which any set of trials' correlation matrix is rebuilt exactly."""

    classes: Int[np.ndarray, " trial"]
    groups: Int[np.ndarray, " trial"]
    count: Float[np.ndarray, " trial"]
    total: Float[np.ndarray, "trial channel"]
    products: Float[np.ndarray, "trial channel channel"]

    @classmethod
    def from_repetitions(
        cls,
        repetitions: Sequence[
            tuple[Float[np.ndarray, "_ channel"], Int[np.ndarray, " _"]]
            | tuple[Float[np.ndarray, "_ channel"], Int[np.ndarray, " _"], np.ndarray]
        ],
        window: int | None = None,
    ) -> TrialSums:
        """The trials of repetitions given as ``(signal, gesture per sample)``, or ``(signal,
        gesture, trial per sample)`` where a repetition holds several trials of a gesture, the
        training ones first and the held-out one last. Each trial is differenced (``window``:
        within each run of that many, for windows joined), then rectified about its mean.

        >>> rng = np.random.default_rng(0)
        >>> sums = TrialSums.from_repetitions([(rng.normal(size=(40, 3)), np.repeat([1, 2], 20))
        ...                                    for _ in range(3)])
        >>> sums.groups.tolist(), sums.classes.tolist(), sums.count.tolist()
        ([0, 0, 1, 1, 2, 2], [1, 2, 1, 2, 1, 2], [19.0, 19.0, 19.0, 19.0, 19.0, 19.0])
        """
        classes, groups, count, total, products = [], [], [], [], []
        for group, (x, gesture, *trial) in enumerate(repetitions):
            x, gesture = np.asarray(x, dtype=np.float64), np.asarray(gesture)
            keys = np.asarray(trial[0]) if trial else gesture
            step = keys[1:] == keys[:-1]  # consecutive samples of one trial (of one window)
            if window:
                step &= np.arange(1, len(keys)) % window != 0
            change, keys, gesture = np.diff(x, axis=0)[step], keys[1:][step], gesture[1:][step]
            for key in np.unique(keys):
                rows = keys == key
                rectified = np.abs(change[rows] - change[rows].mean(axis=0))
                classes.append(int(gesture[rows][0]))
                groups.append(group)
                count.append(float(rows.sum()))
                total.append(rectified.sum(axis=0))
                products.append(rectified.T @ rectified)
            if group not in groups:  # the check differences consecutive samples
                raise DataFormatError(
                    f"repetition {group + 1} of the check has no two consecutive samples of a trial"
                )
        return cls(
            np.asarray(classes), np.asarray(groups), np.asarray(count),
            np.stack(total), np.stack(products),
        )  # fmt: skip

    @property
    def n_groups(self) -> int:
        return int(self.groups.max()) + 1

    @property
    def n_channels(self) -> int:
        return self.total.shape[1]

    def correlations(
        self, weights: Float[np.ndarray, "batch group trial"]
    ) -> Float[np.ndarray, "batch group channel channel"]:
        """The correlation matrix of each group of trials of each draw (``weights``: how many
        times each trial counts in each group); a channel without variation gives NaN."""
        b, g, u = weights.shape
        c = self.n_channels
        n = weights @ self.count
        mean = (weights @ self.total) / n[..., None]
        second = (weights.reshape(b * g, u) @ self.products.reshape(u, c * c)).reshape(b, g, c, c)
        cov = second / n[..., None, None] - mean[..., :, None] * mean[..., None, :]
        sd = np.sqrt(np.clip(np.einsum("...ii->...i", cov), 0.0, None))
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = cov / (sd[..., :, None] * sd[..., None, :])
        corr[sd == 0] = np.nan  # rows, then columns, of a channel without variation
        corr.swapaxes(-1, -2)[sd == 0] = np.nan
        return corr

    def observed(self) -> Float[np.ndarray, "group trial"]:
        """Each trial in its own repetition: the weights of the data as recorded."""
        return (self.groups[None, :] == np.arange(self.n_groups)[:, None]).astype(np.float64)

    def distinct_held_out_sets(self) -> float:
        """How many different held-out repetitions the reassignments can make: per gesture,
        the ways of choosing its held-out trials among all its trials."""
        held = self.n_groups - 1
        ways = 1.0
        for g in np.unique(self.classes):
            of_class = self.groups[self.classes == g]
            ways *= math.comb(len(of_class), int((of_class == held).sum()))
        return ways

    def put_back(self, moved_to: Sequence[int]) -> TrialSums:
        """The held-out repetition's trials read through a map (channel j from ``moved_to[j]``)."""
        order = np.asarray(moved_to)
        held = self.groups == self.n_groups - 1
        total, products = self.total.copy(), self.products.copy()
        total[held] = total[held][:, order]
        products[held] = products[held][:, order][:, :, order]
        return TrialSums(self.classes, self.groups, self.count, total, products)


def dead_channels(sums: TrialSums) -> dict[int, str]:
    """The channels that carry no placement, by index, each with why: flat in a repetition, or
    uncorrelated with every other channel over all trials (every ``|r|`` below `DEAD_R` and a
    quarter of the median strongest among the channels that reach `DEAD_R`).

    >>> rng = np.random.default_rng(1)
    >>> common = rng.normal(size=(200, 1))
    >>> x = np.hstack([common + 0.3 * rng.normal(size=(200, 3)), rng.normal(size=(200, 1)),
    ...                np.zeros((200, 1))])
    >>> dead_channels(TrialSums.from_repetitions([(x, np.ones(200, int))] * 2))
    {3: 'correlates with no other channel (|r| <= 0.04)', 4: 'flat'}
    """
    per_group = sums.correlations(sums.observed()[None])[0]
    flat = np.isnan(np.einsum("gii->gi", per_group)).any(axis=0)
    dead = {int(c): "flat" for c in np.flatnonzero(flat)}
    pooled = sums.correlations(np.ones((1, 1, len(sums.count))))[0, 0]
    others = ~np.eye(len(pooled), dtype=bool) & ~flat[None, :]
    strongest = np.where(others, np.abs(np.nan_to_num(pooled)), 0.0).max(axis=1)
    signal = strongest[~flat]  # typical: the median of those reaching DEAD_R, where any do
    reach = signal[signal >= DEAD_R] if (signal >= DEAD_R).any() else signal
    typical = float(np.median(reach)) if len(signal) > 1 else 0.0
    for c in np.flatnonzero(~flat & (strongest < DEAD_R) & (strongest < typical / 4)):
        dead[int(c)] = f"correlates with no other channel (|r| <= {strongest[c]:.2f})"
    return dict(sorted(dead.items()))


def _z(r: np.ndarray | np.floating) -> np.ndarray:
    return np.arctanh(np.clip(r, -_CLIP, _CLIP))


class _Scorer:
    """Each map against the identity, for the held-out group (the last) of many draws at once,
    on the map's live pairs, from the trials' sums, against the mean of the other groups'. Maps
    left fewer than `MIN_PAIRS` pairs, or moving dead channels only, are not scored."""

    def __init__(self, sums: TrialSums, maps: Sequence[Sequence[int]], live: np.ndarray):
        self.sums = sums
        c = sums.n_channels
        i, j = np.triu_indices(c, 1)
        keep = live[i] & live[j]
        self.i, self.j = i[keep], j[keep]
        pair = np.full((c, c), -1)
        pair[self.i, self.j] = pair[self.j, self.i] = np.arange(len(self.i))
        u = len(sums.count)
        self.products = sums.products[:, self.i, self.j].reshape(u, -1)
        self.squares = np.einsum("uii->ui", sums.products)
        reads = [pair[np.asarray(m)[self.i], np.asarray(m)[self.j]] for m in maps]
        oks = [np.flatnonzero(read >= 0) for read in reads]  # per map: its pairs, read from
        self.unscorable = [k for k, ok in enumerate(oks) if k and len(ok) < MIN_PAIRS]
        self.maps = [(ok, read[ok]) if len(ok) >= MIN_PAIRS and (read[ok] != ok).any() else None
                     for ok, read in zip(oks, reads)]  # fmt: skip

    def _pairs(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The reference's and the held-out group's correlations of the live pairs."""
        n = weights @ self.sums.count
        mean = (weights @ self.sums.total) / n[..., None]
        var = (weights @ self.squares) / n[..., None] - mean**2
        sd = np.sqrt(np.clip(var, 0.0, None))
        second = (weights @ self.products) / n[..., None]
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = (second - mean[..., self.i] * mean[..., self.j]) / (
                sd[..., self.i] * sd[..., self.j]
            )
        return corr[:, :-1].mean(axis=1), corr[:, -1]

    def fit(self, weights: Float[np.ndarray, "batch group trial"]) -> tuple[np.ndarray, ...]:
        """``([batch, map], [batch, map])``: each map's score, the Pearson r of the reference's
        live pairs with the held-out group's put back by it (the identity's over every live
        pair), and its gain, how much better it fits than the identity on its own pairs in
        Fisher z (the identity's 0); NaN for a map not scored."""
        reference, held = self._pairs(weights)
        scores = np.full((len(weights), len(self.maps)), np.nan)
        gains = scores.copy()
        scores[:, 0], gains[:, 0] = _pearson(reference, held), 0.0
        for k, pairs in enumerate(self.maps[1:], 1):
            if pairs is not None:
                ref = reference[:, pairs[0]]
                scores[:, k] = _pearson(ref, held[:, pairs[1]])
                with np.errstate(invalid="ignore"):
                    gains[:, k] = _z(scores[:, k]) - _z(_pearson(ref, held[:, pairs[0]]))
        return scores, gains

    def gain(self, weights: Float[np.ndarray, "batch group trial"]) -> np.ndarray:
        """``[batch]``: the best non-identity map's gain."""
        return np.nan_to_num(self.fit(weights)[1][:, 1:], nan=-np.inf).max(axis=1)


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray | np.floating:
    """Pearson r of each row of ``a`` with the same row of ``b`` (a scalar for one row)."""
    a = a - a.mean(-1, keepdims=True)
    b = b - b.mean(-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (a * b).sum(-1) / np.sqrt((a * a).sum(-1) * (b * b).sum(-1))


def permutation_p(
    sums: TrialSums, maps: Sequence[Sequence[int]], live: np.ndarray, seed: int = PERMUTATION_SEED
) -> tuple[float, int]:
    """``(p, draws)``: the share of reassignments of each gesture's trials between the
    repetitions whose gain (best non-identity map over the identity) is at least the observed
    one, ``(1 + hits) / (1 + draws)``. Draws stop early once p is clearly above `ALPHA`."""
    scorer = _Scorer(sums, maps, live)
    observed = scorer.gain(sums.observed()[None])[0]
    if not np.isfinite(observed):
        return float("nan"), 0
    rng = np.random.default_rng(seed)
    groups = sums.n_groups
    by_class = [np.flatnonzero(sums.classes == g) for g in np.unique(sums.classes)]
    chunk = max(8, min(256, _CHUNK_FLOATS // (groups * max(len(scorer.i), 1))))
    hits = drawn = 0
    while drawn < PERMUTATIONS:
        size = min(chunk, PERMUTATIONS - drawn)
        labels = np.empty((size, len(sums.groups)), dtype=np.int64)
        for idx in by_class:
            labels[:, idx] = rng.permuted(
                np.broadcast_to(sums.groups[idx], (size, len(idx))), axis=1
            )
        weights = (labels[:, None, :] == np.arange(groups)[None, :, None]).astype(np.float64)
        gains = scorer.gain(weights)
        hits += int((gains >= observed - 1e-12).sum())
        drawn += size
        if (hits + 1) / (drawn + 1) > 2 * ALPHA and drawn >= 199:
            break  # clearly not significant: more draws only sharpen a p nobody acts on
    return (hits + 1) / (drawn + 1), drawn


@dataclass(frozen=True)
class Evidence:
    """What the check found for one held-out repetition: ``decision`` (``"moved"``, ``"no
    move"`` or ``"cannot tell"``) and ``reason``; the maps' scores (Pearson r), the best and
    the runner-up; ``p`` (NaN where not run) and ``p_runner_up`` (after putting it back by
    the runner-up); ``null_identity`` (each training repetition's identity score against the
    others) and ``null_margin`` (its margin over its best other map, in Fisher z); the
    `dead_channels`; the permutation test's ``draws``."""

    decision: str
    reason: str
    scores: tuple[float, ...]
    best: int
    runner_up: int | None
    p: float
    p_runner_up: float
    null_identity: tuple[float, ...]
    null_margin: tuple[float, ...]
    dead: dict[int, str]
    draws: int


def _loo(sums: TrialSums, scorer: _Scorer) -> tuple[list[float], list[float], list[int]]:
    """Each training repetition checked against the mean of the others: its identity score, its
    margin (the identity over the best other map, `_Scorer.gains`) and that best other map."""
    identity, margin, rival = [], [], []
    observed = sums.observed()
    training = sums.n_groups - 1
    for j in range(training if training > 1 else 0):
        weights = observed[[k for k in range(training) if k != j] + [j]][None]
        scores, gains = scorer.fit(weights)
        others = np.nan_to_num(gains[0, 1:], nan=-np.inf)
        identity.append(float(scores[0, 0]))
        margin.append(float(-others.max()))
        rival.append(1 + int(np.argmax(others)))
    return identity, margin, rival


def weigh(
    sums: TrialSums,
    maps: Sequence[Sequence[int]],
    names: Sequence[str],
    training: Sequence[str] | None = None,
) -> Evidence:
    """The evidence for each map of ``maps`` (``maps[0]`` the identity, ``names`` in words)
    from a held-out repetition's trials and the training repetitions' (`TrialSums`, named in
    ``training`` for the reasons), decided as the module docstring says.

    >>> rng = np.random.default_rng(0)
    >>> gains = rng.uniform(0.2, 2.0, (5, 6))  # 5 gestures, each its own pattern on 6 electrodes
    >>> maps = [((np.arange(6) + s) % 6).tolist() for s in range(6)]  # the ring's rotations
    >>> names = ["identity"] + [f"rotation by {s}" for s in range(1, 6)]
    >>> def repetition(moved_to):  # electrode j's signal recorded on channel moved_to[j]
    ...     x = np.concatenate([rng.normal(size=(300, 6)) * gains[g] for g in range(5)])
    ...     recorded = np.empty_like(x)
    ...     recorded[:, list(moved_to)] = x
    ...     return recorded, np.repeat(np.arange(5), 300)
    >>> train = [repetition(maps[0]) for _ in range(3)]
    >>> moved = weigh(TrialSums.from_repetitions([*train, repetition(maps[2])]), maps, names)
    >>> moved.decision, names[moved.best], moved.p < 0.05
    ('moved', 'rotation by 2', True)
    >>> still = weigh(TrialSums.from_repetitions([*train, repetition(maps[0])]), maps, names)
    >>> still.decision, names[still.best]
    ('no move', 'identity')
    """
    dead = dead_channels(sums)
    live = np.ones(sums.n_channels, bool)
    live[list(dead)] = False
    scorer = _Scorer(sums, maps, live)  # each map's r, and its gain over the identity
    scores, gains = np.full((2, len(maps)), np.nan)
    if live.sum() >= 3:
        scores, gains = (x[0] for x in scorer.fit(sums.observed()[None]))
    left_out = f"; dead channels left out: {_named(dead)}" if dead else ""
    null_identity: list[float] = []  # the leave-one-out null, once computed (_loo)
    null_margin: list[float] = []

    def evidence(decision, reason, best, runner_up=None, p=np.nan, p2=np.nan, draws=0):
        return Evidence(decision, reason + left_out, tuple(float(s) for s in scores), best,
                        runner_up, float(p), float(p2), tuple(null_identity),
                        tuple(null_margin), dead, draws)  # fmt: skip

    if int(live.sum()) < 3 or not np.isfinite(scores[0]):  # before any score is compared
        return evidence(
            "cannot tell",
            f"too few channels that carry a signal: {int(live.sum())} of {sums.n_channels}; "
            "the check needs at least 3 whose correlations differ",
            0,
        )
    if scorer.unscorable:  # maps no score can rule out: neither a move nor its absence shows
        out = ", ".join(names[k] for k in scorer.unscorable)
        why = f"fewer than {MIN_PAIRS} pairs of live channels to score {out}"
        return evidence("cannot tell", f"{why}: the data can rule none of them out", 0)
    null_identity, null_margin, rivals = _loo(sums, scorer)
    null = _z(np.asarray(null_identity or [np.nan]))  # the training repetitions: the null
    low, width = float(null.min()), max(float(null.max() - null.min()), 0.1)
    z = _z(scores)
    ranked = [int(i) for i in np.argsort(-np.nan_to_num(gains, nan=-np.inf), kind="stable")]
    best = ranked[0] if gains[ranked[0]] > 1e-12 else 0
    same = np.tanh(z[best] - gains[best])  # the identity's r on the best map's channel pairs
    fits = f"r {scores[best]:.2f}" + (f" against the identity's {same:.2f}" if best else "")
    spread = _spread(null_identity)
    unclear = int(np.argmin(null_margin)) if null_margin else None  # the least clear one
    if unclear is not None and not null_margin[unclear] > 0:
        named = training or [str(j + 1) for j in range(len(null_margin))]
        rival, odd = (  # with two, each is the other's reference: neither is blamed
            (f"training repetitions {' and '.join(named)}, checked against each other, fit",
             "one of them moved; with two, which one cannot be said: add a third")
            if len(named) == 2 else
            (f"training repetition {named[unclear]}, checked against the others, fits",
             "check that repetition against the others, or leave it out")
        )  # fmt: skip
        rival += f" {names[rivals[unclear]]}"
        if null_margin[unclear] < -0.1:  # clearly better than the identity: one moved
            why = (f"{rival} better than the identity: the training repetitions do not share "
                   f"one placement ({odd})")  # fmt: skip
        else:
            why = (
                f"the placement's maps are not told apart even where nothing moved: {rival} as "
                "well as the identity (weak spatial structure, a dead channel or a "
                "near-symmetric placement)"
            )
        return evidence("cannot tell", f"{names[best]} fits best ({fits}), but {why}", best)
    if best == 0:
        return evidence("no move", f"the identity fits best ({fits}{spread})", 0)
    if null_identity and not z[best] >= low - max(width, RESTORED_Z):
        return evidence(
            "cannot tell",
            f"the repetition differs, no map restores it: {names[best]} fits best ({fits}), "
            f"short of how the training repetitions fit each other ({spread[2:]}; a move is a "
            f"map that puts the repetition back within {RESTORED_Z} of their lowest in Fisher "
            "z, or within their own range)",
            best,
        )
    ways = sums.distinct_held_out_sets()
    if ways < 1 / ALPHA:
        return evidence(
            "cannot tell",
            f"{names[best]} fits best ({fits}), but the repetitions' {len(sums.classes)} trials "
            f"can be reassigned in only {ways:.0f} ways, too few for p < {ALPHA}: more "
            "repetitions or gestures are needed",
            best,
        )
    p, draws = permutation_p(sums, maps, live)
    if not p < ALPHA:
        return evidence(
            "cannot tell",
            f"{names[best]} fits best ({fits}{spread}), but reassigning the trials between the "
            f"repetitions gives as large a gain over the identity in p = {p:.3g} of {draws} "
            f"draws (a move needs p < {ALPHA})",
            best, p=p, draws=draws,
        )  # fmt: skip
    gain = f"p = {p:.3g} of {draws} reassignments of the trials"
    if not null_identity:
        gain += "; one training repetition: how well unmoved ones fit each other is unmeasured"
    runner = next((i for i in ranked if i not in (best, 0) and np.isfinite(gains[i])), None)
    if runner is None:  # two maps (the scalp's): the identity was the only other one
        return evidence("moved", f"{names[best]} ({fits}{spread}; {gain})", best, p=p,
                        draws=draws)  # fmt: skip
    runner_up = f"the runner-up, {names[runner]}, r {scores[runner]:.2f}"
    # told apart: the best puts it back within the null's width, the runner-up stays short of
    # both by more; or its gain beats the runner-up's by the margins or twice the null's width
    apart = gains[best] - gains[runner]
    told = z[best] >= low - width and z[runner] < min(low, z[best]) - width
    if null_identity and (told or apart >= min(2 * width, max(min(null_margin), 0.1))):
        return evidence(
            "moved",
            f"{names[best]} ({fits}{spread}; {gain}; {runner_up}, told apart: it fits short of the "
            "best by more than the training repetitions' own spread or margins)",
            best, runner, p, draws=draws,
        )  # fmt: skip
    # put back by the runner-up, a dead channel sits where the runner-up read it from
    back = live & live[np.asarray(maps[runner])]
    p2, _ = permutation_p(sums.put_back(maps[runner]), maps, back, seed=PERMUTATION_SEED + 1)
    if not p2 < ALPHA_WHICH:
        return evidence(
            "cannot tell",
            f"moved ({gain}), but {names[best]} ({fits}) and {names[runner]} (r "
            f"{scores[runner]:.2f}) are not told apart: put back by {names[runner]} the "
            f"repetition no longer looks moved (p = {p2:.3g})",
            best, runner, p, p2, draws,
        )  # fmt: skip
    return evidence(
        "moved",
        f"{names[best]} ({fits}{spread}; {gain}; {runner_up}, rejected: put back by it the "
        f"repetition still looks moved, p = {p2:.3g})",
        best, runner, p, p2, draws,
    )  # fmt: skip


def _spread(null_identity: Sequence[float]) -> str:
    if not null_identity:
        return ""
    low, high = min(null_identity), max(null_identity)
    span = f"{low:.2f}" if high - low < 0.005 else f"{low:.2f}–{high:.2f}"
    return f"; training repetitions against each other: identity r {span}"


def _named(dead: dict[int, str]) -> str:
    return ", ".join(f"channel {c + 1} ({why})" for c, why in dead.items())


def check_signal(x: np.ndarray, what: str) -> None:
    """A repetition's signal must hold at least 3 samples of finite values."""
    if len(x) < 3 or not np.isfinite(x).all():
        raise DataFormatError(
            f"{what} holds {len(x)} samples, {int((~np.isfinite(x)).sum())} values NaN or Inf: the "
            "placement check correlates channels over time, which needs at least 3 finite samples"
        )
