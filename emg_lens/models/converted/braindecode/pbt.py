"""braindecode's ``PBT`` (Patched Brain Transformer, Klein et al. 2025) as a hooked encoder.

Tokens, readout, and why PBT is converted and REVE and LUNA are not:
docs/guide/bring-your-own-model.md, "A braindecode model". Each patch of ``d_input`` samples is
projected by one bias-free linear map (braindecode's parameter names kept), plus a learned
position embedding per token; blocks are pre-LN, without biases unless ``bias_transformer``;
no final norm.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float
from torch import nn

from emg_lens.components.init import ConfigEmbedding, ConfigLinear
from emg_lens.config import EncoderConfig
from emg_lens.errors import ArgumentError, ConversionError, checked
from emg_lens.models import key_table as keys
from emg_lens.models.base import check_encoder_config
from emg_lens.models.converted.braindecode._common import (
    Braindecode,
    BraindecodeEncoder,
    TokenClassifier,
    eeg_config,
    layer_kw,
    one_activation,
    per_layer,
    read_config,
)
from emg_lens.models.converted.conversion import Parts, check_parts


@checked
class HookedPBT(BraindecodeEncoder):
    """braindecode's ``PBT``, hooked (see the module docstring); built by `from_braindecode`.

    Hooks beyond the shared stack: ``hook_embed`` (the CLS token and the projected patches),
    ``hook_pos_embed`` (the position embedding added to them), ``head.hook_pooled`` (the CLS
    token's final stream). ``return_type``: ``"logits"``, ``"latent"`` (the final stream),
    None (the same: PBT has no final norm).

    Args:
        cfg: an `EncoderConfig` with a CLS token, ``patch_samples`` = PBT's ``d_input`` and no
            final norm.
        learnable_cls: False for a PBT whose CLS token is fixed at zero (``learnable_cls``).

    >>> cfg = HookedPBT.config(n_chans=2, n_times=8, n_outputs=3, d_input=4, embed_dim=16,
    ...                        num_layers=1, num_heads=2)
    >>> model = HookedPBT(cfg)
    >>> model(model.example_input(2)).shape, model.layout.n_tokens
    (torch.Size([2, 3]), 5)
    """

    def __init__(self, cfg: EncoderConfig, *, learnable_cls: bool = True):
        cfg = check_encoder_config(type(self), cfg)
        if not cfg.use_cls_token or cfg.final_norm or cfg.patch_samples is None:
            raise ArgumentError(
                "HookedPBT needs a config with use_cls_token=True, final_norm=False and "
                "patch_samples (PBT's d_input): build it with HookedPBT.config(...)"
            )
        super().__init__(cfg)
        self.learnable_cls = learnable_cls
        self._init_kwargs = {"learnable_cls": learnable_cls}
        d = cfg.d_model
        kw = layer_kw(cfg)
        self.patching_projection = ConfigLinear(cfg.token_samples, d, bias=False, **kw)
        self.pos_embedding = ConfigEmbedding(cfg.n_tokens, d, **kw)
        if learnable_cls:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, d, dtype=cfg.dtype))
        else:  # braindecode's fixed zero CLS token: neither learned nor saved
            self.register_buffer("cls_token", torch.zeros(1, 1, d, dtype=cfg.dtype), False)
        self.head = TokenClassifier(cfg, position=0)
        self._layout = self._channel_layout(cls_token=True)
        self._finish_init()

    @staticmethod
    def config(
        *,
        n_chans: int,
        n_times: int,
        n_outputs: int,
        d_input: int = 64,
        embed_dim: int = 128,
        num_layers: int = 4,
        num_heads: int = 4,
        bias_transformer: bool = False,
        activation: str = "gelu",
        ch_names: list[str] | None = None,
        dtype: torch.dtype = torch.float32,
        **overrides: Any,
    ) -> EncoderConfig:
        """The `EncoderConfig` of a braindecode ``PBT`` built with these arguments (its
        names and defaults)."""
        if n_times % d_input:
            raise ConversionError(
                f"PBT's n_times={n_times} must be a multiple of d_input {d_input}"
            )
        zero = [] if bias_transformer else ["b_Q", "b_K", "b_V", "b_O", "b_in", "b_out"]
        sizes = {
            "d_model": embed_dim,
            "d_head": embed_dim // num_heads,
            "n_heads": num_heads,
            "n_layers": num_layers,
            "d_mlp": 4 * embed_dim,
            "act_fn": activation,
            "eps": 1e-5,
            "patch_samples": d_input,
            "use_cls_token": True,
            "final_norm": False,
            "zero_biases": zero + ([] if bias_transformer else ["ln1.b", "ln2.b"]),
        }
        return eeg_config(n_chans, n_times, n_outputs, ch_names, dtype, {**sizes, **overrides})

    def embed_signals(
        self, signals: Float[torch.Tensor, "batch channel time"]
    ) -> Float[torch.Tensor, "batch pos d_model"]:
        batch = signals.shape[0]
        patches = signals.reshape(batch, -1, self.cfg.token_samples)  # channel-major patches
        tokens = self.patching_projection(patches)
        cls = self.cls_token.to(tokens.dtype).expand(batch, 1, -1)
        tokens = self.hook_embed(torch.cat((cls, tokens), dim=1))
        pos = self.hook_pos_embed(self.pos_embedding.weight[None].expand(batch, -1, -1))
        return tokens + pos

    unembed_heads = ("logits",)

    def to_braindecode(self) -> dict[str, torch.Tensor]:
        """This model's weights as the state dict of braindecode's ``PBT`` (fresh tensors)."""
        return key_table(self.cfg.n_heads).to_theirs(self.state_dict())


def key_table(n_heads: int) -> keys.KeyTable:
    """emg_lens key <-> braindecode ``PBT`` key, both ways (`KeyTable`)."""
    src = "transformer_encoder.encoder_block.{l}"
    attn = "blocks.{l}.attn"
    return keys.KeyTable(
        [
            keys.Row("cls_token", "cls_token"),
            keys.Row("patching_projection.weight", "patching_projection.weight"),
            keys.Row("pos_embedding.weight", "pos_embedding.weight"),
            *keys.norm_rows(("blocks.{l}.ln1", f"{src}.layer_norm_att")),
            *keys.qkv_rows(attn, f"{src}.mhsa.attn.weight", n_heads),
            *keys.qkv_rows(attn, f"{src}.mhsa.attn.bias", n_heads, bias=True),
            keys.Row(f"{attn}.W_O", f"{src}.mhsa.proj.weight", keys.HeadsOut(n_heads)),
            keys.Row(f"{attn}.b_O", f"{src}.mhsa.proj.bias"),
            *keys.norm_rows(("blocks.{l}.ln2", f"{src}.layer_norm_ff")),
            *keys.linear_rows("blocks.{l}.mlp", f"{src}.feed_forward.proj_in"),
            *keys.linear_rows("blocks.{l}.mlp", f"{src}.feed_forward.proj", "W_out", "b_out"),
            *keys.linear_rows("head", "final_layer", "W_U", "b_U"),
        ]
    )


FIELDS = {name: name for name in ("n_outputs", "d_input", "embed_dim", "num_heads")}
"""``HookedPBT.config``'s arguments read as the braindecode model's attributes of that name."""


PARTS: Parts = [
    (
        "final_layer",
        lambda final: isinstance(final, nn.Linear) and final.bias is not None,
        "PBT's classifier, a Linear with a bias",
    )
]
"""What `from_pbt` reads (`check_parts`)."""


def from_pbt(model: Braindecode, ch_names: list[str] | None = None) -> HookedPBT:
    """A braindecode ``PBT`` instance as a `HookedPBT` with its weights, in eval mode."""
    check_parts(model, PARTS)
    encoder = model.transformer_encoder.encoder_block
    activation = one_activation(
        per_layer(model, "transformer_encoder.encoder_block", "feed_forward.activation")
    )
    cfg = HookedPBT.config(
        **read_config(model, FIELDS, ch_names),
        num_layers=len(encoder),
        bias_transformer=encoder[0].mhsa.attn.bias is not None,
        activation=activation,
    )
    hooked = HookedPBT(cfg, learnable_cls=isinstance(model.cls_token, nn.Parameter))
    key_table(cfg.n_heads).load(model.state_dict(), hooked, "from_braindecode(PBT)")
    return hooked.eval()
