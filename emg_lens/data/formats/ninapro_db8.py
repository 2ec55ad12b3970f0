"""NinaPro DB8 (MATLAB v5): reader, the thesis's regression windows, and a writer.

Layout for users: docs/guide/tinymyo.md, "Downstream datasets". Each subject's three
acquisitions ``S<N>_E1_A<k>.mat`` hold ``emg`` (T, 16, 2 kHz), ``glove`` (T, 18, degrees, on the
EMG clock) and the NinaPro label columns (zeros where absent). `load_ninapro_db8` joins them
into one `Recording` with the raw glove (NaN kept) in ``extras["glove"]`` and
``extras["acquisition"]``. `db8_windows` is the thesis's preprocessing (BioFoundation's
``scripts/db8.py``), its filters designed at the documented 2 kHz (why: the guide).

>>> import tempfile
>>> from emg_lens.data import synthetic_db8
>>> root = Path(tempfile.mkdtemp())
>>> rec = synthetic_db8(subject=2, seconds=0.5)
>>> [p.name for p in write_ninapro_db8(rec, root)]
['S2_E1_A1.mat', 'S2_E1_A2.mat', 'S2_E1_A3.mat']
>>> back = load_ninapro_db8(root, 2)
>>> back.modalities, back.sample_rate, sorted(set(back.extras["acquisition"].tolist()))
({'emg': 16}, 2000.0, [1, 2, 3])
>>> bool(np.array_equal(back.extras["glove"], rec.extras["glove"], equal_nan=True))
True
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import scipy.io

from emg_lens.data.formats._matlab import (
    as_labels,
    check_signal,
    common_length,
    concatenate_recordings,
    mat_files,
    read_mat,
    require,
)
from emg_lens.data.recording import Recording
from emg_lens.data.windows.downstream import (
    SPLIT_CODES,
    DownstreamPreprocess,
    DownstreamTask,
    downstream_reader,
    stack_windows,
    thesis_preprocess,
    window_starts,
)
from emg_lens.data.windows.store import RegressionBatch
from emg_lens.errors import DataFormatError, check_int, check_ints, warn_caller
from emg_lens.geometry import Montage, ring

SAMPLE_RATE = 2000.0
"""Hz, per the NinaPro DB8 documentation (the script's 1111 Hz is a known discrepancy)."""

CHANNELS = 16
"""EMG channels."""

GLOVE_CHANNELS = 18
"""CyberGlove II sensors."""

ACQUISITIONS: dict[int, str] = {1: "train", 2: "val", 3: "test"}
"""Acquisition ``A<k>`` -> its split."""

DOA_NAMES = ("thumb_rotation", "thumb_flexion", "index_flexion", "middle_flexion", "ring_little")
"""The 5 degrees of actuation, the rows of `DOA_MATRIX`."""

DOA_MATRIX = np.zeros((5, GLOVE_CHANNELS), np.float64)
"""5 x 18: DoA = DOA_MATRIX @ glove, rows `DOA_NAMES`: Krasoulis, Vijayakumar and Nazarpour (2019),
"Effect of user practice on prosthetic finger control with an intuitive myoelectric decoder",
Frontiers in Neuroscience 13:891, Supplementary Methods, Eqn. S2, as BioFoundation's script
transcribed it."""
for _doa, _weights in enumerate(
    (
        {0: 0.6390, 1: 0.3830, 3: -0.6390, 16: -0.1900},
        {2: 1.0},
        {4: 0.4000, 5: 0.6000},
        {6: 0.4000, 7: 0.6000},
        {9: 0.1667, 10: 0.3333, 12: 0.1667, 13: 0.3333},
    )
):
    for _sensor, _w in _weights.items():
        DOA_MATRIX[_doa, _sensor] = _w
DOA_MATRIX.setflags(write=False)

_FILE = re.compile(r"s0*(\d+)_e1_a([123])", re.IGNORECASE)
_LABELS = (("restimulus", "stimulus"), ("rerepetition", "repetition"))


def find_files(root: str | Path) -> dict[tuple[int, ...], Path]:
    """``{(subject, acquisition): path}`` of the ``S<N>_E1_A<k>.mat`` files under ``root`` at
    any depth; a missing folder, one without such files, or two copies of one file (e.g. in
    ``A_old/`` and in ``root``) is a `DataFormatError`, the last naming both."""
    what = "NinaPro DB8 subject {}, acquisition A{}"
    found = mat_files(root, _FILE, what, "NinaPro DB8 S<N>_E1_A<k>.mat")
    require(found, root, "no NinaPro DB8 files S<N>_E1_A<k>.mat (k = 1, 2, 3) found")
    return found


def find_subjects(root: str | Path) -> list[int]:
    """The subjects with at least one acquisition file under ``root``, sorted."""
    return sorted({s for s, _ in find_files(root)})


def acquisition_file(root: str | Path, subject: int, acquisition: int) -> Path:
    """The file of ``subject``'s acquisition ``A<acquisition>``; a missing one is a
    `DataFormatError` naming what was looked for."""
    path = find_files(root).get((int(subject), int(acquisition)))
    if path is None:
        raise DataFormatError(f"{root}: no NinaPro DB8 file S{subject}_E1_A{acquisition}.mat")
    return path


def _read_acquisition(path: Path, subject: int, acquisition: int) -> Recording:
    data = read_mat(path)
    for name, channels in (("emg", CHANNELS), ("glove", GLOVE_CHANNELS)):
        require(name in data, path, f"missing required variable {name!r}; it holds {sorted(data)}")
        check_signal(data[name], name, path, channels)
    labels = [
        next((as_labels(data[n], n, path) for n in names if n in data), None) for names in _LABELS
    ]
    lengths = {"emg": len(data["emg"]), "glove": len(data["glove"])}
    lengths.update({names[0]: len(x) for names, x in zip(_LABELS, labels) if x is not None})
    n = common_length(path, lengths)
    stimulus, repetition = (np.zeros(n, np.int64) if x is None else x[:n] for x in labels)
    return Recording(  # refuses NaN/Inf in emg, naming the file
        subject=int(subject),
        signals={"emg": np.asarray(data["emg"][:n], np.float32)},
        sample_rate=SAMPLE_RATE,
        stimulus=stimulus,
        repetition=repetition,
        source=str(path),
        extras={
            "glove": np.asarray(data["glove"][:n], np.float64),
            "acquisition": np.full(n, acquisition, np.int64),
        },
    )


def load_ninapro_db8(
    root: str | Path, subject: int, *, acquisitions: tuple[int, ...] = (1, 2, 3)
) -> Recording:
    """One DB8 subject's ``acquisitions`` joined in time (see the module docstring)."""
    subject = check_int(subject, "subject", minimum=1)
    check_ints(acquisitions, "acquisitions", 1, len(ACQUISITIONS))  # A1, A2, A3
    return concatenate_recordings(
        [_read_acquisition(acquisition_file(root, subject, a), subject, a) for a in acquisitions]
    )


def _acquisition_sources(recording: Recording) -> dict[int, str]:
    """Acquisition -> the file it came from (`load_ninapro_db8` joins them with `` + ``)."""
    found = {}
    for part in recording.source.split(" + "):
        m = _FILE.fullmatch(Path(part).stem)
        if m is not None:
            found[int(m.group(2))] = part
    return found


def db8_windows(recording: Recording, spec: DownstreamPreprocess) -> RegressionBatch:
    """``recording``'s regression windows (from `load_ninapro_db8`), per acquisition as the
    thesis does: ``targets [window, time, 5]`` the DoA at every sample, labels -1 and
    ``repetition`` the split code (A1 train, A2 val, A3 test).

    Samples whose glove holds NaN are dropped, as the script does; ``info["nan_glove"]``
    counts them per file (``{file: [dropped, samples]}``), and an acquisition left without a
    window is a warning naming the file and the counts."""
    emg, glove = recording.signals["emg"], recording.extras["glove"]
    acquisition = recording.extras["acquisition"]
    sources = _acquisition_sources(recording)
    xs, ys, codes = [], [], []
    nan_glove: dict[str, list[int]] = {}
    longest: dict[int, int] = {}  # split code -> usable samples of its longest acquisition
    step = check_int(spec.step, "DownstreamPreprocess.step of DB8 windows", minimum=1)
    for k in np.unique(acquisition):
        rows = np.flatnonzero(acquisition == k)
        total = len(rows)
        rows = rows[np.isfinite(glove[rows]).all(axis=1)]  # the glove's NaN samples go
        source = sources.get(int(k), f"{recording.source} (acquisition A{int(k)})")
        nan_glove[source] = [total - len(rows), total]
        code = SPLIT_CODES[ACQUISITIONS[int(k)]]
        longest[code] = max(longest.get(code, 0), len(rows))
        if len(rows) < spec.window:
            if len(rows) < total:  # the drop cost this acquisition its windows: say so
                warn_caller(
                    f"{source}: {total - len(rows)} of {total} samples have NaN in the glove "
                    f"and are dropped; the {len(rows)} left are shorter than a window "
                    f"({spec.window}): no window from this acquisition "
                    f"({ACQUISITIONS[int(k)]} split)"
                )
            continue
        x = thesis_preprocess(emg[rows], spec, f"{recording.source}: acquisition {int(k)}")
        doa = glove[rows] @ DOA_MATRIX.T
        for s in window_starts(len(rows), spec.window, step):
            xs.append(x[s : s + spec.window].T)
            ys.append(doa[s : s + spec.window])
            codes.append(SPLIT_CODES[ACQUISITIONS[int(k)]])
    n = len(xs)
    return RegressionBatch(
        x=stack_windows(xs, (CHANNELS, spec.window)),
        labels=np.full(n, -1, np.int64),
        repetition=np.asarray(codes, np.int64),
        subject=recording.subject,
        source=recording.source,
        targets=stack_windows(ys, (spec.window, 5)),
        info={"nan_glove": nan_glove, "longest": longest},
    )


def write_ninapro_db8(recording: Recording, root: str | Path) -> list[Path]:
    """Write ``recording`` as ``root/S<N>_E1_A<k>.mat``, one file per value of
    ``extras["acquisition"]`` (default: all A1), laid out like the real files: ``emg``,
    ``glove`` (``extras["glove"]``, NaN kept), ``stimulus``/``restimulus`` and
    ``repetition``/``rerepetition`` columns, ``subject`` and ``exercise``. Returns the paths."""
    acquisition = recording.extras.get("acquisition", np.ones(recording.n_samples, np.int64))
    glove = recording.extras.get("glove", np.zeros((recording.n_samples, GLOVE_CHANNELS)))
    Path(root).mkdir(parents=True, exist_ok=True)
    paths = []
    for k in np.unique(acquisition):
        rows = acquisition == k
        stimulus = np.asarray(recording.stimulus[rows], np.float64).reshape(-1, 1)
        repetition = np.asarray(recording.repetition[rows], np.float64).reshape(-1, 1)
        out = {
            "emg": np.asarray(recording.signals["emg"][rows], np.float64),
            "glove": np.asarray(glove[rows], np.float64),
            "stimulus": stimulus,
            "restimulus": stimulus,
            "repetition": repetition,
            "rerepetition": repetition,
            "subject": recording.subject,
            "exercise": 1,
        }
        path = Path(root) / f"S{recording.subject}_E1_A{int(k)}.mat"
        scipy.io.savemat(str(path), out, format="5", do_compression=False, oned_as="column")
        paths.append(path)
    return paths


MONTAGE = Montage(
    (
        ring("row 1 (columns 1-8)", 8),
        ring("row 2 (columns 9-16)", 8, radius=0.7).shifted(8),
    ),
    source="NinaPro DB8 (Krasoulis et al. 2019, Front. Neurosci. 13:891, "
    "doi:10.3389/fnins.2019.00891; ninapro.hevs.ch/instructions/DB8.html): 16 Delsys Trigno IM "
    "sensors in two rows of eight around the right forearm at the radio-humeral joint, no "
    "specific muscle targeted",
    convention="columns 1-8 the first (outer, proximal) ring and 9-16 the second, each from "
    "the dorsal midline toward the radial side: the page does not say which columns form "
    "which row, or where electrode 1 is",
)
"""Where DB8's channels lie."""


READER = downstream_reader(
    MONTAGE,
    DownstreamTask(
        task="regression",
        sample_rate=SAMPLE_RATE,
        n_channels=CHANNELS,
        windows=lambda recording, spec, options: db8_windows(recording, spec),
        split_rule="by acquisition: A1 train, A2 val, A3 test",
        target_names=DOA_NAMES,
        window=1000,  # 0.5 s at 2 kHz (BioFoundation's scripts/db8.py); every acquisition is longer
        step=500,
        unit="acquisition (NaN glove samples dropped)",
    ),
    subjects=find_subjects,
    files=lambda root, subject: [acquisition_file(root, subject, k) for k in ACQUISITIONS],
    read=load_ninapro_db8,
)
"""NinaPro DB8 for the registry (`emg_lens.data.registry`) and its TinyMyo downstream task."""
