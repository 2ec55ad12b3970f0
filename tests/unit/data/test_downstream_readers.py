"""TinyMyo's downstream datasets (EPN-612, UCI EMG Data for Gestures, NinaPro DB8): the readers
read back exactly what the writers wrote, every bad file is a `DataFormatError` naming it, and
the thesis's windows split and label as the preparation scripts did."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from emg_lens.cli import run
from emg_lens.data.formats import epn612, ninapro_db8, uci_gestures
from emg_lens.data.registry import dataset_info
from emg_lens.data.synthetic.downstream import synthetic_db8, synthetic_epn612, synthetic_uci
from emg_lens.data.window_build import build_window_store
from emg_lens.data.windows.downstream import SPLIT_CODES, DownstreamPreprocess, label_runs
from emg_lens.data.windows.store import WindowStore
from emg_lens.errors import ArgumentError, DataFormatError

# ----------------------------------------------------------------------------- writers


def _epn(root: Path, **changes) -> Path:
    """A training user's file (subject 1), edited by ``changes`` (sample path -> value)."""
    (rec,) = synthetic_epn612(2, per_gesture=1, trial_seconds=0.3)[:1]
    path = epn612.write_epn612(rec, root)
    data = json.loads(path.read_text())
    for edit, value in changes.items():
        *keys, last = edit.split("/")
        target = data
        for k in keys:
            target = target[k]
        if value is None:
            del target[last]
        else:
            target[last] = value
    path.write_text(json.dumps(data))
    return path


def _uci(root: Path, edit=None) -> Path:
    """Subject 1's first file, its lines passed through ``edit``."""
    (rec,) = synthetic_uci(1, gesture_seconds=0.5)
    path = uci_gestures.write_uci_gestures(rec, root)[0]
    if edit is not None:
        path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")
    return path


def _db8(root: Path, **variables) -> Path:
    """Subject 1's A1 file with ``variables`` replaced (None: removed)."""
    path = ninapro_db8.write_ninapro_db8(synthetic_db8(1, seconds=0.2), root)[0]
    data = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    for name, value in variables.items():
        if value is None:
            del data[name]
        else:
            data[name] = value(data[name]) if callable(value) else value
    scipy.io.savemat(path, data, format="5")
    return path


def _truncate(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _nan_emg(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x[3, 2] = np.nan
    return x


# ----------------------------------------------------------------------------- bad inputs

# (id, write the bad file under root -> the path the message must name, read root, substring)
BAD_INPUTS = [
    ("epn-truncated", lambda r: _truncate(_epn(r)), "epn", "not valid JSON"),
    (
        "epn-missing-part",
        lambda r: _epn(r, trainingSamples=None),
        "epn",
        "missing 'trainingSamples'",
    ),
    (
        "epn-missing-emg",
        lambda r: _epn(r, **{"trainingSamples/idx_1/emg": None}),
        "epn",
        "no 'emg'",
    ),
    (
        "epn-wrong-channels",
        lambda r: _epn(r, **{"trainingSamples/idx_1/emg/ch8": None}),
        "epn",
        "wrong channels: expected 8",
    ),
    (
        "epn-non-numbers",
        lambda r: _epn(r, **{"trainingSamples/idx_2/emg/ch3": ["a"] * 60}),
        "epn",
        "'emg' holds non-numbers",
    ),
    (
        "epn-nan",
        lambda r: _epn(r, **{"trainingSamples/idx_2/emg/ch3": [float("nan")] * 60}),
        "epn",
        "NaN",
    ),
    (
        "epn-ragged",
        lambda r: _epn(r, **{"testingSamples/idx_1/emg/ch1": [1, 2]}),
        "epn",
        "one length",
    ),
    (
        "epn-unknown-gesture",
        lambda r: _epn(r, **{"testingSamples/idx_3/gestureName": "wave"}),
        "epn",
        "gestureName must be one of ('noGesture', 'waveIn', 'waveOut', 'pinch', 'open', "
        "'fist'), got 'wave'",
    ),
    (
        "uci-truncated",
        lambda r: _uci(r, lambda lines: [*lines[:-1], lines[-1][:9]]),
        "uci",
        "not a table",
    ),
    (
        "uci-missing-column",
        lambda r: _uci(r, lambda lines: [" ".join(line.split()[:-1]) for line in lines]),
        "uci",
        "header must be",
    ),
    (
        "uci-wrong-channels",
        lambda r: _uci(
            r, lambda lines: [lines[0], *(" ".join(line.split()[1:]) for line in lines[1:])]
        ),
        "uci",
        "expected 10 columns (8 channels), got 9",
    ),
    (
        "uci-nan",
        lambda r: _uci(
            r, lambda lines: [lines[0], " ".join(["1", "nan", *lines[1].split()[2:]]), *lines[2:]]
        ),
        "uci",
        "NaN",
    ),
    (
        "uci-unknown-class",
        lambda r: _uci(r, lambda lines: [*lines[:-1], " ".join([*lines[-1].split()[:-1], "9"])]),
        "uci",
        "unknown class [9.0]",
    ),
    ("db8-truncated", lambda r: _truncate(_db8(r)), "db8", "cannot be read as a MATLAB v5"),
    (
        "db8-missing-glove",
        lambda r: _db8(r, glove=None),
        "db8",
        "missing required variable 'glove'",
    ),
    (
        "db8-wrong-channels",
        lambda r: _db8(r, emg=lambda x: x[:, :12]),
        "db8",
        "wrong channel count: expected 16",
    ),
    ("db8-nan", lambda r: _db8(r, emg=_nan_emg), "db8", "NaN"),
    (
        "db8-no-acquisition",
        lambda r: (_db8(r).with_name("S1_E1_A2.mat").unlink(), r)[1],
        "db8-a2",
        "no NinaPro DB8 file S1_E1_A2.mat",
    ),
]

READERS = {
    "epn": lambda root: epn612.load_epn612(root, 1),
    "uci": lambda root: uci_gestures.load_uci_gestures(root, 1),
    "db8": lambda root: ninapro_db8.load_ninapro_db8(root, 1, acquisitions=(1,)),
    "db8-a2": lambda root: ninapro_db8.load_ninapro_db8(root, 1, acquisitions=(2,)),
}


@pytest.mark.parametrize(
    ("write", "reader", "match"), [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS]
)
def test_a_bad_file_is_a_data_format_error_naming_it(tmp_path, write, reader, match):
    path = write(tmp_path)
    with pytest.raises(DataFormatError) as info:
        READERS[reader](tmp_path)
    assert match in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("find", "match"),
    [
        (epn612.find_users, "no EPN-612 user files"),
        (uci_gestures.find_subjects, "no UCI subject folder"),
        (ninapro_db8.find_subjects, "no NinaPro DB8 files"),
    ],
)
def test_an_empty_folder_is_a_data_format_error_naming_it(tmp_path, find, match):
    with pytest.raises(DataFormatError, match=match) as info:
        find(tmp_path)
    assert str(tmp_path) in str(info.value)


# ----------------------------------------------------------------------------- round trips


def test_epn612_reads_back_what_was_written_and_counts_unlabelled_samples(tmp_path):
    recordings = synthetic_epn612(3, per_gesture=2, testing_per_gesture=3, trial_seconds=0.3)
    for rec in recordings:
        epn612.write_epn612(rec, tmp_path, unlabelled=4 * (rec.subject > 1000))
    assert epn612.find_users(tmp_path) == [1, 2, 1001]
    for rec in recordings:
        back = epn612.load_epn612(tmp_path, rec.subject)
        assert np.array_equal(back.signals["emg"], rec.signals["emg"])
        assert np.array_equal(back.stimulus, rec.stimulus)
        assert np.array_equal(back.repetition, rec.repetition)
        assert np.array_equal(back.extras["part"], rec.extras["part"])
        assert int(back.extras["skipped_unlabelled"]) == 4 * (rec.subject > 1000)


def test_uci_reads_back_what_was_written(tmp_path):
    for rec in synthetic_uci(2, gesture_seconds=0.3):
        uci_gestures.write_uci_gestures(rec, tmp_path)
        back = uci_gestures.load_uci_gestures(tmp_path, rec.subject)
        for name in ("stimulus", "repetition"):
            assert np.array_equal(getattr(back, name), getattr(rec, name)), name
        assert np.array_equal(back.signals["emg"], rec.signals["emg"])
        assert np.array_equal(back.extras["time_ms"], rec.extras["time_ms"])


def test_db8_reads_back_what_was_written_nan_glove_included(tmp_path):
    rec = synthetic_db8(3, seconds=0.5)
    ninapro_db8.write_ninapro_db8(rec, tmp_path / "nested")
    back = ninapro_db8.load_ninapro_db8(tmp_path, 3)
    assert np.array_equal(back.signals["emg"], rec.signals["emg"])
    assert np.array_equal(back.extras["glove"], rec.extras["glove"], equal_nan=True)
    assert np.isnan(back.extras["glove"]).any()
    assert np.array_equal(back.extras["acquisition"], rec.extras["acquisition"])


# ----------------------------------------------------------------------------- windows


def test_epn612_windows_follow_the_user_split():
    spec = DownstreamPreprocess("epn612", 200.0, 8, window=80)
    training, _, testing = synthetic_epn612(
        3, per_gesture=2, testing_per_gesture=3, trial_seconds=0.5
    )
    batch = epn612.epn612_windows(training, spec)
    assert batch.x.shape == (24, 8, 80)  # 2 per gesture in each part, cropped to 80 samples
    assert batch.repetition.tolist() == [1] * 12 + [2] * 12  # trainingSamples / testingSamples
    assert batch.labels.tolist() == list(range(6)) * 4
    batch = epn612.epn612_windows(testing, spec, calibration=2)
    codes = {g: batch.repetition[batch.labels == g].tolist() for g in range(6)}
    assert all(c == [1, 1, 3] for c in codes.values())  # the first 2 of each gesture train
    padded = epn612.epn612_windows(testing, DownstreamPreprocess("epn612", 200.0, 8, window=150))
    assert np.all(padded.x[:, :, 100:] == 0) and np.allclose(
        padded.x[:, :, :100].std(-1, ddof=1), 1
    )


def test_uci_windows_drop_class_0_stay_within_runs_and_split_by_subject():
    rec = synthetic_uci(2, gesture_seconds=0.5, rows_per_second=200.0)[1]  # 25: validation
    spec = DownstreamPreprocess("uci", 200.0, 8, window=40, step=20)
    batch = uci_gestures.uci_windows(rec, spec)
    assert set(batch.repetition.tolist()) == {SPLIT_CODES["val"]}
    # 100 samples per gesture run: 4 windows each, classes 1-7 in 2 files, labels class - 1
    assert sorted(batch.labels.tolist()) == sorted(list(range(7)) * 8)
    assert not len(uci_gestures.uci_windows(rec, DownstreamPreprocess("uci", 200.0, 8, window=120)))
    with pytest.raises(ArgumentError, match="UCI subject 25 is in none of the splits"):
        uci_gestures.uci_windows(rec, spec, splits={"train": (1,), "test": (2,)})


def test_db8_windows_drop_nan_glove_samples_and_map_the_glove_to_5_doa():
    rec = synthetic_db8(1, seconds=0.2)
    glove, acquisition = rec.extras["glove"], rec.extras["acquisition"]
    spec = DownstreamPreprocess("ninapro-db8", 2000.0, 16, window=100, step=100)
    batch = ninapro_db8.db8_windows(rec, spec)
    finite = np.flatnonzero((acquisition == 1) & np.isfinite(glove).all(axis=1))
    assert len(finite) < np.sum(acquisition == 1)  # the synthetic glove has NaN rows
    expected = glove[finite[:100]] @ ninapro_db8.DOA_MATRIX.T
    assert np.allclose(batch.targets[0], expected, atol=1e-4)
    assert batch.targets.shape[1:] == (100, 5) and set(batch.labels.tolist()) == {-1}
    assert batch.repetition.tolist() == [1] * 3 + [2] * 3 + [3] * 3  # A1, A2, A3
    assert ninapro_db8.DOA_MATRIX.shape == (5, 18) and ninapro_db8.DOA_MATRIX[1, 2] == 1.0


def test_db8_store_holds_targets_and_the_acquisition_split(tmp_path):
    ninapro_db8.write_ninapro_db8(synthetic_db8(1, seconds=0.2), tmp_path / "db8")
    spec = DownstreamPreprocess("ninapro-db8", 2000.0, 16, window=100, step=100)
    path = build_window_store(
        "ninapro-db8", tmp_path / "w.h5", root=tmp_path / "db8", preprocess=spec, progress=False
    )
    store = WindowStore(path)
    assert store.regression and store.meta["splits"] == {"train": [1], "val": [2], "test": [3]}
    assert store.meta["target_names"] == list(ninapro_db8.DOA_NAMES)
    x, y = store[0]
    assert tuple(x.shape) == (16, 100) and tuple(y.shape) == (100, 5)
    test = build_window_store(
        "ninapro-db8",
        tmp_path / "t.h5",
        root=tmp_path / "db8",
        preprocess=spec,
        split="test",
        progress=False,
    )
    assert set(WindowStore(test).repetition.tolist()) == {3}
    with pytest.raises(ArgumentError, match="z-scored per recording"):
        build_window_store("ninapro-db8", tmp_path / "n.h5", root=tmp_path, normalize="minmax")
    with pytest.raises(ArgumentError, match=r"ninapro-db8 windows take options .*got \['bogus'\]"):
        build_window_store("ninapro-db8", tmp_path / "o.h5", root=tmp_path / "db8",
                           downstream={"bogus": 1}, progress=False)  # fmt: skip


def test_a_stretch_too_short_to_filter_is_named():
    from emg_lens.data.windows.downstream import thesis_preprocess

    spec = DownstreamPreprocess("epn612", 200.0, 2)
    with pytest.raises(DataFormatError, match="trial 3: 20 samples, too short to filter: 28"):
        thesis_preprocess(np.zeros((20, 2)), spec, "trial 3")


def test_synth_formats_write_what_windows_reads(tmp_path):
    for fmt in ("epn612", "uci", "ninapro-db8"):
        run(
            [
                "synth",
                "--format",
                fmt,
                "--out",
                str(tmp_path / fmt),
                "--n-subjects",
                "2",
                "--movement-seconds",
                "0.5",
            ]
        )
        info = dataset_info(fmt)
        source = {"dataset": fmt, "root": str(tmp_path / fmt)}
        assert len(info.subjects(source)) == 2
        for subject in info.subjects(source):
            assert info.read(source, subject).modalities == info.montage(source)
    with pytest.raises(ArgumentError, match="--n-gestures: not an option of --format uci"):
        run(["synth", "--format", "uci", "--out", str(tmp_path / "x"), "--n-gestures", "3"])


# ----------------------------------------------------------------------------- issue 23


def test_a_second_copy_of_a_db8_file_is_refused_naming_both(tmp_path):
    rec = synthetic_db8(1, seconds=0.2)
    (kept, *_) = ninapro_db8.write_ninapro_db8(rec, tmp_path)
    old = tmp_path / "A_old" / kept.name
    old.parent.mkdir()
    old.write_bytes(kept.read_bytes())
    with pytest.raises(DataFormatError, match="remove or move one copy") as info:
        ninapro_db8.load_ninapro_db8(tmp_path, 1)
    assert str(kept) in str(info.value) and str(old) in str(info.value)
    old.unlink()
    assert ninapro_db8.load_ninapro_db8(tmp_path, 1).source.startswith(str(kept))


def _uci_runs(rec) -> list[tuple[int, int]]:
    """(class, rows) of each run of one class in each file of a UCI recording."""
    return [
        (label, stop - start)
        for k in np.unique(rec.repetition)
        for label, start, stop in label_runs(rec.stimulus[rec.repetition == k])
    ]


def test_synthetic_downstream_data_has_the_real_protocols_durations():
    """EPN-612: every sample a 5 s recording at 200 Hz; UCI: every gesture held 3 s after a 3 s
    pause, the files logging a row per millisecond (their ``time`` column, in ms)."""
    (training, testing) = synthetic_epn612(2)
    for rec in (training, testing):
        lengths = np.bincount(rec.repetition)[1:]
        assert set(lengths.tolist()) == {5 * 200}
    (uci,) = synthetic_uci(1)
    assert set(np.diff(uci.extras["time_ms"][uci.repetition == 1]).tolist()) == {1.0}
    assert {rows for _, rows in _uci_runs(uci)} == {3 * 1000}
    assert [label for label, _ in _uci_runs(uci)][:4] == [0, 1, 0, 2]


DOWNSTREAM_SMALLEST = [("epn612", 2), ("uci", 3), ("ninapro-db8", 1)]
"""Each format's fewest ``synth --n-subjects`` whose files hold train, val and test data."""


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "n_subjects"), DOWNSTREAM_SMALLEST)
def test_synth_then_windows_with_the_defaults_works_for_every_downstream_format(
    tmp_path, fmt, n_subjects
):
    """The README's sequence, ``synth --format F --out D`` then ``windows --dataset F --root D
    --out S.h5``, with the defaults, at its smallest size."""
    root, out = tmp_path / fmt, tmp_path / "S.h5"
    run(["synth", "--format", fmt, "--out", str(root), "--n-subjects", str(n_subjects)])
    run(["windows", "--dataset", fmt, "--root", str(root), "--out", str(out), "--quiet"])
    store = WindowStore(out)
    assert store.window == dataset_info(fmt).downstream.window == 1000
    assert sorted(set(store.repetition.tolist())) == [1, 2, 3]  # train, val and test windows


def test_the_downstream_defaults_fit_each_datasets_real_protocol():
    """EPN: each 5 s sample is one whole window; UCI: a 3 s gesture (3000 rows) gives 5 windows
    of 1000 rows every 500; DB8: windows of 0.5 s at 2 kHz over each acquisition."""
    (training, _) = synthetic_epn612(2, per_gesture=1)
    spec = dataset_info("epn612").downstream.spec("epn612")
    batch = epn612.epn612_windows(training, spec)
    assert batch.x.shape == (12, 8, 1000) and (batch.x[:, :, -1] != 0).all()  # not padded
    (rec,) = synthetic_uci(1)
    batch = uci_gestures.uci_windows(rec, dataset_info("uci").downstream.spec("uci"))
    assert len(batch) == 2 * 7 * 5  # 2 files, 7 classes, 5 windows in each 3000-row run
    rec = synthetic_db8(1, seconds=2.0)
    batch = ninapro_db8.db8_windows(rec, dataset_info("ninapro-db8").downstream.spec("ninapro-db8"))
    assert batch.x.shape[1:] == (16, 1000) and set(batch.repetition.tolist()) == {1, 2, 3}


def test_db8_nan_glove_samples_are_counted_per_file_and_printed(tmp_path, capsys):
    rec = synthetic_db8(1, seconds=1.0)
    glove, acquisition = rec.extras["glove"], rec.extras["acquisition"]
    glove[acquisition == 2] = np.nan
    glove[np.flatnonzero(acquisition == 2)[:500]] = 10.0  # A2: 500 of 2000 samples left
    ninapro_db8.write_ninapro_db8(rec, tmp_path / "db8")
    nan = {k: int(np.isnan(glove[acquisition == k]).any(axis=1).sum()) for k in (1, 2, 3)}
    command = ["windows", "--dataset", "ninapro-db8", "--root", str(tmp_path / "db8")]
    command += ["--out", str(tmp_path / "w.h5"), "--quiet"]
    lost = r"S1_E1_A2.mat: 1500 of 2000 samples .* no window"
    with (
        pytest.warns(UserWarning, match=lost),
        pytest.raises(DataFormatError, match="ninapro-db8: no val window") as info,
    ):
        run(command)
    assert "the longest acquisition (NaN glove samples dropped) is 500 samples" in str(info.value)
    assert not (tmp_path / "w.h5").exists()
    run([*command, "--window", "500"])
    printed = capsys.readouterr().out
    for k in (1, 2, 3):
        assert f"S1_E1_A{k}.mat: {nan[k]} of 2000 samples" in printed
    (session,) = WindowStore(tmp_path / "w.h5").meta["sessions"]
    assert [n for n, _ in session["nan_glove"].values()] == [nan[1], nan[2], nan[3]]
