"""Every dataset's electrode placement: one position per channel the dataset's reader
returns, each where the dataset's documentation puts it (or where the montage's stated
convention does), and 10-20 / 10-10 names where the standard spherical construction does."""

from __future__ import annotations

import math

import numpy as np
import pytest

from emg_lens.data.datasets import montages_of
from emg_lens.data.registry import REGISTRY
from emg_lens.errors import ArgumentError, LayoutError
from emg_lens.geometry import Montage, grid, grid_code, ring, scalp, scalp_position, scalp_xy
from emg_lens.layout import TokenLayout

SOURCES = {
    "synthetic": {"dataset": "synthetic", "synthetic": {"n_emg": 12, "n_acc_sensors": 4}},
    "ninapro-db2": {"dataset": "ninapro-db2", "root": "/data", "exercises": ["B"]},
    "hdsemg": {"dataset": "hdsemg", "root": "/data"},
    "epn612": {"dataset": "epn612", "root": "/data"},
    "uci": {"dataset": "uci", "root": "/data"},
    "ninapro-db8": {"dataset": "ninapro-db8", "root": "/data"},
    "ninapro-db5": {"dataset": "ninapro-db5", "root": "/data"},
    "synthetic-eeg": {"dataset": "synthetic-eeg", "synthetic_eeg": {}},
}


def _angle(xy: tuple[float, float]) -> float:
    """The anatomical angle of a ring position (0 dorsal, 90 radial, 180 volar)."""
    return math.degrees(math.atan2(xy[0], xy[1])) % 360


@pytest.mark.parametrize("name", list(SOURCES))
def test_every_placement_has_a_position_per_channel_and_says_its_source(name):
    source = SOURCES[name]
    if name == "synthetic":
        from emg_lens.data.synthetic.emg_acc import SyntheticSpec

        source = {"dataset": "synthetic", "synthetic": SyntheticSpec(n_acc_sensors=4).to_dict()}
    if name == "synthetic-eeg":
        from emg_lens.data.synthetic.eeg import SyntheticEEGSpec

        source = {"dataset": name, "synthetic_eeg": SyntheticEEGSpec().to_dict()}
    info = REGISTRY[name]
    montages = info.geometry(source)
    counts = info.montage(source)
    assert montages and set(montages) <= set(counts)
    for modality, montage in montages.items():
        assert counts[modality] in (None, montage.n_channels), modality
        assert montage.source.strip()
        assert "doi" in montage.source or "10-20" in montage.source or "ninapro" in montage.source
        placed = [montage.locate(c) for c in range(montage.n_channels)]
        electrode_at = {montage.electrode(c): p for c, p in enumerate(placed)}
        assert len(set(electrode_at.values())) == montage.n_electrodes  # no two share a place


def test_ninapro_db2_places_the_ring_the_muscle_spots_and_the_accelerometers():
    montages = REGISTRY["ninapro-db2"].geometry(SOURCES["ninapro-db2"])
    emg, acc = montages["emg"], montages["acc"]
    ring_xy = [emg.locate(c)[1] for c in range(8)]
    assert {y for _, y in ring_xy} == {0.0}  # at the radio-humeral joint's height
    steps = np.diff([x for x, _ in ring_xy])
    assert np.allclose(steps, steps[0])  # equally spaced around the forearm
    labels = emg.parts[0].labels
    assert labels[8:] == ("FDS", "EDS", "biceps", "triceps")  # columns 9-12, as documented
    assert emg.locate(8)[1][1] > 0 and emg.locate(10)[1][1] < 0  # forearm spots, upper arm
    # acc: columns 3k..3k+2 are electrode k's three axes, at electrode k's place
    assert acc.n_channels == 36 and acc.locate(3 * 9 + 2) == emg.locate(9)


def test_db5_second_myo_is_tilted_by_22_5_degrees_and_db8_has_two_rows_of_eight():
    db5 = REGISTRY["ninapro-db5"].geometry(SOURCES["ninapro-db5"])["emg"]
    first = [_angle(db5.locate(c)[1]) for c in range(8)]
    second = [_angle(db5.locate(c)[1]) for c in range(8, 16)]
    assert np.allclose(np.diff(first), 45)
    assert np.allclose(np.array(second) - first, 22.5, atol=0.01)  # positions to 3 decimals
    db8 = REGISTRY["ninapro-db8"].geometry(SOURCES["ninapro-db8"])["emg"]
    assert [len(p.electrodes) for p in db8.parts] == [8, 8] and db8.n_channels == 16


def test_epn612_pod_4_lies_parallel_to_the_palm():
    montage = REGISTRY["epn612"].geometry(SOURCES["epn612"])["emg"]
    assert _angle(montage.locate(3)[1]) == pytest.approx(180.0)  # pod 4: the volar midline
    assert "pod 4" in montage.source and "convention" not in montage.source


def test_hdsemg_grids_put_channel_row_plus_8_col_in_its_cell_10_mm_apart():
    montage = REGISTRY["hdsemg"].geometry(SOURCES["hdsemg"])["emg"]
    extensor, flexor = montage.parts
    assert extensor.shape == flexor.shape == (8, 8)
    assert extensor.cells[3 + 8 * 5] == (3, 5) and extensor.xy[3 + 8 * 5] == (50.0, 30.0)
    assert montage.locate(64) == (1, (0.0, 0.0))  # the flexor grid's first channel


def test_openhdemg_grid_codes_follow_its_channel_tables():
    zero = grid_code("GR10MM0808", 0)
    # openhdemg's docstring table, orientation 0, row 0 (1-based): 57 49 41 33 25 17 9 1
    row0 = sorted((c for c, (r, _) in enumerate(zero.cells) if r == 0), key=lambda c: zero.cells[c])
    assert [c + 1 for c in row0] == [57, 49, 41, 33, 25, 17, 9, 1]
    turned = grid_code("GR10MM0808", 180)
    assert all(turned.cells[c] == (7 - r, 7 - k) for c, (r, k) in enumerate(zero.cells))
    tall = grid_code("GR08MM1305")  # 13 x 5, column-wise serpentine, one corner empty
    assert tall.shape == (13, 5) and len(tall.cells) == 64 and (0, 0) not in tall.cells
    assert tall.cells[12] == (12, 1) and tall.cells[24] == (0, 1)  # up the second column
    assert tall.xy[1][1] - tall.xy[0][1] == 8.0  # 8 mm apart
    with pytest.raises(ArgumentError, match=r"orientation \(degrees\) must be one of \(0, 180\)"):
        grid_code("GR10MM0808", 90)


def test_ten_ten_positions_match_the_spherical_construction_mne_ships():
    mne = pytest.importorskip("mne")  # with the braindecode extra (Python >= 3.11)
    montage = mne.channels.make_standard_montage("spherical_1010")
    for name, xyz in montage.get_positions()["ch_pos"].items():
        expected = np.asarray(xyz) / np.linalg.norm(xyz)
        assert np.allclose(scalp_position(name), expected, atol=1e-3), name


def test_scalp_names_are_read_as_edf_files_write_them_and_the_rest_is_refused():
    assert scalp_xy("EEG T3-REF") == scalp_xy("T7")
    assert scalp_xy("Cz") == (0.0, 0.0)
    assert scalp_xy("Fz")[1] > 0 and scalp_xy("T7")[0] < 0  # nose up, left ear left
    with pytest.raises(LayoutError, match="'EMG1'"):
        scalp(["C3", "EMG1"])


def test_a_layout_with_10_20_names_is_placed_and_a_subset_of_electrodes_is_not():
    layout = TokenLayout.channel_tokens({"eeg": 2}, channel_names=["C3", "C4"])
    assert montages_of(layout=layout)["eeg"].parts[0].labels == ("C3", "C4")
    db2 = {"dataset": "ninapro-db2", "root": "/data", "exercises": ["B"]}
    six = TokenLayout.channel_tokens({"emg": 6, "acc": 36})  # a model of 6 of 12 electrodes
    assert sorted(montages_of(db2, six)) == ["acc"]  # never a channel at another's place
    named = TokenLayout.channel_tokens({"emg": 2}, channel_names=["thumb", "wrist"])
    assert montages_of(layout=named) == {}  # names that are no 10-20 positions


def test_a_montage_refuses_parts_that_do_not_cover_its_electrodes_once():
    with pytest.raises(ArgumentError, match=r"electrodes 0\.\.n-1, each once"):
        Montage((ring("a", 4), ring("b", 4)))
    with pytest.raises(ArgumentError, match="distinct and inside"):
        grid("g", 2, 2, 10.0, cells=[(0, 0), (0, 0), (1, 1), (2, 2)])


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"electrodes": (0, 0), "xy": ((0.0, 0.0), (1.0, 0.0))}, "2 distinct electrodes need 2"),
        ({"electrodes": (0, 1), "xy": ((0.0, 0.0),)}, "need 2 positions, got 1"),
        ({"kind": "grid"}, "part 'p': a grid, and only a grid, has shape and cells"),
        ({"shape": (1, 2), "cells": ((0, 0), (0, 1))}, "a grid, and only a grid, has shape"),
    ],
)  # fmt: skip
def test_a_part_whose_fields_disagree_is_refused(fields, match):
    from emg_lens.geometry import Part

    part = {"kind": "ring", "electrodes": (0, 1), "xy": ((0.0, 0.0), (1.0, 0.0)), "units": "u"}
    with pytest.raises(ArgumentError, match=match):
        Part("p", **{**part, **fields})
