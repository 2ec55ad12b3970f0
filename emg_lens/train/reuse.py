"""Trained weights kept by what made them: `emg_lens.train.fit` with ``reuse=True`` reads a
training done before instead of doing it again.

`fit` is deterministic on the CPU: the same model before training, the same windows, the same
recipe, the same code and the same number of threads give identical weights. So what it would
compute can be read back, and nothing else is: an entry's key is all of that (`training_key`):
`emg_lens.provenance.model_digest` of the model as it enters `fit` (its weights, class and
config), the training windows and labels (dtype, shape and bytes), the `TrainConfig` less
``progress``, the fixed edge masks, `emg_lens.provenance.code_digest` (every emg_lens source),
the source file of every module class of the model that is neither emg_lens's nor torch's (an
attached or a user's model: `model_code`), torch's version and its CPU thread count. A model
whose code cannot be read from a file (a class defined in a notebook cell or a REPL), or with a
hook attached (it would run in the training), is trained and not kept. An entry holds the
trained state dict, the history and torch's global random state after the training (dropout
draws from it), so what runs after `fit` runs as it would after the training. Only CPU
trainings are kept (a GPU's kernels need not be deterministic).

Entries are ``trained/<key>.pt`` in the preprocessing cache's folder
(`emg_lens.data.cache.default_cache_dir`: ``$EMG_LENS_CACHE``, or the user cache directory;
``EMG_LENS_CACHE=off`` keeps none), each written atomically, so processes sharing the folder
read a whole entry or none. An entry that cannot be read is a warning and a training. The
entries count in the cache's size cap (`emg_lens.data.cache.cache_max_bytes`, 10 GB unless
``$EMG_LENS_CACHE_MAX_GB`` says otherwise) with the preprocessed subjects: after a training is
kept, `emg_lens.data.cache.evict` removes the least recently used of both (reading an entry
uses it). The demo's IsoNet's entry is about 0.4 MB; removing the folder costs only trainings.

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
import inspect
import io
import os
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from emg_lens._io import atomic_write, file_digest, make_folder
from emg_lens.data.cache import TRAINED_FOLDER, cache_max_bytes, default_cache_dir, evict
from emg_lens.errors import StorageError
from emg_lens.provenance import code_digest, json_digest, model_digest, tensor_digest

__all__ = ["REUSE_VERSION", "TRAINED_FOLDER", "TrainedEntry", "model_code", "training_key"]
# TRAINED_FOLDER is the cache's (emg_lens.data.cache), which counts the entries in its cap.

REUSE_VERSION = 1
"""Part of every key: bump it when what an entry holds changes."""


def model_code(model: torch.nn.Module) -> str | None:
    """Digest of the source files of ``model``'s module classes outside emg_lens (which
    `code_digest` covers) and torch (its version is in the key): TransformerLens's hook points,
    a user's or a library's modules; None where one has no file to read (defined in a notebook
    cell or a REPL: an edit to it could not be told).

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model_code(IsoNet(EncoderConfig.preset("tiny"))) is not None  # TransformerLens's HookPoint
    True
    >>> scope = {"__name__": "a_notebook_cell", "torch": torch}
    >>> exec("class Net(torch.nn.Linear): pass", scope)
    >>> model_code(scope["Net"](2, 2)) is None
    True
    """
    files = {}
    for cls in {type(module) for module in model.modules()}:
        if cls.__module__.split(".")[0] in ("emg_lens", "torch"):
            continue
        try:
            path = inspect.getsourcefile(cls)
        except (TypeError, OSError):  # no module file: a notebook cell, a REPL, exec
            path = None
        if path is None or not Path(path).is_file():
            return None
        files[f"{cls.__module__}.{cls.__qualname__}"] = file_digest(path)
    return json_digest(files)


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
) -> str:
    """The digest of everything a CPU training's weights depend on (see the module's
    docstring): ``model`` as it enters `fit`, the windows ``X`` and labels ``y`` as it trains on
    them, the `TrainConfig` ``cfg`` (not its ``progress``), the fixed ``edge_masks`` and the
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
            "model": model_digest(model),
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


def _save(kept: dict[str, Any], tmp: Path) -> None:
    # Serialised in memory, then written by Python: a full disk or a read-only folder is the
    # OSError it is (torch's own writer reports it as a RuntimeError).
    buffer = io.BytesIO()
    torch.save(kept, buffer)
    tmp.write_bytes(buffer.getvalue())


class TrainedEntry:
    """Where the training of one key is kept (``folder / "<key>.pt"``): `read` it into a
    model, or `write` a model just trained."""

    def __init__(self, folder: Path, key: str, max_bytes: int | None = None):
        self.key, self.path, self.max_bytes = key, folder / f"{key}.pt", max_bytes

    @classmethod
    def of(
        cls,
        model: torch.nn.Module,
        X: torch.Tensor,
        y: torch.Tensor,
        cfg: Any,
        edge_masks: dict[int, torch.Tensor] | None,
    ) -> TrainedEntry | None:
        """The entry of this training; None where none is kept: no cache folder, the model or
        its windows not on the CPU, a hook attached, or a module class whose code has no file
        (`model_code`). A bad ``$EMG_LENS_CACHE_MAX_GB`` is an `ArgumentError` here, before
        the training."""
        folder = default_cache_dir()
        on_cpu = all(t.device.type == "cpu" for t in (*model.parameters(), *model.buffers()))
        if folder is None or not on_cpu or X.device.type != "cpu" or _hooked(model):
            return None
        code = model_code(model)
        if code is None:
            return None
        key = training_key(model, X, y, cfg, edge_masks, code)
        return cls(folder / TRAINED_FOLDER, key, cache_max_bytes())

    def read(self, model: torch.nn.Module) -> dict[str, Any] | None:
        """Load the kept weights into ``model`` and torch's random state as the training left
        it; returns the history (`TrainResult`'s fields), or None where nothing whole is kept
        (an unreadable entry: a warning, and the caller trains)."""
        if not self.path.is_file():
            return None
        try:
            kept = torch.load(self.path, map_location="cpu", weights_only=True)
            if kept["key"] != self.key:
                raise ValueError("the entry holds another key")
            model.load_state_dict(kept["state"])
        except FileNotFoundError:  # removed between the look and the read: a plain miss
            return None
        except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
            warnings.warn(
                f"ignoring the unreadable kept training {self.path} ({type(exc).__name__}: "
                f"{exc}); training again",
                stacklevel=3,
            )
            return None
        torch.set_rng_state(kept["rng"])
        with contextlib.suppress(OSError):  # its last use, for evict; a read-only cache served
            os.utime(self.path)
        return kept["result"]

    def write(self, model: torch.nn.Module, result: dict[str, Any]) -> None:
        """Keep ``model``'s trained weights, ``result`` and torch's random state now, then
        bring the cache within its cap (`evict`, given ``max_bytes``). A folder that cannot be
        written is a warning: the training stands, it is not kept."""
        kept = {
            "key": self.key,
            "state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "result": result,
            "rng": torch.get_rng_state(),
        }
        try:
            make_folder(self.path.parent)
            atomic_write(self.path, lambda tmp: _save(kept, tmp))
            if self.max_bytes is not None:
                evict(self.path.parent.parent, self.max_bytes)
        except (OSError, StorageError) as exc:
            warnings.warn(f"the training is not kept ({exc})", stacklevel=3)
