"""Exact effects of cuts in the layer before the last, where the readout reads few tokens.

The screen's first-order estimate fails worst on the CLS head (issue 25): a cut of the CLS
query row in layer ``L-2`` moves the one stream the readout reads, and the last layer's norms
and softmax turn that into effects of the wrong sign (demo subject 1: estimated +0.23, exact
-0.84). This module computes those effects exactly from the clean pass's activations:

1. a cut in block ``L-2`` changes the attention output only at the query positions it touches
   (`attention_output_change`), and the rest of that block acts position by position
   (`TransformerBlock.after_attention`), so the stream entering the last block is the clean
   one with those positions recomputed;
2. the last block is needed only at the positions the readout reads (`read_positions`): its
   attention for those query rows against every key (`TransformerBlock.rows_forward`), each
   candidate's stream stacked as one batch;
3. the readout of the clean final stream with those positions replaced is the cut model's
   output. A clean copy goes through the same computation, as the reference.

The cost is the last block's key and value projections on every token per candidate: worth it
where the readout reads a few tokens (`supports_exact_penultimate`), not for a mean over all.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float, Int

from emg_lens.components.block import TransformerBlock
from emg_lens.discovery.last_layer import (
    LastLayerCache,
    grouped_effects,
    patch_block,
    patched_streams,
)

__all__ = ["penultimate_effects", "supports_exact_penultimate"]


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


@torch.no_grad()
def penultimate_effects(
    model: Any,
    before: LastLayerCache,
    last: LastLayerCache,
    change: Float[torch.Tensor, "batch row key"],
    heads: Int[torch.Tensor, " row"],
    queries: Int[torch.Tensor, " row"],
    owner: Int[torch.Tensor, " row"],
    y: Int[torch.Tensor, " batch"],
    metrics: list[str],
    return_type: str,
    last_mask: torch.Tensor | None = None,
) -> tuple[Int[torch.Tensor, " candidate"], dict[str, Float[torch.Tensor, "candidate batch"]]]:
    """The exact change of each metric per window for the candidates owning the rows of block
    ``L-2``, given each row's pattern change ``change`` (``A' - A``) and the clean caches of
    blocks ``L-2`` (``before``) and ``L-1`` (``last``); ``last_mask`` is the mask the last
    block runs with (a base cut). Returns the candidates (positions in the family) whose
    rows move and ``{metric: [candidate, batch]}``; the others' effects are exactly 0."""
    read = model.read_positions(return_type)
    slot_query, slot_owner, new_mid = patch_block(
        model.blocks[-2], before, change, heads, queries, owner
    )
    candidates = slot_owner.unique()

    def final_of(group: torch.Tensor) -> torch.Tensor:
        # each candidate's stream entering the last block (and a clean one), read at `read`
        stream = patched_streams(before.final, group, slot_owner, slot_query, new_mid)
        rows = model.blocks[-1].rows_forward(stream.flatten(0, 1), read, last_mask)
        final = last.final.expand(len(group) + 1, -1, -1, -1).clone()
        final[:, :, read] = rows.view(*final.shape[:2], len(read), -1)
        return final

    effects = grouped_effects(model, candidates, before.final, final_of, y, metrics, return_type)
    return candidates, effects
