"""Interchange interventions (Geiger et al.): run a base window with one part of its computation
taken from a paired source window, and see whether the prediction follows the source.

The part is a token group's residual stream (``group=``) or, exactly, the share of each head's
``z[q] = sum_k pattern[q, k] v[k]`` through an edge set (``edges=``). The interchange
intervention accuracy (IIA) is the share of intervened predictions equal to the source's label
over pairs whose labels differ; its 95 % interval counts trials, not pairs (docs/DESIGN.md §15;
docs/concepts.md, "Statistics", says which interval each kind of pair gets). Subjects are never
pooled: `over_subjects` gives their mean IIA with a t interval over subjects beside each one's
own (docs/guide/what-an-edge-carries.md, first section).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from emg_lens._hints import checked
from emg_lens.data.preprocess import SubjectData
from emg_lens.edges import EdgeSet, parse
from emg_lens.errors import (
    ArgumentError,
    IndexOutOfRangeError,
    InputShapeError,
    check_int,
    check_type,
    describe,
    is_int,
)
from emg_lens.inputs import check_deterministic, check_model
from emg_lens.inspect.checks import require_columns
from emg_lens.inspect.probes import _hook_names, cut_masks, token_activations, token_group
from emg_lens.stats.compare import clopper_pearson, t_interval
from emg_lens.stats.units import cluster_bootstrap_ci, crossed_bootstrap_ci

PAIR_COLUMNS = [
    "pair", "base_label", "source_label", "base_pred", "source_pred", "intervened_pred",
    "follows_source", "logit_shift",
]  # fmt: skip


@checked
@dataclass(frozen=True)
class Interchange:
    """What `interchange` found: ``pairs`` (one row per pair: labels, the three predictions,
    whether the intervened one is the source's label, the logit shift), the three runs'
    ``logits`` (``base``, ``source``, ``intervened``), the IIA (``k`` of the ``n`` pairs whose
    labels differ) with its 95 % interval over ``unit`` (``"trial"``, with ``trials`` base
    trials, or ``"pair"``), and the mean logit shift."""

    pairs: pd.DataFrame
    logits: dict[str, np.ndarray]
    iia: float
    k: int
    ci_low: float
    ci_high: float
    n: int
    mean_logit_shift: float
    site: str
    unit: str = "pair"
    trials: int = 0

    def summary(self) -> dict[str, Any]:
        """The overall numbers as one row (``site, iia, k`` (pairs that follow the source),
        ``n, ci_low, ci_high, unit, trials, mean_logit_shift``)."""
        keys = ("site", "iia", "k", "n", "ci_low", "ci_high", "unit", "trials", "mean_logit_shift")
        return {key: getattr(self, key) for key in keys}


def _windows(
    model: Any, data: Any, what: str
) -> tuple[torch.Tensor, np.ndarray, np.ndarray | None]:
    """``(X, y, trial)`` of ``(X, y)`` or ``(X, y, trial)`` (``trial`` None for the first)."""
    if not (isinstance(data, tuple) and len(data) in (2, 3)):
        raise ArgumentError(
            f"{what} must be (X, y) or interchange_pairs' (X, y, trial), got {describe(data)}"
        )
    X = torch.as_tensor(np.asarray(data[0]), dtype=model.cfg.dtype, device=model.cfg.device)
    y = np.asarray(data[1].cpu() if isinstance(data[1], torch.Tensor) else data[1])
    model.to_tokens(X[:1])  # InputShapeError unless [n, channels, time] fits the model
    trials = y if len(data) == 2 else np.asarray(data[2])
    for name, got in (("labels y", y), ("trials", trials)):
        if got.shape != (len(X),) or not np.issubdtype(got.dtype, np.integer):
            raise InputShapeError(f"{what}'s {name} must be {len(X)} integers, got {describe(got)}")
    if len(y) and (y.min() < 0 or y.max() >= model.cfg.n_classes):
        raise ArgumentError(
            f"{what} labels must be in [0, {model.cfg.n_classes - 1}], got {y.min()}..{y.max()}"
        )
    return X, y, None if len(data) == 2 else trials


@checked
def interchange_pairs(
    data: SubjectData,
    class_pairs: Iterable[tuple[int, int]],
    *,
    same_repetition: bool = True,
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Base and source windows ``((X, y, trial), (X, y, trial))`` of one subject's test
    windows, paired for each ``(base class, source class)`` in ``class_pairs`` (class indices):
    the ``i``-th base window of a trial with the ``i``-th source window of a trial of the same
    repetition (``same_repetition``; else of the repetition at the same rank), as many as both
    have. ``trial`` is each window's trial (`SubjectData.test_trials`), over which `interchange`
    computes its interval.

    >>> X = np.arange(8, dtype=np.float32).reshape(4, 2, 1).repeat(4, -1)
    >>> data = SubjectData.from_windows({"emg": 2}, (X, np.array([0, 0, 1, 1])))
    >>> (bx, by, bt), (sx, sy, st) = interchange_pairs(data, [(0, 1)])
    >>> by.tolist(), sy.tolist(), sx[:, 0, 0].tolist(), bt.tolist()
    ([0, 0], [1, 1], [4.0, 6.0], [0, 1])
    """
    check_type(data, SubjectData, "interchange_pairs(data)")
    y, reps = np.asarray(data.y_test), np.asarray(data.rep_test)
    base, source = [], []
    class_pairs = list(class_pairs)
    for pair in class_pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2) or not all(
            is_int(c, 0, data.n_classes - 1) for c in pair
        ):
            raise ArgumentError(
                f"class_pairs holds (base, source) classes in 0..{data.n_classes - 1}, got {pair!r}"
            )
        a_reps = sorted(set(reps[y == pair[0]].tolist()))
        b_reps = sorted(set(reps[y == pair[1]].tolist()))
        matched = (
            [(r, r) for r in a_reps if r in b_reps]
            if same_repetition
            else list(zip(a_reps, b_reps))
        )
        for ra, rb in matched:
            a = np.flatnonzero((y == pair[0]) & (reps == ra))
            b = np.flatnonzero((y == pair[1]) & (reps == rb))
            k = min(len(a), len(b))
            base += a[:k].tolist()
            source += b[:k].tolist()
    if not base:
        where = " in the same repetition" * same_repetition
        raise ArgumentError(f"no windows to pair for class_pairs {class_pairs}{where}")
    X, trials = data.X_test, np.asarray(data.test_trials)
    return (X[base], y[base], trials[base]), (X[source], y[source], trials[source])


def _edge_delta(model, base_x, source_x, layer: int, edges: EdgeSet, cut) -> torch.Tensor:
    """The source's minus the base's ``z`` through ``edges`` at ``layer``."""
    mask = edges.compile(model.layout, model.cfg.n_heads, device=model.cfg.device, layer=layer)
    names = [f"blocks.{layer}.attn.hook_pattern", f"blocks.{layer}.attn.hook_v"]

    def through(X):
        acts = token_activations(model, X, names, cut=cut)
        pattern, v = (acts[n].to(model.cfg.device) for n in names)
        return torch.einsum("bhqk,hqk,bkhd->bqhd", pattern, mask.to(pattern.dtype), v)

    return through(source_x) - through(base_x)


@torch.inference_mode()
@checked
def interchange(
    model: Any,
    base: tuple[Any, Any] | tuple[Any, Any, Any],
    source: tuple[Any, Any] | tuple[Any, Any, Any],
    *,
    layer: int,
    group: str | None = None,
    edges: str | EdgeSet | None = None,
    return_type: str = "logits",
    cut: str | EdgeSet | None = None,
) -> Interchange:
    """Run the ``base`` windows with, at ``layer``, a token ``group``'s residual stream (entering
    the layer; layer ``n_layers`` is the stream after the last block) or the attention output
    through ``edges`` taken from the paired ``source`` windows (``(X, y)`` each, or
    ``(X, y, trial)`` with each window's trial, window ``i`` of one paired with window ``i`` of
    the other; `interchange_pairs` builds them). The IIA's interval resamples the trials the
    pairs carry (both sides' where both carry them: a crossed bootstrap), else it is
    Clopper-Pearson over pairs. ``return_type``: the model output read; ``cut``: an edge set
    masked in every layer of every run. Returns an `Interchange`.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0)).eval()
    >>> X = model.example_input(6)
    >>> y = model(X).argmax(-1)
    >>> after = interchange(model, (X, y), (X.flip(0), y.flip(0)), layer=2, group="cls")
    >>> # the CLS head reads the CLS token after the last block: it follows the source
    >>> bool((after.pairs["intervened_pred"] == after.pairs["source_pred"]).all())
    True
    """
    check_model(model)
    check_deterministic(model)
    (base_x, base_y, base_trial), (source_x, source_y, source_trial) = (
        _windows(model, base, "base"),
        _windows(model, source, "source"),
    )
    if len(base_x) != len(source_x) or not len(base_x):
        raise InputShapeError(
            f"base and source must pair window by window, got {len(base_x)}, {len(source_x)}"
        )
    if (group is None) == (edges is None):
        raise ArgumentError("interchange needs exactly one of group= (a token group) or edges=")
    if group is not None:
        name, positions, pooled = token_group(model, group)
        if pooled:
            raise ArgumentError(f"group {group!r} is a mean over tokens, not tokens to replace")
        hook_name = _hook_names(model, "resid_pre", [layer])[layer]
        site = f"{name} at layer {layer}"
        source_acts = token_activations(model, source_x, [hook_name], cut=cut)[hook_name].to(
            base_x.device
        )

        def intervene(act: torch.Tensor, hook) -> torch.Tensor:  # the residual stream
            patched = act.clone()
            patched[:, positions] = source_acts[:, positions].to(act.dtype)
            return patched
    else:
        edge_set = parse(check_type(edges, str | EdgeSet, "edges"))
        n = model.cfg.n_layers
        layer = check_int(layer, "layer (with edges=)", 0, n - 1, IndexOutOfRangeError)
        site = f"{edge_set} in layer {layer}"
        delta = _edge_delta(model, base_x, source_x, layer, edge_set, cut)
        hook_name = f"blocks.{layer}.attn.hook_z"

        def intervene(act: torch.Tensor, hook) -> torch.Tensor:  # the heads' outputs z
            return act + delta.to(act.dtype)

    run = {"return_type": return_type, "edge_masks": cut_masks(model, cut)}
    base_logits = model(base_x, **run).float().cpu().numpy()
    source_logits = model(source_x, **run).float().cpu().numpy()
    intervened = model.run_with_hooks(base_x, fwd_hooks=[(hook_name, intervene)], **run)
    intervened = intervened.float().cpu().numpy()
    if not np.isfinite(intervened).all():
        raise InputShapeError(
            f"the intervention ({site}) gave NaN or inf: check source and weights"
        )
    rows = np.arange(len(base_y))

    def difference(logits: np.ndarray) -> np.ndarray:
        return logits[rows, source_y] - logits[rows, base_y]

    pairs = pd.DataFrame(
        {
            "pair": rows,
            "base_label": base_y,
            "source_label": source_y,
            "base_pred": base_logits.argmax(-1),
            "source_pred": source_logits.argmax(-1),
            "intervened_pred": intervened.argmax(-1),
        }
    )
    pairs["follows_source"] = pairs["intervened_pred"] == pairs["source_label"]
    pairs["logit_shift"] = difference(intervened) - difference(base_logits)
    differ = pairs[pairs["base_label"] != pairs["source_label"]]
    k, n = int(differ["follows_source"].sum()), len(differ)
    if base_trial is None or not n:
        unit, trials = "pair", n
        low, high = map(float, clopper_pearson(k, n))
    else:
        hits, at = differ["follows_source"].to_numpy(float), differ.index.to_numpy()
        unit, trials = "trial", len(np.unique(base_trial[at]))
        if source_trial is None:
            low, high = cluster_bootstrap_ci(hits, base_trial[at])
        else:
            low, high = crossed_bootstrap_ci(hits, base_trial[at], source_trial[at])
    return Interchange(
        pairs=pairs[PAIR_COLUMNS],
        logits={"base": base_logits, "source": source_logits, "intervened": intervened},
        iia=k / n if n else float("nan"),
        k=k,
        ci_low=float(low),
        ci_high=float(high),
        n=n,
        mean_logit_shift=float(differ["logit_shift"].mean()) if n else float("nan"),
        site=site,
        unit=unit,
        trials=trials,
    )


SITE_KEYS = ["cut", "group", "layer"]
"""What one interchange is (a row per subject of each): the edge set cut, the token group
interchanged and the layer."""


def over_subjects(table: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """The subject-level IIA of each ``cut``, ``group`` and ``layer`` of ``table`` (one row per
    subject and site, as ``emg-lens probe`` writes ``interchange.csv``), never an interval over
    the subjects' pooled pairs. Columns: the keys, ``subjects``, ``iia`` (the mean of the
    subjects' IIA) with its ``level`` t interval over subjects (``ci_low``, ``ci_high``; one
    subject: its own), ``iia_min``, ``iia_max``, and ``k`` of ``n`` pairs summed (counts).

    >>> table = pd.DataFrame({"subject": [1, 2], "group": "acc", "layer": 0, "k": [30, 40],
    ...                       "n": 64, "ci_low": [0.3, 0.45], "ci_high": [0.62, 0.77]})
    >>> row = over_subjects(table).iloc[0]
    >>> int(row.subjects), round(float(row.iia), 3)  # the mean of 30/64 and 40/64
    (2, 0.547)
    >>> round(float(row.ci_low), 3), round(float(row.ci_high), 3)  # ± 12.71 · 0.078: 2 say little
    (-0.446, 1.54)
    """
    require_columns(table, ["group", "layer", "k", "n"], "over_subjects")
    table = table.assign(cut=table.get("cut", "none"), iia=table["k"] / table["n"].where(
        table["n"] > 0))  # fmt: skip
    rows = []
    for key, subjects in table.groupby(SITE_KEYS, sort=False):
        iia = subjects["iia"].to_numpy(float)
        if len(subjects) == 1 and {"ci_low", "ci_high"} <= set(subjects.columns):
            low, high = float(subjects["ci_low"].iloc[0]), float(subjects["ci_high"].iloc[0])
        elif len(subjects) == 1:
            low, high = map(float, clopper_pearson(subjects["k"].iloc[0], subjects["n"].iloc[0]))
        else:
            low, high = t_interval(iia, level)
        rows.append({
            **dict(zip(SITE_KEYS, key)), "subjects": len(subjects), "iia": float(np.nanmean(iia)),
            "ci_low": low, "ci_high": high, "iia_min": float(np.nanmin(iia)),
            "iia_max": float(np.nanmax(iia)), "k": int(subjects["k"].sum()),
            "n": int(subjects["n"].sum()),
        })  # fmt: skip
    return pd.DataFrame(rows)
