"""Edge sets: which query token may read which key token, per attention head.

An `EdgeSet` is a predicate over (head, query token, key token): an edge ``(q, k)`` means that
query token ``q`` reads key token ``k``. Edge sets are built from selectors, which ask the token
layout (`emg_lens.layout.TokenLayout`), never raw positions, so one expression works on every
model; the selectors at a glance: docs/concepts.md, "Token layout and edges". Edge sets combine
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
