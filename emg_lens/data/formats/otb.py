"""OT BioLab+ ``.mat`` exports: HD-sEMG grids, auxiliary channels and what the software added.

A file holds ``Data`` (samples x columns), ``Description`` (one text per column),
``SamplingFrequency`` and ``Time``. `read_otb` reads the columns as openhdemg's ``emg_from_otb``
does (``get_otb_rawsignal``): an electrode is ``"<muscle> - <input> - <grid code> (<channel>)
[<unit>]"``, placed by its grid code where openhdemg gives the channel order
(`emg_lens.geometry.ORDERED_GRID_CODES`; other grids are read unplaced, with a warning);
the decomposition's columns are left out (``meta["left_out"]``); anything else is an auxiliary
channel in ``extras`` (``"acquired data"`` as ``extras["force"]``), its unit in
``meta["units"]``. Contractions have no gesture labels: stimulus and repetition are 0.

>>> import tempfile, scipy.io
>>> path = Path(tempfile.mkdtemp()) / "rec.mat"
>>> names = [f"VL - IN1 - GR10MM0808 ({k})[uV]" for k in range(1, 65)] + ["acquired data[%MVC]"]
>>> scipy.io.savemat(path, {"Data": np.zeros((10, 65)), "SamplingFrequency": 2048.0,
...                         "Description": np.array(names, dtype=object)[:, None]})
>>> rec = read_otb(path)
>>> rec.modalities, sorted(rec.extras), rec.meta["units"]["force"]
({'emg': 64}, ['force'], '%MVC')
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emg_lens.data.formats._matlab import read_mat, require
from emg_lens.data.recording import Recording
from emg_lens.errors import DataFormatError, check_bool, check_choice, checked, warn_caller
from emg_lens.geometry import (
    GRID_CODES,
    ORDERED_GRID_CODES,
    Montage,
    grid_code,
    grid_electrodes,
)

OTB_SOURCE = (
    "OT Bioelettronica's grid channel maps as openhdemg orders them (openhdemg/library/"
    "electrodes.py); OT BioLab+ column descriptions as openhdemg's emg_from_otb reads them"
)

_ELECTRODE = re.compile(
    r"^(?P<muscle>.*?) - (?P<input>.*) - (?P<code>[A-Z]{2}\w*?) \((?P<channel>\d+)\)"
    r"\[(?P<unit>[^\]]*)\]$"
)
_SOFTWARE = re.compile(r"Source for decomposition|Decomposition of")
_AUX = re.compile(r"^(?P<name>[^\[]*?)\s*\[\s*(?P<unit>[^\]]*?)\s*\]$")
_AUX_NAMES = {"acquired data": "force", "performed path": "performed_path"}


@dataclass(frozen=True)
class OtbGrid:
    """One grid of an export: its code, muscle, input, unit and the file's columns of its
    channels 1, 2, ... in order."""

    code: str
    muscle: str
    input: str
    unit: str
    columns: tuple[int, ...]


def _texts(description: Any, path: Path) -> list[str]:
    items = np.asarray(description, dtype=object).reshape(-1)
    if items.size == 1 and isinstance(items[0], str) and "\n" in items[0]:
        items = np.array(items[0].splitlines(), dtype=object)
    texts = []
    for item in items:
        while isinstance(item, np.ndarray) and item.size == 1:
            item = item.reshape(-1)[0]
        if not isinstance(item, str):
            raise DataFormatError(f"{path}: 'Description' must hold texts, got {item!r}")
        texts.append(item.strip())
    return texts


def _matrix(value: Any, path: Path, name: str, *, real_part: bool = False) -> np.ndarray:
    x = value
    while isinstance(x, np.ndarray) and x.dtype == object and x.size == 1:
        x = x.reshape(-1)[0]
    x = np.asarray(x)
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.number) or x.size == 0:
        raise DataFormatError(
            f"{path}: {name!r} must be a numeric samples x columns matrix with at least one value, "
            f"got {x.dtype} {x.shape}"
        )
    if np.iscomplexobj(x) and not real_part:
        imaginary = (
            f"{x.dtype}, {np.count_nonzero(x.imag)} of {x.size} values with an imaginary part"
        )
        fix = "; read_otb(path, real_part=True) takes the real part" if name == "Data" else ""
        raise DataFormatError(f"{path}: {name!r} holds complex numbers ({imaginary}){fix}")
    return x


def _rate(value: Any, path: Path) -> float:
    """The export's ``SamplingFrequency``: one positive, finite number of Hz."""
    x = np.asarray(value).reshape(-1)
    real = np.issubdtype(x.dtype, np.number) and not np.iscomplexobj(x)
    if x.size != 1 or not real or not (np.isfinite(x[0]) and x[0] > 0):
        raise DataFormatError(f"{path}: 'SamplingFrequency' must hold one positive Hz, got {x[:5]}")
    return float(x[0])


def _columns(
    texts: list[str], path: Path
) -> tuple[list[OtbGrid], dict[str, int], dict[str, str], list[str]]:
    """The grids (in the order the file has them), the auxiliary columns by name, their units
    and the descriptions left out."""
    found: dict[tuple[str, str, str], dict[int, tuple[int, str]]] = {}
    aux: dict[str, int] = {}
    units: dict[str, str] = {}
    left_out: list[str] = []
    for column, text in enumerate(texts):
        if _SOFTWARE.search(text):
            left_out.append(text)
            continue
        electrode = _ELECTRODE.match(text)
        if electrode:
            key = (electrode["code"], electrode["muscle"], electrode["input"])
            channels = found.setdefault(key, {})
            number = int(electrode["channel"])
            require(number not in channels, path, f"two columns describe {text!r}")
            channels[number] = (column, electrode["unit"])
            continue
        m = _AUX.match(text)
        name = _AUX_NAMES.get((m["name"] if m else text).strip().lower())
        name = name or re.sub(r"\W+", "_", (m["name"] if m else text).strip().lower()).strip("_")
        if not name or name in aux:
            raise DataFormatError(
                f"{path}: column {text!r} has no name of its own ('<name>[<unit>]')"
            )
        aux[name], units[name] = column, (m["unit"] if m else "")
    all_units = {unit for channels in found.values() for _, unit in channels.values()}
    require(len(all_units) < 2, path, f"the grid channels mix units {sorted(all_units)}")
    grids = []
    for (code, muscle, source), channels in found.items():
        if code not in GRID_CODES:
            raise DataFormatError(
                f"{path}: grid code {code!r} ({muscle} - {source}) is not an OT Bioelettronica "
                f"grid openhdemg knows: {sorted(GRID_CODES)}"
            )
        expected = grid_electrodes(code)  # 64: a 13 x 5 grid leaves a corner empty
        if sorted(channels) != list(range(1, expected + 1)):
            missing = sorted(set(range(1, expected + 1)) - set(channels))[:10]
            raise DataFormatError(
                f"{path}: grid {code} ({muscle} - {source}) has channels "
                f"{min(channels)}..{max(channels)} of {expected}, missing {missing}"
            )
        columns = tuple(channels[k][0] for k in range(1, expected + 1))
        grids.append(OtbGrid(code, muscle, source, channels[1][1], columns))
    return grids, aux, units, left_out


@checked
def read_otb(
    path: str | Path, *, orientation: int = 180, subject: int = 1, real_part: bool = False
) -> Recording:
    """An OT BioLab+ ``.mat`` export as a `Recording` (see the module docstring): the grids'
    channels as ``signals["emg"]`` (grid after grid, channel 1 first), auxiliary channels as
    ``extras``; ``meta`` holds the grids, units, what was left out, the placement and the
    export's start time.

    Args:
        path: the ``.mat`` file.
        orientation: how the grids lay, 0 or 180 degrees as openhdemg means it (180, its
            default: the connector toward the researcher or the ground).
        subject: the subject number to give the recording.
        real_part: a complex ``Data`` is refused (a `DataFormatError` saying how many values
            have an imaginary part); True reads its real part, and ``meta["real_part"]`` says
            the imaginary part was dropped."""
    path = Path(path)
    check_choice(orientation, (0, 180), "orientation (degrees)")
    contents = read_mat(path, reader="OT BioLab+ exports (File > Export > MATLAB)")
    missing = [k for k in ("Data", "Description", "SamplingFrequency") if k not in contents]
    if missing:
        raise DataFormatError(
            f"{path}: not an OT BioLab+ export: it lacks {missing} (it holds {sorted(contents)})"
        )
    check_bool(real_part, "real_part")
    data = _matrix(contents["Data"], path, "Data", real_part=real_part)
    complex_data = np.iscomplexobj(data)
    data = data.real if complex_data else data  # asked for by real_part=True
    texts = _texts(contents["Description"], path)
    if len(texts) != data.shape[1]:
        raise DataFormatError(
            f"{path}: 'Data' has {data.shape[1]} columns but 'Description' {len(texts)} texts"
        )
    rate = _rate(contents["SamplingFrequency"], path)
    grids, aux, units, left_out = _columns(texts, path)
    if not grids:
        raise DataFormatError(
            f"{path}: no column describes a grid electrode ('<muscle> - <input> - <grid code> "
            f"(<channel>)[<unit>]'); its columns: {texts[:5]}"
        )
    emg = np.concatenate([data[:, g.columns] for g in grids], axis=1).astype(np.float32)
    extras = {name: data[:, column].astype(np.float32) for name, column in aux.items()}
    for name, x in extras.items():
        require(np.isfinite(x).all(), path, f"auxiliary channel {name!r} holds NaN or Inf values")
    unordered = sorted({g.code for g in grids if g.code not in ORDERED_GRID_CODES})
    placement, unplaced = None, {}
    if unordered:  # no channel map to go on: no placement rather than a guessed one
        unplaced = {
            "placement_missing": f"openhdemg gives no channel order for {unordered} (it orders "
            f"{list(ORDERED_GRID_CODES)}): place the grids with emg_lens.geometry.grid(..., "
            "cells=...) from their data sheets"
        }
        warn_caller(f"{path}: {unplaced['placement_missing']}")
    else:
        parts, offset = [], 0
        for g in grids:
            part = grid_code(g.code, orientation, name=f"{g.muscle} ({g.code})")
            parts.append(part.shifted(offset))
            offset += len(part.electrodes)
        placement = Montage(
            tuple(parts),
            source=OTB_SOURCE,
            convention="which way a grid lies on the muscle (orientation) is the user's to say",
        )
    time = contents.get("Time")
    start = float(_matrix(time, path, "Time")[0, 0]) if time is not None else 0.0
    n = len(emg)
    return Recording(
        subject=subject,
        signals={"emg": emg},
        sample_rate=rate,
        stimulus=np.zeros(n, np.int64),
        repetition=np.zeros(n, np.int64),
        source=str(path),
        extras=extras,
        meta={
            "grids": [
                {"code": g.code, "muscle": g.muscle, "input": g.input, "unit": g.unit}
                for g in grids
            ],
            "units": {"emg": grids[0].unit, **units},
            "left_out": left_out,
            **({"placement": placement} if placement is not None else unplaced),
            "start_time": start,
            **({"real_part": "the imaginary part of Data was dropped"} if complex_data else {}),
        },
    )
