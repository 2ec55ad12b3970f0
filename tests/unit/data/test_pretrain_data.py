"""Pretraining and fine-tuning data readers on small files written in the real formats:
emg2pose (HDF5 compound dtype + metadata.csv), NinaPro DB5 / DB6 / DB7 (MATLAB v5)."""

import re
import warnings

import h5py
import numpy as np
import pandas as pd
import pytest

from emg_lens.data.formats.emg2pose import (
    METADATA_COLUMNS,
    Emg2PoseDataset,
    Emg2PoseSession,
    write_emg2pose_metadata,
    write_emg2pose_session,
)
from emg_lens.data.formats.ninapro_db5 import load_ninapro_db5
from emg_lens.data.formats.ninapro_db6_db7 import (
    load_ninapro_db6,
    load_ninapro_db7,
    ninapro_db6_files,
    ninapro_db7_files,
)
from emg_lens.errors import ArgumentError, DataFormatError
from tests.unit.data.ninapro_files import N, db6_vars, mat_vars, save

# --- emg2pose --------------------------------------------------------------------------------

T = 3000


def _session_arrays(seed):
    """emg[t, c] = seed * 1000 + t / 10 + c / 100 (readable back exactly in float32)."""
    t = np.arange(T)[:, None]
    emg = (seed * 1000 + t / 10 + np.arange(16)[None, :] / 100).astype(np.float32)
    angles = np.random.default_rng(seed).standard_normal((T, 20))
    time = 1.7e9 + np.arange(T) / 2000.0
    return emg, angles, time


@pytest.fixture
def emg2pose(tmp_path):
    """Three sessions of two users (hex-like ids, one that pandas would read as a number)."""
    rows = []
    for seed, (name, user, split) in enumerate(
        [("s_a", "0042", "train"), ("s_b", "ff3e", "train"), ("s_c", "0042", "test")]
    ):
        emg, angles, time = _session_arrays(seed)
        write_emg2pose_session(
            tmp_path / f"{name}.hdf5", emg, angles, time=time, user=user, stage="fist"
        )
        rows.append({"filename": name, "user": user, "split": split})
    write_emg2pose_metadata(tmp_path, rows)
    return tmp_path


def test_emg2pose_file_layout_is_the_real_one(emg2pose):
    with h5py.File(emg2pose / "s_a.hdf5", "r") as f:
        ds = f["emg2pose/timeseries"]
        assert ds.dtype == np.dtype(
            [("time", "<f8"), ("joint_angles", "<f8", (20,)), ("emg", "<f4", (16,))]
        )
        attrs = f["emg2pose"].attrs
        assert {"sample_rate", "num_channels", "session", "user", "side", "stage"} <= set(attrs)
    assert pd.read_csv(emg2pose / "metadata.csv").columns.tolist() == list(METADATA_COLUMNS)


def test_emg2pose_session_reads_slices(emg2pose):
    emg, angles, time = _session_arrays(1)
    with Emg2PoseSession(emg2pose / "s_b.hdf5") as session:
        assert (session.n_samples, session.sample_rate) == (T, 2000.0)
        assert session.attrs["user"] == "ff3e" and session.attrs["stage"] == "fist"
        part = session.read(100, 250)
        assert set(part) == {"emg", "joint_angles", "time"}
        assert part["emg"].dtype == np.float32 and part["emg"].shape == (150, 16)
        np.testing.assert_array_equal(part["emg"], emg[100:250])
        np.testing.assert_array_equal(part["joint_angles"], angles[100:250])
        np.testing.assert_array_equal(part["time"], time[100:250])
        assert list(session.read(0, 5, fields="emg")) == ["emg"]
        with pytest.raises(ArgumentError, match=r"outside 0\.\.3000"):
            session.read(10, T + 1)
        with pytest.raises(ArgumentError, match="fields must be among"):
            session.read(fields=("force",))
        with pytest.raises(ArgumentError, match="no subject number"):
            session.to_recording()
        rec = session.to_recording(subject=4)
    assert rec.subject == 4 and rec.modalities == {"emg": 16} and rec.sample_rate == 2000.0
    np.testing.assert_array_equal(rec.signals["emg"], emg)
    np.testing.assert_array_equal(rec.extras["joint_angles"], angles)
    assert rec.extras["joint_angles"].shape == (T, 20)
    assert not rec.stimulus.any() and not rec.repetition.any() and rec.gestures == []
    with pytest.raises(ArgumentError, match="closed"):
        session.read()


def test_emg2pose_dataset_selects_by_split_and_user(emg2pose):
    data = Emg2PoseDataset(emg2pose)
    assert len(data) == 3
    assert data.users == ["0042", "ff3e"]  # kept as text, leading zeros and all
    assert data.select(split="train").filename.tolist() == ["s_a", "s_b"]
    assert data.select(split=["train", "test"], users=["0042"]).filename.tolist() == ["s_a", "s_c"]
    assert [p.name for p in data.paths(split="test")] == ["s_c.hdf5"]
    recs = list(data.recordings(split="train"))
    assert [r.subject for r in recs] == [1, 2]
    assert recs[1].source.endswith("s_b.hdf5")
    np.testing.assert_array_equal(recs[1].signals["emg"], _session_arrays(1)[0])
    assert [r.subject for r in data.recordings(users="0042")] == [1, 1]
    with pytest.raises(
        ArgumentError, match=r"unknown emg2pose split \['val'\].*\['test', 'train'\]"
    ):
        data.select(split="val")
    with pytest.raises(ArgumentError, match="unknown emg2pose user 'zz'"):
        data.select(users=["zz"])
    with pytest.raises(ArgumentError, match="not listed"):
        data.open("s_z")


def test_emg2pose_metadata_problems(tmp_path):
    with pytest.raises(DataFormatError, match=r"metadata\.csv: no such file"):
        Emg2PoseDataset(tmp_path)
    (tmp_path / "metadata.csv").write_text("filename,user,split\ns1,u1,train\n")
    with pytest.raises(DataFormatError, match=r"metadata\.csv: missing columns \['session'"):
        Emg2PoseDataset(tmp_path)
    (tmp_path / "metadata.csv").write_text("")
    with pytest.raises(DataFormatError, match=r"metadata\.csv: cannot be read as CSV"):
        Emg2PoseDataset(tmp_path)
    with pytest.raises(ArgumentError, match=r"lacks \['split'\]"):
        write_emg2pose_metadata(tmp_path, [{"filename": "s1", "user": "u1"}])
    # a listed session whose file is missing: the error names the file
    write_emg2pose_metadata(tmp_path, [{"filename": "gone", "user": "u1", "split": "train"}])
    with pytest.raises(DataFormatError, match=r"gone\.hdf5: no such file"):
        list(Emg2PoseDataset(tmp_path).recordings())


def _write_compound(path, dtype, n=100, attrs=None, group="emg2pose"):
    with h5py.File(path, "w") as f:
        g = f.create_group(group)
        g.create_dataset("timeseries", data=np.zeros(n, dtype))
        g.attrs.update(attrs if attrs is not None else {"sample_rate": 2000, "num_channels": 16})
    return path


GOOD = [("time", "<f8"), ("joint_angles", "<f8", (20,)), ("emg", "<f4", (16,))]


def _truncated(path):
    write_emg2pose_session(path, np.zeros((500, 16)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _nan(path):
    emg = np.zeros((500, 16), np.float32)
    emg[7, 3] = np.nan
    write_emg2pose_session(path, emg)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (_truncated, "cannot be opened as an HDF5 file"),
        (lambda p: p.write_bytes(b"not hdf5" * 100), "cannot be opened as an HDF5 file"),
        (
            lambda p: _write_compound(p, GOOD, group="data"),
            r"emg2pose/timeseries must be a 1-D dataset.*found None, the file holds \['data'\]",
        ),
        (lambda p: _write_compound(p, GOOD[:2]), r"lacks field 'emg'"),
        (
            lambda p: write_emg2pose_session(p, np.zeros((50, 12))),
            r"lacks field 'emg' of shape \(16,\).*'emg': \(12,\)",
        ),
        (
            lambda p: _write_compound(p, GOOD, attrs={"num_channels": 16}),
            "'sample_rate' must be a positive number",
        ),
        (
            lambda p: _write_compound(p, GOOD, attrs={"sample_rate": np.inf, "num_channels": 16}),
            "'sample_rate' must be a positive number .*, got inf",
        ),
        (
            lambda p: _write_compound(p, GOOD, attrs={"sample_rate": 2000, "num_channels": 8}),
            "'num_channels' is 8",
        ),
        (_nan, r"field 'emg' holds 1 NaN/Inf values in samples 0:500"),
    ],
)
def test_emg2pose_bad_files_name_the_file(tmp_path, make, match):
    path = tmp_path / "bad.hdf5"
    make(path)
    with (
        pytest.raises(DataFormatError, match=re.escape(str(path)) + ".*" + match),
        Emg2PoseSession(path) as session,
    ):
        session.to_recording(subject=1)


# --- NinaPro DB5 / DB6 / DB7 -----------------------------------------------------------------


@pytest.fixture
def db5(tmp_path):
    """Subject 1 in s1/: E1, E2, E3 each with codes restarting at 1 (1-3), two repetitions."""
    for k in (1, 2, 3):
        save(tmp_path / "s1" / f"S1_E{k}_A1.mat", mat_vars(16, (1, 2, 3), (1, 2), acc=3))
    return tmp_path


def test_db5_labels_are_shifted_per_exercise(db5):
    rec = load_ninapro_db5(db5, 1)
    assert (rec.subject, rec.sample_rate) == (1, 200.0)
    assert rec.modalities == {"emg": 16}
    assert rec.n_samples == 3 * (N - 1)  # each file's label columns are one sample short
    assert rec.gestures == [1, 2, 3, 13, 14, 15, 30, 31, 32]
    n = N - 1
    assert set(rec.stimulus[:n]) == {0, 1, 2, 3}
    assert set(rec.stimulus[n : 2 * n]) == {0, 13, 14, 15}
    assert set(rec.stimulus[2 * n :]) == {0, 30, 31, 32}
    np.testing.assert_array_equal(rec.extras["stimulus"], rec.stimulus)  # raw column shifted too
    assert set(rec.repetition) == {0, 1, 2}
    np.testing.assert_allclose(rec.signals["emg"][n + 5], 5 + np.arange(16) / 100, rtol=1e-6)
    assert "acc" in rec.extras and rec.source.count(".mat") == 3


def test_db5_exercise_subset_modalities_and_global_codes(db5):
    rec = load_ninapro_db5(db5, 1, exercises=["E3", 1], modalities=("emg", "acc"))
    assert rec.modalities == {"emg": 16, "acc": 3}
    assert rec.gestures == [1, 2, 3, 30, 31, 32]
    assert set(rec.stimulus[: N - 1]) == {0, 30, 31, 32}  # in the order asked
    # codes already global (E2: 13-29) are kept
    save(db5 / "s1" / "S1_E2_A1.mat", mat_vars(16, (13, 29), (1,)))
    assert load_ninapro_db5(db5, 1, exercises=2).gestures == [13, 29]
    path = save(db5 / "s1" / "S1_E2_A1.mat", mat_vars(16, (5, 40), (1,)))
    with pytest.raises(DataFormatError, match=re.escape(str(path)) + r".*E2.*\[5, 40\]"):
        load_ninapro_db5(db5, 1, exercises=2)


def test_a_db5_exercise_without_its_file_is_named(db5):
    (db5 / "s1" / "S1_E2_A1.mat").unlink()
    with pytest.raises(DataFormatError, match=r"no file S1_E2_A1\.mat; DB5 files: \['S1_E1_A1"):
        load_ninapro_db5(db5, 1, exercises=(1, 2))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"exercises": "B"}, "DB5 exercise must be 1, 2 or 3"),
        ({"exercises": (4,)}, "DB5 exercise must be"),
        ({"exercises": (True,)}, r"DB5 exercise must be .*, got True$"),
        ({"exercises": ()}, "at least one"),
        ({"modalities": ("gyro",)}, r"modalities must be distinct names among \['emg', 'acc'"),
    ],
)
def test_db5_bad_arguments(db5, kwargs, match):
    with pytest.raises(ArgumentError, match=match):
        load_ninapro_db5(db5, 1, **kwargs)


def test_db6_session(tmp_path):
    path = save(tmp_path / "DB6_s3_a" / "S3_D2_T1.mat", db6_vars())
    assert ninapro_db6_files(tmp_path) == {(3, 2, 1): path}
    rec = load_ninapro_db6(path, modalities=("emg", "acc"))
    assert (rec.subject, rec.sample_rate, rec.n_samples) == (3, 2000.0, N - 1)
    assert rec.modalities == {"emg": 14, "acc": 42}
    assert rec.gestures == list(range(1, 8))
    assert set(rec.repetition) == set(range(13))
    np.testing.assert_allclose(rec.signals["emg"][9], 9 + np.arange(14) / 100, rtol=1e-6)
    assert load_ninapro_db6(path, subject=9).subject == 9


def test_db6_sixteen_slot_files_lose_the_unused_slots(tmp_path):
    variables = db6_vars(channels=16)
    variables["emg"][:, 8:10] = 0.0
    path = save(tmp_path / "S1_D1_T2.mat", variables)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rec = load_ninapro_db6(path)
    expected = np.delete(np.arange(16), [8, 9]) / 100.0
    np.testing.assert_allclose(rec.signals["emg"][20], 20 + expected, rtol=1e-6)
    path = save(tmp_path / "S1_D1_T2.mat", db6_vars(channels=16))  # slots 9-10 not empty
    with pytest.warns(UserWarning, match=re.escape(str(path)) + r".*\[9, 10\].*not empty"):
        assert load_ninapro_db6(path).modalities == {"emg": 14}


def test_db6_file_discovery(tmp_path):
    save(tmp_path / "a" / "S1_D1_T1.mat", db6_vars())
    save(tmp_path / "b" / "S10_D5_T2.mat", db6_vars())
    (tmp_path / "b" / "notes.mat").write_bytes(b"")
    assert sorted(ninapro_db6_files(tmp_path)) == [(1, 1, 1), (10, 5, 2)]
    save(tmp_path / "c" / "S1_D1_T1.mat", db6_vars())
    match = "two files for NinaPro DB6 subject 1, day 1, time 1"
    with pytest.raises(DataFormatError, match=match) as info:
        ninapro_db6_files(tmp_path)
    assert f"{tmp_path / 'a' / 'S1_D1_T1.mat'} and {tmp_path / 'c' / 'S1_D1_T1.mat'}" in str(
        info.value
    )
    with pytest.raises(DataFormatError, match="no such folder"):
        ninapro_db6_files(tmp_path / "nowhere")
    odd = save(tmp_path / "session.mat", db6_vars())
    with pytest.raises(ArgumentError, match=r"cannot tell the subject.*S1_D1_T1"):
        load_ninapro_db6(odd)


def _db7_vars(**kwargs):
    codes = range(1, 41)
    return mat_vars(12, codes, range(1, 7), acc=36, gyro=36, mag=36, **kwargs)


def test_db7_subject(tmp_path):
    path = save(tmp_path / "Subject_2" / "S2_E1_A1.mat", _db7_vars())
    assert ninapro_db7_files(tmp_path) == {2: path}
    rec = load_ninapro_db7(path, modalities=("emg", "acc", "gyro", "mag"))
    assert rec.subject == 2 and rec.n_samples == N - 1
    assert rec.modalities == {"emg": 12, "acc": 36, "gyro": 36, "mag": 36}
    assert rec.gestures == list(range(1, 41))
    assert set(rec.repetition) == set(range(7))
    variables = _db7_vars()
    variables["restimulus"][100] = 41
    path = save(tmp_path / "S2_E1_A1.mat", variables)
    with pytest.raises(DataFormatError, match=re.escape(str(path)) + r".*1-40.*\[41\]"):
        load_ninapro_db7(path)


# --- bad files: the same problems, every NinaPro reader, the file named ---------------------

READERS = {
    "db5": (lambda p: load_ninapro_db5(p.parent, 1, exercises=1), "S1_E1_A1.mat", 16),
    "db6": (lambda p: load_ninapro_db6(p), "S1_D1_T1.mat", 14),
    "db7": (lambda p: load_ninapro_db7(p), "S1_E1_A1.mat", 12),
}


def _write_bad(path, channels, problem):
    variables = mat_vars(channels, (1, 2), (1, 2))
    if problem == "v7.3":
        with h5py.File(path, "w", userblock_size=512) as f:
            f["emg"] = variables["emg"].T
        return
    if problem == "missing emg":
        del variables["emg"]
    elif problem == "missing labels":
        del variables["restimulus"], variables["stimulus"]
    elif problem == "channels":
        variables["emg"] = variables["emg"][:, :-1]
    elif problem == "nan":
        variables["emg"][17, 0] = np.nan
    elif problem == "negative labels":
        variables["restimulus"][3] = -1
    elif problem == "length":
        variables["rerepetition"] = variables["rerepetition"][:-20]
    save(path, variables)
    if problem == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize(
    ("problem", "match"),
    [
        ("truncated", "truncated or corrupt"),
        ("v7.3", r"HDF5 \(MATLAB v7\.3\)"),
        ("missing emg", r"missing required variable 'emg'"),
        ("missing labels", r"missing required variable 'restimulus' or 'stimulus'"),
        ("channels", "'emg' has the wrong channel count"),
        ("nan", "signal 'emg' holds 1 NaN/Inf"),
        ("negative labels", "'restimulus' holds negative values"),
        ("length", "differ in length by 21 samples"),  # emg 1200, labels 1199 - 20
    ],
)
def test_bad_ninapro_files_name_the_file_and_the_problem(tmp_path, reader, problem, match):
    load, name, channels = READERS[reader]
    path = tmp_path / name
    _write_bad(path, channels, problem)
    with pytest.raises(DataFormatError, match=re.escape(str(path)) + ".*" + match):
        load(path)
