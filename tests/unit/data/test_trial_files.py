"""A folder of per-trial files read by a path template (issue 42, item 1): LibEMG's real Myo
recordings checked against the files, and every bad folder a named error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from emg_lens.data import read_files
from emg_lens.data.formats.file_pattern import FilePattern
from emg_lens.data.formats.trial_matrix import CsvFormat, read_trial
from emg_lens.errors import ArgumentError, ConfigError, DataFormatError

MYO = Path(__file__).resolve().parents[2] / "data" / "libemg_myo"
MYO_PATTERN = "R_{repetition}_C_{gesture}_EMG.csv"


def test_the_myo_set_is_read_as_the_files_hold_it():
    (rec,) = read_files(MYO, MYO_PATTERN, sample_rate=200)
    assert rec.subject == 1 and rec.modalities == {"emg": 8} and rec.sample_rate == 200.0
    assert rec.meta["gesture_names"] == {1: "0", 2: "1", 3: "2", 4: "3", 5: "4"}
    assert rec.meta["repetition_values"] == {1: "0", 2: "1", 3: "2", 4: "3"}
    trials = rec.meta["trials"]
    assert len(trials) == 20
    for trial in trials:
        raw = np.loadtxt(MYO / trial["file"], delimiter=",")
        span = rec.signals["emg"][trial["start"] : trial["stop"]]
        assert span.shape == raw.shape  # every sample of the file, in file order
        np.testing.assert_array_equal(span[[0, -1]], raw[[0, -1]])
        gesture = rec.stimulus[trial["start"] : trial["stop"]]
        rep = rec.repetition[trial["start"] : trial["stop"]]
        assert set(gesture.tolist()) == {int(trial["gesture"]) + 1}
        assert set(rep.tolist()) == {int(trial["repetition"]) + 1}
    first = next(t for t in trials if t["file"] == "R_0_C_0_EMG.csv")
    assert first["stop"] - first["start"] == 602
    np.testing.assert_array_equal(rec.signals["emg"][0], [20, 1, 6, -6, -2, 2, -4, -3])
    # trials are separated by rest, so no window spans two of them
    assert (rec.stimulus == 0).sum() == 19 * 100


def write_csv(path: Path, rows) -> Path:
    """``rows`` as a CSV, each number with a decimal point (``1.0``), as measurements are
    written: a file of bare whole numbers can leave its header or its delimiter undecided
    (`emg_lens.data.formats.trial_matrix`; the tests below write those on purpose)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cell = lambda v: repr(float(v)) if isinstance(v, int) else str(v)  # noqa: E731
    path.write_text("\n".join(",".join(cell(v) for v in row) for row in rows) + "\n")
    return path


def folder(root: Path, gestures=("fist", "open"), reps=(1, 2), channels=3, n=50) -> Path:
    rng = np.random.default_rng(0)
    for s in (1, 2):
        for g in gestures:
            for r in reps:
                np.save(
                    (root / f"s{s}" / g).mkdir(parents=True, exist_ok=True)
                    or root / f"s{s}" / g / f"trial{r}.npy",
                    rng.standard_normal((n, channels)),
                )
    return root


def test_subjects_gesture_names_and_header_channels(tmp_path):
    recs = read_files(
        folder(tmp_path), "s{subject}/{gesture}/trial{repetition}.npy", sample_rate=1000
    )
    assert [r.subject for r in recs] == [1, 2]
    assert recs[0].meta["gesture_names"] == {1: "fist", 2: "open"}
    root = tmp_path / "csv"
    for g in ("a", "b"):
        write_csv(root / f"{g}_1.csv", [["ch1", "ch2", "ch3"], [1, 2, 3], [4, 5, 6], [7, 8, 9]])
    (rec,) = read_files(root, "{gesture}_{repetition}.csv", sample_rate=10, channels=["ch3", 0])
    np.testing.assert_array_equal(rec.signals["emg"][:2], [[3, 1], [6, 4]])
    assert rec.meta["channel_names"] == ["ch3", "ch1"]
    assert recs[0].meta["channel_names"] == ["emg1", "emg2", "emg3"]
    write_csv(root / "b_1.csv", [["ch1", "chX", "ch3"], [1, 2, 3], [4, 5, 6], [7, 8, 9]])
    with pytest.raises(DataFormatError, match=r"channels \['ch1', 'chX', 'ch3'\], but"):
        read_files(root, "{gesture}_{repetition}.csv", sample_rate=10)
    for g in ("a", "b"):  # a header name that could be read as HTML never names a token
        write_csv(root / f"{g}_1.csv", [["ch1", "<b>x</b>"], [1, 2], [3, 4]])
    with pytest.raises(ConfigError, match=r"a_1\.csv: channel\[1\] = '<b>x</b>'"):
        read_files(root, "{gesture}_{repetition}.csv", sample_rate=10)


def test_sessions_number_the_repetitions_in_order(tmp_path):
    for session in ("day1", "day2"):
        for g in (1, 2):
            for r in (1, 2):
                write_csv(tmp_path / session / f"g{g}_r{r}.csv", [[g, r], [g, r]])
    (rec,) = read_files(tmp_path, "{session}/g{gesture}_r{repetition}.csv", sample_rate=10)
    assert list(rec.meta["repetition_values"].values()) == [
        {"session": "day1", "repetition": "1"},
        {"session": "day1", "repetition": "2"},
        {"session": "day2", "repetition": "1"},
        {"session": "day2", "repetition": "2"},
    ]


def test_mat_files_by_variable(tmp_path):
    for g in (1, 2):
        scipy.io.savemat(tmp_path / f"g{g}_1.mat", {"emg": np.ones((4, 2)) * g, "fs": 200.0})
    with pytest.raises(DataFormatError, match=r"numeric variables \['emg', 'fs'\]"):
        read_files(tmp_path, "g{gesture}_{repetition}.mat", sample_rate=200)
    (rec,) = read_files(tmp_path, "g{gesture}_{repetition}.mat", sample_rate=200, variable="emg")
    assert rec.signals["emg"][0].tolist() == [1.0, 1.0]
    with pytest.raises(DataFormatError, match="has no variable 'x'"):
        read_files(tmp_path, "g{gesture}_{repetition}.mat", sample_rate=200, variable="x")


@pytest.mark.parametrize(
    "pattern, message",
    [
        ("{gesture}.csv", r"no field \{repetition\}"),
        ("R_{repetition}.csv", r"no field \{gesture\}"),
        ("{gesture}_{gesture}_{repetition}.csv", "twice"),
        ("{gesture}_{repetition}.txt", "must end with a file extension"),
        ("../{gesture}_{repetition}.csv", "stay inside"),
        ("{gesture}_{repetition.csv", "unbalanced brace"),
        ("{ges ture}_{repetition}.csv", "must be a name"),
        ("", "path template"),
    ],
)
def test_bad_patterns_are_named(pattern, message):
    with pytest.raises(ArgumentError, match=message):
        FilePattern.parse(pattern)


def two_gestures(root: Path, rows=((1, 2), (3, 4))) -> Path:
    for g in ("a", "b"):
        write_csv(root / f"{g}_1.csv", rows)
    return root


@pytest.mark.unchecked
@pytest.mark.parametrize("rate", [0, -200, float("nan"), float("inf"), "200", True])
def test_a_sample_rate_that_is_not_positive_is_named(tmp_path, rate):
    with pytest.raises(ArgumentError, match="sample_rate"):
        read_files(two_gestures(tmp_path), "{gesture}_{repetition}.csv", sample_rate=rate)


def test_a_file_no_pattern_matches_is_named_or_skipped(tmp_path):
    two_gestures(tmp_path)
    write_csv(tmp_path / "notes.csv", [[1, 2]])
    with pytest.raises(DataFormatError, match=r"1 file\(s\) no pattern matches \(notes.csv\)"):
        read_files(tmp_path, "{gesture}_{repetition}.csv", sample_rate=10)
    (rec,) = read_files(tmp_path, "{gesture}_{repetition}.csv", sample_rate=10, unmatched="skip")
    assert len(rec.meta["trials"]) == 2
    with pytest.raises(DataFormatError, match="no file matches"):
        read_files(tmp_path, "x{gesture}_{repetition}.csv", sample_rate=10, unmatched="skip")


def test_a_file_two_patterns_match_is_named(tmp_path):
    two_gestures(tmp_path)
    with pytest.raises(DataFormatError, match=r"a_1\.csv: matches two patterns"):
        read_files(
            tmp_path, ["{gesture}_{repetition}.csv", "{repetition}_{gesture}.csv"], sample_rate=10
        )


def test_two_files_for_one_trial_are_named(tmp_path):
    two_gestures(tmp_path)
    write_csv(tmp_path / "a_01.csv", [[1, 2]])  # repetition "01" sorts apart from "1": fine
    write_csv(tmp_path / "x" / "a_1.csv", [[1, 2]])
    with pytest.raises(DataFormatError, match="two files for subject 1, repetition '1'"):
        read_files(
            tmp_path, ["{gesture}_{repetition}.csv", "x/{gesture}_{repetition}.csv"], sample_rate=10
        )


def test_ragged_channel_counts_are_named(tmp_path):
    two_gestures(tmp_path)
    write_csv(tmp_path / "a_2.csv", [[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    with pytest.raises(
        DataFormatError, match=r"a_2.csv: channels \[.*\], but .*a_1.csv has \['emg1', 'emg2'\]"
    ):
        read_files(tmp_path, "{gesture}_{repetition}.csv", sample_rate=10)


def test_a_non_numeric_cell_is_named(tmp_path):
    two_gestures(tmp_path)
    write_csv(tmp_path / "b_1.csv", [[1, 2], [3, "x"]])
    with pytest.raises(DataFormatError, match=r"b_1.csv: line 2, column 2: 'x' is not a number"):
        read_files(tmp_path, "{gesture}_{repetition}.csv", sample_rate=10)
    write_csv(tmp_path / "b_1.csv", [[1, 2], [3]])
    with pytest.raises(DataFormatError, match="line 2 has 1 cells"):
        read_files(tmp_path, "{gesture}_{repetition}.csv", sample_rate=10)


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_nan_and_inf_are_named(tmp_path, bad):
    two_gestures(tmp_path)
    write_csv(tmp_path / "b_1.csv", [[1, 2], [bad, 4]])
    with pytest.raises(
        DataFormatError, match=r"b_1\.csv: 1 NaN or Inf values, the first at sample 1"
    ):
        read_files(tmp_path, "{gesture}_{repetition}.csv", sample_rate=10)


def test_one_gesture_only_is_named(tmp_path):
    write_csv(tmp_path / "a_1.csv", [[1, 2]])
    write_csv(tmp_path / "a_2.csv", [[1, 2]])
    with pytest.raises(DataFormatError, match="one gesture only"):
        read_files(tmp_path, "{gesture}_{repetition}.csv", sample_rate=10)


@pytest.mark.unchecked  # a float channel index, refused by emg_lens's own check
def test_bad_files_are_named(tmp_path):
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(DataFormatError, match=r"e\.csv: an empty file"):
        read_trial(tmp_path / "e.csv")
    (tmp_path / "l.csv").write_bytes(b"\xff\xfe1,2\n")
    with pytest.raises(DataFormatError, match="not a UTF-8"):
        read_trial(tmp_path / "l.csv")
    np.save(tmp_path / "s.npy", np.array(["a", "b"]))
    with pytest.raises(DataFormatError, match="not numbers"):
        read_trial(tmp_path / "s.npy")
    np.save(tmp_path / "c.npy", np.zeros((2, 2, 2)))
    with pytest.raises(DataFormatError, match="samples x channels"):
        read_trial(tmp_path / "c.npy")
    (tmp_path / "t.npy").write_bytes(b"not an array")
    with pytest.raises(DataFormatError, match="cannot be read as a NumPy"):
        read_trial(tmp_path / "t.npy")
    for g in ("a", "b"):
        write_csv(tmp_path / "h" / f"{g}_1.csv", [["ch1", "ch2"], [1, 2], [3, 4]])
    with pytest.raises(
        DataFormatError,
        match=r"channel 'c' is not a column index in 0\.\.1 or a name \(its header names",
    ):
        read_files(tmp_path / "h", "{gesture}_{repetition}.csv", sample_rate=1, channels=["c"])
    for bad in (5, True, 1.0):  # a bool or a float is no column index
        with pytest.raises(
            DataFormatError, match=rf"channel {bad} is not a column index in 0\.\.1"
        ):
            read_files(tmp_path / "h", "{gesture}_{repetition}.csv", sample_rate=1, channels=[bad])


def test_files_emg_lens_does_not_read_as_a_trial_are_named(tmp_path):
    (tmp_path / "t.txt").write_text("1,2\n3,4\n")
    with pytest.raises(DataFormatError, match=r"t\.txt: emg_lens reads trial files \.csv, \.npy"):
        read_trial(tmp_path / "t.txt")
    scipy.io.savemat(tmp_path / "m.mat", {"emg": np.ones((4, 2)), "note": "hello"})
    with pytest.raises(DataFormatError, match=r"m\.mat: 'note' is not a real matrix \(<U5"):
        read_trial(tmp_path / "m.mat", variable="note")


def test_a_modality_that_is_no_name_is_named(tmp_path):
    with pytest.raises(ArgumentError, match=r"modality must be a name such as 'emg', got 'a b'"):
        read_files(MYO, MYO_PATTERN, sample_rate=200, modality="a b")


def test_a_missing_root_is_named(tmp_path):
    with pytest.raises(DataFormatError, match="no such folder"):
        read_files(tmp_path / "nope", "{gesture}_{repetition}.csv", sample_rate=10)


# ----------------------------------------------------------------------------- as a dataset


def test_the_files_dataset_trains_and_names_its_gestures(tmp_path):
    """``--dataset files`` through the command line: the Myo set trained leaving repetition 3
    out, its checkpoint's data source read again by studies; the gesture names from the files."""
    from emg_lens.checkpoints import read_checkpoint_info
    from emg_lens.cli import main
    from emg_lens.data.datasets import montages_of
    from emg_lens.data.registry import dataset_info

    out = tmp_path / "myo"
    argv = ["train", "--dataset", "files", "--root", str(MYO), "--pattern", MYO_PATTERN]
    argv += ["--sample-rate", "200", "--train-repetitions", "1", "2", "3"]
    argv += ["--test-repetitions", "4", "--epochs", "1", "--preset", "tiny", "--quiet"]
    assert main([*argv, "--placement", "ring", "--out", str(out)]) == 0
    info = read_checkpoint_info(out / "subject_1")
    source = info["metadata"]["data_source"]
    assert source["dataset"] == "files" and source["pattern"] == [MYO_PATTERN]
    # the model's tokens are named after the files' columns, and the ring is drawn
    assert info["config"]["channel_names"] == [f"emg{k}" for k in range(1, 9)]
    (part,) = montages_of(source)["emg"].parts
    assert part.kind == "ring" and len(part.electrodes) == 8
    assert source["preprocess"]["segment"] == "full" and source["preprocess"]["emg_band"] is None
    assert dict(dataset_info("files").gestures_of(source)) == {
        1: "0",
        2: "1",
        3: "2",
        4: "3",
        5: "4",
    }


def test_the_files_dataset_names_what_it_misses(tmp_path):
    from emg_lens.data.datasets import data_source

    with pytest.raises(ArgumentError, match="needs --pattern"):
        data_source("files", root=MYO, sample_rate=200)
    with pytest.raises(ArgumentError, match="sample_rate must be a positive number"):
        data_source("files", root=MYO, pattern=MYO_PATTERN, sample_rate=-1)
    with pytest.raises(ArgumentError, match="placement must be one of"):
        data_source("files", root=MYO, pattern=MYO_PATTERN, sample_rate=200, placement="cap")
    with pytest.raises(ArgumentError, match=r"modality must be a name such as 'emg', got '2x'"):
        data_source("files", root=MYO, pattern=MYO_PATTERN, sample_rate=200, modality="2x")
    with pytest.raises(ArgumentError, match="takes no pattern, sample_rate"):
        data_source("hdsemg", root=MYO, pattern=MYO_PATTERN, sample_rate=200)


# ----------------------------------------------------------------------------- issue 47, section 3


def _trial(path: Path, n: int = 20, channels: int = 2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.ones((n, channels)))
    return path


def test_a_name_the_pattern_reads_two_ways_is_refused_with_both_readings(tmp_path):
    """``{gesture}_{repetition}`` over ``wrist_flexion_1.npy`` read gesture 'wrist',
    repetition 'flexion_1', and `train` then fitted a one-class model."""
    for name in ("wrist_flexion_1.npy", "wrist_flexion_2.npy", "fist_1.npy", "fist_2.npy"):
        _trial(tmp_path / "a" / name)
    with pytest.raises(DataFormatError) as err:
        read_files(tmp_path / "a", "{gesture}_{repetition}.npy", sample_rate=100)
    assert "gesture 'wrist', repetition 'flexion_1'" in str(err.value)
    assert "gesture 'wrist_flexion', repetition '1'" in str(err.value)
    for subject in ("S_01", "S_02"):  # two subjects merged into one named 'S'
        _trial(tmp_path / "b" / f"{subject}_fist_1.npy")
    with pytest.raises(DataFormatError, match="reads it two ways, subject 'S'"):
        read_files(tmp_path / "b", "{subject}_{gesture}_{repetition}.npy", sample_rate=100)
    with pytest.raises(ArgumentError, match=r"the fields \{gesture\} and \{repetition\} touch"):
        FilePattern.parse("{gesture}{repetition}.npy")
    # one reading: a separator the values do not contain
    _trial(tmp_path / "c" / "wrist_flexion-1.npy"), _trial(tmp_path / "c" / "fist-1.npy")
    (rec,) = read_files(tmp_path / "c", "{gesture}-{repetition}.npy", sample_rate=100)
    assert sorted(rec.meta["gesture_names"].values()) == ["fist", "wrist_flexion"]


def test_two_names_of_one_subject_number_are_refused(tmp_path):
    for subject in ("s01", "s1"):
        for g in ("a", "b"):
            _trial(tmp_path / subject / f"{g}_1.npy")
    with pytest.raises(DataFormatError, match="'01' and '1' are both subject 1"):
        read_files(tmp_path, "s{subject}/{gesture}_{repetition}.npy", sample_rate=100)


def test_links_are_followed_inside_the_root_and_refused_by_name_otherwise(tmp_path):
    """Folder links and dangling links were skipped without a word; file links out of the
    root were followed."""
    root = tmp_path / "root"
    pattern = "s{subject}/{gesture}_{repetition}.npy"
    _trial(root / "s1" / "a_1.npy"), _trial(root / "s1" / "b_1.npy")
    (root / "data").mkdir()
    np.save(root / "data" / "x.npy", np.ones((20, 2)))
    (root / "s2").mkdir()
    (root / "s2" / "a_1.npy").symlink_to(root / "data" / "x.npy")  # inside the root: read
    _trial(root / "s2" / "b_1.npy")
    recs = read_files(root, pattern, sample_rate=100, unmatched="skip")
    assert [r.subject for r in recs] == [1, 2]
    (root / "s3").symlink_to(root / "s1")  # one folder by two names: its trials twice
    with pytest.raises(DataFormatError, match=r"s3 and .*s1 are one folder .* by two names"):
        read_files(root, pattern, sample_rate=100, unmatched="skip")
    (root / "s3").unlink()
    (root / "s3").mkdir()
    (root / "s3" / "b_1.npy").symlink_to(root / "s1" / "b_1.npy")
    with pytest.raises(DataFormatError, match=r"s3/b_1\.npy and .*s1/b_1\.npy are one file"):
        read_files(root, pattern, sample_rate=100, unmatched="skip")
    (root / "s3" / "b_1.npy").unlink()
    (root / "s3" / "a_1.npy").symlink_to(_trial(tmp_path / "elsewhere" / "a_1.npy"))
    with pytest.raises(DataFormatError, match=r"s3/a_1\.npy: a link to .*outside the dataset"):
        read_files(root, pattern, sample_rate=100, unmatched="skip")
    (root / "s3" / "a_1.npy").unlink()
    (root / "s3" / "a_1.npy").symlink_to(tmp_path / "gone.npy")
    with pytest.raises(DataFormatError, match=r"s3/a_1\.npy: a link to .*which does not exist"):
        read_files(root, pattern, sample_rate=100, unmatched="skip")
    (root / "s3" / "a_1.npy").unlink()
    (root / "s4").symlink_to(tmp_path / "elsewhere")  # a folder out of the root
    with pytest.raises(DataFormatError, match=r"s4: a link to .*outside the dataset"):
        read_files(root, pattern, sample_rate=100, unmatched="skip")


def test_channels_by_samples_files_are_refused_naming_the_orientation(tmp_path):
    np.save(tmp_path / "wide.npy", np.ones((8, 400)))
    with pytest.raises(
        DataFormatError, match=r"wide\.npy: .*samples x channels.*got shape \(8, 400\).* transpose"
    ):
        read_trial(tmp_path / "wide.npy")
    scipy.io.savemat(tmp_path / "row.mat", {"emg": np.ones(400)})  # MATLAB: a 1 x 400 row
    with pytest.raises(DataFormatError, match=r"row\.mat: .*got shape \(1, 400\)"):
        read_trial(tmp_path / "row.mat")
    x, _ = read_trial(_trial(tmp_path / "tall.npy", n=400, channels=8))
    assert x.shape == (400, 8)


def test_an_npz_archive_named_npy_is_named(tmp_path):
    with open(tmp_path / "a.npy", "wb") as f:
        np.savez(f, emg=np.ones((20, 2)))
    with pytest.raises(DataFormatError, match=r"a\.npy: a NumPy \.npz archive \(of emg\)"):
        read_trial(tmp_path / "a.npy")


# ----------------------------------------------------------------------- what a CSV leaves open
# Issue 61: three readers guessed silently. A CSV's numeric first line was read as a sample
# (51 samples where the file holds 50 under a header of channel numbers), and a one-channel file
# with decimal commas as two channels. Each is read by evidence, or refused naming the option
# that decides it.


def write_lines(path: Path, lines) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_header_of_channel_numbers_above_measured_samples_is_a_header(tmp_path):
    rng = np.random.default_rng(0)
    samples = rng.standard_normal((50, 4)).round(4)
    lines = [",".join(str(v) for v in row) for row in samples]
    path = write_lines(tmp_path / "numbered.csv", ["1,2,3,4", *lines])
    x, names = read_trial(path)
    assert x.shape == (50, 4) and names is None  # unnamed: emg1..emg4 in a recording
    np.testing.assert_allclose(x, samples, rtol=1e-6)
    assert read_trial(write_lines(tmp_path / "zero.csv", ["0,1,2,3", *lines]))[0].shape == (50, 4)
    x, _ = read_trial(path, csv_format=CsvFormat(header=False))  # said to be a sample
    assert x.shape == (51, 4) and x[0].tolist() == [1, 2, 3, 4]
    # any other first line of numbers is a sample, as LibEMG's files hold
    other = write_lines(tmp_path / "other.csv", ["20,1,6,-6", *lines])
    assert read_trial(other)[0].shape == (51, 4)


def test_a_header_of_channel_numbers_above_whole_numbers_is_asked_for(tmp_path):
    counts = [f"{a},{b},{c}" for a, b, c in np.arange(30).reshape(10, 3) * 7 - 40]
    path = write_lines(tmp_path / "counts.csv", ["1,2,3", *counts])
    with pytest.raises(
        DataFormatError,
        match=r"counts\.csv: the first line \(1, 2, 3\) is the channel numbers and every line "
        r"below it whole numbers too.*header=True \(--header yes\) skips it, header=False "
        r"\(--header no\) reads it as a sample",
    ):
        read_trial(path)
    assert read_trial(path, csv_format=CsvFormat(header=True))[0].shape == (10, 3)
    assert read_trial(path, csv_format=CsvFormat(header=False))[0].shape == (11, 3)
    # through read_files, and a data source that stores the choice
    for g in ("a", "b"):
        write_lines(tmp_path / "f" / f"{g}_1.csv", ["1,2,3", *counts])
    with pytest.raises(DataFormatError, match="--header yes"):
        read_files(tmp_path / "f", "{gesture}_{repetition}.csv", sample_rate=10)
    (rec,) = read_files(tmp_path / "f", "{gesture}_{repetition}.csv", sample_rate=10, header=True)
    assert rec.meta["trials"][0]["stop"] == 10


def test_one_channel_with_decimal_commas_is_never_read_as_two(tmp_path):
    path = write_lines(tmp_path / "force.csv", ["1,5", "2,25", "-0,125", "3,0", "0,75"])
    with pytest.raises(
        DataFormatError,
        match=r"force\.csv: every line is two whole numbers separated by a comma \(the first "
        r"1,5\).*one channel written with decimal commas \(1,5 = 1\.5\) or two channels of whole "
        r"numbers.*decimal=',' \(--decimal ,\) reads one channel, delimiter=',' "
        r"\(--delimiter ,\) two",
    ):
        read_trial(path)
    x, _ = read_trial(path, csv_format=CsvFormat(decimal=","))
    assert x[:, 0].tolist() == [1.5, 2.25, -0.125, 3.0, 0.75]
    x, _ = read_trial(path, csv_format=CsvFormat(delimiter=","))  # said to be two channels
    assert x.shape == (5, 2) and x[2].tolist() == [-0.0, 125.0]
    # decimal commas between semicolons: read with decimal=',', named without it
    semi = write_lines(tmp_path / "semi.csv", ["0,5;1,25", "2;3,75", "1;2", "0,1;0,2"])
    with pytest.raises(DataFormatError, match=r"'5;1' is not a number; if the file writes "
                       r"decimal commas, pass decimal=','"):  # fmt: skip
        read_trial(semi)
    x, _ = read_trial(semi, csv_format=CsvFormat(decimal=","))
    np.testing.assert_array_equal(x, np.float32([[0.5, 1.25], [2, 3.75], [1, 2], [0.1, 0.2]]))
    # a point in a decimal-comma file (a thousands separator?) is not guessed either
    bad = write_lines(tmp_path / "points.csv", ["1.500;2", "1;2", "3;4"])
    with pytest.raises(DataFormatError, match=r"'1\.500' is not a number"):
        read_trial(bad, csv_format=CsvFormat(decimal=","))
    # one channel whose whole values have no comma: lines of one and two cells, named
    mixed = write_lines(tmp_path / "mixed.csv", ["1,5", "2", "3,25"])
    with pytest.raises(DataFormatError, match=r"line 2 has 1 cells.*pass decimal=','"):
        read_trial(mixed)
    # two channels that say so are read as two: a sign, a decimal point or a header
    for lines in (["1,-5", "2,3"], ["1.5,2", "3,4"], ["a,b", "1,5", "2,25"]):
        assert read_trial(write_lines(tmp_path / "two.csv", lines))[0].shape[1] == 2


@pytest.mark.unchecked
@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"decimal": ";"}, r"decimal must be one of \('\.', ','\), got ';'"),
        ({"delimiter": "ab"}, "delimiter must be one character between values"),
        ({"delimiter": ",", "decimal": ","}, r"but not the decimal mark ',' .*got ','"),
        ({"header": "yes"}, "CsvFormat.header must be true or false or None, got 'yes'"),
    ],
)
def test_csv_options_that_cannot_be_are_named(tmp_path, options, match):
    with pytest.raises(ArgumentError, match=match):
        read_files(tmp_path, "{gesture}_{repetition}.csv", sample_rate=10, **options)


def test_the_csv_options_reach_a_data_source_and_the_command_line(tmp_path):
    from emg_lens.cli.common import file_options
    from emg_lens.cli.main import build_parser
    from emg_lens.data.datasets import data_source, load_recording

    for g in ("a", "b"):
        write_lines(tmp_path / f"{g}_1.csv", ["1;2", "0,5;1,25", "2;3,75", "0,1;0,2"])
    argv = ["train", "--dataset", "files", "--root", str(tmp_path), "--pattern"]
    argv += ["{gesture}_{repetition}.csv", "--sample-rate", "10", "--header", "yes", "--out", "x"]
    args = build_parser().parse_args([*argv, "--delimiter", "tab", "--decimal", ","])
    assert {k: file_options(args)[k] for k in ("header", "delimiter", "decimal")} == {
        "header": True,
        "delimiter": "\t",
        "decimal": ",",
    }
    source = data_source("files", root=tmp_path, **file_options(build_parser().parse_args(
        [*argv, "--decimal", ","])))  # fmt: skip
    assert (source["header"], source["decimal"]) == (True, ",") and "delimiter" not in source
    rec = load_recording(source, 1)
    np.testing.assert_allclose(rec.signals["emg"][:3], [[0.5, 1.25], [2, 3.75], [0.1, 0.2]])
    # a source that leaves the reading to the file stores none of them (its digest unchanged)
    plain = data_source("files", root=tmp_path, pattern="{gesture}_{repetition}.csv",
                        sample_rate=10)  # fmt: skip
    assert not {"header", "delimiter", "decimal"} & set(plain)


def test_another_participants_files_change_every_subjects_keys(tmp_path):
    """Gestures, repetitions and subjects are numbered over the whole folder, so a new
    participant's files can renumber subject 1's labels: subject 1's cache key and data
    digest change with them (the cache served the old labels, and studies reused their cells),
    and stay put when nothing the numbering reads changed."""
    from emg_lens.checkpoints import source_digest
    from emg_lens.data.cache import cache_key
    from emg_lens.data.datasets import data_source

    for subject in ("alice", "bob"):
        for rep in range(1, 7):
            for gesture in ("fist", "open"):
                _trial(tmp_path / subject / f"R_{rep}_C_{gesture}.npy")
    source = data_source(
        "files", root=tmp_path, pattern="{subject}/R_{repetition}_C_{gesture}.npy", sample_rate=200
    )
    before = cache_key(source, 1), source_digest(source, 1)
    assert (cache_key(source, 1), source_digest(source, 1)) == before
    for rep in range(0, 6):  # aaron: a repetition 0 and a gesture that sorts first
        for gesture in ("adduction", "fist"):
            _trial(tmp_path / "aaron" / f"R_{rep}_C_{gesture}.npy")
    after = cache_key(source, 1), source_digest(source, 1)
    assert after[0] != before[0] and after[1] != before[1]


def _csv(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = np.random.default_rng(seed).standard_normal((400, 2))
    np.savetxt(path, rows, delimiter=",", fmt="%.5f")


@pytest.mark.slow
def test_a_model_scored_after_another_participant_renumbered_its_folder_is_warned_of(tmp_path):
    """alice and bob trained as subjects 1 and 2; aaron's files make subject 1 aaron: the
    checkpoint's recorded data digest no longer matches, and scoring it says so."""
    import warnings

    from emg_lens.checkpoints import read_checkpoint_info, warn_if_data_changed
    from emg_lens.cli import main

    root = tmp_path / "rec"
    for i, subject in enumerate(("alice", "bob")):
        for rep in range(1, 5):
            for g, gesture in enumerate(("fist", "open")):
                _csv(root / subject / f"R_{rep}_C_{gesture}.csv", 10 * i + 2 * rep + g)
    argv = ["train", "--dataset", "files", "--root", str(root), "--sample-rate", "200"]
    argv += ["--pattern", "{subject}/R_{repetition}_C_{gesture}.csv", "--epochs", "1"]
    argv += ["--train-repetitions", "1", "2", "3", "--test-repetitions", "4"]
    assert main([*argv, "--preset", "tiny", "--quiet", "--out", str(tmp_path / "m")]) == 0
    meta = read_checkpoint_info(tmp_path / "m" / "subject_1")["metadata"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_data_changed(meta, 1)  # nothing changed: silent
    for rep in range(1, 5):
        for g, gesture in enumerate(("fist", "open")):
            _csv(root / "aaron" / f"R_{rep}_C_{gesture}.csv", 100 + 2 * rep + g)
    with pytest.warns(UserWarning, match="subject 1's data is not the data its model"):
        warn_if_data_changed(meta, 1)
