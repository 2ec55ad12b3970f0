"""The masks ``nn.TransformerEncoder``'s forward takes (``mask``, ``src_key_padding_mask``,
``is_causal``) as one emg_lens edge mask (True: cut), with torch's meaning: what a converted
model's forward takes for what the user's own code passed the encoder
(`emg_lens.models.converted.hooked_torch_encoder.HookedTorchEncoder.forward`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from jaxtyping import Bool

from emg_lens.errors import ArgumentError, describe


def _blocked(
    value: Any, name: str, shapes: Mapping[tuple[int, ...], tuple[int, ...]], accepted: str
) -> torch.Tensor:
    """A torch mask as bool, True where attention is blocked (a float mask's -inf entries; any
    value other than 0 and -inf is refused), reshaped as ``shapes`` maps its shape."""
    kind = getattr(value, "dtype", None)
    ok = torch.is_tensor(value) and (value.is_floating_point() or kind == torch.bool)
    if not ok or tuple(value.shape) not in shapes:
        raise ArgumentError(
            f"{name} must be a bool or float tensor {accepted}, got {describe(value)}"
        )
    blocked = value if kind == torch.bool else torch.isneginf(value)
    other = ~(blocked | (value == 0))
    if bool(other.any()):
        raise ArgumentError(
            f"{name} holds {int(other.sum())} values other than 0 and -inf (first "
            f"{float(value[other][0])!r}); accepted: bool (True: not attended) or float 0 / -inf"
        )
    return blocked.reshape(shapes[tuple(value.shape)])


def torch_attention_mask(
    mask: torch.Tensor | None,
    src_key_padding_mask: torch.Tensor | None,
    is_causal: bool,
    *,
    batch: int,
    n_heads: int,
    n_tokens: int,
) -> Bool[torch.Tensor, "batch_or_1 heads_or_1 query_pos key_pos"]:
    """``nn.TransformerEncoder``'s ``mask``, ``src_key_padding_mask`` and ``is_causal`` (see
    `HookedTorchEncoder.forward`) as one edge mask (True: cut), checked against the batch.

    >>> torch_attention_mask(None, torch.tensor([[False, True]]), False, batch=1, n_heads=2,
    ...                      n_tokens=2).int().tolist()
    [[[[0, 1], [0, 1]]]]
    >>> torch_attention_mask(None, None, True, batch=1, n_heads=2, n_tokens=2).int().tolist()
    [[[[0, 1], [0, 0]]]]
    """
    n = n_tokens
    out = torch.zeros(1, 1, n, n, dtype=torch.bool)
    if mask is not None:
        shapes = {(n, n): (1, 1, n, n), (batch * n_heads, n, n): (batch, n_heads, n, n)}
        accepted = f"[{n}, {n}] or [batch * n_heads = {batch * n_heads}, {n}, {n}] ({n}: tokens)"
        blocked = _blocked(mask, "mask", shapes, accepted)
        out = out.to(blocked.device) | blocked
    elif is_causal:
        out = out | torch.ones(n, n, dtype=torch.bool).triu(1)
    if src_key_padding_mask is not None:
        accepted = f"[batch={batch}, {n}] (True at a window's padded tokens)"
        shapes = {(batch, n): (batch, 1, 1, n)}
        padding = _blocked(src_key_padding_mask, "src_key_padding_mask", shapes, accepted)
        out = out.to(padding.device) | padding
    return out
