"""braindecode's ``CBraMod`` (criss-cross brain model, Wang et al. 2025) as a hooked encoder.

Tokens and readout: docs/guide/bring-your-own-model.md, "A braindecode model" (the patch
embedding at ``hook_embed``, the conditional positional encoding at ``hook_pos_embed``).
CBraMod's two half-width attentions (spatial across one patch's channels, temporal across one
channel's patches) are here one attention of ``nhead`` heads with a
`emg_lens.components.HeadStructure`: heads ``0 .. nhead/2 - 1`` spatial on the first half of
``d_model`` (the weights outside it are zero blocks, kept zero in training), the others temporal
on the second half; a fixed base mask at ``hook_attn_scores``, under a user's cut. Blocks are
pre-LN (whatever CBraMod's ``norm_first``); no final norm.
"""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange
from jaxtyping import Float
from torch import nn
from transformer_lens.hook_points import HookPoint

from emg_lens._hints import checked
from emg_lens.components import HeadStructure
from emg_lens.components.init import ConfigConv2d, ConfigGroupNorm, ConfigInit, ConfigLinear
from emg_lens.config import EncoderConfig
from emg_lens.errors import (
    ArgumentError,
    ConversionError,
)
from emg_lens.models import key_table as keys
from emg_lens.models.base import check_encoder_config
from emg_lens.models.braindecode_common import model_size
from emg_lens.models.converted.braindecode._common import (
    Braindecode,
    BraindecodeEncoder,
    Field,
    eeg_config,
    eps_of,
    layer_kw,
    one_activation,
    per_layer,
    read_config,
)
from emg_lens.models.converted.conversion import Parts, check_parts, check_self_attention

PATCH = 200  # CBraMod's spectral embedding takes 101 rfft bins: patches of 200 samples
DEFAULT_CONVS = ((25, 49, 25, 24, (5, 25)), (25, 3, 1, 1, (5, 25)), (25, 3, 1, 1, (5, 25)))


def embed_dim(convs) -> int:
    """d_model of CBraMod's patch convolutions (``channels_kernel_stride_padding_norm``)."""
    width = PATCH
    for _, kernel, stride, padding, _ in convs:
        width = int((width + 2 * padding - kernel) / stride + 1)
    return convs[-1][0] * width


def magnitude_spectrum(patches: torch.Tensor) -> torch.Tensor:
    """``|rfft(patches, norm="forward")|`` over the last dim, as CBraMod embeds it; a trace
    (ONNX export: the TorchScript exporter has no rfft) records it as two matrix products
    with the DFT's cosine and sine tables instead (equal to float32 rounding). Half and
    bfloat16 patches are transformed in float32 (torch has no such FFT on CPU), the result
    cast back.

    >>> x = torch.randn(2, 200, dtype=torch.float64)
    >>> torch.allclose(_dft_magnitude(x), magnitude_spectrum(x))
    True
    """
    if torch.jit.is_tracing():
        return _dft_magnitude(patches)
    if patches.dtype in (torch.float32, torch.float64):
        return torch.fft.rfft(patches, dim=-1, norm="forward").abs()
    # torch's FFTs take no half or bfloat16 on CPU, and half only for powers of two on CUDA:
    # a half model's spectrum is computed in float32 and rounded once, at the end.
    spectrum = torch.fft.rfft(patches.float(), dim=-1, norm="forward").abs()
    return spectrum.to(patches.dtype)


def _dft_magnitude(patches: torch.Tensor) -> torch.Tensor:
    n = patches.shape[-1]
    k = torch.arange(n // 2 + 1, dtype=torch.float64)
    angle = 2 * torch.pi * torch.arange(n, dtype=torch.float64)[:, None] * k[None] / n
    cos, sin = (t.div(n).to(patches.dtype) for t in (angle.cos(), angle.sin()))
    return ((patches @ cos) ** 2 + (patches @ sin) ** 2).sqrt()


class PatchEmbedding(ConfigInit, nn.Module):
    """CBraMod's patch embedding (braindecode's ``_PatchEmbedding``, same parameter names):
    patches ``[batch, channel, patch, 200]`` -> ``(tokens, positions)``, each ``[batch,
    channel, patch, d_model]``. ``mask_encoding`` is zero and not learned, as braindecode's."""

    def __init__(self, convs, cfg: EncoderConfig):
        super().__init__()
        self.init_std = cfg.init_range
        kw = layer_kw(cfg)
        d = embed_dim(convs)
        self.positional_encoding = nn.Sequential(
            ConfigConv2d(d, d, (19, 7), padding=(9, 3), groups=d, **kw)
        )
        self.mask_encoding = nn.Parameter(torch.zeros(PATCH, dtype=cfg.dtype), requires_grad=False)
        layers: list[nn.Module] = []
        last = 1
        for channels, kernel, stride, padding, norm in convs:
            layers += [
                ConfigConv2d(last, channels, (1, kernel), (1, stride), (0, padding), **kw),
                ConfigGroupNorm(*norm, **kw),
                nn.GELU(),
            ]
            last = channels
        self.proj_in = nn.Sequential(*layers)
        self.spectral_proj = nn.Sequential(ConfigLinear(PATCH // 2 + 1, d, **kw))

    def draw_parameter(self, name: str, param: torch.Tensor) -> None:
        """The rule's draw, then ``mask_encoding`` back to zero (the draw is kept: the
        seeded weights drawn after it stay what they have been)."""
        super().draw_parameter(name, param)
        if name == "mask_encoding":
            nn.init.zeros_(param)

    def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n_chans = patches.shape[1]
        emb = self.proj_in(rearrange(patches, "b c n p -> b 1 (c n) p"))
        emb = rearrange(emb, "b d (c n) p2 -> b c n (d p2)", c=n_chans)
        spectral = magnitude_spectrum(patches)
        tokens = emb + self.spectral_proj(spectral)
        pos = self.positional_encoding(rearrange(tokens, "b c n d -> b d c n"))
        return tokens, rearrange(pos, "b d c n -> b c n d")


class CBraModHead(nn.Module):
    """CBraMod's readout: every token through ``proj_out`` ``[d_model -> emb_dim]``, the
    ``[channel, patch, emb_dim]`` features flattened, then ``final_layer`` to logits;
    ``hook_pooled`` fires on the flattened features."""

    def __init__(self, cfg: EncoderConfig, emb_dim: int):
        super().__init__()
        kw = layer_kw(cfg)
        self.proj_out = ConfigLinear(cfg.d_model, emb_dim, **kw)
        self.final_layer = ConfigLinear(cfg.n_ctx * emb_dim, cfg.n_classes, **kw)
        self.hook_pooled = HookPoint()  # [batch, pos * emb_dim]

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.hook_pooled(self.proj_out(latent).flatten(1)))


@checked
class HookedCBraMod(BraindecodeEncoder):
    """braindecode's ``CBraMod``, hooked (see the module docstring for the criss-cross head
    structure); built by `from_braindecode`.

    Hooks beyond the shared stack: ``hook_embed`` (the patch embeddings), ``hook_pos_embed``
    (the conditional positional encoding added to them), ``head.hook_pooled``.

    Args:
        cfg: from `HookedCBraMod.config`.
        convs: CBraMod's ``channels_kernel_stride_padding_norm``.
        emb_dim: width of ``proj_out``.

    >>> cfg = HookedCBraMod.config(n_chans=3, n_times=400, n_outputs=2, n_layer=1, nhead=4,
    ...                            dim_feedforward=16, convs=[[4, 49, 25, 24, [2, 4]]])
    >>> model = HookedCBraMod(cfg, convs=[[4, 49, 25, 24, [2, 4]]], emb_dim=8)
    >>> model(model.example_input(2)).shape, model.layout.n_tokens, cfg.d_model
    (torch.Size([2, 2]), 6, 32)
    >>> model.blocks[0].attn.base_mask[0, 0].int().tolist()  # spatial head: token (c0, t0)
    [0, 1, 0, 1, 0, 1]
    """

    def __init__(self, cfg: EncoderConfig, *, convs: Any = DEFAULT_CONVS, emb_dim: int = 200):
        cfg = check_encoder_config(type(self), cfg)
        if cfg.use_cls_token or cfg.patch_samples != PATCH or cfg.n_heads % 2 or cfg.d_model % 2:
            raise ArgumentError("HookedCBraMod needs a config from HookedCBraMod.config(...)")
        super().__init__(cfg)
        self.convs = [[c, k, s, p, list(n)] for c, k, s, p, n in convs]
        self.emb_dim = emb_dim
        self._init_kwargs = {"convs": self.convs, "emb_dim": emb_dim}
        self.patch_embedding = PatchEmbedding(self.convs, cfg)
        self.head = CBraModHead(cfg, emb_dim)
        self._layout = self._channel_layout(cls_token=False)
        half_heads, half = cfg.n_heads // 2, cfg.d_model // 2
        structure = [
            HeadStructure((0, half_heads), (0, half), (0, half), tuple(self._layout.time)),
            HeadStructure(
                (half_heads, cfg.n_heads),
                (half, cfg.d_model),
                (half, cfg.d_model),
                tuple(self._layout.channel),
            ),
        ]
        for block in self.blocks:
            block.attn.set_structure(structure, cfg.n_ctx)
        self._finish_init()

    @staticmethod
    def config(
        *,
        n_chans: int,
        n_times: int,
        n_outputs: int,
        n_layer: int = 12,
        nhead: int = 8,
        dim_feedforward: int = 800,
        activation: str = "gelu",
        convs: Any = DEFAULT_CONVS,
        layer_norm_eps: float = 1e-5,
        ch_names: list[str] | None = None,
        dtype: torch.dtype = torch.float32,
        **overrides: Any,
    ) -> EncoderConfig:
        """The `EncoderConfig` of a braindecode ``CBraMod`` built with these arguments."""
        d = embed_dim(convs)
        if nhead % 2 or d % nhead:
            raise ConversionError(f"CBraMod's nhead={nhead} must be even and divide d_model={d}")
        sizes = {
            "d_model": d,
            "d_head": d // nhead,
            "n_heads": nhead,
            "n_layers": n_layer,
            "d_mlp": dim_feedforward,
            "act_fn": activation,
            "eps": layer_norm_eps,
            "patch_samples": PATCH,
            "use_cls_token": False,
            "final_norm": False,
            "positional_embedding_type": "none",
        }
        return eeg_config(n_chans, n_times, n_outputs, ch_names, dtype, {**sizes, **overrides})

    def embed_signals(
        self, signals: Float[torch.Tensor, "batch channel time"]
    ) -> Float[torch.Tensor, "batch pos d_model"]:
        patches = rearrange(signals, "b c (n p) -> b c n p", p=PATCH)
        tokens, pos = self.patch_embedding(patches)
        tokens = self.hook_embed(tokens.flatten(1, 2))
        return tokens + self.hook_pos_embed(pos.flatten(1, 2))

    no_unembedding = (
        "its readout maps every token through proj_out and one classifier over the flattened "
        "tokens, a different class direction per token, not one column per class"
    )

    def to_braindecode(self) -> dict[str, torch.Tensor]:
        """This model's weights as the state dict of braindecode's ``CBraMod`` built with the
        same arguments."""
        return key_table(self.cfg).to_theirs(self.state_dict())


def key_table(cfg: EncoderConfig) -> keys.KeyTable:
    """emg_lens key <-> braindecode ``CBraMod`` key, both ways (`KeyTable`): the spatial
    attention (``self_attn_s``) is the block of heads ``0 .. nhead/2 - 1`` on the first half of
    ``d_model``, the temporal one (``self_attn_t``) the block of the other heads on the second
    half (see the module docstring)."""
    hh, half = cfg.n_heads // 2, cfg.d_model // 2
    layer, attn = "encoder.layers.{l}", "blocks.{l}.attn"
    rows = [keys.Row("patch_embedding.{*}", "patch_embedding.{*}")]
    for name, heads, part in (
        ("self_attn_s", slice(0, hh), slice(0, half)),
        ("self_attn_t", slice(hh, None), slice(half, None)),
    ):
        mha = f"{layer}.{name}"
        rows += [
            *keys.qkv_rows(attn, f"{mha}.in_proj_weight", hh, block=(heads, part)),
            *keys.qkv_rows(attn, f"{mha}.in_proj_bias", hh, bias=True, block=(heads,)),
            keys.Row(
                f"{attn}.W_O", f"{mha}.out_proj.weight", keys.HeadsOut(hh), block=(heads, ALL, part)
            ),
            keys.Row(f"{attn}.b_O", f"{mha}.out_proj.bias", block=(part,)),
        ]
    return keys.KeyTable(
        [
            *rows,
            *keys.linear_rows("blocks.{l}.mlp", f"{layer}.linear1"),
            *keys.linear_rows("blocks.{l}.mlp", f"{layer}.linear2", "W_out", "b_out"),
            *keys.norm_rows(
                ("blocks.{l}.ln1", f"{layer}.norm1"), ("blocks.{l}.ln2", f"{layer}.norm2")
            ),
            keys.Row("head.proj_out.{*}", "proj_out.0.{*}"),
            keys.Row("head.final_layer.{*}", "final_layer.1.{*}"),
        ]
    )


ALL = slice(None)
PARTS: Parts = [
    (
        "final_layer",
        lambda final: (
            isinstance(final, nn.Sequential) and len(final) == 2 and type(final[1]) is nn.Linear
        ),
        "its Flatten + Linear classifier (not return_encoder_output=True; a LazyLinear: run the "
        "model once)",
    )
]
"""What `from_cbramod` reads (`check_parts`); its ``proj_out``, `_check_supported`."""


def _check_supported(model: Braindecode, ch_names: list[str] | None) -> None:
    check_parts(model, PARTS)
    proj_out = model.proj_out
    if not (
        isinstance(proj_out, nn.Sequential)
        and len(proj_out) == 1
        and type(proj_out[0]) is nn.Linear
        and proj_out[0].bias is not None
    ):
        parts = ", ".join(type(m).__name__ for m in proj_out.children())
        raise ConversionError(
            f"CBraMod.proj_out is a {type(proj_out).__name__}({parts}), not Sequential(Linear)",
            path="proj_out",
        )
    n_times = input_size(model, ch_names)[1]
    if model._patch_size != PATCH or n_times % PATCH:
        raise ConversionError(
            f"CBraMod needs patch_size={PATCH} and n_times a multiple of it, got patch_size="
            f"{model._patch_size}, n_times={n_times}"
        )
    half = embed_dim(model.patch_embedding.channels_kernel_stride_padding_norm) // 2
    for i, layer in enumerate(model.encoder.layers):
        for name in ("self_attn_s", "self_attn_t"):
            _check_half(getattr(layer, name), f"encoder.layers.{i}.{name}", half)


def input_size(model: Braindecode, ch_names: list[str] | None) -> tuple[int, int]:
    """``(n_chans, n_times)`` of a braindecode ``CBraMod`` with a built classifier: its own;
    where built without one (braindecode then gives it a ``LazyLinear``, which its first call
    builds), the window its classifier takes: it reads ``n_chans x n_times / 200 x emb_dim``
    features, so one size fixes the other (the channels: ``ch_names``'s where the model has
    none)."""
    known: dict[str, Any] = {name: model_size(model, name) for name in ("n_chans", "n_times")}
    if known["n_chans"] is None and ch_names is not None:
        known["n_chans"] = len(ch_names)
    n_chans, n_times = known["n_chans"], known["n_times"]
    if n_chans is not None and n_times is not None:
        return n_chans, n_times
    width, emb = model.final_layer[1].in_features, model._emb_dim
    if n_chans is None and n_times is None:
        raise ConversionError(
            "CBraMod was built without n_chans (or chs_info) and n_times: pass "
            "from_braindecode(model, ch_names=[...]) (one name per input channel)"
        )
    per_unit = emb * (n_chans if n_times is None else n_times // PATCH)
    if not per_unit or width % per_unit:
        have = f"{n_chans} channels" if n_times is None else f"n_times={n_times}"
        raise ConversionError(
            f"CBraMod's classifier reads {width} features, which no window of {have} gives "
            f"({emb} per channel and patch of {PATCH} samples)"
        )
    if n_times is None:
        return n_chans, width // per_unit * PATCH
    return width // per_unit, n_times


def _check_half(module: nn.Module, path: str, half: int) -> None:
    """One half of a criss-cross layer: a self-attention ``nn.MultiheadAttention``
    (`check_self_attention`) with biases, on half of ``d_model``."""
    attn = check_self_attention(module, path)
    shape = list(attn.in_proj_weight.shape)
    if attn.in_proj_bias is None or shape != [3 * half, half]:
        raise ConversionError(
            f"{path} has bias={attn.in_proj_bias is not None}, in_proj_weight {shape}; supported:"
            f" a criss-cross half, bias=True, [{3 * half}, {half}]",
            path=path,
        )


FIELDS: dict[str, Field] = {
    "n_outputs": "final_layer.1.out_features",
    "n_layer": lambda model: len(model.encoder.layers),
    "nhead": lambda model: 2 * model.encoder.layers[0].self_attn_s.num_heads,
    "dim_feedforward": "encoder.layers.0.linear1.out_features",
    "convs": "patch_embedding.channels_kernel_stride_padding_norm",
    "layer_norm_eps": lambda model: eps_of(
        per_layer(model, "encoder.layers", "norm1", "norm2"), "CBraMod"
    ),
}
"""How ``HookedCBraMod.config``'s arguments are read off braindecode's ``CBraMod``."""


def from_cbramod(model: Braindecode, ch_names: list[str] | None = None) -> HookedCBraMod:
    """A braindecode ``CBraMod`` instance as a `HookedCBraMod` with its weights, in eval mode;
    one built without ``n_times`` or ``n_chans`` at the size its classifier takes (see
    `input_size`)."""
    _check_supported(model, ch_names)
    act = one_activation(per_layer(model, "encoder.layers", "activation"))
    fields = read_config(model, FIELDS, ch_names, input_size(model, ch_names))
    cfg = HookedCBraMod.config(**fields, activation=act)
    hooked = HookedCBraMod(
        cfg, convs=model.patch_embedding.channels_kernel_stride_padding_norm, emb_dim=model._emb_dim
    )
    key_table(cfg).load(model.state_dict(), hooked, "from_braindecode(CBraMod)")
    return hooked.eval()
