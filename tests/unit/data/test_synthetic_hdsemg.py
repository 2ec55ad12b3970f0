"""Synthetic HD-sEMG recordings: the real files' layout and label quirks, planted structure."""

import h5py
import numpy as np
import pytest

from emg_lens import ConfigError
from emg_lens.data.formats.hdsemg import load_hdsemg
from emg_lens.data.preprocess import find_segments
from emg_lens.data.synthetic.hdsemg import (
    SyntheticHDsEMGSpec,
    generate_hdsemg_recordings,
    planted_activation,
    write_synthetic_hdsemg,
)

SMALL = SyntheticHDsEMGSpec(n_subjects=2, n_gestures=6, movement_seconds=0.4, rest_seconds=0.1)
TRAIN, TEST = (1, 3, 4), (2, 5)


@pytest.fixture(scope="module")
def recording():
    return generate_hdsemg_recordings(SMALL, [1])[0]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_subjects", 0),
        ("n_gestures", 1),
        ("n_gestures", 66),
        ("n_repetitions", 0),
        ("n_force", 0),
        ("movement_seconds", 0.0),
        ("rest_seconds", 0.0),
        ("blob_width", 0.0),
        ("pattern_contrast", -0.1),
        ("force_contrast", -1.0),
        ("noise", -0.1),
        ("subject_variability", -0.1),
        ("label_lag", -1),
        ("label_lag", 103),  # rest 0.1 s = 204 samples: the lag must stay under half of it
    ],
)
def test_spec_refuses_bad_fields(field, value):
    with pytest.raises(ConfigError, match=rf"SyntheticHDsEMGSpec\.{field}\b.* must .*got {value}"):
        SyntheticHDsEMGSpec(**{"movement_seconds": 0.4, "rest_seconds": 0.1, field: value})


def test_unknown_subject_is_refused():
    with pytest.raises(ConfigError, match=r"subjects must be .* in 1\.\.2, got \[3\]"):
        generate_hdsemg_recordings(SMALL, [3])


def test_montage_labels_and_force_levels(recording):
    assert recording.modalities == {"emg": 128, "force": 5}
    assert recording.sample_rate == 2048.0
    assert recording.gestures == list(range(1, 7))
    segments = find_segments(recording.stimulus, recording.repetition)
    assert [(g, r) for g, r, _, _ in segments] == [(g, r) for g in range(1, 7) for r in range(1, 6)]
    n_move = int(0.4 * 2048)
    assert all(stop - start == n_move for _, _, start, stop in segments)
    force = recording.signals["force"]
    at_rest = force[recording.stimulus == 0]
    assert np.abs(at_rest.mean(axis=0) - 2.5).max() < 0.2  # volts around the neutral level
    assert force.min() > 0 and force.max() < 5


def test_raw_labels_lead_the_adjusted_ones_by_a_few_samples(recording):
    raw_class, raw_rep = recording.extras["class"], recording.extras["repetition"]
    differ = (raw_class != recording.stimulus) | (raw_rep != recording.repetition)
    n_runs = 6 * 5
    assert 0 < differ.sum() <= n_runs * 2 * SMALL.label_lag
    raw = find_segments(raw_class, raw_rep)
    adjusted = find_segments(recording.stimulus, recording.repetition)
    assert [s[:2] for s in raw] == [s[:2] for s in adjusted]
    for (_, _, raw_start, raw_stop), (_, _, start, stop) in zip(raw, adjusted):
        assert 1 <= start - raw_start <= SMALL.label_lag
        assert 1 <= stop - raw_stop <= SMALL.label_lag


def test_seeded_and_subject_independent():
    spec = SyntheticHDsEMGSpec(n_subjects=2, n_gestures=2, movement_seconds=0.2)
    alone = generate_hdsemg_recordings(spec, [2])[0]
    both = generate_hdsemg_recordings(spec)
    np.testing.assert_array_equal(both[1].signals["emg"], alone.signals["emg"])
    np.testing.assert_array_equal(both[1].signals["force"], alone.signals["force"])
    assert not np.allclose(both[0].signals["emg"], alone.signals["emg"])
    other_seed = generate_hdsemg_recordings(SyntheticHDsEMGSpec(**{**spec.to_dict(), "seed": 1}))
    assert not np.allclose(other_seed[1].signals["force"], alone.signals["force"])


def _features(rec, modality):
    """Per repetition: the mean rectified level of each channel over the middle of the movement."""
    x = np.abs(rec.signals[modality]) if modality == "emg" else rec.signals[modality]
    rows = []
    for gesture, rep, start, stop in find_segments(rec.stimulus, rec.repetition):
        middle = slice(start + (stop - start) // 4, stop - (stop - start) // 4)
        rows.append((gesture, rep, x[middle].mean(axis=0)))
    return rows


def _nearest_centroid_accuracy(rec, modality):
    rows = _features(rec, modality)
    gestures = sorted({g for g, _, _ in rows})
    centroids = np.stack(
        [np.mean([f for g, r, f in rows if g == c and r in TRAIN], axis=0) for c in gestures]
    )
    test = [(g, f) for g, r, f in rows if r in TEST]
    predicted = [gestures[np.argmin(((centroids - f) ** 2).sum(axis=1))] for _, f in test]
    return np.mean([p == g for p, (g, _) in zip(predicted, test)])


@pytest.mark.parametrize("modality", ["emg", "force"])
def test_gestures_separable_from_each_modality_alone(recording, modality):
    # held-out repetitions, 6 gestures: chance is 1/6
    assert _nearest_centroid_accuracy(recording, modality) >= 0.9


def test_without_contrast_gestures_are_not_separable():
    flat = SyntheticHDsEMGSpec(**{**SMALL.to_dict(), "pattern_contrast": 0, "force_contrast": 0})
    rec = generate_hdsemg_recordings(flat, [1])[0]
    assert _nearest_centroid_accuracy(rec, "emg") <= 0.5
    assert _nearest_centroid_accuracy(rec, "force") <= 0.5


def test_file_layout_round_trip_and_smooth_grids(tmp_path, recording):
    (path,) = write_synthetic_hdsemg(SMALL, tmp_path, subjects=[1])
    assert path == tmp_path / "s1.mat"
    assert path.read_bytes()[:19] == b"MATLAB 7.3 MAT-file"
    with h5py.File(path, "r") as f:
        n = recording.n_samples
        assert f["emg_extensors"].shape == f["emg_flexors"].shape == (8, 8, n)
        assert f["force"].shape == (5, n)
        assert {f[k].shape for k in ("class", "adjusted_class", "adjusted_repetition")} == {(1, n)}
        # MATLAB emg(t, row, col), read straight from the file, without the loader's ordering
        grids = [np.asarray(f[k]).T for k in ("emg_extensors", "emg_flexors")]
    planted = planted_activation(SMALL, 1)
    for gesture, rep, start, stop in find_segments(recording.stimulus, recording.repetition):
        if rep != 1:
            continue
        for g, grid in enumerate(grids):
            measured = np.abs(grid[start + 200 : stop - 200]).mean(axis=0)  # [row, col]
            r = np.corrcoef(measured.ravel(), planted[gesture - 1, g].ravel())[0, 1]
            assert r > 0.9, (gesture, g, r)
            neighbours = np.r_[np.diff(measured, axis=0).ravel(), np.diff(measured, axis=1).ravel()]
            any_pair = measured.ravel()[:, None] - measured.ravel()[None, :]
            assert np.abs(neighbours).mean() < 0.6 * np.abs(any_pair).mean()
    loaded = load_hdsemg(path)
    assert loaded.subject == 1 and loaded.sample_rate == 2048.0
    assert loaded.modalities == {"emg": 128, "force": 5}
    np.testing.assert_array_equal(loaded.signals["emg"], recording.signals["emg"])
    np.testing.assert_array_equal(loaded.signals["force"], recording.signals["force"])
    np.testing.assert_array_equal(loaded.stimulus, recording.stimulus)  # the adjusted labels
    np.testing.assert_array_equal(loaded.repetition, recording.repetition)
    np.testing.assert_array_equal(loaded.extras["class"], recording.extras["class"])
    np.testing.assert_array_equal(loaded.extras["repetition"], recording.extras["repetition"])
