"""A resumable, shareable result store: one small JSON file per (subject, condition) cell.

Each cell is written to a temporary file, flushed to disk and renamed into place
(`emg_lens._io.atomic_write`), so a run killed at any moment leaves only whole cells behind;
started again, it skips them. A cell that is nevertheless empty or torn (a store written by an
older emg_lens, a damaged disk) is named in a warning and treated as absent: it is recomputed.

Every cell carries its *provenance* (`emg_lens.provenance`: digests of the model and the data it
was scored on, the metric, the scored output, the code) and is reused only when that equals the
provenance it would be computed from now; it also records the pid and host that wrote it.

The store remembers the study's fingerprint in ``study.json`` and refuses to mix two studies;
the file is created atomically (`emg_lens._io.create_exclusive`), so of several processes
opening a new folder with different studies exactly one wins and the others get a `SpecError`.

Several processes may share one store. Before computing a subject's missing cells a process
*claims* the subject (``claims/s<N>.claim``, created exclusively, holding pid, host and a random
token); one that finds a live claim leaves the subject to its holder and reads the cells once they
appear. A claim is per subject, not per cell, because the runner evaluates a subject's conditions
together (shared mask prefixes, one model and data load): splitting a subject between processes
would load and run the shared part twice. A claim whose process is dead on this host is stale
and is taken over (under a `fcntl.flock`, which the kernel releases if its holder dies, so two
processes cannot both take over one stale claim). Orphaned temporary files of dead writers are
removed when the store opens.

>>> import tempfile
>>> store = CellStore(tempfile.mkdtemp(), fingerprint="{}")
>>> store.put(1, "abc", {"value": 0.9}, provenance={"model": "m1"})
>>> store.has(1, "abc"), store.get(1, "abc")["value"]
(True, 0.9)
>>> store.get(1, "abc", provenance={"model": "m2"}) is None  # another model: not reused
True
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emg_lens._io import atomic_write, create_exclusive, pid_alive, remove_orphaned_temp_files
from emg_lens.errors import SpecError

__all__ = ["CellStore", "Claim"]

PROVENANCE, WRITER = "provenance", "writer"


@dataclass(frozen=True)
class Claim:
    """A held claim on one subject's cells (see `CellStore.try_claim`)."""

    subject: int
    path: Path
    token: str


def _this_process() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname()}


def _json_text(data: Any) -> str:
    return json.dumps(data, sort_keys=True)


class CellStore:
    """Cells under ``root/cells/s<subject>/<key>.json``; ``root/study.json`` names the study;
    claims under ``root/claims/``."""

    def __init__(self, root: str | Path, fingerprint: str):
        self.root = Path(root)
        self.cells = self.root / "cells"
        self.claims = self.root / "claims"
        self.cells.mkdir(parents=True, exist_ok=True)
        self.claims.mkdir(exist_ok=True)
        remove_orphaned_temp_files(self.root)
        marker = self.root / "study.json"
        text = _json_text({"fingerprint": fingerprint})
        create_exclusive(marker, lambda tmp: tmp.write_text(text))
        try:  # whether this process created it or not: compare after, never check-then-write
            saved = json.loads(marker.read_text())["fingerprint"]
        except (ValueError, KeyError, TypeError) as exc:
            raise SpecError(
                f"{marker} is empty or torn ({type(exc).__name__}); it no longer says which "
                "study the folder holds: delete the folder, or use another --out folder"
            ) from exc
        if saved != fingerprint:
            raise SpecError(
                f"{self.root} holds results of a different study; use another --out folder "
                "or delete it to start over"
            )

    # ------------------------------------------------------------------ cells
    def path(self, subject: int, key: str) -> Path:
        """The file of one cell."""
        return self.cells / f"s{subject}" / f"{key}.json"

    def has(self, subject: int, key: str) -> bool:
        """Whether a file exists for the cell (whole or not, of any provenance)."""
        return self.path(subject, key).is_file()

    def get(
        self, subject: int, key: str, provenance: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """The stored cell, or None when it is absent, empty or torn (with a warning naming
        the file) or, given ``provenance``, was computed from something else."""
        path = self.path(subject, key)
        try:
            cell = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            cell = exc
        if not isinstance(cell, dict) or "value" not in cell:
            warnings.warn(
                f"{path} is empty or torn; recomputing",
                stacklevel=2,
            )
            return None
        if provenance is not None and cell.get(PROVENANCE) != provenance:
            return None
        return cell

    def put(
        self,
        subject: int,
        key: str,
        cell: dict[str, Any],
        provenance: dict[str, Any] | None = None,
    ) -> None:
        """Store a cell with its provenance and writer (pid, host), atomically and durably."""
        path = self.path(subject, key)
        path.parent.mkdir(exist_ok=True)
        text = _json_text({**cell, PROVENANCE: provenance, WRITER: _this_process()})
        try:
            atomic_write(path, lambda tmp: tmp.write_text(text))
        except FileNotFoundError:
            # A process on another host took our temporary file for an orphan (pids are
            # per host): write it again.
            atomic_write(path, lambda tmp: tmp.write_text(text))

    # ------------------------------------------------------------------ claims
    def claim_path(self, subject: int) -> Path:
        """The claim file of one subject (present while a process computes its cells)."""
        return self.claims / f"s{subject}.claim"

    def holder(self, subject: int) -> dict[str, Any] | None:
        """Who holds the claim on ``subject`` (pid, host, token, ...), or None if nobody."""
        try:
            text = self.claim_path(subject).read_text()
        except FileNotFoundError:
            return None
        try:
            holder = json.loads(text)
        except ValueError:
            holder = None
        return holder if isinstance(holder, dict) else {"unreadable": text}

    def try_claim(self, subject: int) -> Claim | None:
        """Claim ``subject`` for this process; None if a live process holds it.

        >>> import tempfile
        >>> store = CellStore(tempfile.mkdtemp(), fingerprint="{}")
        >>> claim = store.try_claim(3)
        >>> store.holder(3)["pid"] == os.getpid()
        True
        >>> store.release(claim)
        >>> store.holder(3) is None
        True
        """
        path = self.claim_path(subject)
        token = secrets.token_hex(8)
        text = _json_text({**_this_process(), "token": token})
        for _ in range(3):  # the holder may release between our attempt and our look
            if create_exclusive(path, lambda tmp: tmp.write_text(text)):
                return Claim(subject, path, token)
            holder = self.holder(subject)
            if holder is None:
                continue
            if self._alive(holder):
                return None
            with self._takeover_lock():
                if self.holder(subject) == holder:  # still the same stale claim: ours now
                    atomic_write(path, lambda tmp: tmp.write_text(text))
                    return Claim(subject, path, token)
        return None

    def release(self, claim: Claim) -> None:
        """Give a claim back (only if it is still ours)."""
        holder = self.holder(claim.subject)
        if holder is not None and holder.get("token") == claim.token:
            claim.path.unlink(missing_ok=True)

    @staticmethod
    def _alive(holder: dict[str, Any]) -> bool:
        """Whether a claim's holder may still be working: a live pid on this host, or any
        process on another host (which this host cannot check)."""
        me = _this_process()
        if "unreadable" in holder or not isinstance(holder.get("pid"), int):
            return False  # not written by a claim: nobody to wait for
        if holder.get("host") != me["host"]:
            return True
        return holder["pid"] != me["pid"] and pid_alive(holder["pid"])

    @contextlib.contextmanager
    def _takeover_lock(self) -> Iterator[None]:
        """Serialise stale-claim takeovers among this host's processes (released by the kernel
        if the holder dies, so it can never itself go stale)."""
        import fcntl

        with (self.claims / ".takeover.lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
