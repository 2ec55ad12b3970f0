"""emg_lens: mechanistic interpretability for biosignal transformers, on TransformerLens."""

from emg_lens.config import EncoderConfig
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
