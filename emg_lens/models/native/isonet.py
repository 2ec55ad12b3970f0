"""IsoNet: one token per channel, a CLS token, and two classifier heads.

Each channel's window is embedded by its own linear map, a learnable CLS token is prepended
and a learned position embedding added, so every interaction between channels (and so between
modalities) happens in attention, where edge sets can cut it. Two logits come out: from the
CLS token (``cls_head``) and from the mean of the channel tokens (``avg_head``); training
anneals from the second to the first (`emg_lens.train.dual_head_loss`).
"""

from __future__ import annotations

from typing import Any, cast

import torch
from jaxtyping import Float
from transformer_lens.hook_points import HookPoint

from emg_lens.components import ChannelEmbed, ClassifierHead, PosEmbed
from emg_lens.config import EncoderConfig
from emg_lens.errors import ConfigError, checked
from emg_lens.models.base import HookedEncoder, check_encoder_config

RETURN_TYPES = ("logits", "avg_logits", "both")


@checked
class IsoNet(HookedEncoder):
    """The IsoNet encoder.

    Hooks beyond the shared stack: ``hook_embed`` (channel tokens and CLS), ``hook_pos_embed``,
    ``cls_head.hook_pooled`` and ``avg_head.hook_pooled``. ``return_type="logits"`` gives the
    CLS head's logits, ``"avg_logits"`` the mean-pooled head's, ``"both"`` the pair
    ``(cls_logits, avg_logits)``.

    >>> model = IsoNet(EncoderConfig.preset("tiny"))
    >>> x = model.example_input(3)
    >>> cls_logits, avg_logits = model(x, return_type="both")
    >>> cls_logits.shape, avg_logits.shape
    (torch.Size([3, 4]), torch.Size([3, 4]))
    >>> torch.equal(model(x, return_type="avg_logits"), avg_logits)
    True
    """

    dual_head = True
    return_types = RETURN_TYPES
    takes = (("positional_embedding_type", ("standard",)),)  # learned positions

    def __init__(self, cfg: EncoderConfig):
        cfg = check_encoder_config(type(self), cfg)
        if not cfg.use_cls_token:
            raise ConfigError("IsoNet needs EncoderConfig.use_cls_token=True (its CLS head)")
        super().__init__(cfg)
        self.embed = ChannelEmbed(cfg)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        self.pos_embed = PosEmbed(cfg)
        self.hook_pos_embed = HookPoint()  # [batch, pos, d_model]
        self.cls_head = ClassifierHead(cfg)
        self.avg_head = ClassifierHead(cfg)
        self._layout = self._channel_layout(cls_token=True)
        self._finish_init()

    # TransformerLens's unembedding: ``unembed_head="logits"`` (default) is the CLS head,
    # reading position 0; ``"avg_logits"`` the mean-pooled head, reading the mean of the
    # channel tokens after ln_final (so a channel token's direct logit, divided by their
    # number, is its share of the logit).
    unembed_heads = RETURN_TYPES[:2]

    def _unembedding(self) -> ClassifierHead:
        return self.cls_head if self.unembed_head == "logits" else self.avg_head

    def _ln_final_readers(self) -> list[tuple[torch.nn.Parameter, torch.nn.Parameter]]:
        return [(head.W_U, head.b_U) for head in (self.cls_head, self.avg_head)]

    @property
    def unembed_positions(self) -> list[int]:
        """``[0]`` (the CLS token) for the CLS head, the channel tokens for the average head.

        >>> model = IsoNet(EncoderConfig.preset("tiny"))
        >>> model.unembed_positions
        [0]
        >>> model.unembed_head = "avg_logits"
        >>> model.unembed_positions, model.W_U is model.avg_head.W_U
        ([1, 2, 3, 4, 5, 6], True)
        """
        return cast("list[int]", self.read_positions(self.unembed_head))

    def embed_signals(
        self, signals: Float[torch.Tensor, "batch channel time"]
    ) -> Float[torch.Tensor, "batch pos d_model"]:
        embed = self.hook_embed(self.embed(signals))
        pos_embed = self.hook_pos_embed(self.pos_embed(signals.shape[0]))
        return embed + pos_embed

    def read_positions(self, return_type: str) -> list[int] | None:
        """The CLS head reads token 0, the mean-pooled head tokens 1...

        >>> from emg_lens import EncoderConfig
        >>> IsoNet(EncoderConfig.preset("tiny")).read_positions("logits")
        [0]
        """
        if return_type == "logits":
            return [0]
        if return_type == "avg_logits":
            return list(range(1, self.layout.n_tokens))
        return None

    def readout(self, resid: Float[torch.Tensor, "batch pos d_model"], return_type: str) -> Any:
        self._check_return_type(return_type)
        normalized = self.ln_final(resid)
        if return_type == "avg_logits":
            return self.avg_head(normalized[:, 1:].mean(dim=1))
        cls_logits = self.cls_head(normalized[:, 0])
        if return_type == "logits":
            return cls_logits
        return cls_logits, self.avg_head(normalized[:, 1:].mean(dim=1))

    readout_heads = RETURN_TYPES[:2]

    def readout_map(
        self, head: str = "logits"
    ) -> tuple[Float[torch.Tensor, "pos d_model n_classes"], Float[torch.Tensor, " n_classes"]]:
        """The CLS head's ``W_U`` at position 0 (``"logits"``), or the average head's
        ``W_U / n`` at each of the ``n`` channel tokens (``"avg_logits"``).

        >>> R, b_U = IsoNet(EncoderConfig.preset("tiny")).readout_map("avg_logits")
        >>> R.shape, bool(R[0].eq(0).all())
        (torch.Size([7, 16, 4]), True)
        """
        self._check_readout_head(head)
        R = self._empty_readout_map()
        classifier = self.cls_head if head == "logits" else self.avg_head
        if head == "logits":
            R[0] = classifier.W_U
        else:
            R[1:] = classifier.W_U / (self.layout.n_tokens - 1)
        return R.detach(), classifier.b_U.detach()

    @torch.no_grad()
    def data_free_tokens(self, writes: bool = False) -> Float[torch.Tensor, "pos d_model"]:
        """Channel ``c`` (patch ``t``) is ``b_E[c] + W_pos[pos]``, the CLS token
        ``cls_token + W_pos[0]``: every channel has an identity of its own.

        >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0))
        >>> e = model.data_free_tokens()
        >>> e.shape, torch.allclose(e, model.embed_signals(torch.zeros(1, 6, 8))[0])
        (torch.Size([7, 16]), True)
        """
        cls_token, b_E = self.embed.cls_token, self.embed.b_E
        assert cls_token is not None  # IsoNet's __init__ refuses a config without one
        channels = b_E.repeat_interleave(self.cfg.n_patches, dim=0)
        return torch.cat((cls_token[None], channels)) + self.pos_embed.W_pos
