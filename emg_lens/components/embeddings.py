"""Token embeddings for channel tokens, learned positions, and classifier heads."""

from __future__ import annotations

import torch
from einops import einsum, rearrange, repeat
from jaxtyping import Float, Shaped
from torch import nn
from transformer_lens.hook_points import HookPoint

from emg_lens._hints import checked
from emg_lens.components.init import ConfigInit
from emg_lens.config import EncoderConfig


def cut_patches(
    signals: Shaped[torch.Tensor, "batch channel time"], n_patches: int
) -> Shaped[torch.Tensor, "batch channel patch sample"]:
    """Each channel's window cut into ``n_patches`` patches of consecutive samples (a view).

    >>> cut_patches(torch.arange(8.0).view(1, 2, 4), 2)[0, 1].tolist()  # channel 1
    [[4.0, 5.0], [6.0, 7.0]]
    """
    return rearrange(
        signals, "batch channel (patch sample) -> batch channel patch sample", patch=n_patches
    )


def cls_token_parameter(cfg: EncoderConfig) -> nn.Parameter | None:
    """A learned CLS token ``[d_model]`` (drawn by its module's `ConfigInit` rule) when
    ``cfg.use_cls_token``, else None.

    >>> cls_token_parameter(EncoderConfig.preset("tiny")).shape
    torch.Size([16])
    """
    if not cfg.use_cls_token:
        return None
    return nn.Parameter(torch.empty(cfg.d_model, dtype=cfg.dtype))


def prepend_cls_token(
    tokens: Float[torch.Tensor, "batch pos d_model"],
    cls_token: Float[torch.Tensor, " d_model"] | None,
) -> Float[torch.Tensor, "batch new_pos d_model"]:
    """``tokens`` after ``cls_token`` (position 0 of every sequence); ``tokens`` themselves
    without one.

    >>> prepend_cls_token(torch.zeros(2, 3, 4), torch.ones(4))[:, :, 0].tolist()
    [[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]
    """
    if cls_token is None:
        return tokens
    cls = repeat(cls_token, "d_model -> batch 1 d_model", batch=tokens.shape[0])
    return torch.cat((cls, tokens), dim=1)


@checked
class ChannelEmbed(ConfigInit, nn.Module):
    """One linear map per channel from a patch of samples to a token (no mixing across
    channels before attention), plus an optional learned CLS token at position 0; with
    ``shared``, one map for every channel (TinyMyo's patch embedding).

    ``W_E [n_channels, token_samples, d_model]``, ``b_E [n_channels, d_model]`` (shared:
    ``W_E [token_samples, d_model]``, ``b_E [d_model]``), ``cls_token [d_model]``. Tokens are
    channel-major: channel ``c``, patch ``t`` sits at ``cls + c * n_patches + t``.

    >>> embed = ChannelEmbed(EncoderConfig.preset("tiny"))
    >>> embed(torch.randn(2, 6, 8)).shape
    torch.Size([2, 7, 16])
    >>> embed = ChannelEmbed(EncoderConfig.preset("tinymyo"), shared=True)
    >>> embed(torch.randn(2, 16, 1000)).shape, tuple(embed.W_E.shape)
    (torch.Size([2, 800, 192]), (20, 192))
    """

    def __init__(self, cfg: EncoderConfig, shared: bool = False):
        super().__init__()
        self.init_std = cfg.init_range
        self.n_patches = cfg.n_patches
        self.shared = shared
        per_channel = () if shared else (cfg.n_channels,)
        self.W_E = nn.Parameter(
            torch.empty(*per_channel, cfg.token_samples, cfg.d_model, dtype=cfg.dtype)
        )
        self.b_E = nn.Parameter(torch.zeros(*per_channel, cfg.d_model, dtype=cfg.dtype))
        self.cls_token = cls_token_parameter(cfg)

    def forward(
        self, signals: Float[torch.Tensor, "batch channel time"]
    ) -> Float[torch.Tensor, "batch pos d_model"]:
        patches = cut_patches(signals, self.n_patches)
        if self.shared:  # one matrix product over every channel's patches, channel-major
            tokens = patches.flatten(1, 2) @ self.W_E + self.b_E
        else:
            tokens = (
                einsum(
                    patches,
                    self.W_E,
                    "batch channel patch sample, channel sample d_model "
                    "-> batch channel patch d_model",
                )
                + self.b_E[:, None, :]
            )
            tokens = rearrange(
                tokens, "batch channel patch d_model -> batch (channel patch) d_model"
            )
        return prepend_cls_token(tokens, self.cls_token)


class PosEmbed(ConfigInit, nn.Module):
    """Learned absolute position (here: token identity) embedding ``W_pos [n_ctx, d_model]``.

    >>> PosEmbed(EncoderConfig.preset("tiny"))(batch=3).shape
    torch.Size([3, 7, 16])
    """

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.init_std = cfg.init_range
        self.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model, dtype=cfg.dtype))

    def forward(self, batch: int) -> Float[torch.Tensor, "batch pos d_model"]:
        return repeat(self.W_pos, "pos d_model -> batch pos d_model", batch=batch)


@checked
class ClassifierHead(ConfigInit, nn.Module):
    """``logits = pooled @ W_U + b_U`` with ``W_U [d_model, n_classes]``; fires
    ``hook_pooled`` on the pooled vector, so attribution can project onto ``W_U`` directly.
    ``W_U`` is drawn from N(0, ``init_std``): the config's ``init_range`` unless given.

    >>> ClassifierHead(EncoderConfig.preset("tiny"))(torch.randn(2, 16)).shape
    torch.Size([2, 4])
    """

    def __init__(self, cfg: EncoderConfig, d_in: int | None = None, init_std: float | None = None):
        super().__init__()
        self.init_std = cfg.init_range if init_std is None else init_std
        d_in = d_in or cfg.d_model
        self.W_U = nn.Parameter(torch.empty(d_in, cfg.n_classes, dtype=cfg.dtype))
        self.b_U = nn.Parameter(torch.zeros(cfg.n_classes, dtype=cfg.dtype))
        self.hook_pooled = HookPoint()  # [batch, d_in]

    def forward(
        self, pooled: Float[torch.Tensor, "batch d_in"]
    ) -> Float[torch.Tensor, "batch n_classes"]:
        return self.hook_pooled(pooled) @ self.W_U + self.b_U
