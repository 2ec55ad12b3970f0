"""TinyMyo: the BioFoundation sEMG foundation model as a hooked encoder.

Every channel's window is cut into patches of ``patch_samples`` samples, each embedded by one
linear map shared by all channels: ``channels x patches`` tokens, channel-major (channel ``c``,
patch ``t`` at ``c * n_patches + t``). No CLS token and no added position embedding: attention
rotates queries and keys with RoPE (interleaved pairs, torchtune style) at the flattened token
index. One of three heads, chosen by ``task``, reads the final normalised stream.
`TinyMyo.from_biofoundation` / `TinyMyo.to_biofoundation` read and write BioFoundation's
``models/TinyMyo.py`` key layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from einops import einsum, rearrange
from jaxtyping import Bool, Float
from torch import nn
from transformer_lens.hook_points import HookPoint

from emg_lens._hints import checked
from emg_lens.components import ChannelEmbed, ClassifierHead, ConfigInit, TransformerBlock
from emg_lens.components.embeddings import cut_patches
from emg_lens.config import EncoderConfig
from emg_lens.errors import (
    ConfigError,
    InputShapeError,
    UnsupportedFeatureError,
    check_choice,
    check_int,
    check_number,
    describe,
)
from emg_lens.models.base import HookedEncoder
from emg_lens.models.native.biofoundation import (
    REDUCTIONS,
    build_from_biofoundation,
    to_biofoundation_keys,
)

if TYPE_CHECKING:
    from emg_lens.models.base import Blocks

TASKS = ("reconstruction", "classification", "regression")
TASK_ALIASES = {"pretraining": "reconstruction"}
RETURN_TYPES = ("logits", "latent")


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a residual branch for a random subset of samples
    (rescaling the rest by ``1 / (1 - p)``); the identity in eval mode.

    >>> DropPath(0.5).eval()(torch.ones(2, 3)).sum().item()
    6.0
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: Float[torch.Tensor, "batch ..."]) -> Float[torch.Tensor, "batch ..."]:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1.0 - self.p)


class TinyMyoBlock(TransformerBlock):
    """`TransformerBlock` (same names, hooks and eval-mode function) with drop-path on both
    residual branches in training, applied before ``hook_attn_out`` / ``hook_mlp_out``.

    >>> block = TinyMyoBlock(EncoderConfig.preset("tiny"), 0, drop_path=0.1).eval()
    >>> block(torch.randn(2, 7, 16)).shape
    torch.Size([2, 7, 16])
    """

    def __init__(self, cfg: EncoderConfig, block_index: int, drop_path: float = 0.0):
        super().__init__(cfg, block_index)
        self.drop_path = DropPath(drop_path)

    def forward(
        self,
        resid_pre: Float[torch.Tensor, "batch pos d_model"],
        edge_mask: Bool[torch.Tensor, "... query_pos key_pos"] | None = None,
    ) -> Float[torch.Tensor, "batch pos d_model"]:
        if not self.training or self.drop_path.p == 0.0:
            return super().forward(resid_pre, edge_mask)
        resid_pre = self.hook_resid_pre(resid_pre)
        attn = self.attend(resid_pre, edge_mask)
        attn_out = self.hook_attn_out(self.drop_path(self.dropout(attn)))
        resid_mid = self.hook_resid_mid(resid_pre + attn_out)
        mlp = self.mlp(self.mlp_input(resid_mid))
        mlp_out = self.hook_mlp_out(self.drop_path(self.dropout(mlp)))
        return self.hook_resid_post(resid_mid + mlp_out)


class PatchReconstructionHead(ConfigInit, nn.Module):
    """Each token back to the samples of its patch: ``W_U [d_model, patch_samples]``, ``b_U``.

    >>> head = PatchReconstructionHead(EncoderConfig.preset("tinymyo"))
    >>> head(torch.randn(2, 800, 192)).shape
    torch.Size([2, 800, 20])
    """

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.init_std = cfg.init_range
        self.W_U = nn.Parameter(torch.empty(cfg.d_model, cfg.token_samples, dtype=cfg.dtype))
        self.b_U = nn.Parameter(torch.zeros(cfg.token_samples, dtype=cfg.dtype))

    def forward(
        self, latent: Float[torch.Tensor, "batch pos d_model"]
    ) -> Float[torch.Tensor, "batch pos patch_samples"]:
        return latent @ self.W_U + self.b_U


def _pool_channels(
    latent: Float[torch.Tensor, "batch pos d_model"], n_channels: int, reduction: str
) -> Float[torch.Tensor, "batch patch d_in"]:
    """Per-patch features: channels concatenated (feature ``c * d_model + d``) or averaged."""
    tokens = rearrange(
        latent,
        "batch (channel patch) d_model -> batch patch channel d_model",
        channel=n_channels,
    )
    if reduction == "concat":
        return rearrange(tokens, "batch patch channel d_model -> batch patch (channel d_model)")
    return tokens.mean(dim=2)


class ChannelPoolClassifier(ClassifierHead):
    """Pool tokens over patches (channels concatenated or averaged), then `ClassifierHead`'s
    linear layer: ``W_U [d_in, n_classes]``, ``b_U [n_classes]`` with ``d_in = n_channels *
    d_model`` (``"concat"``) or ``d_model`` (``"mean"``). ``hook_pooled`` sees the pooled
    ``[batch, d_in]``.

    >>> head = ChannelPoolClassifier(EncoderConfig.preset("tinymyo"), "concat")
    >>> head.W_U.shape, head(torch.randn(2, 800, 192)).shape
    (torch.Size([3072, 4]), torch.Size([2, 4]))
    """

    def __init__(self, cfg: EncoderConfig, reduction: str):
        super().__init__(cfg, d_in=cfg.d_model * (cfg.n_channels if reduction == "concat" else 1))
        self.n_channels = cfg.n_channels
        self.reduction = reduction

    def forward(
        self, latent: Float[torch.Tensor, "batch pos d_model"]
    ) -> Float[torch.Tensor, "batch n_classes"]:
        return super().forward(_pool_channels(latent, self.n_channels, self.reduction).mean(dim=1))


class ConvRegressionHead(ConfigInit, nn.Module):
    """Per-patch features -> 1x1 conv -> SiLU -> dropout -> depthwise conv (kernel 3, padding
    1) -> SiLU -> 1x1 conv, then linear interpolation over patches to ``target_len`` steps.

    ``W_in [d_in, d_hidden]``, ``b_in``, ``W_dw [d_hidden, 3]``, ``b_dw``,
    ``W_out [d_hidden, n_outputs]``, ``b_out``; ``hook_pooled`` sees ``[batch, patch, d_in]``
    and ``hook_hidden`` the ``[batch, patch, d_hidden]`` activations entering ``W_out``.

    >>> head = ConvRegressionHead(EncoderConfig.preset("tinymyo"), "concat", 256, 500, 0.0)
    >>> head(torch.randn(2, 800, 192)).shape
    torch.Size([2, 500, 4])
    """

    def __init__(
        self,
        cfg: EncoderConfig,
        reduction: str,
        d_hidden: int,
        target_len: int,
        dropout: float,
    ):
        super().__init__()
        self.init_std = cfg.init_range
        self.n_channels = cfg.n_channels
        self.reduction = reduction
        self.target_len = target_len
        d_in = cfg.d_model * (cfg.n_channels if reduction == "concat" else 1)
        self.W_in = nn.Parameter(torch.empty(d_in, d_hidden, dtype=cfg.dtype))
        self.b_in = nn.Parameter(torch.zeros(d_hidden, dtype=cfg.dtype))
        self.W_dw = nn.Parameter(torch.empty(d_hidden, 3, dtype=cfg.dtype))
        self.b_dw = nn.Parameter(torch.zeros(d_hidden, dtype=cfg.dtype))
        self.W_out = nn.Parameter(torch.empty(d_hidden, cfg.n_classes, dtype=cfg.dtype))
        self.b_out = nn.Parameter(torch.zeros(cfg.n_classes, dtype=cfg.dtype))
        self.dropout = nn.Dropout(dropout)
        self.hook_pooled = HookPoint()  # [batch, patch, d_in]
        self.hook_hidden = HookPoint()  # [batch, patch, d_hidden]

    def forward(
        self, latent: Float[torch.Tensor, "batch pos d_model"]
    ) -> Float[torch.Tensor, "batch target_len n_outputs"]:
        feats = self.hook_pooled(_pool_channels(latent, self.n_channels, self.reduction))
        hidden = self.dropout(F.silu(feats @ self.W_in + self.b_in))
        hidden = F.conv1d(
            hidden.transpose(1, 2),
            self.W_dw[:, None, :],
            self.b_dw,
            padding=1,
            groups=self.W_dw.shape[0],
        )  # [batch, d_hidden, patch]
        hidden = self.hook_hidden(F.silu(hidden).transpose(1, 2))
        out = (
            einsum(hidden, self.W_out, "batch patch d_hidden, d_hidden n_out -> batch n_out patch")
            + self.b_out[:, None]
        )
        if out.shape[-1] != self.target_len:
            out = F.interpolate(out, size=self.target_len, mode="linear", align_corners=False)
        return out.transpose(1, 2)


@checked
class TinyMyo(HookedEncoder):
    """The TinyMyo encoder with a reconstruction, classification or regression head.

    Hooks beyond the shared stack: ``hook_embed`` (the stream entering ``blocks.0``, masked
    tokens replaced), ``blocks.{l}.attn.hook_rot_q|hook_rot_k``, ``head.hook_pooled`` (and
    ``head.hook_hidden`` for regression). ``return_type="logits"`` gives the head's output:
    ``[batch, n_classes]`` (classification), ``[batch, pos, patch_samples]`` (reconstruction)
    or ``[batch, reg_target_len, n_classes]`` (regression); ``"latent"`` the final stream
    after ``ln_final``; ``None`` the final stream before it.

    Args:
        cfg: an `EncoderConfig` without a CLS token, with ``positional_embedding_type``
            ``"rotary"`` (the published model) or ``"none"``.
        task: ``"classification"`` (default), ``"reconstruction"`` (alias ``"pretraining"``)
            or ``"regression"``.
        reduction: how the classification/regression head merges channels, ``"concat"``
            (published) or ``"mean"`` (published for classification only: the published
            regression head's ``"mean"`` branch drops an axis and cannot run).
        reg_hidden: hidden width of the regression head (published: 256).
        reg_target_len: output length of the regression head (published: 500).
        head_dropout: dropout inside the regression head, in training only (published: 0.1).
        drop_path: stochastic depth on every block's two branches, in training only
            (published: 0.1). ``cfg.dropout`` acts on each branch's output (the published
            ``proj_drop``); the published ``attn_drop`` and MLP hidden dropout are not
            applied, so fine-tuning is regularised less (no effect in eval mode).

    >>> cfg = EncoderConfig.preset("tinymyo", n_layers=2, modalities={"emg": 4}, n_samples=100)
    >>> model = TinyMyo(cfg, task="classification")
    >>> model(model.example_input(2)).shape
    torch.Size([2, 4])
    >>> model.layout.n_tokens, model.layout.channel[5], model.layout.time[5]
    (20, 1, 0)
    """

    return_types = RETURN_TYPES
    takes = (("positional_embedding_type", ("rotary", "none")),)  # RoPE's, or no positions

    def __init__(
        self,
        cfg: EncoderConfig,
        *,
        task: str = "classification",
        reduction: str = "concat",
        reg_hidden: int = 256,
        reg_target_len: int = 500,
        head_dropout: float = 0.0,
        drop_path: float = 0.0,
    ):
        if cfg.use_cls_token:
            raise ConfigError("TinyMyo has no CLS token: set EncoderConfig.use_cls_token=False")
        task = check_choice(TASK_ALIASES.get(task, task), TASKS, "TinyMyo task")
        check_choice(reduction, REDUCTIONS, "TinyMyo reduction")
        reg_hidden = check_int(reg_hidden, "TinyMyo reg_hidden", minimum=1)
        reg_target_len = check_int(reg_target_len, "TinyMyo reg_target_len", minimum=1)
        for name, value in (("head_dropout", head_dropout), ("drop_path", drop_path)):
            check_number(value, f"TinyMyo {name}", "a number in [0, 1)", lambda v: 0 <= v < 1)
        super().__init__(cfg)
        self._init_kwargs: dict[str, Any] = {
            "task": task,
            "reduction": reduction,
            "reg_hidden": reg_hidden,
            "reg_target_len": reg_target_len,
            "head_dropout": head_dropout,
            "drop_path": drop_path,
        }
        self.task = task
        blocks = nn.ModuleList(TinyMyoBlock(cfg, i, drop_path) for i in range(cfg.n_layers))
        self.blocks = cast("Blocks", blocks)
        self.embed = ChannelEmbed(cfg, shared=True)
        self.mask_token = nn.Parameter(torch.empty(cfg.d_model, dtype=cfg.dtype))
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        if task == "reconstruction":
            self.head: PatchReconstructionHead | ChannelPoolClassifier | ConvRegressionHead
            self.head = PatchReconstructionHead(cfg)
        elif task == "classification":
            self.head = ChannelPoolClassifier(cfg, reduction)
        else:
            self.head = ConvRegressionHead(cfg, reduction, reg_hidden, reg_target_len, head_dropout)
        # its patches placed in seconds: TinyMyo's rate is part of its design (2 kHz)
        step = cfg.token_samples / cfg.sample_rate
        self._layout = replace(self._channel_layout(cls_token=False), time_step=step)
        self._finish_init()

    @property
    def init_kwargs(self) -> dict[str, Any]:
        """The constructor keywords beyond ``cfg``, to store next to ``cfg.to_dict()``."""
        return dict(self._init_kwargs)

    # ------------------------------------------------------------------ the unembedding
    unembed_heads = ("logits",)

    def _unembedding(self) -> nn.Module:
        """The classification head with ``reduction="mean"``: it reads the mean of every token
        after ln_final through one ``W_U [d_model, n_classes]``. Refused otherwise, saying why.

        >>> cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 2}, n_samples=40)
        >>> TinyMyo(cfg, reduction="mean").W_U.shape
        torch.Size([192, 4])
        >>> TinyMyo(cfg).W_U  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        emg_lens.errors.UnsupportedFeatureError: TinyMyo(reduction='concat') has no ...
        """
        if not isinstance(self.head, ChannelPoolClassifier):  # task != "classification"
            raise UnsupportedFeatureError(
                f"TinyMyo(task={self.task!r}) has no unembedding (W_U): only task='classification'"
            )
        if self.head.reduction == "concat":
            raise UnsupportedFeatureError(
                "TinyMyo(reduction='concat') has no TransformerLens unembedding: token (c, t) "
                "reads its channel's W_U[c*d_model:(c+1)*d_model] / n_patches; use "
                "reduction='mean', or the per-token map emg_lens.inspect.attribution.readout_map"
            )
        return self.head

    def _ln_final_readers(self) -> list[tuple[nn.Parameter, nn.Parameter]]:
        # Every head starts with a linear map of (pooled) ln_final outputs.
        head = self.head
        if isinstance(head, ConvRegressionHead):  # task="regression"
            return [(head.W_in, head.b_in)]
        return [(head.W_U, head.b_U)]

    @property
    def unembed_positions(self) -> list[int]:
        """Every token: the ``"mean"`` classification head averages them all after ln_final."""
        self._unembedding()
        return list(range(self.layout.n_tokens))

    # ------------------------------------------------------------------ embedding and masks
    def embed_signals(
        self,
        signals: Float[torch.Tensor, "batch channel time"],
        patch_mask: Bool[torch.Tensor, "*batch channel patch"] | None = None,
    ) -> Float[torch.Tensor, "batch pos d_model"]:
        """Patch-embed the signals; tokens where ``patch_mask`` is True become ``mask_token``,
        as in masked pretraining (``patch_mask``: ``[batch, channels, patches]`` or
        ``[channels, patches]``, a `forward` keyword too).

        >>> cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 2}, n_samples=40)
        >>> model = TinyMyo(cfg, task="reconstruction")
        >>> mask = torch.rand(3, 2, 2) < 0.5
        >>> model(model.example_input(3), patch_mask=mask).shape
        torch.Size([3, 4, 20])

        Called directly, it gives the stream entering ``blocks.0``:

        >>> model = TinyMyo(cfg)
        >>> mask = torch.tensor([[True, False], [False, False]])  # channel 0, patch 0
        >>> tokens = model.embed_signals(model.example_input(), mask)
        >>> torch.equal(tokens[0, 0], model.mask_token), torch.equal(tokens[0, 1], model.mask_token)
        (True, False)
        """
        tokens = self.embed(signals)
        if patch_mask is not None:
            masked = rearrange(
                self._check_patch_mask(patch_mask, signals.shape[0]),
                "batch channel patch -> batch (channel patch) 1",
            )
            tokens = torch.where(masked, self.mask_token.to(tokens.dtype), tokens)
        return self.hook_embed(tokens)

    def _check_patch_mask(self, patch_mask: Any, batch: int) -> torch.Tensor:
        expected = (self.cfg.n_channels, self.cfg.n_patches)
        shapes = (expected, (1, *expected), (batch, *expected))
        if getattr(patch_mask, "dtype", None) != torch.bool or patch_mask.shape not in shapes:
            raise InputShapeError(
                f"patch_mask must be a bool tensor [batch={batch}, channels={expected[0]}, "
                f"patches={expected[1]}] (or [channels, patches]), got {describe(patch_mask)}"
            )
        if patch_mask.ndim == 2:
            patch_mask = patch_mask[None]
        return patch_mask.expand(batch, *expected).to(self.param_device_dtype()[0])

    def patch_mask_from_samples(
        self, sample_mask: Bool[torch.Tensor, "batch channel time"]
    ) -> Bool[torch.Tensor, "batch channel patch"]:
        """Per-sample mask -> per-patch mask: a patch is masked when any of its samples is
        (the pretraining rule).

        >>> cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 1}, n_samples=40)
        >>> sample_mask = torch.zeros(1, 1, 40, dtype=torch.bool)
        >>> sample_mask[0, 0, 25] = True
        >>> TinyMyo(cfg).patch_mask_from_samples(sample_mask)
        tensor([[[False,  True]]])
        """
        expected = (self.cfg.n_channels, self.cfg.n_samples)
        if getattr(sample_mask, "dtype", None) != torch.bool or sample_mask.shape[1:] != expected:
            raise InputShapeError(
                f"sample_mask must be a bool tensor [batch, channels={expected[0]}, "
                f"time={expected[1]}], got {describe(sample_mask)}"
            )
        return cut_patches(sample_mask, self.cfg.n_patches).any(dim=-1)

    @classmethod
    def from_biofoundation(cls, state_dict: Mapping[str, torch.Tensor], **options: Any) -> TinyMyo:
        """Build a TinyMyo from a BioFoundation ``models/TinyMyo.py`` state dict; the
        ``options`` (``n_heads``, ``n_channels``, ``n_samples``, ``reduction``,
        ``reg_target_len``, ``rope_positions``, `EncoderConfig` overrides) and what they mean:
        `emg_lens.models.native.biofoundation.build_from_biofoundation`.

        >>> cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 2}, n_samples=40)
        >>> sd = TinyMyo(cfg).to_biofoundation()
        >>> TinyMyo.from_biofoundation(sd, n_samples=40, n_channels=2).cfg.n_layers
        1
        """
        return build_from_biofoundation(cls, state_dict, **options)

    def to_biofoundation(self) -> dict[str, torch.Tensor]:
        """This model's weights in BioFoundation's ``models/TinyMyo.py`` key layout and
        shapes (what `from_biofoundation` reads), as fresh contiguous tensors.

        The key layout holds no positional convention: a model with token RoPE round-trips
        through ``from_biofoundation(..., rope_positions="token")`` (see ``rope_positions``).

        >>> cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 2}, n_samples=40)
        >>> sd = TinyMyo(cfg).to_biofoundation()
        >>> sd["blocks.0.attn.qkv.weight"].shape, sd["model_head.classifier.weight"].shape
        (torch.Size([576, 192]), torch.Size([4, 384]))
        """
        return to_biofoundation_keys(self)

    # ------------------------------------------------------------------ the protocol's readings
    head_tasks = TASKS

    def _readout_refusal(self) -> str | None:
        """Both classification heads are linear maps of the final stream; the other tasks
        have no class logits (`_unembedding` says so)."""
        return None if self.task == "classification" else super()._readout_refusal()

    def readout_map(
        self, head: str = "logits"
    ) -> tuple[Float[torch.Tensor, "pos d_model n_classes"], Float[torch.Tensor, " n_classes"]]:
        """Tokens are averaged over patches and the channels concatenated (``W_U``'s block of
        the token's channel, ``/ n_patches``), or every token averaged (``W_U / n_tokens``,
        the unembedding).

        >>> cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 2}, n_samples=40)
        >>> R, b_U = TinyMyo(cfg).readout_map()
        >>> R.shape, b_U.shape
        (torch.Size([4, 192, 4]), torch.Size([4]))
        """
        classifier = self.head  # task="classification": a ChannelPoolClassifier
        if not isinstance(classifier, ChannelPoolClassifier) or classifier.reduction != "concat":
            return super().readout_map(head)
        self._check_readout_head(head)
        R = self._empty_readout_map()
        blocks = rearrange(classifier.W_U, "(channel d) c -> channel d c", d=self.cfg.d_model)
        R[:] = blocks[list(self.layout.channel)] / self.cfg.n_patches
        return R.detach(), classifier.b_U.detach()

    @torch.no_grad()
    def data_free_tokens(self, writes: bool = False) -> Float[torch.Tensor, "pos d_model"]:
        """Every token is the patch embedding's bias ``b_E``, shared by all channels: with
        token RoPE the rotation at the token's index is its only identity, so a QK table shows
        RoPE's positional preference and an OV table (``writes``) would be constant (refused);
        without token RoPE nothing tells two tokens apart (refused)."""
        shared = (
            f"{type(self).__name__}'s tokens have no data-free identity of their own: every "
            "token's embedding is the patch embedding's bias b_E, shared by all channels"
        )
        if writes:
            raise UnsupportedFeatureError(
                f"{shared}, and RoPE does not act on values (an OV table would be constant): "
                "use emg_lens.inspect.direct_attribution on data"
            )
        if self.blocks[0].attn.rotary is None:
            raise UnsupportedFeatureError(
                f"{shared}, and nothing rotates them (every pair would score the same): use "
                "attention_flow on data"
            )
        return self.embed.b_E.expand(self.layout.n_tokens, -1)
