"""Small converted models for the tests (issue 24): a user's ``nn.TransformerEncoder`` model
(pre- and post-LN) through `from_torch_encoder`, and braindecode models through
`from_braindecode`, each with its original, at sizes that run in milliseconds.

Every factory returns ``(converted, original)`` where ``original(x)`` is the source model's
eval-mode output for signals ``x`` ``[batch, channel, time]``; ``CONTRACT_SHAPE`` is the
``(channels, time)`` the hook contract's models share where the architecture allows it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from emg_lens.layout import TokenLayout
from emg_lens.models import from_braindecode, from_torch_encoder

CONTRACT_SHAPE = (6, 8)


class PatchTokens(nn.Module):
    """A user's tokenizer: one token per channel and patch of ``patch`` samples, a learned
    position per token and, optionally, a CLS token first."""

    def __init__(self, n_channels: int, n_samples: int, d_model: int, patch: int, cls: bool):
        super().__init__()
        self.n_channels, self.patch = n_channels, patch
        self.n_patches = n_samples // patch
        self.proj = nn.Linear(patch, d_model)
        self.pos = nn.Parameter(torch.randn(n_channels * self.n_patches, d_model) * 0.5)
        self.cls = nn.Parameter(torch.randn(1, 1, d_model)) if cls else None

    def reset_parameters(self) -> None:
        """Its own parameters drawn as built (``proj`` resets itself): a user's module that
        TransformerLens's ``reinitialized`` can reset."""
        nn.init.normal_(self.pos, std=0.5)
        if self.cls is not None:
            nn.init.normal_(self.cls)

    def forward(self, x):
        b = x.shape[0]
        patches = x.reshape(b, self.n_channels, self.n_patches, self.patch)
        tokens = self.proj(patches).flatten(1, 2) + self.pos
        if self.cls is None:
            return tokens
        return torch.cat((self.cls.expand(b, -1, -1), tokens), dim=1)


class TokenReadout(nn.Module):
    """A user's classifier: the CLS token (or the mean of the tokens) through a small MLP."""

    def __init__(self, d_model: int, n_classes: int, cls: bool):
        super().__init__()
        self.cls = cls
        self.net = nn.Sequential(nn.Linear(d_model, 8), nn.Tanh(), nn.Linear(8, n_classes))

    def forward(self, tokens):
        return self.net(tokens[:, 0] if self.cls else tokens.mean(1))


class NormLinearReadout(nn.Module):
    """A user's classifier that is a linear readout: a LayerNorm, then one Linear of the CLS
    token (or of the tokens' mean)."""

    def __init__(self, d_model: int, n_classes: int, cls: bool, eps: float = 1e-5):
        super().__init__()
        self.cls = cls
        self.norm, self.linear = nn.LayerNorm(d_model, eps=eps), nn.Linear(d_model, n_classes)

    def forward(self, tokens):
        normed = self.norm(tokens)
        return self.linear(normed[:, 0] if self.cls else normed.mean(1))


def torch_encoder_model(
    seed: int = 0,
    *,
    norm_first: bool = True,
    batch_first: bool = True,
    final_norm: bool = True,
    bias: bool = True,
    activation="gelu",
    cls: bool = True,
    shape: tuple[int, int] = CONTRACT_SHAPE,
    patch: int = 4,
    d_model: int = 16,
    n_layers: int = 2,
    eps: float = 1e-5,
    dtype: torch.dtype = torch.float32,
    convert: bool = True,
    readout: str = "mlp",
):
    """A user's model (tokenizer, ``nn.TransformerEncoder``, readout) and its conversion; with
    ``convert=False`` the parts (``encoder``, ``embed``, ``readout``, ``layout``) only.
    ``readout``: ``"mlp"`` (`TokenReadout`, the user's code) or ``"linear"``
    (`NormLinearReadout`, which the conversion reads as an unembedding)."""
    n_channels, n_samples = shape
    torch.manual_seed(seed)
    layer = nn.TransformerEncoderLayer(
        d_model,
        nhead=4,
        dim_feedforward=2 * d_model,
        dropout=0.1,
        activation=activation,
        layer_norm_eps=eps,
        batch_first=batch_first,
        norm_first=norm_first,
        bias=bias,
    )
    norm = nn.LayerNorm(d_model, eps=eps, bias=bias) if final_norm else None
    encoder = nn.TransformerEncoder(layer, n_layers, norm=norm, enable_nested_tensor=False)
    embed = PatchTokens(n_channels, n_samples, d_model, patch, cls)
    linear = readout == "linear"
    readout = NormLinearReadout(d_model, 4, cls, eps) if linear else TokenReadout(d_model, 4, cls)
    perturbed = [*encoder.named_parameters(), *(readout.named_parameters() if linear else ())]
    with torch.no_grad():  # norms and biases away from 1 and 0, so none hides a mistake
        for name, param in perturbed:
            if name.endswith(("norm1.weight", "norm2.weight", "norm.weight", "bias")):
                param.add_(torch.randn_like(param) * 0.3)
    encoder, embed, readout = (m.to(dtype).eval() for m in (encoder, embed, readout))
    layout = TokenLayout.channel_tokens(
        {"emg": n_channels}, n_patches=n_samples // patch, cls_token=cls
    )
    parts = {"encoder": encoder, "embed": embed, "readout": readout, "layout": layout}
    if not convert:
        return parts
    model = from_torch_encoder(
        encoder, embed=embed, readout=readout, layout=layout, n_samples=n_samples
    )

    def original(x: torch.Tensor) -> torch.Tensor:
        # With gradients on, torch runs the layers' Python forward (the function they declare).
        with torch.enable_grad():
            tokens = embed(x)
            out = encoder(tokens if batch_first else tokens.transpose(0, 1))
            return readout(out if batch_first else out.transpose(0, 1)).detach()

    original.parts = parts  # type: ignore[attr-defined]
    return model, original


# ------------------------------------------------------------------------------- braindecode
EEG_NAMES = ["FP1", "FZ", "C3", "CZ", "C4", "PZ", "O1", "O2"]  # in LaBraM's and EEGPT's tables


def perturb(model: nn.Module, scale: float = 0.2, seed: int = 1) -> nn.Module:
    """Move a source model's biases and norm weights away from 0 and 1 (braindecode
    initialises them so), so that a converter mistake cannot hide behind them."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("bias", "q_bias", "v_bias", "gamma_1", "gamma_2") or (
                leaf == "weight" and param.ndim == 1
            ):
                noise = torch.randn(param.shape, generator=gen, dtype=param.dtype)
                param.add_(scale * noise)
    return model


def _braindecode(cls_name: str, seed: int, dtype: torch.dtype, call=None, **kwargs):
    import warnings

    with warnings.catch_warnings():  # braindecode's deprecation and channel-order warnings
        warnings.simplefilter("ignore")
        import braindecode.models as bd

        torch.manual_seed(seed)
        source = perturb(getattr(bd, cls_name)(**kwargs)).to(dtype).eval()
        model = from_braindecode(source)

    def original(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return source(x, **(call or {}))

    original.source = source  # type: ignore[attr-defined]
    return model, original


def _chs(n: int) -> list[dict]:
    return [{"ch_name": name} for name in EEG_NAMES[:n]]


def pbt_model(seed=0, *, shape=CONTRACT_SHAPE, dtype=torch.float32, **kw):
    c, t = shape
    kw = {"d_input": 4, "embed_dim": 16, "num_layers": 2, "num_heads": 4, **kw}
    return _braindecode(
        "PBT", seed, dtype, n_chans=c, n_times=t, n_outputs=4, chs_info=_chs(c), **kw
    )


def labram_model(seed=0, *, shape=CONTRACT_SHAPE, dtype=torch.float32, **kw):
    # patches of 4 samples: one conv step of 16 channels, d_model 16
    c, t = shape
    kw = {"patch_size": 4, "conv_out_channels": 16, "num_layers": 2, "num_heads": 4, **kw}
    call = {"ch_names": EEG_NAMES[:c]}  # LaBraM's forward picks its embeddings by name
    return _braindecode(
        "Labram", seed, dtype, call, n_chans=c, n_times=t, n_outputs=4, chs_info=_chs(c), **kw
    )


def eegpt_model(seed=0, *, shape=CONTRACT_SHAPE, dtype=torch.float32, **kw):
    c, t = shape
    defaults = {"patch_size": 4, "patch_stride": None, "embed_num": 2, "embed_dim": 16}
    kw = {**defaults, "depth": 2, "num_heads": 4, "chan_proj_type": "none", **kw}
    return _braindecode(
        "EEGPT", seed, dtype, n_chans=c, n_times=t, n_outputs=4, chs_info=_chs(c), **kw
    )


CBRAMOD_CONVS = ((4, 49, 25, 24, (2, 4)), (4, 3, 1, 1, (2, 4)))  # d_model = 4 x 8 = 32


def cbramod_model(seed=0, *, shape=(6, 400), dtype=torch.float32, **kw):
    # CBraMod's spectral embedding needs patches of 200 samples
    c, t = shape
    kw = {"n_layer": 2, "nhead": 4, "dim_feedforward": 24, "emb_dim": 6, **kw}
    kw.setdefault("channels_kernel_stride_padding_norm", CBRAMOD_CONVS)
    return _braindecode(
        "CBraMod", seed, dtype, n_chans=c, n_times=t, n_outputs=4, chs_info=_chs(c), **kw
    )


BRAINDECODE: dict[str, Callable] = {
    "labram": labram_model,
    "cbramod": cbramod_model,
    "eegpt": eegpt_model,
    "pbt": pbt_model,
}

FACTORIES: dict[str, Callable] = {
    "torch_pre_ln": torch_encoder_model,
    "torch_post_ln": lambda seed=0, **kw: torch_encoder_model(
        seed, norm_first=False, final_norm=False, **kw
    ),
    **{f"braindecode_{name}": factory for name, factory in BRAINDECODE.items()},
}
