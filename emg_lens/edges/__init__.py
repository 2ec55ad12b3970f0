"""Edge sets: which query token may read which key token, per attention head.

An `EdgeSet` is a predicate over (head, query token, key token). An *edge* ``(q, k)`` means
that query token ``q`` reads key token ``k``, so information flows ``k -> q``: masking it stops
``q`` from seeing ``k`` on that head. Edge sets are built from selectors, which ask the token
layout (`emg_lens.layout.TokenLayout`), never raw positions, so one expression works on every
model:

| selector | edges (q reads k) |
|---|---|
| `unimodal(include_cls=False)` | q and k in the same modality (self edges included) |
| `cross_modal(include_cls=False)` | q and k in different modalities |
| `within(group)` | q and k both in ``group`` |
| `between(query_group, key_group)` | q in ``query_group``, k in ``key_group`` (directed) |
| `to_cls` | q is CLS, k is not (information flowing *to* CLS) |
| `from_cls` | k is CLS, q is not (information flowing *from* CLS) |
| `same_channel` / `cross_channel` | both tokens embed a channel; equal / different channel |
| `time_window(max_lag, min_lag=0)` | tokens ``min_lag`` to ``max_lag`` time patches apart |
| `reads_earlier` / `reads_later` | k is earlier / later in time than q (``t_k < t_q`` / ``>``) |
| `time_span(a, b, c, d, seconds=False)` | q's time in ``[a, b)`` reads k's in ``[c, d)`` |
| `heads(*indices)` | every edge, on the given heads only |
| `layers(*indices)` | every edge, in the given blocks only (compiles per layer) |
| `all_edges` / `no_edges` | every edge / none |
| `channels(*names)` | q and k both embed one of the named channels |
| `within_region(region)` | q and k both embed a channel of ``region`` |
| `between_regions(query, key)` | q embeds a channel of region ``query``, k of ``key`` (directed) |
| `cross_region` | q and k embed channels of two different lobes |

The last four read the layout's channel names (`TokenLayout.channel_names`) and place each
in a lobe and a hemisphere by the table of docs/concepts.md, "Scalp regions". Edge sets combine
with ``|``, ``&``, ``-`` and ``~`` (complement over all heads x tokens x tokens), are frozen and
hashable, and `EdgeSet.compile` turns one into a boolean ``[head_index, query_pos, key_pos]``
mask (True = masked), the form ``model(x, edge_masks={layer: mask})`` and the masking hooks
take. The CLS rule (CLS edges are neither unimodal nor cross-modal unless ``include_cls=True``)
and the canonical string form that `parse` reads back: docs/DESIGN.md §3.

>>> from emg_lens.layout import TokenLayout
>>> layout = TokenLayout.channel_tokens({"emg": 1, "acc": 2})
>>> edges = cross_modal() & heads(0, 2)
>>> str(edges)
'cross_modal & heads(0,2)'
>>> parse("cross_modal & heads(0, 2)") == edges
True
>>> mask = edges.compile(layout, n_heads=4)
>>> mask.shape
torch.Size([4, 4, 4])
>>> mask[0].int()  # tokens: cls, emg, acc, acc; row = query, column = key
tensor([[0, 0, 0, 0],
        [0, 0, 1, 1],
        [0, 1, 0, 0],
        [0, 1, 0, 0]], dtype=torch.int32)
>>> bool(mask[1].any())
False
"""

from emg_lens.edges.algebra import EdgeSet
from emg_lens.edges.named import between_regions, channels, cross_region, within_region
from emg_lens.edges.parser import parse
from emg_lens.edges.regions import LOBES, place
from emg_lens.edges.selectors import (
    all_edges,
    between,
    cross_channel,
    cross_modal,
    from_cls,
    heads,
    layers,
    no_edges,
    reads_earlier,
    reads_later,
    same_channel,
    time_span,
    time_window,
    to_cls,
    unimodal,
    within,
)

__all__ = [
    "LOBES",
    "EdgeSet",
    "all_edges",
    "between",
    "between_regions",
    "channels",
    "cross_channel",
    "cross_modal",
    "cross_region",
    "from_cls",
    "heads",
    "layers",
    "no_edges",
    "parse",
    "place",
    "reads_earlier",
    "reads_later",
    "same_channel",
    "time_span",
    "time_window",
    "to_cls",
    "unimodal",
    "within",
    "within_region",
]

# `EdgeSet.parse(expr)` is the parser as a static method. It is attached here, above both
# modules, because the parser builds edge sets: a method body in algebra.py importing the
# parser would be an import cycle.
EdgeSet.parse = staticmethod(parse)
