"""The paper's preprocessing: filter responses, segments, repetition split, no leakage."""

from dataclasses import replace

import numpy as np
import pytest
from scipy import signal as sps

from emg_lens import ArgumentError, ConfigError, DataFormatError
from emg_lens.data.preprocess import (
    PreprocessSpec,
    Scaler,
    filter_signals,
    find_segments,
    prepare_subject,
)
from emg_lens.data.recording import Recording

FS = 2000.0


def _gain_db(spec, modality, freq, n=8000):
    t = np.arange(n) / FS
    x = np.sin(2 * np.pi * freq * t)[:, None].astype(np.float32)
    y = filter_signals({modality: x}, FS, spec)[modality][n // 4 : -n // 4]
    return 20 * np.log10(np.sqrt((y**2).mean()) / np.sqrt((x**2).mean()))


@pytest.mark.parametrize(("freq", "max_db"), [(2.0, -20.0), (900.0, -20.0)])
def test_emg_band_pass_attenuates_outside_10_to_500_hz(freq, max_db):
    spec = PreprocessSpec(rectify=False)
    assert _gain_db(spec, "emg", freq) <= max_db


@pytest.mark.parametrize("freq", [50.0, 150.0, 400.0])
def test_emg_band_pass_keeps_the_pass_band(freq):
    assert abs(_gain_db(PreprocessSpec(rectify=False), "emg", freq)) < 1.0


def test_acc_low_pass_at_90_hz():
    spec = PreprocessSpec()
    assert abs(_gain_db(spec, "acc", 10.0)) < 0.5
    assert _gain_db(spec, "acc", 400.0) < -40


def test_zero_phase_vs_causal():
    x = np.random.default_rng(0).standard_normal((4000, 1)).astype(np.float32)
    offline = filter_signals({"acc": x}, FS, PreprocessSpec())["acc"]
    streaming = filter_signals({"acc": x}, FS, PreprocessSpec(causal=True))["acc"]
    sos = sps.butter(4, 90, btype="lowpass", fs=FS, output="sos")
    np.testing.assert_allclose(streaming[:, 0], sps.sosfilt(sos, x[:, 0]), rtol=1e-4, atol=1e-5)
    assert not np.allclose(offline, streaming)


def test_envelope_is_the_smoothed_rectified_emg():
    """An amplitude-modulated carrier: the 10 Hz envelope keeps the 2 Hz modulation (times
    the mean of |sin|, 2/pi) and removes the rectified carrier's ripple."""
    t = np.arange(8000) / FS
    level = 1.0 + 0.5 * np.sin(2 * np.pi * 2.0 * t)
    x = (level * np.sin(2 * np.pi * 150.0 * t))[:, None].astype(np.float32)
    env = filter_signals({"emg": x}, FS, PreprocessSpec(envelope=10.0))["emg"][:, 0]
    rectified = filter_signals({"emg": x}, FS, PreprocessSpec())["emg"][:, 0]
    middle = slice(1000, -1000)
    np.testing.assert_allclose(env[middle], (2 / np.pi) * level[middle], atol=0.03)
    assert np.abs(np.diff(env[middle])).max() < 0.1 * np.abs(np.diff(rectified[middle])).max()


@pytest.mark.parametrize("envelope", [0.0, -5.0])
def test_envelope_needs_a_positive_cutoff_and_rectification(envelope):
    with pytest.raises(ConfigError, match="envelope"):
        PreprocessSpec(envelope=envelope)
    with pytest.raises(ConfigError, match="rectify=True"):
        PreprocessSpec(envelope=10.0, rectify=False)


@pytest.mark.parametrize("segment", [(2.0, 1.0), (0.5, 0.5), (-0.5, 1.0), "middle"])
def test_a_segment_is_named_or_runs_forward_from_the_movement_onset(segment):
    with pytest.raises(ConfigError, match=r"segment must be one of .* 0 <= start_s < stop_s"):
        PreprocessSpec(segment=segment)


def test_cutoffs_at_or_above_nyquist_are_refused():
    with pytest.raises(ConfigError, match="Nyquist"):
        filter_signals({"emg": np.zeros((100, 1))}, 800.0, PreprocessSpec())  # 500 Hz >= 400


def test_acc_magnitude_per_sensor():
    x = np.zeros((400, 6), np.float32)
    x[:, 0], x[:, 4] = 3.0, 4.0  # sensor 0: (3, 0, 0); sensor 1: (0, 4, 0)
    out = filter_signals({"acc": x}, FS, PreprocessSpec(lowpass=None, acc_magnitude=True))["acc"]
    assert out.shape == (400, 2)
    np.testing.assert_allclose(out[0], [3.0, 4.0], rtol=1e-6)


def test_find_segments_runs():
    stim = np.array([0, 1, 1, 1, 0, 0, 2, 2, 0])
    rep = np.array([0, 1, 1, 1, 0, 0, 1, 1, 0])
    assert find_segments(stim, rep) == [(1, 1, 1, 4), (2, 1, 6, 8)]


def _recording(seed=0, test_scale=1.0):
    """Two gestures x six repetitions of 1 s; test repetitions (2, 5) scaled by test_scale."""
    rng = np.random.default_rng(seed)
    n = int(FS)
    stim, rep, emg = [], [], []
    for g in (1, 2):
        for r in range(1, 7):
            x = rng.standard_normal((n, 2)) * (g + 1)
            emg.append(x * (test_scale if r in (2, 5) else 1.0))
            stim += [g] * n
            rep += [r] * n
    return Recording(
        1, {"emg": np.concatenate(emg).astype(np.float32)}, FS, np.array(stim), np.array(rep)
    )


def test_windows_split_by_repetition_and_segment():
    spec = PreprocessSpec(segment="transient", window=200, step=100, emg_band=None)
    data = prepare_subject(_recording(), spec)
    assert set(data.rep_train) == {1, 3, 4, 6} and set(data.rep_test) == {2, 5}
    per_rep = (int(0.5 * FS) - 200) // 100 + 1  # windows in the first 0.5 s of a repetition
    assert len(data.X_train) == 2 * 4 * per_rep and len(data.X_test) == 2 * 2 * per_rep
    assert data.classes == [1, 2] and set(data.y_train) == {0, 1}


def test_no_statistic_of_the_test_repetitions_reaches_the_scaler():
    spec = PreprocessSpec(window=200, step=200, segment="full", emg_band=None)
    a = prepare_subject(_recording(test_scale=1.0), spec)
    b = prepare_subject(_recording(test_scale=50.0), spec)
    # Training windows (and so the fitted scaler) are identical whatever the test data hold.
    np.testing.assert_array_equal(a.X_train, b.X_train)
    # With the training scaler (mean m, std s), rectified test data scaled by 50 become
    # (50 r - m) / s = 50 (r - m) / s + 49 m / s: a per-channel constant apart. Had the scaler
    # seen the test data, m and s would differ between a and b and this would not hold.
    diff = b.X_test - 50.0 * a.X_test
    np.testing.assert_allclose(
        diff, np.broadcast_to(diff[:1, :, :1], diff.shape), rtol=1e-3, atol=1e-2
    )


def test_scaler_uses_training_statistics_only():
    X = np.random.default_rng(1).standard_normal((10, 3, 50)).astype(np.float32) * 4 + 2
    scaler = Scaler.fit(X)
    Z = scaler.transform(X)
    np.testing.assert_allclose(Z.mean(axis=(0, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(Z.std(axis=(0, 2)), 1, atol=1e-4)


def test_scaler_from_moments_equals_fit_flat_channels_included():
    X = np.random.default_rng(2).standard_normal((6, 3, 40)) * [[[1.0], [5.0], [0.0]]] + 7.0
    count = X.shape[0] * X.shape[2]
    mean = X.mean(axis=(0, 2))
    m2 = ((X - mean[None, :, None]) ** 2).sum(axis=(0, 2))
    direct, moments = Scaler.fit(X), Scaler.from_moments(count, mean, m2)
    np.testing.assert_allclose(moments.mean, direct.mean)
    np.testing.assert_allclose(moments.std, direct.std, rtol=1e-12)
    assert moments.std[2] == 1.0  # the flat channel is centred, not divided by ~0
    assert np.isfinite(moments.transform(X)).all()


@pytest.mark.unchecked
@pytest.mark.parametrize(
    ("count", "mean", "m2", "match"),
    [
        (0, [0.0], [1.0], "count must be a positive int"),
        (2.5, [0.0], [1.0], "count must be a positive int"),
        (True, [0.0], [1.0], "count must be a positive int"),
        (4, [0.0, 1.0], [1.0], r"\[channel\] arrays, got shapes \(2,\) and \(1,\)"),
        (4, 0.0, 1.0, r"\[channel\] arrays, got shapes \(\) and \(\)"),
    ],
)
def test_scaler_from_moments_refuses_bad_moments(count, mean, m2, match):
    with pytest.raises(ArgumentError, match=match):
        Scaler.from_moments(count, mean, m2)


def test_no_window_fits_is_a_clear_error():
    with pytest.raises(DataFormatError, match="no 5000-sample window"):
        prepare_subject(_recording(), PreprocessSpec(window=5000, emg_band=None))


def test_one_gesture_in_the_split_is_refused_not_trained():
    """Issue 47, section 3 item 2: a session per gesture left one gesture in train and test,
    and `train` reported accuracy 1.000 for a one-class model."""
    spec = PreprocessSpec(segment="full", window=200, step=100, emg_band=None, gestures=(2,))
    with pytest.raises(
        DataFormatError, match=r"hold gestures \[2\], \[\] without training windows"
    ):
        prepare_subject(_recording(), spec)


def test_training_on_one_class_is_refused_naming_what_is_trained():
    from emg_lens.models import IsoNet
    from emg_lens.train import TrainConfig, fit
    from tests.tiny import tiny_isonet

    model: IsoNet = tiny_isonet()
    X = np.zeros((8, model.cfg.n_channels, model.cfg.n_samples), np.float32)
    with pytest.raises(DataFormatError, match=r"subject 4: the training windows hold one class"):
        fit(model, X, np.zeros(8, int), TrainConfig(epochs=1, progress=False), desc="subject 4")


def test_the_recordings_channel_names_follow_the_preprocessed_channels():
    """DB2's (and the demo's) names reach a subject's windows; with ``acc_magnitude`` a sensor's
    magnitude is named by what its axes' names share, and names that cannot be kept distinct
    are dropped rather than misnamed."""
    from emg_lens.data.synthetic.emg_acc import SyntheticSpec, generate_recordings

    rec = generate_recordings(SyntheticSpec(n_subjects=1, movement_seconds=0.5), [1])[0]
    spec = PreprocessSpec(segment=(0.1, 0.5), step=200)
    axes = prepare_subject(rec, spec).meta["channel_names"]
    assert axes[10:15] == ["emg11", "emg12", "acc1x", "acc1y", "acc1z"] and len(axes) == 48
    magnitudes = prepare_subject(rec, replace(spec, acc_magnitude=True)).meta["channel_names"]
    assert magnitudes[12:] == [f"acc{k}" for k in range(1, 13)] and len(magnitudes) == 24
    rec.meta["channel_names"] = ["a"] * 48  # not distinct: no names at all
    assert "channel_names" not in prepare_subject(rec, spec).meta


def _bad_recording(**changes):
    fields = {
        "signals": {"emg": np.zeros((4, 2))},
        "stimulus": np.zeros(4),
        "repetition": np.zeros(4),
    }
    fields |= changes
    return Recording(1, fields["signals"], fields.get("sample_rate", FS), fields["stimulus"],
                     fields["repetition"], source="rec")  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"signals": {}}, "rec: a recording needs at least one signal"),
        ({"stimulus": np.zeros(3)}, r"differ in length: \{'emg': 4, 'stimulus': 3"),
        ({"signals": {"emg": np.zeros(4)}}, r"'emg' must be \[time, channels\], not \(4,\)"),
        ({"sample_rate": 0.0}, "sample_rate must be > 0, got 0.0"),
    ],
)
def test_a_recording_refuses_what_it_cannot_hold(changes, match):
    with pytest.raises(DataFormatError, match=match):
        _bad_recording(**changes)


def test_acc_magnitude_needs_three_axes_a_sensor():
    with pytest.raises(DataFormatError, match="acc has 4 channels; acc_magnitude needs 3 axes"):
        filter_signals(
            {"acc": np.zeros((400, 4))}, FS, PreprocessSpec(lowpass=None, acc_magnitude=True)
        )


def test_no_test_window_to_inspect_is_named():
    from emg_lens.data.preprocess import SubjectData

    X, y = np.zeros((4, 1, 2)), np.array([0, 1, 0, 1])
    data = SubjectData.from_windows({"emg": 1}, (X[:0], y[:0]), (X, y), subject=5)
    with pytest.raises(ArgumentError, match="subject 5 has no test windows to inspect"):
        data.select_windows(3)
