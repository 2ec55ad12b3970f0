"""Data sources: a small JSON-able dict that says how to rebuild a subject's windows.

Checkpoints store their data source, so evaluation and studies need only the checkpoint:

>>> source = data_source("synthetic", synthetic=SyntheticSpec(n_subjects=1, movement_seconds=1.5),
...                      preprocess=PreprocessSpec(segment=(0.5, 1.5), step=100))
>>> load_subject(source, 1).X_test.shape[1:]
(48, 200)
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from emg_lens.data.preprocess import PreprocessSpec, SubjectData, prepare_subject
from emg_lens.data.recording import Recording
from emg_lens.data.synthetic import SyntheticSpec, generate_recordings
from emg_lens.errors import ArgumentError

__all__ = ["DATASETS", "data_source", "load_recording", "load_subject", "preprocess_spec"]

DATASETS = ("synthetic", "ninapro-db2", "hdsemg")


def data_source(
    dataset: str,
    *,
    root: str | Path | None = None,
    synthetic: SyntheticSpec | None = None,
    preprocess: PreprocessSpec | None = None,
    exercises: tuple[str, ...] = ("B",),
) -> dict[str, Any]:
    """Describe a dataset (``"synthetic"``, ``"ninapro-db2"`` or ``"hdsemg"``) and its
    preprocessing as a JSON-able dict."""
    if dataset not in DATASETS:
        raise ArgumentError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if dataset != "synthetic" and root is None:
        raise ArgumentError(f"dataset {dataset!r} needs --root, the folder holding its files")
    source: dict[str, Any] = {
        "dataset": dataset,
        "preprocess": (preprocess or PreprocessSpec()).to_dict(),
    }
    if dataset == "synthetic":
        source["synthetic"] = (synthetic or SyntheticSpec()).to_dict()
    else:
        source["root"] = str(Path(root).resolve())
    if dataset == "ninapro-db2":
        source["exercises"] = list(exercises)
    return source


def preprocess_spec(data: dict[str, Any]) -> PreprocessSpec:
    """A `PreprocessSpec` from its dict (JSON lists become tuples again)."""
    known = {f.name for f in fields(PreprocessSpec)}
    return PreprocessSpec(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
    )


def load_recording(source: dict[str, Any], subject: int) -> Recording:
    """The continuous recording of one subject of a data source."""
    dataset = source.get("dataset")
    if dataset == "synthetic":
        return generate_recordings(SyntheticSpec(**source["synthetic"]), [subject])[0]
    if dataset == "ninapro-db2":
        from emg_lens.data.ninapro import load_ninapro_db2

        return load_ninapro_db2(source["root"], subject, exercises=tuple(source["exercises"]))
    if dataset == "hdsemg":
        from emg_lens.data.hdsemg import load_hdsemg

        return load_hdsemg(source["root"], subject)
    raise ArgumentError(f"data source names dataset {dataset!r}; known: {DATASETS}")


def load_subject(source: dict[str, Any], subject: int) -> SubjectData:
    """Load and preprocess one subject of a data source."""
    return prepare_subject(load_recording(source, subject), preprocess_spec(source["preprocess"]))
