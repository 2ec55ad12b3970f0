"""emg_lens: mechanistic interpretability for biosignal transformers, on TransformerLens."""

# No `from __future__` import here: it would import `__future__` before the working directory
# is dropped from the search path below (a `__future__.py` there would run).
import os as _os  # already imported by Python's start-up: never read from the working directory
import sys as _sys


def _forget_the_working_directory() -> None:
    """Under ``python -m emg_lens.cli`` (and torchrun's workers), Python puts the working
    directory first on ``sys.path``, so a ``torch.py`` lying where a user runs a downloaded
    study would run in place of the real package: while ``-m`` locates its module
    (``sys.argv[0] == "-m"``), drop that entry. A script or a notebook is left alone: there
    the working directory is the user's own code."""
    if _sys.argv[:1] != ["-m"] or not _sys.path:
        return
    try:
        cwd = _os.getcwd()
    except OSError:  # the working directory was deleted: nothing there to import
        return
    first = _sys.path[0]
    if first == "" or _os.path.realpath(first) == _os.path.realpath(cwd):
        del _sys.path[0]


_forget_the_working_directory()

from typing import TYPE_CHECKING, Any  # noqa: E402  (after the search path is safe)

from emg_lens.errors import (  # noqa: E402
    ArgumentError,
    CheckpointError,
    ConfigError,
    DataFormatError,
    EmgLensError,
    IndexOutOfRangeError,
    InputShapeError,
    LayoutError,
    MissingDependencyError,
    SpecError,
)

if TYPE_CHECKING:
    from emg_lens.config import EncoderConfig
    from emg_lens.layout import TokenLayout

from emg_lens._version import __version__  # noqa: E402

# The demo's recipe (`emg-lens demo`): what its models are, cut and trained with, and what the
# notebooks and tests that train "a demo model" share.
DEMO_MODEL = {"n_layers": 2, "n_heads": 8}
"""EncoderConfig overrides of the "demo" preset for `emg-lens demo`: two layers are enough for
the mean-pooled head to learn the interaction gestures on demo_setup's 25 tokens."""
DEMO_CUT = "cross_modal | from_cls"
"""What the demo's study cuts and its models learn to do without (edge dropout): every route
between the modalities, the direct cross-modal edges and the detour through CLS."""
DEMO_EPOCHS = 40
"""The demo's training epochs (`DEMO_TRAIN` says how they were chosen)."""
DEMO_TRAIN = {
    "lr": 6e-3,
    "anneal_fraction": 1.0,
    "edge_dropout": 0.5,
    "dropout_edges": DEMO_CUT,
    "refits": 2,
    "refit_below": 0.9,
}
"""TrainConfig fields of the demo's training (besides epochs, seed and progress, which the
command line sets): what `emg-lens demo` and the tests that train "a demo model" share. How
they were chosen (a model can stall with one of the two XOR bits learned): docs/concepts.md,
"What the synthetic data plant"."""

__all__ = [
    "DEMO_CUT",
    "DEMO_EPOCHS",
    "DEMO_MODEL",
    "DEMO_TRAIN",
    "ArgumentError",
    "CheckpointError",
    "ConfigError",
    "DataFormatError",
    "EmgLensError",
    "EncoderConfig",
    "IndexOutOfRangeError",
    "InputShapeError",
    "LayoutError",
    "MissingDependencyError",
    "SpecError",
    "TokenLayout",
    "__version__",
]

# Imported on first use, so `import emg_lens.cli` (and `emg-lens --help`) loads no torch.
_LAZY = {"EncoderConfig": "emg_lens.config", "TokenLayout": "emg_lens.layout"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'emg_lens' has no attribute {name!r}")
