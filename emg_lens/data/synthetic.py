"""Synthetic NinaPro-DB2-shaped recordings with *planted* multimodal structure.

Each subject performs every gesture ``n_repetitions`` times (DB2: 6), each repetition a
``movement_seconds`` movement followed by rest, recorded by 12 sEMG channels and 12 three-axis
accelerometers (36 ACC channels) at 2 kHz — the DB2 montage. Gestures come in three kinds, in
proportions set by `SyntheticSpec`:

- ``"emg"`` gestures differ only in their sEMG activation pattern (ACC shows a shared posture);
- ``"acc"`` gestures differ only in limb posture, i.e. ACC orientation (sEMG shows a shared
  pattern);
- ``"interaction"`` gestures are told apart only by the *combination* of the two. With
  ``k = 2^j`` interaction gestures, the sEMG channels and the accelerometers are each split
  into ``j`` groups (electrode ``i``'s accelerometer sits on electrode ``i``); in repetition
  ``r`` muscle group ``i`` is active when bit ``i`` of ``r mod k`` is set, and sensor group
  ``i`` is tilted when that bit XOR bit ``i`` of the gesture index is set. Over repetitions
  every activation code and every posture code occurs equally often for every interaction
  gesture, so **each modality alone carries no information about which interaction gesture
  it is** (chance is ``1/k`` among them), while the gesture is, bit by bit, the XOR of a
  muscle group's activity and the tilt of the sensors on those same electrodes. With DB2's
  split (train 1, 3, 4, 6; test 2, 5) and ``k <= 4`` the training repetitions contain every
  code the test repetitions use.

This is the ground truth the tests and the demo use: a model must route information between
modalities (cross-modal attention edges) to recognise interaction gestures, and needs no
cross-modal edges for the others.

>>> recs = generate_recordings(SyntheticSpec(n_subjects=1, movement_seconds=0.5))
>>> rec = recs[0]
>>> rec.modalities
{'emg': 12, 'acc': 36}
>>> rec.gestures == list(range(1, 13)), sorted(set(rec.repetition.tolist()))
(True, [0, 1, 2, 3, 4, 5, 6])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import signal as sps

from emg_lens.data.preprocess import PreprocessSpec
from emg_lens.data.recording import Recording
from emg_lens.errors import ConfigError

__all__ = [
    "GESTURE_KINDS",
    "SyntheticSpec",
    "demo_setup",
    "generate_recordings",
    "gesture_kinds",
    "muscle_noise",
    "onset_ramp",
    "planted_setup",
    "slow_noise",
]

GESTURE_KINDS = ("emg", "acc", "interaction")


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of the synthetic dataset; every field is documented at its default."""

    n_subjects: int = 4
    n_emg_gestures: int = 4  # separable from sEMG alone
    n_acc_gestures: int = 4  # separable from ACC alone
    n_interaction_gestures: int = 4  # separable only from sEMG x ACC together
    n_repetitions: int = 6  # as in NinaPro DB2
    movement_seconds: float = 2.0  # DB2 movements last ~5 s; 2 s keeps the demo small
    rest_seconds: float = 0.5
    sample_rate: float = 2000.0
    n_emg: int = 12  # sEMG electrodes
    n_acc_sensors: int = 12  # 3-axis accelerometers, one per electrode -> 36 channels
    pattern_contrast: float = 1.0  # how far apart gesture patterns are (0 = identical)
    noise: float = 0.15  # additive sensor noise, relative to the signal scale
    subject_variability: float = 0.3  # how much subjects' patterns differ from each other
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_subjects", "n_repetitions", "n_emg", "n_acc_sensors"):
            if getattr(self, name) < 1:
                raise ConfigError(f"SyntheticSpec.{name} must be >= 1, got {getattr(self, name)}")
        counts = (self.n_emg_gestures, self.n_acc_gestures, self.n_interaction_gestures)
        if min(counts) < 0 or sum(counts) < 2:
            raise ConfigError(
                "SyntheticSpec gesture counts (n_emg_gestures, n_acc_gestures, "
                f"n_interaction_gestures) must be >= 0 and sum to >= 2, got {counts}"
            )
        k = self.n_interaction_gestures
        if k and (k < 2 or k & (k - 1)):
            raise ConfigError(
                f"SyntheticSpec.n_interaction_gestures must be 0 or a power of two >= 2 (one "
                f"bit per muscle/sensor group), got {k}"
            )
        if k and max(1, k.bit_length() - 1) > min(self.n_emg, self.n_acc_sensors):
            raise ConfigError("SyntheticSpec has too few electrodes for its interaction bits")
        if self.movement_seconds <= 0 or self.rest_seconds < 0:
            raise ConfigError("SyntheticSpec.movement_seconds must be > 0 and rest_seconds >= 0")

    @property
    def n_gestures(self) -> int:
        return self.n_emg_gestures + self.n_acc_gestures + self.n_interaction_gestures

    def to_dict(self) -> dict:
        return asdict(self)


def gesture_kinds(spec: SyntheticSpec) -> dict[int, str]:
    """Gesture label (1-based) -> kind (``"emg"``, ``"acc"`` or ``"interaction"``).

    >>> gesture_kinds(SyntheticSpec(n_emg_gestures=1, n_acc_gestures=1,
    ...                             n_interaction_gestures=2))
    {1: 'emg', 2: 'acc', 3: 'interaction', 4: 'interaction'}
    """
    kinds = (
        ["emg"] * spec.n_emg_gestures
        + ["acc"] * spec.n_acc_gestures
        + ["interaction"] * spec.n_interaction_gestures
    )
    return {g + 1: kind for g, kind in enumerate(kinds)}


def planted_setup(n_subjects: int = 2, seed: int = 0) -> tuple[SyntheticSpec, PreprocessSpec]:
    """The dataset on which trained IsoNets show the planted structure, and how to cut it.

    Three changes from the DB2-shaped default, each found by training IsoNets on the data:

    - Twelve repetitions, split as DB2's pattern twice (train 1, 3, 4, 6, 7, 9, 10, 12; test
      2, 5, 8, 11). Interaction gesture ``m`` in repetition ``r`` uses activation code
      ``r mod 4``, so DB2's six repetitions show each (code, gesture) pair once in training,
      and models memorise repetitions instead of learning the XOR (train accuracy 1.0, test
      ~0.5 on the interaction gestures); twelve show every pair twice.
    - The sEMG envelope (10 Hz low-pass of the rectified signal): on raw rectified windows the
      per-channel embeddings fit the noise of each repetition and the XOR still does not
      generalise.
    - 24 sEMG electrodes beside the 12 three-axis accelerometers (36 ACC channels), so neither
      modality dominates the mean over tokens that IsoNet's second head reads.

    Two gestures of each single-modality kind and four interaction gestures keep it small;
    100-sample windows (50 ms) from 0.25-1.0 s of each 1 s movement.

    >>> synthetic, preprocess = planted_setup()
    >>> synthetic.n_gestures, synthetic.n_repetitions, preprocess.test_repetitions
    (8, 12, (2, 5, 8, 11))
    """
    synthetic = SyntheticSpec(
        n_subjects=n_subjects,
        n_emg_gestures=2,
        n_acc_gestures=2,
        n_interaction_gestures=4,
        n_repetitions=12,
        movement_seconds=1.0,
        n_emg=24,
        seed=seed,
    )
    preprocess = PreprocessSpec(
        segment=(0.25, 1.0),
        window=100,
        step=50,
        envelope=10.0,
        train_repetitions=(1, 3, 4, 6, 7, 9, 10, 12),
        test_repetitions=(2, 5, 8, 11),
    )
    return synthetic, preprocess


def demo_setup(n_subjects: int = 8, seed: int = 0) -> tuple[SyntheticSpec, PreprocessSpec]:
    """`planted_setup` with a balanced, smaller montage: the data `emg-lens demo` runs on.

    The same gestures (2 sEMG-only, 2 ACC-only, 4 interaction), twelve repetitions, sEMG
    envelope and windows, on 12 sEMG electrodes and 4 three-axis accelerometers: 12 sEMG and
    12 ACC tokens, so neither modality dominates the mean that IsoNet's second head reads, and
    25 tokens instead of 61, which is what makes a demo of a few minutes possible. (DB2's own
    montage, 12 electrodes with 36 ACC channels, was tried: the mean-pooled models then route
    sEMG information through the ACC tokens and every cross-modal cut costs the sEMG-only
    gestures too, so it is not the demo's data; nor can 4 accelerometers be a DB2 file, so the
    demo's data source is ``"synthetic"``: generated from this spec, which every checkpoint
    records.)

    >>> synthetic, preprocess = demo_setup()
    >>> synthetic.n_emg, 3 * synthetic.n_acc_sensors, synthetic.n_gestures, preprocess.step
    (12, 12, 8, 50)
    """
    planted, preprocess = planted_setup(n_subjects, seed)
    return SyntheticSpec(**{**planted.to_dict(), "n_emg": 12, "n_acc_sensors": 4}), preprocess


def generate_recordings(
    spec: SyntheticSpec = SyntheticSpec(), subjects: list[int] | None = None
) -> list[Recording]:
    """One continuous `Recording` per subject (numbered from 1; all, or those in
    ``subjects``), from ``spec.seed``: a subject's recording does not depend on which others
    are generated with it."""
    population = _Patterns.draw(spec, np.random.default_rng(spec.seed))
    everyone = range(1, spec.n_subjects + 1)
    subjects = list(everyone) if subjects is None else subjects
    unknown = sorted(set(subjects) - set(everyone))
    if unknown:
        raise ConfigError(f"subjects {unknown} do not exist; the spec has 1..{spec.n_subjects}")
    return [_subject_recording(spec, subject, population) for subject in subjects]


# ----------------------------------------------------------------------------- patterns


@dataclass
class _Patterns:
    """Activation amplitudes [..., electrode] and postures [..., sensor, 3] of every gesture.

    Interaction gestures use ``emg_bits`` / ``posture_bits``: the pattern with bit ``i`` set
    differs from ``*_base`` only on electrode group ``i``.
    """

    emg_neutral: np.ndarray
    emg_gestures: np.ndarray
    emg_base: np.ndarray
    emg_bits: np.ndarray  # [bit, electrode]: the active version of each muscle group
    emg_groups: np.ndarray  # [bit, electrode] bool: the electrodes of each muscle group
    posture_neutral: np.ndarray
    postures: np.ndarray
    posture_base: np.ndarray
    posture_bits: np.ndarray  # [bit, sensor, 3]: the tilted version of each sensor group
    sensor_groups: np.ndarray  # [bit, sensor] bool: the accelerometers of each group

    @classmethod
    def draw(cls, spec: SyntheticSpec, rng: np.random.Generator) -> _Patterns:
        def amplitudes(n):  # mean rectified sEMG level per electrode, in (0.1, 1.1)
            return 0.6 + spec.pattern_contrast * rng.uniform(-0.5, 0.5, (n, spec.n_emg))

        def postures(n):  # gravity direction seen by each sensor: unit vectors
            base = np.array([0.0, 0.0, 1.0])
            tilt = spec.pattern_contrast * rng.normal(0, 0.6, (n, spec.n_acc_sensors, 3))
            v = base + tilt
            return v / np.linalg.norm(v, axis=-1, keepdims=True)

        n_bits = max(1, spec.n_interaction_gestures.bit_length() - 1)
        # Bit i: muscle group i (a set of electrodes) and the accelerometers on those same
        # electrodes, so the interaction is local to electrode sites.
        sites = np.array_split(rng.permutation(min(spec.n_emg, spec.n_acc_sensors)), n_bits)
        emg_groups = np.zeros((n_bits, spec.n_emg), bool)
        sensor_groups = np.zeros((n_bits, spec.n_acc_sensors), bool)
        for i, site in enumerate(sites):
            emg_groups[i, site] = sensor_groups[i, site] = True
        emg_base, posture_base = amplitudes(1)[0], postures(1)[0]
        # An active muscle group is clearly louder than at rest; a tilted sensor group points
        # somewhere else.
        emg_bits = np.where(emg_groups, emg_base + 0.8 * spec.pattern_contrast, emg_base)
        posture_bits = np.where(sensor_groups[..., None], postures(n_bits), posture_base)
        return cls(
            emg_neutral=amplitudes(1)[0],
            emg_gestures=amplitudes(spec.n_emg_gestures),
            emg_base=emg_base,
            emg_bits=emg_bits,
            emg_groups=emg_groups,
            posture_neutral=postures(1)[0],
            postures=postures(spec.n_acc_gestures),
            posture_base=posture_base,
            posture_bits=posture_bits,
            sensor_groups=sensor_groups,
        )

    def perturbed(self, rng: np.random.Generator, amount: float) -> _Patterns:
        """A subject's version of the population patterns."""

        def amp(a):
            return np.clip(a * (1 + amount * rng.normal(0, 0.5, a.shape)), 0.05, None)

        def post(p):
            v = p + amount * rng.normal(0, 0.3, p.shape)
            return v / np.linalg.norm(v, axis=-1, keepdims=True)

        emg_base, posture_base = amp(self.emg_base), post(self.posture_base)
        return _Patterns(
            emg_neutral=amp(self.emg_neutral),
            emg_gestures=amp(self.emg_gestures),
            emg_base=emg_base,
            emg_bits=np.where(self.emg_groups, amp(self.emg_bits), emg_base),
            emg_groups=self.emg_groups,
            posture_neutral=post(self.posture_neutral),
            postures=post(self.postures),
            posture_base=posture_base,
            posture_bits=np.where(
                self.sensor_groups[..., None], post(self.posture_bits), posture_base
            ),
            sensor_groups=self.sensor_groups,
        )

    def for_gesture(self, spec: SyntheticSpec, gesture: int, repetition: int):
        """(sEMG amplitudes [electrode], posture [sensor, 3]) of one repetition."""
        g = gesture - 1
        if g < spec.n_emg_gestures:
            return self.emg_gestures[g], self.posture_neutral
        g -= spec.n_emg_gestures
        if g < spec.n_acc_gestures:
            return self.emg_neutral, self.postures[g]
        m, k = g - spec.n_acc_gestures, spec.n_interaction_gestures
        emg, posture = self.emg_base.copy(), self.posture_base.copy()
        for i in range(len(self.emg_bits)):
            active = (repetition % k) >> i & 1
            tilted = active ^ (m >> i & 1)
            if active:
                emg[self.emg_groups[i]] = self.emg_bits[i][self.emg_groups[i]]
            if tilted:
                posture[self.sensor_groups[i]] = self.posture_bits[i][self.sensor_groups[i]]
        return emg, posture


# ----------------------------------------------------------------------------- signals


def _subject_recording(spec: SyntheticSpec, subject: int, population: _Patterns) -> Recording:
    rng = np.random.default_rng([spec.seed, subject])
    patterns = population.perturbed(rng, spec.subject_variability)
    fs = spec.sample_rate
    n_move, n_rest = int(spec.movement_seconds * fs), int(spec.rest_seconds * fs)
    # Gestures in order, each repeated n_repetitions times, as in a NinaPro exercise.
    runs = [(g, r) for g in range(1, spec.n_gestures + 1) for r in range(1, spec.n_repetitions + 1)]
    total = n_rest + len(runs) * (n_move + n_rest)
    amp = np.tile(0.05 * patterns.emg_neutral, (total, 1))  # resting tone
    posture = np.tile(patterns.posture_neutral, (total, 1, 1))
    stimulus = np.zeros(total, np.int64)
    repetition = np.zeros(total, np.int64)
    ramp = onset_ramp(n_move, int(0.15 * fs))
    for i, (g, r) in enumerate(runs):
        start = n_rest + i * (n_move + n_rest)
        sl = slice(start, start + n_move)
        emg_level, pose = patterns.for_gesture(spec, g, r)
        drift = 1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * np.arange(n_move) / fs)
        amp[sl] = amp[sl] * (1 - ramp[:, None]) + (emg_level * drift[:, None]) * ramp[:, None]
        posture[sl] = posture[sl] * (1 - ramp[:, None, None]) + pose * ramp[:, None, None]
        stimulus[sl], repetition[sl] = g, r
    emg = amp * muscle_noise(rng, total, spec.n_emg, fs)
    emg += spec.noise * 0.1 * rng.standard_normal(emg.shape)
    acc = posture + 0.02 * slow_noise(rng, total, (spec.n_acc_sensors, 3), fs)
    acc += spec.noise * 0.05 * rng.standard_normal(acc.shape)
    return Recording(
        subject=subject,
        signals={
            "emg": emg.astype(np.float32),
            "acc": acc.reshape(total, -1).astype(np.float32),  # sensor-major: x, y, z
        },
        sample_rate=fs,
        stimulus=stimulus,
        repetition=repetition,
        source=f"synthetic(seed={spec.seed}, subject={subject})",
    )


def onset_ramp(n: int, width: int) -> np.ndarray:
    """0 -> 1 at movement onset, 1 -> 0 at offset: muscles do not switch on instantly."""
    ramp = np.ones(n)
    width = min(width, n // 2)
    if width > 0:
        edge = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, width))
        ramp[:width], ramp[-width:] = edge, edge[::-1]
    return ramp


def muscle_noise(rng: np.random.Generator, n: int, channels: int, fs: float) -> np.ndarray:
    """Unit-variance noise band-limited to 20–450 Hz: the spectral shape of surface EMG."""
    sos = sps.butter(4, [20, min(450, 0.45 * fs)], btype="bandpass", fs=fs, output="sos")
    x = sps.sosfilt(sos, rng.standard_normal((n, channels)), axis=0)
    return x / x.std(axis=0, keepdims=True)


def slow_noise(rng: np.random.Generator, n: int, shape: tuple, fs: float) -> np.ndarray:
    """Tremor-like motion below 10 Hz."""
    sos = sps.butter(2, 10, btype="lowpass", fs=fs, output="sos")
    x = sps.sosfilt(sos, rng.standard_normal((n, *shape)), axis=0)
    return x / (x.std(axis=0, keepdims=True) + 1e-12)
