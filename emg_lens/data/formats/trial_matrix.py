"""One trial file's numbers: a ``.csv`` (comma, semicolon or tab separated, with or without a
header row of names), ``.npy`` or MATLAB v5 ``.mat`` file read as a float32 ``samples x
channels`` matrix, for `emg_lens.data.formats.trial_files.read_files`. A file that is not one
(no numbers, channels x samples, NaN or Inf, an ``.npz`` archive...) is a `DataFormatError`
naming it and what to do."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from emg_lens.data.formats._matlab import read_mat
from emg_lens.errors import DataFormatError

__all__ = ["SUFFIXES", "is_number", "read_trial"]

SUFFIXES = (".csv", ".npy", ".mat")
"""The trial files emg_lens reads."""


def read_trial(
    path: str | Path, *, variable: str | None = None
) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """One trial file as float32 ``[samples, channels]``, and the channel names of a CSV
    header (None without one).

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "t.csv"
    >>> _ = path.write_text("a,b\\n1,2\\n3,4\\n")
    >>> x, names = read_trial(path)
    >>> x.tolist(), names
    ([[1.0, 2.0], [3.0, 4.0]], ('a', 'b'))
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        x, names = _read_csv(path)
    elif suffix == ".npy":
        x, names = _read_npy(path), None
    elif suffix == ".mat":
        x, names = _read_mat_variable(path, variable), None
    else:
        raise DataFormatError(f"{path}: emg_lens reads trial files {', '.join(SUFFIXES)}")
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise DataFormatError(
            f"{path}: a trial must be a samples x channels matrix, got shape {x.shape}"
        )
    if x.shape[1] > x.shape[0]:
        raise DataFormatError(
            f"{path}: {x.shape[0]} rows x {x.shape[1]} columns read as {x.shape[0]} samples of "
            f"{x.shape[1]} channels: more channels than samples, so the file is most likely "
            "channels x samples (or a MATLAB row vector). emg_lens reads samples x channels, "
            "one row per sample: save the transpose"
        )
    bad = ~np.isfinite(x)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise DataFormatError(
            f"{path}: {int(bad.sum())} NaN or Inf values, the first at sample {row}, channel "
            f"{col}; emg_lens does not fill gaps: repair or drop the trial"
        )
    return x.astype(np.float32), names


def is_number(cell: str) -> bool:
    """Whether a CSV cell (or a name in a file's path) reads as a number.

    >>> is_number("3.5"), is_number("fist")
    (True, False)
    """
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _read_csv(path: Path) -> tuple[np.ndarray, tuple[str, ...] | None]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not a UTF-8 text file ({exc.reason})") from exc
    first = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first.count) if any(d in first for d in ",;\t") else ","
    rows = [row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if row]
    if not rows:
        raise DataFormatError(f"{path}: an empty file")
    names = None
    if not any(is_number(cell) for cell in rows[0]):
        names = tuple(cell.strip() for cell in rows[0])
        rows = rows[1:]
    width = len(names) if names else len(rows[0]) if rows else 0
    values = np.empty((len(rows), width), dtype=np.float64)
    for r, row in enumerate(rows):
        if len(row) != width:
            raise DataFormatError(
                f"{path}: line {r + 1 + bool(names)} has {len(row)} cells, the file "
                f"{'header' if names else 'first line'} {width}"
            )
        for c, cell in enumerate(row):
            try:
                values[r, c] = float(cell)
            except ValueError:
                raise DataFormatError(
                    f"{path}: line {r + 1 + bool(names)}, column {c + 1}: {cell!r} is not a number"
                ) from None
    return values, names


def _read_npy(path: Path) -> np.ndarray:
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataFormatError(f"{path}: cannot be read as a NumPy .npy array: {exc}") from exc
    if not isinstance(x, np.ndarray):  # np.load reads an .npz archive whatever its name
        x.close()
        raise DataFormatError(
            f"{path}: a NumPy .npz archive (of {', '.join(x.files) or 'no arrays'}), not an "
            ".npy array; save each trial with np.save, or name the archive .npz and extract "
            "the trial's array"
        )
    if not np.issubdtype(x.dtype, np.number):
        raise DataFormatError(f"{path}: holds {x.dtype}, not numbers")
    if np.iscomplexobj(x):
        raise DataFormatError(f"{path}: holds complex values; a trial is real samples")
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
            raise DataFormatError(
                f"{path}: holds the numeric variables {sorted(numeric) or 'none'}; name the one "
                "that holds the samples x channels signal (variable=, --variable)"
            )
        (variable,) = numeric
    if variable not in contents:
        raise DataFormatError(f"{path}: has no variable {variable!r}; it holds {sorted(contents)}")
    if variable not in numeric:
        raise DataFormatError(
            f"{path}: variable {variable!r} is not a numeric matrix "
            f"({np.asarray(contents[variable]).dtype}, shape {np.shape(contents[variable])})"
        )
    if np.iscomplexobj(numeric[variable]):
        raise DataFormatError(f"{path}: variable {variable!r} holds complex values")
    return numeric[variable].astype(np.float64)
