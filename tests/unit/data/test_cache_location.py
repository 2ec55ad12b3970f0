"""Where the preprocessing cache lives and how it stays small: the user cache directory (never
a dataset's folder), ``EMG_LENS_CACHE`` as the override, a size cap with least-recently-used
eviction, and entries that are whole or absent while several processes share the folder."""

import dataclasses
import json
import multiprocessing
import os
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import emg_lens.data.cache as cache_module
from emg_lens import ArgumentError
from emg_lens._io import pid_alive
from emg_lens.data.cache import cache_key, evict, read_entry, write_entry
from emg_lens.data.datasets import data_source, dataset_preprocess, load_subject
from emg_lens.data.preprocess import PreprocessSpec, SubjectData
from emg_lens.data.synthetic.emg_acc import SyntheticSpec

SYNTHETIC = data_source(
    "synthetic",
    synthetic=SyntheticSpec(n_subjects=3, movement_seconds=0.5, rest_seconds=0.2),
    preprocess=PreprocessSpec(segment=(0.1, 0.5), step=100),
)

HDSEMG_PREPROCESS = dataset_preprocess("hdsemg", segment="full", window=100, step=100)


@pytest.fixture
def user_cache(tmp_path, monkeypatch):
    """No ``EMG_LENS_CACHE``, and a user cache directory of this test's own."""
    monkeypatch.delenv("EMG_LENS_CACHE", raising=False)
    monkeypatch.delenv("EMG_LENS_CACHE_MAX_GB", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "xdg" / "emg_lens" / "preprocessed"


@pytest.fixture
def hdsemg(hdsemg_root):
    return data_source("hdsemg", root=hdsemg_root, preprocess=HDSEMG_PREPROCESS)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _entry(folder: Path, subject: int) -> Path:
    (info,) = folder.glob(f"synthetic_s{subject}_*.json")
    return info


def test_the_default_cache_is_the_user_cache_dir_not_the_data_or_working_folder(
    user_cache, tmp_path, hdsemg, hdsemg_root, filter_calls
):
    before = _names(hdsemg_root)
    load_subject(hdsemg, 1)
    load_subject(SYNTHETIC, 1)
    assert [n.split("_s")[0] for n in _names(user_cache)] == ["hdsemg"] * 2 + ["synthetic"] * 2
    assert _names(hdsemg_root) == before
    assert _names(tmp_path) == ["xdg"]  # nothing in the working folder (no runs/cache)
    load_subject(hdsemg, 1)
    assert len(filter_calls) == 2  # the second hdsemg load came from the user cache


def test_emg_lens_cache_wins_over_the_user_cache_dir(user_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("EMG_LENS_CACHE", str(tmp_path / "mine"))
    load_subject(SYNTHETIC, 1)
    assert len(_names(tmp_path / "mine")) == 2
    assert not user_cache.exists()


def test_a_read_only_dataset_folder_works(user_cache, tmp_path, hdsemg_root):
    data = tmp_path / "readonly"
    data.mkdir()
    (data / "s1.mat").write_bytes((hdsemg_root / "s1.mat").read_bytes())
    source = data_source("hdsemg", root=data, preprocess=HDSEMG_PREPROCESS)
    data.chmod(0o555)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "cannot write the preprocessing cache"
            first = load_subject(source, 1)
            second = load_subject(source, 1)
    finally:
        data.chmod(0o755)
    np.testing.assert_array_equal(first.X_test, second.X_test)
    assert _names(data) == ["s1.mat"]
    assert len(_names(user_cache)) == 2


def test_eviction_keeps_the_cap_and_removes_the_least_recently_read_first(user_cache, filter_calls):
    load_subject(SYNTHETIC, 1)
    one_entry = sum(p.stat().st_size for p in user_cache.iterdir())
    cap_gb = 2.5 * one_entry / 1e9  # room for two subjects, not three
    load_subject(SYNTHETIC, 2, cache_max_gb=cap_gb)
    os.utime(_entry(user_cache, 1), (100, 100))  # subject 1 written first ...
    os.utime(_entry(user_cache, 2), (200, 200))
    load_subject(SYNTHETIC, 1, cache_max_gb=cap_gb)  # ... but read last
    assert len(filter_calls) == 2
    load_subject(SYNTHETIC, 3, cache_max_gb=cap_gb)
    assert [n.split("_")[1] for n in _names(user_cache)] == ["s1", "s1", "s3", "s3"]
    assert sum(p.stat().st_size for p in user_cache.iterdir()) <= cap_gb * 1e9
    load_subject(SYNTHETIC, 1, cache_max_gb=cap_gb)
    assert len(filter_calls) == 3  # subject 1 was kept and read back


def test_the_cap_comes_from_the_environment_and_a_bad_one_is_named(user_cache, monkeypatch):
    monkeypatch.setenv("EMG_LENS_CACHE_MAX_GB", "0")
    with pytest.warns(UserWarning, match=r"more than the preprocessing cache's cap of 0 bytes"):
        load_subject(SYNTHETIC, 1)
    assert _names(user_cache) == []
    monkeypatch.setenv("EMG_LENS_CACHE_MAX_GB", "ten")
    with pytest.raises(ArgumentError, match=r"\$EMG_LENS_CACHE_MAX_GB must be .* got 'ten'"):
        load_subject(SYNTHETIC, 1)
    with pytest.raises(ArgumentError, match=r"cache_max_gb must be .* got -1"):
        load_subject(SYNTHETIC, 1, cache_max_gb=-1)


def test_a_partially_written_entry_is_never_served(user_cache, filter_calls):
    expected = load_subject(SYNTHETIC, 1, cache_dir=None)
    stem = user_cache / f"synthetic_s1_{cache_key(SYNTHETIC, 1)[:20]}"
    # A writer killed after the arrays and before the JSON, with other data than the truth,
    # and another one killed inside the JSON's temporary file.
    wrong = dataclasses.replace(expected, X_test=expected.X_test + 1)
    write_entry(stem, cache_key(SYNTHETIC, 1), wrong)
    stem.with_suffix(".json").rename(stem.with_suffix(".json.12345.tmp"))
    assert read_entry(stem, cache_key(SYNTHETIC, 1)) is None
    data = load_subject(SYNTHETIC, 1)
    np.testing.assert_array_equal(data.X_test, expected.X_test)
    assert len(filter_calls) == 2  # preprocessed again rather than served


def test_evict_spares_entries_being_written_and_files_it_did_not_make(tmp_path):
    data = load_subject(SYNTHETIC, 1, cache_dir=None)
    old = tmp_path / f"synthetic_s1_{'a' * 20}"
    write_entry(old, "key", data)
    writing = tmp_path / f"synthetic_s2_{'b' * 20}"  # arrays written, JSON not yet
    write_entry(writing, "key", data)
    writing.with_suffix(".json").unlink()
    live_tmp = tmp_path / f"synthetic_s3_{'c' * 20}.npz.{os.getpid()}.tmp"
    live_tmp.write_bytes(b"half")
    (tmp_path / "notes.json").write_text("{}")
    assert sorted(p.name for p in evict(tmp_path, 0)) == [old.name + ".json", old.name + ".npz"]
    assert _names(tmp_path) == sorted(["notes.json", writing.name + ".npz", live_tmp.name])


def _dead_pid() -> int:
    return next(pid for pid in range(99999, 1, -1) if not pid_alive(pid))


def test_evict_removes_what_killed_writers_left_once_it_is_old(tmp_path):
    """Arrays whose JSON never came and a temporary file whose writer died: the cache's own
    (they carry its mark), so taken once old; the same names holding other bytes stay."""
    dead = _dead_pid()
    data = load_subject(SYNTHETIC, 1, cache_dir=None)
    write_entry(tmp_path / f"synthetic_s1_{'a' * 20}", "key", data)
    write_entry(tmp_path / f"synthetic_s2_{'b' * 20}", "key", data)
    arrays = tmp_path / f"synthetic_s1_{'a' * 20}.npz"
    arrays.with_suffix(".json").unlink()  # killed between its arrays and its JSON
    info = tmp_path / f"synthetic_s2_{'b' * 20}.json"
    half_written = info.with_name(f"{info.name}.{dead}.tmp")
    half_written.write_bytes(info.read_bytes()[:60])  # killed while writing the JSON
    orphans = [arrays, half_written]
    alike = [  # named as the cache names its files, holding other bytes
        tmp_path / f"synthetic_s3_{'c' * 20}.npz",
        tmp_path / f"x_s4_{'d' * 20}.json.{dead}.tmp",
    ]
    for path in alike:
        path.write_bytes(b"x" * 100)
    assert evict(tmp_path, 10**9) == []  # young: perhaps still being written
    stale = time.time() - cache_module.ORPHAN_AGE_S - 10
    for path in orphans + alike:
        os.utime(path, (stale, stale))
    assert sorted(evict(tmp_path, 10**9)) == sorted(orphans)
    assert all(path.exists() for path in alike)


def test_evict_takes_a_killed_trainings_leftover_and_nothing_else_of_the_trained_folder(
    tmp_path,
):
    dead = _dead_pid()
    trained = tmp_path / cache_module.TRAINED_FOLDER
    trained.mkdir()
    key = "e" * 64
    leftover = trained / f"{key}.pt.{dead}.tmp"  # emg_lens._io.atomic_write's, writer killed
    live = trained / f"{'f' * 64}.pt.{os.getpid()}.tmp"  # being written now
    mine = [trained / "notes.pt", trained / f"notes.pt.{dead}.tmp"]  # not the cache's names
    mine.append(trained / f"{'a' * 64}.pt.{dead}.tmp")  # the cache's name, not its bytes
    for path in (leftover, live, *mine):
        path.write_bytes(b"PK" + path.name.split(".")[0].encode())  # a training starts so
        stale = time.time() - cache_module.ORPHAN_AGE_S - 10
        os.utime(path, (stale, stale))
    mine[-1].write_bytes(b"x")
    os.utime(mine[-1], (stale, stale))
    assert evict(tmp_path, 10**9) == [leftover]
    assert sorted(p.name for p in trained.iterdir()) == sorted(p.name for p in (live, *mine))
    assert sorted(evict(tmp_path, 0)) == []  # none of them is an entry to evict


# ------------------------------------------- issue 57 item 3: the cache deletes what it wrote


def _users_data_folder(folder: Path) -> dict[Path, bytes]:
    """A user's data folder whose files are named as the cache names its own (20-digit
    timestamps, arrays without JSON, a temporary name, a 64-digit name in ``trained/``), all
    old; returns each file's bytes."""
    stamp = "20240101120000123456"
    dead = _dead_pid()
    arrays = folder / f"emg_s1_{stamp}.npz"
    (folder / "trained").mkdir(parents=True)
    np.savez(arrays, X_train=np.ones((2, 3)), y_train=np.arange(2))
    (folder / f"emg_s1_{stamp}.json").write_text(json.dumps({"key": "session notes", "fs": 2000}))
    np.savez(folder / f"rest_s2_{'9' * 20}.npz", X=np.zeros(4))  # no JSON: looks orphaned
    (folder / f"trial_s3_{'1' * 20}.npz.{dead}.tmp").write_bytes(arrays.read_bytes())
    (folder / f"trial_s4_{'2' * 20}.json.{dead}.tmp").write_text('{"key": "' + "2" * 19 + '"}')
    (folder / "trained" / f"{'3' * 64}.pt").write_bytes(b"PK my own torch file" * 100)
    (folder / "notes.txt").write_text("recorded on Monday")
    long_ago = time.time() - 10 * cache_module.ORPHAN_AGE_S
    files = {}
    for path in folder.rglob("*"):
        if path.is_file():
            os.utime(path, (long_ago, long_ago))
            files[path] = path.read_bytes()
    return files


@pytest.mark.parametrize("cap_gb", ["0", "1000"])
def test_a_users_data_folder_as_the_cache_loses_nothing(tmp_path, monkeypatch, cap_gb):
    data_folder = tmp_path / "data"
    theirs = _users_data_folder(data_folder)
    monkeypatch.setenv("EMG_LENS_CACHE", str(data_folder))
    monkeypatch.setenv("EMG_LENS_CACHE_MAX_GB", cap_gb)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        load_subject(SYNTHETIC, 1)  # a write, then eviction down to the cap
        load_subject(SYNTHETIC, 2)
    assert {path: path.read_bytes() for path in theirs if path.exists()} == theirs
    foreign = [str(w.message) for w in said if "did not write" in str(w.message)]
    assert len(foreign) == 1, foreign  # once a process
    assert (
        f"the cache folder {data_folder}" in foreign[0]
        and "holds 7 file(s) or folder(s) the cache did not write (emg_s1_" in foreign[0]
    )
    ours = sorted(p.name for p in data_folder.glob("synthetic_s*"))
    assert ours == ([] if cap_gb == "0" else sorted(ours))
    assert sorted(evict(data_folder, 0)) == sorted(data_folder / name for name in ours)
    assert {path: path.read_bytes() for path in theirs if path.exists()} == theirs


def test_a_file_another_process_is_writing_is_not_called_foreign(tmp_path):
    """Processes share a cache: another's temporary file, still empty, is not the user's."""
    from emg_lens.data.cache import foreign_files

    stem = f"synthetic_s1_{'a' * 20}.npz"
    writing = tmp_path / f"{stem}.{os.getpid()}.tmp"
    left = tmp_path / f"{stem}.{_dead_pid()}.tmp"
    for path in (writing, left):
        path.write_bytes(b"")
    assert foreign_files(tmp_path) == [left]


def test_entries_written_before_the_mark_are_adopted_by_their_key(tmp_path):
    """An entry as the cache wrote it before its mark (JSON ``{"key": ...}`` first, arrays
    without the mark) is read and, being the cache's (the key its name is made from), evicted;
    the same bytes under a name made from another key are not the cache's."""
    key = cache_key(SYNTHETIC, 1)
    data = load_subject(SYNTHETIC, 1, cache_dir=None)
    stems = [tmp_path / f"synthetic_s1_{key[:20]}", tmp_path / f"synthetic_s1_{'0' * 20}"]
    for stem in stems:
        with stem.with_suffix(".npz").open("wb") as fh:
            np.savez(
                fh,
                **{
                    f.name: getattr(data, f.name)
                    for f in dataclasses.fields(data)
                    if f.name not in ("subject", "modalities", "classes", "meta")
                },
            )
        info = {
            "key": key,
            **{name: getattr(data, name) for name in ("subject", "modalities", "classes", "meta")},
        }
        stem.with_suffix(".json").write_text(json.dumps(info))
    assert read_entry(stems[0], key) is not None
    assert sorted(p.name for p in evict(tmp_path, 0)) == [
        f"{stems[0].name}.json",
        f"{stems[0].name}.npz",
    ]
    assert _names(tmp_path) == sorted(f"{stems[1].name}{s}" for s in (".json", ".npz"))


def _share_a_cache(folder: str, seed: int, rounds: int, cap: int, errors) -> None:
    """One of two processes writing, reading and evicting in one small cache folder."""
    rng = np.random.default_rng(seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for _ in range(rounds):
                subject = int(rng.integers(1, 6))
                stem = Path(folder) / f"synthetic_s{subject}_{'0' * 20}"
                got = read_entry(stem, "key")
                if got is None:
                    write_entry(stem, "key", _subject_data(subject))
                    evict(folder, cap)
                elif not (got.X_train == subject).all():
                    raise AssertionError(f"subject {subject} served another's arrays")
    except BaseException as exc:  # reported to the parent, which fails the test
        errors.put(f"{type(exc).__name__}: {exc}")


def _subject_data(subject: int) -> SubjectData:
    X = np.full((20, 4, 50), subject, np.float32)
    y = np.zeros(20, np.int64)
    return SubjectData.from_windows({"emg": 4}, (X, y), (X, y), subject=subject, classes=[0])


def test_two_processes_sharing_one_cache_see_whole_entries_or_none(tmp_path):
    write_entry(tmp_path / "probe" / "one", "key", _subject_data(1))
    one_entry = sum(p.stat().st_size for p in (tmp_path / "probe").iterdir())
    folder = tmp_path / "shared"
    folder.mkdir()
    ctx = multiprocessing.get_context("fork")  # the parent's imports: starts in milliseconds
    errors = ctx.Queue()
    cap = int(2.5 * one_entry)
    workers = [
        ctx.Process(target=_share_a_cache, args=(str(folder), seed, 300, cap, errors))
        for seed in (0, 1)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    assert errors.empty(), errors.get()
    evict(folder, cap)
    assert sum(p.stat().st_size for p in folder.iterdir()) <= cap
    assert not list(folder.glob("*.tmp"))


def test_synth_db2_writes_two_subjects_by_default_and_says_how_large(monkeypatch, capsys):
    import emg_lens.data.registry as registry
    from emg_lens.cli import main

    asked = []

    def synthesize(out, options):  # records what synth asks for instead of writing files
        asked.append((options["n_subjects"], out))
        return iter(())

    fake = SimpleNamespace(synthesize=synthesize)
    monkeypatch.setattr(registry, "dataset_info", lambda name, **kw: fake)
    assert main(["synth", "--format", "ninapro-db2", "--out", "db2"]) == 0
    assert main(["synth", "--format", "ninapro-db2", "--out", "db2", "--n-subjects", "6"]) == 0
    assert main(["synth", "--format", "hdsemg", "--out", "hd"]) == 0
    assert asked == [(2, "db2"), (6, "db2"), (6, "hd")]
    with pytest.raises(SystemExit):
        main(["synth", "--help"])
    assert "0.63 GB per subject" in capsys.readouterr().out
