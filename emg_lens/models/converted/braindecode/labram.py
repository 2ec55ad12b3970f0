"""braindecode's ``Labram`` (LaBraM, Jiang et al. 2024) as a hooked encoder.

Tokens and readout: docs/guide/bring-your-own-model.md, "A braindecode model". Blocks: pre-LN,
q and v biases without a k bias, ``qk_norm``, and LaBraM's layer scale folded into the output
maps (`fold_layer_scale`: ``hook_attn_out`` / ``hook_mlp_out`` are exactly what each adds to
the residual stream). With ``use_mean_pooling`` the readout is the `MeanPoolClassifier`, no
unembedding (its norm comes after the pooling). The neural-decoder mode
(``neural_tokenizer=False``) and its relative position bias are not converted
(`ConversionError`).
"""

from __future__ import annotations

import sys
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from jaxtyping import Float
from torch import nn

from emg_lens.components import ClassifierHead
from emg_lens.components.init import (
    ConfigConv1d,
    ConfigConv2d,
    ConfigGroupNorm,
    ConfigLayerNorm,
)
from emg_lens.components.mlp import ACTIVATIONS
from emg_lens.config import EncoderConfig
from emg_lens.errors import ArgumentError, ConversionError, check_ints, checked
from emg_lens.models import key_table as keys
from emg_lens.models.converted.braindecode._common import (
    Braindecode,
    BraindecodeEncoder,
    Field,
    TokenClassifier,
    eeg_config,
    eps_of,
    layer_kw,
    one_activation,
    per_layer,
    read_config,
)
from emg_lens.models.converted.conversion import Parts, check_parts

N_POSITIONS = 129  # braindecode's position_embedding: CLS + LaBraM's 128 channel names


class TemporalConv(nn.Module):
    """LaBraM's patch embedding (braindecode's ``_TemporalConv``, same parameter names):
    patches ``[batch, channel, patch, samples]`` -> tokens ``[batch, channel * patch,
    time * conv_channels]``."""

    def __init__(self, out_channels: int, activation: str, cfg: EncoderConfig):
        super().__init__()
        kw = layer_kw(cfg)
        self.conv1 = ConfigConv2d(1, out_channels, (1, 15), stride=(1, 8), padding=(0, 7), **kw)
        self.norm1 = ConfigGroupNorm(4, out_channels, **kw)
        self.conv2 = ConfigConv2d(out_channels, out_channels, (1, 3), padding=(0, 1), **kw)
        self.norm2 = ConfigGroupNorm(4, out_channels, **kw)
        self.conv3 = ConfigConv2d(out_channels, out_channels, (1, 3), padding=(0, 1), **kw)
        self.norm3 = ConfigGroupNorm(4, out_channels, **kw)
        self.act = ACTIVATIONS[activation]

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        x = rearrange(patches, "batch chan patch sample -> batch 1 (chan patch) sample")
        x = self.act(self.norm1(self.conv1(x)))
        x = self.act(self.norm2(self.conv2(x)))
        x = self.act(self.norm3(self.conv3(x)))
        return rearrange(x, "batch conv token time -> batch token (time conv)")


def embed_dim(patch_size: int, conv_out_channels: int) -> int:
    """d_model of LaBraM's temporal convolutions on patches of ``patch_size`` samples."""
    return ((patch_size + 2 * 7 - 15) // 8 + 1) * conv_out_channels


class MeanPoolClassifier(ClassifierHead):
    """LaBraM's ``use_mean_pooling`` readout: `ClassifierHead` on the channel tokens' mean
    (every token but the CLS token), LayerNorm'ed (``fc_norm``)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__(cfg)
        self.fc_norm = ConfigLayerNorm(cfg.d_model, eps=cfg.eps, **layer_kw(cfg))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return super().forward(self.fc_norm(latent[:, 1:].mean(1)))


@checked
class HookedLabram(BraindecodeEncoder):
    """braindecode's ``Labram``, hooked (see the module docstring); built by
    `from_braindecode`.

    Hooks beyond the shared stack: ``hook_embed`` (the CLS token and the patch tokens),
    ``hook_pos_embed`` (the position and temporal embeddings added to them),
    ``head.hook_pooled``, and each block's ``attn.q_norm`` / ``attn.k_norm`` hooks.

    Args:
        cfg: from `HookedLabram.config`.
        position_rows: for each input channel, its row of LaBraM's 128-name table (the
            ``ch_names`` LaBraM's forward matches), so ``position_embedding[row + 1]``.
        conv_out_channels: channels of the temporal convolutions.
        learned_patcher: patches cut by a learned ``Conv1d`` (braindecode's
            ``learned_patcher``) rather than a reshape.
        use_mean_pooling: the mean-pooling readout instead of the CLS token.
        layer_scale: the source had ``gamma_1`` / ``gamma_2`` (folded; see the module
            docstring), so `to_braindecode` writes them.
        abs_pos_emb: the source had a ``position_embedding`` (``use_abs_pos_emb``).

    >>> cfg = HookedLabram.config(n_chans=2, n_times=16, n_outputs=3, patch_size=8,
    ...                           conv_out_channels=8, num_layers=1, num_heads=2)
    >>> model = HookedLabram(cfg, position_rows=[39, 43])  # C3 and C4 in LaBraM's table
    >>> model(model.example_input(2)).shape, model.layout.n_tokens, cfg.d_model
    (torch.Size([2, 3]), 5, 8)
    """

    position_index: torch.Tensor  # a buffer: [1 + channel], each token's position_embedding row

    def __init__(
        self,
        cfg: EncoderConfig,
        *,
        position_rows: list[int],
        conv_out_channels: int = 8,
        learned_patcher: bool = False,
        use_mean_pooling: bool = False,
        layer_scale: bool = True,
        abs_pos_emb: bool = True,
    ):
        if not cfg.use_cls_token or cfg.patch_samples is None:
            raise ArgumentError("HookedLabram needs a config from HookedLabram.config(...)")
        position_rows = check_ints(position_rows, "position_rows", 0, N_POSITIONS - 2)  # of 128
        if len(position_rows) != cfg.n_channels:
            raise ArgumentError(f"position_rows must be {cfg.n_channels} rows, got {position_rows}")
        super().__init__(cfg)
        self._init_kwargs = {
            "position_rows": position_rows,
            "conv_out_channels": conv_out_channels,
            "learned_patcher": learned_patcher,
            "use_mean_pooling": use_mean_pooling,
            "layer_scale": layer_scale,
            "abs_pos_emb": abs_pos_emb,
        }
        d, patch = cfg.d_model, cfg.token_samples
        self.patch_embed = nn.ModuleDict()
        if learned_patcher:
            patcher = ConfigConv1d(1, patch, patch, stride=patch, **layer_kw(cfg))
            self.patch_embed["segment_patch"] = nn.ModuleDict({"patcher": patcher})
        self.patch_embed["temporal_conv"] = TemporalConv(conv_out_channels, cfg.act_fn, cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d, dtype=cfg.dtype))
        self.position_embedding = (
            nn.Parameter(torch.zeros(1, N_POSITIONS, d, dtype=cfg.dtype)) if abs_pos_emb else None
        )
        self.temporal_embedding = nn.Parameter(
            torch.zeros(1, cfg.n_patches + 1, d, dtype=cfg.dtype)
        )
        rows = torch.tensor([0] + [r + 1 for r in position_rows])  # CLS, then each channel's
        self.register_buffer("position_index", rows, persistent=False)
        self.head: MeanPoolClassifier | TokenClassifier = (
            MeanPoolClassifier(cfg) if use_mean_pooling else TokenClassifier(cfg, 0)
        )
        self._layout = self._channel_layout(cls_token=True)
        self._finish_init()

    @staticmethod
    def config(
        *,
        n_chans: int,
        n_times: int,
        n_outputs: int,
        patch_size: int = 200,
        conv_out_channels: int = 8,
        num_layers: int = 12,
        num_heads: int = 10,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        qk_norm: bool = True,
        qk_scale: float | None = None,
        attn_head_dim: int | None = None,
        use_mean_pooling: bool = False,
        activation: str = "gelu",
        eps: float = 1e-6,
        ch_names: list[str] | None = None,
        dtype: torch.dtype = torch.float32,
        **overrides: Any,
    ) -> EncoderConfig:
        """The `EncoderConfig` of a braindecode ``Labram`` built with these arguments (its
        names and defaults)."""
        d = embed_dim(patch_size, conv_out_channels)
        d_head = attn_head_dim or d // num_heads
        zero = ["b_K"] if qkv_bias else ["b_Q", "b_K", "b_V"]
        sizes = {
            "d_model": d,
            "d_head": d_head,
            "n_heads": num_heads,
            "n_layers": num_layers,
            "d_mlp": int(d * mlp_ratio),
            "act_fn": activation,
            "eps": eps,
            "patch_samples": patch_size,
            "use_cls_token": True,
            "final_norm": not use_mean_pooling,
            "zero_biases": zero,
            "qk_norm": qk_norm,
            "attn_scale": None if qk_scale is None else 1.0 / qk_scale,
        }
        return eeg_config(n_chans, n_times, n_outputs, ch_names, dtype, {**sizes, **overrides})

    def embed_signals(
        self, signals: Float[torch.Tensor, "batch channel time"]
    ) -> Float[torch.Tensor, "batch pos d_model"]:
        batch, n_chans, _ = signals.shape
        patch, n_patches = self.cfg.token_samples, self.cfg.n_patches
        if "segment_patch" in self.patch_embed:
            patcher = self.get_submodule("patch_embed.segment_patch.patcher")
            patches = patcher(signals.reshape(-1, 1, signals.shape[-1]))
            patches = rearrange(
                patches, "(batch chan) emb patch -> batch chan patch emb", batch=batch
            )
        else:
            patches = signals.reshape(batch, n_chans, n_patches, patch)
        tokens = self.patch_embed["temporal_conv"](patches)
        cls = self.cls_token.expand(batch, -1, -1)
        tokens = self.hook_embed(torch.cat((cls, tokens), dim=1))
        time = self.temporal_embedding[0, :n_patches].repeat(n_chans, 1)  # [chan * patch, d]
        time = F.pad(time, (0, 0, 1, 0))  # the CLS token has no temporal embedding
        if self.position_embedding is not None:
            rows = self.position_embedding[0, self.position_index]  # [1 + chan, d]
            channel = torch.cat((rows[:1], rows[1:].repeat_interleave(n_patches, dim=0)))
            time = channel + time
        pos = self.hook_pos_embed(time[None].expand(batch, -1, -1))
        return tokens + pos

    unembed_heads = ("logits",)

    def _ln_final_readers(self) -> list[tuple[nn.Parameter, nn.Parameter]]:
        return [] if self._init_kwargs["use_mean_pooling"] else [(self.head.W_U, self.head.b_U)]

    def to_braindecode(self) -> dict[str, torch.Tensor]:
        """This model's weights as the state dict of braindecode's ``Labram`` built with the
        same arguments (the layer scale folded: ``gamma_1 = gamma_2 = 1``)."""
        sd = key_table(self.cfg.n_heads).to_theirs(self.state_dict())
        if self._init_kwargs["layer_scale"]:
            for i, block in enumerate(self.blocks):
                for gamma in ("gamma_1", "gamma_2"):
                    sd[f"blocks.{i}.{gamma}"] = torch.ones_like(block.attn.b_O.detach())
        return sd


def key_table(n_heads: int) -> keys.KeyTable:
    """emg_lens key <-> braindecode ``Labram`` key, both ways (`KeyTable`), the layer scale
    folded into the output maps beforehand (`fold_layer_scale`)."""
    attn = "blocks.{l}.attn"
    return keys.KeyTable(
        [
            keys.Row("patch_embed.{*}", "patch_embed.{*}"),
            *(keys.Row(name, name) for name in ("cls_token", "position_embedding")),
            keys.Row("temporal_embedding", "temporal_embedding"),
            *keys.norm_rows(
                ("blocks.{l}.ln1", "blocks.{l}.norm1"), ("blocks.{l}.ln2", "blocks.{l}.norm2")
            ),
            *keys.qkv_rows(attn, f"{attn}.qkv.weight", n_heads),
            keys.Row(f"{attn}.b_Q", f"{attn}.q_bias", keys.HeadBias(n_heads)),
            keys.Row(f"{attn}.b_V", f"{attn}.v_bias", keys.HeadBias(n_heads)),
            *keys.norm_rows(
                (f"{attn}.q_norm", f"{attn}.q_norm"), (f"{attn}.k_norm", f"{attn}.k_norm")
            ),
            keys.Row(f"{attn}.W_O", f"{attn}.proj.weight", keys.HeadsOut(n_heads)),
            keys.Row(f"{attn}.b_O", f"{attn}.proj.bias"),
            *keys.linear_rows("blocks.{l}.mlp", "blocks.{l}.mlp.0"),
            *keys.linear_rows("blocks.{l}.mlp", "blocks.{l}.mlp.2", "W_out", "b_out"),
            keys.Row("head.fc_norm.{*}", "fc_norm.{*}"),
            *keys.norm_rows(("ln_final", "norm")),
            *keys.linear_rows("head", "final_layer", "W_U", "b_U"),
        ]
    )


def fold_layer_scale(theirs: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """LaBraM's state dict with each layer's scale folded into the map it multiplies,
    ``gamma * (z W + b) = z (gamma W) + gamma b``: ``gamma_1`` into ``attn.proj``, ``gamma_2``
    into ``mlp.2`` (a layer without them is left as it is)."""
    out = dict(theirs)
    for i in range(n_layers):
        for gamma, linear in (("gamma_1", "attn.proj"), ("gamma_2", "mlp.2")):
            scale = theirs.get(f"blocks.{i}.{gamma}")
            if scale is not None:
                for name, factor in (("weight", scale[:, None]), ("bias", scale)):
                    key = f"blocks.{i}.{linear}.{name}"
                    out[key] = theirs[key] * factor
    return out


def _canonical_index(model: Braindecode) -> dict[str, int]:
    """LaBraM's channel-name table, read from the module that defined the model's class
    (already imported: its class is braindecode's)."""
    module = sys.modules[type(model).__module__]
    index = getattr(module, "_LABRAM_CANONICAL_INDEX", None)
    if index is None:  # a braindecode release without it: its order list
        index = {n.upper(): i for i, n in enumerate(module.LABRAM_CHANNEL_ORDER)}
    return index


def _channel_rows(model: Braindecode, names: list[str] | None, n_chans: int) -> list[str]:
    """The input channels' names (LaBraM's whole table, in order, for a model of 128
    channels without names), each checked to have a row in LaBraM's table."""
    index = _canonical_index(model)
    if names is None:
        if n_chans != len(index):
            raise ConversionError(
                f"Labram without chs_info needs ch_names=[...], {n_chans} names of LaBraM's table"
            )
        names = sorted(index, key=index.__getitem__)
    unknown = [n for n in names if n.upper() not in index]
    if unknown:
        raise ConversionError(f"ch_names {unknown} are not in LaBraM's channel table")
    return names


def _check_supported(model: Braindecode) -> None:
    attn = model.blocks[0].attn
    if not model.neural_tokenizer or attn.relative_position_bias_table is not None:
        raise ConversionError(
            f"Labram with neural_tokenizer={model.neural_tokenizer} and window_size="
            f"{getattr(attn, 'window_size', None)}; supported: neural_tokenizer=True (the "
            "default) without window_size (emg_lens adds no relative position bias)",
            path="blocks.0.attn",
        )
    check_parts(model, PARTS)


PARTS: Parts = [
    *(
        (
            f"blocks.0.attn.{name}",
            lambda norm: norm is None or type(norm) is nn.LayerNorm,
            "LayerNorm",
        )
        for name in ("q_norm", "k_norm")
    ),
    ("final_layer", lambda final: isinstance(final, nn.Linear), "a Linear (n_outputs > 0)"),
]
"""What `from_labram` reads besides the tokenizer (`check_parts`)."""


def _eps(model: Braindecode) -> float:
    """The one eps of every norm: the final one, the blocks', the q/k norms."""
    final = ("fc_norm", model.fc_norm) if model.fc_norm is not None else ("norm", model.norm)
    qk = ("attn.q_norm", "attn.k_norm") if model.blocks[0].attn.q_norm is not None else ()
    return eps_of([final, *per_layer(model, "blocks", "norm1", "norm2", *qk)], "Labram")


def _d_head(attn: Braindecode) -> int:
    return attn.qkv.weight.shape[0] // (3 * attn.num_heads)


def _scale(attn: Braindecode) -> float | None:
    """LaBraM's ``qk_scale`` when it is not ``d_head ** -0.5``."""
    return None if attn.scale == _d_head(attn) ** -0.5 else attn.scale


FIELDS: dict[str, Field] = {
    "n_outputs": "final_layer.out_features",
    "patch_size": "patch_size",
    "conv_out_channels": "patch_embed.temporal_conv.conv1.out_channels",
    "num_layers": lambda model: len(model.blocks),
    "num_heads": "blocks.0.attn.num_heads",
    "d_mlp": "blocks.0.mlp.0.out_features",
    "qkv_bias": lambda model: model.blocks[0].attn.q_bias is not None,
    "qk_norm": lambda model: model.blocks[0].attn.q_norm is not None,
    "qk_scale": lambda model: _scale(model.blocks[0].attn),
    "attn_head_dim": lambda model: _d_head(model.blocks[0].attn),
    "use_mean_pooling": lambda model: model.fc_norm is not None,
    "eps": _eps,
}
"""How ``HookedLabram.config``'s arguments are read off braindecode's ``Labram``."""


def from_labram(model: Braindecode, ch_names: list[str] | None = None) -> HookedLabram:
    """A braindecode ``Labram`` instance as a `HookedLabram` with its weights, in eval mode."""
    _check_supported(model)
    blocks = model.blocks
    act = one_activation(
        [
            ("patch_embed.temporal_conv.act_layer_1", model.patch_embed.temporal_conv.act_layer_1),
            *per_layer(model, "blocks", "mlp.1"),
        ]
    )
    fields = read_config(model, FIELDS, ch_names)
    fields["ch_names"] = _channel_rows(model, fields["ch_names"], fields["n_chans"])
    cfg = HookedLabram.config(**fields, activation=act)
    if cfg.d_model != model.embed_dim or cfg.d_model < cfg.n_patches:
        raise ConversionError(
            f"Labram.embed_dim={model.embed_dim} must be its temporal convolutions' "
            f"{cfg.d_model} features, and >= its {cfg.n_patches} patches"
        )
    index = _canonical_index(model)
    hooked = HookedLabram(
        cfg,
        position_rows=[index[n.upper()] for n in fields["ch_names"]],
        conv_out_channels=fields["conv_out_channels"],
        learned_patcher=getattr(model.patch_embed.segment_patch, "learned_patcher", False),
        use_mean_pooling=fields["use_mean_pooling"],
        layer_scale=blocks[0].gamma_1 is not None,
        abs_pos_emb=model.position_embedding is not None,
    )
    theirs = fold_layer_scale(model.state_dict(), len(blocks))
    key_table(cfg.n_heads).load(theirs, hooked, "from_braindecode(Labram)")
    return hooked.eval()
