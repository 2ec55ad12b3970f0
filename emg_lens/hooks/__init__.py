"""TransformerLens-style hook functions ``fn(tensor, hook) -> tensor`` built by factories.

They compose with ``model.run_with_hooks``, ``model.hooks()`` and ``model.add_hook`` exactly
like TransformerLens hooks; the name filters pick the hook points.
"""

from emg_lens.hooks.ablation import channel_range, mean_ablate, mean_activations, zero_modality
from emg_lens.hooks.masking import (
    NameFilter,
    attn_scores_filter,
    compile_edges,
    layer_of,
    mask_edges,
    mask_edges_batched,
    name_filter,
    pattern_filter,
    zero_edges,
)

__all__ = [
    "NameFilter",
    "attn_scores_filter",
    "channel_range",
    "compile_edges",
    "layer_of",
    "mask_edges",
    "mask_edges_batched",
    "mean_ablate",
    "mean_activations",
    "name_filter",
    "pattern_filter",
    "zero_edges",
    "zero_modality",
]
