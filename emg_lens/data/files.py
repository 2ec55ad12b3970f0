"""A dataset's files under its root: exactly one file per key, or a named error.

Readers key each file they recognise (subject, exercise, ...) through `find_files` or
`unique_files`: two different files with one key are a `DataFormatError` naming both, so a
stale copy (``A_old/S1_E1_A1.mat``) is never read because it sorts first. One file reached by
two names (a link, a case-insensitive file system) is one file.

>>> import tempfile
>>> root = Path(tempfile.mkdtemp())
>>> for name in ("S1_E1_A1.mat", "A_old/S1_E1_A1.mat", "notes.txt"):
...     (root / name).parent.mkdir(exist_ok=True)
...     _ = (root / name).write_bytes(b"")
>>> key = lambda path: path.stem if path.suffix == ".mat" else None
>>> found = find_files(root / "A_old", key, "one", looking_for="S<N>_E1_A1.mat")
>>> [p.relative_to(root).as_posix() for p in found.values()]
['A_old/S1_E1_A1.mat']
>>> find_files(root, key, "a recording", looking_for="S<N>_E1_A1.mat")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
emg_lens.errors.DataFormatError: ...: two files for a recording: .../A_old/S1_E1_A1.mat and \
.../S1_E1_A1.mat. emg_lens does not guess which one to read: remove or move one copy, or point \
--root at the folder that holds only one
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Hashable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from emg_lens.errors import ArgumentError, DataFormatError

K = TypeVar("K", bound=Hashable)
F = TypeVar("F", bound="OpenFile")


class OpenFile:
    """A reader holding a file open, which a ``with`` block closes (`close`): ``with
    HDsEMGFile(path) as f: ...``. One reading time slices of an HDF5 file (`HDsEMGFile`,
    `Emg2PoseSession`) sets ``path``, ``n_samples`` and ``_h5`` (`_open_hdf5`; None: read from
    memory) and reads through the checks here, whose errors name the file.

    >>> class Log(OpenFile):
    ...     closed = False
    ...     def close(self):
    ...         self.closed = True
    >>> with Log() as log:
    ...     pass
    >>> log.closed
    True
    """

    path: Path
    n_samples: int
    _h5: Any = None

    def _open_hdf5(self, kind: str) -> Any:
        """``path`` opened with h5py, or a `DataFormatError` saying it is no readable ``kind``."""
        import h5py  # only the readers of HDF5 files need it

        try:
            return h5py.File(self.path, "r")
        except Exception as exc:  # h5py raises OSError for truncated files and non-HDF5 alike
            raise DataFormatError(
                f"{self.path}: cannot be opened as {kind} (corrupt?): {exc!r}"
            ) from exc

    def _slice_end(self, start: int, stop: int | None) -> int:
        """``stop`` (None: the end), ``start:stop`` checked to lie within the file."""
        stop = self.n_samples if stop is None else stop
        if not (0 <= start <= stop <= self.n_samples):
            raise ArgumentError(
                f"{self.path}: read({start}, {stop}) is outside 0..{self.n_samples}"
            )
        return stop

    def _read(self, what: str, read: Callable[..., np.ndarray], *args: Any) -> np.ndarray:
        """``read(*args)`` from the open file, a failure a `DataFormatError` naming ``what``."""
        if self._h5 is not None and not self._h5.id.valid:
            raise ArgumentError(f"{self.path}: the file is closed")
        try:
            return read(*args)
        except (OSError, RuntimeError, ValueError, TypeError) as exc:
            raise DataFormatError(f"{self.path}: cannot read {what} (corrupt?): {exc!r}") from exc

    def _check_finite(self, what: str, x: np.ndarray, start: int, stop: int) -> None:
        if (bad := int((~np.isfinite(x)).sum())) > 0:
            raise DataFormatError(
                f"{self.path}: {what} holds {bad} NaN/Inf values in samples {start}:{stop}"
            )

    def close(self) -> None:
        """Close the file (a no-op where it is read from memory or closed already)."""
        if self._h5 is not None:
            self._h5.close()

    def __enter__(self: F) -> F:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def duplicate_error(
    root: str | Path, what: str, first: Path, second: Path, *, kind: str = "files"
) -> DataFormatError:
    """The error for two ``kind`` (files, folders) under ``root`` that are both ``what``.

    >>> str(duplicate_error("/d", "subject 1", Path("/d/a/s1.mat"), Path("/d/s1.mat")))
    ... # doctest: +NORMALIZE_WHITESPACE
    '/d: two files for subject 1: /d/a/s1.mat and /d/s1.mat. emg_lens does not guess which one
    to read: remove or move one copy, or point --root at the folder that holds only one'
    """
    return DataFormatError(
        f"{root}: two {kind} for {what}: {first} and {second}. emg_lens does not guess which "
        f"one to read: remove or move one copy, or point --root at the folder that holds only one"
    )


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def unique_files(
    candidates: Iterable[tuple[K, Path]],
    root: str | Path,
    what: Callable[[K], str],
    *,
    kind: str = "files",
) -> dict[K, Path]:
    """``{key: path}`` of ``(key, path)`` pairs, refusing two different files with one key
    (`duplicate_error`, ``what(key)`` saying what the key is).

    >>> unique_files([(1, Path("/d/s1.mat")), (2, Path("/d/s2.mat"))], "/d", str)
    {1: PosixPath('/d/s1.mat'), 2: PosixPath('/d/s2.mat')}
    """
    found: dict[K, Path] = {}
    for key, path in candidates:
        if key in found:
            if not _same(found[key], path):
                raise duplicate_error(root, what(key), found[key], path, kind=kind)
            continue
        found[key] = path
    return found


def files_under(root: str | Path, suffixes: Collection[str] | None = None) -> list[Path]:
    """Every file under ``root`` (of the given ``suffixes``, lower case: default any), at any
    depth, in sorted order. Symbolic links are followed only inside ``root`` (each real folder
    once); a link that leads out of ``root`` or nowhere is a `DataFormatError` naming it.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = (root / "a.npy").write_bytes(b"")
    >>> (root / "b.npy").symlink_to(root.parent / "elsewhere.npy")
    >>> files_under(root)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emg_lens.errors.DataFormatError: .../b.npy: a link to .../elsewhere.npy, which does not ...
    """
    root = Path(root)
    real_root = root.resolve()
    found: list[Path] = []
    seen: dict[Path, Path] = {}  # real path -> the name it was first met by

    def check_once(entry: Path) -> bool:
        if (real := entry.resolve()) in seen:
            raise DataFormatError(
                f"{entry} and {seen[real]} are one folder ({real}) by two names: remove the link"
            )
        seen[real] = entry
        return True

    def visit(folder: Path) -> None:
        for entry in sorted(folder.iterdir()):
            wanted = suffixes is None or entry.suffix.lower() in suffixes
            if entry.is_symlink() and (wanted or entry.is_dir()):
                target = entry.resolve()  # to nowhere, or out of root: a trial lost or foreign
                if not target.exists() or not target.is_relative_to(real_root):
                    where = target.exists() and f"outside the dataset {root}"
                    raise DataFormatError(
                        f"{entry}: a link to {target}, {where or 'which does not exist'}: "
                        "remove the link, or copy the file in"
                    )
            if entry.is_dir() and check_once(entry):
                visit(entry)
            elif entry.is_file() and wanted:
                found.append(entry)

    seen[real_root] = root
    visit(root)
    return sorted(found)


def find_files(
    root: str | Path,
    key: Callable[[Path], K | None],
    what: str | Callable[[K], str],
    *,
    looking_for: str,
    recursive: bool = True,
    folders: bool = False,
) -> dict[K, Path]:
    """``{key(path): path}`` of the files (``folders=True``: folders) under ``root`` -- at any
    depth, or only its own entries (``recursive=False``) -- for which ``key`` is not None, in
    sorted path order; two different ones with one key are a `DataFormatError` naming both.
    ``what`` (or ``what(key)``) names what a key is, for that message. A ``root`` that is no
    folder is a `DataFormatError` saying what the reader was ``looking_for``."""
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(f"{root}: no such folder (looking for {looking_for})")
    describe = what if callable(what) else (lambda _key: what)
    entries = root.rglob("*") if recursive else root.iterdir()

    def candidates():
        for path in sorted(entries):
            k = key(path)
            if k is not None and (path.is_dir() if folders else path.is_file()):
                yield k, path

    return unique_files(candidates(), root, describe, kind="folders" if folders else "files")
