"""The forward hooks of `emg_lens.discovery.screen`: what one clean pass keeps (`capture`),
RelP's rules (`relevance_hooks`) and EAP-IG's path (`path_hooks`), and the gradients the
screen reads through them (`gradients`, `path_gradients`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from jaxtyping import Bool, Float

from emg_lens.components.attend import cut_pattern
from emg_lens.discovery.last_layers import LastLayerCache
from emg_lens.discovery.metrics import Scorer
from emg_lens.hooks import layer_of, name_filter


def capture(
    model: Any,
    x: torch.Tensor,
    return_type: str,
    base: dict | None = None,
    cached: dict[int, dict[str, str]] | None = None,
    relevance: bool = False,
) -> tuple[torch.Tensor, dict, dict, dict, dict[int, LastLayerCache]]:
    """Logits, the clean attention scores (detached; ``-inf`` where ``base`` cuts), patterns
    (in the graph; with ``relevance``, leaves under RelP's rules, `relevance_hooks`) and values
    (``hook_v``, detached) per layer, and the activations of the ``cached`` blocks for their
    exact effects (``{layer: {field: hook name}}``, `exact_layers`)."""
    cached = cached or {}
    scores: dict[int, torch.Tensor] = {}
    patterns: dict[int, torch.Tensor] = {}
    values: dict[int, torch.Tensor] = {}
    blocks: dict[int, dict[str, torch.Tensor]] = {layer: {} for layer in cached}
    hooks: list[tuple[Any, Callable[..., Any]]] = [
        (name_filter("attn.hook_attn_scores"), keeper(scores, detach=True)),
        (name_filter("attn.hook_v"), keeper(values, detach=True)),
    ]
    if relevance:
        hooks += relevance_hooks(patterns)
    else:
        hooks.append((name_filter("attn.hook_pattern"), keeper(patterns, detach=False)))
    for layer, names in cached.items():
        for field_name, hook_name in names.items():
            keep = blocks[layer].__setitem__
            hooks.append((hook_name, lambda t, hook, f=field_name, k=keep: k(f, t.detach())))
    logits = model.run_with_hooks(x, return_type=return_type, edge_masks=base, fwd_hooks=hooks)
    caches = {layer: LastLayerCache(**blocks[layer], v=values[layer]) for layer in cached}
    return logits, scores, patterns, values, caches


def relevance_hooks(patterns: dict[int, torch.Tensor]) -> list[tuple[Any, Callable[..., Any]]]:
    """RelP's rules (docs/guide/discovery.md, ``estimator="relp"``) as forward hooks on
    emg_lens's blocks: the values they return are the (unfused) forward's own, and a backward
    through them computes LRP's relevance coefficients instead of the gradient. Each
    LayerNorm's ``hook_scale`` is detached (the LN-rule); each MLP's ``hook_post`` passes
    ``f(x)/x`` of its ``hook_pre`` (the identity rule; 0 where ``x`` is 0, as ``f(0)`` is for
    every activation here); each layer's ``hook_pattern`` is replaced by a detached leaf, kept
    in ``patterns`` by layer (the AH-rule).

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0)).eval()
    >>> X, patterns = model.example_input(2), {}
    >>> out = model.run_with_hooks(X, fwd_hooks=relevance_hooks(patterns))
    >>> torch.allclose(out, model(X), atol=1e-5), sorted(patterns), patterns[0].is_leaf
    (True, [0, 1], True)
    """
    inputs: dict[str, torch.Tensor] = {}  # each MLP's activation input, by module

    def constant(t: torch.Tensor, hook: Any) -> torch.Tensor:
        return t.detach()

    def keep_input(t: torch.Tensor, hook: Any) -> None:
        inputs[hook.name.rsplit(".", 1)[0]] = t

    def identity_rule(post: torch.Tensor, hook: Any) -> torch.Tensor:
        x = inputs.pop(hook.name.rsplit(".", 1)[0])
        ratio = (post / x.where(x != 0, 1)).detach()
        return post.detach() + (x - x.detach()) * ratio  # the value is post's, exactly

    def leaf(t: torch.Tensor, hook: Any) -> torch.Tensor:
        layer = layer_of(hook.name)
        assert layer is not None, hook.name  # name_filter's hooks: blocks.{l}.attn.*
        patterns[layer] = t.detach().requires_grad_(True)
        return patterns[layer]

    return [
        (lambda name: name.endswith("hook_scale"), constant),
        (lambda name: name.endswith("mlp.hook_pre"), keep_input),
        (lambda name: name.endswith("mlp.hook_post"), identity_rule),
        (name_filter("attn.hook_pattern"), leaf),
    ]


def keeper(into: dict[int, torch.Tensor], detach: bool) -> Callable[[torch.Tensor, Any], None]:
    """A hook that keeps what it sees, by layer, in ``into`` (``detach``: detached)."""

    def keep(t: torch.Tensor, hook: Any) -> None:
        layer = layer_of(hook.name)
        assert layer is not None, hook.name  # name_filter's hooks: blocks.{l}.attn.*
        into[layer] = t.detach() if detach else t

    return keep


def path_hooks(
    cut: dict[int, Bool[torch.Tensor, "head q k"]],
    alpha: float,
    patterns: dict[int, torch.Tensor],
) -> list[tuple[Any, Any]]:
    """Forward hooks that run every layer of ``cut`` with the pattern ``P + alpha (P_cut -
    P)`` (``P`` the softmax of the scores it receives, ``P_cut`` of the same scores with
    ``cut`` removed) and keep each layer's pattern, the path's point, in ``patterns``."""
    scores: dict[int, torch.Tensor] = {}

    def walk(pattern: torch.Tensor, hook) -> torch.Tensor:
        layer = layer_of(hook.name)
        assert layer is not None, hook.name
        if layer in cut:
            t = scores.pop(layer)
            pattern = pattern + alpha * (cut_pattern(t, cut[layer]) - pattern)
        patterns[layer] = pattern
        return pattern

    return [
        (name_filter("attn.hook_attn_scores"), keeper(scores, detach=False)),
        (name_filter("attn.hook_pattern"), walk),
    ]


def gradients(
    values: dict[str, Float[torch.Tensor, " batch"]],
    patterns: dict[int, Float[torch.Tensor, "batch head q k"]],
    layers: list[int],
) -> dict[str, dict[int, Float[torch.Tensor, "batch head q k"]]]:
    """Each metric's gradient (summed over windows: each window's own, as windows do not
    interact) with respect to the patterns of ``layers``."""
    grads: dict[str, dict[int, torch.Tensor]] = {}
    for i, (name, value) in enumerate(values.items()):
        if not layers:
            grads[name] = {}
            continue
        g = torch.autograd.grad(
            value.sum(), [patterns[layer] for layer in layers], retain_graph=i < len(values) - 1
        )
        grads[name] = dict(zip(layers, g))
    return grads


def path_gradients(
    model: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    wanted: Scorer,
    return_type: str,
    base: dict[int, torch.Tensor] | None,
    cut: dict[int, Bool[torch.Tensor, "head q k"]],
    layers: list[int],
    steps: int,
) -> dict[str, dict[int, Float[torch.Tensor, "batch head q k"]]]:
    """The metrics' gradients with respect to the patterns of ``layers``, averaged over the
    midpoints ``alpha = (k + 1/2) / steps`` of the path to the model with ``cut``
    (``{layer: mask}``) removed (`path_hooks`; docs/guide/discovery.md)."""
    total: dict[str, dict[int, torch.Tensor]] = {name: {} for name in wanted}
    for k in range(steps):
        patterns: dict[int, torch.Tensor] = {}
        with torch.enable_grad():
            logits = model.run_with_hooks(
                x.detach().requires_grad_(True),
                return_type=return_type,
                edge_masks=base,
                fwd_hooks=path_hooks(cut, (k + 0.5) / steps, patterns),
            )
            values = wanted(logits, y)
            point = gradients(values, patterns, layers)
        for name in wanted:
            for layer, g in point[name].items():
                g = g.detach() / steps
                total[name][layer] = total[name][layer] + g if layer in total[name] else g
    return total
