"""A user's ``torch.nn.TransformerEncoder`` model as a hooked emg_lens encoder.

`from_torch_encoder` takes a tokenizer + ``nn.TransformerEncoder`` + classifier apart: the
encoder's layers become emg_lens blocks with the same weights in TransformerLens shapes, and
the tokenizer (``embed``) and classifier (``readout``) stay the user's modules, inside a
`HookedTorchEncoder`::

    signals [batch, channel, time] -> embed -> hook_embed -> blocks -> ln_final -> readout

What converts and what is refused (a `ConversionError` naming the path):
docs/guide/bring-your-own-model.md, "A `torch.nn.TransformerEncoder` model"; the activations:
`emg_lens.models.converted.conversion.activation_name`.

`HookedTorchEncoder`, the mask reading and `find_linear_readout` are importable from here too.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from emg_lens._hints import checked
from emg_lens.config import EncoderConfig
from emg_lens.errors import (
    ArgumentError,
    ConversionError,
    LayoutError,
    check_int,
    check_type,
    describe,
)
from emg_lens.layout import CLS, TokenLayout
from emg_lens.models import key_table as keys
from emg_lens.models.base import eval_mode
from emg_lens.models.converted.conversion import (
    activation_name,
    check_faithful,
    check_self_attention,
    float_dtype,
)
from emg_lens.models.converted.hooked_torch_encoder import HookedTorchEncoder
from emg_lens.models.converted.linear_readout import readout_form


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
    affine = getattr(norm, "weight", None) is not None
    if type(norm) is not nn.LayerNorm or not affine:
        raise ConversionError(
            f"{path} is a {type(norm).__name__}{'' if affine else ' without weights'}; supported:"
            " torch.nn.LayerNorm over d_model with a weight (elementwise_affine=True)",
            path=path,
        )
    return float(norm.eps), norm.bias is not None


def _read_layer(path: str, layer: nn.Module) -> dict[str, Any]:
    """The architecture of one layer (what must agree across layers), checked."""
    if not isinstance(layer, nn.TransformerEncoderLayer):
        raise ConversionError(
            f"{path} is a {type(layer).__name__}; supported: torch.nn.TransformerEncoderLayer "
            "(for braindecode's models: emg_lens.models.from_braindecode)",
            path=path,
        )
    attn = check_self_attention(getattr(layer, "self_attn", None), f"{path}.self_attn")
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


def key_table(n_heads: int, layer: str, final: str | None) -> keys.KeyTable:
    """emg_lens key <-> ``nn.TransformerEncoderLayer`` key (`KeyTable`); ``layer``: the
    layers' key template (``layers.{l}`` in an ``nn.TransformerEncoder``, ``[{l}]`` in a
    list), ``final``: the LayerNorm that becomes ``ln_final`` (the encoder's ``norm``, or the
    readout's), if any."""
    attn = "blocks.{l}.attn"
    return keys.KeyTable(
        [
            *keys.qkv_rows(attn, f"{layer}.self_attn.in_proj_weight", n_heads),
            *keys.qkv_rows(attn, f"{layer}.self_attn.in_proj_bias", n_heads, bias=True),
            keys.Row(f"{attn}.W_O", f"{layer}.self_attn.out_proj.weight", keys.HeadsOut(n_heads)),
            keys.Row(f"{attn}.b_O", f"{layer}.self_attn.out_proj.bias"),
            *keys.linear_rows("blocks.{l}.mlp", f"{layer}.linear1"),
            *keys.linear_rows("blocks.{l}.mlp", f"{layer}.linear2", "W_out", "b_out"),
            *keys.norm_rows(
                ("blocks.{l}.ln1", f"{layer}.norm1"), ("blocks.{l}.ln2", f"{layer}.norm2")
            ),
            *(keys.norm_rows(("ln_final", final)) if final else []),
        ]
    )


@checked
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
            of the tokens' mean, after at most one ``nn.LayerNorm``? ``"detect"`` (default)
            tries the mean and every position on a probe; a position (an int) or ``"mean"``
            declares it (a `ConversionError` if the readout differs); ``"none"`` reads it as a
            whole. Found, it becomes the unembedding (``W_U``) and its LayerNorm, on an encoder
            without a final norm, ``ln_final``; `find_linear_readout` says why one is not.

    A mask your own code passes to the encoder is no part of the modules: give it to the
    converted model (`HookedTorchEncoder.forward`).

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
    check_type(layout, TokenLayout, "layout")
    n_samples = check_int(n_samples, "n_samples (samples per window)", minimum=1)
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
            raise ConversionError(f"norm's eps={eps} must be its layers' {arch['eps']}")
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
        dtype=float_dtype(modules, "the encoder, embed and readout"),
        positional_embedding_type="none",
    )
    _check_embed(embed, layout, cfg)
    cfg.n_classes = _n_classes(readout, layout, cfg)
    form, why = readout_form(readout, layout, cfg, linear_readout, final)
    norm_path = None if form is None else form["norm"]
    norm = None if norm_path is None else readout.get_submodule(norm_path)
    if norm is not None:  # the readout's norm is the model's ln_final
        no_bias: list[str] = ["ln_final.b"] if norm.bias is None else []
        cfg = dataclasses.replace(cfg, final_norm=True, zero_biases=[*zero, *no_bias])
    model = HookedTorchEncoder(
        cfg, embed=embed, readout=readout, layout=layout, linear_readout=form
    )
    model.linear_readout_note = why
    # The source's weights under their own names: the layers', then the LayerNorm that
    # becomes ln_final (the encoder's final norm, or the linear readout's).
    theirs = {f"{path}.{key}": v for path, layer in layers for key, v in layer.state_dict().items()}
    final_key, final_norm = ("norm", final) if final is not None else (None, None)
    if norm is not None:
        final_key, final_norm = f"readout.{norm_path}", norm
    if final_norm is not None:
        theirs |= {f"{final_key}.{key}": v for key, v in final_norm.state_dict().items()}
    own = {k: v for k, v in model.state_dict().items() if k.startswith(("embed.", "head."))}
    state = keys.StateBuilder(model, "from_torch_encoder")
    template = "layers.{l}" if isinstance(encoder, nn.TransformerEncoder) else "[{l}]"
    table = key_table(arch["n_heads"], template, final_key)
    table.to_ours(theirs, state, [k for k in model.state_dict() if k not in own])
    state.load(keep=own)
    model.eval()
    _check_parity(model, encoder, layers, seed)
    return model


def _check_embed(embed: nn.Module, layout: TokenLayout, cfg: EncoderConfig) -> None:
    """The tokenizer's output for one window of zeros must be the layout's tokens."""
    signals = torch.zeros(1, cfg.n_channels, cfg.n_samples, dtype=cfg.dtype)
    tokens = _run_user(embed, "embed", signals, "signals", "the layout's channels, n_samples")
    expected = [1, layout.n_tokens, cfg.d_model]
    if not isinstance(tokens, torch.Tensor) or list(tokens.shape) != expected:
        raise ConversionError(
            f"embed ({type(embed).__name__}) returned {describe(tokens)} for one window; it must "
            f"return {expected}: [batch, layout's tokens, d_model]"
        )


def _n_classes(readout: nn.Module, layout: TokenLayout, cfg: EncoderConfig) -> int:
    """The readout's output width, by running it on one batch of zero tokens."""
    tokens = torch.zeros(1, layout.n_tokens, cfg.d_model, dtype=cfg.dtype)
    out = _run_user(readout, "readout", tokens, "tokens", "the layout's tokens, d_model")
    if isinstance(out, torch.Tensor) and out.ndim == 2 and out.shape[0] == 1:
        return int(out.shape[1])
    raise ConversionError(
        f"readout ({type(readout).__name__}) returned {describe(out)} for one window; it "
        "must return logits [batch, n_classes]"
    )


def _run_user(module: nn.Module, role: str, x: torch.Tensor, given: str, sizes: str) -> Any:
    """``module(x)`` in eval mode (each submodule's flag restored after) without gradients;
    an exception in it is a `ConversionError` saying what the module was given."""
    try:
        with eval_mode(module), torch.no_grad():
            return module(x)
    except Exception as exc:  # the user's module: say what it was given
        raise ConversionError(
            f"{role} ({type(module).__name__}) failed on {given} {list(x.shape)} ({sizes}): {exc!r}"
        ) from exc


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
        logits = functools.partial(model, tokens, start_at_layer=0)
        with torch.no_grad():
            check_faithful(what, sources, lambda: model.head(original()), logits)


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
                f"layout group {group!r} embeds channels {ids}, not the next input rows "
                f"{first}..{first + len(ids) - 1} (as TokenLayout.channel_tokens numbers them)"
            )
        counts[group] = len(ids) or 1
        first += len(ids)
    if not counts:
        raise LayoutError(f"the layout has no signal tokens, only {layout.groups}")
    return counts
