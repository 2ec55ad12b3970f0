"""What `emg_lens.report.page` reads of an output folder: only regular files inside it. A
folder may come from someone else and the page may be sent on, so `FolderFiles` reads a file
only by a relative name that stays inside, through no link leading out; anything else (or text
that is not UTF-8, JSON or CSV that does not parse) is left out, with why, and the page lists
it. `csv_head` reads a CSV's first rows and counts the rest without keeping them.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "a.csv").write_text("x,y\\n1,2\\n3,4\\n")
>>> files = FolderFiles(folder)
>>> files.path("a.csv").name, files.path("/etc/hostname"), files.path("missing.csv")
('a.csv', None, None)
>>> files.left_out
[LeftOut(name='/etc/hostname', why='an absolute path: only files inside the folder are read')]
>>> csv_head(files.path("a.csv"), 1)
([['x', 'y'], ['1', '2']], 2)
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from emg_lens.errors import DataFormatError

_CHUNK = 1 << 20  # characters read at a time while counting a CSV's rows


class LeftOut(NamedTuple):
    """A file the page does not show: its name as the folder gives it, and why."""

    name: str
    why: str


class FolderFiles:
    """The files of ``folder`` that a page may read (see the module docstring); what it
    refused is in ``left_out``, in the order met."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.root = self.folder.resolve()
        self.left_out: list[LeftOut] = []

    def leave_out(self, name: object, why: str) -> None:
        """Record that the file ``name`` is not shown, and why (once per name)."""
        shown = name if isinstance(name, str) and name.isprintable() else repr(name)
        entry = LeftOut(shown, why)
        if entry.name not in {e.name for e in self.left_out}:
            self.left_out.append(entry)

    def path(self, name: object) -> Path | None:
        """The regular file ``name`` (a path relative to the folder) inside the folder, or
        None: missing (silently), or left out (`leave_out`, with why)."""
        if not isinstance(name, str) or not name.strip() or "\x00" in name:
            self.leave_out(name, "not a file name")
            return None
        given = Path(name)
        if given.is_absolute():
            self.leave_out(name, "an absolute path: only files inside the folder are read")
            return None
        if os.path.normpath(given).split(os.sep)[0] == "..":
            self.leave_out(
                name, "a path that leads out of the folder (..): only files inside it are read"
            )
            return None
        path = self.folder / given
        try:
            if not (path.is_symlink() or path.exists()):
                return None
            resolved = path.resolve()
            regular = resolved.is_file()
        except (OSError, RuntimeError) as exc:  # a name too long; a loop of links (Runtime)
            self.leave_out(name, f"cannot be read ({getattr(exc, 'strerror', None) or exc})")
            return None
        if not resolved.is_relative_to(self.root):
            self.leave_out(
                name, "a link to a file outside the folder: only files inside it are read"
            )
            return None
        if not regular:
            self.leave_out(name, "not a regular file (a folder, a device, a pipe or a broken link)")
            return None
        return resolved

    def data(self, name: str) -> bytes | None:
        """The bytes of the file ``name`` (`path`), or None (missing or left out)."""
        path = self.path(name)
        if path is None:
            return None
        try:
            return path.read_bytes()
        except OSError as exc:
            self.leave_out(name, f"cannot be read ({exc.strerror or exc})")
            return None

    def text(self, name: str, *, then: str = "") -> str | None:
        """The UTF-8 text of the file ``name`` (`path`), or None (missing or left out; what
        follows, ``then``, is said after why)."""
        path = self.path(name)
        if path is None:
            return None
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            self.leave_out(name, not_utf8(exc) + then)
        except OSError as exc:
            self.leave_out(name, f"cannot be read ({exc.strerror or exc}){then}")
        return None

    def json(self, name: str, *, then: str = "") -> Any:
        """The JSON value of the file ``name`` (`text`), or None (missing or left out)."""
        text = self.text(name, then=then)
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            self.leave_out(name, f"not JSON ({exc}){then}")
            return None


def not_utf8(exc: UnicodeDecodeError) -> str:
    """Why a file that is not UTF-8 is left out, in words."""
    byte = exc.object[exc.start : exc.start + 1].hex()
    return (
        f"not UTF-8 text (byte 0x{byte} cannot be decoded); emg_lens writes UTF-8: save the "
        "file as UTF-8 to show it"
    )


@contextlib.contextmanager
def _any_field_size() -> Iterator[None]:
    # csv refuses a field over 128 kB by default; the page shortens long cells anyway.
    limit = csv.field_size_limit()
    csv.field_size_limit(sys.maxsize)
    try:
        yield
    finally:
        csv.field_size_limit(limit)


def csv_head(path: Path, max_rows: int) -> tuple[list[list[str]], int]:
    """The header and at most ``max_rows`` rows of the CSV file ``path``, and its number
    of rows (the header not counted). The rows past ``max_rows`` are counted, not parsed:
    their line ends outside quoted fields. `DataFormatError` says why a file cannot be read.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "t.csv"
    >>> _ = path.write_text('a,b\\n1,"two\\nlines"\\n2,x\\n3,"a ""b"" c"\\n4,y')
    >>> csv_head(path, 1)
    ([['a', 'b'], ['1', 'two\\nlines']], 4)
    """
    try:
        with _any_field_size(), path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            head = [row for _, row in zip(range(max_rows + 1), reader)]
            rest = _count_rows(fh) if len(head) == max_rows + 1 else 0
    except UnicodeDecodeError as exc:
        raise DataFormatError(not_utf8(exc)) from exc
    except csv.Error as exc:
        raise DataFormatError(f"not a CSV table that csv can read ({exc})") from exc
    except OSError as exc:
        raise DataFormatError(f"cannot be read ({exc.strerror or exc})") from exc
    return head, max(len(head) - 1, 0) + rest


def _count_rows(fh) -> int:
    """The rows left in the text file ``fh``, which stands at the start of a row: its line
    ends outside quoted fields (a doubled quote inside a field toggles twice), and a last
    row without one. Read in chunks: memory stays one chunk whatever the file's size."""
    rows, quoted, last = 0, False, "\n"
    while chunk := fh.read(_CHUNK):
        for i, part in enumerate(chunk.split('"')):
            quoted ^= i > 0
            if not quoted:
                rows += part.count("\n")
        last = chunk[-1]
    return rows + (last != "\n")
