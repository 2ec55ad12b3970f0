"""The placement check (`emg_lens.data.placement`) as ``emg-lens train`` and ``emg-lens
evaluate`` run (`check_placements`, ``--realign``), print (`placement_summary`) and record it:
each subject's ``meta["placement_check"]``, which training stores in the checkpoint's metadata."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def add_realign_argument(p: argparse.ArgumentParser) -> None:
    """``--realign``: put the held-out channels back before preprocessing."""
    p.add_argument(
        "--realign",
        action="store_true",
        help="put each held-out repetition the placement check names moved (a ring turned or "
        "mirrored, a grid flipped, the scalp's sides swapped; named only on evidence: a "
        "permutation test over trials) back by its map before preprocessing; a repetition it "
        "does not name moved is left as recorded, and why is said. Recorded with the results. "
        "Needs data placed on a ring, grid or scalp",
    )


def check_placements(
    subjects: list[Any],
    source: dict[str, Any],
    realign: bool,
    report: Callable[[str], None] = print,
) -> list[Any]:
    """Each subject's placement check against the data source's placement (a source without
    one: nothing, or an `ArgumentError` when ``realign`` asks for one), a line for each held-out
    repetition named moved or that cannot tell; the subjects back, realigned where a move is
    named when ``realign``, with ``meta["placement_check"]`` (the checks, ``action``,
    ``realign``, ``realigned``). A check that cannot run is said and skipped."""
    from emg_lens.data.placement import (
        NO_PLACEMENT,
        check_subject,
        placements_of,
        realign_subject,
    )
    from emg_lens.errors import ArgumentError, EmgLensError

    if not placements_of(source):
        if realign:
            raise ArgumentError(
                f"--realign: dataset {source.get('dataset')!r} places no channels on a ring, "
                f"grid or scalp; {NO_PLACEMENT}"
            )
        return subjects
    out = []
    for data in subjects:
        try:
            checks = check_subject(data, source)
        except EmgLensError as exc:
            kept = "; not realigned, the channels as recorded" if realign else ""
            report(f"subject {data.subject}: placement check not run: {exc}{kept}")
            data.meta["placement_check"] = {"error": str(exc), "realign": realign,
                                            "realigned": False}  # fmt: skip
            out.append(data)
            continue
        for check in checks:
            line = _action(check, realign)
            if check.decision != "no move":
                report(f"subject {data.subject}: placement {check.describe()} -> {line}")
        if realign:
            data = realign_subject(data, checks, source)
        else:
            data.meta["placement_check"] = {"checks": [c.to_dict() for c in checks],
                                            "realign": False, "realigned": False}  # fmt: skip
        for check, record in zip(checks, data.meta["placement_check"]["checks"]):
            record["action"] = _action(check, realign)
        out.append(data)
    return out


def _action(check: Any, realign: bool) -> str:
    """What was done with a checked repetition, in words (recorded as ``action``)."""
    if check.moved:
        return ("realigned before preprocessing" if realign else "not realigned "
                "(--realign puts the raw channels back by it)")  # fmt: skip
    if not realign:
        return "left as recorded"
    return f"left as recorded: --realign acts only on a named move ({check.decision})"


def placement_summary(
    records: dict[int, dict | None], trained: dict[int, dict | None] | None = None
) -> list[str]:
    """The summary lines of the subjects' placement checks (``{subject: meta
    ["placement_check"]}``; None: not checked): one per repetition named moved or that cannot
    tell, one for the others; with ``trained``, a line for each subject trained realigned and
    scored here as recorded, or the other way round.

    >>> moved = {"decision": "moved", "score": 0.71, "action": "realigned before "
    ...          "preprocessing", "description": "emg, held-out repetition 4 ('3'): moved: "
    ...          "mirror k → (8 − k) mod 8 (r 0.72 against the identity's 0.38)"}
    >>> still = {"decision": "no move", "score": 0.95, "description": "..."}
    >>> placement_summary({1: {"checks": [moved], "realigned": True}})
    ... # doctest: +NORMALIZE_WHITESPACE
    ["placement check: subject 1, emg, held-out repetition 4 ('3'): moved: mirror k → (8 − k)
      mod 8 (r 0.72 against the identity's 0.38) -> realigned before preprocessing"]
    >>> placement_summary({1: {"checks": [still], "realigned": False}})
    ['placement check: every held-out repetition keeps the training placement (no move, r 0.95)']
    """
    lines, kept = [], []
    for subject, record in records.items():
        record = record or {}
        if "error" in record:
            lines.append(f"placement check: subject {subject}: not run ({record['error']})")
        for check in record.get("checks", []):
            decision = check.get("decision", "moved" if check.get("moved") else "no move")
            if decision == "no move":
                kept.append(check["score"])
                continue
            action = check.get("action") or (
                "realigned before preprocessing" if record.get("realigned") else "left as recorded"
            )
            lines.append(f"placement check: subject {subject}, {check['description']} -> {action}")
    if kept:
        span = f"{min(kept):.2f}" + ("" if max(kept) == min(kept) else f"–{max(kept):.2f}")
        lines.append(
            "placement check: "
            + (f"{len(kept)} other held-out repetitions keep" if lines else "every held-out "
               "repetition keeps")
            + f" the training placement (no move, r {span})"
        )  # fmt: skip
    for subject, record in (trained or {}).items():
        was = bool(record and record.get("realigned"))
        now = bool((records.get(subject) or {}).get("realigned"))
        if was != now:
            lines.append(
                f"placement check: subject {subject}'s model was trained "
                + ("on realigned channels and is scored here on them as recorded (add --realign)"
                   if was else "on channels as recorded and is scored here on realigned ones")
            )  # fmt: skip
    return lines
