"""`run_study`: expand a study grid, decide which cells need computing, compute, store, test.

Per subject, the runner plans the grid and its cells' provenance (`plan_subject`), reads the
stored cells that still match, claims the subject against other processes sharing the store
(``torchrun``'s ranks: docs/guide/scale-out.md), and has `emg_lens.studies.ablation.evaluate`
compute the rest; then it builds the result (`StudyResult`), the statistics on the CPU.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from emg_lens.data.preprocess import SubjectData
from emg_lens.errors import StudyError, checked
from emg_lens.model_folder import study_models
from emg_lens.provenance import code_digest
from emg_lens.stats.units import TRIAL_WINDOW_FIELDS
from emg_lens.studies.ablation.check import check_ablation
from emg_lens.studies.ablation.erasure import ERASER_FIELDS
from emg_lens.studies.ablation.evaluate import evaluate_subject
from emg_lens.studies.ablation.plan import Plan, plan_subject
from emg_lens.studies.ablation.planted import planted_classes
from emg_lens.studies.ablation.result import TRIAL_FIELDS, StudyResult
from emg_lens.studies.ablation.spec import StudySpec
from emg_lens.studies.ablation.stacking import ConditionForm
from emg_lens.studies.kinds import StudyKind, load_as
from emg_lens.studies.store import POLL_INTERVAL, WAIT_TIMEOUT, CellStore, check_wait_timeout
from emg_lens.studies.subjects import class_labels, known_of, load_entry
from emg_lens.train.distributed import torchrun_process
from emg_lens.user_code import StudyCode, require_builder


@checked
def run_study(
    spec: StudySpec | str | Path | dict,
    *,
    models: str | Path | Mapping[int, tuple[Any, SubjectData]] | None = None,
    out_dir: str | Path | None = None,
    batch_size: int = 256,
    verify: bool = True,
    progress: bool = True,
    wait_timeout: float = WAIT_TIMEOUT,
    allow_code: bool | Iterable[str] = False,
    device: str | torch.device | None = None,
    condition_form: str = "auto",
) -> StudyResult | None:
    """Run a study. ``models`` overrides ``spec.models`` (a folder of ``subject_<N>/``
    checkpoints, ``"demo"``, or ``{subject: (model, SubjectData)}`` for notebooks and tests).

    With ``out_dir`` every cell is stored with its provenance as it finishes and a rerun
    recomputes only the cells whose provenance changed (`emg_lens.studies.store`); processes
    sharing ``out_dir`` wait up to ``wait_timeout`` seconds (>= 0; ``inf``: no limit) for a
    subject another one computes; under ``torchrun`` ``out_dir`` is required and the ranks
    other than 0 return None. The result's ``reused``, ``recomputed`` and ``stale`` count the
    cells read, computed, and computed to replace a stored cell of other provenance.

    ``device``: where the forward passes run (None: where each model is; checkpoints load onto
    it). ``condition_form``: how a layer's conditions run (`emg_lens.studies.ablation.stacking`);
    the cells are the same either way, and ``condition_forms`` records each subject's form.
    Python files the study names (``hook``, ``modules``) run only with consent, ``allow_code``
    (`emg_lens.user_code`), else a `SpecError` lists them before anything runs; checkpoints
    holding the user's own modules need the study's ``modules`` (else a `CheckpointError`, up
    front). A study of another kind is refused.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.data import SubjectData
    >>> from emg_lens.models import IsoNet
    >>> import numpy as np, tempfile
    >>> cfg = EncoderConfig.preset("tiny", seed=0)
    >>> X, y = np.zeros((4, cfg.n_channels, cfg.n_samples), "float32"), np.arange(4)
    >>> data = SubjectData(1, dict(cfg.modalities), list(range(cfg.n_classes)),
    ...     X, y, np.full(4, 1), X, y, np.full(4, 2))
    >>> spec = {"name": "doc", "models": "unused", "layers": {"modes": ["all"]},
    ...         "interventions": [{"name": "cross", "edges": "cross_modal"}]}
    >>> out = tempfile.mkdtemp()
    >>> first = run_study(spec, models={1: (IsoNet(cfg), data)}, out_dir=out, progress=False)
    >>> again = run_study(spec, models={1: (IsoNet(cfg), data)}, out_dir=out, progress=False)
    >>> (first.reused, first.recomputed), (again.reused, again.recomputed)
    ((0, 2), (2, 0))
    """
    spec = load_as(spec, StudySpec)
    wait_timeout = check_wait_timeout(wait_timeout)
    ConditionForm(condition_form)  # a rule it does not know is refused before anything runs
    entries = study_models(spec.models if models is None else models, spec.subjects)
    # The study's code, located, hashed and consented to (or refused) before any of it runs;
    # checkpoints holding the user's own modules need its builder: refused up front too
    files = spec.code_files()
    study_code = StudyCode.load(files, allow_code)
    require_builder([e for e in entries.values() if not isinstance(e, tuple)], study_code.modules)
    ranks = torchrun_process()
    if ranks.is_distributed and out_dir is None:
        raise StudyError(
            f"study {spec.name!r} runs under torchrun (WORLD_SIZE={ranks.world_size}) without "
            "an out_dir: its ranks share their cells only through the store; give out_dir "
            "(`study run --out`) on a filesystem every rank can reach"
        )
    device = None if device is None else torch.device(device)
    store = CellStore(out_dir, spec.fingerprint()) if out_dir is not None else None
    code = code_digest() if store is not None else ""
    mine = ranks.shard(entries)
    planned = entries if ranks.is_main else mine  # rank 0 also checks the others' cells
    plans = {s: plan_subject(spec, s, entries[s], store, code, study_code, verify) for s in planned}
    counts = {"reused": 0, "recomputed": 0, "stale": 0}
    forms = {s: ConditionForm(condition_form) for s in mine}  # each decided when computed
    bar = tqdm(total=len(mine), desc=f"study {spec.name}", disable=not progress)
    run = {"batch_size": batch_size, "verify": verify, "device": device}
    done = _compute(spec, {s: plans[s] for s in mine}, store, counts, run, wait_timeout, bar, forms)
    bar.close()
    if not ranks.is_main:
        return None  # rank 0 writes the result
    others = [s for s in entries if s not in done]
    if others:  # the other ranks' subjects, with the provenance they would have here
        assert store is not None  # torchrun's ranks share a store (refused above without)
        ordered = sorted(entries)
        done.update(
            store.wait_for_matching(
                {s: plans[s].provenances for s in others},
                timeout=wait_timeout,
                owner=lambda s: f"rank {ordered.index(s) % ranks.world_size} of {ranks.world_size}",
            )
        )
    rows = []
    for subject_id in entries:
        for metric in spec.metrics:  # one table per metric, from the same cells
            for c in plans[subject_id].conditions:
                cell = done[subject_id][c.key]
                rows.append(
                    {
                        "subject": subject_id,
                        **c.row(),
                        "metric": metric,
                        "value": cell["values"][metric],
                        **{k: cell[k] for k in ("class_correct", "class_total", "structural")},
                        # a cell without them (stored before trials were counted): None
                        **{k: cell.get(k) for k in TRIAL_FIELDS},
                        **{k: cell[k] for k in TRIAL_WINDOW_FIELDS if k in cell},
                        **{k: cell[k] for k in ERASER_FIELDS if k in cell},
                    }
                )
    per_subject = pd.DataFrame(rows)
    text, labels, source = class_labels(entries)  # the planted classes marked in the figures
    known = {s: known_of(entries[s]) for s in entries}
    planted = {} if labels is None else planted_classes(source, labels)
    result = StudyResult.from_table(spec, per_subject, text, planted)
    result.known = known
    result.condition_forms = {s: f.record() for s, f in forms.items() if f.form is not None}
    result.reused, result.recomputed, result.stale = counts.values()
    if out_dir is not None:
        result.save(out_dir)
    return result


def _compute(
    spec: StudySpec,
    plans: dict[int, Plan],
    store: CellStore | None,
    counts: dict[str, int],
    run: dict[str, Any],
    wait_timeout: float,
    bar: Any,
    forms: dict[int, ConditionForm],
) -> dict[int, dict[str, dict]]:
    """The cells of every subject of ``plans``, computed here (`_subject_cells`, ``run``: its
    batch size, whether it verifies, the device) or, for a subject another live process has
    claimed, read once that process has stored them."""
    done: dict[int, dict[str, dict]] = {}
    waiting_since: dict[int, float] = {}
    while len(done) < len(plans):
        for subject_id, plan in plans.items():
            if subject_id in done:
                continue
            cells = _subject_cells(spec, subject_id, plan, store, counts, forms[subject_id], **run)
            if cells is None:  # another live process computes it: come back later
                assert store is not None  # it holds the subject's claim in the store
                if subject_id not in waiting_since:
                    waiting_since[subject_id] = time.monotonic()
                    store.say_waiting(subject_id, wait_timeout)
                continue
            done[subject_id] = cells
            bar.update()
        if store is not None and len(done) < len(plans):  # (without a store none waits)
            for subject_id, since in waiting_since.items():  # given up after wait_timeout
                if subject_id not in done:
                    plan = plans[subject_id]
                    names = {c.key: c.name for c in plan.conditions}
                    store.check_wait(subject_id, plan.provenances, names, since, wait_timeout)
            time.sleep(POLL_INTERVAL)
    return done


def _subject_cells(
    spec: StudySpec,
    subject_id: int,
    plan: Plan,
    store: CellStore | None,
    counts: dict[str, int],
    form: ConditionForm,
    batch_size: int,
    verify: bool,
    device: torch.device | None = None,
) -> dict[str, dict] | None:
    """All cells of one subject: stored ones that match, the rest computed under a claim;
    None when another live process holds the subject's claim."""
    # the subject's stored cells whose provenance matches
    stored = {} if store is None else store.matching(subject_id, plan.provenances)
    if len(stored) == len(plan.conditions):
        counts["reused"] += len(stored)
        return stored
    claim = store.try_claim(subject_id) if store is not None else None
    if store is not None and claim is None:
        return None
    try:
        if store is not None:  # the claim's last holder may have finished
            stored = store.matching(subject_id, plan.provenances)
        todo = [c for c in plan.conditions if c.key not in stored]
        if todo:
            subject = load_entry(plan.entry, device, plan.code.modules)
            fresh = evaluate_subject(
                spec,
                subject,
                todo,
                batch_size=batch_size,
                verify=verify,
                subject_id=subject_id,
                code=plan.code,
                form=form,
            )
            for key, cell in fresh.items():
                if store is not None:
                    counts["stale"] += store.has(subject_id, key)
                    store.put(subject_id, key, cell, plan.provenances[key])
            stored.update(fresh)
        counts["reused"] += len(plan.conditions) - len(todo)
        counts["recomputed"] += len(todo)
        return stored
    finally:
        if store is not None and claim is not None:
            store.release(claim)


KIND = StudyKind(
    spec=StudySpec,
    run=run_study,
    check=check_ablation,
    refuses={
        "overrides": "of trained models: [data] and [train] overrides are for training "
        "studies (kind = 'training')",
    },
)
"""The ablation kind (`emg_lens.studies.kinds`)."""
