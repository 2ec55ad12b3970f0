"""LayerNorm's explicit (hooked) path against TransformerLens's LayerNorm.forward (v3.5.1,
components/layer_norm.py): half-precision inputs are normalised in float32, the hooks see
float32, and the result is cast back to the model's dtype before ``w`` and ``b``."""

from __future__ import annotations

import pytest
import torch

from emg_lens.components.layer_norm import LayerNorm
from emg_lens.config import EncoderConfig


def _transformer_lens(x, w, b, eps, dtype):
    # TransformerLens's LayerNorm.forward, line by line
    if dtype not in [torch.float32, torch.float64]:
        x = x.to(torch.float32)
    x = x - x.mean(-1, keepdim=True)
    scale = (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    return (x / scale).to(dtype) * w + b, scale


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_the_hooked_path_is_transformer_lens_layer_norm(dtype):
    ln = LayerNorm(EncoderConfig.preset("tiny")).to(dtype)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        ln.w.copy_(torch.randn(ln.w.shape, generator=generator))
        ln.b.copy_(torch.randn(ln.b.shape, generator=generator))
    x = (torch.randn(2, 7, 16, generator=generator) * 3 + 1).to(dtype)
    seen = {}
    ln.hook_scale.add_hook(lambda t, hook: seen.setdefault("scale", t))
    out = ln(x)
    ln.hook_scale.remove_hooks()
    expected, scale = _transformer_lens(x, ln.w, ln.b, ln.eps, dtype)
    assert out.dtype == dtype and seen["scale"].dtype == scale.dtype
    torch.testing.assert_close(seen["scale"], scale, rtol=0, atol=0)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
