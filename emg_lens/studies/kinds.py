"""Study kinds behind one interface: a study file read once (TOML or YAML, `read_study_file`),
its ``kind`` (default ``"ablation"``) picking a spec, a runner and a result (`KINDS`: ablation,
training, discovery, regression; docs/guide/studies.md). `load_spec` builds the kind's spec;
`run` and `check_study` dispatch on it. `KINDS` names each kind's `StudyKind` as
``"module:attribute"``, imported on first use: the discovery kind lives a layer above.

>>> load_spec({"kind": "discovery", "name": "c", "models": "demo"}).tau
0.05
>>> study_kind("sweep")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
emg_lens.errors.SpecError: kind = 'sweep'; accepted: ['ablation', 'training', 'discovery', ...]
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import yaml

from emg_lens._io import no_file
from emg_lens.errors import ArgumentError, SpecError, checked
from emg_lens.studies.spec_base import Spec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

KINDS: Mapping[str, str] = MappingProxyType(
    {
        "ablation": "emg_lens.studies.ablation.runner:KIND",
        "training": "emg_lens.studies.training.runner:KIND",
        "discovery": "emg_lens.discovery.study:KIND",
        "regression": "emg_lens.studies.regression.runner:KIND",
    }
)
"""Every study kind, by the name a study file's ``kind`` gives, -> its `StudyKind`."""


@checked
@dataclass(frozen=True)
class StudyKind:
    """One kind of study: its ``spec`` class (whose ``KIND`` is the file's ``kind``), ``run``
    (``run(spec, **options) -> result``; None on a torchrun rank other than 0), ``check``
    (what ``emg-lens study check`` prints), ``refuses`` (options of `run` and `check_study`
    this kind does not take -> why: refused by name, never ignored) and ``out`` (the default
    output folder, ``<out>/<name>``)."""

    spec: type[Spec]
    run: Callable[..., Any]
    check: Callable[..., str]
    refuses: Mapping[str, str] = field(default_factory=dict)
    out: str = "runs/studies"

    @property
    def name(self) -> str:
        """What a study file's ``kind`` says: its spec's ``KIND``."""
        kind = self.spec.KIND
        assert kind is not None, f"{self.spec.__name__} sets no KIND"  # every study spec does
        return kind

    def folder(self, spec: Any, out: str | Path | None = None) -> Path:
        """Where a study of this kind writes: ``out`` where given (``--out``), else
        ``<out>/<name>``, its name one folder name (`study_name`), never a path elsewhere.

        >>> study_kind("discovery").folder(load_spec({"kind": "discovery", "name": "c",
        ...                                           "models": "demo"}))
        PosixPath('runs/discovery/c')
        """
        return Path(out) if out else Path(self.out) / spec.name  # checked by its spec

    def load(self, data: Any, source_dir: str | Path = ".") -> Any:
        """Its spec from a table read from a file in ``source_dir``."""
        context = {"source_dir": str(source_dir)} if "source_dir" in self.spec._unsaved() else {}
        return self.spec.from_dict(data, **context)


@functools.cache
def study_kind(name: Any) -> StudyKind:
    """The kind ``name``; an unknown one is a `SpecError` listing `KINDS`."""
    if not isinstance(name, str) or name not in KINDS:
        raise SpecError(f"kind = {name!r}; accepted: {list(KINDS)}")
    module, _, attribute = KINDS[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def kind_of(spec: Any) -> StudyKind:
    """The kind of a spec object."""
    for name in KINDS:
        kind = study_kind(name)
        if isinstance(spec, kind.spec):
            return kind
    raise ArgumentError(f"{type(spec).__name__} is no study spec; accepted: {list(KINDS)}")


def _from_table(data: Any, source_dir: str | Path, default: str) -> Any:
    kind = data.get("kind", default) if isinstance(data, dict) else default
    return study_kind(kind).load(data, source_dir)


@checked
def load_spec(source: str | Path | dict | Any, kind: str | None = None) -> Any:
    """A study's spec from a TOML or YAML file (read once), a dict, or a spec passed through.
    The table's ``kind`` picks the spec class; a table without one is an ablation study, or,
    for a dict, of ``kind`` when given. With ``kind``, a study of another kind is a
    `SpecError` naming what runs it.

    >>> load_spec({"name": "a", "models": "demo",
    ...            "interventions": [{"name": "uni", "edges": "unimodal"}]}).models
    'demo'
    >>> load_spec({"kind": "ablation", "name": "a", "models": "demo",
    ...            "interventions": [{"name": "uni", "edges": "unimodal"}]}, kind="training")
    Traceback (most recent call last):
    ...
    emg_lens.errors.SpecError: study 'a' is kind = 'ablation', not kind = 'training': use run_study (or `emg-lens study run`, which runs every kind)
    """  # noqa: E501
    if isinstance(source, dict):
        spec = _from_table(source, ".", kind or "ablation")
    elif isinstance(source, str | Path):
        spec = read_study_file(source, lambda data, folder: _from_table(data, folder, "ablation"))
    else:
        spec = source
    found = kind_of(spec)
    if kind is not None and found.name != kind:
        use = f"use {found.run.__name__} (or `emg-lens study run`, which runs every kind)"
        raise SpecError(f"study {spec.name!r} is kind = {found.name!r}, not kind = {kind!r}: {use}")
    return spec


SpecT = TypeVar("SpecT", bound=Spec)


def load_as(source: SpecT | str | Path | dict, spec_class: type[SpecT]) -> SpecT:
    """`load_spec` of one kind, ``spec_class``'s: a study of another kind is a `SpecError`
    naming what runs it. Each kind's runner reads its ``spec`` argument by it.

    >>> from emg_lens.studies import StudySpec
    >>> load_as({"name": "a", "models": "demo",
    ...          "interventions": [{"name": "uni", "edges": "unimodal"}]}, StudySpec).models
    'demo'
    """
    spec: SpecT = load_spec(source, kind=spec_class.KIND)
    return spec


def _dispatch(source: Any, options: Mapping[str, Any], flags: Mapping[str, str] | None):
    """`run`'s and `check_study`'s spec of ``source``, its kind and the options it takes; an
    option given that the kind does not take is an `ArgumentError` saying why (``flags`` names
    the options as the command line does)."""
    spec = load_spec(source)
    kind = kind_of(spec)
    for option, why in kind.refuses.items():
        if options.get(option) not in (None, False, {}):
            name = (flags or {}).get(option, f"{option}=")
            article = "an" if kind.name[0] in "aeiou" else "a"
            raise ArgumentError(f"{name}: {spec.name} is {article} {kind.name} study, {why}")
    return spec, kind, {k: v for k, v in options.items() if k not in kind.refuses}


@checked
def run(spec: Any, *, flags: Mapping[str, str] | None = None, **options: Any) -> Any:
    """Run a study of any kind (a spec, a dict or a file) with its kind's runner; an option
    the kind does not take (None, False and empty ones are not given) is refused, named as
    ``flags`` says (default ``option=``).

    >>> run({"kind": "training", "name": "t", "data": {"subjects": [1]},
    ...      "architectures": ["IsoNet"], "reference": "e",
    ...      "inputs": [{"name": "e", "modalities": ["emg"]}]}, models="runs/isonet")
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: models=: t is a training study, which trains its own models
    """
    spec, kind, given = _dispatch(spec, options, flags)
    return kind.run(spec, **given)


@checked
def check_study(spec: Any, *, flags: Mapping[str, str] | None = None, **options: Any) -> str:
    """What ``emg-lens study check`` prints of a study of any kind (nothing of it runs)."""
    spec, kind, given = _dispatch(spec, options, flags)
    return kind.check(spec, **given)


T = TypeVar("T")


def read_study_file(path: str | Path, build: Callable[[Any, Path], T]) -> T:
    """Parse the TOML or YAML file at ``path`` and return ``build(contents, its folder)``; a
    missing or unreadable file, a folder (its study files named), another suffix, text that is
    not UTF-8 (a byte-order mark is allowed), a syntax error or a `SpecError` of ``build`` is a
    `SpecError` naming the file.

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
        studies = path.iterdir() if path.is_dir() else ()  # a folder, given for one of them
        found = sorted(p.name for p in studies if p.suffix in (".toml", ".yaml", ".yml"))
        given = f"; its study files: {found}" if found else ""
        raise SpecError(f"study file {path} {no_file(path)}{given}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"study file {path} cannot be read: {exc.strerror or exc}") from exc
    try:
        # UTF-8, whatever the locale: the same file must mean the same study everywhere
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        fix = "study files are read as UTF-8; save it again with that encoding"
        raise SpecError(
            f"{path} is not UTF-8 (byte {raw[exc.start]:#04x}, line {line}): {fix}"
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
