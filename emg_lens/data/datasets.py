"""Data sources: a small JSON-able dict that says how to rebuild a subject's windows.

Checkpoints store their data source, so evaluation and studies need only the checkpoint.
`load_subject` keeps each preprocessed subject in an on-disk cache, so a second run (training,
then evaluation, then every study) reads windows instead of filtering the recording again.

What each dataset is (its files, montage, reader, subjects, preprocessing defaults) is in
`emg_lens.data.registry`; this module looks it up there. Each dataset has its own
preprocessing defaults (`dataset_preprocess`): HD-sEMG's repetition split is train 1, 3, 4 /
test 2, 5, NinaPro DB2's train 1, 3, 4, 6 / test 2, 5.

Two more sources hold windows that are already made, for TinyMyo (`WINDOW_DATASETS`):
``"windows"`` (an HDF5 window store, `windows_source`) and ``"synthetic-windows"`` (the
synthetic sEMG windows of `emg_lens.data.synthetic_windows`, `synthetic_windows_source`).
`load_subject` only splits their labelled windows by repetition, so it does not cache them.
`build_window_store` makes such a store from emg2pose, NinaPro DB5/DB6/DB7 or synthetic sEMG
(what ``emg-lens windows`` runs).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import os
import re
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from emg_lens._io import atomic_write, file_digest
from emg_lens.data.preprocess import PreprocessSpec, SubjectData, prepare_subject
from emg_lens.data.recording import Recording
from emg_lens.data.registry import DATASETS, WINDOW_DATASETS, dataset_info
from emg_lens.data.synthetic import SyntheticSpec, generate_recordings
from emg_lens.data.windows import (
    TinyMyoPreprocess,
    WindowBatch,
    fit_scaler,
    tinymyo_windows,
    write_window_store,
)
from emg_lens.errors import ArgumentError, DataFormatError

__all__ = [
    "CACHE_ENV",
    "CACHE_VERSION",
    "DATASETS",
    "WINDOW_DATASETS",
    "WINDOW_STORE_SOURCES",
    "available_subjects",
    "build_window_store",
    "cache_key",
    "data_source",
    "dataset_preprocess",
    "default_cache_dir",
    "load_recording",
    "load_subject",
    "preprocess_spec",
    "source_files",
    "synthetic_windows_source",
    "windows_source",
]

SPLIT_REPETITIONS = {"train_repetitions": (1, 3, 4, 6), "test_repetitions": (2, 5)}
"""The default repetition split of the window sources (NinaPro DB2/DB5's convention)."""

WINDOW_STORE_SOURCES = ("emg2pose", "ninapro-db5", "ninapro-db6", "ninapro-db7", "synthetic")
"""What `build_window_store` reads; the first three are TinyMyo's pretraining corpora."""

PRETRAINING_SOURCES = ("emg2pose", "ninapro-db6", "ninapro-db7")
"""Min-max normalised by default (TinyMyo pretraining); the others are z-scored."""

SPLITS = ("train", "test")
"""`build_window_store` splits of the labelled sources: the train or test repetitions."""

_DB5_FILE = re.compile(r"s0*(\d+)_e[123]_a1", re.IGNORECASE)

CACHE_VERSION = 1
"""Part of every cache key: bump it when the cache files' layout changes, or when what
preprocessing returns changes for a reason the code fingerprint cannot see (see `cache_key`)."""

CACHE_ENV = "EMG_LENS_CACHE"
"""Environment variable: ``0`` (or ``off``/``false``/``no``) turns the default cache off; a
folder path puts the default cache there."""

_PREPROCESS_MODULES = ("emg_lens.data.recording", "emg_lens.data.preprocess")
_JSON_FIELDS = ("subject", "modalities", "classes", "meta")
_ARRAY_FIELDS = tuple(f.name for f in fields(SubjectData) if f.name not in _JSON_FIELDS)


def dataset_preprocess(dataset: str, **overrides: Any) -> PreprocessSpec:
    """The dataset's default `PreprocessSpec`, with any field overridden.

    >>> spec = dataset_preprocess("hdsemg", window=100)
    >>> spec.train_repetitions, spec.test_repetitions, spec.window
    ((1, 3, 4), (2, 5), 100)
    """
    info = dataset_info(dataset, window_source=False)
    return PreprocessSpec(**{**info.preprocess, **overrides})


def data_source(
    dataset: str,
    *,
    root: str | Path | None = None,
    synthetic: SyntheticSpec | None = None,
    preprocess: PreprocessSpec | None = None,
    exercises: tuple[str, ...] = ("B",),
) -> dict[str, Any]:
    """Describe a dataset (one of `DATASETS`) and its preprocessing (default:
    `dataset_preprocess`) as a JSON-able dict. ``synthetic`` and ``exercises`` are stored by
    the datasets that take them (synthetic data; NinaPro DB2).

    >>> data_source("hdsemg", root="/data/hdsemg")["preprocess"]["train_repetitions"]
    (1, 3, 4)
    """
    info = dataset_info(dataset, window_source=False)
    if info.needs_root and root is None:
        raise ArgumentError(
            f"dataset {dataset!r} needs --root, the folder holding its files ({info.layout})"
        )
    source: dict[str, Any] = {
        "dataset": dataset,
        "preprocess": (preprocess or dataset_preprocess(dataset)).to_dict(),
    }
    if info.needs_root:
        source["root"] = str(Path(root).resolve())
    source.update(info.source_fields({"synthetic": synthetic, "exercises": exercises}))
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
    return dataset_info(source.get("dataset")).subjects(source)


def load_recording(source: dict[str, Any], subject: int) -> Recording:
    """The continuous recording of one subject of a data source.

    >>> source = data_source("synthetic", synthetic=SyntheticSpec(n_subjects=1, rest_seconds=0.1,
    ...                                                         movement_seconds=0.1))
    >>> load_recording(source, 1).modalities
    {'emg': 12, 'acc': 36}
    """
    return dataset_info(source.get("dataset"), window_source=False).read(source, subject)


def load_subject(
    source: dict[str, Any], subject: int, *, cache_dir: str | Path | None = "auto"
) -> SubjectData:
    """Load and preprocess one subject of a data source, through the on-disk cache.

    ``cache_dir``: a folder; ``None`` for no cache; ``"auto"`` for `default_cache_dir` (the
    `WINDOW_DATASETS`, whose windows exist already, are never cached). A
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
    if dataset_info(source.get("dataset")).window_source:  # windows made already: no cache
        return _normalised(_window_subject(source, subject))
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


# ----------------------------------------------------------------------------- window sources


def windows_source(
    path: str | Path,
    *,
    train_repetitions: tuple[int, ...] = SPLIT_REPETITIONS["train_repetitions"],
    test_repetitions: tuple[int, ...] = SPLIT_REPETITIONS["test_repetitions"],
) -> dict[str, Any]:
    """A data source over an HDF5 window store (`emg_lens.data.windows`, e.g. written by
    ``emg-lens windows``): a subject's labelled windows, split by the repetition at their
    centre. The store is read as it is (its own normalisation); rest windows have repetition 0
    and so belong to neither part unless 0 is listed.

    >>> windows_source("/data/db5.h5", test_repetitions=(5,))["test_repetitions"]
    [5]
    """
    return {
        "dataset": "windows",
        "path": str(Path(path).resolve()),
        **_split(train_repetitions, test_repetitions),
    }


def synthetic_windows_source(
    spec: SyntheticSpec,
    *,
    window: int,
    step: int,
    envelope_ms: float | None = 10.0,
    train_repetitions: tuple[int, ...] = SPLIT_REPETITIONS["train_repetitions"],
    test_repetitions: tuple[int, ...] = SPLIT_REPETITIONS["test_repetitions"],
) -> dict[str, Any]:
    """A data source of synthetic sEMG windows as `emg_lens.data.synthetic_windows`
    cuts them (the sEMG channels only; what ``emg-lens pretrain`` and ``finetune`` use by
    default), split by repetition.

    >>> source = synthetic_windows_source(SyntheticSpec(n_subjects=2), window=100, step=50)
    >>> source["dataset"], available_subjects(source)
    ('synthetic-windows', [1, 2])
    """
    for name, value in (("window", window), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ArgumentError(f"synthetic windows: {name} must be an int >= 1, got {value!r}")
    return {
        "dataset": "synthetic-windows",
        "synthetic": spec.to_dict(),
        "window": window,
        "step": step,
        "envelope_ms": envelope_ms,
        **_split(train_repetitions, test_repetitions),
    }


def _split(train: tuple[int, ...], test: tuple[int, ...]) -> dict[str, list[int]]:
    train, test = sorted({int(r) for r in train}), sorted({int(r) for r in test})
    if not train or not test or set(train) & set(test):
        raise ArgumentError(
            f"train repetitions {train} and test repetitions {test} must both be non-empty "
            "and share none"
        )
    return {"train_repetitions": train, "test_repetitions": test}


def _window_subject(source: dict[str, Any], subject: int) -> SubjectData:
    """A window source's subject: labelled windows in the train/test repetitions."""
    train, test = source["train_repetitions"], source["test_repetitions"]
    windows = dataset_info(source["dataset"], window_source=True).read_windows(source, subject)
    return _split_windows(subject, *windows[:3], train, test, windows.what, windows.meta)


def _split_windows(
    subject: int,
    X: np.ndarray,
    y: np.ndarray,
    repetition: np.ndarray,
    train: list[int],
    test: list[int],
    what: str,
    meta: dict[str, Any],
) -> SubjectData:
    """Labelled windows (``y >= 0``) split by repetition, labels renumbered ``0..K-1``."""
    labelled = np.asarray(y) >= 0
    in_train = labelled & np.isin(repetition, train)
    in_test = labelled & np.isin(repetition, test)
    classes = sorted(set(np.asarray(y)[in_train | in_test].tolist()))
    missing = sorted(set(np.asarray(y)[in_test].tolist()) - set(np.asarray(y)[in_train].tolist()))
    if not in_train.any() or not in_test.any() or missing:
        raise DataFormatError(
            f"{what}: needs labelled windows in the train repetitions {train} and the test "
            f"repetitions {test}, every test class among the training ones; found "
            f"{int(in_train.sum())} and {int(in_test.sum())} windows, test-only classes {missing}"
        )
    codes = np.searchsorted(classes, y)
    channels = X.shape[1]
    return SubjectData(
        subject=int(subject),
        modalities={"emg": channels},
        classes=classes,
        X_train=X[in_train].astype(np.float32),
        y_train=codes[in_train],
        rep_train=np.asarray(repetition)[in_train],
        X_test=X[in_test].astype(np.float32),
        y_test=codes[in_test],
        rep_test=np.asarray(repetition)[in_test],
        meta=meta,
    )


# ----------------------------------------------------------------------------- window stores


def build_window_store(
    source: str,
    out: str | Path,
    *,
    root: str | Path | None = None,
    subjects: Iterable[int] | None = None,
    split: str | Iterable[str] | None = None,
    normalize: str | None = None,
    preprocess: TinyMyoPreprocess | None = None,
    train_repetitions: tuple[int, ...] = SPLIT_REPETITIONS["train_repetitions"],
    test_repetitions: tuple[int, ...] = SPLIT_REPETITIONS["test_repetitions"],
    synthetic: SyntheticSpec | None = None,
    compression: str | None = None,
    progress: bool = True,
) -> Path:
    """Write the TinyMyo windows of a dataset to an HDF5 window store at ``out``.

    Args:
        source: one of `WINDOW_STORE_SOURCES`. ``"emg2pose"`` sessions are unlabelled; the
            NinaPro sources and ``"synthetic"`` (sEMG channels of `SyntheticSpec` recordings,
            sEMG-only gestures by default) keep their gesture labels (0 = rest).
        out: the ``.h5`` file to write (atomically: a failed run leaves none).
        root: the dataset folder (``metadata.csv`` and sessions for emg2pose; the ``.mat``
            files, at any depth, for NinaPro); unused for synthetic data.
        subjects: subject numbers (emg2pose: users in sorted order, 1-based); default all.
        split: emg2pose: ``metadata.csv`` split names (``"train"``, ...); the labelled
            sources: ``"train"`` and/or ``"test"``, the windows whose centre lies in
            ``train_repetitions`` / ``test_repetitions``. Default: every window.
        normalize: ``"minmax"`` (each window to [-1, 1]; the default for the pretraining
            sources) or ``"zscore"`` (per channel, fitted on the windows of
            ``train_repetitions`` of the selected subjects; the default for DB5 and synthetic).
        preprocess: a `TinyMyoPreprocess` (default: the published recipe); ``normalize``
            overrides its field.
        synthetic: the `SyntheticSpec` for ``source="synthetic"``.

    Raises `ArgumentError` for an unknown source, split, normalisation or subject, and
    `DataFormatError` for unreadable files (naming them) or a selection without windows.

    >>> import tempfile
    >>> from emg_lens.data.windows import WindowStore
    >>> path = build_window_store(
    ...     "synthetic", Path(tempfile.mkdtemp()) / "w.h5", split="test", progress=False,
    ...     synthetic=SyntheticSpec(n_subjects=1, n_acc_gestures=0, n_interaction_gestures=0,
    ...                             movement_seconds=0.5, n_acc_sensors=1),
    ...     preprocess=TinyMyoPreprocess(window=200, step=100))
    >>> store = WindowStore(path)
    >>> len(store) > 0, sorted(set(store.repetition.tolist())), store.meta["scaler"] is not None
    (True, [2, 5], True)
    """
    if source not in WINDOW_STORE_SOURCES:
        raise ArgumentError(
            f"window store source must be one of {WINDOW_STORE_SOURCES}, got {source!r}"
        )
    if source != "synthetic" and root is None:
        raise ArgumentError(f"source {source!r} needs root (--root), the folder holding its files")
    default = "minmax" if source in PRETRAINING_SOURCES else "zscore"
    spec = preprocess or TinyMyoPreprocess()
    spec = TinyMyoPreprocess.from_dict({**spec.to_dict(), "normalize": normalize or default})
    if source == "emg2pose" and spec.normalize == "zscore":
        raise ArgumentError(
            "normalize='zscore' is fitted on labelled training repetitions, which emg2pose "
            "(unlabelled pretraining data) does not have; use normalize='minmax'"
        )
    labeled = source != "emg2pose"
    repetitions = _split(train_repetitions, test_repetitions)
    recordings = _store_recordings(source, root, subjects, split, synthetic)
    keep = None
    if labeled and split is not None:
        names = [split] if isinstance(split, str) else list(split)
        if unknown := [n for n in names if n not in SPLITS]:
            raise ArgumentError(
                f"split {unknown}: {source} windows split by repetition into {list(SPLITS)}"
            )
        keep = sorted({r for n in names for r in repetitions[f"{n}_repetitions"]})
    scaler = None
    if spec.normalize == "zscore":
        scaler = fit_scaler(recordings(), spec, repetitions=repetitions["train_repetitions"])

    def batches() -> Iterator[WindowBatch]:
        for recording in recordings():
            batch = tinymyo_windows(recording, spec, labeled=labeled, scaler=scaler)
            if keep is not None:
                rows = np.isin(batch.repetition, keep)
                batch.x, batch.labels = batch.x[rows], batch.labels[rows]
                batch.repetition = batch.repetition[rows]
                batch.info["repetitions"] = keep
            yield batch

    return write_window_store(
        out,
        batches(),
        spec,
        labeled=labeled,
        scaler=scaler,
        compression=compression,
        progress=progress,
    )


def _store_recordings(
    source: str,
    root: str | Path | None,
    subjects: Iterable[int] | None,
    split: str | Iterable[str] | None,
    synthetic: SyntheticSpec | None,
) -> Callable[[], Iterator[Recording]]:
    """A function that yields the selected recordings, one at a time, each time it is called
    (the z-score pass reads them before the writing pass)."""
    wanted = None if subjects is None else sorted({int(s) for s in subjects})
    if source == "emg2pose":
        from emg_lens.data.pretrain import Emg2PoseDataset

        dataset = Emg2PoseDataset(root)
        _check_subjects(wanted, range(1, len(dataset.users) + 1), f"emg2pose users in {root}")
        users = None if wanted is None else [dataset.users[s - 1] for s in wanted]
        dataset.select(split=split, users=users)  # refuses unknown splits now, by name
        return lambda: dataset.recordings(split=split, users=users)
    if source == "synthetic":
        spec = synthetic or SyntheticSpec(
            n_subjects=2, n_acc_gestures=0, n_interaction_gestures=0, n_acc_sensors=1
        )
        everyone = range(1, spec.n_subjects + 1)
        _check_subjects(wanted, everyone, "the synthetic spec")
        chosen = list(everyone) if wanted is None else wanted
        return lambda: (generate_recordings(spec, [s])[0] for s in chosen)
    from emg_lens.data import pretrain
    from emg_lens.data.ninapro import load_ninapro_db5

    if source == "ninapro-db5":
        found = _db5_subjects(root)
        _check_subjects(wanted, found, f"NinaPro DB5 files S<N>_E<k>_A1.mat under {root}")
        chosen = found if wanted is None else wanted
        return lambda: (load_ninapro_db5(root, s) for s in chosen)
    if source == "ninapro-db6":
        files = pretrain.ninapro_db6_files(root)  # {(subject, day, time): path}
        load = pretrain.load_ninapro_db6
    else:
        files = {(s,): path for s, path in pretrain.ninapro_db7_files(root).items()}
        load = pretrain.load_ninapro_db7
    found = sorted({key[0] for key in files})
    _check_subjects(wanted, found, f"{source} files under {root}")
    paths = [path for key, path in sorted(files.items()) if wanted is None or key[0] in wanted]
    return lambda: (load(path) for path in paths)


def _db5_subjects(root: str | Path) -> list[int]:
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(f"{root}: no such folder (looking for NinaPro DB5 S<N>_E1_A1.mat)")
    found = {
        int(m.group(1))
        for path in root.rglob("*.mat")
        if (m := _DB5_FILE.fullmatch(path.stem)) is not None
    }
    return sorted(found)


def _check_subjects(wanted: list[int] | None, available: Iterable[int], where: str) -> None:
    available = sorted(available)
    if not available:
        raise DataFormatError(f"no subjects found in {where}")
    if wanted is not None and (missing := [s for s in wanted if s not in available]):
        raise ArgumentError(f"subjects {missing} are not in {where}; available: {available}")


# ----------------------------------------------------------------------------- cache


def default_cache_dir(
    source: dict[str, Any], environ: Mapping[str, str] | None = None
) -> Path | None:
    """Where `load_subject` caches a source by default: ``$EMG_LENS_CACHE`` if set (``0``:
    nowhere), else ``<root>/.emg_lens_cache`` for a dataset read from a root and ``runs/cache``
    for one generated (synthetic data). ``environ``: the environment to read (default `os.environ`).

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
    if not dataset_info(source.get("dataset")).needs_root:
        return Path("runs/cache")
    return Path(source["root"]) / ".emg_lens_cache"


def source_files(source: dict[str, Any], subject: int) -> list[Path]:
    """The files a subject's data is read from (none for synthetic data; a window store's
    ``.h5`` file for ``"windows"``).

    >>> source_files(data_source("synthetic"), 1)
    []
    """
    return dataset_info(source.get("dataset")).files(source, subject)


def cache_key(source: dict[str, Any], subject: int) -> str:
    """Hex digest of everything a preprocessed subject depends on: the data source (with its
    preprocessing spec), the subject, each source file's path and content (SHA-256, memoised
    per file version in the process: a file rewritten with the same size and modification
    time is not mistaken for the old one), `CACHE_VERSION`, and a fingerprint of the code that
    reads and preprocesses the data.

    >>> source = data_source("synthetic")
    >>> cache_key(source, 1) == cache_key(source, 1) != cache_key(source, 2)
    True
    """
    files = [[str(p.resolve()), file_digest(p)] for p in source_files(source, subject)]
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
    for name in (*_PREPROCESS_MODULES, *dataset_info(dataset).cache_modules):
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

    def write_arrays(tmp: Path) -> None:
        with tmp.open("wb") as fh:  # a file, not a name: np.savez would append ".npz" to it
            np.savez(fh, **arrays)

    # Arrays first, JSON last: `_read_cache` takes an entry without its JSON as absent.
    atomic_write(stem.with_suffix(".npz"), write_arrays)
    info = {"key": key, **{name: getattr(data, name) for name in _JSON_FIELDS}}
    atomic_write(stem.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(info)))
