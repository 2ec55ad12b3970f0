"""NinaPro DB2 loader/writer on small files written in the real format (MATLAB v5)."""

import re
import warnings

import h5py
import numpy as np
import pytest
import scipy.io

from emg_lens.data.formats._matlab import LENGTH_TOLERANCE
from emg_lens.data.formats.ninapro_db2 import (
    find_exercise_file,
    load_ninapro_db2,
    write_ninapro_db2,
)
from emg_lens.data.recording import Recording
from emg_lens.errors import ArgumentError, DataFormatError

N = 2000


def _file_vars(
    n=N, *, exercise=1, codes=(1, 2, 3), subject=1, seed=0, glove=True, force=False, relabelled=True
):
    """Variables of a real-looking DB2 file: emg[t, c] = t + c / 100, three gestures x 2 reps
    (``relabelled=False``: no restimulus/rerepetition, as in the published E3 files)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    emg = t + np.arange(12)[None, :] / 100.0
    stimulus = np.zeros(n)
    repetition = np.zeros(n)
    block = n // (2 * len(codes) + 1)
    start = block // 2
    for rep in (1, 2):
        for code in codes:
            stimulus[start : start + block // 2] = code
            repetition[start : start + block // 2] = rep
            start += block
    # The relabelled versions are shifted by a few samples, as in the real files.
    restimulus = np.roll(stimulus, 3)
    rerepetition = np.roll(repetition, 3)
    out = {
        "emg": emg,
        "acc": rng.standard_normal((n, 36)),
        "stimulus": stimulus[:, None],
        "restimulus": restimulus[:, None],
        "repetition": repetition[:, None],
        "rerepetition": rerepetition[:, None],
        "inclin": rng.standard_normal((n, 2)),
        "subject": subject,
        "exercise": exercise,
    }
    if not relabelled:
        del out["restimulus"], out["rerepetition"]
    if glove:
        out["glove"] = rng.standard_normal((n, 22))
    if force:
        out["force"] = rng.standard_normal((n, 6))
        out["forcecal"] = np.zeros((2, 6))
    return out


def _save(path, variables):
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), variables, format="5")
    return path


@pytest.fixture
def db2(tmp_path):
    """A dataset root with subject 1: E1 (codes 1-3), E2 (codes 18-20), E3 (41-43, force)."""
    folder = tmp_path / "DB2_s1"
    _save(folder / "S1_E1_A1.mat", _file_vars(exercise=1))
    _save(folder / "S1_E2_A1.mat", _file_vars(exercise=2, codes=(18, 19, 20), seed=1))
    _save(folder / "S1_E3_A1.mat", _file_vars(exercise=3, codes=(41, 42, 43), force=True))
    return tmp_path


def test_loads_signals_labels_and_extras(db2):
    rec = load_ninapro_db2(db2, 1)
    variables = _file_vars()
    assert isinstance(rec, Recording)
    assert (rec.subject, rec.sample_rate, rec.n_samples) == (1, 2000.0, N)
    assert rec.modalities == {"emg": 12, "acc": 36}
    assert list(rec.signals) == ["emg", "acc"]
    assert all(x.dtype == np.float32 for x in rec.signals.values())
    # channel order kept: emg[t, c] = t + c / 100
    np.testing.assert_allclose(rec.signals["emg"][5], 5 + np.arange(12) / 100, rtol=1e-6)
    # the relabelled columns are used; the raw ones land in extras
    np.testing.assert_array_equal(rec.stimulus, variables["restimulus"].ravel())
    np.testing.assert_array_equal(rec.repetition, variables["rerepetition"].ravel())
    np.testing.assert_array_equal(rec.extras["stimulus"], variables["stimulus"].ravel())
    assert rec.stimulus.dtype == np.int64
    assert rec.gestures == [1, 2, 3]
    assert set(np.unique(rec.repetition)) == {0, 1, 2}
    assert set(rec.extras) == {"glove", "inclin", "stimulus", "repetition"}
    assert rec.extras["glove"].shape == (N, 22)
    assert rec.source.endswith("S1_E1_A1.mat")


def test_subject_folder_as_root_and_exercise_aliases(db2):
    a = load_ninapro_db2(db2 / "DB2_s1", 1, exercises=[2])
    b = load_ninapro_db2(db2, 1, exercises="C")
    np.testing.assert_array_equal(a.stimulus, b.stimulus)
    assert a.gestures == [18, 19, 20]


def test_exercises_are_concatenated_in_time(db2):
    rec = load_ninapro_db2(db2, 1, exercises=("B", "C", "D"), modalities=("emg",))
    assert rec.n_samples == 3 * N
    assert rec.gestures == [1, 2, 3, 18, 19, 20, 41, 42, 43]
    assert set(rec.stimulus[:N]) <= {0, 1, 2, 3}
    assert set(rec.stimulus[2 * N :]) <= {0, 41, 42, 43}
    # force only in E3: not common to every file, so it is left out of extras
    assert "force" not in rec.extras and "acc" in rec.extras
    assert rec.extras["acc"].shape == (3 * N, 36)
    assert "S1_E1_A1.mat" in rec.source and "S1_E3_A1.mat" in rec.source


def test_force_modality_in_exercise_d(db2):
    rec = load_ninapro_db2(db2, 1, exercises="D", modalities=("emg", "force", "glove"))
    assert rec.modalities == {"emg": 12, "force": 6, "glove": 22}
    assert "forcecal" not in rec.extras  # not per-sample
    with pytest.raises(DataFormatError, match=r"S1_E1_A1\.mat.*missing required variable 'force'"):
        load_ninapro_db2(db2, 1, exercises=("D", "B"), modalities=("force",))


def test_short_label_vector_truncates_everything(tmp_path):
    variables = _file_vars()
    for name in ("stimulus", "restimulus", "repetition", "rerepetition"):
        variables[name] = variables[name][:-1]
    _save(tmp_path / "DB2_s1" / "S1_E1_A1.mat", variables)
    rec = load_ninapro_db2(tmp_path, 1)
    assert rec.n_samples == N - 1
    assert rec.signals["emg"].shape == (N - 1, 12)
    assert rec.extras["glove"].shape == (N - 1, 22)


def test_length_mismatch_beyond_tolerance(tmp_path):
    variables = _file_vars()
    variables["restimulus"] = variables["restimulus"][: -(LENGTH_TOLERANCE + 1)]
    path = _save(tmp_path / "DB2_s1" / "S1_E1_A1.mat", variables)
    with pytest.raises(DataFormatError, match=re.escape(str(path)) + ".*differ in length by 6"):
        load_ninapro_db2(tmp_path, 1)


def test_missing_glove(tmp_path):
    path = _save(tmp_path / "DB2_s1" / "S1_E1_A1.mat", _file_vars(glove=False))
    rec = load_ninapro_db2(tmp_path, 1)
    assert "glove" not in rec.extras
    with pytest.raises(DataFormatError, match=r"missing required variable 'glove'.*'acc'") as e:
        load_ninapro_db2(tmp_path, 1, modalities=("emg", "glove"))
    assert str(path) in str(e.value)


def test_falls_back_to_raw_labels(tmp_path):
    variables = _file_vars()
    del variables["restimulus"], variables["rerepetition"]
    _save(tmp_path / "DB2_s1" / "S1_E1_A1.mat", variables)
    rec = load_ninapro_db2(tmp_path, 1)
    np.testing.assert_array_equal(rec.stimulus, variables["stimulus"].ravel())
    np.testing.assert_array_equal(rec.repetition, variables["repetition"].ravel())
    assert "stimulus" not in rec.extras


# The published E3 files: codes 1, 2, 4, 6, 8, 9, 16, 32, 40 in `stimulus`, and no restimulus or
# rerepetition (the public DB2 loaders, e.g. nina_helper: "Movements number in non-logical
# pattern [0  1  2  4  6  8  9 16 32 40]"; "for last file there is no 'rerepetition or
# 'restimulus'"), mapped in that order onto 41-49.
PUBLISHED_E3 = (1, 2, 4, 6, 8, 9, 16, 32, 40)


@pytest.mark.parametrize(
    "codes",
    [PUBLISHED_E3, (1, 2, 4, 8, 9, 16, 32, 40), (1, 2, 4, 6, 8, 9), (40, 6)],
    ids=["all nine", "one missing", "the low six", "two"],
)
def test_exercise_d_published_codes_map_by_one_table_with_a_warning(tmp_path, codes):
    variables = _file_vars(n=4000, exercise=3, codes=codes, relabelled=False, force=True)
    path = _save(tmp_path / "DB2_s1" / "S1_E3_A1.mat", variables)
    with pytest.warns(UserWarning, match=re.escape(str(path))) as record:
        rec = load_ninapro_db2(tmp_path, 1, exercises="D")
    table = dict(zip(PUBLISHED_E3, range(41, 50), strict=True))
    mapping = {c: table[c] for c in sorted(codes)}  # a code's label never depends on the others
    assert str(mapping) in str(record[0].message)
    assert record[0].filename == __file__  # the warning points at load_ninapro_db2's caller
    assert rec.gestures == sorted(mapping.values())
    raw = variables["stimulus"].ravel().astype(int)
    np.testing.assert_array_equal(rec.stimulus, [mapping.get(c, 0) for c in raw])
    np.testing.assert_array_equal(rec.repetition, variables["repetition"].ravel())
    assert rec.meta["label_columns"] == {str(path): ("stimulus", "repetition")}


@pytest.mark.parametrize("codes", [(3, 5, 7), (12, 15, 20), (1, 2, 3)])
def test_exercise_d_other_codes_are_refused_naming_file_and_codes(tmp_path, codes):
    path = _save(tmp_path / "DB2_s1" / "S1_E3_A1.mat", _file_vars(exercise=3, codes=codes))
    with pytest.raises(DataFormatError) as err:
        load_ninapro_db2(tmp_path, 1, exercises="D")
    message = str(err.value)
    assert str(path) in message and str(list(codes)) in message
    assert "[1, 2, 4, 6, 8, 9, 16, 32, 40]" in message and "41-49" in message


def test_exercises_whose_labels_come_from_different_columns_warn(tmp_path):
    folder = tmp_path / "DB2_s1"
    b = _save(folder / "S1_E1_A1.mat", _file_vars(exercise=1))
    d = _save(folder / "S1_E3_A1.mat", _file_vars(exercise=3, codes=(41, 42), relabelled=False))
    with pytest.warns(UserWarning, match="labels come from different columns") as record:
        rec = load_ninapro_db2(tmp_path, 1, exercises=("B", "D"))
    assert record[0].filename == __file__
    columns = {str(b): ("restimulus", "rerepetition"), str(d): ("stimulus", "repetition")}
    assert rec.meta["label_columns"] == columns
    assert str(columns) in str(record[0].message)


def test_exercise_d_in_range_codes_do_not_warn(db2):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_ninapro_db2(db2, 1, exercises="D").gestures == [41, 42, 43]


def test_db3_token_order_and_subject_tokens(tmp_path):
    folder = tmp_path / "DB3_s1"
    _save(folder / "S1_A1_E2.mat", _file_vars(exercise=2, codes=(18, 19, 20)))
    _save(folder / "S10_A1_E2.mat", _file_vars(exercise=2, codes=(21, 22, 23)))
    assert find_exercise_file(folder, 1, "C").name == "S1_A1_E2.mat"
    assert find_exercise_file(folder, 10, 2).name == "S10_A1_E2.mat"
    assert find_exercise_file(tmp_path, 1, 2).name == "S1_A1_E2.mat"
    assert load_ninapro_db2(folder, 1, exercises="C").gestures == [18, 19, 20]


def test_writer_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    n = 1500
    rec = Recording(
        subject=5,
        signals={
            "emg": rng.standard_normal((n, 12)).astype(np.float32),
            "acc": rng.standard_normal((n, 36)).astype(np.float32),
        },
        sample_rate=2000.0,
        stimulus=np.repeat([0, 41, 0, 49, 0], n // 5),
        repetition=np.repeat([0, 1, 0, 1, 0], n // 5),
        extras={"glove": rng.standard_normal((n, 22))},
    )
    path = write_ninapro_db2(rec, tmp_path, exercise="D")
    assert path == tmp_path / "DB2_s5" / "S5_E3_A1.mat"
    raw = scipy.io.loadmat(str(path))
    assert raw["emg"].dtype == np.float64 and raw["restimulus"].shape == (n, 1)
    assert raw["rerepetition"].shape == (n, 1) and raw["force"].shape == (n, 6)
    assert raw["forcecal"].shape == (2, 6)
    assert int(raw["subject"].squeeze()) == 5 and int(raw["exercise"].squeeze()) == 3
    back = load_ninapro_db2(tmp_path, 5, exercises="D")
    assert back.modalities == rec.modalities
    for name in rec.signals:
        np.testing.assert_array_equal(back.signals[name], rec.signals[name])
    np.testing.assert_array_equal(back.stimulus, rec.stimulus)
    np.testing.assert_array_equal(back.repetition, rec.repetition)
    np.testing.assert_array_equal(back.extras["glove"], rec.extras["glove"])
    # and a second trip through the writer changes nothing
    again = load_ninapro_db2(
        write_ninapro_db2(back, tmp_path / "b", exercise="D").parent, 5, exercises="D"
    )
    for name in rec.signals:
        np.testing.assert_array_equal(again.signals[name], rec.signals[name])
    np.testing.assert_array_equal(again.extras["stimulus"], back.extras["stimulus"])


def test_writer_quirks(tmp_path):
    n = 300
    rec = Recording(
        subject=2,
        signals={"emg": np.ones((n, 12), np.float32), "acc": np.zeros((n, 36), np.float32)},
        sample_rate=2000.0,
        stimulus=np.repeat([0, 1, 0], n // 3),
        repetition=np.repeat([0, 1, 0], n // 3),
    )
    write_ninapro_db2(rec, tmp_path / "short", short_labels=True, omit_glove=True)
    short = load_ninapro_db2(tmp_path / "short", 2)
    assert short.n_samples == n - 1 and "glove" not in short.extras
    write_ninapro_db2(rec, tmp_path / "bad", glove_channels=20)
    with pytest.raises(DataFormatError, match=r"'glove'.*expected 22, got 20"):
        load_ninapro_db2(tmp_path / "bad", 2, modalities=("emg", "glove"))
    with pytest.raises(ArgumentError, match="'emg' signal"):
        write_ninapro_db2(
            Recording(2, {"acc": np.zeros((3, 36))}, 2000.0, np.zeros(3), np.zeros(3)), tmp_path
        )


# --- bad files -------------------------------------------------------------------------------


def test_missing_file_names_what_was_searched(db2):
    with pytest.raises(DataFormatError, match=r"subject 2, exercise E1.*'S2'.*'E1'"):
        load_ninapro_db2(db2, 2)
    with pytest.raises(DataFormatError, match="no such folder"):
        load_ninapro_db2(db2 / "nowhere", 1)


def test_truncated_and_corrupt_files(tmp_path):
    path = _save(tmp_path / "S1_E1_A1.mat", _file_vars())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match=re.escape(str(path)) + ".*truncated or corrupt"):
        load_ninapro_db2(tmp_path, 1)
    path.write_bytes(b"not a mat file at all" * 20)
    with pytest.raises(DataFormatError, match="truncated or corrupt"):
        load_ninapro_db2(tmp_path, 1)
    path.write_bytes(b"")
    with pytest.raises(DataFormatError, match="truncated or corrupt"):
        load_ninapro_db2(tmp_path, 1)


def test_v73_file_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "S1_E1_A1.mat"
    with h5py.File(path, "w", userblock_size=512) as f:
        f["emg"] = np.zeros((12, 100))
    with pytest.raises(DataFormatError, match=re.escape(str(path)) + r".*HDF5 \(MATLAB v7\.3\)"):
        load_ninapro_db2(tmp_path, 1)


def test_missing_required_variable_lists_what_exists(tmp_path):
    variables = _file_vars()
    del variables["emg"]
    _save(tmp_path / "S1_E1_A1.mat", variables)
    with pytest.raises(DataFormatError, match=r"missing required variable 'emg'.*\['acc', "):
        load_ninapro_db2(tmp_path, 1)
    variables = _file_vars()
    del variables["stimulus"], variables["restimulus"]
    _save(tmp_path / "S1_E1_A1.mat", variables)
    with pytest.raises(DataFormatError, match="'restimulus' or 'stimulus'"):
        load_ninapro_db2(tmp_path, 1)


def test_wrong_channel_count(tmp_path):
    variables = _file_vars()
    variables["emg"] = variables["emg"][:, :10]
    path = _save(tmp_path / "S1_E1_A1.mat", variables)
    with pytest.raises(
        DataFormatError, match=re.escape(str(path)) + r".*'emg'.*expected 12, got 10"
    ):
        load_ninapro_db2(tmp_path, 1)


def test_nan_in_a_signal(tmp_path):
    variables = _file_vars()
    variables["acc"][10, 3] = np.nan
    variables["acc"][11, 3] = np.inf
    _save(tmp_path / "S1_E1_A1.mat", variables)
    with pytest.raises(DataFormatError, match=r"S1_E1_A1\.mat: signal 'acc' holds 2 NaN/Inf"):
        load_ninapro_db2(tmp_path, 1)
    assert load_ninapro_db2(tmp_path, 1, modalities=("emg",)).n_samples == N


def test_non_integer_labels(tmp_path):
    variables = _file_vars()
    variables["restimulus"] = variables["restimulus"] + 0.5
    _save(tmp_path / "S1_E1_A1.mat", variables)
    with pytest.raises(DataFormatError, match="'restimulus' holds non-integer"):
        load_ninapro_db2(tmp_path, 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"exercises": ("Z",)}, "exercise must be one of"),
        ({"exercises": (4,)}, "exercise must be one of"),
        ({"exercises": (True,)}, r"exercise must be one of .*, got True$"),
        pytest.param(  # a float its annotation refuses: emg_lens's own error, unchecked
            {"exercises": (2.0,)},
            r"exercise must be one of .*, got 2\.0$",
            marks=pytest.mark.unchecked,
        ),
        ({"exercises": ()}, "at least one"),
        ({"modalities": ("eeg",)}, "modalities must be"),
        ({"modalities": ("emg", "emg")}, "modalities must be"),
    ],
)
def test_bad_arguments(db2, kwargs, match):
    with pytest.raises(ArgumentError, match=match):
        load_ninapro_db2(db2, 1, **kwargs)
    with pytest.raises(ArgumentError, match="subject"):
        load_ninapro_db2(db2, 0)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            {"restimulus": np.zeros((N, 2))},
            r"label 'restimulus' must be a numeric column, got float64 \(2000, 2\)",
        ),
        (
            {"emg": np.zeros((N, 12, 2))},
            r"'emg' must be a numeric \[time, channels\] matrix, got float64 \(2000, 12, 2\)",
        ),
    ],
)
def test_labels_and_signals_of_the_wrong_shape_are_named(tmp_path, change, match):
    path = _save(tmp_path / "S1_E1_A1.mat", {**_file_vars(), **change})
    with pytest.raises(DataFormatError, match=re.escape(str(path)) + ": " + match):
        load_ninapro_db2(tmp_path, 1)


def test_two_takes_of_an_exercise_are_refused_not_guessed(tmp_path):
    for name in ("S1_E1_A2.mat", "S1_E1_A3.mat"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(DataFormatError, match=r"two files for subject 1, exercise E1: .*A2\.mat"):
        find_exercise_file(tmp_path, 1, 1)
