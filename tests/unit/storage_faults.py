"""Storage failures for tests (issue 23 item 4): a read-only folder and a disk that fills up.

`read_only` makes a folder read-only with ``chmod``. A process running as root writes there
anyway (root ignores permission bits), so a test that only chmods would pass without testing
anything: `read_only` probes, and where the probe write succeeds it makes every write under the
folder fail at the calls Python writes through (``open``/``io.open`` for writing, ``os.open``
with a write flag, ``os.mkdir``, ``os.replace``, ``os.rename``, ``os.link``, ``os.unlink``)
with ``OSError(EROFS)``, as a read-only mount does. `full_disk` lets files opened for writing
under a folder take a budget of bytes in all, then fails the write that crosses it with
``OSError(ENOSPC)`` after writing what fit, as a filesystem that fills up mid-write does.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _under(path, folder: Path) -> bool:
    if isinstance(path, int):
        return False  # an open file descriptor: opened (and checked) before
    try:
        return Path(os.fspath(path)).resolve().is_relative_to(folder)
    except (TypeError, ValueError):
        return False


def _writes(mode: str) -> bool:
    return any(c in mode for c in "wax+")


@contextlib.contextmanager
def read_only(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Within the block ``folder`` (and everything below it) is read-only; yields ``"chmod"``
    where the permission bits stop this process, else ``"simulated"`` (root: EROFS at every
    write, undone with ``monkeypatch``). The folders' modes are restored after the block."""
    folder = Path(folder).resolve()
    dirs = [folder, *(p for p in folder.rglob("*") if p.is_dir())]
    modes = {d: stat.S_IMODE(d.stat().st_mode) for d in dirs}
    for d in dirs:
        d.chmod(modes[d] & ~0o222)
    try:
        probe = folder / ".write-probe"
        try:
            probe.write_text("")
        except PermissionError:
            yield "chmod"
            return
        probe.unlink()
        for d in dirs:
            d.chmod(modes[d])
        with monkeypatch.context() as patch:
            _simulate(folder, patch, errno.EROFS)
            yield "simulated"
    finally:
        for d in dirs:
            d.chmod(modes[d])


def _refuse(code: int, path) -> OSError:
    return OSError(code, os.strerror(code), os.fspath(path))


def _simulate(folder: Path, monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    real_open, real_io_open, real_os_open = builtins.open, io.open, os.open

    def opener(real):
        def patched(file, mode="r", *args, **kwargs):
            if _writes(mode) and _under(file, folder):
                raise _refuse(code, file)
            return real(file, mode, *args, **kwargs)

        return patched

    def os_open(path, flags, *args, **kwargs):
        if flags & WRITE_FLAGS and _under(path, folder):
            raise _refuse(code, path)
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", opener(real_open))
    monkeypatch.setattr(io, "open", opener(real_io_open))
    monkeypatch.setattr(os, "open", os_open)
    for name in ("mkdir", "unlink", "remove", "rmdir"):
        real = getattr(os, name)
        monkeypatch.setattr(os, name, _one_path(real, folder, code))
    for name in ("replace", "rename", "link"):
        real = getattr(os, name)
        monkeypatch.setattr(os, name, _two_paths(real, folder, code))


def _one_path(real, folder: Path, code: int):
    def patched(path, *args, **kwargs):
        if _under(path, folder):
            if real is os.mkdir and Path(path).exists():
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fspath(path))
            raise _refuse(code, path)
        return real(path, *args, **kwargs)

    return patched


def _two_paths(real, folder: Path, code: int):
    def patched(src, dst, *args, **kwargs):
        if _under(src, folder) or _under(dst, folder):
            raise _refuse(code, dst)
        return real(src, dst, *args, **kwargs)

    return patched


class _FillingFile:
    """A file opened for writing on a disk with ``budget[0]`` bytes left."""

    def __init__(self, fh, budget: list[int], path):
        self._fh, self._budget, self._path = fh, budget, path

    def write(self, data):
        room = self._budget[0]
        if len(data) > room:
            self._fh.write(data[:room])  # a short write, then the disk is full
            self._fh.flush()
            self._budget[0] = 0
            raise _refuse(errno.ENOSPC, self._path)
        self._budget[0] -= len(data)
        return self._fh.write(data)

    def fileno(self):
        # Writers that find a descriptor write to it directly (Pillow does): make them write
        # through `write`, where the disk fills up.
        raise io.UnsupportedOperation("fileno")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()

    def __iter__(self):
        return iter(self._fh)

    def __getattr__(self, name):
        return getattr(self._fh, name)


@contextlib.contextmanager
def full_disk(folder: Path, monkeypatch: pytest.MonkeyPatch, budget: int) -> Iterator[None]:
    """Within the block files opened for writing under ``folder`` take ``budget`` bytes in
    all; the write that crosses it writes what fits and raises ``OSError(ENOSPC)``."""
    folder = Path(folder).resolve()
    left = [budget]
    real_open, real_io_open = builtins.open, io.open

    def opener(real):
        def patched(file, mode="r", *args, **kwargs):
            fh = real(file, mode, *args, **kwargs)
            if _writes(mode) and _under(file, folder):
                return _FillingFile(fh, left, file)
            return fh

        return patched

    with monkeypatch.context() as patch:
        patch.setattr(builtins, "open", opener(real_open))
        patch.setattr(io, "open", opener(real_io_open))
        yield
