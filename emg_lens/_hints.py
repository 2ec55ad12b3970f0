"""Type annotations at run time: what one accepts, in words (the type check under
`emg_lens.errors`' `check_field_types`, and its `mismatch`), which needs none of the errors; and
`checked`, the test run's runtime checks of the exported names."""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import os
import types
import typing
from typing import Any, TypeVar

F = TypeVar("F")

CHECKS = os.environ.get("EMG_LENS_TYPECHECK") == "1"  # the test run's (tests/typecheck.py)
MARK = "_emg_lens_checked"  # what tests/unit/test_runtime_checks.py looks for


def checked(obj: F) -> F:
    """An exported function or class, marked; where `CHECKS`, its annotations (jaxtyping's
    shapes too) checked at each call by jaxtyping + beartype (an int passes for a float, as
    mypy reads it): a function, a dataclass's ``__init__`` (unless `fields_checked`), a class's
    ``__init__`` and ``forward``; a user's import leaves them as written. A function's other
    decorators go above it (it wraps the function as written), a class's below it.

    >>> @checked
    ... def twice(x: int) -> int:
    ...     return 2 * x
    >>> twice(2), getattr(twice, MARK)
    (4, True)
    """
    if CHECKS:
        from beartype import BeartypeConf, beartype
        from jaxtyping import jaxtyped

        check: Any = jaxtyped(typechecker=beartype(conf=BeartypeConf(is_pep484_tower=True)))
        if isinstance(obj, type) and not dataclasses.is_dataclass(obj):
            for name in ("__init__", "forward"):
                if name in vars(obj):
                    setattr(obj, name, check(vars(obj)[name]))
        else:
            obj = check(obj)
    setattr(obj, MARK, True)
    return obj


@checked
def mismatch(value: Any, hint: Any) -> str | None:
    """None when ``value`` is what the type annotation ``hint`` says, else what the annotation
    accepts, in words, for an error message naming the field: ``int`` takes an int (not a
    bool), ``float`` a finite real number (an int too: NaN and inf are refused), ``bool`` true
    or false, ``str`` a string, ``dict[...]`` a table (its contents are not looked at),
    ``tuple[X, Y]`` two values, ``tuple[X, ...]`` any number of X, ``X | None`` also None (a
    list stands for a tuple: JSON has no tuples). An annotation of another kind accepts
    anything: the owner's own checks look at it.

    >>> mismatch(1, float), mismatch(float("nan"), float), mismatch(None, int | None)
    (None, 'a finite number', None)
    >>> mismatch(True, int), mismatch(("0.9", 0.98), tuple[float, float])
    ('an int', '2 values (a finite number, a finite number)')
    >>> mismatch([1, 2], tuple[int, ...]), mismatch((1, 2.5), tuple[int, ...])
    (None, 'values (each an int)')
    """
    return None if _holds(value, hint) else _expected(hint)


def _holds(value: Any, hint: Any) -> bool:
    args, origin = typing.get_args(hint), typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_holds(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool or hint is str:
        return isinstance(value, hint)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        return isinstance(value, numbers.Integral) or math.isfinite(value)
    if hint is dict or origin is dict:
        return isinstance(value, dict)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return isinstance(value, tuple | list) and all(_holds(v, args[0]) for v in value)
        return (
            isinstance(value, tuple | list)
            and len(value) == len(args)
            and all(_holds(v, arg) for v, arg in zip(value, args))
        )
    return True


def _expected(hint: Any) -> str:
    args, origin = typing.get_args(hint), typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_expected(arg) for arg in args)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return f"values (each {_expected(args[0])})"
    if origin is tuple:
        return f"{len(args)} values ({', '.join(_expected(arg) for arg in args)})"
    if hint is dict or origin is dict:
        return "a table"
    words = {type(None): "None", bool: "true or false", int: "an int", float: "a finite number"}
    return words.get(hint, "a string" if hint is str else str(hint))


@functools.cache
def type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def plain_number(value: Any) -> Any:
    """A numpy (or other non-builtin) integer or real as Python's int or float; else as is."""
    if isinstance(value, bool) or type(value) in (int, float):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value
