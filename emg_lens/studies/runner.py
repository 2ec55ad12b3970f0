"""`run_study`: expand a study grid, evaluate it efficiently, check it, test it, store it.

For each subject the runner builds, per condition, the sequence of per-layer masks it applies
(``None`` where a layer is untouched), and evaluates all sequences as a *prefix tree*: every
distinct prefix of masks is computed once and shared (the unmasked prefix of an ``individual``
condition with the baseline, the masked prefix of ``from_first`` at layer ``l`` with the one at
``l - 1``), and the children of a node run as one batch with a per-row mask. Conditions with
equal effects (``from_first`` at the last layer and ``all``, ...) share one evaluation.

Before a condition's result is accepted, a few windows are run again through the *hooked* path
(``mask_edges`` at ``hook_attn_scores``) and must give the same logits, with every masked entry
of ``hook_pattern`` exactly 0: a mask that did not take effect is an error, not a result.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from emg_lens.checkpoints import load_checkpoint, read_checkpoint_info
from emg_lens.data.datasets import load_subject
from emg_lens.data.preprocess import SubjectData
from emg_lens.edges import EdgeSet, parse
from emg_lens.errors import (
    ArgumentError,
    CheckpointError,
    EmgLensError,
    LayoutError,
    SpecError,
    describe,
)
from emg_lens.hooks import attn_scores_filter, mask_edges, zero_modality
from emg_lens.provenance import (
    arrays_digest,
    checkpoint_digest,
    code_digest,
    model_digest,
    source_digest,
)
from emg_lens.studies.code import require_consent
from emg_lens.studies.grid import BASELINE, Condition, expand_grid
from emg_lens.studies.load import load_spec
from emg_lens.studies.metrics import score_predictions
from emg_lens.studies.result import StudyResult
from emg_lens.studies.spec import StudySpec
from emg_lens.studies.store import CellStore

__all__ = ["StudyError", "find_models", "run_study"]

DEMO_MODELS = Path("runs/demo/models")
VERIFY_WINDOWS = 4


class StudyError(EmgLensError, RuntimeError):
    """A study could not produce a trustworthy result (e.g. a mask did not take effect)."""


@dataclass
class _Subject:
    model: Any
    data: SubjectData


# ----------------------------------------------------------------------------- inputs


def find_models(models: str | Path) -> dict[int, Path]:
    """Checkpoint folders by subject: ``DIR/subject_<N>/`` (or ``"demo"``: the demo's). Every
    ``subject_<N>/`` folder must be a checkpoint: one that is not is an error naming it, never
    a subject silently left out."""
    root = DEMO_MODELS if str(models) == "demo" else Path(models)
    found = {}
    if root.is_dir():
        for path in sorted(p for p in root.glob("subject_*") if p.is_dir()):
            try:
                subject = read_checkpoint_info(path)["metadata"].get("subject")
            except CheckpointError as exc:
                raise CheckpointError(
                    f"models folder {root}: subject folder {path.name}/ is not a usable "
                    f"checkpoint ({exc}); move it out of {root} to leave that subject out"
                ) from exc
            suffix = path.name.removeprefix("subject_")
            if subject is None and not suffix.isdigit():
                raise SpecError(f"{path}: no subject number in its metadata or its name")
            found[int(subject if subject is not None else suffix)] = path
    if not found:
        hint = " (run `emg-lens demo` first)" if str(models) == "demo" else ""
        raise SpecError(f"models: no subject_<N>/ checkpoint folders in {root}{hint}")
    return found


def _subjects(spec: StudySpec, models) -> dict[int, Any]:
    """Subject -> checkpoint path or a ready (model, SubjectData) pair."""
    if isinstance(models, Mapping):
        found = dict(models)
    else:
        found = find_models(models if models is not None else spec.models)
    if spec.subjects is not None:
        missing = sorted(set(spec.subjects) - set(found))
        if missing:
            raise SpecError(f"subjects {missing} have no model; available: {sorted(found)}")
        found = {s: found[s] for s in spec.subjects}
    return found


def _load(entry: Any) -> _Subject:
    if isinstance(entry, tuple):
        return _Subject(*entry)
    metadata = read_checkpoint_info(entry)["metadata"]
    subject = metadata.get("subject", Path(entry).name.removeprefix("subject_"))
    try:
        model = load_checkpoint(entry)
    except CheckpointError as exc:  # one broken subject: say which, in which folder
        raise CheckpointError(f"subject {subject} (folder {entry}): {exc}") from exc
    source = metadata.get("data_source")
    if source is None:
        raise SpecError(f"{entry}: the checkpoint records no data source to evaluate on")
    return _Subject(model, load_subject(source, int(subject)))


# ----------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class _StudyCode:
    """A study's hook files, each run once and only with consent (`emg_lens.studies.code`):
    what each reference names, and the SHA-256 of the bytes that ran, for provenance."""

    targets: dict[str, Any]
    digests: dict[str, str]

    @classmethod
    def load(cls, spec: StudySpec, allow_code: bool) -> _StudyCode:
        files = spec.code_files()  # located and hashed; refused here before anything runs
        require_consent(files, allow_code=allow_code)
        targets = {f.ref: spec.resolve_hook(f, allow_code=allow_code) for f in files}
        return cls(targets, {f.ref: f.sha256 for f in files})


def _edges_of(condition: Condition, code: _StudyCode) -> EdgeSet | Any:
    intervention = condition.intervention
    if intervention.edges is not None:
        return parse(intervention.edges)
    return code.targets[intervention.hook]


class _MaskTable:
    """Distinct compiled masks, by content, so equal masks share one id."""

    def __init__(self):
        self.masks: list[torch.Tensor] = []
        self._ids: dict[bytes, int] = {}

    def id(self, mask: torch.Tensor) -> int | None:
        if not mask.any():
            return None  # an empty mask is no mask at all
        key = mask.numpy().tobytes() + bytes(mask.shape)
        if key not in self._ids:
            self._ids[key] = len(self.masks)
            self.masks.append(mask)
        return self._ids[key]


def _mask_sequence(model, edges: EdgeSet, condition: Condition, table: _MaskTable):
    try:
        mask = edges.compile(model.layout, model.cfg.n_heads)
    except LayoutError as exc:
        raise SpecError(f"intervention {condition.name!r}: {exc}") from exc
    if condition.heads is not None:
        keep = torch.zeros(model.cfg.n_heads, dtype=torch.bool)
        keep[list(condition.heads)] = True
        mask = mask & keep[:, None, None]
    mask_id = table.id(mask)
    return tuple(
        mask_id if layer in condition.layers else None for layer in range(model.cfg.n_layers)
    )


@torch.inference_mode()
def _run_prefix_tree(
    model,
    X: torch.Tensor,
    sequences: list[tuple],
    table: _MaskTable,
    batch_size: int,
    return_type: str = "logits",
) -> dict[tuple, torch.Tensor]:
    """Logits for every mask sequence, sharing all common prefixes (see module docstring)."""
    n_layers = model.cfg.n_layers
    out: dict[tuple, list[torch.Tensor]] = defaultdict(list)
    wanted = set(sequences)
    for start in range(0, len(X), batch_size):
        states = {(): model(X[start : start + batch_size], stop_at_layer=0)}
        for layer in range(n_layers):
            children = sorted({seq[: layer + 1] for seq in wanted}, key=str)
            states = _step(model, layer, states, children, table)
        for seq in wanted:
            out[seq].append(model.readout(states[seq], return_type))
    return {seq: torch.cat(parts) for seq, parts in out.items()}


def _step(model, layer: int, states: dict, children: list[tuple], table: _MaskTable) -> dict:
    """Run block ``layer`` for every child prefix, batching children of all parents."""
    block = model.blocks[layer]
    plain = [c for c in children if c[-1] is None]
    masked = [c for c in children if c[-1] is not None]
    new = {}
    if plain:
        resid = torch.cat([states[c[:-1]] for c in plain])
        outs = block(resid).split([states[c[:-1]].shape[0] for c in plain])
        new.update(zip(plain, outs))
    if masked:
        parts = [states[c[:-1]] for c in masked]
        resid = torch.cat(parts)
        masks = torch.cat(
            [
                table.masks[c[-1]].expand(len(p), *table.masks[c[-1]].shape)
                for c, p in zip(masked, parts)
            ]
        )
        outs = block(resid, masks).split([len(p) for p in parts])
        new.update(zip(masked, outs))
    return new


# ----------------------------------------------------------------------------- verification


@torch.inference_mode()
def _verify(
    model,
    X: torch.Tensor,
    seq: tuple,
    logits: torch.Tensor,
    table: _MaskTable,
    name: str,
    return_type: str = "logits",
) -> None:
    """Re-run a few windows through the hooked path; demand equal logits and zero patterns."""
    layers = {layer: table.masks[i] for layer, i in enumerate(seq) if i is not None}
    hooks = [
        (attn_scores_filter([layer]), mask_edges(m, model.layout)) for layer, m in layers.items()
    ]
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in layers]
    with model.hooks(fwd_hooks=hooks):
        hooked, cache = model.run_with_cache(X, names_filter=names, return_type=return_type)
    for layer, mask in layers.items():
        leaked = cache[names[list(layers).index(layer)]][:, mask]
        if leaked.abs().max() != 0:
            raise StudyError(
                f"condition {name!r}: masked attention at layer {layer} is not zero "
                f"(max {float(leaked.abs().max()):.3g}); the mask did not take effect"
            )
    if not torch.allclose(hooked, logits, atol=1e-4, rtol=1e-4):
        diff = float((hooked - logits).abs().max())
        raise StudyError(
            f"condition {name!r}: the hooked path and the batched path disagree by {diff:.3g}"
        )


# ----------------------------------------------------------------------------- evaluation


@torch.inference_mode()
def _check_return_type(spec: StudySpec, model, x: torch.Tensor) -> None:
    try:
        out = model(x, return_type=spec.return_type)
    except ArgumentError as exc:
        raise SpecError(f"return_type = {spec.return_type!r}: {exc}") from exc
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(x), model.cfg.n_classes):
        raise SpecError(
            f"return_type = {spec.return_type!r} does not give [batch, n_classes="
            f"{model.cfg.n_classes}] logits for {type(model).__name__}; use 'logits'"
        )


def _evaluate(
    spec: StudySpec,
    subject: _Subject,
    todo: list[Condition],
    *,
    batch_size: int,
    verify: bool,
    subject_id: int,
    code: _StudyCode,
) -> dict[str, dict]:
    """Cells (by condition key) for the conditions in ``todo`` on subject ``subject_id``.
    An output that is not finite is a `StudyError`, never a score."""
    model, data = subject.model, subject.data
    X = torch.as_tensor(data.X_test, dtype=model.cfg.dtype, device=model.cfg.device)
    y = np.asarray(data.y_test)
    if not bool(torch.isfinite(X).all()):
        raise StudyError(
            f"subject {subject_id}: its test windows (X_test, {describe(X)}) hold NaN or inf "
            "values; a study needs finite evaluation data: regenerate or clean it"
        )
    _check_return_type(spec, model, X[:1])
    table = _MaskTable()
    sequences: dict[str, tuple] = {}  # key -> mask sequence (edge conditions and baseline)
    other: list[Condition] = []
    for c in todo:
        if c.intervention is None:
            sequences[c.key] = (None,) * model.cfg.n_layers
            continue
        target = None if c.intervention.zero_modality else _edges_of(c, code)
        if isinstance(target, EdgeSet):
            sequences[c.key] = _mask_sequence(model, target, c, table)
        else:
            other.append(c)
    logits = (
        _run_prefix_tree(
            model, X, sorted(set(sequences.values()), key=str), table, batch_size, spec.return_type
        )
        if sequences
        else {}
    )
    for c in todo:  # baseline first: a broken model is named as such
        if c.key in sequences:
            _refuse_non_finite(logits[sequences[c.key]], spec, subject_id, c)
    if verify:
        names = {seq: c.name for c in todo if (seq := sequences.get(c.key)) is not None}
        for seq, name in names.items():
            if any(i is not None for i in seq):
                _verify(
                    model,
                    X[:VERIFY_WINDOWS],
                    seq,
                    logits[seq][:VERIFY_WINDOWS],
                    table,
                    name,
                    spec.return_type,
                )
    cells = {
        key: score_predictions(logits[seq].argmax(-1).cpu().numpy(), y, data.n_classes, spec.metric)
        for key, seq in sequences.items()
    }
    for c in other:
        cells[c.key] = score_predictions(
            _run_hooked(spec, model, X, c, batch_size, subject_id, code),
            y,
            data.n_classes,
            spec.metric,
        )
    return cells


def _refuse_non_finite(out: torch.Tensor, spec: StudySpec, subject_id: int, c: Condition) -> None:
    """A NaN output has an argmax (class 0), so it would be scored as a result: refuse it."""
    finite = torch.isfinite(out)
    if bool(finite.all()):
        return
    where = ""
    if c.intervention is not None:
        row = c.row()
        where = f" (mode {c.mode}, layers {row['layers'] or '-'}, heads {row['heads']})"
    raise StudyError(
        f"subject {subject_id}, condition {c.name!r}{where}: {int((~finite).sum())} of "
        f"{out.numel()} values of the scored output ({spec.return_type!r}) are NaN or inf, so "
        "there is no prediction to score; check the model's weights (and, for an intervention, "
        "what it writes)"
    )


@torch.inference_mode()
def _run_hooked(
    spec: StudySpec,
    model,
    X: torch.Tensor,
    c: Condition,
    batch_size: int,
    subject_id: int,
    code: _StudyCode,
):
    """Predictions of an input ablation or a user hook factory (full forward passes)."""
    if c.intervention.zero_modality is not None:
        if c.intervention.zero_modality not in model.cfg.modalities:
            raise SpecError(
                f"intervention {c.name!r}: zero_modality {c.intervention.zero_modality!r} is not "
                f"a modality of the model ({list(model.cfg.modalities)})"
            )
        hooks = [("hook_input", zero_modality(c.intervention.zero_modality, model))]
    else:
        if c.heads is not None:
            raise SpecError(
                f"intervention {c.name!r} is a hook factory, which acts on every head; head "
                f"subsets ({list(c.heads)}) need an edge set instead"
            )
        hooks = _edges_of(c, code)(model, list(c.layers))
    preds = []
    for start in range(0, len(X), batch_size):
        preds.append(
            model.run_with_hooks(
                X[start : start + batch_size], fwd_hooks=hooks, return_type=spec.return_type
            )
        )
    out = torch.cat(preds)
    _refuse_non_finite(out, spec, subject_id, c)
    return out.argmax(-1).cpu().numpy()


# ----------------------------------------------------------------------------- the study


WAIT_TIMEOUT = 3600.0
"""Seconds `run_study` waits for a subject claimed by another live process before giving up."""
POLL_INTERVAL = 0.2


@dataclass
class _Plan:
    """One subject's conditions and, with a store, the provenance its cells must carry."""

    conditions: list[Condition]
    provenance: dict[str, Any] | None
    code: _StudyCode
    subject: _Subject | None = None

    def provenance_of(self, condition: Condition) -> dict[str, Any] | None:
        """A cell's provenance: the subject's, plus the digest of the hook file that its
        intervention runs, so an edited hook file recomputes exactly its own cells."""
        hook = condition.intervention.hook if condition.intervention is not None else None
        if self.provenance is None or hook is None:
            return self.provenance
        return {**self.provenance, "hook": self.code.digests[hook]}


def _provenance(spec: StudySpec, entry: Any, subject_id: int, code: str) -> dict[str, Any]:
    """What a subject's cells are computed from: digests of the model and the evaluation data
    (files for a checkpoint, arrays in memory), the metric, the scored output, the code."""
    if isinstance(entry, tuple):
        model, data = entry
        digests = {"model": model_digest(model), "data": arrays_digest(data)}
    else:
        metadata = read_checkpoint_info(entry)["metadata"]
        source = metadata.get("data_source")
        if source is None:
            raise SpecError(f"{entry}: the checkpoint records no data source to evaluate on")
        subject = metadata.get("subject", subject_id)
        digests = {"model": checkpoint_digest(entry), "data": source_digest(source, subject)}
    return {**digests, "metric": spec.metric, "return_type": spec.return_type, "code": code}


def _plan(
    spec: StudySpec,
    subject_id: int,
    entry: Any,
    store: CellStore | None,
    code: str,
    study_code: _StudyCode,
) -> _Plan:
    """Conditions and provenance, from the checkpoint's config and file digests alone, so a
    subject whose cells are all stored loads neither its model nor its data."""
    subject = None
    if isinstance(entry, Path | str):
        cfg = read_checkpoint_info(entry)["config"]
        n_layers, n_heads = cfg["n_layers"], cfg["n_heads"]
    else:
        subject = _load(entry)
        n_layers, n_heads = subject.model.cfg.n_layers, subject.model.cfg.n_heads
    conditions = [BASELINE, *expand_grid(spec, n_layers, n_heads)]
    if store is None:
        return _Plan(conditions, None, study_code, subject)
    try:
        provenance = _provenance(spec, entry, subject_id, code)
    except (EmgLensError, OSError) as exc:
        _load(entry)  # a broken checkpoint or data source raises its own, better named, error
        raise StudyError(f"subject {subject_id}: cannot digest {entry}: {exc}") from exc
    return _Plan(conditions, provenance, study_code, subject)


def _stored(store: CellStore | None, subject_id: int, plan: _Plan) -> dict[str, dict]:
    """The subject's stored cells whose provenance matches."""
    if store is None:
        return {}
    found = {c.key: store.get(subject_id, c.key, plan.provenance_of(c)) for c in plan.conditions}
    return {key: cell for key, cell in found.items() if cell is not None}


def run_study(
    spec: StudySpec | str | Path | dict,
    *,
    models: str | Path | Mapping[int, tuple[Any, SubjectData]] | None = None,
    out_dir: str | Path | None = None,
    batch_size: int = 256,
    verify: bool = True,
    progress: bool = True,
    wait_timeout: float = WAIT_TIMEOUT,
    allow_code: bool = False,
) -> StudyResult:
    """Run a study. ``models`` overrides ``spec.models`` (a folder of ``subject_<N>/``
    checkpoints, ``"demo"``, or ``{subject: (model, SubjectData)}`` for notebooks and tests).

    With ``out_dir`` every cell is stored as it finishes with its provenance (DESIGN §10), and
    a rerun reuses exactly the cells whose model, data, metric, scored output and emg_lens code
    are unchanged, recomputing the rest. Several processes may share one ``out_dir``: each
    subject is computed by one of them (see `emg_lens.studies.store`); the others wait for its
    cells, up to ``wait_timeout`` seconds. The result's ``reused`` and ``recomputed`` say how
    many cells were read from the store and computed here (``stale``: how many of those
    replaced a stored cell of other provenance, or a torn one).
    A training study (``kind = "training"``) is refused: it runs with `run_training_study`.

    A study that names Python files (``hook = "hooks/file.py:name"``) runs them only with
    ``allow_code=True``; without it, `CodeConsentError` lists each file with its resolved path
    and SHA-256 before anything runs. Each file's digest is part of its cells' provenance.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.data.preprocess import SubjectData
    >>> from emg_lens.models import IsoNet
    >>> import numpy as np, tempfile
    >>> cfg = EncoderConfig.preset("tiny", seed=0)
    >>> data = SubjectData(1, dict(cfg.modalities), list(range(cfg.n_classes)),
    ...     *(np.zeros(1),) * 3, np.zeros((4, cfg.n_channels, cfg.n_samples), "float32"),
    ...     np.arange(4), np.full(4, 2))
    >>> spec = {"name": "doc", "models": "unused", "layers": {"modes": ["all"]},
    ...         "interventions": [{"name": "cross", "edges": "cross_modal"}]}
    >>> out = tempfile.mkdtemp()
    >>> first = run_study(spec, models={1: (IsoNet(cfg), data)}, out_dir=out, progress=False)
    >>> again = run_study(spec, models={1: (IsoNet(cfg), data)}, out_dir=out, progress=False)
    >>> (first.reused, first.recomputed), (again.reused, again.recomputed)
    ((0, 2), (2, 0))
    """
    spec = load_spec(spec)
    if not isinstance(spec, StudySpec):
        raise SpecError(
            f"study {spec.name!r} is kind = 'training': use run_training_study (or `emg-lens "
            "study run`, which dispatches)"
        )
    study_code = _StudyCode.load(spec, allow_code)
    entries = _subjects(spec, models)
    store = CellStore(out_dir, spec.fingerprint()) if out_dir is not None else None
    code = code_digest() if store is not None else ""
    plans = {s: _plan(spec, s, entry, store, code, study_code) for s, entry in entries.items()}
    counts = {"reused": 0, "recomputed": 0, "stale": 0}
    done: dict[int, dict[str, dict]] = {}
    waiting_since: dict[int, float] = {}
    bar = tqdm(total=len(entries), desc=f"study {spec.name}", disable=not progress)
    while len(done) < len(entries):
        for subject_id, entry in entries.items():
            if subject_id in done:
                continue
            cells = _subject_cells(
                spec, subject_id, entry, plans[subject_id], store, counts, batch_size, verify
            )
            if cells is None:  # another live process computes it: come back later
                waiting_since.setdefault(subject_id, time.monotonic())
                continue
            done[subject_id] = cells
            bar.update()
        if len(done) < len(entries):
            _check_wait(store, plans, done, waiting_since, wait_timeout)
            time.sleep(POLL_INTERVAL)
    bar.close()
    rows = []
    for subject_id in entries:
        for c in plans[subject_id].conditions:
            cell = done[subject_id][c.key]
            rows.append(
                {
                    "subject": subject_id,
                    **c.row(),
                    "metric": spec.metric,
                    "value": cell["value"],
                    "class_correct": cell["class_correct"],
                    "class_total": cell["class_total"],
                }
            )
    per_subject = pd.DataFrame(rows)
    result = StudyResult.from_table(spec, per_subject)
    result.reused, result.recomputed, result.stale = (
        counts["reused"],
        counts["recomputed"],
        counts["stale"],
    )
    if out_dir is not None:
        result.save(out_dir)
    return result


def _subject_cells(
    spec: StudySpec,
    subject_id: int,
    entry: Any,
    plan: _Plan,
    store: CellStore | None,
    counts: dict[str, int],
    batch_size: int,
    verify: bool,
) -> dict[str, dict] | None:
    """All cells of one subject: stored ones that match, the rest computed under a claim;
    None when another live process holds the subject's claim."""
    stored = _stored(store, subject_id, plan)
    if len(stored) == len(plan.conditions):
        counts["reused"] += len(stored)
        return stored
    claim = store.try_claim(subject_id) if store is not None else None
    if store is not None and claim is None:
        return None
    try:
        stored = _stored(store, subject_id, plan)  # the claim's last holder may have finished
        todo = [c for c in plan.conditions if c.key not in stored]
        if todo:
            subject = plan.subject or _load(entry)
            fresh = _evaluate(
                spec,
                subject,
                todo,
                batch_size=batch_size,
                verify=verify,
                subject_id=subject_id,
                code=plan.code,
            )
            by_key = {c.key: c for c in todo}
            for key, cell in fresh.items():
                if store is not None:
                    counts["stale"] += store.has(subject_id, key)
                    store.put(subject_id, key, cell, plan.provenance_of(by_key[key]))
            stored.update(fresh)
        counts["reused"] += len(plan.conditions) - len(todo)
        counts["recomputed"] += len(todo)
        plan.subject = None  # the model and data are not needed again
        return stored
    finally:
        if claim is not None:
            store.release(claim)


def _check_wait(store, plans, done, waiting_since, wait_timeout: float) -> None:
    """Give up on a subject another process has held for longer than ``wait_timeout``."""
    for subject_id, since in waiting_since.items():
        if subject_id in done or time.monotonic() - since <= wait_timeout:
            continue
        plan = plans[subject_id]
        missing = next(
            c
            for c in plan.conditions
            if store.get(subject_id, c.key, plan.provenance_of(c)) is None
        )
        holder = store.holder(subject_id) or {}
        raise StudyError(
            f"waited {wait_timeout:g} s for cell {store.path(subject_id, missing.key)} "
            f"(subject {subject_id}, condition {missing.name!r}), claimed by pid "
            f"{holder.get('pid')} on host {holder.get('host')!r}; if that process is gone, "
            f"delete {store.claim_path(subject_id)} and run again"
        )
