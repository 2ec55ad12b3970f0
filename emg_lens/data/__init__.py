"""Data: the dataset registry (`emg_lens.data.registry`), data sources, preprocessing and its
cache (`datasets`, `preprocess`, `cache`), ``formats/`` (one module per file format, reader
and writer), ``synthetic/`` (generators with planted structure), ``windows/`` (TinyMyo's
window store and pipeline), and `placement` (did the electrodes move?). Every reader returns
a `emg_lens.data.recording.Recording`."""

from typing import TYPE_CHECKING

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

_MODULES: tuple[str, ...] = ("recording", "preprocess", "placement", "pooled", "registry")
_MODULES += ("datasets", "formats.hdsemg", "formats.otb", "formats.trial_files")
_MODULES += ("synthetic.downstream", "synthetic.eeg", "synthetic.emg_acc", "windows.store")
"""Where the names above live (the imports under ``TYPE_CHECKING``), imported on first use:
the readers import numpy, and this package's face stays light for the command line's --help."""


def __getattr__(name: str):
    if name in __all__:  # from the first of _MODULES (light to heavy) that defines it
        import importlib

        for module in _MODULES:
            found = vars(importlib.import_module(f"emg_lens.data.{module}"))
            if name in found:
                return found[name]
    raise AttributeError(f"module 'emg_lens.data' has no attribute {name!r}")
