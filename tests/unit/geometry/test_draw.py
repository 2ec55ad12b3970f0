"""Figures on the geometry, checked from what matplotlib drew: every electrode at its
placement with its value, the colour bar spanning the data, the units and the subject count
said, chords for exactly the edges given, and a matrix ordered by group."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PathCollection, QuadMesh
from matplotlib.patches import FancyArrowPatch

from emg_lens.data.formats.hdsemg import hdsemg_montage
from emg_lens.data.formats.ninapro_db2 import db2_montage
from emg_lens.errors import ArgumentError
from emg_lens.geometry import Montage, ring, scalp
from emg_lens.geometry.draw import (
    plot_channel_groups,
    plot_channel_matrix,
    plot_channel_value_rows,
    plot_channel_values,
    plot_circle,
)


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _colorbar(fig) -> tuple[float, float]:
    bar = fig.axes[-1]  # the colour bar's axes
    return tuple(float(v) for v in bar.get_ylim())


def _scatters(ax) -> list[PathCollection]:
    return [c for c in ax.collections if isinstance(c, PathCollection)]


def test_each_channel_is_drawn_at_its_placement_with_its_value():
    rng = np.random.default_rng(0)
    montages = {"emg": db2_montage(), "acc": db2_montage(4, axes=3)}
    values = {"emg": rng.normal(size=12), "acc": rng.normal(size=12)}
    fig = plot_channel_values(values, montages, title="effect", units="Δ accuracy (points)",
                              n_subjects=8, symmetric=True)  # fmt: skip
    for ax, modality in zip(fig.axes[:2], ("emg", "acc")):
        (dots,) = _scatters(ax)
        montage = montages[modality]
        np.testing.assert_allclose(dots.get_offsets(), montage.parts[0].xy)
        per_electrode = values[modality].reshape(montage.n_electrodes, montage.axes).mean(1)
        np.testing.assert_allclose(dots.get_array(), per_electrode)  # acc: the 3 axes averaged
    top = max(abs(np.concatenate([values["emg"], values["acc"].reshape(4, 3).mean(1)])))
    assert _colorbar(fig) == pytest.approx((-top, top))  # symmetric: spans the data about 0
    assert fig.axes[-1].get_ylabel() == "Δ accuracy (points)"
    assert "mean over 8 subjects" in fig._suptitle.get_text()


def test_a_grid_is_a_heatmap_of_each_channel_in_its_cell():
    montage = hdsemg_montage()
    values = np.arange(128, dtype=float)
    fig = plot_channel_values({"emg": values}, {"emg": montage}, title="RMS", units="mV")
    for ax, part in zip(fig.axes[:2], montage.parts):
        (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
        image = np.asarray(mesh.get_array()).reshape(part.shape)
        for electrode, (r, c) in zip(part.electrodes, part.cells):
            assert image[r, c] == values[electrode]
        assert ax.get_ylim()[0] > ax.get_ylim()[1]  # row 0 at the top, as laid out
    assert _colorbar(fig) == pytest.approx((0.0, 127.0))  # sequential: min to max


def test_rings_and_the_scalp_place_their_electrodes_and_label_them():
    band = Montage((ring("Myo", 8, first=45.0),))
    head = Montage((scalp(["Fz", "C3", "Cz", "C4", "Pz"]),))
    fig = plot_channel_values({"emg": np.arange(8.0), "eeg": np.arange(5.0)},
                              {"emg": band, "eeg": head}, title="t", units="u")  # fmt: skip
    for ax, montage in zip(fig.axes[:2], (band, head)):
        (dots,) = _scatters(ax)
        np.testing.assert_allclose(dots.get_offsets(), montage.parts[0].xy)
    texts = {t.get_text() for t in fig.axes[1].texts}
    assert {"Fz", "C3", "Cz", "C4", "Pz"} <= texts
    assert {"dorsal", "volar", "radial", "ulnar"} <= {t.get_text() for t in fig.axes[0].texts}


def test_values_without_a_placement_or_finite_value_are_refused():
    with pytest.raises(ArgumentError, match=r"no electrode placement for \['acc'\]"):
        plot_channel_values({"acc": [1.0]}, {}, title="t", units="u")
    with pytest.raises(ArgumentError, match="one per channel"):
        plot_channel_values({"emg": [1.0, 2.0]}, {"emg": Montage((ring("r", 3),))},
                            title="t", units="u")  # fmt: skip
    with pytest.raises(ArgumentError, match="no finite value"):
        plot_channel_values({"emg": [np.nan] * 3}, {"emg": Montage((ring("r", 3),))},
                            title="t", units="u")  # fmt: skip


def test_a_circle_plot_draws_one_chord_per_edge_and_a_colour_bar_spanning_them():
    weights = np.array([[0.5, 0.2, 0.0], [0.0, 0.1, 0.9], [0.4, np.nan, 0.3]])
    fig = plot_circle(weights, ["cls", "emg", "acc"], title="kept", units="share",
                      n_subjects=5)  # fmt: skip
    ax = fig.axes[0]
    chords = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    assert len(chords) == 3  # 0.2, 0.9, 0.4: no zero, NaN or diagonal
    assert _colorbar(fig) == pytest.approx((0.2, 0.9))
    labels = {t.get_text() for t in ax.texts}
    assert "emg\n(within 0.1)" in labels  # the diagonal said beside its node
    assert "mean over 5 subjects" in ax.get_title()


def test_a_channel_matrix_is_ordered_by_group_with_its_bands():
    labels, groups = ["a0", "b0", "a1", "c0"], ["a", "b", "a", "c"]
    matrix = np.arange(16.0).reshape(4, 4)
    fig = plot_channel_matrix(matrix, labels, groups, title="QK", units="score")
    ax = fig.axes[0]
    order = [0, 2, 1, 3]  # the group a first, then b, then c
    np.testing.assert_array_equal(ax.images[0].get_array(), matrix[np.ix_(order, order)])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a0", "a1", "b0", "c0"]
    assert len([p for p in ax.patches]) == 2 * 3  # a band per group along both axes
    assert _colorbar(fig) == pytest.approx((0.0, 15.0))


def test_value_rows_draw_each_value_at_its_electrode_with_a_colour_bar_per_row():
    montage = Montage((ring("band", 4),))
    rows = {"signal": {"a": [1.0, 2, 3, 4], "b": [4.0, 3, 2, 1]},
            "effect": {"a": [0.0, 0, 0, 2], "b": [-1.0, 0, 0, 0]}}  # fmt: skip
    fig = plot_channel_value_rows(rows, montage, title="t", units={"signal": "s", "effect": "e"},
                                  symmetric={"effect"})  # fmt: skip
    panels = [
        ax for ax in fig.axes if ax.collections and isinstance(ax.collections[0], PathCollection)
    ]
    assert len(panels) == 4
    drawn = panels[1].collections[0]  # row "signal", column "b"
    np.testing.assert_allclose(drawn.get_offsets()[0], montage.parts[0].xy[0])
    np.testing.assert_allclose(drawn.norm(drawn.get_array()), (np.array([4, 3, 2, 1]) - 1) / 3)
    effect = panels[2].collections[0].norm
    assert (effect.vmin, effect.vmax) == (-2.0, 2.0)  # symmetric about 0, over the row
    plt.close(fig)
    with pytest.raises(ArgumentError, match="same columns"):
        plot_channel_value_rows({"x": {"a": [1.0] * 4}, "y": {"b": [1.0] * 4}}, montage,
                                title="t", units={"x": "", "y": ""})  # fmt: skip
    with pytest.raises(ArgumentError, match="no unit for rows"):
        plot_channel_value_rows(rows, montage, title="t", units={"signal": "s"})


def test_groups_are_drawn_in_their_colours_and_bad_indices_refused():
    montage = Montage((ring("band", 4),))
    fig = plot_channel_groups({"cut": [0, 1, -1, 1]}, montage, groups=["a", "b"], title="t")
    drawn = fig.axes[0].collections[0]
    colours = drawn.cmap(drawn.norm(drawn.get_array()))
    assert np.isnan(np.ma.filled(drawn.get_array(), np.nan)[2])  # -1: in no group, blank
    np.testing.assert_allclose(colours[1], colours[3])
    assert not np.allclose(colours[0], colours[1])
    plt.close(fig)
    with pytest.raises(ArgumentError, match="1 to 7 groups"):
        plot_channel_groups({"cut": [0] * 4}, montage, groups=[], title="t")


@pytest.mark.parametrize(
    ("draw", "match"),
    [
        (
            lambda: plot_channel_value_rows(
                {"x": {"a": [1.0] * 4}}, Montage((ring("r", 2), ring("s", 2).shifted(2))),
                title="t", units={"x": ""},
            ),
            "rows are drawn on a one-part montage, got 2 parts",
        ),
        (
            lambda: plot_circle(np.zeros((2, 3)), ["a", "b"], title="t", units="u"),
            r"weights must be 2 x 2 \(one row per label\), got \(2, 3\)",
        ),
        (
            lambda: plot_circle(np.zeros((2, 2)), ["a", "b"], groups=["g"], title="t", units="u"),
            r"groups needs one entry per label \(2\), got 1",
        ),
        (
            lambda: plot_channel_matrix(np.zeros((2, 2)), ["a", "b"], ["g"], title="t", units="u"),
            r"matrix must be 2 x 2 with a group per label, got \(2, 2\) and 1 groups",
        ),
    ],
)  # fmt: skip
def test_drawings_of_mismatched_shapes_are_refused(draw, match):
    with pytest.raises(ArgumentError, match=match):
        draw()
