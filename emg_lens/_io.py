"""Atomic file writes: every file emg_lens saves is written beside its target and renamed.

Readers see the old file or the whole new one, flushed to disk (`os.fsync`) before the rename.
A killed writer's temporary file is removed, once its writer is gone, by
`remove_orphaned_temp_files`. Every write goes through `storage_errors` (a full disk, a
read-only or forbidden folder: a `StorageError` saying what to do); `process_start` tells a
process from a later one that reuses its pid (the cell store's claims).

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "notes.txt"
>>> atomic_write(path, lambda tmp: tmp.write_text("hello")).read_text()
'hello'
>>> leftover_temp_files(path)
[]
"""

from __future__ import annotations

import ast
import contextlib
import errno
import glob
import hashlib
import importlib.util
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from emg_lens.errors import StorageError

TEMP_SUFFIX = ".tmp"


def _temp_path(path: Path) -> Path:
    # One name per process, so processes writing the same target never share a temporary file.
    return path.with_name(f"{path.name}.{os.getpid()}{TEMP_SUFFIX}")


# How to write elsewhere, with {where}: a command's --out by default.
OUT_OPTION = "write to {where} (--out)"

# errno -> (what happened, with {folder}; what to do, with {elsewhere}; where else to write)
_STORAGE_FAILURES = {
    errno.ENOSPC: (
        "no space is left on the device that holds {folder}",
        "free space there, or {elsewhere}",
        "a folder on another disk",
    ),
    errno.EDQUOT: (
        "this user's disk quota is used up on the device that holds {folder}",
        "free space within the quota, or {elsewhere}",
        "a folder elsewhere",
    ),
    errno.EROFS: ("{folder} is on a read-only filesystem", "{elsewhere}", "a writable disk"),
    errno.EACCES: (
        "this user may not write in {folder} (permission denied)",
        "{elsewhere}, or ask for write permission on this one",
        "a folder of your own",
    ),
    errno.EPERM: (
        "the operating system refused the write in {folder} (operation not permitted)",
        "{elsewhere}, or check this one's permissions and attributes",
        "a folder of your own",
    ),
}


@contextlib.contextmanager
def storage_errors(
    path: str | Path | None = None, *, elsewhere: str = OUT_OPTION
) -> Iterator[None]:
    """Within the block, an `OSError` saying the disk or quota is full or the folder is
    read-only or forbidden becomes a `StorageError` naming ``path`` (else the file the OS
    named), why, and what to do; any other error passes unchanged. ``elsewhere`` says how to
    write elsewhere, ``{where}`` filled in per cause (`OUT_OPTION` by default).

    >>> with storage_errors("/data/out/summary.md"):  # doctest: +ELLIPSIS
    ...     raise OSError(errno.ENOSPC, "No space left on device")
    Traceback (most recent call last):
    ...
    emg_lens.errors.StorageError: cannot write /data/out/summary.md: no space is left on the \
device that holds /data/out (ENOSPC: No space left on device); free space there, or write \
to a folder on another disk (--out)
    """
    try:
        yield
    except OSError as exc:
        if isinstance(exc, StorageError) or exc.errno not in _STORAGE_FAILURES:
            raise
        target = Path(path if path is not None else exc.filename or "?")
        what, todo, where = _STORAGE_FAILURES[exc.errno]
        todo = todo.format(elsewhere=elsewhere.format(where=where))
        raise StorageError(
            f"cannot write {target}: {what.format(folder=target.parent)} "
            f"({errno.errorcode[exc.errno]}: {exc.strerror or os.strerror(exc.errno)}); {todo}",
            errno=exc.errno,
            filename=str(target),
        ) from exc


def _discard(path: Path) -> None:
    """Remove a temporary file if it is there; on a read-only folder (where even removing a
    file that is not there fails) there is nothing to remove."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def make_folder(path: str | Path) -> Path:
    """``path`` as a folder, created with its parents if missing (an existing one needs no
    write access); a failure to create it, or a file where it or a parent should be, is a
    `StorageError` naming it.

    >>> import tempfile
    >>> make_folder(Path(tempfile.mkdtemp()) / "runs" / "study").is_dir()
    True
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = (root / "cells").write_text("notes")
    >>> make_folder(root / "cells" / "s1")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emg_lens.errors.StorageError: cannot make the folder .../cells/s1: .../cells is a file, ...
    """
    path = Path(path)
    if not path.is_dir():
        with storage_errors(path):
            try:
                path.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError) as exc:
                files = (p for p in (path, *path.parents) if p.exists() and not p.is_dir())
                blocker = next(files, path)
                raise StorageError(
                    f"cannot make the folder {path}: {blocker} is a file, where a folder is "
                    "wanted; move or rename that file, or write elsewhere",
                    errno=exc.errno,
                    filename=str(blocker),
                ) from exc
    return path


def no_file(path: Path) -> str:
    """Why ``path``, which must be a file, is none, for a message about it: a folder given for
    a file exists, and "does not exist" would send the user looking for it.

    >>> import tempfile
    >>> no_file(Path(tempfile.mkdtemp())), no_file(Path("missing.toml"))
    ('is a folder, not a file', 'does not exist')
    """
    return "is a folder, not a file" if path.is_dir() else "does not exist"


_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""The control characters (Unicode's Cc: C0, DEL, C1) but newline and tab."""


def visible_controls(text: str) -> str:
    r"""``text`` with its control characters but newline and tab written visibly, as
    ``\x1b``: text from a study file or data that reaches a terminal (``cat summary.md``,
    the command's echo) can then not clear the screen, recolour it or retitle the window.
    Every text file emg_lens writes passes here (`write_if_changed`), as HTML escapes it.

    >>> print(visible_controls("a\x1b[2Jb\x9bc\nd"))
    a\x1b[2Jb\x9bc
    d
    """
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def write_if_changed(path: str | Path, data: bytes | str, *, elsewhere: str = OUT_OPTION) -> bool:
    """Write ``data`` (text as UTF-8, its control characters made visible:
    `visible_controls`) to ``path`` atomically, unless the file already holds exactly these
    bytes: then nothing is written (no temporary file, no new modification time, no write
    access needed). Returns whether it wrote. ``elsewhere``: as in `storage_errors`.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "summary.md"
    >>> write_if_changed(path, "# study"), write_if_changed(path, "# study")
    (True, False)
    """
    path = Path(path)
    data = visible_controls(data).encode("utf-8") if isinstance(data, str) else bytes(data)
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except OSError:
        pass  # missing or unreadable: write it
    atomic_write(path, lambda tmp: tmp.write_bytes(data), elsewhere=elsewhere)
    return True


def atomic_write(
    path: str | Path, write_fn: Callable[[Path], Any], *, elsewhere: str = OUT_OPTION
) -> Path:
    """Call ``write_fn(tmp)`` to write a temporary file in ``path``'s folder, flush it to disk,
    then rename it to ``path`` (`os.replace`: atomic on POSIX); on any error, the temporary
    file is removed and the error raised (`atomic_write_all` of one file). The folder must
    exist. A library that appends its own suffix (``np.savez``) needs an open file instead:
    ``with tmp.open("wb") as fh: np.savez(fh, ...)``.

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
    atomic_write_all({Path(path): write_fn}, elsewhere=elsewhere)
    return Path(path)


def atomic_write_all(
    writes: dict[Path, Callable[[Path], Any]], *, elsewhere: str = OUT_OPTION
) -> None:
    """Write several files of one folder as one: each to a temporary file first, all flushed,
    and only then each renamed into place, in the order given, so a full disk or an
    interruption leaves the old files (or none), never a new file beside an old one. On any
    error the temporary files are removed and the error raised (`storage_errors`). Renames are
    atomic one by one: where one fails after another succeeded, the set is torn, a
    `StorageError` naming the files replaced and those left (the caller orders the files so
    that its reader refuses a torn set).

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> def fail(tmp):
    ...     raise OSError("disk full")
    >>> atomic_write_all({folder / "a.bin": lambda t: t.write_text("a"), folder / "b.json": fail})
    Traceback (most recent call last):
    ...
    OSError: disk full
    >>> sorted(p.name for p in folder.iterdir())  # a.bin was not put in place alone
    []
    """
    temps = {path: _temp_path(Path(path)) for path in writes}
    replaced: list[Path] = []
    try:
        for path, write_fn in writes.items():
            with storage_errors(path, elsewhere=elsewhere):
                write_fn(temps[path])
                _fsync(temps[path])
        for path, tmp in temps.items():
            try:
                with storage_errors(path, elsewhere=elsewhere):
                    os.replace(tmp, path)
            except OSError as exc:
                if replaced:
                    raise _torn(replaced, [p for p in temps if p not in replaced], exc) from exc
                raise
            replaced.append(Path(path))
    except BaseException:  # KeyboardInterrupt too: never leave a partial set behind
        for tmp in temps.values():
            _discard(tmp)
        raise


def _torn(replaced: list[Path], left: list[Path], exc: OSError) -> StorageError:
    names = ", ".join(p.name for p in replaced)
    return StorageError(
        f"cannot finish writing {', '.join(str(p) for p in left)}: {names} already replaced, "
        f"it was not ({exc}); the files in {left[0].parent} no longer belong together: "
        "write them again where the disk can be written",
        errno=exc.errno,
        filename=str(left[0]),
    )


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
    with storage_errors(path):
        try:
            write_fn(tmp)
            _fsync(tmp)
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            _discard(tmp)
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


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "boot"


def process_start(pid: int) -> str | None:
    """When process ``pid`` started, as ``"<boot id>:<clock ticks since boot>"`` (Linux's
    ``/proc``): equal for one process, different for a later one that reuses its pid. None
    where it cannot be read.

    >>> process_start(os.getpid()) == process_start(os.getpid())
    True
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count after its last ")".
    fields = stat.rpartition(")")[2].split()
    return f"{_boot_id()}:{fields[19]}" if len(fields) > 19 else None


def process_started_at(started: str | None) -> str | None:
    """The local time at which the process `process_start` described as ``started`` began,
    for people to read (``"2025-01-31 14:02:07"``); None if unknown or from another boot.

    >>> process_started_at("another-boot:1") is None
    True
    """
    boot, _, ticks = (started or "").rpartition(":")
    if boot != _boot_id() or not ticks.isdigit():
        return None
    try:
        stat = Path("/proc/stat").read_text().split()
        btime = int(stat[stat.index("btime") + 1])  # boot time, seconds since the epoch
    except (OSError, ValueError, IndexError):
        return None
    at = btime + int(ticks) / os.sysconf("SC_CLK_TCK")
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def same_process(pid: int, started: str | None) -> bool:
    """Whether ``pid`` is alive on this machine and is the process that `process_start` saw
    start at ``started`` (None, or start times unreadable: the pid alone is checked).

    >>> same_process(os.getpid(), process_start(os.getpid()))
    True
    >>> same_process(os.getpid(), "another-boot:1")
    False
    """
    if not pid_alive(pid):
        return False
    if started is None:
        return True
    now = process_start(pid)
    return now is None or now == started


def remove_orphaned_temp_files(folder: str | Path, *, of: str | None = None) -> list[Path]:
    """Remove the temporary files of `atomic_write` under ``folder`` (recursively; with
    ``of``, only those of the file of that name in ``folder``) whose writer's pid (in the
    name) is not alive on this machine; returns what was removed. A live writer's file stays.

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
    found = (
        Path(folder).rglob(f"*{TEMP_SUFFIX}")
        if of is None
        else leftover_temp_files(Path(folder) / of)
    )
    for path in sorted(found):
        pid = path.name.removesuffix(TEMP_SUFFIX).rpartition(".")[2]
        if pid.isdigit() and not pid_alive(int(pid)):
            try:
                path.unlink(missing_ok=True)  # another process may be cleaning up too
            except OSError:
                continue  # a read-only folder: the orphan stays, and harms nothing
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


def json_digest(obj: Any) -> str:
    """Digest of ``obj`` as canonical JSON (sorted keys; tuples as lists; others as `str`).

    >>> json_digest({"window": (1, 2)}) == json_digest({"window": [1, 2]})
    True
    """
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def files_digest(paths: Iterable[str | Path]) -> str:
    """One digest of the contents of several files, in the order given (names not included,
    so a moved but unchanged file keeps its digest).

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("a", "b"):
    ...     _ = (folder / name).write_text(name)
    >>> files_digest([folder / "a", folder / "b"]) != files_digest([folder / "b", folder / "a"])
    True
    """
    return json_digest([file_digest(p) for p in paths])


def imported_names(tree: ast.AST, package: str) -> list[str]:
    """What a module's code imports, at any depth: ``import a.b`` gives ``a.b``, ``from m
    import n`` both ``m`` and ``m.n`` (the caller tells a submodule from a name); a relative
    import is resolved against ``package``, one reaching above the top left out.

    >>> imported_names(ast.parse("import a.b; from . import c; from ..x import y"), "p.q")
    ['a.b', 'p.q', 'p.q.c', 'p.x', 'p.x.y']
    """
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                try:
                    base = importlib.util.resolve_name("." * node.level + base, package)
                except (ImportError, ValueError):
                    continue
            names += [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return names


def module_files(names: Iterable[str], package: str = "emg_lens") -> list[Path]:
    """The source files of the modules ``names`` and of every module of ``package`` they
    import, directly or not (`imported_names`), sorted: a digest of these changes whenever
    code that can change what the modules compute changes.

    >>> files = module_files(["emg_lens.data.reader"])
    >>> [p.name for p in files if p.parent.name == "data"], len(files)  # errors, _hints, geometry/
    (['reader.py', 'recording.py'], 9)
    """
    found: dict[str, Path] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):  # ``from module import name``: no module of that name
            spec = None
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            continue
        found[name] = path = Path(spec.origin)
        parent = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        todo += [t for t in imported_names(tree, parent) if t.partition(".")[0] == package]
    return sorted(found.values())
