"""The Python files a study names, and the consent it takes to run them.

A study file may reference code (``hook = "hooks/file.py:name"``), so running a study that
someone else wrote runs their code. As with Hugging Face's ``trust_remote_code``, emg_lens runs
it only when the user says so (``emg-lens study run --allow-code``, ``allow_code=True``), and
only from inside the study file's own folder tree: a reference is a relative path below the
spec's folder, never absolute, never through ``..``, never looked up in the working directory.

Nothing here executes anything until `load_code` is called with consent, and `load_code` runs
exactly the bytes the user consented to: it hashes them again and refuses a file that changed.

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
emg_lens.errors.CodeConsentError: this study runs Python code from 1 file...
>>> load_code(code, allow_code=True)
'cross_modal'
"""

from __future__ import annotations

import hashlib
import sys
import types
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from emg_lens.errors import CodeConsentError, CodePathError, SpecError

__all__ = ["CodeFile", "describe_code", "load_code", "locate_code", "require_consent"]

CONSENT_HINT = (
    "read them, then run again with --allow-code (command line) or allow_code=True (Python)"
)


@dataclass(frozen=True)
class CodeFile:
    """One code reference of a study: as written, the resolved file, the name it reads from
    the file, and the SHA-256 of the file's bytes when it was located."""

    ref: str
    path: Path
    attr: str
    sha256: str

    def line(self) -> str:
        """``ref -> path (sha256 ...)``: how messages and ``study check`` list the file."""
        return f"{self.ref} -> {self.path} (sha256 {self.sha256})"


def locate_code(ref: str, root: str | Path) -> CodeFile:
    """Resolve ``"path/file.py:name"`` below the folder ``root`` (the study file's folder)
    without executing anything.

    A path that is absolute, contains ``..``, or leads out of ``root`` through a link is a
    `CodePathError`; a missing file, a file that is not ``.py`` or a bad name is a `SpecError`.

    >>> locate_code("../evil.py:edges", ".")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emg_lens.errors.CodePathError: hook '../evil.py:edges': '..' leaves the study's folder...
    """
    path_text, sep, attr = ref.rpartition(":")
    if not sep or not path_text or not attr.isidentifier():
        raise SpecError(f"hook {ref!r} must look like 'hooks/file.py:name' (a Python name)")
    pure = PurePosixPath(path_text.replace("\\", "/"))
    if pure.is_absolute() or PureWindowsPath(path_text).is_absolute():
        raise CodePathError(
            f"hook {ref!r}: absolute paths are refused; give a path relative to the study "
            f"file's folder {Path(root).resolve()}"
        )
    if ".." in pure.parts:
        raise CodePathError(
            f"hook {ref!r}: '..' leaves the study's folder; code must live in the study "
            f"file's folder {Path(root).resolve()} or below it"
        )
    base = Path(root).resolve()
    path = (base / pure).resolve()
    if not path.is_relative_to(base):
        raise CodePathError(
            f"hook {ref!r} resolves to {path}, outside the study file's folder {base} "
            "(through a link); code must live in that folder or below it"
        )
    if path.suffix != ".py":
        raise SpecError(f"hook {ref!r} must name a .py file, got {path.name!r}")
    if not path.is_file():
        raise SpecError(f"hook file {path_text!r} not found in the study's folder {base}")
    return CodeFile(ref=ref, path=path, attr=attr, sha256=_sha256(path.read_bytes()))


def describe_code(files: Iterable[CodeFile]) -> str:
    """One line per file (``ref -> path (sha256 ...)``), as errors and ``study check`` show."""
    return "\n".join(f"  {f.line()}" for f in files)


def require_consent(files: list[CodeFile], *, allow_code: bool) -> None:
    """Refuse (`CodeConsentError`, listing every file) unless there is nothing to run or the
    user consented."""
    if files and not allow_code:
        n = len({f.path for f in files})
        raise CodeConsentError(
            f"this study runs Python code from {n} file{'s' * (n != 1)}; emg_lens runs a "
            f"study's code only with consent:\n{describe_code(files)}\n{CONSENT_HINT}"
        )


def load_code(code: CodeFile, *, allow_code: bool) -> Any:
    """Execute the consented file and return its ``attr``: the exact bytes that were
    located (a file edited since is refused), as a fresh module that is not kept in
    ``sys.modules``."""
    require_consent([code], allow_code=allow_code)
    source = code.path.read_bytes()
    if _sha256(source) != code.sha256:
        raise CodeConsentError(
            f"{code.path} changed after it was listed for consent (sha256 now "
            f"{_sha256(source)}, consented {code.sha256}); check it and run again"
        )
    name = f"emg_lens_user_{code.path.stem}_{code.sha256[:12]}"
    module = types.ModuleType(name)
    module.__file__ = str(code.path)
    sys.modules[name] = module  # dataclasses and pickling look a class's module up here
    try:
        exec(compile(source, str(code.path), "exec"), module.__dict__)
    except Exception as exc:  # a user's file: report any failure as a spec problem
        raise SpecError(f"hook file {code.path} failed to import: {exc!r}") from exc
    finally:
        sys.modules.pop(name, None)
    if not hasattr(module, code.attr):
        names = sorted(n for n in vars(module) if not n.startswith("_"))
        raise SpecError(f"{code.path} has no {code.attr!r}; it defines {names}")
    return getattr(module, code.attr)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
