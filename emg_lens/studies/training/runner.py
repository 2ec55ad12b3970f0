"""Training studies: train models per subject on several input sets and compare them.

The IsoNet paper's Table 1 (architecture × {sEMG+ACC, ACC, sEMG}) and Figure 2 (a random 6 sEMG
+ 6 ACC electrode split against 12 sEMG or 12 ACC, repeated over trials) are studies that
*train*: every cell is one model fitted on one subject's training repetitions and scored on its
test repetitions. A study file with ``kind = "training"`` says which data, which architectures
(class names from `emg_lens.models`), which inputs — whole modalities, or random electrode
subsets (for ACC an electrode is its 3 axes) redrawn per trial and subject — and which input is
the reference every other input is tested against, per architecture.

A fusion model given one modality is its single-stream variant: one MLP head or one stem, and
the hierarchical model's fusion stage over that one token stream. That is what the paper's
unimodal rows of Table 1 train, so no architecture refuses an input; a configuration a model
cannot be built with is a `SpecError` before anything trains (`check_models`).

>>> spec = TrainingStudySpec.from_dict({
...     "kind": "training",
...     "name": "demo",
...     "data": {"subjects": [1, 2, 3]},
...     "architectures": ["IsoNet", "MultimodalMLP"],
...     "inputs": [
...         {"name": "emg_acc", "modalities": ["emg", "acc"]},
...         {"name": "emg6_acc6", "channels": {"emg": 6, "acc": 6}, "trials": 2},
...     ],
...     "reference": "emg_acc",
... })
>>> len(spec.cells()), spec.cells()[1].key
(18, 'IsoNet-emg6_acc6-t0-fb33f819')
>>> TrainingStudySpec.from_dict(spec.to_dict()) == spec
True
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from emg_lens.config import PRESETS, EncoderConfig, config_for_data
from emg_lens.data.datasets import (
    DATASETS,
    available_subjects,
    data_source,
    dataset_preprocess,
    load_subject,
)
from emg_lens.data.hdsemg import GRID
from emg_lens.data.ninapro import CHANNELS as NINAPRO_CHANNELS
from emg_lens.data.ninapro import EXERCISES
from emg_lens.data.preprocess import PreprocessSpec, SubjectData
from emg_lens.data.synthetic import SyntheticSpec
from emg_lens.errors import ArgumentError, ConfigError, DataFormatError, EmgLensError, SpecError
from emg_lens.hooks.ablation import channel_range
from emg_lens.models import HierarchicalTransformer, IsoNet, MultimodalMLP, MultimodalTransformer
from emg_lens.studies.result import StudyResult, markdown_table
from emg_lens.studies.runner import score_predictions
from emg_lens.studies.spec import METRICS, StatsSpec, _int_list, _reject_repeats, _reject_unknown
from emg_lens.studies.stats import compare, correct, delta_pct, stars
from emg_lens.studies.store import CellStore
from emg_lens.train import TrainConfig, fit, predict

__all__ = [
    "ARCHITECTURES",
    "AXES_PER_ELECTRODE",
    "TrainingCell",
    "TrainingData",
    "TrainingInput",
    "TrainingStudyResult",
    "TrainingStudySpec",
    "check_models",
    "run_training_study",
    "select_channels",
    "summarize_training",
]

KIND = "training"
ARCHITECTURES = {
    cls.__name__: cls
    for cls in (MultimodalMLP, MultimodalTransformer, HierarchicalTransformer, IsoNet)
}
"""The classifiers a training study can train, by class name (TinyMyo is fine-tuned instead)."""

AXES_PER_ELECTRODE = {"acc": 3}
"""Channels one electrode of a modality records (other modalities: 1). ACC channels are
electrode-major (x, y, z of electrode 0, then of electrode 1, ...) in every loader."""

# Derived from the data, so not settable in [model]; seed comes from [train].
DERIVED_MODEL_FIELDS = ("modalities", "n_classes", "n_samples", "n_ctx", "seed")
TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig) if f.name != "progress")
DATA_OVERRIDES = ("dataset", "root", "subjects", "segment", "window", "step", "exercises")
TRAIN_OVERRIDES = ("epochs", "lr", "batch_size", "seed", "preset")


def _positive_int(value: Any, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SpecError(f"{key} must be a positive integer, got {value!r}")
    return value


def _table(value: Any, key: str) -> dict:
    if not isinstance(value, dict):
        raise SpecError(f"[{key}] must be a table, got {value!r}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _digest(value: Any) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:8]


# ----------------------------------------------------------------------------- channels


def _axes_per_electrode(data: SubjectData, modality: str) -> int:
    """Channels per electrode of ``modality`` in ``data`` (ACC magnitudes: 1 per sensor)."""
    if data.meta.get("preprocess", {}).get("acc_magnitude") and modality == "acc":
        return 1
    return AXES_PER_ELECTRODE.get(modality, 1)


def _electrode_counts(data: SubjectData) -> dict[str, int]:
    """Electrodes per modality of ``data``, in its montage order."""
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


def select_channels(data: SubjectData, electrodes: Mapping[str, Sequence[int]]) -> SubjectData:
    """The windows of the chosen electrodes only (an ACC electrode brings its 3 axes), with
    ``modalities`` updated. Modalities keep the montage order of ``data``; electrodes within one
    keep the order given. ``meta["electrodes"]`` records the choice.

    >>> X = np.arange(2 * 8 * 3, dtype=np.float32).reshape(2, 8, 3)  # emg 2 + acc 2 x 3 axes
    >>> data = SubjectData(1, {"emg": 2, "acc": 6}, [1, 2], X, np.array([0, 1]), np.array([1, 3]),
    ...                    X, np.array([0, 1]), np.array([2, 5]))
    >>> picked = select_channels(data, {"acc": [1], "emg": [1]})
    >>> picked.modalities, picked.X_train[0, :, 0].tolist()
    ({'emg': 1, 'acc': 3}, [3.0, 15.0, 18.0, 21.0])
    """
    counts = _electrode_counts(data)
    unknown = sorted(set(electrodes) - set(counts))
    if unknown:
        raise ArgumentError(f"modalities {unknown} are not in the data; it has {list(counts)}")
    rows, modalities = [], {}
    for modality in counts:  # montage order
        if modality not in electrodes:
            continue
        chosen = [int(e) for e in electrodes[modality]]
        if not chosen or len(set(chosen)) != len(chosen):
            raise ArgumentError(
                f"electrodes of {modality!r} must be distinct and non-empty, got {chosen}"
            )
        bad = [e for e in chosen if not 0 <= e < counts[modality]]
        if bad:
            raise ArgumentError(
                f"{modality} electrodes {bad} do not exist; the data has electrodes "
                f"0..{counts[modality] - 1}"
            )
        axes = _axes_per_electrode(data, modality)
        first = channel_range(data.modalities, modality).start
        rows += [first + e * axes + a for e in chosen for a in range(axes)]
        modalities[modality] = len(chosen) * axes
    return dataclasses.replace(
        data,
        modalities=modalities,
        X_train=data.X_train[:, rows],
        X_test=data.X_test[:, rows],
        meta={**data.meta, "electrodes": {m: list(map(int, e)) for m, e in electrodes.items()}},
    )


# ----------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class TrainingData:
    """``[data]``: the dataset, its subjects and the windowing (`emg_lens.data.datasets`).
    ``subjects=None`` means every subject found (``subjects = "all"``); ``synthetic`` holds
    `SyntheticSpec` fields for ``dataset = "synthetic"``; ``exercises`` is for NinaPro DB2.

    >>> data = TrainingData.from_dict({"subjects": [1, 2], "segment": [0.5, 1.5]})
    >>> data.montage(), data.electrodes(), data.source()["preprocess"]["segment"]
    ({'emg': 12, 'acc': 36}, {'emg': 12, 'acc': 12}, (0.5, 1.5))
    """

    subjects: tuple[int, ...] | None
    dataset: str = "synthetic"
    root: str | None = None
    segment: str | tuple[float, float] = PreprocessSpec.segment
    window: int = PreprocessSpec.window
    step: int = PreprocessSpec.step
    exercises: tuple[str, ...] = ("B",)
    synthetic: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def from_dict(cls, data: Any) -> TrainingData:
        data = _table(data, "data")
        _reject_unknown("data", data, {f.name for f in fields(cls)})
        dataset = data.get("dataset", cls.dataset)
        if dataset not in DATASETS:
            raise SpecError(f"data.dataset = {dataset!r}; accepted: {list(DATASETS)}")
        root = data.get("root")
        if (dataset == "synthetic") != (root is None):
            raise SpecError(
                f"data.root = {root!r}: real datasets ({list(DATASETS[1:])}) need the folder "
                "holding their files; synthetic data takes none"
            )
        subjects = data.get("subjects")
        if subjects != "all":
            if subjects is None:
                raise SpecError('data.subjects is required: a list of subject numbers, or "all"')
            subjects = _int_list(subjects, "data.subjects")
            if not subjects or min(subjects) < 1:
                raise SpecError(f"data.subjects must be numbers >= 1, got {list(subjects)}")
            _reject_repeats("data.subjects", list(subjects))
        segment = data.get("segment", cls.segment)
        if isinstance(segment, list):
            if len(segment) != 2 or not all(_is_number(v) for v in segment):
                raise SpecError(
                    f"data.segment = {segment!r}; accepted: transient, steady, full or "
                    "[start_s, stop_s] seconds into each repetition"
                )
            segment = (float(segment[0]), float(segment[1]))
        exercises = data.get("exercises", list(cls.exercises))
        if (
            not isinstance(exercises, list)
            or not exercises
            or not all(e in EXERCISES for e in exercises if isinstance(e, str))
            or not all(isinstance(e, str) for e in exercises)
        ):
            raise SpecError(f"data.exercises = {exercises!r}; accepted: lists of {list(EXERCISES)}")
        synthetic = _table(data.get("synthetic", {}), "data.synthetic")
        if "n_subjects" in synthetic and subjects != "all":
            raise SpecError(
                "data.synthetic.n_subjects is set by data.subjects; give it only with "
                'subjects = "all"'
            )
        spec = cls(
            subjects=None if subjects == "all" else subjects,
            dataset=dataset,
            root=None if root is None else str(root),
            segment=segment,
            window=_positive_int(data.get("window", cls.window), "data.window"),
            step=_positive_int(data.get("step", cls.step), "data.step"),
            exercises=tuple(exercises),
            synthetic=tuple(sorted(synthetic.items())),
        )
        spec.source()  # PreprocessSpec and SyntheticSpec check their fields
        return spec

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "dataset": self.dataset,
            "subjects": "all" if self.subjects is None else list(self.subjects),
            "segment": self.segment if isinstance(self.segment, str) else list(self.segment),
            "window": self.window,
            "step": self.step,
            "exercises": list(self.exercises),
        }
        if self.root is not None:
            out["root"] = self.root
        if self.synthetic:
            out["synthetic"] = dict(self.synthetic)
        return out

    def _synthetic_spec(self) -> SyntheticSpec:
        settings = dict(self.synthetic)
        if self.subjects is not None:
            settings["n_subjects"] = max(self.subjects)
        try:
            return SyntheticSpec(**settings)
        except TypeError as exc:  # an unknown field
            accepted = [f.name for f in fields(SyntheticSpec) if f.name != "n_subjects"]
            raise SpecError(f"[data.synthetic]: {exc}; accepted: {accepted}") from exc

    def source(self) -> dict[str, Any]:
        """The `data_source` dict that `load_subject` reads."""
        try:
            return data_source(
                self.dataset,
                root=self.root,
                synthetic=self._synthetic_spec() if self.dataset == "synthetic" else None,
                preprocess=dataset_preprocess(
                    self.dataset, segment=self.segment, window=self.window, step=self.step
                ),
                exercises=self.exercises,
            )
        except (ConfigError, TypeError) as exc:
            raise SpecError(f"[data]: {exc}") from exc

    def montage(self) -> dict[str, int | None]:
        """Channels per modality that the dataset's loader returns (None: read from the file),
        known before any file is read, so a spec is checked without loading data."""
        if self.dataset == "synthetic":
            s = self._synthetic_spec()
            return {"emg": s.n_emg, "acc": s.n_acc_sensors * AXES_PER_ELECTRODE["acc"]}
        if self.dataset == "ninapro-db2":  # load_ninapro_db2 reads sEMG and ACC
            return {m: NINAPRO_CHANNELS[m] for m in ("emg", "acc")}
        return {"emg": 2 * GRID[0] * GRID[1], "force": None}  # two 8 x 8 grids; F from the file

    def electrodes(self) -> dict[str, int | None]:
        """`montage` in electrodes (an ACC electrode is its 3 axes)."""
        return {
            m: None if n is None else n // AXES_PER_ELECTRODE.get(m, 1)
            for m, n in self.montage().items()
        }


@dataclass(frozen=True)
class TrainingInput:
    """One ``[[inputs]]`` entry: whole ``modalities``, or ``channels`` (electrodes per modality)
    drawn at random per subject and trial, ``trials`` times."""

    name: str
    modalities: tuple[str, ...] | None = None
    channels: tuple[tuple[str, int], ...] | None = None
    trials: int = 1

    @classmethod
    def from_dict(
        cls, data: Any, index: int, electrodes: Mapping[str, int | None]
    ) -> TrainingInput:
        where = f"inputs[{index}]"
        if not isinstance(data, dict):
            raise SpecError(f"{where} must be a table with name and modalities or channels")
        _reject_unknown(where, data, {f.name for f in fields(cls)})
        name = data.get("name")
        if not isinstance(name, str) or not name.isidentifier():
            raise SpecError(f"{where}.name must be an identifier, got {name!r}")
        where = f"{where} ({name})"
        given = [k for k in ("modalities", "channels") if k in data]
        if len(given) != 1:
            raise SpecError(f"{where} needs exactly one of modalities, channels; got {given}")

        def check_modality(modality: Any) -> None:
            if modality not in electrodes:
                raise SpecError(
                    f"{where}: unknown modality {modality!r}; the dataset has {list(electrodes)}"
                )

        if "modalities" in data:
            modalities = data["modalities"]
            if not isinstance(modalities, list) or not modalities:
                raise SpecError(f"{where}.modalities must be a non-empty list of modality names")
            for modality in modalities:
                check_modality(modality)
            _reject_repeats(f"{where}.modalities", modalities)
            if "trials" in data:
                raise SpecError(
                    f"{where}: trials repeat random electrode draws, which need channels = "
                    "{modality = count}; whole modalities have nothing to redraw"
                )
            return cls(name=name, modalities=tuple(modalities))
        channels = data["channels"]
        if not isinstance(channels, dict) or not channels:
            raise SpecError(f"{where}.channels must be a table of electrodes per modality")
        for modality, count in channels.items():
            check_modality(modality)
            _positive_int(count, f"{where}.channels.{modality}")
            available = electrodes[modality]
            if available is not None and count > available:
                axes = AXES_PER_ELECTRODE.get(modality, 1)
                what = f" (an electrode is its {axes} axes)" if axes > 1 else ""
                raise SpecError(
                    f"{where}.channels.{modality} = {count}, but the dataset has "
                    f"{available} {modality} electrodes{what}; accepted: 1..{available}"
                )
        trials = _positive_int(data.get("trials", 1), f"{where}.trials")
        return cls(name=name, channels=tuple(channels.items()), trials=trials)

    def to_dict(self) -> dict[str, Any]:
        if self.modalities is not None:
            return {"name": self.name, "modalities": list(self.modalities)}
        return {"name": self.name, "channels": dict(self.channels), "trials": self.trials}

    @property
    def digest(self) -> str:
        """Hash of what the input selects (not its name or trial count): part of cell keys, so
        a changed definition is trained again rather than read from an old cell."""
        what = sorted(self.modalities) if self.modalities is not None else dict(self.channels)
        return _digest(what)

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
        rng = np.random.default_rng([seed, subject, trial])
        wanted = dict(self.channels)
        out = {}
        for modality, count in available.items():
            if modality in wanted:
                if wanted[modality] > count:
                    raise SpecError(
                        f"input {self.name!r} asks for {wanted[modality]} {modality} electrodes; "
                        f"subject {subject} has {count}"
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


@dataclass(frozen=True)
class TrainingStudySpec:
    """A whole training study (see the module docstring); parameters only."""

    name: str
    data: TrainingData
    architectures: tuple[str, ...]
    inputs: tuple[TrainingInput, ...]
    reference: str
    train: TrainConfig = field(default_factory=lambda: TrainConfig(progress=False))
    preset: str = "demo"
    model: tuple[tuple[str, Any], ...] = ()  # EncoderConfig overrides for every architecture
    metric: str = "accuracy"
    stats: StatsSpec = field(default_factory=StatsSpec)
    description: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingStudySpec:
        if not isinstance(data, dict):
            raise SpecError(f"a study spec must be a table/dict, got {type(data).__name__}")
        allowed = {f.name for f in fields(cls)} | {"kind"}
        _reject_unknown("study", data, allowed)
        if data.get("kind", KIND) != KIND:
            raise SpecError(f"kind = {data['kind']!r}; TrainingStudySpec reads kind = {KIND!r}")
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise SpecError("study key 'name' is required and must be a non-empty string")
        metric = data.get("metric", "accuracy")
        if metric not in METRICS:
            raise SpecError(f"metric = {metric!r}; accepted: {list(METRICS)}")
        train_data = TrainingData.from_dict(data.get("data"))
        architectures = data.get("architectures")
        if not isinstance(architectures, list) or not architectures:
            raise SpecError(f"architectures must be a non-empty list of {list(ARCHITECTURES)}")
        for i, arch in enumerate(architectures):
            if arch not in ARCHITECTURES:
                raise SpecError(
                    f"architectures[{i}] = {arch!r} is not a model emg_lens.models trains here; "
                    f"accepted: {list(ARCHITECTURES)}"
                )
        _reject_repeats("architectures", architectures)
        raw = data.get("inputs")
        if not isinstance(raw, list) or not raw:
            raise SpecError("the study needs at least one [[inputs]] entry")
        electrodes = train_data.electrodes()
        inputs = tuple(TrainingInput.from_dict(d, i, electrodes) for i, d in enumerate(raw))
        names = [i.name for i in inputs]
        _reject_repeats("inputs names", names)
        reference = data.get("reference")
        if reference not in names:
            raise SpecError(f"reference = {reference!r} is not among the inputs; accepted: {names}")
        train, preset = cls._train(data.get("train", {}))
        model = _table(data.get("model", {}), "model")
        known = {f.name for f in fields(EncoderConfig)} - set(DERIVED_MODEL_FIELDS)
        _reject_unknown("model", model, known)
        stats = _table(data.get("stats", {}), "stats")
        if "family" in stats:
            raise SpecError(
                "stats.family is not a key of training studies: each architecture's "
                "comparisons with the reference input are one family; accepted: test, correction"
            )
        spec = cls(
            name=name,
            data=train_data,
            architectures=tuple(architectures),
            inputs=inputs,
            reference=reference,
            train=train,
            preset=preset,
            model=tuple(sorted(model.items())),
            metric=metric,
            stats=StatsSpec.from_dict(stats),
            description=str(data.get("description", "")),
        )
        for arch in spec.architectures:  # every config must build, before anything trains
            for inp in spec.inputs:
                spec.model_config(arch, _shape_of(inp, train_data.montage()), 2, train_data.window)
        return spec

    @staticmethod
    def _train(data: Any) -> tuple[TrainConfig, str]:
        data = dict(_table(data, "train"))
        _reject_unknown("train", data, {*TRAIN_KEYS, "preset"})
        preset = data.pop("preset", "demo")
        if preset not in PRESETS:
            raise SpecError(f"train.preset = {preset!r}; accepted: {sorted(PRESETS)}")
        seed = data.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise SpecError(f"train.seed must be an integer >= 0, got {seed!r}")
        try:
            return TrainConfig(**data, progress=False), preset
        except (ConfigError, TypeError) as exc:
            raise SpecError(f"[train]: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """A plain dict that `from_dict` (and `load_spec`) reads back to an equal spec."""
        train = {k: getattr(self.train, k) for k in TRAIN_KEYS}
        return {
            "kind": KIND,
            "name": self.name,
            "description": self.description,
            "metric": self.metric,
            "data": self.data.to_dict(),
            "train": {**train, "preset": self.preset},
            "model": dict(self.model),
            "architectures": list(self.architectures),
            "inputs": [i.to_dict() for i in self.inputs],
            "reference": self.reference,
            "stats": {"test": self.stats.test, "correction": self.stats.correction},
        }

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> TrainingStudySpec:
        """The spec with ``[data]`` keys (``dataset, root, subjects, segment, window, step,
        exercises``) and ``[train]`` keys (``epochs, lr, batch_size, seed, preset``) replaced;
        ``None`` values are ignored (unset command-line flags)."""
        given = {k: v for k, v in (overrides or {}).items() if v is not None}
        unknown = sorted(set(given) - {*DATA_OVERRIDES, *TRAIN_OVERRIDES})
        if unknown:
            raise SpecError(
                f"unknown override(s) {unknown}; accepted: {[*DATA_OVERRIDES, *TRAIN_OVERRIDES]}"
            )
        out = self.to_dict()
        for key, value in given.items():
            section = "data" if key in DATA_OVERRIDES else "train"
            out[section][key] = list(value) if isinstance(value, tuple) else value
        if given.get("dataset") == "synthetic":
            out["data"].pop("root", None)
        return TrainingStudySpec.from_dict(out)

    def fingerprint(self) -> str:
        """What every cell's value depends on besides its key: the data (not which subjects),
        training, model sizes and metric. Subjects, architectures and inputs can be added to a
        stored study, and its statistics changed, without training anything again."""
        out = self.to_dict()
        out["data"].pop("subjects")
        return json.dumps({k: out[k] for k in ("data", "train", "model", "metric")}, sort_keys=True)

    def subject_ids(self) -> list[int]:
        """The subjects: as listed, or every one the data source holds."""
        if self.data.subjects is not None:
            return list(self.data.subjects)
        return available_subjects(self.data.source())

    def cells(self, subjects: Sequence[int] | None = None) -> list[TrainingCell]:
        """Every cell, subject by subject (so one subject's data is loaded once)."""
        return [
            TrainingCell(subject, arch, inp, trial)
            for subject in (self.subject_ids() if subjects is None else subjects)
            for arch in self.architectures
            for inp in self.inputs
            for trial in range(inp.trials)
        ]

    def model_config(
        self, architecture: str, modalities: Mapping[str, int], n_classes: int, n_samples: int
    ) -> EncoderConfig:
        """The architecture's config for data of this shape, from ``preset`` (see
        `config_for_data`), with the ``[model]`` overrides and ``train.seed``."""
        try:
            return config_for_data(
                ARCHITECTURES[architecture],
                self.preset,
                modalities,
                n_classes,
                n_samples,
                **dict(self.model),
                seed=self.train.seed,
            )
        except ConfigError as exc:
            raise SpecError(
                f"{architecture} with preset {self.preset!r} and [model]: {exc}"
            ) from exc


def _shape_of(inp: TrainingInput, montage: Mapping[str, int | None]) -> dict[str, int]:
    """Channels per modality an input gives (1 electrode where the montage is unknown)."""
    electrodes = dict(inp.channels) if inp.channels is not None else None
    out = {}
    for modality, channels in montage.items():
        axes = AXES_PER_ELECTRODE.get(modality, 1)
        if electrodes is not None and modality in electrodes:
            out[modality] = electrodes[modality] * axes
        elif inp.modalities is not None and modality in inp.modalities:
            out[modality] = channels or axes
    return out


def check_models(spec: TrainingStudySpec) -> list[dict[str, Any]]:
    """Build every architecture × input model once (with the dataset's channel counts) so that
    a model that cannot be built is a `SpecError` before training; returns one row per pair:
    ``architecture, input, trials, channels, tokens, parameters``.

    >>> spec = TrainingStudySpec.from_dict({"name": "t", "data": {"subjects": [1]},
    ...     "architectures": ["MultimodalMLP"], "inputs": [{"name": "emg", "modalities": ["emg"]}],
    ...     "reference": "emg", "train": {"preset": "tiny"}})
    >>> row = check_models(spec)[0]
    >>> row["channels"], row["tokens"], row["parameters"]
    ('emg 12', 1, 38994)
    """
    montage, rows = spec.data.montage(), []
    for arch in spec.architectures:
        for inp in spec.inputs:
            shape = _shape_of(inp, montage)
            cfg = spec.model_config(arch, shape, 2, spec.data.window)
            try:
                model = ARCHITECTURES[arch](cfg)
            except EmgLensError as exc:
                raise SpecError(f"{arch} cannot be built for input {inp.name!r}: {exc}") from exc
            rows.append(
                {
                    "architecture": arch,
                    "input": inp.name,
                    "trials": inp.trials,
                    "channels": " + ".join(f"{m} {n}" for m, n in shape.items()),
                    "tokens": model.layout.n_tokens,
                    "parameters": sum(p.numel() for p in model.parameters()),
                }
            )
    return rows


# ----------------------------------------------------------------------------- one cell


def _train_cell(
    spec: TrainingStudySpec, cell: TrainingCell, data: SubjectData, progress: bool
) -> dict[str, Any]:
    """Select the cell's electrodes, train its model on the training windows and score the
    test windows with ``spec.metric``; a JSON-able dict (the stored cell)."""
    counts = _electrode_counts(data)
    electrodes = cell.input.draw(counts, cell.subject, cell.trial, spec.train.seed)
    chosen = select_channels(data, electrodes)
    cfg = spec.model_config(
        cell.architecture, chosen.modalities, chosen.n_classes, chosen.X_train.shape[-1]
    )
    model = ARCHITECTURES[cell.architecture](cfg)
    start = time.perf_counter()
    train = dataclasses.replace(spec.train, progress=progress)
    history = fit(model, chosen.X_train, chosen.y_train, train, desc=cell.key)
    seconds = time.perf_counter() - start
    scores = score_predictions(
        predict(model, chosen.X_test), np.asarray(chosen.y_test), chosen.n_classes, spec.metric
    )
    return {
        **scores,
        "electrodes": electrodes,
        "train_seconds": seconds,
        "final_loss": history.epoch_loss[-1],
    }


# ----------------------------------------------------------------------------- results


def _subject_means(per_subject: pd.DataFrame) -> pd.DataFrame:
    """Trials averaged per (architecture, input, subject)."""
    keys = ["architecture", "input", "subject"]
    return per_subject.groupby(keys, sort=False, as_index=False)["value"].mean()


def summarize_training(per_subject: pd.DataFrame, spec: TrainingStudySpec) -> pd.DataFrame:
    """One row per architecture × input: mean ± std over subjects (trials averaged per subject
    first), Δ% of the mean vs the reference input's, the spec's test against the reference's
    per-subject values, and p corrected over each architecture's comparisons.

    >>> spec = TrainingStudySpec.from_dict({"name": "t", "data": {"subjects": [1, 2, 3]},
    ...     "architectures": ["IsoNet"], "reference": "both", "inputs": [
    ...         {"name": "both", "modalities": ["emg", "acc"]},
    ...         {"name": "emg", "modalities": ["emg"]}]})
    >>> table = pd.DataFrame({"subject": [1, 2, 3] * 2, "architecture": "IsoNet", "trial": 0,
    ...     "input": ["both"] * 3 + ["emg"] * 3, "value": [0.9, 0.92, 0.94, 0.6, 0.62, 0.64]})
    >>> row = summarize_training(table, spec).iloc[1]
    >>> row.input, round(float(row.delta_pct), 1), float(row.U), round(float(row.p), 2), row.stars
    ('emg', -32.6, 0.0, 0.1, 'ns')
    """
    means = _subject_means(per_subject)
    rows = []
    for arch in spec.architectures:
        of_arch = means[means["architecture"] == arch]
        ref = of_arch[of_arch["input"] == spec.reference].set_index("subject")["value"]
        family = []
        for inp in spec.inputs:
            values = of_arch[of_arch["input"] == inp.name].set_index("subject")["value"]
            row = {
                "architecture": arch,
                "input": inp.name,
                "n": len(values),
                "mean": float(values.mean()),
                "std": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
                "reference": float(ref.mean()),
                "delta_pct": delta_pct(float(values.mean()), float(ref.mean())),
                "U": float("nan"),
                "p": float("nan"),
            }
            if inp.name != spec.reference:
                aligned = values.reindex(ref.index).to_numpy()
                row["U"], row["p"] = compare(aligned, ref.to_numpy(), spec.stats.test)
                family.append(len(rows))
            rows.append(row)
        corrected = correct([rows[i]["p"] for i in family], spec.stats.correction)
        for i, p_corr in zip(family, corrected):
            rows[i]["p_corr"] = p_corr
    summary = pd.DataFrame(rows)
    if "p_corr" not in summary:
        summary["p_corr"] = np.nan
    summary["p_corr"] = summary["p_corr"].astype(float)
    is_ref = summary["input"] == spec.reference
    summary["stars"] = np.where(is_ref, "", summary["p_corr"].map(stars))
    return summary


@dataclass
class TrainingStudyResult:
    """What a training study produced: the per-cell table and the summary."""

    spec: TrainingStudySpec
    per_subject: pd.DataFrame
    summary: pd.DataFrame

    @classmethod
    def from_table(cls, spec: TrainingStudySpec, per_subject: pd.DataFrame) -> TrainingStudyResult:
        return cls(spec, per_subject, summarize_training(per_subject, spec))

    @property
    def n_subjects(self) -> int:
        return int(self.per_subject["subject"].nunique())

    def table1(self) -> pd.DataFrame:
        """The paper's Table-1 layout: a row per architecture, a column per input, cells
        ``"mean ± std stars"`` (stars: the corrected test against the reference column)."""

        def cell(r) -> str:
            text = f"{r['mean']:.3f}" + ("" if np.isnan(r["std"]) else f" ± {r['std']:.3f}")
            return f"{text} {r['stars']}".rstrip()

        s = self.summary.assign(cell=self.summary.apply(cell, axis=1))
        wide = s.pivot(index="architecture", columns="input", values="cell")
        wide = wide.reindex(index=list(self.spec.architectures), columns=self._inputs())
        wide.columns = [f"{c} (ref)" if c == self.spec.reference else c for c in wide.columns]
        wide.index.name = None
        return wide

    def _inputs(self) -> list[str]:
        return [i.name for i in self.spec.inputs]

    def header(self) -> str:
        """One line saying what the table shows."""
        s = self.spec
        return (
            f"{s.name}: test {s.metric}, mean ± std over {self.n_subjects} subjects; "
            f"{s.stats.test} vs {s.reference!r}, {s.stats.correction} over each architecture's "
            f"{len(s.inputs) - 1} comparisons"
        )

    def comparisons(self) -> pd.DataFrame:
        """The summary rows that are tested (every input but the reference)."""
        cols = ["architecture", "input", "n", "mean", "delta_pct", "U", "p", "p_corr", "stars"]
        return self.summary.loc[self.summary["input"] != self.spec.reference, cols]

    def to_markdown(self) -> str:
        table = self.table1().reset_index(names="architecture")
        return (
            f"# {self.spec.name}\n\n{self.header()}.\n\n{markdown_table(table)}\n\n"
            f"{markdown_table(self.summary, floatfmt='.3g')}\n"
        )

    def figures(self) -> dict:
        """``{"comparison": Figure}``: per-subject values by architecture and input."""
        return {"comparison": _comparison_figure(self)}

    # per_subject.csv, summary.csv, summary.md and every figure as PNG and SVG: the files an
    # ablation study writes, from the same four members.
    save = StudyResult.save


def _comparison_figure(result: TrainingStudyResult):
    """Grouped boxes: one group per architecture, one box per input (per-subject values,
    trials averaged, subjects as dots), the corrected significance mark above each box."""
    import matplotlib.pyplot as plt

    from emg_lens.studies.plots import draw_box, legend_patches

    spec, means = result.spec, _subject_means(result.per_subject)
    inputs = result._inputs()
    boxes = len(spec.architectures) * len(inputs)
    fig, ax = plt.subplots(figsize=(max(5.5, 1.0 + 0.5 * boxes), 4.0))
    lo, hi = float(means["value"].min()), float(means["value"].max())
    span = max(hi - lo, 1e-3)
    mark_y = hi + 0.04 * span  # one row of significance marks above every box
    jitter = np.random.default_rng(0)
    for i, arch in enumerate(spec.architectures):
        for j, name in enumerate(inputs):
            sel = (means["architecture"] == arch) & (means["input"] == name)
            values = means.loc[sel, "value"].to_numpy()
            mark = result.summary.loc[
                (result.summary["architecture"] == arch) & (result.summary["input"] == name),
                "stars",
            ].iloc[0]
            x = draw_box(ax, values, i, j, len(inputs), jitter=jitter)
            ax.text(x, mark_y, mark, ha="center", va="bottom", fontsize=7)
    ax.set_ylim(lo - 0.08 * span, hi + 0.16 * span)
    # "HierarchicalTransformer" -> "Hierarchical\nTransformer": long class names side by side.
    names = [
        re.sub(r"(?<=[a-z])(?=[A-Z])", "\n", a, count=1) if len(a) > 12 else a
        for a in spec.architectures
    ]
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_ylabel(f"test {spec.metric} per subject")
    ax.grid(axis="y", alpha=0.3)
    labels = [f"{n} (reference)" if n == spec.reference else n for n in inputs]
    ax.legend(
        legend_patches(len(inputs)),
        labels,
        fontsize=8,
        frameon=False,
        ncol=len(inputs),
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
    )
    ax.set_title(
        f"{spec.name}: {result.n_subjects} subjects; marks: {spec.stats.test} vs reference, "
        f"{spec.stats.correction}",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- the study


def run_training_study(
    spec: TrainingStudySpec | str | Path | dict,
    *,
    out_dir: str | Path | None = None,
    progress: bool = True,
    overrides: Mapping[str, Any] | None = None,
    data: Mapping[int, SubjectData] | None = None,
) -> TrainingStudyResult:
    """Train and score every cell of a training study.

    ``overrides`` replaces ``[data]``/``[train]`` keys (`TrainingStudySpec.with_overrides`:
    e.g. ``{"epochs": 1, "subjects": [1, 2]}`` for a smoke run). ``data`` gives the subjects'
    windows directly (notebooks, tests) instead of loading them from ``[data]``, which they
    should match (the store keys cells by the spec, not by the arrays). With
    ``out_dir`` every cell is stored as it finishes and a rerun trains only the missing cells;
    the tables and the figure are written there at the end.

    >>> rng = np.random.default_rng(0)
    >>> def subject(n):
    ...     y = np.arange(24) % 2
    ...     X = rng.standard_normal((24, 48, 8)).astype(np.float32) + y[:, None, None]
    ...     return SubjectData(n, {"emg": 12, "acc": 36}, [1, 2], X, y, y, X, y, y)
    >>> spec = {"name": "t", "data": {"subjects": [1, 2], "window": 8},
    ...     "architectures": ["MultimodalMLP"], "reference": "both",
    ...     "train": {"preset": "tiny", "epochs": 2, "lr": 0.01}, "inputs": [
    ...         {"name": "both", "modalities": ["emg", "acc"]},
    ...         {"name": "emg2", "channels": {"emg": 2}, "trials": 2}]}
    >>> result = run_training_study(spec, data={1: subject(1), 2: subject(2)}, progress=False)
    >>> len(result.per_subject), list(result.table1().columns)
    (6, ['both (ref)', 'emg2'])
    """
    from emg_lens.studies.spec import load_spec

    spec = TrainingStudySpec.from_dict(spec) if isinstance(spec, dict) else load_spec(spec)
    if not isinstance(spec, TrainingStudySpec):
        raise SpecError(f"study {spec.name!r} is not kind = {KIND!r}; run it with run_study")
    spec = spec.with_overrides(overrides)
    check_models(spec)
    if data is not None and spec.data.subjects is None:
        subjects = sorted(data)
    else:
        subjects = spec.subject_ids()
    if data is not None:
        missing = sorted(set(subjects) - set(data))
        if missing:
            raise SpecError(f"data.subjects {missing} are not in the given data ({sorted(data)})")
    store = CellStore(out_dir, spec.fingerprint()) if out_dir is not None else None
    source = spec.data.source() if data is None else None
    loaded: dict[int, SubjectData] = {}  # the current subject only
    rows = []
    bar = tqdm(spec.cells(subjects), desc=f"study {spec.name}", disable=not progress)
    for cell in bar:
        if store is not None and store.has(cell.subject, cell.key):
            stored = store.get(cell.subject, cell.key)
        else:
            if cell.subject not in loaded:
                loaded = {
                    cell.subject: data[cell.subject]
                    if data is not None
                    else load_subject(source, cell.subject)
                }
            bar.set_postfix(subject=cell.subject, model=cell.architecture, input=cell.input.name)
            stored = _train_cell(spec, cell, loaded[cell.subject], progress)
            if store is not None:
                store.put(cell.subject, cell.key, stored)
        rows.append(
            {
                "subject": cell.subject,
                "architecture": cell.architecture,
                "input": cell.input.name,
                "trial": cell.trial,
                "electrodes": " ".join(
                    f"{m}:{','.join(map(str, e))}" for m, e in stored["electrodes"].items()
                ),
                "metric": spec.metric,
                "value": stored["value"],
                "train_seconds": stored["train_seconds"],
                "key": cell.key,
            }
        )
    result = TrainingStudyResult.from_table(spec, pd.DataFrame(rows))
    if out_dir is not None:
        result.save(out_dir)
    return result
