"""The shared figure helpers: `save_figures` and the studies' `draw_box`."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from emg_lens.errors import ArgumentError
from emg_lens.plotting import save_figures
from emg_lens.studies.plots import COLORS, draw_box


def test_save_figures_writes_png_and_svg_and_closes_each_figure(tmp_path):
    figures = {name: plt.subplots()[0] for name in ("first", "second")}
    written = save_figures(figures, tmp_path / "new" / "folder")
    assert [p.name for p in written] == ["first.png", "first.svg", "second.png", "second.svg"]
    assert written[0].read_bytes()[:4] == b"\x89PNG"
    assert "<svg" in written[1].read_text()
    assert not any(plt.fignum_exists(f.number) for f in figures.values())


def test_save_figures_refuses_what_is_not_a_figure(tmp_path):
    with pytest.raises(ArgumentError, match=r"dict of name -> matplotlib Figure, got list"):
        save_figures([plt.figure()], tmp_path)
    with pytest.raises(ArgumentError, match=r"these are not: \{'table': 'str'\}"):
        save_figures({"table": "a.csv"}, tmp_path)
    assert list(tmp_path.iterdir()) == []
    plt.close("all")


def test_draw_box_places_slots_side_by_side_and_jitters_only_when_asked():
    fig, ax = plt.subplots()
    xs = [draw_box(ax, np.array([0.5, 0.6, 0.9]), 2, j, 4) for j in range(4)]
    np.testing.assert_allclose(xs, [1.7, 1.9, 2.1, 2.3])
    assert len(ax.collections) == 0  # no dots without jitter
    values = np.array([0.1, 0.2, 0.3, 0.4, 5.0])
    x = draw_box(ax, values, 0, 1, 2, jitter=np.random.default_rng(0))
    (dots,) = ax.collections
    offsets = dots.get_offsets()
    np.testing.assert_allclose(offsets[:, 1], values)  # every value, the outlier too
    assert np.all(np.abs(offsets[:, 0] - x) <= 0.15 * 0.4)  # within the box's width
    np.testing.assert_allclose(dots.get_facecolor()[0][:3], COLORS[1])
    with pytest.raises(ArgumentError, match=r"slot must be in 0..n_slots-1 = 0..1, got 2"):
        draw_box(ax, values, 0, 2, 2)
    plt.close(fig)
