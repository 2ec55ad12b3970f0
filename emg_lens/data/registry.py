"""The registry of datasets: the one place that says what each dataset is.

A data source is a JSON-able dict whose ``"dataset"`` names an entry here; everything that
depends on which dataset it is is looked up with `dataset_info`, never by comparing the name.
This module imports neither numpy nor torch (``emg-lens --help`` reads its choices); each
entry's `emg_lens.data.reader.DatasetReader` is imported on first use.

Adding a dataset is one module plus one entry:

1. A module (a file format under ``emg_lens/data/formats/``, a generator under
   ``synthetic/``): a reader returning a `Recording` (or, for a source of ready-made
   windows, a `Windows`), its writer, and one `DatasetReader` (`emg_lens.data.reader` lists
   what each use needs).
2. One row of ``_TABLE`` below, a `DatasetInfo`: ``name`` (what ``"dataset"`` and the CLI
   say), ``uses`` (of `USES`), ``reader`` (``"module:attribute"``), for a format ``emg-lens
   synth`` writes ``synthesizer`` (``"module:function"``: out folder, options -> the files
   written), ``layout`` (where the files lie under the root; ``""`` when generated) and
   ``summary`` (one line).

>>> DATASETS  # doctest: +NORMALIZE_WHITESPACE
('synthetic', 'ninapro-db2', 'hdsemg', 'epn612', 'uci', 'ninapro-db8', 'synthetic-eeg',
 'files')
>>> WINDOW_DATASETS, DOWNSTREAM_DATASETS
(('windows', 'synthetic-windows'), ('epn612', 'uci', 'ninapro-db8'))
>>> dataset_info("hdsemg").montage({"dataset": "hdsemg", "root": "/data/hdsemg"})
{'emg': 128, 'force': None}
>>> dataset_info("ninapro-db8").downstream.task
'regression'
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from emg_lens.errors import ArgumentError, check_choice, checked

if TYPE_CHECKING:
    from emg_lens.data.reader import DatasetReader

USES = {
    "recordings": "read, preprocessed and cached per subject: `data_source`, `load_subject`, "
    "--dataset of train and training studies",
    "windows": "ready-made windows, split by repetition, never preprocessed or cached",
    "store": "cut into a TinyMyo window store (`emg-lens windows --source`)",
    "pretraining": "a pretraining corpus: its store is min-max normalised per window by default "
    "(else z-scored on the training repetitions)",
    "repetitions": "its store is split by repetition (--train-repetitions, --test-repetitions)",
    "downstream": "a TinyMyo downstream benchmark: windowed by the thesis's recipe, its own "
    "train / val / test split (`emg-lens windows --dataset`)",
}
"""What a dataset can be used for; an entry lists its own."""

SPLIT_REPETITIONS = MappingProxyType(
    {"train_repetitions": (1, 3, 4, 6), "test_repetitions": (2, 5)}
)
"""The NinaPro repetition split (Atzori et al. 2014: repetitions 2 and 5 tested): NinaPro DB2's
default and that of every store and window source split by repetition but those of
`STORE_REPETITIONS`."""

STORE_REPETITIONS = MappingProxyType(
    {
        "ninapro-db6": MappingProxyType(
            {"train_repetitions": tuple(range(1, 9)), "test_repetitions": (11, 12)}
        ),
        "ninapro-db7": MappingProxyType(
            {"train_repetitions": (1, 2, 3, 4), "test_repetitions": (6,)}
        ),
    }
)
"""The window stores with their own repetition split: the TinyMyo thesis's (BioFoundation
``scripts/db6.py``, ``db7.py``, commit ef48f18: DB6's 12 repetitions train 1-8, validation 9-10,
test 11-12; DB7's 6 train 1-4, validation 5, test 6), the validation repetitions in neither."""


@dataclass(frozen=True)
class DatasetInfo:
    """What one dataset is; the module docstring says what each field holds. The fields of its
    `emg_lens.data.reader.DatasetReader` (``montage``, ``read``, ...) are read through the
    entry, the reader's module imported on first use.

    >>> info = dataset_info("ninapro-db2")
    >>> info.needs_root, info.window_source, dict(info.preprocess)["test_repetitions"]
    (True, False, (2, 5))
    """

    name: str
    summary: str
    layout: str
    needs_root: bool
    uses: tuple[str, ...]
    reader: str
    synthesizer: str | None = None

    def __post_init__(self) -> None:
        for use in self.uses:
            check_choice(use, list(USES), f"dataset {self.name!r}: uses")
        for key in ("reader", "synthesizer"):
            if (ref := getattr(self, key)) is not None and ref.count(":") != 1:
                raise ArgumentError(
                    f"dataset {self.name!r}: {key} must be 'module:attribute', got {ref!r}"
                )

    def __getattr__(self, name: str) -> Any:
        if name not in _READER_FIELDS:  # also what copy and pickle probe for
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(self.reading, name)

    @property
    def reading(self) -> DatasetReader:
        """The `DatasetReader` named by ``reader`` (its module imported once)."""
        return _resolve(self.reader)

    @property
    def synthesize(self) -> Any:
        """``synthesize(out, options)``, writing synthetic files in this dataset's layout (what
        ``emg-lens synth --format`` runs), or None."""
        return None if self.synthesizer is None else _resolve(self.synthesizer)

    @property
    def window_source(self) -> bool:
        """True for a source of ready-made windows: split by repetition, never preprocessed
        or cached."""
        return "windows" in self.uses

    @property
    def cache_modules(self) -> tuple[str, ...]:
        """The module whose code (with the emg_lens modules it imports) the preprocessing
        cache fingerprints: the reader's."""
        return (self.reader.partition(":")[0],)


_READER_FIELDS = frozenset(
    {
        "montage",
        "subjects",
        "files",
        "read",
        "read_windows",
        "store",
        "preprocess",
        "source_fields",
        "channel_names",
        "gesture_names",
        "gestures_of",
        "downstream",
        "geometry",
        "numbering",
        "numbering_of",
    }
)


@functools.cache
def _resolve(ref: str) -> Any:
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


_F, _S = "emg_lens.data.formats.", "emg_lens.data.synthetic."

# One row a dataset, in registry order: its name, uses (of USES), reader and synthesizer (the
# module docstring's fields), then layout and summary. needs_root follows from the layout: a
# dataset whose files lie under "<root>" needs one.
# fmt: off
_TABLE = (
    ("synthetic", "recordings store repetitions", _S + "emg_acc:READER", None, "",
     "synthetic sEMG + ACC shaped like NinaPro DB2 (emg_lens.data.synthetic.emg_acc)"),
    ("ninapro-db2", "recordings", _F + "ninapro_db2:READER",
     _S + "emg_acc:synthesize_ninapro_db2", "<root>/DB2_s<N>/S<N>_E<k>_A1.mat",
     "NinaPro DB2: 12 sEMG + 12 3-axis ACC at 2 kHz, exercises B/C/D"),
    ("hdsemg", "recordings", _F + "hdsemg:READER", _S + "hdsemg:synthesize_hdsemg",
     "<root>/s<N>.mat",
     "HD-sEMG 65 gestures: two 8 x 8 grids at 2048 Hz and force (MATLAB v7.3)"),
    ("epn612", "recordings store downstream", _F + "epn612:READER",
     _S + "downstream:synthesize_epn612",
     "<root>/trainingJSON/user<N>/user<N>.json (subject N), "
     "<root>/testingJSON/user<N>/user<N>.json (subject 1000 + N)",
     "EMG-EPN-612: Myo armband, 8 sEMG at 200 Hz, 6 gestures, 306 + 306 users (JSON)"),
    ("uci", "recordings store downstream", _F + "uci_gestures:READER",
     _S + "downstream:synthesize_uci", "<root>/<NN>/<k>_raw_data_<time>.txt (NN = 01..36)",
     "UCI EMG Data for Gestures: Myo armband, 8 sEMG, 36 subjects (text); rows logged about "
     "every ms, read at the Myo's nominal 200 Hz as the TinyMyo thesis does"),
    ("ninapro-db8", "recordings store downstream", _F + "ninapro_db8:READER",
     _S + "downstream:synthesize_db8", "<root>/S<N>_E1_A<k>.mat (k = 1, 2, 3; at any depth)",
     "NinaPro DB8: 16 sEMG at 2 kHz and an 18-sensor glove, 12 subjects, 3 acquisitions"),
    ("synthetic-eeg", "recordings", _S + "eeg:READER", None, "",
     "synthetic 10-20 EEG (19 channels, 200 Hz) with a planted region interaction "
     "(emg_lens.data.synthetic.eeg)"),
    ("files", "recordings", _F + "trial_files:READER", None,
     "<root>/<--pattern>, e.g. R_{repetition}_C_{gesture}_EMG.csv",
     "your own recordings: one file per trial (.csv, .npy, .mat), the labels in the file "
     "names by a path template (emg_lens.data.read_files)"),
    ("emg2pose", "store pretraining", _F + "emg2pose:READER", None,
     "<root>/metadata.csv, <root>/<filename>.hdf5",
     "emg2pose: 16-channel sEMG wristbands at 2 kHz, unlabelled sessions with joint angles "
     "(HDF5 + metadata.csv); TinyMyo's largest pretraining corpus"),
    ("ninapro-db5", "store repetitions", _F + "ninapro_db5:READER", None,
     "<root>/s<N>/S<N>_E<k>_A1.mat (k = 1, 2, 3; at any depth)",
     "NinaPro DB5: two Myo armbands, 16 sEMG at 200 Hz, 52 movements in 3 exercises"),
    ("ninapro-db6", "store pretraining repetitions", _F + "ninapro_db6_db7:DB6_READER", None,
     "<root>/S<N>_D<day>_T<time>.mat (at any depth)",
     "NinaPro DB6: 14 sEMG at 2 kHz, 7 grasps, 10 subjects x 5 days x 2 sessions"),
    ("ninapro-db7", "store pretraining repetitions", _F + "ninapro_db6_db7:DB7_READER", None,
     "<root>/S<N>_E1_A1.mat (at any depth)",
     "NinaPro DB7: 12 sEMG + IMU at 2 kHz, 40 movements, 22 subjects"),
    ("windows", "windows", "emg_lens.data.windows.store:READER", None, "<path>.h5",
     "an HDF5 window store (emg_lens.data.windows.store; emg-lens windows writes one)"),
    ("synthetic-windows", "windows", _S + "windows:READER", None, "",
     "synthetic sEMG windows (emg_lens.data.synthetic.windows)"),
)
# fmt: on

_ENTRIES = tuple(
    DatasetInfo(name, summary, layout, layout.startswith("<root>"), tuple(uses.split()), *code)
    for name, uses, *code, layout, summary in _TABLE
)

REGISTRY: Mapping[str, DatasetInfo] = MappingProxyType({info.name: info for info in _ENTRIES})
"""Every dataset by name."""


def dataset_names(use: str | None = None) -> tuple[str, ...]:
    """The registered names, in registry order: all, or those with ``use`` (of `USES`).

    >>> dataset_names("pretraining")
    ('emg2pose', 'ninapro-db6', 'ninapro-db7')
    """
    if use is not None:
        check_choice(use, list(USES), "use")
    return tuple(name for name, info in REGISTRY.items() if use is None or use in info.uses)


DATASETS = dataset_names("recordings")
"""The recording datasets: what `data_source` and the CLI's ``--dataset`` accept."""

WINDOW_DATASETS = dataset_names("windows")
"""The sources of ready-made windows (`windows_source`, `synthetic_windows_source`)."""

WINDOW_STORE_SOURCES = dataset_names("store")
"""What `emg_lens.data.window_build.build_window_store` (``emg-lens windows --source``) reads."""

REPETITION_SOURCES = dataset_names("repetitions")
"""Window-store sources split by repetition (``train_repetitions``, ``test_repetitions``)."""

DOWNSTREAM_DATASETS = dataset_names("downstream")
"""TinyMyo's downstream datasets: what ``emg-lens windows --dataset`` accepts."""

SYNTH_FORMATS = tuple(name for name, info in REGISTRY.items() if info.synthesizer)
"""The formats ``emg-lens synth --format`` writes."""


@checked
def dataset_info(name: Any, *, use: str | None = None) -> DatasetInfo:
    """The registry entry of dataset ``name`` (of those with ``use``, when given); another name
    is an `ArgumentError` listing the names accepted.

    >>> dataset_info("synthetic").needs_root
    False
    >>> dataset_info("windows", use="recordings")
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: dataset must be one of ['synthetic', 'ninapro-db2', \
'hdsemg', 'epn612', 'uci', 'ninapro-db8', 'synthetic-eeg', 'files'], got 'windows'
    """
    accepted = dataset_names(use)
    check_choice(name, list(accepted), "dataset")
    return REGISTRY[name]
