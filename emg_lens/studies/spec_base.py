"""`Spec`: the base of every study spec object (frozen dataclasses), which reads a table and
writes it back. `Spec.from_dict` refuses anything but a table, a ``kind`` the class does not
read and any key it does not know (a typo must not be ignored), then builds the spec from the
class's ``_parse``; `Spec.to_dict` writes every field back so that ``from_dict`` reads an equal
spec, as each field's `file_key` metadata says (``key``, ``dump``, ``omit``; ``saved=False``: a
keyword only, never in the table); `Spec.fingerprint` keys a study's store.

>>> from dataclasses import dataclass, field
>>> @dataclass(frozen=True)
... class Window(Spec):
...     WHERE = "window"
...     size: int
...     hop: int | None = field(default=None, metadata=file_key(omit=is_none))
...     @classmethod
...     def _parse(cls, data, where):
...         return {"size": data.get("size", 1), "hop": data.get("hop")}
>>> Window.from_dict({"size": 4}).to_dict()
{'size': 4}
>>> Window.from_dict({"szie": 4})
Traceback (most recent call last):
...
emg_lens.errors.SpecError: unknown key(s) ['szie'] in [window]; accepted: ['hop', 'size']
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from emg_lens.errors import SpecError, checked
from emg_lens.stats.compare import CLAIMS_TESTS, CORRECTIONS, PAIRED, TESTS
from emg_lens.studies.validate import check_string, check_study_name, refuse_unknown

_READING = contextvars.ContextVar("spec_reading", default=False)  # `Spec.from_dict` builds one

FAMILIES = ("mode", "intervention", "all")
"""What a correction runs over: the comparisons of one layer mode, of one intervention, or all."""


def file_key(
    key: str | None = None,
    *,
    dump: Callable[[Any, Any], Any] | None = None,
    omit: Callable[[Any, Any], bool] | None = None,
    within: str | None = None,
    saved: bool = True,
) -> dict[str, Any]:
    """A field's metadata for `Spec`: ``key``, the table's key where it is not the field's name;
    ``dump(value, spec)``, the table's value where `plain`'s is not it; ``omit(value, spec)``,
    true where the key is left out (`is_none`); ``within``: the field is written and read inside
    another key's table (a training study's ``preset``, in ``[train]``); ``saved=False``: not in
    the table at all (``source_dir``), `Spec.from_dict` takes it as a keyword.

    >>> file_key("metric")
    {'key': 'metric', 'saved': True}
    """
    meta = {"key": key, "dump": dump, "omit": omit, "within": within, "saved": saved}
    return {k: v for k, v in meta.items() if v is not None}


def is_none(value: Any, spec: Any) -> bool:
    """``omit`` for an optional key: left out while it is None."""
    return value is None


def plain(value: Any) -> Any:
    """A field's value as a table holds it: nested specs as tables, tuples and lists as lists,
    mappings as tables.

    >>> plain(((0, 1), (2,)))
    [[0, 1], [2]]
    """
    if isinstance(value, Spec):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    return value


class Spec:
    """The base of study spec dataclasses. A subclass sets ``WHERE`` (how messages name its
    table), ``HOLDS`` (what the table holds), ``KIND`` when its table may say ``kind``,
    ``UNHASHED`` (keys that are how a study runs, not what it is: out of the fingerprint), and
    implements ``_parse``. A spec built directly (its constructor in a notebook,
    `dataclasses.replace`) is read back from its own table, so it passes the checks a study
    file's does and holds the values that file would (``READ_ALONE`` False: a spec whose
    reading needs its study's context, checked when that study is read)."""

    WHERE: ClassVar[str] = "study"
    HOLDS: ClassVar[str] = ""  # what the table holds, for the message when it is no table
    KIND: ClassVar[str | None] = None
    UNHASHED: ClassVar[tuple[str, ...]] = ()
    READ_ALONE: ClassVar[bool] = True
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]  # set by @dataclass

    @classmethod
    def _saved_fields(cls) -> list[dataclasses.Field[Any]]:
        """The fields with a key of their own in the table."""
        return [
            f
            for f in dataclasses.fields(cls)
            if f.metadata.get("saved", True) and "within" not in f.metadata
        ]

    @classmethod
    def _unsaved(cls) -> set[str]:
        """The fields a table does not hold (``source_dir``): `from_dict` takes them as
        keywords."""
        return {f.name for f in dataclasses.fields(cls) if not f.metadata.get("saved", True)}

    @classmethod
    def keys(cls) -> set[str]:
        """The keys a table of this spec may hold."""
        keys = {f.metadata.get("key", f.name) for f in cls._saved_fields()}
        return keys | ({"kind"} if cls.KIND is not None else set())

    @classmethod
    def from_dict(cls, data: Any, *, where: str | None = None, **context: Any) -> Any:
        """The spec a table (a dict read from a study file) describes; ``where`` names the
        table in messages (default ``WHERE``); ``context`` holds the unsaved fields
        (``source_dir``) and what ``_parse`` needs besides the table."""
        where = where or cls.WHERE
        if not isinstance(data, dict):
            # a section reads [data]; an entry of a list, interventions[0]
            what = {"study": "a study spec"}.get(where, where if "[" in where else f"[{where}]")
            holds = f" with {cls.HOLDS}" if cls.HOLDS else ""
            raise SpecError(f"{what} must be a table{holds}, got {data!r}")
        if cls.KIND is not None and data.get("kind", cls.KIND) != cls.KIND:
            reads = f"{cls.__name__} reads kind = {cls.KIND!r} (load_spec reads every kind)"
            raise SpecError(f"kind = {data['kind']!r}; {reads}")
        refuse_unknown(where, data, cls.keys())
        if cls.KIND is not None:  # a study, of any kind: its name is its output folder's
            check_study_name(data.get("name"))
        given = {k: context.pop(k) for k in list(context) if k in cls._unsaved()}
        values = cls._parse({k: v for k, v in data.items() if k != "kind"}, where, **context)
        if cls.KIND is not None:  # every study's name, and what it is in words
            text = check_string(data.get("description"), "description (free text)") or ""
            values = {"name": data["name"], "description": text, **values}
        reading = _READING.set(True)
        try:
            spec = cls(**values, **given)
        finally:
            _READING.reset(reading)
        spec._check()
        return spec

    def __post_init__(self) -> None:
        """A spec built directly: read back from its table (see the class docstring)."""
        if _READING.get() or not self.READ_ALONE:
            return
        unsaved = {name: getattr(self, name) for name in self._unsaved()}
        read = type(self).from_dict(self.to_dict(), where=type(self).__name__, **unsaved)
        for f in dataclasses.fields(self):  # the values the file would hold (tuples, not lists)
            object.__setattr__(self, f.name, getattr(read, f.name))

    @classmethod
    def _parse(cls, data: dict[str, Any], where: str) -> dict[str, Any]:
        """The fields' values from ``data`` (a table without ``kind``, its keys known); a
        subclass may take keywords besides, the ``context`` of `from_dict`."""
        raise NotImplementedError

    def _check(self) -> None:
        """Checks of the whole spec once built (what no single key shows); none by default."""

    def to_dict(self) -> dict[str, Any]:
        """A plain dict that `from_dict` reads back to an equal spec."""
        out: dict[str, Any] = {} if self.KIND is None else {"kind": self.KIND}
        for f in self._saved_fields():
            value, meta = getattr(self, f.name), f.metadata
            try:  # a field set directly, past the type checks (a notebook's), may not write
                if "omit" in meta and meta["omit"](value, self):
                    continue
                dump = meta.get("dump", lambda v, spec: plain(v))
                out[meta.get("key", f.name)] = dump(value, self)
            except SpecError:  # a nested spec's, which names its own field
                raise
            except (AttributeError, TypeError, ValueError) as exc:
                what = f"{type(self).__name__}.{f.name} = {value!r}"
                raise SpecError(f"{what} is no value a study file holds ({exc})") from exc
        return out

    def fingerprint(self) -> str:
        """Canonical JSON of the spec: two specs with equal fingerprints run the same study
        (the ``UNHASHED`` keys are how it runs, not what it is; ``"stats.test"``: a key of a
        table)."""
        out = self.to_dict()
        for key in self.UNHASHED:
            table, _, inner = key.rpartition(".")
            (out.get(table, {}) if table else out).pop(inner, None)
        return json.dumps(out, sort_keys=True)

    def with_changes(self, **changes: Any) -> Any:
        """The spec with ``changes`` (keys of its table) checked as a study file's would be,
        its unsaved fields (the file's folder) kept."""
        unsaved = {name: getattr(self, name) for name in self._unsaved()}
        return type(self).from_dict({**self.to_dict(), **changes}, **unsaved)


@checked
@dataclass(frozen=True)
class StatsSpec(Spec):
    """The ``[stats]`` table: test, correction and the family a correction runs over, and
    ``claims_test``, the test of an ablation study's drop claims (``"paired"`` unless the file
    names another of `TESTS`). Training studies read the test and the correction."""

    WHERE: ClassVar[str] = "stats"

    test: str = "mannwhitneyu"
    correction: str = "bonferroni"
    family: str = "mode"  # the paper corrects over all comparisons of one layer mode
    claims_test: str = field(default=PAIRED, metadata=file_key(omit=lambda v, s: v == PAIRED))

    @classmethod
    def _parse(cls, data: dict[str, Any], where: str) -> dict[str, Any]:
        accepted: dict[str, tuple[str, ...]] = {"test": TESTS, "correction": CORRECTIONS}
        accepted |= {"family": FAMILIES, "claims_test": CLAIMS_TESTS}
        values = {key: data.get(key, getattr(cls, key)) for key in accepted}
        for key, allowed in accepted.items():  # a non-string is none of them: refused too
            if values[key] not in allowed:
                raise SpecError(f"stats.{key} = {values[key]!r}; accepted: {list(allowed)}")
        return values
