"""What a type annotation accepts, in words: the type check under `emg_lens.errors`'
`check_field_types` (and its `mismatch`), which needs none of the errors."""

from __future__ import annotations

import functools
import math
import numbers
import types
import typing
from typing import Any, TypeVar

F = TypeVar("F")


def no_type_check(fn: F) -> F:
    """``fn`` as it is, left out of the test suite's runtime checks (jaxtyping's import hook
    skips a function with a decorator of this name) while mypy still reads its annotations,
    unlike `typing.no_type_check`. For the scalar helpers called per hook point, table cell or
    validated field, where the check's two wrappers (~20 us a call) were half the suite's
    overhead of checking and their str or int annotations say nothing mypy does not check."""
    return fn


@no_type_check
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


@typing.no_type_check  # private, taking Any, recursing: its one caller, mismatch, is checked
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


@no_type_check
def plain_number(value: Any) -> Any:
    """A numpy (or other non-builtin) integer or real as Python's int or float; else as is."""
    if isinstance(value, bool) or type(value) in (int, float):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value
