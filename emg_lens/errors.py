"""One exception family for every bad input emg_lens can be given.

Each error message names the field, file or value at fault and what would be accepted, so a
user can fix the input without reading the source."""

from __future__ import annotations

import dataclasses
import math
import numbers
import operator
import sys
import types
import typing
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from emg_lens._hints import MARK, checked, mismatch, plain_number, type_hints

__all__ = [
    "MAX_SEED",
    "ArgumentError",
    "CheckpointError",
    "ConfigError",
    "ConversionError",
    "DataFormatError",
    "EmgLensError",
    "HookFlagError",
    "IndexOutOfRangeError",
    "InputShapeError",
    "LayoutError",
    "MissingDependencyError",
    "SpecError",
    "StorageError",
    "StudyError",
    "UnsupportedFeatureError",
    "check_bool",
    "check_channel_names",
    "check_choice",
    "check_field_types",
    "check_int",
    "check_ints",
    "check_names",
    "check_number",
    "check_seed",
    "check_type",
    "describe",
    "fields_checked",
    "is_int",
    "mismatch",
]


class EmgLensError(Exception):
    """Base class of every error emg_lens raises for bad input. Keyword arguments are facts for
    tools, kept as attributes: ``column`` and ``expression`` of an edge expression that does
    not parse, ``channel`` of a name with no scalp region, ``index`` and ``name`` of a channel
    name refused (`check_names`), ``path`` of a module a converter does not support."""

    def __init__(self, *args: object, **facts: Any) -> None:
        super().__init__(*args)
        for key, value in facts.items():
            setattr(self, key, value)


class ArgumentError(EmgLensError, ValueError):
    """A function argument holds a value outside the accepted set; a model that holds state a
    digest cannot describe (`emg_lens.provenance.state_digest`: the message names the
    attribute and its type); a discovery whose cut of every candidate costs nothing."""


class HookFlagError(ArgumentError, AssertionError):
    """A hook on an optional hook point whose flag is off (``blocks.{l}.attn.hook_result``
    while ``use_attn_result`` is False; ``hook_q_input`` ... and ``use_split_qkv_input``;
    ``hook_attn_in`` and ``use_attn_in``; ``hook_mlp_in`` and ``use_hook_mlp_in``): it would
    never fire. The message names the hook and the setter to call. TransformerLens refuses it
    too: ``HookedTransformer`` with an ``AssertionError`` (its own test expects one), 4.x's
    bridge with a ``ValueError``; this is both, so either habit's ``except`` catches it."""


class IndexOutOfRangeError(ArgumentError, IndexError, KeyError):
    """An index outside a sequence (e.g. `emg_lens.data.windows.store.WindowStore`), or a cache
    key whose layer the model lacks (``cache["pattern", 2]`` of two layers: the message names
    the layer, ``n_layers`` and the range accepted). An `ArgumentError`; an `IndexError`, so
    that iterating by index stops where it should; a `KeyError`, as TransformerLens's own
    cache miss is, so code that catches ``KeyError`` still does."""

    __str__ = Exception.__str__  # the message, not KeyError's quoted repr of it


class ConfigError(EmgLensError, ValueError):
    """An `EncoderConfig` field (or preset name) holds a value that cannot work."""


class InputShapeError(EmgLensError, ValueError):
    """A signal batch or residual stream does not have the shape the model expects, or holds
    values or a dtype it cannot use: NaN or inf, boolean, complex or text."""


class LayoutError(EmgLensError, ValueError):
    """A token layout, group name or mask does not fit the model it is used with; a channel
    name the 10-20 / 10-10 region table (`emg_lens.edges.regions`) cannot place in a scalp
    region (``channel`` holds the name; the message names the names accepted, and how to name
    your own regions instead: ``regions={"motor": ["C3", "Cz", "C4"]}``)."""


class SpecError(EmgLensError, ValueError):
    """A study spec or an edge-set expression is invalid. An expression that does not parse
    (`emg_lens.edges.parse`) is named with its column, a caret under the offending token and
    what would be accepted there (``expression`` and ``column``, 1-based, hold them); Python
    files a study names without the user's consent are listed with their SHA-256 and how to
    consent (``--allow-code``, ``allow_code=True``); a code reference outside the study file's
    project is refused."""


class StorageError(EmgLensError, OSError):
    """A file or folder could not be written: the disk or the user's quota is full
    (``ENOSPC``, ``EDQUOT``), or the folder is read-only or not writable by this user
    (``EROFS``, ``EACCES``, ``EPERM``). The message names the path, the cause and what to do;
    ``errno`` and ``filename`` hold the OS's, and it is an `OSError` too, so code that catches
    ``OSError`` still does (`emg_lens._io.storage_errors` raises it)."""

    def __init__(self, message: str, *, errno: int | None = None, filename: str | None = None):
        super().__init__(message)
        self.errno, self.filename = errno, filename

    def __str__(self) -> str:  # the message, not OSError's "[Errno N] ..." rendering
        return str(self.args[0])


class StudyError(EmgLensError, RuntimeError):
    """A computation could not produce a trustworthy result: a mask that did not take effect,
    a non-finite output, a subject another process holds for too long; a training whose loss
    or weights became NaN or inf (it stops there: nothing is scored or saved); an ONNX export
    (`emg_lens.export`) whose file does not compute what the model does (no file is left under
    the requested name); a model called from one thread while another uses it with hooks."""


class UnsupportedFeatureError(EmgLensError, NotImplementedError):
    """A TransformerLens feature the model cannot honour: a stacked weight or circuit on a model
    with no shared stack ``blocks``, a hook flag (``use_split_qkv_input``, ``use_hook_mlp_in``)
    its blocks have no hook point for, or an unembedding (``W_U``,
    ``tokens_to_residual_directions``) where the classifier is not one linear map of one
    residual position (the message points to `emg_lens.inspect.attribution.readout_map`)."""


class DataFormatError(EmgLensError, ValueError):
    """A data file is missing, truncated, unreadable, or not in the expected format."""


class CheckpointError(EmgLensError, ValueError):
    """A checkpoint cannot be loaded into the requested model."""


class MissingDependencyError(EmgLensError, ImportError):
    """An optional package a feature needs is not installed; the message says how to install
    it (``pip install ".[extra]"`` in the clone) and ``name`` is the package."""


class ConversionError(EmgLensError, ValueError):
    """A model given to a converter (`emg_lens.models.from_torch_encoder`,
    `emg_lens.models.from_braindecode`, ``to_braindecode``) or to `emg_lens.models.attach`
    cannot become an emg_lens model as it is: a weight, layer, tokenizer or readout that does
    not fit; a module the converter does not support (``path`` holds its path); an attention
    call attach cannot describe, find or tell from another softmax, or that changes from one
    input to the next. The message names the module's path and what would be accepted."""


MARKUP_CHARACTERS = "<>&\"'`"


MAX_SEED = 2**31 - 1
"""The largest seed emg_lens accepts: numpy's legacy generator takes 32-bit seeds, and a refit
adds to its seed (`emg_lens.train.supervised.REFIT_SEED_STEP`), so seeds stay well inside."""


@checked
def check_int(
    value: Any,
    what: str,
    minimum: int = 0,
    maximum: int | None = None,
    error: type[EmgLensError] | None = None,
) -> int:
    """``value`` as a plain int (numpy and torch integers too), or ``error`` (default
    `ArgumentError`) naming ``what``, the value and what is accepted: a bool is refused (``True``
    is not a count), and so is a value below ``minimum`` (0: a non-negative int; 1: a positive
    one) or above ``maximum`` (below ``minimum``: an empty range, which accepts no value and
    says so). The one check of an integer argument or field.

    >>> import numpy as np
    >>> check_int(np.int64(3), "folds", minimum=2)
    3
    >>> check_int(True, "batch_size", minimum=1)
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: batch_size must be a positive int, got True
    >>> check_int(4, "layer", maximum=3, error=LayoutError)
    Traceback (most recent call last):
    ...
    emg_lens.errors.LayoutError: layer must be an int in 0..3, got 4
    >>> check_int(0, "layer (of 0 layers)", maximum=-1)
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: layer (of 0 layers) must be an int in 0..-1, an empty range: no value is accepted, got 0
    """  # noqa: E501
    number = _int_in(value, None, None)
    if number is None or _int_in(number, minimum, maximum) is None:
        shown = value if number is None else number  # -2 rather than np.int32(-2)
        wanted = _ints_wanted(minimum, maximum, "an int")
        raise (error or ArgumentError)(f"{what} must be {wanted}, got {shown!r}")
    return number


@checked
def check_ints(
    values: Any,
    what: str,
    minimum: int | None = 0,
    maximum: int | None = None,
    error: type[EmgLensError] | None = None,
    *,
    empty: bool = False,
) -> list[int]:
    """``values`` (any iterable but a string or a mapping) as a list of plain ints, or
    ``error`` (default `ArgumentError`) naming ``what``, the values and what is accepted: one
    int at least (none too, if ``empty``), each as `check_int` accepts it (``minimum=None``: no
    lower bound).

    >>> import numpy as np
    >>> check_ints((2, np.int64(0)), "layers", maximum=3)
    [2, 0]
    >>> check_ints([1, True], "heads")
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: heads must be one or more non-negative integers, got [1, True]
    """
    listed = None if isinstance(values, str | bytes | dict) else _listed(values)
    checked = [n for v in listed or () if (n := _int_in(v, minimum, maximum)) is not None]
    if listed is None or len(checked) < len(listed) or not (checked or empty):
        ints = "a list of integers" if empty else "one or more integers"
        raise (error or ArgumentError)(
            f"{what} must be {_ints_wanted(minimum, maximum, ints)}, got {values!r}"
        )
    return checked


@checked
def is_int(value: Any, minimum: int | None = None, maximum: int | None = None) -> bool:
    """Whether `check_int` takes ``value`` in ``minimum..maximum`` (None: no bound): the test of
    a type dispatch, or of a compound form whose owner's message says what the whole accepts.

    >>> is_int(3, 0, 3), is_int(True), is_int(2.0), is_int(4, 0, 3)
    (True, False, False, False)
    """
    return _int_in(value, minimum, maximum) is not None


def _listed(values: Any) -> list[Any] | None:
    try:
        return list(values)
    except TypeError:
        return None


def _int_in(value: Any, minimum: int | None, maximum: int | None) -> int | None:
    """``value`` as a plain int (not a bool) in ``minimum..maximum`` (None: no bound), or None."""
    try:
        number = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        return None
    low, high = -math.inf if minimum is None else minimum, math.inf if maximum is None else maximum
    return number if number is not None and low <= number <= high else None


def _ints_wanted(minimum: int | None, maximum: int | None, ints: str) -> str:
    """What `check_int` (``ints``: "an int") or `check_ints` accepts, in words."""
    if minimum is not None and maximum is not None:
        empty = ", an empty range: no value is accepted" if maximum < minimum else ""
        return f"{ints} in {minimum}..{maximum}{empty}"
    if maximum is not None or minimum is None:
        return ints if maximum is None else f"{ints} <= {maximum}"
    kind = {0: "non-negative", 1: "positive"}.get(minimum)
    if kind is None:
        return f"{ints} >= {minimum}"
    return f"a {kind} int" if ints == "an int" else ints.replace("integers", f"{kind} integers")


@checked
def check_bool(value: Any, what: str, error: type[EmgLensError] | None = None) -> bool:
    """``value`` when it is True or False, or ``error`` (default `ArgumentError`) naming
    ``what``: 1 and "yes" are not flags.

    >>> check_bool(1, "per_head")
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: per_head must be true or false, got 1
    """
    if not isinstance(value, bool):
        raise (error or ArgumentError)(f"{what} must be true or false, got {value!r}")
    return value


@checked
def check_choice(
    value: Any, options: Iterable[Any], what: str, error: type[EmgLensError] | None = None
) -> Any:
    """``value`` when it is one of ``options`` (a tuple or list is shown as given, other
    collections sorted), or ``error`` (default `ArgumentError`) saying ``what`` must be one of
    them, and what it got. The one check of an argument or field that names a choice.

    >>> check_choice("mean", ("mean", "cls"), "pooling")
    'mean'
    >>> check_choice("max", ("mean", "cls"), "EncoderConfig.pooling", ConfigError)
    Traceback (most recent call last):
    ...
    emg_lens.errors.ConfigError: EncoderConfig.pooling must be one of ('mean', 'cls'), got 'max'
    """
    shown = options if isinstance(options, tuple | list) else sorted(options)
    if isinstance(value, bool) or value not in shown:  # True == 1: a flag names no choice
        raise (error or ArgumentError)(f"{what} must be one of {shown}, got {_shown(value)}")
    return value


@checked
def check_type(value: Any, hint: Any, what: str, error: type[EmgLensError] | None = None) -> Any:
    """``value`` when it holds what the type ``hint`` says (`emg_lens._hints.mismatch`: a bool
    is no int, an int is a float), or ``error`` (default `ArgumentError`) saying ``what`` must
    be what the hint accepts, in words, and what it got (its repr, or its type and shape when
    that is long). The one type check of an argument that is not a dataclass field
    (`check_field_types` checks those).

    >>> check_type("runs/a", str | Path, "save_checkpoint(path)")
    'runs/a'
    >>> import os
    >>> check_type(3, str | os.PathLike, "save_checkpoint(path)")
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: save_checkpoint(path) must be a string or a PathLike, got 3
    >>> check_type(3, str | None, "Study.name", SpecError)
    Traceback (most recent call last):
    ...
    emg_lens.errors.SpecError: Study.name must be a string or None, got 3
    """
    if not _is_a(value, hint):
        raise (error or ArgumentError)(f"{what} must be {_a(hint)}, got {_shown(value)}")
    return value


def _is_a(value: Any, hint: Any) -> bool:
    """Whether ``value`` holds what ``hint`` says: a class of its own by `isinstance`, the
    rest as `mismatch` reads them."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_is_a(value, arg) for arg in typing.get_args(hint))
    if isinstance(hint, type) and hint not in _WORDED:
        return isinstance(value, hint)
    return mismatch(value, hint) is None


def _a(hint: Any) -> str:
    """What ``hint`` accepts, in words (``a Tensor or None``)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_a(arg) for arg in typing.get_args(hint))
    if isinstance(hint, type) and hint not in _WORDED:
        name = hint.__name__
        return f"{'an' if name[0] in 'AEIOU' else 'a'} {name}"
    return typing.cast(str, mismatch(object(), hint))


_WORDED = (type(None), bool, int, float, str, dict)  # the classes `mismatch` says in words


def _shown(value: Any) -> str:
    """How a refused value is named: its repr, or `describe` (type, shape) for an array or a
    repr past 80 characters."""
    text = "" if hasattr(value, "shape") else repr(value)
    return text if 0 < len(text) <= 80 else describe(value)


@checked
def check_number(
    value: Any,
    what: str,
    wanted: str,
    ok: Callable[[float], bool] = math.isfinite,
    error: type[EmgLensError] | None = None,
) -> float:
    """``value`` as a float when it is a real number (numpy's too; not a bool) for which ``ok``
    holds (default: finite), or ``error`` (default `ArgumentError`) saying ``what`` must be
    ``wanted``, and what it got. The one check of a number argument or field.

    >>> check_number(0.05, "tau", "a number in (0, 1)", lambda v: 0 < v < 1)
    0.05
    >>> check_number(True, "atol", "a finite number >= 0")
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: atol must be a finite number >= 0, got True
    """
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    number = _as_float(value) if real else math.nan
    if not real or not ok(number):
        raise (error or ArgumentError)(f"{what} must be {wanted}, got {value!r}")
    return number


def _as_float(value: Any) -> float:
    """``value`` as a float; an int too large for one (``10**400``) as an infinity."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


@checked
def check_seed(value: Any, name: str, error: type[EmgLensError] | None = None) -> int:
    """``value`` as a seed, or ``error`` (default `ConfigError`) naming ``name`` and the range
    (`check_int`).

    >>> check_seed(7, "TrainConfig.seed")
    7
    >>> check_seed(2**64, "--seed")
    Traceback (most recent call last):
    ...
    emg_lens.errors.ConfigError: --seed must be an int in 0..2147483647, got 18446744073709551616
    """
    return check_int(value, name, 0, MAX_SEED, error or ConfigError)


@checked
def check_names(names: Iterable[str], what: str, error: type[EmgLensError] | None = None) -> None:
    """Refuse, with ``error`` (default `ConfigError`) naming ``what[index]`` and the name's repr
    (``index`` and ``name`` hold the two), the first of ``names`` that is not printable
    (control, format and line-separator characters, a non-ASCII space) or that holds a markup
    character (``< > & " ' ` ``). Every name of the 10-20 system, of the shipped datasets and
    montages passes.

    >>> check_names(["C3", "Fp1", "FDS 1", "EMG-12", "T7/T3"], "channel_names")
    >>> check_names(["C3", "<img src=x onerror=alert(1)>"], "config.json channel_names")
    Traceback (most recent call last):
    ...
    emg_lens.errors.ConfigError: config.json channel_names[1] = '<img src=x \
onerror=alert(1)>' holds the markup character '<'; a channel or group name is printable text \
without < > & " ' ` (e.g. 'C3', 'FDS_1'): rename it
    """
    for index, name in enumerate(names):
        if not isinstance(name, str):
            continue  # the owner's own check names a name that is not a string
        bad = next((c for c in name if c in MARKUP_CHARACTERS), None)
        if bad is not None:
            why = f"holds the markup character {bad!r}"
        elif not name.isprintable():
            bad = next(c for c in name if not c.isprintable())
            why = f"holds the unprintable character {bad!r} (U+{ord(bad):04X})"
        else:
            continue
        raise (error or ConfigError)(
            f"{what}[{index}] = {name!r} {why}; a channel or group name is printable text "
            "without < > & \" ' ` (e.g. 'C3', 'FDS_1'): rename it",
            index=index,
            name=name,
        )


@checked
def check_channel_names(
    names: Any, what: str, error: type[EmgLensError], kinds: type | tuple[type, ...], form: str
) -> list[str]:
    """``names`` as a list, or ``error`` naming ``what`` if they are not a ``kinds`` (sequence
    types) of channel names (``form`` says which, in words), a name is not a non-empty string,
    or `check_names` refuses one.

    >>> check_channel_names(("C3", "Cz"), "channel_names", ConfigError, tuple, "a tuple of names")
    ['C3', 'Cz']
    >>> check_channel_names("C3", "channel_names", ConfigError, list, "a list of names")
    Traceback (most recent call last):
    ...
    emg_lens.errors.ConfigError: channel_names must be None or a list of names, got 'C3'
    """
    if isinstance(names, str) or not isinstance(names, kinds):
        raise error(f"{what} must be None or {form}, got {names!r}")
    given = typing.cast(Sequence[object], names)  # an instance of kinds, sequence types
    strings = [n for n in given if isinstance(n, str) and n.strip()]
    if len(strings) < len(given):
        bad = next(n for n in given if not isinstance(n, str) or not n.strip())
        raise error(f"{what} must hold non-empty strings, got {bad!r}")
    check_names(strings, what, error)  # names reach pages: no markup, nothing unprintable
    return strings


@checked
def describe(value: object) -> str:
    """How an error message names a bad value: ``dtype [shape]`` for a tensor or array, else
    its type.

    >>> import torch
    >>> describe(torch.zeros(2, 3)), describe([1])
    ('torch.float32 [2, 3]', 'list')
    """
    if hasattr(value, "dtype") and hasattr(value, "shape"):
        return f"{value.dtype} {list(value.shape)}"
    return type(value).__name__


@checked
def check_field_types(cfg: Any, error: type[EmgLensError] | None = None) -> None:
    """Refuse, with ``error`` (default `ConfigError`), a field of the dataclass ``cfg`` (a
    config or spec) that does not hold what its declared type says, naming the field and what
    the type accepts (what each type takes: `emg_lens._hints.mismatch`). The one type check of
    every config; each keeps its own checks of ranges. A numpy number that passes is stored as
    the Python number it equals, so the config writes to JSON.

    >>> @dataclasses.dataclass
    ... class Recipe:
    ...     lr: float = 1e-3
    ...     width: int | None = None
    >>> check_field_types(Recipe(lr=1, width=None))
    >>> check_field_types(Recipe(width=True))
    Traceback (most recent call last):
    ...
    emg_lens.errors.ConfigError: Recipe.width must be an int or None, got True
    >>> check_field_types(Recipe(lr=float("inf")))
    Traceback (most recent call last):
    ...
    emg_lens.errors.ConfigError: Recipe.lr must be a finite number, got inf
    """
    hints = type_hints(type(cfg))  # type: ignore[arg-type]  # a class is Hashable
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        expected = mismatch(value, hints[field.name])
        if expected is not None:
            name = f"{type(cfg).__name__}.{field.name}"
            raise (error or ConfigError)(f"{name} must be {expected}, got {value!r}")
        plain = plain_number(value)
        if plain is not value:
            object.__setattr__(cfg, field.name, plain)  # frozen dataclasses too


C = typing.TypeVar("C", bound=type[Any])


@checked
def fields_checked(cls: C) -> C:
    """Mark the dataclass ``cls`` as one whose ``__post_init__`` checks its fields
    (`check_field_types`, or its own checks) and stores them as their hints say: its
    ``__init__`` takes any value (a dtype's name, a numpy number, a list) and refuses a wrong
    one by name, so a runtime type checker leaves the ``__init__`` to it
    (`typing.no_type_check`), and `checked`'s mark is set: its checks are on in every run.

    >>> @fields_checked
    ... @dataclasses.dataclass
    ... class Recipe:
    ...     width: int = 1
    ...     def __post_init__(self):
    ...         check_field_types(self)
    >>> Recipe(width="2")
    Traceback (most recent call last):
    ...
    emg_lens.errors.ConfigError: Recipe.width must be an int, got '2'
    """
    typing.no_type_check(cls.__init__)
    setattr(cls, MARK, True)
    return cls


_PACKAGE = str(Path(__file__).parent)


def warn_caller(message: str, category: type[Warning] = UserWarning) -> None:
    """Warn (``category``) at the user's line: the first frame outside emg_lens, torch's and
    TransformerLens's module and hook calls and jaxtyping's wrappers (a counted ``stacklevel``
    would break).

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warn_caller("a warning")
    >>> caught[0].filename.startswith("<doctest")
    True
    """
    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and (
        frame.f_code.co_filename.startswith(_PACKAGE)
        or frame.f_globals.get("__name__", "").startswith(
            ("jaxtyping.", "torch.nn.", "transformer_lens.")
        )
    ):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
