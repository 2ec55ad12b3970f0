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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int

from emg_lens.components.block import TransformerBlock
from emg_lens.discovery.metrics import window_metric

__all__ = [
    "LastLayerCache",
    "attention_output_change",
    "attention_output_energy",
    "grouped_effects",
    "last_layer_effects",
    "patch_block",
    "patched_streams",
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
    def hook_names(model: Any, layer: int | None = None) -> dict[str, str]:
        """The hook points the cache of ``layer`` (default: the last) is read from, by field
        (``v`` aside); ``final`` is the block's output."""
        block = f"blocks.{model.cfg.n_layers - 1 if layer is None else layer}"
        return {
            "resid_pre": f"{block}.hook_resid_pre",
            "attn_out": f"{block}.hook_attn_out",
            "final": f"{block}.hook_resid_post",
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
    d_rows = change.new_empty(change.shape[0], len(heads), W_O.shape[-1])  # every row written
    for head, on, dz in _z_change_per_head(change, v, heads):
        d_rows[:, on] = dz @ W_O[head]
    slot_keys, slot = torch.unique(owner * n_tokens + queries, return_inverse=True)
    if len(slot_keys) == len(heads):  # one row per slot (one head per candidate): no sum
        return queries, owner, d_rows
    d_slots = d_rows.new_zeros(change.shape[0], len(slot_keys), d_rows.shape[-1])
    d_slots.index_add_(1, slot, d_rows)
    return slot_keys % n_tokens, slot_keys // n_tokens, d_slots


@torch.no_grad()
def attention_output_energy(
    change: Float[torch.Tensor, "batch row key"],
    v: Float[torch.Tensor, "batch key head d_head"],
    W_O: Float[torch.Tensor, "head d_head d_model"],
    heads: Int[torch.Tensor, " row"],
    queries: Int[torch.Tensor, " row"],
    owner: Int[torch.Tensor, " row"],
    n_tokens: int,
) -> tuple[Int[torch.Tensor, " slot"], Float[torch.Tensor, " slot"]]:
    """The squared norm, summed over windows, of what `attention_output_change` returns per
    slot: its slots' candidates and energies. Where each slot is one row (one head per
    candidate), ``|dz @ W_O[h]| = |dz @ R^T|`` with ``W_O[h]^T = Q R``, so ``d_model``-wide
    changes are never formed (8x fewer values on the paper preset)."""
    if len(torch.unique(owner * n_tokens + queries)) != len(heads):  # heads summed per slot
        _, slot_owner, d_attn = attention_output_change(
            change, v, W_O, heads, queries, owner, n_tokens
        )
        return slot_owner, torch.linalg.vector_norm(d_attn, dim=(0, 2)) ** 2
    energy = change.new_empty(len(heads))
    for head, on, dz in _z_change_per_head(change, v, heads):
        r = torch.linalg.qr(W_O[head].T, mode="r").R  # [d_head, d_head]
        energy[on] = torch.linalg.vector_norm(dz @ r.T, dim=(0, 2)) ** 2
    return owner, energy


def _z_change_per_head(change, v, heads):
    """Per head: the head, its rows and their change of ``z``, ``(A' - A) @ v[head]``
    ``[batch, row, d_head]`` (one batched matmul per head)."""
    for head in heads.unique():
        on = (heads == head).nonzero()[:, 0]
        yield head, on, torch.bmm(change[:, on], v[:, :, head])


@torch.no_grad()
def patch_block(
    block: TransformerBlock,
    cache: LastLayerCache,
    change: Float[torch.Tensor, "batch row key"],
    heads: Int[torch.Tensor, " row"],
    queries: Int[torch.Tensor, " row"],
    owner: Int[torch.Tensor, " row"],
    read: list[int] | None = None,
) -> tuple[
    Int[torch.Tensor, " slot"],
    Int[torch.Tensor, " slot"],
    Float[torch.Tensor, "batch slot d_model"],
]:
    """The block's exact output at the query positions each candidate's rows touch (its
    *slots*): what attention writes there changes by `attention_output_change`, and the rest
    of the block acts position by position. Rows that do not move (inside a base cut), or sit
    outside ``read``, are left out: their candidates change nothing there. Returns each
    slot's position, its candidate and the block's new output."""
    on = change.abs().amax((0, 2)) > 0
    if read is not None:
        on &= torch.isin(queries, torch.tensor(read, device=queries.device))
    change, heads, queries, owner = change[:, on], heads[on], queries[on], owner[on]
    slot_query, slot_owner, d_attn = attention_output_change(
        change, cache.v, block.attn.output_weights(), heads, queries, owner, cache.final.shape[1]
    )
    pre, attn = cache.resid_pre[:, slot_query], cache.attn_out[:, slot_query]
    return slot_query, slot_owner, block.after_attention(pre, attn + d_attn)


def patched_streams(
    stream: Float[torch.Tensor, "batch pos d_model"],
    group: Int[torch.Tensor, " group"],
    slot_owner: Int[torch.Tensor, " slot"],
    slot_query: Int[torch.Tensor, " slot"],
    new: Float[torch.Tensor, "batch slot d_model"],
) -> Float[torch.Tensor, "group_and_clean batch pos d_model"]:
    """One copy of ``stream`` per candidate of ``group`` (sorted) with its slots replaced by
    ``new``, and a last copy left clean: the reference, computed in the same calls, so that an
    unchanged stream gives exactly 0."""
    stacked = stream.expand(len(group) + 1, -1, -1, -1).clone()
    in_group = torch.isin(slot_owner, group)
    place = torch.searchsorted(group, slot_owner[in_group])
    windows = torch.arange(stream.shape[0], device=place.device)
    stacked[place[:, None], windows, slot_query[in_group][:, None]] = new[:, in_group].transpose(
        0, 1
    )
    return stacked


def grouped_effects(
    model: Any,
    candidates: Int[torch.Tensor, " candidate"],
    stream: Float[torch.Tensor, "batch pos d_model"],
    final_of: Callable[[torch.Tensor], torch.Tensor],
    y: Int[torch.Tensor, " batch"],
    metrics: list[str],
    return_type: str,
    budget: int = 2**24,
) -> dict[str, Float[torch.Tensor, "candidate batch"]]:
    """Each metric's change per candidate and window, in groups of candidates whose stacked
    copies of ``stream`` (and one clean copy) hold at most ``budget`` elements: ``final_of
    (group)`` gives the group's patched final streams with the clean one last (see
    `patched_streams`), whose readout's metrics minus the clean one's are the changes."""
    effects = {name: stream.new_zeros(len(candidates), len(y)) for name in metrics}
    per_group = max(1, budget // max(1, stream.numel()) - 1)
    for start in range(0, len(candidates), per_group):
        final = final_of(candidates[start : start + per_group])
        logits = model.readout(final.flatten(0, 1), return_type).reshape(*final.shape[:2], -1)
        for name in metrics:
            values = torch.stack([window_metric(out, y, name) for out in logits])
            effects[name][start : start + len(final) - 1] = values[:-1] - values[-1]
    return effects


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
) -> tuple[Int[torch.Tensor, " candidate"], dict[str, Float[torch.Tensor, "candidate batch"]]]:
    """The exact change of each metric per window for the candidates owning the rows, given
    each row's pattern change ``change`` (``A' - A``): the candidates (their positions in the
    family) and ``{metric: [candidate, batch]}``; a candidate whose rows the readout does not
    read (`read_positions`) is left out (its effect is 0)."""
    slot_query, slot_owner, new_post = patch_block(
        model.blocks[-1], cache, change, heads, queries, owner, model.read_positions(return_type)
    )
    candidates = slot_owner.unique()

    def final_of(group: torch.Tensor) -> torch.Tensor:
        return patched_streams(cache.final, group, slot_owner, slot_query, new_post)

    effects = grouped_effects(model, candidates, cache.final, final_of, y, metrics, return_type)
    return candidates, effects
