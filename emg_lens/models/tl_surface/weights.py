"""TransformerLens's weight surface, which only models with weights in its shapes have.

`WeightSurface` gives the models that provide `TL_WEIGHTS` legacy HookedTransformer's weights:
per-block weights stacked over layers, QK and OV circuits as `FactoredMatrix`, ``W_pos``, and
the classifier read as an unembedding (``W_U``), so ``cache.logit_attrs`` works on a class, and
``SVDInterpreter`` once ``model.cfg.d_vocab = model.cfg.n_classes`` (``d_vocab`` stays -1 in
`EncoderConfig`, whose every field is part of a model's digest). Beside them, emg_lens's own
readings: `readout_map` and `data_free_tokens`.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from einops import einsum, rearrange
from jaxtyping import Float
from torch import nn
from transformer_lens import FactoredMatrix
from transformer_lens.utilities import composition_scores

from emg_lens.config import EncoderConfig  # noqa: F401  (the examples use it)
from emg_lens.errors import ArgumentError, UnsupportedFeatureError, check_choice, describe
from emg_lens.layout import CLS
from emg_lens.models.tl_surface.hooks import HookSurface
from emg_lens.models.tl_surface.tokens import TokenSurface

COMPOSITION_MODES = ("Q", "K", "V")
STACKED = {
    "W_Q": ("attn.W_Q", "n_layers n_heads d_model d_head"),
    "W_K": ("attn.W_K", "n_layers n_heads d_model d_head"),
    "W_V": ("attn.W_V", "n_layers n_heads d_model d_head"),
    "W_O": ("attn.W_O", "n_layers n_heads d_head d_model"),
    "b_Q": ("attn.b_Q", "n_layers n_heads d_head"),
    "b_K": ("attn.b_K", "n_layers n_heads d_head"),
    "b_V": ("attn.b_V", "n_layers n_heads d_head"),
    "b_O": ("attn.b_O", "n_layers d_model"),
    "W_in": ("mlp.W_in", "n_layers d_model d_mlp"),
    "b_in": ("mlp.b_in", "n_layers d_mlp"),
    "W_out": ("mlp.W_out", "n_layers d_mlp d_model"),
    "b_out": ("mlp.b_out", "n_layers d_model"),
}  # TransformerLens's name -> (the block's parameter, its stacked shape)
UNEMBEDDING = (
    "unembed_head",
    "unembed",
    "unembed_positions",
    "W_U",
    "b_U",
    "tokens_to_residual_directions",
    "readout_map",
)
"""The names that read the classifier as an unembedding (refused with an
`UnsupportedFeatureError` where there is none)."""
WEIGHT_SURFACE = (
    *STACKED,
    "QK",
    "OV",
    "all_composition_scores",
    "all_head_labels",
    "W_pos",
    "fold_ln_final",
    "data_free_tokens",
    *UNEMBEDDING,
)
"""Every public name of `WeightSurface`: what a model without TransformerLens weights refuses
by name."""
NO_IDENTITY = (
    "{name}'s tokens have no data-free channel identity: weight circuits are defined for "
    "IsoNet (every channel has its own embedding) and TinyMyo with token RoPE. A tubelet "
    "model's fusion stack reads its stems' outputs, which depend on the signal, and a "
    "tubelet spans every channel of its modality. Use attention_flow on data instead"
)


def _stacked(name: str, dims: str) -> property:
    """A TransformerLens stacked-weight property: ``name`` of every block, stacked."""

    def get(self: WeightSurface) -> torch.Tensor:
        return self._stack(name)

    get.__doc__ = f"``blocks.{{l}}.{name}`` stacked: ``[{dims}]``, as in TransformerLens."
    return property(get)


def _class_ids(tokens: Any, n_classes: int) -> torch.Tensor:
    """Class ids (an int, a sequence of ints, an integer tensor) as a long tensor, checked."""
    accepted = f"class ids in [0, {n_classes}): an int, a list of ints or an integer tensor"
    try:  # a string or what torch cannot read: no ids, refused below
        ids = torch.as_tensor([] if isinstance(tokens, str) else tokens)
    except (TypeError, ValueError, RuntimeError):
        ids = torch.tensor([])
    kind = ids.dtype
    ints = ids.numel() > 0 and not (kind == torch.bool or kind.is_floating_point or kind.is_complex)
    if not ints or int(ids.min()) < 0 or int(ids.max()) >= n_classes:
        # what was given (True, not tensor(True)); ids where they are ints out of range
        shown = ids.tolist() if ints else describe(ids) if ids is tokens else repr(tokens)
        raise ArgumentError(f"tokens must be {accepted}; got {shown}")
    return ids.long()


def _with_stacked_weights(cls: type) -> type:
    """``cls`` with a stacked-weight property for every row of `STACKED` (``W_Q`` ...)."""
    for name, (path, dims) in STACKED.items():
        setattr(cls, name, _stacked(path, dims))
    return cls


@_with_stacked_weights
class WeightSurface(TokenSurface, HookSurface):
    """TransformerLens's weights, circuits and unembedding (see the module docstring); a
    base of `HookedEncoder`, which supplies what is declared here."""

    if TYPE_CHECKING:

        def embed_signals(self, signals: torch.Tensor) -> torch.Tensor: ...
        def lacks(self, feature: str) -> str | None: ...

    # ------------------------------------------------------------------ TL weights (stacked)
    def _stack(self, name: str) -> torch.Tensor:
        """``name`` (e.g. ``"attn.W_Q"``) of every block in ``blocks``, stacked on a new dim 0."""
        blocks = getattr(self, "blocks", None)
        if not blocks:  # n_layers=0 (its layers may be stems'): `lacks` says why
            why = self.lacks("tl_weights")
            raise UnsupportedFeatureError(f"{type(self).__name__} has no {name}: {why}")
        get = operator.attrgetter(name)
        return torch.stack([get(block) for block in blocks])

    # W_Q ... b_out: one property per row of STACKED (`_with_stacked_weights`)
    W_Q: torch.Tensor
    W_K: torch.Tensor
    W_V: torch.Tensor
    W_O: torch.Tensor
    b_Q: torch.Tensor
    b_K: torch.Tensor
    b_V: torch.Tensor
    b_O: torch.Tensor
    W_in: torch.Tensor
    b_in: torch.Tensor
    W_out: torch.Tensor
    b_out: torch.Tensor

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
        check_choice(mode, list(COMPOSITION_MODES), "all_composition_scores mode")
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

    @property
    def W_gate(self) -> None:
        """None, as HookedTransformer's ``W_gate`` is for an MLP without a gate: no emg_lens
        MLP is gated (`EncoderConfig` refuses ``gated_mlp``).

        >>> from emg_lens.models import IsoNet
        >>> IsoNet(EncoderConfig.preset("tiny")).W_gate is None
        True
        """
        return None

    # ------------------------------------------------------------------ positions
    @property
    def W_pos(self) -> Float[torch.Tensor, "n_ctx d_model"]:
        """The learned position embedding ``pos_embed.W_pos`` ``[n_ctx, d_model]``, as
        TransformerLens's model-level ``W_pos``; a model without one (rotary positions, per-stem
        positions, positions computed from the input) says why by name.

        >>> from emg_lens.models import IsoNet
        >>> IsoNet(EncoderConfig.preset("tiny")).W_pos.shape
        torch.Size([7, 16])
        """
        W_pos = getattr(getattr(self, "pos_embed", None), "W_pos", None)
        if isinstance(W_pos, torch.Tensor):
            return W_pos
        name = type(self).__name__
        if getattr(self.cfg, "positional_embedding_type", None) == "rotary":
            why = "its positions are rotary, applied to q and k (attn.hook_rot_q, hook_rot_k)"
        elif hasattr(self, "stems"):
            why = "its learned positions are each stem's: model.stems[modality].pos_embed.W_pos"
        elif "hook_pos_embed" in getattr(self, "hook_dict", {}):
            why = (
                "the positions it adds to the tokens are computed, not one learned table; "
                "they are the activation cache['hook_pos_embed']"
            )
        else:
            why = "it adds no positional embedding"
        raise UnsupportedFeatureError(f"{name} has no W_pos (pos_embed.W_pos): {why}")

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
        what = f"{type(self).__name__}.unembed_head"
        self._unembed_head = check_choice(head, self.unembed_heads, what)

    def _unembedding(self) -> nn.Module:
        """The head module (``W_U``, ``b_U``) of ``unembed_head``; a model whose classifier is
        no TransformerLens unembedding raises `UnsupportedFeatureError` saying why."""
        raise UnsupportedFeatureError(
            f"{type(self).__name__} has no unembedding: its classifier does not read ln_final"
        )

    def _unembedding_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W_U, b_U)`` of the `_unembedding` module, refused where it lacks either."""
        head = self._unembedding()
        W_U, b_U = getattr(head, "W_U", None), getattr(head, "b_U", None)
        if not isinstance(W_U, torch.Tensor) or not isinstance(b_U, torch.Tensor):
            raise UnsupportedFeatureError(
                f"{type(self).__name__}'s unembedding ({type(head).__name__}) holds no W_U, b_U"
            )
        return W_U, b_U

    @property
    def unembed_positions(self) -> list[int]:
        """Token positions whose final stream the ``unembed_head`` reads: one (a CLS token)
        or several, averaged after ``ln_final``."""
        self._unembedding()  # raises, naming why, where the model has no unembedding
        raise UnsupportedFeatureError(f"{type(self).__name__} must define unembed_positions")

    @property
    def unembed(self) -> nn.Module:
        """The ``unembed_head`` module: ``unembed.W_U [d_model, n_classes]``, ``unembed.b_U``."""
        return self._unembedding()

    @property
    def W_U(self) -> Float[torch.Tensor, "d_model n_classes"]:
        """The ``unembed_head``'s unembedding (one column per class), as TransformerLens's
        ``W_U``: logits = ``ln_final(resid)[unembed_positions]`` (averaged) ``@ W_U + b_U``."""
        return self._unembedding_weights()[0]

    @property
    def b_U(self) -> Float[torch.Tensor, " n_classes"]:
        """The ``unembed_head``'s bias."""
        return self._unembedding_weights()[1]

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
        W_U = self._unembedding_weights()[0]  # not self.W_U: some models' classifier
        ids = _class_ids(tokens, W_U.shape[1])
        if ids.numel() > 1:
            return rearrange(W_U[:, ids.to(W_U.device)], "d_model ... -> ... d_model")
        return W_U[:, int(ids.reshape(-1)[0])]

    # ------------------------------------------------------------------ the readout map
    readout_heads: tuple[str, ...] = ("logits",)  # return types `readout_map` can map

    def _readout_refusal(self) -> str | None:
        """Why the classifier is no linear map of the final stream (None: it is one, here
        where it is a TransformerLens unembedding). Never raises: ``contract`` asks."""
        try:
            self._unembedding()
        except (UnsupportedFeatureError, ArgumentError) as exc:
            return str(exc)
        return None

    def _check_readout_head(self, head: str) -> None:
        check_choice(head, self.readout_heads, f"{type(self).__name__}'s readout_map head")

    def _empty_readout_map(self) -> Float[torch.Tensor, "pos d_model n_classes"]:
        R = torch.zeros(
            self.layout.n_tokens, self.cfg.d_model, self.cfg.n_classes, dtype=self.cfg.dtype
        )
        return R.to(self.cfg.device)

    def readout_map(
        self, head: str = "logits"
    ) -> tuple[Float[torch.Tensor, "pos d_model n_classes"], Float[torch.Tensor, " n_classes"]]:
        """``(R, b_U)`` with ``logits = sum_p ln_final(resid)[p] @ R[p] + b_U``: the classifier
        ``head`` (a ``return_type``, one of ``readout_heads``) as a linear map of the final
        residual stream, position by position (`LINEAR_READOUT`). Here the unembedding's
        ``W_U / n`` at each of its ``n`` ``unembed_positions``.

        >>> from emg_lens.models import IsoNet
        >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0))
        >>> R, b_U = model.readout_map("avg_logits")
        >>> resid = model(model.example_input(2), return_type=None)
        >>> logits = einsum(model.ln_final(resid), R, "b p d, p d c -> b c") + b_U
        >>> torch.allclose(logits, model.readout(resid, "avg_logits"), atol=1e-6)
        True
        """
        self._check_readout_head(head)
        why = self._readout_refusal()
        if why is not None:
            raise UnsupportedFeatureError(why)
        R = self._empty_readout_map()
        W_U, b_U = self._unembedding_weights()
        positions = self.unembed_positions
        R[positions] = W_U / len(positions)
        return R.detach(), b_U.detach()

    # ------------------------------------------------------------------ tokens without data
    @torch.no_grad()
    def data_free_tokens(self, writes: bool = False) -> Float[torch.Tensor, "pos d_model"]:
        """Every token's data-free embedding: the part of the stream entering ``blocks.0``
        that does not depend on the signal (what the weight circuits of
        `emg_lens.inspect.circuits` read). ``writes=True`` asks for an identity that survives
        without RoPE (what an OV circuit reads). Refused, saying why, where there is none."""
        raise UnsupportedFeatureError(NO_IDENTITY.format(name=type(self).__name__))

    @torch.no_grad()
    def _zero_window_tokens(self, writes: bool) -> Float[torch.Tensor, "pos d_model"]:
        """The tokens of a window of zeros, for a tokenizer that tells channels apart (a
        learned position or bias per channel); refused by name when it does not, or (for
        ``writes``) when post-LN blocks make a head's writes reach the logits through the
        data's scale."""
        name = type(self).__name__
        if writes and self.cfg.norm_position == "post":
            raise UnsupportedFeatureError(
                f"{name} has post-LN blocks (norm_first=False): a head's writes reach the logits "
                "through the data's scale, no OV table. Use direct attribution, or patching"
            )
        dtype, device = self.cfg.dtype, self.cfg.device
        tokens = self.embed_signals(torch.zeros(1, *self.input_shape, dtype=dtype, device=device))
        tokens = tokens[0]
        layout = self.layout  # a channel's tokens (its patches) averaged; CLS on its own
        labels = [CLS if g == CLS else c for g, c in zip(layout.group, layout.channel)]
        names = list(dict.fromkeys(labels))
        member = torch.tensor([[lab == n for n in names] for lab in labels], dtype=torch.float64)
        member = (member / member.sum(0)).to(tokens)
        channels = einsum(member, tokens, "pos label, pos d -> label d")
        if float((channels - channels[:1]).abs().max()) <= 1e-7 * (1 + float(tokens.abs().max())):
            raise UnsupportedFeatureError(
                f"{name}'s tokenizer ({type(self.embed).__name__}) has no data-free channel "
                "identity (a window of zeros gives every channel one token): use attention_flow"
            )
        return tokens

    def _ln_final_readers(self) -> list[tuple[nn.Parameter, nn.Parameter]]:
        """``(W, b)`` of every linear map applied to (pooled) ``ln_final`` output: what
        `fold_ln_final` rescales; none where the readout is another."""
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
        ln = getattr(self, "ln_final", None)
        if ln is None or not hasattr(ln, "w"):
            return  # no final norm (normalization_type=None), or no residual stream
        readers = self._ln_final_readers()
        if not readers:
            raise UnsupportedFeatureError(f"{type(self).__name__}: no linear map reading ln_final")
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
        params: dict[str, torch.Tensor] = dict(self.named_parameters())
        with contextlib.suppress(UnsupportedFeatureError):
            params |= dict(zip(("unembed.W_U", "unembed.b_U"), self._unembedding_weights()))
        return params
