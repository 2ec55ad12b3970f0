"""Screening: the effect of every candidate knockout, from one clean forward and one backward.

For a metric ``m`` per window, each candidate is a set of attention edges cut with ``-inf`` in
one layer. Its new pattern ``A'`` is computed *exactly* from the cached clean logits (a softmax
with the candidate's keys removed; a row with every key cut is a zero row, as in the model), the
AtP* fix for saturated softmaxes; only the effect of ``A'`` on the metric downstream is
linearised:

    delta_m(window) ~= sum over (head, query, key) of dm/dA * (A' - A)

with ``dm/dA`` from one backward of the summed metric to every ``hook_pattern`` (windows do not
interact, so one backward gives every window's gradient). The metric must be differentiable:
``"margin"`` (true-class logit minus the best other; the estimated accuracy effect counts a
window correct while its estimated margin stays positive) or ``"logprob"``. The linearisation
ignores how later layers react; `Screen.verify` measures the best candidates exactly.

``estimator="ig"`` (EAP-IG: ``dm/dA`` averaged over the midpoints of a path through the
*patterns*, `emg_lens.components.attend.cut_pattern`) and ``estimator="relp"`` (relevance
patching, Rezaei Jafari et al. 2025, arXiv 2508.21258: ``dm/dA`` from one backward under RelP's
LRP rules, `emg_lens.discovery.screen_hooks.relevance_hooks`) replace the gradient; their
method, references and measurements: docs/guide/discovery.md; how far to trust each:
docs/ARCHITECTURE.md, "Discovery: what to trust".

>>> from emg_lens import EncoderConfig
>>> from emg_lens.models import IsoNet
>>> model = IsoNet(EncoderConfig.preset("tiny", seed=0, init_range=0.5)).eval()
>>> X = model.example_input(32)
>>> s = screen(model, (X, model(X).argmax(-1)))
>>> len(s.table), s.baseline_accuracy, list(s.table.columns[:4])
(72, 1.0, ['rank', 'layer', 'head', 'kind'])
>>> ig = screen(model, (X, model(X).argmax(-1)), estimator="ig", exact_last_layer=False)
>>> ig.estimator, ig.ig_steps, sorted(set(ig.table["method"]))
('ig', 5, ['ig'])
>>> relp = screen(model, (X, model(X).argmax(-1)), estimator="relp", exact_last_layer=False)
>>> sorted(set(relp.table["method"]))
['relp']
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from emg_lens.components.attend import cut_pattern
from emg_lens.data.preprocess import SubjectData
from emg_lens.discovery.exact import ExactPasses
from emg_lens.discovery.family import Candidate, CompiledFamily, RowChunk, compile_family
from emg_lens.discovery.last_layers import (
    AttentionOutput,
    exact_effects,
    exact_layers,
)
from emg_lens.discovery.metrics import Scorer, spearman
from emg_lens.discovery.screen_hooks import capture, gradients, path_gradients
from emg_lens.edges import EdgeSet, parse
from emg_lens.errors import ArgumentError, check_int, checked
from emg_lens.inputs import as_subject_data, check_deterministic, check_model
from emg_lens.models.base import LAYERWISE, TL_WEIGHTS, provides, require
from emg_lens.stats.compare import clopper_pearson

ESTIMATORS = ("plain", "ig", "relp")
"""How `screen` weighs a candidate's pattern change: ``plain``, by the gradient of the uncut
model (attribution patching with the exact masked pattern, AtP*); ``ig``, by the gradient
averaged along the path to the cut model (EAP-IG); ``relp``, by LRP's relevance coefficients
(relevance patching; see the module docstring)."""
IG_STEPS = 5
"""The path points of ``estimator="ig"``: a few, each costing one forward and one backward pass
per batch of windows (EAP-IG's own code, ``get_scores_eap_ig``, defaults to 30 left Riemann
points; the midpoints here converge as 1/steps^2 on a smooth metric, docs/guide/discovery.md)."""


def check_estimator(estimator: Any, ig_steps: Any = IG_STEPS) -> tuple[str, int]:
    """``(estimator, ig_steps)`` if ``estimator`` is one of `ESTIMATORS` and ``ig_steps`` an
    int >= 1, else `ArgumentError` naming what is accepted.

    >>> check_estimator("ig", 8)
    ('ig', 8)
    >>> check_estimator("eap-ig")
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: screen = 'eap-ig'; accepted: ['plain', 'ig', 'relp']
    """
    if estimator not in ESTIMATORS:
        raise ArgumentError(f"screen = {estimator!r}; accepted: {list(ESTIMATORS)}")
    ig_steps = check_int(ig_steps, "ig_steps (points on the integrated-gradient path)", 1)
    return estimator, ig_steps


FLAG_BUDGET = 12
"""How many linearised candidates, the riskiest, `Screen.verify` measures exactly: the cost it
adds is this many exact passes (`docs/ARCHITECTURE.md`, "Discovery: what to trust", says what
it buys)."""
MISS_SAMPLE = 10
"""Unmeasured candidates `Screen.verify` draws to bound what the ranking missed: with no miss
drawn, 10 draws bound the miss rate at 26 % of the unmeasured (`miss_note`)."""
CERTIFY_RATE = 0.05
"""The miss rate a draw that finds no miss must bound for the bound to certify something;
`miss_note` says so where the draws cannot reach it."""


def _percent(rate: float) -> str:
    """An upper bound on a rate in percent, rounded up: to a whole percent, to a tenth below
    10 % (``0.0503``: ``"5.1 %"``, not a bound of 5 % that 58 draws do not give)."""
    scale = 1 if rate >= 0.1 else 10
    return f"{math.ceil(round(100 * rate * scale, 6)) / scale:g} %"


def miss_note(draws: int, ask: str = "`verify(..., sample=N)`", confidence: float = 0.95) -> str:
    """What ``draws`` random exact passes cannot certify: empty where a draw that finds no miss
    bounds the miss rate at `CERTIFY_RATE` or below, else the sentence saying the lowest rate
    they can bound and how many draws (``ask``: where to ask for them) would reach it. With no
    miss in ``n`` draws the one-sided Clopper-Pearson bound is ``1 - 0.05 ** (1 / n)``: at
    most 5 % from ``n = 59``; each draw costs one exact masked pass.

    >>> print(miss_note(10))  # doctest: +NORMALIZE_WHITESPACE
    10 draws cannot certify a miss rate below 26 %: draw more (`verify(..., sample=N)`, one
    exact pass each) to bound it; 59 draws that find no miss bound it at 5 %.
    >>> miss_note(59)
    ''
    """
    floor = _clopper_pearson_upper(0, draws, confidence) if draws else 1.0
    if floor <= CERTIFY_RATE:
        return ""
    needed = math.ceil(math.log(1 - confidence) / math.log(1 - CERTIFY_RATE))
    return (
        f"{draws} draws cannot certify a miss rate below {_percent(floor)}: draw more "
        f"({ask}, one exact pass each) to bound it; {needed} draws that find no miss bound it "
        f"at {_percent(CERTIFY_RATE)}."
    )


def missed_words(agreement: dict[str, float]) -> str:
    """`Screen.verify`'s bound on what the ranking missed, in words, with the draws it came
    from (and `miss_note` where they cannot certify a low rate).

    >>> print(missed_words({"unmeasured": 140.0, "sampled": 10.0, "sample_hits": 0.0,
    ...     "missed_rate_upper": 0.2589, "missed_upper": 36.25}))
    ... # doctest: +NORMALIZE_WHITESPACE
    at most 26 % of the 140 unmeasured (36.2 candidates), from 10 draws. 10 draws cannot
    certify a miss rate below 26 %: draw more (`verify(..., sample=N)`, one exact pass each)
    to bound it; 59 draws that find no miss bound it at 5 %.
    """
    unmeasured, draws = int(agreement["unmeasured"]), int(agreement["sampled"])
    if not unmeasured:
        return "none: no candidate was left unmeasured"
    if not draws:
        return f"not bounded: none of the {unmeasured} unmeasured was drawn"
    hits = int(agreement["sample_hits"])
    found = f", besides the {hits} the draw found" if hits else ""
    text = (
        f"at most {_percent(agreement['missed_rate_upper'])} of the {unmeasured} unmeasured "
        f"({agreement['missed_upper']:.1f} candidates{found}), from {draws} draws"
    )
    note = miss_note(draws)
    return f"{text}. {note}" if note else text


@checked
@dataclass
class Screen:
    """Every candidate's estimated effect. ``table`` has one row per candidate, sorted by
    ``rank`` (1 = the largest estimated drop of the metric): ``layer, head, kind, query_group,
    key_group, edges`` (the candidate as an edge set naming its layer: paste it into a study
    with layer mode ``all``), ``estimate`` (the metric's estimated change, averaged over the
    windows) and ``estimate_accuracy`` (the accuracy's); `verify` adds the exact effects.
    ``family`` is the candidates compiled against ``model`` with the ``base`` cut (the table's
    index is their position in it)."""

    table: pd.DataFrame
    family: CompiledFamily
    metric: str
    return_type: str
    baseline: float
    baseline_accuracy: float
    n_windows: int
    model: Any = field(repr=False)
    data: SubjectData = field(repr=False)
    agreement: dict[str, float] = field(default_factory=dict)
    base: EdgeSet | None = None  # cut in every pass (see `screen`)
    estimator: str = "plain"  # how the linearised candidates were estimated (`ESTIMATORS`)
    ig_steps: int = IG_STEPS  # the path's points, with estimator "ig"
    exact_last_layer: bool = True  # the layers computed exactly (see `screen`)
    exact_penultimate: bool | None = None
    verified_with: dict[str, int] = field(default_factory=dict)  # `verify`'s budgets and seed

    def __repr__(self) -> str:
        text = (
            f"Screen({len(self.table)} candidates, {self.metric} on {self.return_type}, "
            f"{self.estimator} estimates, {self.n_windows} windows"
        )
        if inside := int(self.family.cut_by_base.sum()):  # exact: no estimate, no pass
            text += f", {inside} cut by the base already (exactly 0)"
        if not self.agreement:
            return text + ", not verified)"
        return (
            f"{text}; verified top {self.verified_with['top']}, "
            f"{self.agreement['measured']:.0f} of the {self.agreement['screened']:.0f} "
            "estimates measured exactly; missed: "
            f"{missed_words(self.agreement)})"
        )

    def verify(
        self,
        top: int = 10,
        *,
        flagged: int = FLAG_BUDGET,
        sample: int = MISS_SAMPLE,
        seed: int = 0,
        batch_size: int = 256,
        groups: int = 0,
    ) -> Screen:
        """Measure exactly the flagged candidates, the ``top`` best (with ``groups``, those
        group testing finds in the first ``groups`` layers) and a random sample of
        the rest (`verify_candidates`); ``agreement`` gets the rank correlation of estimate
        and exact effect and the bound on what the ranking missed."""
        return verify_candidates(
            self,
            top,
            flagged=flagged,
            sample=sample,
            seed=seed,
            batch_size=batch_size,
            groups=groups,
        )

    def exact_passes(self, batch_size: int = 256) -> ExactPasses:
        """Exact masked passes of this screen's model, windows, metric, output and base."""
        return ExactPasses(
            self.model,
            torch.as_tensor(self.data.X_test),
            torch.as_tensor(np.asarray(self.data.y_test)),
            metric=self.metric,
            return_type=self.return_type,
            batch_size=batch_size,
            base=self.family.base,
        )

    def candidate(self, rank: int) -> Candidate:
        """The candidate at ``rank`` (1 = the largest estimated drop)."""
        row = self.table.loc[self.table["rank"] == rank]
        if row.empty:
            raise ArgumentError(f"rank must be in 1..{len(self.table)}, got {rank!r}")
        return self.family[int(row.index[0])]


@checked
def screen(
    model: Any,
    data: SubjectData | tuple[Any, Any],
    *,
    family: list[Candidate] | CompiledFamily | None = None,
    metric: str = "margin",
    return_type: str = "logits",
    base: EdgeSet | str | None = None,
    batch_size: int = 256,
    progress: bool = False,
    exact_last_layer: bool = True,
    exact_penultimate: bool | None = None,
    estimator: str = "plain",
    ig_steps: int = IG_STEPS,
) -> Screen:
    """Estimate the effect of cutting each candidate of ``family`` (default: `default_family`,
    compiled once against the model, `compile_family`) on ``metric`` and on the accuracy over
    the test windows of ``data`` (a `SubjectData`, or ``(X, y)``): per batch of windows one
    clean forward and one backward pass (a second backward for the accuracy estimate when the
    metric is not the margin), or ``ig_steps`` of each with ``estimator="ig"``; with
    ``estimator="relp"`` the backward runs under RelP's rules (see the module docstring; it
    needs a model of emg_lens blocks, `LAYERWISE`). ``return_type`` is the scored output
    (IsoNet: ``"logits"`` or ``"avg_logits"``); ``base``, an edge set cut in every pass, the
    clean one included: the model as it runs, e.g. as it was trained with
    ``fit(edge_masks=...)``.

    Candidates of the last layer are computed exactly (``exact_last_layer``,
    `exact_effects`), and those of the layer before it where the readout reads few tokens (a
    CLS head) when ``exact_penultimate`` is True, or by default when the model has two layers,
    which makes every estimate exact. Deeper models pay the last block's key and value
    projections per candidate for it (docs/ARCHITECTURE.md has the cost): ask for it. A
    candidate whose edges the base cuts already is exact too: cutting it changes nothing
    (`CompiledFamily.cut_by_base`). The table's ``method`` says which candidates are exact."""
    estimator, ig_steps = check_estimator(estimator, ig_steps)
    check_model(model)
    if estimator == "relp":  # its rules sit on emg_lens's blocks' hook points
        require(model, LAYERWISE, 'screen(estimator="relp")')
    # The risk of a linearised estimate is the change the cut writes through W_O; a model
    # without TransformerLens weights (an attached model) has no W_O to read: its risk is NaN.
    risk_known = provides(model, TL_WEIGHTS)
    check_deterministic(model)
    wanted = Scorer((metric,) if metric == "margin" else (metric, "margin"))  # handed down
    subject = as_subject_data(model, data)
    exact = exact_layers(model, return_type, last=exact_last_layer, penultimate=exact_penultimate)
    base = None if base is None else parse(base)
    family = compile_family(model, family, base=base)  # once: every later step reads it
    device, base_masks = family.device, family.base or None
    last_mask = family.base.get(model.cfg.n_layers - 1)
    X = torch.as_tensor(subject.X_test, dtype=model.cfg.dtype)
    y = torch.as_tensor(np.asarray(subject.y_test), dtype=torch.long)
    n = len(y)
    chunks = _row_chunks(family, min(batch_size, n))
    linear = sorted(set(family.by_layer) - set(exact))  # the layers whose effects are estimated
    delta = {name: torch.zeros(len(family), n, dtype=torch.float64) for name in wanted}
    clean = {name: torch.zeros(n, dtype=torch.float64) for name in wanted}
    risk = torch.zeros(len(family), dtype=torch.float64)  # of the linearised candidates
    starts = range(0, n, batch_size)
    plain, relp = estimator == "plain", estimator == "relp"
    for start in tqdm(starts, desc="screen", disable=not progress, leave=False):
        stop = min(start + batch_size, n)
        xb, yb = X[start:stop].to(device), y[start:stop].to(device)
        with torch.enable_grad() if plain or relp else torch.no_grad():
            logits, scores, patterns, v, caches = capture(
                model, xb.requires_grad_(plain), return_type, base_masks, exact, relevance=relp
            )
            values = wanted(logits, yb)
            if plain or relp:
                grads = gradients(values, patterns, linear)
        if estimator == "ig" and linear:
            grads = path_gradients(
                model, xb, yb, wanted, return_type, base_masks, family.everything, linear, ig_steps
            )
        for name in wanted:
            clean[name][start:stop] = values[name].detach().double().cpu()
        with torch.no_grad():
            for chunk in chunks:
                # A' - A on the (head, query) rows the chunk's candidates touch: A' the clean
                # scores' softmax with their keys cut, a zero row where every key is cut (by
                # the candidate or the base mask already in the scores, as the model does)
                heads, queries = chunk.heads, chunk.queries
                change = cut_pattern(scores[chunk.layer][:, heads, queries], chunk.cut)
                change = change - patterns[chunk.layer].detach()[:, heads, queries]
                if chunk.layer in exact:
                    owners, effects = exact_effects(
                        model, caches, change, chunk, yb, wanted, return_type, last_mask
                    )
                    for name in wanted:
                        delta[name][owners.cpu(), start:stop] = effects[name].double().cpu()
                    continue
                if risk_known:  # it reads the attention output weights
                    weights = model.blocks[chunk.layer].attn.output_weights()
                    output = AttentionOutput(v[chunk.layer], weights, model.layout.n_tokens)
                    slot_owner, energy = output.energy(change, chunk)
                    risk.index_add_(0, slot_owner.cpu(), energy.double().cpu())
                for name in wanted:
                    g = grads[name][chunk.layer][:, chunk.heads, chunk.queries]
                    per_row = torch.einsum("brk,brk->br", change, g).double()
                    per_candidate = torch.zeros(len(family), stop - start, dtype=torch.float64)
                    per_candidate = per_candidate.to(per_row.device)
                    per_candidate.index_add_(0, chunk.owner, per_row.T)
                    delta[name][:, start:stop] += per_candidate.cpu()
    known = family.cut_by_base  # the base cuts them already: exactly zero
    for name in wanted:
        delta[name][known] = 0.0
    result = _screen_result(model, subject, family, metric, return_type, clean, delta)
    estimated = "linear" if estimator == "plain" else estimator
    result.table["method"] = pd.Series(
        ["exact" if c.layer in exact or known[i] else estimated for i, c in enumerate(family)]
    )
    result.table["risk"] = pd.Series(
        (risk / n).numpy() if risk_known else np.full(len(family), np.nan)
    )
    result.base, result.estimator, result.ig_steps = base, estimator, ig_steps
    result.exact_last_layer, result.exact_penultimate = exact_last_layer, exact_penultimate
    return result


def _row_chunks(family: CompiledFamily, batch: int, budget: int = 2**24) -> list[RowChunk]:
    """Every candidate's touched rows (`CompiledFamily.rows`), grouped by layer into chunks of
    at most ``budget`` elements per softmax (``batch x rows x keys``)."""
    max_rows = max(1, budget // (batch * family.layout.n_tokens))
    chunks = []
    for layer, (ids, _) in family.by_layer.items():
        current: list[tuple] = []
        for i in ids.tolist():
            h, q, cut = family.rows[i]
            if current and sum(len(p[0]) for p in current) + len(h) > max_rows:
                chunks.append(RowChunk(layer, *(torch.cat(x) for x in zip(*current))))
                current = []
            current.append((h, q, cut, torch.full_like(h, i)))
        if current:
            chunks.append(RowChunk(layer, *(torch.cat(x) for x in zip(*current))))
    return chunks


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


@checked
def verify_candidates(
    screen: Screen,
    top: int,
    *,
    flagged: int = FLAG_BUDGET,
    sample: int = MISS_SAMPLE,
    seed: int = 0,
    batch_size: int = 256,
    groups: int = 0,
) -> Screen:
    """`Screen.verify`: screen, flag, fix. Exact masked passes (`ExactPasses`) for

    1. the ``flagged`` linearised candidates with the largest ``risk`` (the first-order
       estimate's error grows with the change a cut writes into its layer's attention
       output; `docs/ARCHITECTURE.md` has the measurements);
    2. with ``groups`` (a number of layers, from the first), group testing over their
       estimated candidates: each kind of cut of a layer (``kind``, all heads) is cut jointly
       in one masked pass over every 8th window; the group is ``cleared`` where its drop less
       two standard errors over those windows' trials (one trial clears nothing) stays under
       the ``top``-th drop so far, else each member is measured (``verified`` ``group``).
       Clearing is evidence, not a bound (effects in a group can cancel; "Group testing" in
       docs/guide/scale-out.md), and the sample below still draws from the cleared;
    3. the ``top`` candidates by ``final`` (the exact effect where measured, else the
       estimate), until all of them are exact;
    4. a seeded random ``sample`` of the candidates still estimated, to bound what the
       ranking missed: ``agreement["missed_upper"]`` is a one-sided 95 % Clopper-Pearson
       upper bound on how many unmeasured candidates have a larger drop than the ``top``-th:
       the bound on their share (``missed_rate_upper``) among all that were unmeasured before
       the draw (``unmeasured``; why not those left after it: docs/ARCHITECTURE.md), times
       their number, less the ones the draw found. It is only as tight as the draw is large:
       10 draws that find no miss bound the rate at 26 %, 59 at 5 % (`miss_note`); the repr
       prints it with its draws (`missed_words`).

    Adds ``exact``, ``exact_accuracy`` (for a candidate the screen computed exactly,
    ``method`` ``"exact"``, its estimate; else its masked pass, NaN where none ran),
    ``final``, ``final_accuracy`` and ``verified`` (why a row was measured: ``flagged``,
    ``top``, ``group``, ``sample``, ``ranked`` (in the top until measured), or empty) and
    re-ranks by ``final``; ``agreement`` counts the ``group_passes`` and the unmeasured
    candidates they ``cleared``. ``agreement["spearman"]`` is over the top candidates the
    screen scored (``screened_top`` of them; NaN under two: with every candidate exact,
    ``screened`` 0, no screen ran)."""
    n = len(screen.family)
    top = check_int(top, "top", minimum=1, maximum=n)
    flagged = check_int(flagged, "flagged")
    sample = check_int(sample, "sample")
    groups = check_int(groups, "groups (layers to group-test)")
    table = screen.table.copy()
    exact = table["method"] == "exact"  # computed exactly by the screen: exact already
    for column, of in (("exact", "estimate"), ("exact_accuracy", "estimate_accuracy")):
        table[column] = table[of].where(exact, np.nan)
    table["verified"] = ""
    passes = screen.exact_passes(batch_size)
    full = passes.score({})

    def measure(index: pd.Index, why: str) -> None:
        for i in index:
            got = passes.score(screen.family.layer_masks([i]))
            table.loc[i, ["exact", "exact_accuracy"]] = (
                got.metric - full.metric,
                got.accuracy - full.accuracy,
            )
        table.loc[index, "verified"] = why
        table["final"] = table["exact"].fillna(table["estimate"])  # the last layers': exact
        table["final_accuracy"] = table["exact_accuracy"].fillna(table["estimate_accuracy"])

    estimated = ~exact  # linearised, or integrated gradients
    measure(table.loc[estimated, "risk"].nlargest(flagged).index, "flagged")
    cleared: list[int] = []  # unmeasured members of a group pass that stayed under the top
    every = min(8, max(1, len(screen.data.y_test) // 4))  # every 8th window, at least 4
    device, dtype = screen.family.device, screen.model.cfg.dtype
    x = torch.as_tensor(np.asarray(screen.data.X_test)[::every], dtype=dtype, device=device)
    y = torch.as_tensor(np.asarray(screen.data.y_test)[::every], device=device)
    trials = pd.Series(np.asarray(screen.data.test_trials)[::every])  # the independent unit

    def drops(index: list[int]) -> pd.Series:  # each trial's mean metric, index (and base) cut
        cut = screen.family.layer_masks(index)
        cut |= {k: cut[k] | m if k in cut else m for k, m in screen.family.base.items()}
        with torch.inference_mode():
            logits = screen.model(x, edge_masks=cut or None, return_type=screen.return_type)
        metric = passes.scorer(logits, y)[screen.metric].double().cpu().numpy()
        return pd.Series(metric).groupby(trials).mean()

    clean, group_passes = drops([]) if groups else None, 0
    # one kind of cut in one layer, across heads (cutting a whole query row instead would zero
    # it, not renormalise it: measured to cancel), the largest estimated drops first
    by_kind = table[estimated & (table["layer"] < groups)].groupby(["layer", "kind"], sort=False)
    for _, group in sorted(by_kind, key=lambda g: g[1]["estimate"].sum()):
        index = group.index[table.loc[group.index, "exact"].isna()]
        if len(index) > 1:
            change, group_passes = drops(list(index)) - clean, group_passes + 1
            low = change.mean() - 2 * change.std(ddof=1) / math.sqrt(len(change))
            if low >= table["final"].nsmallest(top).max():  # NaN from one trial: never
                cleared.extend(index)
                continue
        measure(index, "group")
    while True:  # until the top by final effect are all known exactly
        chosen = table.sort_values(["final", "layer"]).head(top)
        pending = chosen.index[(chosen["method"] != "exact") & chosen["exact"].isna()]
        if pending.empty:
            break
        measure(pending, "ranked")
    table.loc[chosen.index, "verified"] = "top"
    threshold = float(table.loc[chosen.index, "final"].max())
    unmeasured = table.index[estimated & table["exact"].isna()]
    cleared = [i for i in cleared if i in unmeasured]
    rng = np.random.default_rng(seed)
    drawn = pd.Index(rng.choice(unmeasured, size=min(sample, len(unmeasured)), replace=False))
    measure(drawn, "sample")
    hits = int((table.loc[drawn, "exact"] < threshold).sum())
    # every candidate exact (a two-layer CLS model): nothing can have been missed
    upper = _clopper_pearson_upper(hits, len(drawn)) if len(unmeasured) else 0.0
    table["rank"] = table["final"].rank(method="first").astype(int)
    measured = table[estimated & table["exact"].notna()]  # the screen's, measured exactly
    # the screen's agreement is over the top candidates it scored (an exact candidate's
    # estimate is its exact effect: a rho of 1 that says nothing of the screen)
    scored = chosen.index[chosen["method"] != "exact"]
    estimates = table.loc[scored, "estimate"]
    agreement = {
        "spearman": spearman(estimates, table.loc[scored, "final"]),
        "spearman_accuracy": spearman(estimates, table.loc[scored, "final_accuracy"]),
        "n": float(top),
        "screened": float(estimated.sum()),  # candidates the screen scored, not exactly
        "screened_top": float(len(scored)),
        "measured": float(len(measured)),
        "flagged": float((table["verified"] == "flagged").sum()),
        "unmeasured": float(len(unmeasured)),  # before the draw: the bound's population
        "cleared": float(len(cleared)),  # of them, in a group pass that stayed under the top
        "group_passes": float(group_passes),
        "sampled": float(len(drawn)),
        "sample_hits": float(hits),
        "missed_rate_upper": upper,
        # the rate bounds the share among all the unmeasured (the draw included, which it was
        # drawn from): at most upper * len(unmeasured) of them, of which `hits` were found
        "missed_upper": float(np.maximum(0.0, upper * len(unmeasured) - hits)),  # NaN: none drawn
    }
    if len(measured) >= 2:  # of the linearised candidates measured (none when all are exact)
        agreement["spearman_measured"] = spearman(measured["estimate"], measured["exact"])
    verified_with = dict(top=top, flagged=flagged, sample=sample, seed=seed, groups=groups)
    return dataclasses.replace(
        screen, table=table.sort_values("rank"), agreement=agreement, verified_with=verified_with
    )


def _clopper_pearson_upper(hits: int, n: int, confidence: float = 0.95) -> float:
    """One-sided upper confidence bound on a rate seen ``hits`` times in ``n`` draws
    (NaN without draws).

    >>> round(_clopper_pearson_upper(0, 10), 3)  # (1 - 0.95) ** (1 / 10) from 1
    0.259
    """
    # the upper end of the two-sided interval whose tails hold 1 - confidence each
    return float(clopper_pearson(hits, n, 2 * confidence - 1)[1])
