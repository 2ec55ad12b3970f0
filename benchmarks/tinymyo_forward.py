"""Hooked TinyMyo vs a plain PyTorch SDPA TinyMyo, same weights, batch 8 x 800 tokens.

Prints one JSON line:

- ``ratio_speed_vs_plain``: plain ms / our unhooked ms (>= 0.95 is the goal; > 1 is faster);
- ``explicit_path_overhead``: ms with a no-op hook on every attention hook point (which sends
  attention down the explicit, every-hook path) / our unhooked ms.

The plain model's RoPE is torchtune's real-valued formula (what BioFoundation calls); ours
rotates the interleaved pairs as one complex multiplication (`emg_lens.components.Rotary`).
The implementations alternate inside one process (after a warm-up, the order rotated every
repeat) and each figure is the median over the repeats, so a noisy machine shifts both sides
alike.

    python benchmarks/tinymyo_forward.py [--repeats 5] [--batch 8] [--threads 1] [--device cpu]
    python benchmarks/tinymyo_forward.py --quick   # 1 layer, 4 channels: a smoke test
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from _harness import compare_and_time
from torch import nn

from emg_lens import EncoderConfig
from emg_lens.models import TinyMyo


class PlainRotaryAttention(nn.Module):
    """Fused qkv Linear, interleaved-pair RoPE at the token index, SDPA, output Linear."""

    def __init__(self, d_model: int, n_heads: int, n_tokens: int, base: float = 10000.0):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        inv_freq = base ** (-torch.arange(0, self.d_head, 2, dtype=torch.float64) / self.d_head)
        angles = torch.arange(n_tokens, dtype=torch.float64)[:, None] * inv_freq
        self.register_buffer("cos", angles.cos().float()[:, None, :], persistent=False)
        self.register_buffer("sin", angles.sin().float()[:, None, :], persistent=False)

    def rope(self, x: torch.Tensor) -> torch.Tensor:  # [batch, pos, head, d_head]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        cos, sin = self.cos[: x.shape[1]], self.sin[: x.shape[1]]
        return torch.stack((x0 * cos - x1 * sin, x1 * cos + x0 * sin), dim=-1).flatten(-2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, n, d = x.shape
        q, k, v = self.qkv(x).view(batch, n, 3, self.n_heads, self.d_head).unbind(2)
        q, k = self.rope(q), self.rope(k)
        z = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.proj(z.transpose(1, 2).reshape(batch, n, d))


class PlainBlock(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_mlp: int, n_tokens: int, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model, eps=eps)
        self.attn = PlainRotaryAttention(d_model, n_heads, n_tokens)
        self.norm2 = nn.LayerNorm(d_model, eps=eps)
        self.mlp = nn.Sequential()
        self.mlp.fc1 = nn.Linear(d_model, d_mlp)
        self.mlp.act = nn.GELU()
        self.mlp.fc2 = nn.Linear(d_mlp, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PlainTinyMyo(nn.Module):
    """TinyMyo in plain PyTorch with BioFoundation's parameter names (classification, concat).

    The patch embedding is a Linear on the patches (the published Conv2d's weight reshaped),
    the fastest plain form of the same map.
    """

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.n_channels, self.patch = cfg.n_channels, cfg.patch_samples
        self.patch_embed = nn.Linear(cfg.patch_samples, cfg.d_model)
        self.blocks = nn.ModuleList(
            PlainBlock(cfg.d_model, cfg.n_heads, cfg.d_mlp, cfg.n_tokens, cfg.eps)
            for _ in range(cfg.n_layers)
        )
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.eps)
        self.classifier = nn.Linear(cfg.n_channels * cfg.d_model, cfg.n_classes)

    def load_biofoundation(self, sd: dict[str, torch.Tensor]) -> None:
        ours = {}
        for key, value in sd.items():
            if key == "mask_token":
                continue
            if key.startswith("patch_embedding.patch_embed.proj."):
                leaf = key.rsplit(".", 1)[1]
                value = value.reshape(value.shape[0], -1) if leaf == "weight" else value
                key = f"patch_embed.{leaf}"
            key = key.replace("model_head.", "")
            ours[key] = value
        self.load_state_dict(ours, strict=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        h = self.patch_embed(x.reshape(batch, -1, self.patch))  # channel-major tokens
        for block in self.blocks:
            h = block(h)
        h = self.norm(h)  # "b (c p) d -> b p (c d)", mean over p
        h = h.view(batch, self.n_channels, -1, h.shape[-1]).permute(0, 2, 1, 3).flatten(2)
        return self.classifier(h.mean(dim=1))


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 layer, 4 channels, batch 2: a smoke test"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = {}
    if args.quick:
        sizes = {"n_layers": 1, "modalities": {"emg": 4}, "n_samples": 200}
        args.batch, args.repeats, args.warmup = 2, 3, 1

    cfg = EncoderConfig.preset("tinymyo", seed=0, device=args.device, **sizes)
    ours = TinyMyo(cfg, task="classification").eval()
    plain = PlainTinyMyo(cfg).to(args.device).eval()
    plain.load_biofoundation(ours.to_biofoundation())
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, cfg.n_channels, cfg.n_samples, generator=gen).to(args.device)

    def noop(tensor, hook):
        return tensor

    # every attention hook point that fires (a filter skips those whose flag is off)
    attn_hooks = [(lambda name: ".attn." in name, noop)]
    runs = {
        "ours": ours,
        "plain": plain,
        "explicit": lambda s: ours.run_with_hooks(s, fwd_hooks=attn_hooks),
    }
    with torch.inference_mode():
        expected = plain(x)
    ms, max_diff = compare_and_time(
        runs,
        x,
        expected,
        warmup=args.warmup,
        repeats=args.repeats,
        cuda=args.device.startswith("cuda"),
    )
    result = {
        "benchmark": "tinymyo_forward",
        "device": args.device,
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "tokens": ours.layout.n_tokens,
        "ratio_speed_vs_plain": round(ms["plain"] / ms["ours"], 3),
        "explicit_path_overhead": round(ms["explicit"] / ms["ours"], 3),
        "ms_ours": round(ms["ours"], 2),
        "ms_plain": round(ms["plain"], 2),
        "ms_explicit": round(ms["explicit"], 2),
        "repeats": args.repeats,
        "max_abs_diff": float(f"{max_diff:.2e}"),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
