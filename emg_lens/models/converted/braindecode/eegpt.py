"""braindecode's ``EEGPT`` (Wang et al. 2024) as a hooked encoder.

Tokens (patch-major: each patch's channel tokens, one ``Conv2d`` each plus a learned
``chan_embed``, then its ``embed_num`` summary tokens) and readout (`SummaryProbe`, no
unembedding): docs/guide/bring-your-own-model.md, "A braindecode model". EEGPT attends within
each time patch: here a `HeadStructure` (one group per patch) is a fixed base mask at
``hook_attn_scores``, a user's edge set is cut on top of it, and the fast path attends within
each patch in one batched call, as EEGPT does. Refused (`ConversionError`):
``return_encoder_output=True``, a custom ``final_layer`` or patch module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from jaxtyping import Float
from torch import nn
from transformer_lens.hook_points import HookPoint

from emg_lens._hints import checked
from emg_lens.components import HeadStructure
from emg_lens.components.init import ConfigConv2d, ConfigEmbedding, ConfigInit
from emg_lens.config import EncoderConfig
from emg_lens.errors import ArgumentError, ConversionError, check_choice
from emg_lens.layout import CLS, TokenLayout
from emg_lens.models import key_table as keys
from emg_lens.models.braindecode_common import misnamed_channel
from emg_lens.models.converted.braindecode._common import (
    Braindecode,
    BraindecodeEncoder,
    eeg_config,
    eps_of,
    layer_kw,
    per_layer,
    read_config,
)
from emg_lens.models.converted.conversion import Parts, activation_name, check_parts

PROJECTIONS = ("conv1d_constraint", "linear", "none")


def n_patches(n_times: int, patch_size: int, patch_stride: int | None) -> tuple[int, int]:
    """``(patches, right zero-padding)`` of EEGPT's patch embedding."""
    stride = patch_stride or patch_size
    remainder = (n_times - patch_size) % stride if patch_stride else n_times % patch_size
    pad = stride - remainder if remainder else 0
    return (n_times + pad - patch_size) // stride + 1, pad


def renorm(weight: torch.Tensor, max_norm: float) -> torch.Tensor:
    """``weight.renorm(2, 0, max_norm)``: each ``weight[i]`` rescaled to L2 norm at most
    ``max_norm``; a trace (ONNX has no renorm) records the same formula in elementary ops.

    >>> w = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
    >>> renorm(w, 1.0)
    tensor([[0.6000, 0.8000],
            [0.3000, 0.4000]])
    """
    if not torch.jit.is_tracing():
        return weight.renorm(p=2, dim=0, maxnorm=max_norm)
    norm = weight.flatten(1).norm(dim=1).view(-1, *([1] * (weight.ndim - 1)))
    return weight * torch.where(norm > max_norm, max_norm / (norm + 1e-7), torch.ones_like(norm))


class ConstrainedLinear(ConfigInit, nn.Module):
    """``x @ renorm(weight).T + bias`` with each output row of ``weight [out, in]`` rescaled
    to L2 norm at most ``max_norm`` in the forward (braindecode's ``LinearWithConstraint``)."""

    def __init__(self, d_in: int, d_out: int, max_norm: float, cfg: EncoderConfig):
        super().__init__()
        self.init_std, dtype = cfg.init_range, cfg.dtype
        self.max_norm = max_norm
        self.weight = nn.Parameter(torch.empty(d_out, d_in, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(d_out, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, renorm(self.weight, self.max_norm), self.bias)


class ChannelProjection(ConfigInit, nn.Module):
    """EEGPT's input channel mixing: a max-norm 1x1 ``Conv1d`` or a ``Linear`` over channels."""

    def __init__(self, kind: str, n_in: int, n_out: int, max_norm: float, cfg: EncoderConfig):
        super().__init__()
        self.init_std, dtype = cfg.init_range, cfg.dtype
        self.kind, self.max_norm = kind, max_norm
        shape = (n_out, n_in, 1) if kind == "conv1d_constraint" else (n_out, n_in)
        self.weight = nn.Parameter(torch.empty(*shape, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(n_out, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "linear":
            return F.linear(x.transpose(1, 2), self.weight, self.bias).transpose(1, 2)
        return F.conv1d(x, renorm(self.weight, self.max_norm), self.bias)


class SummaryProbe(nn.Module):
    """EEGPT's probe: each patch's summary tokens (the last ``embed_num`` of its
    ``n_chans + embed_num``) as ``[batch, patch, embed_num * d_model]`` -> ``probe1`` ->
    ``[batch, patch * hidden]`` -> ``probe2`` -> logits; ``hook_pooled`` fires on the summary
    tokens' final stream."""

    def __init__(
        self, cfg: EncoderConfig, patches: int, n_chans: int, embed_num: int, hidden, norms
    ):
        super().__init__()
        self.patches, self.n_chans = patches, n_chans
        self.probe1 = ConstrainedLinear(embed_num * cfg.d_model, hidden, norms[0], cfg)
        self.probe2 = ConstrainedLinear(patches * hidden, cfg.n_classes, norms[1], cfg)
        self.hook_pooled = HookPoint()  # [batch, patch, embed_num * d_model]

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        summaries = latent.unflatten(1, (self.patches, -1))[:, :, self.n_chans :].flatten(2)
        return self.probe2(self.probe1(self.hook_pooled(summaries)).flatten(1))


@checked
class HookedEEGPT(BraindecodeEncoder):
    """braindecode's ``EEGPT``, hooked (see the module docstring); built by
    `from_braindecode`.

    Hooks beyond the shared stack: ``hook_embed`` (the patch tokens and the summary tokens),
    ``hook_pos_embed`` (the channel embeddings added to the patch tokens; zero on summary
    tokens), ``head.hook_pooled``.

    Args:
        cfg: from `HookedEEGPT.config`.
        channel_ids: each (projected) channel's row of ``chan_embed`` (EEGPT's ``chans_id``).
        token_names: the names of the channels the tokens stand for (EEGPT's standard 19
            with a channel projection; the input's otherwise), or None.
        patch_size, patch_stride, embed_num: EEGPT's.
        chan_proj_type, n_chans_target, chan_conv_max_norm: EEGPT's channel projection.
        probe_hidden, probe_max_norms: the probe's hidden width and max norms.
        n_chan_embeddings: rows of ``chan_embed``.

    >>> cfg = HookedEEGPT.config(n_chans=3, n_times=32, n_outputs=2, patch_size=8,
    ...                          patch_stride=None, embed_num=2, embed_dim=16, depth=1,
    ...                          num_heads=2, chan_proj_type="none")
    >>> model = HookedEEGPT(cfg, channel_ids=[0, 1, 2], chan_proj_type="none", patch_size=8,
    ...                     patch_stride=None, embed_num=2)
    >>> model(model.example_input(2)).shape, model.layout.n_tokens  # 4 patches x (3 + 2)
    (torch.Size([2, 2]), 20)
    """

    tokenization = "custom"
    channel_index: torch.Tensor  # a buffer: each token channel's row of chan_embed

    def __init__(
        self,
        cfg: EncoderConfig,
        *,
        channel_ids: list[int],
        token_names: list[str] | None = None,
        patch_size: int = 64,
        patch_stride: int | None = 32,
        embed_num: int = 4,
        chan_proj_type: str = "conv1d_constraint",
        n_chans_target: int = 19,
        chan_conv_max_norm: float = 1.0,
        probe_hidden: int = 16,
        probe_max_norms: Sequence[float] = (1.0, 0.25),
        n_chan_embeddings: int = 62,
    ):
        check_choice(chan_proj_type, PROJECTIONS, "chan_proj_type")
        n_chans = n_chans_target if chan_proj_type != "none" else cfg.n_channels
        patches, pad = n_patches(cfg.n_samples, patch_size, patch_stride)
        if cfg.n_ctx != patches * (n_chans + embed_num):
            raise ArgumentError(
                f"HookedEEGPT: n_ctx={cfg.n_ctx} is not {patches} patches x ({n_chans} channels "
                f"+ {embed_num} summary tokens): build the config with HookedEEGPT.config(...)"
            )
        if len(channel_ids) != n_chans:
            raise ArgumentError(f"channel_ids must be {n_chans} rows, got {channel_ids!r}")
        super().__init__(cfg)
        self._init_kwargs = {
            "channel_ids": list(channel_ids),
            "token_names": None if token_names is None else list(token_names),
            "patch_size": patch_size,
            "patch_stride": patch_stride,
            "embed_num": embed_num,
            "chan_proj_type": chan_proj_type,
            "n_chans_target": n_chans_target,
            "chan_conv_max_norm": chan_conv_max_norm,
            "probe_hidden": probe_hidden,
            "probe_max_norms": list(probe_max_norms),
            "n_chan_embeddings": n_chan_embeddings,
        }
        self.n_patches, self.pad, self.n_token_channels, self.embed_num = (
            patches,
            pad,
            n_chans,
            embed_num,
        )
        d = cfg.d_model
        self.chan_proj = (
            ChannelProjection(chan_proj_type, cfg.n_channels, n_chans, chan_conv_max_norm, cfg)
            if chan_proj_type != "none"
            else None
        )
        stride = patch_stride or patch_size
        kw = layer_kw(cfg)
        self.patch_embed = ConfigConv2d(1, d, (1, patch_size), stride=(1, stride), **kw)
        self.chan_embed = ConfigEmbedding(n_chan_embeddings, d, **kw)
        self.summary_token = nn.Parameter(torch.zeros(1, embed_num, d, dtype=cfg.dtype))
        self.register_buffer("channel_index", torch.tensor(channel_ids), persistent=False)
        self.head = SummaryProbe(cfg, patches, n_chans, embed_num, probe_hidden, probe_max_norms)
        self._layout = self._make_layout(token_names)
        groups = tuple(self._layout.time)  # attention stays within a patch
        for block in self.blocks:
            block.attn.set_structure([HeadStructure((0, cfg.n_heads), groups=groups)], cfg.n_ctx)
        self._finish_init()

    def _make_layout(self, names: list[str] | None) -> TokenLayout:
        n, k, patches = self.n_token_channels, self.embed_num, self.n_patches
        # a patch's tokens: its channels', then its summary tokens (group CLS, no channel)
        group, channel = ("eeg",) * n + (CLS,) * k, tuple(range(n)) + (-1,) * k
        time = tuple(t for t in range(patches) for _ in group)
        names_ = None if names is None else tuple(names)
        return TokenLayout(group * patches, channel * patches, time, channel_names=names_)

    @staticmethod
    def config(
        *,
        n_chans: int,
        n_times: int,
        n_outputs: int,
        patch_size: int = 64,
        patch_stride: int | None = 32,
        embed_num: int = 4,
        embed_dim: int = 512,
        depth: int = 8,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        layer_norm_eps: float = 1e-6,
        chan_proj_type: str = "conv1d_constraint",
        n_chans_target: int = 19,
        ch_names: list[str] | None = None,
        dtype: torch.dtype = torch.float32,
        **overrides: Any,
    ) -> EncoderConfig:
        """The `EncoderConfig` of a braindecode ``EEGPT`` built with these arguments."""
        patches, _ = n_patches(n_times, patch_size, patch_stride)
        token_chans = n_chans if chan_proj_type == "none" else n_chans_target
        sizes = {
            "d_model": embed_dim,
            "d_head": embed_dim // num_heads,
            "n_heads": num_heads,
            "n_layers": depth,
            "d_mlp": int(embed_dim * mlp_ratio),
            "act_fn": "gelu",
            "eps": layer_norm_eps,
            "tokenization": "custom",
            "n_ctx": patches * (token_chans + embed_num),
            "zero_biases": [] if qkv_bias else ["b_Q", "b_K", "b_V"],
            "positional_embedding_type": "none",
        }
        return eeg_config(n_chans, n_times, n_outputs, ch_names, dtype, {**sizes, **overrides})

    def init_weights(self) -> None:
        super().init_weights()
        # drawn again, last: the order of draws it has always had (its seeded weights kept)
        self.draw_parameter("summary_token", self.summary_token)

    def embed_signals(
        self, signals: Float[torch.Tensor, "batch channel time"]
    ) -> Float[torch.Tensor, "batch pos d_model"]:
        batch = signals.shape[0]
        x = signals if self.chan_proj is None else self.chan_proj(signals)
        x = F.pad(x, (0, self.pad))
        patches = self.patch_embed(x[:, None])  # [batch, d_model, channel, patch]
        patches = rearrange(patches, "batch d chan patch -> batch patch chan d")
        summary = self.summary_token[:, None].expand(batch, self.n_patches, -1, -1)
        tokens = torch.cat((patches, summary), dim=2).flatten(1, 2)  # patch-major
        chan = self.chan_embed.weight[self.channel_index]  # [chan, d]
        pos = F.pad(chan, (0, 0, 0, self.embed_num)).repeat(self.n_patches, 1)
        return self.hook_embed(tokens) + self.hook_pos_embed(pos[None].expand(batch, -1, -1))

    no_unembedding = (
        "its probe reads every patch's summary tokens through two linear maps, a different "
        "direction per patch and summary token, not one column per class (see "
        "emg_lens.models.converted.braindecode.eegpt)"
    )

    def to_braindecode(self) -> dict[str, torch.Tensor]:
        """This model's weights as the state dict of braindecode's ``EEGPT`` built with the same
        arguments."""
        table = key_table(self.cfg.n_heads, self._init_kwargs["chan_proj_type"])
        return table.to_theirs(self.state_dict()) | {"chans_id": self.channel_index[None].clone()}


def key_table(n_heads: int, chan_proj_type: str) -> keys.KeyTable:
    """emg_lens key <-> braindecode ``EEGPT`` key, both ways (`KeyTable`)."""
    enc, attn = "target_encoder", "blocks.{l}.attn"
    layer = f"{enc}.blocks.{{l}}"
    constrained = "parametrizations.weight.original"  # a max-norm weight, as torch saves it
    proj = "chan_proj.proj." + ("weight" if chan_proj_type == "linear" else constrained)
    return keys.KeyTable(
        [
            keys.Row("chan_proj.weight", proj),
            keys.Row("chan_proj.bias", "chan_proj.proj.bias"),
            keys.Row("summary_token", f"{enc}.summary_token"),
            keys.Row("patch_embed.{*}", f"{enc}.patch_embed.proj.{{*}}"),
            keys.Row("chan_embed.weight", f"{enc}.chan_embed.weight"),
            *keys.norm_rows(("blocks.{l}.ln1", f"{layer}.norm1")),
            *keys.qkv_rows(attn, f"{layer}.attn.qkv.weight", n_heads),
            *keys.qkv_rows(attn, f"{layer}.attn.qkv.bias", n_heads, bias=True),
            keys.Row(f"{attn}.W_O", f"{layer}.attn.proj.weight", keys.HeadsOut(n_heads)),
            keys.Row(f"{attn}.b_O", f"{layer}.attn.proj.bias"),
            *keys.norm_rows(("blocks.{l}.ln2", f"{layer}.norm2")),
            *keys.linear_rows("blocks.{l}.mlp", f"{layer}.mlp.fc1"),
            *keys.linear_rows("blocks.{l}.mlp", f"{layer}.mlp.fc2", "W_out", "b_out"),
            *keys.norm_rows(("ln_final", f"{enc}.norm")),
            keys.Row("head.{*}.weight", f"final_layer.{{*}}.{constrained}"),
            keys.Row("head.{*}.bias", "final_layer.{*}.bias"),
        ]
    )


def _probe_layer(linear: Any) -> bool:
    constrained = any(c.__name__ == "LinearWithConstraint" for c in type(linear).__mro__)
    return constrained and hasattr(linear, "parametrizations") and linear.bias is not None


PARTS: Parts = [
    (
        "final_layer",
        lambda probe: type(probe).__name__ == "_LinearConstraintProbe",
        "EEGPT's classification probe, _LinearConstraintProbe (not return_encoder_output=True)",
    ),
    *(
        (f"final_layer.{name}", _probe_layer, "braindecode's LinearWithConstraint with a bias")
        for name in ("probe1", "probe2")
    ),
    (
        "target_encoder.patch_embed",
        lambda patch: type(patch).__name__ == "_PatchEmbed" and not getattr(patch, "apply_norm", 0),
        "braindecode's _PatchEmbed without apply_norm",
    ),
]
"""What `from_eegpt` reads (`check_parts`)."""


def _check_supported(model: Braindecode) -> None:
    check_parts(model, PARTS)
    blocks = model.target_encoder.blocks
    for i, block in enumerate(blocks):
        path, attn = f"target_encoder.blocks.{i}", block.attn
        act = activation_name(block.mlp.act, f"{path}.mlp.act")
        if act != "gelu" or attn.use_rope or attn.is_causal:
            raise ConversionError(
                f"{path} has act={act!r}, use_rope={attn.use_rope}, is_causal={attn.is_causal}; "
                "supported: EEGPT's blocks ('gelu', the exact GELU; no RoPE; not causal)",
                path=path,
            )


def _eps(model: Braindecode) -> float:
    norms = per_layer(model, "target_encoder.blocks", "norm1", "norm2")
    return eps_of([*norms, ("target_encoder.norm", model.target_encoder.norm)], "EEGPT")


FIELDS = {
    "n_outputs": "final_layer.probe2.out_features",
    "patch_size": "target_encoder.patch_embed.patch_size",
    "patch_stride": "target_encoder.patch_embed.patch_stride",
    **{name: name for name in ("embed_num", "embed_dim", "num_heads", "n_chans_target")},
    "depth": lambda model: len(model.target_encoder.blocks),
    "d_mlp": "target_encoder.blocks.0.mlp.fc1.out_features",
    "qkv_bias": lambda model: model.target_encoder.blocks[0].attn.qkv.bias is not None,
    "layer_norm_eps": _eps,
    "chan_proj_type": "chan_proj_type",
}
"""How ``HookedEEGPT.config``'s arguments are read off braindecode's ``EEGPT``."""


def from_eegpt(model: Braindecode, ch_names: list[str] | None = None) -> HookedEEGPT:
    """A braindecode ``EEGPT`` instance as a `HookedEEGPT` with its weights, in eval mode."""
    _check_supported(model)
    fields = read_config(model, FIELDS, ch_names)
    cfg = HookedEEGPT.config(**fields)
    proj_type, n_chans = fields["chan_proj_type"], fields["n_chans"]
    ids = model.chans_id.reshape(-1).tolist()
    token_chans = n_chans if proj_type == "none" else model.n_chans_target
    if len(ids) != token_chans:
        raise ConversionError(
            f"EEGPT.chans_id names {len(ids)} channels but its encoder sees {token_chans} "
            f"(chan_proj_type={proj_type!r}): its own forward fails (with a channel projection, "
            "n_chans_target must be its 19 standard channels)"
        )
    names = fields["ch_names"]
    if proj_type == "none" and names is not None and (why := misnamed_channel(model, names)):
        raise ConversionError(why)
    probe, encoder = model.final_layer, model.target_encoder
    hooked = HookedEEGPT(
        cfg,
        channel_ids=ids,
        token_names=list(model.channel_names) if proj_type != "none" else fields["ch_names"],
        patch_size=fields["patch_size"],
        patch_stride=fields["patch_stride"],
        embed_num=model.embed_num,
        chan_proj_type=proj_type,
        n_chans_target=model.n_chans_target,
        chan_conv_max_norm=(
            model.chan_proj.proj.max_norm if proj_type == "conv1d_constraint" else 1.0
        ),
        probe_hidden=probe.probe1.out_features,
        probe_max_norms=(probe.probe1.max_norm, probe.probe2.max_norm),
        n_chan_embeddings=encoder.chan_embed.num_embeddings,
    )
    key_table(cfg.n_heads, proj_type).load(model.state_dict(), hooked, "from_braindecode(EEGPT)")
    return hooked.eval()
