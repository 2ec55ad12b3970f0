"""The designs `calibration.py` simulates: recordings whose truth is known (an electrode placement
that did or did not move), run through the project's own functions.

Placements (`placement_recording`): electrodes on a montage of `emg_lens.geometry` (a ring of 8,
a rectangular HD-sEMG grid, the 10-20 scalp), muscle or cortical *sources* at random places under
them, each seen by an electrode with a gain that falls with distance (a Gaussian of ``width``).
Each gesture drives its own random subset of sources at random strengths; a trial's samples are
the sources' independent white carriers times that strength, mixed through the gains, plus each
electrode's own noise; each repetition holds one trial of every gesture, so repetitions differ
only by noise (nothing but chance separates a held-out repetition that did not move from the
training ones). What makes a placement hard to read, each a scenario:

- ``dead``: electrodes that carry noise only (a loose or broken contact: the channel stays dead
  wherever the band sits);
- ``crosstalk``: each electrode also picks up a share of its montage neighbours' signals
  (``x + c·(left + right)`` round a ring, the 4 neighbours on a grid);
- ``sources``/``noise``: few sources and much noise (weak spatial structure);
- ``flat``: electrodes that record nothing (a constant: an amplifier channel off);
- ``wander``: the held-out repetition rides on a 0.3 Hz baseline wander (a sine of random
  phase per channel, ``wander`` times the channel's spread, continuous over the repetition);
- ``gain_drift``: each channel's gain drifts over the held-out repetition, linearly from 1 to a
  value drawn in ``1 ± gain_drift`` (skin contact changing);

none of which moves an electrode. The held-out repetition (the last) is recorded under
``moved`` (a `ChannelMap`: electrode j's signal on channel ``moved_to[j]``), or, with
``moved_repetition``, that training repetition is; the dead and flat channels dead after the
move.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emg_lens.data.recording import Recording
from emg_lens.geometry import Montage, grid, ring, scalp
from emg_lens.geometry.symmetry import ChannelMap, montage_maps

TEN_TWENTY = ["Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T7", "C3", "Cz", "C4", "T8", "P7",
              "P3", "Pz", "P4", "P8", "O1", "O2"]  # fmt: skip

MONTAGES = {
    "ring of 8": Montage((ring("armband", 8),)),
    "ring of 16": Montage((ring("armband", 16),)),
    "13 x 5 grid": Montage((grid("grid", 13, 5, 8.0),)),
    "8 x 8 grid": Montage((grid("grid", 8, 8, 10.0),)),
    "10-20 scalp": Montage((scalp(TEN_TWENTY),)),
}
"""The placements simulated: an armband, an HD-sEMG grid, an EEG cap."""

MNE_SCALP = "10-20 scalp at MNE's standard_1020 positions"
WIDTH = {
    "ring of 8": 0.9,
    "ring of 16": 0.9,
    "13 x 5 grid": 14.0,
    "8 x 8 grid": 17.5,
    "10-20 scalp": 0.35,
    MNE_SCALP: 0.35,
}
"""How far a source is seen, in the part's units (ring: radius 1; grid: mm; scalp: map)."""


@dataclass(frozen=True)
class Placement:
    """One simulated placement design: the montage's name, how many sources, the electrodes'
    noise (relative to a source's unit carrier), dead (noise-only) and flat electrodes,
    neighbour crosstalk, the held-out repetition's baseline wander and gain drift, and which
    repetition a move is recorded in (0: the held-out one)."""

    montage: str = "ring of 8"
    sources: int = 6
    noise: float = 0.3
    dead: tuple[int, ...] = ()
    flat: tuple[int, ...] = ()
    crosstalk: float = 0.0
    wander: float = 0.0
    gain_drift: float = 0.0
    moved_repetition: int = 0
    gestures: int = 6
    repetitions: int = 4
    samples: int = 400


def _positions(montage: Montage) -> np.ndarray:
    (part,) = montage.parts
    return np.asarray(part.xy, dtype=float)


def _neighbours(montage: Montage) -> np.ndarray:
    """``[electrode, electrode]``: 1 between montage neighbours (ring: adjacent; grid: the 4
    adjacent cells; scalp: the 3 nearest)."""
    (part,) = montage.parts
    n = len(part.electrodes)
    near = np.zeros((n, n))
    if part.kind == "ring":
        for e in range(n):
            near[e, (e + 1) % n] = near[e, (e - 1) % n] = 1
    elif part.kind == "grid":
        at = {cell: i for i, cell in enumerate(part.cells)}
        for i, (r, c) in enumerate(part.cells):
            for cell in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if cell in at:
                    near[i, at[cell]] = 1
    else:
        xy = _positions(montage)
        d = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(n) * 1e9
        for e in range(n):
            near[e, np.argsort(d[e])[:3]] = 1
    return near


def montage_of(name: str) -> Montage:
    """A simulated montage by name (`MONTAGES`, and the 10-20 scalp at MNE's positions)."""
    return mne_scalp() if name == MNE_SCALP else MONTAGES[name]


def placement_recording(
    design: Placement, seed: int, moved: ChannelMap | None = None
) -> tuple[Recording, Montage]:
    """A recording of ``design`` (repetitions 1..R, the last held out) and its montage; the
    held-out repetition (or ``design.moved_repetition``) recorded under ``moved`` (None: as
    the others)."""
    rng = np.random.default_rng(seed)
    montage = montage_of(design.montage)
    xy = _positions(montage)
    n = len(xy)
    low, high = xy.min(0), xy.max(0)
    if design.montage.startswith("ring"):  # sources under the ring, at random angles
        angle = rng.uniform(0, 2 * np.pi, design.sources)
        where = np.c_[np.sin(angle), np.cos(angle)]
    else:
        where = rng.uniform(low, high, (design.sources, 2))
    distance = np.linalg.norm(xy[:, None] - where[None], axis=-1)
    gain = np.exp(-(distance**2) / (2 * WIDTH[design.montage] ** 2))
    mixing = np.eye(n) + design.crosstalk * _neighbours(montage)
    strength = rng.uniform(0.2, 1.0, (design.gestures, design.sources))
    strength *= rng.uniform(size=strength.shape) < 0.6
    x, stimulus, repetition = [], [], []
    moved_in = design.moved_repetition or design.repetitions
    for rep in range(1, design.repetitions + 1):
        for g in range(design.gestures):
            carriers = rng.standard_normal((design.samples, design.sources)) * strength[g]
            trial = (carriers @ gain.T) @ mixing.T
            trial += design.noise * rng.standard_normal((design.samples, n))
            if rep == moved_in and moved is not None:
                recorded = np.empty_like(trial)
                recorded[:, list(moved.moved_to)] = trial
                trial = recorded
            for d in design.dead:
                trial[:, d] = design.noise * rng.standard_normal(design.samples)
            trial[:, list(design.flat)] = 1.0
            x.append(trial)
            stimulus += [g + 1] * design.samples
            repetition += [rep] * design.samples
    held = np.concatenate(x[-design.gestures :])  # the held-out repetition, drifted in place
    t = np.arange(len(held))[:, None] / 1000.0
    if design.wander:
        phase = rng.uniform(0, 2 * np.pi, n)
        held += design.wander * held.std(axis=0) * np.sin(2 * np.pi * 0.3 * t + phase)
    if design.gain_drift:
        end = rng.uniform(1 - design.gain_drift, 1 + design.gain_drift, n)
        held *= 1 + (end - 1) * t / t[-1]
    x[-design.gestures :] = np.split(held, design.gestures)
    signal = np.concatenate(x).astype(np.float32)
    recording = Recording(
        seed, {"emg": signal}, 1000.0, np.asarray(stimulus), np.asarray(repetition),
        source=f"simulated {design.montage}",
    )  # fmt: skip
    return recording, montage


def moves_of(montage_name: str) -> list[ChannelMap]:
    """The real moves simulated on a montage: every map but the identity."""
    return [m for m in montage_maps(montage_of(montage_name)) if not m.is_identity]


# ----------------------------------------------------------------------------- subjects


def subject_changes(
    kind: str, n: int, rng: np.random.Generator, base: np.ndarray | None = None
) -> np.ndarray:
    """Each of ``n`` subjects' true change of accuracy, in % of its baseline, under a design:

    - ``"zero-inflated"``: 70 % of subjects exactly unchanged, the others losing all of it
      (a mean loss of 30 %: a cut that removes what some subjects rely on and leaves the
      others alone);
    - ``"on the margin"``: every subject −5 %, spread by 2 points (normal);
    - ``"skewed"``: no change on average, a lognormal spread (most a little up, a few far down);
    - ``"rare subgroup"``: 10 % of subjects lose 41–71 %, the rest 1 % (the shape of notebook
      06's subjects: the one that learned the XOR loses it, the others barely move);
    - ``"heavy-tailed"``: −5 % on average, spread as Student's t with 3 degrees of freedom
      (scale 2 points);
    - ``"exponential"``, ``"lognormal"``, ``"gamma"``: losses of mean 5 % (a keep's margin)
      skewed towards large ones, as cuts' effects are (most subjects lose a little, a few a
      lot): exponential (skewness −2), lognormal of σ 0.9 (−4.7) and Gamma of shape 2, scale
      2.5 (−1.4); ``"lognormal, σ 1"`` (skewness −6.2): beyond what the claims assume;
    - ``"half the margin"``: every subject −2.5 %, spread by 2 points (a true keep: power);
    - ``"moderate subgroup"``: 30 % of subjects lose 10 % (twice the margin), the rest nothing
      (a mean of −3 %: a keep on the mean is true, and its reach says how large a subgroup
      losing 10 % its lower bound leaves room for);
    - ``"two clusters"``: half of the subjects unchanged, the other half losing 10 % (the mean
      −5 %, symmetric, but a change part of the subjects carry);
    - ``"proportional"``: the change grows with the subject's baseline accuracy ``base`` (in
      0.80–0.95): from 0 at 0.80 to −10 % at 0.95, ± 1 point; the subjects' mean change is −5 %
      and the ratio of their mean accuracies −5.14 %, so a table's Δ% (the ratio of means) and
      a claim's (the mean of ratios) measure two things here.
    """
    if kind == "zero-inflated":
        return np.where(rng.uniform(size=n) < 0.3, -100.0, 0.0)
    if kind == "on the margin":
        return -5.0 + rng.normal(0.0, 2.0, n)
    if kind == "skewed":
        loss = rng.lognormal(1.0, 1.0, n)
        return np.exp(1.5) - loss  # E[lognormal(1, 1)] = e^1.5: mean 0
    if kind == "rare subgroup":
        return np.where(rng.uniform(size=n) < 0.1, -rng.uniform(41.0, 71.0, n), -1.0)
    if kind == "heavy-tailed":
        return -5.0 + 2.0 * rng.standard_t(3, n)
    if kind == "exponential":
        return -rng.exponential(5.0, n)
    if kind == "lognormal":
        return -rng.lognormal(np.log(5.0) - 0.9**2 / 2, 0.9, n)
    if kind == "lognormal, σ 1":
        return -rng.lognormal(np.log(5.0) - 0.5, 1.0, n)
    if kind == "gamma":
        return -rng.gamma(2.0, 2.5, n)
    if kind == "half the margin":
        return -2.5 + rng.normal(0.0, 2.0, n)
    if kind == "moderate subgroup":
        return np.where(rng.uniform(size=n) < 0.3, -10.0, 0.0)
    if kind == "two clusters":
        return np.where(rng.uniform(size=n) < 0.5, 0.0, -10.0)
    if kind == "proportional":
        return -(200.0 / 3.0) * (np.asarray(base) - 0.8) + rng.normal(0.0, 1.0, n)
    raise ValueError(kind)


POPULATION_CHANGE = {
    "zero-inflated": 0.3 * -100.0,
    "on the margin": -5.0,
    "skewed": 0.0,
    "rare subgroup": 0.1 * -(41.0 + 71.0) / 2 + 0.9 * -1.0,
    "heavy-tailed": -5.0,
    "exponential": -5.0,
    "lognormal": -5.0,
    "gamma": -5.0,
    "lognormal, σ 1": -5.0,
    "half the margin": -2.5,
    "moderate subgroup": -3.0,
    "two clusters": -5.0,
    # the ratio of means, E[b c] / E[b] with b uniform in 0.80-0.95: -(200/3)(E[b²] - 0.8 E[b])
    # / E[b] = -(200/3)(0.7675 - 0.7) / 0.875
    "proportional": -(200.0 / 3.0) * (0.7675 - 0.7) / 0.875,
}
"""The mean change of the whole population each design of `subject_changes` draws from (a
subject's change is independent of its baseline, so it is also the population's ratio-of-means
Δ%): what an interval over the drawn subjects should cover, not the drawn subjects' own mean."""


def claim_counts(
    changes: np.ndarray, rng: np.random.Generator, trials: int = 20, windows: int = 10
) -> list[dict]:
    """A study's cells of one class for subjects whose true change is ``changes`` (% of
    baseline), the cut and the baseline scored on the same windows as a study scores them:
    each subject's baseline accuracy drawn in [0.8, 0.95], ``trials`` test trials of
    ``windows`` windows each, a trial's windows right with the trial's own probability (a beta
    of concentration 10 about the subject's accuracy); under the cut each right window turns
    wrong with probability ``−change / 100`` (a rise turns wrong windows right), so a subject
    whose change is 0 scores exactly its baseline. The cells hold the trials."""
    rows = []
    for s, change in enumerate(changes, 1):
        accuracy = rng.uniform(0.8, 0.95)
        p_trial = rng.beta(10 * accuracy, 10 * (1 - accuracy), trials)
        right = rng.uniform(size=(trials, windows)) < p_trial[:, None]
        flip = rng.uniform(size=right.shape)
        if change <= 0:
            cut = right & (flip >= -change / 100)
        else:
            cut = right | (flip < min(1.0, accuracy * change / 100 / (1 - accuracy)))
        for name, mode, layers, hits in (("baseline", "none", "", right), ("cut", "all", "0", cut)):
            per_trial = hits.sum(axis=1)
            rows.append(
                {
                    "subject": s, "intervention": name, "mode": mode, "layer": None,
                    "layers": layers, "heads": "all", "key": name,
                    "class_correct": [int(per_trial.sum())], "class_total": [windows * trials],
                    "trial_class": [0] * trials, "trial_windows": [windows] * trials,
                    "trial_hits": per_trial.tolist(),
                }
            )  # fmt: skip
    return rows


def class_trials(
    accuracy: float, trials: int, rng: np.random.Generator, concentration: float, windows: int = 9
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One class's held-out trials: each trial's windows right with the trial's own probability
    (a beta of ``concentration`` about ``accuracy``: low is polarised, trials all right or all
    wrong; high, trials alike); ``(trial_class, trial_windows, trial_hits)``."""
    if concentration == float("inf"):
        p = np.full(trials, accuracy)
    else:
        p = rng.beta(concentration * accuracy, concentration * (1 - accuracy), trials)
    return np.zeros(trials, int), np.full(trials, windows), rng.binomial(windows, p)


def per_trial_chance(
    n_classes: int, reps: int, rng: np.random.Generator, windows: int = 9
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A model at chance *per trial*: each trial's windows all predicted one class, drawn at
    random (right with probability 1 / n_classes), so its windows are correct or wrong together
    (``pred, y, trials``)."""
    n = n_classes * reps
    y = np.repeat(np.arange(n) % n_classes, windows)
    trials = np.repeat(np.arange(n), windows)
    guess = rng.integers(0, n_classes, n)
    return guess[trials], y, trials


# ----------------------------------------------------------------------------- EEG objects


def _braindecode_recordings(recordings: int, samples: int, target: bool = False):
    """``recordings`` braindecode recordings of one subject, 4 EEG channels of white noise at
    100 Hz, ``samples`` long, each a session of its own; ``target``: each labelled by its
    description's target (0, 1, 0, ...: one label per recording)."""
    import mne
    from braindecode import datasets

    recording = getattr(datasets, "RawDataset", None) or datasets.BaseDataset
    parts = []
    for r in range(recordings):
        info = mne.create_info(["C3", "Cz", "C4", "Pz"], 100.0, "eeg")
        signal = np.random.default_rng(r).standard_normal((4, samples))
        raw = mne.io.RawArray(signal, info, verbose=False)
        description = {"subject": 1, "session": str(r), "target": r % 2}
        parts.append(recording(raw, description, target_name="target" if target else None))
    return datasets.BaseConcatDataset(parts)


def braindecode_subject(recordings: int = 3, trials: int = 20):
    """One subject read the way an EEG user's data arrive: a braindecode windows dataset
    (``create_windows_from_events``: ``recordings`` recordings of 4 channels at 100 Hz, each
    ``trials`` 2-s trials, cut into 0.5-s windows every 0.1 s, 16 overlapping windows a trial)
    through `emg_lens.data.preprocess.SubjectData.from_windows_dataset`."""
    import mne
    from braindecode.preprocessing import create_windows_from_events

    from emg_lens.data.preprocess import SubjectData

    concat = _braindecode_recordings(recordings, trials * 300 + 100)
    for part in concat.datasets:
        labels = ["left", "right"] * (trials // 2)
        part.raw.set_annotations(mne.Annotations(np.arange(trials) * 3.0, 2.0, labels))
    windows = create_windows_from_events(
        concat,
        trial_start_offset_samples=0,
        trial_stop_offset_samples=0,
        mapping={"left": 0, "right": 1},
        window_size_samples=50,
        window_stride_samples=10,
    )
    (subject,) = SubjectData.from_windows_dataset(windows)
    return subject


def braindecode_fixed_subject(recordings: int = 20, seconds: float = 4.0):
    """One subject of braindecode's ``create_fixed_length_windows`` (one label per recording,
    as TUH-abnormal or resting-state data give it): ``recordings`` recordings of 4 channels at
    100 Hz, ``seconds`` long, half of each class, cut into 0.5-s windows every 0.1 s, through
    `SubjectData.from_windows_dataset` (the last 20 % of each class's recordings held out)."""
    from braindecode.preprocessing import create_fixed_length_windows

    from emg_lens.data.preprocess import SubjectData

    concat = _braindecode_recordings(recordings, int(seconds * 100), target=True)
    windows = create_fixed_length_windows(
        concat, window_size_samples=50, window_stride_samples=10, on_last_window="drop"
    )
    (subject,) = SubjectData.from_windows_dataset(windows)
    return subject


def braindecode_two_class_subject(held_out: int = 12, seconds: float = 4.0):
    """One subject of recordings that each hold two classes (as sleep stages or task blocks
    give them): ``5 * held_out`` recordings of 4 EEG channels at 100 Hz, ``seconds`` long,
    the first half of each of one class and the second of the other (0 then 1, or 1 then 0
    in turn), labelled by a misc channel and cut by braindecode's
    ``create_fixed_length_windows(..., targets_from="channels")`` into 0.5-s windows every
    0.1 s, through `SubjectData.from_windows_dataset` (``held_out`` recordings held out,
    whole)."""
    import mne
    from braindecode import datasets
    from braindecode.preprocessing import create_fixed_length_windows

    from emg_lens.data.preprocess import SubjectData

    recording = getattr(datasets, "RawDataset", None) or datasets.BaseDataset
    parts, samples = [], int(seconds * 100)
    for r in range(5 * held_out):
        info = mne.create_info(["C3", "Cz", "C4", "Pz", "stage"], 100.0, ["eeg"] * 4 + ["misc"])
        signal = np.random.default_rng(r).standard_normal((5, samples))
        signal[4] = np.repeat([r % 2, 1 - r % 2], [samples // 2, samples - samples // 2])
        parts.append(recording(mne.io.RawArray(signal, info, verbose=False), {"subject": 1}))
    windows = create_fixed_length_windows(
        datasets.BaseConcatDataset(parts), window_size_samples=50, window_stride_samples=10,
        on_last_window="drop", targets_from="channels", last_target_only=True,
    )  # fmt: skip
    (subject,) = SubjectData.from_windows_dataset(windows)
    return subject


def mne_scalp(names: list[str] = TEN_TWENTY) -> Montage:
    """The 10-20 electrodes at MNE's ``standard_1020`` positions (not exactly mirror-symmetric),
    placed on the scalp as `emg_lens.data.epochs` places an ``mne.Epochs``'s montage."""
    import mne

    from emg_lens.data.epochs import scalp_placement

    # MNE 1.13 renamed it colin27_1020 (the same positions) and drops the old name in 1.14
    kind = "colin27_1020"
    if kind not in mne.channels.get_builtin_montages():
        kind = "standard_1020"
    positions = mne.channels.make_standard_montage(kind).get_positions()
    montage = scalp_placement(names, dict(positions["ch_pos"]), str(positions["coord_frame"]))
    assert montage is not None, names
    return montage
