"""The notebook's data path keeps the study's promises (issue 85): a checkpoint's windows
loaded in a notebook are checked against its recorded subject as `study run` checks them,
layouts refuse counts that drop a modality, and a study's output folder and data are refused
by name where they would end in a raw traceback."""

from __future__ import annotations

from pathlib import Path

from emg_lens import EncoderConfig
from emg_lens.checkpoints import load_checkpoint_data, save_checkpoint
from emg_lens.data import PreprocessSpec, SyntheticSpec, data_source
from emg_lens.errors import CheckpointError, StorageError
from emg_lens.models import IsoNet
from emg_lens.studies.store import CellStore

CFG = EncoderConfig.preset("tiny", modalities={"emg": 12, "acc": 36}, n_samples=200)


def synthetic_checkpoint(folder: Path, **metadata) -> Path:
    """A tiny IsoNet checkpoint at ``folder`` whose metadata records a small synthetic data
    source (and ``metadata``)."""
    synthetic = SyntheticSpec(n_subjects=1, movement_seconds=0.6, rest_seconds=0.2)
    segment = PreprocessSpec(segment=(0.2, 0.6), step=100)
    source = data_source("synthetic", synthetic=synthetic, preprocess=segment)
    return save_checkpoint(IsoNet(CFG), folder, metadata={"data_source": source, **metadata})


def _copied_under_another_subject(tmp: Path):
    return load_checkpoint_data(synthetic_checkpoint(tmp / "subject_3", subject=1))


def _a_file_named_cells(tmp: Path):
    (tmp / "out").mkdir()
    (tmp / "out" / "cells").write_text("notes")
    return CellStore(tmp / "out", "fingerprint")


ROWS = [
    (
        "checkpoint folder copied under another subject's name",
        _copied_under_another_subject,
        CheckpointError,
        "subject_3: its metadata records subject 1, its folder's name subject 3",
    ),
    (
        "a file named cells where the study's cells folder goes",
        _a_file_named_cells,
        StorageError,
        "out/cells is a file, where a folder is wanted; move or rename that file",
    ),
]
