"""LayerNorm with the legacy TransformerLens parameters (``w``, ``b``) and hooks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import nn
from transformer_lens.hook_points import HookPoint

from emg_lens._hints import checked
from emg_lens.components.attend import observed
from emg_lens.components.init import ConfigInit
from emg_lens.config import EncoderConfig


@checked
class LayerNorm(ConfigInit, nn.Module):
    """``(x - mean) / sqrt(var + eps) * w + b``, firing ``hook_scale`` and ``hook_normalized``.

    ``hook_scale`` is the per-token ``sqrt(var + eps)`` that `ActivationCache.apply_ln_to_stack`
    divides by; ``hook_normalized`` fires on ``(x - mean) / scale``, *before* ``w`` and ``b``,
    as in TransformerLens >= 3.0 and TL 4.3's bridge, so a value patched there is then scaled
    and shifted like the clean one. As there, a half-precision input is normalised in float32
    (the two hooks see float32) and cast back to the parameters' dtype before ``w`` and ``b``.
    When neither hook point is observed, `torch.nn.functional.layer_norm` computes the same
    function in one kernel (equal to ~1e-6).

    >>> ln = LayerNorm(EncoderConfig.preset("tiny"))
    >>> ln(torch.randn(2, 7, 16)).shape
    torch.Size([2, 7, 16])
    """

    def __init__(self, cfg: EncoderConfig, length: int | None = None, bias: bool = True):
        super().__init__()
        self.eps = cfg.eps
        self.init_std = cfg.init_range  # its parameters are 1 and 0: no normal draws
        length = length or cfg.d_model
        self.w = nn.Parameter(torch.ones(length, dtype=cfg.dtype))
        if bias:
            self.b = nn.Parameter(torch.zeros(length, dtype=cfg.dtype))
        else:  # a norm without a bias (torch's bias=False): b stays 0, is not learned nor saved
            self.register_buffer("b", torch.zeros(length, dtype=cfg.dtype), persistent=False)
        self.hook_scale = HookPoint()  # [batch, pos, 1]
        self.hook_normalized = HookPoint()  # [batch, pos, length]

    def forward(
        self, x: Float[torch.Tensor, "*batch length"]
    ) -> Float[torch.Tensor, "*batch length"]:
        if not observed((self.hook_scale, self.hook_normalized)):
            # Nothing observes the scale: the fused kernel computes the same function.
            return F.layer_norm(x, self.w.shape, self.w, self.b, self.eps)
        if x.dtype not in (torch.float32, torch.float64):
            x = x.to(torch.float32)  # as TransformerLens: half-precision statistics in float32
        x = x - x.mean(-1, keepdim=True)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        return self.hook_normalized(x / scale).to(self.w.dtype) * self.w + self.b


def make_norm(cfg: EncoderConfig, name: str = "ln1") -> nn.Module:
    """The normalisation ``name`` (``"ln1"``, ``"ln2"`` or ``"ln_final"``) the config asks for:
    an identity when it asks for none (``normalization_type=None``; ``final_norm=False`` for
    ``ln_final``), without a learned bias where ``zero_biases`` names ``"<name>.b"``.

    >>> cfg = EncoderConfig.preset("tiny", final_norm=False, zero_biases=["ln1.b"])
    >>> make_norm(cfg, "ln_final"), "b" in dict(make_norm(cfg, "ln1").named_parameters())
    (Identity(), False)
    """
    if cfg.normalization_type != "LN" or (name == "ln_final" and not cfg.final_norm):
        return nn.Identity()
    return LayerNorm(cfg, bias=f"{name}.b" not in cfg.zero_biases)
