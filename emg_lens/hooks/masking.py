"""Hooks that cut attention edges: ``-inf`` logits (the paper's method) or zeroed patterns.

`mask_edges` (at ``blocks.{l}.attn.hook_attn_scores``, ``-inf`` before the softmax),
`zero_edges` (at ``hook_pattern``, no renormalising: the alternative the IsoNet paper argues
against) and `mask_edges_batched` (a mask per condition's slice of one batch); where each
belongs and why: docs/DESIGN.md §4.

>>> from emg_lens import EncoderConfig
>>> from emg_lens.models import IsoNet
>>> model = IsoNet(EncoderConfig.preset("tiny", seed=0))
>>> x = model.example_input(2)
>>> hook = mask_edges("cross_modal", model.layout)
>>> logits = model.run_with_hooks(x, fwd_hooks=[(attn_scores_filter([0, 1]), hook)])
>>> torch.allclose(logits, model(x, edge_masks=compile_edges("cross_modal", model)))
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from jaxtyping import Bool, Float
from transformer_lens.hook_points import HookPoint

from emg_lens._hints import no_type_check
from emg_lens.edges import EdgeSet, parse
from emg_lens.errors import LayoutError, check_ints
from emg_lens.layout import TokenLayout, check_mask_shape, warn_keyless_queries

HookFn = Callable[[torch.Tensor, HookPoint], torch.Tensor]
EdgesLike = EdgeSet | str | torch.Tensor


class NameFilter:
    """A TransformerLens name filter (``filter(name) -> bool``) for ``{stack}.{l}.{suffix}``,
    ``l`` in ``layers`` (all layers when None). Build one with `name_filter`,
    `attn_scores_filter` or `pattern_filter`.

    A filter alone cannot tell a layer the model lacks from one it does not want, so every
    emg_lens model calls `check_model` where a filter is resolved, raising `LayoutError` for a
    layer it does not have (docs/DESIGN.md §4).

    >>> f = NameFilter("attn.hook_attn_scores", [2, 3])
    >>> f("blocks.2.attn.hook_attn_scores"), f("blocks.1.attn.hook_attn_scores"), f
    (True, False, name_filter('attn.hook_attn_scores', [2, 3]))
    """

    def __init__(
        self, suffix: str, layers: Iterable[int] | None = None, *, stack: str = "blocks"
    ) -> None:
        self.suffix = suffix
        self.stack = stack
        self.layers = None if layers is None else frozenset(int(layer) for layer in layers)

    @no_type_check  # per hook point of every run_with_hooks
    def layer_of(self, name: str) -> int | None:
        """The layer ``l`` of a ``{stack}.{l}.{suffix}`` hook name, else None."""
        prefix = f"{self.stack}."
        if not name.startswith(prefix) or not name.endswith("." + self.suffix):
            return None
        layer = name[len(prefix) :].split(".", 1)[0]
        return int(layer) if layer.isdigit() else None

    @no_type_check
    def __call__(self, name: str) -> bool:
        layer = self.layer_of(name)
        return layer is not None and (self.layers is None or layer in self.layers)

    def check_model(self, model: Any) -> None:
        """Raise `LayoutError` if this filter names layers that ``model`` (anything with a
        TransformerLens ``hook_dict``) has no ``{stack}.{l}.{suffix}`` hook point for, naming
        them and the layers it has.

        >>> from emg_lens import EncoderConfig
        >>> from emg_lens.models import IsoNet
        >>> model = IsoNet(EncoderConfig.preset("tiny"))  # 2 layers
        >>> attn_scores_filter([1]).check_model(model)
        >>> attn_scores_filter([1, 5, 6]).check_model(model)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        emg_lens.errors.LayoutError: name_filter('attn.hook_attn_scores', [1, 5, 6]) names layers [5, 6] that this IsoNet does not have: it has n_layers=2 ...
        """  # noqa: E501
        if self.layers is None:
            return
        present = sorted({k for n in model.hook_dict if (k := self.layer_of(n)) is not None})
        missing = sorted(self.layers - set(present))
        if not missing:
            return
        cfg = getattr(model, "cfg", None)
        n_layers = getattr(cfg, "n_layers", len(present)) if self.stack == "blocks" else None
        has = f"n_layers={n_layers}" if n_layers is not None else f"{len(present)} layers"
        points = (
            f"{self.stack}.{{l}}.{self.suffix} for l in {present}"
            if present
            else f"no {self.stack}.{{l}}.{self.suffix} hook point"
        )
        raise LayoutError(
            f"{self!r} names layers {missing} that this {type(model).__name__} does not have: "
            f"it has {has} ({points}), so nothing would be hooked there; name layers from "
            "the model (layers are numbered from 0)"
        )

    def __repr__(self) -> str:
        layers = "all" if self.layers is None else sorted(self.layers)
        stack = "" if self.stack == "blocks" else f", stack={self.stack!r}"
        return f"name_filter({self.suffix!r}, {layers}{stack})"


def name_filter(
    suffix: str, layers: Iterable[int] | None = None, *, stack: str = "blocks"
) -> NameFilter:
    """A TransformerLens name filter: ``{stack}.{l}.{suffix}`` for ``l`` in ``layers`` (all
    layers when None). ``stack`` keeps stem layers (``stems.emg.blocks``) out unless asked.
    Used with a model, layers it lacks are a `LayoutError` (`NameFilter.check_model`).

    >>> f = name_filter("attn.hook_attn_scores", [2, 3])
    >>> f("blocks.2.attn.hook_attn_scores"), f("blocks.1.attn.hook_attn_scores")
    (True, False)
    >>> f("stems.emg.blocks.2.attn.hook_attn_scores")
    False
    """
    return NameFilter(suffix, layers, stack=stack)


def attn_scores_filter(layers: Iterable[int] | None = None, **kw) -> NameFilter:
    """Filter for ``blocks.{l}.attn.hook_attn_scores`` in ``layers`` (where `mask_edges` goes)."""
    return name_filter("attn.hook_attn_scores", layers, **kw)


def pattern_filter(layers: Iterable[int] | None = None, **kw) -> NameFilter:
    """Filter for ``blocks.{l}.attn.hook_pattern`` in ``layers`` (where `zero_edges` goes)."""
    return name_filter("attn.hook_pattern", layers, **kw)


def compile_edges(edges: EdgesLike, model, layers: Iterable[int] | None = None):
    """``{layer: mask}`` for ``model(x, edge_masks=...)``: the edge set compiled for each of
    ``layers`` (all layers of ``blocks`` when None; an edge set naming `layers` differs by
    layer)."""
    n = model.cfg.n_layers  # a float or a layer the model lacks is refused by name
    layers = range(n) if layers is None else check_ints(layers, "layers", 0, n - 1, empty=True)
    # per layer where they vary (an attached model: its attention calls' tokens and heads)
    layout_of = getattr(model, "layout_of", lambda layer: model.layout)
    heads = getattr(model, "layer_heads", None) or (model.cfg.n_heads,) * n
    return {layer: _as_mask(edges, layout_of(layer), heads[layer], layer) for layer in layers}


def _as_mask(
    edges: EdgesLike, layout: TokenLayout, n_heads: int, layer: int | None = None
) -> torch.Tensor:
    """A compiled mask as given, or the edge set compiled for block ``layer``."""
    if isinstance(edges, torch.Tensor):
        if edges.dtype != torch.bool or tuple(edges.shape[-2:]) != (
            layout.n_queries,
            layout.n_tokens,
        ):
            raise LayoutError(
                f"an edge mask must be bool [..., {layout.n_queries}, {layout.n_tokens}], got "
                f"{edges.dtype} {list(edges.shape)}"
            )
        return edges
    return parse(edges).compile(layout, n_heads, layer=layer)


@no_type_check
def layer_of(hook_name: str | None) -> int | None:
    """The block index of ``blocks.{l}.attn...`` (None for other names): what an edge set
    that names layers is compiled for, and which layer a hook function was called in.

    >>> layer_of("blocks.3.attn.hook_pattern"), layer_of("hook_embed")
    (3, None)
    """
    parts = (hook_name or "").split(".")
    return int(parts[1]) if len(parts) > 2 and parts[0] == "blocks" and parts[1].isdigit() else None


class _MaskCache:
    """Compiles an edge set once per (head count, device) the hook meets."""

    def __init__(self, edges: EdgesLike, layout: TokenLayout):
        self.layout = layout
        self.edges: torch.Tensor | EdgeSet = (
            edges if isinstance(edges, torch.Tensor) else parse(edges)
        )
        # Problems surface when the hook is built, not inside a forward pass.
        if isinstance(self.edges, torch.Tensor):
            _as_mask(self.edges, layout, n_heads=1)
        else:
            missing = sorted(self.edges.groups() - set(layout.groups))
            if missing:
                raise LayoutError(
                    f"edge set {self.edges} names token group {missing[0]!r}, which this layout "
                    f"lacks; it has {layout.groups}"
                )
        self._masks: dict[tuple[int, str, int | None], torch.Tensor] = {}

    def get(self, scores_shape: torch.Size, hook: HookPoint, device: torch.device) -> torch.Tensor:
        n_heads, what = scores_shape[1], f"edge mask at {hook.name}"
        if isinstance(self.edges, torch.Tensor):  # a compiled mask must fit these scores
            check_mask_shape(self.edges.shape, scores_shape, what)
        layer = None
        if not isinstance(self.edges, torch.Tensor) and self.edges.layer_indices():
            layer = layer_of(hook.name)
            if layer is None:
                raise LayoutError(
                    f"edge set {self.edges} names layers, but the hook at {hook.name!r} is not "
                    "in a block of `blocks` (blocks.{l}.attn...), so its layer is unknown"
                )
        key = (n_heads, str(device), layer)
        if key not in self._masks:
            # A normal tensor even when first met under inference_mode, so the same hook can
            # later run in a forward pass that autograd records.
            with torch.inference_mode(False):
                self._masks[key] = _as_mask(self.edges, self.layout, n_heads, layer).to(device)
            warn_keyless_queries(self._masks[key], layer_of(hook.name), self.layout)
        return self._masks[key]


def _check_point(hook: HookPoint, expected: str, factory: str) -> None:
    if hook.name is not None and not hook.name.endswith(expected):
        raise LayoutError(f"{factory} belongs at *.{expected}, but was attached to {hook.name!r}")


def mask_edges(edges: EdgesLike, layout: TokenLayout) -> HookFn:
    """Hook for ``hook_attn_scores`` writing ``-inf`` on ``edges`` (an `EdgeSet`, its string
    form, or a compiled bool mask broadcastable to ``[batch, head_index, query_pos, key_pos]``).
    """
    cache = _MaskCache(edges, layout)

    def hook(scores: Float[torch.Tensor, "batch head_index query_pos key_pos"], hook: HookPoint):
        _check_point(hook, "hook_attn_scores", "mask_edges")
        layout.check_matches(scores.shape[-1], hook.name or "attention scores")
        return scores.masked_fill(cache.get(scores.shape, hook, scores.device), float("-inf"))

    return hook


def zero_edges(edges: EdgesLike, layout: TokenLayout) -> HookFn:
    """Hook for ``hook_pattern`` zeroing attention weights on ``edges`` after the softmax,
    without renormalising."""
    cache = _MaskCache(edges, layout)

    def hook(pattern: Float[torch.Tensor, "batch head_index query_pos key_pos"], hook: HookPoint):
        _check_point(hook, "hook_pattern", "zero_edges")
        layout.check_matches(pattern.shape[-1], hook.name or "attention pattern")
        return pattern.masked_fill(cache.get(pattern.shape, hook, pattern.device), 0.0)

    return hook


def mask_edges_batched(
    masks: Bool[torch.Tensor, "condition *head_index query_pos key_pos"],
) -> HookFn:
    """Hook for ``hook_attn_scores`` applying ``masks[c]`` to the ``c``-th of ``C`` equal,
    contiguous slices of the batch (so the batch is condition-major: ``[C * N, ...]``).

    >>> masks = torch.zeros(2, 1, 3, 3, dtype=torch.bool)
    >>> masks[1, :, 0, 1] = True
    >>> out = mask_edges_batched(masks)(torch.zeros(4, 1, 3, 3), HookPoint())
    >>> out[:2].isinf().any().item(), out[2:, 0, 0, 1].isinf().all().item()
    (False, True)
    """
    if masks.dtype != torch.bool or masks.ndim not in (3, 4):
        raise LayoutError(
            "mask_edges_batched needs bool masks [condition, head_index, query_pos, key_pos] "
            f"(or [condition, query_pos, key_pos] for every head), got {masks.dtype} "
            f"{list(masks.shape)}"
        )
    if masks.ndim == 3:
        masks = masks[:, None]  # the same mask on every head
    n_cond = masks.shape[0]

    def hook(scores: Float[torch.Tensor, "batch head_index query_pos key_pos"], hook: HookPoint):
        _check_point(hook, "hook_attn_scores", "mask_edges_batched")
        batch = scores.shape[0]
        if batch % n_cond:
            raise LayoutError(
                f"mask_edges_batched has {n_cond} conditions but the batch has {batch} rows; "
                "the batch must be conditions x samples"
            )
        if masks.shape[-1] != scores.shape[-1] or masks.shape[-2] != scores.shape[-2]:
            raise LayoutError(
                f"mask_edges_batched masks are for {masks.shape[-1]} tokens but {hook.name} has "
                f"{scores.shape[-1]}; were they compiled for another layout?"
            )
        check_mask_shape(masks.shape[1:], scores.shape, "mask_edges_batched masks[c]")
        view = scores.view(n_cond, batch // n_cond, *scores.shape[1:])
        return view.masked_fill(masks.to(scores.device)[:, None], float("-inf")).view_as(scores)

    return hook
