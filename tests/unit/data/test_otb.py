"""OT BioLab+ exports (issue 42, item 3): openhdemg's real test file, fetched at set-up
(`make data`, tools/fetch_real_data.py), checked against the file, and every export emg_lens
cannot read refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from emg_lens.data.formats.otb import read_otb
from emg_lens.errors import ArgumentError, DataFormatError
from emg_lens.geometry import grid_code

REAL = Path(__file__).resolve().parents[3] / ".data" / "openhdemg" / "otb_testfile.mat"


@pytest.fixture(scope="module")
def real():
    assert REAL.is_file(), f"{REAL} is missing: `make data` fetches it (make test does)"
    raw = scipy.io.loadmat(REAL)
    return read_otb(REAL), raw["Data"][0, 0], [d[0][0] for d in raw["Description"]]


def test_the_real_export_is_read_as_the_file_holds_it(real):
    rec, data, descriptions = real
    assert rec.sample_rate == 2048.0 and rec.n_samples == 66_560 == len(data)
    assert rec.modalities == {"emg": 64} and sorted(rec.extras) == ["force"]
    # the grid's channels in their number order: column k of the export is channel k + 1
    for k in (0, 11, 63):
        assert descriptions[k].endswith(f"GR08MM1305 ({k + 1})[uV]")
        np.testing.assert_array_equal(rec.signals["emg"][[0, -1], k], data[[0, -1], k])
    force = descriptions.index("acquired data[ %(MVC)]")
    np.testing.assert_array_equal(rec.extras["force"], data[:, force])
    assert rec.meta["units"] == {"emg": "uV", "force": "%(MVC)"}
    assert rec.meta["grids"] == [
        {"code": "GR08MM1305", "muscle": "Vastus Lateralis", "input": "AUX 3 (Channel 1->1)",
         "unit": "uV"}
    ]  # fmt: skip
    # the decomposition's firings and sources are not signals
    assert len(rec.meta["left_out"]) == 10
    assert all("ecomposition" in text for text in rec.meta["left_out"])
    assert rec.meta["start_time"] == 7.0
    placement = rec.meta["placement"]
    assert placement.parts[0].cells == grid_code("GR08MM1305").cells
    assert (rec.stimulus == 0).all() and (rec.repetition == 0).all()


def export(path: Path, descriptions, data=None, **extra) -> Path:
    data = np.zeros((5, len(descriptions))) if data is None else data
    contents = {"Data": data, "SamplingFrequency": 2048.0, "Time": np.arange(5.0)[:, None]}
    contents["Description"] = np.array(descriptions, dtype=object)[:, None]
    scipy.io.savemat(path, {**contents, **extra})
    return path


def grid_texts(code="GR10MM0808", muscle="TA", source="IN1", n=64):
    return [f"{muscle} - {source} - {code} ({k})[uV]" for k in range(1, n + 1)]


@pytest.mark.parametrize(
    ("code", "channels"),
    [("GR10MM0804", 32), ("HD10MM0804", 32), ("HD05MM0804", 32), ("HD08MM1305", 64),
     ("HD10MM0808", 64), ("GR100ML1305", 64)],
)  # fmt: skip
def test_grids_openhdemg_gives_no_order_are_read_without_a_placement(tmp_path, code, channels):
    # openhdemg's OTBelectrodes_tuple and _Nelectrodes list them; its sort_rawemg orders only
    # GR04MM1305, GR08MM1305 and GR10MM0808: no placement is guessed for the others
    data = np.arange(5 * channels, dtype=float).reshape(5, channels)
    path = export(tmp_path / "grid.mat", grid_texts(code, n=channels), data)
    with pytest.warns(UserWarning, match=f"no channel order for \\['{code}'\\]"):
        rec = read_otb(path)
    np.testing.assert_array_equal(rec.signals["emg"], data)
    assert "placement" not in rec.meta and code in rec.meta["placement_missing"]
    with pytest.raises(ArgumentError, match=f"grid {code}: openhdemg gives no channel order"):
        grid_code(code)


def test_two_grids_are_read_one_after_the_other(tmp_path):
    texts = grid_texts(muscle="TA") + grid_texts("GR08MM1305", muscle="GM", source="IN2")
    data = np.arange(5 * 128, dtype=float).reshape(5, 128)
    rec = read_otb(export(tmp_path / "two.mat", texts, data), orientation=0)
    assert rec.modalities == {"emg": 128} and [g["code"] for g in rec.meta["grids"]] == [
        "GR10MM0808",
        "GR08MM1305",
    ]
    np.testing.assert_array_equal(rec.signals["emg"], data)
    parts = rec.meta["placement"].parts
    assert parts[1].electrodes[0] == 64 and parts[0].cells == grid_code("GR10MM0808", 0).cells


def test_columns_in_any_order_are_put_in_channel_order(tmp_path):
    texts = grid_texts()[::-1]
    data = np.tile(np.arange(64, 0, -1, dtype=float), (5, 1))  # column j holds channel 64 - j
    rec = read_otb(export(tmp_path / "rev.mat", texts, data))
    np.testing.assert_array_equal(rec.signals["emg"][0], np.arange(1, 65))


@pytest.mark.parametrize(
    "texts, message",
    [
        (
            grid_texts("GR99MM0101"),
            "grid code 'GR99MM0101'.*is not an OT Bioelettronica grid openhdemg knows",
        ),
        (grid_texts(n=60), r"has channels 1\.\.60 of 64, missing \[61, 62, 63, 64\]"),
        ([*grid_texts(), "TA - IN1 - GR10MM0808 (3)[uV]"], "two columns describe"),
        (["acquired data[%MVC]", "ref[%MVC]"], "no column describes a grid electrode"),
        ([*grid_texts(), "x[V]", "x [V]"], "has no name of its own"),
        (
            [*grid_texts()[:63], "TA - IN1 - GR10MM0808 (64)[mV]"],
            r"the grid channels mix units \['mV', 'uV'\]",
        ),
    ],
)
def test_exports_emg_lens_cannot_read_are_named(tmp_path, texts, message):
    with pytest.raises(DataFormatError, match=message):
        read_otb(export(tmp_path / "bad.mat", texts))


def test_a_description_of_numbers_is_named(tmp_path):
    path = export(tmp_path / "n.mat", grid_texts(), Description=np.arange(64.0)[:, None])
    with pytest.raises(DataFormatError, match=r"n\.mat: 'Description' must hold texts, got"):
        read_otb(path)


def test_a_mat_that_is_no_export_is_named(tmp_path):
    scipy.io.savemat(tmp_path / "emg.mat", {"emg": np.zeros((5, 2))})
    with pytest.raises(DataFormatError, match=r"not an OT BioLab\+ export: it lacks"):
        read_otb(tmp_path / "emg.mat")
    path = export(tmp_path / "short.mat", grid_texts(), np.zeros((5, 3)))
    with pytest.raises(DataFormatError, match="'Data' has 3 columns but 'Description' 64"):
        read_otb(path)
    (tmp_path / "v73.mat").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 600)
    with pytest.raises(DataFormatError):
        read_otb(tmp_path / "v73.mat")
    with pytest.raises(DataFormatError, match="no such file"):
        read_otb(tmp_path / "none.mat")
    with pytest.raises(
        ArgumentError, match=r"orientation \(degrees\) must be one of \(0, 180\), got 90"
    ):
        read_otb(path, orientation=90)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("SamplingFrequency", np.zeros((0, 0)), "'SamplingFrequency' must hold one positive"),
        ("SamplingFrequency", 0.0, "'SamplingFrequency' must hold one positive"),
        ("Time", np.zeros((0, 0)), "'Time' must be a numeric samples x columns matrix with at"),
        ("Data", np.zeros((0, 64)), "'Data' must be a numeric samples x columns matrix with at"),
    ],
)
def test_an_export_with_an_empty_field_is_named(tmp_path, field, value, message):
    """Issue 47, section 3 item 8: an empty SamplingFrequency, Time or Data was an
    IndexError."""
    with pytest.raises(DataFormatError, match=message):
        read_otb(export(tmp_path / "cut.mat", grid_texts(), **{field: value}))


@pytest.mark.unchecked
def test_a_complex_export_is_refused_or_read_as_its_real_part_when_asked(tmp_path):
    """Issue 61: a complex 'Data' was read with its imaginary part dropped."""
    data = np.arange(5 * 64, dtype=float).reshape(5, 64) + 0j
    data[2, 3] += 0.5j
    path = export(tmp_path / "complex.mat", grid_texts(), data)
    with pytest.raises(DataFormatError, match=r"'Data' holds complex numbers \(complex128, 1 of "
                       r"320 values with an imaginary part\).*real_part=True"):  # fmt: skip
        read_otb(path)
    rec = read_otb(path, real_part=True)
    np.testing.assert_array_equal(rec.signals["emg"], data.real.astype(np.float32))
    assert rec.meta["real_part"] == "the imaginary part of Data was dropped"
    assert "real_part" not in read_otb(export(tmp_path / "real.mat", grid_texts())).meta
    with pytest.raises(ArgumentError, match="real_part must be true or false"):
        read_otb(path, real_part="yes")
    for field, value in (
        ("SamplingFrequency", 2048.0 + 1j),
        ("Time", np.arange(5.0)[:, None] + 1j),
    ):
        with pytest.raises(DataFormatError, match=rf"'{field}' (must hold|holds complex)"):
            read_otb(export(tmp_path / "c.mat", grid_texts(), **{field: value}), real_part=True)
