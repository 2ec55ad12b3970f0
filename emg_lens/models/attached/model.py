"""`AttachedModel`: a user's attention model opened in place (by `attach`), as a
TransformerLens `HookedRootModule`.

It holds the user's module as ``model`` (its parameters, not a copy) and runs its own forward.
The hook points it adds at each attention call (the residual stream's where `find_blocks`
finds a module around the call), folded calls (`folds_of`) and other input sizes
(`layout_of`): docs/guide/bring-your-own-model.md, "Open it where it stands: `attach`";
``hook_attn_scores`` holds the scaled scores after the model's own masks, before the softmax.
With nothing hooked and no mask the forward is the user's module called on the signals;
otherwise it runs under an `Interceptor`. It provides `ATTENTION_HOOKS` only: no
TransformerLens weights, no layer-by-layer forward.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import torch
from torch import nn
from transformer_lens.hook_points import HookPoint

from emg_lens._hints import checked
from emg_lens.components.attend import observed, read_hook
from emg_lens.config import EncoderConfig
from emg_lens.errors import (
    ConversionError,
    EmgLensError,
    InputShapeError,
    LayoutError,
    check_choice,
    check_int,
    check_type,
)
from emg_lens.layout import TokenLayout, check_mask_shape, checked_edge_masks
from emg_lens.models.attached.checks import (
    calls_text,
    check_layouts,
    folds_of,
    per_call_layouts,
    window_size,
)
from emg_lens.models.attached.find import Block, Fold, find_folds, probe, torch_resets
from emg_lens.models.attached.intercept import Call, Interceptor, ModuleTracker, Scope, Site
from emg_lens.models.base import (
    ATTENTION_HOOKS,
    LAYERWISE,
    EdgeMasks,
    HookedBiosignalModel,
    eval_mode,
    require,
)
from emg_lens.models.tl_surface.threads import FreshLock

LayoutAt = Callable[[Sequence[Call], int, int], "TokenLayout | Sequence[TokenLayout]"]
"""The layouts of an input's attention calls, given the calls a probe on an input of that
size made and its ``(n_channels, n_samples)``: one `TokenLayout` for all, or one per call."""
_KEPT = operator.attrgetter("kind", "heads", "n_query", "n_key")  # a call's, on every input


@dataclasses.dataclass(frozen=True)
class _Size:
    """What the attention calls are on inputs of one size: their calls (as a probe saw
    them), layouts and folds."""

    calls: tuple[Call, ...]
    layouts: tuple[TokenLayout, ...]
    folds: tuple[Fold, ...]


CONVERTERS = (
    "emg_lens.models.from_torch_encoder (an nn.TransformerEncoder) or "
    "emg_lens.models.from_braindecode (Labram, CBraMod, EEGPT, PBT); an attached model runs "
    "its own code, with hooks at its attention only"
)


class AttachedAttention(nn.Module):
    """The hook points of one attention call."""

    def __init__(self) -> None:
        super().__init__()
        # [batch * F, head_index, query_pos, key_pos], F the problems its Fold puts per row
        self.hook_attn_scores, self.hook_pattern = HookPoint(), HookPoint()


class AttachedBlock(nn.Module):
    """The hook points around one attention call: ``attn``'s, and the residual stream's where
    a module around the call carries it."""

    def __init__(self, resid: bool) -> None:
        super().__init__()
        self.attn = AttachedAttention()
        if resid:
            self.hook_resid_pre = HookPoint()  # [batch, pos, d_model]
            self.hook_resid_post = HookPoint()  # [batch, pos, d_model]


def _tl_keyword(module: nn.Module, kwargs: dict[str, Any], name: str) -> Any:
    """Pop ``name`` from ``kwargs`` where it is TL's keyword, not ``module.forward``'s own."""
    if name not in kwargs or name in inspect.signature(module.forward).parameters:
        return None
    return kwargs.pop(name)


@checked
class AttachedModel(HookedBiosignalModel):
    """A user's module with TransformerLens hook points at its attention (see the module
    docstring); built by `attach`. ``model`` is the user's module; ``calls`` what each layer's
    attention call is (kind, module, heads, query and key tokens); ``folds`` how each call
    folds attention problems into its batch (`Fold`, `folds_of`); ``resid_modules`` the path
    of the module whose input and output are each layer's ``hook_resid_pre``/
    ``hook_resid_post``.

    A checkpoint holds the user's module's weights and what `attach` found (``init_kwargs``);
    loading takes a module of the same architecture: ``load_checkpoint(path,
    modules={"model": Net()})``.
    """

    contract = frozenset({ATTENTION_HOOKS})
    converters = CONVERTERS
    user_modules = ("model",)  # what a checkpoint cannot rebuild from config.json

    def __init__(
        self,
        cfg: EncoderConfig,
        *,
        model: nn.Module,
        layout: Any,
        calls: Sequence[Any],
        blocks: Mapping[Any, Any],
        named: list[str] | None = None,
        folds: Sequence[Any] | None = None,
        layout_at: LayoutAt | None = None,
    ):
        """What `attach` found, or its JSON form (``init_kwargs``, a checkpoint's); ``folds``
        None: not known, so every layer takes only masks the same in every fold."""
        super().__init__(cfg)
        check_type(model, nn.Module, "model")
        self.model = torch_resets(model)  # TransformerLens's `reinitialized` resets it all
        self.calls = tuple(c if isinstance(c, Call) else Call(*c) for c in calls)
        if isinstance(layout, Mapping):
            layout = TokenLayout.from_dict(layout)
        elif isinstance(layout, Sequence):
            layout = [
                one if isinstance(one, TokenLayout) else TokenLayout.from_dict(one)
                for one in layout
            ]
        self._layouts = per_call_layouts(layout, len(self.calls))
        self._blocks = {
            int(k): b if isinstance(b, Block) else Block(int(k), *b) for k, b in blocks.items()
        }
        self._named = None if named is None else tuple(named)
        self.folds = folds_of(folds, len(self.calls))
        if cfg.n_layers != len(self.calls):
            raise ConversionError(f"EncoderConfig.n_layers={cfg.n_layers} != {len(calls)} calls")
        self.blocks = nn.ModuleList(AttachedBlock(i in self._blocks) for i in range(len(calls)))
        # every attention and residual hook point, flat: one pass tells an unhooked forward
        self._points = tuple(
            point
            for i in range(len(calls))
            for point in (
                *self._block(i).attn.children(),
                *(self._resid_points(i) if i in self._blocks else ()),
            )
        )
        self._layout_at = layout_at
        self._sizes: dict[tuple[int, int], _Size] = {}  # the other sizes met, by layout_at
        self._probing = FreshLock()  # one probe of a size at a time (it sets eval mode)
        self.setup()
        self.train(model.training)  # the user's module's mode (a new Module is in training)

    @property
    def init_kwargs(self) -> dict[str, Any]:
        """What `attach` found, as JSON (a checkpoint's ``model_kwargs``)."""
        return {
            "layout": [one.to_dict() for one in self._layouts],
            "calls": [list(dataclasses.astuple(call)) for call in self.calls],
            "blocks": {str(k): [b.path, b.seq_first] for k, b in self._blocks.items()},
            "named": None if self._named is None else list(self._named),
            "folds": [[fold.count, fold.batch_major] for fold in self.folds],
        }

    def name_in_messages(self) -> str:
        """``AttachedModel of`` the user's class."""
        return f"AttachedModel of {type(self.model).__name__}"

    @property
    def layout(self) -> TokenLayout:
        """The token layout every attention call sees; a model whose calls see different
        tokens (cross-attention then self-attention over the queries) has one per layer,
        `layout_of`."""
        first = self._layouts[0]
        if any(other != first for other in self._layouts[1:]):
            raise LayoutError("the attention calls see other tokens: use model.layout_of(layer)")
        return first

    def layout_of(self, layer: int, input_shape: tuple[int, int] | None = None) -> TokenLayout:
        """The token layout attention call ``layer`` sees (its query side and key side), on
        inputs of ``input_shape`` ``(channels, samples)`` (default: the model's
        ``input_shape``; another only where the model opens any size, see the module
        docstring)."""
        last = len(self._layouts) - 1
        layer = check_int(layer, "layer (an attention call of this model)", 0, last, LayoutError)
        if input_shape is None:
            return self._layouts[layer]
        return self._size(window_size(input_shape)).layouts[layer]

    def folds_of(self, layer: int, input_shape: tuple[int, int] | None = None) -> int | None:
        """How many attention problems call ``layer`` folds into its batch per input row
        (CBraMod's spatial call: its patches; 1: none); None where that is not known (a
        checkpoint saved before folds were recorded). ``input_shape``: as in `layout_of`.

        >>> from emg_lens.models import attach
        >>> from emg_lens.models import PatchAttention
        >>> layout = TokenLayout.channel_tokens({"emg": 4}, cls_token=False)
        >>> attach(PatchAttention(), layout=layout, n_samples=8).folds_of(0)
        2
        """
        self.layout_of(layer)  # refuses a layer the model lacks
        if input_shape is None:
            return self.folds[layer].count
        return self._size(window_size(input_shape)).folds[layer].count

    @property
    def resid_modules(self) -> dict[int, str]:
        """``{layer: path}`` of the modules whose input and output are the residual stream."""
        return {layer: block.path for layer, block in self._blocks.items()}

    @property
    def layer_heads(self) -> tuple[int, ...]:
        """The number of heads of each layer's attention call."""
        return tuple(call.heads for call in self.calls)

    def _check_input_shape(self, shape: tuple[int, ...]) -> None:
        """The model's ``input_shape``; or, where it opens any size, one its forward runs on
        (probed the first time it is met, see the module docstring)."""
        if self._layout_at is None or len(shape) != 3 or shape[1:] == self.input_shape:
            super()._check_input_shape(shape)
            return
        try:
            self._size(window_size(shape[1:]))
        except EmgLensError as exc:
            channels, samples = self.input_shape
            raise InputShapeError(
                f"signals must have shape [batch, channels={channels}, time={samples}], got "
                f"{list(shape)}; {type(self.model).__name__} also opens other sizes, but not "
                f"this one: {exc}"
            ) from exc

    def _size(self, shape: tuple[int, int]) -> _Size:
        """The attention calls, layouts and folds on inputs of ``shape`` ``(channels,
        samples)``: those `attach` found, or, where the model opens any size, those probed."""
        if shape == self.input_shape:
            return _Size(self.calls, tuple(self._layouts), self.folds)
        if self._layout_at is None:
            raise InputShapeError(
                f"input_shape must be the model's {self.input_shape}, got {shape}; to open any "
                "size, attach with the layout as a function of the input's size (see attach)"
            )
        with self._probing:
            if shape not in self._sizes:
                self._sizes[shape] = self._probe_size(self._layout_at, *shape)
            return self._sizes[shape]

    def _probe_size(self, layout_at: LayoutAt, channels: int, samples: int) -> _Size:
        """Probe the model on an input of ``channels`` x ``samples`` (eval mode, no
        gradients): its calls, the same as at attach time but for their sizes, their folds,
        and the layouts ``layout_at`` gives them."""
        what = f"on inputs of {channels} channels x {samples} samples"
        device, dtype = self.param_device_dtype()
        gen = torch.Generator().manual_seed(0)
        example = torch.randn(2, channels, samples, generator=gen, dtype=dtype).to(device)
        named = None
        if self._named is not None:
            modules = dict(self.model.named_modules())
            named = {path: modules[path] for path in self._named}
        try:
            with eval_mode(self.model):
                found = probe(self.model, example, named)
                folds = find_folds(self.model, example, named, found.calls)
        except Exception as exc:
            raise InputShapeError(
                f"{what} its forward fails ({type(exc).__name__}: {exc})"
            ) from exc
        kinds, ours = (
            [(c.kind, c.module, c.heads) for c in cs] for cs in (found.calls, self.calls)
        )
        if kinds != ours:
            raise ConversionError(
                f"{what} its forward makes the attention calls {calls_text(kinds)}, not those at "
                f"attach time ({calls_text(ours)}); every size must make the same calls"
            )
        layouts = per_call_layouts(layout_at(found.calls, channels, samples), len(kinds))
        check_layouts(layouts, found.calls)
        return _Size(found.calls, tuple(layouts), folds)

    def forward(
        self,
        signals: Any,
        *args: Any,
        edge_masks: EdgeMasks | None = None,
        return_type: str | None = "logits",
        **kwargs: Any,
    ) -> Any:
        """Run the user's model on ``signals`` ``[batch, channel, time]`` (``args`` and
        ``kwargs`` passed on), cutting ``edge_masks`` (``{layer: bool mask}``, True = cut,
        broadcastable to that layer's ``[batch, head, query, key]``) inside its attention.
        On a layer that folds ``F = folds_of(layer)`` problems into its batch, batch-major,
        a mask may differ between folds, ``[batch or 1, F, head or 1, query, key]``.
        ``return_type``: ``"logits"`` or None, both the model's output (no separate readout).

        >>> from emg_lens.models import attach
        >>> from emg_lens.models import PatchAttention, TinyAttention
        >>> layout = TokenLayout.channel_tokens({"emg": 4}, cls_token=False)
        >>> model = attach(TinyAttention(), layout=layout, n_samples=8)
        >>> x = model.example_input(2)
        >>> cut = torch.zeros(4, 4, dtype=torch.bool)
        >>> cut[:, 0] = True  # no token reads token 0
        >>> bool((model(x) == model.model(x)).all()), model(x, edge_masks={0: cut}).shape
        (True, torch.Size([2, 3]))
        >>> folded = attach(PatchAttention(), layout=layout, n_samples=8)  # 2 patches of 4
        >>> folded.folds_of(0), folded.folds[0].batch_major
        (2, True)
        >>> per_patch = torch.zeros(1, 2, 1, 4, 4, dtype=torch.bool)  # [batch, fold, head, q, k]
        >>> per_patch[0, 1, 0, :, 0] = True  # in patch 1 only, no channel reads channel 0
        >>> bias = torch.zeros(4, 1, 4, 4)  # the model's own mask, on [batch * patch, ...]
        >>> bias[1::2, 0, :, 0] = float("-inf")  # rows 1 and 3: patch 1 of either window
        >>> gap = folded(x, edge_masks={0: per_patch}) - folded.model(x, bias)
        >>> bool(gap.abs().max() < 1e-6)
        True
        """
        check_choice(return_type, ("logits", None), "an attached model's return_type")
        for name in ("start_at_layer", "stop_at_layer"):
            if _tl_keyword(self.model, kwargs, name) is not None:  # None: the whole forward
                require(self, LAYERWISE, f"forward({name}=...)")
        x = self.hook_input(self.to_tokens(signals))
        size = self._size(tuple(x.shape[1:]))
        masks = self._check_edge_masks(edge_masks, batch=x.shape[0], size=size)
        if not masks and not observed(self._points):  # the original's forward, nothing else
            return self.model(x, *args, **kwargs)
        hooked = {i for i in range(len(self.calls)) if observed([*self._block(i).attn.children()])}
        resid = {i for i in self._blocks if observed(self._resid_points(i))}
        return self._intercepted(x, args, kwargs, masks, hooked, resid, size)

    def _block(self, layer: int) -> AttachedBlock:
        """Layer ``layer``'s hook points (``blocks`` holds `AttachedBlock`s only)."""
        return cast(AttachedBlock, self.blocks[layer])

    def _resid_points(self, layer: int) -> list[HookPoint]:
        block = self._block(layer)
        return [block.hook_resid_pre, block.hook_resid_post]

    def _intercepted(self, x, args, kwargs, masks, hooked, resid, size: _Size) -> Any:
        named = dict(self.model.named_modules())
        scope = Scope()  # the hooks on the user's modules act for this forward only
        tracker = ModuleTracker({p: named[p] for p in self._named or ()}, scope)

        def on_call(call: Call) -> Site:
            layer = mode.count - 1
            self._check_call(layer, call, size)
            if layer in masks:
                self._check_rows(layer, call, masks[layer], x.shape[0], size)
            attn = self._block(layer).attn
            return Site(
                edge_mask=masks.get(layer),
                hooked=layer in hooked,
                on_scores=functools.partial(read_hook, attn.hook_attn_scores),
                on_pattern=functools.partial(read_hook, attn.hook_pattern),
            )

        def softmax_here() -> bool:
            return self._named is None or bool(tracker.stack)

        mode = Interceptor(
            on_call,
            softmax_here=softmax_here,
            where=lambda kind: tracker.current,
            folded=self._named is not None,
        )
        handles = self._resid_hooks(named, resid, mode, scope) if resid else []
        try:
            with scope, tracker.track(), mode:
                out = self.model(x, *args, **kwargs)
        finally:
            for handle in handles:
                handle.remove()
        self._check_call(mode.count, None, size)
        return out

    def _check_call(self, layer: int, call: Call | None, size: _Size) -> None:
        """Call ``layer`` of this forward (None: the count after it) must be one of those at
        attach time (`_KEPT`: its kind, heads and sizes), in their order."""
        known = size.calls[layer] if layer < len(size.calls) else None
        same = known is None if call is None else known is not None and _KEPT(call) == _KEPT(known)
        if not same:
            raise ConversionError(
                f"this forward's attention call {layer}: {call}, at attach time: {known}; the "
                "forward must make the same calls (kind, heads, sizes) on every input"
            )

    def _check_rows(
        self, layer: int, call: Call, mask: torch.Tensor, batch: int, size: _Size
    ) -> None:
        """A mask with a row per score row (per input row, or per fold) must meet as many
        score rows as `attach` saw per input row."""
        if mask.ndim == 4 and mask.shape[0] not in (1, call.batch):
            count = size.folds[layer].count
            raise ConversionError(
                f"attention call {layer} ({call.module or 'the model'}) has {call.batch} score "
                f"rows for {batch} input rows, but edge_masks[{layer}] has {mask.shape[0]}: the "
                f"folds per row must stay as at attach ({count}; None: not known, attach again)"
            )

    def _resid_hooks(
        self, named: dict[str, nn.Module], resid: set[int], mode: Interceptor, scope: Scope
    ):
        """Hooks on the block modules of the layers in ``resid``: input through ``hook_resid_pre``,
        output through ``hook_resid_post``, only inside ``scope`` (this forward's)."""
        by_path: dict[str, dict[int, Block]] = {}
        for layer in resid:
            block = self._blocks[layer]
            by_path.setdefault(block.path, {})[layer] = block
        handles = []
        for path, layers in by_path.items():
            open_layers: list[int | None] = []

            def pre(module, args, layers=layers, open_layers=open_layers):
                layer = mode.count
                open_layers.append(layer if layer in layers else None)
                if layer not in layers or not args:
                    return None
                point = self.blocks[layer].hook_resid_pre
                first = _through_first(point, args[0], layers[layer].seq_first)
                return None if first is None else (first, *args[1:])

            def post(module, args, output, layers=layers, open_layers=open_layers):
                layer = open_layers.pop() if open_layers else None
                if layer is None:
                    return None
                point = self.blocks[layer].hook_resid_post
                return _through_first(point, output, layers[layer].seq_first)

            module = named[path]
            handles.append(module.register_forward_pre_hook(scope.guard(pre)))
            handles.append(module.register_forward_hook(scope.guard(post)))
        return handles

    def _check_edge_masks(self, edge_masks: EdgeMasks | None, *, batch: int, size: _Size) -> dict:
        """``{layer: bool mask}``, each broadcastable to that layer's ``[batch, heads, query,
        key]`` scores, or per fold on a folded layer (see `forward`); moved to the model's
        device, a per-input or per-fold mask laid out as the folded scores' rows."""
        masks = checked_edge_masks(
            edge_masks,
            n_layers=len(size.calls),
            scores=lambda layer: (size.calls[layer].n_query, size.calls[layer].n_key),
            layers=f"the attached model's {len(self.calls)} attention calls, in call order",
        )
        device = self.param_device_dtype()[0]
        return {
            layer: self._fold_mask(layer, mask, batch, size).to(device)
            for layer, mask in masks.items()
        }

    def _fold_mask(self, layer: int, mask: torch.Tensor, batch: int, size: _Size) -> torch.Tensor:
        """``mask`` checked against layer ``layer``'s scores and laid out on their rows: a
        per-fold ``[batch or 1, F, heads or 1, q, k]`` or a per-input ``[batch, ...]`` mask
        on a folded layer becomes ``[batch * F, heads or 1, q, k]``, batch-major."""
        call, fold = size.calls[layer], size.folds[layer]
        what = f"edge_masks[{layer}]"
        per_fold = mask.ndim == 5
        per_row = per_fold or (mask.ndim == 4 and mask.shape[0] > 1)
        folds = fold.count if fold.count is not None and fold.count > 1 else 1
        folded = folds > 1
        if ((per_fold and fold.count is None) or (per_row and folded)) and not fold.ordered:
            raise LayoutError(
                f"{what} has shape {list(mask.shape)}, which differs between input rows or "
                f"folds, but layer {layer} ({call.kind} in {call.module or 'the model'}) cannot "
                f"place it: {_unordered(fold)}; give a mask the same in every row and fold: "
                f"[{call.n_query}, {call.n_key}] or [heads or 1, {call.n_query}, {call.n_key}]"
            )
        target = (batch, call.heads, call.n_query, call.n_key)
        check_mask_shape(mask.shape, target, what, folds=folds)
        if not folded or not per_row:
            return mask
        if mask.ndim == 4:  # one mask per input row, for every fold of it
            return mask.repeat_interleave(folds, dim=0)
        return mask.expand(batch, *mask.shape[1:]).flatten(0, 1)


def _unordered(fold: Fold) -> str:
    """Why a layer's fold order is not one a per-row mask can be placed in, in words."""
    if fold.count is None:
        return (
            "attach does not know how it folds attention problems into its batch (a checkpoint "
            "saved before folds were recorded: attach the model again)"
        )
    if fold.batch_major is False:
        return (
            f"it folds {fold.count} attention problems per input row into its batch, not "
            "batch-major (replacing one input row on the probe changed other score rows than "
            f"rows b*{fold.count} to b*{fold.count}+{fold.count - 1})"
        )
    return (
        f"it folds {fold.count} attention problems per input row into its batch, in an order "
        "attach could not check (the check's forward failed or made other calls)"
    )


def _through_first(point: HookPoint, value: Any, seq_first: bool) -> Any:
    """``value`` (a tensor, or a tuple led by the stream: CodeBrain's ``(h, noise)``) through
    ``point``; None (left as it is) for anything else."""
    if isinstance(value, torch.Tensor):
        return _through(point, value, seq_first)
    if isinstance(value, tuple) and value and isinstance(value[0], torch.Tensor):
        return (_through(point, value[0], seq_first), *value[1:])
    return None


def _through(point: HookPoint, x: torch.Tensor, seq_first: bool) -> torch.Tensor:
    """``x`` through a residual hook point, as ``[batch, pos, d_model]``."""
    if not seq_first:
        return point(x)
    return point(x.transpose(0, 1)).transpose(0, 1)
