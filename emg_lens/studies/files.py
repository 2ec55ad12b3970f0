"""Reading a study file: TOML or YAML into a table, built into a spec by the caller, with every
error naming the file; `emg_lens.studies.kinds.load_spec` reads every kind through it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from emg_lens.errors import SpecError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["read_study_file"]

T = TypeVar("T")


def read_study_file(path: str | Path, build: Callable[[Any, Path], T]) -> T:
    """Parse the TOML or YAML file at ``path`` and return ``build(contents, its folder)``; a
    missing or unreadable file, another suffix, text that is not UTF-8 (a byte-order mark is
    allowed), a syntax error or a `SpecError` of ``build`` is a `SpecError` naming the file.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "study.toml"
    >>> _ = path.write_text('name = "t"')
    >>> read_study_file(path, lambda data, folder: data["name"])
    't'
    >>> read_study_file("missing.toml", dict)
    Traceback (most recent call last):
    ...
    emg_lens.errors.SpecError: study file missing.toml does not exist
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"study file {path} does not exist")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"study file {path} cannot be read: {exc.strerror or exc}") from exc
    try:
        # UTF-8, whatever the locale: the same file must mean the same study everywhere
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError(
            f"{path} is not UTF-8 text (byte {raw[exc.start]:#04x} on line {line}): study files "
            "are read as UTF-8; save it again with that encoding"
        ) from exc
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            raise SpecError(f"{path}: a study file must end in .toml, .yaml or .yml")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise SpecError(f"{path} is not valid {path.suffix[1:].upper()}: {exc}") from exc
    try:
        return build(data, path.parent)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from exc
