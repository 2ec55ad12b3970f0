"""Distribution shift of an ablation: does masking edges push tokens off-distribution? A mask
is a clean intervention only if what it produces still looks like something the later layers
have seen. `distribution_shift` compares each block's ``hook_resid_post`` with and without the
mask, per position (positions are distributed differently): ``cosine_distance`` (how far each
token moved), ``mmd2`` (the unbiased squared MMD between a token's unmasked vectors on one half
of the windows and its masked ones on the other, disjoint as the estimator assumes: near 0 when
the masked token is distributed like the unmasked one) and ``mmd2_null`` (the same between two
halves of the unmasked windows: the noise floor).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Float

from emg_lens._hints import checked
from emg_lens.edges import EdgeSet
from emg_lens.errors import ArgumentError, InputShapeError, UnsupportedFeatureError, check_ints
from emg_lens.hooks import compile_edges, name_filter
from emg_lens.inputs import check_deterministic, check_model

POSITION_CHUNK = 64  # positions whose kernel matrices are held at once


@checked
def median_bandwidth(points: Float[torch.Tensor, "*batch n dim"]) -> Float[torch.Tensor, "*batch"]:
    """The median heuristic: the median distance between distinct points (1 where all
    points coincide, since then any bandwidth gives the same kernel).

    >>> median_bandwidth(torch.tensor([[0.0], [1.0], [3.0]]))
    tensor(2., dtype=torch.float64)
    """
    sq = torch.cdist(points.double(), points.double()).pow(2)
    off = ~torch.eye(sq.shape[-1], dtype=torch.bool, device=sq.device)
    median = sq[..., off].median(dim=-1).values.sqrt()
    return torch.where(median > 0, median, torch.ones_like(median))


@checked
def mmd2_unbiased(
    x: Float[torch.Tensor, "*batch n dim"],
    y: Float[torch.Tensor, "*batch m dim"],
    *,
    bandwidth: float | torch.Tensor | None = None,
) -> Float[torch.Tensor, "*batch"]:
    """The unbiased estimate of the squared MMD between samples ``x`` and ``y`` (Gretton et al.
    2012) with the Gaussian kernel ``exp(-|a - b|² / (2 σ²))``; ``σ`` defaults to
    `median_bandwidth` of the pooled points. Leading axes are batched. Its expectation is 0
    for independent samples of one distribution, so slightly negative values are normal.

    >>> gen = torch.Generator().manual_seed(0)
    >>> a, b = torch.randn(300, 4, generator=gen), torch.randn(300, 4, generator=gen)
    >>> abs(float(mmd2_unbiased(a, b))) < 0.01, float(mmd2_unbiased(a, b + 1.0)) > 0.1
    (True, True)
    """
    if (
        min(x.ndim, y.ndim) < 2
        or x.shape[:-2] + x.shape[-1:] != y.shape[:-2] + y.shape[-1:]
        or min(x.shape[-2], y.shape[-2]) < 2
    ):
        raise InputShapeError(
            f"mmd2_unbiased needs [..., n >= 2, dim], [..., m >= 2, dim], got {x.shape}, {y.shape}"
        )
    x, y = x.double(), y.double()
    pooled = torch.cat([x, y], dim=-2)
    if bandwidth is None:
        bandwidth = median_bandwidth(pooled)
    bandwidth = torch.as_tensor(bandwidth, dtype=torch.float64, device=x.device)
    if not bool((bandwidth > 0).all()):
        raise ArgumentError(f"bandwidth must be > 0 (or None for the median), got {bandwidth}")
    k = torch.exp(-torch.cdist(pooled, pooled).pow(2) / (2 * bandwidth[..., None, None] ** 2))
    n, m = x.shape[-2], y.shape[-2]
    kxx, kyy, kxy = k[..., :n, :n], k[..., n:, n:], k[..., :n, n:]

    def off_diagonal_mean(block: torch.Tensor, size: int) -> torch.Tensor:
        diagonal = block.diagonal(dim1=-2, dim2=-1).sum(-1)
        return (block.sum(dim=(-2, -1)) - diagonal) / (size * (size - 1))

    return off_diagonal_mean(kxx, n) + off_diagonal_mean(kyy, m) - 2 * kxy.mean(dim=(-2, -1))


@torch.inference_mode()
def _resid_posts(model: Any, signals: torch.Tensor, masks: dict, batch_size: int) -> torch.Tensor:
    """``[layer, batch, pos, d_model]``: every block's output, with ``masks`` applied."""
    parts = []
    for start in range(0, len(signals), batch_size):
        _, cache = model.run_with_cache(
            signals[start : start + batch_size],
            names_filter=name_filter("hook_resid_post"),
            return_type=None,
            edge_masks=masks,
        )
        parts.append(
            torch.stack([cache["resid_post", layer] for layer in range(model.cfg.n_layers)])
        )
    return torch.cat(parts, dim=1)


@checked
def distribution_shift(
    model: Any,
    signals: Any,
    edges: EdgeSet | str | torch.Tensor,
    layers: Iterable[int],
    *,
    seed: int = 0,
    batch_size: int = 64,
) -> pd.DataFrame:
    """Cosine distance and MMD² (with its no-shift reference ``mmd2_null``) between the masked
    and the unmasked residual stream after each block, with ``edges`` (an edge set, its string
    form, or a compiled bool mask) masked in ``layers`` together. One row per (layer, group):
    ``layer, group`` (``"all"``, then each token group), ``masked``, ``n_windows`` (per half),
    ``cosine_distance``, ``mmd2``, ``mmd2_null``; the halves are drawn with ``seed``.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0))
    >>> shift = distribution_shift(model, model.example_input(8), "cross_modal", [1])
    >>> before = shift.query("layer == 0 and group == 'all'").iloc[0]
    >>> bool(before.masked), abs(round(float(before.cosine_distance), 9))  # 0 up to rounding
    (False, 0.0)
    >>> bool(before.mmd2 == before.mmd2_null)  # unmasked there: the shift is the noise floor
    True
    """
    check_model(model)
    check_deterministic(model)
    n_layers = model.cfg.n_layers
    # an attached model whose attention has no block around it to name
    if missing := [
        i for i in range(n_layers) if f"blocks.{i}.hook_resid_post" not in model.hook_dict
    ]:
        raise UnsupportedFeatureError(
            f"distribution_shift reads blocks.{{l}}.hook_resid_post, missing at layers {missing}: "
            "see model.resid_modules"
        )
    layers = sorted(set(check_ints(layers, "layers", 0, n_layers - 1)))
    signals = model.to_tokens(signals)
    if len(signals) < 4:
        raise ArgumentError(f"distribution_shift needs at least 4 windows, got {len(signals)}")
    masks = compile_edges(edges, model, layers)
    clean = _resid_posts(model, signals, {}, batch_size)  # [layer, window, pos, d_model]
    masked = _resid_posts(model, signals, masks, batch_size)
    order = torch.randperm(len(signals), generator=torch.Generator().manual_seed(seed))
    half_a, half_b = order[: len(order) // 2], order[len(order) // 2 : 2 * (len(order) // 2)]
    layout = model.layout
    groups = {"all": list(range(layout.n_tokens))}
    groups.update({g: layout.positions(g) for g in layout.groups})
    rows = []
    for layer in range(n_layers):
        cosine = 1 - F.cosine_similarity(clean[layer].double(), masked[layer].double(), dim=-1)
        shifted, null = _per_position_mmd2(clean[layer], masked[layer], half_a, half_b)
        for group, positions in groups.items():
            rows.append(
                {
                    "layer": layer,
                    "group": group,
                    "masked": layer in layers,
                    "n_windows": len(half_a),
                    "cosine_distance": float(cosine[:, positions].mean()),
                    "mmd2": float(shifted[positions].mean()),
                    "mmd2_null": float(null[positions].mean()),
                }
            )
    return pd.DataFrame(rows)


def _per_position_mmd2(
    clean: Float[torch.Tensor, "window pos d_model"],
    masked: Float[torch.Tensor, "window pos d_model"],
    half_a: torch.Tensor,
    half_b: torch.Tensor,
) -> tuple[Float[torch.Tensor, " pos"], Float[torch.Tensor, " pos"]]:
    """Per position: MMD² of clean half A vs masked half B, and of clean A vs clean B, with one
    bandwidth per position (the median heuristic on all its clean tokens)."""
    shifted, null = [], []
    for start in range(0, clean.shape[1], POSITION_CHUNK):
        chunk = slice(start, start + POSITION_CHUNK)
        reference = clean[:, chunk].transpose(0, 1)  # [pos, window, d_model]
        test = masked[:, chunk].transpose(0, 1)
        bandwidth = median_bandwidth(reference)
        a, b = reference[:, half_a.to(reference.device)], half_b.to(reference.device)
        shifted.append(mmd2_unbiased(a, test[:, b], bandwidth=bandwidth))
        null.append(mmd2_unbiased(a, reference[:, b], bandwidth=bandwidth))
    return torch.cat(shifted).cpu(), torch.cat(null).cpu()
