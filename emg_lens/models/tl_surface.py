"""What TransformerLens users read off a model, beyond hooks and caches.

`TransformerLensSurface` gives every emg_lens model legacy HookedTransformer's weight surface:
the per-block weights stacked over layers (``W_Q`` ... ``b_out``), each head's QK and OV
circuits as `transformer_lens.FactoredMatrix`, the hook flags (``set_use_attn_result``; the
ones the blocks cannot honour are refused by name), every pair of heads' composition scores
(``all_composition_scores``), and the classifier read as an unembedding (``W_U``, ``b_U``,
``tokens_to_residual_directions``), so TransformerLens's own ``cache.logit_attrs``,
``cache.logit_lens`` and ``SVDInterpreter`` work on a class. It is a mixin of
`emg_lens.models.base.HookedBiosignalModel`, which supplies ``cfg``, ``blocks`` and the heads it
reads.

Where TransformerLens resolves a hook's name (``hooks()``, hence ``run_with_hooks``;
``add_hook``; the caching hooks of ``run_with_cache``) the names are checked first: a hook name
the model lacks is a `LayoutError` naming it (TransformerLens: a bare ``KeyError``), and a name
filter that can check itself against a model (a ``check_model(model)`` method, as every
`emg_lens.hooks.name_filter` has) is asked to, so a filter naming layers the model lacks is
refused instead of hooking nothing there. A hook of TransformerLens's own patching helpers that
indexes a token position the activation does not have (they take positions from the input's
last axis, time samples for signals) raises a `LayoutError` that points to
``emg_lens.inspect.tl_index_df`` instead of a bare ``IndexError``.
"""

from __future__ import annotations

import contextlib
import functools
import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from einops import rearrange
from jaxtyping import Float
from torch import nn
from transformer_lens import FactoredMatrix
from transformer_lens.utilities import composition_scores

from emg_lens.components import Attention
from emg_lens.config import EncoderConfig  # noqa: F401  (the examples use it)
from emg_lens.errors import (
    ArgumentError,
    LayoutError,
    UnsupportedFeatureError,
    UnsupportedReadoutError,
    describe,
)

__all__ = ["TransformerLensSurface"]

COMPOSITION_MODES = ("Q", "K", "V")
TL_PATCHING = "transformer_lens.patching"  # the module whose helpers' hooks are guarded


def _stacked(name: str, dims: str) -> property:
    """A TransformerLens stacked-weight property: ``name`` of every block, stacked."""

    def get(self: TransformerLensSurface) -> torch.Tensor:
        return self._stack(name)

    get.__doc__ = f"``blocks.{{l}}.{name}`` stacked: ``[{dims}]``, as in TransformerLens."
    return property(get)


def _check_flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ArgumentError(f"{name} must be True or False, got {value!r}")
    return value


def _class_ids(tokens: Any, n_classes: int) -> torch.Tensor:
    """Class ids (an int, a sequence of ints, an integer tensor) as a long tensor, checked."""
    accepted = f"class ids in [0, {n_classes}): an int, a list of ints or an integer tensor"
    if isinstance(tokens, (bool, str)):
        raise ArgumentError(f"tokens must be {accepted}; got {tokens!r}")
    if isinstance(tokens, torch.Tensor):
        ids = tokens
    else:
        try:
            ids = torch.as_tensor(tokens)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ArgumentError(f"tokens must be {accepted}; got {tokens!r}") from exc
    if ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex() or ids.numel() == 0:
        raise ArgumentError(f"tokens must be {accepted}; got {describe(ids)}")
    if int(ids.min()) < 0 or int(ids.max()) >= n_classes:
        raise ArgumentError(f"tokens must be {accepted}; got {ids.tolist()}")
    return ids.long()


def _guard_tl_patching(name: Any, hook: Callable) -> Callable:
    """``hook`` as it is, unless it is one of TransformerLens's patching helpers' hooks (a
    ``functools.partial`` of their ``patching_hook`` with the row's ``index``): then the same
    hook, with an out-of-range position turned from a bare ``IndexError`` into a `LayoutError`
    that says why and what to pass instead."""
    func = getattr(hook, "func", None)
    if not isinstance(hook, functools.partial) or getattr(func, "__module__", "") != TL_PATCHING:
        return hook
    index = hook.keywords.get("index")

    def guarded(activation: torch.Tensor, *, hook: Any) -> Any:
        try:
            return original(activation, hook=hook)
        except IndexError as exc:
            raise LayoutError(
                f"TransformerLens's patching helper indexed {name} (shape "
                f"{list(activation.shape)}: [batch, token, ...]) at {index}, a position it does "
                f"not have ({exc}). Its position-indexed helpers (get_act_patch_resid_pre and "
                "the other *_by_pos ones) take positions from the input's last axis, which for "
                "signals is time samples, not tokens: pass "
                "index_df=emg_lens.inspect.tl_index_df(model, 'layer', 'pos') (the axes the "
                "helper iterates, e.g. 'layer', 'pos', 'head_index') and index_axis_names=None"
            ) from exc

    original = hook
    return guarded


class TransformerLensSurface:
    """TransformerLens's weight, hook-flag and unembedding surface (see the module docstring);
    a mixin for `HookedBiosignalModel`."""

    # ------------------------------------------------------------------ TL weights (stacked)
    def _stack(self, name: str) -> torch.Tensor:
        """``name`` (e.g. ``"attn.W_Q"``) of every block in ``blocks``, stacked on a new dim 0."""
        blocks = getattr(self, "blocks", None)
        if not blocks:
            where = (
                "its attention layers are in its stems: read model.stems[modality].blocks[l]"
                if hasattr(self, "stems")
                else "it has no attention layers"
            )
            raise UnsupportedFeatureError(
                f"{type(self).__name__} has no shared stack `blocks` (n_layers=0), so there is "
                f"no stacked {name.split('.')[-1]} [n_layers, ...] to give; {where}"
            )
        get = operator.attrgetter(name)
        return torch.stack([get(block) for block in blocks])

    W_Q = _stacked("attn.W_Q", "n_layers n_heads d_model d_head")
    W_K = _stacked("attn.W_K", "n_layers n_heads d_model d_head")
    W_V = _stacked("attn.W_V", "n_layers n_heads d_model d_head")
    W_O = _stacked("attn.W_O", "n_layers n_heads d_head d_model")
    b_Q = _stacked("attn.b_Q", "n_layers n_heads d_head")
    b_K = _stacked("attn.b_K", "n_layers n_heads d_head")
    b_V = _stacked("attn.b_V", "n_layers n_heads d_head")
    b_O = _stacked("attn.b_O", "n_layers d_model")
    W_in = _stacked("mlp.W_in", "n_layers d_model d_mlp")
    b_in = _stacked("mlp.b_in", "n_layers d_mlp")
    W_out = _stacked("mlp.W_out", "n_layers d_mlp d_model")
    b_out = _stacked("mlp.b_out", "n_layers d_model")

    @property
    def QK(self) -> FactoredMatrix:
        """Every head's QK circuit ``W_Q @ W_K^T`` as a TransformerLens `FactoredMatrix`
        ``[n_layers, n_heads, d_model, d_model]`` (query side left, key side right; the
        attention scale 1/sqrt(d_head), biases, LayerNorm and RoPE are not in it).

        >>> from emg_lens.models import IsoNet
        >>> model = IsoNet(EncoderConfig.preset("tiny"))
        >>> model.QK.shape, model.W_Q.shape
        (torch.Size([2, 4, 16, 16]), torch.Size([2, 4, 16, 4]))
        """
        return FactoredMatrix(self.W_Q, self.W_K.transpose(-2, -1))

    @property
    def OV(self) -> FactoredMatrix:
        """Every head's OV circuit ``W_V @ W_O`` as a `FactoredMatrix`
        ``[n_layers, n_heads, d_model, d_model]`` (what a head writes for what it reads).

        >>> from emg_lens.models import IsoNet
        >>> IsoNet(EncoderConfig.preset("tiny")).OV.shape
        torch.Size([2, 4, 16, 16])
        """
        return FactoredMatrix(self.W_V, self.W_O)

    def all_composition_scores(
        self, mode: str
    ) -> Float[torch.Tensor, "n_layers n_heads n_layers n_heads"]:
        """Every pair of heads' composition score, as legacy ``HookedTransformer``'s: entry
        ``[l1, h1, l2, h2]`` is how much head ``h2`` of layer ``l2`` reads, through its query
        (``mode="Q"``), key (``"K"``) or value (``"V"``), what head ``h1`` of layer ``l1``
        writes: ``||OV[l1, h1] @ R[l2, h2]||_F / (||OV[l1, h1]||_F ||R[l2, h2]||_F)`` with
        ``R`` = ``QK`` (Q), ``QK.T`` (K) or ``OV`` (V) (Elhage et al. 2021, "A Mathematical
        Framework for Transformer Circuits"; TransformerLens's ``composition_scores``). Pairs
        whose reading head is not in a later layer (``l2 <= l1``) are 0.

        >>> from emg_lens.models import IsoNet
        >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0))  # 2 layers of 4 heads
        >>> scores = model.all_composition_scores("K")
        >>> scores.shape, bool((scores[1] == 0).all()), bool((scores[0, :, 1] > 0).all())
        (torch.Size([2, 4, 2, 4]), True, True)
        """
        if mode not in COMPOSITION_MODES:
            raise ArgumentError(
                f"all_composition_scores mode must be one of {list(COMPOSITION_MODES)} (query, "
                f"key or value composition), got {mode!r}"
            )
        left = self.OV
        right = {"Q": self.QK, "K": self.QK.T, "V": left}[mode]
        scores = composition_scores(left, right, broadcast_dims=True)
        layers = torch.arange(scores.shape[0], device=scores.device)
        later = layers[:, None, None, None] < layers[None, None, :, None]
        return torch.where(later, scores, torch.zeros_like(scores))

    def all_head_labels(self) -> list[str]:
        """``"L{layer}H{head}"`` for every head of ``blocks``, layer-major (TransformerLens's).

        >>> from emg_lens.models import IsoNet
        >>> IsoNet(EncoderConfig.preset("tiny")).all_head_labels()[:5]
        ['L0H0', 'L0H1', 'L0H2', 'L0H3', 'L1H0']
        """
        n_layers, n_heads = self._stack("attn.W_Q").shape[:2]
        return [f"L{layer}H{head}" for layer in range(n_layers) for head in range(n_heads)]

    # ------------------------------------------------------------------ TL hooks, checked
    def _check_hook_names(self, names: Iterable[Any]) -> None:
        """A hook name the model lacks is a `LayoutError`; a filter with ``check_model`` (an
        `emg_lens.hooks.NameFilter`) checks the layers it names against this model."""
        for name in names:
            if isinstance(name, str):
                if name not in self.mod_dict:
                    raise LayoutError(
                        f"{type(self).__name__} has no hook point {name!r} (it has "
                        f"n_layers={self.cfg.n_layers}, numbered from 0); its hook names are "
                        "model.hook_dict's keys, e.g. "
                        f"{', '.join(repr(n) for n in list(self.hook_dict)[:3])}"
                    )
                continue
            check = getattr(name, "check_model", None)
            if callable(check):
                check(self)

    def hooks(
        self,
        fwd_hooks: Sequence[tuple[Any, Callable]] = (),
        bwd_hooks: Sequence[tuple[Any, Callable]] = (),
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
    ) -> Any:
        """TransformerLens's ``hooks()`` context manager (and so ``run_with_hooks``), with the
        hooks' names checked against this model first (see the module docstring).

        >>> from emg_lens.models import IsoNet
        >>> from emg_lens.hooks import attn_scores_filter
        >>> model = IsoNet(EncoderConfig.preset("tiny"))
        >>> with model.hooks(fwd_hooks=[(attn_scores_filter([2]), lambda t, hook: t)]):
        ...     pass  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        emg_lens.errors.LayoutError: name_filter('attn.hook_attn_scores', [2]) names layers [2] ...
        """
        fwd_hooks, bwd_hooks = list(fwd_hooks), list(bwd_hooks)
        self._check_hook_names(name for name, _ in [*fwd_hooks, *bwd_hooks])
        fwd_hooks = [(name, _guard_tl_patching(name, hook)) for name, hook in fwd_hooks]
        return super().hooks(fwd_hooks, bwd_hooks, reset_hooks_end, clear_contexts)

    def add_hook(self, name: Any, hook: Callable, *args: Any, **kwargs: Any) -> None:
        """TransformerLens's ``add_hook``, with ``name`` checked against this model first."""
        self._check_hook_names([name])
        super().add_hook(name, hook, *args, **kwargs)

    def get_caching_hooks(self, names_filter: Any = None, *args: Any, **kwargs: Any) -> Any:
        """TransformerLens's caching hooks (``run_with_cache``), ``names_filter`` checked first."""
        self._check_hook_names([names_filter] if callable(names_filter) else [])
        return super().get_caching_hooks(names_filter, *args, **kwargs)

    def add_caching_hooks(self, names_filter: Any = None, *args: Any, **kwargs: Any) -> Any:
        """TransformerLens's ``add_caching_hooks``, ``names_filter`` checked first."""
        self._check_hook_names([names_filter] if callable(names_filter) else [])
        return super().add_caching_hooks(names_filter, *args, **kwargs)

    # ------------------------------------------------------------------ TL hook flags
    def set_use_attn_result(self, use_attn_result: bool) -> None:
        """Compute each head's output separately (``attn.hook_result``, ``[batch, pos,
        head_index, d_model]``), as in TransformerLens; stems included. Costs memory.

        >>> from emg_lens.models import IsoNet
        >>> model = IsoNet(EncoderConfig.preset("tiny"))
        >>> model.set_use_attn_result(True)
        >>> _, cache = model.run_with_cache(model.example_input())
        >>> cache["result", 0].shape
        torch.Size([1, 7, 4, 16])
        """
        flag = _check_flag("use_attn_result", use_attn_result)
        # Attention modules read the flag from their own cfg (usually the model's).
        attns = [m for m in self.modules() if isinstance(m, Attention)]
        if not attns:
            raise UnsupportedFeatureError(
                f"{type(self).__name__} has no attention layers, so no per-head results: "
                "use_attn_result cannot apply"
            )
        for cfg in {id(c): c for c in [self.cfg] + [m.cfg for m in attns]}.values():
            cfg.use_attn_result = flag

    def set_use_split_qkv_input(self, use_split_qkv_input: bool) -> None:
        """Refused when True: emg_lens blocks compute q, k and v from one ``ln1`` output and
        have no ``hook_q_input``/``hook_k_input``/``hook_v_input``. Patch ``attn.hook_q``,
        ``hook_k`` or ``hook_v`` (per head) instead. False is accepted (it is the state)."""
        if _check_flag("use_split_qkv_input", use_split_qkv_input):
            raise UnsupportedFeatureError(
                "emg_lens blocks have no split q/k/v inputs (hook_q_input, hook_k_input, "
                "hook_v_input): q, k and v are computed from one ln1 output. Patch "
                "blocks.{l}.attn.hook_q / hook_k / hook_v, per head, instead"
            )

    def set_use_hook_mlp_in(self, use_hook_mlp_in: bool) -> None:
        """Refused when True: emg_lens blocks have no ``hook_mlp_in``; the MLP's input is
        ``blocks.{l}.hook_resid_mid`` (before ``ln2``), or ``ln2.hook_normalized`` after the
        norm's centring and scaling. False is accepted (it is the state)."""
        if _check_flag("use_hook_mlp_in", use_hook_mlp_in):
            raise UnsupportedFeatureError(
                "emg_lens blocks have no hook_mlp_in; the MLP input is blocks.{l}.hook_resid_mid "
                "(before ln2) or blocks.{l}.ln2.hook_normalized: hook those instead"
            )

    # ------------------------------------------------------------------ the unembedding
    unembed_heads: tuple[str, ...] = ()  # return types whose head is a TL unembedding
    _unembed_head: str = "logits"

    @property
    def unembed_head(self) -> str:
        """The classifier head (a ``return_type``) that ``W_U``, ``b_U``, ``unembed`` and
        `tokens_to_residual_directions` refer to; ``"logits"``, the scored head, by default.
        IsoNet also accepts ``"avg_logits"``."""
        return self._unembed_head

    @unembed_head.setter
    def unembed_head(self, head: str) -> None:
        if head not in self.unembed_heads:
            raise ArgumentError(
                f"{type(self).__name__}.unembed_head must be one of {self.unembed_heads}, "
                f"got {head!r}"
            )
        self._unembed_head = head

    def _unembedding(self) -> nn.Module:
        """The head module (``W_U``, ``b_U``) of ``unembed_head``; a model whose classifier is
        no TransformerLens unembedding raises `UnsupportedReadoutError` saying why."""
        raise UnsupportedReadoutError(
            f"{type(self).__name__} has no unembedding: its classifier does not read the "
            "residual stream after ln_final"
        )

    @property
    def unembed_positions(self) -> list[int]:
        """Token positions whose final stream the ``unembed_head`` reads: one (a CLS token)
        or several, averaged after ``ln_final`` (the logit is the mean of theirs)."""
        raise NotImplementedError

    @property
    def unembed(self) -> nn.Module:
        """The ``unembed_head`` module: ``unembed.W_U [d_model, n_classes]``, ``unembed.b_U``."""
        return self._unembedding()

    @property
    def W_U(self) -> Float[torch.Tensor, "d_model n_classes"]:
        """The ``unembed_head``'s unembedding (one column per class), as TransformerLens's
        ``W_U``: logits = ``ln_final(resid)[unembed_positions]`` (averaged) ``@ W_U + b_U``."""
        return self.unembed.W_U

    @property
    def b_U(self) -> Float[torch.Tensor, " n_classes"]:
        """The ``unembed_head``'s bias."""
        return self.unembed.b_U

    def tokens_to_residual_directions(
        self, tokens: int | Sequence[int] | torch.Tensor
    ) -> Float[torch.Tensor, "... d_model"]:
        """Class ids -> their directions in the final residual stream (after ``ln_final``):
        the columns of ``W_U``, as TransformerLens. One id (an int or a one-element tensor)
        gives ``[d_model]``; more give ``[*tokens.shape, d_model]``. This is what
        ``ActivationCache.logit_attrs(stack, tokens=class_ids, pos_slice=...)`` projects on.

        >>> from emg_lens.models import IsoNet
        >>> model = IsoNet(EncoderConfig.preset("tiny"))
        >>> model.tokens_to_residual_directions(2).shape
        torch.Size([16])
        >>> model.tokens_to_residual_directions([0, 3]).shape
        torch.Size([2, 16])
        """
        W_U = self.unembed.W_U  # not self.W_U, which some models use for their classifier
        ids = _class_ids(tokens, W_U.shape[1])
        if ids.numel() > 1:
            return rearrange(W_U[:, ids.to(W_U.device)], "d_model ... -> ... d_model")
        return W_U[:, int(ids.reshape(-1)[0])]

    def _ln_final_readers(self) -> list[tuple[nn.Parameter, nn.Parameter]]:
        """``(W, b)`` of every linear map applied to ``ln_final``'s output (pooled by taking
        one position, a mean, or concatenating ``d_model`` blocks): what `fold_ln_final`
        rescales. A model with another readout returns none and cannot fold."""
        return []

    @torch.no_grad()
    def fold_ln_final(self) -> None:
        """Fold ``ln_final``'s weight and bias into the maps that read it, in place, as
        TransformerLens's ``fold_ln`` does for the unembedding: ``W <- w * W`` (per
        ``d_model`` block), ``b <- b + ln_b @ W``, then ``w = 1``, ``b = 0``. The model
        computes the same function; afterwards ``cache.logit_attrs`` (which applies the
        norm's centring and scale but not its weights) sums exactly to the logits:
        ``attrs.sum(0) + b_U[c] == logits[:, c]`` for a stack covering the whole stream.

        >>> from emg_lens.models import IsoNet
        >>> model = IsoNet(EncoderConfig.preset("tiny"))
        >>> torch.nn.init.normal_(model.ln_final.w)  # doctest: +ELLIPSIS
        Parameter containing:...
        >>> x = model.example_input(2)
        >>> before = model(x)
        >>> model.fold_ln_final()
        >>> torch.allclose(model(x), before, atol=1e-6), bool((model.ln_final.w == 1).all())
        (True, True)
        """
        ln = self.ln_final if hasattr(self, "ln_final") else None
        if not hasattr(ln, "w"):
            return  # no final norm (normalization_type=None), or no residual stream
        readers = self._ln_final_readers()
        if not readers:
            raise UnsupportedFeatureError(
                f"{type(self).__name__} has no linear map reading ln_final's output to fold "
                "its weights into"
            )
        d_model = ln.w.shape[0]
        for W, b in readers:
            blocks = W.view(-1, d_model, W.shape[-1])  # [k, d_model, out]: k pooled blocks
            b.add_(torch.einsum("d,kdo->o", ln.b, blocks))
            blocks.mul_(ln.w[None, :, None])
        ln.w.fill_(1.0)
        ln.b.zero_()

    def tl_parameters(self) -> dict[str, torch.Tensor]:
        """Parameters under their TransformerLens names (what `SVDInterpreter` reads):
        ``named_parameters()`` plus ``unembed.W_U`` / ``unembed.b_U`` where the model has an
        unembedding."""
        params = dict(self.named_parameters())
        with contextlib.suppress(UnsupportedReadoutError):
            params |= {"unembed.W_U": self.unembed.W_U, "unembed.b_U": self.unembed.b_U}
        return params
