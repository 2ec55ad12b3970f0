"""The Python files a study names, and the consent it takes to run them.

Running someone else's study runs the code it names: as with Hugging Face's
``trust_remote_code``, only with consent and only from inside the study file's project
(`project_root`); the rules: docs/guide/studies.md, "What emg_lens runs, and what it only
reads". `load_code` hashes the bytes again and runs exactly those consented to, under
`running_code`.

>>> import tempfile
>>> root = Path(tempfile.mkdtemp())
>>> (root / "hooks").mkdir()
>>> _ = (root / "hooks" / "mine.py").write_text("edges = 'cross_modal'")
>>> code = locate_code("hooks/mine.py:edges", root)
>>> code.path == (root / "hooks" / "mine.py").resolve(), len(code.sha256)
(True, 64)
>>> require_consent([code], allow_code=False)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
emg_lens.errors.SpecError: this study runs Python code from 1 file...
>>> load_code(code, allow_code=True)
'cross_modal'
>>> load_code(code, allow_code=[code.sha256])  # consent to exactly these bytes
'cross_modal'
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import re
import shlex
import sys
import types
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from emg_lens.checkpoints import load_checkpoint, read_checkpoint_info, user_modules_of
from emg_lens.edges import EdgeSet, parse
from emg_lens.errors import (
    ArgumentError,
    CheckpointError,
    EmgLensError,
    SpecError,
)

CONSENT_HINT = (
    "read them, then run again with --allow-code (command line) or allow_code=True (Python), "
    "or consent to exactly these bytes: --allow-code SHA256 per file (allow_code=[SHA256, ...])"
)
HOOKS_ACCEPTED = (
    "a list of (hook name or name filter, hook function) pairs, as "
    "model.run_with_hooks(fwd_hooks=...) takes"
)
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
EXAMPLES = {
    "hook": "'hooks/file.py:name' (a Python name)",
    "modules": "'models.py:build_modules' (a Python name)",
    "--modules": "FILE:FUNCTION, e.g. models.py:build_modules",
}
"""How a reference of each study key (or command-line option) looks (for messages)."""


@dataclass(frozen=True)
class CodeFile:
    """One code reference of a study: as written, the resolved file, the name it reads from
    the file, and the SHA-256 of the file's bytes when it was located."""

    ref: str
    path: Path
    attr: str
    sha256: str
    key: str = "hook"  # the study key (or command-line option) that names it, for messages

    def line(self) -> str:
        """``ref -> path (sha256 ...)``: how messages and ``study check`` list the file."""
        return f"{self.ref} -> {self.path} (sha256 {self.sha256})"


PROJECT_MARKERS = ("pyproject.toml", ".git")
"""A folder holding one of these is a project's root (`project_root`)."""


def project_root(folder: str | Path) -> Path:
    """The project a study file's ``folder`` belongs to: its nearest ancestor (itself
    included) that holds ``pyproject.toml`` or ``.git``, else ``folder`` itself (a study file
    outside any project reaches only below its own folder).

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp()).resolve()
    >>> (root / "studies").mkdir(); _ = (root / "pyproject.toml").write_text("")
    >>> project_root(root / "studies") == root, project_root("/") == Path("/")
    (True, True)
    """
    start = Path(folder).resolve()
    for candidate in (start, *start.parents):
        if any((candidate / marker).exists() for marker in PROJECT_MARKERS):
            return candidate
    return start


def locate_code(ref: str, root: str | Path, *, key: str = "hook") -> CodeFile:
    """Resolve ``"path/file.py:name"`` relative to the folder ``root`` (the study file's
    folder) without executing anything; ``key`` is the study key that names it, for messages.
    The file may lie anywhere inside the study's project (`project_root`), never outside it:
    an absolute path, one that leaves the project (by ``..`` or a link), a missing file, one
    that is not ``.py`` or a bad name is a `SpecError`.

    >>> import tempfile
    >>> locate_code("../evil.py:edges", tempfile.mkdtemp())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emg_lens.errors.SpecError: hook '../evil.py:edges': '..' leaves the study's project...
    """
    return _locate(ref, key, SpecError, Path(root).resolve())


def _locate(ref: str, key: str, error: type[EmgLensError], base: Path | None = None) -> CodeFile:
    """`locate_code` (confined to ``base``'s project) or, with no ``base``, `locate_argument`;
    ``error`` naming ``key``."""
    path_text, sep, attr = ref.rpartition(":")
    if not sep or not path_text or not attr.isidentifier():
        raise error(f"{key} {ref!r} must look like {EXAMPLES.get(key, EXAMPLES['--modules'])}")
    if base is None:  # typed on the command line by the user: any file
        return _check_py_file(ref, Path(path_text).expanduser().resolve(), attr, key, error)
    project = project_root(base)
    where = f"the study's project {project} (the nearest folder above the study file holding "
    where += "pyproject.toml or .git, else the study file's folder)"
    pure = PurePosixPath(path_text.replace("\\", "/"))
    if pure.is_absolute() or PureWindowsPath(path_text).is_absolute():
        raise SpecError(f"{key} {ref!r}: absolute paths are refused; give one relative to {base}")
    if not Path(os.path.normpath(base / pure)).is_relative_to(project):
        raise SpecError(f"{key} {ref!r}: '..' leaves {where}; code must live inside it")
    path = (base / pure).resolve()
    if not path.is_relative_to(project):
        raise SpecError(f"{key} {ref!r} resolves to {path}, outside {where} (through a link)")
    return _check_py_file(ref, path, attr, key, error)


def _check_py_file(
    ref: str, path: Path, attr: str, key: str, error: type[EmgLensError]
) -> CodeFile:
    if path.suffix != ".py":
        raise error(f"{key} {ref!r} must name a .py file, got {path.name!r}")
    if not path.is_file():
        raise error(f"{key} {ref!r}: file {ref.rpartition(':')[0]!r} not found: no {path}")
    return CodeFile(ref=ref, path=path, attr=attr, sha256=_sha256(path.read_bytes()), key=key)


def locate_argument(ref: str, option: str = "--modules") -> CodeFile:
    """Resolve ``FILE:NAME`` given on the command line (``option``) without executing
    anything, relative to the working directory or absolute: the user typed the path, so no
    folder confines it (running it still takes ``--allow-code``). A bad form, a missing file
    or one that is not ``.py`` is an `ArgumentError` naming ``option``.

    >>> locate_argument("models.py")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: --modules 'models.py' must look like FILE:FUNCTION, e.g. ...
    """
    return _locate(ref, option, ArgumentError)


def describe_code(files: Iterable[CodeFile]) -> str:
    """One line per file (``ref -> path (sha256 ...)``), as errors and ``study check`` show."""
    return "\n".join(f"  {f.line()}" for f in files)


def consent_command(spec: str | Path, files: Iterable[CodeFile]) -> str:
    """The ``study run`` command that consents to exactly ``files`` as they are now.

    >>> f = CodeFile("hooks/a.py:edges", Path("hooks/a.py"), "edges", "ab" * 32)
    >>> consent_command("my study.toml", [f])  # doctest: +ELLIPSIS
    "emg-lens study run 'my study.toml' --allow-code abab...ab"
    """
    digests = dict.fromkeys(f.sha256 for f in files)
    return " ".join(
        ["emg-lens study run", shlex.quote(str(spec)), *(f"--allow-code {d}" for d in digests)]
    )


def consent_digests(allow_code: Any) -> bool | frozenset[str]:
    """Consent as given (``allow_code``): True, False (or None), or the SHA-256 digests of the
    files consented to (one string or several; case does not matter). Anything else is an
    `ArgumentError` saying what is accepted.

    >>> consent_digests(True), consent_digests(["AB" * 32]) == {"ab" * 32}
    (True, True)
    >>> consent_digests("abc")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: allow_code (--allow-code) takes True or the SHA-256 ...
    """
    if allow_code is None or isinstance(allow_code, bool):
        return bool(allow_code)
    values = [allow_code] if isinstance(allow_code, str) else allow_code
    try:
        values = list(values)
    except TypeError:
        values = [allow_code]
    for value in values:
        if not (isinstance(value, str) and _SHA256.fullmatch(value)):
            raise ArgumentError(
                "allow_code (--allow-code) takes True or the SHA-256 of each file `emg-lens "
                f"study check` lists (64 hexadecimal digits); got {value!r}"
            )
    return frozenset(v.lower() for v in values)


def require_consent(files: list[CodeFile], *, allow_code: Any, runs: str = "this study") -> None:
    """Refuse (`SpecError`, listing the files at fault) unless there is nothing to
    run or the user consented: to every file (``allow_code=True``), or to digests that match
    each file's bytes, every digest matching one of ``files``. ``runs``: what would run them
    (``"this study"``, ``"--modules"``), for the message."""
    consent = consent_digests(allow_code)
    if isinstance(consent, frozenset):
        _refuse_other_bytes(files, consent, runs)
        if unused := sorted(consent - {f.sha256 for f in files}):
            raise SpecError(
                f"--allow-code {unused[0]} matches none of the study's files, which are:\n"
                f"{describe_code(files) or '  (none)'}\nconsent to the ones `study check` lists"
            )
    elif files and not consent:
        raise SpecError(
            f"{runs} runs Python code from {len({f.path for f in files})} file(s), which emg_lens "
            f"runs only with consent:\n{describe_code(files)}\n{CONSENT_HINT}"
        )


def _refuse_other_bytes(
    files: list[CodeFile], consent: frozenset[str], runs: str = "this study"
) -> None:
    if other := [f for f in files if f.sha256 not in consent]:
        raise SpecError(
            f"consent was given to SHA-256 {', '.join(sorted(consent))}; these files of {runs} "
            f"hold other bytes (changed, or never listed):\n{describe_code(other)}\nnothing was "
            "run: look at them again with `emg-lens study check`, then consent to its digests"
        )


def load_code(code: CodeFile, *, allow_code: Any) -> Any:
    """Execute the consented file and return its ``attr``: the exact bytes that were
    located (a file edited since is refused), as a fresh module that is not kept in
    ``sys.modules``. ``allow_code``: True, or digests among which the file's must be."""
    consent = consent_digests(allow_code)
    if isinstance(consent, frozenset):
        _refuse_other_bytes([code], consent)
    else:
        require_consent([code], allow_code=consent)
    source = code.path.read_bytes()
    if _sha256(source) != code.sha256:
        raise SpecError(f"{code.path} changed after it was listed for consent: check it again")
    name = f"emg_lens_user_{code.path.stem}_{code.sha256[:12]}"
    module = types.ModuleType(name)
    module.__file__ = str(code.path)
    sys.modules[name] = module  # dataclasses and pickling look a class's module up here
    try:
        exec(compile(source, str(code.path), "exec"), module.__dict__)
    except (Exception, SystemExit) as exc:  # a user's file: any failure is a spec problem
        raise SpecError(f"{code.key} file {code.path} failed to import: {exc!r}") from exc
    finally:
        sys.modules.pop(name, None)
    if not hasattr(module, code.attr):
        names = sorted(n for n in vars(module) if not n.startswith("_"))
        raise SpecError(f"{code.path} has no {code.attr!r}; it defines {names}")
    return getattr(module, code.attr)


def load_hook(code: CodeFile, *, allow_code: Any) -> Any:
    """Run a study's hook file with consent (`load_code`) and return what it names: an
    `EdgeSet`, an edge expression (parsed), or a hook factory ``f(model, layers) ->
    fwd_hooks``; anything else is a `SpecError` naming the reference.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = (root / "edges.py").write_text("mine = 'cross_modal'\\nbad = 3")
    >>> load_hook(locate_code("edges.py:mine", root), allow_code=True)
    EdgeSet('cross_modal')
    >>> load_hook(locate_code("edges.py:bad", root), allow_code=True)
    Traceback (most recent call last):
    ...
    emg_lens.errors.SpecError: edges.py:bad must be an EdgeSet, an edge expression or a hook factory f(model, layers) -> fwd_hooks; got int
    """  # noqa: E501
    value = load_code(code, allow_code=allow_code)
    if isinstance(value, str):
        value = parse(value)
    if not (isinstance(value, EdgeSet) or callable(value)):
        raise SpecError(
            f"{code.ref} must be an EdgeSet, an edge expression or a hook factory "
            f"f(model, layers) -> fwd_hooks; got {type(value).__name__}"
        )
    return value


@contextlib.contextmanager
def running_code(ref: str, doing: str) -> Iterator[None]:
    """Run a study's code (``ref``: ``"hooks/file.py:name"``) in the block: an exception it
    raises, ``SystemExit`` included, is a `SpecError` naming ``ref`` and what it was ``doing``;
    emg_lens's own errors and Ctrl-C pass unchanged.

    >>> with running_code("hooks/mine.py:make", "building its hooks"):
    ...     raise SystemExit(3)
    Traceback (most recent call last):
    ...
    emg_lens.errors.SpecError: hooks/mine.py:make raised SystemExit(3) while building its hooks; a study's code must return, not exit or fail
    """  # noqa: E501
    try:
        yield
    except EmgLensError:
        raise
    except (Exception, SystemExit) as exc:
        raise SpecError(
            f"{ref} raised {exc!r} while {doing}; a study's code must return, not exit or fail"
        ) from exc


def hooks_from_factory(ref: str, factory: Any, model: Any, layers: list[int]) -> list:
    """Call the hook factory ``ref`` names (``factory(model, layers)``, under `running_code`)
    and return its hooks; anything but a list of (name or name filter, hook function) pairs
    is a `SpecError` naming ``ref``, what it returned, and what is accepted.

    >>> hooks_from_factory("hooks/mine.py:make", lambda model, layers: {"a": 1}, None, [0])
    Traceback (most recent call last):
    ...
    emg_lens.errors.SpecError: hook factory hooks/mine.py:make returned a dict; accepted: a list of (hook name or name filter, hook function) pairs, as model.run_with_hooks(fwd_hooks=...) takes
    """  # noqa: E501
    with running_code(ref, "building its hooks"):
        hooks = factory(model, layers)
    problem = _not_hooks(hooks)
    if problem is not None:
        raise SpecError(f"hook factory {ref} returned {problem}; accepted: {HOOKS_ACCEPTED}")
    return list(hooks)


def _a(value: Any) -> str:
    name = type(value).__name__
    return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"


def _not_hooks(hooks: Any) -> str | None:
    """What is wrong with a factory's return value, or None when it is a list of hooks."""
    if not isinstance(hooks, list | tuple):
        return _a(hooks)
    for i, pair in enumerate(hooks):
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            return f"a list whose item {i} is {_a(pair)}, not a (name, hook) pair"
        name, hook = pair
        if not (isinstance(name, str) or callable(name)):
            return f"a list whose item {i}'s name is {_a(name)}"
        if not callable(hook):
            return f"a list whose item {i}'s hook is {_a(hook)}"
    return None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _builder_hint(needs: tuple[str, ...]) -> str:
    """What to add so that a checkpoint holding the user's modules ``needs`` loads."""
    returned = "{" + ", ".join(f'"{name}": module' for name in needs) + "}"
    return (
        f"write a function build_modules(info) -> {returned} in models.py (info: its config.json "
        'as a dict), and add modules = "models.py:build_modules" to the study file (models.py '
        "in its folder or below), or give --modules models.py:build_modules to emg-lens "
        "discover, inspect, export or evaluate; it runs only with --allow-code (allow_code=True)"
    )


@dataclass(frozen=True)
class ModuleBuilder:
    """The function a ``modules`` reference names (``build_modules(info) -> {"embed": ...,
    "readout": ...}``), loaded with consent: it builds, for one checkpoint, the user's modules
    that ``config.json`` cannot rebuild (see the module docstring).

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = (root / "models.py").write_text(
    ...     "from torch import nn\\n"
    ...     "def build_modules(info):\\n"
    ...     "    d = info['config']['d_model']\\n"
    ...     "    return {'embed': nn.Linear(8, d), 'readout': nn.Linear(d, 3)}\\n")
    >>> code = locate_code("models.py:build_modules", root, key="modules")
    >>> builder = ModuleBuilder.load(code, allow_code=True)
    >>> info = {"model_class": "HookedTorchEncoder", "config": {"d_model": 4}}
    >>> sorted(builder.build("subject_1", info)), builder.provenance["function"]
    (['embed', 'readout'], 'build_modules')
    """

    code: CodeFile
    function: Any

    @classmethod
    def load(cls, code: CodeFile, *, allow_code: Any) -> ModuleBuilder:
        """Run ``code``'s file with consent (`load_code`) and take the function it names; a
        name that is not a function is a `SpecError` naming the reference."""
        function = load_code(code, allow_code=allow_code)
        if not callable(function):
            raise SpecError(
                f"{code.key} {code.ref} is {_a(function)}; it must name a function f(info)"
            )
        return cls(code, function)

    @property
    def provenance(self) -> dict[str, str]:
        """What a result computed with these modules records: the function's name and its
        file's SHA-256 (an edited file recomputes; a moved, unchanged one does not)."""
        return {"function": self.code.attr, "sha256": self.code.sha256}

    def build(self, path: str | Path, info: dict[str, Any]) -> dict[str, Any]:
        """The modules of the checkpoint ``path`` (``info``: its parsed ``config.json``),
        called under `running_code`; anything but a dict of exactly the ``torch.nn.Module`` s
        its model class needs (`emg_lens.checkpoints.user_modules_of`) is a `SpecError`."""
        from torch import nn

        needs = user_modules_of(info)
        with running_code(self.code.ref, f"building the modules of {path}"):
            modules = self.function(copy.deepcopy(info))
        accepted = (
            f"a dict {{{', '.join(repr(n) + ': torch.nn.Module' for n in needs)}}}, the modules "
            f"a {info.get('model_class')} holds (for {path})"
        )
        built = isinstance(modules, Mapping) and set(modules) == set(needs)
        if not (built and all(isinstance(modules[name], nn.Module) for name in needs)):
            got = _a(modules)  # what each name holds, where it is a dict
            if isinstance(modules, Mapping):
                got = "{" + ", ".join(f"{k!r}: {_a(v)}" for k, v in modules.items()) + "}"
            raise SpecError(f"{self.code.ref} returned {got}; accepted: {accepted}")
        return dict(modules)


@dataclass(frozen=True)
class StudyCode:
    """A study's code files, each run once and only with consent: what each hook reference
    names and the SHA-256 of the bytes that ran, for provenance, and the builder of the user's
    modules (``modules = ...``), if the study names one."""

    targets: dict[str, Any]
    digests: dict[str, str]
    modules: ModuleBuilder | None = None

    @classmethod
    def load(cls, files: list[CodeFile], allow_code: Any) -> StudyCode:
        """Run a study's code ``files`` (its spec's ``code_files()``: located and hashed, never
        run) with consent (``allow_code``: True, or the files' SHA-256 digests): refused by
        `require_consent` before any of them runs."""
        require_consent(files, allow_code=allow_code)
        hooks = [f for f in files if f.key == "hook"]
        builder = next((f for f in files if f.key == "modules"), None)
        targets = {f.ref: load_hook(f, allow_code=allow_code) for f in hooks}
        modules = None if builder is None else ModuleBuilder.load(builder, allow_code=allow_code)
        return cls(targets, {f.ref: f.sha256 for f in hooks}, modules)


def require_builder(checkpoints: Iterable[str | Path], builder: ModuleBuilder | None) -> None:
    """Refuse, before anything runs, checkpoint folders whose models hold the user's own
    modules (`emg_lens.checkpoints.user_modules_of`) when no ``builder`` was given: a
    `CheckpointError` naming the first such folder and saying exactly what to add."""
    if builder is not None:
        return
    for path in checkpoints:
        info = read_checkpoint_info(path)
        if needs := user_modules_of(info):
            raise CheckpointError(
                f"{path} holds a {info['model_class']} whose {' and '.join(needs)} are your "
                "own modules, which its config.json cannot rebuild: " + _builder_hint(needs)
            )


def load_model(
    path: str | Path, builder: ModuleBuilder | None = None, *, device: str | None = None
) -> Any:
    """`emg_lens.checkpoints.load_checkpoint` of ``path`` (onto ``device``), with the user's
    modules built by ``builder`` where its model holds some (`require_builder` refuses a
    missing one); weights that do not fit them are a `CheckpointError` naming the builder."""
    info = read_checkpoint_info(path)
    modules, origin = None, ""
    if user_modules_of(info):
        require_builder([path], builder)
        assert builder is not None  # require_builder refused a missing one
        modules, origin = builder.build(path, info), f"{builder.code.ref} ({builder.code.path})"
    try:
        return load_checkpoint(path, device=device, modules=modules)
    except CheckpointError as exc:
        if modules is None:  # no modules of the user's: the checkpoint's own error, as it is
            raise
        raise CheckpointError(
            f"{exc}; the modules came from {origin}: it must build the architecture saved"
        ) from exc
