"""The code a model computes with beyond emg_lens's own (`emg_lens.provenance.code_digest`), the
standard library's and torch's (their versions): for `emg_lens.train.reuse`'s key.

`code_files` finds the file of each class and function the model is made of or holds (a user's
model, an attached or a library's module, TransformerLens's hook points) and every file of the
user's own those import; `model_code` digests them (None for a class with no file: a notebook
cell). A file is what runs only until it is edited: `stale_code` compares each function's
bytecode and each top-level constant as imported with the file now.

>>> import sys, tempfile, importlib
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "helper_layers.py").write_text("SCALE = 2.0\\n")
>>> _ = (folder / "my_net.py").write_text(
...     "import torch\\nfrom helper_layers import SCALE\\n\\n"
...     "class Net(torch.nn.Linear):\\n    def forward(self, x):\\n        return SCALE * x\\n")
>>> sys.path.insert(0, str(folder))
>>> net = importlib.import_module("my_net").Net(2, 2)
>>> sorted(code_files(net))  # the model's file and the helper it imports
['helper_layers', 'my_net']
>>> stale_code(net, code_files(net)) is None
True
>>> _ = (folder / "my_net.py").write_text(
...     "import torch\\nfrom helper_layers import SCALE\\n\\n"
...     "class Net(torch.nn.Linear):\\n    def forward(self, x):\\n        return 3 * x\\n")
>>> print(stale_code(net, code_files(net)))  # doctest: +ELLIPSIS
Net.forward runs other code than .../my_net.py holds (edited since it was imported: reload it)
>>> sys.path.remove(str(folder))
"""

from __future__ import annotations

import ast
import collections
import contextlib
import importlib.machinery
import importlib.util
import site
import sys
import sysconfig
import types
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from emg_lens._io import file_digest, imported_names
from emg_lens.provenance import json_digest, value_state

_KNOWN = ("emg_lens", "torch", "builtins", "__future__")  # versioned or keyed otherwise


def model_code(model: torch.nn.Module, modules: Iterable[str] = ()) -> str | None:
    """Digest of `code_files` (their names and bytes); None where a class has no file.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model_code(IsoNet(EncoderConfig.preset("tiny"))) is not None  # TransformerLens's HookPoint
    True
    >>> scope = {"__name__": "a_notebook_cell", "torch": torch}
    >>> exec("class Net(torch.nn.Linear): pass", scope)
    >>> model_code(scope["Net"](2, 2)) is None
    True
    """
    files = code_files(model, modules)
    return None if files is None else files_key(files)


def files_key(files: dict[str, Path]) -> str:
    """Digest of `code_files`' answer: each module's name and its file's bytes, and for the
    user's own files, the value now of every name the file assigns at its top (``SETTINGS
    ["gain"] = 3.0`` after the import is another key; `emg_lens.provenance.value_state`)."""
    return json_digest(
        {name: [file_digest(path), _live_values(name, path)] for name, path in files.items()}
    )


def _live_values(name: str, path: Path) -> dict[str, Any] | None:
    """The values now of the names module ``name`` (file ``path``, the user's own) assigns at
    its top or declares ``global``; None for a file not imported yet (it runs as it is)."""
    module = sys.modules.get(name)
    if module is None or not _local(path) or path.suffix != ".py":
        return None
    try:
        tree = ast.parse(path.read_bytes(), str(path))
    except (OSError, SyntaxError, ValueError):
        return None  # stale_code says so
    names = {n for node in ast.walk(tree) if isinstance(node, ast.Global) for n in node.names}
    todo: list[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            names.add(node.id)
        elif not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            todo += ast.iter_child_nodes(node)  # a def's body is its own scope, its code keyed
    live = vars(module)
    return {n: value_state(live[n], f"{name}.{n}") for n in sorted(names) if n in live}


def code_files(model: torch.nn.Module, modules: Iterable[str] = ()) -> dict[str, Path] | None:
    """Python module name -> file, for the code ``model`` runs that is neither emg_lens's,
    torch's nor the standard library's: its modules' classes' (and bases'), those named in
    ``modules``, and the user's own files these import. None where one has no file (a
    notebook cell, a REPL)."""
    names = set(modules) | {base.__module__ for cls in _classes(model) for base in cls.__mro__}
    files: dict[str, Path] = {}
    for name in sorted(names):
        path = _module_file(name)
        if _known(name, path):
            continue
        if path is None:
            return None
        files[name] = path
    todo = [name for name, path in files.items() if _local(path)]
    while todo:
        name = todo.pop()
        for imported in _imports(name, files[name]):
            path = None if imported in files else _module_file(imported)
            if path is not None and _local(path) and not _known(imported, path):
                files[imported] = path
                todo.append(imported)
    return files


def stale_code(model: torch.nn.Module, files: dict[str, Path]) -> str | None:
    """What runs that the user's own ``files`` (`code_files`, those `_local`) no longer hold,
    in words; None where every function, method and constant the file defines is what runs."""
    for name, path in sorted(files.items()):
        module = sys.modules.get(name)
        if module is None or not _local(path) or path.suffix != ".py":
            continue  # not imported yet: the file is what will run
        try:
            tree = ast.parse(path.read_bytes(), str(path))
            # dont_inherit: compiled as the import compiled it, not with this file's __future__
            compiled = _code_objects(compile(tree, str(path), "exec", dont_inherit=True))
        except (OSError, SyntaxError, ValueError) as exc:
            return f"{path} cannot be read back as the code that runs ({exc})"
        classes = [c for c in _classes(model) if c.__module__ == name]
        for what, code in _live_code(module, classes, path):
            if not any(
                _same_code(code, c)
                for c in compiled.get(getattr(code, "co_qualname", code.co_name), ())
            ):
                return (
                    f"{what} runs other code than {path} holds (edited since it was "
                    "imported: reload it)"
                )
        for what, live, written in _constants(tree, module, classes):
            if not _same_value(live, written):
                return f"{what} is {live!r} in the running code, {written!r} in {path} (reload it)"
    return None


def _classes(model: torch.nn.Module) -> set[type]:
    return {type(module) for module in model.modules()}


def _known(name: str, path: Path | None) -> bool:
    """Code keyed otherwise: emg_lens's (its digest), torch's (its version), the standard
    library's (a user's file that shares a standard module's name is the user's)."""
    top = name.partition(".")[0]
    standard = top in sys.stdlib_module_names and (path is None or not _local(path))
    return top in _KNOWN or standard


def _installed_roots() -> list[Path]:
    """Where the standard library and installed packages live (not the user's own files)."""
    paths = sysconfig.get_paths()
    roots = [paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")]
    roots += [*site.getsitepackages(), site.getusersitepackages()]
    return [Path(r).resolve() for r in roots if r]


def _local(path: Path) -> bool:
    """Whether ``path`` is the user's own file, neither installed nor the standard library's."""
    path = path.resolve()
    return not any(path.is_relative_to(root) for root in _installed_roots())


def _module_file(name: str) -> Path | None:
    """The file module ``name`` is (or would be) imported from, found without importing it."""
    module = sys.modules.get(name)
    if module is not None:
        file = getattr(module, "__file__", None)
    else:
        spec = _find_spec(name)
        file = spec.origin if spec is not None and spec.has_location else None
    return Path(file) if file and Path(file).is_file() else None


def _find_spec(name: str) -> importlib.machinery.ModuleSpec | None:
    """Module ``name``'s spec, found on ``sys.path`` and its packages' paths: nothing is
    imported (`importlib.util.find_spec` would import its parents)."""
    module = sys.modules.get(name)
    if module is not None:
        return getattr(module, "__spec__", None)
    parent, _, _ = name.rpartition(".")
    path = None
    if parent:
        parent_spec = _find_spec(parent)
        if parent_spec is None or parent_spec.submodule_search_locations is None:
            return None
        path = list(parent_spec.submodule_search_locations)
    try:
        return importlib.machinery.PathFinder.find_spec(name, path)
    except (ImportError, ValueError):
        return None


def _imports(name: str, path: Path) -> set[str]:
    """The modules file ``path`` (module ``name``) imports, at any depth of its code, with the
    packages above them (importing ``a.b`` runs ``a`` too)."""
    if path.suffix != ".py":
        return set()
    try:
        tree = ast.parse(path.read_bytes(), str(path))
    except (OSError, SyntaxError, ValueError):
        return set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for target in imported_names(tree, package):
        parts = target.split(".")
        found |= {".".join(parts[: i + 1]) for i in range(len(parts)) if parts[0]}
    return found


def _code_objects(code: types.CodeType) -> dict[str, list[types.CodeType]]:
    """Every code object compiled from a file, by qualified name (a name defined twice, as in
    the branches of an ``if``, has two)."""
    found: dict[str, list[types.CodeType]] = {}
    todo = [code]
    while todo:
        code = todo.pop()
        # by qualified name (Python 3.10 has none: by name)
        found.setdefault(getattr(code, "co_qualname", code.co_name), []).append(code)
        todo += [c for c in code.co_consts if isinstance(c, types.CodeType)]
    return found


def _same_code(a: types.CodeType, b: types.CodeType) -> bool:
    """Whether two code objects compute the same: bytecode, constants (nested code compared
    alike), names and arguments; not their file or line numbers."""
    facts: tuple[str, ...] = ("co_code", "co_names", "co_varnames", "co_freevars", "co_cellvars")
    facts += ("co_flags", "co_argcount", "co_posonlyargcount", "co_kwonlyargcount")
    if any(getattr(a, f) != getattr(b, f) for f in facts) or len(a.co_consts) != len(b.co_consts):
        return False
    return all(_same_value(x, y) for x, y in zip(a.co_consts, b.co_consts))


def _same_value(a: Any, b: Any) -> bool:
    """Equal and of one type (``1 == 1.0 == True``, yet each computes differently); code
    objects compared as `_same_code` does, NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, types.CodeType):
        return _same_code(a, b)
    if isinstance(a, frozenset):
        a, b = sorted(a, key=repr), sorted(b, key=repr)
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    return a == b or (a != a and b != b)


_IMMUTABLE = (int, float, complex, str, bytes, bool, type(None), tuple)


def _constants(
    tree: ast.Module, module: types.ModuleType, classes: list[type]
) -> Iterator[tuple[str, Any, Any]]:
    """``(name, running value, the file's value)`` of every name the file assigns once, to an
    immutable literal, at its top or a class body's (the module's class and the model's, which
    may be older), and rebinds nowhere else, where the running value is a literal too (not an
    enum's member)."""
    stores = collections.Counter(
        node.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load)
    )
    for node in ast.walk(tree):  # a function may rebind them: not constants
        if isinstance(node, ast.Global | ast.Nonlocal):
            stores.update({name: 2 for name in node.names})
    todo: list[tuple[list[ast.stmt], list[Any], str]] = [(tree.body, [module], "")]
    while todo:
        body, owners, prefix = todo.pop()
        for node in body:
            if isinstance(node, ast.ClassDef):
                qualname = f"{prefix}{node.name}"
                inner = [
                    vars(o).get(node.name)
                    for o in owners
                    if isinstance(vars(o).get(node.name), type)
                ]
                inner += [c for c in classes if c.__qualname__ == qualname and c not in inner]
                todo.append((node.body, inner, f"{qualname}."))
                continue
            assigned = _assigned(node)
            if assigned is None or stores[assigned[0]] != 1:
                continue
            target, value = assigned
            try:
                written = ast.literal_eval(value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                continue
            if type(written) not in _IMMUTABLE:
                continue
            for owner in owners:
                live = vars(owner).get(target, _MISSING)
                if type(live) in _IMMUTABLE:  # not made into an enum member, a field, ...
                    yield f"{prefix}{target}", live, written


_MISSING = object()


def _assigned(node: ast.stmt) -> tuple[str, ast.expr] | None:
    """``NAME = value`` or ``NAME: type = value``: the name and the value's expression."""
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
        return (target.id, node.value) if isinstance(target, ast.Name) else None
    if (
        isinstance(node, ast.AnnAssign)
        and node.value is not None
        and isinstance(node.target, ast.Name)
    ):
        return node.target.id, node.value
    return None


def _live_code(
    module: types.ModuleType, classes: list[type], path: Path
) -> Iterator[tuple[str, types.CodeType]]:
    """The code objects of the functions and methods that run, compiled from ``path``: those
    of ``module`` (its functions and classes) and of ``classes`` (the model's, which may be
    older than the module's after a reload)."""
    seen: set[int] = set()
    owners = [v for v in vars(module).values() if getattr(v, "__module__", None) == module.__name__]
    todo = [*classes, *owners]
    target = path.resolve()
    while todo:
        value = todo.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, type):
            todo += [v for v in vars(value).values() if _defines_code(v)]
            todo += [
                v
                for v in vars(value).values()
                if isinstance(v, type) and v.__module__ == value.__module__
            ]
            continue
        for function in _functions(value):
            code = function.__code__
            if Path(code.co_filename).resolve() == target:
                yield f"{function.__qualname__}", code


def _defines_code(value: Any) -> bool:
    return isinstance(value, types.FunctionType | staticmethod | classmethod | property)


def _functions(value: Any) -> list[types.FunctionType]:
    """The functions a class attribute runs: a method's, a property's accessors, and what a
    decorator wraps (``__wrapped__``, or a function its wrapper closes over)."""
    if isinstance(value, staticmethod | classmethod):
        value = value.__func__
    todo = [value.fget, value.fset, value.fdel] if isinstance(value, property) else [value]
    found: dict[int, types.FunctionType] = {}
    while todo:
        function = todo.pop()
        if not isinstance(function, types.FunctionType) or id(function) in found:
            continue
        found[id(function)] = function
        todo.append(getattr(function, "__wrapped__", None))
        for cell in function.__closure__ or ():
            with contextlib.suppress(ValueError):  # an empty cell
                todo.append(cell.cell_contents)
    return list(found.values())
