"""The FlexAttention backend (`emg_lens.components.flex`) against SDPA: 16 edge sets of the
converted LaBraM, CBraMod and EEGPT (braindecode's published sizes, 19 channels, 4 s at 200 Hz,
as `converted_forward.py` builds them), then bare attention at the large models' sizes.

Prints one JSON line per model (``"kind": "model"``) and per attention size
(``"kind": "attention"``), each as soon as it is measured:

- ``max_abs_diff`` / ``max_rel_diff``: the edge sets stacked on the batch axis (one mask per
  row), FlexAttention against SDPA on the same inputs: max |flex - sdpa| and that over
  max |sdpa| (the backend's own difference; goal: <= 1e-5 relative);
  ``max_rel_diff_vs_loop``: the stacked FlexAttention call against one SDPA call per edge set
  (its mask broadcast over the window batch), which adds what the batch's size changes (on
  CUDA cuDNN may pick a TF32 convolution for a larger batch: the converted CBraMod's patch
  embedding, 5e-4 of its scale at 128 rows; ``torch.backends.cudnn.allow_tf32 = False``
  keeps it float32);
- ``ms_loop_sdpa``: one call per edge set on SDPA (what the study runner's broadcast form
  runs); ``ms_stacked_sdpa``, ``ms_stacked_flex``: all sets in one call, SDPA with a
  per-row mask or FlexAttention with a per-row block mask; ``ms_auto``: the stacked call
  with the backend ``"auto"`` chooses (``auto_took_flex`` says whether it took
  FlexAttention: never, since the H100's figures of docs/guide/scale-out.md); medians over
  the rounds after a warm-up;
- ``loop_vs_flex``: ms_loop_sdpa / ms_stacked_flex per round, ``{min, median, max}`` (> 1:
  FlexAttention faster), and ``stacked_sdpa_vs_flex`` likewise;
- ``rel_vs_float64``: each path's max |out - ref| / max |ref|, ``ref`` the loop of SDPA calls
  in float64 on the same device (``loop_sdpa``, ``stacked_sdpa``, ``stacked_flex``): which
  side of a difference is off;
- ``s_first_flex``: seconds of the first FlexAttention call (on CUDA its compilation);
- the sizes: ``tokens``, ``d_head``, ``heads``, ``sets``, ``batch`` (windows per set).

``--per-call MODEL`` looks inside one model's stacked FlexAttention forward instead: one line
per attention call (``"kind": "call"``) with its shapes, its query rows left with no key, and
the max error over the output's scale of FlexAttention, of FlexAttention on a contiguous copy
of the mask, and of SDPA, each against the same call in float64 (``rel_flex``,
``rel_flex_contiguous``, ``rel_sdpa``): which calls a model-level difference comes from.

On CUDA FlexAttention is compiled; on a CPU it runs its eager reference (slow: use
``--quick`` there, as the test suite does).

    python benchmarks/flex_vs_sdpa.py --device cuda [--sets 16] [--batch 8] [--repeats 5]
    python benchmarks/flex_vs_sdpa.py --quick   # 2-layer models of a few tokens, the CPU
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from _harness import median_ms, spread, warm_rounds
from converted_forward import _braindecode

from emg_lens.cli.common import resolve_device
from emg_lens.components import flex
from emg_lens.components.flex import attention_backend
from emg_lens.models import from_braindecode

MODELS = {"labram": "Labram", "cbramod": "CBraMod", "eegpt": "EEGPT"}
# Bare attention: (tokens, heads, d_head) of LaBraM-base and CBraMod at 200-600 tokens.
ATTENTION = ((200, 10, 20), (400, 8, 25), (600, 10, 20))
QUICK_ATTENTION = ((24, 2, 16),)


@functools.cache
def _flex_calls() -> list[int]:
    """A counter of `flex.flex_attend` calls, installed once where its callers look it up."""
    import emg_lens.components.attention as attention
    import emg_lens.models.attached.intercept as intercept

    calls = [0]
    real = flex.flex_attend

    def counted(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    for module in (attention, intercept):
        module.flex_attend = counted
    return calls


def _cuts(model, n_sets: int, gen: torch.Generator) -> list[dict[int, torch.Tensor]]:
    """``n_sets`` random edge sets (30 % of the edges of every layer cut, ``[heads, q, k]``);
    the first also cuts every key of query 1 (a query left with no key)."""
    heads = getattr(model, "layer_heads", None) or (model.cfg.n_heads,) * model.cfg.n_layers
    layout_of = getattr(model, "layout_of", lambda layer: model.layout)
    sets = []
    for i in range(n_sets):
        cut = {}
        for layer in range(model.cfg.n_layers):
            n = layout_of(layer).n_tokens
            mask = torch.rand(heads[layer], n, n, generator=gen) < 0.3
            if i == 0:
                mask[:, 1, :] = True
            cut[layer] = mask
        sets.append(cut)
    return sets


def _stacked(sets: list[dict[int, torch.Tensor]], batch: int) -> dict[int, torch.Tensor]:
    """Per layer, the sets' masks one per row: ``[sets * batch, heads, q, k]``."""
    return {
        layer: torch.cat([s[layer][None].expand(batch, -1, -1, -1) for s in sets])
        for layer in sets[0]
    }


def _rel(out: torch.Tensor, expected: torch.Tensor) -> float:
    """max |out - expected| over max |expected|."""
    scale = float(expected.abs().max())
    diff = float((out - expected).abs().max())
    return diff / scale if scale else diff


def _compare(
    loop: Callable[[], torch.Tensor],
    stacked: Callable[[str], torch.Tensor],
    reference: Callable[[], torch.Tensor],
    cuda: bool,
    repeats,
) -> dict[str, Any]:
    """Equality and times of the loop of SDPA calls and the stacked call per backend;
    ``reference`` is the loop in float64."""
    with torch.inference_mode():
        start = time.perf_counter()
        got = stacked("flex")
        if cuda:
            torch.cuda.synchronize()
        first = time.perf_counter() - start
        outputs = {"loop_sdpa": loop(), "stacked_sdpa": stacked("sdpa"), "stacked_flex": got}
        ref = reference()
        rel_vs_float64 = {name: _rel(out.double(), ref) for name, out in outputs.items()}
        calls = _flex_calls()
        before = calls[0]
        stacked("auto")
        took_flex = calls[0] > before
        runs = {
            "loop_sdpa": loop,
            "stacked_sdpa": lambda: stacked("sdpa"),
            "stacked_flex": lambda: stacked("flex"),
            "auto": lambda: stacked("auto"),
        }
        times = warm_rounds(runs, warmup=1, repeats=repeats, cuda=cuda)
    return {
        "max_abs_diff": float((got - outputs["stacked_sdpa"]).abs().max()),
        "max_rel_diff": _rel(got, outputs["stacked_sdpa"]),
        "max_rel_diff_vs_loop": _rel(got, outputs["loop_sdpa"]),
        "rel_vs_float64": rel_vs_float64,
        "finite": bool(torch.isfinite(got).all()),
        **{f"ms_{name}": median_ms(t) for name, t in times.items()},
        "auto_took_flex": took_flex,
        "loop_vs_flex": spread([a / b for a, b in zip(times["loop_sdpa"], times["stacked_flex"])]),
        "stacked_sdpa_vs_flex": spread(
            [a / b for a, b in zip(times["stacked_sdpa"], times["stacked_flex"])]
        ),
        "s_first_flex": round(first, 3),
    }


def _setting(name: str, device: torch.device, quick: bool, n_sets: int, batch: int):
    """The converted ``name`` on ``device``, ``batch`` windows, ``n_sets`` edge sets, and the
    sets stacked: the windows repeated per set and the masks one per row."""
    source, _, shape = _braindecode(MODELS[name], quick)
    model = from_braindecode(source).to(device).eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *shape, generator=gen).to(device)
    sets = [{k: m.to(device) for k, m in s.items()} for s in _cuts(model, n_sets, gen)]
    x_all = x.repeat(n_sets, *(1,) * (x.ndim - 1))
    return model, x, sets, x_all, _stacked(sets, batch)


def measure_model(
    name: str, device: torch.device, *, quick: bool, n_sets: int, batch: int, repeats: int
) -> dict[str, Any]:
    """One converted model: its edge sets in a loop on SDPA against stacked on each backend."""
    model, x, sets, x_all, per_row = _setting(name, device, quick, n_sets, batch)

    def loop():
        with attention_backend("sdpa"):
            return torch.cat([model(x, edge_masks=s) for s in sets])

    def stacked(backend: str):
        with attention_backend(backend):
            return model(x_all, edge_masks=per_row)

    model64, x64 = copy.deepcopy(model).double(), x.double()  # outside inference mode

    def reference():
        with attention_backend("sdpa"):
            return torch.cat([model64(x64, edge_masks=s) for s in sets])

    result = _compare(loop, stacked, reference, device.type == "cuda", repeats)
    return {
        "benchmark": "flex_vs_sdpa",
        "kind": "model",
        "model": name,
        "device": _device_name(device),
        "tokens": model.layout.n_tokens,
        "d_head": model.cfg.d_head,
        "heads": model.cfg.n_heads,
        "layers": model.cfg.n_layers,
        "sets": n_sets,
        "batch": batch,
        **result,
    }


def measure_attention(
    tokens: int,
    heads: int,
    d_head: int,
    device: torch.device,
    *,
    n_sets: int,
    batch: int,
    repeats: int,
) -> dict[str, Any]:
    """Bare attention: ``n_sets`` masks over ``batch`` rows each, as above."""
    gen = torch.Generator().manual_seed(tokens)
    q, k, v = (
        torch.randn(batch, heads, tokens, d_head, generator=gen).to(device) for _ in range(3)
    )
    cuts = (torch.rand(n_sets, heads, tokens, tokens, generator=gen) < 0.3).to(device)
    cuts[0, :, 1, :] = True  # a query left with no key
    q_all, k_all, v_all = (t.repeat(n_sets, 1, 1, 1) for t in (q, k, v))
    per_row = cuts.repeat_interleave(batch, dim=0)
    from emg_lens.components.attention import _sdpa

    scale = d_head**-0.5

    def loop():
        with attention_backend("sdpa"):
            return torch.cat([_sdpa(q, k, v, cut[None], scale) for cut in cuts])

    def stacked(backend: str):
        with attention_backend(backend):
            return _sdpa(q_all, k_all, v_all, per_row, scale)

    def reference():
        q64, k64, v64 = (t.double() for t in (q, k, v))
        with attention_backend("sdpa"):
            return torch.cat([_sdpa(q64, k64, v64, cut[None], scale) for cut in cuts])

    result = _compare(loop, stacked, reference, device.type == "cuda", repeats)
    return {
        "benchmark": "flex_vs_sdpa",
        "kind": "attention",
        "device": _device_name(device),
        "tokens": tokens,
        "d_head": d_head,
        "heads": heads,
        "sets": n_sets,
        "batch": batch,
        **result,
    }


def per_call(name: str, device: torch.device, *, quick: bool, n_sets: int, batch: int):
    """Each FlexAttention call of one stacked forward of ``name``, against float64 (see the
    module docstring); yields one dict per call."""
    import emg_lens.components.attention as attention

    model, _, _, x_all, per_row = _setting(name, device, quick, n_sets, batch)
    real, calls = flex.flex_attend, []

    def rel(out, ref, keep):
        out = torch.where(keep, out.double(), 0.0)  # rows with no key: the caller zeroes them
        return float((out - ref).abs().max() / ref.abs().max().clamp_min(1e-30))

    def checked(q, k, v, allowed, scale=None, *, enable_gqa=False):
        got = real(q, k, v, allowed, scale, enable_gqa=enable_gqa)
        mask = allowed[(None,) * (4 - allowed.ndim)].expand(q.shape[0], q.shape[1], -1, -1)
        keep = mask.any(-1, keepdim=True)
        q64, k64, v64 = (t.double() for t in (q, k, v))
        ref = torch.where(
            keep,
            F.scaled_dot_product_attention(
                q64, k64, v64, attn_mask=mask, scale=scale, enable_gqa=enable_gqa
            ),
            0.0,
        )
        sdpa = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
        again = real(q, k, v, allowed.contiguous(), scale, enable_gqa=enable_gqa)
        calls.append(
            {
                "benchmark": "flex_vs_sdpa",
                "kind": "call",
                "model": name,
                "call": len(calls),
                "q": list(q.shape),
                "mask": list(allowed.shape),
                "mask_contiguous": allowed.is_contiguous(),
                "rows_without_key": int((~keep).sum()),
                "rel_flex": rel(got, ref, keep),
                "rel_flex_contiguous": rel(again, ref, keep),
                "rel_sdpa": rel(sdpa, ref, keep),
            }
        )
        return got

    attention.flex_attend = checked
    try:
        with torch.inference_mode(), attention_backend("flex"):
            model(x_all, edge_masks=per_row)
    finally:
        attention.flex_attend = real
    yield from calls


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cpu | cuda | cuda:N | auto")
    parser.add_argument("--sets", type=int, default=16, help="edge sets (default 16)")
    parser.add_argument("--batch", type=int, default=8, help="windows per set (default 8)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", nargs="+", choices=[*MODELS, "attention"])
    parser.add_argument("--quick", action="store_true", help="tiny models, 4 sets of 2 windows")
    parser.add_argument("--per-call", choices=MODELS, help="each flex call of MODEL vs float64")
    args = parser.parse_args(argv)
    if args.quick:
        args.sets, args.batch, args.repeats = 4, 2, 1
    device = resolve_device(args.device)
    out = []
    if args.per_call:
        for line in per_call(
            args.per_call, device, quick=args.quick, n_sets=args.sets, batch=args.batch
        ):
            out.append(line)
            print(json.dumps(line), flush=True)
        return out
    for name in args.only or [*MODELS, "attention"]:
        if name == "attention":
            for tokens, heads, d_head in QUICK_ATTENTION if args.quick else ATTENTION:
                out.append(
                    measure_attention(
                        tokens,
                        heads,
                        d_head,
                        device,
                        n_sets=args.sets,
                        batch=args.batch,
                        repeats=args.repeats,
                    )
                )
                print(json.dumps(out[-1]), flush=True)
            continue
        out.append(
            measure_model(
                name,
                device,
                quick=args.quick,
                n_sets=args.sets,
                batch=args.batch,
                repeats=args.repeats,
            )
        )
        print(json.dumps(out[-1]), flush=True)
    return out


if __name__ == "__main__":
    main()
