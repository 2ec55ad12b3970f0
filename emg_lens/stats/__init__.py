"""The statistics every study, inspection and report reads, below them all: they import nothing
of emg_lens but its errors.

- `compare`: the tests a study compares cells with (Mann–Whitney U, Wilcoxon, the exact
  sign-flip test), effect sizes, intervals, multiple-comparison corrections, the design's floor,
  and the p rule: `P_FLOOR` and `format_p`, how every table, console line and page prints a p;
- `units`: inference over the independent unit, trials rather than windows;
- `chance`: whether a model is above chance on its held-out trials;
- `metrics`: scoring a model's outputs, per window and per subject.

>>> format_p(0.0), P_FLOOR
('< 1e-16', 1e-16)
"""

from emg_lens.stats.compare import P_FLOOR, format_p

__all__ = ["P_FLOOR", "format_p"]
