"""Discovery: the smallest set of candidate edges that keeps the metric, found greedily.

ACDC-style, over attention knockouts (`discover`): every decision is an exact masked pass
(`emg_lens.discovery.exact.ExactPasses`), so the circuit left has a normalised faithfulness
above ``1 - tau``. The order: the screen's effects (``"greedy"``) or learned gates
(``"gates"``; why greedy is the default: docs/guide/discovery.md).

>>> from emg_lens import EncoderConfig
>>> from emg_lens.models import IsoNet
>>> model = IsoNet(EncoderConfig.preset("tiny", seed=0, init_range=0.5)).eval()
>>> X = model.example_input(32)
>>> found = discover(model, (X, model(X).argmax(-1)), tau=0.1)
>>> found.faithfulness > 0.9, found.n_kept < found.n_candidates
(True, True)
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from emg_lens.data.preprocess import SubjectData
from emg_lens.discovery.exact import Score
from emg_lens.discovery.family import Candidate, cut_edge_set
from emg_lens.discovery.gates import fit_gates
from emg_lens.discovery.metrics import faithfulness_areas
from emg_lens.discovery.screen import Screen, screen
from emg_lens.edges import EdgeSet
from emg_lens.errors import ArgumentError, check_number, checked

SEARCH_METHODS = ("greedy", "gates")
"""How `discover` orders the candidates: ``greedy`` tries them one at a time by the screen's
estimate; ``gates`` ranks them by learned edge gates (`emg_lens.discovery.gates`)."""


def check_tau(tau: Any) -> float:
    """``tau`` as a float in (0, 1), else `ArgumentError`.

    >>> check_tau(1.5)
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: tau must be a number in (0, 1) (the share of the metric's full-to-empty range the cut may cost, e.g. 0.05), got 1.5
    """  # noqa: E501
    share = "the share of the metric's full-to-empty range the cut may cost, e.g. 0.05"
    return check_number(tau, "tau", f"a number in (0, 1) ({share})", lambda t: 0 < t < 1)


def check_method(method: Any) -> str:
    """``method`` if it names a search of `SEARCH_METHODS`, else `ArgumentError`.

    >>> check_method("acdc")
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: method = 'acdc'; accepted: ['greedy', 'gates']
    """
    if method not in SEARCH_METHODS:
        raise ArgumentError(f"method = {method!r}; accepted: {list(SEARCH_METHODS)}")
    return method


@checked
@dataclass
class Discovery:
    """A discovered circuit. ``table``: one row per candidate, in the order tried, with its
    screen ``estimate``, the exact ``metric``/``accuracy`` of the trial and ``cut`` (the
    decision); ``curve``: the metric, accuracy and faithfulness after each accepted cut against
    the circuit's size (candidates and edges kept, and ``edges_kept_share``, the share of the
    family's edges kept), from the full model to the circuit; `areas`, MIB's CPR and CMD over
    it."""

    kept: list[Candidate]
    cut: list[Candidate]
    full: Score
    circuit_score: Score
    empty: Score
    tau: float
    metric: str
    table: pd.DataFrame
    curve: pd.DataFrame
    n_edges: int
    n_kept_edges: int
    screen: Screen = field(repr=False)
    method: str = "greedy"
    keep_accuracy: bool = True  # every class's accuracy kept too (see `discover`)

    @property
    def n_candidates(self) -> int:
        return len(self.kept) + len(self.cut)

    @property
    def n_kept(self) -> int:
        return len(self.kept)

    @property
    def faithfulness(self) -> float:
        """``(m(circuit) - m(empty)) / (m(full) - m(empty))``: 1 keeps all of the metric."""
        return self.circuit_score.faithfulness(self.full, self.empty)

    @property
    def classes_lost(self) -> list[int]:
        """The classes (labels) whose accuracy the circuit keeps less than ``1 - tau`` of:
        ``(acc(circuit) - acc(empty)) / (acc(full) - acc(empty)) < 1 - tau``, or any loss
        where cutting everything costs the class nothing. Empty when the search kept
        accuracy (``keep_accuracy``, the default)."""
        return self.circuit_score.classes_lost(self.full, self.empty, self.tau)

    @property
    def areas(self) -> tuple[float, float]:
        """MIB's CPR and CMD (`faithfulness_areas`) of the faithfulness curve over the share of
        the family's edges kept: the search's ``curve`` down to the circuit, then one straight
        segment to the empty circuit (every candidate cut with ``-inf``, where MIB patches every
        edge from a counterfactual input; faithfulness 0 by the normalisation)."""
        share = [*self.curve["edges_kept_share"], 0.0]
        return faithfulness_areas(share, [*self.curve["faithfulness"], 0.0])

    @property
    def circuit(self) -> EdgeSet | None:
        """The kept candidates as one edge set naming their layers (None: nothing kept)."""
        return cut_edge_set(self.kept)

    @property
    def complement(self) -> EdgeSet | None:
        """What to cut (with layer mode ``all``) to run only the circuit (None: nothing)."""
        return cut_edge_set(self.cut)

    def summary(self) -> dict[str, Any]:
        """The numbers a report needs, JSON-able."""
        return {
            "method": self.method,
            "metric": self.metric,
            "tau": self.tau,
            "candidates_kept": self.n_kept,
            "candidates": self.n_candidates,
            "edges_kept": self.n_kept_edges,
            "edges": self.n_edges,
            "faithfulness": self.faithfulness,
            "cpr": self.areas[0],
            "cmd": self.areas[1],
            "metric_full": self.full.metric,
            "metric_circuit": self.circuit_score.metric,
            "metric_empty": self.empty.metric,
            "accuracy_full": self.full.accuracy,
            "accuracy_circuit": self.circuit_score.accuracy,
            "accuracy_empty": self.empty.accuracy,
            "class_accuracy_full": _by_label(self.full),
            "class_accuracy_circuit": _by_label(self.circuit_score),
            "class_accuracy_empty": _by_label(self.empty),
            "classes_lost": self.classes_lost,
            "circuit": None if self.circuit is None else str(self.circuit),
            "complement": None if self.complement is None else str(self.complement),
        }

    def study_spec(self, name: str = "circuit", models: str = "runs/models") -> dict[str, Any]:
        """A study that tests the circuit on other subjects: ``only_circuit`` cuts its
        complement, ``cut_circuit`` cuts the circuit itself (layer mode ``all``); with a base
        mask, each also cuts the base, and ``base`` alone is the reference."""
        base = self.screen.base
        with_base = [] if base is None else [base]
        interventions = [
            {"name": label, "edges": str(functools.reduce(operator.or_, [*edges, *with_base]))}
            for label, edges in (
                ("only_circuit", [] if self.complement is None else [self.complement]),
                ("cut_circuit", [] if self.circuit is None else [self.circuit]),
            )
            if edges
        ]
        if base is not None:
            interventions.append({"name": "base", "edges": str(base)})
        return {
            "name": name,
            "models": models,
            "return_type": self.screen.return_type,
            "interventions": interventions,
            "layers": {"modes": ["all"]},
        }


def _by_label(score: Score) -> dict[str, float]:
    return {str(k): v for k, v in score.class_accuracy.items()}  # JSON keys are strings


@checked
def discover(
    model: Any,
    data: SubjectData | tuple[Any, Any],
    *,
    tau: float = 0.05,
    family: list[Candidate] | None = None,
    metric: str = "margin",
    return_type: str = "logits",
    screened: Screen | None = None,
    base: EdgeSet | str | None = None,
    batch_size: int = 256,
    progress: bool = False,
    keep_accuracy: bool = True,
    method: str = "greedy",
) -> Discovery:
    """Find the circuit of ``model`` on the test windows of ``data``: screen the ``family``
    (or use ``screened``, a `Screen` of the same model and data), then cut greedily, least
    needed first, while the exact metric stays within ``tau`` of its full-to-empty range and,
    with ``keep_accuracy``, so does every class's accuracy (`Discovery.classes_lost`).
    ``method``: the order, ``"greedy"`` or ``"gates"`` (the table gains ``survival``).
    ``base``: an edge set cut in every pass (the model as it runs; see `screen`)."""
    tau = check_tau(tau)
    method = check_method(method)
    if screened is None:
        screened = screen(
            model,
            data,
            family=family,
            metric=metric,
            return_type=return_type,
            base=base,
            batch_size=batch_size,
            progress=progress,
        )
    elif screened.model is not model:
        raise ArgumentError("screened was made for another model: screen this one")
    compiled = screened.family  # compiled against the model once, by the screen
    passes = screened.exact_passes(batch_size)
    full = passes.score({})
    empty = passes.score(compiled.everything)
    if not full.metric > empty.metric:
        raise ArgumentError(
            f"cutting every candidate does not lower the {screened.metric} ({full.metric:.4g} "
            f"-> {empty.metric:.4g}): this family carries nothing the model needs, so there is "
            "no circuit to find in it"
        )
    effect = "final" if "final" in screened.table else "estimate"  # after verify: measured
    table = screened.table
    if method == "gates":
        survival = fit_gates(
            model,
            torch.as_tensor(screened.data.X_test),
            compiled,
            return_type=screened.return_type,
            base=compiled.base or None,
            batch_size=batch_size,
        )
        table = table.assign(survival=survival[table.index.to_numpy()])
        keys, ascending = ["survival", effect, "layer"], [True, False, False]
    else:
        keys, ascending = [effect, "layer"], [False, False]
    order = table.sort_values(keys, ascending=ascending).index
    trials, circuit = passes.cut_greedily(
        [(compiled[i].layer, compiled.masks[i]) for i in order],
        full,
        empty,
        tau,
        keep_accuracy,
        progress,
    )
    return _result(screened, table, order, trials, full, circuit, empty, tau, method, keep_accuracy)


def _curve_row(step, n_kept, kept_edges, n_edges, score: Score, full: Score, empty: Score) -> dict:
    return {
        "step": step,
        "candidates_kept": n_kept,
        "edges_kept": kept_edges,
        "edges_kept_share": kept_edges / n_edges,
        "metric": score.metric,
        "accuracy": score.accuracy,
        "faithfulness": score.faithfulness(full, empty),
    }


def _result(screened, table, order, trials, full, circuit, empty, tau, method, keep) -> Discovery:
    """The `Discovery` of the search's ``trials`` (`ExactPasses.cut_greedily`: each candidate's
    score and decision, in ``order``): the table of every trial and the curve after each
    accepted cut, from the full model to the ``circuit`` (``keep``: keep_accuracy)."""
    family, sizes = screened.family, screened.family.sizes
    rows, cut = [], []
    kept_edges = n_edges = sum(sizes)
    curve = [_curve_row(0, len(family), kept_edges, n_edges, full, full, empty)]
    for step, (i, (score, keep_cut)) in enumerate(zip(order, trials)):
        survival = {"survival": float(table.loc[i, "survival"])} if "survival" in table else {}
        rows.append(
            {
                **family[i].row(),
                "step": step,
                "estimate": float(table.loc[i, "estimate"]),
                **survival,
                "metric": score.metric,
                "accuracy": score.accuracy,
                "cut": keep_cut,
            }
        )
        if keep_cut:
            cut.append(i)
            kept_edges -= sizes[i]
            curve.append(
                _curve_row(
                    step + 1, len(family) - len(cut), kept_edges, n_edges, score, full, empty
                )
            )
    cut_set = set(cut)
    return Discovery(
        kept=[c for i, c in enumerate(family) if i not in cut_set],
        cut=[family[i] for i in cut],
        full=full,
        circuit_score=circuit,
        empty=empty,
        tau=tau,
        metric=screened.metric,
        table=pd.DataFrame(rows),
        curve=pd.DataFrame(curve),
        n_edges=n_edges,
        n_kept_edges=kept_edges,
        screen=screened,
        method=method,
        keep_accuracy=keep,
    )
