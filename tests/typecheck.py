"""A pytest plugin (pyproject's addopts: ``-p tests.typecheck``) that turns on the runtime type
and shape checks of emg_lens's exported names (`emg_lens._hints.checked`): loaded before any
conftest, doctest collection or pytest-xdist worker imports emg_lens, and inherited by the
workers' environment. ``EMG_LENS_TYPECHECK=0`` in the environment keeps them off."""

import os

os.environ.setdefault("EMG_LENS_TYPECHECK", "1")
