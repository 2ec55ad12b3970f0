"""`SharedOnDisk`: what several tests build the same way, built once per pytest run (the
``shared`` fixture of tests/conftest.py hands out the run's)."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any


class SharedOnDisk:
    """What several tests build the same way (a trained model's checkpoint, converted
    checkpoints), built once per pytest run and shared by every test and every pytest-xdist
    worker: the first test that asks for ``key`` builds it under ``root``, every later one, in
    any worker, reads it. Tests only read what they are given. A key names everything the
    building depends on, so two recipes never share one."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(name: str, recipe: Mapping[str, Any]) -> str:
        """``name`` and a digest of ``recipe``, everything the build depends on (JSON values
        and dataclasses, by their fields; anything else is refused, since its text could differ
        between pytest-xdist workers), so that two recipes never share a key."""

        def plain(value: Any) -> Any:
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                return dataclasses.asdict(value)
            raise TypeError(f"a recipe holds JSON values and dataclasses, not {value!r}")

        text = json.dumps(recipe, sort_keys=True, default=plain)
        return f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"

    def folder(self, key: str, build: Callable[[Path], object]) -> Path:
        """``root / key``, made by ``build(path)`` unless a complete one is there already (one
        that a build interrupted by an error is thrown away and built again)."""
        path, done = self.root / key, self.root / f"{key}.complete"
        with self.lock(key):
            if not done.is_file():
                shutil.rmtree(path, ignore_errors=True)
                build(path)
                done.touch()
        return path

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Held while ``key`` is built: another worker may be building it right now."""
        with (self.root / f"{key}.lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
