"""A resumable, shareable result store: one small JSON file per (subject, condition) cell,
written atomically with its provenance and its writer (docs/DESIGN.md §5, "Resumable"; what a
cell's provenance holds, and why: §10). A torn cell is named in a warning and recomputed;
``study.json`` is created exclusively, so of several processes opening one folder with
different studies exactly one wins. Processes sharing a store claim one subject at a time
(``claims/s<N>.claim``); a stale claim (its process dead, or its pid reused) is taken over
under a `fcntl.flock`. How processes and ranks share a store: docs/guide/scale-out.md.

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
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emg_lens._io import (
    atomic_write,
    create_exclusive,
    make_folder,
    process_start,
    process_started_at,
    remove_orphaned_temp_files,
    same_process,
)
from emg_lens.errors import SpecError, StudyError, check_number, warn_caller

PROVENANCE, WRITER = "provenance", "writer"


@dataclass(frozen=True)
class Claim:
    """A held claim on one subject's cells (see `CellStore.try_claim`)."""

    subject: int
    path: Path
    token: str


def _this_process() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname()}


def _writer() -> dict[str, Any]:
    """Who computed a cell: this process, and torch's CPU threads, with which a result can
    differ in the last bits (``--threads``); in a process that has used CUDA, also whether
    PyTorch let float32 matrix products and cuDNN convolutions run in TF32 (``tf32``), with
    which a GPU's result can differ by ~5e-4 (docs/guide/scale-out.md)."""
    import torch  # the studies import it anyway; this module reads without it

    writer = {**_this_process(), "threads": torch.get_num_threads()}
    if torch.cuda.is_initialized():
        writer["tf32"] = {
            "matmul": torch.backends.cuda.matmul.allow_tf32,
            "cudnn": torch.backends.cudnn.allow_tf32,
        }
    return writer


def _json_text(data: Any) -> str:
    return json.dumps(data, sort_keys=True)


WAIT_TIMEOUT = 3600.0
"""Seconds a run waits for cells another live process (or torchrun rank) computes, by
default, before giving up."""
POLL_INTERVAL = 0.2
"""Seconds between two looks at the store while waiting."""


def check_wait_timeout(seconds: Any, name: str = "wait_timeout") -> float:
    """``seconds`` as the time to wait for another process's cells: a number >= 0 (``inf``:
    wait as long as it takes); anything else is an `ArgumentError` naming ``name``.

    >>> check_wait_timeout(30), check_wait_timeout(float("nan"), "--wait-timeout")
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: --wait-timeout must be a number of seconds >= 0 (inf: no limit), got nan
    """  # noqa: E501
    wanted = "a number of seconds >= 0 (inf: no limit)"
    return check_number(seconds, name, wanted, lambda s: s >= 0)  # NaN fails ">= 0" too


class CellStore:
    """Cells under ``root/cells/s<subject>/<key>.json``; ``root/study.json`` names the study;
    claims under ``root/claims/``."""

    def __init__(self, root: str | Path, fingerprint: str):
        self.root = Path(root)
        self.cells = self.root / "cells"
        self.claims = self.root / "claims"
        make_folder(self.cells)  # nothing is written where everything exists (read-only media)
        make_folder(self.claims)
        remove_orphaned_temp_files(self.root)
        marker = self.root / "study.json"
        text = _json_text({"fingerprint": fingerprint})
        if not marker.exists():
            create_exclusive(marker, lambda tmp: tmp.write_text(text))
        try:  # whether this process created it or not: compare after, never check-then-write
            saved = json.loads(marker.read_text())["fingerprint"]
        except (OSError, ValueError, KeyError, TypeError) as exc:  # a folder: IsADirectoryError
            why = "it no longer says which study the folder holds"
            fix = "delete the folder, or use another --out folder"
            bad = f"{marker} is empty, torn or no file ({type(exc).__name__})"
            raise SpecError(f"{bad}; {why}: {fix}") from exc
        if saved != fingerprint:
            fix = "use another --out folder or delete it to start over"
            raise SpecError(f"{self.root} holds results of a different study; {fix}")

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
        if not isinstance(cell, dict) or PROVENANCE not in cell:
            warn_caller(f"{path} is empty or torn; recomputing")
            return None
        if provenance is not None and cell.get(PROVENANCE) != provenance:
            return None
        return cell

    def matching(
        self, subject: int, provenances: Mapping[str, dict[str, Any] | None]
    ) -> dict[str, dict[str, Any]]:
        """The stored cells of ``subject`` among ``provenances``' keys whose provenance is the
        one given there (`get` of each), by key.

        >>> import tempfile
        >>> store = CellStore(tempfile.mkdtemp(), fingerprint="{}")
        >>> store.put(1, "a", {"value": 1.0}, {"model": "x"})
        >>> list(store.matching(1, {"a": {"model": "x"}, "b": None}))
        ['a']
        >>> store.matching(1, {"a": {"model": "y"}})
        {}
        """
        found = {key: self.get(subject, key, provenance) for key, provenance in provenances.items()}
        return {key: cell for key, cell in found.items() if cell is not None}

    def put(
        self,
        subject: int,
        key: str,
        cell: dict[str, Any],
        provenance: dict[str, Any] | None = None,
    ) -> None:
        """Store a cell with its provenance and writer (pid, host), atomically and durably."""
        path = self.path(subject, key)
        make_folder(path.parent)
        text = _json_text({**cell, PROVENANCE: provenance, WRITER: _writer()})
        try:
            atomic_write(path, lambda tmp: tmp.write_text(text))
        except FileNotFoundError:
            # A process on another host took our temporary file for an orphan (pids are
            # per host): write it again.
            atomic_write(path, lambda tmp: tmp.write_text(text))

    def wait_for(
        self,
        cells: Mapping[int, Sequence[str]],
        present: Callable[[int, str], bool],
        *,
        timeout: float,
        poll: float = POLL_INTERVAL,
        owner: Callable[[int], str] = lambda subject: "another process",
    ) -> None:
        """Block until ``present(subject, key)`` holds for every cell of ``cells`` (subject ->
        keys), as other processes write them, each cell looked at until it appears. After
        ``timeout`` seconds without a new cell, a `StudyError` names every subject still missing
        cells, the first such cell's file, its ``owner`` and who holds its claim now.

        >>> import tempfile
        >>> store = CellStore(tempfile.mkdtemp(), fingerprint="{}")
        >>> store.put(1, "a", {"value": 1.0})
        >>> store.wait_for({1: ["a"]}, store.has, timeout=1)
        >>> store.wait_for({1: ["a", "b"]}, store.has, timeout=0.1)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        emg_lens.errors.StudyError: waited 0.1 s without a new cell; missing: subject 1 (...
        """
        cursor = {subject: 0 for subject, keys in cells.items() if keys}
        last_progress = time.monotonic()
        while cursor:
            for subject in list(cursor):
                keys, start = cells[subject], cursor[subject]
                while cursor[subject] < len(keys) and present(subject, keys[cursor[subject]]):
                    cursor[subject] += 1
                if cursor[subject] > start:
                    last_progress = time.monotonic()
                if cursor[subject] == len(keys):
                    del cursor[subject]
            if not cursor:
                return
            if time.monotonic() - last_progress > timeout:
                raise StudyError(self._missing_message(cells, cursor, timeout, owner))
            time.sleep(poll)

    def wait_for_matching(
        self,
        provenances: Mapping[int, Mapping[str, dict[str, Any] | None]],
        *,
        timeout: float,
        poll: float = POLL_INTERVAL,
        owner: Callable[[int], str] = lambda subject: "another process",
    ) -> dict[int, dict[str, dict[str, Any]]]:
        """`wait_for` the cells of ``provenances`` (subject -> key -> provenance), each stored
        with the provenance given there, and return them (`matching`), by subject: how rank 0
        of ``torchrun`` reads the other ranks' subjects.

        >>> import tempfile
        >>> store = CellStore(tempfile.mkdtemp(), fingerprint="{}")
        >>> store.put(1, "a", {"value": 1.0}, {"model": "x"})
        >>> store.wait_for_matching({1: {"a": {"model": "x"}}}, timeout=1)[1]["a"]["value"]
        1.0
        """

        def present(subject: int, key: str) -> bool:
            return self.get(subject, key, provenances[subject][key]) is not None

        keys = {subject: list(cells) for subject, cells in provenances.items()}
        self.wait_for(keys, present, timeout=timeout, poll=poll, owner=owner)
        return {subject: self.matching(subject, cells) for subject, cells in provenances.items()}

    def _missing_message(self, cells, cursor, timeout: float, owner) -> str:
        missing = []
        for subject, index in sorted(cursor.items()):
            holder = self.holder(subject)
            held = f"claimed by {self.describe_holder(holder)}" if holder else "not claimed"
            missing.append(
                f"subject {subject} ({self.path(subject, cells[subject][index])}, to be "
                f"computed by {owner(subject)}, {held})"
            )
        return (
            f"waited {timeout:g} s without a new cell; missing: {'; '.join(missing)}. If those "
            "processes are gone, run the study again: it computes only the missing cells "
            f"(delete a claim under {self.claims} that a process on another host left behind)"
        )

    # ------------------------------------------------------------------ claims
    def claim_path(self, subject: int) -> Path:
        """The claim file of one subject (present while a process computes its cells)."""
        return self.claims / f"s{subject}.claim"

    @staticmethod
    def describe_holder(holder: dict[str, Any]) -> str:
        """A claim's holder for people: ``pid 41 on host 'node3' (started 2025-01-31 14:02:07)``.

        >>> CellStore.describe_holder({"pid": 41, "host": "node3"})
        "pid 41 on host 'node3'"
        """
        if "unreadable" in holder:
            return f"an unreadable claim ({holder['unreadable']!r:.60})"
        text = f"pid {holder.get('pid')} on host {holder.get('host')!r}"
        started = holder.get("started_at")
        return f"{text} (started {started})" if started else text

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

    def say_waiting(self, subject: int, timeout: float) -> None:
        """Say (a warning, once per subject: the caller's to keep) that another process holds
        ``subject``'s claim: which, and for how long this one waits."""
        holder = self.holder(subject) or {}
        warn_caller(
            f"subject {subject}: waiting for {self.describe_holder(holder)}, which holds "
            f"{self.claim_path(subject)}, to store its cells; giving up after "
            f"{timeout:g} s (set with `study run --wait-timeout SECONDS`, "
            "run_study(wait_timeout=...)). If that process is gone, delete the claim file and run "
            "again"
        )

    def check_wait(
        self,
        subject: int,
        provenances: Mapping[str, dict[str, Any] | None],
        names: Mapping[str, str],
        since: float,
        timeout: float,
    ) -> None:
        """Give up on ``subject``, claimed by another process, once ``timeout`` seconds have
        passed since ``since`` (`time.monotonic`): a `StudyError` naming the first of its
        cells (``provenances``: key -> provenance; ``names``: key -> what the study calls the
        cell) not stored with its provenance, and the claim's holder."""
        if time.monotonic() - since <= timeout:
            return
        missing = next(k for k, p in provenances.items() if self.get(subject, k, p) is None)
        holder = self.holder(subject) or {}
        raise StudyError(
            f"waited {timeout:g} s for cell {self.path(subject, missing)} "
            f"(subject {subject}, condition {names[missing]!r}), claimed by "
            f"{self.describe_holder(holder)}; if that process is gone, delete "
            f"{self.claim_path(subject)} and run again (or wait longer: "
            "`study run --wait-timeout SECONDS`)"
        )

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
        started = process_start(os.getpid())  # tells this process from a later one of its pid
        claimant = {"started": started, "started_at": process_started_at(started)}
        text = _json_text({**_this_process(), **claimant, "token": token})
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
        """Whether a claim's holder may still be working: on this host, its pid is alive and,
        when the claim records when its process started, that process (not a later one that
        got the same pid); any process on another host (which this host cannot check)."""
        me = _this_process()
        if "unreadable" in holder or not isinstance(holder.get("pid"), int):
            return False  # not written by a claim: nobody to wait for
        if holder.get("host") != me["host"]:
            return True
        started = holder.get("started")
        return holder["pid"] != me["pid"] and same_process(
            holder["pid"], started if isinstance(started, str) else None
        )

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
