"""`emg-lens windows`: TinyMyo window stores from emg2pose, NinaPro DB5/DB6/DB7 and synthetic
sEMG, on small files written in the real formats; and `emg-lens pretrain --windows` reading one.
"""

import re

import numpy as np
import pytest

from emg_lens.cli import main
from emg_lens.data.formats.emg2pose import write_emg2pose_metadata, write_emg2pose_session
from emg_lens.data.windows.store import WindowStore
from tests.unit.data.ninapro_files import N, db6_vars, mat_vars, save

SHORT = ["--window", "200", "--step", "100", "--quiet"]  # 10 patches: small and quick


def _windows(*args) -> int:
    return main(["windows", *map(str, args)])


def _starts(n_samples: int, window: int, step: int) -> int:
    return len(range(0, n_samples - window + 1, step))


@pytest.fixture
def emg2pose(tmp_path):
    """Users u1 (sessions a: train, c: test) and u2 (session b: train), 3000 samples each."""
    root = tmp_path / "emg2pose"
    rng = np.random.default_rng(0)
    rows = []
    for name, user, split in [("a", "u1", "train"), ("b", "u2", "train"), ("c", "u1", "test")]:
        emg = rng.standard_normal((3000, 16)).astype(np.float32) * rng.uniform(1, 50, 16)
        write_emg2pose_session(root / f"{name}.hdf5", emg, user=user)
        rows.append({"filename": name, "user": user, "split": split})
    write_emg2pose_metadata(root, rows)
    return root


def test_emg2pose_split_and_subjects_give_min_max_unlabelled_windows(emg2pose, tmp_path):
    out = tmp_path / "pretrain.h5"
    assert _windows("--source", "emg2pose", "--root", emg2pose, "--out", out, "--quiet") == 0
    store = WindowStore(out)
    assert len(store) == 3 * _starts(3000, 1000, 500)  # 2 kHz already: no resampling
    assert (store.n_channels, store.window) == (16, 1000)
    assert store.subjects == [1, 2] and (store.labels == -1).all()
    assert store.meta["preprocess"]["normalize"] == "minmax" and store.meta["scaler"] is None
    x = np.stack([store[i][0].numpy() for i in range(len(store))])
    np.testing.assert_allclose(x.min(axis=(1, 2)), -1, atol=1e-6)  # every window to [-1, 1]
    np.testing.assert_allclose(x.max(axis=(1, 2)), 1, atol=1e-6)

    out = tmp_path / "u1_train.h5"
    args = ("--source", "emg2pose", "--root", emg2pose, "--out", out, "--split", "train")
    assert _windows(*args, "--subjects", 1, "--quiet") == 0
    store = WindowStore(out)
    assert [s["source"].rsplit("/", 1)[-1] for s in store.meta["sessions"]] == ["a.hdf5"]
    assert store.subjects == [1] and len(store) == _starts(3000, 1000, 500)


def test_db5_is_z_scored_on_the_training_repetitions(tmp_path):
    root = tmp_path / "db5"
    for k in (1, 2, 3):  # codes restart at 1 in each exercise; repetitions 1 (train), 2 (test)
        variables = mat_vars(16, (1, 2, 3), (1, 2), seed=k, short_labels=False)
        variables["emg"] = np.random.default_rng(k).standard_normal((N, 16)) * (1 + np.arange(16))
        save(root / "s1" / f"S1_E{k}_A1.mat", variables)
    out = tmp_path / "db5.h5"
    assert _windows("--source", "ninapro-db5", "--root", root, "--out", out, *SHORT) == 0
    store = WindowStore(out)
    assert store.meta["preprocess"]["normalize"] == "zscore"
    assert store.meta["scaler"] is not None and store.subjects == [1]
    # One recording (the exercises concatenated); 200 Hz -> 2 kHz: 3 N samples become 30 N.
    assert len(store.meta["sessions"]) == 1
    assert len(store) == _starts(30 * N, 200, 100)
    labelled = sorted({int(c) for c in store.labels if c > 0})
    assert labelled == [1, 2, 3, 13, 14, 15, 30, 31, 32]  # global DB5 labels
    train = WindowStore(out, repetitions=[1])
    x = np.stack([train[i][0].numpy() for i in range(len(train))]).astype(np.float64)
    # Fitted on the training windows: those are standardised per channel (pooled).
    np.testing.assert_allclose(x.mean(axis=(0, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(x.std(axis=(0, 2)), 1, atol=1e-4)

    test_only = tmp_path / "db5_test.h5"
    args = ("--source", "ninapro-db5", "--root", root, "--out", test_only, "--split", "test")
    assert _windows(*args, *SHORT) == 0
    split = WindowStore(test_only)
    assert set(split.repetition.tolist()) == {2}
    assert len(split) == int((store.repetition == 2).sum())
    assert split.meta["scaler"] == store.meta["scaler"]  # the training repetitions' z-score


def _db7():
    """A DB7 file with three of its 40 codes, in blocks long enough to centre windows on."""
    return mat_vars(12, (1, 17, 40), (1, 2))


@pytest.mark.parametrize(
    ("source", "variables", "train", "test"),
    [
        # the TinyMyo thesis's splits (BioFoundation scripts/db6.py, db7.py): DB6's 12
        # repetitions 1-8 / 9-10 (validation) / 11-12, DB7's 6 repetitions 1-4 / 5 / 6
        ("ninapro-db6", (14, (1,), range(1, 13)), set(range(1, 9)), {11, 12}),
        ("ninapro-db7", (12, (1,), range(1, 7)), {1, 2, 3, 4}, {6}),
    ],
)
def test_db6_db7_stores_split_as_the_thesis(tmp_path, source, variables, train, test):
    name = "S3_D1_T1.mat" if source == "ninapro-db6" else "S3_E1_A1.mat"
    channels, codes, reps = variables  # one gesture a repetition: a window centred on each
    save(tmp_path / "data" / name, mat_vars(channels, codes, reps, acc=3 * channels))
    found = {}
    for split in ("train", "test"):
        out = tmp_path / f"{split}.h5"
        args = ("--source", source, "--root", tmp_path / "data", "--out", out, "--split", split)
        assert _windows(*args, "--window", "100", "--step", "25", "--quiet") == 0
        found[split] = set(WindowStore(out).repetition.tolist())
    assert found["train"] and found["train"] <= train
    assert found["test"] == test  # every test repetition, none dropped


@pytest.mark.parametrize(
    ("source", "files", "channels"),
    [
        ("ninapro-db6", {"DB6_s3_a/S3_D1_T1.mat": db6_vars, "S3_D1_T2.mat": db6_vars}, 14),
        ("ninapro-db7", {"Subject_2/S2_E1_A1.mat": _db7, "S5_E1_A1.mat": _db7}, 12),
    ],
)
def test_db6_db7_pretraining_stores_keep_labels_and_pad_channels(
    tmp_path, capsys, source, files, channels
):
    root = tmp_path / "data"
    for name, variables in files.items():
        save(root / name, variables())
    out = tmp_path / "store.h5"
    assert _windows("--source", source, "--root", root, "--out", out, *SHORT) == 0
    assert "wrote" in capsys.readouterr().out
    store = WindowStore(out)
    assert store.meta["preprocess"]["normalize"] == "minmax"
    assert len(store.meta["sessions"]) == 2
    assert len(store) == 2 * _starts(N - 1, 200, 100)  # 2 kHz; labels one sample short
    assert (store.labels >= 0).all() and (store.labels > 0).any()
    x = store[0][0].numpy()  # each channel to [-1, 1], as the published pretraining does
    np.testing.assert_allclose(x[:channels].min(axis=1), -1.0, atol=1e-6)
    np.testing.assert_allclose(x[:channels].max(axis=1), 1.0, atol=1e-6)
    assert (x[channels:] == -1).all()  # padded to 16 channels with zeros, which become -1

    first = min(int(name.split("S")[-1].split("_")[0]) for name in files)
    out = tmp_path / "one.h5"
    args = ("--source", source, "--root", root, "--out", out, "--subjects", first)
    assert _windows(*args, *SHORT) == 0
    assert WindowStore(out).subjects == [first]


@pytest.mark.slow
def test_synthetic_store_feeds_pretrain(tmp_path, capsys):
    out = tmp_path / "synthetic.h5"
    options = ["--n-subjects", "1", "--movement-seconds", "0.5", *SHORT]
    assert _windows("--source", "synthetic", "--out", out, *options) == 0
    store = WindowStore(out)
    assert store.subjects == [1] and store.meta["preprocess"]["normalize"] == "zscore"
    assert set(store.labels.tolist()) == {0, 1, 2, 3, 4}  # rest and 4 sEMG gestures
    pretrained = tmp_path / "pretrained"
    command = ["pretrain", "--windows", str(out), "--out", str(pretrained), "--epochs", "1"]
    assert main([*command, "--warmup-epochs", "0", "--quiet"]) == 0
    assert f"on {int(0.9 * len(store) + 0.5)} windows [16 x 200]" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "ninapro-db5"], "needs root"),
        (
            ["--source", "synthetic", "--split", "val"],
            r"split of synthetic's windows must be one of \['train', 'test'\], got 'val'",
        ),
        (["--source", "synthetic", "--subjects", "7"], r"subjects \[7\].*available: \[1, 2\]"),
        (["--source", "emg2pose", "--root", "ROOT", "--normalize", "zscore"], "use normalize="),
        (["--source", "emg2pose", "--root", "ROOT", "--split", "dev"], "unknown emg2pose split"),
        (["--source", "ninapro-db7", "--root", "ROOT"], "no subjects found"),
        (["--source", "synthetic", "--test-repetitions", "1"], "share none"),
    ],
)
def test_bad_requests_name_the_value_and_write_nothing(emg2pose, tmp_path, capsys, args, message):
    out = tmp_path / "never.h5"
    args = [str(emg2pose) if a == "ROOT" else a for a in args]
    if "synthetic" in args:
        args += ["--movement-seconds", "0.3"]
    assert _windows(*args, "--out", out, *SHORT) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()


# ----------------------------------------------------------------------------- issue 23


def test_an_option_that_does_not_apply_is_refused_naming_those_that_do(tmp_path, capsys):
    out = tmp_path / "never.h5"
    args = ("--dataset", "epn612", "--root", tmp_path, "--out", out, "--train-repetitions", 1, 2)
    assert _windows(*args) == 2
    err = capsys.readouterr().err
    assert "--train-repetitions does not apply to --dataset epn612" in err
    applies = err.split("its options are")[-1]
    assert "--window" in applies and "--step" not in applies and "--split" in applies
    assert not out.exists()


def test_out_an_existing_folder_is_refused_and_left_alone(tmp_path, capsys):
    (tmp_path / "store.h5").mkdir()
    (tmp_path / "store.h5" / "kept.txt").write_text("mine")
    assert _windows("--source", "synthetic", "--out", tmp_path / "store.h5", *SHORT) == 2
    assert f"--out {tmp_path / 'store.h5'} is a folder" in capsys.readouterr().err
    assert (tmp_path / "store.h5" / "kept.txt").read_text() == "mine"


def test_db5_default_windows_fit_its_protocol(tmp_path):
    """DB5 (Myo, 200 Hz): 5 s movements and 3 s rests; resampled to 2 kHz, the default window
    (1000 samples, 0.5 s) fits each movement many times."""
    n = 8 * 200 * 2 + 3 * 200  # rest, movement, rest, movement, rest: 3 s rests, 5 s movements
    stimulus = np.zeros(n)
    stimulus[600:1600], stimulus[2200:3200] = 1, 2
    repetition = (stimulus > 0) * 1.0
    variables = {"emg": np.random.default_rng(0).standard_normal((n, 16)),
                 "restimulus": stimulus[:, None], "rerepetition": repetition[:, None]}  # fmt: skip
    for k in (1, 2, 3):
        save(tmp_path / "db5" / "s1" / f"S1_E{k}_A1.mat", variables)
    out = tmp_path / "db5.h5"
    assert _windows("--source", "ninapro-db5", "--root", tmp_path / "db5", "--out", out) == 0
    store = WindowStore(out)
    assert (store.window, store.meta["preprocess"]["step"]) == (1000, 500)
    assert len(store) == _starts(3 * 10 * n, 1000, 500)  # one recording: the exercises joined
    per_movement = np.bincount(store.labels)[[1, 13, 30]]
    assert (per_movement >= _starts(10 * 1000, 1000, 500) - 1).all()  # ~19 windows a movement
