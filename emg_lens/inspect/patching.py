"""Activation patching for signal inputs ``[batch, channels, time]``: run the corrupted input
with the chosen slice of the clean run's activations written in, and measure how much of the
clean metric it restores, ``restored = (patched - corrupted) / (clean - corrupted)``. Which of
TransformerLens's own patching helpers work unchanged, and how the position-indexed ones take
the layout's positions (`tl_index_df`): docs/guide/notebook.md, "TransformerLens habits".

>>> from emg_lens import EncoderConfig
>>> from emg_lens.models import IsoNet
>>> model = IsoNet(EncoderConfig.preset("tiny", seed=0)).eval()
>>> clean, corrupted = model.example_input(4), torch.zeros(4, 6, 8)
>>> table = patch_token_group(model, clean, corrupted, lambda out: out[:, 0].mean(),
...                           group=["cls", "emg", "acc"])
>>> table["restored"].tolist()  # every position patched: the clean run, exactly
[1.0, 1.0]
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from transformer_lens import ActivationCache

from emg_lens.errors import ArgumentError, InputShapeError, check_int, checked, describe
from emg_lens.inputs import check_deterministic, check_model
from emg_lens.inspect.checks import check_cache

Metric = Callable[[Any], Any]  # model output -> a scalar (float or 0-d tensor)
ALL = slice(None)


@checked
def run_patched(
    model: Any,
    corrupted: Any,
    clean_cache: ActivationCache,
    sites: Mapping[str, tuple],
) -> Any:
    """The model's output on ``corrupted`` with, for each ``hook name -> index`` in ``sites``,
    ``activation[index]`` overwritten by the clean cache's ``[index]``. An index selecting
    nothing patches nothing; ``{}`` is the plain corrupted run.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0)).eval()
    >>> clean, corrupted = model.example_input(2), torch.zeros(2, 6, 8)
    >>> _, cache = model.run_with_cache(clean, names_filter="blocks.0.hook_resid_pre")
    >>> out = run_patched(model, corrupted, cache, {"blocks.0.hook_resid_pre": (ALL, ALL)})
    >>> torch.equal(out, model(clean))
    True
    """
    check_model(model)
    if unknown := [name for name in sites if name not in model.hook_dict]:
        raise ArgumentError(
            f"no hook point named {unknown}; e.g. 'blocks.0.attn.hook_z', 'blocks.0.hook_resid_pre'"
        )
    check_cache(clean_cache, model, sites)
    corrupted = model.to_tokens(corrupted)
    batch = clean_cache[next(iter(sites))].shape[0] if sites else len(corrupted)
    if batch != len(corrupted):
        raise InputShapeError(
            f"clean and corrupted inputs must pair window by window, got {batch}, {len(corrupted)}"
        )

    def overwrite(index: tuple, clean: torch.Tensor):
        def hook(activation: torch.Tensor, hook) -> torch.Tensor:
            patched = activation.clone()
            patched[index] = clean[index].to(patched.device)
            return patched

        return hook

    hooks = [(name, overwrite(index, clean_cache[name])) for name, index in sites.items()]
    with torch.inference_mode():
        return model.run_with_hooks(corrupted, fwd_hooks=hooks)


def _scalar(metric: Metric, output: Any) -> float:
    try:  # a tensor of more than one element is a ValueError too
        return float(value := metric(output))
    except (TypeError, ValueError) as exc:
        raise ArgumentError(
            f"metric must return a scalar (a number; average over the batch), got {describe(value)}"
        ) from exc


class _Sweep:
    """One patching sweep over ``layers`` at ``blocks.{layer}.{hook}``: the inputs checked, the
    clean activations cached, the clean and corrupted metrics measured once."""

    def __init__(
        self,
        model: Any,
        clean: Any,
        corrupted: Any,
        metric: Metric,
        hook: str,
        layers: Iterable[int] | None,
    ):
        check_deterministic(model)  # every caller checked the model
        if not callable(metric):
            raise ArgumentError(f"metric must be a callable output -> scalar, got {metric!r}")
        self.model, self.metric, self.hook = model, metric, hook
        self.layers = _indices(layers, model.cfg.n_layers, "layers")
        self.clean, self.corrupted = model.to_tokens(clean), model.to_tokens(corrupted)
        if self.clean.shape != self.corrupted.shape:
            shapes = f"{list(self.clean.shape)} and {list(self.corrupted.shape)}"
            raise InputShapeError(f"clean and corrupted inputs must have the same shape: {shapes}")
        names = [f"blocks.{layer}.{hook}" for layer in self.layers]
        with torch.inference_mode():
            # Only the patched activations are cached, so attention keeps its fast path
            # wherever nothing is hooked, exactly as in the plain runs below.
            _, self.cache = model.run_with_cache(self.clean, names_filter=names, return_type=None)
            self.clean_value = _scalar(metric, model(self.clean))
            self.corrupted_value = _scalar(metric, model(self.corrupted))

    def table(self, keys: Sequence[str], cells: Iterable[tuple[Any, tuple]]) -> pd.DataFrame:
        """One row per layer and cell ``(index, values)``: the metric with ``[index]`` of the
        layer's activation patched, after ``layer`` and ``keys`` (naming ``values``)."""
        cells = list(cells)
        rows = [
            self.row(f"blocks.{layer}.{self.hook}", index, layer=layer, **dict(zip(keys, values)))
            for layer in self.layers
            for index, values in cells
        ]
        return pd.DataFrame(
            rows, columns=["layer", *keys, "metric", "clean", "corrupted", "restored"]
        )

    def row(self, name: str, index: tuple, **keys: Any) -> dict[str, Any]:
        patched = run_patched(self.model, self.corrupted, self.cache, {name: index})
        value = _scalar(self.metric, patched)
        gap = self.clean_value - self.corrupted_value
        return {
            **keys,
            "metric": value,
            "clean": self.clean_value,
            "corrupted": self.corrupted_value,
            "restored": (value - self.corrupted_value) / gap if gap != 0 else float("nan"),
        }


def _indices(values: Iterable[int] | None, size: int, what: str) -> list[int]:
    if values is None:
        return list(range(size))
    return [check_int(v, f"{what}[{i}]", 0, size - 1) for i, v in enumerate(values)]


@checked
def patch_heads(
    model: Any,
    clean: Any,
    corrupted: Any,
    metric: Metric,
    layers: Iterable[int] | None = None,
    heads: Iterable[int] | None = None,
) -> pd.DataFrame:
    """Patch one head's output (``blocks.{l}.attn.hook_z``, every position) at a time.

    One row per (layer, head): ``layer, head, metric, clean, corrupted, restored``.
    ``metric`` maps the model output (logits) to a scalar; ``layers``/``heads`` default to all.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0)).eval()
    >>> table = patch_heads(model, model.example_input(2), torch.zeros(2, 6, 8),
    ...                     lambda out: out[:, 0].mean(), layers=[1])
    >>> table[["layer", "head"]].values.tolist()
    [[1, 0], [1, 1], [1, 2], [1, 3]]
    """
    check_model(model)  # and the heads, before the sweep's passes
    heads = _indices(heads, model.cfg.n_heads, "heads")
    sweep = _Sweep(model, clean, corrupted, metric, "attn.hook_z", layers)
    return sweep.table(["head"], [((ALL, ALL, head), (head,)) for head in heads])


@checked
def patch_residual(
    model: Any,
    clean: Any,
    corrupted: Any,
    metric: Metric,
    positions: Iterable[int] | None = None,
    layers: Iterable[int] | None = None,
) -> pd.DataFrame:
    """Patch the residual stream entering a layer (``blocks.{l}.hook_resid_pre``) at one token
    position at a time.

    One row per (layer, position): ``layer, position, group, channel, time, metric, clean,
    corrupted, restored`` (group, channel and time from the layout). ``positions`` and
    ``layers`` default to all.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0)).eval()
    >>> table = patch_residual(model, model.example_input(2), torch.zeros(2, 6, 8),
    ...                        lambda out: out[:, 0].mean(), positions=[0, 3], layers=[0])
    >>> table[["position", "group"]].values.tolist()
    [[0, 'cls'], [3, 'acc']]
    """
    check_model(model)  # and the positions, before the sweep's passes
    layout = model.layout
    positions = _indices(positions, layout.n_tokens, "positions")
    sweep = _Sweep(model, clean, corrupted, metric, "hook_resid_pre", layers)
    cells = [
        ((ALL, pos), (pos, layout.group[pos], layout.channel[pos], layout.time[pos]))
        for pos in positions
    ]
    return sweep.table(["position", "group", "channel", "time"], cells)


@checked
def patch_token_group(
    model: Any,
    clean: Any,
    corrupted: Any,
    metric: Metric,
    group: str | Sequence[str],
    layers: Iterable[int] | None = None,
) -> pd.DataFrame:
    """Patch every position of a token group (or of several, together) in the residual stream
    entering each layer (``blocks.{l}.hook_resid_pre``), one layer at a time.

    One row per layer: ``layer, group`` (names joined by ``+``), ``n_positions, metric, clean,
    corrupted, restored``. Patching every group restores the clean output exactly.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0)).eval()
    >>> table = patch_token_group(model, model.example_input(2), torch.zeros(2, 6, 8),
    ...                           lambda out: out[:, 0].mean(), "acc")
    >>> table[["layer", "group", "n_positions"]].values.tolist()
    [[0, 'acc', 4], [1, 'acc', 4]]
    """
    check_model(model)
    groups = [group] if isinstance(group, str) else list(group)
    if not groups or not all(isinstance(g, str) for g in groups):
        raise ArgumentError(
            f"group must be a token group of {model.layout.groups} or a non-empty list of them, "
            f"got {group!r}"
        )
    positions = sorted(p for g in dict.fromkeys(groups) for p in model.layout.positions(g))
    sweep = _Sweep(model, clean, corrupted, metric, "hook_resid_pre", layers)
    name = "+".join(dict.fromkeys(groups))
    return sweep.table(["group", "n_positions"], [((ALL, positions), (name, len(positions)))])


@checked
def tl_index_df(model: Any, *axes: str) -> pd.DataFrame:
    """Every index of ``axes`` for TransformerLens's patching helpers (their ``index_df``
    argument), with positions from the model's token layout rather than the signal's length.

    Axes: ``"layer"``, ``"pos"`` (also ``"src_pos"``, ``"dest_pos"``), ``"head_index"`` (or
    ``"head"``); TransformerLens expects ``"layer"`` first.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0))
    >>> df = tl_index_df(model, "layer", "pos")
    >>> len(df) == model.cfg.n_layers * model.layout.n_tokens, list(df.columns)
    (True, ['layer', 'pos'])
    """
    n_tokens = model.layout.n_tokens
    ranges = {
        "layer": model.cfg.n_layers,
        "pos": n_tokens,
        "src_pos": n_tokens,
        "dest_pos": n_tokens,
        "head_index": model.cfg.n_heads,
        "head": model.cfg.n_heads,
    }
    if not axes or [a for a in axes if a not in ranges]:
        raise ArgumentError(
            f"tl_index_df axes must be some of {list(ranges)} (layer first), got {list(axes)}"
        )
    rows = itertools.product(*(range(ranges[a]) for a in axes))
    return pd.DataFrame(list(rows), columns=list(axes))
