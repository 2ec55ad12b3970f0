"""One exception family for every bad input emg_lens can be given.

Each error message names the field, file or value at fault and what would be accepted, so a
user can fix the input without reading the source.
"""

from __future__ import annotations

__all__ = [
    "ArgumentError",
    "CheckpointError",
    "CodeConsentError",
    "CodePathError",
    "ConfigError",
    "DataFormatError",
    "EdgeExpressionError",
    "EmgLensError",
    "ExportError",
    "IndexOutOfRangeError",
    "InputShapeError",
    "InputValueError",
    "LayoutError",
    "MissingDependencyError",
    "SpecError",
    "StudyError",
    "UnsupportedFeatureError",
    "UnsupportedReadoutError",
    "describe",
]


class EmgLensError(Exception):
    """Base class of every error emg_lens raises for bad input."""


class ArgumentError(EmgLensError, ValueError):
    """A function argument holds a value outside the accepted set."""


class IndexOutOfRangeError(ArgumentError, IndexError):
    """An index outside a sequence (e.g. `emg_lens.data.windows.WindowStore`): an
    `ArgumentError`, and an `IndexError`, so that iterating by index stops where it should."""


class ConfigError(EmgLensError, ValueError):
    """An `EncoderConfig` field (or preset name) holds a value that cannot work."""


class InputShapeError(EmgLensError, ValueError):
    """A signal batch or residual stream does not have the shape the model expects."""


class InputValueError(InputShapeError):
    """A signal batch whose values or dtype the model cannot use: NaN or inf, boolean, complex
    or text. An `InputShapeError` too, so one ``except`` clause catches every bad batch."""


class LayoutError(EmgLensError, ValueError):
    """A token layout, group name or mask does not fit the model it is used with."""


class SpecError(EmgLensError, ValueError):
    """A study spec or an edge-set expression is invalid."""


class StudyError(EmgLensError, RuntimeError):
    """A study could not produce a trustworthy result: a mask that did not take effect, a
    non-finite output, a subject another process holds for too long."""


class UnsupportedFeatureError(EmgLensError, NotImplementedError):
    """A TransformerLens feature the model cannot honour: a stacked weight or circuit on a model
    with no shared stack ``blocks``, or a hook flag (``use_split_qkv_input``,
    ``use_hook_mlp_in``) its blocks have no hook point for. The message says which and why."""


class UnsupportedReadoutError(UnsupportedFeatureError):
    """The model's classifier is not one linear map of one residual position, so it has no
    TransformerLens unembedding (``W_U``, ``tokens_to_residual_directions``); the message
    says why and points to the per-position map (`emg_lens.inspect.attribution.readout_map`)."""


class EdgeExpressionError(SpecError):
    """An edge-set expression string cannot be parsed (see `emg_lens.edges.parse`).

    The message names the expression and the column, shows a caret under the offending token
    and lists what would be accepted there; ``expression`` and ``column`` (1-based) hold the
    same facts for tools.
    """

    def __init__(
        self, message: str, *, expression: str | None = None, column: int | None = None
    ) -> None:
        super().__init__(message)
        self.expression = expression
        self.column = column


class DataFormatError(EmgLensError, ValueError):
    """A data file is missing, truncated, or not in the expected format."""


class CheckpointError(EmgLensError, ValueError):
    """A checkpoint cannot be loaded into the requested model."""


class MissingDependencyError(EmgLensError, ImportError):
    """An optional package a feature needs is not installed; the message says how to install
    it (``pip install emg_lens[extra]``) and ``name`` is the package."""


class ExportError(EmgLensError, RuntimeError):
    """An ONNX export (`emg_lens.export`) could not produce a file that computes what the
    model computes: torch's exporter or onnxruntime failed on it, or onnxruntime's output
    differs from the PyTorch (masked) forward by more than the tolerance. The message says by
    how much and at which batch size; no file is left under the requested name."""


class CodeConsentError(SpecError):
    """A study names Python files and the user has not consented to run them; the message
    lists each file with its resolved path and SHA-256 and says how to consent
    (``--allow-code``, ``allow_code=True``)."""


class CodePathError(SpecError):
    """A study's code reference points outside the study file's own folder tree (``..``, an
    absolute path, a link that leads out of it)."""


def describe(value: object) -> str:
    """How an error message names a bad value: ``dtype [shape]`` for a tensor or array, else
    its type.

    >>> import torch
    >>> describe(torch.zeros(2, 3)), describe([1])
    ('torch.float32 [2, 3]', 'list')
    """
    if hasattr(value, "dtype") and hasattr(value, "shape"):
        return f"{value.dtype} {list(value.shape)}"
    return type(value).__name__
