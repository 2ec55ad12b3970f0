"""Exact effects of cuts in the last two layers, from the clean pass's cached activations.

A cut in the last block changes only the attention rows it touches, and what follows attention
acts position by position, so the cut model's final stream is the clean one with the touched
query positions recomputed, and its readout is the cut model's output: exact, where the
first-order screen fails most (docs/ARCHITECTURE.md, "Discovery: what to trust"). A cut of the
CLS query row in layer ``L-2`` is exact too where the readout reads few tokens
(`supports_exact_penultimate`): block ``L-2`` changes only at the touched rows
(`AttentionOutput.change`), and the last block is run only at the positions the readout reads
(`read_positions`, `TransformerBlock.rows_forward`), each candidate's stream in one batch.
`exact_layers` says which layers a screen computes exactly, `exact_effects` computes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int

from emg_lens.components.block import TransformerBlock
from emg_lens.discovery.family import RowChunk
from emg_lens.discovery.metrics import Scorer

Effects = tuple[Int[torch.Tensor, " candidate"], dict[str, Float[torch.Tensor, "candidate batch"]]]
"""The candidates (positions in the family) whose effects were computed, and each metric's
change per candidate and window; every other candidate's effect is exactly 0."""


def supports_exact_penultimate(model: Any, return_type: str) -> bool:
    """True when the last two blocks are `TransformerBlock` s and the readout of
    ``return_type`` reads at most a quarter of the tokens (a CLS head), so that recomputing
    only those rows of the last layer is cheap.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny"))
    >>> supports_exact_penultimate(model, "logits"), supports_exact_penultimate(model, "avg_logits")
    (True, False)
    """
    blocks = getattr(model, "blocks", None)
    if not blocks or len(blocks) < 2 or not hasattr(model, "readout"):
        return False
    if not all(isinstance(b, TransformerBlock) for b in blocks[-2:]):
        return False
    read = model.read_positions(return_type)
    return read is not None and 4 * len(read) <= model.layout.n_tokens


@dataclass(frozen=True)
class LastLayerCache:
    """A block's clean activations for one batch of windows (detached); ``v`` is its
    attention's ``hook_v``."""

    resid_pre: Float[torch.Tensor, "batch pos d_model"]
    attn_out: Float[torch.Tensor, "batch pos d_model"]
    final: Float[torch.Tensor, "batch pos d_model"]
    v: Float[torch.Tensor, "batch pos head d_head"]

    @staticmethod
    def hook_names(layer: int) -> dict[str, str]:
        """The hook points the cache of ``layer`` is read from, by field (``v`` aside);
        ``final`` is the block's output."""
        block = f"blocks.{layer}"
        return {
            "resid_pre": f"{block}.hook_resid_pre",
            "attn_out": f"{block}.hook_attn_out",
            "final": f"{block}.hook_resid_post",
        }


def exact_layers(
    model: Any, return_type: str, *, last: bool = True, penultimate: bool | None = None
) -> dict[int, dict[str, str]]:
    """The layers whose candidates a screen computes exactly, each with the hook points its
    `LastLayerCache` is read from: the last layer (``last``, where the last block is a
    `TransformerBlock`, attention then `after_attention` in eval mode, and the model reads the
    final stream with `readout`) and the one before it (``penultimate``; None: when the model
    has two layers, which makes every candidate exact) where `supports_exact_penultimate`.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny"))
    >>> sorted(exact_layers(model, "logits")), sorted(exact_layers(model, "avg_logits"))
    ([0, 1], [1])
    """
    chosen, blocks = [], getattr(model, "blocks", [])
    if last and blocks and isinstance(blocks[-1], TransformerBlock) and hasattr(model, "readout"):
        last_layer = model.cfg.n_layers - 1
        chosen.append(last_layer)
        if penultimate is None:
            penultimate = last_layer == 1
        if penultimate and supports_exact_penultimate(model, return_type):
            chosen.insert(0, last_layer - 1)
    return {layer: LastLayerCache.hook_names(layer) for layer in chosen}


@dataclass(frozen=True)
class AttentionOutput:
    """One layer's attention output as its pattern changes, for a batch of windows: its
    values ``v`` (``hook_v``), output weights ``W_O`` and ``n_tokens`` query positions. A
    candidate's pattern change ``A' - A`` (one row per touched (head, query) of a `RowChunk`)
    changes the output per *slot*: one (candidate, query position) pair, the rows of its heads
    on that query summed."""

    v: Float[torch.Tensor, "batch key head d_head"]
    W_O: Float[torch.Tensor, "head d_head d_model"]
    n_tokens: int

    @torch.no_grad()
    def change(
        self, change: Float[torch.Tensor, "batch row key"], rows: RowChunk
    ) -> tuple[
        Int[torch.Tensor, " slot"],
        Int[torch.Tensor, " slot"],
        Float[torch.Tensor, "batch slot d_model"],
    ]:
        """What ``change`` on ``rows`` adds to the attention output: each slot's query
        position, candidate (``owner``) and the change ``[batch, slot, d_model]``."""
        heads, queries, owner, n_tokens = rows.heads, rows.queries, rows.owner, self.n_tokens
        d_rows = change.new_empty(change.shape[0], len(heads), self.W_O.shape[-1])  # all written
        for head, on, dz in self._z_change_per_head(change, heads):
            d_rows[:, on] = dz @ self.W_O[head]
        slot_keys, slot = torch.unique(owner * n_tokens + queries, return_inverse=True)
        if len(slot_keys) == len(heads):  # one row per slot (one head per candidate): no sum
            return queries, owner, d_rows
        d_slots = d_rows.new_zeros(change.shape[0], len(slot_keys), d_rows.shape[-1])
        d_slots.index_add_(1, slot, d_rows)
        return slot_keys % n_tokens, slot_keys // n_tokens, d_slots

    @torch.no_grad()
    def energy(
        self, change: Float[torch.Tensor, "batch row key"], rows: RowChunk
    ) -> tuple[Int[torch.Tensor, " slot"], Float[torch.Tensor, " slot"]]:
        """The squared norm, summed over windows, of what `change` returns per slot: its
        slots' candidates and energies. Where each slot is one row (one head per candidate),
        ``|dz @ W_O[h]| = |dz @ R^T|`` with ``W_O[h]^T = Q R``, so ``d_model``-wide changes are
        never formed (8x fewer values on the paper preset)."""
        heads, queries, owner = rows.heads, rows.queries, rows.owner
        if len(torch.unique(owner * self.n_tokens + queries)) != len(heads):  # heads summed
            _, slot_owner, d_attn = self.change(change, rows)
            return slot_owner, torch.linalg.vector_norm(d_attn, dim=(0, 2)) ** 2
        energy = change.new_empty(len(heads))
        for head, on, dz in self._z_change_per_head(change, heads):
            r = torch.linalg.qr(self.W_O[head].T, mode="r").R  # [d_head, d_head]
            energy[on] = torch.linalg.vector_norm(dz @ r.T, dim=(0, 2)) ** 2
        return owner, energy

    def _z_change_per_head(self, change, heads):
        """Per head: the head, its rows and their change of ``z``, ``(A' - A) @ v[head]``
        ``[batch, row, d_head]`` (one batched matmul per head)."""
        for head in heads.unique():
            on = (heads == head).nonzero()[:, 0]
            yield head, on, torch.bmm(change[:, on], self.v[:, :, head])


@torch.no_grad()
def patch_block(
    block: TransformerBlock,
    cache: LastLayerCache,
    change: Float[torch.Tensor, "batch row key"],
    rows: RowChunk,
    read: list[int] | None = None,
) -> tuple[
    Int[torch.Tensor, " slot"],
    Int[torch.Tensor, " slot"],
    Float[torch.Tensor, "batch slot d_model"],
]:
    """The block's exact output at the query positions each candidate's rows touch (its
    *slots*): what attention writes there changes by `AttentionOutput.change`, and the rest
    of the block acts position by position. Rows that do not move (inside a base cut), or sit
    outside ``read``, are left out: their candidates change nothing there. Returns each
    slot's position, its candidate and the block's new output."""
    on = change.abs().amax((0, 2)) > 0
    if read is not None:
        on &= torch.isin(rows.queries, torch.tensor(read, device=rows.queries.device))
    output = AttentionOutput(cache.v, block.attn.output_weights(), cache.final.shape[1])
    slot_query, slot_owner, d_attn = output.change(change[:, on], rows.select(on))
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
    scorer: Scorer,
    return_type: str,
    budget: int = 2**24,
) -> dict[str, Float[torch.Tensor, "candidate batch"]]:
    """Each metric's change per candidate and window, in groups of candidates whose stacked
    copies of ``stream`` (and one clean copy) hold at most ``budget`` elements: ``final_of
    (group)`` gives the group's patched final streams with the clean one last (see
    `patched_streams`), whose readout's metrics minus the clean one's are the changes."""
    effects = {name: stream.new_zeros(len(candidates), len(y)) for name in scorer}
    per_group = max(1, budget // max(1, stream.numel()) - 1)
    for start in range(0, len(candidates), per_group):
        final = final_of(candidates[start : start + per_group])
        logits = model.readout(final.flatten(0, 1), return_type).reshape(*final.shape[:2], -1)
        for name, values in scorer(logits, y).items():  # each copy's windows
            effects[name][start : start + len(final) - 1] = values[:-1] - values[-1]
    return effects


@torch.no_grad()
def exact_effects(
    model: Any,
    caches: dict[int, LastLayerCache],
    change: Float[torch.Tensor, "batch row key"],
    rows: RowChunk,
    y: Int[torch.Tensor, " batch"],
    scorer: Scorer,
    return_type: str,
    last_mask: torch.Tensor | None = None,
) -> Effects:
    """The exact change of each metric per window for the candidates owning ``rows``, of the
    last layer or the one before it (see the module docstring), given each row's pattern
    change ``change`` (``A' - A``) and the clean caches of those layers (`exact_layers`);
    ``last_mask`` is the mask the last block runs with (a base cut). Candidates whose rows do
    not move, or that the readout does not read (`read_positions`), are left out."""
    last, read = model.cfg.n_layers - 1, model.read_positions(return_type)
    cache = caches[rows.layer]
    if rows.layer == last:  # the last block's output is the final stream
        slot_query, slot_owner, new = patch_block(model.blocks[-1], cache, change, rows, read)

        def final_of(group: torch.Tensor) -> torch.Tensor:
            return patched_streams(cache.final, group, slot_owner, slot_query, new)

    else:  # the stream entering the last block, which is recomputed at `read`
        slot_query, slot_owner, new = patch_block(model.blocks[-2], cache, change, rows)

        def final_of(group: torch.Tensor) -> torch.Tensor:
            stream = patched_streams(cache.final, group, slot_owner, slot_query, new)
            block_rows = model.blocks[-1].rows_forward(stream.flatten(0, 1), read, last_mask)
            final = caches[last].final.expand(len(group) + 1, -1, -1, -1).clone()
            final[:, :, read] = block_rows.view(*final.shape[:2], len(read), -1)
            return final

    candidates = slot_owner.unique()
    effects = grouped_effects(model, candidates, cache.final, final_of, y, scorer, return_type)
    return candidates, effects
