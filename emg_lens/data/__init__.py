"""Data: what each dataset is (`emg_lens.data.registry`, which imports neither numpy nor
torch, so the command line reads its names while ``--help`` starts), data sources and the
preprocessing cache (`datasets`, `cache`, `preprocess`), and three wings: ``formats/`` (one
module per file format, reader and writer together), ``synthetic/`` (the generators with
planted structure) and ``windows/`` (TinyMyo's window store and its pipeline). Every reader
returns a `emg_lens.data.recording.Recording`. `placement` checks, label-free, whether the
electrodes of a held-out repetition moved, and puts them back before preprocessing."""

from typing import TYPE_CHECKING

_FROM = {
    "emg_lens.data.datasets": (
        "data_source",
        "dataset_preprocess",
        "load_subject",
        "montages_of",
        "synthetic_windows_source",
    ),
    "emg_lens.data.formats.hdsemg": ("load_hdsemg",),
    "emg_lens.data.formats.otb": ("read_otb",),
    "emg_lens.data.formats.trial_files": ("read_files",),
    "emg_lens.data.placement": ("check_subject", "realign_recording", "realign_subject"),
    "emg_lens.data.pooled": ("pool_subjects", "unpool"),
    "emg_lens.data.preprocess": ("PreprocessSpec", "SubjectData", "prepare_subject"),
    "emg_lens.data.recording": ("Recording",),
    "emg_lens.data.registry": ("dataset_info",),
    "emg_lens.data.synthetic.downstream": ("synthetic_db8", "synthetic_epn612", "synthetic_uci"),
    "emg_lens.data.synthetic.eeg": ("planted_eeg", "planted_eeg_setup", "planted_eeg_truth"),
    "emg_lens.data.synthetic.emg_acc": (
        "SyntheticSpec",
        "demo_setup",
        "generate_recordings",
        "gesture_kinds",
        "subject_signature_setup",
    ),
    "emg_lens.data.windows.store": ("WindowStore", "write_window_store"),
}
"""Each module -> the names this package exports from it, imported on first use."""

if TYPE_CHECKING:  # what the API reference renders (griffe reads the source, not __getattr__)
    from emg_lens.data.datasets import (
        data_source,
        dataset_preprocess,
        load_subject,
        montages_of,
        synthetic_windows_source,
    )
    from emg_lens.data.formats.hdsemg import load_hdsemg
    from emg_lens.data.formats.otb import read_otb
    from emg_lens.data.formats.trial_files import read_files
    from emg_lens.data.placement import check_subject, realign_recording, realign_subject
    from emg_lens.data.pooled import pool_subjects, unpool
    from emg_lens.data.preprocess import PreprocessSpec, SubjectData, prepare_subject
    from emg_lens.data.recording import Recording
    from emg_lens.data.registry import dataset_info
    from emg_lens.data.synthetic.downstream import synthetic_db8, synthetic_epn612, synthetic_uci
    from emg_lens.data.synthetic.eeg import planted_eeg, planted_eeg_setup, planted_eeg_truth
    from emg_lens.data.synthetic.emg_acc import (
        SyntheticSpec,
        demo_setup,
        generate_recordings,
        gesture_kinds,
        subject_signature_setup,
    )
    from emg_lens.data.windows.store import WindowStore, write_window_store

__all__ = [
    "PreprocessSpec",
    "Recording",
    "SubjectData",
    "SyntheticSpec",
    "WindowStore",
    "check_subject",
    "data_source",
    "dataset_info",
    "dataset_preprocess",
    "demo_setup",
    "generate_recordings",
    "gesture_kinds",
    "load_hdsemg",
    "load_subject",
    "montages_of",
    "planted_eeg",
    "planted_eeg_setup",
    "planted_eeg_truth",
    "pool_subjects",
    "prepare_subject",
    "read_files",
    "read_otb",
    "realign_recording",
    "realign_subject",
    "subject_signature_setup",
    "synthetic_db8",
    "synthetic_epn612",
    "synthetic_uci",
    "synthetic_windows_source",
    "unpool",
    "write_window_store",
]

_LAZY = {name: module for module, names in _FROM.items() for name in names}


def __getattr__(name: str):
    # the readers import numpy; this package's face stays light for the command line's --help
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'emg_lens.data' has no attribute {name!r}")
