"""Synthetic EEG on the 10-20 montage with a *planted* interaction between two scalp regions.

The EEG counterpart of `emg_lens.data.synthetic.emg_acc`: 19 channels of the 10-20 system at
200 Hz (as LaBraM and CBraMod take it), in microvolts, placed in regions by
`emg_lens.edges.regions`, over a 1/f background partly shared within a lobe and across the
scalp (volume conduction). Single-region classes add a theta or gamma burst in one of the two
planted ``regions``; interaction classes show in each region a code (alpha or beta bursts),
the first ``r mod k`` in repetition ``r`` and the second that code XOR the class, so over
repetitions either region alone carries no information about the class. What this plants:
docs/concepts.md, "What the synthetic data plant". The defaults (`N_REPETITIONS`,
`EEG_PREPROCESS`) make it learnable by a 2-layer CBraMod in a few hundred steps (notebook 06).

>>> spec = SyntheticEEGSpec(n_subjects=1, n_repetitions=4, trial_seconds=1.0)
>>> rec = generate_eeg_recordings(spec)[0]
>>> rec.modalities, rec.sample_rate, rec.gestures
({'eeg': 19}, 200.0, [1, 2, 3, 4, 5, 6, 7, 8])
>>> truth = planted_eeg_truth(spec)
>>> truth.kinds
{1: 'frontal', 2: 'frontal', 3: 'parietal', 4: 'parietal', 5: 'interaction', 6: 'interaction', 7: 'interaction', 8: 'interaction'}
>>> truth.region_channels["parietal"], truth.needs[5]
(('P3', 'Pz', 'P4'), ('frontal', 'parietal'))
"""  # noqa: E501

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict

import numpy as np
from scipy import signal as sps

from emg_lens._hints import checked
from emg_lens.data.preprocess import PreprocessSpec, SubjectData, prepare_subject
from emg_lens.data.reader import DatasetReader, no_files
from emg_lens.data.recording import Recording
from emg_lens.data.spec import DictSpec
from emg_lens.data.synthetic.emg_acc import SyntheticSpec
from emg_lens.data.synthetic.protocol import (
    check_bounds,
    check_subjects,
    onset_ramp,
    trial_timeline,
)
from emg_lens.edges.regions import LOBES, place, region_channels
from emg_lens.errors import (
    ArgumentError,
    ConfigError,
    LayoutError,
    check_choice,
    check_field_types,
    check_type,
    fields_checked,
)
from emg_lens.geometry import Montage, scalp

TEN_TWENTY = (
    *("Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8"),
    *("T7", "C3", "Cz", "C4", "T8"),
    *("P7", "P3", "Pz", "P4", "P8", "O1", "O2"),
)
"""The 19 channels of the 10-20 system, front to back, left to right, in the 10-10 names
(T7/T8/P7/P8 for the old T3/T4/T5/T6)."""

SINGLE_BANDS: dict[str, tuple[float, float]] = {"theta": (4.5, 7.0), "gamma": (32.0, 40.0)}
"""Hz: the bursts of the single-region classes, in this order (``n_single`` of them)."""

INTERACTION_BANDS: dict[str, tuple[float, float]] = {"alpha": (8.0, 12.0), "beta": (18.0, 24.0)}
"""Hz: bit 0 and bit 1 of an interaction code (alpha: the subject's alpha frequency +- 1.5 Hz,
inside this band)."""

N_REPETITIONS = 48
"""Trials per class by default. Fewer do not teach the interaction: with 12, each of the 16
pairs of codes is seen in two training trials, and a small transformer fits those trials'
backgrounds instead of the XOR (held-out interaction accuracy near guessing)."""


class RepetitionSplit(TypedDict):
    """The `PreprocessSpec` fields `repetition_split` sets."""

    train_repetitions: tuple[int, ...]
    test_repetitions: tuple[int, ...]


def repetition_split(n_repetitions: int) -> RepetitionSplit:
    """Every third repetition held out (2, 5, 8, ...), the rest for training: with up to 4
    interaction classes every code occurs in both parts, as 3 and 4 share no factor.

    >>> repetition_split(12)
    {'train_repetitions': (1, 3, 4, 6, 7, 9, 10, 12), 'test_repetitions': (2, 5, 8, 11)}
    """
    reps = range(1, n_repetitions + 1)
    return {
        "train_repetitions": tuple(r for r in reps if r % 3 != 2),
        "test_repetitions": tuple(r for r in reps if r % 3 == 2),
    }


EEG_PREPROCESS: dict[str, Any] = {
    "lowpass": 45.0,  # EEG's usual 45 Hz low-pass (every non-sEMG modality gets `lowpass`)
    "segment": (0.25, 2.25),  # the trial without its ramps
    "window": 200,  # 1 s at 200 Hz
    "step": 25,  # overlapping windows: shifted views of a trial teach the code, not the trial
    **repetition_split(N_REPETITIONS),
}
"""The `PreprocessSpec` fields of the ``"synthetic-eeg"`` dataset (`planted_eeg_setup`): 1 s
windows every 0.125 s of each trial's middle 2 s; every third of the `N_REPETITIONS`
repetitions held out (`repetition_split`), which shows every interaction code in training and
in test."""

MICROVOLTS = 10.0  # the background's std per channel, in uV


@fields_checked
@dataclass(frozen=True)
class SyntheticEEGSpec(DictSpec):
    """Parameters of the synthetic EEG; every field is documented at its default."""

    n_subjects: int = 4
    channels: tuple[str, ...] = TEN_TWENTY  # 10-20 / 10-10 names (`emg_lens.edges.regions`)
    regions: tuple[str, str] = ("frontal", "parietal")  # the two planted lobes
    n_single: int = 2  # single-region classes per planted region: 0, 1 (theta) or 2 (+ gamma)
    n_interaction: int = 4  # 0, 2 (alpha codes) or 4 (alpha and beta codes)
    n_repetitions: int = N_REPETITIONS  # trials per class
    trial_seconds: float = 2.5
    rest_seconds: float = 0.5
    sample_rate: float = 200.0
    burst: float = 3.0  # a burst's std relative to the background's (0: nothing planted)
    # The resting alpha rhythm on P/O channels, same scale; off by default: it hides the
    # parietal alpha bit of the interaction codes, which are then not learned held out.
    posterior_alpha: float = 0.0
    subject_variability: float = 0.3  # how much channel gains differ between subjects
    seed: int = 0

    def __post_init__(self) -> None:
        check_field_types(self)  # the declared types; the ranges below
        self.check_counts("n_subjects", "n_repetitions")
        name = "SyntheticEEGSpec"
        check_choice(self.n_single, (0, 1, 2), f"{name}.n_single", ConfigError)
        check_choice(self.n_interaction, (0, 2, 4), f"{name}.n_interaction", ConfigError)
        if 2 * self.n_single + self.n_interaction < 2:
            raise ConfigError(f"{name} needs at least 2 classes (n_single, n_interaction)")
        if self.n_interaction and self.n_repetitions < self.n_interaction:
            raise ConfigError(
                f"{name}.n_repetitions={self.n_repetitions} must be >= n_interaction="
                f"{self.n_interaction}, so every interaction code occurs in every class"
            )
        check_bounds(self, trial_seconds="> 0", rest_seconds=">= 0", burst=">= 0")
        check_bounds(self, posterior_alpha=">= 0", subject_variability=">= 0")
        check_bounds(self, sample_rate=">= 100")  # Hz: the gamma band reaches 40 Hz
        self._check_montage()

    def _check_montage(self) -> None:
        channels, regions = self.channels, self.regions  # tuples of strings: field types
        if not channels or len(set(channels)) != len(channels):
            raise ConfigError(
                f"SyntheticEEGSpec.channels must be distinct 10-20 names, got {channels}"
            )
        try:
            for name in channels:
                place(name)
        except LayoutError as err:
            raise ConfigError(f"SyntheticEEGSpec.channels: {err}") from None
        if regions[0] == regions[1] or not set(regions) <= set(LOBES):
            raise ConfigError(
                f"SyntheticEEGSpec.regions must be two different lobes of {LOBES}, got {regions!r}"
            )
        for region in regions:
            if not region_channels(region, channels):
                raise ConfigError(f"SyntheticEEGSpec.regions: no channel of {channels} is {region}")

    @property
    def n_classes(self) -> int:
        return 2 * self.n_single + self.n_interaction


@dataclass(frozen=True)
class PlantedEEG:
    """What a `SyntheticEEGSpec` plants, by class label (1-based, ``SubjectData.classes``).

    ``kinds``: a planted region's name for a single-region class, ``"interaction"`` for the
    others; ``needs``: the regions a class needs; ``bands``: each class's bursts;
    ``region_channels``: the channels of each planted region; ``cut``: the edge expression
    that removes every *attention* route between the regions in every layer. Where each token
    embeds one channel alone (IsoNet, TinyMyo) that is every route, and the interaction
    classes must collapse under it; a tokenizer that mixes channels (CBraMod's, LaBraM's
    patch normalisation) leaves other routes, so there the cut measures only what attention
    carries (notebook 06)."""

    regions: tuple[str, str]
    region_channels: dict[str, tuple[str, ...]]
    kinds: dict[int, str]
    needs: dict[int, tuple[str, ...]]
    bands: dict[int, str]
    channels: tuple[str, ...]
    cut: str = "cross_region"
    codes: dict[str, str] = field(
        default_factory=lambda: {
            "first": "repetition mod n_interaction",
            "second": "first XOR the class index (0-based among the interaction classes)",
        }
    )

    def groups(self, classes: list[int]) -> dict[str, list[int]]:
        """Class *indices* (positions in ``classes``, the models' class labels) of the
        interaction classes and of the single-region ones, under the keys that
        `emg_lens.studies.ablation.planted.planted_findings` reads (``"unimodal"``: here one
        region).

        >>> truth = planted_eeg_truth(SyntheticEEGSpec(n_single=1, n_interaction=2))
        >>> truth.groups([1, 2, 3, 4])
        {'interaction': [2, 3], 'unimodal': [0, 1]}
        """
        if unknown := sorted(set(classes) - set(self.kinds)):
            raise ArgumentError(f"classes {unknown} are not planted; planted: {sorted(self.kinds)}")
        return {
            "interaction": [i for i, c in enumerate(classes) if self.kinds[c] == "interaction"],
            "unimodal": [i for i, c in enumerate(classes) if self.kinds[c] != "interaction"],
        }


@checked
def planted_eeg_truth(spec: SyntheticEEGSpec = SyntheticEEGSpec()) -> PlantedEEG:
    """The ground truth of ``spec``'s data: which classes need which regions (see
    `PlantedEEG`). Labels run single-region classes first (the first region's, then the
    second's), then the interaction classes.

    >>> truth = planted_eeg_truth(SyntheticEEGSpec(regions=("central", "occipital")))
    >>> truth.bands[1], truth.bands[3], truth.needs[3], truth.needs[8]
    ('theta', 'theta', ('occipital',), ('central', 'occipital'))
    """
    needs: dict[int, tuple[str, ...]] = {}
    kinds, bands = {}, {}
    label = 1
    for region in spec.regions:
        for band in list(SINGLE_BANDS)[: spec.n_single]:
            kinds[label], needs[label], bands[label] = region, (region,), band
            label += 1
    code_bands = ",".join(list(INTERACTION_BANDS)[: _bits(spec)])
    for _ in range(spec.n_interaction):
        kinds[label], needs[label], bands[label] = "interaction", tuple(spec.regions), code_bands
        label += 1
    return PlantedEEG(
        regions=tuple(spec.regions),  # type: ignore[arg-type]
        region_channels={r: region_channels(r, spec.channels) for r in spec.regions},
        kinds=kinds,
        needs=needs,
        bands=bands,
        channels=tuple(spec.channels),
    )


def _bits(spec: SyntheticEEGSpec) -> int:
    return {0: 0, 2: 1, 4: 2}[spec.n_interaction]


@checked
def planted_eeg_setup(
    n_subjects: int = 2, seed: int = 0
) -> tuple[SyntheticEEGSpec, PreprocessSpec]:
    """The planted EEG and how to window it: the default `SyntheticEEGSpec` (19 channels at
    200 Hz; 2 theta/gamma classes in each of frontal and parietal, 4 interaction classes;
    `N_REPETITIONS` repetitions) and `EEG_PREPROCESS`.

    >>> spec, preprocess = planted_eeg_setup()
    >>> spec.n_classes, len(spec.channels), preprocess.window, preprocess.test_repetitions[:4]
    (8, 19, 200, (2, 5, 8, 11))
    """
    return SyntheticEEGSpec(n_subjects=n_subjects, seed=seed), PreprocessSpec(**EEG_PREPROCESS)


@checked
def planted_eeg(
    n_subjects: int = 2,
    seed: int = 0,
    *,
    spec: SyntheticEEGSpec | None = None,
    preprocess: PreprocessSpec | None = None,
) -> tuple[list[SubjectData], PlantedEEG]:
    """The planted EEG, windowed and split per subject, and its ground truth; trains nothing.

    Each `SubjectData` holds ``meta["channel_names"]``, what a model's
    `EncoderConfig.channel_names` takes so that region edge sets apply to it. ``spec`` and
    ``preprocess`` default to `planted_eeg_setup`'s (a ``spec``'s own repetitions split by
    `repetition_split`).

    >>> subjects, truth = planted_eeg(1, spec=SyntheticEEGSpec(n_subjects=1, n_repetitions=6))
    >>> data = subjects[0]  # 8 classes x 6 trials (the default spec's: 48), 9 windows each
    >>> data.X_train.shape, data.X_test.shape, data.classes == sorted(truth.kinds)
    ((288, 19, 200), (144, 19, 200), True)
    >>> data.meta["channel_names"][:3], truth.groups(data.classes)["interaction"]
    (['Fp1', 'Fp2', 'F7'], [4, 5, 6, 7])
    """
    default_spec, default_preprocess = planted_eeg_setup(n_subjects, seed)
    spec = spec or default_spec
    if preprocess is None:
        preprocess = replace(default_preprocess, **repetition_split(spec.n_repetitions))
    subjects = []
    for recording in generate_eeg_recordings(spec):
        data = prepare_subject(recording, preprocess)
        data.meta["channel_names"] = list(spec.channels)
        subjects.append(data)
    return subjects, planted_eeg_truth(spec)


def generate_eeg_recordings(
    spec: SyntheticEEGSpec = SyntheticEEGSpec(), subjects: list[int] | None = None
) -> list[Recording]:
    """One continuous `Recording` per subject (numbered from 1; all, or those in
    ``subjects``), each independent of which others are generated with it."""
    return [_subject_recording(spec, subject) for subject in check_subjects(spec, subjects)]


def _subject_recording(spec: SyntheticEEGSpec, subject: int) -> Recording:
    rng = np.random.default_rng([spec.seed, subject])
    fs, channels = spec.sample_rate, spec.channels
    n_trial, n_rest = round(spec.trial_seconds * fs), round(spec.rest_seconds * fs)
    truth = planted_eeg_truth(spec)
    timeline = trial_timeline(sorted(truth.kinds), spec.n_repetitions, n_trial, n_rest)
    total = timeline.total

    # The subject: each channel's gain for each planted region's bursts, its alpha frequency.
    gains = np.clip(1 + spec.subject_variability * rng.normal(0, 1, len(channels)), 0.3, None)
    alpha_peak = rng.uniform(9.0, 11.0)
    bands = {**SINGLE_BANDS, **INTERACTION_BANDS, "alpha": (alpha_peak - 1.5, alpha_peak + 1.5)}

    x = _background(rng, total, channels, fs)
    posterior = np.array([place(c)[0] in ("parietal", "occipital") for c in channels])
    x[:, posterior] += spec.posterior_alpha * _band_noise(rng, total, bands["alpha"], fs)[:, None]

    members = {r: np.isin(channels, truth.region_channels[r]) for r in spec.regions}
    ramp = onset_ramp(n_trial, round(0.2 * fs))
    for (label, rep), sl in zip(timeline.runs, timeline.slices):
        for region, band in _bursts(spec, truth, label, rep):
            source = spec.burst * ramp * _band_noise(rng, n_trial, bands[band], fs)
            x[sl, members[region]] += source[:, None] * gains[members[region]]
    return Recording(
        subject=subject,
        signals={"eeg": (MICROVOLTS * x).astype(np.float32)},
        sample_rate=fs,
        stimulus=timeline.stimulus,
        repetition=timeline.repetition,
        source=f"synthetic-eeg(seed={spec.seed}, subject={subject})",
    )


def _bursts(
    spec: SyntheticEEGSpec, truth: PlantedEEG, label: int, rep: int
) -> list[tuple[str, str]]:
    """The (region, band) bursts of one trial of class ``label`` in repetition ``rep``."""
    if truth.kinds[label] != "interaction":
        return [(truth.kinds[label], truth.bands[label])]
    index = label - 1 - 2 * spec.n_single  # 0-based among the interaction classes
    first = rep % spec.n_interaction
    codes = dict(zip(spec.regions, (first, first ^ index)))
    return [
        (region, band)
        for region, code in codes.items()
        for bit, band in enumerate(list(INTERACTION_BANDS)[: _bits(spec)])
        if code >> bit & 1
    ]


def _background(
    rng: np.random.Generator, n: int, channels: tuple[str, ...], fs: float
) -> np.ndarray:
    """``[n, channel]`` 1/f noise, unit std per channel: a part of each channel's own, a part
    shared by its lobe and a part shared by the scalp (volume conduction)."""
    lobes = [place(c)[0] for c in channels]
    shared = {lobe: _pink(rng, n, fs) for lobe in sorted(set(lobes))}
    scalp = _pink(rng, n, fs)
    x = np.stack(
        [0.75 * _pink(rng, n, fs) + 0.55 * shared[lobe] + 0.35 * scalp for lobe in lobes], axis=1
    )
    return x / x.std(axis=0, keepdims=True)


def _pink(rng: np.random.Generator, n: int, fs: float) -> np.ndarray:
    """Unit-std noise with a 1/f power spectrum above 1 Hz (flat below)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / fs)
    spectrum /= np.sqrt(np.maximum(freqs, 1.0))
    x = np.fft.irfft(spectrum, n)
    return x / x.std()


def _band_noise(
    rng: np.random.Generator, n: int, band: tuple[float, float], fs: float
) -> np.ndarray:
    """Unit-std noise band-limited to ``band`` Hz: an oscillatory burst with a drifting phase
    and amplitude, as EEG rhythms have."""
    sos = _bandpass(tuple(band), fs)
    x = sps.sosfiltfilt(sos, rng.standard_normal(n + round(fs)))[round(fs) // 2 :][:n]
    return x / x.std()


@functools.lru_cache(maxsize=256)
def _bandpass(band: tuple[float, float], fs: float) -> np.ndarray:
    """The 4th-order Butterworth band-pass of ``band`` Hz as second-order sections, designed
    once per band (designing it per burst was a third of the generation). Shared between
    calls: read it, never write it (scipy's filters take a writable array)."""
    return sps.butter(4, band, btype="bandpass", fs=fs, output="sos")


def eeg_spec_of(source: Mapping[str, Any]) -> SyntheticEEGSpec:
    """The `SyntheticEEGSpec` a ``"synthetic-eeg"`` data source holds."""
    return SyntheticEEGSpec.from_dict(source["synthetic_eeg"])


def eeg_source_fields(options: Mapping[str, Any]) -> dict[str, Any]:
    """What a ``"synthetic-eeg"`` data source stores (``synthetic=``): a `SyntheticEEGSpec`
    (the default for None; from the command line's `SyntheticSpec` only its ``n_subjects``
    and ``seed``).

    >>> eeg_source_fields({"synthetic": SyntheticSpec(n_subjects=3)})["synthetic_eeg"]["n_subjects"]
    3
    """
    given = options.get("synthetic")
    check_type(given, SyntheticEEGSpec | SyntheticSpec | None, "synthetic-eeg's synthetic=")
    if given is None:
        spec = SyntheticEEGSpec()
    elif isinstance(given, SyntheticSpec):
        spec = SyntheticEEGSpec(n_subjects=given.n_subjects, seed=given.seed)
    else:
        spec = given
    return {"synthetic_eeg": spec.to_dict()}


READER = DatasetReader(
    montage=lambda source: {"eeg": len(eeg_spec_of(source).channels)},
    subjects=lambda source: list(range(1, eeg_spec_of(source).n_subjects + 1)),
    files=no_files,
    read=lambda source, subject: generate_eeg_recordings(eeg_spec_of(source), [subject])[0],
    preprocess=EEG_PREPROCESS,
    source_fields=eeg_source_fields,
    channel_names={"eeg": TEN_TWENTY},  # the default montage's
    geometry=lambda source: {
        "eeg": Montage(
            (scalp(eeg_spec_of(source).channels),),
            source="the 10-20 system's idealised positions (emg_lens.geometry.ten_twenty)",
        )
    },
)
"""The synthetic EEG dataset for the registry (`emg_lens.data.registry`)."""
