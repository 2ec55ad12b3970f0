"""The on-disk preprocessing cache: one subject's preprocessed windows, keyed by what made them.

`emg_lens.data.datasets.load_subject` keeps each preprocessed subject here, so a second run
(training, then evaluation, then every study) reads windows instead of filtering the recording
again. An entry is two files, ``<stem>.npz`` (the arrays) and ``<stem>.json`` (the key and the
small fields, written last), and is used only when its key, `cache_key`, is unchanged: the data
source with its preprocessing, the subject, the content of every file read, `CACHE_VERSION`
and the source code of the modules that read and preprocess the data (the registry entry's
``cache_modules``).

>>> import tempfile
>>> from emg_lens.data.datasets import data_source
>>> source = data_source("synthetic")
>>> stem = Path(tempfile.mkdtemp()) / "synthetic_s1"
>>> data = SubjectData(1, {"emg": 2}, [0, 3], np.zeros((1, 2, 4), np.float32), np.zeros(1, int),
...                    np.ones(1, int), np.ones((1, 2, 4), np.float32), np.zeros(1, int),
...                    np.full(1, 2), {"note": "x"})
>>> write_entry(stem, cache_key(source, 1), data)
>>> float(read_entry(stem, cache_key(source, 1)).X_test.sum()), read_entry(stem, "another key")
(8.0, None)
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import os
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from emg_lens._io import atomic_write, file_digest
from emg_lens.data.preprocess import SubjectData
from emg_lens.data.registry import dataset_info

__all__ = [
    "CACHE_ENV",
    "CACHE_VERSION",
    "cache_key",
    "default_cache_dir",
    "read_entry",
    "source_files",
    "write_entry",
]

CACHE_VERSION = 1
"""Part of every cache key: bump it when the cache files' layout changes, or when what
preprocessing returns changes for a reason the code fingerprint cannot see (see `cache_key`)."""

CACHE_ENV = "EMG_LENS_CACHE"
"""Environment variable: ``0`` (or ``off``/``false``/``no``) turns the default cache off; a
folder path puts the default cache there."""

_PREPROCESS_MODULES = ("emg_lens.data.recording", "emg_lens.data.preprocess")
_JSON_FIELDS = ("subject", "modalities", "classes", "meta")
_ARRAY_FIELDS = tuple(f.name for f in fields(SubjectData) if f.name not in _JSON_FIELDS)


def default_cache_dir(
    source: dict[str, Any], environ: Mapping[str, str] | None = None
) -> Path | None:
    """Where `emg_lens.data.datasets.load_subject` caches a source by default:
    ``$EMG_LENS_CACHE`` if set (``0``: nowhere), else ``<root>/.emg_lens_cache`` for a dataset
    read from a root and ``runs/cache`` for one generated (synthetic data). ``environ``: the
    environment to read (default `os.environ`).

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

    >>> from emg_lens.data.datasets import data_source
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

    >>> from emg_lens.data.datasets import data_source
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


def read_entry(stem: Path, key: str) -> SubjectData | None:
    """The entry at ``stem`` if it was written under ``key``; None when it is absent, stale
    (another key) or unreadable (with a warning: the caller preprocesses again)."""
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


def write_entry(stem: Path, key: str, data: SubjectData) -> None:
    """Write ``data`` as the entry at ``stem`` under ``key``, atomically (arrays first, JSON
    last). Raises `OSError` when the folder cannot be written."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    arrays = {name: getattr(data, name) for name in _ARRAY_FIELDS}

    def write_arrays(tmp: Path) -> None:
        with tmp.open("wb") as fh:  # a file, not a name: np.savez would append ".npz" to it
            np.savez(fh, **arrays)

    # Arrays first, JSON last: `read_entry` takes an entry without its JSON as absent.
    atomic_write(stem.with_suffix(".npz"), write_arrays)
    info = {"key": key, **{name: getattr(data, name) for name in _JSON_FIELDS}}
    atomic_write(stem.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(info)))
