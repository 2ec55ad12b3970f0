"""Data sources: a small JSON-able dict that says how to rebuild a subject's windows.

Checkpoints store their data source, so evaluation and studies need only the checkpoint.
`load_subject` keeps each preprocessed subject in an on-disk cache, so a second run (training,
then evaluation, then every study) reads windows instead of filtering the recording again.

Each dataset has its own preprocessing defaults (`dataset_preprocess`): HD-sEMG's repetition
split is train 1, 3, 4 / test 2, 5, NinaPro DB2's train 1, 3, 4, 6 / test 2, 5.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import os
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import IO, Any

import numpy as np

from emg_lens.data.preprocess import PreprocessSpec, SubjectData, prepare_subject
from emg_lens.data.recording import Recording
from emg_lens.data.synthetic import SyntheticSpec, generate_recordings
from emg_lens.errors import ArgumentError, DataFormatError

__all__ = [
    "CACHE_ENV",
    "CACHE_VERSION",
    "DATASETS",
    "DATASET_PREPROCESS",
    "available_subjects",
    "cache_key",
    "data_source",
    "dataset_preprocess",
    "default_cache_dir",
    "load_recording",
    "load_subject",
    "preprocess_spec",
    "source_files",
]

DATASETS = ("synthetic", "ninapro-db2", "hdsemg")

DATASET_PREPROCESS: dict[str, dict[str, Any]] = {
    "synthetic": {},  # DB2-shaped: PreprocessSpec's defaults
    "ninapro-db2": {"train_repetitions": (1, 3, 4, 6), "test_repetitions": (2, 5)},
    # 2048 Hz, so the 500 Hz band edge is well below Nyquist; force is low-passed like ACC.
    "hdsemg": {
        "emg_band": (10.0, 500.0),
        "lowpass": 90.0,
        "train_repetitions": (1, 3, 4),
        "test_repetitions": (2, 5),
    },
}
"""Per dataset, the `PreprocessSpec` fields that differ from (or pin) its defaults."""

CACHE_VERSION = 1
"""Part of every cache key: bump it when the cache files' layout changes, or when what
preprocessing returns changes for a reason the code fingerprint cannot see (see `cache_key`)."""

CACHE_ENV = "EMG_LENS_CACHE"
"""Environment variable: ``0`` (or ``off``/``false``/``no``) turns the default cache off; a
folder path puts the default cache there."""

_LOADER_MODULES = {
    "synthetic": "emg_lens.data.synthetic",
    "ninapro-db2": "emg_lens.data.ninapro",
    "hdsemg": "emg_lens.data.hdsemg",
}
_PREPROCESS_MODULES = ("emg_lens.data.recording", "emg_lens.data.preprocess")
_JSON_FIELDS = ("subject", "modalities", "classes", "meta")
_ARRAY_FIELDS = tuple(f.name for f in fields(SubjectData) if f.name not in _JSON_FIELDS)


def _check_dataset(dataset: Any) -> None:
    if dataset not in DATASETS:
        raise ArgumentError(f"dataset must be one of {DATASETS}, got {dataset!r}")


def dataset_preprocess(dataset: str, **overrides: Any) -> PreprocessSpec:
    """The dataset's default `PreprocessSpec`, with any field overridden.

    >>> spec = dataset_preprocess("hdsemg", window=100)
    >>> spec.train_repetitions, spec.test_repetitions, spec.window
    ((1, 3, 4), (2, 5), 100)
    """
    _check_dataset(dataset)
    return PreprocessSpec(**{**DATASET_PREPROCESS[dataset], **overrides})


def data_source(
    dataset: str,
    *,
    root: str | Path | None = None,
    synthetic: SyntheticSpec | None = None,
    preprocess: PreprocessSpec | None = None,
    exercises: tuple[str, ...] = ("B",),
) -> dict[str, Any]:
    """Describe a dataset (``"synthetic"``, ``"ninapro-db2"`` or ``"hdsemg"``) and its
    preprocessing (default: `dataset_preprocess`) as a JSON-able dict.

    >>> data_source("hdsemg", root="/data/hdsemg")["preprocess"]["train_repetitions"]
    (1, 3, 4)
    """
    _check_dataset(dataset)
    if dataset != "synthetic" and root is None:
        raise ArgumentError(f"dataset {dataset!r} needs --root, the folder holding its files")
    source: dict[str, Any] = {
        "dataset": dataset,
        "preprocess": (preprocess or dataset_preprocess(dataset)).to_dict(),
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


def available_subjects(source: dict[str, Any]) -> list[int]:
    """The subjects a data source holds: synthetic ``1..n_subjects``, or those whose files
    are under the root (HD-sEMG ``s<N>.mat``; NinaPro ``DB2_s<N>/`` folders).

    >>> available_subjects(data_source("synthetic", synthetic=SyntheticSpec(n_subjects=3)))
    [1, 2, 3]
    """
    dataset = source.get("dataset")
    _check_dataset(dataset)
    if dataset == "synthetic":
        return list(range(1, source["synthetic"]["n_subjects"] + 1))
    root = Path(source["root"])
    if dataset == "hdsemg":
        from emg_lens.data.hdsemg import find_subjects

        found = find_subjects(root)
        expected = "s<N>.mat files"
    else:
        tails = (p.name.rsplit("_s", 1)[1] for p in root.glob("*_s*") if p.is_dir())
        found = sorted(int(t) for t in tails if t.isdigit())
        expected = "subject folders DB2_s<N>/"
    if not found:
        raise DataFormatError(f"--root {root}: no {expected} found; pass --subjects")
    return found


def load_recording(source: dict[str, Any], subject: int) -> Recording:
    """The continuous recording of one subject of a data source.

    >>> source = data_source("synthetic", synthetic=SyntheticSpec(n_subjects=1, rest_seconds=0.1,
    ...                                                         movement_seconds=0.1))
    >>> load_recording(source, 1).modalities
    {'emg': 12, 'acc': 36}
    """
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


def load_subject(
    source: dict[str, Any], subject: int, *, cache_dir: str | Path | None = "auto"
) -> SubjectData:
    """Load and preprocess one subject of a data source, through the on-disk cache.

    ``cache_dir``: a folder; ``None`` for no cache; ``"auto"`` for `default_cache_dir`. A
    cached subject is used only when everything it was made from is unchanged (`cache_key`);
    a cache that cannot be written is skipped with a warning. The returned ``meta`` is
    JSON-normalised (lists, not tuples) whether it came from the cache or not.

    >>> import tempfile
    >>> source = data_source(
    ...     "synthetic",
    ...     synthetic=SyntheticSpec(n_subjects=1, movement_seconds=0.6, rest_seconds=0.2),
    ...     preprocess=PreprocessSpec(segment=(0.2, 0.6), step=100),
    ... )
    >>> cache = tempfile.mkdtemp()
    >>> load_subject(source, 1, cache_dir=cache).X_test.shape[1:]
    (48, 200)
    >>> load_subject(source, 1, cache_dir=cache).X_test.shape[1:]  # read back, not recomputed
    (48, 200)
    """
    folder = default_cache_dir(source) if cache_dir == "auto" else cache_dir
    if folder is None:
        return _normalised(_prepare(source, subject))
    folder = Path(folder)
    key = cache_key(source, subject)
    stem = folder / f"{source['dataset']}_s{subject}_{key[:20]}"
    cached = _read_cache(stem, key)
    if cached is not None:
        return cached
    data = _normalised(_prepare(source, subject))
    try:
        _write_cache(stem, key, data)
    except OSError as exc:
        warnings.warn(
            f"cannot write the preprocessing cache {stem}.npz ({type(exc).__name__}: {exc}); "
            f"continuing without it. Set {CACHE_ENV} to a writable folder, or to 0.",
            stacklevel=2,
        )
    return data


def _prepare(source: dict[str, Any], subject: int) -> SubjectData:
    return prepare_subject(load_recording(source, subject), preprocess_spec(source["preprocess"]))


def _normalised(data: SubjectData) -> SubjectData:
    data.meta = json.loads(json.dumps(data.meta))
    return data


# ----------------------------------------------------------------------------- cache


def default_cache_dir(
    source: dict[str, Any], environ: Mapping[str, str] | None = None
) -> Path | None:
    """Where `load_subject` caches a source by default: ``$EMG_LENS_CACHE`` if set (``0``:
    nowhere), else ``<root>/.emg_lens_cache`` for a real dataset and ``runs/cache`` for
    synthetic data. ``environ``: the environment to read (default `os.environ`).

    >>> default_cache_dir({"dataset": "hdsemg", "root": "/data/hdsemg"}, {}).as_posix()
    '/data/hdsemg/.emg_lens_cache'
    >>> default_cache_dir({"dataset": "synthetic"}, {"EMG_LENS_CACHE": "off"}) is None
    True
    """
    environ = os.environ if environ is None else environ
    setting = environ.get(CACHE_ENV, "").strip()
    if setting.lower() in ("0", "off", "false", "no"):
        return None
    if setting:
        return Path(setting)
    if source.get("dataset") == "synthetic":
        return Path("runs/cache")
    return Path(source["root"]) / ".emg_lens_cache"


def source_files(source: dict[str, Any], subject: int) -> list[Path]:
    """The files a subject's data is read from (none for synthetic data).

    >>> source_files(data_source("synthetic"), 1)
    []
    """
    dataset = source.get("dataset")
    _check_dataset(dataset)
    if dataset == "hdsemg":
        from emg_lens.data.hdsemg import subject_file

        return [subject_file(source["root"], subject)]
    if dataset == "ninapro-db2":
        from emg_lens.data.ninapro import find_exercise_file

        return [find_exercise_file(source["root"], subject, e) for e in source["exercises"]]
    return []


def cache_key(source: dict[str, Any], subject: int) -> str:
    """Hex digest of everything a preprocessed subject depends on: the data source (with its
    preprocessing spec), the subject, each source file's path, size and modification time,
    `CACHE_VERSION`, and a fingerprint of the code that reads and preprocesses the data.

    >>> source = data_source("synthetic")
    >>> cache_key(source, 1) == cache_key(source, 1) != cache_key(source, 2)
    True
    """
    files = [
        [str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns]
        for p in source_files(source, subject)
    ]
    facts = {
        "version": CACHE_VERSION,
        "code": _code_fingerprint(source["dataset"]),
        "source": source,
        "subject": int(subject),
        "files": files,
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


@functools.cache
def _code_fingerprint(dataset: str) -> str:
    """Digest of the loader's and the preprocessing modules' source: editing them invalidates
    the cache without anyone remembering to bump `CACHE_VERSION`."""
    digest = hashlib.sha256()
    for name in (*_PREPROCESS_MODULES, _LOADER_MODULES[dataset]):
        digest.update(Path(importlib.import_module(name).__file__).read_bytes())
    return digest.hexdigest()


def _read_cache(stem: Path, key: str) -> SubjectData | None:
    info_path, arrays_path = stem.with_suffix(".json"), stem.with_suffix(".npz")
    if not info_path.is_file():  # written last: no JSON, no complete entry
        return None
    try:
        info = json.loads(info_path.read_text())
        if info.get("key") != key:
            return None
        with np.load(arrays_path, allow_pickle=False) as arrays:
            loaded = {name: arrays[name] for name in _ARRAY_FIELDS}
        return SubjectData(**{name: info[name] for name in _JSON_FIELDS}, **loaded)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        warnings.warn(
            f"ignoring the unreadable preprocessing cache entry {stem} "
            f"({type(exc).__name__}: {exc}); preprocessing again",
            stacklevel=3,
        )
        return None


def _write_cache(stem: Path, key: str, data: SubjectData) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    arrays = {name: getattr(data, name) for name in _ARRAY_FIELDS}
    _write_atomic(stem.with_suffix(".npz"), lambda fh: np.savez(fh, **arrays))
    info = {"key": key, **{name: getattr(data, name) for name in _JSON_FIELDS}}
    _write_atomic(stem.with_suffix(".json"), lambda fh: fh.write(json.dumps(info).encode()))


def _write_atomic(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write to a temporary file beside ``path``, then rename it into place: readers (and
    other processes writing the same entry) never see a partial file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; others sharing the dataset may read it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
