"""Data: what each dataset is (`emg_lens.data.registry`, which imports neither numpy nor
torch, so the command line reads its names while ``--help`` starts), data sources and the
preprocessing cache (`datasets`, `cache`, `preprocess`), and three wings: ``formats/`` (one
module per file format, reader and writer together), ``synthetic/`` (the generators with
planted structure) and ``windows/`` (TinyMyo's window store and its pipeline). Every reader
returns a `emg_lens.data.recording.Recording`. `placement` checks, label-free, whether the
electrodes of a held-out repetition moved, and puts them back before preprocessing."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what the API reference renders (griffe reads the source, not __getattr__)
    from emg_lens.data.formats.otb import read_otb
    from emg_lens.data.formats.trial_files import read_files
    from emg_lens.data.placement import check_subject, realign_subject

__all__ = ["check_subject", "read_files", "read_otb", "realign_subject"]

_LAZY = {
    "check_subject": "emg_lens.data.placement",
    "read_files": "emg_lens.data.formats.trial_files",
    "read_otb": "emg_lens.data.formats.otb",
    "realign_subject": "emg_lens.data.placement",
}


def __getattr__(name: str):
    # the readers import numpy; this package's face stays light for the command line's --help
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'emg_lens.data' has no attribute {name!r}")
