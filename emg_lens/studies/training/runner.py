"""`run_training_study`, subject by subject. Under ``torchrun`` the ranks share the subjects as
an ablation study's do, each model trained on one process (no gradient averaging across ranks):
a cell's result does not depend on how many processes ran the study."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from functools import cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from emg_lens.checkpoints import source_digest
from emg_lens.data.datasets import load_subject
from emg_lens.data.placement import has_placement
from emg_lens.data.preprocess import SubjectData
from emg_lens.errors import SpecError, StudyError, checked
from emg_lens.provenance import arrays_digest, code_digest
from emg_lens.stats.metrics import score_predictions
from emg_lens.studies.check import text_table
from emg_lens.studies.kinds import StudyKind, load_as
from emg_lens.studies.store import WAIT_TIMEOUT, CellStore
from emg_lens.studies.training.grid import TrainingCell, electrode_counts, select_channels
from emg_lens.studies.training.result import CHANCE_FIELDS, TrainingStudyResult
from emg_lens.studies.training.spec import ARCHITECTURES, TrainingStudySpec, check_models
from emg_lens.train import accuracy, fit, predict
from emg_lens.train.baseline import feature_baseline
from emg_lens.train.distributed import torchrun_process


def _provenance(digest: Callable[[int], str]) -> Callable[[int], dict[str, Any]]:
    """What a training cell is computed from, by subject (each computed once): the subject's
    data (``digest`` of its number: of the files a source reads, and how its folder numbers
    them; or of the arrays given), the emg_lens code, torch's version and threads (a training
    is reproducible at equal threads only). A stored cell is reused only when all of them are
    the same (`emg_lens.studies.store.CellStore`)."""
    code = code_digest()
    return cache(
        lambda subject: {
            "data": digest(subject),
            "code": code,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        }
    )


def _train_cell(
    spec: TrainingStudySpec,
    cell: TrainingCell,
    data: SubjectData,
    progress: bool,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """Select the cell's electrodes, train its model (on ``device``, if given) on the training
    windows and score the test windows with ``spec.metric``, beside the per-channel feature
    baseline's score on the same electrodes (``baseline``,
    `emg_lens.train.baseline.feature_baseline`); a JSON-able dict (the stored cell)."""
    counts = electrode_counts(data)
    electrodes = cell.input.draw(counts, cell.subject, cell.trial, spec.train.seed)
    chosen = select_channels(data, electrodes)
    cfg = spec.model_config(
        cell.architecture, chosen.modalities, chosen.n_classes, chosen.X_train.shape[-1]
    )
    model = ARCHITECTURES[cell.architecture](cfg)
    if device is not None:
        model.to(device)
    start = time.perf_counter()
    train = dataclasses.replace(spec.train, progress=progress)
    # A training that diverges raises StudyError naming the subject and the cell:
    # nothing is scored or stored, and no table is written.
    what = f"subject {cell.subject} {cell.key}"
    history = fit(model, chosen.X_train, chosen.y_train, train, desc=what)
    seconds = time.perf_counter() - start
    y = np.asarray(chosen.y_test)
    scores = score_predictions(
        predict(model, chosen.X_test), y, chosen.n_classes, spec.metric, chosen.test_trials
    )
    # the per-channel feature baseline on the same electrodes and split, in the same metric
    base = score_predictions(feature_baseline(chosen).predictions, y, chosen.n_classes, spec.metric)
    return {
        **scores,
        "baseline": base["value"],
        # the chance check's: did it learn its training windows (`emg_lens.stats.chance`)
        "train_accuracy": accuracy(model, chosen.X_train, chosen.y_train),
        "electrodes": electrodes,
        "train_seconds": seconds,
        "final_loss": history.epoch_loss[-1],
    }


def _electrodes_text(electrodes: Mapping[str, list[int]], montage: list[str]) -> str:
    """``"emg:5,10 acc:3"``, modalities in montage order: the store writes JSON with sorted
    keys, so a cell read back must not list its modalities in another order."""
    order = sorted(electrodes, key=lambda m: montage.index(m) if m in montage else len(montage))
    return " ".join(f"{m}:{','.join(map(str, electrodes[m]))}" for m in order)


@checked
def run_training_study(
    spec: TrainingStudySpec | str | Path | dict,
    *,
    out_dir: str | Path | None = None,
    progress: bool = True,
    overrides: Mapping[str, Any] | None = None,
    data: Mapping[int, SubjectData] | None = None,
    device: str | torch.device | None = None,
    wait_timeout: float = WAIT_TIMEOUT,
) -> TrainingStudyResult | None:
    """Train and score every cell of a training study.

    ``overrides`` replaces ``[data]``/``[train]`` keys (`TrainingStudySpec.with_overrides`).
    ``data`` gives the subjects' windows directly instead of loading them from ``[data]``,
    which they should match (the store keys cells by the spec, not by the arrays). With
    ``out_dir`` every cell is stored as it finishes and a rerun trains only the missing cells.
    ``device``: where the models train (default: the preset's ``cfg.device``). Under
    ``torchrun`` ``out_dir`` is required, rank 0 gives up after ``wait_timeout`` seconds
    without a new cell of the others (a `StudyError` naming the subjects missing), and the
    other ranks return None.

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
    spec = load_as(spec, TrainingStudySpec).with_overrides(overrides)
    check_models(spec)
    if data is not None and spec.data.subjects is None:
        subjects = sorted(data)
    else:
        subjects = spec.subject_ids()
    if data is not None:
        missing = sorted(set(subjects) - set(data))
        if missing:
            raise SpecError(f"data.subjects {missing} are not in the given data ({sorted(data)})")
    ranks = torchrun_process()
    if ranks.is_distributed and out_dir is None:
        why = "its ranks share their cells only through the store"
        fix = "give out_dir (`study run --out`) on a filesystem every rank can reach"
        where = f"under torchrun (WORLD_SIZE={ranks.world_size})"
        raise StudyError(
            f"training study {spec.name!r} runs {where} without an out_dir: {why}; {fix}"
        )
    device = None if device is None else torch.device(device)
    store = CellStore(out_dir, spec.fingerprint()) if out_dir is not None else None
    # a subject's windows, and the digest of what they are read from
    source: dict[str, Any] | None = None
    read: Callable[[int], SubjectData]
    digest: Callable[[int], str]
    if data is None:
        source = spec.data.source()
        read, digest = partial(load_subject, source), partial(source_digest, source)
    else:
        read, digest = data.__getitem__, lambda subject: arrays_digest(data[subject])
    loaded: dict[int, SubjectData] = {}  # the current subject only
    computed: dict[tuple[int, str], dict] = {}
    provenance = _provenance(digest)
    bar = tqdm(spec.cells(ranks.shard(subjects)), desc=f"study {spec.name}", disable=not progress)
    for cell in bar:
        known = None if store is None else provenance(cell.subject)
        if store is not None and store.get(cell.subject, cell.key, known) is not None:
            continue  # stored whole by an earlier run from the same data, code and threads
        if cell.subject not in loaded:
            loaded = {cell.subject: read(cell.subject)}
        bar.set_postfix(subject=cell.subject, model=cell.architecture, input=cell.input.name)
        trained = _train_cell(spec, cell, loaded[cell.subject], progress, device)
        if store is not None:
            store.put(cell.subject, cell.key, trained, known)
        computed[cell.subject, cell.key] = trained
    if not ranks.is_main:
        return None  # rank 0 writes the result
    cells = spec.cells(subjects)
    if store is not None and ranks.is_distributed:
        ordered = sorted(subjects)
        store.wait_for(
            {s: [c.key for c in cells if c.subject == s] for s in subjects},
            store.has,
            timeout=wait_timeout,
            owner=lambda s: f"rank {ordered.index(s) % ranks.world_size} of {ranks.world_size}",
        )
    montage = list(spec.data.montage())
    rows = []
    for cell in cells:
        stored = computed.get((cell.subject, cell.key))
        if stored is None and store is not None:  # by an earlier run, or another rank
            stored = store.get(cell.subject, cell.key)
        if stored is None:
            raise StudyError(f"subject {cell.subject}: cell {cell.key} is not in the store")
        rows.append(
            {
                "subject": cell.subject,
                "architecture": cell.architecture,
                "input": cell.input.name,
                "trial": cell.trial,
                "electrodes": _electrodes_text(stored["electrodes"], montage),
                "metric": spec.metric,
                "value": stored["value"],
                "baseline": stored.get("baseline"),  # None in a cell stored before it existed
                "train_seconds": stored["train_seconds"],
                "key": cell.key,
                # the chance check's (None in a cell stored before they were kept)
                **{k: stored.get(k) for k in CHANCE_FIELDS},
            }
        )
    result = TrainingStudyResult.from_table(spec, pd.DataFrame(rows))
    # whether the data have an electrode placement (the chance check's warning reads it)
    windows = [None] if data is None else data.values()
    result.placement = any(has_placement(source, d) for d in windows)
    result.recomputed = len(computed)  # on this rank; under torchrun the others trained theirs
    result.reused = len(cells) - result.recomputed
    if out_dir is not None:
        result.save(out_dir)
    return result


def check_training(
    spec: TrainingStudySpec,
    *,
    overrides: Mapping[str, Any] | None = None,
    preset: str | None = None,
    study_file: str | Path | None = None,
) -> str:
    """What ``emg-lens study check`` prints of a training study: its data, the models per
    subject and each architecture x input model built once (`check_models`), with
    ``overrides`` (and ``preset``, a ``[train]`` key here) applied. ``study_file`` is not
    read: a training study names no code.

    >>> spec = {"kind": "training", "name": "t", "data": {"subjects": [1, 2]},
    ...         "architectures": ["MultimodalMLP"], "reference": "e",
    ...         "inputs": [{"name": "e", "modalities": ["emg"]}]}
    >>> print(check_training(load_as(spec, TrainingStudySpec), preset="tiny").splitlines()[0])
    t: training study on synthetic subjects [1, 2]; 1 models per subject (preset 'tiny', 40 epochs); reference input 'e'
    """  # noqa: E501
    given = {**(overrides or {}), **({} if preset is None else {"preset": preset})}
    spec = spec.with_overrides(given)
    rows = check_models(spec)
    subjects = "all" if spec.data.subjects is None else list(spec.data.subjects)
    head = (
        f"{spec.name}: training study on {spec.data.dataset} subjects {subjects}; "
        f"{len(spec.cells([0]))} models per subject (preset {spec.preset!r}, "
        f"{spec.train.epochs} epochs); reference input {spec.reference!r}"
    )
    columns = ["architecture", "input", "trials", "channels", "tokens", "parameters"]
    return f"{head}\n{text_table(rows, columns)}"


KIND = StudyKind(
    spec=TrainingStudySpec,
    run=run_training_study,
    check=check_training,
    refuses={
        "models": "which trains its own models",
        "allow_code": "which names no code to run",
        "layers": "whose models' sizes come from its preset and [model]",
        "heads": "whose models' sizes come from its preset and [model]",
    },
)
"""The training kind (`emg_lens.studies.kinds`)."""
