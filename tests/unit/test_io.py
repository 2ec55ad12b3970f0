"""`emg_lens._io.atomic_write`: the one way emg_lens writes a file; out-of-space and permission
failures are named errors (issue 23 item 4); process identities that survive pid reuse (item 5).
"""

import errno
import multiprocessing
import os
import subprocess
import sys

import pytest

from emg_lens._io import (
    atomic_write,
    leftover_temp_files,
    make_folder,
    process_start,
    same_process,
    write_if_changed,
)
from emg_lens.errors import StorageError
from tests.unit.storage_faults import full_disk, read_only


def test_the_target_changes_only_once_the_write_is_complete(tmp_path):
    path = tmp_path / "cell.json"
    path.write_text("old")
    seen = {}

    def write(tmp):
        tmp.write_text("new")
        seen.update(name=tmp.name, folder=tmp.parent, target=path.read_text())

    assert atomic_write(path, write) == path
    assert path.read_text() == "new"
    assert seen == {"name": f"cell.json.{os.getpid()}.tmp", "folder": tmp_path, "target": "old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cell.json"]


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary_one(tmp_path, error):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"old")

    def write(tmp):
        tmp.write_bytes(b"half")
        raise error

    with pytest.raises(type(error)):
        atomic_write(path, write)
    assert path.read_bytes() == b"old"
    assert leftover_temp_files(path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_a_writer_that_creates_nothing_leaves_nothing(tmp_path):
    def write(tmp):
        raise ValueError("bad data")

    with pytest.raises(ValueError, match="bad data"):
        atomic_write(tmp_path / "a.json", write)
    assert list(tmp_path.iterdir()) == []


def _write_child(tmp):
    tmp.write_text("child")


def test_processes_writing_one_file_use_their_own_temporary_files(tmp_path):
    """While this process writes, another one writes the same target from start to end: with
    a shared temporary name it would overwrite ours and take it away before our rename."""
    path = tmp_path / "study.json"

    def write(tmp):
        tmp.write_text("parent")
        child = multiprocessing.get_context("fork").Process(
            target=atomic_write, args=(path, _write_child)
        )
        child.start()
        child.join(timeout=30)
        assert child.exitcode == 0
        assert path.read_text() == "child"

    atomic_write(path, write)
    assert path.read_text() == "parent"
    assert leftover_temp_files(path) == []


def test_leftover_temp_files_names_only_this_targets(tmp_path):
    path = tmp_path / "w[1].h5"  # glob characters in the name are taken literally
    for name in ("w[1].h5.77.tmp", "w1.h5.78.tmp", "w[1].h5", "other.h5.79.tmp"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in leftover_temp_files(path)] == ["w[1].h5.77.tmp"]


# ----------------------------------------------------------------------------- storage failures

STORAGE_ERRNOS = [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM]


@pytest.mark.parametrize("code", STORAGE_ERRNOS, ids=[errno.errorcode[c] for c in STORAGE_ERRNOS])
def test_out_of_space_and_permission_failures_are_named_errors(tmp_path, code):
    path = tmp_path / "cell.json"

    def write(tmp):
        tmp.write_text("{part")
        raise OSError(code, os.strerror(code), str(tmp))

    with pytest.raises(StorageError) as info:
        atomic_write(path, write)
    message = str(info.value)
    # Which file, why, and what to do; still an OSError with its errno, for callers that catch
    # OSError; and nothing left behind.
    assert str(path) in message and errno.errorcode[code] in message and "--out" in message
    assert isinstance(info.value, OSError) and info.value.errno == code
    assert list(tmp_path.iterdir()) == []


def test_other_os_errors_pass_through_unchanged(tmp_path):
    def write(tmp):
        raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(OSError) as info:
        atomic_write(tmp_path / "a.json", write)
    assert not isinstance(info.value, StorageError) and info.value.errno == errno.EIO


def test_a_disk_that_fills_mid_write_keeps_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "per_subject.csv"
    path.write_text("old")
    with (
        full_disk(tmp_path, monkeypatch, budget=10),
        pytest.raises(StorageError, match="ENOSPC") as info,
    ):
        atomic_write(path, lambda tmp: tmp.write_text("x" * 1000))
    assert str(path) in str(info.value)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["per_subject.csv"]


def test_a_read_only_folder_is_a_named_error(tmp_path, monkeypatch):
    out = tmp_path / "out"
    with read_only(tmp_path, monkeypatch), pytest.raises(StorageError) as folder_error:
        make_folder(out)
    out.mkdir()
    with read_only(tmp_path, monkeypatch) as how:
        make_folder(out)  # an existing folder needs no write access
        with pytest.raises(StorageError) as file_error:
            atomic_write(out / "summary.md", lambda tmp: tmp.write_text("# study"))
    expected = "EACCES" if how == "chmod" else "EROFS"  # root: simulated (see storage_faults)
    assert str(out) in str(folder_error.value) and expected in str(folder_error.value)
    assert str(out / "summary.md") in str(file_error.value) and expected in str(file_error.value)
    assert list(out.iterdir()) == []


def test_writing_the_same_bytes_again_touches_nothing(tmp_path, monkeypatch):
    path = tmp_path / "summary.csv"
    assert write_if_changed(path, "a,b\n1,2\n") is True
    before = path.stat()
    with read_only(tmp_path, monkeypatch):
        assert write_if_changed(path, b"a,b\n1,2\n") is False  # nothing to write: no error
    assert path.stat().st_ino == before.st_ino and path.stat().st_mtime_ns == before.st_mtime_ns
    assert write_if_changed(path, "a,b\n1,3\n") is True
    assert path.read_text() == "a,b\n1,3\n"


# ----------------------------------------------------------------------------- process identity


@pytest.mark.skipif(process_start(os.getpid()) is None, reason="needs /proc (Linux)")
def test_a_process_is_told_from_a_later_one_with_its_pid():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = process_start(child.pid)
        assert started is not None and started != process_start(os.getpid())
        assert same_process(child.pid, started)
        assert same_process(child.pid, None)  # an old record without a start time: the pid
        assert not same_process(child.pid, "another-boot/12")  # the pid, reused
    finally:
        child.kill()
        child.wait()
    assert not same_process(child.pid, started)
