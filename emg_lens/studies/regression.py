"""Cutting edges in a regressor (a force predicted from an HD-sEMG grid): the change of its
error, tested over held-out time blocks.

An ablation study (`emg_lens.studies.runner`) scores classifiers over subjects. A regressor
trained on one contraction has one subject, and its test windows are not independent (they
overlap and the force changes slowly), so `regression_cuts` treats each held-out time block
(`emg_lens.data.windows.contraction`) as the unit: for every condition it computes the MSE
per block with the edges cut in every layer and without, then, over blocks, the mean change
(ΔMSE, absolute), its percentile bootstrap interval (`stats.bootstrap_delta_cis`, blocks
resampled) and the exact sign-flip permutation p (`stats.compare_rows`), corrected over the
conditions (`stats.correct`). ΔR² is over all test windows (`metrics.score_regression`).
A condition whose masks cut no edge is a structural zero: its row gets no p and stays out of
the correction, as in every study.

>>> from emg_lens import EncoderConfig
>>> from emg_lens.edges import between_regions
>>> from emg_lens.models.tinymyo import TinyMyo
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
from emg_lens.errors import ArgumentError, InputShapeError, describe
from emg_lens.studies.metrics import score_regression
from emg_lens.studies.stats import bootstrap_delta_cis, compare_rows, correct, stars

__all__ = ["predict_regression", "regression_cuts"]


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
    X = torch.as_tensor(np.asarray(X), dtype=torch.float32)
    model.eval()
    out = []
    for chunk in X.split(batch_size):
        y = model(chunk, edge_masks=dict(edge_masks or {}))
        if y.numel() != len(chunk):
            raise InputShapeError(
                f"the model gives {describe(y)} for {len(chunk)} windows; a regressor scored "
                "here gives one value per window (one output at one step)"
            )
        out.append(y.reshape(-1).double().cpu().numpy())
    return np.concatenate(out)


def _block_mse(pred: np.ndarray, y: np.ndarray, blocks: np.ndarray, ids: np.ndarray):
    return np.array([np.mean((pred[blocks == b] - y[blocks == b]) ** 2) for b in ids])


def regression_cuts(
    model: torch.nn.Module,
    X: Float[Any, "n channel time"],
    y: Float[Any, " n"],
    blocks: Int[Any, " n"],
    conditions: Mapping[str, EdgeSet],
    *,
    correction: str = "holm",
    seed: int = 0,
) -> pd.DataFrame:
    """The effect of cutting each edge set of ``conditions`` (by name; in every layer) on
    ``model``'s predictions of ``y`` from windows ``X``, tested over the held-out ``blocks``
    (see the module docstring). Columns: ``condition``, ``edges``, ``mse``, ``r2``,
    ``delta_mse`` (mean over blocks of the block's MSE change), ``ci_low``, ``ci_high`` (its
    95 % bootstrap interval), ``delta_r2``, ``p`` (exact sign-flip test over blocks),
    ``p_corrected`` (``correction``: ``holm`` or ``bonferroni``, over the conditions that cut
    an edge), ``stars`` and ``cut_edges`` (edges cut per layer, summed over heads). The first
    row, ``none``, is the unmasked model.
    """
    y, blocks = np.asarray(y, np.float64), np.asarray(blocks)
    if len(y) != len(X) or blocks.shape != y.shape:
        raise InputShapeError(
            f"X, y and blocks must have one entry per window, got {len(X)}, {len(y)} and "
            f"{len(blocks)}"
        )
    ids = np.unique(blocks)
    if len(ids) < 2:
        raise ArgumentError(f"blocks must name at least 2 held-out blocks, got {ids.tolist()}")
    if not conditions or "none" in conditions:
        raise ArgumentError(
            f"conditions must name at least one edge set, none of them 'none' (the unmasked "
            f"row), got {list(conditions)}"
        )
    layout, cfg = model.layout, model.cfg
    base_pred = predict_regression(model, X)
    base = score_regression(base_pred, y)
    base_blocks = _block_mse(base_pred, y, blocks, ids)
    rows = [{"condition": "none", "edges": "", **base, "cut_edges": 0}]
    masked_blocks = []
    for name, edges in conditions.items():
        if not isinstance(edges, EdgeSet):
            raise ArgumentError(f"condition {name!r} must be an EdgeSet, got {describe(edges)}")
        masks = edges.compile_layers(layout, cfg.n_heads, cfg.n_layers)
        pred = predict_regression(model, X, edge_masks=dict(enumerate(masks)))
        scores = score_regression(pred, y)
        rows.append(
            {"condition": name, "edges": str(edges), **scores,
             "cut_edges": int(masks.sum()) // cfg.n_layers}
        )  # fmt: skip
        masked_blocks.append(_block_mse(pred, y, blocks, ids))
    masked = np.array(masked_blocks)
    low, high = bootstrap_delta_cis(masked, base_blocks, relative=False, seed=seed)
    _, p = compare_rows(masked, base_blocks, "permutation")
    moves = np.array([row["cut_edges"] > 0 for row in rows[1:]])
    p = np.where(moves, p, np.nan)
    p_corrected = np.full(len(p), np.nan)
    if moves.any():
        p_corrected[moves] = correct(p[moves].tolist(), correction)
    table = pd.DataFrame(rows)
    table["delta_mse"] = np.r_[0.0, masked.mean(1) - base_blocks.mean()]
    table["ci_low"], table["ci_high"] = np.r_[0.0, low], np.r_[0.0, high]
    table["delta_r2"] = table["r2"] - base["r2"]
    table["p"], table["p_corrected"] = np.r_[np.nan, p], np.r_[np.nan, p_corrected]
    table["stars"] = [stars(v) if np.isfinite(v) else "" for v in table["p_corrected"]]
    columns = ["condition", "edges", "mse", "r2", "delta_mse", "ci_low", "ci_high", "delta_r2"]
    return table[[*columns, "p", "p_corrected", "stars", "cut_edges"]]
