"""The explicit attention kernel: scores, masks, softmax and pattern, with a hook between each.

One rule, shared by every explicit attention that emg_lens computes on a model it did not write
(`emg_lens.models.attach`): the model's own mask first (an additive bias, or blocked keys),
then the edge mask (True = cut, -inf), then ``on_scores`` (``hook_attn_scores``); softmax;
a query row whose keys are all blocked attends to nothing (a zero row, never NaN), any other
NaN propagates; then ``on_pattern`` (``hook_pattern``).

>>> q = k = v = torch.eye(3)[None, None]  # [batch, head, pos, d_head]
>>> cut = torch.tensor([[False, True, False]] * 3)  # no query reads key 1
>>> out, pattern = attend(q, k, v, scale=1.0, edge_mask=cut)
>>> pattern[0, 0, 1].tolist() == [0.5, 0.0, 0.5], bool(pattern[..., 1].eq(0).all())
(True, True)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float

__all__ = ["attend", "cut_scores", "pattern_of"]

Hook = Callable[[torch.Tensor], torch.Tensor]


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


def cut_scores(
    scores: Float[torch.Tensor, "batch head query key"],
    edge_mask: Bool[torch.Tensor, "... query key"] | None,
) -> Float[torch.Tensor, "batch head query key"]:
    """``scores`` with the cut edges (True in ``edge_mask``) at -inf: a -inf bias built on the
    small mask and added, as a model's own additive mask is (cheaper than filling the large
    scores by a broadcast boolean mask; a NaN or +inf score stays what it would be under the
    model's own mask).

    >>> cut_scores(torch.zeros(1, 1, 1, 2), torch.tensor([[True, False]])).tolist()
    [[[[-inf, 0.0]]]]
    """
    if edge_mask is None:
        return scores
    bias = torch.zeros(edge_mask.shape, dtype=scores.dtype, device=scores.device)
    return scores + bias.masked_fill_(edge_mask.to(scores.device), float("-inf"))


def pattern_of(
    scores: Float[torch.Tensor, "batch head query key"],
    softmax: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Float[torch.Tensor, "batch head query key"]:
    """``softmax(scores)`` over the keys, a row whose scores are all -inf a zero row (it
    attends to nothing); ``softmax`` is the model's own call where there is one.

    >>> pattern_of(torch.tensor([[[[0.0, 0.0], [-torch.inf, -torch.inf]]]])).tolist()
    [[[[0.5, 0.5], [0.0, 0.0]]]]
    """
    pattern = F.softmax(scores, dim=-1) if softmax is None else softmax(scores)
    # A row of -inf only is a NaN row after the softmax, so a pattern without NaN has none and
    # needs no fill: one reduction instead of three passes over the scores. A trace (ONNX)
    # cannot branch on the data, so it always fills.
    tracing = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
    if not tracing and not bool(pattern.sum().isnan()):
        return pattern
    return pattern.masked_fill((scores == float("-inf")).all(-1, keepdim=True), 0.0)


def attend(
    q: Float[torch.Tensor, "batch head query d_head"],
    k: Float[torch.Tensor, "batch head key d_head"],
    v: Float[torch.Tensor, "batch head key d_value"],
    *,
    scale: float,
    bias: Float[torch.Tensor, "... query key"] | None = None,
    blocked: Bool[torch.Tensor, "... query key"] | None = None,
    edge_mask: Bool[torch.Tensor, "... query key"] | None = None,
    on_scores: Hook = _same,
    on_pattern: Hook = _same,
    dropout_p: float = 0.0,
) -> tuple[
    Float[torch.Tensor, "batch head query d_value"], Float[torch.Tensor, "batch head query key"]
]:
    """``softmax(q k^T * scale + bias) v`` computed explicitly (see the module docstring):
    ``bias`` is the model's additive mask, ``blocked`` (True = may not attend) its boolean one,
    ``edge_mask`` the cut; ``dropout_p`` is applied to the pattern (after ``on_pattern``), as
    ``scaled_dot_product_attention`` does. Returns the output and the pattern.

    >>> q, k, v = torch.randn(2, 2, 4, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 3)
    >>> out, _ = attend(q, k, v, scale=8 ** -0.5)
    >>> bool(torch.allclose(out, F.scaled_dot_product_attention(q, k, v), atol=1e-6))
    True
    """
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale
    if bias is not None:
        scores = scores + bias
    if blocked is not None:
        scores = scores.masked_fill(blocked, float("-inf"))
    scores = on_scores(cut_scores(scores, edge_mask))
    pattern = on_pattern(pattern_of(scores))
    used = F.dropout(pattern, p=dropout_p, training=True) if dropout_p > 0.0 else pattern
    return torch.matmul(used, v), pattern
