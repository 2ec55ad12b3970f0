"""The statistics every study, inspection and report reads, below them all: they import nothing
of emg_lens but its errors (`compare`, `design`, `units`, `chance`, `metrics`; the layer:
docs/ARCHITECTURE.md). The package exports the p rule, `P_FLOOR` and `format_p`: how every
table, console line and page prints a p.

>>> format_p(0.0), P_FLOOR
('< 1e-16', 1e-16)
"""

from emg_lens.stats.compare import P_FLOOR, format_p

__all__ = ["P_FLOOR", "format_p"]
