"""The on-disk preprocessing cache: one subject's preprocessed windows, keyed by what made them.

`emg_lens.data.datasets.load_subject` keeps each preprocessed subject here, so a second run
reads windows instead of filtering again. An entry is ``<stem>.npz`` and ``<stem>.json`` (the
key, written last), used only while its `cache_key` is unchanged: the source and its
preprocessing, the subject, every file read, `CACHE_VERSION` and the code that reads and
preprocesses. Where it lives and its size cap: docs/guide/recordings.md, "Real data"; `evict`
removes the least recently used, trainings of ``trained/`` included.

>>> import tempfile
>>> from emg_lens.data import data_source
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

import contextlib
import functools
import hashlib
import json
import os
import re
import time
import zipfile
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs

from emg_lens._io import (
    TEMP_SUFFIX,
    atomic_write,
    file_digest,
    make_folder,
    module_files,
    pid_alive,
)
from emg_lens.data.preprocess import SubjectData
from emg_lens.data.registry import dataset_info
from emg_lens.errors import ArgumentError, warn_caller

CACHE_VERSION = 1
"""Part of every cache key: bump it when the cache files' layout changes, or when what
preprocessing returns changes for a reason the code fingerprint cannot see (see `cache_key`)."""

CACHE_ENV = "EMG_LENS_CACHE"
"""Environment variable: ``0`` (or ``off``/``false``/``no``) turns the default cache off; a
folder path puts the default cache there."""

CACHE_MAX_ENV = "EMG_LENS_CACHE_MAX_GB"
"""Environment variable: the cache's size cap in GB (10^9 bytes), e.g. ``2.5``."""

DEFAULT_MAX_GB = 10.0
"""The size cap when neither ``cache_max_gb=`` nor ``$EMG_LENS_CACHE_MAX_GB`` says one."""

ORPHAN_AGE_S = 3600.0
"""Age after which `evict` takes a half-written entry (arrays without JSON) or a temporary
file whose writer is gone for a killed process's leftover (a live write is never that old)."""

TRAINED_FOLDER = "trained"
"""The folder, inside the cache's, of the trainings `emg_lens.train.fit` keeps (``reuse=True``:
`emg_lens.train.reuse`), one ``<key>.pt`` file each; `evict` counts them in the cap."""

CACHE_MARK = "emg_lens_cache"
"""What the cache writes first in each entry's files: the JSON's first field (its value the
writer, `_JSON_MARK`) and the first array of the ``.npz``; `evict` removes only files that
carry it (or, written before it, the key their name is made from: `is_cache_file`)."""

_ENTRY_STEM = re.compile(r".+_s\d+_([0-9a-f]{20})")  # what load_subject names an entry
_TRAINED_NAME = re.compile(r"([0-9a-f]{64})\.pt")  # what emg_lens.train.reuse names a training
_TEMP_NAME = re.compile(rf"(.+)\.\d+{re.escape(TEMP_SUFFIX)}")  # emg_lens._io.atomic_write's
# '{"emg_lens_cache": ..': the start of an entry's JSON
_JSON_MARK = json.dumps({CACHE_MARK: "emg_lens.data.cache"})[:-1].encode()
_OLD_JSON = re.compile(rb'\{"key": "([0-9a-f]{64})"')  # an entry's JSON before the mark
_NPZ_MARK = f"{CACHE_MARK}.npy".encode()  # the name of a .npz's first member (a zip file)
_ZIP_NAME_AT = 30  # where a zip file's first member's name starts (after its local header)
_HEAD = 4096  # the bytes a file is recognised by: a kept training's key is within them

_PREPROCESS_MODULES = (  # and what composes them into a subject (datasets._prepare)
    "emg_lens.data.recording",
    "emg_lens.data.preprocess",
    "emg_lens.data.datasets",
    "emg_lens.data.registry",
)
_JSON_FIELDS = ("subject", "modalities", "classes", "meta")
_ARRAY_FIELDS = tuple(f.name for f in fields(SubjectData) if f.name not in _JSON_FIELDS)


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """Where `emg_lens.data.datasets.load_subject` caches preprocessed subjects by default:
    ``$EMG_LENS_CACHE`` if set (``0``: nowhere), else ``preprocessed/`` in the user cache
    directory (`platformdirs.user_cache_dir`: ``$XDG_CACHE_HOME/emg_lens`` or
    ``~/.cache/emg_lens`` on Linux, ``~/Library/Caches/emg_lens`` on macOS). Never a dataset's
    own folder. ``environ``: where to read ``$EMG_LENS_CACHE`` (default `os.environ`).

    >>> default_cache_dir({"EMG_LENS_CACHE": "/scratch/cache"}).as_posix()
    '/scratch/cache'
    >>> default_cache_dir({"EMG_LENS_CACHE": "off"}) is None
    True
    >>> default_cache_dir({}).parts[-2:]
    ('emg_lens', 'preprocessed')
    """
    environ = os.environ if environ is None else environ
    setting = environ.get(CACHE_ENV, "").strip()
    if setting.lower() in ("0", "off", "false", "no"):
        return None
    if setting:
        return Path(setting)
    return Path(platformdirs.user_cache_dir("emg_lens")) / "preprocessed"


def cache_max_bytes(
    max_gb: float | str | None = None, environ: Mapping[str, str] | None = None
) -> int:
    """The cache's size cap in bytes: ``max_gb`` if given, else ``$EMG_LENS_CACHE_MAX_GB``,
    else `DEFAULT_MAX_GB` (GB are 10^9 bytes). A negative or non-numeric cap is an
    `ArgumentError`.

    >>> cache_max_bytes(environ={}), cache_max_bytes(0.5, environ={})
    (10000000000, 500000000)
    >>> cache_max_bytes(environ={"EMG_LENS_CACHE_MAX_GB": "2"})
    2000000000
    """
    environ = os.environ if environ is None else environ
    where = "cache_max_gb"
    if max_gb is None and environ.get(CACHE_MAX_ENV, "").strip():
        max_gb, where = environ[CACHE_MAX_ENV].strip(), f"${CACHE_MAX_ENV}"
    if max_gb is None:
        max_gb = DEFAULT_MAX_GB
    try:
        value = float(max_gb)
    except (TypeError, ValueError):
        value = float("nan")
    if not value >= 0 or value == float("inf"):  # NaN fails the comparison
        raise ArgumentError(
            f"{where} must be a size in GB, a finite number >= 0 (e.g. 2.5), got {max_gb!r}"
        )
    return int(value * 1e9)


def source_files(source: dict[str, Any], subject: int) -> list[Path]:
    """The files a subject's data is read from (none for synthetic data; a window store's
    ``.h5`` file for ``"windows"``).

    >>> from emg_lens.data import data_source
    >>> source_files(data_source("synthetic"), 1)
    []
    """
    return dataset_info(source.get("dataset")).files(source, subject)


def cache_key(source: dict[str, Any], subject: int) -> str:
    """Hex digest of everything a preprocessed subject depends on: the data source (with its
    preprocessing spec), the subject, each source file's path and content, `CACHE_VERSION`,
    the code that reads and preprocesses the data, and for your own files the folder's
    numbering (another participant's files renumber every subject's labels).

    >>> from emg_lens.data import data_source
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
        **dataset_info(source["dataset"]).numbering_of(source),
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


@functools.cache
def _code_fingerprint(dataset: str) -> str:
    """Digest of the reader's and the preprocessing modules' source and of every emg_lens
    module they import (`emg_lens._io.module_files`): editing any of them invalidates the
    cache without anyone remembering to bump `CACHE_VERSION`."""
    digest = hashlib.sha256()
    for path in module_files((*_PREPROCESS_MODULES, *dataset_info(dataset).cache_modules)):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def read_entry(stem: Path, key: str) -> SubjectData | None:
    """The entry at ``stem`` if it was written under ``key``, marked as just used (for
    `evict`); None when it is absent, half-written, stale (another key), removed meanwhile by
    another process's `evict`, or unreadable (with a warning: the caller preprocesses again)."""
    info_path, arrays_path = stem.with_suffix(".json"), stem.with_suffix(".npz")
    if not info_path.is_file():  # written last: no JSON, no complete entry
        return None
    try:
        info = json.loads(info_path.read_text())
        if info.get("key") != key:
            return None
        with np.load(arrays_path, allow_pickle=False) as arrays:
            loaded = {name: arrays[name] for name in _ARRAY_FIELDS}
        data = SubjectData(**{name: info[name] for name in _JSON_FIELDS}, **loaded)
    except FileNotFoundError:  # evicted between our look and our read: a plain miss
        return None
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        warn_caller(
            f"ignoring the unreadable preprocessing cache entry {stem} "
            f"({type(exc).__name__}: {exc}); preprocessing again"
        )
        return None
    # The JSON's modification time is the entry's last use; a read-only cache, or one
    # evicted just now, still gave good data.
    with contextlib.suppress(OSError):
        os.utime(info_path)
    return data


def write_entry(stem: Path, key: str, data: SubjectData) -> None:
    """Write ``data`` as the entry at ``stem`` under ``key``, atomically (arrays first, JSON
    last). Raises `OSError` when the folder cannot be written."""
    make_folder(stem.parent)
    # The mark first in each file: what evict and warn_foreign_files recognise it by.
    arrays = {CACHE_MARK: np.array(CACHE_VERSION)}
    arrays |= {name: getattr(data, name) for name in _ARRAY_FIELDS}

    def write_arrays(tmp: Path) -> None:
        with tmp.open("wb") as fh:  # a file, not a name: np.savez would append ".npz" to it
            np.savez(fh, **arrays)  # type: ignore[arg-type]  # no key is allow_pickle

    # Arrays first, JSON last: `read_entry` takes an entry without its JSON as absent.
    atomic_write(stem.with_suffix(".npz"), write_arrays)
    info = {CACHE_MARK: "emg_lens.data.cache", "key": key}
    info |= {name: getattr(data, name) for name in _JSON_FIELDS}
    atomic_write(stem.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(info)))


def evict(folder: str | Path, max_bytes: int) -> list[Path]:
    """Remove the least recently used entries of the cache in ``folder`` (by the modification
    time of their JSON, which `write_entry` and `read_entry` refresh; of a kept training's file
    in ``folder/trained``, which its writing and reading refresh) until the entries left take
    at most ``max_bytes``; also removes what killed writers left (`ORPHAN_AGE_S`). Returns the
    files removed.

    Safe while other processes read and write the folder: an entry without its JSON is being
    written and stays (until it is an orphan), and an entry is removed JSON first, so a reader
    sees the whole entry or a miss. Only the cache's own files are touched (`is_cache_file`).

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> data = SubjectData(1, {"emg": 2}, [0, 3], np.zeros((1, 2, 4), np.float32),
    ...                    np.zeros(1, int), np.ones(1, int), np.ones((1, 2, 4), np.float32),
    ...                    np.zeros(1, int), np.full(1, 2), {"note": "x"})
    >>> for n, last_used in ((1, 100), (2, 200)):
    ...     write_entry(folder / f"demo_s{n}_{'0' * 20}", "key", data)
    ...     os.utime(folder / f"demo_s{n}_{'0' * 20}.json", (last_used, last_used))
    >>> one_entry = sum(p.stat().st_size for p in folder.glob("demo_s2_*"))
    >>> [p.name for p in evict(folder, max_bytes=one_entry)]  # subject 1: used longest ago
    ['demo_s1_00000000000000000000.json', 'demo_s1_00000000000000000000.npz']
    """
    folder = Path(folder)
    removed = _remove_orphans(folder) + _remove_orphans(folder / TRAINED_FOLDER, trained=True)
    entries = _entries(folder)  # (last use, name, size, files in the order to remove them)
    total = sum(size for _, _, size, _ in entries)
    for _, _, size, paths in sorted(entries, key=lambda e: e[:2]):
        if total <= max_bytes:
            break
        for path in paths:  # JSON first: from now on readers see a miss
            if path.exists():
                path.unlink(missing_ok=True)
                removed.append(path)
        total -= size
    return removed


def is_cache_file(path: str | Path) -> bool:
    """Whether the cache wrote file ``path`` (whole or half-written): its name is one it gives
    (``<dataset>_s<N>_<20 hex>`` ``.json`` / ``.npz``, ``trained/<64 hex>.pt``, or their
    temporary names) and its first bytes are what it writes first (`CACHE_MARK`, or the key
    its name is made from).

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> stamp = folder / "recording_s1_20240101120000000000.json"  # a user's, named alike
    >>> _ = stamp.write_text('{"note": "a 20-digit timestamp"}')
    >>> is_cache_file(stamp)
    False
    """
    path = Path(path)
    temp = _TEMP_NAME.fullmatch(path.name)
    name = temp.group(1) if temp else path.name
    trained = _TRAINED_NAME.fullmatch(name) if path.parent.name == TRAINED_FOLDER else None
    stem, _, kind = name.rpartition(".")
    entry = _ENTRY_STEM.fullmatch(stem) if kind in ("json", "npz") else None
    if trained is None and entry is None:
        return False
    try:
        with path.open("rb") as fh:
            head = fh.read(_HEAD)
    except OSError:  # gone meanwhile, or unreadable: not one to remove
        return False
    if trained is not None:
        return trained.group(1).encode() in head
    if kind == "npz":
        return head[_ZIP_NAME_AT : _ZIP_NAME_AT + len(_NPZ_MARK)] == _NPZ_MARK
    old = _OLD_JSON.match(head)
    return head.startswith(_JSON_MARK) or bool(
        old and entry and old.group(1).startswith(entry.group(1).encode())
    )


def foreign_files(folder: str | Path) -> list[Path]:
    """The files and folders in cache folder ``folder`` (and its ``trained/``) that the cache
    did not write (`is_cache_file`), sorted.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "notes.txt").write_text("mine")
    >>> [p.name for p in foreign_files(folder)]
    ['notes.txt']
    """
    folder = Path(folder)
    found = []
    for path in _listing(folder):
        if path.name == TRAINED_FOLDER and path.is_dir():
            found += [p for p in _listing(path) if p.is_dir() or not _ours(p)]
        elif path.is_dir() or not (_ours(path) or _arrays_of_an_entry(path)):
            found.append(path)
    return sorted(found)


def _ours(path: Path) -> bool:
    """The cache's file, or a temporary file another process is writing now (perhaps still
    too short to tell)."""
    temp = _TEMP_NAME.fullmatch(path.name)
    pid = path.name.removesuffix(TEMP_SUFFIX).rpartition(".")[2]
    return is_cache_file(path) or bool(temp and pid.isdigit() and pid_alive(int(pid)))


_warned: set[Path] = set()


def warn_foreign_files(folder: str | Path) -> None:
    """Warn, once a process for each folder, where cache folder ``folder`` holds files the
    cache did not write (`foreign_files`): a folder of the user's given as the cache."""
    folder = Path(folder)
    if folder.resolve() in _warned:
        return
    _warned.add(folder.resolve())
    foreign = foreign_files(folder)
    if foreign:
        shown = ", ".join(p.name for p in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        warn_caller(
            f"the cache folder {folder} (${CACHE_ENV}, or cache_dir=) holds {len(foreign)} "
            f"file(s) or folder(s) the cache did not write ({shown}); the cache reads and "
            "removes only its own entries, so they are safe, but give the cache a folder of its "
            "own (an empty or a new one)"
        )


def _listing(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:  # no folder yet (nothing in it), or one that cannot be listed
        return []


def _arrays_of_an_entry(path: Path) -> bool:
    """An entry's arrays, whose JSON is the cache's (arrays written before the mark)."""
    return path.suffix == ".npz" and is_cache_file(path.with_suffix(".json"))


def _entries(folder: Path) -> list[tuple[float, str, int, tuple[Path, ...]]]:
    """Every complete entry of the cache's own in ``folder`` (a preprocessed subject, or a
    kept training), with its last use, name and size in bytes."""
    subjects = [
        (info, info.with_suffix(".npz")) for info in folder.glob("*.json") if is_cache_file(info)
    ]
    trainings = [(kept,) for kept in (folder / TRAINED_FOLDER).glob("*.pt") if is_cache_file(kept)]
    found: list[tuple[float, str, int, tuple[Path, ...]]] = []
    for paths in subjects + trainings:
        try:
            st = paths[0].stat()
            size = st.st_size + sum(p.stat().st_size for p in paths[1:] if p.exists())
        except FileNotFoundError:  # another process evicted it meanwhile
            continue
        found.append((st.st_mtime, paths[0].name, size, paths))
    return found


def _remove_orphans(folder: Path, *, trained: bool = False) -> list[Path]:
    """Remove what a process killed mid-write left: the cache's own arrays without JSON and
    temporary files whose writer is gone, older than `ORPHAN_AGE_S` (``trained``: that folder)."""
    removed, now = [], time.time()
    arrays = [] if trained else folder.glob("*.npz")
    for path in [*arrays, *folder.glob(f"*.*.*{TEMP_SUFFIX}")]:
        if path.suffix == ".npz":
            orphan = not path.with_suffix(".json").exists()
        else:  # <name>.<pid>.tmp (emg_lens._io.atomic_write) of an entry's file
            pid = path.name.removesuffix(TEMP_SUFFIX).rpartition(".")[2]
            orphan = pid.isdigit() and not pid_alive(int(pid))
        if not (orphan and is_cache_file(path)):
            continue
        try:
            if now - path.stat().st_mtime > ORPHAN_AGE_S:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:  # another process removed it first
            continue
    return removed
