"""A user's ``torch.nn.TransformerEncoder`` model as a hooked emg_lens encoder.

Most models that EMG papers train are a tokenizer, a ``torch.nn.TransformerEncoder`` and a
classifier. `from_torch_encoder` takes the three apart: the encoder's layers become emg_lens
blocks with the same weights in TransformerLens shapes (``W_Q [n_heads, d_model, d_head]``,
``W_O [n_heads, d_head, d_model]``, ``W_in [d_model, d_mlp]``, ...) and the tokenizer
(``embed``) and classifier (``readout``) stay the user's own modules, inside a
`HookedTorchEncoder`::

    signals [batch, channel, time] -> embed -> hook_embed -> blocks -> ln_final -> readout

What converts: ``norm_first`` True (pre-LN, TransformerLens's form) and False (post-LN; see
`emg_lens.components.block` for where its norms sit among the hooks and what that means for
``decompose_resid``), ``batch_first`` True or False (it changes no weight: the hooked model is
batch-first, and ``embed``/``readout`` are too), relu and gelu (the strings, ``F.relu``,
``F.gelu``, ``nn.ReLU()``, ``nn.GELU()``, ``nn.SiLU()``; another activation is refused by
name), the encoder's final ``norm`` or none, ``bias=False`` (its biases become zero buffers),
and ``layer_norm_eps``. (An ``nn.GELU(approximate="tanh")`` converts to the tanh GELU it
declares, which torch computes in training and with gradients on; torch 2.13's no-grad fast
path for encoder layers computes the exact GELU instead.) Refused with an
`UnsupportedModuleError` naming the module's path: an attention other than
``nn.MultiheadAttention``, one with ``kdim``/``vdim`` other than ``embed_dim``,
``add_bias_kv`` or ``add_zero_attn``, a LayerNorm without weights; layers that disagree with
each other are a `ConversionError`. A tokenizer or readout whose output does not fit the layout is a
`ConversionError`; the conversion then runs the original encoder and the converted blocks on
the tokenizer's output and refuses a result that differs (a layer subclass whose ``forward``
computes something else), and refuses by name a forward hook or pre-hook on the encoder or
any of its submodules and a ``forward`` patched onto one
(`emg_lens.models.converted.conversion.check_faithful`): the conversion reads weights, so it
would drop them. (Hooks on ``embed`` and ``readout`` stay: those modules are kept as they are.)

Saving and loading: the state dict holds the blocks and the user's modules' weights
(``embed.*``, ``head.*``), and ``config.json`` the layout; a checkpoint cannot rebuild the
user's module classes from a config, so `emg_lens.checkpoints.load_checkpoint` takes them:
``load_checkpoint(path, modules={"embed": Tok(), "readout": Head()})`` (modules of the same
architecture; their weights come from the checkpoint). A study loads such checkpoints through
the builder its study file names (``modules = "models.py:build_modules"``; ``--modules`` on the
command line), run only with consent (`emg_lens.studies.code`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import nn
from transformer_lens.hook_points import HookPoint

from emg_lens.config import EncoderConfig
from emg_lens.errors import (
    ArgumentError,
    ConversionError,
    InputShapeError,
    LayoutError,
    UnsupportedModuleError,
    UnsupportedReadoutError,
    describe,
)
from emg_lens.layout import CLS, TokenLayout
from emg_lens.models.base import EdgeMasks, HookedEncoder
from emg_lens.models.converted.conversion import (
    StateBuilder,
    activation_name,
    check_faithful,
    heads_in,
    heads_out,
)

__all__ = [
    "HookedTorchEncoder",
    "find_linear_readout",
    "from_torch_encoder",
    "torch_attention_mask",
]

RETURN_TYPES = ("logits", "latent")


def _modalities(layout: TokenLayout) -> dict[str, int]:
    """The channel count of each signal group, checked: a group's channels are consecutive
    ids following the previous group's, so ``[batch, channel, time]`` rows are in
    `EncoderConfig.modalities` order."""
    counts: dict[str, int] = {}
    first = 0
    for group in layout.modalities:
        ids = sorted({c for g, c in zip(layout.group, layout.channel) if g == group and c >= 0})
        if ids and ids != list(range(first, first + len(ids))):
            raise LayoutError(
                f"layout group {group!r} embeds channels {ids}; the converter needs each group's "
                f"channels to be consecutive input rows after the previous group's (here "
                f"{first}..{first + len(ids) - 1}), as TokenLayout.channel_tokens numbers them"
            )
        counts[group] = len(ids) or 1
        first += len(ids)
    if not counts:
        raise LayoutError(f"the layout has no signal tokens, only {layout.groups}")
    return counts


class HookedTorchEncoder(HookedEncoder):
    """A user's tokenizer, a converted ``nn.TransformerEncoder`` and the user's readout (see
    the module docstring); built by `from_torch_encoder`.

    Hooks beyond the shared stack: ``hook_embed`` (the tokenizer's output, the stream
    entering ``blocks.0``), and whatever hook points the user's modules hold. ``return_type``:
    ``"logits"`` (the readout's output), ``"latent"`` (the stream after ``ln_final``), None
    (before it). The readout is the user's module, so there is no TransformerLens unembedding
    (``W_U``).

    A *linear readout* (`from_torch_encoder` detects it, or takes it declared): a readout
    that is one ``nn.Linear(d_model, n_classes)`` of one token or of the tokens' mean, after
    an optional ``nn.LayerNorm`` (which becomes ``ln_final``), is TransformerLens's
    unembedding: ``W_U``, ``b_U``, ``unembed_positions`` (and `read_positions` for one
    token), so direct attribution, the OV circuit and the exact last-layer screen read it.

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
        linear_readout: dict[str, Any] | None = None,
    ):
        super().__init__(cfg)
        for name, module in (("embed", embed), ("readout", readout)):
            if not isinstance(module, nn.Module):
                raise ArgumentError(
                    f"{name} must be a torch.nn.Module (signals -> tokens for embed, tokens -> "
                    f"logits for readout), got {describe(module)}"
                )
        self._layout = layout if isinstance(layout, TokenLayout) else TokenLayout.from_dict(layout)
        self._layout.check_matches(cfg.n_ctx, "EncoderConfig.n_ctx")
        self.embed = embed
        self.head = readout
        self._linear_readout = _check_form(linear_readout, self._layout, cfg)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        self._finish_init()

    @property
    def layout(self) -> TokenLayout:
        return self._layout

    @property
    def init_kwargs(self) -> dict[str, Any]:
        """The layout (JSON) and the linear readout's form, when there is one; the user's
        modules are not config (see the module docstring)."""
        form = self._linear_readout
        return {"layout": self._layout.to_dict()} | (
            {} if form is None else {"linear_readout": dict(form)}
        )

    def init_weights(self) -> None:
        """The blocks' and ``ln_final``'s weights as `HookedEncoder.init_weights` draws them;
        the user's modules keep theirs."""
        for module in (self.blocks, self.ln_final):
            for name, param in module.named_parameters():
                leaf = name.rsplit(".", 1)[-1]
                if leaf.startswith("W_"):
                    nn.init.normal_(param, std=self.cfg.init_range)
                elif leaf.startswith("b_") or leaf == "b":
                    nn.init.zeros_(param)
                elif leaf == "w":
                    nn.init.ones_(param)

    def embed_signals(
        self, signals: Float[torch.Tensor, "batch channel time"]
    ) -> Float[torch.Tensor, "batch pos d_model"]:
        """The user's tokenizer, its output checked against the layout."""
        tokens = self.embed(signals)
        expected = (signals.shape[0], self.layout.n_tokens, self.cfg.d_model)
        if not isinstance(tokens, torch.Tensor) or tuple(tokens.shape) != expected:
            raise InputShapeError(
                f"embed ({type(self.embed).__name__}) returned {describe(tokens)}; the converted "
                f"encoder needs tokens [batch, pos, d_model] = {list(expected)}"
            )
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

        They are cut where ``edge_masks`` are, on top of them, before ``hook_attn_scores``
        (which shows -inf there). A padded token's own row is computed as torch's Python path
        computes it (it attends to the window's other tokens); torch's fast path with nested
        tensors returns zeros at padded positions instead. A query with every key masked (a
        window of padding only) attends to nothing: a zero row, where torch gives NaN. A float
        mask of other values (an additive bias) is an `ArgumentError`.

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
        if return_type not in RETURN_TYPES:
            raise ArgumentError(
                f"{type(self).__name__} return_type must be one of {RETURN_TYPES} or None, "
                f"got {return_type!r}"
            )
        latent = self.ln_final(resid)
        if return_type == "latent":
            return latent
        form = self._linear_readout
        if form is None or form["norm"] is None:
            return self.head(latent)
        # The readout's norm is ln_final (copied at conversion): its Linear reads the pool.
        pooled = latent.mean(1) if form["pool"] == "mean" else latent[:, form["pool"]]
        return self._readout_linear()(pooled)

    # ------------------------------------------------------------------ TransformerLens
    unembed_heads = ("logits",)

    def _unembedding(self) -> Any:
        if self._linear_readout is None:
            raise UnsupportedReadoutError(
                f"{type(self).__name__} has no unembedding: its readout "
                f"({type(self.head).__name__}) is the user's code, not one linear map of a "
                "token or of the tokens' mean (from_torch_encoder(linear_readout=...) detects "
                "or declares one)"
                + (f": {self.linear_readout_note}" if self.linear_readout_note else "")
            )
        return _LinearUnembedding(self._readout_linear())

    def _readout_linear(self) -> nn.Linear:
        """The readout's ``nn.Linear`` that the linear readout's form names."""
        path = self._linear_readout["linear"]
        try:
            linear = self.head.get_submodule(path)
        except AttributeError:
            linear = None
        if type(linear) is not nn.Linear:
            raise ArgumentError(
                f"the linear readout names readout.{path} as its nn.Linear, but the readout "
                f"({type(self.head).__name__}) holds {describe(linear)} there: load the "
                "checkpoint with the modules it was saved with"
            )
        return linear

    @property
    def unembed_positions(self) -> list[int]:
        self._unembedding()
        pool = self._linear_readout["pool"]
        return list(range(self.layout.n_tokens)) if pool == "mean" else [pool]

    def read_positions(self, return_type: str) -> list[int] | None:
        """The one token a linear readout reads (None: all of them, or not known)."""
        form = self._linear_readout
        if return_type == "logits" and form is not None and form["pool"] != "mean":
            return [form["pool"]]
        return None

    def data_free_tokens(self, writes: bool = False) -> Float[torch.Tensor, "pos d_model"]:
        """The user's tokenizer's output for a window of zeros (a learned position per
        channel, say), where it tells channels apart (see `_zero_window_tokens`)."""
        return self._zero_window_tokens(writes)


class _LinearUnembedding:
    """The user's readout ``nn.Linear`` as TransformerLens's unembedding (a view: its
    weights stay the module's)."""

    def __init__(self, linear: nn.Linear):
        self.linear = linear

    @property
    def W_U(self) -> Float[torch.Tensor, "d_model n_classes"]:
        return self.linear.weight.T

    @property
    def b_U(self) -> Float[torch.Tensor, " n_classes"]:
        bias = self.linear.bias
        return torch.zeros_like(self.linear.weight[:, 0]) if bias is None else bias


# ------------------------------------------------------------------------------ linear readouts
READOUT_POOLS = ("detect", "mean", "none")
"""What ``from_torch_encoder(linear_readout=)`` takes besides a token position (an int)."""


def _readout_parts(readout: nn.Module, d_model: int, n_classes: int):
    """``(linear path, linear, norm path, norm)`` of a readout made of one
    ``nn.Linear(d_model, n_classes)`` and at most one ``nn.LayerNorm(d_model)`` (no other
    parameter), or a string saying why it is not."""
    linears = [(n, m) for n, m in readout.named_modules() if type(m) is nn.Linear]
    norms = [(n, m) for n, m in readout.named_modules() if type(m) is nn.LayerNorm]
    owned = {id(p) for _, m in linears + norms for p in m.parameters()}
    others = [n for n, p in readout.named_parameters() if id(p) not in owned]
    if len(linears) != 1 or len(norms) > 1 or others:
        return (
            f"the readout holds {len(linears)} nn.Linear, {len(norms)} nn.LayerNorm"
            + (f" and other parameters ({others[:3]})" if others else "")
            + "; a linear readout is one nn.Linear after at most one nn.LayerNorm"
        )
    (linear_path, linear), (norm_path, norm) = linears[0], (norms or [(None, None)])[0]
    if (linear.in_features, linear.out_features) != (d_model, n_classes):
        return (
            f"its nn.Linear maps {linear.in_features} features to {linear.out_features}, not "
            f"one token's d_model={d_model} to the {n_classes} classes (a flattening readout "
            "reads every token with weights of its own)"
        )
    if norm is not None and (tuple(norm.normalized_shape) != (d_model,) or norm.weight is None):
        return f"its nn.LayerNorm is not a LayerNorm over d_model={d_model} with weights"
    return linear_path, linear, norm_path, norm


def find_linear_readout(
    readout: nn.Module, layout: TokenLayout, cfg: EncoderConfig, declared: Any = "detect"
) -> tuple[dict[str, Any] | None, str | None]:
    """``(form, None)`` when ``readout`` computes one ``nn.Linear`` of one token or of the
    tokens' mean (after at most one ``nn.LayerNorm``), checked on a seeded probe of tokens
    against the module itself; ``(None, why)`` otherwise. ``declared``: ``"detect"`` (try
    the mean and every position), ``"mean"``, a position (an int: only that one; a
    mismatch is a `ConversionError`) or ``"none"``.

    >>> layout = TokenLayout.channel_tokens({"emg": 3}, cls_token=False)
    >>> cfg = EncoderConfig(d_model=8, n_heads=2, d_head=4, n_layers=1, d_mlp=8,
    ...     tokenization="custom", n_ctx=3, modalities={"emg": 3}, n_samples=4, n_classes=2,
    ...     positional_embedding_type="none")
    >>> class Token1(nn.Module):  # a norm and a linear map of token 1
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.norm, self.linear = nn.LayerNorm(8), nn.Linear(8, 2)
    ...     def forward(self, tokens):
    ...         return self.linear(self.norm(tokens)[:, 1])
    >>> find_linear_readout(Token1(), layout, cfg)[0]
    {'pool': 1, 'linear': 'linear', 'norm': 'norm'}
    >>> find_linear_readout(nn.Sequential(nn.Flatten(), nn.Linear(24, 2)), layout, cfg)[1][:40]
    'its nn.Linear maps 24 features to 2, not'
    """
    if declared == "none":
        return None, "declared none (from_torch_encoder(linear_readout='none'))"
    parts = _readout_parts(readout, cfg.d_model, cfg.n_classes)
    if isinstance(parts, str):
        return _declared_or(declared, parts)
    linear_path, linear, norm_path, norm = parts
    gen = torch.Generator().manual_seed(0)
    n = layout.n_tokens
    tokens = 0.5 + 2 * torch.randn(3, n, cfg.d_model, generator=gen, dtype=cfg.dtype)
    was_training = readout.training
    readout.eval()
    try:
        with torch.no_grad():
            out = readout(tokens)
            per_token = linear(tokens if norm is None else norm(tokens))  # [batch, pos, class]
    finally:
        readout.train(was_training)
    pools = ["mean", *range(n)] if declared == "detect" else [declared]
    tol = 1e-5 * (1 + float(out.abs().max()))
    for pool in pools:
        if pool != "mean" and not 0 <= pool < n:
            raise ArgumentError(f"linear_readout={pool} is no token position of the {n} tokens")
        expected = per_token.mean(1) if pool == "mean" else per_token[:, pool]
        if out.shape == expected.shape and float((out - expected).abs().max()) <= tol:
            return {"pool": pool, "linear": linear_path, "norm": norm_path}, None
    where = "the tokens' mean or any token" if declared == "detect" else f"{declared!r}"
    return _declared_or(
        declared,
        f"its output is not its nn.Linear{'' if norm is None else ' after its LayerNorm'} of "
        f"{where} (checked on a probe; a norm after the pooling is no linear map of tokens)",
    )


def _declared_or(declared: Any, why: str) -> tuple[None, str]:
    """No linear readout, and why; a declared one that is not there is an error."""
    if declared != "detect":
        raise ConversionError(f"linear_readout={declared!r} was declared, but {why}")
    return None, why


def _check_form(form: Any, layout: TokenLayout, cfg: EncoderConfig) -> dict[str, Any] | None:
    """A linear-readout form (`find_linear_readout`) read back from a checkpoint: its pool a
    position or the mean, its paths strings (they name the readout's modules, which
    `HookedTorchEncoder` checks where it reads them: a config's stand-in modules, as
    ``study check`` builds, have none)."""
    if form is None:
        return None
    ok = isinstance(form, Mapping) and set(form) == {"pool", "linear", "norm"}
    pool = form.get("pool") if ok else None
    ok = ok and (pool == "mean" or (isinstance(pool, int) and 0 <= pool < layout.n_tokens))
    ok = ok and isinstance(form["linear"], str)
    ok = ok and (form["norm"] is None or isinstance(form["norm"], str))
    if not ok:
        raise ArgumentError(
            f"linear_readout must be {{'pool': a token position or 'mean', 'linear': the path "
            f"of the readout's nn.Linear, 'norm': the path of its nn.LayerNorm or None}} (what "
            f"from_torch_encoder finds), got {describe(form)}"
        )
    if form["norm"] is not None and not cfg.final_norm:
        raise ArgumentError(
            "linear_readout names the readout's norm, which the conversion copies into "
            "ln_final, but this config has no final norm (final_norm=False)"
        )
    return dict(form)


def _blocked(value: Any, name: str, accepted: str) -> torch.Tensor:
    """A torch mask as bool, True where attention is blocked: a bool mask as it is, a float
    one True at its -inf entries (any value other than 0 and -inf is refused)."""
    if not isinstance(value, torch.Tensor):
        raise ArgumentError(f"{name} must be a tensor {accepted}, got {describe(value)}")
    if value.dtype == torch.bool:
        return value
    if value.is_floating_point():
        blocked = torch.isneginf(value)
        other = ~(blocked | (value == 0))
        if bool(other.any()):
            raise ArgumentError(
                f"{name} holds {int(other.sum())} values other than 0 and -inf (first "
                f"{float(value[other][0])!r}); accepted: bool (True: not attended) or float "
                "0 / -inf; an additive bias of other values is not supported"
            )
        return blocked
    raise ArgumentError(f"{name} is {describe(value)}; accepted: bool or float {accepted}")


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
        shapes = f"[{n}, {n}] or [batch * n_heads = {batch * n_heads}, {n}, {n}]"
        blocked = _blocked(mask, "mask", shapes)
        if tuple(blocked.shape) == (n, n):
            blocked = blocked[None, None]
        elif tuple(blocked.shape) == (batch * n_heads, n, n):
            blocked = blocked.reshape(batch, n_heads, n, n)
        else:
            raise ArgumentError(
                f"mask has shape {list(blocked.shape)}; accepted: {shapes} (the layout's "
                f"{n} tokens), as nn.TransformerEncoder takes it"
            )
        out = out.to(blocked.device) | blocked
    elif is_causal:
        out = out | torch.ones(n, n, dtype=torch.bool).triu(1)
    if src_key_padding_mask is not None:
        accepted = f"[batch={batch}, {n}] (True at a window's padded tokens)"
        padding = _blocked(src_key_padding_mask, "src_key_padding_mask", accepted)
        if tuple(padding.shape) != (batch, n):
            raise ArgumentError(
                f"src_key_padding_mask has shape {list(padding.shape)}; accepted: {accepted}"
            )
        out = out.to(padding.device) | padding[:, None, None, :]
    return out


# ---------------------------------------------------------------------------------- converting
def _layers(encoder: Any) -> list[tuple[str, nn.Module]]:
    if isinstance(encoder, nn.TransformerEncoder):
        return [(f"layers.{i}", layer) for i, layer in enumerate(encoder.layers)]
    if isinstance(encoder, (list, tuple, nn.ModuleList)) and encoder:
        return [(f"[{i}]", layer) for i, layer in enumerate(encoder)]
    raise ArgumentError(
        "encoder must be a torch.nn.TransformerEncoder or a non-empty list of "
        f"torch.nn.TransformerEncoderLayer, got {describe(encoder)}"
    )


def _layer_norm(norm: Any, path: str) -> tuple[float, bool]:
    """``(eps, has_bias)`` of a LayerNorm the converter can read, or refused by name."""
    if type(norm) is not nn.LayerNorm:
        raise UnsupportedModuleError(
            f"{path} is a {type(norm).__name__}; supported: torch.nn.LayerNorm over d_model",
            path=path,
        )
    if norm.weight is None:
        raise UnsupportedModuleError(
            f"{path} is a LayerNorm without weights (elementwise_affine=False); supported: "
            "LayerNorms with a weight (and a bias or bias=False)",
            path=path,
        )
    return float(norm.eps), norm.bias is not None


def _read_layer(path: str, layer: nn.Module) -> dict[str, Any]:
    """The architecture of one layer (what must agree across layers), checked."""
    if not isinstance(layer, nn.TransformerEncoderLayer):
        raise UnsupportedModuleError(
            f"{path} is a {type(layer).__name__}; supported: torch.nn.TransformerEncoderLayer "
            "(for braindecode's models: emg_lens.models.from_braindecode)",
            path=path,
        )
    attn = getattr(layer, "self_attn", None)
    where = f"{path}.self_attn"
    if type(attn) is not nn.MultiheadAttention:
        raise UnsupportedModuleError(
            f"{where} is a {type(attn).__name__}; supported: torch.nn.MultiheadAttention",
            path=where,
        )
    if not attn._qkv_same_embed_dim:
        raise UnsupportedModuleError(
            f"{where} has kdim={attn.kdim}, vdim={attn.vdim} != embed_dim={attn.embed_dim}: "
            "keys and values from another space are cross-attention, which emg_lens blocks do "
            "not compute; supported: self-attention with kdim = vdim = embed_dim",
            path=where,
        )
    if attn.bias_k is not None or attn.add_zero_attn:
        raise UnsupportedModuleError(
            f"{where} has add_bias_kv or add_zero_attn, which add key positions that no token "
            "holds; supported: nn.MultiheadAttention without them",
            path=where,
        )
    eps1, bias1 = _layer_norm(layer.norm1, f"{path}.norm1")
    eps2, bias2 = _layer_norm(layer.norm2, f"{path}.norm2")
    has_bias = attn.in_proj_bias is not None
    if eps1 != eps2 or not bias1 == bias2 == has_bias == (layer.linear1.bias is not None):
        raise ConversionError(
            f"{path}: its norms (eps {eps1}, {eps2}) and linear layers disagree on eps or bias; "
            "the converter reads layers built with one layer_norm_eps and one bias setting"
        )
    return {
        "d_model": attn.embed_dim,
        "n_heads": attn.num_heads,
        "d_mlp": layer.linear1.out_features,
        "act_fn": activation_name(layer.activation, f"{path}.activation"),
        "norm_position": "pre" if layer.norm_first else "post",
        "eps": eps1,
        "bias": has_bias,
    }


def _layer_state(i: int, path: str, layer: nn.TransformerEncoderLayer, n_heads: int):
    """``(emg_lens name, tensor, source name)`` of every weight of one layer."""
    attn = layer.self_attn
    W_Q, W_K, W_V = attn.in_proj_weight.detach().chunk(3, dim=0)
    block, src = f"blocks.{i}", f"{path}"
    yield f"{block}.attn.W_Q", heads_in(W_Q, n_heads), f"{src}.self_attn.in_proj_weight[q]"
    yield f"{block}.attn.W_K", heads_in(W_K, n_heads), f"{src}.self_attn.in_proj_weight[k]"
    yield f"{block}.attn.W_V", heads_in(W_V, n_heads), f"{src}.self_attn.in_proj_weight[v]"
    W_O = heads_out(attn.out_proj.weight.detach(), n_heads)
    yield f"{block}.attn.W_O", W_O, f"{src}.self_attn.out_proj.weight"
    yield f"{block}.mlp.W_in", layer.linear1.weight.detach().T, f"{src}.linear1.weight"
    yield f"{block}.mlp.W_out", layer.linear2.weight.detach().T, f"{src}.linear2.weight"
    yield f"{block}.ln1.w", layer.norm1.weight.detach(), f"{src}.norm1.weight"
    yield f"{block}.ln2.w", layer.norm2.weight.detach(), f"{src}.norm2.weight"
    if attn.in_proj_bias is None:
        return
    for name, bias in zip("QKV", attn.in_proj_bias.detach().chunk(3)):
        yield f"{block}.attn.b_{name}", bias.view(n_heads, -1), f"{src}.self_attn.in_proj_bias"
    yield f"{block}.attn.b_O", attn.out_proj.bias.detach(), f"{src}.self_attn.out_proj.bias"
    yield f"{block}.mlp.b_in", layer.linear1.bias.detach(), f"{src}.linear1.bias"
    yield f"{block}.mlp.b_out", layer.linear2.bias.detach(), f"{src}.linear2.bias"
    yield f"{block}.ln1.b", layer.norm1.bias.detach(), f"{src}.norm1.bias"
    yield f"{block}.ln2.b", layer.norm2.bias.detach(), f"{src}.norm2.bias"


def _dtype(modules: Sequence[nn.Module]) -> torch.dtype:
    dtypes = {p.dtype for m in modules for p in m.parameters() if p.is_floating_point()}
    if len(dtypes) != 1 or next(iter(dtypes)) not in (torch.float32, torch.float64):
        raise ConversionError(
            f"the encoder, embed and readout must share one dtype, float32 or float64; they "
            f"hold {sorted(str(d) for d in dtypes)}: convert them with .float() or .double()"
        )
    return dtypes.pop()


def from_torch_encoder(
    encoder: nn.TransformerEncoder | Sequence[nn.TransformerEncoderLayer],
    *,
    embed: nn.Module,
    readout: nn.Module,
    layout: TokenLayout,
    n_samples: int,
    seed: int | None = 0,
    linear_readout: int | str = "detect",
) -> HookedTorchEncoder:
    """A user's ``nn.TransformerEncoder`` (or list of ``nn.TransformerEncoderLayer``) with
    their tokenizer ``embed`` and classifier ``readout`` as a `HookedTorchEncoder` computing
    the same function, in eval mode (see the module docstring for what converts).

    Args:
        encoder: the transformer: its layers' weights are copied into emg_lens blocks.
        embed: signals ``[batch, channel, time]`` -> tokens ``[batch, pos, d_model]`` (batch
            first, whatever the encoder's ``batch_first``); kept as the model's ``embed``.
        readout: the encoder's output ``[batch, pos, d_model]`` -> logits ``[batch,
            n_classes]``; kept as the model's ``head``.
        layout: what each of the ``pos`` tokens is (`TokenLayout`; channel ids number the
            input's rows, group by group); its signal groups become
            `EncoderConfig.modalities`.
        n_samples: samples per channel in one input window (the ``time`` of the signals).
        seed: seeds the example batch of the conversion's own parity check.
        linear_readout: is ``readout`` one ``nn.Linear(d_model, n_classes)`` of one token or
            of the tokens' mean, after at most one ``nn.LayerNorm``? ``"detect"`` (the
            default) tries the mean and every position on a probe; a position (an int) or
            ``"mean"`` declares it (a readout that does not compute it is a
            `ConversionError`); ``"none"``: read the readout as a whole. Found, it becomes the
            model's unembedding (``W_U``: direct attribution, OV circuits and the exact
            last-layer screen read it), and its LayerNorm, on an encoder without a final
            norm, becomes ``ln_final`` (a copy). `find_linear_readout` says why one is not.

    A mask that your own code passes to the encoder (``encoder(tokens, mask=causal)``,
    ``src_key_padding_mask=...``) is no part of the modules, so the conversion cannot see it:
    give it to the converted model, ``model(x, mask=causal, src_key_padding_mask=padding)``,
    with ``nn.TransformerEncoder``'s meaning (see `HookedTorchEncoder.forward`).

    >>> d, layout = 16, TokenLayout.channel_tokens({"emg": 4}, cls_token=False)
    >>> layer = nn.TransformerEncoderLayer(d, nhead=2, dim_feedforward=32, batch_first=True)
    >>> encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
    >>> embed = nn.Linear(20, d)  # one token per channel from its 20 samples
    >>> readout = nn.Sequential(nn.Flatten(), nn.Linear(4 * d, 3))
    >>> model = from_torch_encoder(encoder, embed=embed, readout=readout, layout=layout,
    ...                            n_samples=20)
    >>> model.W_Q.shape, model.blocks[0].mlp.W_in.shape
    (torch.Size([2, 2, 16, 8]), torch.Size([16, 32]))
    >>> x = torch.randn(5, 4, 20)
    >>> encoder.eval(), embed.eval(), readout.eval()  # doctest: +ELLIPSIS
    (...)
    >>> bool((model(x) - readout(encoder(embed(x)))).abs().max() < 1e-5)
    True
    """
    layers = _layers(encoder)
    if not isinstance(layout, TokenLayout):
        raise ArgumentError(f"layout must be a TokenLayout, got {describe(layout)}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples <= 0:
        raise ArgumentError(
            f"n_samples must be a positive int (samples per window), got {n_samples!r}"
        )
    archs = [_read_layer(path, layer) for path, layer in layers]
    for (path, _), arch in zip(layers[1:], archs[1:]):
        diff = {k: (archs[0][k], v) for k, v in arch.items() if archs[0][k] != v}
        if diff:
            raise ConversionError(
                f"{path} differs from {layers[0][0]} in {diff} (first layer, this layer); "
                "emg_lens blocks share one architecture"
            )
    arch = archs[0]
    final = encoder.norm if isinstance(encoder, nn.TransformerEncoder) else None
    final_bias = arch["bias"]
    if final is not None:
        eps, final_bias = _layer_norm(final, "norm")
        if eps != arch["eps"]:
            raise ConversionError(
                f"norm (the encoder's final LayerNorm) has eps={eps} but its layers have "
                f"layer_norm_eps={arch['eps']}; emg_lens's ln_final shares EncoderConfig.eps"
            )
    if arch["d_model"] % arch["n_heads"]:
        raise ConversionError(
            f"d_model={arch['d_model']} is not a multiple of nhead={arch['n_heads']}"
        )
    modules = [layer for _, layer in layers] + [embed, readout]
    zero = [] if arch["bias"] else ["b_Q", "b_K", "b_V", "b_O", "b_in", "b_out", "ln1.b", "ln2.b"]
    if final is not None and not final_bias:
        zero.append("ln_final.b")
    modalities = _modalities(layout)
    cfg = EncoderConfig(
        d_model=arch["d_model"],
        d_head=arch["d_model"] // arch["n_heads"],
        n_heads=arch["n_heads"],
        n_layers=len(layers),
        d_mlp=arch["d_mlp"],
        act_fn=arch["act_fn"],
        eps=arch["eps"],
        norm_position=arch["norm_position"],
        final_norm=final is not None,
        zero_biases=zero,
        tokenization="custom",
        n_ctx=layout.n_tokens,
        modalities=modalities,
        n_samples=n_samples,
        use_cls_token=CLS in layout.group,
        n_classes=1,  # replaced below by what the readout returns
        dtype=_dtype(modules),
        positional_embedding_type="none",
    )
    _check_embed(embed, layout, cfg)
    cfg.n_classes = _n_classes(readout, layout, cfg)
    form, why = _readout_form(readout, layout, cfg, linear_readout, final)
    norm = None if form is None or form["norm"] is None else readout.get_submodule(form["norm"])
    if norm is not None:  # the readout's norm is the model's ln_final
        no_bias = [] if norm.bias is not None else ["ln_final.b"]
        cfg = dataclasses.replace(cfg, final_norm=True, zero_biases=[*zero, *no_bias])
    model = HookedTorchEncoder(
        cfg, embed=embed, readout=readout, layout=layout, linear_readout=form
    )
    model.linear_readout_note = why
    state = StateBuilder(model, "from_torch_encoder")
    for i, (path, layer) in enumerate(layers):
        state.put_all(_layer_state(i, path, layer, arch["n_heads"]))
    if final is not None:
        state.put("ln_final.w", final.weight.detach(), "norm.weight")
        if final_bias:
            state.put("ln_final.b", final.bias.detach(), "norm.bias")
    if norm is not None:
        where = f"readout.{form['norm']}"
        state.put("ln_final.w", norm.weight.detach(), f"{where}.weight")
        if norm.bias is not None:
            state.put("ln_final.b", norm.bias.detach(), f"{where}.bias")
    own = {k: v for k, v in model.state_dict().items() if k.startswith(("embed.", "head."))}
    state.load(keep=own)
    model.eval()
    _check_parity(model, encoder, layers, seed)
    return model


def _readout_form(
    readout: nn.Module, layout: TokenLayout, cfg: EncoderConfig, declared: Any, final: Any
) -> tuple[dict[str, Any] | None, str | None]:
    """`find_linear_readout`, and whether its norm can become ``ln_final``: not after the
    encoder's own final norm (two norms in a row are no one norm), and only with the
    layers' eps (``ln_final`` shares `EncoderConfig.eps`)."""
    ok = declared in READOUT_POOLS or (isinstance(declared, int) and not isinstance(declared, bool))
    if not ok:
        raise ArgumentError(
            f"linear_readout must be a token position (an int) or one of {READOUT_POOLS}, got "
            f"{declared!r}"
        )
    form, why = find_linear_readout(readout, layout, cfg, declared)
    if form is None or form["norm"] is None:
        return form, why
    norm = readout.get_submodule(form["norm"])
    if final is not None:
        why = "its LayerNorm comes after the encoder's final norm: two norms are no one ln_final"
    elif float(norm.eps) != cfg.eps:
        why = f"its LayerNorm has eps={norm.eps}, the layers {cfg.eps}: ln_final shares one eps"
    else:
        return form, None
    return _declared_or(declared, why)


def _check_embed(embed: nn.Module, layout: TokenLayout, cfg: EncoderConfig) -> None:
    """The tokenizer's output for one window of zeros must be the layout's tokens."""
    was_training = embed.training
    embed.eval()
    signals = torch.zeros(1, cfg.n_channels, cfg.n_samples, dtype=cfg.dtype)
    try:
        with torch.no_grad():
            tokens = embed(signals)
    except Exception as exc:  # the user's module: say what it was given
        raise ConversionError(
            f"embed ({type(embed).__name__}) failed on signals {list(signals.shape)} (the "
            f"layout's channels, n_samples): {exc!r}"
        ) from exc
    finally:
        embed.train(was_training)
    expected = [1, layout.n_tokens, cfg.d_model]
    if not isinstance(tokens, torch.Tensor) or list(tokens.shape) != expected:
        raise ConversionError(
            f"embed ({type(embed).__name__}) returned {describe(tokens)} for one window; the "
            f"layout has {layout.n_tokens} tokens and the encoder d_model={cfg.d_model}, so it "
            f"must return {expected} (tokens [batch, pos, d_model], batch first)"
        )


def _n_classes(readout: nn.Module, layout: TokenLayout, cfg: EncoderConfig) -> int:
    """The readout's output width, by running it on one batch of zero tokens."""
    was_training = readout.training
    readout.eval()
    try:
        with torch.no_grad():
            out = readout(torch.zeros(1, layout.n_tokens, cfg.d_model, dtype=cfg.dtype))
    except Exception as exc:  # the user's module: say what it was given
        raise ConversionError(
            f"readout ({type(readout).__name__}) failed on tokens [1, {layout.n_tokens}, "
            f"{cfg.d_model}] (the layout's tokens, d_model): {exc!r}"
        ) from exc
    finally:
        readout.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 1:
        raise ConversionError(
            f"readout ({type(readout).__name__}) returned {describe(out)} for one window; it "
            "must return logits [batch, n_classes]"
        )
    return int(out.shape[1])


def _check_parity(model: HookedTorchEncoder, encoder: Any, layers, seed: int | None) -> None:
    """The original encoder and the converted blocks on the tokenizer's output of a seeded
    batch: equal, or the conversion is refused (`check_faithful`: a hook or a patched forward
    on the encoder, a layer that computes something else)."""
    gen = torch.Generator().manual_seed(0 if seed is None else seed)
    x = torch.randn(2, *model.input_shape, generator=gen, dtype=model.cfg.dtype)
    with torch.no_grad():
        tokens = model.embed_signals(x)
    batch_first = layers[0][1].self_attn.batch_first

    def original() -> torch.Tensor:
        # With gradients on, torch runs the layers' Python forward, the function they declare:
        # its no-grad fast path computes the exact GELU even for nn.GELU(approximate="tanh").
        with torch.enable_grad():
            h = tokens if batch_first else tokens.transpose(0, 1)
            if isinstance(encoder, nn.TransformerEncoder):
                h = encoder(h)
            else:
                for _, layer in layers:
                    h = layer(h)
            return (h if batch_first else h.transpose(0, 1)).detach()

    folded = model._linear_readout is not None and model._linear_readout["norm"] is not None

    def converted() -> torch.Tensor:
        with torch.no_grad():
            resid = model(tokens, start_at_layer=0, return_type=None)
            return resid if folded else model.ln_final(resid)  # a folded norm is the readout's

    if isinstance(encoder, nn.TransformerEncoder):
        sources = {"encoder": encoder}
    else:
        sources = {f"encoder{path}": layer for path, layer in layers}
    check_faithful("from_torch_encoder", sources, original, converted)
    if model._linear_readout is not None:  # the readout read as an unembedding: same logits
        what = f"from_torch_encoder (the readout read as {model._linear_readout})"
        with torch.no_grad():
            check_faithful(
                what,
                sources,
                lambda: model.head(original()),
                lambda: model(tokens, start_at_layer=0),
            )
