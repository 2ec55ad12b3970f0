"""`Montage`: where the electrodes of one modality lie on the body, in parts that are drawn
the way the field draws them.

A montage is made of `Part`\\ s of four kinds, ``"ring"``, ``"grid"``, ``"points"`` and
``"scalp"``; their frames (a ring's anatomical angle: 0 on the dorsal midline, 90 on the radial
side; points in mm on the unrolled forearm): docs/concepts.md, "Electrode placements".

A montage places *electrodes*; a channel of a modality with ``axes`` channels per electrode (a
3-axis accelerometer) is electrode ``channel // axes``. Every montage says where its placement
comes from (``source``) and which of it is this project's convention (``convention``), so a
figure never passes a convention off as documented.

>>> ring8 = ring("armband", 8)
>>> [tuple(round(v, 3) for v in ring8.xy[k]) for k in (0, 2, 4)]
[(0.0, 1.0), (1.0, 0.0), (0.0, -1.0)]
>>> montage = Montage((ring8,), axes=3, source="a test")
>>> montage.n_channels, montage.electrode(5), montage.locate(5)
(24, 1, (0, (0.707, 0.707)))
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from emg_lens.errors import ArgumentError, check_choice, check_int, checked

KINDS = ("ring", "grid", "points", "scalp")
"""The kinds of `Part` (how each is drawn: docs/concepts.md, "Electrode placements")."""


@checked
@dataclass(frozen=True)
class Part:
    """One drawn piece of a montage: its ``electrodes`` (indices into the montage's
    electrodes) at ``xy`` in the part's frame (see the module docstring), of ``kind``; a grid
    also has ``shape`` (rows, columns) and each electrode's ``cells`` (row, column); ``units``
    names the frame's unit; ``labels`` names the electrodes (a scalp's 10-20 names)."""

    name: str
    kind: str
    electrodes: tuple[int, ...]
    xy: tuple[tuple[float, float], ...]
    units: str
    shape: tuple[int, int] | None = None
    cells: tuple[tuple[int, int], ...] | None = None
    labels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_choice(self.kind, KINDS, f"part {self.name!r}: kind")
        n = len(self.electrodes)
        if n != len(self.xy) or len(set(self.electrodes)) != n:
            raise ArgumentError(
                f"part {self.name!r}: {n} distinct electrodes need {n} positions, got "
                f"{len(self.xy)}"
            )
        if (self.kind == "grid") != (self.shape is not None and self.cells is not None):
            raise ArgumentError(f"part {self.name!r}: a grid, and only a grid, has shape and cells")

    def shifted(self, offset: int) -> Part:
        """The part with every electrode index moved by ``offset`` (a montage's second
        part numbered after its first)."""
        return Part(
            self.name,
            self.kind,
            tuple(e + offset for e in self.electrodes),
            self.xy,
            self.units,
            self.shape,
            self.cells,
            self.labels,
        )


@checked
@dataclass(frozen=True)
class Montage:
    """Where each electrode of one modality lies: its ``parts`` cover electrodes
    ``0..n_electrodes - 1``, each once; ``axes`` channels per electrode; ``source``: where
    the placement comes from; ``convention``: what of it is this project's choice."""

    parts: tuple[Part, ...]
    axes: int = 1
    source: str = ""
    convention: str = ""

    def __post_init__(self) -> None:
        electrodes = sorted(e for part in self.parts for e in part.electrodes)
        if electrodes != list(range(len(electrodes))):
            raise ArgumentError(
                f"a montage's parts must place electrodes 0..n-1, each once; got {electrodes[:20]}"
            )
        check_int(self.axes, "axes", minimum=1)

    @property
    def n_electrodes(self) -> int:
        return sum(len(part.electrodes) for part in self.parts)

    @property
    def n_channels(self) -> int:
        return self.n_electrodes * self.axes

    def electrode(self, channel: int) -> int:
        """The electrode a channel of this modality belongs to (0-based, within the
        modality)."""
        return check_int(channel, "channel (of this montage)", 0, self.n_channels - 1) // self.axes

    def locate(self, channel: int) -> tuple[int, tuple[float, float]]:
        """(part index, position in the part's frame, rounded to 3 decimals) of a channel."""
        electrode = self.electrode(channel)  # in one part: __post_init__
        index, part = next((i, p) for i, p in enumerate(self.parts) if electrode in p.electrodes)
        x, y = part.xy[part.electrodes.index(electrode)]
        return index, (round(x, 3), round(y, 3))


def _numbers(electrodes: Sequence[int] | None, n: int) -> tuple[int, ...]:
    return tuple(range(n)) if electrodes is None else tuple(electrodes)


@checked
def ring(
    name: str,
    n: int,
    *,
    first: float = 0.0,
    clockwise: bool = True,
    radius: float = 1.0,
    electrodes: Sequence[int] | None = None,
) -> Part:
    """``n`` electrodes equally spaced around a limb, the first at angle ``first`` (degrees,
    anatomical: 0 dorsal, 90 radial), the next ones toward the radial side (``clockwise`` as
    drawn) or the ulnar side, drawn at ``radius``.

    >>> part = ring("band", 4, first=90.0)
    >>> [tuple(round(v, 3) for v in xy) for xy in part.xy]
    [(1.0, 0.0), (0.0, -1.0), (-1.0, -0.0), (-0.0, 1.0)]
    """
    check_int(n, "a ring's n (its electrodes)", minimum=1)
    sign = 1 if clockwise else -1
    angles = [math.radians(first + sign * 360.0 * k / n) for k in range(n)]
    xy = tuple((radius * math.sin(a), radius * math.cos(a)) for a in angles)
    return Part(name, "ring", _numbers(electrodes, n), xy, "angle around the limb")


GRID_CODES: Mapping[str, tuple[int, int, float]] = {
    "GR04MM1305": (13, 5, 4.0),
    "GR08MM1305": (13, 5, 8.0),
    "GR100ML1305": (13, 5, 2.5),
    "GR10MM0804": (8, 4, 10.0),
    "GR10MM0808": (8, 8, 10.0),
    "HD04MM1305": (13, 5, 4.0),
    "HD08MM1305": (13, 5, 8.0),
    "HD05MM0804": (8, 4, 5.0),
    "HD10MM0804": (8, 4, 10.0),
    "HD10MM0808": (8, 8, 10.0),
}
"""OT Bioelettronica grid codes as openhdemg names them (``openhdemg/library/electrodes.py``:
``OTBelectrodes_tuple``) -> (rows, columns, inter-electrode distance in mm, its
``OTBelectrodes_ied``); a 13 x 5 grid holds 64 electrodes (`grid_electrodes`)."""

ORDERED_GRID_CODES = ("GR04MM1305", "GR08MM1305", "GR10MM0808")
"""The grid codes whose channel order openhdemg gives (``sort_rawemg``'s built-in orders), so
`grid_code` can place their channels; the others are read without a placement (for an HD
grid's map, unmerged openhdemg work differs from the GR grids' 13 x 5 order)."""


@checked
def grid_electrodes(code: str) -> int:
    """The electrodes of grid ``code`` (`GRID_CODES`): rows x columns, but 64 on a 13 x 5 grid,
    whose one corner is empty (openhdemg's ``OTBelectrodes_Nelectrodes``).

    >>> grid_electrodes("GR08MM1305"), grid_electrodes("HD10MM0804")
    (64, 32)
    """
    check_choice(code, sorted(GRID_CODES), "grid code")
    rows, cols, _ = GRID_CODES[code]
    return min(rows * cols, 64)


@checked
def grid(
    name: str,
    rows: int,
    cols: int,
    pitch: float,
    *,
    order: str = "column",
    electrodes: Sequence[int] | None = None,
    cells: Sequence[tuple[int, int]] | None = None,
) -> Part:
    """A grid of ``rows`` x ``cols`` electrodes ``pitch`` mm apart. Electrode k sits at row
    ``k % rows``, column ``k // rows`` (``order="column"``: the columns one after the other,
    as MATLAB's ``reshape`` reads an ``emg(t, row, col)`` array) or row ``k // cols``, column
    ``k % cols`` (``"row"``); or at the given ``cells`` (row, column) of each electrode.

    >>> part = grid("extensors", 8, 8, 10.0)
    >>> part.cells[:2], part.cells[8], part.xy[9]
    (((0, 0), (1, 0)), (0, 1), (10.0, 10.0))
    """
    check_choice(order, ("column", "row"), "order")
    if cells is None:
        n = rows * cols
        cells = [(k % rows, k // rows) if order == "column" else (k // cols, k % cols) for k in
                 range(n)]  # fmt: skip
    cells = tuple((int(r), int(c)) for r, c in cells)
    if any(not (0 <= r < rows and 0 <= c < cols) for r, c in cells) or len(set(cells)) < len(cells):
        raise ArgumentError(f"grid {name!r}: cells must be distinct and inside {rows} x {cols}")
    xy = tuple((c * pitch, r * pitch) for r, c in cells)
    return Part(name, "grid", _numbers(electrodes, len(cells)), xy, "mm", (rows, cols), cells)


@checked
def grid_code(code: str, orientation: int = 180, *, name: str | None = None) -> Part:
    """The grid of an OT Bioelettronica electrode code with openhdemg's channel order
    (`ORDERED_GRID_CODES`; the others are refused, naming `grid`) for its ``orientation`` (0
    or 180 degrees; 180: the grid's connector toward the researcher or the ground,
    openhdemg's default): channel k (0-based, as a recording
    holds it) at its row and column, row 0 at the top (openhdemg's ``sort_rawemg``,
    ``openhdemg/library/electrodes.py``). 8 x 8 grids: channel ``8 (7 - c) + r`` at row r,
    column c at orientation 0; orientation 180 is the same grid turned by 180 degrees. 13 x 5
    grids: 64 electrodes down and up the columns in turn, one corner empty (top left at
    orientation 180, bottom right at 0).

    >>> part = grid_code("GR10MM0808", 0)
    >>> part.cells[0], part.cells[56], part.xy[7]
    ((0, 7), (0, 0), (70.0, 70.0))
    >>> grid_code("GR08MM1305").cells[:2]  # down the first column, below the empty corner
    ((1, 0), (2, 0))
    """
    check_choice(code, sorted(GRID_CODES), "grid code")
    if code not in ORDERED_GRID_CODES:
        rows, cols, pitch = GRID_CODES[code]
        raise ArgumentError(
            f"grid {code}: openhdemg gives no channel order for it (its sort_rawemg orders "
            f"{list(ORDERED_GRID_CODES)}), so emg_lens does not guess where channel k lies; "
            f"place it with emg_lens.geometry.grid(name, {rows}, {cols}, {pitch}, cells=...) "
            "from the grid's data sheet"
        )
    check_choice(orientation, (0, 180), "orientation (degrees)")
    rows, cols, pitch = GRID_CODES[code]
    cells: list[tuple[int, int]] = []
    if (rows, cols) == (8, 8):
        at = {8 * (7 - c) + r: (r, c) for r in range(8) for c in range(8)}  # orientation 0
        cells = [at[k] for k in range(64)]
    else:  # 13 x 5 at orientation 180: down column 0 below the empty corner, up column 1, ...
        for c in range(cols):
            column = list(range(1 if c == 0 else 0, rows))
            cells += [(r, c) for r in (column if c % 2 == 0 else column[::-1])]
    square = (rows, cols) == (8, 8)  # the tables above: an 8 x 8 at 0, a 13 x 5 at 180
    if orientation != (0 if square else 180):
        cells = [(rows - 1 - r, cols - 1 - c) for r, c in cells]  # the grid turned by 180
    return grid(name or f"{code} ({orientation} deg)", rows, cols, pitch, cells=cells)


@checked
def grid_halves(part: Part, axis: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The electrodes of a grid ``part`` in its first and its second half of ``"rows"``
    (row 0 at the top: the two ends of the grid along the rows) or ``"columns"``, each in
    electrode order; an odd count's middle row or column is in neither half.

    >>> top, bottom = grid_halves(grid_code("GR08MM1305"), "rows")  # 13 rows: 0-5 and 7-12
    >>> len(top), len(bottom), grid_halves(grid("g", 2, 2, 1.0), "columns")
    (29, 30, ((0, 1), (2, 3)))
    """
    if part.kind != "grid" or part.shape is None or part.cells is None:
        raise ArgumentError(f"part {part.name!r} is a {part.kind}, not a grid: it has no halves")
    check_choice(axis, ("rows", "columns"), "axis")
    n = part.shape[0 if axis == "rows" else 1]
    lines = [cell[0 if axis == "rows" else 1] for cell in part.cells]
    first = tuple(e for e, line in zip(part.electrodes, lines) if line < n // 2)
    second = tuple(e for e, line in zip(part.electrodes, lines) if line >= n - n // 2)
    return first, second


@checked
def points(name: str, xy: Sequence[tuple[float, float]], *, electrodes: Sequence[int] | None
           = None, labels: Sequence[str] | None = None) -> Part:  # fmt: skip
    """Electrodes at free positions in mm on the unrolled forearm (x around it from the
    dorsal midline, y along it from the elbow crease, distal positive).

    >>> points("spots", [(0.0, 60.0), (125.0, 60.0)], labels=["EDS", "FDS"]).labels
    ('EDS', 'FDS')
    """
    xy = tuple((float(x), float(y)) for x, y in xy)
    return Part(
        name,
        "points",
        _numbers(electrodes, len(xy)),
        xy,
        "mm",
        labels=None if labels is None else tuple(labels),
    )


@checked
def scalp(names: Sequence[str], *, name: str = "scalp") -> Part:
    """EEG electrodes by their 10-20 / 10-10 names on a topographic map
    (`emg_lens.geometry.ten_twenty.scalp_xy`); a name with no position is an
    `emg_lens.errors.LayoutError` naming it.

    >>> part = scalp(["C3", "Cz", "C4"])
    >>> [tuple(round(v, 2) + 0.0 for v in xy) for xy in part.xy]
    [(-0.4, 0.0), (0.0, 0.0), (0.4, 0.0)]
    """
    from emg_lens.geometry.ten_twenty import scalp_xy

    return Part(
        name,
        "scalp",
        tuple(range(len(names))),
        tuple(scalp_xy(n) for n in names),
        "topographic map (vertex at 0, 10 % circumference at 0.8)",
        labels=tuple(names),
    )
