"""Synthetic NinaPro-DB2-shaped recordings with *planted* multimodal structure.

DB2's montage (12 sEMG channels, 12 three-axis accelerometers, 2 kHz); each repetition a
movement then rest. ``"emg"`` gestures differ only in sEMG, ``"acc"`` gestures only in posture,
and ``k = 2^j`` ``"interaction"`` gestures only in the combination: in repetition ``r`` muscle
group ``i`` is active when bit ``i`` of ``r mod k`` is set, and the accelerometers on those
electrodes tilt when that bit XOR bit ``i`` of the gesture index is set, so each modality alone
carries no information about which interaction gesture it is (chance ``1/k``). With DB2's split
(train 1, 3, 4, 6; test 2, 5) and ``k <= 4`` training holds every code the test uses. The
ground truth: docs/concepts.md, "What the synthetic data plant". `synthesize_ninapro_db2`
writes the same data in DB2's files (``emg-lens synth --format ninapro-db2``).

>>> recs = generate_recordings(SyntheticSpec(n_subjects=1, movement_seconds=0.5))
>>> rec = recs[0]
>>> rec.modalities, rec.meta["channel_names"][8:14]  # DB2's names (`db2_channel_names`)
({'emg': 12, 'acc': 36}, ['emg9', 'emg10', 'emg11', 'emg12', 'acc1x', 'acc1y'])
>>> rec.gestures == list(range(1, 13)), sorted(set(rec.repetition.tolist()))
(True, [0, 1, 2, 3, 4, 5, 6])
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from emg_lens.data.formats import ninapro_db2
from emg_lens.data.preprocess import PreprocessSpec
from emg_lens.data.reader import DatasetReader, Source, no_files
from emg_lens.data.recording import Recording
from emg_lens.data.spec import DictSpec
from emg_lens.data.synthetic.protocol import (
    check_bounds,
    check_options,
    check_subjects,
    muscle_noise,
    onset_ramp,
    slow_noise,
    trial_timeline,
)
from emg_lens.errors import (
    ArgumentError,
    ConfigError,
    check_choice,
    check_field_types,
    check_int,
    checked,
    fields_checked,
)

GESTURE_KINDS = ("emg", "acc", "interaction")


@fields_checked
@dataclass(frozen=True)
class SyntheticSpec(DictSpec):
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
    # a subject signature on the accelerometers only: each subject's sensors read with a
    # constant offset per axis (a calibration bias), drawn N(0, subject_offset) per subject; a
    # per-subject z-score removes it (pool_subjects(standardize=True) keeps it). 0: none.
    subject_offset: float = 0.0

    def __post_init__(self) -> None:
        check_field_types(self)  # the declared types; the ranges below
        self.check_counts("n_subjects", "n_repetitions", "n_emg", "n_acc_sensors")
        counts = (self.n_emg_gestures, self.n_acc_gestures, self.n_interaction_gestures)
        if min(counts) < 0 or sum(counts) < 2:
            raise ConfigError(f"SyntheticSpec gesture counts must be >= 0, sum >= 2; got {counts}")
        bits = range(1, min(self.n_emg, self.n_acc_sensors) + 1)  # one per muscle/sensor group
        check_choice(
            self.n_interaction_gestures,
            (0, *(2**b for b in bits)),
            "SyntheticSpec.n_interaction_gestures (2 ** bits, bits <= sensors)",
            ConfigError,
        )
        check_bounds(self, movement_seconds="> 0", rest_seconds=">= 0", subject_offset=">= 0")

    @property
    def n_gestures(self) -> int:
        return self.n_emg_gestures + self.n_acc_gestures + self.n_interaction_gestures

    def to_dict(self) -> dict:
        """Every field, ``subject_offset`` only where it is set (so the data sources, and their
        digests, of specs from before it existed are unchanged)."""
        fields = super().to_dict()
        if not fields["subject_offset"]:
            del fields["subject_offset"]
        return fields


@checked
def gesture_kinds(spec: SyntheticSpec) -> dict[int, str]:
    """Gesture label (1-based) -> kind (``"emg"``, ``"acc"`` or ``"interaction"``).

    >>> gesture_kinds(SyntheticSpec(n_emg_gestures=1, n_acc_gestures=1,
    ...                             n_interaction_gestures=2))
    {1: 'emg', 2: 'acc', 3: 'interaction', 4: 'interaction'}
    """
    kinds = ["emg"] * spec.n_emg_gestures + ["acc"] * spec.n_acc_gestures
    return dict(enumerate(kinds + ["interaction"] * spec.n_interaction_gestures, 1))


def planted_setup(n_subjects: int = 2, seed: int = 0) -> tuple[SyntheticSpec, PreprocessSpec]:
    """The dataset on which trained IsoNets show the planted structure, and how to cut it.

    Twelve repetitions (DB2's split twice), the sEMG envelope (10 Hz) and 24 sEMG electrodes
    beside 12 three-axis accelerometers: the DB2-shaped default's repetitions are memorised
    instead of the XOR learned (why each change: docs/concepts.md, "What the synthetic data
    plant"). 2 + 2 single-modality and 4 interaction gestures; 100-sample windows from 0.25-1.0 s
    of each 1 s movement.

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


@checked
def demo_setup(n_subjects: int = 8, seed: int = 0) -> tuple[SyntheticSpec, PreprocessSpec]:
    """`planted_setup` with a balanced, smaller montage: the data `emg-lens demo` runs on.

    12 sEMG electrodes and 4 three-axis accelerometers: 12 sEMG and 12 ACC tokens (25 with the
    CLS, not 61), so neither modality dominates the mean IsoNet's second head reads, and a demo
    of a few minutes. No DB2 file holds 4 accelerometers: the demo's source is ``"synthetic"``.

    >>> synthetic, preprocess = demo_setup()
    >>> synthetic.n_emg, 3 * synthetic.n_acc_sensors, synthetic.n_gestures, preprocess.step
    (12, 12, 8, 50)
    """
    planted, preprocess = planted_setup(n_subjects, seed)
    return SyntheticSpec(**{**planted.to_dict(), "n_emg": 12, "n_acc_sensors": 4}), preprocess


@checked
def subject_signature_setup(
    n_subjects: int = 3, seed: int = 0, offset: float = 0.3
) -> tuple[SyntheticSpec, PreprocessSpec]:
    """`planted_setup`'s gestures, small, with a subject signature planted on the
    accelerometers only, for a model applied across subjects (a pooled model: notebook 10).

    Every subject performs the gestures alike, and each subject's accelerometers read with
    their own constant offset per axis (``subject_offset``); the sEMG carries nothing of who
    moves. The windows are not z-scored per subject, which would remove the offset: pool them
    with `emg_lens.data.pooled.pool_subjects` (``standardize``). 7 tokens, 6 gestures (one XOR
    bit), 40-sample windows: a pooled model trains in seconds.

    >>> synthetic, preprocess = subject_signature_setup()
    >>> synthetic.subject_offset, synthetic.subject_variability, preprocess.standardize
    (0.3, 0.0, False)
    >>> synthetic.n_emg + 3 * synthetic.n_acc_sensors, synthetic.n_gestures, preprocess.window
    (7, 6, 40)
    """
    planted, planted_preprocess = planted_setup(n_subjects, seed)
    synthetic = replace(
        planted,
        n_interaction_gestures=2,
        movement_seconds=0.5,
        rest_seconds=0.1,
        n_emg=4,
        n_acc_sensors=1,
        subject_variability=0.0,
        subject_offset=offset,
    )
    preprocess = replace(planted_preprocess, window=40, step=40, standardize=False)
    return synthetic, preprocess


@checked
def generate_recordings(
    spec: SyntheticSpec = SyntheticSpec(), subjects: list[int] | None = None
) -> list[Recording]:
    """One continuous `Recording` per subject (numbered from 1; all, or those in
    ``subjects``), each independent of which others are generated with it."""
    population = _Patterns.draw(spec, np.random.default_rng(spec.seed))
    subjects = check_subjects(spec, subjects)
    return [_subject_recording(spec, subject, population) for subject in subjects]


DB2_EXERCISE_KINDS: dict[str, dict[str, int]] = {
    "B": {"emg": 7, "acc": 6, "interaction": 4},
    "C": {"emg": 12, "acc": 11, "interaction": 0},
    "D": {"emg": 5, "acc": 4, "interaction": 0},
}
"""Planted gesture kinds per NinaPro DB2 exercise in `db2_spec` data: the real gesture counts
(B 17, C 23, D 9; labels 1-17, 18-40, 41-49), each exercise's labels in kind order (sEMG-only,
ACC-only, interaction). All four interaction gestures are in B, the exercise ``emg-lens train``
reads by default, so that the XOR they plant (`SyntheticSpec`) holds within any exercise set
that includes B."""

DB2_SYNTH_EXERCISES = ("B", "C", "D")
"""What ``emg-lens synth --format ninapro-db2`` writes by default: every exercise, the files
docs/guide/recordings.md's ``train --exercises B C D`` reads."""

DB2_SYNTH_OPTIONS = ("n_subjects", "seed", "movement_seconds", "rest_seconds", "exercises")
"""The options `synthesize_ninapro_db2` takes (``emg-lens synth``'s flags)."""


def db2_spec(
    n_subjects: int = 2, *, movement_seconds: float = 2.0, rest_seconds: float = 0.5, seed: int = 0
) -> SyntheticSpec:
    """The `SyntheticSpec` of synthetic NinaPro DB2 data: DB2's 12 electrodes with 36 ACC
    channels, six repetitions, and its 49 gestures as `DB2_EXERCISE_KINDS` plants them (24
    sEMG-only, 21 ACC-only, 4 interaction). `generate_db2_exercise` cuts it into exercises.

    >>> spec = db2_spec()
    >>> spec.n_gestures, spec.n_interaction_gestures, spec.n_emg, 3 * spec.n_acc_sensors
    (49, 4, 12, 36)
    """
    kinds = {k: sum(counts[k] for counts in DB2_EXERCISE_KINDS.values()) for k in GESTURE_KINDS}
    return SyntheticSpec(
        n_subjects=n_subjects,
        n_emg_gestures=kinds["emg"],
        n_acc_gestures=kinds["acc"],
        n_interaction_gestures=kinds["interaction"],
        movement_seconds=movement_seconds,
        rest_seconds=rest_seconds,
        seed=seed,
    )


def db2_labels() -> dict[int, int]:
    """Gesture of a `db2_spec` (1-49, in `gesture_kinds` order) -> its DB2 label (1-49): B's
    labels take the first sEMG-only, ACC-only and interaction gestures, C's the next ones...

    >>> labels = db2_labels()
    >>> [labels[g] for g in (1, 7, 8, 25, 30, 46, 49)]  # 8: the 8th sEMG-only gesture, in C
    [1, 7, 18, 8, 13, 14, 17]
    """
    spec = db2_spec()
    first = {"emg": 1, "acc": 1 + spec.n_emg_gestures}
    first["interaction"] = first["acc"] + spec.n_acc_gestures
    labels, label = {}, 1
    for counts in DB2_EXERCISE_KINDS.values():
        for kind in GESTURE_KINDS:
            for _ in range(counts[kind]):
                labels[first[kind]] = label
                first[kind] += 1
                label += 1
    return labels


def generate_db2_exercise(spec: SyntheticSpec, subject: int, exercise: str | int) -> Recording:
    """``subject``'s recording of one NinaPro DB2 exercise (``"B"``, ``"C"``, ``"D"``) of a
    `db2_spec` dataset: that exercise's gestures only, labelled as DB2 labels them
    (`db2_labels`), from the subject's patterns and a random stream of the exercise's own, so
    a subject's exercises do not depend on which others are generated.

    >>> rec = generate_db2_exercise(db2_spec(1, movement_seconds=0.1, rest_seconds=0.05), 1, "D")
    >>> rec.gestures == list(range(41, 50)), rec.modalities
    (True, {'emg': 12, 'acc': 36})
    """
    k = ninapro_db2.EXERCISES.get(str(exercise).upper(), exercise)
    letters = {number: letter for letter, number in ninapro_db2.EXERCISES.items()}
    if k not in letters:
        raise ArgumentError(f"exercise must be one of 'B', 'C', 'D', got {exercise!r}")
    expected = db2_spec(spec.n_subjects)
    counts = ("n_emg_gestures", "n_acc_gestures", "n_interaction_gestures", "n_emg")
    if any(getattr(spec, c) != getattr(expected, c) for c in (*counts, "n_acc_sensors")):
        got = {c: getattr(spec, c) for c in counts}
        raise ConfigError(f"generate_db2_exercise needs a db2_spec (DB2's 49 gestures), got {got}")
    check_int(subject, "subject (of the spec's)", 1, spec.n_subjects, ConfigError)
    labels = db2_labels()
    first, last = ninapro_db2.LABEL_RANGES[k]
    gestures = sorted(g for g, label in labels.items() if first <= label <= last)
    population = _Patterns.draw(spec, np.random.default_rng(spec.seed))
    recording = _subject_recording(spec, subject, population, gestures, stream=k)
    lookup = np.zeros(spec.n_gestures + 1, np.int64)
    lookup[list(labels)] = list(labels.values())
    recording.stimulus[:] = lookup[recording.stimulus]  # rest (0) stays 0
    return recording


def synthesize_ninapro_db2(out: str | Path, options: Mapping[str, Any]) -> Iterator[Path]:
    """Synthetic NinaPro DB2 files under ``out``, one subject at a time:
    ``DB2_s<N>/S<N>_E<k>_A1.mat`` for each of ``options["exercises"]`` (default
    `DB2_SYNTH_EXERCISES`), from `db2_spec`. The files hold ``emg``, ``acc``, the label
    columns and no ``glove`` (some real files lack it too).

    >>> import tempfile
    >>> options = {"n_subjects": 1, "movement_seconds": 0.1, "rest_seconds": 0.05}
    >>> [p.name for p in synthesize_ninapro_db2(tempfile.mkdtemp(), options)]
    ['S1_E1_A1.mat', 'S1_E2_A1.mat', 'S1_E3_A1.mat']
    """
    check_options(options, DB2_SYNTH_OPTIONS, "ninapro-db2")
    settings = {k: v for k, v in options.items() if k != "exercises"}
    spec = db2_spec(**settings)  # checked now, not at the first file
    exercises = _db2_exercises(options.get("exercises", DB2_SYNTH_EXERCISES))
    return (
        ninapro_db2.write_ninapro_db2(
            generate_db2_exercise(spec, s, e), out, exercise=e, omit_glove=True
        )
        for s in range(1, spec.n_subjects + 1)  # one recording in memory at a time
        for e in exercises
    )


def _db2_exercises(exercises: Iterable[str]) -> list[str]:
    """``exercises`` as distinct letters among B, C, D, in DB2's order."""
    given = [exercises] if isinstance(exercises, str) else list(exercises)
    letters = [str(e).strip().upper() for e in given]
    unknown = [e for e, letter in zip(given, letters) if letter not in DB2_EXERCISE_KINDS]
    if unknown or not letters:
        raise ArgumentError(f"--exercises must name one or more of B, C, D, got {given}")
    return [e for e in DB2_EXERCISE_KINDS if e in letters]


@dataclass
class _Patterns:
    """Activation amplitudes [..., electrode] and postures [..., sensor, 3] of every gesture;
    an interaction gesture's pattern with bit ``i`` set (``emg_bits`` / ``posture_bits``)
    differs from ``*_base`` only on electrode group ``i``."""

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


def _subject_recording(
    spec: SyntheticSpec,
    subject: int,
    population: _Patterns,
    gestures: list[int] | None = None,
    stream: int = 0,
) -> Recording:
    """``subject``'s recording of every gesture, or of ``gestures`` (then its signals are
    drawn from the random stream ``stream``: one per exercise file)."""
    rng = np.random.default_rng([spec.seed, subject])
    patterns = population.perturbed(rng, spec.subject_variability)  # the subject's, always
    if gestures is not None:
        rng = np.random.default_rng([spec.seed, subject, stream])
    fs = spec.sample_rate
    n_move, n_rest = int(spec.movement_seconds * fs), int(spec.rest_seconds * fs)
    chosen = range(1, spec.n_gestures + 1) if gestures is None else gestures
    timeline = trial_timeline(chosen, spec.n_repetitions, n_move, n_rest)
    total = timeline.total
    amp = np.tile(0.05 * patterns.emg_neutral, (total, 1))  # resting tone
    posture = np.tile(patterns.posture_neutral, (total, 1, 1))
    ramp = onset_ramp(n_move, int(0.15 * fs))
    for (g, r), sl in zip(timeline.runs, timeline.slices):
        emg_level, pose = patterns.for_gesture(spec, g, r)
        drift = 1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * np.arange(n_move) / fs)
        amp[sl] = amp[sl] * (1 - ramp[:, None]) + (emg_level * drift[:, None]) * ramp[:, None]
        posture[sl] = posture[sl] * (1 - ramp[:, None, None]) + pose * ramp[:, None, None]
    emg = amp * muscle_noise(rng, total, spec.n_emg, fs)
    emg += spec.noise * 0.1 * rng.standard_normal(emg.shape)
    acc = posture + 0.02 * slow_noise(rng, total, (spec.n_acc_sensors, 3), fs)
    acc += spec.noise * 0.05 * rng.standard_normal(acc.shape)
    if spec.subject_offset:  # its own random stream: the signals above are as without it
        bias = np.random.default_rng([spec.seed, subject, 1 << 20])
        acc += bias.normal(0, spec.subject_offset, (spec.n_acc_sensors, 3))
    signals = {"emg": emg, "acc": acc.reshape(total, -1)}  # acc sensor-major: x, y, z
    names = ninapro_db2.db2_channel_names({k: x.shape[1] for k, x in signals.items()})  # DB2's
    return Recording(
        subject=subject,
        signals={name: x.astype(np.float32) for name, x in signals.items()},
        sample_rate=fs,
        stimulus=timeline.stimulus,
        repetition=timeline.repetition,
        source=f"synthetic(seed={spec.seed}, subject={subject})",
        meta={"channel_names": names},
    )


def _spec_of(source: Source) -> SyntheticSpec:
    return SyntheticSpec(**source["synthetic"])


def _read(source: Source, subject: int) -> Recording:
    return generate_recordings(_spec_of(source), [subject])[0]


def _geometry(source: Source) -> dict[str, Any]:
    """DB2's placement, whose montage the synthetic data copies: electrode i's accelerometer
    sits on electrode i (the module docstring)."""
    spec = _spec_of(source)
    found = {}
    if spec.n_emg <= len(ninapro_db2.DB2_ELECTRODES):
        found["emg"] = ninapro_db2.db2_montage(spec.n_emg)
    if spec.n_acc_sensors <= min(spec.n_emg, len(ninapro_db2.DB2_ELECTRODES)):
        found["acc"] = ninapro_db2.db2_montage(spec.n_acc_sensors, axes=3)
    return found


READER = DatasetReader(
    montage=lambda source: {
        "emg": _spec_of(source).n_emg,
        "acc": 3 * _spec_of(source).n_acc_sensors,  # 3-axis accelerometers
    },
    subjects=lambda source: list(range(1, source["synthetic"]["n_subjects"] + 1)),
    files=no_files,
    read=_read,
    store=lambda source, subjects: lambda: (_read(source, s) for s in subjects),
    preprocess={},  # DB2-shaped: PreprocessSpec's defaults
    source_fields=lambda options: {
        "synthetic": (options.get("synthetic") or SyntheticSpec()).to_dict()
    },
    geometry=_geometry,
)
"""The synthetic dataset for the registry (`emg_lens.data.registry`): a data source stores
its `SyntheticSpec` (``"synthetic"``), from which every subject is generated again."""
