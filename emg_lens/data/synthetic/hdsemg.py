"""Synthetic recordings shaped like the HD-sEMG 65-gesture dataset, with planted structure.

Two 8 x 8 sEMG grids at 2048 Hz and ``n_force`` force channels (volts around 2.5 V); every
gesture has its own activation map on each grid (a Gaussian blob) and its own force pattern,
so either alone tells the gestures apart (`planted_activation`: the ground truth). As in the
real files, the signals follow the *adjusted* labels while the raw ``class`` / ``repetition``
(in ``extras``) lead them by up to ``label_lag`` samples at every onset and offset.
`write_synthetic_hdsemg` writes ``s<N>.mat`` files that `load_hdsemg` reads as the real ones."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from jaxtyping import Float

from emg_lens.data.formats.hdsemg import GRID, SAMPLE_RATE, write_hdsemg
from emg_lens.data.recording import Recording
from emg_lens.data.spec import DictSpec
from emg_lens.data.synthetic.protocol import (
    check_bounds,
    check_subjects,
    muscle_noise,
    onset_ramp,
    slow_noise,
    trial_timeline,
)
from emg_lens.errors import ConfigError, check_field_types, check_int, fields_checked

MAX_GESTURES = 65
"""Gestures in the real dataset."""

N_GRIDS = 2  # extensors, flexors
FORCE_NEUTRAL = 2.5  # volts at rest


@fields_checked
@dataclass(frozen=True)
class SyntheticHDsEMGSpec(DictSpec):
    """Parameters of the synthetic HD-sEMG dataset; every field is documented at its default."""

    n_subjects: int = 4
    n_gestures: int = 8  # 1..65 (the real dataset has 65)
    n_repetitions: int = 5  # as in the real dataset
    movement_seconds: float = 1.5  # long enough for the "steady" segment (1-2 s) to hold windows
    rest_seconds: float = 0.5
    n_force: int = 5  # force channels; the loader reads the count from the file
    blob_width: float = 1.5  # electrodes: std of each gesture's Gaussian activation blob
    pattern_contrast: float = 1.0  # how far apart gestures' sEMG maps are (0 = identical)
    force_contrast: float = 1.0  # volts: the largest force deviation of a gesture (0 = none)
    noise: float = 0.15  # additive sensor noise, relative to the signal scale
    subject_variability: float = 0.3  # how much subjects' patterns differ from each other
    label_lag: int = 20  # samples by which raw labels may lead the adjusted ones (0: identical)
    seed: int = 0

    def __post_init__(self) -> None:
        check_field_types(self)  # the declared types; the ranges below
        self.check_counts("n_subjects", "n_repetitions", "n_force")
        check_int(self.n_gestures, "SyntheticHDsEMGSpec.n_gestures", 2, MAX_GESTURES, ConfigError)
        check_bounds(self, movement_seconds="> 0", rest_seconds="> 0", blob_width="> 0")
        check_bounds(self, pattern_contrast=">= 0", force_contrast=">= 0", noise=">= 0")
        check_bounds(self, subject_variability=">= 0")
        half = int(np.ceil(min(self.movement_seconds, self.rest_seconds) * SAMPLE_RATE / 2))
        check_int(self.label_lag, "SyntheticHDsEMGSpec.label_lag", 0, half - 1, ConfigError)


def planted_activation(
    spec: SyntheticHDsEMGSpec, subject: int
) -> Float[np.ndarray, "gesture grid row col"]:
    """The ground truth: the mean rectified sEMG level planted for each gesture (0-based) on
    each grid (0 extensors, 1 flexors) of one subject, indexed as MATLAB's ``emg(t, row, col)``.

    >>> maps = planted_activation(SyntheticHDsEMGSpec(n_gestures=3), subject=1)
    >>> maps.shape, bool((maps > 0).all())
    ((3, 2, 8, 8), True)
    """
    _, patterns = _subject_patterns(spec, check_subjects(spec, [subject])[0])
    return patterns.maps(spec)


def generate_hdsemg_recordings(
    spec: SyntheticHDsEMGSpec = SyntheticHDsEMGSpec(), subjects: list[int] | None = None
) -> list[Recording]:
    """One continuous `Recording` per subject (numbered from 1; all, or those in
    ``subjects``), each independent of which others are generated with it.

    >>> spec = SyntheticHDsEMGSpec(n_subjects=1, n_gestures=3, movement_seconds=0.2)
    >>> rec = generate_hdsemg_recordings(spec)[0]
    >>> rec.modalities, rec.sample_rate, rec.gestures, sorted(set(rec.repetition.tolist()))
    ({'emg': 128, 'force': 5}, 2048.0, [1, 2, 3], [0, 1, 2, 3, 4, 5])
    >>> int((rec.extras["class"] != rec.stimulus).sum()) > 0  # raw labels lead the adjusted
    True
    """
    return [_subject_recording(spec, s) for s in check_subjects(spec, subjects)]


def write_synthetic_hdsemg(
    spec: SyntheticHDsEMGSpec, out_dir: str | Path, subjects: list[int] | None = None
) -> list[Path]:
    """Write each subject as ``out_dir/s<N>.mat`` (HD-sEMG's v7.3 layout), one subject in memory
    at a time; returns the paths.

    >>> import tempfile
    >>> from emg_lens.data import load_hdsemg
    >>> spec = SyntheticHDsEMGSpec(n_subjects=2, n_gestures=2, movement_seconds=0.2, n_force=3)
    >>> paths = write_synthetic_hdsemg(spec, tempfile.mkdtemp(), subjects=[2])
    >>> paths[0].name, load_hdsemg(paths[0]).modalities
    ('s2.mat', {'emg': 128, 'force': 3})
    """
    return [
        write_hdsemg(_subject_recording(spec, s), Path(out_dir) / f"s{s}.mat")
        for s in check_subjects(spec, subjects)
    ]


def synthesize_hdsemg(out: str | Path, options: Mapping[str, Any]) -> Iterator[Path]:
    """``out/s<N>.mat`` for every subject of ``SyntheticHDsEMGSpec(**options)``, one subject in
    memory at a time: what ``emg-lens synth --format hdsemg`` writes."""
    spec = SyntheticHDsEMGSpec(**options)
    subjects = range(1, spec.n_subjects + 1)
    return (write_synthetic_hdsemg(spec, out, [s])[0] for s in subjects)


@dataclass
class _Patterns:
    """Where each gesture's activity sits on each grid, how strong it is, and its force."""

    centers: np.ndarray  # [gesture, grid, 2]: (row, col) of the blob, in electrodes
    peaks: np.ndarray  # [gesture, grid]: blob amplitude (mean rectified sEMG level)
    force: np.ndarray  # [gesture, force channel]: volts relative to the neutral level
    force_neutral: np.ndarray  # [force channel]: volts at rest

    @classmethod
    def draw(cls, spec: SyntheticHDsEMGSpec, rng: np.random.Generator) -> _Patterns:
        shape = (spec.n_gestures, N_GRIDS)
        return cls(
            centers=rng.uniform(0, GRID[0] - 1, (*shape, 2)),
            peaks=rng.uniform(0.6, 1.2, shape),
            force=spec.force_contrast * rng.uniform(-1, 1, (spec.n_gestures, spec.n_force)),
            force_neutral=FORCE_NEUTRAL + rng.normal(0, 0.05, spec.n_force),
        )

    def perturbed(self, rng: np.random.Generator, amount: float) -> _Patterns:
        """A subject's version of the population patterns: electrodes sit a little elsewhere,
        muscles are a little stronger or weaker."""

        def scaled(x: np.ndarray) -> np.ndarray:
            return x * (1 + amount * rng.normal(0, 0.3, x.shape))

        shifted = self.centers + amount * rng.normal(0, 1, self.centers.shape)
        return _Patterns(
            centers=np.clip(shifted, 0, GRID[0] - 1),
            peaks=np.clip(scaled(self.peaks), 0.05, None),
            force=scaled(self.force),
            force_neutral=self.force_neutral
            + amount * rng.normal(0, 0.05, self.force_neutral.shape),
        )

    def maps(self, spec: SyntheticHDsEMGSpec) -> Float[np.ndarray, "gesture grid row col"]:
        """Each gesture's activation map on each grid: a resting floor plus a Gaussian blob."""
        rows, cols = np.meshgrid(np.arange(GRID[0]), np.arange(GRID[1]), indexing="ij")
        row, col = self.centers[..., 0, None, None], self.centers[..., 1, None, None]
        blob = np.exp(-((rows - row) ** 2 + (cols - col) ** 2) / (2 * spec.blob_width**2))
        return 0.2 + spec.pattern_contrast * self.peaks[..., None, None] * blob

    def emg_levels(self, spec: SyntheticHDsEMGSpec) -> Float[np.ndarray, "gesture channel"]:
        """`maps` in the 128-channel order: channel ``row + 8 * col`` of each grid (so [row,
        col] is read column by column), extensors first."""
        maps = self.maps(spec)
        return maps.transpose(0, 1, 3, 2).reshape(len(maps), -1)


def _subject_patterns(
    spec: SyntheticHDsEMGSpec, subject: int
) -> tuple[np.random.Generator, _Patterns]:
    """The subject's random stream and patterns: the population's (from the seed alone),
    perturbed by the subject's own stream, so no subject depends on another."""
    population = _Patterns.draw(spec, np.random.default_rng(spec.seed))
    rng = np.random.default_rng([spec.seed, subject])
    return rng, population.perturbed(rng, spec.subject_variability)


def _subject_recording(spec: SyntheticHDsEMGSpec, subject: int) -> Recording:
    rng, patterns = _subject_patterns(spec, subject)
    levels = patterns.emg_levels(spec)
    tone = 0.05 * levels.mean(axis=0)  # resting tone
    fs = SAMPLE_RATE
    n_move, n_rest = int(spec.movement_seconds * fs), int(spec.rest_seconds * fs)
    timeline = trial_timeline(range(1, spec.n_gestures + 1), spec.n_repetitions, n_move, n_rest)
    total = timeline.total
    emg = muscle_noise(rng, total, levels.shape[1], fs)  # scaled in place below
    force = np.tile(patterns.force_neutral, (total, 1))
    moving = np.zeros(total, bool)
    raw = np.zeros((2, total), np.int64)  # class, repetition as cued: a few samples earlier
    ramp = onset_ramp(n_move, int(0.15 * fs))[:, None]
    for (g, r), sl in zip(timeline.runs, timeline.slices):
        start = sl.start
        drift = 1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * np.arange(n_move) / fs)
        emg[sl] *= tone * (1 - ramp) + levels[g - 1] * drift[:, None] * ramp
        force[sl] += patterns.force[g - 1] * ramp
        moving[sl] = True
        lead_on, lead_off = rng.integers(1, spec.label_lag + 1, 2) if spec.label_lag else (0, 0)
        raw[:, start - lead_on : start + n_move - lead_off] = [[g], [r]]
    emg[~moving] *= tone
    emg += spec.noise * 0.1 * rng.standard_normal(emg.shape)
    force += 0.02 * slow_noise(rng, total, (spec.n_force,), fs)
    force += spec.noise * 0.01 * rng.standard_normal(force.shape)
    return Recording(
        subject=subject,
        signals={"emg": emg.astype(np.float32), "force": force.astype(np.float32)},
        sample_rate=fs,
        stimulus=timeline.stimulus,  # when the movement happens
        repetition=timeline.repetition,
        source=f"synthetic-hdsemg(seed={spec.seed}, subject={subject})",
        extras={"class": raw[0], "repetition": raw[1]},
    )
