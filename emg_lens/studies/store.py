"""A resumable result store: one small JSON file per (subject, condition) cell.

Each cell is written to a temporary file and renamed into place (`emg_lens._io.atomic_write`),
so a run killed at any moment leaves only whole cells behind; started again, it skips them. The
store remembers the study's fingerprint and refuses to mix two studies.

>>> import tempfile
>>> store = CellStore(tempfile.mkdtemp(), fingerprint="{}")
>>> store.put(1, "abc", {"value": 0.9})
>>> store.has(1, "abc"), store.get(1, "abc")["value"]
(True, 0.9)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from emg_lens._io import atomic_write
from emg_lens.errors import SpecError

__all__ = ["CellStore"]


class CellStore:
    """Cells under ``root/cells/s<subject>/<key>.json``; ``root/study.json`` names the study."""

    def __init__(self, root: str | Path, fingerprint: str):
        self.root = Path(root)
        self.cells = self.root / "cells"
        self.cells.mkdir(parents=True, exist_ok=True)
        marker = self.root / "study.json"
        if marker.exists():
            saved = json.loads(marker.read_text()).get("fingerprint")
            if saved != fingerprint:
                raise SpecError(
                    f"{self.root} holds results of a different study; use another --out folder "
                    "or delete it to start over"
                )
        else:
            self._write(marker, {"fingerprint": fingerprint})

    @staticmethod
    def _write(path: Path, data: Any) -> None:
        """``data`` as JSON, atomically."""
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data)))

    def _path(self, subject: int, key: str) -> Path:
        return self.cells / f"s{subject}" / f"{key}.json"

    def has(self, subject: int, key: str) -> bool:
        return self._path(subject, key).is_file()

    def get(self, subject: int, key: str) -> dict[str, Any]:
        return json.loads(self._path(subject, key).read_text())

    def put(self, subject: int, key: str, cell: dict[str, Any]) -> None:
        path = self._path(subject, key)
        path.parent.mkdir(exist_ok=True)
        self._write(path, cell)
