"""Attached models vs their originals (issue 38 item 7): the forward of a model opened with
`emg_lens.models.attach` (braindecode's through `attach_braindecode`), with nothing hooked and
with an edge mask in every attention call, against the original module's own eval-mode
forward, same weights, side by side in one process.

Prints one JSON line per architecture (``luna``, ``eegconformer``, ``handwritten``: a research
repository's transformer, ``qkv = nn.Linear(d, 3d)`` and ``.softmax(-1)``):

- ``ratio_unhooked``: attached, nothing hooked, ms / original ms per round (goal: median
  <= 1.02); ``ratio_masked``: attached with the edge mask / original unmasked (goal: median
  <= 1.3); each as min / median / max over the rounds. Each round runs all three, in an order
  rotated from round to round, after a warm-up, so a loaded machine slows them alike;
- ``ms_original``, ``ms_unhooked``, ``ms_masked``: the medians; ``max_abs_diff``: max
  |attached - original| unhooked (checked == 0 before timing: it runs the original's code);
  ``cut_share``: the share of edges the mask cuts (a seeded quarter of each call's, never a
  query's last key);
- the sizes: ``batch``, ``channels``, ``samples``, ``calls`` (attention calls per forward).

Default sizes: braindecode's defaults (the published widths and depths) on a 19-channel 10-20
montage, 4 s at 200 Hz; the hand-written model 4 blocks of width 128 over 152 channel-patch
tokens. ``--quick`` runs tiny models (a smoke test of the script, in the test suite). Time it
on an idle machine: figures measured under load mean nothing.

    python benchmarks/attach_forward.py [--repeats 7] [--batch 8] [--threads 2]
    python benchmarks/attach_forward.py --only luna --quick
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from _harness import TEN_TWENTY, architecture_main, median_ms, spread, warm_rounds
from torch import nn

from emg_lens.layout import TokenLayout
from emg_lens.models import attach
from emg_lens.models.attached.examples import Block
from emg_lens.models.attached.zoo import attach_braindecode


class HandWritten(nn.Module):
    """Channel-patch tokens, ``layers`` research-style blocks (`Block`, MLP 4x wide), a
    mean-pooled linear head."""

    def __init__(self, channels: int, samples: int, patch: int, d: int, layers: int, heads: int):
        super().__init__()
        self.channels, self.patch, self.n_times = channels, patch, samples
        self.embed = nn.Linear(patch, d)
        self.pos = nn.Parameter(0.02 * torch.randn(channels * (samples // patch), d))
        self.blocks = nn.Sequential(*(Block(d, heads, mlp_ratio=4) for _ in range(layers)))
        self.head = nn.Linear(d, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        tokens = self.embed(x.reshape(b, self.channels, -1, self.patch)).flatten(1, 2)
        return self.head(self.blocks(tokens + self.pos).mean(1))


def _build(arch: str, quick: bool) -> tuple[nn.Module, Any, tuple[int, int]]:
    """The original (eval mode), the attached model and the input shape."""
    torch.manual_seed(0)
    if arch == "handwritten":
        channels, samples, patch, d, layers = (4, 32, 8, 16, 2) if quick else (19, 800, 100, 128, 4)
        original = HandWritten(channels, samples, patch, d, layers, heads=4 if quick else 8).eval()
        layout = TokenLayout.channel_tokens(
            {"eeg": channels}, n_patches=samples // patch, cls_token=False
        )
        return original, attach(original, layout=layout, n_samples=samples), (channels, samples)
    import braindecode.models as bd

    channels, samples = (4, 256) if quick else (19, 800)
    kwargs = {
        "luna": {"chs_info": [{"ch_name": n} for n in TEN_TWENTY[:channels]]},
        "eegconformer": {},
    }[arch]
    if quick:
        kwargs |= {
            "luna": {"patch_size": 32, "num_queries": 2, "embed_dim": 16, "depth": 2},
            "eegconformer": {"n_filters_time": 8, "num_layers": 2, "num_heads": 2},
        }[arch]
    name = {"luna": "LUNA", "eegconformer": "EEGConformer"}[arch]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        original = getattr(bd, name)(n_chans=channels, n_times=samples, n_outputs=4, **kwargs)
    original.eval()
    return original, attach_braindecode(original), (channels, samples)


def _cut(model: Any) -> tuple[dict[int, torch.Tensor], float]:
    """A seeded quarter of each call's edges, never a query's last key; and the share cut."""
    gen = torch.Generator().manual_seed(0)
    masks, cut, total = {}, 0, 0
    for layer in range(model.cfg.n_layers):
        layout = model.layout_of(layer)
        mask = torch.rand(layout.n_queries, layout.n_tokens, generator=gen) < 0.25
        mask[:, -1] = False
        masks[layer] = mask
        cut, total = cut + int(mask.sum()), total + mask.numel()
    return masks, cut / total


def measure(
    arch: str, *, quick: bool, batch: int, warmup: int, repeats: int, per_round: int = 1
) -> dict[str, Any]:
    """Attach ``arch``, check the unhooked forward against the original, time all three."""
    original, model, shape = _build(arch, quick)
    masks, share = _cut(model)
    x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = original(x)
        diff = float((model(x) - expected).abs().max())
        assert diff == 0.0, (arch, diff)  # nothing hooked: the original's own forward
        assert torch.isfinite(model(x, edge_masks=masks)).all()
        runs = {
            "original": lambda: original(x),
            "unhooked": lambda: model(x),
            "masked": lambda: model(x, edge_masks=masks),
        }
        times = warm_rounds(runs, warmup=warmup, repeats=repeats, per_round=per_round)
    median = {name: median_ms(t) for name, t in times.items()}
    return {
        "benchmark": "attach_forward",
        "architecture": arch,
        "ratio_unhooked": spread([u / o for u, o in zip(times["unhooked"], times["original"])]),
        "ratio_masked": spread([m / o for m, o in zip(times["masked"], times["original"])]),
        "ms_original": median["original"],
        "ms_unhooked": median["unhooked"],
        "ms_masked": median["masked"],
        "max_abs_diff": diff,
        "cut_share": round(share, 3),
        "batch": batch,
        "channels": shape[0],
        "samples": shape[1],
        "calls": model.cfg.n_layers,
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "per_round": per_round,
    }


ARCHITECTURES = ("luna", "eegconformer", "handwritten")


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    return architecture_main(__doc__, ARCHITECTURES, measure, argv)


if __name__ == "__main__":
    main()
