"""Finding a linear readout in a user's classifier: one ``nn.Linear(d_model, n_classes)`` of
one token or of the tokens' mean, after at most one ``nn.LayerNorm`` (which a converted model
copies into ``ln_final``), is TransformerLens's unembedding (``W_U``, ``b_U``), so direct
attribution, the OV circuit and the exact last-layer screen read it. `find_linear_readout`
checks the form on a seeded probe against the module itself; `LinearUnembedding` is the
view a converted model gives as its unembedding; `check_form` reads a form back from a
checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict, cast

import torch
from jaxtyping import Float
from torch import nn

from emg_lens.config import EncoderConfig
from emg_lens.errors import ArgumentError, ConversionError, is_int
from emg_lens.layout import TokenLayout
from emg_lens.models.base import eval_mode

READOUT_POOLS = ("detect", "mean", "none")
"""What ``from_torch_encoder(linear_readout=)`` takes besides a token position (an int)."""


class ReadoutForm(TypedDict):
    """A linear readout (`find_linear_readout`): its ``nn.Linear`` (a path in the readout)
    reads the token ``pool`` (a position) or the tokens' mean (``"mean"``), after the
    ``nn.LayerNorm`` at the path ``norm`` (None: none)."""

    pool: int | str
    linear: str
    norm: str | None


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
    (linear_path, linear), (norm_path, norm) = linears[0], norms[0] if norms else (None, None)
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
) -> tuple[ReadoutForm | None, str | None]:
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
        return declared_or(declared, parts)
    linear_path, linear, norm_path, norm = parts
    gen = torch.Generator().manual_seed(0)
    n = layout.n_tokens
    tokens = 0.5 + 2 * torch.randn(3, n, cfg.d_model, generator=gen, dtype=cfg.dtype)
    with eval_mode(readout), torch.no_grad():
        out = readout(tokens)
        per_token = linear(tokens if norm is None else norm(tokens))  # [batch, pos, class]
    pools = ["mean", *range(n)] if declared == "detect" else [declared]
    tol = 1e-5 * (1 + float(out.abs().max()))
    for pool in pools:
        if pool != "mean" and not 0 <= pool < n:
            raise ArgumentError(f"linear_readout={pool} is no token position of the {n} tokens")
        expected = per_token.mean(1) if pool == "mean" else per_token[:, pool]
        if out.shape == expected.shape and float((out - expected).abs().max()) <= tol:
            return {"pool": pool, "linear": linear_path, "norm": norm_path}, None
    where = "the tokens' mean or any token" if declared == "detect" else f"{declared!r}"
    return declared_or(
        declared,
        f"its output is not its nn.Linear{'' if norm is None else ' after its LayerNorm'} of "
        f"{where} (checked on a probe; a norm after the pooling is no linear map of tokens)",
    )


def declared_or(declared: Any, why: str) -> tuple[None, str]:
    """No linear readout, and why; a declared one that is not there is an error."""
    if declared != "detect":
        raise ConversionError(f"linear_readout={declared!r} was declared, but {why}")
    return None, why


def check_form(form: Any, layout: TokenLayout, cfg: EncoderConfig) -> ReadoutForm | None:
    """A linear-readout form (`find_linear_readout`) read back from a checkpoint: its pool a
    position or the mean, its paths strings (they name the readout's modules, which
    `HookedTorchEncoder` checks where it reads them: a config's stand-in modules, as
    ``study check`` builds, have none)."""
    if form is None:
        return None
    ok = isinstance(form, Mapping) and set(form) == {"pool", "linear", "norm"}
    pool = form.get("pool") if ok else None
    ok = ok and (pool == "mean" or is_int(pool, 0, layout.n_tokens - 1))
    ok = ok and isinstance(form["linear"], str)
    ok = ok and (form["norm"] is None or isinstance(form["norm"], str))
    if not ok:
        raise ArgumentError(
            f"linear_readout must be {{'pool': a token position or 'mean', 'linear': the path "
            f"of the readout's nn.Linear, 'norm': that of its nn.LayerNorm or None}}, got {form!r}"
        )
    if form["norm"] is not None and not cfg.final_norm:
        raise ArgumentError("linear_readout's norm needs a config with final_norm=True (ln_final)")
    return cast(ReadoutForm, {**form, "pool": "mean" if pool == "mean" else int(form["pool"])})


def readout_form(
    readout: nn.Module, layout: TokenLayout, cfg: EncoderConfig, declared: Any, final: Any
) -> tuple[ReadoutForm | None, str | None]:
    """`find_linear_readout`, and whether its norm can become ``ln_final``: not after the
    encoder's own final norm (two norms in a row are no one norm), and only with the
    layers' eps (``ln_final`` shares `EncoderConfig.eps`)."""
    if is_int(declared):
        declared = int(declared)  # numpy's too: it goes to JSON
    elif declared not in READOUT_POOLS:
        raise ArgumentError(
            f"linear_readout must be a token position (an int) or one of {READOUT_POOLS}, got "
            f"{declared!r}"
        )
    form, why = find_linear_readout(readout, layout, cfg, declared)
    if form is None or form["norm"] is None:
        return form, why
    norm = cast(nn.LayerNorm, readout.get_submodule(form["norm"]))  # find_linear_readout's
    if final is not None:
        why = "its LayerNorm comes after the encoder's final norm: two norms are no one ln_final"
    elif float(norm.eps) != cfg.eps:
        why = f"its LayerNorm has eps={norm.eps}, the layers {cfg.eps}: ln_final shares one eps"
    else:
        return form, None
    return declared_or(declared, why)


class LinearUnembedding(nn.Module):
    """The user's readout ``nn.Linear`` as TransformerLens's unembedding (a view: its
    weights stay the module's)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.linear = linear

    @property
    def W_U(self) -> Float[torch.Tensor, "d_model n_classes"]:
        return self.linear.weight.T

    @property
    def b_U(self) -> Float[torch.Tensor, " n_classes"]:
        bias = self.linear.bias
        return torch.zeros_like(self.linear.weight[:, 0]) if bias is None else bias
