"""Where channels lie on the body: electrode montages (`montage`: rings, grids, free points,
the scalp), 10-20 / 10-10 EEG positions (`scalp`), the ways a placement can be put on again
(`symmetry`: a ring's rotations and mirrors, a grid's flips, the scalp's left-right mirror)
and the figures drawn on them (`draw`).

The datasets' placements live with their readers (`emg_lens.data.formats`), each saying
where it comes from; `emg_lens.data.datasets.montages_of` finds a data source's, or a layout's
by its 10-20 channel names. This package imports no torch; `draw` imports matplotlib, on the
first use of its figures here."""

from typing import TYPE_CHECKING

from emg_lens.geometry.montage import (
    GRID_CODES,
    ORDERED_GRID_CODES,
    Montage,
    Part,
    grid,
    grid_code,
    grid_electrodes,
    grid_halves,
    points,
    ring,
    scalp,
)
from emg_lens.geometry.symmetry import ChannelMap, montage_maps
from emg_lens.geometry.ten_twenty import scalp_position, scalp_xy, standard_name

if TYPE_CHECKING:
    from emg_lens.geometry.draw import plot_channel_value_rows, plot_channel_values

__all__ = [
    "GRID_CODES",
    "ORDERED_GRID_CODES",
    "ChannelMap",
    "Montage",
    "Part",
    "grid",
    "grid_code",
    "grid_electrodes",
    "grid_halves",
    "montage_maps",
    "plot_channel_value_rows",
    "plot_channel_values",
    "points",
    "ring",
    "scalp",
    "scalp_position",
    "scalp_xy",
    "standard_name",
]


def __getattr__(name: str):
    if name in ("plot_channel_value_rows", "plot_channel_values"):
        from emg_lens.geometry import draw

        return getattr(draw, name)
    raise AttributeError(f"module 'emg_lens.geometry' has no attribute {name!r}")
