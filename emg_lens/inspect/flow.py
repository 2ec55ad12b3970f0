"""Attention flow: how much attention each head sends from one token group to another, from the
*mean pattern* of every layer over the windows (`mean_patterns`): summed over a key group's
tokens and averaged over a query group's (`attention_flow`), or summed over an edge set's edges
(`edge_mass`). ``ratio`` compares a mass with uniform attention's ``n / N``.

>>> from emg_lens import EncoderConfig
>>> from emg_lens.models import IsoNet
>>> model = IsoNet(EncoderConfig.preset("tiny", seed=0))
>>> flow = attention_flow(model, model.example_input(4))
>>> flow.columns.tolist()
['layer', 'head', 'query_group', 'key_group', 'mass', 'uniform', 'ratio']
>>> sums = flow.groupby(["layer", "head", "query_group"])["mass"].sum()
>>> bool(((sums - 1).abs() < 1e-5).all())
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from einops import einsum
from jaxtyping import Float
from transformer_lens import ActivationCache

from emg_lens.edges import EdgeSet, parse
from emg_lens.errors import ArgumentError, check_choice, check_int, checked, describe
from emg_lens.hooks import pattern_filter
from emg_lens.inputs import check_model
from emg_lens.inspect.checks import check_cache, pattern_names
from emg_lens.layout import CLS, TokenLayout

BY = ("group", "channel", "time")


@checked
def token_bins(layout: TokenLayout, by: str = "group", bins: int | None = None) -> list[str]:
    """One label per token position: its group, or its channel or time patch (CLS stays
    ``"cls"``). ``bins`` merges consecutive channels (or patches) into that many bins.

    >>> layout = TokenLayout.channel_tokens({"emg": 4}, n_patches=2, cls_token=False)
    >>> token_bins(layout, "channel", bins=2)
    ['ch0-1', 'ch0-1', 'ch0-1', 'ch0-1', 'ch2-3', 'ch2-3', 'ch2-3', 'ch2-3']
    >>> token_bins(layout, "time")
    ['t0', 't1', 't0', 't1', 't0', 't1', 't0', 't1']
    """
    check_choice(by, BY, "by")
    if by == "group":
        if bins is not None:
            raise ArgumentError(f"bins={bins!r} applies to by='channel' or 'time', not 'group'")
        return list(layout.group)
    values = layout.channel if by == "channel" else layout.time
    prefix = "ch" if by == "channel" else "t"
    distinct = sorted({v for v in values if v >= 0})
    if bins is None:
        chunks = [[v] for v in distinct]
    else:
        what = f"bins (None: one per distinct {by} value)"
        chunks = [
            list(c) for c in np.array_split(distinct, check_int(bins, what, 1, len(distinct)))
        ]
    label = {}
    for chunk in chunks:
        name = f"{prefix}{chunk[0]}" if len(chunk) == 1 else f"{prefix}{chunk[0]}-{chunk[-1]}"
        label.update(dict.fromkeys(chunk, name))
    return [CLS if g == CLS else label[v] for g, v in zip(layout.group, values)]


@torch.inference_mode()
@checked
def mean_patterns(
    model: Any, cache_or_signals: ActivationCache | Any, *, batch_size: int = 64
) -> Float[torch.Tensor, "layer head_index query_pos key_pos"]:
    """Every layer's attention pattern averaged over the windows, from a cache of ``model``
    (validated: `check_cache`) or from signals ``[batch, channels, time]``, summed by a hook
    batch by batch (memory: one batch of one layer).

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny"))
    >>> mean_patterns(model, model.example_input(3)).shape
    torch.Size([2, 4, 7, 7])
    """
    check_model(model)
    n_layers = model.cfg.n_layers
    if isinstance(cache_or_signals, ActivationCache):
        cache = check_cache(cache_or_signals, model, pattern_names(n_layers))
        return torch.stack([cache["pattern", layer].mean(0) for layer in range(n_layers)])
    if isinstance(cache_or_signals, Mapping):
        raise ArgumentError(
            "expected a transformer_lens ActivationCache (run_with_cache's) or "
            f"signals [batch, channels, time], got {describe(cache_or_signals)}"
        )
    signals = model.to_tokens(cache_or_signals)
    n = model.layout.n_tokens
    sums = torch.zeros(n_layers, model.cfg.n_heads, n, n, dtype=torch.float64)

    def accumulate(pattern: torch.Tensor, hook) -> None:
        layer = int(hook.name.split(".")[1])
        sums[layer] += pattern.sum(0).to(sums.device, sums.dtype)

    with model.hooks(fwd_hooks=[(pattern_filter(), accumulate)]):
        for start in range(0, len(signals), batch_size):
            model(signals[start : start + batch_size], return_type=None)
    return (sums / len(signals)).to(model.cfg.dtype)


@checked
def attention_flow(
    model: Any,
    cache_or_signals: ActivationCache | Any,
    *,
    by: str = "group",
    bins: int | None = None,
    batch_size: int = 64,
) -> pd.DataFrame:
    """Attention mass from each query group to each key group, per (layer, head).

    ``mass`` is averaged over windows and over the query tokens of ``query_group``, so each
    (layer, head, query_group) sums to 1 over key groups (less where a query's keys were all
    masked). ``uniform`` is the key group's share of tokens, ``ratio = mass / uniform``.
    Groups are token groups (``by="group"``: cls/emg/acc), or channel or time bins (see
    `token_bins`).

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0))
    >>> flow = attention_flow(model, model.example_input(2))
    >>> row = flow.query("layer == 0 and head == 0 and query_group == 'emg' and key_group == 'acc'")
    >>> float(row["uniform"].iloc[0])  # 4 acc tokens of 7
    0.5714285714285714
    """
    check_model(model)
    labels = token_bins(model.layout, by, bins)
    pattern = mean_patterns(model, cache_or_signals, batch_size=batch_size).double()
    names = list(dict.fromkeys(labels))
    member = torch.tensor([[lab == name for name in names] for lab in labels], dtype=torch.float64)
    counts = member.sum(0)
    mass = (
        einsum(
            pattern.cpu(),
            member,
            member,
            "layer head q k, q query_group, k key_group -> layer head query_group key_group",
        )
        / counts[:, None]
    )
    uniform = (counts / len(labels)).numpy()
    layer, head, q, k = np.indices(mass.shape)
    table = pd.DataFrame(
        {
            "layer": layer.ravel(),
            "head": head.ravel(),
            "query_group": np.asarray(names)[q.ravel()],
            "key_group": np.asarray(names)[k.ravel()],
            "mass": mass.numpy().ravel(),
            "uniform": uniform[k.ravel()],
        }
    )
    table["ratio"] = table["mass"] / table["uniform"]
    return table


@checked
def edge_mass(
    model: Any,
    cache_or_signals: ActivationCache | Any,
    edges: EdgeSet | str,
    *,
    batch_size: int = 64,
) -> pd.DataFrame:
    """The share of each head's attention that flows over ``edges``: the mean pattern summed
    over the edges in the set and divided by the number of query tokens (so every edge set
    and its complement add up to 1 per head).

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0))
    >>> x = model.example_input(2)
    >>> a, b = edge_mass(model, x, "cross_modal"), edge_mass(model, x, "~cross_modal")
    >>> bool(((a["mass"] + b["mass"] - 1).abs() < 1e-5).all())
    True
    """
    check_model(model)
    edges = parse(edges)
    pattern = mean_patterns(model, cache_or_signals, batch_size=batch_size)
    mass = masked_mass(pattern, edges.compile(model.layout, model.cfg.n_heads))
    layer, head = np.indices(mass.shape)
    return pd.DataFrame(
        {
            "layer": layer.ravel(),
            "head": head.ravel(),
            "edges": str(edges),
            "mass": mass.numpy().ravel(),
        }
    )


def masked_mass(
    pattern: Float[torch.Tensor, "layer head_index query_pos key_pos"],
    mask: torch.Tensor,
) -> Float[torch.Tensor, "layer head_index"]:
    """Mean patterns summed over the True entries of a ``[head, query, key]`` mask, divided by
    the number of query tokens.

    >>> pattern = torch.full((1, 1, 2, 2), 0.5)
    >>> masked_mass(pattern, torch.tensor([[[False, True], [False, False]]]))
    tensor([[0.2500]], dtype=torch.float64)
    """
    selected = pattern.double().cpu() * mask.to(torch.float64).cpu()
    return selected.sum(dim=(-2, -1)) / pattern.shape[-2]
