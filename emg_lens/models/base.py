"""The protocol every emg_lens model speaks, and the roots that implement it.

**Capabilities as data.** What a model can do for the floors above is its ``contract``, a set
of the five capabilities below; a tool asks `provides` or refuses with `require` (which says
why the model lacks it, and which converter gives it) instead of asking for a class. The
per-class knowledge stays in the model: ``readout_map`` (`LINEAR_READOUT`),
``data_free_tokens`` (`TL_WEIGHTS`), ``lacks``, ``head_tasks``.

`HookedBiosignalModel` roots every hooked model (with the hook surface,
`emg_lens.models.tl_surface.HookSurface`) and `HookedEncoder` every encoder with weights (with
the weight surface, `emg_lens.models.tl_surface.WeightSurface`); their docstrings say what
each owns and what a subclass supplies.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, cast, overload

import torch
from jaxtyping import Bool, Float
from torch import nn
from transformer_lens import ActivationCache, HookedRootModule
from transformer_lens.hook_points import HookPoint

from emg_lens._hints import checked
from emg_lens.components import ConfigInit, TransformerBlock, make_norm
from emg_lens.config import EncoderConfig
from emg_lens.errors import (
    ArgumentError,
    ConfigError,
    InputShapeError,
    LayoutError,
    UnsupportedFeatureError,
    check_choice,
    check_int,
    describe,
)
from emg_lens.layout import TokenLayout, check_mask_shape, checked_edge_masks
from emg_lens.models.reach import forward_call, unread_positions, warn_unread
from emg_lens.models.tl_surface import WEIGHT_SURFACE, HookSurface, WeightSurface
from emg_lens.models.tl_surface.cache import EncoderCache
from emg_lens.models.tl_surface.tokens import TokenSurface

# The capabilities: what a model provides to the floors above, by name. Each tool asks for
# what it reads (`require`) instead of a class.
ATTENTION_HOOKS = "attention_hooks"
"""``blocks.{l}.attn.hook_attn_scores`` / ``hook_pattern`` ``[batch, head, query, key]`` for
each layer, ``edge_masks=`` in ``forward``, ``layout`` and ``cfg.n_layers``: every encoder,
converted and attached ones included."""
LAYERWISE = "layerwise"
"""``forward(start_at_layer=, stop_at_layer=)``, ``blocks[l](resid, mask)`` as emg_lens
`TransformerBlock` s, ``readout(resid, return_type)`` and ``ln_final``: what a study's prefix
tree, discovery's screen and ONNX export run."""
TL_WEIGHTS = "tl_weights"
"""Weights in TransformerLens shapes (``W_Q`` ... ``W_U``, `WEIGHT_SURFACE`): QK and OV
circuits, composition scores, data-free tokens (``data_free_tokens``), direct attribution."""
LINEAR_READOUT = "linear_readout"
"""The classifier is one linear map of the final residual stream after ``ln_final``,
position by position: ``model.readout_map(head)`` gives ``(R, b_U)`` with ``logits = sum_p
ln_final(resid)[p] @ R[p] + b_U`` for each ``head`` in ``model.readout_heads`` (what direct
attribution reads). Per model, not per class: TinyMyo has one for ``task="classification"``
only, a converted encoder where its readout is one ``nn.Linear`` of a token or of the mean."""
SPLIT_QKV = "split_qkv_input"
"""``model.set_use_split_qkv_input(True)`` gives every attention layer per-head copies of its
input, ``blocks.{l}.hook_q_input`` / ``hook_k_input`` / ``hook_v_input`` ``[batch, pos,
head_index, d_model]`` (stems' layers too), the outputs unchanged, as in TransformerLens."""
CAPABILITIES = (ATTENTION_HOOKS, LAYERWISE, TL_WEIGHTS, LINEAR_READOUT, SPLIT_QKV)

_NEEDS = {
    ATTENTION_HOOKS: "attention hooks (blocks.{l}.attn.hook_attn_scores and hook_pattern, "
    "edge_masks=)",
    LAYERWISE: "a layer-by-layer forward (start_at_layer/stop_at_layer, emg_lens blocks "
    "and readout)",
    TL_WEIGHTS: "weights in TransformerLens shapes (W_Q, W_K, W_V, W_O, W_U)",
    LINEAR_READOUT: "a linear readout of the final residual stream (readout_map)",
    SPLIT_QKV: "split q/k/v input hooks (set_use_split_qkv_input: blocks.{l}.hook_q_input ...)",
}  # what each capability is, in the words of a refusal


def check_encoder_config(model: type, cfg: Any) -> EncoderConfig:
    """``cfg``, the config a ``model`` class is built from, or the `ArgumentError` naming the
    class when it is no `EncoderConfig` (checked before a constructor reads it)."""
    if not isinstance(cfg, EncoderConfig):
        raise ArgumentError(f"{model.__name__} takes an EncoderConfig, got {describe(cfg)}")
    return cfg


def _capability(feature: Any) -> str:
    return check_choice(feature, CAPABILITIES, "a capability")


def provides(model: object, feature: str) -> bool:
    """Whether ``model`` provides ``feature``, one of `CAPABILITIES` (its ``contract``).

    >>> from emg_lens.models import IsoNet, TinyMyo
    >>> provides(IsoNet(EncoderConfig.preset("tiny")), TL_WEIGHTS), provides(object(), LAYERWISE)
    (True, False)
    >>> cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 2}, n_samples=40)
    >>> [provides(TinyMyo(cfg, task=task), LINEAR_READOUT) for task in ("classification",
    ...                                                                 "reconstruction")]
    [True, False]
    """
    return _capability(feature) in getattr(model, "contract", frozenset())


def refusal(model: object, feature: str, what: str) -> str:
    """The words of `require`'s refusal: what ``what`` needs, why ``model`` lacks it (its
    ``lacks``), and by which converter it could have it (its ``converters``)."""
    lacks = getattr(model, "lacks", None)
    why = lacks(feature) if callable(lacks) else None
    hint = getattr(model, "converters", None)
    return (
        f"{what} needs {_NEEDS[_capability(feature)]}, which {type(model).__name__} does not "
        "provide"
        + (f": {why}" if why else "")
        + (f"; convert the model first: {hint}" if hint else "")
    )


def require(model: object, feature: str, what: str) -> None:
    """Refuse (`UnsupportedFeatureError`), naming ``what`` needed it, a model that does not
    provide ``feature``, saying why where it knows and by which converter where it can be
    converted (`refusal`).

    >>> from emg_lens.models import MultimodalMLP
    >>> require(MultimodalMLP(EncoderConfig.preset("tiny")), ATTENTION_HOOKS, "edge_mass")
    Traceback (most recent call last):
    ...
    emg_lens.errors.UnsupportedFeatureError: edge_mass needs attention hooks (blocks.{l}.attn.hook_attn_scores and hook_pattern, edge_masks=), which MultimodalMLP does not provide: it has no attention layers
    """  # noqa: E501
    if not provides(model, feature):
        raise UnsupportedFeatureError(refusal(model, feature, what))


def is_model(obj: object) -> bool:
    """Whether ``obj`` is an emg_lens model of any tier (native, converted or attached): what
    every tool above `emg_lens.models` takes; what it can do beyond running is its
    ``contract`` (`provides`).

    >>> from emg_lens.models import MultimodalMLP
    >>> is_model(MultimodalMLP(EncoderConfig.preset("tiny"))), is_model(torch.nn.Linear(2, 2))
    (True, False)
    """
    return isinstance(obj, HookedBiosignalModel)


@contextlib.contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Every module (and submodule) in eval mode inside the block (no dropout, batch norm on
    its running statistics); afterwards each one's own ``training`` flag is restored (a model
    frozen in part stays so).

    >>> net = nn.Sequential(nn.Linear(2, 2), nn.Dropout()).train()
    >>> net[0].eval()  # doctest: +ELLIPSIS
    Linear(...)
    >>> with eval_mode(net):
    ...     net.training
    False
    >>> net.training, net[0].training, net[1].training
    (True, False, True)
    """
    flags = [(m, m.training) for module in modules for m in module.modules()]
    try:
        for module in modules:
            module.eval()
        yield
    finally:
        for m, training in flags:
            m.training = training


EdgeMasks = Mapping[int, Bool[torch.Tensor, "... query_pos key_pos"]]

if TYPE_CHECKING:

    class Blocks(nn.ModuleList):
        """An encoder's ``blocks`` as the type checker sees them: an ``nn.ModuleList`` (at
        run time) of `TransformerBlock` s."""

        def __iter__(self) -> Iterator[TransformerBlock]: ...
        @overload
        def __getitem__(self, idx: slice) -> Blocks: ...
        @overload
        def __getitem__(self, idx: int) -> TransformerBlock: ...
        def __getitem__(self, idx: int | slice) -> Any: ...


def _refused(name: str) -> property:
    """``name`` of the weight surface on a model without TransformerLens weights: refused by
    name, saying why and which converter gives them (`refusal`); read or set alike."""

    def refuse(self: HookedBiosignalModel, *_: Any) -> NoReturn:
        raise UnsupportedFeatureError(
            f"{type(self).__name__} has no {name} (TransformerLens's weight surface): "
            + refusal(self, TL_WEIGHTS, name)
        )

    return property(refuse, refuse, doc=f"``{name}``: refused without `TL_WEIGHTS`.")


def _refusing_weights(cls: type) -> type:
    """``cls`` with every name of the weight surface refused (`WeightSurface`, before it in
    an encoder's bases, gives them)."""
    for name in WEIGHT_SURFACE:
        setattr(cls, name, _refused(name))
    return cls


@checked
@_refusing_weights
class HookedBiosignalModel(ConfigInit, TokenSurface, HookSurface, HookedRootModule):
    """Root of every hooked emg_lens model, of every tier; not used directly. Subclasses
    build their modules in ``__init__``, calling ``super().__init__(cfg)`` first and
    `_finish_init` (seeded `init_weights`, then hook names) last.
    """

    cfg: EncoderConfig
    dual_head: bool = False  # True: forward(return_type="both") gives two logits to train
    converters: str | None = None  # the converters that give it what it lacks, in words
    head_tasks: tuple[str, ...] = ()
    """The heads the class can be built with (its ``task=`` keyword; the model's ``task`` is
    the one it has): a foundation model whose encoder is pretrained with one head
    (``"reconstruction"``) and fine-tuned with another; empty for a model with one head."""

    @property
    def contract(self) -> frozenset[str]:
        """The capabilities it provides (`provides`): none, unless a subclass says."""
        return frozenset()

    def lacks(self, feature: str) -> str | None:
        """Why this model does not provide ``feature`` (one of `CAPABILITIES`), in words
        (what `require` adds to its refusal); None where it does or says nothing."""
        return None

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = check_encoder_config(type(self), cfg)
        # the std of the normal draws of the model's own parameters (TinyMyo's ``mask_token``,
        # a converted model's CLS token and position tables)
        self.init_std = cfg.init_range
        self.hook_input = HookPoint()  # [batch, channel, time]: the signals, for input ablation

    def _finish_init(self) -> None:
        """Initialise weights (seeded if ``cfg.seed`` is set), then register hook names."""
        with torch.random.fork_rng(enabled=self.cfg.seed is not None):
            if self.cfg.seed is not None:
                torch.manual_seed(self.cfg.seed)
            self.init_weights()
        self.to(self.cfg.device)
        self.setup()

    def init_weights(self) -> None:
        """Draw every parameter (called once by `_finish_init`, under ``cfg.seed``): each
        `ConfigInit` module's ``reset_parameters``, in module order (the order of
        ``named_parameters``). TransformerLens's random-init control,
        ``transformer_lens.tools.analysis.reinitialized``, calls the same ``reset_parameters``
        in the same order, so on a native model it gives the model its config builds with
        ``seed``, bit for bit.

        >>> from emg_lens.models import IsoNet
        >>> from transformer_lens.tools.analysis import reinitialized
        >>> trained = IsoNet(EncoderConfig.preset("tiny", seed=0))
        >>> fresh = IsoNet(EncoderConfig.preset("tiny", seed=7))
        >>> untrained = reinitialized(trained, seed=7)
        >>> all(torch.equal(a, b) for a, b in zip(untrained.parameters(), fresh.parameters()))
        True
        """
        for module in self.modules():
            if isinstance(module, ConfigInit):
                module.reset_parameters()

    @property
    def init_kwargs(self) -> dict[str, Any]:
        """Constructor keywords beyond ``cfg`` (saved in checkpoints to rebuild the model)."""
        return {}

    _layout: TokenLayout  # built by the subclass's ``__init__``

    @property
    def layout(self) -> TokenLayout:
        """What every token position is (group, channel, time)."""
        return self._layout

    def param_device_dtype(self) -> tuple[torch.device, torch.dtype]:
        """Device and dtype of the model's floating-point parameters: where `to_tokens` puts
        inputs, whatever ``cfg`` says.

        >>> from emg_lens.models import IsoNet
        >>> IsoNet(EncoderConfig.preset("tiny")).double().param_device_dtype()
        (device(type='cpu'), torch.float64)
        """
        for param in self.parameters():
            if param.is_floating_point():
                return param.device, param.dtype
        return torch.device(self.cfg.device or "cpu"), self.cfg.dtype

    def _apply(self, fn: Any, recurse: bool = True) -> HookedBiosignalModel:
        """Every ``.to()``, ``.cuda()``, ``.double()`` ... ends here: after moving the tensors,
        ``cfg.device`` and ``cfg.dtype`` follow the parameters, so code that reads ``cfg``
        (TransformerLens tools, the data pipeline) agrees with the model.

        >>> from emg_lens.models import IsoNet
        >>> model = IsoNet(EncoderConfig.preset("tiny")).to(torch.float64)
        >>> model.cfg.dtype, model(model.example_input()).dtype
        (torch.float64, torch.float64)
        >>> model.to("meta").cfg.device, model(torch.zeros(1, 6, 8)).device
        ('meta', device(type='meta'))
        """
        out = super()._apply(fn, recurse)
        device, dtype = self.param_device_dtype()
        self.cfg.device = str(device)
        self.cfg.dtype = dtype
        return out

    def run_with_cache(
        self,
        *model_args: Any,
        return_cache_object: bool = True,
        remove_batch_dim: bool = False,
        **kwargs: Any,
    ) -> tuple[Any, ActivationCache | dict[str, torch.Tensor]]:
        """Run and cache activations; the cache is a TransformerLens `ActivationCache`
        (`EncoderCache`: a model without a final norm applies none; its
        residual-stream tools need a transformer stack ``blocks``; per-key access always works).

        Attention runs on its explicit path, which fires every hook; an unhooked ``model(x)``
        runs PyTorch's fused kernel instead, so the two logits agree to float rounding, not bit
        for bit (`emg_lens.components.attention` has both paths).

        >>> from emg_lens.models import IsoNet
        >>> model = IsoNet(EncoderConfig.preset("tiny"))
        >>> logits, cache = model.run_with_cache(model.example_input())
        >>> cache["pattern", 0].shape
        torch.Size([1, 4, 7, 7])
        """
        hooks = [k for k in ("fwd_hooks", "bwd_hooks") if k in kwargs]
        if hooks:  # TransformerLens hands them to forward, which fails naming the model's class
            raise ArgumentError(
                f"run_with_cache takes no {hooks[0]}= (as in TransformerLens): cache a hooked run "
                f"in `with model.hooks({hooks[0]}=...):`, or use model.run_with_hooks"
            )
        if remove_batch_dim and model_args and kwargs.get("start_at_layer") is None:
            # one [channel, time] window: its batch axis added first, as forward adds it, so
            # TransformerLens's check reads the batch (1), not the channels, as the batch size
            model_args = (self.to_tokens(model_args[0]), *model_args[1:])
        out, cache_dict = super().run_with_cache(
            *model_args, remove_batch_dim=remove_batch_dim, **kwargs
        )
        if not return_cache_object:
            return out, cache_dict
        return out, EncoderCache(cache_dict, self, has_batch_dim=not remove_batch_dim)


@checked
class HookedEncoder(WeightSurface, HookedBiosignalModel):
    """Base class of the hooked biosignal transformers with weights, native and converted;
    not used directly. A subclass supplies `embed_signals` (which may take extra keywords that
    `forward` passes on), `layout`, and `readout` or the ``head`` the default `readout` reads.
    """

    blocks: Blocks
    head: nn.Module  # what the default `readout` reads the final stream with
    tokenization: str = "channel"  # the EncoderConfig.tokenization this model's tokens follow
    takes: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # other EncoderConfig fields' values
    return_types: tuple[str, ...] = ("logits",)  # what `readout` takes, besides None

    @property
    def contract(self) -> frozenset[str]:
        """Every capability, less `LINEAR_READOUT` where the classifier is no linear map of
        the final stream and `TL_WEIGHTS` where there is no shared stack to stack weights
        from (``n_layers=0``); `lacks` says why.

        >>> from emg_lens.models import IsoNet, MultimodalTransformer
        >>> sorted(IsoNet(EncoderConfig.preset("tiny")).contract) == sorted(CAPABILITIES)
        True
        >>> stems_only = MultimodalTransformer(MultimodalTransformer.default_config("tiny"))
        >>> sorted(set(CAPABILITIES) - stems_only.contract)
        ['tl_weights']
        """
        return frozenset(f for f in CAPABILITIES if self.lacks(f) is None)

    def lacks(self, feature: str) -> str | None:
        """Why the classifier is no linear readout (`LINEAR_READOUT`), or why there are no
        stacked weights (`TL_WEIGHTS`, ``n_layers=0``); None otherwise."""
        if feature == LINEAR_READOUT:
            return self._readout_refusal()
        if feature == TL_WEIGHTS and self.cfg.n_layers == 0:
            stems = ": its attention layers are its stems' (model.stems[modality].blocks[l])"
            return "it has no shared stack `blocks` (n_layers=0) to stack W_Q ... from" + (
                stems if hasattr(self, "stems") else ""
            )
        return None

    def __init__(self, cfg: EncoderConfig):
        super().__init__(cfg)
        for field, accepted in (("tokenization", (self.tokenization,)), *self.takes):
            what = f"{type(self).__name__}'s EncoderConfig.{field}"
            check_choice(getattr(cfg, field), accepted, what, ConfigError)
        blocks = nn.ModuleList(TransformerBlock(cfg, i) for i in range(cfg.n_layers))
        self.blocks = cast("Blocks", blocks)
        self.ln_final = make_norm(cfg, "ln_final")

    def _check_return_type(self, return_type: str) -> None:
        check_choice(return_type, self.return_types, f"{type(self).__name__} return_type")

    def _channel_layout(self, cls_token: bool) -> TokenLayout:
        """One token per channel and patch of the config, channel-major, after a CLS token
        if any."""
        cfg = self.cfg
        return TokenLayout.channel_tokens(
            cfg.modalities,
            n_patches=cfg.n_patches,
            cls_token=cls_token,
            channel_names=cfg.channel_names,
        )

    # ------------------------------------------------------------------ subclass surface
    def embed_signals(
        self, signals: Float[torch.Tensor, "batch channel time"]
    ) -> Float[torch.Tensor, "batch pos d_model"]:
        """Signals -> the residual stream entering ``blocks.0``. A subclass may accept keywords
        (TinyMyo's ``patch_mask``); `forward` passes its extra keywords on."""
        raise NotImplementedError

    def readout(self, resid: Float[torch.Tensor, "batch pos d_model"], return_type: str) -> Any:
        """Final residual stream -> outputs for ``return_type`` (one of `return_types`): by
        default ``ln_final``'s stream (``"latent"``) or what ``self.head`` reads from it."""
        self._check_return_type(return_type)
        latent = self.ln_final(resid)
        return latent if return_type == "latent" else self.head(latent)

    def read_positions(self, return_type: str) -> list[int] | None:
        """The token positions of the final stream that `readout` reads for ``return_type``
        (None: all of them, or not known). A last-layer cut of other query rows cannot change
        the output (the screen skips such rows)."""
        return None

    def forward(
        self,
        signals: Any,
        *,
        return_type: str | None = "logits",
        start_at_layer: int | None = None,
        stop_at_layer: int | None = None,
        edge_masks: EdgeMasks | None = None,
        **embed_kwargs: Any,
    ) -> Any:
        """Run the encoder.

        Args:
            signals: ``[batch, channel, time]`` signals; with ``start_at_layer`` the residual
                stream ``[batch, pos, d_model]`` entering that layer instead.
            return_type: ``"logits"`` (``[batch, n_classes]``), ``None`` (the final residual
                stream, before ``ln_final``; ``ln_final`` still runs for its hooks, as in
                HookedTransformer, which returns None there), or a model-specific type.
            start_at_layer: first block to run (inclusive), as in TransformerLens.
            stop_at_layer: block to stop before (exclusive; negative counts from the end); the
                residual stream entering it is returned.
            edge_masks: ``{layer: bool mask}`` (True = masked), broadcastable to
                ``[batch, head_index, query_pos, key_pos]``, applied inside attention on the
                fast and the hooked path alike (see `emg_lens.edges`).
            **embed_kwargs: passed on to `embed_signals` (TinyMyo's ``patch_mask``, the stem
                models' ``stem_edge_masks``); refused with ``start_at_layer``, which skips it.

        >>> from emg_lens.models import IsoNet
        >>> model = IsoNet(EncoderConfig.preset("tiny"))
        >>> x = model.example_input(2)
        >>> mid = model(x, stop_at_layer=1)
        >>> torch.allclose(model(mid, start_at_layer=1), model(x))
        True
        """
        n_layers = self.cfg.n_layers
        start = self._layer_index(start_at_layer, "start_at_layer", default=0)
        stop = self._layer_index(stop_at_layer, "stop_at_layer", default=n_layers)
        if start_at_layer is None:
            resid = self.embed_signals(self.hook_input(self.to_tokens(signals)), **embed_kwargs)
        else:
            self._refuse_embed_kwargs(embed_kwargs, start_at_layer)
            resid = self._check_resid(signals)
        masks = self._check_edge_masks(edge_masks, batch=resid.shape[0])
        read = None if stop_at_layer is not None else return_type
        if masks and (unread := unread_positions(self, masks, read)):
            warn_unread(self, read, unread, "edge_masks")
        with forward_call(self, read):  # what a masking hook reads (emg_lens.models.reach)
            for layer in range(start, stop):
                resid = self.blocks[layer](resid, masks.get(layer))
        if stop_at_layer is not None:
            return resid
        if return_type is None:
            # HookedTransformer runs ln_final before it returns None, so its hooks fire and a
            # cache of ``return_type=None`` holds them (``apply_ln=True`` reads its scale)
            self.ln_final(resid)
            return resid
        return self.readout(resid, return_type)

    def _layer_index(self, value: int | None, name: str, default: int) -> int:
        n_layers = self.cfg.n_layers
        if value is None:
            return default
        value = check_int(value, name, -n_layers, n_layers, LayoutError)
        return value % n_layers if value < 0 else value

    def _refuse_embed_kwargs(self, embed_kwargs: dict[str, Any], start_at_layer: int) -> None:
        """``start_at_layer`` skips `embed_signals`, so a keyword meant for it would silently
        do nothing; unset ones (None, empty dict) are fine, unknown names a TypeError."""
        if not embed_kwargs:
            return
        inspect.signature(self.embed_signals).bind_partial(None, **embed_kwargs)
        for name, value in embed_kwargs.items():
            if value is None or (isinstance(value, Mapping) and not value):
                continue
            raise ArgumentError(
                f"{name} acts on the embedding, which start_at_layer={start_at_layer!r} skips: "
                "pass one or the other"
            )

    def _check_resid(self, resid: Any) -> torch.Tensor:
        expected = (self.layout.n_tokens, self.cfg.d_model)
        if not isinstance(resid, torch.Tensor) or resid.shape[1:] != expected:
            raise InputShapeError(
                f"with start_at_layer the input must be the residual stream [batch, "
                f"{expected[0]}, {expected[1]}], got {describe(resid)}"
            )
        return resid

    def _check_edge_masks(
        self,
        edge_masks: EdgeMasks | None,
        *,
        batch: int,
        size_field: str = "n_layers",
        what: str = "edge_masks",
    ) -> dict[int, torch.Tensor]:
        """Validate ``{layer: bool mask}`` broadcastable to ``[batch, n_heads, n_tokens,
        n_tokens]`` for a stack of ``cfg.<size_field>`` layers (default: ``blocks``); move them
        to the model's device."""
        n = self.layout.n_tokens
        masks = checked_edge_masks(
            edge_masks,
            n_layers=getattr(self.cfg, size_field),
            scores=lambda layer: (n, n),
            layers=f"EncoderConfig.{size_field}",
            what=what,
        )
        out = {}
        for layer, mask in masks.items():
            check_mask_shape(mask.shape, (batch, self.cfg.n_heads, n, n), f"{what}[{layer}]")
            out[layer] = mask.to(self.param_device_dtype()[0])
        return out

    # ------------------------------------------------------------------ TransformerLens surface
    def accumulated_bias(
        self, layer: int, mlp_input: bool = False, include_mlp_biases: bool = True
    ) -> Float[torch.Tensor, " d_model"]:
        """Sum of the attention (and MLP) output biases added before ``layer``'s input, as in
        TransformerLens (used by `ActivationCache.get_full_resid_decomposition`)."""
        device, dtype = self.param_device_dtype()
        bias = torch.zeros(self.cfg.d_model, device=device, dtype=dtype)
        for block in self.blocks[:layer]:
            bias = bias + block.attn.b_O
            if include_mlp_biases:
                bias = bias + block.mlp.b_out
        if mlp_input:
            if layer >= self.cfg.n_layers:
                raise LayoutError("mlp_input=True needs a layer below n_layers")
            bias = bias + self.blocks[layer].attn.b_O
        return bias
