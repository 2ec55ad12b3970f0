"""Edge sets; the code moves into modules of this package next (see algebra.py for now)."""

from emg_lens.edges.algebra import *  # noqa: F403
from emg_lens.edges.algebra import __all__  # noqa: F401
