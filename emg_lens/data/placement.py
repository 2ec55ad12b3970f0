"""Did the electrodes move? A label-free check of each held-out repetition's placement, and the
channels put back before preprocessing.

Each held-out repetition's channel correlations are matched against the training repetitions'
under each symmetry of the placement (`emg_lens.geometry.symmetry.montage_maps`) and two cables
swapped (`cable_swaps`); `emg_lens.data.placement_evidence` decides. Only a named move is
realigned, on the raw channels before preprocessing, so each channel's scale travels with its
electrode. The method, as users see it: docs/guide/recordings.md, "Your own recordings"; its
measured rates: docs/DESIGN.md §16.

>>> import numpy as np
>>> from emg_lens.data import Recording
>>> from emg_lens.geometry import Montage, ring
>>> rng = np.random.default_rng(0)
>>> gains = rng.uniform(0.2, 2.0, (4, 6))  # 4 gestures, each its own pattern on 6 electrodes
>>> x = np.concatenate([rng.standard_normal((400, 6)) * gains[g] for r in range(3)
...                     for g in range(4)]).astype(np.float32)
>>> repetition = np.repeat([1, 2, 3], 1600)
>>> x[repetition == 3] = np.roll(x[repetition == 3], 2, axis=1)  # worn turned by 2
>>> rec = Recording(1, {"emg": x}, 100.0, np.tile(np.repeat([1, 2, 3, 4], 400), 3), repetition)
>>> (check,) = check_recording(rec, {"emg": Montage((ring("band", 6),))}, (1, 2), (3,))
>>> check.best.name, round(check.score, 2), check.decision
('rotation by 2', 0.97, 'moved')
>>> back = realign_recording(rec, [check]).signals["emg"]
>>> bool(np.array_equal(back[repetition == 3], np.roll(x[repetition == 3], -2, axis=1)))
True
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from emg_lens.data.datasets import load_recording, montages_of, preprocess_spec
from emg_lens.data.placement_evidence import TrialSums, check_signal, weigh
from emg_lens.data.preprocess import SubjectData, prepare_subject
from emg_lens.data.recording import Recording
from emg_lens.errors import ArgumentError, DataFormatError, EmgLensError, check_choice, checked
from emg_lens.geometry import Montage
from emg_lens.geometry.symmetry import ChannelMap, has_symmetry, montage_maps

ALL_CHANNELS = "all channels"
"""The modality a check over a `SubjectData`'s own windows names: every channel of them."""


NO_PLACEMENT = (
    "a placement check needs the channels' placement on the body with a symmetry: a ring "
    "(--placement ring for your files; EPN-612, UCI, NinaPro DB5 and DB8), a grid (an OT "
    "Bioelettronica grid code; HD-sEMG) or 10-20 scalp names with both sides (synthetic-eeg; "
    "an mne.Epochs with a montage); NinaPro DB2's electrodes are placed as free points, which "
    "have none"
)


@dataclass(frozen=True)
class PlacementCheck:
    """The placement check of one held-out repetition of one modality: the ``best``-scoring map
    and its ``score``, the identity's, the repetition's number and its name in the data
    (``label``: LibEMG's ``"3"`` for R_3), every map's score, and the evidence
    (`emg_lens.data.placement_evidence.Evidence`: ``decision``, ``reason``, ``p``, the
    runner-up's, ``null_identity``, ``dead_channels``). Only a ``"moved"`` repetition is
    realigned."""

    modality: str
    repetition: int
    label: str
    best: ChannelMap
    score: float
    identity_score: float
    scores: tuple[tuple[str, float], ...]
    decision: str = "no move"
    reason: str = ""
    p: float = float("nan")
    runner_up: str = ""
    p_runner_up: float = float("nan")
    null_identity: tuple[float, ...] = ()
    dead_channels: tuple[tuple[int, str], ...] = ()

    @property
    def moved(self) -> bool:
        """Whether the evidence names a move (``decision``): what ``--realign`` acts on."""
        return self.decision == "moved"

    def describe(self) -> str:
        """One line: which repetition, the decision and why.

        >>> from emg_lens.geometry import ChannelMap
        >>> PlacementCheck("emg", 4, "3", ChannelMap("rotation by 1", (1, 2, 0)), 0.9, 0.2,
        ...                (), "moved", "rotation by 1 (r 0.90; identity 0.20)").describe()
        "emg, held-out repetition 4 ('3'): moved: rotation by 1 (r 0.90; identity 0.20)"
        """
        label = "" if self.label == str(self.repetition) else f" ({self.label!r})"
        where = f"{self.modality}, held-out repetition {self.repetition}{label}"
        return f"{where}: {self.decision}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: what a checkpoint's metadata and a summary record (NaN as None)."""

        def number(x: float) -> float | None:
            return None if not np.isfinite(x) else float(x)

        return {
            "modality": self.modality,
            "repetition": self.repetition,
            "label": self.label,
            "best": self.best.name,
            "moved_to": list(self.best.moved_to),
            "score": number(self.score),
            "identity_score": number(self.identity_score),
            "moved": self.moved,
            "decision": self.decision,
            "reason": self.reason,
            "p": number(self.p),
            "runner_up": self.runner_up,
            "p_runner_up": number(self.p_runner_up),
            "null_identity": [number(x) for x in self.null_identity],
            "dead_channels": [{"channel": c + 1, "why": why} for c, why in self.dead_channels],
            "description": self.describe(),
        }


def _placement_check(
    repetitions: Sequence[
        tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]
    ],
    maps: list[ChannelMap],
    modality: str,
    repetition: int,
    label: str,
    training: list[str],
    window: int | None = None,
) -> PlacementCheck:
    """The check of the last of ``repetitions`` (``(raw signal, gesture per sample)``, or
    ``window``-long windows joined) against the others, the training ones (named ``training``);
    where no map beats the identity, the `cable_swaps` too."""
    sums = TrialSums.from_repetitions(repetitions, window)
    evidence = weigh(sums, [m.moved_to for m in maps], [m.name for m in maps], training)
    if evidence.decision == "no move":
        swaps = [maps[0], *cable_swaps(len(maps[0].moved_to), maps)]
        swapped = weigh(sums, [m.moved_to for m in swaps], [m.name for m in swaps], training)
        if swapped.decision == "moved":
            maps, evidence = swaps, replace(
                swapped, decision="cannot tell", reason="the repetition differs from the "
                f"training ones as a cable swap would, which no map of the placement restores: "
                f"{swapped.reason}; not realigned (a cable swap is no move of the placement: "
                "check the cables)",
            )  # fmt: skip
    scores = evidence.scores
    return PlacementCheck(
        modality=modality,
        repetition=int(repetition),
        label=label,
        best=maps[evidence.best],
        score=float(scores[evidence.best]),
        identity_score=float(scores[0]),
        scores=tuple((m.name, float(s)) for m, s in zip(maps, scores)),
        decision=evidence.decision,
        reason=evidence.reason,
        p=evidence.p,
        runner_up="" if evidence.runner_up is None else maps[evidence.runner_up].name,
        p_runner_up=evidence.p_runner_up,
        null_identity=evidence.null_identity,
        dead_channels=tuple(evidence.dead.items()),
    )


def cable_swaps(n: int, symmetries: Sequence[ChannelMap] = ()) -> list[ChannelMap]:
    """Two cables swapped: channels i and i + 1 exchanged, no symmetry (none of ``symmetries``).

    >>> [(m.name, m.moved_to) for m in cable_swaps(3)][0]
    ('channels 1 ↔ 2 exchanged (a cable swap)', (1, 0, 2))
    """
    known = {m.moved_to for m in symmetries}
    swaps = [(i, (*range(i), i + 1, i, *range(i + 2, n))) for i in range(n - 1)]
    return [ChannelMap(f"channels {i + 1} ↔ {i + 2} exchanged (a cable swap)", t)
            for i, t in swaps if t not in known]  # fmt: skip


def _maps(montage: Montage, n_channels: int, what: str) -> list[ChannelMap]:
    if montage.n_channels != n_channels:
        raise ArgumentError(
            f"{what} has {n_channels} channels but its placement places {montage.n_channels}"
        )
    return montage_maps(montage)


def placements_of(source: Mapping[str, Any]) -> dict[str, Montage]:
    """The montages of a data source (`emg_lens.data.datasets.montages_of`) that have a
    symmetry to check: a ring, a grid or a two-sided scalp; none for a source without.

    >>> sorted(placements_of({"dataset": "synthetic-eeg", "synthetic_eeg": {}}))
    ['eeg']
    >>> placements_of({"dataset": "synthetic", "synthetic": {}})  # DB2's points: none
    {}
    """
    return {m: montage for m, montage in montages_of(dict(source)).items() if has_symmetry(montage)}


def has_placement(source: Mapping[str, Any] | None = None, data: SubjectData | None = None) -> bool:
    """Whether the placement check applies to these data: the subject's own placed windows
    (``meta["placement"]``, a montage with a symmetry) or its data source's montages.

    >>> has_placement({"dataset": "synthetic-eeg", "synthetic_eeg": {}})
    True
    >>> has_placement({"dataset": "synthetic", "synthetic": {}})  # DB2's points: no symmetry
    False
    """
    if data is not None and has_symmetry(data.meta.get("placement")):
        return True
    if not isinstance(source, Mapping):
        return False
    try:
        return bool(placements_of(source))
    except EmgLensError:  # a source the registry cannot read: nothing to check
        return False


def check_recording(
    recording: Recording,
    placements: Mapping[str, Montage],
    train_repetitions: Sequence[int],
    test_repetitions: Sequence[int],
) -> list[PlacementCheck]:
    """The placement check of each test repetition of each modality ``placements`` places, on
    the recording's raw signals (a repetition's samples with a gesture), against its training
    repetitions. A modality the recording lacks, a montage whose channel count differs, a
    repetition without samples are `EmgLensError`\\ s naming them."""
    if not placements:
        raise ArgumentError(f"{recording.source}: no placement given; {NO_PLACEMENT}")
    active = recording.stimulus != 0
    repetitions = {r: active & (recording.repetition == r) for r in (*train_repetitions,
                                                                    *test_repetitions)}  # fmt: skip
    if empty := [r for r, rows in repetitions.items() if not rows.any()]:
        present = sorted(set(recording.repetition[active].tolist()))
        raise DataFormatError(
            f"{recording.source}: repetitions {empty} hold no sample of a gesture; it has {present}"
        )
    labels = recording.meta.get("repetition_values") or {}
    checks = []
    for modality, montage in placements.items():
        check_choice(modality, sorted(recording.signals), f"{recording.source}: modality")
        x = recording.signals[modality]
        maps = _maps(montage, x.shape[1], f"{recording.source}: {modality!r}")

        train = [_samples(recording, modality, repetitions[r], r) for r in train_repetitions]
        named = [_named(r, labels) for r in train_repetitions]
        for r in test_repetitions:
            label = _label(r, labels)
            held = _samples(recording, modality, repetitions[r], r)
            checks.append(_placement_check([*train, held], maps, modality, r, label, named))
    return checks


def _samples(
    recording: Recording, modality: str, rows: np.ndarray, repetition: int
) -> tuple[np.ndarray, np.ndarray]:
    """A repetition's raw samples of one modality and their gestures."""
    x = recording.signals[modality][rows]
    check_signal(x, f"{recording.source}: {modality!r}, repetition {repetition}")
    return x, recording.stimulus[rows]


def _named(repetition: int, labels: Mapping) -> str:
    """A repetition as the reasons name it: its number, and its name where the data give one."""
    label = _label(repetition, labels)
    return str(repetition) if label == str(repetition) else f"{repetition} ({label!r})"


def _label(repetition: int, labels: Mapping) -> str:
    value = labels.get(repetition, labels.get(str(repetition), repetition))
    if isinstance(value, Mapping):  # a repetition of a session
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


@checked
def realign_recording(recording: Recording, checks: Sequence[PlacementCheck]) -> Recording:
    """The recording with each repetition the checks name ``"moved"`` put back by its map
    (channel j read from channel ``moved_to[j]``) in the raw signals; every other sample as it
    is. ``meta["realigned"]`` lists what was moved."""
    signals = {name: x.copy() for name, x in recording.signals.items()}
    done = []
    for check in checks:
        x, n = signals.get(check.modality), len(check.best.moved_to)
        if x is None or n != x.shape[1]:
            channels = {name: x.shape[1] for name, x in signals.items()}
            raise ArgumentError(
                f"{recording.source}: the check of {check.modality!r} maps {n} channels; the "
                f"recording's are {channels}"
            )
        if check.moved:
            rows = recording.repetition == check.repetition
            x[rows] = x[rows][:, list(check.best.moved_to)]
            done.append({"modality": check.modality, "repetition": check.repetition,
                         "map": check.best.name})  # fmt: skip
    meta = {**recording.meta, "realigned": done}
    return replace(recording, signals=signals, meta=meta)


@checked
def check_subject(
    data: SubjectData, source: Mapping[str, Any] | None = None
) -> list[PlacementCheck]:
    """The placement check of a subject's held-out repetitions, on raw channels:

    - with ``source`` (what a checkpoint stores): the subject's recording is read again and
      checked (`check_recording`), since a `SubjectData` of a recording holds standardised
      windows, which the check must not read;
    - without: the subject's own windows when they are raw and placed (``meta["placement"]``),
      joined per repetition, every channel at once (modality ``"all channels"``).

    >>> from emg_lens.data import SyntheticSpec, generate_recordings
    >>> from emg_lens.data import PreprocessSpec
    >>> data = prepare_subject(generate_recordings(SyntheticSpec(1, movement_seconds=0.5))[0],
    ...                        PreprocessSpec(segment="transient", step=None))
    >>> check_subject(data)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: subject 1's windows are preprocessed: the check reads raw ...
    """
    if source is not None:
        placements = placements_of(source)
        if not placements:
            raise ArgumentError(
                f"data source {source.get('dataset')!r} places no channels on a ring, grid or "
                f"scalp; {NO_PLACEMENT}"
            )
        spec = preprocess_spec(source["preprocess"])
        recording = load_recording(dict(source), data.subject)
        return check_recording(recording, placements, spec.train_repetitions, spec.test_repetitions)
    _refuse_preprocessed(data, "the check reads raw channels")
    montage = data.meta.get("placement")
    if not isinstance(montage, Montage):
        raise ArgumentError(f"subject {data.subject} has no placement in meta; {NO_PLACEMENT}")
    maps = _maps(montage, data.X_train.shape[1], f"subject {data.subject}'s windows")
    train = [_joined(data.X_train, data.y_train, data.train_trials, data.rep_train == r)
             for r in np.unique(data.rep_train)]  # fmt: skip
    named = [str(r) for r in np.unique(data.rep_train).tolist()]
    return [
        _placement_check([*train, _joined(data.X_test, data.y_test, data.test_trials,
                                          data.rep_test == r)],
               maps, ALL_CHANNELS, r, str(r), named, data.X_test.shape[2])
        for r in np.unique(data.rep_test).tolist()
    ]  # fmt: skip


def _joined(
    X: np.ndarray, y: np.ndarray, trials: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The windows ``X[rows]`` (``[n, channel, time]``) as one ``[n * time, channel]``
    signal, with each sample's class and trial."""
    windows = np.asarray(X[rows], dtype=np.float64)
    signal = windows.transpose(0, 2, 1).reshape(-1, windows.shape[1])
    per_sample = windows.shape[2]
    return signal, np.repeat(y[rows], per_sample), np.repeat(trials[rows], per_sample)


def _refuse_preprocessed(data: SubjectData, why: str) -> None:
    if "preprocess" in data.meta:
        raise ArgumentError(
            f"subject {data.subject}'s windows are preprocessed: {why}; pass the data source="
        )


@checked
def realign_subject(
    data: SubjectData,
    checks: Sequence[PlacementCheck],
    source: Mapping[str, Any] | None = None,
) -> SubjectData:
    """The subject with the held-out repetitions ``checks`` name moved put back before
    preprocessing (as it is where none is): with ``source``, its recording read again,
    realigned (`realign_recording`) and prepared as the source says; without, the raw windows
    reordered. ``meta["placement_check"]`` records the checks, that realigning was asked
    (``realign``) and whether anything was put back (``realigned``)."""
    moved = any(check.moved for check in checks)
    record = {"checks": [c.to_dict() for c in checks], "realign": True, "realigned": moved}
    if not moved:  # nothing named moved: the subject as it is
        out = replace(data, meta=dict(data.meta))
    elif source is not None:
        recording = realign_recording(load_recording(dict(source), data.subject), checks)
        out = prepare_subject(recording, preprocess_spec(source["preprocess"]))
        out.meta = json.loads(json.dumps(out.meta))  # as load_subject gives it
    else:
        _refuse_preprocessed(data, "realigning them would mix electrodes' scales")
        X_test = data.X_test.copy()
        for check in checks:
            if check.moved:
                rows = data.rep_test == check.repetition
                X_test[rows] = X_test[rows][:, list(check.best.moved_to)]
        out = replace(data, X_test=X_test, meta=dict(data.meta))
    out.meta["placement_check"] = record
    return out
