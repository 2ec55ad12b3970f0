"""The one rule for printing a p-value, shared by every table, console line and report page.

A p below `P_FLOOR` is a p that underflowed (a double's tail has no digits left there): it is
printed as the bound, ``< 1e-16``, never as ``0``.
"""

from __future__ import annotations

import numpy as np

P_FLOOR = 1e-16
"""Below it a printed p is the bound ``< 1e-16``."""


def format_p(p: float, digits: int = 3, name: str = "") -> str:
    """A p-value as every table and console prints it: ``digits`` significant digits, in
    scientific notation below 1e-4 (Python's ``g``), never ``0``: below `P_FLOOR` (an exact
    0 is a p that underflowed) the bound ``< 1e-16``; ``n/a`` for NaN. With a ``name``, the
    text a sentence says: ``p_corr = 0.0078``, ``p < 1e-16``.

    >>> format_p(0.000311), format_p(2.2e-5, 2), format_p(1e-300), format_p(float("nan"))
    ('0.000311', '2.2e-05', '< 1e-16', 'n/a')
    >>> format_p(0.0078125, 2, "p_corr"), format_p(0.0, 2, "p")
    ('p_corr = 0.0078', 'p < 1e-16')
    """
    p = float(p)
    if not np.isfinite(p):
        text = "n/a"
    elif p < P_FLOOR:
        text = f"< {P_FLOOR:.0e}"
    else:
        text = f"{p:.{digits}g}"
    if not name:
        return text
    return f"{name} {text}" if text.startswith("<") else f"{name} = {text}"
