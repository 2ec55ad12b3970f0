"""The shared figure helpers: `save_figures` and the studies' `draw_box`; the study figures'
layout (explicit layer sets in the heatmap, a boxplot title clear of its legend)."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from emg_lens.errors import ArgumentError, StorageError
from emg_lens.plotting import figure_bytes, save_figures
from emg_lens.studies.ablation.grid import BASELINE, expand_grid
from emg_lens.studies.ablation.plots import boxplots, delta_heatmap
from emg_lens.studies.ablation.result import StudyResult
from emg_lens.studies.ablation.spec import StudySpec
from emg_lens.studies.plots import COLORS, draw_box
from tests.unit.storage_faults import full_disk


def test_save_figures_writes_png_and_svg_and_closes_each_figure(tmp_path):
    figures = {name: plt.subplots()[0] for name in ("first", "second")}
    written = save_figures(figures, tmp_path / "new" / "folder")
    assert [p.name for p in written] == ["first.png", "first.svg", "second.png", "second.svg"]
    assert written[0].read_bytes()[:4] == b"\x89PNG"
    assert "<svg" in written[1].read_text()
    assert not any(plt.fignum_exists(f.number) for f in figures.values())


@pytest.mark.unchecked
def test_save_figures_refuses_what_is_not_a_figure(tmp_path):
    with pytest.raises(ArgumentError, match=r"dict of name -> matplotlib Figure, got list"):
        save_figures([plt.figure()], tmp_path)
    with pytest.raises(ArgumentError, match=r"these are not: \{'table': 'str'\}"):
        save_figures({"table": "a.csv"}, tmp_path)
    assert list(tmp_path.iterdir()) == []
    plt.close("all")


def _heatmap() -> plt.Figure:
    fig, ax = plt.subplots()
    ax.imshow(np.random.default_rng(0).random((40, 40)))
    return fig


def test_a_disk_that_fills_while_a_figure_is_written_leaves_no_truncated_figure(
    tmp_path, monkeypatch
):
    save_figures({"boxplots": plt.subplots()[0]}, tmp_path)
    kept = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    heatmap = _heatmap()
    png = figure_bytes(heatmap, "png")
    # Room for the PNG and part of the SVG: the disk fills while heatmap.svg is written.
    with (
        full_disk(tmp_path, monkeypatch, budget=len(png) + 1000),
        pytest.raises(StorageError, match=r"heatmap\.svg.*ENOSPC") as info,
    ):
        save_figures({"heatmap": heatmap}, tmp_path)
    assert "--out" in str(info.value)  # what to do
    # heatmap.png whole, no heatmap.svg at all (not a truncated one under its final name), no
    # temporary file, and the figures written before untouched.
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {**kept, "heatmap.png": png}
    assert not plt.fignum_exists(heatmap.number)


def test_figures_are_reproducible_and_an_unchanged_one_is_not_rewritten(tmp_path):
    first = save_figures({"heatmap": _heatmap()}, tmp_path)
    stats = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in first}
    data = {p.name: p.read_bytes() for p in first}
    again = save_figures({"heatmap": _heatmap()}, tmp_path)
    assert {p.name: p.read_bytes() for p in again} == data  # PNG and SVG, byte for byte
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in again} == stats


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


# ----------------------------------------------------------------------------- study figures


def _result(modes, explicit=(), name="a study", heads=("all",), metric="accuracy") -> StudyResult:
    """A study result over 3 layers and 5 subjects with random values (no model is run)."""
    spec = StudySpec.from_dict(
        {
            "name": name,
            "models": "demo",
            "metric": metric,
            "interventions": [
                {"name": "uni", "edges": "unimodal"},
                {"name": "cross", "edges": "cross_modal"},
            ],
            "layers": {"modes": list(modes), "explicit": [list(e) for e in explicit]},
            "heads": list(heads),
        }
    )
    rng = np.random.default_rng(0)
    base = 0.0 if metric in ("kl", "flip_rate") else 0.9
    rows = [
        {
            "subject": subject,
            **c.row(),
            "metric": metric,
            "value": base if c is BASELINE else base + rng.uniform(-0.4, 0.0) * np.sign(base - 0.5),
        }
        for subject in range(1, 6)
        for c in [BASELINE, *expand_grid(spec, n_layers=3, n_heads=4)]
    ]
    return StudyResult.from_table(spec, pd.DataFrame(rows))


def _texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_explicit_layer_sets_get_a_heatmap_with_the_sets_as_columns():
    result = _result(["explicit"], explicit=[[0, 1], [1, 2]])
    assert "heatmap" in result.figures()
    plt.close("all")
    (ax,) = [ax for ax in delta_heatmap(result).axes if ax.get_images()]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0,1", "1,2"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["uni", "cross"]
    row = result.summary.set_index(["intervention", "layers"]).loc[("cross", "1,2")]
    assert _texts(ax)[3] == f"{row.delta_pct:+.1f}\n{row.stars}"  # row cross, column "1,2"

    mixed = _result(["individual", "explicit"], explicit=[[0, 2]])
    by_layer, by_set = [ax for ax in delta_heatmap(mixed).axes if ax.get_images()]
    assert [t.get_text() for t in by_layer.get_xticklabels()] == ["0", "1", "2"]
    assert [t.get_text() for t in by_set.get_xticklabels()] == ["0,2"]
    plt.close("all")


def test_the_heatmap_shows_every_layer_mode_and_hatches_what_is_not_significant():
    """Mode ``all`` (the demo's headline cell) gets a panel beside the per-layer one; every
    ``ns`` cell is hatched and no significant one is; the colour scale is symmetric."""
    result = _result(["individual", "all"])
    result.summary.loc[result.summary.index[:2], "stars"] = "**"  # two significant cells
    by_layer, every = [ax for ax in delta_heatmap(result).axes if ax.get_images()]
    assert [t.get_text() for t in every.get_xticklabels()] == ["0,1,2"]
    assert [t.get_text() for t in every.get_yticklabels()] == ["uni", "cross"]
    for ax in (by_layer, every):
        hatched = {(p.get_y() + 0.5, p.get_x() + 0.5) for p in ax.patches if p.get_hatch()}
        cells = [t for t in ax.texts if t.get_text()]
        for t in cells:
            x, y = t.get_position()
            assert ((y, x) in hatched) == t.get_text().endswith("ns"), t.get_text()
        low, high = ax.get_images()[0].get_clim()
        assert -low == high > 0
    only_input = _result(["all"])
    only_input.summary = only_input.summary.iloc[0:0]
    with pytest.raises(ArgumentError, match=r"this study has modes \[\]"):
        delta_heatmap(only_input)
    plt.close("all")


def test_boxplots_draw_head_sets_apart_and_name_them():
    """Three head sets of two interventions: six boxes at six x positions per layer, each
    series in the legend with its heads."""
    result = _result(["individual"], heads=["all", [0], [1, 2]])
    fig = boxplots(result)
    (ax,) = fig.axes
    xs = [p.get_path().vertices[:, 0] for p in ax.patches]  # the boxes (patch_artist)
    centres = [round(float(x.min() + x.max()) / 2, 6) for x in xs]
    assert len(centres) == 6 * 3 and len(set(centres)) == 6 * 3  # no two boxes share an x
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [
        *("uni · heads all", "uni · heads 0", "uni · heads 1,2"),
        *("cross · heads all", "cross · heads 0", "cross · heads 1,2"),
        "baseline mean",
    ]
    plt.close(fig)


def test_a_growing_metric_is_drawn_from_zero_in_its_units():
    """kl is 0 at the baseline and cannot fall: its heatmap scale runs from 0, its cells and
    colour bar are the absolute change in nats."""
    result = _result(["individual"], metric="kl")
    fig = delta_heatmap(result)
    (ax,) = [ax for ax in fig.axes if ax.get_images()]
    low, high = ax.get_images()[0].get_clim()
    assert low == 0 and high == pytest.approx(result.summary["delta"].abs().max())
    assert ax.get_images()[0].get_cmap().name == "Reds"
    assert "Δ kl vs baseline (nats)" in [a.get_ylabel() for a in fig.axes]
    first = result.summary.iloc[0]
    assert _texts(ax)[0] == f"{first.delta:+.2g}\n{first.stars}"
    assert result.summary["delta_pct"].isna().all()
    plt.close(fig)


@pytest.mark.parametrize("modes", [["explicit"], ["individual", "from_first", "explicit"]])
def test_boxplot_title_and_legend_do_not_overlap(modes):
    name = "isonet_table3_with_a_rather_long_study_name_for_one_panel"
    fig = boxplots(_result(modes, explicit=[[0, 1]], name=name))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    title = fig._suptitle.get_window_extent(renderer)
    (legend,) = fig.legends
    legend = legend.get_window_extent(renderer)
    assert not title.overlaps(legend)
    whole = fig.bbox
    for box in (title, legend):  # and neither is cut off at the figure's edge
        assert whole.x0 <= box.x0 and box.x1 <= whole.x1 and box.y1 <= whole.y1
    plt.close(fig)
