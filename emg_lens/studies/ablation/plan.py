"""A subject's plan in an ablation study: its conditions (the grid on its model's shape) and
the provenance each of its cells must carry, computed once, from the model's config and the
file digests alone, before anything is loaded (`emg_lens.studies.ablation.runner` reads the
stored cells that match and computes the rest).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from emg_lens.checkpoints import read_checkpoint_info
from emg_lens.errors import EmgLensError, StudyError
from emg_lens.stats.metrics import METRICS
from emg_lens.studies.ablation.grid import BASELINE, Condition, expand_grid
from emg_lens.studies.ablation.spec import StudySpec
from emg_lens.studies.store import CellStore
from emg_lens.studies.subjects import entry_provenance, load_entry
from emg_lens.user_code import StudyCode


@dataclass
class Plan:
    """One subject's conditions and, with a store, the provenance each of its cells must carry
    (by condition key; None without a store), resolved once; its entry and the study's code."""

    conditions: list[Condition]
    provenances: Mapping[str, dict[str, Any] | None]
    code: StudyCode
    entry: Any


def plan_subject(
    spec: StudySpec,
    subject_id: int,
    entry: Any,
    store: CellStore | None,
    code: str,
    study_code: StudyCode,
    verify: bool = True,
) -> Plan:
    """A subject's `Plan`, from its model's config and the file digests alone (a subject whose
    cells are all stored loads neither its model nor its data). A cell's provenance: the
    subject's (`entry_provenance`), every metric, ``verify`` (a run that verifies never reuses
    a cell that was not verified), and the digest of its hook file or, for an erasure, of the
    training windows its erasers are fitted on.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> spec = StudySpec.from_dict({"name": "t", "models": "m", "layers": {"modes": ["all"]},
    ...     "interventions": [{"name": "cross", "edges": "cross_modal"}]})
    >>> model = IsoNet(EncoderConfig.preset("tiny"))
    >>> plan = plan_subject(spec, 1, (model, None), None, "", StudyCode.load([], False))
    >>> [(c.name, c.mode) for c in plan.conditions], set(plan.provenances.values())
    ([('baseline', 'none'), ('cross', 'all')], {None})
    """
    if isinstance(entry, tuple):
        n_layers, n_heads = entry[0].cfg.n_layers, entry[0].cfg.n_heads
    else:
        cfg = read_checkpoint_info(entry)["config"]
        n_layers, n_heads = cfg["n_layers"], cfg["n_heads"]
    conditions = [BASELINE, *expand_grid(spec, n_layers, n_heads)]
    if store is None:
        return Plan(conditions, dict.fromkeys(c.key for c in conditions), study_code, entry)
    erases = any(c.intervention is not None and c.intervention.erase for c in conditions)
    try:
        subject = entry_provenance(spec, entry, subject_id, code, study_code.modules, erases)
    except (EmgLensError, OSError) as exc:
        # a broken checkpoint or data source raises its own, better named, error
        load_entry(entry, modules=study_code.modules)
        what = "its in-memory (model, data)" if isinstance(entry, tuple) else entry
        raise StudyError(f"subject {subject_id}: cannot digest {what}: {exc}") from exc
    fit = subject.pop("fit", None)
    subject.update(metrics=list(METRICS), verified=verify)  # a cell holds every metric
    provenances = {}
    for c in conditions:
        i = c.intervention
        if i is not None and i.erase is not None and fit:
            provenances[c.key] = {**subject, "fit": fit}
        elif i is not None and i.hook is not None:
            provenances[c.key] = {**subject, "hook": study_code.digests[i.hook]}
        else:
            provenances[c.key] = subject
    return Plan(conditions, provenances, study_code, entry)
