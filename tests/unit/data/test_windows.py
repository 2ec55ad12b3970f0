"""TinyMyo's windowing pipeline and the HDF5 window store: filter responses, resampling,
window counts, normalisation, and the store's round trip, laziness and atomic writes."""

import pickle
import re

import h5py
import numpy as np
import pytest
import torch

from emg_lens.data.preprocess import PreprocessSpec, Scaler, filter_signals
from emg_lens.data.recording import Recording
from emg_lens.data.windows.pipeline import (
    TinyMyoPreprocess,
    WindowBatch,
    effective_band,
    fit_scaler,
    resample,
    tinymyo_windows,
)
from emg_lens.data.windows.store import STORE_FORMAT, WindowStore, write_window_store
from emg_lens.errors import ArgumentError, ConfigError, DataFormatError, IndexOutOfRangeError

FS = 2000.0
RAW = TinyMyoPreprocess(normalize="zscore")  # with IDENTITY: the windows before normalisation
IDENTITY = Scaler(np.zeros(16), np.ones(16))


def _recording(x, fs=FS, subject=1, stimulus=None, repetition=None, source="<memory>"):
    x = np.asarray(x, dtype=np.float32)
    x = x[:, None] if x.ndim == 1 else x
    n = len(x)
    zeros = np.zeros(n, np.int64)
    return Recording(
        subject,
        {"emg": x},
        fs,
        zeros if stimulus is None else stimulus,
        zeros.copy() if repetition is None else repetition,
        source=source,
    )


def _noise(n, channels, seed=0, fs=FS, **kwargs):
    rng = np.random.default_rng(seed)
    return _recording(rng.standard_normal((n, channels)), fs=fs, **kwargs)


# --- filters ---------------------------------------------------------------------------------


def _gain_db(freq, fs=FS, seconds=4.0):
    """RMS gain of the pipeline (before normalisation) on a sine, away from the edges."""
    t = np.arange(int(seconds * fs)) / fs
    batch = tinymyo_windows(_recording(np.sin(2 * np.pi * freq * t), fs), RAW, scaler=IDENTITY)
    y = batch.x[2:-2, 0]  # whole windows in the middle: no filter edge effects
    rms_out = np.sqrt((y**2).mean())
    return 20 * np.log10(rms_out / np.sqrt(0.5))


@pytest.mark.parametrize("freq", [5.0, 900.0])
def test_band_pass_attenuates_outside_20_to_450_hz(freq):
    assert _gain_db(freq) <= -20.0


def test_notch_removes_50_hz():
    assert _gain_db(50.0) <= -20.0


@pytest.mark.parametrize("freq", [80.0, 150.0, 300.0])
def test_pass_band_is_kept(freq):
    assert abs(_gain_db(freq)) < 1.0


def test_filters_are_the_shared_butterworth_and_notch():
    """The pipeline's filter is preprocess.filter_signals with the 20-450 Hz band and notch."""
    rec = _noise(4000, 3, seed=1)
    expected = filter_signals(
        rec.signals, FS, PreprocessSpec(emg_band=(20.0, 450.0), notch=50.0, rectify=False)
    )["emg"]
    batch = tinymyo_windows(rec, RAW, scaler=IDENTITY)
    np.testing.assert_allclose(batch.x[1, :3], expected[500:1500].T, rtol=1e-5, atol=1e-6)


def test_cutoffs_at_or_above_nyquist():
    # 200 Hz data (NinaPro DB5): 450 Hz is above Nyquist; the band is lowered to 0.45 fs
    assert effective_band(200.0, TinyMyoPreprocess()) == (20.0, 90.0)
    assert effective_band(2048.0, TinyMyoPreprocess()) == (20.0, 450.0)
    assert effective_band(200.0, TinyMyoPreprocess(band=None)) is None
    strict = TinyMyoPreprocess(clip_band=False)
    with pytest.raises(ConfigError, match=r"450 Hz is at/above the Nyquist frequency 100 Hz.*90"):
        effective_band(200.0, strict)
    with pytest.raises(ConfigError, match="at/above the Nyquist"):
        tinymyo_windows(_noise(400, 2, fs=200.0), strict)
    with pytest.raises(ConfigError, match="lower cut-off 20 Hz is not below the upper cut-off 18"):
        effective_band(40.0, TinyMyoPreprocess())
    with pytest.raises(ConfigError, match=r"notch 50\.0 Hz must be below Nyquist 50"):
        tinymyo_windows(_noise(200, 2, fs=100.0), TinyMyoPreprocess(band=None))


def test_db5_rate_recording_is_filtered_at_its_rate_then_resampled():
    rec = _noise(400, 16, fs=200.0)
    batch = tinymyo_windows(rec, RAW, scaler=IDENTITY)
    assert batch.info == {"sample_rate": 200.0, "band": (20.0, 90.0), "channels": 16}
    spec = PreprocessSpec(emg_band=(20.0, 90.0), notch=50.0, rectify=False)
    expected = resample(filter_signals(rec.signals, 200.0, spec)["emg"], 200.0, FS)
    np.testing.assert_allclose(batch.x[2], expected[1000:2000].T, rtol=1e-5, atol=1e-6)


# --- resampling ------------------------------------------------------------------------------


@pytest.mark.parametrize(("fs_from", "freq"), [(200.0, 37.0), (2048.0, 123.0), (1000.0, 61.0)])
def test_resampling_keeps_a_sines_frequency(fs_from, freq):
    t = np.arange(int(2 * fs_from)) / fs_from
    y = resample(np.sin(2 * np.pi * freq * t)[:, None], fs_from, FS)[:, 0]
    assert len(y) == int(2 * FS)
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    peak = np.fft.rfftfreq(len(y), 1 / FS)[spectrum.argmax()]
    assert abs(peak - freq) <= 0.5  # bins are 0.5 Hz wide
    # and its amplitude, away from the edges
    assert abs(np.abs(y[len(y) // 4 : -len(y) // 4]).max() - 1.0) < 0.02


def test_resample_refuses_irrational_ratios():
    assert resample(x := np.ones((10, 2)), FS, FS) is x
    with pytest.raises(ArgumentError, match=r"cannot resample 1999\.99 Hz to 2000 Hz"):
        resample(np.ones((10, 1)), 1999.99, FS)


# --- windows ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "fs", "expected"),
    [
        (999, FS, 0),
        (1000, FS, 1),
        (1499, FS, 1),
        (1500, FS, 2),
        (10_000, FS, 19),  # (10000 - 1000) // 500 + 1
        (100, 200.0, 1),  # 1000 samples at 2 kHz
        (250, 200.0, 4),  # 2500 samples at 2 kHz
    ],
)
def test_window_counts_with_50_percent_overlap(n, fs, expected):
    batch = tinymyo_windows(_noise(n, 4, fs=fs))
    assert batch.x.shape == (expected, 16, 1000)
    assert len(batch.labels) == len(batch.repetition) == expected


def test_windows_overlap_by_half():
    batch = tinymyo_windows(_noise(3000, 2), RAW, scaler=IDENTITY)
    np.testing.assert_array_equal(batch.x[0, :, 500:], batch.x[1, :, :500])
    np.testing.assert_array_equal(batch.x[1, :, 500:], batch.x[2, :, :500])


def test_labels_and_repetitions_come_from_the_window_centre():
    n = 4000
    stimulus = np.repeat([0, 7, 0, 9], n // 4)  # changes at 1000, 2000, 3000
    repetition = np.repeat([0, 1, 0, 2], n // 4)
    rec = _noise(n, 2, stimulus=stimulus, repetition=repetition)
    batch = tinymyo_windows(rec)
    centres = np.arange(7) * 500 + 500
    np.testing.assert_array_equal(batch.labels, stimulus[centres])
    np.testing.assert_array_equal(batch.repetition, repetition[centres])
    assert batch.labels.tolist() == [0, 7, 7, 0, 0, 9, 9]
    assert tinymyo_windows(rec, labeled=False).labels.tolist() == [-1] * 7
    # at 200 Hz the centre is found back on the source clock
    slow = _noise(400, 2, fs=200.0, stimulus=np.repeat([0, 3], 200))
    assert tinymyo_windows(slow).labels.tolist() == [0, 0, 0, 3, 3, 3, 3]


def test_minmax_per_channel_and_window_as_the_published_pretraining():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5000, 5)) * np.array([1, 2, 3, 4, 5]) + 3.0
    batch = tinymyo_windows(_recording(x))
    # BioFoundation's MinMaxNormalization (util/train_utils.py), on the padded windows as its
    # pretraining task applies it to every batch: per channel, over time, eps 1e-8
    raw = tinymyo_windows(_recording(x), RAW, scaler=IDENTITY)
    window = torch.from_numpy(raw.x)
    maxv, minv = window.amax(dim=-1, keepdim=True), window.amin(dim=-1, keepdim=True)
    published = ((window - minv) / (maxv - minv + 1e-8) - 0.5) * 2
    np.testing.assert_allclose(batch.x, published.numpy(), atol=1e-6)
    real = batch.x[:, :5]  # every channel spans [-1, 1]: their relative scale is not kept
    np.testing.assert_allclose(real.min(axis=2), -1.0, atol=1e-6)
    np.testing.assert_allclose(real.max(axis=2), 1.0, atol=1e-6)
    assert (batch.x[:, 5:] == -1).all()  # the zero padding, constant
    flat = tinymyo_windows(_recording(np.zeros((1000, 3))))
    assert flat.x.shape == (1, 16, 1000) and (flat.x == -1).all()


def test_zscore_scaler_is_fitted_on_the_training_part_only():
    n = 8000
    repetition = np.repeat([1, 2], n // 2)
    x = np.random.default_rng(3).standard_normal((n, 3))
    x[n // 2 :] *= 10.0  # repetition 2 ("test") is much louder
    rec = _recording(x, repetition=repetition)
    train_only = fit_scaler([rec], RAW, repetitions=[1])
    everything = fit_scaler([rec], RAW)
    assert train_only.std[0] < 2.0 < everything.std[0]
    # the same as Scaler.fit on all the training windows at once, over several recordings
    second = _noise(5000, 3, seed=4, repetition=np.ones(5000, np.int64))
    streamed = fit_scaler([rec, second], RAW, repetitions=[1])
    raw = [tinymyo_windows(r, RAW, scaler=IDENTITY) for r in (rec, second)]
    stacked = np.concatenate([b.x[b.repetition == 1] for b in raw])
    direct = Scaler.fit(stacked)
    np.testing.assert_allclose(streamed.mean, direct.mean, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(streamed.std, direct.std, rtol=1e-5)
    assert streamed.std[3:].tolist() == [1.0] * 13  # padded channels
    batch = tinymyo_windows(rec, RAW, scaler=train_only)
    np.testing.assert_allclose(batch.x, train_only.transform(raw[0].x), rtol=1e-6)
    assert not batch.x[:, 3:].any()
    with pytest.raises(DataFormatError, match="no window to fit"):
        fit_scaler([rec], RAW, repetitions=[5])


def test_bad_recordings_and_arguments():
    with pytest.raises(ArgumentError, match="normalize='zscore' needs scaler="):
        tinymyo_windows(_noise(2000, 2), RAW)
    with pytest.raises(ArgumentError, match="normalize is 'minmax'"):
        tinymyo_windows(_noise(2000, 2), scaler=IDENTITY)
    with pytest.raises(ArgumentError, match=r"16 channel means.*\(3,\)"):
        tinymyo_windows(_noise(2000, 2), RAW, scaler=Scaler(np.zeros(3), np.ones(3)))
    with pytest.raises(DataFormatError, match=r"s9\.mat: .*at most 16 channels.*\{'emg': 20\}"):
        tinymyo_windows(_noise(2000, 20, source="s9.mat"))
    acc_only = Recording(1, {"acc": np.zeros((2000, 3))}, FS, np.zeros(2000), np.zeros(2000))
    with pytest.raises(DataFormatError, match=r"need an 'emg' signal.*'acc'"):
        tinymyo_windows(acc_only)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"normalize": "l2"}, r"normalize must be one of \('minmax', 'zscore'\)"),
        ({"window": 0}, "window must be a positive int, got 0"),
        ({"step": 2.5}, r"TinyMyoPreprocess.step must be an int, got 2.5"),
        ({"band": (450.0, 20.0)}, "0 < low < high"),
        ({"sample_rate": 0}, "sample_rate must be > 0"),
    ],
)
def test_spec_validation(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TinyMyoPreprocess(**kwargs)


def test_spec_round_trips_through_a_dict():
    spec = TinyMyoPreprocess(band=(10.0, 400.0), window=200, step=100)
    assert TinyMyoPreprocess.from_dict(spec.to_dict()) == spec
    with pytest.raises(ConfigError, match=r"unknown TinyMyoPreprocess fields \['hop'\]"):
        TinyMyoPreprocess.from_dict({"hop": 3})


# --- the store -------------------------------------------------------------------------------


def _sources():
    """A DB5-like 200 Hz 16-channel subject and a 2 kHz 12-channel one, both labelled."""
    slow = _noise(
        600,
        16,
        seed=5,
        fs=200.0,
        subject=3,
        stimulus=np.repeat([0, 13, 0], 200),
        repetition=np.repeat([0, 1, 0], 200),
        source="S3_E2_A1.mat",
    )
    fast = _noise(
        6000,
        12,
        seed=6,
        subject=7,
        stimulus=np.repeat([0, 2], 3000),
        repetition=np.repeat([0, 4], 3000),
        source="S7_E1_A1.mat",
    )
    return [slow, fast]


@pytest.fixture
def store_path(tmp_path):
    return write_window_store(tmp_path / "windows.h5", _sources(), progress=False)


def test_store_round_trip_equals_the_in_memory_pipeline(store_path):
    expected = [tinymyo_windows(r) for r in _sources()]
    store = WindowStore(store_path)
    assert len(store) == sum(len(b) for b in expected) == 11 + 11
    assert (store.n_channels, store.window, store.sample_rate) == (16, 1000, 2000.0)
    items = [store[i] for i in range(len(store))]
    x = np.stack([x.numpy() for x, _ in items])
    y = np.array([int(y) for _, y in items])
    np.testing.assert_array_equal(x, np.concatenate([b.x for b in expected]))
    np.testing.assert_array_equal(y, np.concatenate([b.labels for b in expected]))
    first_x, first_y = items[0]
    assert first_x.dtype == torch.float32 and first_x.shape == (16, 1000)
    assert first_y.dtype == torch.int64 and first_y.shape == ()
    assert store.subject.tolist() == [3] * 11 + [7] * 11
    assert store.session.tolist() == [0] * 11 + [1] * 11
    np.testing.assert_array_equal(
        store.repetition, np.concatenate([b.repetition for b in expected])
    )
    meta = store.meta
    assert meta["format"] == STORE_FORMAT and meta["complete"] is True
    assert TinyMyoPreprocess.from_dict(meta["preprocess"]) == TinyMyoPreprocess()
    assert meta["labeled"] is True and meta["scaler"] is None
    assert [s["source"] for s in meta["sessions"]] == ["S3_E2_A1.mat", "S7_E1_A1.mat"]
    assert meta["sessions"][0]["band"] == [20.0, 90.0] and meta["sessions"][1]["channels"] == 12
    with h5py.File(store_path, "r") as f:
        assert f["windows"].chunks == (1, 16, 1000) and f["windows"].maxshape[0] is None
        assert f["labels"].dtype == np.int64


def test_store_with_zscore_compression_and_batches(tmp_path):
    spec = TinyMyoPreprocess(normalize="zscore")
    scaler = fit_scaler(_sources(), spec, repetitions=[1, 4])
    batch = tinymyo_windows(_sources()[1], spec, scaler=scaler)
    path = write_window_store(
        tmp_path / "z.h5",
        [_sources()[0], batch],
        spec,
        scaler=scaler,
        compression="gzip",
        progress=False,
    )
    store = WindowStore(path)
    np.testing.assert_array_equal(store[len(store) - 1][0].numpy(), batch.x[-1])
    np.testing.assert_allclose(store.meta["scaler"]["std"], scaler.std)
    with h5py.File(path, "r") as f:
        assert f["windows"].compression == "gzip"


def test_unlabelled_store(tmp_path):
    path = write_window_store(tmp_path / "u.h5", _sources(), labeled=False, progress=False)
    store = WindowStore(path)
    assert set(store.labels.tolist()) == {-1} and int(store[0][1]) == -1
    assert store.meta["labeled"] is False


def test_subset_by_subject_and_repetition(store_path):
    full = WindowStore(store_path)
    only7 = WindowStore(store_path, subjects=[7])
    assert only7.subjects == [7] and len(only7) == 11
    np.testing.assert_array_equal(only7[0][0].numpy(), full[11][0].numpy())
    np.testing.assert_array_equal(only7[-1][0].numpy(), full[len(full) - 1][0].numpy())
    reps = WindowStore(store_path, repetitions=[4])
    assert set(reps.repetition.tolist()) == {4} and set(reps.labels.tolist()) == {2}
    with pytest.raises(ArgumentError, match=r"no windows of subjects \[5\]; it holds \[3, 7\]"):
        WindowStore(store_path, subjects=[5])


def test_store_is_lazy_and_safe_across_processes(store_path):
    store = WindowStore(store_path)
    assert store._h5 is None  # nothing opened before the first item
    assert len(pickle.dumps(store)) < 20_000  # the 22 windows (1.4 MB) are not in memory
    first = store[3][0].numpy()
    assert store._h5 is not None
    copy = pickle.loads(pickle.dumps(store))  # what a spawned DataLoader worker receives
    assert copy._h5 is None
    np.testing.assert_array_equal(copy[3][0].numpy(), first)
    # forked workers after the parent opened the file: each opens its own handle
    loader = torch.utils.data.DataLoader(store, batch_size=4, num_workers=2)
    xs = torch.cat([x for x, _ in loader])
    assert xs.shape == (22, 16, 1000)
    np.testing.assert_array_equal(xs[3].numpy(), first)
    store.close()
    np.testing.assert_array_equal(store[3][0].numpy(), first)  # reopens on demand


@pytest.mark.unchecked
def test_store_indexing(store_path):
    store = WindowStore(store_path)
    with pytest.raises(IndexOutOfRangeError, match=r"index must be an int in -22\.\.21, got 22$"):
        store[len(store)]
    with pytest.raises(ArgumentError, match=r"index must be an int in -22\.\.21, got -23$"):
        store[-23]
    for bad in ("0", 1.0, True, np.True_):  # a bool is no index, nor is a float
        with pytest.raises(ArgumentError, match=rf"index must be an int in .*, got {bad!r}$"):
            store[bad]
    assert store[np.int64(-1)][0].shape == store[21][0].shape  # numpy's ints index it
    assert issubclass(IndexOutOfRangeError, IndexError)  # what plain iteration stops on
    assert len(list(store)) == len(store)  # plain iteration stops at the end


def test_interrupted_write_leaves_no_store(tmp_path):
    path = tmp_path / "w.h5"

    def crashing():
        yield _sources()[0]
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_window_store(path, crashing(), progress=False)
    assert sorted(tmp_path.iterdir()) == []  # no store, no temporary file
    # an earlier complete store survives a failed rewrite untouched
    write_window_store(path, _sources()[:1], progress=False)
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="disk full"):
        write_window_store(path, crashing(), progress=False)
    assert path.read_bytes() == before
    assert len(WindowStore(path)) == 11


def test_incomplete_or_foreign_files_are_refused(tmp_path):
    path = tmp_path / "w.h5"
    (tmp_path / "w.h5.4242.tmp").write_bytes(b"")  # as left by a killed run
    with pytest.raises(DataFormatError, match=r"no such window store \(w\.h5\.4242\.tmp left"):
        WindowStore(path)
    with h5py.File(path, "w") as f:  # a half-written store: no 'complete' mark
        f.create_dataset("windows", data=np.zeros((2, 16, 1000), np.float32))
        f.attrs["format"] = STORE_FORMAT
    with pytest.raises(DataFormatError, match=re.escape(str(path)) + ".*not a complete window"):
        WindowStore(path)
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 50)
    with pytest.raises(DataFormatError, match="cannot be read as an HDF5 window store"):
        WindowStore(path)


@pytest.mark.unchecked
def test_bad_store_input(tmp_path):
    path = tmp_path / "w.h5"
    with pytest.raises(DataFormatError, match="no window written"):
        write_window_store(path, [_noise(500, 2)], progress=False)
    assert sorted(tmp_path.iterdir()) == []  # no store, no temporary file
    with pytest.raises(
        ArgumentError, match="source items must be a Recording or a WindowBatch, got float64"
    ):
        write_window_store(path, [np.zeros((1, 16, 1000))], progress=False)
    wrong = WindowBatch(np.zeros((2, 8, 1000), np.float32), np.zeros(2), np.zeros(2), 1, "b")
    with pytest.raises(ArgumentError, match=r"b: WindowBatch\.x has shape \(2, 8, 1000\)"):
        write_window_store(path, [wrong], progress=False)
    with pytest.raises(ArgumentError, match="compression must be"):
        write_window_store(path, _sources(), compression="zstd", progress=False)
    with pytest.raises(ArgumentError, match="needs scaler="):
        write_window_store(path, _sources(), TinyMyoPreprocess(normalize="zscore"))
    assert not path.exists()


def _regression_batch(outputs=5):
    from emg_lens.data.windows.store import RegressionBatch

    n = 2
    return RegressionBatch(
        np.zeros((n, 2, 40), np.float32), np.full(n, -1), np.ones(n, np.int64), 1, "db8",
        targets=np.zeros((n, 40, outputs), np.float32),
    )  # fmt: skip


def test_a_downstream_store_refuses_a_scaler_and_targets_that_do_not_fit(tmp_path):
    from emg_lens.data.windows.downstream import DownstreamPreprocess

    spec = DownstreamPreprocess("ninapro-db8", 2000.0, 2, window=40, step=40)
    path = tmp_path / "d.h5"
    with pytest.raises(ArgumentError, match="a scaler applies to TinyMyoPreprocess windows only"):
        write_window_store(path, [_regression_batch()], spec, scaler=IDENTITY, progress=False)
    with pytest.raises(
        ArgumentError, match=r"db8: targets must be None \(None\), got \[2, 40, 5\]"
    ):
        write_window_store(path, [_regression_batch()], spec, progress=False)
    with pytest.raises(ArgumentError, match=r"targets must be \[2, 40, 3\] \(\['a', 'b', 'c'\]\)"):
        write_window_store(
            path, [_regression_batch()], spec, target_names=list("abc"), progress=False
        )
    assert not path.exists()


def test_a_store_whose_columns_and_windows_differ_in_length_is_named(store_path):
    with h5py.File(store_path, "r+") as f:
        n = len(f["labels"])
        del f["labels"]
        f["labels"] = np.zeros(n - 1, np.int64)
    with pytest.raises(DataFormatError, match=rf"{n} windows but columns of .*'labels': {n - 1}"):
        WindowStore(store_path)


def _tiny_synthetic():
    from emg_lens.data.synthetic.emg_acc import SyntheticSpec

    small = {"n_emg_gestures": 2, "n_acc_gestures": 0, "n_interaction_gestures": 0}
    return SyntheticSpec(n_subjects=1, movement_seconds=0.3, rest_seconds=0.1, **small)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"train_repetitions": (9,), "test_repetitions": (2,)},
            r"synthetic: no window in training repetitions \[9\]: choose --train-repetitions",
        ),
        (
            {"split": "test", "test_repetitions": (9,)},
            r"synthetic: no test window in repetitions \[9\]; choose among \[0, 1, 2, 3, 4, 5, 6\]",
        ),
        (
            {"normalize": "minmax", "preprocess": TinyMyoPreprocess(window=40000, step=20000)},
            r"synthetic: no window: a window is 40000 samples .* the longest recording is",
        ),
    ],
)
def test_a_store_build_that_yields_no_window_names_why(tmp_path, kwargs, match):
    from emg_lens.data.window_build import build_window_store

    kwargs = {"preprocess": TinyMyoPreprocess(window=200, step=100), **kwargs}
    with pytest.raises(DataFormatError, match=match):
        build_window_store("synthetic", tmp_path / "w.h5", synthetic=_tiny_synthetic(),
                           progress=False, **kwargs)  # fmt: skip
    assert not (tmp_path / "w.h5").exists()
