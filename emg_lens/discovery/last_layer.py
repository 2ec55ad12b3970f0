"""Exact effects of last-layer cuts, from the clean pass's cached activations.

A cut in the last block changes only the attention rows it touches. Row ``(head, query)``
changes the attention output at ``query`` alone, by ``(A' - A) @ v[head] @ W_O[head]``; what
follows attention in a block acts position by position (`TransformerBlock.after_attention`);
and nothing but the readout comes after the last block. So the final residual stream of the cut
model is the clean one with the touched query positions recomputed, and the readout of that
stream *is* the cut model's output: no linearisation, at the cost of the block's MLP on the
touched positions and one readout per candidate.

This is where the first-order screen fails most (issue 25): a last-layer cut that moves a
saturated softmax row, a LayerNorm or the margin's runner-up class, and above all a cut of the
CLS row when the CLS head reads that one row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int

from emg_lens.components.block import TransformerBlock
from emg_lens.discovery.metrics import window_metric

__all__ = [
    "LastLayerCache",
    "attention_output_change",
    "last_layer_effects",
    "supports_exact_last_layer",
]


def supports_exact_last_layer(model: Any) -> bool:
    """True when the last block is a `TransformerBlock` (whose eval-mode function is
    attention, then `after_attention`) and the model reads the final stream with `readout`."""
    blocks = getattr(model, "blocks", None)
    return bool(blocks) and isinstance(blocks[-1], TransformerBlock) and hasattr(model, "readout")


@dataclass(frozen=True)
class LastLayerCache:
    """The last block's clean activations for one batch of windows (detached); ``v`` is its
    attention's ``hook_v``."""

    resid_pre: Float[torch.Tensor, "batch pos d_model"]
    attn_out: Float[torch.Tensor, "batch pos d_model"]
    final: Float[torch.Tensor, "batch pos d_model"]
    v: Float[torch.Tensor, "batch pos head d_head"]

    @staticmethod
    def hook_names(model: Any) -> dict[str, str]:
        """The hook points the cache is read from, by field (``v`` aside)."""
        last = f"blocks.{model.cfg.n_layers - 1}"
        return {
            "resid_pre": f"{last}.hook_resid_pre",
            "attn_out": f"{last}.hook_attn_out",
            "final": f"{last}.hook_resid_post",
        }


@torch.no_grad()
def attention_output_change(
    change: Float[torch.Tensor, "batch row key"],
    v: Float[torch.Tensor, "batch key head d_head"],
    W_O: Float[torch.Tensor, "head d_head d_model"],
    heads: Int[torch.Tensor, " row"],
    queries: Int[torch.Tensor, " row"],
    owner: Int[torch.Tensor, " row"],
    n_tokens: int,
) -> tuple[
    Int[torch.Tensor, " slot"],
    Int[torch.Tensor, " slot"],
    Float[torch.Tensor, "batch slot d_model"],
]:
    """What each candidate's pattern change ``A' - A`` (one row per touched (head, query))
    adds to its layer's attention output, per *slot*: one (candidate, query position) pair,
    the rows of its heads on that query summed. Returns each slot's query position, its
    candidate (the ``owner``) and the change ``[batch, slot, d_model]``."""
    d_rows = change.new_zeros(change.shape[0], len(heads), W_O.shape[-1])
    for head in heads.unique():  # rows of one head: (A' - A) @ v @ W_O, as two matmuls
        on = (heads == head).nonzero()[:, 0]
        d_rows[:, on] = torch.bmm(change[:, on], v[:, :, head]) @ W_O[head]
    slot_keys, slot = torch.unique(owner * n_tokens + queries, return_inverse=True)
    d_slots = d_rows.new_zeros(change.shape[0], len(slot_keys), d_rows.shape[-1])
    d_slots.index_add_(1, slot, d_rows)
    return slot_keys % n_tokens, slot_keys // n_tokens, d_slots


@torch.no_grad()
def last_layer_effects(
    model: Any,
    cache: LastLayerCache,
    change: Float[torch.Tensor, "batch row key"],
    heads: Int[torch.Tensor, " row"],
    queries: Int[torch.Tensor, " row"],
    owner: Int[torch.Tensor, " row"],
    y: Int[torch.Tensor, " batch"],
    metrics: list[str],
    return_type: str,
    budget: int = 2**24,
) -> tuple[Int[torch.Tensor, " candidate"], dict[str, Float[torch.Tensor, "candidate batch"]]]:
    """The exact change of each metric per window for the candidates owning the rows, given
    each row's pattern change ``change`` (``A' - A``): the candidates (their positions in the
    family) and ``{metric: [candidate, batch]}``; a candidate whose rows the readout does not
    read (`read_positions`) is left out (its effect is 0). ``budget`` bounds the elements of
    the stacked final streams read out at once."""
    block = model.blocks[-1]
    n_batch, n_tok, d_model = cache.final.shape
    # rows that do not move (inside a base cut) or sit where the readout does not read
    # change nothing: left out, their candidates' effects are exactly 0
    on = change.abs().amax((0, 2)) > 0
    read = model.read_positions(return_type)
    if read is not None:
        on &= torch.isin(queries, torch.tensor(read, device=queries.device))
    change, heads, queries, owner = change[:, on], heads[on], queries[on], owner[on]
    slot_query, slot_owner, d_attn = attention_output_change(
        change, cache.v, block.attn.output_weights(), heads, queries, owner, n_tok
    )
    pre, attn = cache.resid_pre[:, slot_query], cache.attn_out[:, slot_query]
    new_post = block.after_attention(pre, attn + d_attn)  # [batch, slot, d_model]
    candidates = slot_owner.unique()
    effects = {name: new_post.new_zeros(len(candidates), n_batch) for name in metrics}
    per_group = max(1, budget // max(1, n_batch * n_tok * d_model) - 1)
    for start in range(0, len(candidates), per_group):
        group = candidates[start : start + per_group]
        # one copy of the clean stream per candidate, and one left clean (the reference,
        # read out in the same call, so that an unchanged stream gives 0)
        stacked = cache.final.expand(len(group) + 1, -1, -1, -1).clone()
        in_group = torch.isin(slot_owner, group)
        place = torch.searchsorted(group, slot_owner[in_group])
        windows = torch.arange(n_batch, device=place.device)
        stacked[place[:, None], windows, slot_query[in_group][:, None]] = new_post[
            :, in_group
        ].transpose(0, 1)
        logits = model.readout(stacked.flatten(0, 1), return_type)
        logits = logits.reshape(len(group) + 1, n_batch, -1)
        for name in metrics:
            values = torch.stack([window_metric(out, y, name) for out in logits])
            effects[name][start : start + len(group)] = values[:-1] - values[-1]
    return candidates, effects
