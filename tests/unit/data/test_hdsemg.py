"""HD-sEMG 65-gesture loader/writer on small MATLAB v7.3 (HDF5) files written like the real ones."""

import re

import h5py
import numpy as np
import pytest
import scipy.io

from emg_lens.data.formats._matlab import LENGTH_TOLERANCE
from emg_lens.data.formats.hdsemg import HDsEMGFile, load_hdsemg, write_hdsemg
from emg_lens.data.recording import Recording
from emg_lens.errors import ArgumentError, DataFormatError

T = 3000
F = 3  # deliberately not 6: the count is read from the file


def _matlab_vars(t=T, n_force=F):
    """MATLAB-oriented variables: grid value t*1000 + row + 8*col (+64 for the flexors)."""
    time = np.arange(t)[:, None, None] * 1000.0
    row = np.arange(8)[None, :, None]
    col = np.arange(8)[None, None, :]
    extensors = time + row + 8 * col  # MATLAB emg_extensors(t, row, col)
    flexors = extensors + 64
    cls = np.zeros(t)
    rep = np.zeros(t)
    # gesture 5 rep 1, gesture 5 rep 2 (adjacent, no rest between), rest, gesture 65 rep 1
    cls[100:400], rep[100:400] = 5, 1
    cls[400:700], rep[400:700] = 5, 2
    cls[1000:1500], rep[1000:1500] = 65, 1
    adjusted_cls = np.roll(cls, 20)
    adjusted_rep = np.roll(rep, 20)
    force = 2.5 + np.arange(t)[:, None] / t + np.arange(n_force)[None, :]
    return {
        "emg_extensors": extensors,
        "emg_flexors": flexors,
        "class": cls,
        "repetition": rep,
        "adjusted_class": adjusted_cls,
        "adjusted_repetition": adjusted_rep,
        "force": force,
    }


def _write_h5(path, variables):
    """Write as MATLAB v7.3 does, by hand: every array transposed, labels as [T, 1] columns."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, x in variables.items():
            x = np.asarray(x, dtype=np.float64)
            if x.ndim == 1:
                x = x[:, None]
            f.create_dataset(name, data=x.T)
            f[name].attrs["MATLAB_class"] = np.bytes_("double")
    return path


def _expected_emg(t=T):
    return np.arange(t)[:, None] * 1000.0 + np.arange(128)[None, :]


@pytest.fixture
def s1(tmp_path):
    return _write_h5(tmp_path / "s1.mat", _matlab_vars())


def test_file_layout_as_h5py_sees_it(s1):
    with h5py.File(s1, "r") as f:
        assert f["emg_extensors"].shape == (8, 8, T)
        assert f["adjusted_class"].shape == (1, T)
        assert f["force"].shape == (F, T)


def test_full_load_shapes_channel_order_and_labels(s1):
    rec = load_hdsemg(s1)
    variables = _matlab_vars()
    assert (rec.subject, rec.sample_rate, rec.n_samples) == (1, 2048.0, T)
    assert rec.modalities == {"emg": 128, "force": F}
    assert rec.signals["emg"].dtype == np.float32
    # extensors 64 then flexors 64; channel = row + 8 * col of MATLAB emg(t, row, col)
    np.testing.assert_array_equal(rec.signals["emg"], _expected_emg())
    np.testing.assert_allclose(rec.signals["force"], variables["force"], rtol=1e-6)
    # the adjusted labels are preferred; the raw ones land in extras
    np.testing.assert_array_equal(rec.stimulus, variables["adjusted_class"])
    np.testing.assert_array_equal(rec.repetition, variables["adjusted_repetition"])
    np.testing.assert_array_equal(rec.extras["class"], variables["class"])
    assert rec.gestures == [5, 65]
    assert rec.source == str(s1)


def test_raw_labels_when_no_adjusted_ones(tmp_path):
    variables = _matlab_vars()
    del variables["adjusted_class"], variables["adjusted_repetition"]
    path = _write_h5(tmp_path / "s3.mat", variables)
    rec = load_hdsemg(path)
    assert rec.subject == 3
    np.testing.assert_array_equal(rec.stimulus, variables["class"])
    assert rec.extras == {}
    with HDsEMGFile(path) as f:
        assert f.label_names == ("class", "repetition")


def test_lazy_reads_and_segments(s1):
    with HDsEMGFile(s1) as f:
        assert (f.n_samples, f.n_force_channels) == (T, F)
        chunk = f.read(1200, 1260)
        assert set(chunk) == {"emg", "force"}
        assert chunk["emg"].shape == (60, 128) and chunk["force"].shape == (60, F)
        np.testing.assert_array_equal(chunk["emg"], _expected_emg()[1200:1260])
        assert set(f.read(5, 6, force=False)) == {"emg"}
        assert f.read(10, 10)["emg"].shape == (0, 128)
        stimulus, repetition = f.labels()
        assert stimulus.shape == repetition.shape == (T,)
        assert f.segments() == [(5, 1, 120, 420), (5, 2, 420, 720), (65, 1, 1020, 1520)]
        with pytest.raises(ArgumentError, match=r"read\(2990, 3001\)"):
            f.read(2990, T + 1)
        with pytest.raises(ArgumentError, match="outside"):
            f.read(-1, 4)
    with pytest.raises(ArgumentError, match="closed"):
        f.read(0, 10)


def test_reading_a_slice_touches_only_that_slice(s1, monkeypatch):
    """`read` asks h5py for the hyperslab only, never the whole dataset."""
    asked = []
    original = h5py.Dataset.__getitem__

    def spy(self, key):
        asked.append((self.name, key))
        return original(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    with HDsEMGFile(s1) as f:
        f.read(100, 150)
    grids = [key for name, key in asked if name in ("/emg_extensors", "/emg_flexors")]
    assert len(grids) == 2
    assert all(key[2] == slice(100, 150) for key in grids)


def test_writer_round_trip_and_matlab_header(tmp_path):
    rng = np.random.default_rng(0)
    n = 1000
    rec = Recording(
        subject=7,
        signals={
            "emg": rng.standard_normal((n, 128)).astype(np.float32),
            "force": (2.5 + rng.standard_normal((n, 5))).astype(np.float32),
        },
        sample_rate=2048.0,
        stimulus=np.repeat([0, 12, 0, 13], n // 4),
        repetition=np.repeat([0, 3, 0, 3], n // 4),
        extras={"class": np.repeat([0, 12, 12, 13], n // 4)},
    )
    path = write_hdsemg(rec, tmp_path / "s7.mat")
    header = path.read_bytes()[:128]
    assert header.startswith(b"MATLAB 7.3 MAT-file") and header[-2:] == b"IM"
    with pytest.raises(NotImplementedError):  # just like the real files
        scipy.io.loadmat(str(path))
    with h5py.File(path, "r") as f:
        assert f.userblock_size == 512
        assert f["emg_flexors"].shape == (8, 8, n) and f["force"].shape == (5, n)
        assert f["class"].attrs["MATLAB_class"] == b"double"
    back = load_hdsemg(tmp_path, 7)
    np.testing.assert_array_equal(back.signals["emg"], rec.signals["emg"])
    np.testing.assert_array_equal(back.signals["force"], rec.signals["force"])
    np.testing.assert_array_equal(back.stimulus, rec.stimulus)
    np.testing.assert_array_equal(back.repetition, rec.repetition)
    np.testing.assert_array_equal(back.extras["class"], rec.extras["class"])
    # a file written from the loaded recording reads back the same
    again = load_hdsemg(write_hdsemg(back, tmp_path / "again" / "s7.mat"))
    np.testing.assert_array_equal(again.signals["emg"], rec.signals["emg"])
    np.testing.assert_array_equal(again.extras["class"], rec.extras["class"])
    # without the adjusted labels
    raw = load_hdsemg(write_hdsemg(rec, tmp_path / "raw" / "s7.mat", adjusted=False))
    np.testing.assert_array_equal(raw.stimulus, rec.stimulus)


def test_writer_matches_hand_written_file(tmp_path, s1):
    path = write_hdsemg(_matlab_vars(), tmp_path / "w" / "s1.mat")
    a, b = load_hdsemg(path), load_hdsemg(s1)
    for name in a.signals:
        np.testing.assert_array_equal(a.signals[name], b.signals[name])
    np.testing.assert_array_equal(a.stimulus, b.stimulus)


def test_v5_export_is_read_too(tmp_path):
    path = tmp_path / "s2.mat"
    scipy.io.savemat(str(path), _matlab_vars(), format="5", oned_as="column")
    rec = load_hdsemg(path, force=False)
    assert rec.modalities == {"emg": 128}
    np.testing.assert_array_equal(rec.signals["emg"], _expected_emg())


def test_short_label_vector_is_tolerated(tmp_path):
    variables = _matlab_vars()
    variables["adjusted_class"] = variables["adjusted_class"][:-2]
    with HDsEMGFile(_write_h5(tmp_path / "s1.mat", variables)) as f:
        assert f.n_samples == T - 2
        assert f.read()["emg"].shape == (T - 2, 128)
        assert len(f.labels()[1]) == T - 2


def test_subject_selection(tmp_path, s1):
    assert load_hdsemg(tmp_path, 1).subject == 1
    assert load_hdsemg(s1, 9).subject == 9
    with pytest.raises(ArgumentError, match="pass subject="):
        load_hdsemg(tmp_path)
    other = tmp_path / "subject_one.mat"
    other.write_bytes(s1.read_bytes())
    with pytest.raises(ArgumentError, match="pass subject="):
        load_hdsemg(other)


# --- bad files -------------------------------------------------------------------------------


def test_missing_file(tmp_path, s1):
    with pytest.raises(DataFormatError, match=r"subject 4 \(searched for s4\.mat\).*s1\.mat"):
        load_hdsemg(tmp_path, 4)
    with pytest.raises(DataFormatError, match="no such file"):
        HDsEMGFile(tmp_path / "s9.mat")
    with pytest.raises(DataFormatError, match="no such file"):
        load_hdsemg(tmp_path / "s9.mat")


def test_truncated_and_corrupt_files(tmp_path, s1):
    data = s1.read_bytes()
    s1.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match=re.escape(str(s1)) + r".*v7\.3 \(HDF5\).*truncated"):
        HDsEMGFile(s1)
    s1.write_bytes(b"garbage" * 100)
    with pytest.raises(DataFormatError, match=r"neither a MATLAB v7\.3"):
        load_hdsemg(s1)


def test_a_corrupt_signal_block_is_named_when_read(tmp_path):
    path = _write_h5(tmp_path / "s1.mat", _matlab_vars())
    with h5py.File(path, "r+") as f:  # the flexors gzip-compressed, one chunk
        x = f["emg_flexors"][:]
        del f["emg_flexors"]
        f.create_dataset("emg_flexors", data=x, chunks=x.shape, compression="gzip")
        f["emg_flexors"].attrs["MATLAB_class"] = np.bytes_("double")
        chunk = f["emg_flexors"].id.get_chunk_info(0)
    with open(path, "r+b") as raw:  # its compressed bytes overwritten
        raw.seek(chunk.byte_offset)
        raw.write(b"\xff" * min(chunk.size, 64))
    with (
        HDsEMGFile(path) as f,
        pytest.raises(
            DataFormatError, match=re.escape(str(path)) + r": cannot read variable 'emg_flexors'"
        ),
    ):
        f.read(0, 10)


def test_missing_required_variable_lists_what_exists(tmp_path):
    variables = _matlab_vars()
    del variables["emg_flexors"]
    path = _write_h5(tmp_path / "s1.mat", variables)
    with pytest.raises(
        DataFormatError,
        match=re.escape(str(path)) + r".*missing required variable 'emg_flexors'.*'emg_extensors'",
    ):
        load_hdsemg(path)
    variables = _matlab_vars()
    del variables["class"], variables["adjusted_class"]
    path = _write_h5(tmp_path / "s2.mat", variables)
    with pytest.raises(DataFormatError, match="'adjusted_class' or 'class'"):
        HDsEMGFile(path)


def test_missing_force(tmp_path):
    variables = _matlab_vars()
    del variables["force"]
    path = _write_h5(tmp_path / "s1.mat", variables)
    assert load_hdsemg(path, force=False).modalities == {"emg": 128}
    with HDsEMGFile(path) as f:
        assert f.n_force_channels == 0 and set(f.read(0, 5)) == {"emg"}
    with pytest.raises(DataFormatError, match=r"missing variable 'force'.*'emg_flexors'"):
        load_hdsemg(path)


def test_wrong_grid_shape(tmp_path):
    variables = _matlab_vars()
    variables["emg_extensors"] = variables["emg_extensors"][:, :, :7]
    path = _write_h5(tmp_path / "s1.mat", variables)
    with pytest.raises(
        DataFormatError,
        match=r"'emg_extensors' must be 8 x 8 electrodes.*got HDF5 shape \(7, 8, 3000\)",
    ):
        HDsEMGFile(path)
    # stored untransposed (MATLAB order as-is) is refused too
    with h5py.File(path, "r+") as f:
        del f["emg_extensors"]
        f["emg_extensors"] = _matlab_vars()["emg_extensors"]
    with pytest.raises(DataFormatError, match=r"got HDF5 shape \(3000, 8, 8\)"):
        HDsEMGFile(path)


def test_nan_in_a_signal(tmp_path):
    variables = _matlab_vars()
    variables["emg_flexors"][2500, 1, 1] = np.nan
    path = _write_h5(tmp_path / "s1.mat", variables)
    with HDsEMGFile(path) as f:
        assert f.read(0, 2000)["emg"].shape == (2000, 128)
        with pytest.raises(DataFormatError, match=r"signal 'emg' holds 1 NaN/Inf values"):
            f.read(2400, 2600)
    with pytest.raises(DataFormatError, match=re.escape(str(path))):
        load_hdsemg(path)


def test_length_mismatch_beyond_tolerance(tmp_path):
    variables = _matlab_vars()
    variables["force"] = variables["force"][: -(LENGTH_TOLERANCE + 5)]
    path = _write_h5(tmp_path / "s1.mat", variables)
    with pytest.raises(DataFormatError, match=re.escape(str(path)) + ".*differ in length by 10"):
        HDsEMGFile(path)


def test_label_matrix_is_refused(tmp_path):
    variables = _matlab_vars()
    variables["adjusted_repetition"] = np.zeros((T, 2))
    with pytest.raises(DataFormatError, match="'adjusted_repetition' must be a vector"):
        HDsEMGFile(_write_h5(tmp_path / "s1.mat", variables))


def test_writing_a_recording_without_128_emg_channels_is_refused(tmp_path):
    rec = Recording(1, {"emg": np.zeros((10, 4))}, 2048.0, np.zeros(10), np.zeros(10), "r")
    with pytest.raises(
        ArgumentError, match=r"r: an HD-sEMG file needs 'emg' of 128 .*\{'emg': 4\}"
    ):
        write_hdsemg(rec, tmp_path / "s1.mat")
    assert not (tmp_path / "s1.mat").exists()
