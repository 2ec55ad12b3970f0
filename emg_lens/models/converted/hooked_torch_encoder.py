"""`HookedTorchEncoder`: a user's tokenizer, a converted ``nn.TransformerEncoder`` and the
user's readout, as `emg_lens.models.converted.torch_encoder.from_torch_encoder` builds it.

A checkpoint cannot rebuild the user's module classes, so `load_checkpoint` takes them:
``load_checkpoint(path, modules={"embed": Tok(), "readout": Head()})``
(docs/guide/bring-your-own-model.md, "Studies and commands on such checkpoints").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from jaxtyping import Float
from torch import nn
from transformer_lens.hook_points import HookPoint

from emg_lens._hints import checked
from emg_lens.components import ConfigInit
from emg_lens.config import EncoderConfig
from emg_lens.errors import (
    ArgumentError,
    InputShapeError,
    UnsupportedFeatureError,
    check_type,
    describe,
)
from emg_lens.layout import TokenLayout
from emg_lens.models.base import EdgeMasks
from emg_lens.models.converted.conversion import ConvertedEncoder
from emg_lens.models.converted.linear_readout import LinearUnembedding, ReadoutForm, check_form
from emg_lens.models.converted.torch_masks import torch_attention_mask


@checked
class HookedTorchEncoder(ConvertedEncoder):
    """A user's tokenizer, a converted ``nn.TransformerEncoder`` and the user's readout (see
    the module docstring); built by `from_torch_encoder`.

    Hooks beyond the shared stack: ``hook_embed`` (the tokenizer's output), and whatever hook
    points the user's modules hold. ``return_type``: ``"logits"`` (the readout's output),
    ``"latent"`` (the stream after ``ln_final``), None (before it). There is no TransformerLens
    unembedding (``W_U``) unless the readout is a *linear readout*
    (`emg_lens.models.converted.linear_readout`).

    Args:
        cfg: an `EncoderConfig` with ``tokenization="custom"`` and ``n_ctx`` = the layout's
            token count.
        embed: signals ``[batch, channel, time]`` -> tokens ``[batch, pos, d_model]``.
        readout: tokens ``[batch, pos, d_model]`` (after ``ln_final``) -> logits.
        layout: what each token is (a `TokenLayout`, or its `TokenLayout.to_dict` form).
        linear_readout: the readout's linear form, as `from_torch_encoder` found it
            (``{"pool": position or "mean", "linear": path, "norm": path or None}``, paths
            inside ``readout``); None: the readout is the user's code, read as a whole.
    """

    tokenization = "custom"
    user_modules = ("embed", "readout")  # what a checkpoint cannot rebuild from config.json
    linear_readout_note: str | None = None  # why the conversion found no linear readout

    def __init__(
        self,
        cfg: EncoderConfig,
        *,
        embed: nn.Module,
        readout: nn.Module,
        layout: TokenLayout | Mapping[str, Any],
        linear_readout: Mapping[str, Any] | None = None,
    ):
        super().__init__(cfg)
        for name, module in (("embed", embed), ("readout", readout)):
            check_type(module, nn.Module, name)
        self._layout = layout if isinstance(layout, TokenLayout) else TokenLayout.from_dict(layout)
        self._layout.check_matches(cfg.n_ctx, "EncoderConfig.n_ctx")
        self.embed = embed
        self.head = readout
        self._linear_readout = check_form(linear_readout, self._layout, cfg)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        self._finish_init()

    @property
    def init_kwargs(self) -> dict[str, Any]:
        """The layout (JSON) and the linear readout's form, when there is one; the user's
        modules are not config (see the module docstring)."""
        form = self._linear_readout
        return {"layout": self._layout.to_dict()} | (
            {} if form is None else {"linear_readout": dict(form)}
        )

    def init_weights(self) -> None:
        """The blocks' and ``ln_final``'s weights, drawn as every model's are (each
        `ConfigInit` module's ``reset_parameters``); the user's modules keep theirs
        (TransformerLens's ``reinitialized`` resets them by their own ``reset_parameters``,
        and refuses, naming them, parameters that none covers)."""
        users = {id(m) for part in (self.embed, self.head) for m in part.modules()}
        for module in self.modules():
            if isinstance(module, ConfigInit) and id(module) not in users:
                module.reset_parameters()

    def embed_signals(
        self, signals: Float[torch.Tensor, "batch channel time"]
    ) -> Float[torch.Tensor, "batch pos d_model"]:
        """The user's tokenizer, its output checked against the layout."""
        tokens = self.embed(signals)
        expected = (signals.shape[0], self.layout.n_tokens, self.cfg.d_model)
        if not isinstance(tokens, torch.Tensor) or tuple(tokens.shape) != expected:
            raise InputShapeError(f"embed must return {list(expected)}, got {describe(tokens)}")
        return self.hook_embed(tokens)

    def forward(
        self,
        signals: Any,
        *,
        mask: torch.Tensor | None = None,
        src_key_padding_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        edge_masks: EdgeMasks | None = None,
        **kwargs: Any,
    ) -> Any:
        """`HookedEncoder.forward`, also taking the masks that ``nn.TransformerEncoder``'s
        forward takes, with its meaning, for what the user's own code passed the encoder
        (which the conversion cannot see):

        - ``mask``: an attention mask ``[pos, pos]`` (or ``[batch * n_heads, pos, pos]``),
          bool (True: the query may not attend to the key) or float (``-inf`` there, 0
          elsewhere, as ``nn.Transformer.generate_square_subsequent_mask`` makes), applied in
          every layer;
        - ``src_key_padding_mask``: ``[batch, pos]``, True (or ``-inf``) at a window's padded
          tokens, which no query attends to;
        - ``is_causal``: with no ``mask``, each token attends to itself and earlier tokens
          (torch needs the mask as well and reads the flag as a hint; here the mask wins).

        They are cut where ``edge_masks`` are, before ``hook_attn_scores``. A padded token's
        own row is computed as torch's Python path computes it; a query with every key masked
        attends to nothing (a zero row, where torch gives NaN). A float mask of other values
        (an additive bias) is an `ArgumentError`.

        >>> from emg_lens.models import from_torch_encoder
        >>> layer = nn.TransformerEncoderLayer(16, nhead=2, batch_first=True).eval()
        >>> embed, readout = nn.Linear(20, 16), nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
        >>> model = from_torch_encoder([layer], embed=embed, readout=readout, n_samples=20,
        ...     layout=TokenLayout.channel_tokens({"emg": 4}, cls_token=False))
        >>> x, causal = torch.randn(2, 4, 20), nn.Transformer.generate_square_subsequent_mask(4)
        >>> with torch.no_grad():
        ...     expected = readout(layer(embed(x), src_mask=causal, is_causal=True))
        >>> bool((model(x, mask=causal) - expected).abs().max() < 1e-5)
        True
        """
        if mask is None and src_key_padding_mask is None and not is_causal:
            return super().forward(signals, edge_masks=edge_masks, **kwargs)
        if kwargs.get("start_at_layer") is None:
            signals = self.to_tokens(signals)
        else:
            signals = self._check_resid(signals)
        batch, n = signals.shape[0], self.layout.n_tokens
        masked = torch_attention_mask(
            mask,
            src_key_padding_mask,
            is_causal,
            batch=batch,
            n_heads=self.cfg.n_heads,
            n_tokens=n,
        ).to(self.param_device_dtype()[0])
        edges = self._check_edge_masks(edge_masks, batch=batch)
        layers = range(self.cfg.n_layers)
        merged = {i: masked | edges[i] if i in edges else masked for i in layers}
        return super().forward(signals, edge_masks=merged, **kwargs)

    def readout(self, resid: Float[torch.Tensor, "batch pos d_model"], return_type: str) -> Any:
        form = self._linear_readout
        if form is None or form["norm"] is None or return_type == "latent":
            return super().readout(resid, return_type)
        self._check_return_type(return_type)
        latent = self.ln_final(resid)
        # The readout's norm is ln_final (copied at conversion): its Linear reads the pool.
        pooled = latent.mean(1) if form["pool"] == "mean" else latent[:, form["pool"]]
        return self._readout_linear(form)(pooled)

    unembed_heads = ("logits",)

    def _unembedding(self) -> Any:
        return LinearUnembedding(self._readout_linear(self._form()))

    def _form(self) -> ReadoutForm:
        """The linear readout's form; a readout without one is refused, saying why."""
        if self._linear_readout is None:
            raise UnsupportedFeatureError(
                f"{type(self).__name__} has no unembedding: its readout is no linear map of a "
                f"token or the tokens' mean (from_torch_encoder(linear_readout=...)): "
                f"{self.linear_readout_note or 'none was found or declared'}"
            )
        return self._linear_readout

    def _readout_linear(self, form: ReadoutForm) -> nn.Linear:
        """The readout's ``nn.Linear`` that the linear readout's ``form`` names."""
        path = form["linear"]
        try:
            linear = self.head.get_submodule(path)
        except AttributeError:
            linear = None
        if type(linear) is not nn.Linear:
            raise ArgumentError(
                f"the linear readout names readout.{path} as its nn.Linear, but it holds "
                f"{describe(linear)}: load the checkpoint with the modules it was saved with"
            )
        return linear

    @property
    def unembed_positions(self) -> list[int]:
        self._unembedding()
        pool = self._form()["pool"]
        return [pool] if isinstance(pool, int) else list(range(self.layout.n_tokens))

    def read_positions(self, return_type: str) -> list[int] | None:
        """The one token a linear readout reads (None: all of them, or not known)."""
        pool = None if self._linear_readout is None else self._linear_readout["pool"]
        return [pool] if return_type == "logits" and isinstance(pool, int) else None

    def data_free_tokens(self, writes: bool = False) -> Float[torch.Tensor, "pos d_model"]:
        """The user's tokenizer's output for a window of zeros (a learned position per
        channel, say), where it tells channels apart (see `_zero_window_tokens`)."""
        return self._zero_window_tokens(writes)
