"""The registry of datasets: the one place that says what each dataset is.

A data source (`emg_lens.data.datasets.data_source`) is a JSON-able dict whose ``"dataset"``
names an entry here; everything that depends on which dataset it is (where its files lie, its
montage, its preprocessing defaults, how a subject is read and which subjects exist, what the
preprocessing cache fingerprints) is looked up in that entry with `dataset_info`, never by
comparing the name.

Adding a dataset is one new module plus one registry entry:

1. ``emg_lens/data/<name>.py``: a reader that returns a `Recording` (or, for a source of
   ready-made windows, a `Windows`), a function listing the subjects under a root and one
   listing a subject's files.
2. One `DatasetInfo` in ``_ENTRIES`` below. It needs: ``name`` (what ``"dataset"`` and the
   CLI's ``--dataset`` say); ``summary`` (one line); ``layout`` (where the files lie under the
   root, for messages and docs; ``""`` when generated); ``needs_root``; ``montage`` (source ->
   channels per modality, ``None`` where the file says); ``subjects`` (source -> subject
   numbers); ``files`` (source, subject -> the files read); exactly one of ``read`` (source,
   subject -> `Recording`) and ``read_windows`` (source, subject -> `Windows`); and, for a
   recording dataset, ``cache_modules`` (the modules whose source code the preprocessing cache
   fingerprints: the reader's). Optional: ``preprocess`` (the `PreprocessSpec` fields that
   differ from its defaults), ``source_fields`` (the extra keys `data_source` stores, from its
   keyword arguments), ``channel_names``, ``synthesize`` (out folder, spec options -> the
   files written, one subject at a time: synthetic data in the dataset's own layout, what
   ``emg-lens synth --format`` writes) and ``downstream`` (a TinyMyo downstream dataset's
   task and thesis windowing, `emg_lens.data.downstream.DownstreamTask`: what ``emg-lens
   windows --dataset`` builds a store from) and ``gesture_names`` (class label -> the movement
   the dataset's documentation names, for figures).

Nothing else changes: `DATASETS` (the names a command line or study spec accepts),
`data_source`, `load_subject`, the preprocessing cache and `emg_lens.provenance` read the entry.

>>> dataset_info("hdsemg").montage({"dataset": "hdsemg", "root": "/data/hdsemg"})
{'emg': 128, 'force': None}
>>> DATASETS, WINDOW_DATASETS  # doctest: +NORMALIZE_WHITESPACE
(('synthetic', 'ninapro-db2', 'hdsemg', 'epn612', 'uci', 'ninapro-db8', 'synthetic-eeg'),
 ('windows', 'synthetic-windows'))
>>> DOWNSTREAM_DATASETS, dataset_info("ninapro-db8").downstream.task
(('epn612', 'uci', 'ninapro-db8'), 'regression')
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np

from emg_lens.data import epn612, hdsemg, ninapro, ninapro_db8, synthetic_downstream, uci_gestures
from emg_lens.data.downstream import DownstreamTask
from emg_lens.data.recording import Recording
from emg_lens.data.synthetic import SyntheticSpec, generate_recordings, synthesize_ninapro_db2
from emg_lens.data.synthetic_eeg import (
    EEG_PREPROCESS,
    TEN_TWENTY,
    eeg_source_fields,
    eeg_spec_of,
    generate_eeg_recordings,
)
from emg_lens.data.synthetic_hdsemg import SyntheticHDsEMGSpec, write_synthetic_hdsemg
from emg_lens.data.synthetic_windows import synthetic_windows
from emg_lens.data.windows import WindowStore
from emg_lens.errors import ArgumentError, DataFormatError

__all__ = [
    "DATASETS",
    "DOWNSTREAM_DATASETS",
    "REGISTRY",
    "WINDOW_DATASETS",
    "DatasetInfo",
    "Windows",
    "dataset_info",
    "dataset_names",
]

Source = dict[str, Any]
"""A data source dict (`emg_lens.data.datasets.data_source`, `windows_source`, ...)."""


class Windows(NamedTuple):
    """A window source's subject before its repetition split: windows ``X [n, C, T]``, class
    ``y [n]`` (``-1``: unlabelled), ``repetition [n]``, what they are (for messages) and meta."""

    X: np.ndarray
    y: np.ndarray
    repetition: np.ndarray
    what: str
    meta: dict[str, Any]


def _no_fields(options: Mapping[str, Any]) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class DatasetInfo:
    """What one dataset is; see the module docstring for what each field holds.

    >>> info = dataset_info("ninapro-db2")
    >>> info.needs_root, info.window_source, dict(info.preprocess)["test_repetitions"]
    (True, False, (2, 5))
    """

    name: str
    summary: str
    layout: str
    needs_root: bool
    montage: Callable[[Source], dict[str, int | None]]
    subjects: Callable[[Source], list[int]]
    files: Callable[[Source, int], list[Path]]
    read: Callable[[Source, int], Recording] | None = None
    read_windows: Callable[[Source, int], Windows] | None = None
    cache_modules: tuple[str, ...] = ()
    preprocess: Mapping[str, Any] = field(default_factory=dict)
    source_fields: Callable[[Mapping[str, Any]], dict[str, Any]] = _no_fields
    channel_names: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    synthesize: Callable[[str | Path, Mapping[str, Any]], Iterator[Path]] | None = None
    downstream: DownstreamTask | None = None
    gesture_names: Mapping[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.read is None) == (self.read_windows is None):
            raise ArgumentError(f"dataset {self.name!r}: give exactly one of read, read_windows")
        object.__setattr__(self, "preprocess", MappingProxyType(dict(self.preprocess)))
        object.__setattr__(self, "channel_names", MappingProxyType(dict(self.channel_names)))
        object.__setattr__(self, "gesture_names", MappingProxyType(dict(self.gesture_names)))

    @property
    def window_source(self) -> bool:
        """True for a source of ready-made windows: split by repetition, never preprocessed
        or cached."""
        return self.read_windows is not None


# ----------------------------------------------------------------------------- synthetic


def _synthetic_spec(source: Source) -> SyntheticSpec:
    return SyntheticSpec(**source["synthetic"])


def _synthetic_montage(source: Source) -> dict[str, int | None]:
    spec = _synthetic_spec(source)
    return {"emg": spec.n_emg, "acc": 3 * spec.n_acc_sensors}  # 3-axis accelerometers


def _synthetic_subjects(source: Source) -> list[int]:
    return list(range(1, source["synthetic"]["n_subjects"] + 1))


def _read_synthetic(source: Source, subject: int) -> Recording:
    return generate_recordings(_synthetic_spec(source), [subject])[0]


def _synthetic_fields(options: Mapping[str, Any]) -> dict[str, Any]:
    return {"synthetic": (options.get("synthetic") or SyntheticSpec()).to_dict()}


def _no_files(source: Source, subject: int) -> list[Path]:
    return []


# ----------------------------------------------------------------------------- NinaPro DB2


def _db2_subjects(source: Source) -> list[int]:
    root = Path(source["root"])
    tails = (p.name.rsplit("_s", 1)[1] for p in root.glob("*_s*") if p.is_dir())
    return _found(sorted({int(t) for t in tails if t.isdigit()}), root, "subject folders DB2_s<N>/")


def _db2_files(source: Source, subject: int) -> list[Path]:
    return [ninapro.find_exercise_file(source["root"], subject, e) for e in source["exercises"]]


def _read_db2(source: Source, subject: int) -> Recording:
    return ninapro.load_ninapro_db2(source["root"], subject, exercises=tuple(source["exercises"]))


def _db2_fields(options: Mapping[str, Any]) -> dict[str, Any]:
    return {"exercises": list(options["exercises"])}


# ----------------------------------------------------------------------------- HD-sEMG


def _hdsemg_subjects(source: Source) -> list[int]:
    root = Path(source["root"])
    return _found(hdsemg.find_subjects(root), root, "s<N>.mat files")


def _synthesize_hdsemg(out: str | Path, options: Mapping[str, Any]) -> Iterator[Path]:
    spec = SyntheticHDsEMGSpec(**options)
    subjects = range(1, spec.n_subjects + 1)  # one subject in memory at a time
    return (write_synthetic_hdsemg(spec, out, [s])[0] for s in subjects)


def _hdsemg_channel_names() -> tuple[str, ...]:
    """Extensor grid then flexor grid; channel ``row + 8 * col`` of a grid is MATLAB's
    ``emg(t, row + 1, col + 1)`` (`emg_lens.data.hdsemg`)."""
    rows, cols = hdsemg.GRID
    return tuple(
        f"{grid}_r{c % rows + 1}c{c // rows + 1}"
        for grid in ("extensor", "flexor")
        for c in range(rows * cols)
    )


# ----------------------------------------------------------------------------- TinyMyo downstream

# The IsoNet-paper pipeline (`emg-lens train`) can read these too; TinyMyo's windows (`emg-lens
# windows --dataset`) follow the thesis instead (`downstream`). Both filter 20-90 Hz + 50 Hz.
_THESIS_FILTERS = {"emg_band": (20.0, 90.0), "notch": 50.0}

# The default windows fit each dataset's real protocol, and are the thesis's own (BioFoundation's
# scripts/epn.py, uci.py and db8.py take --window_size; TinyMyo's docs/model/TinyMyo.md and its
# released UCI checkpoint use 1000-sample windows for EPN-612 and UCI):
# - EPN-612 (zenodo.org/records/4421500; Benalcazar et al.): every sample is a 5 s recording at
#   the Myo's 200 Hz, about 1000 samples, and the script pads or crops each to one window: 1000
#   keeps a whole sample; no step (one window per sample).
# - UCI (archive.ics.uci.edu/dataset/481; Lobov et al. 2018): each gesture is held 3 s, with 3 s
#   pauses between gestures; the files log a row about every millisecond (``time`` is in ms;
#   counts of the published files come to some 3100-3500 rows per gesture), so a gesture's run
#   holds about 3000 rows and 1000-row windows every 500 give about 5 per run. The rows are read
#   at the Myo's nominal 200 Hz, as the script does (`emg_lens.data.uci_gestures`).
# - NinaPro DB8 (2 kHz): 1000 samples are 0.5 s; every acquisition is far longer.


def _epn_windows(recording: Recording, spec: Any, options: Mapping[str, Any]) -> Any:
    return epn612.epn612_windows(recording, spec, **options)


def _uci_windows(recording: Recording, spec: Any, options: Mapping[str, Any]) -> Any:
    splits = options.get("splits", uci_gestures.SUBJECT_SPLITS)
    return uci_gestures.uci_windows(recording, spec, splits=splits)


def _db8_windows(recording: Recording, spec: Any, options: Mapping[str, Any]) -> Any:
    return ninapro_db8.db8_windows(recording, spec)


_EPN612 = DatasetInfo(
    name="epn612",
    summary="EMG-EPN-612: Myo armband, 8 sEMG at 200 Hz, 6 gestures, 306 + 306 users (JSON)",
    layout="<root>/trainingJSON/user<N>/user<N>.json (subject N), "
    "<root>/testingJSON/user<N>/user<N>.json (subject 1000 + N)",
    needs_root=True,
    montage=lambda source: {"emg": epn612.CHANNELS},
    subjects=lambda source: epn612.find_users(source["root"]),
    files=lambda source, subject: [epn612.user_file(source["root"], subject)],
    read=lambda source, subject: epn612.load_epn612(source["root"], subject),
    cache_modules=("emg_lens.data.epn612",),
    preprocess=_THESIS_FILTERS,
    synthesize=synthetic_downstream.synthesize_epn612,
    downstream=DownstreamTask(
        task="classification",
        sample_rate=epn612.SAMPLE_RATE,
        n_channels=epn612.CHANNELS,
        windows=_epn_windows,
        split_rule="training users: trainingSamples train, testingSamples val; testing users: "
        "the first `calibration` (10) trainingSamples of each gesture train, the rest test",
        classes=epn612.GESTURES,
        options=("calibration",),
        window=1000,  # a 5 s sample at 200 Hz, padded or cropped to it
        step=None,  # one window per sample
        unit="sample",
    ),
)

_UCI = DatasetInfo(
    name="uci",
    summary="UCI EMG Data for Gestures: Myo armband, 8 sEMG at 200 Hz, 36 subjects (text)",
    layout="<root>/<NN>/<k>_raw_data_<time>.txt (NN = 01..36)",
    needs_root=True,
    montage=lambda source: {"emg": uci_gestures.CHANNELS},
    subjects=lambda source: uci_gestures.find_subjects(source["root"]),
    files=lambda source, subject: uci_gestures.subject_files(source["root"], subject),
    read=lambda source, subject: uci_gestures.load_uci_gestures(source["root"], subject),
    cache_modules=("emg_lens.data.uci_gestures",),
    preprocess=_THESIS_FILTERS,
    synthesize=synthetic_downstream.synthesize_uci,
    downstream=DownstreamTask(
        task="classification",
        sample_rate=uci_gestures.SAMPLE_RATE,
        n_channels=uci_gestures.CHANNELS,
        windows=_uci_windows,
        split_rule="by subject: train 1-24, val 25-30, test 31-36 (option `splits`)",
        classes=uci_gestures.CLASSES[1:],
        options=("splits",),
        window=1000,  # a third of a 3 s gesture's ~3000 rows
        step=500,
        unit="run of one class",
    ),
)

_DB8 = DatasetInfo(
    name="ninapro-db8",
    summary="NinaPro DB8: 16 sEMG at 2 kHz and an 18-sensor glove, 12 subjects, 3 acquisitions",
    layout="<root>/S<N>_E1_A<k>.mat (k = 1, 2, 3; at any depth)",
    needs_root=True,
    montage=lambda source: {"emg": ninapro_db8.CHANNELS},
    subjects=lambda source: ninapro_db8.find_subjects(source["root"]),
    files=lambda source, subject: [
        ninapro_db8.acquisition_file(source["root"], subject, k) for k in ninapro_db8.ACQUISITIONS
    ],
    read=lambda source, subject: ninapro_db8.load_ninapro_db8(source["root"], subject),
    cache_modules=("emg_lens.data.ninapro_db8",),
    preprocess=_THESIS_FILTERS,
    synthesize=synthetic_downstream.synthesize_db8,
    downstream=DownstreamTask(
        task="regression",
        sample_rate=ninapro_db8.SAMPLE_RATE,
        n_channels=ninapro_db8.CHANNELS,
        windows=_db8_windows,
        split_rule="by acquisition: A1 train, A2 val, A3 test",
        target_names=ninapro_db8.DOA_NAMES,
        window=1000,  # 0.5 s at 2 kHz
        step=500,
        unit="acquisition (NaN glove samples dropped)",
    ),
)


# ----------------------------------------------------------------------------- window sources


def _read_store(source: Source, subject: int) -> Windows:
    train, test = source["train_repetitions"], source["test_repetitions"]
    store = WindowStore(source["path"], subjects=[subject], repetitions=train + test)
    items = [store[i] for i in range(len(store))]
    X = np.stack([x.numpy() for x, _ in items]) if items else np.zeros((0, 0, 0), np.float32)
    meta = {"source": source["path"], "preprocess": store.meta.get("preprocess")}
    return Windows(X, store.labels, store.repetition, f"{source['path']} (subject {subject})", meta)


def _read_synthetic_windows(source: Source, subject: int) -> Windows:
    windows = synthetic_windows(
        _synthetic_spec(source),
        window=source["window"],
        step=source["step"],
        envelope_ms=source["envelope_ms"],
        subjects=[subject],
    )
    meta = {"source": "synthetic", "window": source["window"], "step": source["step"]}
    what = f"synthetic windows (subject {subject})"
    return Windows(windows.X, windows.y, windows.repetition, what, meta)


def _found(subjects: list[int], root: Path, expected: str) -> list[int]:
    if not subjects:
        raise DataFormatError(f"--root {root}: no {expected} found; pass --subjects")
    return subjects


_ENTRIES = (
    DatasetInfo(
        name="synthetic",
        summary="synthetic sEMG + ACC shaped like NinaPro DB2 (emg_lens.data.synthetic)",
        layout="",
        needs_root=False,
        montage=_synthetic_montage,
        subjects=_synthetic_subjects,
        files=_no_files,
        read=_read_synthetic,
        cache_modules=("emg_lens.data.synthetic",),
        preprocess={},  # DB2-shaped: PreprocessSpec's defaults
        source_fields=_synthetic_fields,
    ),
    DatasetInfo(
        name="ninapro-db2",
        summary="NinaPro DB2: 12 sEMG + 12 3-axis ACC at 2 kHz, exercises B/C/D",
        layout="<root>/DB2_s<N>/S<N>_E<k>_A1.mat",
        needs_root=True,
        montage=lambda source: {m: ninapro.CHANNELS[m] for m in ("emg", "acc")},  # what it reads
        subjects=_db2_subjects,
        files=_db2_files,
        read=_read_db2,
        cache_modules=("emg_lens.data.ninapro",),
        preprocess={"train_repetitions": (1, 3, 4, 6), "test_repetitions": (2, 5)},
        source_fields=_db2_fields,
        synthesize=synthesize_ninapro_db2,
        gesture_names=ninapro.EXERCISE_B_NAMES,
    ),
    DatasetInfo(
        name="hdsemg",
        summary="HD-sEMG 65 gestures: two 8 x 8 grids at 2048 Hz and force (MATLAB v7.3)",
        layout="<root>/s<N>.mat",
        needs_root=True,
        montage=lambda source: {"emg": 2 * hdsemg.GRID[0] * hdsemg.GRID[1], "force": None},
        subjects=_hdsemg_subjects,
        files=lambda source, subject: [hdsemg.subject_file(source["root"], subject)],
        read=lambda source, subject: hdsemg.load_hdsemg(source["root"], subject),
        cache_modules=("emg_lens.data.hdsemg",),
        # 2048 Hz, so the 500 Hz band edge is well below Nyquist; force is low-passed like ACC.
        preprocess={
            "emg_band": (10.0, 500.0),
            "lowpass": 90.0,
            "train_repetitions": (1, 3, 4),
            "test_repetitions": (2, 5),
        },
        channel_names={"emg": _hdsemg_channel_names()},
        synthesize=_synthesize_hdsemg,
    ),
    _EPN612,
    _UCI,
    _DB8,
    DatasetInfo(
        name="synthetic-eeg",
        summary="synthetic 10-20 EEG (19 channels, 200 Hz) with a planted region interaction "
        "(emg_lens.data.synthetic_eeg)",
        layout="",
        needs_root=False,
        montage=lambda source: {"eeg": len(eeg_spec_of(source).channels)},
        subjects=lambda source: list(range(1, eeg_spec_of(source).n_subjects + 1)),
        files=_no_files,
        read=lambda source, subject: generate_eeg_recordings(eeg_spec_of(source), [subject])[0],
        cache_modules=("emg_lens.data.synthetic_eeg",),
        preprocess=EEG_PREPROCESS,
        source_fields=eeg_source_fields,
        channel_names={"eeg": TEN_TWENTY},  # the default montage's
    ),
    DatasetInfo(
        name="windows",
        summary="an HDF5 window store (emg_lens.data.windows; emg-lens windows writes one)",
        layout="<path>.h5",
        needs_root=False,
        montage=lambda source: {"emg": None},  # the store's channels
        subjects=lambda source: WindowStore(source["path"]).subjects,
        files=lambda source, subject: [Path(source["path"])],
        read_windows=_read_store,
    ),
    DatasetInfo(
        name="synthetic-windows",
        summary="synthetic sEMG windows (emg_lens.data.synthetic_windows)",
        layout="",
        needs_root=False,
        montage=lambda source: {"emg": _synthetic_spec(source).n_emg},
        subjects=_synthetic_subjects,
        files=_no_files,
        read_windows=_read_synthetic_windows,
    ),
)

REGISTRY: Mapping[str, DatasetInfo] = MappingProxyType({info.name: info for info in _ENTRIES})
"""Every dataset by name."""

DATASETS = tuple(name for name, info in REGISTRY.items() if not info.window_source)
"""The recording datasets: what `data_source` and the CLI's ``--dataset`` accept."""

WINDOW_DATASETS = tuple(name for name, info in REGISTRY.items() if info.window_source)
"""The sources of ready-made windows (`windows_source`, `synthetic_windows_source`)."""

DOWNSTREAM_DATASETS = tuple(name for name, info in REGISTRY.items() if info.downstream)
"""TinyMyo's downstream datasets: what ``emg-lens windows --dataset`` accepts."""


def dataset_names(*, window_source: bool | None = None) -> tuple[str, ...]:
    """The registered names: all (``None``), only the window sources (True) or only the
    recording datasets (False), in registry order.

    >>> dataset_names(window_source=True)
    ('windows', 'synthetic-windows')
    """
    if window_source is None:
        return tuple(REGISTRY)
    return DATASETS if not window_source else WINDOW_DATASETS


def dataset_info(name: Any, *, window_source: bool | None = None) -> DatasetInfo:
    """The registry entry of dataset ``name``; ``window_source`` restricts it as in
    `dataset_names`. An unknown (or excluded) name is an `ArgumentError` listing the names
    accepted.

    >>> dataset_info("synthetic").needs_root
    False
    >>> dataset_info("windows", window_source=False)
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: dataset must be one of ['synthetic', 'ninapro-db2', \
'hdsemg', 'epn612', 'uci', 'ninapro-db8', 'synthetic-eeg'], got 'windows'
    """
    accepted = dataset_names(window_source=window_source)
    if not isinstance(name, str) or name not in accepted:
        raise ArgumentError(f"dataset must be one of {list(accepted)}, got {name!r}")
    return REGISTRY[name]
