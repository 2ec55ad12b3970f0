"""Atomic file writes: every file emg_lens saves is written beside its target and renamed.

Readers (and other processes writing the same file) therefore see the old file or the whole
new one, never a partial file; a write that fails removes its temporary file. The temporary file
is flushed to disk (`os.fsync`) before the rename, so a crash of the machine cannot leave an
empty or torn file under the target's name. A process killed mid-write can leave its temporary
file behind: `leftover_temp_files` finds it, for error messages, and `remove_orphaned_temp_files`
removes those whose writer is no longer alive.

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "notes.txt"
>>> atomic_write(path, lambda tmp: tmp.write_text("hello")).read_text()
'hello'
>>> leftover_temp_files(path)
[]
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_write",
    "create_exclusive",
    "file_digest",
    "leftover_temp_files",
    "pid_alive",
    "remove_orphaned_temp_files",
]

TEMP_SUFFIX = ".tmp"


def _temp_path(path: Path) -> Path:
    # One name per process, so processes writing the same target never share a temporary file.
    return path.with_name(f"{path.name}.{os.getpid()}{TEMP_SUFFIX}")


def atomic_write(path: str | Path, write_fn: Callable[[Path], Any]) -> Path:
    """Call ``write_fn(tmp)`` to write a temporary file in ``path``'s folder, flush it to disk,
    then rename it to ``path`` (`os.replace`: atomic on POSIX); on any error, the temporary
    file is removed and the error raised. The folder must exist. Returns ``path``.

    ``write_fn`` gets the temporary path, to open or to hand to a library that writes a named
    file (one that appends its own suffix, as ``np.savez`` appends ``.npz``, needs an open
    file instead: ``with tmp.open("wb") as fh: np.savez(fh, ...)``).

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "a.json"
    >>> def fail(tmp):
    ...     tmp.write_text("{partial")
    ...     raise OSError("disk full")
    >>> atomic_write(path, fail)
    Traceback (most recent call last):
    ...
    OSError: disk full
    >>> sorted(p.name for p in path.parent.iterdir())  # nothing left behind
    []
    """
    path = Path(path)
    tmp = _temp_path(path)
    try:
        write_fn(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt too: never leave a partial file behind
        tmp.unlink(missing_ok=True)
        raise
    return path


def create_exclusive(path: str | Path, write_fn: Callable[[Path], Any]) -> bool:
    """Create ``path`` with what ``write_fn(tmp)`` writes, only if no file has that name:
    written and flushed under a temporary name, then hard-linked into place (`os.link` fails
    if the name exists, atomically, even among processes). Returns whether this call created
    it; others see either no file or the whole of one writer's file.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "study.json"
    >>> create_exclusive(path, lambda tmp: tmp.write_text("first"))
    True
    >>> create_exclusive(path, lambda tmp: tmp.write_text("second")), path.read_text()
    (False, 'first')
    >>> sorted(p.name for p in path.parent.iterdir())
    ['study.json']
    """
    path = Path(path)
    tmp = _temp_path(path)
    try:
        write_fn(tmp)
        _fsync(tmp)
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def _fsync(path: Path) -> None:
    """Flush a file's data to disk. (Not its folder: after a crash a renamed file may be
    missing, which readers handle as never written, but never empty or torn.)"""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def leftover_temp_files(path: str | Path) -> list[Path]:
    """Temporary files of `atomic_write` for ``path`` that a killed process left behind.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "w.h5"
    >>> _ = path.with_name("w.h5.123.tmp").write_bytes(b"")
    >>> [p.name for p in leftover_temp_files(path)]
    ['w.h5.123.tmp']
    """
    path = Path(path)
    return sorted(path.parent.glob(f"{glob.escape(path.name)}.*{TEMP_SUFFIX}"))


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (one we may not signal counts).

    >>> pid_alive(os.getpid())
    True
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphaned_temp_files(folder: str | Path) -> list[Path]:
    """Remove the temporary files of `atomic_write` under ``folder`` (recursively) whose
    writer's pid (in the name) is not alive on this machine; returns what was removed.

    >>> import subprocess, sys, tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
    ...                       capture_output=True, text=True).stdout.strip()
    >>> for pid in (dead, os.getpid()):
    ...     _ = (folder / f"cell.json.{pid}.tmp").write_bytes(b"")
    >>> [p.name == f"cell.json.{dead}.tmp" for p in remove_orphaned_temp_files(folder)]
    [True]
    """
    removed = []
    for path in sorted(Path(folder).rglob(f"*{TEMP_SUFFIX}")):
        pid = path.name.removesuffix(TEMP_SUFFIX).rpartition(".")[2]
        if pid.isdigit() and not pid_alive(int(pid)):
            path.unlink(missing_ok=True)  # another process may be cleaning up too
            removed.append(path)
    return removed


_CHUNK = 1 << 20
_file_digests: dict[tuple, str] = {}


def file_digest(path: str | Path) -> str:
    """Digest of a file's bytes, streamed; memoised per (path, device, inode, size, mtime,
    ctime) within the process, so a large file is read once and a rewritten one again.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "a.bin"
    >>> _ = path.write_bytes(b"one")
    >>> first = file_digest(path)
    >>> _ = path.write_bytes(b"two")
    >>> file_digest(path) != first
    True
    """
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _file_digests:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
        _file_digests[key] = digest.hexdigest()
    return _file_digests[key]
