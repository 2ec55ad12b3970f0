"""Whether a cut can reach a model's readout: the rule a study's *structural zero* and the
notebook's warning share (docs/DESIGN.md §4).

A block's output at position ``p`` depends on row ``p`` of its attention mask alone, so a cut
whose only edges are in the last layer, at query rows the readout does not read (IsoNet's CLS
head reads position 0; its mean-pooled head the channel tokens), computes the uncut output
exactly. A forward that runs hooks records, in `ForwardCall`, which layers a masking hook has
cut so far, so the hook that runs in the last layer can tell (`unread_positions`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import torch

from emg_lens.errors import warn_caller


@dataclass
class ForwardCall:
    """One running forward pass: its model, the ``return_type`` it reads out, and the layers
    a masking hook has cut edges in so far."""

    model: Any
    return_type: str | None
    cut_layers: set[int] = field(default_factory=set)


_CURRENT: ContextVar[ForwardCall | None] = ContextVar("emg_lens_forward", default=None)


@contextmanager
def forward_call(model: Any, return_type: str | None) -> Iterator[ForwardCall]:
    """Mark a forward pass of ``model`` read out by ``return_type`` as running (per thread and
    task), for the masking hooks it runs (`current_forward`)."""
    call = ForwardCall(model, return_type)
    token = _CURRENT.set(call)
    try:
        yield call
    finally:
        _CURRENT.reset(token)


def current_forward() -> ForwardCall | None:
    """The innermost running forward pass (`forward_call`), if any."""
    return _CURRENT.get()


def unread_positions(
    model: Any, masks: Mapping[int, torch.Tensor], return_type: str | None
) -> list[int] | None:
    """The positions ``model``'s readout reads for ``return_type`` when the cut ``masks``
    (``{layer: bool [..., query, key]}``, True = cut) cannot change its output: every edge it
    cuts is in the last layer, at query rows the readout does not read. None when it can (or
    when the model does not say what its readout reads: ``read_positions``).

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny"))  # 2 layers; the CLS head reads position 0
    >>> channel_rows = torch.zeros(model.layout.n_tokens, model.layout.n_tokens, dtype=torch.bool)
    >>> channel_rows[1:, 1:] = True
    >>> unread_positions(model, {1: channel_rows}, "logits")
    [0]
    >>> unread_positions(model, {0: channel_rows}, "logits") is None  # an earlier layer reaches
    True
    """
    read = getattr(model, "read_positions", None)
    positions = read(return_type) if read is not None and return_type is not None else None
    if not positions:
        return None
    last = model.cfg.n_layers - 1
    live = {layer for layer, mask in masks.items() if bool(mask.any())}
    if live != {last} or bool(masks[last][..., positions, :].any()):
        return None
    return list(positions)


def warn_unread(model: Any, return_type: str | None, positions: list[int], cut: str) -> None:
    """Say, at the user's line, that ``cut`` cannot change what ``return_type`` reads."""
    shown = positions if len(positions) <= 4 else f"{positions[:3]} ... {positions[-1]}"
    warn_caller(
        f"{cut} cuts edges only in the last layer ({model.cfg.n_layers - 1}), at query rows that "
        f"{type(model).__name__}'s {return_type!r} readout does not read (it reads position(s) "
        f"{shown}): it cannot change this output, which a study reports as a structural zero; "
        "cut an earlier layer too, or read out the tokens it cuts (an IsoNet's mean-pooled "
        "head: return_type='avg_logits')"
    )
