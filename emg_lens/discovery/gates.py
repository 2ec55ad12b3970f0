"""Learned edge gates: candidates ranked by mask optimisation (Edge Pruning, arXiv 2406.16778).

Each candidate gets a gate ``g = sigmoid(theta)`` that adds ``log g`` to its edges' attention
scores (0: exactly the ``-inf`` cut; 1: the clean model). The gates are fitted jointly to keep
the full model's output distribution (KL per window) under a rising penalty on the mean open
gate, so every gate closes in the end and the order is what the fit learns: a candidate's
*survival* (its gate averaged over the fit) ranks it for `emg_lens.discovery.search.discover`
(``method="gates"``; why: docs/guide/discovery.md), which still decides by exact passes.

>>> from emg_lens import EncoderConfig
>>> from emg_lens.models import IsoNet
>>> from emg_lens.discovery import default_family
>>> model = IsoNet(EncoderConfig.preset("tiny", seed=0, init_range=0.5)).eval()
>>> X = model.example_input(32)
>>> survival = fit_gates(model, X, default_family(model), return_type="logits", steps=20)
>>> survival.shape, bool(((survival > 0) & (survival < 1)).all())
((72,), True)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float

from emg_lens.discovery.family import Candidate, CompiledFamily, compile_family
from emg_lens.errors import ArgumentError, check_int, check_number, checked
from emg_lens.hooks import layer_of, name_filter

GATE_STEPS = 100
"""Optimisation steps of `fit_gates` (Adam, one batch of windows per step)."""


def gate_covers(
    model: Any,
    family: list[Candidate] | CompiledFamily,
    device: torch.device | str | None = None,
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Per layer the family touches: the positions (in ``family``) of its candidates there and
    their stacked ``[candidate, head, query, key]`` masks (`CompiledFamily.by_layer`), on
    ``device`` (None: the model's).

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> from emg_lens.discovery import default_family
    >>> model = IsoNet(EncoderConfig.preset("tiny"))
    >>> ids, stacked = gate_covers(model, default_family(model))[1]
    >>> ids[:2].tolist(), tuple(stacked.shape)
    ([36, 37], (36, 4, 7, 7))
    """
    by_layer = _compiled(model, family).by_layer
    return {layer: (ids.to(device), masks.to(device)) for layer, (ids, masks) in by_layer.items()}


def _compiled(model: Any, family: list[Candidate] | CompiledFamily) -> CompiledFamily:
    """``family`` compiled against ``model``, if it is not already: its base is not the gates'
    concern (they take theirs as masks)."""
    if isinstance(family, CompiledFamily) and family.fits(model):
        return family
    return compile_family(model, family)


@checked
def gate_hooks(
    model: Any,
    family: list[Candidate] | CompiledFamily,
    log_gates: Float[torch.Tensor, " candidate"],
    open_share: Float[torch.Tensor, " candidate"] | None = None,
    covers: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> list[tuple[Any, Any]]:
    """Forward hooks that gate every candidate of ``family`` by ``exp(log_gates)`` at
    ``hook_attn_scores`` and ``hook_pattern`` (``open_share`` defaults to the gates): with
    every gate 0 or 1, what ``edge_masks`` of the closed candidates compute. ``covers``:
    `gate_covers`, when the hooks are made again and again.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> from emg_lens.discovery import default_family, layer_masks
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0)).eval()
    >>> family, x = default_family(model), model.example_input(4)
    >>> closed = torch.zeros(len(family)); closed[:9] = float("-inf")
    >>> hooked = model.run_with_hooks(x, fwd_hooks=gate_hooks(model, family, closed))
    >>> torch.allclose(hooked, model(x, edge_masks=layer_masks(model, family[:9])), atol=1e-5)
    True
    """
    share = log_gates.exp() if open_share is None else open_share
    by_layer = gate_covers(model, family, log_gates.device) if covers is None else covers
    return _gated(by_layer, log_gates, share)


def _gated(
    by_layer: dict[int, tuple[torch.Tensor, torch.Tensor]],
    log_gates: Float[torch.Tensor, " candidate"],
    share: Float[torch.Tensor, " candidate"],
) -> list[tuple[Any, Any]]:
    """`gate_hooks` of the family whose `gate_covers` are ``by_layer``."""
    row_scale: dict[int, torch.Tensor] = {}

    def on_scores(scores: torch.Tensor, hook) -> torch.Tensor:
        layer = layer_of(hook.name)
        if layer not in by_layer:
            return scores
        ids, covered = by_layer[layer]
        cut = torch.isneginf(scores)  # by a base mask: the gate changes nothing there
        # 0 * -inf is NaN: a closed gate's -inf goes only where its candidate covers the edge
        log_gate = torch.where(covered, log_gates[ids][:, None, None, None], 0.0).sum(0)
        gate = torch.where(covered, share[ids][:, None, None, None], 1.0).prod(0)
        row_scale[layer] = gate.to(scores.dtype).masked_fill(cut, 0.0).amax(-1, keepdim=True)
        return scores + log_gate.to(scores.dtype).masked_fill(cut, 0.0)

    def on_pattern(pattern: torch.Tensor, hook) -> torch.Tensor:
        layer = layer_of(hook.name)
        return pattern * row_scale.pop(layer) if layer in row_scale else pattern

    return [
        (name_filter("attn.hook_attn_scores"), on_scores),
        (name_filter("attn.hook_pattern"), on_pattern),
    ]


# Hard-concrete gates (Louizos et al., arXiv 1712.01312), as Edge Pruning uses them: a stretched,
# clipped concrete sample is exactly 0 or 1 with positive probability, so training sees true cuts.
_BETA, _GAMMA, _ZETA = 2 / 3, -0.1, 1.1


def _hard_concrete(theta: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    u = torch.rand(theta.shape, generator=generator).clamp(1e-6, 1 - 1e-6).to(theta.device)
    s = torch.sigmoid((u.log() - (-u).log1p() + theta) / _BETA)
    return (s * (_ZETA - _GAMMA) + _GAMMA).clamp(0.0, 1.0)


def _merge(*parts: dict[int, torch.Tensor] | None) -> dict[int, torch.Tensor] | None:
    out: dict[int, torch.Tensor] = {}
    for part in parts:
        for layer, mask in (part or {}).items():
            out[layer] = out[layer] | mask if layer in out else mask
    return out or None


@checked
def fit_gates(
    model: Any,
    X: Float[torch.Tensor, "window ..."],
    family: list[Candidate] | CompiledFamily,
    *,
    return_type: str,
    base: dict[int, torch.Tensor] | None = None,
    steps: int = GATE_STEPS,
    penalty: float = 2.0,
    lr: float = 0.1,
    batch_size: int = 256,
    seed: int = 0,
) -> np.ndarray:
    """Each candidate's survival in ``[0, 1]`` (its gate averaged over the fit; larger: the
    output needs it more), fitted on the windows ``X`` with the model's ``return_type`` and
    ``base`` (``{layer: mask}``, cut throughout). See the module docstring."""
    steps = check_int(steps, "steps", minimum=1)
    penalty = check_number(penalty, "penalty", "a finite number >= 0", lambda v: 0 <= v < np.inf)
    lr = check_number(lr, "lr", "a finite number > 0", lambda v: 0 < v < np.inf)
    device = next(model.parameters()).device
    X = torch.as_tensor(X, dtype=model.cfg.dtype)
    compiled = _compiled(model, family)  # its masks, once, on the model's device
    covers = compiled.by_layer
    with torch.no_grad():
        ref, empty = [], []
        everything = _merge(compiled.everything, base)
        for i in range(0, len(X), batch_size):
            xb = X[i : i + batch_size].to(device)
            ref.append(model(xb, return_type=return_type, edge_masks=base).log_softmax(-1))
            cut = model(xb, return_type=return_type, edge_masks=everything).log_softmax(-1)
            empty.append(F.kl_div(cut, ref[-1], log_target=True, reduction="sum"))
        ref_logp = torch.cat(ref)
        scale = float(sum(empty)) / len(X)  # KL of cutting every candidate, per window
    if not np.isfinite(scale):
        why = "its outputs overflow, with nothing cut or every candidate cut"
        raise ArgumentError(
            f"the model gave non-finite log-probabilities: {why}; check its weights"
        )
    if scale <= 0:
        why = f"does not change the model's output distribution (KL {scale:.3g})"
        raise ArgumentError(
            f"cutting every candidate {why}: there is nothing for the gates to keep"
        )
    theta = torch.full((len(family),), 3.0, device=device, requires_grad=True)
    optimiser = torch.optim.Adam([theta], lr=lr)
    generator = torch.Generator().manual_seed(seed)
    survival = torch.zeros(len(family), dtype=torch.float64)
    for step in range(steps):
        rows = torch.randperm(len(X), generator=generator)[:batch_size]
        gates = _hard_concrete(theta, generator)
        # a closed gate is a cut: log 0 would make softmax's backward NaN, 1e-12 is as good
        log_gates = gates.clamp_min(1e-12).log()
        hooks = _gated(covers, log_gates, gates)
        logits = model.run_with_hooks(
            X[rows].to(device), return_type=return_type, edge_masks=base, fwd_hooks=hooks
        )
        kl = F.kl_div(
            logits.log_softmax(-1),
            ref_logp[rows.to(device)],
            log_target=True,
            reduction="batchmean",
        )
        weight = penalty * step / max(steps - 1, 1)
        open_probability = torch.sigmoid(theta - _BETA * np.log(-_GAMMA / _ZETA))
        loss = kl / scale + weight * open_probability.mean()
        if not torch.isfinite(loss):
            why = "its outputs overflow with gated attention; check its weights and inputs"
            raise ArgumentError(f"the gated model gave a non-finite loss: {why}")
        (grad,) = torch.autograd.grad(loss, theta)
        theta.grad = grad
        optimiser.step()
        survival += open_probability.detach().double().cpu()
    return (survival / steps).numpy()
