"""Checkpoints: a folder with ``model.safetensors`` and ``config.json``.

``config.json`` records the model class, its `EncoderConfig`, any constructor keywords and free
metadata (subject, classes, how to rebuild the data, training settings, metrics), so a
checkpoint folder alone rebuilds an identical model. Files are written to a temporary name and
renamed, so an interrupted save never leaves a half-written checkpoint.

>>> import tempfile
>>> from emg_lens.models import IsoNet
>>> model = IsoNet(EncoderConfig.preset("tiny", seed=0))
>>> path = save_checkpoint(model, tempfile.mkdtemp(), metadata={"subject": 1})
>>> again = load_checkpoint(path)
>>> all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
...                                        again.state_dict().values()))
True
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from emg_lens._io import atomic_write
from emg_lens.config import EncoderConfig
from emg_lens.errors import CheckpointError, ConfigError
from emg_lens.models import MODEL_CLASSES, TinyMyo

__all__ = [
    "CHECKPOINT_FORMAT",
    "load_biofoundation",
    "load_checkpoint",
    "read_biofoundation_state_dict",
    "read_checkpoint_info",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "emg_lens.checkpoint/1"
WEIGHTS, CONFIG = "model.safetensors", "config.json"


def save_checkpoint(
    model: torch.nn.Module, path: str | Path, *, metadata: dict[str, Any] | None = None
) -> Path:
    """Save ``model`` into folder ``path`` (created if needed); returns the folder.

    The weights are stored as CPU tensors and the config says ``device="cpu"``, so a model
    trained on a GPU loads anywhere (`load_checkpoint`'s ``device`` puts it back on one).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    info = {
        "format": CHECKPOINT_FORMAT,
        "model_class": type(model).__name__,
        "model_kwargs": dict(getattr(model, "init_kwargs", {})),
        "config": {**model.cfg.to_dict(), "device": "cpu"},
        "metadata": metadata or {},
    }
    atomic_write(path / WEIGHTS, lambda tmp: save_file(state, str(tmp)))
    atomic_write(path / CONFIG, lambda tmp: tmp.write_text(json.dumps(info, indent=2, default=str)))
    return path


def read_checkpoint_info(path: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint folder (class, config, kwargs, metadata)."""
    path = Path(path)
    config_file = path / CONFIG
    if not config_file.is_file() or not (path / WEIGHTS).is_file():
        raise CheckpointError(
            f"{path} is not an emg_lens checkpoint: expected {CONFIG} and {WEIGHTS} in it"
        )
    try:
        info = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{config_file} is not valid JSON: {exc}") from exc
    if info.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{config_file} has format {info.get('format')!r}; expected {CHECKPOINT_FORMAT!r}"
        )
    return info


def load_checkpoint(
    path: str | Path, *, into: torch.nn.Module | None = None, device: str | None = None
) -> torch.nn.Module:
    """Rebuild the model saved in ``path`` (or load its weights ``into`` an existing model of
    the same class and config — any difference is refused, naming the fields).

    Refused with a `CheckpointError` naming the file and the tensor: weights that are not a
    readable safetensors file (empty, truncated), whose names or shapes disagree with
    ``config.json``, or that hold NaN or inf.
    """
    path = Path(path)
    info = read_checkpoint_info(path)
    classes = MODEL_CLASSES
    name = info["model_class"]
    if name not in classes:
        raise CheckpointError(f"{path}: unknown model class {name!r}; known: {sorted(classes)}")
    try:
        cfg = EncoderConfig.from_dict({**info["config"], **({"device": device} if device else {})})
    except ConfigError as exc:
        raise CheckpointError(f"{path}: its config is invalid: {exc}") from exc
    if into is None:
        model = classes[name](cfg, **info.get("model_kwargs", {}))
    else:
        _check_compatible(path, name, cfg, info, into)
        model = into
    state = _read_weights(path / WEIGHTS, str(model.cfg.device))
    _check_weights(path, name, state, model.state_dict())
    model.load_state_dict(state, strict=True)
    return model.eval()


def _read_weights(file: Path, device: str) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file), device=device)
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(
            f"{file} ({file.stat().st_size} bytes) is not a readable safetensors file ({exc}); "
            "it is empty, truncated or corrupted: save or copy the checkpoint again"
        ) from exc


def _check_weights(
    path: Path, name: str, state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]
) -> None:
    """Names, shapes and values, each compared before anything is copied into the model."""
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not fit {name}: missing {sorted(missing)}, "
            f"unexpected {sorted(unexpected)}"
        )
    wrong = [k for k in expected if state[k].shape != expected[k].shape]
    if wrong:
        shapes = ", ".join(
            f"{k}: {WEIGHTS} {list(state[k].shape)} vs {CONFIG} {list(expected[k].shape)}"
            for k in wrong
        )
        raise CheckpointError(
            f"{path}: {WEIGHTS} and {CONFIG} disagree on {len(wrong)} tensor shape(s) ({shapes}); "
            "the config must be the one the weights were saved with"
        )
    for k in expected:  # a NaN or inf weight would make every output NaN, silently
        if state[k].is_floating_point() and not bool(torch.isfinite(state[k]).all()):
            bad = int((~torch.isfinite(state[k])).sum())
            raise CheckpointError(
                f"{path / WEIGHTS}: tensor {k!r} holds {bad} NaN or inf value(s) (the first such "
                "tensor); a model with non-finite weights computes nothing meaningful: load an "
                "earlier checkpoint"
            )


PICKLED_SUFFIXES = (".ckpt", ".pt", ".pth")


def read_biofoundation_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The weights of a published BioFoundation checkpoint, for `TinyMyo.from_biofoundation`:
    a ``.safetensors`` file, or a PyTorch ``.ckpt`` / ``.pt`` / ``.pth`` file (a PyTorch
    Lightning checkpoint's ``state_dict``, or a bare state dict).

    Pickled files are read with ``torch.load(..., weights_only=True)``: tensors and plain
    containers only, so a file that would run code when unpickled is refused
    (`CheckpointError`), never executed. Other suffixes, files without tensors and non-finite
    weights are refused too.

    >>> import tempfile
    >>> file = Path(tempfile.mkdtemp()) / "tinymyo.ckpt"
    >>> torch.save({"state_dict": {"model.norm.weight": torch.ones(2)}, "epoch": 3}, file)
    >>> list(read_biofoundation_state_dict(file))
    ['model.norm.weight']
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"BioFoundation checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        state: Any = _read_weights(path, "cpu")
    elif path.suffix in PICKLED_SUFFIXES:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
            raise CheckpointError(
                f"{path} was refused: emg_lens reads pickled checkpoints with "
                f"torch.load(weights_only=True), which allows tensors and plain containers "
                f"only, and this file holds something else or is damaged ({exc})"
            ) from exc
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]  # a PyTorch Lightning checkpoint
    else:
        raise CheckpointError(
            f"{path}: a BioFoundation checkpoint must be .safetensors or one of "
            f"{', '.join(PICKLED_SUFFIXES)} (read with weights_only=True); got {path.suffix!r}"
        )
    tensors = (
        {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
        if isinstance(state, dict)
        else {}
    )
    if not tensors:
        raise CheckpointError(f"{path} holds no tensors: expected a state dict of weights")
    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(
                f"{path}: tensor {key!r} holds NaN or inf values; a model with non-finite "
                "weights computes nothing meaningful"
            )
    return tensors


def load_biofoundation(path: str | Path, **kwargs: Any) -> torch.nn.Module:
    """A published BioFoundation TinyMyo checkpoint file as a hooked `TinyMyo`, in eval mode:
    `read_biofoundation_state_dict` (pickles only with ``weights_only=True``), then
    `TinyMyo.from_biofoundation` with ``kwargs`` (by default BioFoundation's own function: see
    its ``rope_positions``).

    >>> import tempfile
    >>> from emg_lens.models import MODEL_CLASSES, TinyMyo
    >>> cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 2}, n_samples=40)
    >>> file = Path(tempfile.mkdtemp()) / "tinymyo.ckpt"
    >>> torch.save({"state_dict": TinyMyo(cfg).to_biofoundation()}, file)
    >>> model = load_biofoundation(file, n_samples=40)
    >>> model.task, model.training
    ('classification', False)
    """
    return TinyMyo.from_biofoundation(read_biofoundation_state_dict(path), **kwargs)


def _check_compatible(path: Path, name: str, cfg: EncoderConfig, info: dict, model) -> None:
    if type(model).__name__ != name:
        raise CheckpointError(f"{path} holds a {name}, not a {type(model).__name__}")
    # Where and in which precision it runs, and which optional hooks it fires, are not
    # architecture: weights load into a float64 model, or one with use_attn_result set.
    ignore = {"device", "dtype", "seed", "dropout", "use_attn_result"}
    theirs, ours = cfg.to_dict(), model.cfg.to_dict()
    diff = {k: (theirs[k], ours[k]) for k in theirs if k not in ignore and theirs[k] != ours[k]}
    if diff or info.get("model_kwargs", {}) != dict(getattr(model, "init_kwargs", {})):
        fields = ", ".join(f"{k}: checkpoint {a!r} vs model {b!r}" for k, (a, b) in diff.items())
        raise CheckpointError(
            f"{path} was saved from another config ({fields or 'model_kwargs differ'})"
        )
