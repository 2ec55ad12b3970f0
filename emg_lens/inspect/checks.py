"""Checks shared by the inspection tools: a cache belongs to the model. A cache made by another
model, or whose activations do not fit the model's layout, gives numbers that mean nothing, so
every inspection function that takes one calls `check_cache` first (what every analysis checks
of its model and data is `emg_lens.inputs`).

>>> from emg_lens import EncoderConfig
>>> from emg_lens.models import IsoNet
>>> model, other = IsoNet(EncoderConfig.preset("tiny")), IsoNet(EncoderConfig.preset("tiny"))
>>> _, cache = other.run_with_cache(other.example_input())
>>> try:
...     check_cache(cache, model, ["blocks.0.attn.hook_pattern"])
... except ArgumentError as exc:
...     print(str(exc)[:46])
the cache was made by another model (IsoNet at
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from transformer_lens import ActivationCache

from emg_lens.errors import ArgumentError, LayoutError
from emg_lens.hooks import layer_of
from emg_lens.layout import TokenLayout
from emg_lens.models.base import HookedBiosignalModel


def layout_at(model: Any, name: str | None = None) -> TokenLayout:
    """The token layout of the layer hook ``name`` belongs to (``blocks.{l}...``): a model
    whose layers see different tokens (an attached model with cross-attention) has one per
    layer, ``model.layout_of(l)``; otherwise ``model.layout``."""
    layer = layer_of(name)
    layout_of = getattr(model, "layout_of", None)
    if layer is None or layout_of is None:
        return model.layout
    return layout_of(layer)


def pattern_names(n_layers: int) -> list[str]:
    """``blocks.{l}.attn.hook_pattern`` for every layer."""
    return [f"blocks.{layer}.attn.hook_pattern" for layer in range(n_layers)]


def check_cache(
    cache: object, model: HookedBiosignalModel, names: Iterable[str]
) -> ActivationCache:
    """Return ``cache`` if it is a batched `ActivationCache` made by ``model`` holding every
    name in ``names`` with shapes that fit ``model.layout``.

    Raises `ArgumentError` for anything else or for a cache of another model (even one of the
    same architecture: attribution reads the weights of ``cache.model``), and `LayoutError`
    for activations whose token or head axes do not match the model."""
    if not isinstance(cache, ActivationCache):
        raise ArgumentError(
            "expected a transformer_lens ActivationCache (run_with_cache's), got "
            f"{type(cache).__name__}"
        )
    if cache.model is not model:
        other = f"{type(cache.model).__name__} at {id(cache.model):#x}"
        raise ArgumentError(
            f"the cache was made by another model ({other}): run this model's run_with_cache"
        )
    if not cache.has_batch_dim:
        raise ArgumentError(
            "the cache has no batch axis: run model.run_with_cache without remove_batch_dim"
        )
    names = list(names)
    if missing := [name for name in names if name not in cache.cache_dict]:
        raise ArgumentError(
            f"the cache lacks {missing[:3]} ({len(missing)} in all): did a names_filter omit them?"
        )
    n_heads = model.cfg.n_heads
    for name in names:
        layout = layout_at(model, name)
        shape = tuple(cache.cache_dict[name].shape)
        if name.endswith(("hook_pattern", "hook_attn_scores")):
            expected = (n_heads, layout.n_queries, layout.n_tokens)
            if shape[1:] != expected:
                raise LayoutError(
                    f"cache[{name!r}] has shape {list(shape)}, not [batch, "
                    f"{', '.join(map(str, expected))}]: this model has {n_heads} "
                    f"heads and {layout.describe_sides()} there"
                )
        elif len(shape) >= 3:  # [batch, pos, ...]: the stream of the query tokens
            layout.query_side.check_matches(shape[1], f"cache[{name!r}]")
    return cache


def require_columns(table: Any, columns: list[str], what: str) -> None:
    """An `ArgumentError` naming ``what`` unless ``table`` has rows and every one of
    ``columns``.

    >>> import pandas as pd
    >>> require_columns(pd.DataFrame({"layer": [0]}), ["layer", "head"], "plot_x")
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: plot_x needs a non-empty table with columns ['layer', 'head'] (as emg_lens.inspect gives); missing ['head']
    """  # noqa: E501
    missing = [c for c in columns if c not in getattr(table, "columns", [])]
    if missing or len(table) == 0:
        raise ArgumentError(
            f"{what} needs a non-empty table with columns {columns} (as emg_lens.inspect gives); "
            f"missing {missing or 'rows'}"
        )
