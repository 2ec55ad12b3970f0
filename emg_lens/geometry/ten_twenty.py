"""Positions of 10-20 / 10-10 EEG electrodes on a spherical head, and their 2-D projection.

The idealised positions of the 10-20 system and its 10-10 extension (Jasper 1958; Oostenveld &
Praamstra 2001, Clin. Neurophysiol. 112:713-719), constructed on a unit sphere as the
``eeg_positions`` package does (github.com/sappelhoff/eeg_positions); the construction and the
projection (`project`, as MNE's topographic maps): docs/concepts.md, "Scalp regions".

>>> [tuple(round(v, 3) for v in scalp_xy(name)) for name in ("Cz", "Fz", "T7", "Fp1")]
[(0.0, 0.0), (0.0, 0.4), (-0.8, 0.0), (-0.247, 0.761)]
>>> tuple(round(v, 1) for v in scalp_xy("F3"))  # off the principal arcs: the F row's circle
(-0.3, 0.4)
"""

from __future__ import annotations

import functools
import math
import re

import numpy as np

from emg_lens.errors import LayoutError, checked

_OLD_NAMES = {"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}  # 10-20 -> 10-10 (ACNS)
_REFERENCES = ("REF", "LE", "AR", "AVG", "A1", "A2", "M1", "M2")
_NAME_RE = re.compile(r"(FP|AF|FC|FT|CP|TP|PO|F|C|T|P|O|I|N)(Z|10|[1-9])")

# Each row: its polar angle on the midline (degrees from the vertex, front positive) and the
# azimuth of its end on the 10 % circumference (its "7" position; 9 lies on the equator).
_ROWS = {
    "FP": (72.0, 108.0),
    "AF": (54.0, 126.0),
    "F": (36.0, 144.0),
    "FC": (18.0, 162.0),
    "C": (0.0, 180.0),
    "CP": (-18.0, 198.0),
    "P": (-36.0, 216.0),
    "PO": (-54.0, 234.0),
    "O": (-72.0, 252.0),
}
_TEMPORAL = {"FT": "FC", "T": "C", "TP": "CP"}  # the lateral rows: their 7, 8, 9, 10 only


@checked
def standard_name(name: str, renamed: bool = True) -> str:
    """``name`` upper-cased, without an ``EEG`` prefix or a reference suffix (``-REF``...) or
    trailing dots, the old names T3/T4/T5/T6 renamed T7/T8/P7/P8 (unless not ``renamed``).

    >>> standard_name("EEG FP1-REF"), standard_name("t3"), standard_name("Cz..")
    ('FP1', 'T7', 'CZ')
    >>> standard_name("t3", renamed=False)
    'T3'
    """
    text = name.strip().rstrip(".").upper()  # PhysioNet's EDF files pad with dots ("Cz..")
    if text.startswith("EEG"):
        text = text[3:].lstrip(" -_")
    head, dash, tail = text.rpartition("-")
    if dash and tail.strip() in _REFERENCES:
        text = head
    text = text.strip()
    return _OLD_NAMES.get(text, text) if renamed else text


_ROWS5 = "A AF AFF AFP C CCP CP CPP F FC FCC FFC FFT FP FT FTT I M N O OI P PO POO PPO T TP TPP TTP"
_TEN_FIVE = re.compile(  # the 10-05 names: a row, then Z or a number (with h for a half step)
    rf"({'|'.join(sorted(_ROWS5.split(), key=len, reverse=True))})(?:(Z)|([1-9][0-9]*)(H?))"
)


def mirror_name(name: str) -> str | None:
    """The 10-20 / 10-05 name of the electrode mirroring ``name`` across the midline
    (`standard_name` forms, answered upper-case): a trailing odd number (left) and the even
    number above it (right) mirror each other, an ``h`` (10-05's half steps) kept; a trailing
    ``z`` is on the midline, its own mirror; None for a name of no 10-20 / 10-05 row (``E12``,
    ``EXG1``).

    >>> [mirror_name(n) for n in ("Fp1", "C4", "TP9", "FFC2h", "Cz", "T3", "E12")]
    ['FP2', 'C3', 'TP10', 'FFC1H', 'CZ', 'T4', None]
    """
    match = _TEN_FIVE.fullmatch(standard_name(name, renamed=False))
    if match is None:
        return None
    row, midline, number, half = match.groups()
    if midline:
        return row + "Z"
    k = int(number)
    return f"{row}{k + 1 if k % 2 else k - 1}{half}"


def _unit(theta_deg: float, phi_deg: float) -> np.ndarray:
    """The unit vector at polar angle ``theta`` from the vertex and azimuth ``phi`` from the
    right ear (+x) toward the nose (+y)."""
    t, p = math.radians(theta_deg), math.radians(phi_deg)
    return np.array([math.sin(t) * math.cos(p), math.sin(t) * math.sin(p), math.cos(t)])


def _midline(angle: float) -> np.ndarray:
    """A point of the midline arc, ``angle`` degrees from the vertex (front positive)."""
    return _unit(abs(angle), 90.0 if angle >= 0 else 270.0)


def _on_arc(a: np.ndarray, b: np.ndarray, c: np.ndarray, fraction: float) -> np.ndarray:
    """The point ``fraction`` of the way from ``a`` to ``b`` along the circle through ``a``,
    ``b`` and ``c`` (``a`` and ``c`` the row's ends, ``b`` its midline point), projected back
    onto the sphere."""
    # the circle's centre: the point of the plane through a, b, c equidistant from all three
    ab, ac = b - a, c - a
    normal = np.cross(ab, ac)
    centre = a + (np.cross(normal, ab) * (ac @ ac) + np.cross(ac, normal) * (ab @ ab)) / (
        2 * (normal @ normal)
    )
    u, v = a - centre, b - centre
    radius = np.linalg.norm(u)
    e1 = u / radius
    e2 = np.cross(normal / np.linalg.norm(normal), e1)
    sweep = math.atan2(v @ e2, v @ e1)
    point = centre + radius * (math.cos(fraction * sweep) * e1 + math.sin(fraction * sweep) * e2)
    return point / np.linalg.norm(point)


@functools.cache
def _position(name: str) -> tuple[float, float, float] | None:
    """The unit-sphere position of a standard name, or None."""
    if name in ("NZ", "IZ"):
        return tuple(_midline(90.0 if name == "NZ" else -90.0))
    if name in ("I1", "I2", "O9", "O10"):  # on the equator, below O1 and O2: O9/O10 are
        # the 10-10 names of the points the 10-5 system calls I1/I2 (MNE's standard montages
        # place them there)
        left = name in ("I1", "O9")
        return tuple(_unit(90.0, _ROWS["O"][1] if left else 180.0 - _ROWS["O"][1]))
    match = _NAME_RE.fullmatch(name)
    if match is None:
        return None
    prefix, position = match.groups()
    row = _TEMPORAL.get(prefix, prefix)
    if row not in _ROWS:
        return None
    midline, end = _ROWS[row]
    if position == "Z":
        return None if prefix in _TEMPORAL else tuple(_midline(midline))
    k = int(position)
    # the lateral rows are named FT, T, TP at their ends (7-10), FC, C, CP inside (1-6)
    if (prefix in _TEMPORAL) != (k >= 7 and row in _TEMPORAL.values()):
        return None
    left = k % 2 == 1
    if row in ("FP", "O"):  # Fp1, Fp2, O1, O2 are their rows' ends, on the circumference
        return tuple(_unit(72.0, end if left else 180.0 - end)) if k in (1, 2) else None
    if k in (9, 10):  # the equator, below the row's end
        return tuple(_unit(90.0, end if left else 180.0 - end))
    left_end, right_end = _unit(72.0, end), _unit(72.0, 180.0 - end)
    a, c = (left_end, right_end) if left else (right_end, left_end)
    steps = (7 - k) // 2 if left else (8 - k) // 2  # 7 -> 0, 5 -> 1, 3 -> 2, 1 -> 3
    return tuple(_on_arc(a, _midline(midline), c, steps / 4).tolist())  # Python floats


def has_position(name: str) -> bool:
    """Whether a channel name (`standard_name` forms accepted) is one of the 10-10 system's,
    which `scalp_position` places.

    >>> has_position("EEG C3-REF"), has_position("O9"), has_position("C7"), has_position("TZ")
    (True, True, False, False)
    """
    return isinstance(name, str) and _position(standard_name(name)) is not None


@checked
def scalp_position(name: str) -> tuple[float, float, float]:
    """The unit-sphere position (x right, y nose, z vertex) of a 10-20 / 10-10 name
    (`standard_name` forms accepted); `LayoutError` for a name with no position."""
    text = standard_name(name) if isinstance(name, str) else ""
    position = _position(text)
    if position is None:
        raise unplaced_channel(name, "position", TEN_TEN_NAMES)
    return position


TEN_TEN_NAMES = (
    "the names of the 10-10 system (Fp1, AF3, F7, FC5, C3, Cz, T7, CP4, P8, PO3, O2, Nz, Iz, ... "
    "case-insensitive; old T3/T4/T5/T6; an 'EEG ' prefix and a '-REF' suffix dropped)"
)
"""The channel names `scalp_position` places, in words."""


def unplaced_channel(name: object, what: str, accepted: str) -> LayoutError:
    """The error for a channel ``name`` that has no 10-20 / 10-10 ``what`` (a position, a
    scalp region): its message names the channel and what is ``accepted``, its ``channel``
    holds the name (the repr of anything but a string).

    >>> unplaced_channel("EMG1", "position", "10-10 names").args[0]
    "channel 'EMG1' has no 10-20 / 10-10 position: accepted are 10-10 names"
    """
    return LayoutError(
        f"channel {name!r} has no 10-20 / 10-10 {what}: accepted are {accepted}",
        channel=name if isinstance(name, str) else repr(name),
    )


def project(position: tuple[float, float, float]) -> tuple[float, float]:
    """A unit-sphere position in the plane (azimuthal equidistant about the vertex): radius
    = polar angle / 90 degrees, in the direction of its azimuth."""
    x, y, z = (float(v) for v in position)
    theta = math.acos(max(-1.0, min(1.0, z)))
    horizontal = math.hypot(x, y)
    if horizontal < 1e-12:
        return (0.0, 0.0)
    r = theta / (math.pi / 2)
    return (r * x / horizontal, r * y / horizontal)


@checked
def scalp_xy(name: str) -> tuple[float, float]:
    """`project` of `scalp_position`: where ``name`` is drawn on a topographic map."""
    return project(scalp_position(name))
