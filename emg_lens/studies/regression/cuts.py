"""Cutting edges in a regressor (a force predicted from an HD-sEMG grid): the change of its
error, tested over held-out time blocks, the unit (not the overlapping window).
`block_errors` scores a model per block with an edge set cut or without; `cut_table` compares
each cut's block errors with the unmasked model's (a cut that cuts no edge is a structural
zero: no p); `regression_cuts` does both for a model in memory. The method and a measured
study: docs/guide/recordings.md, "An HD-sEMG contraction: the force from a 64-electrode grid".

>>> from emg_lens import EncoderConfig
>>> from emg_lens.edges import between_regions
>>> from emg_lens.models import TinyMyo
>>> cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 4}, n_samples=8,
...                            patch_samples=8, d_model=8, d_head=4, n_heads=2, d_mlp=16,
...                            n_classes=1, channel_names=["a", "b", "c", "d"], seed=0)
>>> model = TinyMyo(cfg, task="regression", reg_target_len=1, reduction="mean").eval()
>>> X = torch.randn(12, 4, 8)
>>> y = np.linspace(0.0, 1.0, 12)
>>> table = regression_cuts(model, X, y, np.repeat([1, 4, 7], 4),
...                         {"ab_cd": between_regions("a+b", "c+d")})
>>> table["condition"].tolist(), table.columns[:5].tolist()
(['none', 'ab_cd'], ['condition', 'edges', 'mse', 'r2', 'delta_mse'])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int

from emg_lens.edges import EdgeSet
from emg_lens.errors import ArgumentError, InputShapeError, check_type, describe
from emg_lens.hooks import compile_edges
from emg_lens.models.base import HookedBiosignalModel
from emg_lens.stats.compare import correct, delta_t_intervals, sign_flip_p, stars
from emg_lens.stats.metrics import score_regression
from emg_lens.stats.units import bootstrap_delta_cis

CUT_COLUMNS = [
    *("condition", "edges", "mse", "r2", "delta_mse", "ci_low", "ci_high", "t_low", "t_high"),
    *("delta_r2", "p", "p_corrected", "stars", "cut_edges"),
]
"""The columns of `cut_table` (and `regression_cuts`), in order."""


@torch.no_grad()
def predict_regression(
    model: torch.nn.Module,
    X: Float[Any, "n channel time"],
    *,
    edge_masks: Mapping[int, torch.Tensor] | None = None,
    batch_size: int = 256,
) -> Float[np.ndarray, " n"]:
    """One prediction per window of ``model`` (its output must hold one value per window,
    e.g. TinyMyo's regression head with one output at one step), edges cut by
    ``edge_masks`` (``{layer: mask}``, as the model's ``forward`` takes them)."""
    device = next(model.parameters()).device
    X = torch.as_tensor(np.asarray(X), dtype=torch.float32)
    model.eval()
    out = []
    for chunk in X.split(batch_size):
        y = model(chunk.to(device), edge_masks=dict(edge_masks or {}))
        if y.numel() != len(chunk):
            wanted = "a regressor scored here gives one value per window (one output, one step)"
            raise InputShapeError(
                f"the model gives {describe(y)} for {len(chunk)} windows; {wanted}"
            )
        out.append(y.reshape(-1).double().cpu().numpy())
    return np.concatenate(out)


def check_blocks(y: Float[Any, " n"], blocks: Int[Any, " n"], n_windows: int) -> np.ndarray:
    """The held-out blocks' ids (sorted) of windows labelled ``blocks``; an `InputShapeError`
    unless ``y`` and ``blocks`` have ``n_windows`` entries, an `ArgumentError` for fewer than 2
    blocks.

    >>> check_blocks(np.zeros(4), np.array([4, 1, 1, 4]), 4).tolist()
    [1, 4]
    """
    y, blocks = np.asarray(y), np.asarray(blocks)
    if len(y) != n_windows or blocks.shape != y.shape:
        got = f"got {n_windows}, {len(y)} and {len(blocks)}"
        raise InputShapeError(f"X, y and blocks must have one entry per window, {got}")
    ids = np.unique(blocks)
    if len(ids) < 2:
        raise ArgumentError(f"blocks must name at least 2 held-out blocks, got {ids.tolist()}")
    return ids


def block_errors(
    model: HookedBiosignalModel,
    X: Float[Any, "n channel time"],
    y: Float[Any, " n"],
    blocks: Int[Any, " n"],
    edges: EdgeSet | None = None,
) -> dict[str, Any]:
    """``model``'s error on windows ``X`` (targets ``y``), ``edges`` cut in every layer (None:
    nothing cut): ``mse`` and ``r2`` over all windows, ``block_mse`` (the MSE of each held-out
    block, in the order of its sorted ids, `check_blocks`) and ``cut_edges`` (edges cut per
    layer, summed over heads); JSON-able, what the regression study stores as a cell.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import TinyMyo
    >>> cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 2}, n_samples=8,
    ...                            patch_samples=8, d_model=8, d_head=4, n_heads=2, d_mlp=16,
    ...                            n_classes=1, seed=0)
    >>> model = TinyMyo(cfg, task="regression", reg_target_len=1, reduction="mean")
    >>> errors = block_errors(model, torch.randn(6, 2, 8), np.arange(6.0), np.repeat([0, 1], 3))
    >>> len(errors["block_mse"]), errors["cut_edges"]
    (2, 0)
    """
    y, blocks = np.asarray(y, np.float64), np.asarray(blocks)
    ids = check_blocks(y, blocks, len(X))
    masks, cut = {}, 0
    check_type(edges, EdgeSet | None, "edges")
    if edges is not None:
        masks = dict(compile_edges(edges, model))  # the one compiled cut
        cut = int(sum(int(m.sum()) for m in masks.values())) // model.cfg.n_layers
    pred = predict_regression(model, X, edge_masks=masks)
    block_mse = [float(np.mean((pred[blocks == b] - y[blocks == b]) ** 2)) for b in ids]
    return {**score_regression(pred, y), "block_mse": block_mse, "cut_edges": cut}


def _check_names(conditions: Mapping[str, Any]) -> None:
    if not conditions or "none" in conditions:
        accepted = "at least one edge set, none of them 'none' (the unmasked row)"
        raise ArgumentError(f"conditions must name {accepted}, got {list(conditions)}")


def cut_table(
    base: Mapping[str, Any],
    cuts: Mapping[str, Mapping[str, Any]],
    *,
    edges: Mapping[str, str] | None = None,
    correction: str = "holm",
    seed: int = 0,
) -> pd.DataFrame:
    """The table of `regression_cuts` from `block_errors` results: ``base`` (nothing cut)
    and ``cuts`` (by name, each with the same blocks); ``edges`` names each cut's edge set
    (its column ``edges``). See `regression_cuts` for the columns.

    >>> base = {"mse": 1.0, "r2": 0.9, "block_mse": [1.0, 1.0, 1.0], "cut_edges": 0}
    >>> cut = {"mse": 2.0, "r2": 0.8, "block_mse": [2.0, 1.5, 2.5], "cut_edges": 4}
    >>> cut_table(base, {"x": cut})[["condition", "delta_mse", "p"]].to_dict("records")[1]
    {'condition': 'x', 'delta_mse': 1.0, 'p': 0.25}
    """
    _check_names(cuts)
    base_blocks = np.asarray(base["block_mse"], np.float64)
    masked = np.array([np.asarray(c["block_mse"], np.float64) for c in cuts.values()])
    if masked.shape[1:] != base_blocks.shape:
        got = [len(c["block_mse"]) for c in cuts.values()]
        raise InputShapeError(
            f"every cut must be scored on the base's {len(base_blocks)} blocks, got {got}"
        )
    edges = edges or {}
    rows = [{"condition": "none", "edges": "", "mse": base["mse"], "r2": base["r2"]}]
    rows += [
        {"condition": name, "edges": edges.get(name, ""), "mse": c["mse"], "r2": c["r2"]}
        for name, c in cuts.items()
    ]
    differences = masked - base_blocks[None]
    low, high = bootstrap_delta_cis(masked, base_blocks, relative=False, seed=seed)
    t_low, t_high = delta_t_intervals(masked, base_blocks, level=0.95, relative=False)
    moves = np.array([c["cut_edges"] > 0 for c in cuts.values()])
    p = np.where(moves, sign_flip_p(differences), np.nan)
    p_corrected = np.full(len(p), np.nan)
    if moves.any():
        p_corrected[moves] = correct(p[moves].tolist(), correction)
    table = pd.DataFrame(rows)
    table["delta_mse"] = np.r_[0.0, differences.mean(1)]
    table["ci_low"], table["ci_high"] = np.r_[0.0, low], np.r_[0.0, high]
    table["t_low"], table["t_high"] = np.r_[0.0, t_low], np.r_[0.0, t_high]
    table["delta_r2"] = table["r2"] - base["r2"]
    table["p"], table["p_corrected"] = np.r_[np.nan, p], np.r_[np.nan, p_corrected]
    table["stars"] = [stars(v) if np.isfinite(v) else "" for v in table["p_corrected"]]
    table["cut_edges"] = [0, *(int(c["cut_edges"]) for c in cuts.values())]
    return table[CUT_COLUMNS]


def regression_cuts(
    model: HookedBiosignalModel,
    X: Float[Any, "n channel time"],
    y: Float[Any, " n"],
    blocks: Int[Any, " n"],
    conditions: Mapping[str, EdgeSet],
    *,
    correction: str = "holm",
    seed: int = 0,
) -> pd.DataFrame:
    """The effect of cutting each edge set of ``conditions`` (by name; in every layer) on
    ``model``'s predictions of ``y`` from windows ``X``, tested over the held-out ``blocks``:
    `block_errors` of each, then `cut_table`. Columns: ``condition``, ``edges``, ``mse``,
    ``r2``, ``delta_mse`` (the mean over blocks of a block's MSE change) with its 95 %
    bootstrap (``ci_low``, ``ci_high``, seeded by ``seed``) and t (``t_low``, ``t_high``)
    intervals over blocks, ``delta_r2``, ``p`` (exact sign-flip over blocks), ``p_corrected``
    (``correction`` over the conditions that cut an edge), ``stars`` and ``cut_edges``. The
    first row, ``none``, is the unmasked model.
    """
    check_blocks(y, blocks, len(X))
    _check_names(conditions)  # before any pass
    for name, edges in conditions.items():
        check_type(edges, EdgeSet, f"condition {name!r}")
    base = block_errors(model, X, y, blocks)
    cuts = {name: block_errors(model, X, y, blocks, edges) for name, edges in conditions.items()}
    names = {name: str(edges) for name, edges in conditions.items()}
    return cut_table(base, cuts, edges=names, correction=correction, seed=seed)
