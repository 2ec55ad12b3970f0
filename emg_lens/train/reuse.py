"""Trained weights kept by what made them: `emg_lens.train.fit` with ``reuse=True`` reads a
training done before instead of doing it again.

`fit` is deterministic on the CPU, so what it would compute can be read back: the key
(`training_key`) digests everything the weights depend on (for users: docs/guide/notebook.md,
"Training once"). An entry, ``trained/<key>.pt`` in the cache folder, holds the state dict,
the buffers it leaves out, the history and torch's random state after the training. Only CPU
trainings are kept (a GPU's kernels need not be deterministic).

>>> import numpy as np
>>> from emg_lens import EncoderConfig
>>> from emg_lens.models import IsoNet
>>> from emg_lens.train import TrainConfig, fit
>>> X = np.random.default_rng(0).standard_normal((32, 6, 8)).astype(np.float32)
>>> y, cfg = np.arange(32) % 4, TrainConfig(epochs=2, lr=1e-3, progress=False)
>>> trained, again = (IsoNet(EncoderConfig.preset("tiny", seed=0)) for _ in range(2))
>>> fit(trained, X, y, cfg, reuse=True).epoch_loss == fit(again, X, y, cfg, reuse=True).epoch_loss
True
>>> all(torch.equal(a, b) for a, b in zip(trained.parameters(), again.parameters()))
True
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from emg_lens._io import atomic_write, make_folder
from emg_lens.data.cache import (
    TRAINED_FOLDER,
    cache_max_bytes,
    default_cache_dir,
    evict,
    warn_foreign_files,
)
from emg_lens.errors import ArgumentError, StorageError, warn_caller
from emg_lens.provenance import (
    code_digest,
    json_digest,
    module_state_digest,
    state_digest,
    tensor_digest,
)
from emg_lens.train.model_code import code_files, files_key, stale_code

# TRAINED_FOLDER is the cache's (emg_lens.data.cache), which counts the entries in its cap.

REUSE_VERSION = 2
"""Part of every key: bump it when what an entry holds changes."""

_ENTRY_KEYS = {"key", "state", "unsaved", "result", "rng"}


def _hooked(model: torch.nn.Module) -> bool:
    """Whether a hook is attached to any module of ``model`` (it would run in the training)."""
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return any(getattr(m, kind, None) for m in model.modules() for kind in kinds)


def training_key(
    model: torch.nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    cfg: Any,
    edge_masks: dict[int, torch.Tensor] | None,
    code: str | None = None,
    *,
    state: str | None = None,
) -> str:
    """The digest of everything a CPU training's weights depend on: ``model`` as it enters
    `fit` (``state``: its `emg_lens.provenance.state_digest`, computed where not given), the
    windows and labels, ``cfg`` (not its ``progress``), the fixed ``edge_masks`` and the
    model's own ``code`` (`model_code`).

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> from emg_lens.train import TrainConfig
    >>> model, X, y = IsoNet(EncoderConfig.preset("tiny")), torch.zeros(4, 6, 8), torch.zeros(4)
    >>> key = training_key(model, X, y, TrainConfig(progress=True), None)
    >>> key == training_key(model, X, y, TrainConfig(progress=False), None)
    True
    >>> key == training_key(model, X, y, TrainConfig(seed=1), None)
    False
    """
    recipe = {k: v for k, v in asdict(cfg).items() if k != "progress"}
    masks = {str(layer): tensor_digest(mask) for layer, mask in sorted((edge_masks or {}).items())}
    return json_digest(
        {
            "version": REUSE_VERSION,
            "model": state if state is not None else state_digest(model),
            "X": tensor_digest(X),
            "y": tensor_digest(y),
            "recipe": recipe,
            "edge_masks": masks,
            "code": code_digest(),
            "model_code": code,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        }
    )


def _keyable(model: torch.nn.Module) -> tuple[str, str] | None:
    """``(state, code)`` digests of ``model`` for its key, or None where the key could not
    say what the model computes (a hook attached, a ``forward`` set on the instance, code
    edited since it was imported, state no digest reads): with a warning, but for a class with
    no file, which the guide says is always trained."""
    own_forward = [path or "the model" for path, m in model.named_modules() if "forward" in vars(m)]
    if own_forward:
        return _not_kept(
            model,
            f"{own_forward[0]} has a forward set on the instance, not its class's, whose code "
            "a key would hold",
        )
    modules: set[str] = set()
    try:
        state = state_digest(model, modules)
        files = code_files(model, modules)
        if files is None:
            return None
        stale = stale_code(model, files)
        return (state, files_key(files)) if stale is None else _not_kept(model, stale)
    except ArgumentError as exc:  # its state, or a value its files assign
        return _not_kept(model, str(exc))


def _not_kept(model: torch.nn.Module, why: str) -> tuple[str, str] | None:
    """`_keyable`'s answer for a model it cannot key: none, with a warning saying why."""
    warn_caller(
        f"fit(reuse=True): the training of this {type(model).__name__} is not kept, and none "
        f"is read back: {why}; it is trained as usual"
    )
    return None


def _save(kept: dict[str, Any], tmp: Path) -> None:
    # Serialised in memory, then written by Python: a full disk or a read-only folder is the
    # OSError it is (torch's own writer reports it as a RuntimeError).
    buffer = io.BytesIO()
    torch.save(kept, buffer)
    tmp.write_bytes(buffer.getvalue())


class TrainedEntry:
    """Where the training of one key is kept (``folder / "<key>.pt"``): `read` it into a
    model, or `write` a model just trained."""

    def __init__(
        self,
        folder: Path,
        key: str,
        max_bytes: int | None = None,
        module_state: str | None = None,
    ):
        self.key, self.path, self.max_bytes = key, folder / f"{key}.pt", max_bytes
        self.module_state = module_state  # module_state_digest before the training

    @classmethod
    def of(
        cls,
        model: torch.nn.Module,
        X: torch.Tensor,
        y: torch.Tensor,
        cfg: Any,
        edge_masks: dict[int, torch.Tensor] | None,
    ) -> TrainedEntry | None:
        """The entry of this training; None where none is kept: no cache folder, not on the
        CPU, or a key that could not say what the model computes (`_keyable`). A bad
        ``$EMG_LENS_CACHE_MAX_GB`` is an `ArgumentError` here, before the training."""
        folder = default_cache_dir()
        on_cpu = all(t.device.type == "cpu" for t in (*model.parameters(), *model.buffers()))
        if folder is None or not on_cpu or X.device.type != "cpu" or _hooked(model):
            return None
        warn_foreign_files(folder)  # a folder of the user's given as the cache: said, once
        described = _keyable(model)
        if described is None:
            return None
        state, code = described
        key = training_key(model, X, y, cfg, edge_masks, code, state=state)
        return cls(folder / TRAINED_FOLDER, key, cache_max_bytes(), module_state_digest(model))

    def read(self, model: torch.nn.Module, like: dict[str, Any]) -> dict[str, Any] | None:
        """Load the kept weights (and buffers the state dict leaves out) into ``model`` and
        torch's random state as the training left it; returns the history (``like``'s fields),
        or None where nothing whole is kept. An entry that does not read back exactly
        (`_check`) is a warning, removed, and None; ``model`` is touched only once it is checked."""
        if not self.path.is_file():
            return None
        before = {k: v.detach().clone() for k, v in model.state_dict().items()}
        unsaved = {k: v.detach().clone() for k, v in _unsaved(model).items()}
        try:
            # Any failure is a damaged entry: cut short (a zip error), a payload weights_only
            # refuses (pickle.UnpicklingError), values of other kinds (_check).
            kept = torch.load(self.path, map_location="cpu", weights_only=True)
            _check(kept, self.key, before, unsaved, like)
            try:
                model.load_state_dict(kept["state"])
                _set_unsaved(model, kept["unsaved"])
            except BaseException:
                model.load_state_dict(before)
                _set_unsaved(model, unsaved)
                raise
        except FileNotFoundError:  # removed between the look and the read: a plain miss
            return None
        except Exception as exc:
            warn_caller(
                f"ignoring the unreadable kept training {self.path} ({type(exc).__name__}: "
                f"{exc}); training again from the start (the entry is removed)"
            )
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)
            return None
        torch.set_rng_state(kept["rng"])
        with contextlib.suppress(OSError):  # its last use, for evict; a read-only cache served
            os.utime(self.path)
        return kept["result"]

    def write(self, model: torch.nn.Module, result: dict[str, Any]) -> None:
        """Keep ``model``'s trained weights (and buffers the state dict leaves out),
        ``result`` and torch's random state now, then bring the cache within its cap (`evict`).
        A folder that cannot be written, or a training that changed the model's state beyond
        its tensors (which a read-back could not restore), is a warning: it is not kept."""
        try:
            changed = self.module_state not in (None, module_state_digest(model))
        except ArgumentError:  # the training left an object that cannot be read
            changed = True
        if changed:
            _not_kept(model, "its training changed its state beyond its tensors (an attribute)")
            return
        kept = {
            "key": self.key,
            "state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "unsaved": {k: v.detach().cpu() for k, v in _unsaved(model).items()},
            "result": result,
            "rng": torch.get_rng_state(),
        }
        try:
            make_folder(self.path.parent)
            atomic_write(self.path, lambda tmp: _save(kept, tmp))
            if self.max_bytes is not None:
                evict(self.path.parent.parent, self.max_bytes)
        except (OSError, StorageError) as exc:
            warn_caller(f"the training is not kept ({exc})")


def _unsaved(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The buffers ``model``'s state dict leaves out (registered with ``persistent=False``)."""
    saved = model.state_dict().keys()
    return {name: b for name, b in model.named_buffers() if name not in saved}


def _set_unsaved(model: torch.nn.Module, values: dict[str, torch.Tensor]) -> None:
    buffers = dict(model.named_buffers())
    with torch.no_grad():
        for name, value in values.items():
            buffers[name].copy_(value)


def _check(
    kept: Any,
    key: str,
    state: dict[str, torch.Tensor],
    unsaved: dict[str, torch.Tensor],
    like: dict[str, Any],
) -> None:
    """``kept`` as `TrainedEntry.write` writes it for ``key``, for a model whose state dict is
    ``state`` and whose other buffers are ``unsaved`` (the same names, shapes and dtypes,
    finite) and a history like ``like``; else a ValueError saying what differs."""
    if not isinstance(kept, dict) or set(kept) != _ENTRY_KEYS:
        found = sorted(kept) if isinstance(kept, dict) else type(kept).__name__
        raise ValueError(f"it holds {found}, not {sorted(_ENTRY_KEYS)}")
    if kept["key"] != key:
        raise ValueError("it holds another key")
    _check_tensors(kept["state"], state, "weights")
    _check_tensors(kept["unsaved"], unsaved, "buffers the state dict leaves out")
    if not _like(kept["rng"], torch.get_rng_state()):
        raise ValueError("its random state is not torch's")
    result = kept["result"]
    if not isinstance(result, dict) or set(result) != set(like):
        raise ValueError(f"its history does not hold the fields {sorted(like)}")
    for name, value in result.items():  # an int, a finite float, or a list of floats
        items = value if isinstance(value, list) else [value]
        numbers = all(type(v) in (int, float) and math.isfinite(v) for v in items)
        if type(value) is not type(like[name]) or not numbers:
            raise ValueError(f"its history's {name} = {value!r} is not what a training records")


def _check_tensors(found: Any, expected: dict[str, torch.Tensor], what: str) -> None:
    """``found`` holds tensors of ``expected``'s names, shapes and dtypes, and finite."""
    if not isinstance(found, dict) or set(found) != set(expected):
        names = set(found) if isinstance(found, dict) else set()
        missing, extra = sorted(set(expected) - names)[:3], sorted(names - set(expected))[:3]
        raise ValueError(f"its {what} do not fit the model (missing {missing}, extra {extra})")
    for name, tensor in found.items():
        want = expected[name]
        if not _like(tensor, want) or not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"its tensor {name!r} is not a finite {want.dtype} {list(want.shape)}")


def _like(tensor: Any, want: torch.Tensor) -> bool:
    """Whether ``tensor`` is a tensor of ``want``'s dtype and shape."""
    return isinstance(tensor, torch.Tensor) and (tensor.dtype, tensor.shape) == (
        want.dtype,
        want.shape,
    )
