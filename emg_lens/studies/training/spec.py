"""Training-study specs: `TrainingStudySpec` with its ``[data]`` section (`TrainingData`), the
architectures, the ``[[inputs]]`` (`emg_lens.studies.training.grid.TrainingInput`), the
reference input, ``[train]``, ``[model]`` and ``[stats]``. Parameters only; every mistake is a
`SpecError` naming the key and what would be accepted, and every architecture × input model is
built once before anything trains (`check_models`).

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, ClassVar, cast

from emg_lens._hints import checked
from emg_lens.config import PRESETS, EncoderConfig, config_for_data
from emg_lens.data.datasets import available_subjects, data_source, dataset_preprocess
from emg_lens.data.formats.ninapro_db2 import EXERCISES
from emg_lens.data.preprocess import PreprocessSpec
from emg_lens.data.registry import DATASETS, DatasetInfo, dataset_info
from emg_lens.data.synthetic.emg_acc import SyntheticSpec
from emg_lens.errors import (
    ArgumentError,
    ConfigError,
    EmgLensError,
    SpecError,
    check_choice,
    check_int,
    check_number,
    check_seed,
)
from emg_lens.models import CLASSIFIERS, MODEL_CLASSES
from emg_lens.stats.metrics import PREDICTION_METRICS
from emg_lens.studies.spec_base import Spec, StatsSpec, file_key, is_none
from emg_lens.studies.training.grid import AXES_PER_ELECTRODE, TrainingCell, TrainingInput
from emg_lens.studies.validate import (
    check_list,
    check_subjects,
    check_table,
    refuse_repeats,
    refuse_unknown,
)
from emg_lens.train import TrainConfig

KIND = "training"
ARCHITECTURES = MappingProxyType({name: MODEL_CLASSES[name] for name in CLASSIFIERS})
"""The classifiers a training study can train, by class name (TinyMyo is fine-tuned instead)."""

# Derived from the data, so not settable in [model]; seed comes from [train].
DERIVED_MODEL_FIELDS = ("modalities", "n_classes", "n_samples", "n_ctx", "seed")
TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig) if f.name != "progress")
DATA_OVERRIDES = ("dataset", "root", "subjects", "segment", "window", "step", "exercises")
TRAIN_OVERRIDES = ("epochs", "lr", "batch_size", "seed", "preset")


def _dataset_info(dataset: Any) -> DatasetInfo:
    """The registry entry of ``data.dataset``; an unknown name is a `SpecError` listing the
    accepted ones."""
    try:
        return dataset_info(dataset, use="recordings")
    except ArgumentError:
        raise SpecError(f"data.dataset = {dataset!r}; accepted: {list(DATASETS)}") from None


def _pairs_table(pairs: tuple[tuple[str, Any], ...], spec: Any) -> dict[str, Any]:
    return dict(pairs)


@dataclass(frozen=True)
class TrainingData(Spec):
    """``[data]``: the dataset, its subjects and the windowing (`emg_lens.data.datasets`).
    ``subjects=None`` means every subject found (``subjects = "all"``); ``synthetic`` holds
    `SyntheticSpec` fields for ``dataset = "synthetic"``; ``exercises`` is for NinaPro DB2.

    >>> data = TrainingData.from_dict({"subjects": [1, 2], "segment": [0.5, 1.5]})
    >>> data.montage(), data.electrodes(), data.source()["preprocess"]["segment"]
    ({'emg': 12, 'acc': 36}, {'emg': 12, 'acc': 12}, (0.5, 1.5))
    """

    WHERE: ClassVar[str] = "data"

    subjects: tuple[int, ...] | None = field(
        metadata=file_key(dump=lambda subjects, spec: "all" if subjects is None else list(subjects))
    )
    dataset: str = "synthetic"
    root: str | None = field(default=None, metadata=file_key(omit=is_none))
    segment: str | tuple[float, float] = PreprocessSpec.segment
    window: int = PreprocessSpec.window
    step: int = cast(int, PreprocessSpec.step)  # its default, 50 (None: no study's step)
    exercises: tuple[str, ...] = ("B",)
    synthetic: tuple[tuple[str, Any], ...] = field(
        default=(), metadata=file_key(dump=_pairs_table, omit=lambda pairs, spec: not pairs)
    )

    def _check(self) -> None:
        self.source()  # PreprocessSpec and SyntheticSpec check their fields

    @classmethod
    def _parse(cls, data: dict[str, Any], where: str) -> dict[str, Any]:
        dataset = data.get("dataset", cls.dataset)
        root = data.get("root")
        if _dataset_info(dataset).needs_root == (root is None):
            on_disk = [name for name in DATASETS if dataset_info(name).needs_root]
            why = f"files ({on_disk}) need the folder holding them; synthetic data takes none"
            raise SpecError(f"data.root = {root!r}: {why}")
        subjects = data.get("subjects")
        if subjects != "all":
            subjects = check_subjects(subjects, 'data.subjects (a list of them, or "all")', 1)
        segment = data.get("segment", cls.segment)
        if isinstance(segment, list):
            accepted = "transient, steady, full or [start_s, stop_s] seconds into each repetition"
            if len(segment) != 2:
                raise SpecError(f"data.segment = {segment!r}; accepted: {accepted}")
            segment = tuple(
                check_number(v, "data.segment", accepted, error=SpecError) for v in segment
            )
        exercises = data.get("exercises", list(cls.exercises))
        if not isinstance(exercises, list) or not exercises or not set(exercises) <= {*EXERCISES}:
            raise SpecError(f"data.exercises = {exercises!r}; accepted: lists of {list(EXERCISES)}")
        synthetic = check_table(data.get("synthetic", {}), "data.synthetic")
        if "n_subjects" in synthetic and subjects != "all":
            raise SpecError('data.synthetic.n_subjects is set by data.subjects, unless "all"')
        return {
            "subjects": None if subjects == "all" else subjects,
            "dataset": dataset,
            "root": None if root is None else str(root),
            "segment": segment,
            "window": check_int(data.get("window", cls.window), "data.window", 1, error=SpecError),
            "step": check_int(data.get("step", cls.step), "data.step", 1, error=SpecError),
            "exercises": tuple(exercises),
            "synthetic": tuple(sorted(synthetic.items())),
        }

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
                synthetic=None
                if _dataset_info(self.dataset).needs_root
                else self._synthetic_spec(),
                preprocess=dataset_preprocess(
                    self.dataset, segment=self.segment, window=self.window, step=self.step
                ),
                exercises=self.exercises,
            )
        except (ConfigError, TypeError) as exc:
            raise SpecError(f"[data]: {exc}") from exc

    def montage(self) -> dict[str, int | None]:
        """Channels per modality that the dataset's loader returns (None: read from the file),
        known before any file is read, so a spec is checked without loading data (the
        dataset's registry entry says)."""
        return _dataset_info(self.dataset).montage(self.source())

    def electrodes(self) -> dict[str, int | None]:
        """`montage` in electrodes (an ACC electrode is its 3 axes)."""
        return {
            m: None if n is None else n // AXES_PER_ELECTRODE.get(m, 1)
            for m, n in self.montage().items()
        }


def _train_table(train: TrainConfig, spec: Any) -> dict[str, Any]:
    """The file's ``[train]``: the recipe's keys and the preset."""
    return {**{k: getattr(train, k) for k in TRAIN_KEYS}, "preset": spec.preset}


@checked
@dataclass(frozen=True)
class TrainingStudySpec(Spec):
    """A whole training study (see the module docstring); parameters only."""

    KIND: ClassVar[str] = KIND
    # every cell's value depends on the data (not which subjects), training, model sizes and
    # metric alone: subjects, architectures and inputs can be added to a stored study, and its
    # statistics changed, without training anything again
    UNHASHED = (
        *("kind", "name", "architectures", "inputs", "reference", "stats", "description"),
        "data.subjects",
    )

    name: str
    data: TrainingData
    architectures: tuple[str, ...]
    inputs: tuple[TrainingInput, ...]
    reference: str
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(progress=False), metadata=file_key(dump=_train_table)
    )
    preset: str = field(default="demo", metadata=file_key(within="train"))
    # EncoderConfig overrides for every architecture
    model: tuple[tuple[str, Any], ...] = field(default=(), metadata=file_key(dump=_pairs_table))
    metric: str = "accuracy"
    stats: StatsSpec = field(
        default_factory=StatsSpec,
        metadata=file_key(dump=lambda s, spec: {"test": s.test, "correction": s.correction}),
    )
    description: str = ""

    def _check(self) -> None:
        for arch in self.architectures:  # every config must build, before anything trains
            for inp in self.inputs:
                self.model_config(arch, inp.shape(self.data.montage()), 2, self.data.window)

    @classmethod
    def _parse(cls, data: dict[str, Any], where: str) -> dict[str, Any]:
        metric = data.get("metric", "accuracy")
        if metric not in PREDICTION_METRICS:
            # a training study compares test scores of trained models: decisions, not logits
            accepted = list(PREDICTION_METRICS)
            raise SpecError(f"metric = {metric!r}; a training study scores predictions: {accepted}")
        train_data = TrainingData.from_dict(data.get("data"))
        archs = list(ARCHITECTURES)
        architectures = check_list(data.get("architectures"), "architectures", f"a list of {archs}")
        for i, arch in enumerate(architectures):
            check_choice(arch, archs, f"architectures[{i}]", SpecError)
        refuse_repeats("architectures", architectures)
        raw = check_list(data.get("inputs"), "[[inputs]]", "at least one")
        electrodes = train_data.electrodes()
        inputs = tuple(
            TrainingInput.from_dict(d, where=f"inputs[{i}]", electrodes=electrodes)
            for i, d in enumerate(raw)
        )
        names = [i.name for i in inputs]
        refuse_repeats("inputs names", names)
        reference = data.get("reference")
        if reference not in names:
            raise SpecError(f"reference = {reference!r} is not among the inputs; accepted: {names}")
        train, preset = cls._train(data.get("train", {}))
        model = check_table(data.get("model", {}), "model")
        known = {f.name for f in fields(EncoderConfig)} - set(DERIVED_MODEL_FIELDS)
        refuse_unknown("model", model, known)
        stats = check_table(data.get("stats", {}), "stats")
        for key, why in (
            ("family", "each architecture's comparisons with the reference input are one family"),
            ("claims_test", "they declare no claims"),
        ):
            if key in stats:
                raise SpecError(
                    f"stats.{key} is not a key of training studies: {why}; accepted: test, "
                    "correction"
                )
        return {
            "data": train_data,
            "architectures": tuple(architectures),
            "inputs": inputs,
            "reference": reference,
            "train": train,
            "preset": preset,
            "model": tuple(sorted(model.items())),
            "metric": metric,
            "stats": StatsSpec.from_dict(stats),
        }

    @staticmethod
    def _train(data: Any) -> tuple[TrainConfig, str]:
        data = dict(check_table(data, "train"))
        refuse_unknown("train", data, {*TRAIN_KEYS, "preset"})
        preset = data.pop("preset", "demo")
        check_choice(preset, sorted(PRESETS), "train.preset", SpecError)
        check_seed(data.get("seed", 0), "train.seed", SpecError)
        try:
            return TrainConfig(**data, progress=False), preset
        except (ConfigError, TypeError) as exc:
            raise SpecError(f"[train]: {exc}") from exc

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> TrainingStudySpec:
        """The spec with ``[data]`` keys (``dataset``, ``root``, ``subjects``, ``segment``,
        ``window``, ``step``, ``exercises``) and ``[train]`` keys (``epochs``, ``lr``,
        ``batch_size``, ``seed``, ``preset``) replaced; ``None`` values are ignored (unset
        command-line flags)."""
        given = {k: v for k, v in (overrides or {}).items() if v is not None}
        unknown = sorted(set(given) - {*DATA_OVERRIDES, *TRAIN_OVERRIDES})
        if unknown:
            accepted = [*DATA_OVERRIDES, *TRAIN_OVERRIDES]
            raise SpecError(f"unknown override(s) {unknown}; accepted: {accepted}")
        out = self.to_dict()
        for key, value in given.items():
            section = "data" if key in DATA_OVERRIDES else "train"
            out[section][key] = list(value) if isinstance(value, tuple) else value
        if given.get("dataset") == "synthetic":
            out["data"].pop("root", None)
        return TrainingStudySpec.from_dict(out)

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
            raise SpecError(f"{architecture}, preset {self.preset!r} and [model]: {exc}") from exc


@checked
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
            shape = inp.shape(montage)
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
