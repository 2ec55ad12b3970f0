"""A researcher's own files: one file per trial, the labels in the file names.

`read_files` reads a folder (LibEMG's ``R_{rep}_C_{class}_EMG.csv``, ``s3/fist/trial2.npy``) by
a path template (`emg_lens.data.formats.file_pattern`), one file by
`emg_lens.data.formats.trial_matrix.read_trial`. The fields, numbering and refusals for users:
docs/guide/recordings.md, "Your own recordings". One `Recording` per subject: its trials in
(repetition, gesture) order with half a second of rest between two, so no window spans two
trials and a filter's response to one trial's end fades before the next.

>>> import tempfile
>>> root = Path(tempfile.mkdtemp())
>>> rng = np.random.default_rng(0)
>>> for rep in range(2):
...     for gesture in ("fist", "open"):
...         np.save(root / f"{gesture}_{rep}.npy", rng.standard_normal((400, 8)))
>>> (rec,) = read_files(root, "{gesture}_{repetition}.npy", sample_rate=200)
>>> rec.modalities, rec.gestures, rec.meta["gesture_names"]
({'emg': 8}, [1, 2], {1: 'fist', 2: 'open'})
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emg_lens._hints import checked
from emg_lens.data.files import files_under, unique_files
from emg_lens.data.formats._matlab import require
from emg_lens.data.formats.file_pattern import FilePattern
from emg_lens.data.formats.trial_matrix import CsvFormat, is_number, read_trial
from emg_lens.data.reader import DatasetReader
from emg_lens.data.recording import Recording
from emg_lens.errors import (
    ArgumentError,
    DataFormatError,
    check_choice,
    check_names,
    check_number,
    is_int,
)
from emg_lens.geometry import ORDERED_GRID_CODES, Montage, grid_code, ring

LABELS = ("subject", "session", "repetition", "gesture")
GAP_SECONDS = 0.5  # rest between two trials of one recording
UNMATCHED = ("error", "skip")


@dataclass(frozen=True)
class _Trial:
    path: Path
    fields: dict[str, str]


def _ordered(values: set[str]) -> list[str]:
    """Numbers in numeric order, anything else in text order."""
    numbers = all(is_number(v) for v in values)
    return sorted(values, key=(lambda v: (float(v), v)) if numbers else None)


def _find_trials(root: Path, patterns: list[FilePattern], unmatched: str) -> list[_Trial]:
    trials, left = [], []
    for path in files_under(root, {Path(p.text).suffix.lower() for p in patterns}):
        relative = path.relative_to(root).as_posix()
        found = [(p, m) for p in patterns if (m := p.match(relative)) is not None]
        if len(found) > 1:
            raise DataFormatError(
                f"{path}: matches two patterns, {found[0][0].text!r} and {found[1][0].text!r}; "
                "a trial must be read one way: make the patterns exclusive"
            )
        if found:
            trials.append(_Trial(path, found[0][1]))
        else:
            left.append(relative)
    first_name: dict[Path, Path] = {}
    for trial in trials:  # a file linked under a second name would be two trials
        other = first_name.setdefault(trial.path.resolve(), trial.path)
        if other != trial.path:
            raise DataFormatError(
                f"{trial.path} and {other} are one file by two names, read twice: remove the link"
            )
    if left and unmatched == "error":
        shown = ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "")
        raise DataFormatError(
            f"{root}: {len(left)} file(s) no pattern matches ({shown}): fix the names or the "
            "pattern, or pass unmatched='skip' (--unmatched skip) to leave them out"
        )
    if not trials:
        raise DataFormatError(
            f"{root}: no file matches {', '.join(repr(p.text) for p in patterns)} "
            "(paths are matched relative to the root, '/'-separated)"
        )
    return trials


def _subject_numbers(values: set[str]) -> dict[str, int]:
    """Subjects by number: their own when every name is a number >= 1 (``s3/`` is subject 3),
    else 1, 2, ... in name order. Two names of one number (``s01/`` and ``s1/``) are refused.

    >>> _subject_numbers({"01", "1"})
    Traceback (most recent call last):
    ...
    emg_lens.errors.DataFormatError: the subject names '01' and '1' are both subject 1; rename one folder or file so that each subject has one name
    """  # noqa: E501
    if all(re.fullmatch(r"\d+", v) and int(v) >= 1 for v in values):
        named: dict[int, str] = {}
        for v in sorted(values):
            if int(v) in named:
                raise DataFormatError(
                    f"the subject names {named[int(v)]!r} and {v!r} are both subject {int(v)}; "
                    "rename one folder or file so that each subject has one name"
                )
            named[int(v)] = v
        return {v: int(v) for v in values}
    return {v: i + 1 for i, v in enumerate(_ordered(values))}


@dataclass(frozen=True)
class TrialIndex:
    """The trials of a folder and their labels, numbered over the whole folder (so every
    subject's gesture 3 is the same gesture); no file is read but for its name.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("s1/fist_1.npy", "s1/open_1.npy", "s2/fist_1.npy"):
    ...     (root / name).parent.mkdir(exist_ok=True)
    ...     np.save(root / name, np.zeros((4, 2)))
    >>> index = TrialIndex.of(root, "s{subject}/{gesture}_{repetition}.npy")
    >>> index.subjects, index.gesture_names, [t.path.name for t in index.trials(2)]
    ([1, 2], {1: 'fist', 2: 'open'}, ['fist_1.npy'])
    """

    root: Path
    patterns: tuple[str, ...]
    by_subject: Mapping[int, tuple[tuple[int, int, _Trial], ...]]
    gestures: tuple[str, ...]
    repetitions: tuple[tuple[str, str], ...]  # (session or "", repetition), in label order
    subject_names: tuple[tuple[str, int], ...] = ()  # each subject's name and number

    @property
    def numbering(self) -> dict[str, list]:
        """How the folder numbers subjects, gestures and repetitions (each from every file's
        name): what a subject's labels mean, which another participant's files can change.

        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> for name in ("bob/fist_1.npy", "bob/open_2.npy"):
        ...     (root / name).parent.mkdir(exist_ok=True)
        ...     np.save(root / name, np.zeros((4, 2)))
        >>> TrialIndex.of(root, "{subject}/{gesture}_{repetition}.npy").numbering["gestures"]
        ['fist', 'open']
        """
        return {
            "subjects": [list(pair) for pair in self.subject_names],
            "gestures": list(self.gestures),
            "repetitions": [list(key) for key in self.repetitions],
        }

    @classmethod
    def of(
        cls, root: str | Path, pattern: str | Sequence[str], unmatched: str = "error"
    ) -> TrialIndex:
        root = Path(root)
        require(root.is_dir(), root, "no such folder (root of the trial files)")
        check_choice(unmatched, UNMATCHED, "unmatched")
        texts = (pattern,) if isinstance(pattern, str) else tuple(pattern)
        trials = _find_trials(root, [FilePattern.parse(t) for t in texts], unmatched)
        gestures = _ordered({t.fields["gesture"] for t in trials})
        keys = [(t.fields.get("session", ""), t.fields["repetition"]) for t in trials]
        sessions, reps = _ordered({s for s, _ in keys}), _ordered({r for _, r in keys})
        repetitions = sorted(set(keys), key=lambda k: (sessions.index(k[0]), reps.index(k[1])))
        subject_of = _subject_numbers({t.fields.get("subject", "1") for t in trials})
        by_subject: dict[int, list[tuple[int, int, _Trial]]] = {}
        for trial, key in zip(trials, keys):
            entry = (repetitions.index(key) + 1, gestures.index(trial.fields["gesture"]) + 1, trial)
            by_subject.setdefault(subject_of[trial.fields.get("subject", "1")], []).append(entry)
        index = cls(
            root,
            texts,
            {s: tuple(sorted(e, key=lambda x: x[:2])) for s, e in sorted(by_subject.items())},
            tuple(gestures),
            tuple(repetitions),
            tuple(sorted(subject_of.items(), key=lambda pair: pair[1])),
        )
        for subject, entries in index.by_subject.items():

            def what(k: tuple[int, int], subject: int = subject) -> str:
                session, rep = index.repetitions[k[0] - 1]
                repetition = (f"session {session!r}, " if session else "") + f"repetition {rep!r}"
                return f"subject {subject}, {repetition}, gesture {index.gestures[k[1] - 1]!r}"

            unique_files((((rep, g), t.path) for rep, g, t in entries), root, what)
        return index

    @property
    def subjects(self) -> list[int]:
        return list(self.by_subject)

    @property
    def gesture_names(self) -> dict[int, str]:
        """Gesture label (1, 2, ...) -> the value the file names hold."""
        return {i + 1: v for i, v in enumerate(self.gestures)}

    @property
    def repetition_values(self) -> dict[int, Any]:
        """Repetition label -> the value the names hold (with its session, when there are)."""
        return {
            i + 1: (r if not s else {"session": s, "repetition": r})
            for i, (s, r) in enumerate(self.repetitions)
        }

    def trials(self, subject: int) -> list[_Trial]:
        return [t for _, _, t in self._entries(subject)]

    def _entries(self, subject: int) -> tuple[tuple[int, int, _Trial], ...]:
        where, subjects = self.root, self.subjects
        require(subject in subjects, where, f"no subject {subject!r} of {subjects}", ArgumentError)
        return self.by_subject[subject]

    def read(
        self,
        subject: int,
        *,
        sample_rate: float,
        modality: str = "emg",
        channels: Sequence[int | str] | None = None,
        variable: str | None = None,
        placement: Any = None,
        csv_format: CsvFormat | None = None,
    ) -> Recording:
        """One subject's `Recording` (see `read_files`; ``csv_format``: how its CSV files are
        read)."""
        rate = _sample_rate(sample_rate)
        if not isinstance(modality, str) or not modality.isidentifier():
            raise ArgumentError(f"modality must be a name such as 'emg', got {modality!r}")
        meta = {
            "pattern": list(self.patterns),
            "gesture_names": self.gesture_names,
            "repetition_values": self.repetition_values,
            "placement": placement,
        }
        return _assemble(
            subject,
            self._entries(subject),
            rate,
            modality,
            channels,
            variable,
            csv_format or CsvFormat(),
            self.root,
            meta,
        )


@checked
def read_files(
    root: str | Path,
    pattern: str | Sequence[str],
    *,
    sample_rate: float,
    modality: str = "emg",
    channels: Sequence[int | str] | None = None,
    variable: str | None = None,
    placement: Any = None,
    unmatched: str = "error",
    header: bool | None = None,
    delimiter: str | None = None,
    decimal: str = ".",
) -> list[Recording]:
    """One `Recording` per subject from a folder of per-trial files (see the module docstring).

    Args:
        root: the folder; every file under it (at any depth) is matched against ``pattern``.
        pattern: a path template relative to ``root`` (or several, none matching a file twice).
        sample_rate: Hz, of every file.
        modality: what the channels are (``"emg"``, ``"acc"``, ``"eeg"``, ...): the signal's
            name in the recording, which decides its filters.
        channels: the columns to keep, by index (0-based) or by a CSV header's name; default all.
        variable: the variable of ``.mat`` files holding the signal.
        placement: where the channels lie (an `emg_lens.geometry.Montage`), kept for figures.
        unmatched: ``"error"`` (default): a file with the pattern's extension that the
            pattern does not match is an error; ``"skip"``: it is left out.
        header: whether a CSV's first line is a header (True) or a sample (False); None
            (default): a line of names is a header, and so is one of the channel numbers
            above samples written with decimals; a file that cannot tell is an error.
        delimiter: the character between a CSV's values; None (default): the most frequent
            of comma, semicolon and tab on its first line.
        decimal: a CSV's decimal mark, ``"."`` (default) or ``","`` (``1,5`` is 1.5). A file
            whose lines are each two comma-separated whole numbers is an error until
            ``decimal`` or ``delimiter`` says which it is.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for rep in (1, 2):
    ...     for g in (0, 1):
    ...         _ = (root / f"R_{rep}_C_{g}_EMG.csv").write_text("0.1,0.2\\n0.3,0.4\\n0.5,0.6\\n")
    >>> (rec,) = read_files(root, "R_{repetition}_C_{gesture}_EMG.csv", sample_rate=200)
    >>> rec.n_samples, sorted(set(rec.repetition.tolist())), rec.meta["gesture_names"]
    (312, [0, 1, 2], {1: '0', 2: '1'})
    """
    _sample_rate(sample_rate)  # a bad rate is named before the folder is searched
    csv_format = CsvFormat(header, delimiter, decimal)  # and so are the CSV options
    index = TrialIndex.of(root, pattern, unmatched)
    options = dict(
        modality=modality,
        channels=channels,
        variable=variable,
        placement=placement,
        csv_format=csv_format,
    )
    return [index.read(s, sample_rate=sample_rate, **options) for s in index.subjects]


def _sample_rate(value: Any) -> float:
    positive = "a positive number of Hz"
    return check_number(value, "sample_rate", positive, lambda v: math.isfinite(v) and v > 0)


def _columns(
    x: np.ndarray, names: tuple[str, ...] | None, channels: Sequence[int | str], path: Path
) -> list[int]:
    index = []
    header = f"its header names {list(names)}" if names else "the file has no header"
    for c in channels:
        if isinstance(c, str) and c in (names or ()):
            index.append((names or ()).index(c))
        elif is_int(c, 0, x.shape[1] - 1):
            index.append(int(c))
        else:
            raise DataFormatError(
                f"{path}: channel {c!r} is not a column index in 0..{x.shape[1] - 1} or a name "
                f"({header})"
            )
    return index


def _channel_names(
    header: tuple[str, ...] | None, index: list[int], modality: str
) -> tuple[str, ...]:
    """A header's names of the kept columns, or ``<modality><column>`` (1-based: emg1, emg2)."""
    return tuple(header[i] if header else f"{modality}{i + 1}" for i in index)


def _assemble(
    subject: int,
    entries: Sequence[tuple[int, int, _Trial]],
    rate: float,
    modality: str,
    channels: Sequence[int | str] | None,
    variable: str | None,
    csv_format: CsvFormat,
    root: Path,
    meta: Mapping[str, Any],
) -> Recording:
    if len({g for _, g, _ in entries}) < 2:
        (only,) = {t.fields["gesture"] for _, _, t in entries}
        raise DataFormatError(f"{root}: subject {subject} has one gesture only ({only!r}), not 2+")
    gap = max(1, round(GAP_SECONDS * rate))
    pieces, stimulus, repetition, table = [], [], [], []
    first: tuple[tuple[str, ...], Path] | None = None
    at = 0
    for rep, gesture, trial in entries:
        x, header = read_trial(trial.path, variable=variable, csv_format=csv_format)
        index = (
            list(range(x.shape[1]))
            if channels is None
            else _columns(x, header, channels, trial.path)
        )
        x, names = x[:, index], _channel_names(header, index, modality)
        if first is None:
            check_names(names, f"{trial.path}: channel")  # they name tokens on report pages
            first = (names, trial.path)
        elif names != first[0]:
            raise DataFormatError(
                f"{trial.path}: channels {list(names)}, but {first[1]} has {list(first[0])}; every "
                "trial must hold the same channels in the same order (choose them with channels=)"
            )
        n = len(x)
        pieces += [x, np.zeros((gap, x.shape[1]), np.float32)]
        stimulus += [np.full(n, gesture), np.zeros(gap)]
        repetition += [np.full(n, rep), np.zeros(gap)]
        table.append(
            {
                "file": trial.path.relative_to(root).as_posix(),
                "start": at,
                "stop": at + n,
                **trial.fields,
            }
        )
        at += n + gap
    assert first is not None  # entries hold trials of two gestures at least
    return Recording(
        subject=subject,
        signals={modality: np.concatenate(pieces[:-1])},
        sample_rate=rate,
        stimulus=np.concatenate(stimulus[:-1]).astype(np.int64),
        repetition=np.concatenate(repetition[:-1]).astype(np.int64),
        source=str(root),
        meta={**meta, "channel_names": list(first[0]), "trials": table},
    )


CSV_OPTIONS = ("header", "delimiter", "decimal")
"""The `CsvFormat` fields a ``files`` data source stores when given."""


def _csv_format(source: Mapping[str, Any]) -> CsvFormat:
    """How a ``files`` source's CSV files are read (its `CSV_OPTIONS`, checked)."""
    return CsvFormat(**{k: source[k] for k in CSV_OPTIONS if source.get(k) is not None})


FILE_OPTIONS = (
    "pattern",
    "sample_rate",
    "modality",
    "channels",
    "variable",
    "unmatched",
    "placement",
    *CSV_OPTIONS,
)
"""What a ``files`` data source stores beside its root (those of `CSV_OPTIONS` only where
given, so older sources keep their digest)."""

PREPROCESS = {"emg_band": None, "lowpass": None, "segment": "full"}
"""A researcher's own trials are windowed as they were recorded: no filter (an amplifier has
filtered them, and a band that fits one sample rate does not fit another: set ``emg_band`` for
yours), and every window of the whole trial, since the trial is the movement."""


def file_source_fields(options: Mapping[str, Any]) -> dict[str, Any]:
    """The ``files`` source's keys from `data_source`'s options, checked now (a bad pattern
    or sample rate is named before any training starts).

    >>> file_source_fields({"pattern": "{gesture}_{repetition}.csv", "sample_rate": 200})
    ... # doctest: +NORMALIZE_WHITESPACE
    {'pattern': ['{gesture}_{repetition}.csv'], 'sample_rate': 200.0, 'modality': 'emg',
     'channels': None, 'variable': None, 'unmatched': 'error', 'placement': None}
    """
    if options.get("pattern") is None or options.get("sample_rate") is None:
        example = "'R_{repetition}_C_{gesture}_EMG.csv'"
        raise ArgumentError(
            f"dataset 'files' needs --pattern (such as {example}) and --sample-rate"
        )
    pattern = options["pattern"]
    texts = [pattern] if isinstance(pattern, str) else list(pattern)
    for text in texts:
        FilePattern.parse(text)
    modality = options.get("modality") or "emg"
    if not isinstance(modality, str) or not modality.isidentifier():
        raise ArgumentError(f"modality must be a name such as 'emg', got {modality!r}")
    unmatched = check_choice(options.get("unmatched") or "error", UNMATCHED, "unmatched")
    channels = options.get("channels")
    placement = options.get("placement")
    if placement is not None:  # a ring around the forearm, or an OT Bioelettronica grid code
        check_choice(placement, PLACEMENTS, "placement")
    csv_format = _csv_format(options)
    return {
        "pattern": texts,
        "sample_rate": _sample_rate(options["sample_rate"]),
        "modality": modality,
        "channels": None if channels is None else list(channels),
        "variable": options.get("variable"),
        "unmatched": unmatched,
        "placement": placement,
        **{k: getattr(csv_format, k) for k in CSV_OPTIONS if options.get(k) is not None},
    }


def _index(source: Mapping[str, Any]) -> TrialIndex:
    return TrialIndex.of(source["root"], source["pattern"], source.get("unmatched", "error"))


def _read(source: Mapping[str, Any], subject: int) -> Recording:
    return _index(source).read(
        subject,
        sample_rate=source["sample_rate"],
        modality=source.get("modality", "emg"),
        channels=source.get("channels"),
        variable=source.get("variable"),
        csv_format=_csv_format(source),
    )


PLACEMENTS = ("ring", *ORDERED_GRID_CODES)
"""Where your files' channels may lie, for figures: ``"ring"``, electrodes equally spaced around
the forearm in channel order (an armband such as the Myo), or a grid code whose channel order
openhdemg gives (`emg_lens.geometry.grid_code`, that order at 180 degrees)."""


def _geometry(source: Mapping[str, Any]) -> dict[str, Montage]:
    placement = source.get("placement")
    if placement is None:
        return {}
    index = _index(source)
    first = index.trials(index.subjects[0])[0]
    x, _ = read_trial(first.path, variable=source.get("variable"), csv_format=_csv_format(source))
    channels = source.get("channels")
    n = x.shape[1] if channels is None else len(channels)
    modality = source.get("modality", "emg")
    if placement == "ring":
        part = ring("armband", n)
        montage = Montage(
            (part,),
            source="your files, with --placement ring: electrodes equally spaced around the "
            "forearm",
            convention="channel 1 on the dorsal midline, the channels numbered toward the radial "
            "side: the files record neither the anchor nor the direction",
        )
    else:
        montage = Montage(
            (grid_code(placement),),
            source=f"your files, with --placement {placement}: {OTB_GRIDS}",
            convention="the grid's orientation (180 degrees, openhdemg's default)",
        )
    return {modality: montage}


OTB_GRIDS = "OT Bioelettronica's channel map as openhdemg orders it"


READER = DatasetReader(
    montage=lambda source: {source.get("modality", "emg"): None},
    subjects=lambda source: _index(source).subjects,
    files=lambda source, subject: [t.path for t in _index(source).trials(subject)],
    numbering=lambda source: _index(source).numbering,
    read=_read,
    preprocess=PREPROCESS,
    source_fields=file_source_fields,
    gesture_names=lambda source: _index(source).gesture_names,
    geometry=_geometry,
)
