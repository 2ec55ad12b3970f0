"""Export a model, with an edge mask baked in, to an ONNX file that runs with no hooks.

`export_onnx` (and `export_checkpoint`, behind ``emg-lens export``) compiles the edge set on the
model's layout, holds the masks as constants of a small wrapper module and has torch trace it
(TorchScript, ``dynamo=False``: why, docs/ARCHITECTURE.md) into ONNX with a dynamic batch axis,
kept only where onnxruntime matches the PyTorch masked forward (`export_onnx`). What a file
holds and computes: docs/guide/export.md.

>>> import tempfile
>>> from emg_lens.config import EncoderConfig
>>> from emg_lens.models import IsoNet
>>> model = IsoNet(EncoderConfig.preset("tiny", seed=0)).eval()
>>> out = Path(tempfile.mkdtemp()) / "isonet.onnx"
>>> result = export_onnx(model, out, edges="cross_modal")
>>> result.max_abs_diff <= 1e-5, result.output_names, result.layers
(True, ('logits',), (0, 1))
>>> import onnx
>>> {p.key: p.value for p in onnx.load(str(out)).metadata_props}["edges"]
'cross_modal'
"""

from __future__ import annotations

import contextlib
import importlib
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import jaxtyping
import numpy as np
import torch
from torch import nn

from emg_lens._hints import checked
from emg_lens._io import atomic_write, file_digest, make_folder
from emg_lens.checkpoints import WEIGHTS, load_checkpoint
from emg_lens.edges import parse
from emg_lens.errors import (
    ArgumentError,
    EmgLensError,
    LayoutError,
    MissingDependencyError,
    StudyError,
    check_ints,
    check_number,
    check_type,
    describe,
    warn_caller,
)
from emg_lens.hooks import compile_edges
from emg_lens.models.base import (
    ATTENTION_HOOKS,
    HookedBiosignalModel,
    eval_mode,
    require,
)
from emg_lens.user_code import load_model

__all__ = [
    "EXPORT_PACKAGES",
    "METADATA_KEYS",
    "PARITY_ATOL",
    "PARITY_BATCH_SIZES",
    "ExportResult",
    "export_checkpoint",
    "export_edge_masks",
    "export_onnx",
]

PARITY_ATOL = 1e-5
"""Largest accepted max |onnxruntime - PyTorch| over every output entry."""
PARITY_BATCH_SIZES = (1, 3)
"""Batch sizes of the parity check; the trace uses `TRACE_BATCH`, so both prove the dynamic
axis."""
TRACE_BATCH = 2
OPSET = 17  # LayerNormalization's first opset; onnxruntime >= 1.12 runs it
EXPORT_PACKAGES = ("onnx", "onnxruntime")
"""What the export imports (the ``[export]`` extra; its onnxscript serves only torch's
dynamo exporter, which this module does not use)."""
INSTALL_HINT = 'pip install ".[export]" in the emg_lens clone'
METADATA_KEYS = (
    "emg_lens_version",
    "model_class",
    "edges",
    "layers",
    "return_type",
    "source_checkpoint",
    "source_weights_sha256",
)
"""The file's ``metadata_props``: always the first five; the ``source_*`` two when exported
from a checkpoint folder (`export_checkpoint`)."""
INPUT_NAME = "signals"


@checked
@dataclass(frozen=True)
class ExportResult:
    """What `export_onnx` wrote and how closely it matches the PyTorch forward.

    ``diffs`` maps each parity batch size to max |onnxruntime - PyTorch| over its outputs;
    ``max_abs_diff`` is the largest of them. ``edges`` is the edge set's canonical string (None
    unmasked) and ``layers`` the blocks in which the file cuts edges (empty if none)."""

    path: Path
    size_bytes: int
    model_class: str
    edges: str | None
    layers: tuple[int, ...]
    return_type: str | None
    output_names: tuple[str, ...]
    diffs: dict[int, float]
    max_abs_diff: float
    atol: float
    opset: int
    was_training: bool
    metadata: Mapping[str, str] = field(default_factory=dict)  # the file's metadata_props

    def summary(self) -> str:
        """One line for people: file, size, mask, parity.

        >>> r = ExportResult(Path("m.onnx"), 2_500_000, "IsoNet", "cross_modal", (0, 1),
        ...                  "logits", ("logits",), {1: 1e-8, 3: 2e-8}, 2e-8, 1e-5, 17, False)
        >>> r.summary()
        'm.onnx (2.5 MB): IsoNet, edges cross_modal cut in layers 0, 1; onnxruntime vs PyTorch max |diff| 2e-08 at batch sizes 1, 3 (tolerance 1e-05)'
        """  # noqa: E501
        if self.edges is None:
            masked = "unmasked"
        elif not self.layers:
            masked = f"edges {self.edges}, which cut nothing here"
        else:
            masked = f"edges {self.edges} cut in layers {', '.join(map(str, self.layers))}"
        sizes = ", ".join(map(str, self.diffs))
        return (
            f"{self.path} ({self.size_bytes / 1e6:.1f} MB): {self.model_class}, {masked}; "
            f"onnxruntime vs PyTorch max |diff| {self.max_abs_diff:.3g} at batch sizes {sizes} "
            f"(tolerance {self.atol:g})"
        )


@checked
def export_checkpoint(
    checkpoint: str | Path, out: str | Path, *, builder: Any = None, **kwargs: Any
) -> ExportResult:
    """Load the checkpoint folder ``checkpoint`` on the CPU (the user's modules built by
    ``builder``: `emg_lens.user_code.load_model`) and `export_onnx` it to ``out`` with
    ``kwargs``.

    >>> import tempfile
    >>> from emg_lens.checkpoints import save_checkpoint
    >>> from emg_lens.config import EncoderConfig
    >>> from emg_lens.models import TinyMyo
    >>> cfg = EncoderConfig.preset("tinymyo", d_model=16, d_head=4, n_heads=4, d_mlp=32,
    ...     n_layers=2, modalities={"emg": 3}, n_samples=20, patch_samples=5, seed=0)
    >>> folder = save_checkpoint(TinyMyo(cfg), tempfile.mkdtemp())
    >>> r = export_checkpoint(folder, folder / "tinymyo.onnx", edges="cross_channel", layers=[1])
    >>> r.layers, r.max_abs_diff <= 1e-5, r.metadata["layers"]
    ((1,), True, '1')
    """
    if builder is None:
        model = load_checkpoint(checkpoint, device="cpu")
    else:
        model = load_model(checkpoint, builder, device="cpu")
    source = {
        "source_checkpoint": str(checkpoint),
        "source_weights_sha256": file_digest(Path(checkpoint) / WEIGHTS),
    }
    metadata = {**source, **(kwargs.pop("metadata", None) or {})}
    return export_onnx(model, out, metadata=metadata, **kwargs)


@checked
def export_onnx(
    model: HookedBiosignalModel,
    out: str | Path,
    *,
    edges: Any = None,
    layers: Iterable[int] | None = None,
    return_type: str | None = "logits",
    batch_sizes: Sequence[int] = PARITY_BATCH_SIZES,
    atol: float = PARITY_ATOL,
    opset: int = OPSET,
    metadata: Mapping[str, str] | None = None,
) -> ExportResult:
    """Write ``model`` (on the CPU, in float32, no hooks attached) with the edge mask ``edges``
    (an `EdgeSet`, its string form, or a compiled bool mask; None: unmasked) on ``layers``
    (default: every block) baked in to the ONNX file ``out``, kept only where it matches the
    PyTorch forward within ``atol`` at ``batch_sizes``. ``metadata`` adds ``metadata_props``.

    Refused before anything is written: edges on a model without attention
    (`UnsupportedFeatureError`) or without a shared stack ``blocks`` (`LayoutError`), edges that
    do not compile on the layout (`LayoutError`), ``layers`` out of range or without edges,
    hooks attached, a model not on the CPU or not float32 (`ArgumentError`), onnx or
    onnxruntime missing (`MissingDependencyError`)."""
    ort, onnx = _require_export_packages()
    path = _check_out(out)
    _check_exportable(model)
    batch_sizes = tuple(check_ints(batch_sizes, "batch_sizes (such as (1, 3))", minimum=1))
    check_number(atol, "atol", "a finite number >= 0 such as 1e-5", lambda v: 0 <= v < np.inf)
    compiled = _compile(model, edges, layers)
    baked = _baked(compiled)
    props = _metadata(model, edges, baked, return_type, metadata)
    was_training = model.training
    if was_training:
        warn_caller(
            f"{type(model).__name__} is in training mode; it is exported in eval mode "
            "(dropout and drop-path off), the forward that inference computes"
        )
    with eval_mode(model), torch.no_grad():
        reference = _Reference(model, compiled, return_type)
        wrapper = _MaskedForward(model, baked, return_type).eval()
        names = _output_names(reference(model.example_input(1)), return_type)
        diffs: dict[int, float] = {}

        def write(tmp: Path) -> None:
            _trace(wrapper, model.example_input(TRACE_BATCH), tmp, names, opset)
            _write_metadata(onnx, tmp, props)
            diffs.update(_parity(ort, tmp, path, reference, names, batch_sizes, atol))

        atomic_write(path, write)
    return ExportResult(
        path=path,
        size_bytes=path.stat().st_size,
        model_class=type(model).__name__,
        edges=None if edges is None else _edges_string(edges),
        layers=tuple(sorted(baked)),
        return_type=return_type,
        output_names=names,
        diffs=diffs,
        max_abs_diff=max(diffs.values()),
        atol=atol,
        opset=opset,
        was_training=was_training,
        metadata=props,
    )


@checked
def export_edge_masks(
    model: HookedBiosignalModel, edges: Any, layers: Iterable[int] | None = None
) -> dict[int, torch.Tensor]:
    """The ``{layer: mask}`` an export bakes in: `compile_edges` on the checked ``layers``,
    without the layers where it cuts nothing, one head row where every head is masked alike.

    >>> from emg_lens.config import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny"))
    >>> {layer: list(m.shape) for layer, m in export_edge_masks(model, "cross_modal").items()}
    {0: [1, 7, 7], 1: [1, 7, 7]}
    >>> export_edge_masks(model, "cross_modal", layers=[2])
    Traceback (most recent call last):
    ...
    emg_lens.errors.LayoutError: layers (blocks of this IsoNet: n_layers=2) must be one or more integers in 0..1, got [2]
    """  # noqa: E501
    return _baked(_compile(model, edges, layers))


def _compile(
    model: HookedBiosignalModel, edges: Any, layers: Iterable[int] | None
) -> dict[int, torch.Tensor]:
    """``compile_edges(edges, model, layers)`` on the checked layers (nothing for no edges).
    An edge set naming (`layers`) a block the model lacks, or one that ``layers`` leaves out,
    is refused: there it would cut nothing, and the file would be exported unmasked."""
    if edges is None:
        if layers is not None:
            raise ArgumentError(f"layers={layers!r} without edges: pass both, or neither")
        return {}
    chosen = _check_layers(model, layers)
    if not isinstance(edges, torch.Tensor):
        edge_set = parse(edges)
        edge_set.check_layers(model.cfg.n_layers)
        if left_out := sorted(edge_set.layer_indices() - set(chosen)):
            raise LayoutError(
                f"edge set {edge_set} names {left_out}, which layers={chosen} (--layers) omit"
            )
    return compile_edges(edges, model, chosen)


def _baked(masks: Mapping[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """The layers whose mask cuts something, each with one head row where all heads agree."""
    return {
        layer: mask[:1] if bool((mask == mask[:1]).all()) else mask
        for layer, mask in masks.items()
        if bool(mask.any())
    }


def _require_export_packages() -> tuple[ModuleType, ModuleType]:
    """Import `EXPORT_PACKAGES` (onnxruntime and onnx returned), or say how to install them."""
    modules = {}
    for name in EXPORT_PACKAGES:
        try:
            modules[name] = importlib.import_module(name)
        except ImportError as exc:
            raise MissingDependencyError(
                f"exporting to ONNX needs {name!r}, not installed: {INSTALL_HINT}", name=name
            ) from exc
    return modules["onnxruntime"], modules["onnx"]


def _check_out(out: str | Path) -> Path:
    if not isinstance(out, str | Path) or not str(out) or Path(out).is_dir():
        raise ArgumentError(
            f"out must be a file path (not a folder) such as model.onnx, got {out!r}"
        )
    path = Path(out)
    try:
        make_folder(path.parent)
    except OSError as exc:
        raise ArgumentError(f"out {path}: its folder cannot be created ({exc})") from exc
    return path


def _check_exportable(model: Any) -> None:
    check_type(model, HookedBiosignalModel, "export_onnx(model), an emg_lens model,")
    name = type(model).__name__
    device, dtype = model.param_device_dtype()
    if device.type != "cpu" or dtype != torch.float32:  # onnxruntime's CPU kernels: float32
        raise ArgumentError(
            f"{name} is {dtype} on {device}; export takes float32 on the CPU: .to('cpu').float()"
        )
    if hooked := [n for n, hp in model.hook_dict.items() if hp.fwd_hooks or hp.bwd_hooks]:
        raise ArgumentError(
            f"{name} has hooks attached at {hooked}: model.reset_hooks(), and cut with edges"
        )


def _check_layers(model: HookedBiosignalModel, layers: Iterable[int] | None) -> list[int]:
    """``layers`` as sorted distinct blocks of ``model`` (all of them for None)."""
    name = type(model).__name__
    require(model, ATTENTION_HOOKS, "an export's edge mask")
    n_layers = model.cfg.n_layers
    if n_layers == 0:
        raise LayoutError(f"{name} has no shared stack `blocks` (n_layers=0) for edges to cut")
    if layers is None:
        return list(range(n_layers))
    layers = check_ints(layers, "layers (block indices)", minimum=None)  # a type: ArgumentError
    check_ints(
        layers, f"layers (blocks of this {name}: n_layers={n_layers})", 0, n_layers - 1, LayoutError
    )
    return sorted(set(layers))


def _edges_string(edges: Any) -> str:
    if isinstance(edges, torch.Tensor):
        return f"<compiled mask {describe(edges)}>"
    return str(parse(edges) if isinstance(edges, str) else edges)  # canonical, as it parses back


def _metadata(
    model: HookedBiosignalModel,
    edges: Any,
    baked: Mapping[int, torch.Tensor],
    return_type: str | None,
    extra: Mapping[str, str] | None,
) -> dict[str, str]:
    """The file's ``metadata_props``: what it is (`METADATA_KEYS`), then ``extra``."""
    from emg_lens import __version__  # the package's own attribute, set before its imports

    extra = dict(extra or {})
    bad = {k: v for k, v in extra.items() if not isinstance(k, str) or not isinstance(v, str)}
    if bad:
        raise ArgumentError(f"metadata must map str to str (ONNX metadata_props), got {bad!r}")
    return {
        "emg_lens_version": __version__,
        "model_class": type(model).__name__,
        "edges": "" if edges is None else _edges_string(edges),
        "layers": ",".join(map(str, sorted(baked))),
        "return_type": str(return_type),
        **extra,
    }


def _write_metadata(onnx: ModuleType, file: Path, props: Mapping[str, str]) -> None:
    """Set ``props`` as the ``metadata_props`` of the ONNX file ``file``, in place."""
    proto = onnx.load(str(file))
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(file))


class _MaskedForward(nn.Module):
    """``model(signals, edge_masks=<constant masks>, return_type=...)`` as a one-input
    module, for the tracer: the masks are buffers, so they become constants of the file."""

    def __init__(
        self, model: HookedBiosignalModel, masks: Mapping[int, torch.Tensor], return_type: Any
    ):
        super().__init__()
        self.model = model
        self.return_type = return_type
        self.mask_layers = sorted(masks)
        for layer in self.mask_layers:
            self.register_buffer(f"edge_mask_{layer}", masks[layer])

    def forward(self, signals: torch.Tensor) -> Any:
        masks = {layer: getattr(self, f"edge_mask_{layer}") for layer in self.mask_layers}
        return self.model(signals, edge_masks=masks or None, return_type=self.return_type)


class _Reference:
    """The PyTorch forward the file must match: ``model(x, edge_masks=compile_edges(...))``,
    with the masks as compiled (not `_baked`'s pruned ones), so the pruning is checked too."""

    def __init__(
        self, model: HookedBiosignalModel, masks: Mapping[int, torch.Tensor], return_type: Any
    ):
        self.model, self.masks, self.return_type = model, dict(masks) or None, return_type

    def __call__(self, signals: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(signals, edge_masks=self.masks, return_type=self.return_type)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _output_names(outputs: tuple[Any, ...], return_type: str | None) -> tuple[str, ...]:
    if not all(isinstance(o, torch.Tensor) for o in outputs):
        raise ArgumentError(
            f"return_type={return_type!r} gives {[describe(o) for o in outputs]}, not tensors"
        )
    base = "resid" if return_type is None else str(return_type)
    return (base,) if len(outputs) == 1 else tuple(f"{base}_{i}" for i in range(len(outputs)))


def _trace(
    wrapper: nn.Module, example: torch.Tensor, file: Path, names: tuple[str, ...], opset: int
) -> None:
    dynamic = {name: {0: "batch"} for name in (INPUT_NAME, *names)}
    try:
        with warnings.catch_warnings(), _shapes_unchecked():
            # The tracer warns about the forward's Python checks of the example input (shape,
            # finiteness), which the file rightly does not hold, and that it is deprecated.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                wrapper,
                (example,),
                str(file),
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=list(names),
                dynamic_axes=dynamic,
                opset_version=opset,
            )
    except EmgLensError:
        raise
    except (RuntimeError, ValueError, TypeError) as exc:
        raise StudyError(
            f"torch's ONNX exporter (opset {opset}) failed on {type(wrapper.model).__name__}: {exc}"
        ) from exc


@contextlib.contextmanager
def _shapes_unchecked() -> Iterator[None]:
    """jaxtyping's runtime checks off (where a caller turned them on, as the test suite does)
    while torch.onnx traces: under its tracer every size is a 0-d tensor, not an int."""
    before = jaxtyping.config.jaxtyping_disable
    jaxtyping.config.update("jaxtyping_disable", True)
    try:
        yield
    finally:
        jaxtyping.config.update("jaxtyping_disable", before)


def _parity(
    ort: ModuleType,
    file: Path,
    target: Path,
    reference: _Reference,
    names: tuple[str, ...],
    batch_sizes: tuple[int, ...],
    atol: float,
) -> dict[int, float]:
    """Max |onnxruntime - PyTorch| per batch size; a `StudyError` past ``atol``."""
    model = reference.model
    what = f"the ONNX export of {type(model).__name__} to {target}"
    try:
        session = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types (Fail, InvalidGraph, ...)
        raise StudyError(f"{what}: onnxruntime cannot load the file: {exc}") from exc
    dtype = model.param_device_dtype()[1]
    generator = torch.Generator().manual_seed(0)
    diffs = {}
    for batch in batch_sizes:
        signals = torch.randn(batch, *model.input_shape, generator=generator, dtype=dtype)
        expected = reference(signals)
        got = session.run(list(names), {INPUT_NAME: signals.numpy()})
        for name, e, g in zip(names, expected, got):
            if tuple(g.shape) != tuple(e.shape):
                raise StudyError(
                    f"{what}: output {name} is {list(g.shape)}, PyTorch's {list(e.shape)}"
                )
        # np.max propagates NaN (Python's max would drop it), and a NaN fails the test below.
        diff = float(np.max([np.abs(g - e.numpy()).max() for e, g in zip(expected, got)]))
        if not diff <= atol:
            raise StudyError(
                f"{what} differs from PyTorch by max |diff| = {diff:.3g} at batch size {batch} "
                f"(tolerance {atol:g}): not written"
            )
        diffs[batch] = diff
    return diffs
