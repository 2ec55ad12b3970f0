"""A FlexAttention backend for cut-only forwards: `torch.nn.attention.flex_attention` with a
block mask built from the edge mask (one per row of the batch where the mask has one), in
place of SDPA's boolean mask.

Where it may run, and where it runs:

- only where nothing needs more than the output: a fused path (native attention's SDPA paths,
  the interceptor's cut of an attached model's SDPA call), which never runs while a hook
  watches the attention (``hook_attn_scores``, ``hook_pattern``: the explicit path computes
  those), never while a gradient is asked for (``torch.is_grad_enabled()`` and q, k or v
  requiring grad: FlexAttention has no CPU backward, and this backend is for forwards), never
  in a trace (ONNX), and only with a boolean mask (a cut);
- ``"flex"``: wherever it may run (`attention_backend`), compiled on CUDA (heads at least
  `MIN_D_HEAD` wide: FlexAttention refuses narrower ones there), on a CPU through
  FlexAttention's eager reference (the tests compare it with SDPA there, within 1e-5);
- ``"auto"`` (the default) and ``"sdpa"``: never. Measured on an H100 (torch 2.11, CUDA 13;
  ``benchmarks/gpu_check.sh``: 16 edge sets, batch 8), FlexAttention with one block mask per
  row was slower than the same 16 sets stacked on the batch axis through SDPA with a per-row
  mask in every case: the converted LaBraM 118 vs 14 ms, CBraMod 148 vs 17 ms, EEGPT 209 vs
  96 ms, bare attention at 200-600 tokens 5.4-23 vs 1.2-7.8 ms. It beat a loop of one SDPA
  call per set only on LaBraM and CBraMod (1.9x and 1.8x) and lost to it at 200-600 tokens
  (0.3-0.4x). The study runner stacks its conditions there (`emg_lens.studies.ablation.
  stacking`), so nothing is chosen for the user: FlexAttention is asked for by name. On the
  same inputs its outputs are within 2e-6 of SDPA's (of their scale) on every converted model,
  on an H100 and an H200 (the CBraMod difference once reported here came from cuDNN's TF32
  convolutions at the larger batch, on both backends: docs/guide/scale-out.md).

The empty-row rule stays `emg_lens.components.attend.fused`'s: the caller passes this kernel
to it, so a query left with no key gets a zero row whatever the kernel gives.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float

from emg_lens.errors import ArgumentError

__all__ = ["BACKENDS", "MIN_D_HEAD", "attention_backend", "flex_attend", "use_flex"]

BACKENDS = ("auto", "flex", "sdpa")
MIN_D_HEAD = 16  # FlexAttention's CUDA kernels refuse narrower heads

_BACKEND: ContextVar[str] = ContextVar("emg_lens_attention_backend", default="auto")
_FAILED: list[str] = []  # the error that made FlexAttention unusable in this process, if any


@contextmanager
def attention_backend(backend: str) -> Iterator[None]:
    """Within the block (this thread or task), fused attention under a cut runs on
    ``backend``: ``"auto"``, ``"flex"`` or ``"sdpa"`` (see the module docstring).

    >>> with attention_backend("sdpa"):
    ...     _BACKEND.get()
    'sdpa'
    >>> with attention_backend("fast"):
    ...     pass
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: attention backend 'fast': expected one of 'auto', 'flex', 'sdpa'
    """
    if backend not in BACKENDS:
        raise ArgumentError(
            f"attention backend {backend!r}: expected one of "
            + ", ".join(repr(b) for b in BACKENDS)
        )
    token = _BACKEND.set(backend)
    try:
        yield
    finally:
        _BACKEND.reset(token)


def use_flex(
    q: Float[torch.Tensor, "batch head query d_head"],
    k: Float[torch.Tensor, "batch head key d_head"],
    v: Float[torch.Tensor, "batch head key d_value"],
    mask: torch.Tensor | None,
) -> bool:
    """Whether a fused attention of ``q, k, v`` under ``mask`` runs on FlexAttention (see the
    module docstring): only where ``"flex"`` is asked for, with a boolean mask, no gradient
    asked for and no trace.

    >>> q = torch.randn(1, 2, 300, 32)
    >>> cut = torch.zeros(300, 300, dtype=torch.bool)
    >>> use_flex(q, q, q, cut), use_flex(q, q, q, None)
    (False, False)
    >>> with attention_backend("flex"):
    ...     use_flex(q, q, q, cut), use_flex(q.requires_grad_(), q, q, cut)
    (True, False)
    """
    backend = _BACKEND.get()
    if backend != "flex":
        return False  # first: every fused call asks, and this is the default's answer
    if mask is None or mask.dtype != torch.bool or _FAILED:
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        return False
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return False
    return q.device.type != "cuda" or (q.shape[-1] >= MIN_D_HEAD and _has_triton())


def flex_attend(
    q: Float[torch.Tensor, "batch head query d_head"],
    k: Float[torch.Tensor, "batch head key d_head"],
    v: Float[torch.Tensor, "batch head key d_value"],
    allowed: Bool[torch.Tensor, "... query key"],
    scale: float | None = None,
    *,
    enable_gqa: bool = False,
) -> Float[torch.Tensor, "batch head query d_value"]:
    """``softmax(q k^T * scale) v`` over the keys ``allowed`` (True = may attend, as SDPA
    reads a boolean mask; broadcastable to ``[batch, head, query, key]``, one mask per row
    where it has a batch axis) with FlexAttention: compiled on CUDA, its eager reference
    elsewhere. A query with no key allowed is left to the caller (`attend.fused` zeroes it).

    >>> q, k, v = torch.randn(3, 2, 5, 8), torch.randn(3, 2, 6, 8), torch.randn(3, 2, 6, 8)
    >>> allowed = torch.rand(3, 1, 5, 6) > 0.3
    >>> allowed[..., 0] = True  # every query keeps a key
    >>> out = flex_attend(q, k, v, allowed)
    >>> bool((out - F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)).abs().max() < 1e-5)
    True
    """
    from torch.nn.attention.flex_attention import create_block_mask

    allowed = allowed[(None,) * (4 - allowed.ndim)]
    rows, heads = allowed.shape[0], allowed.shape[1]
    one_row, one_head = rows == 1, heads == 1

    def mask_mod(b, h, q_idx, kv_idx):  # FlexAttention passes the query's batch row and head
        return allowed[0 if one_row else b, 0 if one_head else h, q_idx, kv_idx]

    block_mask = create_block_mask(
        mask_mod, rows, heads, q.shape[-2], k.shape[-2], device=allowed.device
    )
    if q.device.type != "cuda":
        return _eager()(q, k, v, block_mask=block_mask, scale=scale, enable_gqa=enable_gqa)
    try:
        return _compiled()(q, k, v, block_mask=block_mask, scale=scale, enable_gqa=enable_gqa)
    except Exception as exc:  # a compiler that fails here fails again: SDPA from now on
        _FAILED.append(f"{type(exc).__name__}: {exc}")
        warnings.warn(
            f"FlexAttention failed on this machine ({_FAILED[0][:300]}); emg_lens runs SDPA "
            "instead from now on (the same numbers)",
            RuntimeWarning,
            stacklevel=2,
        )
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=allowed, scale=scale, enable_gqa=enable_gqa
    )


@functools.cache
def _has_triton() -> bool:
    from torch.utils._triton import has_triton

    return has_triton()


@functools.cache
def _compiled():
    """FlexAttention compiled (once per process; each new shape compiles once more)."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


@functools.cache
def _eager():
    """FlexAttention's eager reference (an unfused computation; its warning that it is not
    compiled is expected here, and silenced)."""
    from torch.nn.attention.flex_attention import flex_attention

    def run(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "flex_attention called without torch.compile")
            return flex_attention(*args, **kwargs)

    return run
