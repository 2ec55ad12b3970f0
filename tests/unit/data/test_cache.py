"""The on-disk preprocessing cache of `load_subject`: hits, misses, locations, atomic writes."""

import json
import os
from dataclasses import fields

import numpy as np
import pytest

import emg_lens.data.cache as cache_module
import emg_lens.data.preprocess as preprocess
from emg_lens import DataFormatError
from emg_lens.data.cache import cache_key, source_files
from emg_lens.data.datasets import data_source, dataset_preprocess, load_subject
from emg_lens.data.formats.hdsemg import find_subjects, subject_file
from emg_lens.data.formats.ninapro_db2 import write_ninapro_db2
from emg_lens.data.preprocess import PreprocessSpec, SubjectData
from emg_lens.data.recording import Recording
from emg_lens.data.synthetic.emg_acc import SyntheticSpec


@pytest.fixture(autouse=True)
def _no_cache_setting(monkeypatch):
    monkeypatch.delenv("EMG_LENS_CACHE", raising=False)


@pytest.fixture
def hdsemg(hdsemg_root, tmp_path):
    """A source over a private copy of the file, so touching it cannot disturb other tests."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "s1.mat").write_bytes((hdsemg_root / "s1.mat").read_bytes())
    preprocess = dataset_preprocess("hdsemg", segment="full", window=100, step=100)
    return data_source("hdsemg", root=tmp_path / "data", preprocess=preprocess)


SYNTHETIC = data_source(
    "synthetic",
    synthetic=SyntheticSpec(n_subjects=1, movement_seconds=0.5, rest_seconds=0.2),
    preprocess=PreprocessSpec(segment=(0.1, 0.5), step=100),
)


def _refuse_to_filter(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("filter_signals called: the cache was not used")

    monkeypatch.setattr(preprocess, "filter_signals", refuse)


def _assert_same(a: SubjectData, b: SubjectData):
    for f in fields(SubjectData):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype, f.name
            np.testing.assert_array_equal(x, y, err_msg=f.name)
        else:
            assert x == y, f.name
        if isinstance(x, dict):
            assert list(x) == list(y), f.name  # same order


def _entries(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("which", ["synthetic", "hdsemg"])
def test_second_load_reads_the_cache_and_does_not_filter(which, hdsemg, tmp_path, monkeypatch):
    source = SYNTHETIC if which == "synthetic" else hdsemg
    cache = tmp_path / "cache"
    first = load_subject(source, 1, cache_dir=cache)
    names = _entries(cache)
    assert [n.rsplit(".", 1)[1] for n in names] == ["json", "npz"]
    assert names[0].startswith(f"{which}_s1_")
    _refuse_to_filter(monkeypatch)
    second = load_subject(source, 1, cache_dir=cache)
    _assert_same(first, second)
    json.dumps(second.meta)  # JSON-able, as checkpoints store it
    assert second.meta["preprocess"] == json.loads(json.dumps(source["preprocess"]))


def test_changed_spec_misses_and_the_old_entry_still_hits(hdsemg, tmp_path, filter_calls):
    cache = tmp_path / "cache"
    load_subject(hdsemg, 1, cache_dir=cache)
    other = {**hdsemg, "preprocess": {**hdsemg["preprocess"], "window": 50, "step": 50}}
    assert load_subject(other, 1, cache_dir=cache).X_train.shape[-1] == 50
    assert len(filter_calls) == 2
    load_subject(hdsemg, 1, cache_dir=cache)
    load_subject(other, 1, cache_dir=cache)
    assert len(filter_calls) == 2
    assert len(_entries(cache)) == 4


def test_touched_but_unchanged_source_file_still_hits(hdsemg, tmp_path, filter_calls):
    cache = tmp_path / "cache"
    load_subject(hdsemg, 1, cache_dir=cache)
    path = tmp_path / "data" / "s1.mat"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    load_subject(hdsemg, 1, cache_dir=cache)
    assert len(filter_calls) == 1  # the key follows the content, not the time stamp


def test_rewritten_source_file_misses_even_with_the_same_size_and_time(hdsemg, tmp_path):
    # Size and modification time alone would serve the old preprocessed data here.
    path = tmp_path / "data" / "s1.mat"
    before = cache_key(hdsemg, 1)
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert cache_key(hdsemg, 1) != before


def test_key_depends_on_everything_the_data_depends_on(hdsemg, monkeypatch):
    key = cache_key(hdsemg, 1)
    # a source read back from a checkpoint's JSON metadata is the same source
    assert cache_key(json.loads(json.dumps(hdsemg)), 1) == key
    assert cache_key({**hdsemg, "preprocess": {**hdsemg["preprocess"], "notch": 50.0}}, 1) != key
    synthetic = {**SYNTHETIC, "synthetic": {**SYNTHETIC["synthetic"], "seed": 1}}
    assert cache_key(synthetic, 1) != cache_key(SYNTHETIC, 1)
    monkeypatch.setattr(cache_module, "CACHE_VERSION", cache_module.CACHE_VERSION + 1)
    assert cache_key(hdsemg, 1) != key


def test_no_cache_when_disabled(tmp_path, monkeypatch, filter_calls, hdsemg):
    monkeypatch.chdir(tmp_path)
    load_subject(hdsemg, 1, cache_dir=None)
    load_subject(hdsemg, 1, cache_dir=None)
    monkeypatch.setenv("EMG_LENS_CACHE", "0")
    load_subject(hdsemg, 1)
    load_subject(hdsemg, 1)
    assert len(filter_calls) == 4
    assert _entries(tmp_path / "runs") == []
    assert _entries(tmp_path / "data") == ["s1.mat"]


def test_failed_write_leaves_nothing_behind_and_warns(hdsemg, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    expected = load_subject(hdsemg, 1, cache_dir=None)

    def disk_full(file, **arrays):
        file.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.warns(UserWarning, match=r"cannot write the preprocessing cache .*No space"):
        data = load_subject(hdsemg, 1, cache_dir=cache)
    _assert_same(expected, data)
    assert _entries(cache) == []  # no temporary file, no partial entry


def test_unwritable_cache_folder_warns_and_still_loads(hdsemg, tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.warns(UserWarning, match=r"cannot write the preprocessing cache .*EMG_LENS_CACHE"):
        data = load_subject(hdsemg, 1, cache_dir=not_a_folder)
    assert data.X_train.shape[1] == 133


def test_corrupt_entry_is_preprocessed_again_and_rewritten(hdsemg, tmp_path, filter_calls):
    cache = tmp_path / "cache"
    first = load_subject(hdsemg, 1, cache_dir=cache)
    (npz,) = cache.glob("*.npz")
    npz.write_bytes(npz.read_bytes()[:100])  # truncated
    with pytest.warns(UserWarning, match=r"unreadable preprocessing cache entry"):
        again = load_subject(hdsemg, 1, cache_dir=cache)
    _assert_same(first, again)
    load_subject(hdsemg, 1, cache_dir=cache)
    assert len(filter_calls) == 2


def test_source_files_name_each_file_the_subject_is_read_from(hdsemg, tmp_path):
    rec = Recording(
        subject=2,
        signals={"emg": np.zeros((10, 12), np.float32), "acc": np.zeros((10, 36), np.float32)},
        sample_rate=2000.0,
        stimulus=np.zeros(10, np.int64),
        repetition=np.zeros(10, np.int64),
    )
    written = [write_ninapro_db2(rec, tmp_path / "db2", exercise=e) for e in ("B", "C")]
    db2 = data_source("ninapro-db2", root=tmp_path / "db2", exercises=("B", "C"))
    assert source_files(db2, 2) == written
    assert source_files(hdsemg, 1) == [tmp_path / "data" / "s1.mat"]
    assert source_files(SYNTHETIC, 1) == []
    with pytest.raises(DataFormatError, match=r"no file for subject 3 .*s3\.mat"):
        cache_key(hdsemg, 3)


def test_hdsemg_subjects_are_found_by_file_name(tmp_path):
    for name in ("s1.mat", "S02.mat", "s3.txt", "notes.mat"):
        (tmp_path / name).write_bytes(b"")
    assert find_subjects(tmp_path) == [1, 2]
    assert subject_file(tmp_path, 2) == tmp_path / "S02.mat"
    (tmp_path / "s2.mat").write_bytes(b"")
    with pytest.raises(DataFormatError, match=r"two files for HD-sEMG subject 2: .*S02.mat and"):
        subject_file(tmp_path, 2)
    with pytest.raises(DataFormatError, match=r"no such folder"):
        find_subjects(tmp_path / "missing")
