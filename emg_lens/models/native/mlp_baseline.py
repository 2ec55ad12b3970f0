"""The IsoNet paper's multimodal MLP baseline: no tokens and no attention.

`MultimodalMLP`'s modalities meet only in one shared fusion layer. With no attention it is a
`HookedBiosignalModel`, not a `HookedEncoder`.

>>> model = MultimodalMLP(MultimodalMLP.default_config("tiny", seed=0))
>>> model(model.example_input(2)).shape
torch.Size([2, 4])
"""

from __future__ import annotations

import math
from typing import Any

import torch
from einops import einsum, rearrange
from jaxtyping import Float
from torch import nn
from transformer_lens.hook_points import HookPoint

from emg_lens.components import ClassifierHead, ConfigInit
from emg_lens.config import EncoderConfig
from emg_lens.errors import check_choice, checked
from emg_lens.layout import TokenLayout
from emg_lens.models.base import (
    ATTENTION_HOOKS,
    LAYERWISE,
    LINEAR_READOUT,
    TL_WEIGHTS,
    EdgeMasks,
    HookedBiosignalModel,
    require,
)

PAPER_MLP_WIDTH = 200  # the paper's MLP baseline: 200-D layers


class DenseLayer(ConfigInit, nn.Module):
    """``post = relu(x W + b)`` with ``W [d_in, d_out]``, firing ``hook_pre`` and ``hook_post``;
    dropout (training only) acts before ``hook_post``. ``W`` is He-normal (``std =
    sqrt(2 / d_in)``), ``b`` 0.

    >>> DenseLayer(10, 3)(torch.randn(2, 10)).shape
    torch.Size([2, 3])
    """

    def __init__(
        self, d_in: int, d_out: int, dropout: float = 0.0, dtype: torch.dtype = torch.float32
    ):
        super().__init__()
        self.init_std = math.sqrt(2.0 / d_in)
        self.W = nn.Parameter(torch.empty(d_in, d_out, dtype=dtype))
        self.b = nn.Parameter(torch.zeros(d_out, dtype=dtype))
        self.dropout = nn.Dropout(dropout)
        self.hook_pre = HookPoint()  # [batch, d_out]
        self.hook_post = HookPoint()  # [batch, d_out]

    def forward(self, x: Float[torch.Tensor, "batch d_in"]) -> Float[torch.Tensor, "batch d_out"]:
        pre = self.hook_pre(einsum(x, self.W, "batch d_in, d_in d_out -> batch d_out") + self.b)
        return self.hook_post(self.dropout(torch.relu(pre)))


class ModalityMLP(nn.Module):
    """One modality's head: its ``[channel, time]`` window flattened (``hook_input``), then two
    `DenseLayer` s of width ``d_hidden`` (``layers.0``, ``layers.1``).

    >>> head = ModalityMLP(n_channels=2, n_samples=8, d_hidden=5)
    >>> head(torch.randn(3, 2, 8)).shape
    torch.Size([3, 5])
    """

    def __init__(
        self,
        n_channels: int,
        n_samples: int,
        d_hidden: int,
        dropout: float = 0.0,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.n_channels = n_channels
        self.hook_input = HookPoint()  # [batch, channel * time]
        self.layers = nn.ModuleList(
            [
                DenseLayer(n_channels * n_samples, d_hidden, dropout, dtype),
                DenseLayer(d_hidden, d_hidden, dropout, dtype),
            ]
        )

    def forward(
        self, signals: Float[torch.Tensor, "batch channel time"]
    ) -> Float[torch.Tensor, "batch d_hidden"]:
        x = self.hook_input(rearrange(signals, "batch channel time -> batch (channel time)"))
        for layer in self.layers:
            x = layer(x)
        return x


@checked
class MultimodalMLP(HookedBiosignalModel):
    """The multimodal MLP baseline: no tokens, no attention.

    One `ModalityMLP` head per modality (``heads.{modality}``: ``hook_input``, then two
    Linear+ReLU layers of width ``d_hidden``, the paper's 200, or ``d_model`` when ``None``); the
    heads' outputs stacked as ``hook_embed [batch, modality, d_hidden]`` — one "token" per
    modality, which is what ``layout`` describes; concatenated into the shared Linear+ReLU layer
    ``fusion`` (``hook_pre``, ``hook_post``), the only place modalities meet; then the
    classifier (``classifier.hook_pooled``). ``return_type=None`` gives the fusion output.

    Weights are He-normal (`DenseLayer`), not ``init_range``, which suits attention stacks but
    would starve a wide first layer.

    >>> model = MultimodalMLP(EncoderConfig.preset("tiny", seed=0))
    >>> logits, cache = model.run_with_cache(model.example_input(3))
    >>> logits.shape, cache["hook_embed"].shape
    (torch.Size([3, 4]), torch.Size([3, 2, 16]))
    >>> model.layout.group
    ('emg', 'acc')
    """

    def __init__(self, cfg: EncoderConfig):
        super().__init__(cfg)
        d_hidden = self.d_hidden
        self.heads = nn.ModuleDict(
            {
                name: ModalityMLP(count, cfg.n_samples, d_hidden, cfg.dropout, cfg.dtype)
                for name, count in cfg.modalities.items()
            }
        )
        self.hook_embed = HookPoint()  # [batch, modality, d_hidden]
        self.fusion = DenseLayer(len(cfg.modalities) * d_hidden, d_hidden, cfg.dropout, cfg.dtype)
        # N(0, 1 / fan_in): the classifier has no ReLU after it
        self.classifier = ClassifierHead(cfg, d_in=d_hidden, init_std=math.sqrt(1.0 / d_hidden))
        n = len(cfg.modalities)
        self._layout = TokenLayout(
            tuple(cfg.modalities),
            (-1,) * n,
            (-1,) * n,
            None if cfg.channel_names is None else tuple(cfg.channel_names),
        )
        self._finish_init()

    @classmethod
    def default_config(cls, preset: str = "tiny", **overrides: Any) -> EncoderConfig:
        """A preset with the paper's 200-D layers for ``"paper"`` (else ``d_model``).

        >>> MultimodalMLP.default_config("paper").d_hidden
        200
        """
        defaults = {"d_hidden": PAPER_MLP_WIDTH} if preset == "paper" else {}
        return EncoderConfig.preset(preset, **{**defaults, **overrides})

    @property
    def d_hidden(self) -> int:
        return self.cfg.d_hidden or self.cfg.d_model

    @property
    def layout(self) -> TokenLayout:
        """One position per modality: the rows of ``hook_embed`` (channel and time -1)."""
        return self._layout

    @property
    def W_U(self) -> Float[torch.Tensor, "d_hidden n_classes"]:
        """The classifier's weights on the fusion output; not a TransformerLens unembedding
        (there is no residual stream): ``unembed`` and `tokens_to_residual_directions` refuse."""
        return self.classifier.W_U

    def lacks(self, feature: str) -> str | None:
        """Why it provides no capability (`emg_lens.models.base.require` says it): dense
        layers, no attention, no residual stream."""
        if feature in (TL_WEIGHTS, LINEAR_READOUT):
            return (
                "it has no shared stack `blocks` and no residual stream (no ln_final), so no "
                "TransformerLens weights or unembedding: its classifier (model.W_U, "
                "model.classifier.b_U) reads the fusion layer's output, cache['fusion.hook_post']"
            )
        return "it has no attention layers"

    def forward(
        self,
        signals: Any,
        *,
        return_type: str | None = "logits",
        start_at_layer: int | None = None,
        stop_at_layer: int | None = None,
        edge_masks: EdgeMasks | None = None,
    ) -> Float[torch.Tensor, "batch out"]:
        """Signals -> logits ``[batch, n_classes]`` (or, with ``return_type=None``, the fusion
        output ``[batch, d_hidden]``). The transformer-only arguments exist so that code
        written for every model can pass them; anything but ``None`` (or no edge mask) is
        refused as `require` refuses a capability the model lacks.
        """
        for name, value, feature in (
            ("start_at_layer", start_at_layer, LAYERWISE),
            ("stop_at_layer", stop_at_layer, LAYERWISE),
            ("edge_masks", edge_masks or None, ATTENTION_HOOKS),
        ):
            if value is not None:
                require(self, feature, f"forward({name}=...)")
        check_choice(return_type, ("logits", None), "MultimodalMLP return_type")
        signals = self.hook_input(self.to_tokens(signals))
        hidden, first = [], 0
        for name, n_channels in self.cfg.modalities.items():  # the heads' order
            hidden.append(self.heads[name](signals[:, first : first + n_channels]))
            first += n_channels
        embed = self.hook_embed(torch.stack(hidden, dim=1))
        fused = self.fusion(
            rearrange(embed, "batch modality d_hidden -> batch (modality d_hidden)")
        )
        if return_type is None:
            return fused
        return self.classifier(fused)
