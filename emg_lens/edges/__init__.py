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

The last four read the layout's channel names (`TokenLayout.channel_names`, a model's
`EncoderConfig.channel_names`), the scalp vocabulary of EEG models; a layout without names
refuses them, and beside other token groups a channel whose name is no 10-20 / 10-10 name
(``EMG1``) is in no region. A *region* is a lobe, a hemisphere, a channel name, several joined
with ``+`` (``between_regions(C3+C4, frontal)``), or your own group in ``regions=`` (see
`within_region`), placed by the table of docs/concepts.md, "Scalp regions"
(`emg_lens.edges.regions`: a name it cannot place is a `LayoutError`). They compose
with the rest by the operators (``within_region(left) & heads(0)``, ``cross_region &
time_window(0)``: same-patch edges between lobes); ``cross_region`` is the scalp's
``cross_modal``.

The CLS rule: edges that touch the CLS token are neither unimodal nor cross-modal unless
``include_cls=True``, which makes CLS a modality of its own; why, and the emg -> CLS -> acc
route that ``cross_modal`` alone leaves open: docs/DESIGN.md §3.

Edge sets combine with ``|`` (union), ``&`` (intersection), ``-`` (difference) and ``~``
(complement over all heads x tokens x tokens); ``e.on_heads([0, 2])`` is ``e & heads(0, 2)``.
They are frozen, hashable and compared structurally. `EdgeSet.compile` turns one into a boolean
``[head_index, query_pos, key_pos]`` mask (True = masked, i.e. in the set), the form that
``model(x, edge_masks={layer: mask})`` and the masking hooks take.

Every edge set has a canonical string form, used by study files, that `parse` reads back to an
equal edge set; its precedence (not Python's: parenthesise mixed ``-`` in code) is in
docs/DESIGN.md §3, "One string form".

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

The package reads top to bottom: `emg_lens.edges.algebra` holds `EdgeSet`, the compile context
and the operators; `emg_lens.edges.selectors` the selectors above and their argument checks;
`emg_lens.edges.parser` the string form's parser. Import from ``emg_lens.edges``.
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
