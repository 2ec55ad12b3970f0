"""A study's subjects: each subject's model (from a checkpoint of the models folder,
`emg_lens.model_folder`) and evaluation data loaded, what the chance check knows of each, and what a
subject's cells are computed from (their provenance). The ablation and discovery kinds share
them, and so do ``emg-lens train``, ``evaluate``, ``probe`` and ``features``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import torch

from emg_lens.checkpoints import (
    load_checkpoint_data,
    read_checkpoint_info,
    source_digest,
    user_modules_of,
    warn_if_data_changed,
)
from emg_lens.data.placement import has_placement
from emg_lens.data.preprocess import SubjectData
from emg_lens.data.registry import DATASETS, dataset_info
from emg_lens.errors import CheckpointError, EmgLensError, SpecError
from emg_lens.provenance import (
    arrays_digest,
    checkpoint_digest,
    model_digest,
    training_digest,
)
from emg_lens.stats.chance import TrialScore
from emg_lens.train import predict
from emg_lens.train.baseline import feature_baseline
from emg_lens.train.model_code import code_files, files_key, stale_code
from emg_lens.user_code import ModuleBuilder, load_model


@dataclass
class Subject:
    """One subject's model and the data it is scored on."""

    model: Any
    data: SubjectData


def load_entry(
    entry: Any, device: str | torch.device | None = None, modules: ModuleBuilder | None = None
) -> Subject:
    """A subject's model (on ``device``, if given) and evaluation data, from a checkpoint
    folder or a ``(model, SubjectData)`` pair: what `run_study` and the discovery study load.
    ``modules`` builds the user's own modules of a checkpoint that holds some
    (`emg_lens.user_code.load_model`)."""
    if isinstance(entry, tuple):
        model, data = entry
        if device is not None:  # moved unless every tensor and its cfg.device are there already
            target = torch.empty(0, device=device).device  # "cuda": the current GPU, as .to reads
            tensors = chain(model.parameters(), model.buffers())
            placed = str(getattr(getattr(model, "cfg", None), "device", None)) == str(target)
            if not (placed and all(t.device == target for t in tensors)):
                model = model.to(device)
        return Subject(model, data)
    metadata = read_checkpoint_info(entry)["metadata"]
    subject = metadata.get("subject", Path(entry).name.removeprefix("subject_"))
    try:
        model = load_model(entry, modules, device=None if device is None else str(device))
    except CheckpointError as exc:  # one broken subject: say which, in which folder
        raise CheckpointError(f"subject {subject} (folder {entry}): {exc}") from exc
    return Subject(model, load_checkpoint_data(entry))


def known_of(entry: Any) -> dict[str, Any]:
    """What the chance check knows of a subject's model beyond its scores, to name the fault
    of one that is not above chance (`emg_lens.stats.chance.TrialScore`): its
    ``train_accuracy`` (a checkpoint's), whether its data have a ``placement``, the feature
    baseline's ``baseline_accuracy`` (recorded by a checkpoint, computed for in-memory data)
    and, in memory, the data's trial ``unit``.

    >>> import numpy as np
    >>> from emg_lens.data import SubjectData
    >>> X, y = np.zeros((2, 1, 4)), np.array([0, 1])
    >>> known_of((None, SubjectData.from_windows({"emg": 1}, (X, y), (X, y))))
    {'train_accuracy': None, 'placement': False, 'baseline_accuracy': 0.5, 'unit': 'window'}
    """
    if isinstance(entry, tuple):
        data = entry[1]
        try:  # cheap (a logistic regression on two features per channel)
            baseline = feature_baseline(data).value
        except EmgLensError:  # windows it cannot read (one class, ...): no baseline
            baseline = None
        known = {"train_accuracy": None, "placement": has_placement(data=data)}
        return {**known, "baseline_accuracy": baseline, "unit": data.meta.get("trial_unit")}
    metadata = read_checkpoint_info(entry)["metadata"]
    train = (metadata.get("metrics") or {}).get("train_accuracy")
    baseline = (metadata.get("baseline") or {}).get("value")  # recorded when it was trained
    return {
        "train_accuracy": None if train is None else float(train),
        "placement": has_placement(metadata.get("data_source")),
        "baseline_accuracy": None if baseline is None else float(baseline),
    }


def class_labels(entries: Mapping[int, Any]) -> tuple[list[str] | None, list | None, Any]:
    """The class labels every subject shares as figures print them (a checkpoint's
    ``classes``, or the in-memory `SubjectData`'s, with the movement's name where the dataset
    registry knows it), those labels, and the first subject's data source (a checkpoint's;
    None in memory); ``(None, None, None)`` when the subjects' labels differ.

    >>> import numpy as np
    >>> from emg_lens.data import SubjectData
    >>> data = SubjectData.from_windows({"emg": 1}, (np.zeros((2, 1, 4)), np.array([0, 1])))
    >>> class_labels({1: (None, data), 2: (None, data)})
    (['0', '1'], [0, 1], None)
    """
    labels: list[list | None] = []
    sources: list[Any] = []
    for entry in entries.values():
        if isinstance(entry, tuple):
            labels.append(list(entry[1].classes))
            sources.append(None)
        else:
            metadata = read_checkpoint_info(entry)["metadata"]
            labels.append(metadata.get("classes"))
            sources.append(metadata.get("data_source"))
    if not labels or labels[0] is None or any(other != labels[0] for other in labels):
        return None, None, None
    names = {}
    if isinstance(sources[0], Mapping) and sources[0].get("dataset") in DATASETS:
        names = dataset_info(sources[0]["dataset"]).gestures_of(sources[0])
    text = [f"{label} {names[label]}" if label in names else str(label) for label in labels[0]]
    return text, labels[0], sources[0]


def cell_score(cell: Mapping[str, Any], **known: Any) -> TrialScore:
    """The chance check's score of a stored cell, or of a table's row of one
    (`TrialScore.from_cell`, ``known``: what `known_of` says of its model): over its trials
    where it holds their counts, else over its windows (a cell stored before trials were
    counted, whose row holds None there).

    >>> cell_score({"class_correct": [3, 4], "class_total": [5, 5], "trial_total": None})
    ... # doctest: +ELLIPSIS
    TrialScore(correct=7, class_counts=(5, 5), trials_correct=7, trial_counts=(5, 5), ...)
    """
    if not isinstance(cell.get("trial_total"), list | tuple):
        cell = {k: v for k, v in cell.items() if k not in ("trial_correct", "trial_total")}
    return TrialScore.from_cell(cell, **known)


def checkpoint_score(
    path: str | Path,
    data: SubjectData,
    model: Any = None,
    *,
    device: str | None = None,
    modules: ModuleBuilder | None = None,
) -> TrialScore:
    """The chance check's score of the checkpoint at ``path`` on ``data``'s test windows,
    over their trials (`emg_lens.stats.chance.TrialScore`), with what `known_of` says of
    it: what ``emg-lens train`` and ``evaluate`` test. ``model``: the checkpoint's, already
    loaded (else it is loaded onto ``device``, its user's modules made by ``modules``)."""
    if model is None:
        model = load_model(path, modules, device=device)
    return TrialScore.from_predictions(
        predict(model, data.X_test),
        data.y_test,
        data.test_trials,
        data.n_classes,
        unit=data.meta.get("trial_unit"),
        **known_of(path),
    )


def _check_no_hooks(model: Any) -> None:
    """Refuse an in-memory model with TransformerLens hooks left on it: every cell would hold
    what they do, which no digest records (a study adds and removes its own)."""
    hooked = [
        name
        for name, point in getattr(model, "hook_dict", {}).items()
        if getattr(point, "fwd_hooks", None) or getattr(point, "bwd_hooks", None)
    ]
    if hooked:
        on = ", ".join(hooked[:4]) + (" ..." if len(hooked) > 4 else "")
        why = "a study's cells would hold what they do, which nothing records"
        fix = "remove them (model.reset_hooks(including_permanent=True)), give them as hook = ..."
        raise SpecError(f"the model has hooks on {on}: {why}; {fix}")


def entry_provenance(
    spec: Any,
    entry: Any,
    subject_id: int,
    code: str,
    modules: ModuleBuilder | None = None,
    fit: bool = False,
) -> dict[str, Any]:
    """What a subject's cells are computed from (docs/DESIGN.md §10 lists it): digests of the
    model and the evaluation data, ``spec``'s ``return_type``, the code, and for a checkpoint
    holding the user's own modules their builder (``modules``); ablation and discovery studies
    add what else their cells depend on. ``fit``: also, under ``"fit"``, the digest of an
    in-memory subject's training windows (`training_digest`), which an eraser fitted on them
    depends on (a checkpoint's data digest covers them)."""
    digests: dict[str, Any]  # digests of the model, its data and code
    if isinstance(entry, tuple):
        model, data = entry
        _check_no_hooks(model)
        # the code an in-memory model computes with, beyond emg_lens's (an attached or the
        # user's module, edited between two runs); None for a class with no file (a notebook)
        files = code_files(model)
        if files is not None and (stale := stale_code(model, files)) is not None:
            raise SpecError(f"{stale}: its cells would be stored under code it does not run")
        key = None if files is None else files_key(files)
        digests = {"model": model_digest(model), "data": arrays_digest(data), "model_code": key}
        if fit:
            digests["fit"] = training_digest(data)
    else:
        info = read_checkpoint_info(entry)
        metadata = info["metadata"]
        source = metadata.get("data_source")
        if source is None:
            raise SpecError(f"{entry}: the checkpoint records no data source to evaluate on")
        subject = metadata.get("subject", subject_id)
        digests = {"model": checkpoint_digest(entry), "data": source_digest(source, subject)}
        warn_if_data_changed(metadata, subject, digests["data"])
        if modules is not None and user_modules_of(info):
            digests["modules"] = modules.provenance
    return {**digests, "return_type": spec.return_type, "code": code}
