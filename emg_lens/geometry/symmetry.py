"""The ways a placement can be put on again: the symmetries of a `Montage`, each a map of its
channels (`ChannelMap`).

An armband of n electrodes can be worn turned by any number of electrodes, or the other way
round (mirrored); a square grid can be stuck on flipped or transposed; an EEG cap can be read
with left and right swapped. Each part of a montage has its own set (`part_maps`):

- ``"ring"``: the n rotations and the n mirrors (2n maps). Electrodes are numbered 1..n
  around the ring as the part lists them; "rotation by k" puts electrode e's signal on
  electrode e + k (mod n), "mirror k → (c − k) mod n" puts it on c − e (a residue 0 is
  electrode n);
- ``"grid"``: a square grid's 8 (the dihedral group of the square: turns by 0, 90, 180 and
  270 degrees, flips of the rows or the columns, the transpose and the anti-transpose), a
  rectangular grid's 4 (identity, flip rows, flip columns, turn by 180°); a map that would put
  an electrode on an empty cell (a 13 x 5 grid's missing corner) is left out;
- ``"scalp"``: the identity and the left–right mirror (each electrode on the one at its
  mirrored position, Fp1 ↔ Fp2, C3 ↔ C4, Cz on itself), when every electrode's mirror is in
  the montage;
- ``"points"``: the identity only (free positions have no symmetry known here).

A montage of several parts takes every combination of its parts' maps (`montage_maps`).
``moved_to[j]`` is where channel j's signal is found when the placement was put on by the
map: to put a recording back, read channel j from channel ``moved_to[j]``
(``x[:, moved_to]``).

>>> from emg_lens.geometry.montage import ring
>>> [m.name for m in montage_maps(Montage((ring("band", 4),)))]  # doctest: +NORMALIZE_WHITESPACE
['identity', 'rotation by 1', 'rotation by 2', 'rotation by 3', 'mirror k → (2 − k) mod 4',
 'mirror k → (3 − k) mod 4', 'mirror k → (4 − k) mod 4', 'mirror k → (1 − k) mod 4']
>>> montage_maps(Montage((ring("band", 4),)))[1].moved_to  # electrode 1's signal on 2, ...
(1, 2, 3, 0)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from emg_lens.errors import ArgumentError
from emg_lens.geometry.montage import Montage, Part

__all__ = ["SYMMETRIC_KINDS", "ChannelMap", "montage_maps", "part_maps"]

SYMMETRIC_KINDS = ("ring", "grid", "scalp")
"""The kinds of `Part` with a symmetry other than the identity."""

_MIRROR_TOLERANCE = 1e-6  # scalp positions are built symmetric: equal to rounding


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
    maps = [("identity" if s == 0 else f"rotation by {s}", list((k + s) % n)) for s in range(n)]
    for c in range(n):  # 0-based c − k: in electrode numbers 1..n, (c + 2) − e, named in 1..n
        maps.append((f"mirror k → ({(c + 1) % n + 1} − k) mod {n}", list((c - k) % n)))
    return maps


def _grid_maps(part: Part) -> list[tuple[str, list[int]]]:
    rows, cols = part.shape  # type: ignore[misc]  # a grid has them (Part.__post_init__)
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
    at = {cell: i for i, cell in enumerate(part.cells)}  # type: ignore[union-attr]
    maps = []
    for name, move in moves:
        moved = [at.get(move(r, c)) for r, c in part.cells]  # type: ignore[union-attr]
        if None not in moved:  # every electrode lands on an electrode
            maps.append((name, moved))
    return maps


def _scalp_maps(part: Part) -> list[tuple[str, list[int]]]:
    xy = np.asarray(part.xy)
    mirrored = xy * np.array([-1.0, 1.0])
    distance = np.linalg.norm(mirrored[:, None, :] - xy[None, :, :], axis=-1)
    partner = distance.argmin(axis=1)
    identity = ("identity", list(range(len(xy))))
    if (distance[np.arange(len(xy)), partner] > _MIRROR_TOLERANCE).any():
        return [identity]  # an electrode whose mirror is not in the montage
    return [identity, ("left–right mirror", [int(p) for p in partner])]


def part_maps(part: Part) -> list[tuple[str, list[int]]]:
    """A part's symmetries (the module says which): ``(name, moved)`` with ``moved[i]`` the
    position in ``part.electrodes`` where electrode ``part.electrodes[i]``'s signal lands;
    the identity first.

    >>> from emg_lens.geometry.montage import grid, scalp
    >>> [name for name, _ in part_maps(grid("g", 2, 3, 10.0))]
    ['identity', 'flip rows', 'flip columns', 'turn by 180°']
    >>> part_maps(scalp(["C3", "Cz", "C4"]))[1]
    ('left–right mirror', [2, 1, 0])
    """
    n = len(part.electrodes)
    if part.kind == "ring":
        return _ring_maps(n)
    if part.kind == "grid":
        return _grid_maps(part)
    if part.kind == "scalp":
        return _scalp_maps(part)
    return [("identity", list(range(n)))]


def montage_maps(montage: Montage) -> list[ChannelMap]:
    """Every symmetry of ``montage``, over its channels (a channel of an electrode with
    ``axes`` channels moves with its electrode), the identity first: the combinations of its
    parts' `part_maps`, named by part when it has several ("extensor grid: transpose; flexor
    grid: identity"). A montage with no symmetry but the identity (only ``points``, a scalp
    whose electrodes lack their mirror) is an `ArgumentError` naming the kinds that have one.

    >>> from emg_lens.geometry.montage import grid
    >>> maps = montage_maps(Montage((grid("g", 2, 2, 10.0),), axes=2))
    >>> len(maps), maps[4].name, maps[4].moved_to  # the transpose: electrodes 1 and 2 swap
    (8, 'transpose', (0, 1, 4, 5, 2, 3, 6, 7))
    """
    per_part = [part_maps(part) for part in montage.parts]
    if all(len(maps) == 1 for maps in per_part):
        kinds = [part.kind for part in montage.parts]
        raise ArgumentError(
            f"the montage's parts ({', '.join(kinds)}) have no symmetry but the identity: a "
            f"placement check needs a part of kind {' or '.join(SYMMETRIC_KINDS)} (a scalp "
            "whose every electrode has its left-right mirror)"
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
        out.append(ChannelMap(_name(montage.parts, [name for name, _ in combination]), channels))
    return out


def _name(parts: Sequence[Part], names: list[str]) -> str:
    if len(parts) == 1:
        return names[0]
    if all(name == "identity" for name in names):
        return "identity"
    return "; ".join(f"{part.name}: {name}" for part, name in zip(parts, names))
