"""Converted models vs their originals: the unhooked forward of each model that
`emg_lens.models.from_braindecode` (Labram, CBraMod, EEGPT, PBT) and
`emg_lens.models.from_torch_encoder` convert, against the source model's own eval-mode forward,
same weights, side by side in one process.

Prints one JSON line per architecture:

- ``ratio``: converted ms / original ms per round, as min / median / max over the rounds
  (goal: median <= 1.1; < 1 is faster). Each round runs both, in an order rotated from round
  to round, after a warm-up, so a loaded machine slows both alike;
- ``ms_converted`` / ``ms_original``: the medians; ``max_abs_diff``: max |converted -
  original| over the logits (checked <= 1e-4 before timing);
- the sizes: ``batch``, ``channels``, ``samples``, ``tokens``, ``d_model``, ``layers``.

Default sizes are each architecture's published (braindecode's default) width and depth on a
19-channel 10-20 montage at 200 Hz: 4 s windows (PBT: 3.84 s, a multiple of its 64-sample
patches); ``--quick`` runs 2-layer models of a few tokens (a smoke test of the script, in the
test suite).

    python benchmarks/converted_forward.py [--repeats 7] [--batch 8] [--threads 2]
    python benchmarks/converted_forward.py --only cbramod eegpt
    python benchmarks/converted_forward.py --quick
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from _harness import TEN_TWENTY, architecture_main, median_ms, spread, warm_rounds
from torch import nn

from emg_lens.layout import TokenLayout
from emg_lens.models import from_braindecode, from_torch_encoder


def _chs(n: int) -> list[dict]:
    return [{"ch_name": name} for name in TEN_TWENTY[:n]]


def _braindecode(name: str, quick: bool) -> tuple[nn.Module, dict[str, Any], tuple[int, int]]:
    """A braindecode model (eval mode), its forward keywords and input shape."""
    import braindecode.models as bd

    if quick:
        shapes = {"Labram": (6, 8), "CBraMod": (6, 400), "EEGPT": (6, 16), "PBT": (6, 8)}
        kwargs = {
            "Labram": {"patch_size": 4, "conv_out_channels": 16, "num_layers": 2, "num_heads": 4},
            "CBraMod": {
                "n_layer": 2,
                "nhead": 4,
                "dim_feedforward": 24,
                "emb_dim": 6,
                "channels_kernel_stride_padding_norm": ((4, 49, 25, 24, (2, 4)),),
            },
            "EEGPT": {
                "patch_size": 4,
                "patch_stride": None,
                "embed_num": 2,
                "embed_dim": 16,
                "depth": 2,
                "num_heads": 4,
            },
            "PBT": {"d_input": 4, "embed_dim": 16, "num_layers": 2, "num_heads": 4},
        }[name]
    else:  # braindecode's defaults (the published models), 19 channels x 4 s at 200 Hz
        shapes = {"Labram": (19, 800), "CBraMod": (19, 800), "EEGPT": (19, 800), "PBT": (19, 768)}
        kwargs = {}
    channels, samples = shapes[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = getattr(bd, name)(
            n_chans=channels, n_times=samples, n_outputs=4, chs_info=_chs(channels), **kwargs
        )
    call = {"ch_names": TEN_TWENTY[:channels]} if name == "Labram" else {}
    return model.eval(), call, (channels, samples)


class _Tokens(nn.Module):
    """A typical user's tokenizer: one token per channel patch, and a CLS token first."""

    def __init__(self, channels: int, d: int, patch: int):
        super().__init__()
        self.channels, self.patch = channels, patch
        self.embed = nn.Linear(patch, d)
        self.cls = nn.Parameter(torch.randn(1, 1, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        t = self.embed(x.reshape(b, self.channels, -1, self.patch)).flatten(1, 2)
        return torch.cat((self.cls.expand(b, -1, -1), t), dim=1)


class _ClsHead(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.head = nn.Linear(d, 4)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(h[:, 0])


def _torch_encoder(quick: bool):
    """A typical user's model (tokenizer, ``nn.TransformerEncoder``, readout) and its
    conversion."""
    channels, samples, d, layers, patch = (6, 8, 16, 2, 4) if quick else (19, 800, 128, 4, 100)
    tokens, head = _Tokens(channels, d, patch), _ClsHead(d)
    layer = nn.TransformerEncoderLayer(d, 8 if d >= 64 else 4, 4 * d, batch_first=True)
    encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
    original = nn.Sequential(tokens, encoder, head).eval()
    layout = TokenLayout.channel_tokens({"eeg": channels}, n_patches=samples // patch)
    converted = from_torch_encoder(
        encoder, embed=tokens, readout=head, layout=layout, n_samples=samples
    )
    return original, converted, (channels, samples)


ARCHITECTURES = ("labram", "cbramod", "eegpt", "pbt", "torch_encoder")
SOURCE = {"labram": "Labram", "cbramod": "CBraMod", "eegpt": "EEGPT", "pbt": "PBT"}


def measure(
    arch: str, *, quick: bool, batch: int, warmup: int, repeats: int, per_round: int = 1
) -> dict[str, Any]:
    """Convert ``arch``, check it against the original, time both; one result dict."""
    torch.manual_seed(0)
    if arch == "torch_encoder":
        original, converted, shape = _torch_encoder(quick)
        call: dict[str, Any] = {}
    else:
        original, call, shape = _braindecode(SOURCE[arch], quick)
        converted = from_braindecode(original)
    x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected, ours = original(x, **call), converted(x)
        diff = float((ours - expected).abs().max())
        assert diff <= 1e-4, (arch, diff)
        runs = {"converted": lambda: converted(x), "original": lambda: original(x, **call)}
        times = warm_rounds(runs, warmup=warmup, repeats=repeats, per_round=per_round)
    ratios = [c / o for c, o in zip(times["converted"], times["original"])]
    cfg = converted.cfg
    return {
        "benchmark": "converted_forward",
        "architecture": arch,
        "ratio": spread(ratios),
        "ms_converted": median_ms(times["converted"]),
        "ms_original": median_ms(times["original"]),
        "max_abs_diff": diff,
        "batch": batch,
        "channels": shape[0],
        "samples": shape[1],
        "tokens": converted.layout.n_tokens,
        "d_model": cfg.d_model,
        "layers": cfg.n_layers,
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "per_round": per_round,
    }


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    return architecture_main(__doc__, ARCHITECTURES, measure, argv)


if __name__ == "__main__":
    main()
