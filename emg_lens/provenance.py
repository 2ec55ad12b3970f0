"""Digests of what a result was computed from (docs/DESIGN.md §10): the model, the data, the code.

A study cell is reused only while its provenance equals what it would be computed from now.
Every digest is a SHA-256 hex string of canonical bytes: files streamed (memoised per file
version), JSON with sorted keys, tensors and arrays by name, dtype, shape and bytes.

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "notes.txt"
>>> _ = path.write_text("hello")
>>> file_digest(path) == hashlib.sha256(b"hello").hexdigest()
True
>>> json_digest({"b": 1, "a": 2}) == json_digest({"a": 2, "b": 1})
True
"""

from __future__ import annotations

import _thread
import dataclasses
import enum
import functools
import hashlib
import json
import logging
import random
import re
import types
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emg_lens._io import file_digest, files_digest, json_digest
from emg_lens.errors import ArgumentError


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
    """``"<emg_lens version>+<digest>"`` of the emg_lens sources and of ``extra_files`` (the
    files docs/gallery.py's notebooks read): a changed emg_lens, or extra file, changes it.

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
    """Digest of an in-memory model: its state_dict, class name, ``cfg.to_dict()`` but the
    device (a study moved to a GPU computes the same cells) and ``init_kwargs``.

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


def state_digest(model: torch.nn.Module, modules: set[str] | None = None) -> str:
    """Digest of everything an in-memory model holds, which its code computes with: every
    parameter (with whether it trains) and buffer by name, with which names share one tensor;
    each module's class, path and other state (``training``, attributes such as
    ``Dropout.p``; not its torch hooks), walked into containers, dataclasses, objects and
    functions (their code, defaults and closures). ``modules``, when given, gains the Python
    module of each function, class and object met (`emg_lens.train.model_code`). An object
    that shows no readable state is an `ArgumentError` naming its attribute.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0, dropout=0.1))
    >>> before = state_digest(model)
    >>> _ = model.blocks[0].attn.W_Q.requires_grad_(False)  # frozen: the same weights
    >>> frozen = state_digest(model)
    >>> _ = model.blocks[0].attn.W_Q.requires_grad_(True)
    >>> [m for m in model.modules() if isinstance(m, torch.nn.Dropout)][0].p = 0.5
    >>> len({before, frozen, state_digest(model)})
    3
    """
    digest = hashlib.sha256()
    first: dict[int, str] = {}  # a tensor's or module's id -> the first name it has
    for kind, named in (
        ("parameter", model.named_parameters(remove_duplicate=False)),
        ("buffer", model.named_buffers(remove_duplicate=False)),
    ):
        for name, tensor in named:
            if id(tensor) in first:  # tied: one tensor under two names trains as one
                digest.update(json.dumps([kind, name, "same as", first[id(tensor)]]).encode())
                continue
            first[id(tensor)] = name
            trains = str(tensor.requires_grad) if kind == "parameter" else ""
            _hash_tensor(digest, tensor, kind, name, trains)
    digest.update(module_state_digest(model, modules, modes=True).encode())
    return digest.hexdigest()


def module_state_digest(
    model: torch.nn.Module, modules: set[str] | None = None, *, modes: bool = False
) -> str:
    """The part of `state_digest` that is not the parameters and buffers: each module's class,
    path and state that is not a tensor, with its ``training`` flag only where ``modes``.
    Without the flags it is what a training must leave as it found (`emg_lens.train.reuse`
    keeps no training that changes it: a read-back could not restore it).

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny"))
    >>> before, with_modes = module_state_digest(model), module_state_digest(model, modes=True)
    >>> _ = model.eval()  # its training flags only
    >>> module_state_digest(model) == before, module_state_digest(model, modes=True) == with_modes
    (True, False)
    """
    paths: dict[int, str] = {}
    for path, module in model.named_modules(remove_duplicate=False):
        paths.setdefault(id(module), path)
    walker = _StateWalker(paths, modules if modules is not None else set())
    state: dict[str, dict[str, Any]] = {}
    for path, module in model.named_modules(remove_duplicate=False):
        if paths[id(module)] != path:
            state[path] = {"same as": paths[id(module)]}
            continue
        own = {k: v for k, v in vars(module).items() if not _machinery(module, k)}
        if not modes:
            own.pop("training", None)
        where = f"{path}." if path else ""
        own_state = {k: walker.walk(v, f"{where}{k}") for k, v in own.items()}
        state[path] = {"class": _qualified(type(module)), "state": own_state}
        walker.modules.add(type(module).__module__)
    text = json.dumps(state, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def value_state(value: Any, where: str) -> Any:
    """Canonical JSON of ``value`` as `state_digest` reads a module's attributes: containers,
    arrays and tensors (by digest), dataclasses and objects (their fields), functions (their
    code), recursively; an `ArgumentError` naming ``where`` for a value that shows
    no readable state.

    >>> value_state({"gain": 1.0}, "SETTINGS") == value_state({"gain": 3.0}, "SETTINGS")
    False
    >>> value_state(logging.getLogger("my_net"), "my_net.log")  # by name: it computes nothing
    {'logger': 'my_net'}
    """
    return _StateWalker({}, set()).walk(value, where)


# What every torch module holds that is not its own state: its tensors and submodules (walked
# by name above) and its hooks (a hooked model's results are not reused at all).
_MODULE_MACHINERY = frozenset(
    {"_parameters", "_buffers", "_modules"}
    | {name for name in vars(torch.nn.Module()) if "hook" in name}
)


def _machinery(module: torch.nn.Module, name: str) -> bool:
    """Whether attribute ``name`` of ``module`` is no state of its own: torch's machinery, or
    one of emg_lens's caches (``*_cache``: fused weights, rotary phases), each checked against
    the tensors it was built from before use, so it never changes a result."""
    own_cache = name.endswith("_cache") and type(module).__module__.startswith("emg_lens.")
    return name in _MODULE_MACHINERY or own_cache


_LOCKS = (_thread.LockType, type(_thread.RLock()))  # hold no state a computation reads
_MAX_DEPTH = 32


def _qualified(obj: Any) -> str:
    return f"{getattr(obj, '__module__', None)}.{getattr(obj, '__qualname__', type(obj).__name__)}"


def _code(code: types.CodeType) -> dict[str, Any]:
    """A code object as what it computes: its bytecode, constants (nested code too), names and
    arguments; not its file or line numbers, which a moved but unchanged function changes."""
    return {
        "code": code.co_code.hex(),
        "consts": [_constant(c) for c in code.co_consts],
        "names": list(code.co_names),
        "vars": [list(code.co_varnames), list(code.co_freevars), list(code.co_cellvars)],
        "args": [code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount],
        "flags": code.co_flags,
        "exceptions": getattr(code, "co_exceptiontable", b"").hex(),  # Python 3.11+
    }


def _constant(value: Any) -> Any:
    """A code object's constant, canonical: a frozenset's items sorted (its repr's order
    follows string hashing, which differs between processes)."""
    if isinstance(value, types.CodeType):
        return _code(value)
    if isinstance(value, tuple):
        return [_constant(v) for v in value]
    if isinstance(value, frozenset):
        return {"frozenset": sorted(json.dumps(_constant(v)) for v in value)}
    return repr(value)


class _StateWalker:
    """Canonical JSON of what a module holds: tensors and arrays by digest, modules of the
    model by path, the rest by value; ``modules`` gains the Python module of each function,
    class and object met."""

    def __init__(self, paths: dict[int, str], modules: set[str]):
        self.paths, self.modules = paths, modules
        self.active: set[int] = set()

    def walk(self, value: Any, where: str, depth: int = 0) -> Any:
        if value is None or type(value) in (bool, int, str):
            return value
        if type(value) is float:
            return {"float": value.hex()}
        if type(value) in (bytes, complex) or value is Ellipsis:
            return {type(value).__name__: repr(value)}
        if id(value) in self.paths:  # a module of the model, referred to from elsewhere
            return {"module": self.paths[id(value)]}
        if isinstance(value, torch.Tensor):
            return {"tensor": tensor_digest(value), "trains": value.requires_grad}
        if isinstance(value, np.ndarray | np.generic):
            array = np.ascontiguousarray(value)
            digest = hashlib.sha256(array.tobytes()).hexdigest()
            return {"array": [str(array.dtype), list(array.shape), digest]}
        if isinstance(value, torch.dtype | torch.device | torch.layout | torch.memory_format):
            return {type(value).__name__: str(value)}
        if isinstance(value, _LOCKS):
            return {"lock": type(value).__name__}
        if isinstance(value, enum.Enum):
            return {"enum": f"{_qualified(type(value))}.{value.name}"}
        if isinstance(value, type):
            self.modules.add(value.__module__)
            return {"class": _qualified(value)}
        if isinstance(value, types.BuiltinFunctionType | types.BuiltinMethodType):
            return {"builtin": _qualified(value)}
        if isinstance(value, types.ModuleType):
            return {"python module": value.__name__}
        if isinstance(value, logging.Logger):  # computes nothing; it reaches every logger
            return {"logger": value.name}
        if depth > _MAX_DEPTH:
            raise ArgumentError(f"{where} nests deeper than {_MAX_DEPTH} levels")
        if id(value) in self.active:
            return {"cycle": _qualified(type(value))}
        self.active.add(id(value))
        try:
            return self._compound(value, where, depth + 1)
        finally:
            self.active.discard(id(value))

    def _compound(self, value: Any, where: str, depth: int) -> Any:
        walk = functools.partial(self.walk, depth=depth)
        if isinstance(value, re.Pattern):
            return {"pattern": walk([value.pattern, value.flags], where)}
        if isinstance(value, slice | range):
            parts = (value.start, value.stop, value.step)
            return {type(value).__name__: [walk(p, where) for p in parts]}
        if isinstance(value, torch.Generator):
            return {"generator": tensor_digest(value.get_state()), "device": str(value.device)}
        if isinstance(value, list | tuple) and type(value) in (list, tuple, torch.Size):
            kind = type(value).__name__
            return {kind: [walk(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, types.MappingProxyType) or (
            isinstance(value, dict) and type(value).__module__ in ("builtins", "collections")
        ):
            items = [
                [walk(k, f"{where} key"), walk(v, f"{where}[{k!r}]")] for k, v in value.items()
            ]
            return {"dict": sorted(items, key=lambda kv: json.dumps(kv[0], sort_keys=True))}
        if isinstance(value, set | frozenset):
            return {
                "set": sorted(json.dumps(walk(v, f"{where} item"), sort_keys=True) for v in value)
            }
        if isinstance(value, functools.partial):
            parts = (value.func, value.args, value.keywords)
            return {"partial": [walk(p, f"{where}.partial") for p in parts]}
        if isinstance(value, types.MethodType):
            return {"method": [walk(value.__func__, where), walk(value.__self__, f"{where}.self")]}
        if isinstance(value, types.FunctionType):
            self.modules.add(value.__module__)
            cells = [c.cell_contents for c in value.__closure__ or () if _filled(c)]
            return {
                "function": _qualified(value),
                "body": _code(value.__code__),
                "defaults": walk([value.__defaults__, value.__kwdefaults__], f"{where} defaults"),
                "closure": walk(cells, f"{where} closure"),
            }
        if isinstance(value, weakref.ref):
            return {"weak reference": walk(value(), where)}
        if isinstance(value, random.Random | np.random.Generator | np.random.RandomState):
            if isinstance(value, random.Random):
                state: Any = value.getstate()
            elif isinstance(value, np.random.Generator):
                state = value.bit_generator.state
            else:
                state = value.get_state(legacy=False)
            return {"random": _qualified(type(value)), "state": walk(state, where)}
        if dataclasses.is_dataclass(value) or hasattr(value, "__dict__"):
            self.modules.add(type(value).__module__)
            fields = dict(vars(value)) if hasattr(value, "__dict__") else {}
            for f in dataclasses.fields(value) if dataclasses.is_dataclass(value) else ():
                fields.setdefault(f.name, getattr(value, f.name))
            fields.update(_slots(value))
            state = {k: walk(v, f"{where}.{k}") for k, v in fields.items()}
            return {"object": _qualified(type(value)), "state": state}
        if _slots(value):
            self.modules.add(type(value).__module__)
            state = {k: walk(v, f"{where}.{k}") for k, v in _slots(value).items()}
            return {"object": _qualified(type(value)), "state": state}
        raise ArgumentError(
            f"{where or 'the model'} holds an object of type {_qualified(type(value))}, whose "
            "state a digest cannot read"
        )


def _filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018 (an empty cell raises)
    except ValueError:
        return False
    return True


def _slots(value: Any) -> dict[str, Any]:
    """The values of ``value``'s ``__slots__`` (of every class it is made of) that are set."""
    names = [n for cls in type(value).__mro__ for n in getattr(cls, "__slots__", ())]
    return {
        n: getattr(value, n)
        for n in names
        if n not in ("__dict__", "__weakref__") and hasattr(value, n)
    }


def _arrays_hash(arrays: Iterable[Any]) -> str:
    """One digest of ``arrays``, in order: each one's dtype, shape and bytes."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(json.dumps([str(array.dtype), list(array.shape)]).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def arrays_digest(data: Any) -> str:
    """Digest of the evaluation part of a `SubjectData`: ``X_test``, ``y_test``, the held-out
    windows' trials (a stored cell holds counts per trial) and the class list.

    >>> from types import SimpleNamespace
    >>> data = SimpleNamespace(X_test=np.zeros((2, 3)), y_test=np.arange(2), classes=[0, 1])
    >>> before = arrays_digest(data)
    >>> data.X_test[0, 0] = 1.0
    >>> arrays_digest(data) != before
    True
    """
    trials = getattr(data, "test_trials", None)
    arrays = _arrays_hash([data.X_test, data.y_test, *([] if trials is None else [trials])])
    return json_digest({"arrays": arrays, "classes": list(data.classes)})


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
    from emg_lens.data.trials import WINDOW_LABELS

    arrays = _arrays_hash([data.X_train, data.y_train, data.rep_train, data.train_trials])
    labels = data.meta.get(WINDOW_LABELS) or {}
    return json_digest({"arrays": arrays, "window_labels": labels})
