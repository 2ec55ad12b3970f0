"""`emg_lens._io.atomic_write`: the one way emg_lens writes a file."""

import multiprocessing
import os

import pytest

from emg_lens._io import atomic_write, leftover_temp_files


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
