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

from emg_lens.edges import EdgeSet, no_edges, parse
from emg_lens.errors import (
    ArgumentError,
    LayoutError,
    check_ints,
    check_type,
    checked,
    describe,
    warn_caller,
)
from emg_lens.layout import TokenLayout, check_mask_shape, warn_keyless_queries
from emg_lens.models.base import is_model
from emg_lens.models.reach import current_forward, unread_positions, warn_unread

HookFn = Callable[[torch.Tensor, HookPoint], torch.Tensor]
EdgesLike = EdgeSet | str | torch.Tensor


@checked
class NameFilter:
    """A TransformerLens name filter (``filter(name) -> bool``) for ``{stack}.{l}.{suffix}``,
    ``l`` in ``layers`` (all layers when None), built by `name_filter`. A filter alone cannot
    tell a layer the model lacks from one it does not want, so every emg_lens model calls
    `check_model` where a filter is resolved (docs/DESIGN.md §4).

    >>> f = NameFilter("attn.hook_attn_scores", [2, 3])
    >>> f("blocks.2.attn.hook_attn_scores"), f("blocks.1.attn.hook_attn_scores"), f
    (True, False, name_filter('attn.hook_attn_scores', [2, 3]))
    """

    def __init__(
        self, suffix: str, layers: Iterable[int] | None = None, *, stack: str = "blocks"
    ) -> None:
        self.suffix = suffix
        self.stack = stack
        self.layers = (
            None if layers is None else frozenset(check_ints(layers, "layers", empty=True))
        )

    def layer_of(self, name: str) -> int | None:
        """The layer ``l`` of a ``{stack}.{l}.{suffix}`` hook name, else None."""
        prefix = f"{self.stack}."
        if not name.startswith(prefix) or not name.endswith("." + self.suffix):
            return None
        layer = name[len(prefix) :].split(".", 1)[0]
        return int(layer) if layer.isdigit() else None

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
        points = f"{self.stack}.{{l}}.{self.suffix} for l in {present}: layers count from 0"
        lacks = f"{self!r} names layers {missing} that this {type(model).__name__} does not have"
        raise LayoutError(f"{lacks}: it has {has} ({points}), so nothing would be hooked there")

    def __repr__(self) -> str:
        layers = "all" if self.layers is None else sorted(self.layers)
        stack = "" if self.stack == "blocks" else f", stack={self.stack!r}"
        return f"name_filter({self.suffix!r}, {layers}{stack})"


@checked
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


@checked
def attn_scores_filter(layers: Iterable[int] | None = None, **kw) -> NameFilter:
    """Filter for ``blocks.{l}.attn.hook_attn_scores`` in ``layers`` (where `mask_edges` goes)."""
    return name_filter("attn.hook_attn_scores", layers, **kw)


@checked
def pattern_filter(layers: Iterable[int] | None = None, **kw) -> NameFilter:
    """Filter for ``blocks.{l}.attn.hook_pattern`` in ``layers`` (where `zero_edges` goes)."""
    return name_filter("attn.hook_pattern", layers, **kw)


class Cut(dict):
    """A compiled cut, ``{layer: bool mask [head_index, query_pos, key_pos]}`` (True = cut):
    what ``model(x, edge_masks=...)`` takes, built by `compile_edges`. Its repr says what it
    cuts, per layer and head, so it can be read before it runs.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> compile_edges("cross_modal & heads(0)", IsoNet(EncoderConfig.preset("tiny")))
    Cut('cross_modal & heads(0)' on IsoNet: layer 0: 16 edges (head 0: 16, others none); \
layer 1: 16 edges (head 0: 16, others none))
    """

    def __init__(self, masks: dict[int, torch.Tensor], edges: str, model: str) -> None:
        super().__init__(masks)
        self.edges, self.model = edges, model

    def __repr__(self) -> str:
        return f"Cut({self.edges!r} on {self.model}: {'; '.join(map(self._layer, self))})"

    def _layer(self, layer: int) -> str:
        per_head = self[layer].flatten(1).sum(1).tolist()
        uniform = len(set(per_head)) == 1
        if uniform:
            heads = f"{per_head[0]} on each of {len(per_head)} heads"
        else:
            cut = [h for h, n in enumerate(per_head) if n]
            listed = ", ".join(f"head {h}: {per_head[h]}" for h in cut)
            heads = f"{listed}, others none" if len(cut) < len(per_head) else listed
        return f"layer {layer}: {sum(per_head)} edges ({heads})"


@checked
def compile_edges(edges: EdgesLike, model: Any, layers: Iterable[int] | None = None) -> Cut:
    """The one compiled cut: ``edges`` (an `EdgeSet`, its string form, or a compiled bool
    mask) as ``{layer: mask}`` for ``model(x, edge_masks=...)``, compiled for each of
    ``layers`` (all the blocks of ``model`` when None) against the model's layout and heads:
    every entrance that turns an edge set into masks comes here. Refused by name: a layer the
    model lacks, and a cut that selects no edge in any layer (it would change nothing); a
    layer named where it selects nothing (but edges elsewhere) is warned of once.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny"))  # 2 layers
    >>> sorted(compile_edges("cross_modal", model))
    [0, 1]
    >>> compile_edges("cross_modal & layers(3)", model)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emg_lens.errors.LayoutError: edge set cross_modal & layers(3) names layer(s) [3], but the \
model has n_layers=2 (valid indices 0..1)
    """
    return _compile(edges, model, layers, explicit=layers is not None)


def _compile(edges: EdgesLike, model: Any, layers: Iterable[int] | None, explicit: bool) -> Cut:
    """`compile_edges`, where ``explicit`` says whether the user named the layers."""
    if not is_model(model):
        models = "an emg_lens model (IsoNet, TinyMyo, a converted or attached model)"
        raise ArgumentError(f"compile_edges needs {models}, got {type(model).__name__}")
    n = model.cfg.n_layers
    chosen = check_ints(range(n) if layers is None else layers, "layers", 0, n - 1, empty=True)
    edge_set = edges if isinstance(edges, torch.Tensor) else parse(edges)
    if isinstance(edge_set, EdgeSet):
        edge_set.check_layers(n)
    # per layer where they vary (an attached model: its attention calls' tokens and heads)
    layout_of = getattr(model, "layout_of", lambda layer: model.layout)
    heads = getattr(model, "layer_heads", None) or (model.cfg.n_heads,) * n
    masks = {layer: _as_mask(edge_set, layout_of(layer), heads[layer], layer) for layer in chosen}
    name = str(edge_set) if isinstance(edge_set, EdgeSet) else "a compiled mask"
    idle = [layer for layer, mask in masks.items() if not bool(mask.any())]
    if not isinstance(edge_set, EdgeSet) or edge_set == no_edges():
        idle = []  # a mask the user computed, or no_edges by name: the uncut condition
    if idle and len(idle) == len(masks):
        only = sorted(edge_set.layer_indices()) if isinstance(edge_set, EdgeSet) else []
        empty = f"on this layout ({layout_of(idle[0]).describe_sides()}) no edge is in the set"
        own = f"layers({','.join(map(str, only))})"
        why = f"its {own} leave {_layers_text(idle)} out" if only else empty
        cut = f"{name} selects no edge in {_layers_text(idle)} of this {type(model).__name__}"
        raise LayoutError(f"{cut}: {why}, so cutting it would change nothing")
    if idle and explicit:
        warn_caller(
            f"{name} selects no edge in {_layers_text(idle)} of this {type(model).__name__}, "
            "which you named: it changes nothing there"
        )
    return Cut(masks, name, type(model).__name__)


def _layers_text(layers: list[int]) -> str:
    return f"layer {layers[0]}" if len(layers) == 1 else f"layers {layers}"


def _as_mask(
    edges: EdgesLike, layout: TokenLayout, n_heads: int, layer: int | None = None
) -> torch.Tensor:
    """A compiled mask as given, or the edge set compiled for block ``layer``."""
    if isinstance(edges, torch.Tensor):
        q, k = layout.n_queries, layout.n_tokens
        if edges.dtype != torch.bool or tuple(edges.shape[-2:]) != (q, k):
            raise LayoutError(f"an edge mask must be bool [..., {q}, {k}], got {describe(edges)}")
        return edges
    return parse(edges).compile(layout, n_heads, layer=layer)


@checked
def layer_of(hook_name: str | None) -> int | None:
    """The block index of ``blocks.{l}.attn...`` (None for other names): what an edge set
    that names layers is compiled for, and which layer a hook function was called in.

    >>> layer_of("blocks.3.attn.hook_pattern"), layer_of("hook_embed")
    (3, None)
    """
    parts = (hook_name or "").split(".")
    return int(parts[1]) if len(parts) > 2 and parts[0] == "blocks" and parts[1].isdigit() else None


class EdgeMaskHook:
    """A hook function ``hook(tensor, hook)`` that fills ``edges`` with ``fill`` at the hook
    point it belongs at (`mask_edges`: ``-inf`` at ``hook_attn_scores``; `zero_edges`: ``0``
    at ``hook_pattern``), compiled once by `compile_edges`'s rules where a model resolves the
    points it is added to (`check_applied`; docs/DESIGN.md §4)."""

    def __init__(self, edges: EdgesLike, layout: TokenLayout, point: str, fill: float) -> None:
        factory = "mask_edges" if point == "hook_attn_scores" else "zero_edges"
        check_type(layout, TokenLayout, f"{factory}(edges, layout)'s layout (model.layout)")
        self.layout, self.point, self.fill, self.factory = layout, point, fill, factory
        self.edges: torch.Tensor | EdgeSet = (
            edges if isinstance(edges, torch.Tensor) else parse(edges)
        )
        # Problems surface when the hook is built, not inside a forward pass.
        if isinstance(self.edges, torch.Tensor):
            _as_mask(self.edges, layout, n_heads=1)
        else:
            if missing := sorted(self.edges.groups() - set(layout.groups)):
                group = f"token group {missing[0]!r}; the layout has {layout.groups}"
                raise LayoutError(f"edge set {self.edges} names {group}")
        # compiled masks, and whether each cuts any edge (read once, not per forward)
        self._masks: dict[tuple[int, str, int | None], tuple[torch.Tensor, bool]] = {}
        self._seen: set[tuple[str | None, tuple[int, ...]]] = set()  # hook points checked
        self._said: set[tuple[int, str | None]] = set()  # (model, return type) told unread

    def __repr__(self) -> str:
        edges = str(self.edges) if isinstance(self.edges, EdgeSet) else "a compiled mask"
        return f"{self.factory}({edges!r})"

    def check_applied(self, model: Any, names: list[str], explicit: bool) -> None:
        """Compile the cut for the layers of ``names`` (the hook points ``model`` adds this
        hook to), refusing what `compile_edges` refuses; ``explicit``: the user named them."""
        layers = sorted({layer for name in names if (layer := layer_of(name)) is not None})
        if layers:
            _compile(self.edges, model, layers, explicit)

    def __call__(
        self, scores: Float[torch.Tensor, "batch head_index query_pos key_pos"], hook: HookPoint
    ) -> torch.Tensor:
        mask, cuts = self._mask(scores.shape, hook, scores.device)
        call = current_forward()
        layer = layer_of(hook.name)
        if call is not None and layer is not None and cuts:
            call.cut_layers.add(layer)
            self._say_unread(call, layer, mask)
        return scores.masked_fill(mask, self.fill)

    def _say_unread(self, call: Any, layer: int, mask: torch.Tensor) -> None:
        """Once per model and readout: a cut that acts only in the last layer at rows the
        readout does not read changes nothing (`emg_lens.models.reach`)."""
        key = (id(call.model), call.return_type)
        if key in self._said or layer != call.model.cfg.n_layers - 1:
            return
        masks = {other: mask.new_ones(()) for other in call.cut_layers - {layer}}
        if unread := unread_positions(call.model, {**masks, layer: mask}, call.return_type):
            self._said.add(key)
            warn_unread(call.model, call.return_type, unread, repr(self))

    def _mask(self, scores_shape: torch.Size, hook: HookPoint, device: torch.device):
        """The mask for ``scores_shape`` at ``hook``: checked once per hook point and shape (a
        compiled mask may name the batch), compiled once per heads, device and layer."""
        edges, tensor = self.edges, isinstance(self.edges, torch.Tensor)
        names_layers = isinstance(edges, EdgeSet) and bool(edges.layer_indices())
        layer = layer_of(hook.name) if names_layers else None
        seen = (hook.name, tuple(scores_shape[0 if tensor else 1 :]))
        if seen not in self._seen:
            _check_point(hook, self.point, self.factory)
            self.layout.check_matches(scores_shape[-1], hook.name or self.point)
            if isinstance(edges, torch.Tensor):  # a compiled mask must fit these scores
                check_mask_shape(edges.shape, scores_shape, f"edge mask at {hook.name}")
            elif layer is None and names_layers:
                where = f"the hook at {hook.name!r} is in no block (blocks.{{l}}.attn...)"
                raise LayoutError(f"edge set {self.edges} names layers, but {where}: no layer")
            self._seen.add(seen)
        key = (scores_shape[1], str(device), layer)
        if key not in self._masks:
            # A normal tensor even when first met under inference_mode, so the same hook can
            # later run in a forward pass that autograd records.
            with torch.inference_mode(False):
                mask = _as_mask(self.edges, self.layout, scores_shape[1], layer)
            self._masks[key] = (mask.to(device), bool(mask.any()))
            warn_keyless_queries(self._masks[key][0], layer_of(hook.name), self.layout)
        return self._masks[key]


def _check_point(hook: HookPoint, expected: str, factory: str) -> None:
    if hook.name is not None and not hook.name.endswith(expected):
        raise LayoutError(f"{factory} belongs at *.{expected}, but was attached to {hook.name!r}")


@checked
def mask_edges(edges: EdgesLike, layout: TokenLayout) -> EdgeMaskHook:
    """Hook for ``hook_attn_scores`` writing ``-inf`` on ``edges`` (an `EdgeSet`, its string
    form, or a compiled bool mask broadcastable to ``[batch, head_index, query_pos, key_pos]``).
    Added to a model, the cut is checked as `compile_edges` checks it (`EdgeMaskHook`).
    """
    return EdgeMaskHook(edges, layout, "hook_attn_scores", float("-inf"))


@checked
def zero_edges(edges: EdgesLike, layout: TokenLayout) -> EdgeMaskHook:
    """Hook for ``hook_pattern`` zeroing attention weights on ``edges`` after the softmax,
    without renormalising."""
    return EdgeMaskHook(edges, layout, "hook_pattern", 0.0)


@checked
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
        shapes = "[condition, head_index, query_pos, key_pos] or [condition, query_pos, key_pos]"
        raise LayoutError(f"mask_edges_batched needs bool masks {shapes}, got {describe(masks)}")
    if masks.ndim == 3:
        masks = masks[:, None]  # the same mask on every head
    n_cond = masks.shape[0]
    seen: set[tuple[str | None, torch.Size]] = set()  # hook points and shapes checked, once each

    def hook(scores: Float[torch.Tensor, "batch head_index query_pos key_pos"], hook: HookPoint):
        batch = scores.shape[0]
        if (hook.name, scores.shape) not in seen:
            _check_point(hook, "hook_attn_scores", "mask_edges_batched")
            if batch % n_cond:
                rows = f"{n_cond} conditions but the batch has {batch} rows"
                raise LayoutError(f"mask_edges_batched has {rows}: it must be conditions x samples")
            check_mask_shape(masks.shape[1:], scores.shape, "mask_edges_batched masks[c]")
            seen.add((hook.name, scores.shape))
        view = scores.view(n_cond, batch // n_cond, *scores.shape[1:])
        return view.masked_fill(masks.to(scores.device)[:, None], float("-inf")).view_as(scores)

    return hook
