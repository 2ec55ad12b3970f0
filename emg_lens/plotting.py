"""Saving figures: every figure emg_lens writes is a PNG (to look at) and an SVG (to edit),
drawn reproducibly (the SVG carries no date and fixed element ids) and written atomically only
where its bytes changed (`emg_lens._io.write_if_changed`)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.transforms import Bbox

from emg_lens._io import make_folder, write_if_changed
from emg_lens.errors import ArgumentError, describe

FIGURE_FORMATS = ("png", "svg")
DPI = 150
SVG_SALT = "emg_lens"  # fixed ids in SVG files (matplotlib draws random ones otherwise)


def figure_bytes(fig: plt.Figure, fmt: str, *, bbox: Bbox | None = None) -> bytes:
    """``fig`` drawn as a ``fmt`` file (``"png"``, ``"svg"``), reproducibly: the same figure
    gives the same bytes. Cropped to ``bbox`` (inches), or by default to the figure's tight
    bounding box, padded.

    >>> fig, ax = plt.subplots()
    >>> figure_bytes(fig, "png") == figure_bytes(fig, "png"), figure_bytes(fig, "png")[:4]
    (True, b'\\x89PNG')
    >>> plt.close(fig)
    """
    buffer = io.BytesIO()
    # No creation date in the SVG's metadata (PNG has none): an unchanged figure, same file.
    metadata = {"Date": None} if fmt == "svg" else None
    crop = "tight" if bbox is None else bbox
    with plt.rc_context({"svg.hashsalt": SVG_SALT}):
        fig.savefig(buffer, format=fmt, dpi=DPI, bbox_inches=crop, metadata=metadata)
    return buffer.getvalue()


def _lay_out(fig: plt.Figure) -> Bbox:
    """Lay ``fig`` out once, as saving it would at `DPI`, and freeze that layout: the crop
    every format is drawn to (each format otherwise repeats that dry-run draw, a third of the
    saving time on the inspection's figures)."""
    dpi = fig.dpi
    fig.set_dpi(DPI)
    try:
        fig.draw_without_rendering()
        crop = fig.get_tightbbox().padded(plt.rcParams["savefig.pad_inches"])
    finally:
        fig.set_dpi(dpi)
    fig.set_layout_engine(None)
    return crop


def save_figures(figures: Mapping[str, plt.Figure], out_dir: str | Path) -> list[Path]:
    """Write each figure as ``out_dir/<name>.png`` and ``.svg`` (the folder created), close
    it, and return the paths (a file already holding the same bytes is left as it is).

    >>> import tempfile
    >>> fig, ax = plt.subplots()
    >>> paths = save_figures({"demo": fig}, tempfile.mkdtemp())
    >>> [p.name for p in paths], plt.fignum_exists(fig.number)
    (['demo.png', 'demo.svg'], False)
    """
    if not isinstance(figures, Mapping):
        raise ArgumentError(
            f"save_figures needs a dict of name -> matplotlib Figure, got {describe(figures)}"
        )
    if bad := {name: describe(f) for name, f in figures.items() if not isinstance(f, plt.Figure)}:
        raise ArgumentError(f"save_figures needs matplotlib Figures; these are not: {bad}")
    out = make_folder(out_dir)
    written = []
    try:
        for name, fig in figures.items():
            crop = _lay_out(fig)
            for ext in FIGURE_FORMATS:
                written.append(out / f"{name}.{ext}")
                write_if_changed(written[-1], figure_bytes(fig, ext, bbox=crop))
    finally:  # also when a write fails: no figure is left open
        for fig in figures.values():
            plt.close(fig)
    return written
