"""Digests of what a result was computed from (docs/DESIGN.md §10): the model, the data, the code.

A study cell is reused only when its provenance — the digests below, the metric and the scored
output — equals what the cell would be computed from now. Every digest is a SHA-256 hex string
of canonical bytes: files are streamed (a large data file is read once per process, memoised by
its path and `os.stat` identity), JSON is dumped with sorted keys, tensors and arrays contribute
their names, dtypes, shapes and bytes.

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "notes.txt"
>>> _ = path.write_text("hello")
>>> file_digest(path) == hashlib.sha256(b"hello").hexdigest()
True
>>> json_digest({"b": 1, "a": 2}) == json_digest({"a": 2, "b": 1})
True
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emg_lens._io import file_digest

__all__ = [
    "arrays_digest",
    "checkpoint_digest",
    "code_digest",
    "data_files",
    "file_digest",
    "files_digest",
    "json_digest",
    "model_digest",
    "source_digest",
    "tensor_digest",
    "training_digest",
]


def json_digest(obj: Any) -> str:
    """Digest of ``obj`` as canonical JSON (sorted keys; tuples as lists; others as `str`).

    >>> json_digest({"window": (1, 2)}) == json_digest({"window": [1, 2]})
    True
    """
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def files_digest(paths: Iterable[str | Path]) -> str:
    """One digest of the contents of several files, in the order given (names not included,
    so a moved but unchanged file keeps its digest).

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("a", "b"):
    ...     _ = (folder / name).write_text(name)
    >>> files_digest([folder / "a", folder / "b"]) != files_digest([folder / "b", folder / "a"])
    True
    """
    return json_digest([file_digest(p) for p in paths])


@functools.cache
def _package_digest() -> str:
    """The emg_lens package's own ``.py`` sources (relative names and bytes), once a process."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(file_digest(path).encode())
    return digest.hexdigest()


def code_digest(extra_files: Iterable[str | Path] = ()) -> str:
    """``"<emg_lens version>+<digest>"`` of the emg_lens sources and of ``extra_files`` (e.g.
    the hook files a study loads): a changed emg_lens, or a changed extra file, changes it.

    >>> import tempfile
    >>> hook = Path(tempfile.mkdtemp()) / "hook.py"
    >>> _ = hook.write_text("x = 1")
    >>> code_digest().startswith(__import__("emg_lens").__version__ + "+")
    True
    >>> code_digest([hook]) != code_digest()
    True
    """
    from emg_lens import __version__

    extra = [str(Path(p).resolve()) for p in extra_files]
    tail = _package_digest() if not extra else json_digest([_package_digest(), files_digest(extra)])
    return f"{__version__}+{tail}"


def checkpoint_digest(path: str | Path) -> str:
    """Digest of a checkpoint folder: the bytes of ``model.safetensors`` and the class, config
    and constructor keywords of its ``config.json`` (not its free metadata, such as training
    metrics, which do not change what the model computes).

    >>> import tempfile
    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.checkpoints import save_checkpoint
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0))
    >>> a = save_checkpoint(model, tempfile.mkdtemp(), metadata={"val_accuracy": 0.5})
    >>> b = save_checkpoint(model, tempfile.mkdtemp(), metadata={"val_accuracy": 0.9})
    >>> checkpoint_digest(a) == checkpoint_digest(b)
    True
    """
    from emg_lens.checkpoints import WEIGHTS, read_checkpoint_info

    info = read_checkpoint_info(path)
    built_from = {k: info.get(k) for k in ("model_class", "config", "model_kwargs")}
    return json_digest({"weights": file_digest(Path(path) / WEIGHTS), "built_from": built_from})


def _hash_tensor(digest: Any, tensor: torch.Tensor, *header: str) -> None:
    """Feed ``digest`` the ``header`` with the tensor's dtype and shape, then its bytes."""
    t = tensor.detach().cpu().contiguous()
    digest.update(json.dumps([*header, str(t.dtype), list(t.shape)]).encode())
    digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def tensor_digest(tensor: torch.Tensor) -> str:
    """Digest of one tensor: dtype, shape and bytes (where it lives not included).

    >>> tensor_digest(torch.zeros(2)) == tensor_digest(torch.zeros(2, dtype=torch.float64))
    False
    """
    digest = hashlib.sha256()
    _hash_tensor(digest, tensor)
    return digest.hexdigest()


def model_digest(model: torch.nn.Module) -> str:
    """Digest of an in-memory model: its state_dict (names, dtypes, shapes, bytes), class
    name, ``cfg.to_dict()`` (but where it runs: a study moved to a GPU computes the same cells,
    to the metric's precision, as a checkpoint's digest already says) and ``init_kwargs``.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> a, b = (IsoNet(EncoderConfig.preset("tiny", seed=s)) for s in (0, 1))
    >>> model_digest(a) == model_digest(a), model_digest(a) == model_digest(b)
    (True, False)
    >>> import copy, dataclasses
    >>> on_gpu = copy.deepcopy(a)
    >>> on_gpu.cfg = dataclasses.replace(a.cfg, device="cuda")  # what .to("cuda") records
    >>> model_digest(on_gpu) == model_digest(a)
    True
    """
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        _hash_tensor(digest, tensor, name)
    cfg = getattr(model, "cfg", None)
    built_from = {
        "class": type(model).__name__,
        "config": {k: v for k, v in cfg.to_dict().items() if k != "device"} if cfg else None,
        "init_kwargs": dict(getattr(model, "init_kwargs", {})),
    }
    return json_digest({"state": digest.hexdigest(), "built_from": built_from})


def arrays_digest(data: Any) -> str:
    """Digest of the evaluation part of a `SubjectData`: ``X_test`` and ``y_test`` (bytes,
    dtype, shape), the held-out windows' trials where it numbers them (``test_trials``: a
    stored cell holds counts per trial) and the class list.

    >>> from types import SimpleNamespace
    >>> data = SimpleNamespace(X_test=np.zeros((2, 3)), y_test=np.arange(2), classes=[0, 1])
    >>> before = arrays_digest(data)
    >>> data.X_test[0, 0] = 1.0
    >>> arrays_digest(data) != before
    True
    """
    digest = hashlib.sha256()
    trials = getattr(data, "test_trials", None)
    for array in (data.X_test, data.y_test, *([] if trials is None else [trials])):
        array = np.ascontiguousarray(array)
        digest.update(json.dumps([str(array.dtype), list(array.shape)]).encode())
        digest.update(array.tobytes())
    return json_digest({"arrays": digest.hexdigest(), "classes": list(data.classes)})


def training_digest(data: Any) -> str:
    """Digest of the training part of a `SubjectData`: ``X_train``, ``y_train``,
    ``rep_train``, the training windows' trials and the data's window labels
    (``meta["window_labels"]``): what an eraser fitted on the training windows depends on
    (`emg_lens.studies.ablation.erasure`).

    >>> from types import SimpleNamespace
    >>> data = SimpleNamespace(X_train=np.zeros((2, 3)), y_train=np.arange(2),
    ...                        rep_train=np.ones(2), train_trials=np.arange(2), meta={})
    >>> before = training_digest(data)
    >>> data.meta["window_labels"] = {"subject": {"train": [1, 2], "test": []}}
    >>> training_digest(data) != before
    True
    """
    from emg_lens.data.pooled import WINDOW_LABELS

    digest = hashlib.sha256()
    for array in (data.X_train, data.y_train, data.rep_train, data.train_trials):
        array = np.ascontiguousarray(array)
        digest.update(json.dumps([str(array.dtype), list(array.shape)]).encode())
        digest.update(array.tobytes())
    labels = data.meta.get(WINDOW_LABELS) or {}
    return json_digest({"arrays": digest.hexdigest(), "window_labels": labels})


def data_files(source: dict[str, Any], subject: int) -> list[Path]:
    """The files a data source reads for ``subject``, as its dataset's registry entry lists
    them (`emg_lens.data.registry`): the HDF5 store of ``"windows"``, none for synthetic data.

    >>> data_files({"dataset": "synthetic-windows"}, 1)
    []
    """
    from emg_lens.data.registry import dataset_info

    return dataset_info(source.get("dataset")).files(source, subject)


def source_digest(source: dict[str, Any], subject: int) -> str:
    """Digest of one subject's data from a checkpoint's data source: the source dict (with
    its preprocessing spec), the subject, and the content of every file it reads.

    >>> from emg_lens.data.datasets import data_source
    >>> source = data_source("synthetic")
    >>> source_digest(source, 1) == source_digest(source, 1) != source_digest(source, 2)
    True
    """
    files = data_files(source, subject)
    return json_digest({"source": source, "subject": int(subject), "files": files_digest(files)})
