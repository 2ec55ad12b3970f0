"""Screening: the effect of every candidate knockout, from one clean forward and one backward.

For a metric ``m`` (per window, e.g. the true class's logit margin), each candidate is a set of
attention edges cut with ``-inf`` in one layer. Cutting it changes that layer's pattern from
``A`` to ``A'``, and ``A'`` is computed *exactly* from the cached clean logits: a softmax over
the scores with the candidate's keys removed (a query row with every key cut becomes a zero row,
as in the model). This is the AtP* fix for attention saturation: attribution patching that
linearises the softmax itself would miss a head that puts all its weight on the cut keys. Only
the effect of the new pattern on the metric downstream is linearised:

    delta_m(window) ~= sum over (head, query, key) of dm/dA * (A' - A)

with ``dm/dA`` from one backward pass of the summed metric to every ``hook_pattern`` (windows
do not interact, so one backward gives every window's gradient). The cost is one forward, one
backward and a softmax over the affected rows per candidate, whatever the family's size.

The metric must be differentiable: ``"margin"`` (true-class logit minus the best other class;
the window is classified correctly when it is positive) or ``"logprob"`` (the true class's
log-probability). The accuracy effect is reported too, estimated from the margin: a window
counts as correct after the cut when its estimated margin stays positive. Where the estimate
fails: the linearisation ignores how later layers react to the change (self-repair, saturated
downstream softmaxes); `Screen.verify` measures the best candidates exactly.

>>> from emg_lens import EncoderConfig
>>> from emg_lens.models import IsoNet
>>> model = IsoNet(EncoderConfig.preset("tiny", seed=0, init_range=0.5)).eval()
>>> X = model.example_input(32)
>>> s = screen(model, (X, model(X).argmax(-1)))
>>> len(s.table), s.baseline_accuracy, list(s.table.columns[:4])
(72, 1.0, ['rank', 'layer', 'head', 'kind'])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Bool, Float
from tqdm.auto import tqdm

from emg_lens.data.preprocess import SubjectData
from emg_lens.discovery.exact import ExactPasses
from emg_lens.discovery.family import (
    Candidate,
    base_layer_masks,
    candidate_mask,
    check_family,
    default_family,
    layer_masks,
)
from emg_lens.discovery.metrics import check_metric, spearman, window_metric
from emg_lens.edges import EdgeSet, parse
from emg_lens.errors import ArgumentError
from emg_lens.hooks import name_filter
from emg_lens.inspect.checks import check_deterministic, check_model
from emg_lens.inspect.importance import as_subject_data
from emg_lens.studies import run_study

__all__ = ["Screen", "screen", "verify_candidates"]


@dataclass
class Screen:
    """Every candidate's estimated effect. ``table`` has one row per candidate, sorted by
    ``rank`` (1 = the largest estimated drop of the metric): ``layer, head, kind, query_group,
    key_group, edges`` (the candidate as an edge set naming its layer: paste it into a study
    with layer mode ``all``), ``estimate`` (the metric's estimated change, averaged over the
    windows) and ``estimate_accuracy`` (the accuracy's); `verify` adds the exact effects.
    """

    table: pd.DataFrame
    family: list[Candidate]
    metric: str
    return_type: str
    baseline: float
    baseline_accuracy: float
    n_windows: int
    model: Any = field(repr=False)
    data: SubjectData = field(repr=False)
    agreement: dict[str, float] = field(default_factory=dict)
    base: EdgeSet | None = None  # cut in every pass (see `screen`)

    def verify(self, top: int = 10, *, batch_size: int = 256) -> Screen:
        """Measure the ``top`` best candidates (largest estimated drops) exactly, and add
        ``exact`` (the metric's change) and ``exact_accuracy`` (the accuracy's, from the study
        runner, which also checks that every mask took effect) to their rows; ``agreement``
        gets the Spearman rank correlation of estimate and exact effect over them.
        """
        return verify_candidates(self, top, batch_size=batch_size)

    def exact_passes(self, batch_size: int = 256) -> ExactPasses:
        """Exact masked passes of this screen's model, windows, metric, output and base."""
        return ExactPasses(
            self.model,
            torch.as_tensor(self.data.X_test),
            torch.as_tensor(np.asarray(self.data.y_test)),
            metric=self.metric,
            return_type=self.return_type,
            batch_size=batch_size,
            base=self.base,
        )

    def candidate(self, rank: int) -> Candidate:
        """The candidate at ``rank`` (1 = the largest estimated drop)."""
        row = self.table.loc[self.table["rank"] == rank]
        if row.empty:
            raise ArgumentError(f"rank must be in 1..{len(self.table)}, got {rank!r}")
        return self.family[int(row.index[0])]


def _capture(model: Any, x: torch.Tensor, return_type: str, base: dict | None = None):
    """Logits, the clean attention scores (detached; ``-inf`` where ``base`` cuts) and
    patterns (in the graph) per layer."""
    scores: dict[int, torch.Tensor] = {}
    patterns: dict[int, torch.Tensor] = {}

    def layer_of(name: str) -> int:
        return int(name.split(".")[1])

    def keep_scores(t: torch.Tensor, hook) -> None:
        scores[layer_of(hook.name)] = t.detach()

    def keep_pattern(t: torch.Tensor, hook) -> None:
        patterns[layer_of(hook.name)] = t

    hooks = [
        (name_filter("attn.hook_attn_scores"), keep_scores),
        (name_filter("attn.hook_pattern"), keep_pattern),
    ]
    logits = model.run_with_hooks(x, return_type=return_type, edge_masks=base, fwd_hooks=hooks)
    return logits, scores, patterns


def _pattern_change(
    scores: Float[torch.Tensor, "batch head q k"],
    pattern: Float[torch.Tensor, "batch head q k"],
    cut: Bool[torch.Tensor, "row k"],
    rows: tuple[torch.Tensor, torch.Tensor],
) -> Float[torch.Tensor, "batch row k"]:
    """``A' - A`` on the (head, query) ``rows`` a candidate touches, ``cut`` being its masked
    keys in each row: ``A'`` is the softmax of the clean scores with those keys removed, a
    zero row where every key is cut, by the candidate or the base mask already in the scores
    (as the model computes it)."""
    heads, queries = rows
    masked = scores[:, heads, queries].masked_fill(cut, float("-inf"))
    new = torch.softmax(masked, dim=-1).masked_fill(torch.isneginf(masked).all(-1, True), 0.0)
    return new - pattern[:, heads, queries]


@dataclass(frozen=True)
class _RowChunk:
    """The (head, query) rows of several candidates of one layer, stacked, so their masked
    softmaxes run as one: ``owner[r]`` is the position (in the family) of row ``r``'s
    candidate."""

    layer: int
    heads: torch.Tensor
    queries: torch.Tensor
    cut: torch.Tensor  # [row, key]
    owner: torch.Tensor


def _row_chunks(model, family, device, batch: int, budget: int = 2**24) -> list[_RowChunk]:
    """Every candidate's touched rows, grouped by layer into chunks of at most ``budget``
    elements per softmax (``batch x rows x keys``)."""
    n_tokens = model.layout.n_tokens
    max_rows = max(1, budget // (batch * n_tokens))
    chunks = []
    for layer in sorted({c.layer for c in family}):
        parts: list[tuple] = []
        for i, c in enumerate(family):
            if c.layer != layer:
                continue
            mask = candidate_mask(model, c).to(device)
            h, q = mask.any(-1).nonzero(as_tuple=True)
            parts.append((h, q, mask[h, q], torch.full_like(h, i)))
        current: list[tuple] = []
        for part in parts:
            if current and sum(len(p[0]) for p in current) + len(part[0]) > max_rows:
                chunks.append(_RowChunk(layer, *(torch.cat(x) for x in zip(*current))))
                current = []
            current.append(part)
        if current:
            chunks.append(_RowChunk(layer, *(torch.cat(x) for x in zip(*current))))
    return chunks


def screen(
    model: Any,
    data: SubjectData | tuple[Any, Any],
    *,
    family: list[Candidate] | None = None,
    metric: str = "margin",
    return_type: str = "logits",
    base: EdgeSet | str | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> Screen:
    """Estimate the effect of cutting each candidate of ``family`` (default: `default_family`)
    on ``metric`` and on the accuracy, over the test windows of ``data`` (a `SubjectData`, or
    ``(X, y)``), from one clean forward and one backward pass per batch of windows (a second
    backward when the metric is not the margin, for the accuracy estimate).
    ``return_type`` is the scored output (IsoNet: ``"logits"``, the CLS head, or
    ``"avg_logits"``). ``base`` (an edge set, naming layers where they differ) is cut in
    every pass, the clean one included: the model as it runs, e.g. as it was trained with
    ``fit(edge_masks=...)``. See the module docstring for the estimator.
    """
    check_model(model)
    check_deterministic(model)
    metric = check_metric(metric)
    subject = as_subject_data(model, data)
    family = default_family(model) if family is None else check_family(model, family)
    device = next(model.parameters()).device
    base = None if base is None else parse(base)
    base_masks = base_layer_masks(model, base, device)
    wanted = [metric] if metric == "margin" else [metric, "margin"]
    X = torch.as_tensor(subject.X_test, dtype=model.cfg.dtype)
    y = torch.as_tensor(np.asarray(subject.y_test), dtype=torch.long)
    n = len(y)
    chunks = _row_chunks(model, family, device, min(batch_size, n))
    delta = {name: torch.zeros(len(family), n, dtype=torch.float64) for name in wanted}
    clean = {name: torch.zeros(n, dtype=torch.float64) for name in wanted}
    starts = range(0, n, batch_size)
    for start in tqdm(starts, desc="screen", disable=not progress, leave=False):
        stop = min(start + batch_size, n)
        xb, yb = X[start:stop].to(device), y[start:stop].to(device)
        with torch.enable_grad():
            logits, scores, patterns = _capture(
                model, xb.requires_grad_(True), return_type, base_masks
            )
            values = {name: window_metric(logits, yb, name) for name in wanted}
            layers = sorted(patterns)
            grads = {}
            for i, name in enumerate(wanted):
                g = torch.autograd.grad(
                    values[name].sum(),
                    [patterns[layer] for layer in layers],
                    retain_graph=i < len(wanted) - 1,
                )
                grads[name] = dict(zip(layers, g))
        for name in wanted:
            clean[name][start:stop] = values[name].detach().double().cpu()
        with torch.no_grad():
            for chunk in chunks:
                rows = (chunk.heads, chunk.queries)
                change = _pattern_change(
                    scores[chunk.layer], patterns[chunk.layer].detach(), chunk.cut, rows
                )
                for name in wanted:
                    g = grads[name][chunk.layer][:, chunk.heads, chunk.queries]
                    per_row = (change * g).sum(-1).double()  # [batch, row]
                    per_candidate = torch.zeros(len(family), stop - start, dtype=torch.float64)
                    per_candidate = per_candidate.to(per_row.device)
                    per_candidate.index_add_(0, chunk.owner, per_row.T)
                    delta[name][:, start:stop] += per_candidate.cpu()
    result = _screen_result(model, subject, family, metric, return_type, clean, delta)
    result.base = base
    return result


def _screen_result(model, subject, family, metric, return_type, clean, delta) -> Screen:
    for name, values in [*clean.items(), *delta.items()]:
        if not torch.isfinite(values).all():
            raise ArgumentError(
                f"screening gave non-finite {name} values on subject {subject.subject}: the "
                "model's outputs or gradients overflow; check its weights and inputs"
            )
    correct = clean["margin"] > 0
    after = (clean["margin"][None] + delta["margin"]) > 0
    table = pd.DataFrame([c.row() for c in family])
    table["estimate"] = delta[metric].mean(1).numpy()
    table["estimate_accuracy"] = (after.double().mean(1) - correct.double().mean()).numpy()
    table.insert(0, "rank", table["estimate"].rank(method="first").astype(int))
    return Screen(
        table=table.sort_values("rank"),
        family=family,
        metric=metric,
        return_type=return_type,
        baseline=float(clean[metric].mean()),
        baseline_accuracy=float(correct.double().mean()),
        n_windows=len(subject.y_test),
        model=model,
        data=subject,
    )


def verify_candidates(screen: Screen, top: int, *, batch_size: int = 256) -> Screen:
    """`Screen.verify`: the ``top`` best candidates measured twice over, their exact metric
    change with `ExactPasses` and their accuracy through the study runner (which also checks
    that every mask took effect); the others keep NaN in ``exact`` and ``exact_accuracy``."""
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= len(screen.family):
        raise ArgumentError(f"top must be an int in 1..{len(screen.family)}, got {top!r}")
    model, data = screen.model, screen.data
    chosen = screen.table.head(top)
    candidates: list[Candidate] = [screen.family[i] for i in chosen.index]
    passes = screen.exact_passes(batch_size)
    exact = [passes.score(layer_masks(model, [c])).metric - screen.baseline for c in candidates]
    with_base = "" if screen.base is None else f" | ({screen.base})"
    spec = {
        "name": "screen_verify",
        "models": "in-memory",
        "metric": "accuracy",
        "return_type": screen.return_type,
        "interventions": [
            {"name": f"rank_{r}", "edges": f"({c.edge_set}){with_base}"}
            for r, c in zip(chosen["rank"], candidates)
        ]
        + ([{"name": "base", "edges": str(screen.base)}] if screen.base is not None else []),
        "layers": {"modes": ["all"]},
    }
    per = run_study(
        spec, models={data.subject: (model, data)}, batch_size=batch_size, progress=False
    ).per_subject
    value = per.set_index("intervention")["value"]
    table = screen.table.copy()
    table["exact"] = np.nan
    table["exact_accuracy"] = np.nan
    table.loc[chosen.index, "exact"] = exact
    table.loc[chosen.index, "exact_accuracy"] = [
        value[f"rank_{r}"] - value["base" if screen.base is not None else "baseline"]
        for r in chosen["rank"]
    ]
    verified = table.loc[chosen.index]
    agreement = {
        "spearman": spearman(verified["estimate"], verified["exact"]),
        "spearman_accuracy": spearman(verified["estimate"], verified["exact_accuracy"]),
        "n": float(top),
    }
    return Screen(
        table=table,
        family=screen.family,
        metric=screen.metric,
        return_type=screen.return_type,
        baseline=screen.baseline,
        baseline_accuracy=screen.baseline_accuracy,
        n_windows=screen.n_windows,
        model=model,
        data=data,
        agreement=agreement,
        base=screen.base,
    )
