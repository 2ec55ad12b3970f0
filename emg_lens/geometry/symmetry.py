"""The ways a placement can be put on again: the symmetries of a `Montage`, each a map of its
channels (`ChannelMap`): a part's own (`part_maps`; which, per kind of part: docs/concepts.md,
"Electrode placements"), and every combination of them for a montage (`montage_maps`). To put a
recording back, read channel j from channel ``moved_to[j]`` (``x[:, moved_to]``).

>>> from emg_lens.geometry import ring
>>> [m.name for m in montage_maps(Montage((ring("band", 4),)))]  # doctest: +NORMALIZE_WHITESPACE
['identity', 'rotation by 1', 'rotation by 2', 'rotation by 3', 'mirror k → (2 − k) mod 4',
 'mirror k → (3 − k) mod 4', 'mirror k → (4 − k) mod 4', 'mirror k → (1 − k) mod 4']
>>> montage_maps(Montage((ring("band", 4),)))[1].moved_to  # electrode 1's signal on 2, ...
(1, 2, 3, 0)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from emg_lens.errors import ArgumentError, EmgLensError, checked
from emg_lens.geometry.montage import Montage, Part
from emg_lens.geometry.ten_twenty import mirror_name, standard_name

SYMMETRIC_KINDS = ("ring", "grid", "scalp")
"""The kinds of `Part` with a symmetry other than the identity."""

MIRROR_TOLERANCE = 0.1
"""How far (in a scalp map's units: the head frame's equator at radius 1) an electrode whose
name follows no 10-20 / 10-05 rule may lie from the mirrored position of the electrode it is
paired with; a tenth of the head's radius, about half the spacing of neighbouring 10-10
electrodes."""

NAME_SLACK = 0.05
"""How much nearer than an electrode's named mirror (`mirror_name`) another electrode may lie
to its mirrored position before the positions contradict the name: MNE's templates put named
mirrors up to 0.042 from each other's mirrored position (``standard_1005``'s I1h, I2h), while
BioSemi's A1 and A2 (not 10-20's: both on the midline) lie 0.086 apart, A1 on its own mirror."""


@checked
@dataclass(frozen=True)
class ChannelMap:
    """One way of putting a placement on again: ``name`` says it in words ("identity",
    "rotation by 3", "mirror k → (8 − k) mod 8", "flip rows", "transpose", "left–right
    mirror"); ``moved_to[j]`` is the channel where channel j's signal lands."""

    name: str
    moved_to: tuple[int, ...]

    @property
    def is_identity(self) -> bool:
        return self.moved_to == tuple(range(len(self.moved_to)))


def _ring_maps(n: int) -> list[tuple[str, list[int]]]:
    k = np.arange(n)
    maps = [
        ("identity" if s == 0 else f"rotation by {s}", ((k + s) % n).tolist()) for s in range(n)
    ]
    for c in range(n):  # 0-based c − k: in electrode numbers 1..n, (c + 2) − e, named in 1..n
        maps.append((f"mirror k → ({(c + 1) % n + 1} − k) mod {n}", ((c - k) % n).tolist()))
    return maps


def _grid_maps(
    shape: tuple[int, int], cells: tuple[tuple[int, int], ...]
) -> list[tuple[str, list[int]]]:
    rows, cols = shape
    moves: list[tuple[str, Callable[[int, int], tuple[int, int]]]] = [
        ("identity", lambda r, c: (r, c)),
        ("flip rows", lambda r, c: (rows - 1 - r, c)),
        ("flip columns", lambda r, c: (r, cols - 1 - c)),
        ("turn by 180°", lambda r, c: (rows - 1 - r, cols - 1 - c)),
    ]
    if rows == cols:
        moves += [
            ("transpose", lambda r, c: (c, r)),
            ("anti-transpose", lambda r, c: (cols - 1 - c, rows - 1 - r)),
            ("turn by 90° clockwise", lambda r, c: (c, rows - 1 - r)),
            ("turn by 90° anticlockwise", lambda r, c: (cols - 1 - c, r)),
        ]
    at = {cell: i for i, cell in enumerate(cells)}
    maps = []
    for name, move in moves:
        moved = [at[cell] for r, c in cells if (cell := move(r, c)) in at]
        if len(moved) == len(cells):  # every electrode lands on an electrode
            maps.append((name, moved))
    return maps


def scalp_partners(part: Part) -> list[int | None]:
    """Each electrode's left–right mirror in a scalp ``part`` (its position in
    ``part.electrodes``; itself on the midline; None where the montage lacks it): by its
    10-20 / 10-05 name (`mirror_name`) unless the positions contradict the name (another
    electrode nearer the mirrored position by more than `NAME_SLACK`: another system's
    letters, BioSemi's A1..D32); else, for a name of no rule or no name, by position: the
    electrode nearest its mirrored position, when each is the other's and they lie within
    `MIRROR_TOLERANCE`.

    >>> from emg_lens.geometry import scalp
    >>> scalp_partners(scalp(["C3", "Cz", "C4", "P3"]))
    [2, 1, 0, None]
    """
    n = len(part.xy)
    labels = part.labels or (None,) * n
    xy = np.asarray(part.xy, dtype=float)
    distance = np.linalg.norm((xy * [-1.0, 1.0])[:, None] - xy[None], axis=-1)  # [i, k]
    by_name: dict[str, int] = {}
    for i, label in enumerate(labels):
        if label is not None:
            by_name.setdefault(standard_name(label, renamed=False), i)
    partner: list[int | None] = [None] * n
    by_position = []
    for i, label in enumerate(labels):
        mirror = None if label is None else mirror_name(label)
        named = None if mirror is None else by_name.get(mirror)
        if named is not None and distance[i, named] <= distance[i].min() + NAME_SLACK:
            partner[i] = named
        elif mirror is None or named is not None:  # no rule, or positions against it
            by_position.append(i)
    if by_position:
        among = distance[np.ix_(by_position, by_position)]
        nearest = among.argmin(axis=1)
        for a, b in enumerate(nearest):
            if nearest[b] == a and among[a, b] <= MIRROR_TOLERANCE:
                partner[by_position[a]] = by_position[b]
    # a mirror is a swap: one partner each, each the other's
    return [p if p is not None and partner[p] == i else None for i, p in enumerate(partner)]


def _scalp_maps(part: Part) -> list[tuple[str, list[int]]]:
    partner = scalp_partners(part)
    identity = ("identity", list(range(len(partner))))
    if None in partner or partner == identity[1]:
        return [identity]  # an electrode without its mirror, or all on the midline
    return [identity, ("left–right mirror", [int(p) for p in partner if p is not None])]


def _unpaired(part: Part) -> str:
    """The electrodes of a scalp ``part`` without a mirror, named: what a check would need."""
    missing = [
        str(part.labels[i] if part.labels else f"electrode {part.electrodes[i]}")
        for i, p in enumerate(scalp_partners(part))
        if p is None
    ]
    if not missing:
        return f"; scalp {part.name!r}: every electrode is on the midline"
    shown = ", ".join(missing[:12]) + (
        f" and {len(missing) - 12} more" if len(missing) > 12 else ""
    )
    return (
        f"; scalp {part.name!r}: no left–right mirror for {shown} (by the 10-20 / 10-05 names, "
        f"Fp1 ↔ Fp2, C3 ↔ C4, or by position within {MIRROR_TOLERANCE} of the head's radius)"
    )


def part_maps(part: Part) -> list[tuple[str, list[int]]]:
    """A part's symmetries (docs/concepts.md says which): ``(name, moved)`` with ``moved[i]`` the
    position in ``part.electrodes`` where electrode ``part.electrodes[i]``'s signal lands;
    the identity first.

    >>> from emg_lens.geometry import grid, scalp
    >>> [name for name, _ in part_maps(grid("g", 2, 3, 10.0))]
    ['identity', 'flip rows', 'flip columns', 'turn by 180°']
    >>> part_maps(scalp(["C3", "Cz", "C4"]))[1]
    ('left–right mirror', [2, 1, 0])
    """
    n = len(part.electrodes)
    if part.kind == "ring":
        return _ring_maps(n)
    if part.shape is not None and part.cells is not None:  # a grid (Part.__post_init__)
        return _grid_maps(part.shape, part.cells)
    if part.kind == "scalp":
        return _scalp_maps(part)
    return [("identity", list(range(n)))]


@checked
def montage_maps(montage: Montage) -> list[ChannelMap]:
    """Every symmetry of ``montage``, over its channels (a channel of an electrode with
    ``axes`` channels moves with its electrode), the identity first: the combinations of its
    parts' `part_maps`, named by part when it has several ("extensor grid: transpose; flexor
    grid: identity"). A montage with no symmetry but the identity (only ``points``, a scalp
    whose electrodes lack their mirror) is an `ArgumentError` naming the kinds that have one
    and a scalp's electrodes without a mirror.

    >>> from emg_lens.geometry import grid
    >>> maps = montage_maps(Montage((grid("g", 2, 2, 10.0),), axes=2))
    >>> len(maps), maps[4].name, maps[4].moved_to  # the transpose: electrodes 1 and 2 swap
    (8, 'transpose', (0, 1, 4, 5, 2, 3, 6, 7))
    """
    per_part = [part_maps(part) for part in montage.parts]
    if all(len(maps) == 1 for maps in per_part):
        kinds = [part.kind for part in montage.parts]
        scalps = "".join(_unpaired(part) for part in montage.parts if part.kind == "scalp")
        raise ArgumentError(
            f"the montage's parts ({', '.join(kinds)}) have no symmetry: a placement check needs a"
            f" part of kind {' or '.join(SYMMETRIC_KINDS)} (a scalp, mirrored left–right){scalps}"
        )
    out = []
    for combination in itertools.product(*per_part):
        electrode_to = list(range(montage.n_electrodes))
        for part, (_, moved) in zip(montage.parts, combination):
            for i, electrode in enumerate(part.electrodes):
                electrode_to[electrode] = part.electrodes[moved[i]]
        channels = tuple(
            electrode_to[c // montage.axes] * montage.axes + c % montage.axes
            for c in range(montage.n_channels)
        )
        names = [name for name, _ in combination]  # by part, where a part is not the identity
        if len(names) > 1 and any(name != "identity" for name in names):
            names = ["; ".join(f"{p.name}: {name}" for p, name in zip(montage.parts, names))]
        out.append(ChannelMap(names[0] if len(names) == 1 else "identity", channels))
    return out


def has_symmetry(montage: Any) -> bool:
    """Whether ``montage`` is a `Montage` with a symmetry to check (`montage_maps`).

    >>> from emg_lens.geometry import grid
    >>> has_symmetry(Montage((grid("g", 2, 2, 10.0),))), has_symmetry("a grid")
    (True, False)
    """
    try:
        return isinstance(montage, Montage) and bool(montage_maps(montage))
    except EmgLensError:
        return False
