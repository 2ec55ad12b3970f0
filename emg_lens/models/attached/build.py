"""`attach`: open a user's attention model in place, as an `AttachedModel`: probe it once for
its attention calls (`find`), check the layout against every call's scores, read an
`EncoderConfig`'s sizes off what it saw, and build the `AttachedModel` sharing the user's
parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from emg_lens.config import EncoderConfig
from emg_lens.errors import ArgumentError, ConversionError, check_int, checked, describe
from emg_lens.layout import CLS, TokenLayout
from emg_lens.models.attached.checks import check_layouts, per_call_layouts
from emg_lens.models.attached.find import (
    AttentionSpec,
    Probe,
    check_calls,
    find_blocks,
    find_folds,
    named_modules_of,
    probe,
)
from emg_lens.models.attached.model import AttachedModel, LayoutAt
from emg_lens.models.braindecode_common import model_size


def _input_size(model: nn.Module, layout: TokenLayout | None, n_samples: Any, n_channels: Any):
    """``(channels, samples)`` of one input window: given, or the model's ``n_chans`` /
    ``n_times`` (braindecode's names), or (channels) the layout's channel ids."""
    if n_samples is None:
        n_samples = model_size(model, "n_times")
    if n_channels is None:
        n_channels = model_size(model, "n_chans")
    if n_channels is None and layout is not None and max(layout.channel) >= 0:
        n_channels = max(layout.channel) + 1
    for name, value in (("n_samples", n_samples), ("n_channels", n_channels)):
        own = "n_times" if name == "n_samples" else "n_chans, or the layout's channels"
        check_int(value, f"{name} (attach(..., {name}=...), or the model's {own})", minimum=1)
    return n_channels, n_samples


def _modalities(layout: TokenLayout, n_channels: int) -> dict[str, int]:
    """Each signal group's channel count, where the groups number the input's rows in order;
    else one modality of all the channels (the layout still says what each token is)."""
    counts: dict[str, int] = {}
    first = 0
    for group in layout.modalities:
        ids = sorted({c for g, c in zip(layout.group, layout.channel) if g == group and c >= 0})
        if not ids or ids != list(range(first, first + len(ids))):
            break
        counts[group] = len(ids)
        first += len(ids)
    if counts and first == n_channels:
        return counts
    return {(layout.modalities or ("signal",))[0]: n_channels}


@checked
def attach(
    model: nn.Module,
    *,
    layout: TokenLayout | Sequence[TokenLayout] | LayoutAt,
    n_samples: int | None = None,
    attention: AttentionSpec = None,
    n_channels: int | None = None,
    probed: tuple[Probe, torch.Tensor] | None = None,
) -> AttachedModel:
    """Open ``model`` in place: an `AttachedModel` sharing its parameters, with hook points at
    every attention call of its forward (see the module docstring).

    Args:
        model: signals ``[batch, channels, samples]`` -> outputs; any ``nn.Module`` whose
            attention is ``scaled_dot_product_attention``, ``nn.MultiheadAttention`` (also
            inside ``nn.TransformerEncoderLayer``) or a softmax over ``[batch, head, query,
            key]`` scores.
        layout: what each token the attention sees is: a `TokenLayout` for every call, or
            one per attention call in call order (cross-attention: ``TokenLayout.cross(queries,
            keys)``), checked against every call's scores on an example input. Or a function
            ``layout(calls, n_channels, n_samples)`` of the calls (`Call`) a probe at that size
            made: the attached model then opens any input size, its layouts built at the call.
        n_samples: samples per window (default: the model's ``n_times``); for a layout
            function, the size probed here, ``input_shape``'s.
        attention: the modules whose 4-D softmax is an attention: a class, a module-path
            glob (``"blocks.*.attn"``) or a list of them; inside them a 3-D softmax
            ``[batch * heads, query, key]`` is one too, its heads folded into the batch
            (hooks see ``[batch * heads, 1, query, key]``; a cut is the same for every
            head). Default: every softmax over the last axis of a 4-D tensor, one per module
            call (a module with several is refused by name, saying what to give).
        n_channels: input channels (default: the model's ``n_chans``, or the layout's).
        probed: a `probe` of ``model`` already made (with ``attention``'s modules) and its
            input ``[batch, n_channels, n_samples]``, used instead of probing again where that
            batch keeps attach's rule (not a token count of the first call's layout).

    Raises `ConversionError` (no attention, a call it cannot describe), `LayoutError`
    (the layout does not fit the scores), `ArgumentError` (a missing size).

    >>> from emg_lens.models import TinyAttention
    >>> net = TinyAttention()
    >>> model = attach(net, layout=TokenLayout.channel_tokens({"emg": 4}, cls_token=False),
    ...                n_samples=8)
    >>> [call.kind for call in model.calls], model.resid_modules
    (['softmax'], {0: 'block'})
    >>> _, cache = model.run_with_cache(model.example_input(2))
    >>> cache["pattern", 0].shape, cache["resid_pre", 0].shape
    (torch.Size([2, 2, 4, 4]), torch.Size([2, 4, 16]))

    A layout function opens any size (``PatchAttention`` attends the channels of each patch
    of 4 samples):

    >>> from emg_lens.models import PatchAttention
    >>> def channels(calls, n_channels, n_samples):
    ...     return TokenLayout.channel_tokens({"emg": n_channels}, cls_token=False)
    >>> model = attach(PatchAttention(), layout=channels, n_samples=8, n_channels=4)
    >>> model.folds_of(0), model.folds_of(0, input_shape=(4, 20))
    (2, 5)
    >>> _, cache = model.run_with_cache(torch.randn(3, 4, 20))
    >>> cache["pattern", 0].shape  # [batch * patches, head, query, key]
    torch.Size([15, 2, 4, 4])
    """
    if not isinstance(model, nn.Module) or isinstance(model, AttachedModel):
        raise ArgumentError(
            f"attach(model) takes a torch module not yet attached, got {describe(model)}"
            " (an attached model is used as it is)"
        )
    layout_at = layout if callable(layout) else None
    keys = None
    if not callable(layout):  # a list is checked against the calls once they are known
        keys = per_call_layouts(layout, len(layout) if isinstance(layout, Sequence) else 1)[0]
    channels, samples = _input_size(model, keys, n_samples, n_channels)
    named = named_modules_of(model, attention)
    # a batch no call's token count equals tells batch and token axes apart
    sizes = set() if keys is None else {keys.n_tokens, keys.n_queries}
    if probed is not None and _fits(probed[1], sizes, channels, samples):
        found, example = probed
        batch = example.shape[0]
    else:
        batch = next(b for b in range(2, 10) if b not in sizes)
        found, example = probe_example(model, named, batch, channels, samples)
    if layout_at is not None:
        sizes = {n for call in found.calls for n in (call.n_query, call.n_key)}
        if batch in sizes:
            batch = next(b for b in range(2, 10 + len(sizes)) if b not in sizes)
            found, example = probe_example(model, named, batch, channels, samples)
    check_calls(model, found, named)
    if callable(layout):
        layout = layout(found.calls, channels, samples)
    layouts = per_call_layouts(layout, len(found.calls))
    check_layouts(layouts, found.calls)
    keys = layouts[0]
    folds = find_folds(model, example, named, found.calls)
    blocks = find_blocks(found, batch, [c.n_query for c in found.calls])
    out = found.output
    n_classes = out.shape[-1] if isinstance(out, torch.Tensor) and out.ndim == 2 else 1
    block_paths = {block.path for block in blocks.values()}
    widths = [
        mc.in_shape[-1] for mc in found.module_calls if mc.path in block_paths and mc.in_shape
    ]
    cfg = EncoderConfig(
        d_model=widths[0] if widths else 1,  # the residual stream's, where known
        d_head=1,
        n_heads=max(c.heads for c in found.calls),
        n_layers=len(found.calls),
        d_mlp=None,
        normalization_type=None,
        positional_embedding_type="none",
        tokenization="custom",
        n_ctx=keys.n_tokens,
        modalities=_modalities(keys, channels),
        n_samples=samples,
        use_cls_token=CLS in keys.group,
        n_classes=n_classes,
        dtype=example.dtype,
        device=str(example.device),
    )
    return AttachedModel(
        cfg,
        model=model,
        layout=layouts,
        calls=found.calls,
        blocks=blocks,
        named=None if named is None else list(named),
        folds=folds,
        layout_at=layout_at,
    )


def _fits(example: torch.Tensor, sizes: set[int], channels: int, samples: int) -> bool:
    """Whether a probe's ``example`` input can stand for attach's own: the input's size, and a
    batch that no token count equals."""
    return tuple(example.shape[1:]) == (channels, samples) and example.shape[0] not in sizes


def probe_example(
    model: nn.Module,
    named: dict[str, nn.Module] | None,
    batch: int,
    channels: int,
    samples: int,
    *,
    what: str | None = None,
    check: str = "n_samples and n_channels",
) -> tuple[Probe, torch.Tensor]:
    """The probe of ``model`` on a seeded example input ``[batch, channels, samples]`` on its
    device, in its dtype, and that input; a forward that fails is a `ConversionError` naming
    ``what`` (default: the model's class) and the sizes to ``check``."""
    params = [p for p in model.parameters() if p.is_floating_point()]
    example = torch.randn(batch, channels, samples, generator=torch.Generator().manual_seed(0))
    if params:
        example = example.to(device=params[0].device, dtype=params[0].dtype)
    try:
        return probe(model, example, named), example
    except Exception as exc:
        if isinstance(exc, ConversionError):
            raise
        raise ConversionError(
            f"{what or type(model).__name__} failed on an example input [batch={batch}, "
            f"channels={channels}, samples={samples}] ({type(exc).__name__}: {exc}): check {check}"
        ) from exc
