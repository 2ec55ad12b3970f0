"""emg_lens: mechanistic interpretability for biosignal transformers, on TransformerLens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from emg_lens.errors import (
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

__version__ = "0.1.0"

__all__ = [
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
