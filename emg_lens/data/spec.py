"""What the data's settings share: a frozen dataclass (a preprocessing recipe, a synthetic
dataset's parameters) written as the plain dict a data source, a window store or a checkpoint
records, and read back from it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from emg_lens.errors import ConfigError, check_field_types

S = TypeVar("S", bound="DictSpec")
Rules = Mapping[str, tuple[str, Callable[[Any, Any], bool]]]
POSITIVE: tuple[str, Callable[[Any, Any], bool]] = ("a positive int", lambda v, _: v >= 1)


class DictSpec:
    """A dataclass of settings (this class among its bases) as a dict and back: `to_dict` is
    every field (`dataclasses.asdict`), `from_dict` its inverse, where JSON's lists become
    tuples again and a key that is no field is a `ConfigError` naming it and the fields.

    >>> import json
    >>> @dataclasses.dataclass(frozen=True)
    ... class Cut(DictSpec):
    ...     window: int = 200
    ...     repetitions: tuple[int, ...] = (1, 3)
    >>> Cut.from_dict(json.loads(json.dumps(Cut(window=100).to_dict())))
    Cut(window=100, repetitions=(1, 3))
    >>> Cut.from_dict({"hop": 50})
    Traceback (most recent call last):
    ...
    emg_lens.errors.ConfigError: unknown Cut fields ['hop']; known: ['repetitions', 'window']
    """

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]  # each subclass's

    def check_counts(self, *names: str) -> None:
        """Refuse a field of ``names`` below 1 (one left unset, None, is allowed), read after
        `check_field_types`: a `ConfigError` naming the class, the field and the value.

        >>> @dataclasses.dataclass(frozen=True)
        ... class Cut(DictSpec):
        ...     window: int = 200
        ...     step: int | None = None
        >>> Cut(window=0).check_counts("window", "step")
        Traceback (most recent call last):
        ...
        emg_lens.errors.ConfigError: Cut.window must be a positive int, got 0
        """
        self.check_rules(dict.fromkeys(names, POSITIVE))

    def check_rules(self, rules: Rules, types: bool = False) -> None:
        """Refuse a field whose value (None passes) fails its rule in ``rules`` (field -> (what
        is accepted, ``test(value, spec)``); `check_field_types` first where ``types``): a
        `ConfigError` naming the class, the field, what is accepted and the value.

        >>> @dataclasses.dataclass(frozen=True)
        ... class Cut(DictSpec):
        ...     window: int = 200
        >>> Cut(window=0).check_rules({"window": POSITIVE})
        Traceback (most recent call last):
        ...
        emg_lens.errors.ConfigError: Cut.window must be a positive int, got 0
        """
        if types:
            check_field_types(self)
        for name, (wanted, ok) in rules.items():
            if (value := getattr(self, name)) is not None and not ok(value, self):
                raise ConfigError(f"{type(self).__name__}.{name} must be {wanted}, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[S], data: Mapping[str, Any]) -> S:
        """The spec `to_dict` wrote (JSON lists become tuples again); an unknown key is
        refused."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} fields {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
