"""Unhooked IsoNet blocks vs a plain PyTorch pre-LN SDPA encoder of the same size
(docs/DESIGN.md §9).

Both compute the same function on the same weights: ours are the "paper" preset's five
512-D, 8-head blocks (49 tokens); the plain encoder is written here with a fused-qkv
``nn.Linear``, ``F.scaled_dot_product_attention``, ``nn.LayerNorm`` and an ``nn.Linear`` MLP,
loaded from our ``W_Q/W_K/W_V [head, d_model, d_head]``, ``W_O [head, d_head, d_model]``,
``W_in``, ``W_out`` and LayerNorm ``w``/``b``. The script first asserts that the two final
residual streams agree to 1e-4, then times them alternately in one process (after a warm-up,
under ``torch.inference_mode``, the order rotated every repeat) and prints one JSON line:

- ``speed_ratio``: plain ms / our unhooked ms (target >= 0.9 on CPU; > 1 is faster);
- ``explicit_overhead``: ms with a no-op hook on every ``hook_attn_scores`` (which sends
  attention down the explicit, every-hook path) / our unhooked ms;
- ``matmul_fraction``: the forward's matrix products alone (`matmul_limit`: the fused q/k/v
  projection, the scores, the pattern times the values, the output projection and the MLP's
  two, per layer, on operands of their sizes made beforehand, into outputs made beforehand) /
  our unhooked ms: the share of our forward that is the products no implementation avoids
  (the rest is LayerNorm, biases, GELU, the softmax, the adds);
- ``peak_fraction``: our forward's rate of floating-point operations (``gflops_ours``, the
  products' operations per second) / the device's rate on one large square product
  (``gflops_peak``, ``--peak-size`` rows, timed in the same rounds): the issue's "matmul limit"
  (target >= 0.85 on a CPU). Small products run below the peak, so ``matmul_fraction`` says
  how much of the gap is ours and how much is the products' shapes.

Each figure is the median over the repeats, so a noisy machine shifts both sides alike.

    python benchmarks/forward_vs_sdpa.py [--batch 64] [--repeats 9] [--device cpu]
    python benchmarks/forward_vs_sdpa.py --quick   # tiny preset, seconds: a smoke test
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from _harness import compare_and_time, significant
from torch import nn

from emg_lens import EncoderConfig
from emg_lens.models import IsoNet

ACTIVATIONS = {"gelu": nn.GELU(), "gelu_new": nn.GELU(approximate="tanh"), "relu": nn.ReLU()}


class PlainAttention(nn.Module):
    """Fused qkv Linear, SDPA, output Linear: the standard fast PyTorch attention."""

    def __init__(self, d_model: int, n_heads: int, d_head: int):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_head
        self.qkv = nn.Linear(d_model, 3 * n_heads * d_head)
        self.proj = nn.Linear(n_heads * d_head, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, n, _ = x.shape
        q, k, v = self.qkv(x).view(batch, n, 3, self.n_heads, self.d_head).unbind(2)
        z = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.proj(z.transpose(1, 2).reshape(batch, n, self.n_heads * self.d_head))


class PlainBlock(nn.Module):
    """``x + attn(ln1(x))``, then ``+ mlp(ln2(.))``: pre-LN, as our blocks."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.d_model, eps=cfg.eps)
        self.attn = PlainAttention(cfg.d_model, cfg.n_heads, cfg.d_head)
        self.norm2 = nn.LayerNorm(cfg.d_model, eps=cfg.eps)
        self.fc1 = nn.Linear(cfg.d_model, cfg.d_mlp)
        self.act = ACTIVATIONS[cfg.act_fn]
        self.fc2 = nn.Linear(cfg.d_mlp, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class PlainEncoder(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.blocks = nn.ModuleList(PlainBlock(cfg) for _ in range(cfg.n_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x

    @torch.no_grad()
    def load_from(self, model: IsoNet) -> None:
        """Copy our blocks' TransformerLens-shaped weights into the nn.Linear/LayerNorm ones."""

        def heads_to_linear(W: torch.Tensor) -> torch.Tensor:  # [h, d_model, d_head]
            return W.permute(0, 2, 1).reshape(-1, W.shape[1])  # [h * d_head, d_model]

        for plain, ours in zip(self.blocks, model.blocks):
            attn = ours.attn
            plain.attn.qkv.weight.copy_(
                torch.cat([heads_to_linear(W) for W in (attn.W_Q, attn.W_K, attn.W_V)])
            )
            plain.attn.qkv.bias.copy_(
                torch.cat([b.flatten() for b in (attn.b_Q, attn.b_K, attn.b_V)])
            )
            plain.attn.proj.weight.copy_(attn.W_O.reshape(-1, attn.W_O.shape[-1]).T)
            plain.attn.proj.bias.copy_(attn.b_O)
            for norm, ln in ((plain.norm1, ours.ln1), (plain.norm2, ours.ln2)):
                norm.weight.copy_(ln.w)
                norm.bias.copy_(ln.b)
            plain.fc1.weight.copy_(ours.mlp.W_in.T)
            plain.fc1.bias.copy_(ours.mlp.b_in)
            plain.fc2.weight.copy_(ours.mlp.W_out.T)
            plain.fc2.bias.copy_(ours.mlp.b_out)


def matmul_limit(
    cfg: EncoderConfig, batch: int, n_tokens: int, device: str
) -> tuple[Callable[[torch.Tensor], None], int]:
    """A run of the matrix products an unhooked forward of ``cfg``'s blocks computes on
    ``batch`` windows of ``n_tokens`` tokens, and nothing else: per layer, its own operands of
    the products' shapes (the weights of one layer do not sit in the cache for the next),
    drawn once, each product written into an output allocated once (`torch.matmul`'s
    ``out``). Its time is the floor a forward of these blocks cannot go below on this device;
    returned with the products' floating-point operations.

    >>> run, flops = matmul_limit(EncoderConfig.preset("tiny"), batch=2, n_tokens=7, device="cpu")
    >>> run(torch.empty(0))  # the argument is ignored, as the timing harness passes one
    """
    gen = torch.Generator().manual_seed(0)
    rows, bh = batch * n_tokens, batch * cfg.n_heads
    d, hd, dh, n = cfg.d_model, cfg.n_heads * cfg.d_head, cfg.d_head, n_tokens
    shapes = [
        ((rows, d), (d, 3 * hd)),  # q, k and v in one product
        ((bh, n, dh), (bh, dh, n)),  # the scores
        ((bh, n, n), (bh, n, dh)),  # the pattern times the values
        ((rows, hd), (hd, d)),  # the output projection
        ((rows, d), (d, cfg.d_mlp)),  # the MLP in
        ((rows, cfg.d_mlp), (cfg.d_mlp, d)),  # and out
    ]
    products = [
        [tuple(torch.randn(s, generator=gen).to(device) for s in pair) for pair in shapes]
        for _ in range(cfg.n_layers)
    ]
    outs = [[torch.matmul(a, b) for a, b in layer] for layer in products]

    def run(_: torch.Tensor) -> None:
        for layer, out in zip(products, outs):
            for (a, b), o in zip(layer, out):
                torch.matmul(a, b, out=o)

    return run, sum(2 * a.numel() * b.shape[-1] for layer in products for a, b in layer)


def square_product(size: int, device: str) -> tuple[Callable[[torch.Tensor], None], int]:
    """A run of one ``[size, size] @ [size, size]`` product into an output allocated once
    (near the device's peak rate of multiply-adds), and its floating-point operations."""
    gen = torch.Generator().manual_seed(1)
    a, b = (torch.randn(size, size, generator=gen).to(device) for _ in range(2))
    out = torch.empty(size, size, device=device)

    def run(_: torch.Tensor) -> None:
        torch.matmul(a, b, out=out)

    return run, 2 * size**3


@torch.no_grad()
def _perturb(model: nn.Module, seed: int = 1) -> None:
    """Non-zero biases and non-unit LayerNorm scales, so a mis-converted one shows."""
    gen = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf.startswith("b") or leaf == "w":
            param.add_(0.1 * torch.randn(param.shape, generator=gen, dtype=param.dtype).to(param))


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--peak-size", type=int, default=2048, help="rows of the square product timed as the peak"
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny preset, batch 4, 3 repeats: a smoke test"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.preset, args.batch, args.repeats, args.warmup, args.peak_size = "tiny", 4, 3, 1, 64

    cfg = EncoderConfig.preset(args.preset, seed=0, device=args.device)
    model = IsoNet(cfg).eval()
    _perturb(model)
    plain = PlainEncoder(cfg).to(args.device).eval()
    plain.load_from(model)

    gen = torch.Generator().manual_seed(0)
    signals = torch.randn(args.batch, cfg.n_channels, cfg.n_samples, generator=gen)
    cuda = args.device.startswith("cuda")

    def noop(tensor, hook):
        return tensor

    score_hooks = [(f"blocks.{l}.attn.hook_attn_scores", noop) for l in range(cfg.n_layers)]  # noqa: E741
    runs: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "ours": lambda r: model(r, start_at_layer=0, return_type=None),
        "plain": plain,
        "explicit": lambda r: model.run_with_hooks(
            r, fwd_hooks=score_hooks, start_at_layer=0, return_type=None
        ),
    }
    with torch.inference_mode():
        resid = model(signals.to(args.device), stop_at_layer=0)  # the embedded input
        expected = plain(resid)
    limit, limit_flops = matmul_limit(cfg, args.batch, model.layout.n_tokens, args.device)
    peak, peak_flops = square_product(args.peak_size, args.device)
    ms, max_diff = compare_and_time(
        runs,
        resid,
        expected,
        warmup=args.warmup,
        repeats=args.repeats,
        cuda=cuda,
        unchecked={"matmul": limit, "peak": peak},
    )
    gflops_ours = limit_flops / ms["ours"] / 1e6
    gflops_peak = peak_flops / ms["peak"] / 1e6
    result = {
        "benchmark": "forward_vs_sdpa",
        "preset": args.preset,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "tokens": model.layout.n_tokens,
        "d_model": cfg.d_model,
        "n_layers": cfg.n_layers,
        "ms_ours": significant(ms["ours"]),
        "ms_plain": significant(ms["plain"]),
        "ms_explicit": significant(ms["explicit"]),
        "speed_ratio": round(ms["plain"] / ms["ours"], 3),
        "explicit_overhead": round(ms["explicit"] / ms["ours"], 3),
        "ms_matmul": significant(ms["matmul"]),
        "matmul_fraction": round(ms["matmul"] / ms["ours"], 3),
        "gflops_ours": significant(gflops_ours),
        "gflops_peak": significant(gflops_peak),
        "peak_fraction": round(gflops_ours / gflops_peak, 3),
        "peak_size": args.peak_size,
        "repeats": args.repeats,
        "max_abs_diff": float(f"{max_diff:.2e}"),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
