"""Dataset readers and window stores: ambiguous files, real-protocol defaults, empty splits (issue
23 items 3, 6, 7, 8).

Item 3: every reader that searches a folder (tree) for a dataset's files refuses two copies of
one file, naming both (`emg_lens.data.files`). Item 8: a window longer than every recording, or
a split left without windows (NinaPro DB8's NaN glove samples, a selection without a split's
subjects), is a named error naming the dataset, the window and the longest recording. Items 6
and 7: ``emg-lens windows --out`` an existing folder; options that do not apply to the chosen
dataset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from emg_lens import cli
from emg_lens.data.formats import epn612, ninapro_db8, uci_gestures
from emg_lens.data.formats.emg2pose import Emg2PoseDataset, write_emg2pose_metadata
from emg_lens.data.formats.hdsemg import find_subjects as hdsemg_subjects
from emg_lens.data.formats.ninapro_db2 import load_ninapro_db2
from emg_lens.data.formats.ninapro_db5 import load_ninapro_db5
from emg_lens.data.formats.ninapro_db6_db7 import ninapro_db6_files, ninapro_db7_files
from emg_lens.data.synthetic.downstream import synthetic_db8, synthetic_uci
from emg_lens.errors import ArgumentError, DataFormatError

COPY = "remove or move one copy"


def _mat(path: Path) -> Path:
    """A minimal NinaPro-shaped MATLAB v5 file (finding files never reads them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {"emg": np.zeros((10, 2))}, format="5")
    return path


def _twice(*names: str):
    """Write one (empty) .mat file under each of ``names``; the trigger then finds files."""

    def write(tmp: Path) -> Path:
        for name in names:
            _mat(tmp / "data" / name)
        return tmp / "data"

    return write


def _db8_twice(tmp: Path):
    root = _twice("S1_E1_A1.mat", "A_old/S1_E1_A1.mat")(tmp)
    return ninapro_db8.find_subjects(root)


def _db5_twice(tmp: Path):
    return load_ninapro_db5(_twice("s1/S1_E1_A1.mat", "old/s1/S1_E1_A1.mat")(tmp), 1)


def _db2_two_subject_folders(tmp: Path):
    return load_ninapro_db2(_twice("DB2_s1/S1_E1_A1.mat", "s1/S1_E1_A1.mat")(tmp), 1)


def _uci_two_subject_folders(tmp: Path):
    (rec,) = synthetic_uci(1, gesture_seconds=0.2)
    uci_gestures.write_uci_gestures(rec, tmp / "uci")
    (tmp / "uci" / "01").rename(tmp / "uci" / "1")
    uci_gestures.write_uci_gestures(rec, tmp / "uci")  # 01/ again
    return uci_gestures.find_subjects(tmp / "uci")


def _uci_two_first_files(tmp: Path):
    (rec,) = synthetic_uci(1, gesture_seconds=0.2)
    first = uci_gestures.write_uci_gestures(rec, tmp / "uci")[0]
    (first.parent / "1_raw_data_copy.txt").write_bytes(first.read_bytes())
    return uci_gestures.load_uci_gestures(tmp / "uci", 1)


def _epn_two_user_files(tmp: Path):
    from emg_lens.data.synthetic.downstream import synthetic_epn612

    (rec,) = synthetic_epn612(2, per_gesture=1, trial_seconds=0.2)[:1]
    path = epn612.write_epn612(rec, tmp / "epn")
    copy = tmp / "epn" / "trainingJSON" / "user01" / "user01.json"
    copy.parent.mkdir()
    copy.write_bytes(path.read_bytes())
    return epn612.find_users(tmp / "epn")


def _emg2pose_session_listed_twice(tmp: Path):
    rows = [{"filename": "a", "user": "u1", "split": "train"}] * 2
    write_emg2pose_metadata(tmp, rows)
    return Emg2PoseDataset(tmp)


DUPLICATES = [
    ("DB8 S1_E1_A1.mat twice", _db8_twice, DataFormatError, "A_old/S1_E1_A1.mat and"),
    ("DB5 S1_E1_A1.mat twice", _db5_twice, DataFormatError, COPY),
    (
        "DB6 S1_D1_T1.mat twice",
        lambda tmp: ninapro_db6_files(_twice("S1_D1_T1.mat", "x/S1_D1_T1.mat")(tmp)),
        DataFormatError,
        COPY,
    ),
    (
        "DB7 S1_E1_A1.mat twice",
        lambda tmp: ninapro_db7_files(_twice("Subject_1/S1_E1_A1.mat", "S1_E1_A1.mat")(tmp)),
        DataFormatError,
        COPY,
    ),
    ("DB2 DB2_s1/ and s1/", _db2_two_subject_folders, DataFormatError, "two folders for"),
    (
        "HD-sEMG s1.mat and S01.mat",
        lambda tmp: hdsemg_subjects(_twice("s1.mat", "S01.mat")(tmp)),
        DataFormatError,
        COPY,
    ),
    ("UCI 01/ and 1/", _uci_two_subject_folders, DataFormatError, "two folders for"),
    ("UCI two files 1_raw_data", _uci_two_first_files, DataFormatError, "1_raw_data_copy.txt"),
    ("EPN user1/ and user01/", _epn_two_user_files, DataFormatError, COPY),
    (
        "emg2pose session listed twice",
        _emg2pose_session_listed_twice,
        DataFormatError,
        "rows 2 and 3",
    ),
]


# ----------------------------------------------------------------------------- items 6, 7, 8


def _windows(command: str):
    """``emg-lens windows`` with ``command`` (split on spaces; ``TMP`` is the test's folder)."""
    return lambda tmp: cli.run(["windows", *command.replace("TMP", str(tmp)).split()])


def _synth_then_windows(fmt: str, n_subjects: int, *options: str):
    def trigger(tmp: Path):
        cli.run(
            ["synth", "--format", fmt, "--out", str(tmp / fmt), "--n-subjects", str(n_subjects)]
        )
        argv = ["windows", "--dataset", fmt, "--root", str(tmp / fmt), "--out", str(tmp / "w.h5")]
        return cli.run([*argv, "--quiet", *options])

    return trigger


def _uci_at_200_rows_a_second(tmp: Path):
    """The UCI protocol (3 s gestures) at 200 rows a second: 600-row runs, under one window."""
    for rec in synthetic_uci(3, gesture_seconds=3.0, rows_per_second=200.0):
        uci_gestures.write_uci_gestures(rec, tmp / "uci")
    argv = ["windows", "--dataset", "uci", "--root", str(tmp / "uci"), "--out", str(tmp / "w.h5")]
    return cli.run([*argv, "--quiet"])


def _db8_training_glove_all_nan(tmp: Path):
    rec = synthetic_db8(1, seconds=1.0)
    rec.extras["glove"][rec.extras["acquisition"] == 1] = np.nan
    ninapro_db8.write_ninapro_db8(rec, tmp / "db8")
    argv = ["windows", "--dataset", "ninapro-db8", "--root", str(tmp / "db8")]
    return cli.run([*argv, "--out", str(tmp / "w.h5"), "--quiet"])


def _out_is_a_folder(tmp: Path):
    (tmp / "store.h5").mkdir()
    return cli.run(["windows", "--source", "synthetic", "--out", str(tmp / "store.h5")])


def _synth_uci(tmp: Path, seconds: str):
    return cli.run(["synth", "--format", "uci", "--out", str(tmp), "--movement-seconds", seconds])


IN = "--root TMP --out TMP/w.h5"

WINDOWS = [
    ("windows --out an existing folder", _out_is_a_folder, ArgumentError, "is a folder"),
    (
        "windows --dataset epn612 --train-repetitions",
        _windows(f"--dataset epn612 {IN} --train-repetitions 1 2"),
        ArgumentError,
        "--train-repetitions does not apply to --dataset epn612",
    ),
    (
        "windows --dataset epn612 --step",
        _windows(f"--dataset epn612 {IN} --step 10"),
        ArgumentError,
        "--step does not apply to --dataset epn612",
    ),
    (
        "windows --dataset uci --test-repetitions",
        _windows(f"--dataset uci {IN} --test-repetitions 2"),
        ArgumentError,
        "--test-repetitions does not apply",
    ),
    (
        "windows --source emg2pose --train-repetitions",
        _windows(f"--source emg2pose {IN} --train-repetitions 1"),
        ArgumentError,
        "--train-repetitions does not apply to --source emg2pose",
    ),
    (
        "windows --source ninapro-db5 --n-subjects",
        _windows(f"--source ninapro-db5 {IN} --n-subjects 3"),
        ArgumentError,
        "--n-subjects does not apply to --source ninapro-db5",
    ),
    (
        "windows --dataset uci --movement-seconds",
        _windows(f"--dataset uci {IN} --movement-seconds 3"),
        ArgumentError,
        "--movement-seconds does not apply",
    ),
    (
        "windows --source synthetic --root",
        _windows(f"--source synthetic {IN}"),
        ArgumentError,
        "--root does not apply to --source synthetic",
    ),
    (
        "windows --dataset uci --normalize",
        _windows(f"--dataset uci {IN} --normalize minmax"),
        ArgumentError,
        "--normalize does not apply",
    ),
    (
        "UCI window longer than every run",
        _uci_at_200_rows_a_second,
        DataFormatError,
        "uci: no train window: a window is 1000 samples",
    ),
    (
        "UCI selection without validation subjects",
        _synth_then_windows("uci", 1),
        DataFormatError,
        "the val split has no window",
    ),
    (
        "DB8 training glove all NaN",
        _db8_training_glove_all_nan,
        DataFormatError,
        "ninapro-db8: no train window",
    ),
    (
        "windows --window 100000 on synthetic",
        _windows("--source synthetic --out TMP/w.h5 --window 100000 --movement-seconds 0.3"),
        DataFormatError,
        "synthetic: no window: a window is 100000 samples",
    ),
    (
        "synth --format uci --movement-seconds 0",
        lambda tmp: _synth_uci(tmp, "0"),
        ArgumentError,
        "--movement-seconds",
    ),
    (
        "synth --format uci --movement-seconds -2",
        lambda tmp: _synth_uci(tmp, "-2"),
        ArgumentError,
        "--movement-seconds",
    ),
]

ROWS: list[tuple] = [*DUPLICATES, *WINDOWS]
