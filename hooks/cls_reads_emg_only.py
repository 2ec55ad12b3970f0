"""A custom edge set: the CLS token may read sEMG tokens (and itself), never ACC tokens.

Accelerometer information can then reach the decision only through sEMG tokens — that is,
through cross-modal edges in earlier layers. Comparing this with masking cross-modal edges
tells whether the CLS token fuses the modalities itself or reads an already fused sEMG stream.

Use it from a study file in studies/ as  hook = "../hooks/cls_reads_emg_only.py:edges"  or in a
notebook:

    from emg_lens.hooks import mask_edges, attn_scores_filter
    hook = mask_edges(edges, model.layout)
    model.run_with_hooks(x, fwd_hooks=[(attn_scores_filter([4]), hook)])
"""

from emg_lens.edges import between

# Edges are (query reads key): mask every edge where the CLS query reads an ACC key.
edges = between("cls", "acc")
