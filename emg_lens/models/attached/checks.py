"""What `attach` and `AttachedModel` check of what they are given: a layout per attention call
(`per_call_layouts`, `check_layouts`), the folds a checkpoint keeps (`folds_of`), an input
window's size (`window_size`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from emg_lens.errors import (
    ArgumentError,
    ConversionError,
    InputShapeError,
    LayoutError,
    check_bool,
    check_int,
    describe,
)
from emg_lens.layout import TokenLayout
from emg_lens.models.attached.find import Call, Fold


def window_size(shape: Any) -> tuple[int, int]:
    """``(channels, samples)`` of one input window, checked."""
    pair = tuple(shape) if isinstance(shape, (tuple, list, torch.Size)) else ()
    if len(pair) != 2:
        raise InputShapeError(f"an input window must be (channels, samples), got {shape!r}")
    channels, samples = (
        check_int(n, f"an input window's {name}", minimum=1, error=InputShapeError)
        for n, name in zip(pair, ("channels", "samples"))
    )
    return channels, samples


def calls_text(kinds: Sequence[tuple[str, str, int]]) -> str:
    """Attention calls ``(kind, module, heads)`` in words, the first three."""
    shown = [f"{kind} in {module or 'the model'} ({heads} heads)" for kind, module, heads in kinds]
    return ", ".join(shown[:3]) + (", ..." if len(shown) > 3 else "")


def check_layouts(layouts: Sequence[TokenLayout], calls: Sequence[Call]) -> None:
    """Refuse a layout whose tokens are not those of its attention call's scores."""
    for layer, (layout, call) in enumerate(zip(layouts, calls)):
        if (call.n_query, call.n_key) != (layout.n_queries, layout.n_tokens):
            raise LayoutError(
                f"attention call {layer} ({call.kind} in {call.module or 'the model'}) attends "
                f"{call.n_query} queries to {call.n_key} keys, but the layout has "
                f"{layout.describe_sides()}: give its tokens in the scores' order (cross-"
                "attention: TokenLayout.cross(queries, keys))"
            )


def per_call_layouts(
    layout: TokenLayout | Sequence[TokenLayout], n_calls: int
) -> list[TokenLayout]:
    """One layout per attention call: the one given for all, or one each (in call order)."""
    if isinstance(layout, TokenLayout):
        return [layout] * n_calls
    layouts = list(layout) if isinstance(layout, Sequence) else []
    if not layouts or not all(isinstance(one, TokenLayout) for one in layouts):
        raise ArgumentError(
            "layout must be a TokenLayout (e.g. TokenLayout.channel_tokens({'emg': 8}, "
            f"cls_token=False)), or a list of one per attention call; got {describe(layout)}"
        )
    if len(layouts) != n_calls:
        raise LayoutError(f"layout must be one per attention call ({n_calls}), got {len(layouts)}")
    return layouts


def folds_of(folds: Sequence[Any] | None, n_calls: int) -> tuple[Fold, ...]:
    """One `Fold` per attention call: given (or in ``init_kwargs``' JSON form, ``[count,
    batch_major]``), or, for None, not known."""
    if folds is None:
        return (Fold(None, None),) * n_calls
    pairs = [dataclasses.astuple(f) if isinstance(f, Fold) else f for f in folds or []]
    if len(pairs) != n_calls or not all(
        isinstance(p, Sequence) and not isinstance(p, str) and len(p) == 2 for p in pairs
    ):
        raise ConversionError(
            f"folds must list one [count, batch_major] per attention call ({n_calls}), got "
            f"{describe(folds)}"
        )
    return tuple(
        Fold(
            None if n is None else check_int(n, f"folds[{i}]'s count", 1, error=ConversionError),
            None if b is None else check_bool(b, f"folds[{i}]'s batch_major", ConversionError),
        )
        for i, (n, b) in enumerate(pairs)
    )
