"""`DatasetReader`: what a dataset's module provides so that the registry can read it.

The registry says what each dataset *is* and names (``"module:attribute"``) the `DatasetReader`
that says how it is *read*. Every function here takes a data source (the JSON-able dict of
`emg_lens.data.datasets.data_source`), so a checkpoint's recorded source is all a later run
needs. An entry's uses say which it needs: ``"recordings"`` ``read``, ``"windows"``
``read_windows``, ``"store"`` ``store``, ``"downstream"`` a ``downstream`` task
(`tests/unit/data/test_registry.py` checks every entry)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from emg_lens.errors import DataFormatError, check_names

if TYPE_CHECKING:
    import numpy as np

    from emg_lens.data.recording import Recording
    from emg_lens.geometry import Montage

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


def no_files(source: Source, subject: int) -> list[Path]:
    """The files of generated data: none."""
    return []


def found_subjects(subjects: list[int], root: str | Path, expected: str) -> list[int]:
    """``subjects``, or a `DataFormatError` saying that no ``expected`` lie under ``root``.

    >>> found_subjects([], "/data/db2", "subject folders DB2_s<N>/")
    Traceback (most recent call last):
    ...
    emg_lens.errors.DataFormatError: --root /data/db2: no subject folders DB2_s<N>/ found; pass --subjects
    """  # noqa: E501
    if not subjects:
        raise DataFormatError(f"--root {root}: no {expected} found; pass --subjects")
    return subjects


@dataclass(frozen=True)
class DatasetReader:
    """How one dataset is read.

    Attributes:
        montage: source -> channels per modality (None: the file says), known before any file
            is read.
        subjects: source -> the subject numbers it holds.
        files: source, subject -> the files read (none for generated data).
        read: source, subject -> the subject's continuous `Recording` (a recording dataset).
        read_windows: source, subject -> its ready-made `Windows` (a window source).
        store: source, subjects -> a function yielding those subjects' recordings, one at a
            time, each time it is called (what ``emg-lens windows --source`` cuts).
        preprocess: the `emg_lens.data.preprocess.PreprocessSpec` fields that differ from its
            defaults for this dataset.
        source_fields: `data_source`'s options -> the extra keys its source dict stores.
        channel_names: modality -> the names of its channels.
        gesture_names: class label -> the movement the dataset's documentation names; or, for
            a dataset whose names lie in its files, source -> that mapping.
        downstream: a TinyMyo downstream task (`emg_lens.data.windows.downstream.DownstreamTask`).
        geometry: source -> modality -> `emg_lens.geometry.Montage`: where its channels lie.
        numbering: source -> how the whole dataset numbers its subjects, gestures and
            repetitions where a subject's own files do not (your own files): part of every key
            and digest of a subject's data."""

    montage: Callable[[Source], dict[str, int | None]]
    subjects: Callable[[Source], list[int]]
    files: Callable[[Source, int], list[Path]]
    read: Callable[[Source, int], Recording] | None = None
    read_windows: Callable[[Source, int], Windows] | None = None
    store: Callable[[Source, list[int]], Callable[[], Iterator[Recording]]] | None = None
    preprocess: Mapping[str, Any] = field(default_factory=dict)
    source_fields: Callable[[Mapping[str, Any]], dict[str, Any]] = _no_fields
    channel_names: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    gesture_names: Mapping[int, str] | Callable[[Source], Mapping[int, str]] = field(
        default_factory=dict
    )
    downstream: Any = None  # DownstreamTask | None (emg_lens.data.windows.downstream)
    geometry: Callable[[Source], Mapping[str, Montage]] | None = None
    numbering: Callable[[Source], Any] | None = None

    def __post_init__(self) -> None:
        for name in ("preprocess", "channel_names", "gesture_names"):
            value = getattr(self, name)
            if not callable(value):
                object.__setattr__(self, name, MappingProxyType(dict(value)))
        for modality, names in self.channel_names.items():
            check_names(names, f"DatasetReader.channel_names[{modality!r}]")

    def numbering_of(self, source: Source) -> dict[str, Any]:
        """``{"numbering": ...}`` for a dataset numbered over its whole folder (`numbering`),
        else ``{}``: what keys and digests of a subject's data add, so that those of the
        other datasets stay as they were."""
        return {} if self.numbering is None else {"numbering": self.numbering(source)}

    def gestures_of(self, source: Source) -> Mapping[int, str]:
        """Class label -> gesture name for this data source (`gesture_names`)."""
        names = self.gesture_names
        return names(source) if callable(names) else names
