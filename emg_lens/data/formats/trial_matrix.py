"""One trial file's numbers: a ``.csv``, ``.npy`` or MATLAB v5 ``.mat`` file read as a float32
``samples x channels`` matrix, for `emg_lens.data.formats.trial_files.read_files`; anything else
is a `DataFormatError` naming the file and what to do. How a CSV is read (`CsvFormat`): the
rules for users in docs/guide/recordings.md, "Your own recordings"; beyond them, semicolon and
tab are delimiters only with a decimal comma, and a header of channel numbers needs n >= 2."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emg_lens.data.formats._matlab import read_mat, require
from emg_lens.errors import (
    ArgumentError,
    DataFormatError,
    check_choice,
    check_field_types,
    fields_checked,
)

SUFFIXES = (".csv", ".npy", ".mat")
"""The trial files emg_lens reads."""

DECIMALS = (".", ",")
"""The decimal marks a CSV may write."""

_WHOLE = re.compile(r"[+-]?[0-9]+")
_DIGITS = re.compile(r"[0-9]+")


@fields_checked
@dataclass(frozen=True)
class CsvFormat:
    """How to read a CSV trial file (see the module docstring): ``header`` (None: decided by
    the file; True: the first line is a header; False: it is a sample), ``delimiter`` (None:
    decided by the first line; else the one character between values) and ``decimal`` (the
    decimal mark, ``"."`` or ``","``).

    >>> CsvFormat(decimal=",", delimiter=",")
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: delimiter must be one character between values but not the \
decimal mark ',' (such as ',', ';', a tab), got ','
    """

    header: bool | None = None
    delimiter: str | None = None
    decimal: str = "."

    def __post_init__(self) -> None:
        check_field_types(self, ArgumentError)
        check_choice(self.decimal, DECIMALS, "decimal", ArgumentError)
        d = self.delimiter
        if d is not None and (len(d) != 1 or d in f'"\r\n{self.decimal}' or d.isalnum()):
            raise ArgumentError(
                f"delimiter must be one character between values but not the decimal mark "
                f"{self.decimal!r} (such as ',', ';', a tab), got {d!r}"
            )


def read_trial(
    path: str | Path, *, variable: str | None = None, csv_format: CsvFormat | None = None
) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """One trial file as float32 ``[samples, channels]``, and the channel names of a CSV
    header (None without one); ``csv_format`` says how to read a CSV (default: every choice
    decided by the file, `CsvFormat`).

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "t.csv"
    >>> _ = path.write_text("a,b\\n1,2\\n3,4\\n")
    >>> x, names = read_trial(path)
    >>> x.tolist(), names
    ([[1.0, 2.0], [3.0, 4.0]], ('a', 'b'))
    >>> _ = path.write_text("1;2\\n0,5;1,25\\n-2;3\\n0;0,125\\n")  # decimal commas
    >>> x, names = read_trial(path, csv_format=CsvFormat(decimal=","))  # 1;2: channel numbers
    >>> x.tolist(), names
    ([[0.5, 1.25], [-2.0, 3.0], [0.0, 0.125]], None)
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        x, names = _read_csv(path, csv_format or CsvFormat())
    elif suffix == ".npy":
        x, names = _read_npy(path), None
    elif suffix == ".mat":
        x, names = _read_mat_variable(path, variable), None
    else:
        raise DataFormatError(f"{path}: emg_lens reads trial files {', '.join(SUFFIXES)}")
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or not 0 < x.shape[1] <= x.shape[0]:
        raise DataFormatError(
            f"{path}: a trial must be samples x channels, more samples than "
            f"channels; got shape {x.shape} (a row vector? save the transpose)"
        )
    bad = ~np.isfinite(x)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise DataFormatError(
            f"{path}: {int(bad.sum())} NaN or Inf values, the first at sample "
            f"{row}, channel {col}; repair or drop the trial (no gap filling)"
        )
    return x.astype(np.float32), names


def is_number(cell: str, decimal: str = ".") -> bool:
    """Whether a CSV cell (or a name in a file's path) reads as a number, with ``decimal`` as
    its decimal mark.

    >>> is_number("3.5"), is_number("fist"), is_number("3,5"), is_number("3,5", ",")
    (True, False, False, True)
    """
    try:
        _number(cell, decimal)
    except ValueError:
        return False
    return True


def _number(cell: str, decimal: str) -> float:
    if decimal == ",":
        if "." in cell:  # a thousands separator, or a point in a comma file: not guessed
            raise ValueError(cell)
        cell = cell.replace(",", ".")
    return float(cell)


def _sniff(first: str, decimal: str) -> str:
    """The delimiter of a CSV whose first line is ``first``: the most frequent of the ones a
    file with this decimal mark can use (one channel when none is there)."""
    candidates = ",;\t" if decimal == "." else ";\t"
    return max(candidates, key=first.count)


def _read_csv(path: Path, fmt: CsvFormat) -> tuple[np.ndarray, tuple[str, ...] | None]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not a UTF-8 text file ({exc.reason})") from exc
    delimiter = fmt.delimiter or _sniff(text.split("\n", 1)[0], fmt.decimal)
    # decimal commas read with a point: '1,5' in a cell between semicolons or tabs, or one
    # channel's '1,5' and '2' split at the comma into lines of two cells and of one
    commas = fmt.decimal == "." and re.search(r"[0-9],[0-9]", text) is not None
    hint = "; if the file writes decimal commas, pass decimal=','"
    width_hint = hint if commas and delimiter == "," and "." not in text else ""
    rows = [row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if row]
    require(rows, path, "an empty file")
    if fmt.delimiter is None and fmt.decimal == "." and delimiter == ",":
        _refuse_decimal_commas(path, rows)
    names, body = _header(path, rows, fmt)
    skipped = len(rows) - len(body)
    width = len(names) if names else len(rows[0])
    values = np.empty((len(body), width), dtype=np.float64)
    for r, row in enumerate(body):
        line = r + 1 + skipped
        if len(row) != width:
            first = "header" if skipped else "first line"
            raise DataFormatError(
                f"{path}: line {line} has {len(row)} cells, the file {first} {width}{width_hint}"
            )
        for c, cell in enumerate(row):
            try:
                values[r, c] = _number(cell, fmt.decimal)
            except ValueError:
                # split at its decimal commas ('0,5;1,25' -> '5;1'), or not split at them
                split = commas and (delimiter != "," or re.search(r"[;\t]", cell))
                at = f"{path}: line {line}, column {c + 1}"
                raise DataFormatError(
                    f"{at}: {cell!r} is not a number{hint * bool(split)}"
                ) from None
    return values, names


def _refuse_decimal_commas(path: Path, rows: list[list[str]]) -> None:
    """Refuse a file read with a comma delimiter that may as well be one channel written with
    decimal commas: every line two cells, the second bare digits, and no decimal point."""
    two = all(len(row) == 2 and _DIGITS.fullmatch(row[1].strip()) for row in rows)
    if not two or any(any(m in cell for m in ".eE") for row in rows for cell in row):
        return
    a, b = (cell.strip() for cell in rows[0])
    raise DataFormatError(
        f"{path}: every line is two whole numbers separated by a comma (the first {a},{b}): one "
        f"channel written with decimal commas ({a},{b} = {a}.{b}) or two channels of whole "
        "numbers? decimal=',' (--decimal ,) reads one channel, delimiter=',' (--delimiter ,) two"
    )


def _header(
    path: Path, rows: list[list[str]], fmt: CsvFormat
) -> tuple[tuple[str, ...] | None, list[list[str]]]:
    """The header's channel names (None: no header, or one of channel numbers) and the
    lines below it, as ``fmt.header`` says or else as the first line shows (module
    docstring)."""
    first = rows[0]
    numbers = [is_number(cell, fmt.decimal) for cell in first]
    names = None if any(numbers) else tuple(cell.strip() for cell in first)
    if fmt.header is not None:
        return (names, rows[1:]) if fmt.header else (None, rows)
    if names is not None:
        return names, rows[1:]
    cells = [cell.strip() for cell in first]
    whole = all(_DIGITS.fullmatch(cell) for cell in cells)
    counted = [int(c) for c in cells] if whole else []
    n = len(cells)
    if n < 2 or counted not in (list(range(1, n + 1)), list(range(n))):
        return None, rows  # not the channel numbers: a sample
    if any(not _WHOLE.fullmatch(cell.strip()) for row in rows[1:] for cell in row):
        return None, rows[1:]  # the channel numbers, above samples with decimals
    raise DataFormatError(
        f"{path}: the first line ({', '.join(cells)}) is the channel numbers and every line "
        "below it whole numbers too: a header or a sample? header=True (--header yes) skips it, "
        "header=False (--header no) reads it as a sample"
    )


def _read_npy(path: Path) -> np.ndarray:
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataFormatError(f"{path}: cannot be read as a NumPy .npy array: {exc}") from exc
    if not isinstance(x, np.ndarray):  # np.load reads an .npz archive whatever its name
        x.close()
        held = ", ".join(x.files) or "no arrays"
        raise DataFormatError(f"{path}: a NumPy .npz archive (of {held}), not an .npy array")
    real = np.issubdtype(x.dtype, np.number) and not np.iscomplexobj(x)
    require(real, path, f"holds {x.dtype}: not numbers, or complex ones; a trial is real samples")
    return x.astype(np.float64)


def _read_mat_variable(path: Path, variable: str | None) -> np.ndarray:
    contents = read_mat(path, reader="trial files")
    numeric = {
        k: v
        for k, v in contents.items()
        if isinstance(v, np.ndarray) and np.issubdtype(v.dtype, np.number) and v.ndim in (1, 2)
    }
    if variable is None:
        if len(numeric) != 1:
            held = sorted(numeric) or "none"
            raise DataFormatError(f"{path}: numeric variables {held}; pass variable= (--variable)")
        (variable,) = numeric
    require(
        variable in contents, path, f"has no variable {variable!r}; it holds {sorted(contents)}"
    )
    x = np.asarray(contents[variable])
    if variable not in numeric or np.iscomplexobj(x):
        raise DataFormatError(f"{path}: {variable!r} is not a real matrix ({x.dtype} {x.shape})")
    return x.astype(np.float64)
