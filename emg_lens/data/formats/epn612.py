"""EMG-EPN-612 (JSON): reader, the thesis's windows, and a writer of the same layout.

Layout and labels for users: docs/guide/tinymyo.md, "Downstream datasets". Each user's JSON holds
``trainingSamples`` and ``testingSamples``: samples of eight int8 channel lists ``ch1``..``ch8``
and a ``gestureName`` of `GESTURES` (withheld in the testing group's ``testingSamples``), each a
5-s repetition (zenodo.org/records/4421500). ``testingJSON/user<N>`` is subject 1000 + N
(`TESTING_OFFSET`), so a subject's number does not depend on which folders are present.

`load_epn612` joins a user's labelled samples in file order into one `Recording` (``emg`` / 128,
``repetition`` the sample's number, ``extras["part"]``); `epn612_windows` is the thesis's
preprocessing (BioFoundation's ``scripts/epn.py``), each sample padded or cropped to one window,
split by the dataset's user split as that script does.

>>> import tempfile
>>> from emg_lens.data import synthetic_epn612
>>> root = Path(tempfile.mkdtemp())
>>> recordings = synthetic_epn612(n_subjects=2, per_gesture=2, trial_seconds=0.5)
>>> [write_epn612(r, root).relative_to(root).as_posix() for r in recordings]
['trainingJSON/user1/user1.json', 'testingJSON/user1/user1.json']
>>> back = load_epn612(root, 1001)
>>> back.subject, back.sample_rate, back.modalities, back.gestures
(1001, 200.0, {'emg': 8}, [1, 2, 3, 4, 5])
>>> bool(np.array_equal(back.signals["emg"], recordings[1].signals["emg"]))
True
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from emg_lens.data.files import find_files
from emg_lens.data.formats._matlab import require
from emg_lens.data.recording import Recording
from emg_lens.data.windows.downstream import (
    SPLIT_CODES,
    DownstreamPreprocess,
    DownstreamTask,
    downstream_reader,
    pad_or_crop,
    stack_windows,
    thesis_preprocess,
)
from emg_lens.data.windows.pipeline import WindowBatch
from emg_lens.errors import DataFormatError, check_choice, check_int
from emg_lens.geometry import Montage, ring

SAMPLE_RATE = 200.0
"""Hz: the Myo armband's EMG rate."""

CHANNELS = 8
"""EMG channels, ``ch1``..``ch8``."""

INT8_SCALE = 128.0
"""The JSON holds int8 units; divided by this (as the thesis's script does)."""

GESTURES = ("noGesture", "waveIn", "waveOut", "pinch", "open", "fist")
"""``gestureName`` values; a sample's class is its index (``noGesture`` = 0, rest)."""

GROUPS = {"training": "trainingJSON", "testing": "testingJSON"}
"""The dataset's two user groups and their folders."""

PARTS = ("trainingSamples", "testingSamples")
"""The two sample dicts of every user file; ``extras["part"]`` is an index into this."""

TESTING_OFFSET = 1000
"""``testingJSON/user<N>`` is subject ``TESTING_OFFSET + N``."""

CALIBRATION = 10
"""Testing users: samples per gesture (the first, in file order) that train; the rest test."""

_USER = re.compile(r"user(\d+)")


def _group(subject: int) -> tuple[str, int]:
    """Subject number -> (group folder, user number)."""
    subject = check_int(subject, "subject", minimum=1)
    if subject > TESTING_OFFSET:
        return GROUPS["testing"], subject - TESTING_OFFSET
    return GROUPS["training"], subject


def user_file(root: str | Path, subject: int) -> Path:
    """``<root>/trainingJSON/user<N>/user<N>.json`` (subject N) or
    ``<root>/testingJSON/user<N>/user<N>.json`` (subject 1000 + N).

    >>> user_file("/data/epn", 1002).as_posix()
    '/data/epn/testingJSON/user2/user2.json'
    """
    folder, user = _group(subject)
    return Path(root) / folder / f"user{user}" / f"user{user}.json"


def find_users(root: str | Path) -> list[int]:
    """The subjects whose user file exists under ``root`` (sorted; testing users 1000 + N).
    A missing ``root``, or one holding no user file, is a `DataFormatError` naming it."""
    root = Path(root)
    require(root.is_dir(), root, "no such folder (looking for EPN-612's trainingJSON/)")
    found: list[int] = []
    for offset, folder in ((0, GROUPS["training"]), (TESTING_OFFSET, GROUPS["testing"])):
        if not (root / folder).is_dir():
            continue

        def key(path: Path, offset: int = offset) -> int | None:
            m = _USER.fullmatch(path.name)
            user = path / f"{path.name}.json"
            return offset + int(m.group(1)) if m and user.is_file() else None

        # user1/ and user01/ would be two files of one user: refused, naming both
        what = "EPN-612 subject {}".format
        found += find_files(
            root / folder, key, what, looking_for=folder, recursive=False, folders=True
        )
    require(found, root, "no EPN-612 user files (trainingJSON/user<N>/user<N>.json)")
    return sorted(found)


def _read_json(path: Path) -> dict[str, Any]:
    require(path.is_file(), path, "no such EPN-612 user file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{path}: not valid JSON (truncated or corrupt?): {exc}") from exc
    require(isinstance(data, dict), path, f"expected a JSON object, got {type(data).__name__}")
    return data


def _sample_emg(sample: Any, path: Path, where: str) -> np.ndarray:
    """One sample's ``emg`` as float32 ``[time, 8]`` in int8 units / 128."""
    emg = sample.get("emg") if isinstance(sample, dict) else None
    if not isinstance(emg, dict):
        raise DataFormatError(f"{path}: {where} has no 'emg' dict of channels ch1..ch{CHANNELS}")
    names = [f"ch{c}" for c in range(1, CHANNELS + 1)]
    if sorted(emg) != sorted(names):
        raise DataFormatError(
            f"{path}: {where}: 'emg' has the wrong channels: expected {CHANNELS}, got {sorted(emg)}"
        )
    try:
        columns = [np.asarray(emg[n], dtype=np.float64) for n in names]
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"{path}: {where}: 'emg' holds non-numbers: {exc}") from exc
    lengths = {len(c) if c.ndim == 1 else -1 for c in columns}
    if len(lengths) != 1 or -1 in lengths or 0 in lengths:
        shapes = [c.shape for c in columns]
        raise DataFormatError(f"{path}: {where}: 'emg' channels of shapes {shapes}, not one length")
    x = np.stack(columns, axis=1)
    require(np.isfinite(x).all(), path, f"{where}: 'emg' holds {(~np.isfinite(x)).sum()} NaN/Inf")
    return (x / INT8_SCALE).astype(np.float32)


def load_epn612(root: str | Path, subject: int) -> Recording:
    """One EPN-612 user's labelled samples as a `Recording` (see the module docstring).

    Raises `DataFormatError` naming the file for a missing or unreadable file, a missing
    ``trainingSamples``/``testingSamples`` or ``emg``, a wrong channel set, channels of
    different lengths, non-numbers or NaN, an unknown ``gestureName``, or no labelled sample."""
    path = user_file(root, subject)
    data = _read_json(path)
    signals, stimulus, repetition, part = [], [], [], []
    skipped = 0
    for p, name in enumerate(PARTS):
        samples = data.get(name)
        if not isinstance(samples, dict):
            raise DataFormatError(f"{path}: missing '{name}' (samples); it holds {sorted(data)}")
        for key, sample in samples.items():
            gesture = sample.get("gestureName") if isinstance(sample, dict) else None
            if gesture is None:  # withheld label (testing users' testingSamples): counted
                skipped += 1
                continue
            check_choice(gesture, GESTURES, f"{path}: {name}.{key}.gestureName", DataFormatError)
            emg = _sample_emg(sample, path, f"{name}.{key}")
            signals.append(emg)
            n = len(emg)
            stimulus.append(np.full(n, GESTURES.index(gesture), np.int64))
            repetition.append(np.full(n, len(signals), np.int64))
            part.append(np.full(n, p, np.int64))
    require(signals, path, f"no labelled sample (every one of {skipped} lacks gestureName)")
    return Recording(
        subject=int(subject),
        signals={"emg": np.concatenate(signals)},
        sample_rate=SAMPLE_RATE,
        stimulus=np.concatenate(stimulus),
        repetition=np.concatenate(repetition),
        source=str(path),
        extras={"part": np.concatenate(part), "skipped_unlabelled": np.asarray(skipped)},
    )


def _trial_split(testing_user: bool, part: int, seen: int, calibration: int) -> int | None:
    """The split code of a sample, or None for one the protocol leaves out."""
    if not testing_user:
        return SPLIT_CODES["train"] if part == 0 else SPLIT_CODES["val"]
    if part == 1:  # testing users' testingSamples: unlabelled in the dataset; unused
        return None
    return SPLIT_CODES["train"] if seen < calibration else SPLIT_CODES["test"]


def epn612_windows(
    recording: Recording, spec: DownstreamPreprocess, *, calibration: int = CALIBRATION
) -> WindowBatch:
    """One window per sample of ``recording`` (from `load_epn612`), preprocessed as the
    thesis does; labels are the gesture indices, ``repetition`` the split code
    (`emg_lens.data.windows.downstream.SPLIT_CODES`)."""
    calibration = check_int(calibration, "calibration")
    testing_user = recording.subject > TESTING_OFFSET
    emg, part = recording.signals["emg"], recording.extras["part"]
    seen: dict[int, int] = {}
    longest: dict[int, int] = {}  # split code -> longest trial (each is padded to a window)
    xs, labels, codes = [], [], []
    for trial in np.unique(recording.repetition):
        rows = np.flatnonzero(recording.repetition == trial)
        label = int(recording.stimulus[rows[0]])
        code = _trial_split(testing_user, int(part[rows[0]]), seen.get(label, 0), calibration)
        if int(part[rows[0]]) == 0:
            seen[label] = seen.get(label, 0) + 1
        if code is None:
            continue
        longest[code] = max(longest.get(code, 0), len(rows))
        where = f"{recording.source}: sample {int(trial)}"
        x = thesis_preprocess(emg[rows], spec, where)
        xs.append(pad_or_crop(x, spec.window).T)
        labels.append(label)
        codes.append(code)
    return WindowBatch(
        x=stack_windows(xs, (CHANNELS, spec.window)),
        labels=np.asarray(labels, np.int64),
        repetition=np.asarray(codes, np.int64),
        subject=recording.subject,
        source=recording.source,
        info={
            "skipped_unlabelled": int(recording.extras.get("skipped_unlabelled", 0)),
            "longest": longest,
        },
    )


def write_epn612(recording: Recording, root: str | Path, *, unlabelled: int = 0) -> Path:
    """Write ``recording`` (laid out as `load_epn612` returns one) as its user's JSON file.

    Each sample (a run of one ``repetition``) goes to ``trainingSamples`` or
    ``testingSamples`` by ``extras["part"]``, its ``emg`` back in int8 units; ``unlabelled``
    samples without ``gestureName`` are appended to ``testingSamples``, as the testing group's
    files hold. Nothing is validated, so tests can write bad files. Returns the path."""
    path = user_file(root, recording.subject)
    parts: dict[str, dict[str, Any]] = {name: {} for name in PARTS}
    emg = np.rint(np.asarray(recording.signals["emg"]) * INT8_SCALE).astype(int)
    part = recording.extras.get("part", np.zeros(recording.n_samples, np.int64))
    first = None
    for trial in np.unique(recording.repetition):
        rows = np.flatnonzero(recording.repetition == trial)
        channels = {f"ch{c + 1}": emg[rows, c].tolist() for c in range(emg.shape[1])}
        first = first or channels
        samples = parts[PARTS[int(part[rows[0]])]]
        gesture = GESTURES[int(recording.stimulus[rows[0]])]
        samples[f"idx_{len(samples) + 1}"] = {"emg": channels, "gestureName": gesture}
    for _ in range(unlabelled):
        samples = parts["testingSamples"]
        samples[f"idx_{len(samples) + 1}"] = {"emg": first}
    folder, user = _group(recording.subject)
    document = {
        "generalInfo": {"samplingFrequencyInHertz": SAMPLE_RATE, "deviceModel": "Myo Armband"},
        "userInfo": {"name": f"user{user}", "group": folder},
        **parts,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


MONTAGE = Montage(
    (ring("Myo armband", CHANNELS, first=180.0 - 3 * 45.0),),
    source="the EPN lab's protocol (Barona López et al. 2020, Sensors 20:6327, "
    "doi:10.3390/s20216327; EMG-EPN-612, zenodo.org/records/4421500): a Myo armband, 8 "
    "channels equally spaced around the forearm, worn so that pod 4 is parallel to the palm",
    convention="channel k is pod k, the pods numbered toward the radial side of the right "
    "forearm, pod 4 on the volar midline (the side the palm faces); the direction of "
    "numbering depends on how the band is worn, which the files do not record",
)
"""Where EPN-612's channels lie."""


READER = downstream_reader(
    MONTAGE,
    DownstreamTask(
        task="classification",
        sample_rate=SAMPLE_RATE,
        n_channels=CHANNELS,
        windows=lambda recording, spec, options: epn612_windows(recording, spec, **options),
        split_rule="training users: trainingSamples train, testingSamples val; testing users: "
        "the first `calibration` (10) trainingSamples of each gesture train, the rest test",
        classes=GESTURES,
        options=("calibration",),
        # one 5 s sample at 200 Hz padded or cropped to one window, as the thesis's script does
        window=1000,
        step=None,
        unit="sample",
    ),
    subjects=find_users,
    files=lambda root, subject: [user_file(root, subject)],
    read=load_epn612,
)
"""EMG-EPN-612 for the registry (`emg_lens.data.registry`) and its TinyMyo downstream task."""
