"""Scalp regions of 10-20 / 10-10 EEG channel names: the table the region selectors read.

`place` puts a name in one *lobe* region (`LOBES`) and one *hemisphere* (`HEMISPHERES`) by
emg_lens's table; the table, its boundary cases (FC and CP central, PO occipital, P7/P8 =
old T5/T6 temporal, ...) and the nomenclature it follows: docs/concepts.md, "Scalp regions".

Names are read in the forms EDF files write (`emg_lens.geometry.ten_twenty.standard_name`:
``EEG FP1-REF``, ``Cz..``, case-insensitive); a bipolar pair (``Fp1-F7``), a 10-5 name
(``FFC1h``) or a name of no 10-10 position (``C7``, often the seventh cervical vertebra) is
refused with `LayoutError`.

>>> place("C3"), place("T5"), place("EEG FZ-REF")
(('central', 'left'), ('temporal', 'left'), ('frontal', 'midline'))
>>> region_channels("temporal", ["Fp1", "T7", "C3", "P8", "O2"])
('T7', 'P8')
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from emg_lens.errors import check_choice, checked
from emg_lens.geometry.ten_twenty import has_position, standard_name, unplaced_channel

LOBES = ("frontal", "central", "parietal", "occipital", "temporal")
"""The lobe regions: every placed channel is in exactly one."""

HEMISPHERES = ("left", "right", "midline")
"""The hemisphere regions: every placed channel is in exactly one."""

REGIONS = LOBES + HEMISPHERES
"""Every built-in region name a region selector accepts."""

ROW_LOBES: dict[str, str] = {
    "FP": "frontal",
    "AF": "frontal",
    "F": "frontal",
    "FC": "central",
    "FT": "temporal",
    "C": "central",
    "T": "temporal",
    "CP": "central",
    "TP": "temporal",
    "P": "parietal",
    "PO": "occipital",
    "O": "occipital",
    "I": "occipital",
}
"""Row prefix (upper case) -> lobe, before the exceptions below."""

# Single names: (lobe, hemisphere). P7..P10 lie on the P row but are the old posterior
# temporal T5/T6 (and below them); A/M are ear lobes and mastoids; Nz the nasion.
_SINGLE: dict[str, tuple[str, str]] = {
    "P7": ("temporal", "left"),
    "P8": ("temporal", "right"),
    "P9": ("temporal", "left"),
    "P10": ("temporal", "right"),
    "A1": ("temporal", "left"),
    "A2": ("temporal", "right"),
    "M1": ("temporal", "left"),
    "M2": ("temporal", "right"),
    "NZ": ("frontal", "midline"),
}

_NAME_RE = re.compile(r"(FP|AF|FC|FT|CP|TP|PO|F|C|T|P|O|I)(Z|10|[1-9])")
_ACCEPTED = (
    "10-20 / 10-10 names such as Fp1, AF3, F7, FC3, Cz, T7, CP4, P8, PO3, O2, Iz, A1 or M2 "
    "(case-insensitive; old T3/T4/T5/T6; an 'EEG ' prefix and a '-REF' suffix are dropped)"
)


@checked
def place(name: str) -> tuple[str, str]:
    """The ``(lobe, hemisphere)`` of a 10-20 / 10-10 channel name (docs/concepts.md's table).

    Raises `LayoutError` naming the channel for a name the table does not hold.

    >>> place("FC4"), place("Oz"), place("t4"), place("M1")
    (('central', 'right'), ('occipital', 'midline'), ('temporal', 'right'), ('temporal', 'left'))
    >>> place("EMG1")
    Traceback (most recent call last):
    ...
    emg_lens.errors.LayoutError: channel 'EMG1' has no 10-20 / 10-10 scalp region: accepted are 10-20 / 10-10 names such as Fp1, AF3, F7, FC3, Cz, T7, CP4, P8, PO3, O2, Iz, A1 or M2 (case-insensitive; old T3/T4/T5/T6; an 'EEG ' prefix and a '-REF' suffix are dropped); name your own regions instead, e.g. within_region("motor", regions={"motor": ["C3", "Cz", "C4"]}), or name channels directly (between_regions("C3+C4", "Pz"))
    """  # noqa: E501
    text = standard_name(name) if isinstance(name, str) else ""
    if text in _SINGLE:
        return _SINGLE[text]
    match = _NAME_RE.fullmatch(text)
    if match is None or not has_position(text):  # C7, TZ, O5: no 10-10 name
        raise unplaced_channel(
            name,
            "scalp region",
            f'{_ACCEPTED}; name your own regions instead, e.g. within_region("motor", '
            'regions={"motor": ["C3", "Cz", "C4"]}), or name channels directly '
            '(between_regions("C3+C4", "Pz"))',
        )
    row, position = match.groups()
    if position == "Z":
        return ROW_LOBES[row], "midline"
    return ROW_LOBES[row], "left" if int(position) % 2 else "right"


def region_channels(region: str, names: Sequence[str]) -> tuple[str, ...]:
    """The channels of ``names`` in built-in region ``region`` (a lobe or a hemisphere), in
    their order. Every name must be placeable: a channel the table cannot place might belong
    to the region (`LayoutError`).

    >>> region_channels("left", ["Fp1", "Fpz", "Fp2", "T3"])
    ('Fp1', 'T3')
    """
    check_choice(region, REGIONS, "region")
    side = 1 if region in HEMISPHERES else 0
    return tuple(n for n in names if place(n)[side] == region)
