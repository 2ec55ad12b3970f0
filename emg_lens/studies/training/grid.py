"""The cells of a training study: its inputs (whole modalities, or random electrode subsets
redrawn per subject and trial), how a cell's electrodes are taken from a subject's windows
(`select_channels`), and `TrainingCell`, one model to train. For ACC an electrode is its 3
axes.

>>> inp = TrainingInput.from_dict({"name": "emg6", "channels": {"emg": 6}, "trials": 2},
...                               electrodes={"emg": 12, "acc": 12})
>>> TrainingCell(1, "IsoNet", inp, trial=1).key
'IsoNet-emg6-t1-5fdc37f9'
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from emg_lens.data.preprocess import SubjectData
from emg_lens.errors import (
    ArgumentError,
    DataFormatError,
    SpecError,
    check_choice,
    check_int,
    checked,
)
from emg_lens.hooks.ablation import channel_range
from emg_lens.studies.spec_base import Spec, file_key, is_none
from emg_lens.studies.validate import refuse_repeats

AXES_PER_ELECTRODE = {"acc": 3}
"""Channels one electrode of a modality records (other modalities: 1). ACC channels are
electrode-major (x, y, z of electrode 0, then of electrode 1, ...) in every loader."""


def _digest(value: Any) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:8]


def _axes_per_electrode(data: SubjectData, modality: str) -> int:
    """Channels per electrode of ``modality`` in ``data`` (ACC magnitudes: 1 per sensor)."""
    if data.meta.get("preprocess", {}).get("acc_magnitude") and modality == "acc":
        return 1
    return AXES_PER_ELECTRODE.get(modality, 1)


def electrode_counts(data: SubjectData) -> dict[str, int]:
    """Electrodes per modality of ``data``, in its montage order.

    >>> X = np.zeros((1, 8, 3), dtype=np.float32)  # emg 2 + acc 2 x 3 axes
    >>> y, rep = np.array([0]), np.array([1])
    >>> electrode_counts(SubjectData(1, {"emg": 2, "acc": 6}, [1], X, y, rep, X, y, rep))
    {'emg': 2, 'acc': 2}
    """
    counts = {}
    for modality, channels in data.modalities.items():
        axes = _axes_per_electrode(data, modality)
        if channels % axes:
            raise DataFormatError(
                f"subject {data.subject}: {modality} has {channels} channels, not a multiple of "
                f"the {axes} axes of each electrode"
            )
        counts[modality] = channels // axes
    return counts


@checked
def select_channels(data: SubjectData, electrodes: Mapping[str, Sequence[int]]) -> SubjectData:
    """The windows of the chosen electrodes only (an ACC electrode brings its 3 axes), in the
    montage order of modalities and the given order within one, with ``modalities``,
    ``meta["electrodes"]`` and (where the data names them) ``meta["channel_names"]`` updated.

    >>> X = np.arange(2 * 8 * 3, dtype=np.float32).reshape(2, 8, 3)  # emg 2 + acc 2 x 3 axes
    >>> data = SubjectData(1, {"emg": 2, "acc": 6}, [1, 2], X, np.array([0, 1]), np.array([1, 3]),
    ...                    X, np.array([0, 1]), np.array([2, 5]))
    >>> picked = select_channels(data, {"acc": [1], "emg": [1]})
    >>> picked.modalities, picked.X_train[0, :, 0].tolist()
    ({'emg': 1, 'acc': 3}, [3.0, 15.0, 18.0, 21.0])
    """
    counts = electrode_counts(data)
    unknown = sorted(set(electrodes) - set(counts))
    if unknown:
        raise ArgumentError(f"modalities {unknown} are not in the data; it has {list(counts)}")
    rows, modalities = [], {}
    for modality in counts:  # montage order
        if modality not in electrodes:
            continue
        chosen, n = [int(e) for e in electrodes[modality]], counts[modality]
        if not chosen or len(set(chosen)) < len(chosen) or not all(0 <= e < n for e in chosen):
            accepted = f"distinct, non-empty, in 0..{n - 1}"
            raise ArgumentError(
                f"{modality} electrodes {chosen} do not exist; accepted: {accepted}"
            )
        axes = _axes_per_electrode(data, modality)
        first = channel_range(data.modalities, modality).start
        rows += [first + e * axes + a for e in chosen for a in range(axes)]
        modalities[modality] = len(chosen) * axes
    meta = {**data.meta, "electrodes": {m: list(map(int, e)) for m, e in electrodes.items()}}
    if data.meta.get("channel_names") is not None:  # the chosen channels' own names
        meta["channel_names"] = [data.meta["channel_names"][row] for row in rows]
    X_train, X_test = data.X_train[:, rows], data.X_test[:, rows]
    return dataclasses.replace(
        data, modalities=modalities, X_train=X_train, X_test=X_test, meta=meta
    )


@checked
@dataclass(frozen=True)
class TrainingInput(Spec):
    """One ``[[inputs]]`` entry: whole ``modalities``, or ``channels`` (electrodes per modality)
    drawn at random per subject and trial, ``trials`` times."""

    WHERE: ClassVar[str] = "inputs[0]"
    HOLDS: ClassVar[str] = "name and modalities or channels"
    READ_ALONE: ClassVar[bool] = False  # read with the dataset's electrodes, by its study

    name: str
    modalities: tuple[str, ...] | None = field(default=None, metadata=file_key(omit=is_none))
    channels: tuple[tuple[str, int], ...] | None = field(
        default=None, metadata=file_key(dump=lambda pairs, spec: dict(pairs), omit=is_none)
    )
    # random draws repeated: channels only
    trials: int = field(default=1, metadata=file_key(omit=lambda n, spec: spec.channels is None))

    @classmethod
    def _parse(
        cls, data: dict[str, Any], where: str, electrodes: Mapping[str, int | None] | None = None
    ) -> dict[str, Any]:
        if electrodes is None:  # optional only for `Spec._parse`'s signature
            raise ArgumentError(f"{where}: from_dict needs electrodes={{modality: count}}")
        name = data.get("name")
        if not isinstance(name, str) or not name.isidentifier():
            raise SpecError(f"{where}.name must be an identifier, got {name!r}")
        where = f"{where} ({name})"
        given = [k for k in ("modalities", "channels") if k in data]
        if len(given) != 1:
            raise SpecError(f"{where} needs exactly one of modalities, channels; got {given}")

        if "modalities" in data:
            modalities = data["modalities"]
            if not isinstance(modalities, list) or not modalities:
                raise SpecError(f"{where}.modalities must be a non-empty list of modality names")
            for modality in modalities:
                check_choice(modality, list(electrodes), f"{where}.modalities", SpecError)
            refuse_repeats(f"{where}.modalities", modalities)
            if "trials" in data:
                why = "trials redraw random electrodes: channels = {modality = count} only"
                raise SpecError(f"{where}: {why}, not whole modalities")
            return {"name": name, "modalities": tuple(modalities)}
        channels = data["channels"]
        if not isinstance(channels, dict) or not channels:
            raise SpecError(f"{where}.channels must be a table of electrodes per modality")
        for modality, count in channels.items():
            check_choice(modality, list(electrodes), f"{where}.channels' modality", SpecError)
            available, axes = electrodes[modality], AXES_PER_ELECTRODE.get(modality, 1)
            what = f"{available} {modality} electrodes" + (f" of {axes} axes" if axes > 1 else "")
            check_int(count, f"{where}.channels.{modality} (of {what})", 1, available, SpecError)
        trials = check_int(data.get("trials", 1), f"{where}.trials", 1, error=SpecError)
        return {"name": name, "channels": tuple(channels.items()), "trials": trials}

    @property
    def digest(self) -> str:
        """Hash of what the input selects (not its name or trial count): part of cell keys, so
        a changed definition is trained again rather than read from an old cell."""
        if self.modalities is not None:
            return _digest(sorted(self.modalities))
        assert self.channels is not None  # an input has modalities or channels (`_parse`)
        return _digest(dict(self.channels))

    def shape(self, montage: Mapping[str, int | None]) -> dict[str, int]:
        """Channels per modality this input gives on a dataset of ``montage`` (channels per
        modality; None where only the file tells: counted as 1 electrode).

        >>> TrainingInput("mix", channels=(("acc", 2),)).shape({"emg": 12, "acc": 36})
        {'acc': 6}
        >>> TrainingInput("all", modalities=("emg", "force")).shape({"emg": 128, "force": None})
        {'emg': 128, 'force': 1}
        """
        electrodes = dict(self.channels) if self.channels is not None else None
        out = {}
        for modality, channels in montage.items():
            axes = AXES_PER_ELECTRODE.get(modality, 1)
            if electrodes is not None and modality in electrodes:
                out[modality] = electrodes[modality] * axes
            elif self.modalities is not None and modality in self.modalities:
                out[modality] = channels or axes
        return out

    def draw(self, available: Mapping[str, int], subject: int, trial: int, seed: int):
        """Electrodes per modality for one subject and trial: every electrode of each listed
        modality, or a sorted random subset seeded by ``(seed, subject, trial)`` (drawn in
        the montage order, the same for every architecture).

        >>> inp = TrainingInput("mix", channels=(("emg", 2), ("acc", 1)), trials=3)
        >>> inp.draw({"emg": 12, "acc": 12}, subject=1, trial=0, seed=0)
        {'emg': [5, 10], 'acc': [6]}
        """
        if self.modalities is not None:
            return {m: list(range(available[m])) for m in available if m in self.modalities}
        assert self.channels is not None  # an input has modalities or channels (`_parse`)
        rng = np.random.default_rng([seed, subject, trial])
        wanted = dict(self.channels)
        out = {}
        for modality, count in available.items():
            if modality in wanted:
                if wanted[modality] > count:
                    asked = f"{wanted[modality]} {modality} electrodes"
                    raise SpecError(
                        f"input {self.name!r} asks for {asked}; subject {subject} has {count}"
                    )
                out[modality] = sorted(rng.choice(count, wanted[modality], replace=False).tolist())
        missing = sorted(set(wanted) - set(out))
        if missing:
            raise SpecError(f"input {self.name!r}: subject {subject} has no {missing} data")
        return out


@dataclass(frozen=True)
class TrainingCell:
    """One model to train: a subject, an architecture, an input and a trial of its draw."""

    subject: int
    architecture: str
    input: TrainingInput
    trial: int

    @property
    def key(self) -> str:
        """Deterministic id of the cell within its subject (the store's file name)."""
        return f"{self.architecture}-{self.input.name}-t{self.trial}-{self.input.digest}"
