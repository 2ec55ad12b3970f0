"""The IsoNet paper's tubelet-transformer fusion baselines, and the stems they share.

In cross-modal mixing they sit between `MultimodalMLP` (no tokens, no attention) and IsoNet:
`MultimodalTransformer` has one transformer *stem* per modality (`ModalityStem`, hook names
``stems.{modality}.…``, docs/DESIGN.md §2) and linear fusion, so attention never mixes
modalities; `HierarchicalTransformer` adds a fusion stack ``blocks`` over both streams, where
alone its cross-modal edges live (``edge_masks=``; the stems' are ``stem_edge_masks=``).

Every modality's CLS token has group ``"cls"`` (`tubelet_layout`), so the CLS rule of
docs/DESIGN.md §3 applies unchanged: a group such as ``"cls_emg"`` would count as a modality,
making every CLS <-> tubelet edge of a stem "cross-modal".

>>> cfg = HierarchicalTransformer.default_config("tiny", seed=0)
>>> model = HierarchicalTransformer(cfg)
>>> model(model.example_input(2)).shape
torch.Size([2, 4])
>>> print(model.layout)
TokenLayout: 6 tokens
  group  tokens  positions
  cls         2  0..3
  emg         2  1..2
  acc         2  4..5
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from einops import einsum, rearrange
from jaxtyping import Float
from torch import nn
from transformer_lens.hook_points import HookPoint

from emg_lens.components import ClassifierHead, ConfigInit, PosEmbed, TransformerBlock
from emg_lens.components.embeddings import cls_token_parameter, cut_patches, prepend_cls_token
from emg_lens.config import PRESETS, EncoderConfig
from emg_lens.errors import (
    ConfigError,
    UnsupportedFeatureError,
    check_choice,
    check_int,
    checked,
)
from emg_lens.layout import CLS, TokenLayout
from emg_lens.models.base import EdgeMasks, HookedEncoder

PAPER_TUBELET_SAMPLES = 40  # the paper's tubelets: 40 samples (20 ms at 2 kHz)


def _preset_value(preset: str, overrides: Mapping[str, Any], name: str) -> Any:
    """A field's value in ``preset`` with ``overrides``, before the config is built."""
    if name in overrides:
        return overrides[name]
    if preset in PRESETS and name in PRESETS[preset]:
        return PRESETS[preset][name]
    return EncoderConfig.__dataclass_fields__[name].default


def _tubelet_overrides(preset: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``tokenization="tubelet"`` and the paper's 40-sample tubelets where they divide the
    window (else 4 in "tiny", whose 8-sample window makes two tubelets, or the preset's own
    ``patch_samples``)."""
    n_samples = _preset_value(preset, overrides, "n_samples")
    out: dict[str, Any] = {"tokenization": "tubelet"}
    if isinstance(n_samples, int) and n_samples % PAPER_TUBELET_SAMPLES == 0:
        out["patch_samples"] = PAPER_TUBELET_SAMPLES
    elif preset == "tiny":
        out["patch_samples"] = 4
    return out


def tubelet_layout(
    modalities: Mapping[str, int],
    *,
    n_patches: int = 1,
    cls_token: bool = True,
    channel_names: Sequence[str] | None = None,
) -> TokenLayout:
    """The layout of per-modality token streams: per modality, a CLS token (group ``"cls"``)
    then one tubelet token per patch (group = modality, channel -1, time = tubelet index).
    ``channel_names`` are kept on the layout, though no tubelet embeds a single channel.

    >>> layout = tubelet_layout({"emg": 12, "acc": 36}, n_patches=2)
    >>> layout.group
    ('cls', 'emg', 'emg', 'cls', 'acc', 'acc')
    >>> layout.channel, layout.time
    ((-1, -1, -1, -1, -1, -1), (-1, 0, 1, -1, 0, 1))
    """
    group: list[str] = []
    time: list[int] = []
    for name in modalities:
        if cls_token:
            group.append(CLS)
            time.append(-1)
        group.extend([name] * n_patches)
        time.extend(range(n_patches))
    names = None if channel_names is None else tuple(channel_names)
    return TokenLayout(tuple(group), (-1,) * len(group), tuple(time), names)


class TubeletEmbed(ConfigInit, nn.Module):
    """Tubelet tokens of one modality: all its channels over ``patch_samples`` consecutive
    samples, flattened and linearly embedded, after an optional learned CLS token.

    ``W_E [channel, sample, d_model]`` (the flattened linear map, kept per channel so its
    weights can be read per electrode), ``b_E [d_model]``, ``cls_token [d_model]``.

    >>> cfg = EncoderConfig.preset("tiny", tokenization="tubelet", patch_samples=4)
    >>> TubeletEmbed(cfg, n_channels=2)(torch.randn(3, 2, 8)).shape  # CLS + 2 tubelets
    torch.Size([3, 3, 16])
    """

    def __init__(self, cfg: EncoderConfig, n_channels: int):
        super().__init__()
        self.init_std = cfg.init_range
        self.n_patches = cfg.n_patches
        self.W_E = nn.Parameter(
            torch.empty(n_channels, cfg.token_samples, cfg.d_model, dtype=cfg.dtype)
        )
        self.b_E = nn.Parameter(torch.zeros(cfg.d_model, dtype=cfg.dtype))
        self.cls_token = cls_token_parameter(cfg)

    def forward(
        self, signals: Float[torch.Tensor, "batch channel time"]
    ) -> Float[torch.Tensor, "batch pos d_model"]:
        tubelets = cut_patches(signals, self.n_patches).transpose(1, 2)  # patch-major
        tokens = (
            einsum(
                tubelets,
                self.W_E,
                "batch patch channel sample, channel sample d_model -> batch patch d_model",
            )
            + self.b_E
        )
        return prepend_cls_token(tokens, self.cls_token)


class ModalityStem(nn.Module):
    """One modality's stem: tubelet embedding (+ CLS), learned positions, then
    ``cfg.n_stem_layers`` pre-LN blocks with the usual hook names.

    Returns the stem's final residual stream (no final LayerNorm: the fusion stage's blocks
    normalise their inputs, and the readout applies the model's ``ln_final``).

    >>> cfg = EncoderConfig.preset("tiny", tokenization="tubelet", patch_samples=4)
    >>> stem = ModalityStem(cfg, "emg")
    >>> stem(torch.randn(3, 2, 8)).shape, len(stem.blocks)
    (torch.Size([3, 3, 16]), 2)
    """

    def __init__(self, cfg: EncoderConfig, modality: str):
        super().__init__()
        self.modality = modality
        self.n_channels = cfg.modalities[modality]
        # A single-modality tubelet config: its n_ctx is this stem's token count.
        names = None
        if cfg.channel_names is not None:
            first = sum(list(cfg.modalities.values())[: list(cfg.modalities).index(modality)])
            names = cfg.channel_names[first : first + self.n_channels]
        stem_cfg = dataclasses.replace(
            cfg, modalities={modality: self.n_channels}, n_ctx=-1, channel_names=names
        )
        self.n_tokens = stem_cfg.n_tokens
        self.embed = TubeletEmbed(cfg, self.n_channels)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        self.pos_embed = PosEmbed(stem_cfg)
        self.hook_pos_embed = HookPoint()  # [batch, pos, d_model]
        self.blocks = nn.ModuleList(TransformerBlock(cfg, i) for i in range(cfg.n_stem_layers))

    def forward(
        self,
        signals: Float[torch.Tensor, "batch channel time"],
        edge_masks: EdgeMasks | None = None,
    ) -> Float[torch.Tensor, "batch pos d_model"]:
        edge_masks = edge_masks or {}
        embed = self.hook_embed(self.embed(signals))
        pos_embed = self.hook_pos_embed(self.pos_embed(signals.shape[0]))
        resid = embed + pos_embed
        for layer, block in enumerate(self.blocks):
            resid = block(resid, edge_masks.get(layer))
        return resid


class _StemFusionEncoder(HookedEncoder):
    """Shared machinery of the two tubelet transformers: stems, concatenation, readout."""

    tokenization = "tubelet"
    takes = (("positional_embedding_type", ("standard",)),)  # learned positions, per stem

    def __init__(self, cfg: EncoderConfig):
        super().__init__(cfg)
        self.stems = nn.ModuleDict({name: ModalityStem(cfg, name) for name in cfg.modalities})
        self.hook_embed = HookPoint()  # [batch, pos, d_model]: the stems' outputs, concatenated
        self.classifier = ClassifierHead(cfg, d_in=len(cfg.modalities) * cfg.d_model)
        self._layout = tubelet_layout(
            cfg.modalities,
            n_patches=cfg.n_patches,
            cls_token=cfg.use_cls_token,
            channel_names=cfg.channel_names,
        )
        starts = np.cumsum([0] + [stem.n_tokens for stem in self.stems.values()])
        self._stem_slices = {
            name: slice(int(lo), int(hi))
            for name, lo, hi in zip(cfg.modalities, starts, starts[1:])
        }
        self._finish_init()

    @property
    def stem_positions(self) -> dict[str, list[int]]:
        """Token positions of each stem's stream (its CLS token and its tubelets)."""
        return {name: list(range(s.start, s.stop)) for name, s in self._stem_slices.items()}

    @property
    def cls_positions(self) -> dict[str, int]:
        """Position of each modality's CLS token (all of group ``"cls"``); empty without CLS."""
        if not self.cfg.use_cls_token:
            return {}
        return {name: s.start for name, s in self._stem_slices.items()}

    @property
    def W_U(self) -> Float[torch.Tensor, "modality_d_model n_classes"]:
        """The linear-fusion classifier: ``[n_modalities * d_model, n_classes]``, one
        ``d_model`` block per modality in ``cfg.modalities`` order. Not a TransformerLens
        unembedding (see `_unembedding`): ``unembed`` and `tokens_to_residual_directions`
        refuse."""
        return self.classifier.W_U

    def _ln_final_readers(self) -> list[tuple[nn.Parameter, nn.Parameter]]:
        return [(self.classifier.W_U, self.classifier.b_U)]

    def _unembedding(self) -> nn.Module:
        what = "CLS token" if self.cfg.use_cls_token else "tubelets' mean"
        raise UnsupportedFeatureError(
            f"{type(self).__name__} has no TransformerLens unembedding (each modality's {what} "
            "reads its own d_model block of W_U): use the per-position map, "
            "emg_lens.inspect.attribution.readout_map(model)"
        )

    # ------------------------------------------------------------------ embedding and readout
    def embed_signals(
        self,
        signals: Float[torch.Tensor, "batch channel time"],
        stem_edge_masks: EdgeMasks | None = None,
    ) -> Float[torch.Tensor, "batch pos d_model"]:
        """Run every stem on its modality's channels; concatenate their outputs (``hook_embed``,
        the residual stream entering ``blocks.0``).

        ``stem_edge_masks`` (a `forward` keyword too): ``{stem layer: bool mask}`` over the
        whole layout (``[..., n_tokens, n_tokens]``, True = masked), of which every stem applies
        its own diagonal block (so ``within("emg")`` reaches the EMG stem). The stems are the
        embedding: ``start_at_layer`` and ``edge_masks`` act on the fusion stack after them.
        """
        masks = self._check_edge_masks(
            stem_edge_masks, batch=len(signals), size_field="n_stem_layers", what="stem_edge_masks"
        )
        streams, first = [], 0
        for name, n_channels in self.cfg.modalities.items():  # the stems' order
            pos = self._stem_slices[name]
            stem_masks = {layer: mask[..., pos, pos] for layer, mask in masks.items()}
            streams.append(self.stems[name](signals[:, first : first + n_channels], stem_masks))
            first += n_channels
        return self.hook_embed(torch.cat(streams, dim=1))

    def readout(
        self, resid: Float[torch.Tensor, "batch pos d_model"], return_type: str
    ) -> Float[torch.Tensor, "batch n_classes"]:
        """``ln_final``, then each modality's CLS vector (or, without CLS tokens, the mean of
        its tubelets), concatenated and classified linearly (``classifier.hook_pooled``)."""
        check_choice(return_type, ("logits",), f"{type(self).__name__} return_type")
        normalized = self.ln_final(resid)
        if self.cfg.use_cls_token:
            pooled = normalized[:, list(self.cls_positions.values())]
        else:
            pooled = torch.stack(
                [normalized[:, s].mean(dim=1) for s in self._stem_slices.values()], dim=1
            )
        return self.classifier(
            rearrange(pooled, "batch modality d_model -> batch (modality d_model)")
        )

    # ------------------------------------------------------------------ the protocol's readings
    def _readout_refusal(self) -> str | None:
        return None  # a linear map, though no unembedding: see readout_map

    def readout_map(
        self, head: str = "logits"
    ) -> tuple[Float[torch.Tensor, "pos d_model n_classes"], Float[torch.Tensor, " n_classes"]]:
        """Each modality's CLS token (or the mean of its tubelets) times that modality's
        ``d_model`` block of ``W_U``.

        >>> model = HierarchicalTransformer(HierarchicalTransformer.default_config("tiny"))
        >>> R, b_U = model.readout_map()
        >>> R.shape, int(R.abs().sum((1, 2)).gt(0).sum())  # the 2 modalities' CLS tokens
        (torch.Size([6, 16, 4]), 2)
        """
        self._check_readout_head(head)
        R = self._empty_readout_map()
        d_model = self.cfg.d_model
        blocks = rearrange(self.classifier.W_U, "(modality d) c -> modality d c", d=d_model)
        for m, (name, positions) in enumerate(self.stem_positions.items()):
            if self.cfg.use_cls_token:
                R[self.cls_positions[name]] = blocks[m]
            else:
                R[positions] = blocks[m] / len(positions)
        return R.detach(), self.classifier.b_U.detach()


@checked
class MultimodalTransformer(_StemFusionEncoder):
    """Per-modality tubelet transformers with linear fusion; no cross-modal attention anywhere.

    Needs ``tokenization="tubelet"`` and ``n_layers=0`` (its fusion stack ``blocks`` is empty:
    every layer is in the stems, ``n_stem_layers`` deep). ``hook_embed`` is the stems' outputs
    concatenated, which ``ln_final`` and the linear classifier read directly; ``stop_at_layer=0``
    returns it and ``start_at_layer=0`` reads it out. Attention is masked with
    ``stem_edge_masks``; ``edge_masks`` has no layer to act on.

    >>> cfg = MultimodalTransformer.default_config("tiny", seed=0)
    >>> cfg.n_layers, cfg.n_stem_layers, cfg.n_patches
    (0, 2, 2)
    >>> model = MultimodalTransformer(cfg)
    >>> logits, cache = model.run_with_cache(model.example_input(3))
    >>> logits.shape, cache["stems.acc.blocks.1.attn.hook_pattern"].shape
    (torch.Size([3, 4]), torch.Size([3, 4, 3, 3]))
    """

    def __init__(self, cfg: EncoderConfig):
        what = "MultimodalTransformer's EncoderConfig.n_layers (no fusion stack: n_stem_layers)"
        check_int(cfg.n_layers, what, 0, 0, ConfigError)
        super().__init__(cfg)

    @classmethod
    def default_config(cls, preset: str = "tiny", **overrides: Any) -> EncoderConfig:
        """A preset made fit for this model: tubelet tokens (the paper's 40 samples where they
        divide ``n_samples``; 4 in "tiny"), ``n_layers=0`` and stems as deep as the preset's
        ``n_layers``; ``overrides`` win.

        >>> cfg = MultimodalTransformer.default_config("paper")
        >>> cfg.n_stem_layers, cfg.n_layers, cfg.patch_samples, cfg.n_ctx
        (5, 0, 40, 52)
        """
        defaults = _tubelet_overrides(preset, overrides)
        defaults["n_layers"] = 0
        defaults["n_stem_layers"] = _preset_value(preset, {}, "n_layers")
        return EncoderConfig.preset(preset, **{**defaults, **overrides})


@checked
class HierarchicalTransformer(_StemFusionEncoder):
    """Per-modality tubelet stems, then a fusion transformer ``blocks`` over both streams.

    Needs ``tokenization="tubelet"``, ``n_stem_layers`` stem layers and ``n_layers >= 1`` fusion
    layers. Cross-modal attention exists only in ``blocks`` (masked with ``edge_masks``, as in
    every model); ``stem_edge_masks`` masks the stems.

    >>> cfg = HierarchicalTransformer.default_config("tiny", seed=0)
    >>> cfg.n_stem_layers, cfg.n_layers
    (1, 1)
    >>> model = HierarchicalTransformer(cfg)
    >>> final, cache = model.run_with_cache(model.example_input(2), return_type=None)
    >>> parts, labels = cache.decompose_resid(return_labels=True)
    >>> labels
    ['embed', '0_attn_out', '0_mlp_out']
    >>> torch.allclose(parts.sum(0), final, atol=1e-6)
    True
    """

    def __init__(self, cfg: EncoderConfig):
        check_int(cfg.n_layers, "HierarchicalTransformer's fusion n_layers", 1, None, ConfigError)
        super().__init__(cfg)

    @classmethod
    def default_config(cls, preset: str = "tiny", **overrides: Any) -> EncoderConfig:
        """A preset made fit for this model: tubelet tokens (the paper's 40 samples where they
        divide ``n_samples``; 4 in "tiny") and the preset's ``n_layers`` split into
        ``n_layers // 2`` stem layers and the rest fusion layers (the paper's 5 -> 2 + 3; the
        paper does not give the split); ``overrides`` win.

        >>> cfg = HierarchicalTransformer.default_config("paper")
        >>> cfg.n_stem_layers, cfg.n_layers, cfg.patch_samples, cfg.n_ctx
        (2, 3, 40, 52)
        """
        defaults = _tubelet_overrides(preset, overrides)
        total = _preset_value(preset, overrides, "n_layers")
        if "n_layers" not in overrides:
            defaults["n_stem_layers"] = total // 2
            defaults["n_layers"] = total - total // 2
        return EncoderConfig.preset(preset, **{**defaults, **overrides})
