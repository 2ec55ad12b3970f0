"""Candidate knockouts: the attention edges that screening estimates and discovery may cut.

A `Candidate` is one edge set in one block; a *family* is the list a screen ranks and a search
chooses from. `default_family` partitions every attention edge: per (layer, head, query group
-> key group) on a model with several token groups, per (layer, head) x same / other channel x
near / far patches on a one-modality model; `family_from_edges` takes a user's own edge sets.

>>> from emg_lens import EncoderConfig
>>> from emg_lens.models import IsoNet
>>> model = IsoNet(EncoderConfig.preset("tiny"))
>>> family = default_family(model)
>>> len(family), family[0].label
(72, 'L0 H0 cls->cls')
>>> str(family[5].edge_set)
'between(emg,acc) & heads(0) & layers(0)'
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from jaxtyping import Bool, Int

from emg_lens.discovery.exact import base_layer_masks
from emg_lens.edges import EdgeSet, between, heads, layers, parse, same_channel, time_window
from emg_lens.edges.algebra import EdgeIntersection
from emg_lens.errors import (
    ArgumentError,
    LayoutError,
    SpecError,
    checked,
)
from emg_lens.inputs import check_model
from emg_lens.layout import TokenLayout


@checked
@dataclass(frozen=True)
class Candidate:
    """One knockout: ``edges`` (without layers; its heads included) cut in block ``layer``.

    ``head`` is the one head it acts on (None when it spans several), ``query_group`` and
    ``key_group`` the token groups of a group-pair candidate (None otherwise); ``kind`` names
    the edges without the head (``"emg->acc"``, ``"cross_channel & time_window(0)"``)."""

    layer: int
    edges: EdgeSet
    head: int | None = None
    kind: str = ""
    query_group: str | None = None
    key_group: str | None = None

    @property
    def label(self) -> str:
        head = "" if self.head is None else f" H{self.head}"
        return f"L{self.layer}{head} {self.kind}"

    @cached_property
    def edge_set(self) -> EdgeSet:
        """The candidate as one edge set naming its layer: what a study cuts with mode ``all``."""
        return self.edges & layers(self.layer)

    def row(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "head": self.head,
            "kind": self.kind,
            "query_group": self.query_group,
            "key_group": self.key_group,
            "edges": str(self.edge_set),
        }


def _group_pairs(model) -> list[Candidate]:
    groups = model.layout.groups
    return [
        Candidate(layer, between(q, k) & heads(h), h, f"{q}->{k}", q, k)
        for layer in range(model.cfg.n_layers)
        for h in range(model.cfg.n_heads)
        for q in groups
        for k in groups
    ]


def _channel_kinds(n_patches: int) -> list[tuple[str, EdgeSet]]:
    """Same / other channel x same patch / near / far: a partition of channel-patch edges."""
    near = max(1, n_patches // 4)
    windows = [("same patch", time_window(0)), (f"lag 1-{near}", time_window(near, min_lag=1))]
    if n_patches - 1 > near:
        windows.append((f"lag > {near}", time_window(n_patches - 1, min_lag=near + 1)))
    kinds = []
    for channel_name, channel in (("same channel", same_channel()), ("other channel", None)):
        for window_name, window in windows:
            edges = window & channel if channel is not None else window - same_channel()
            kinds.append((f"{channel_name}, {window_name}", edges))
    return kinds


@checked
def default_family(model: Any) -> list[Candidate]:
    """Every (layer, head, query group -> key group) knockout of a model with several token
    groups; for a single-modality model (TinyMyo) every (layer, head) x same/other channel x
    same patch/near/far (see the module docstring). Both partition the attention edges.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import TinyMyo
    >>> cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 2}, n_samples=160)
    >>> kinds = sorted({c.kind for c in default_family(TinyMyo(cfg))})  # near: lags 1-2
    >>> len(kinds), kinds[:3]
    (6, ['other channel, lag 1-2', 'other channel, lag > 2', 'other channel, same patch'])
    """
    check_model(model)
    return _default_family(model)


def _default_family(model: Any) -> list[Candidate]:
    """`default_family` of a model already checked."""
    if len(model.layout.groups) > 1:
        return _group_pairs(model)
    n_patches = int(model.layout.time_ids().max()) + 1
    return [
        Candidate(layer, edges & heads(h), h, kind)
        for layer in range(model.cfg.n_layers)
        for h in range(model.cfg.n_heads)
        for kind, edges in _channel_kinds(n_patches)
    ]


@checked
def family_from_edges(
    model: Any,
    edge_sets: Iterable[EdgeSet | str],
    *,
    per_head: bool = True,
    layers: Sequence[int] | None = None,
) -> list[Candidate]:
    """Candidates from a user's edge sets: each in every layer (or in ``layers``), split per
    head when ``per_head`` (a set that names heads keeps only those).

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny"))
    >>> [c.label for c in family_from_edges(model, ["cross_modal"], per_head=False)]
    ['L0 cross_modal', 'L1 cross_modal']
    """
    check_model(model)
    if isinstance(edge_sets, str | EdgeSet):
        accepted = "a list of edge sets or expressions: wrap it in a list"
        raise ArgumentError(f"edge_sets must be {accepted}, got one: {edge_sets!r}")
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    chosen = range(n_layers) if layers is None else [int(layer) for layer in layers]
    bad = [layer for layer in chosen if not 0 <= layer < n_layers]
    if bad:
        raise ArgumentError(f"layers {bad} are out of range: the model has 0..{n_layers - 1}")
    family = []
    for raw in edge_sets:
        try:
            edges = parse(raw)
        except SpecError as exc:
            raise ArgumentError(f"family edge set {raw!r}: {exc}") from exc
        if edges.layer_indices():
            why = "give the layers with layers=..., each candidate is one layer"
            raise ArgumentError(f"family edge set {edges} names layers: {why}")
        head_list = [None] if not per_head else list(range(n_heads))
        for layer in chosen:
            for h in head_list:
                edge_set = edges if h is None else edges & heads(h)
                family.append(Candidate(layer, edge_set, h, str(edges)))
    return check_family(model, family)


def check_family(model: Any, family: Sequence[Candidate]) -> list[Candidate]:
    """The family as a list, refusing an empty one, non-candidates, repeats, candidates whose
    edges name a group the layout lacks or select no edge (they would be estimated as 0)."""
    family = list(family)
    if not family:
        raise ArgumentError("the candidate family is empty: give at least one edge set")
    for i, c in enumerate(family):
        if not isinstance(c, Candidate) or not 0 <= c.layer < model.cfg.n_layers:
            got = f"{c.label} in layer {c.layer}" if isinstance(c, Candidate) else type(c).__name__
            layers = f"0..{model.cfg.n_layers - 1}"
            raise ArgumentError(f"family[{i}] must be a Candidate of layers {layers}, got {got}")
        missing = sorted(c.edges.groups() - set(model.layout.groups))
        if missing:
            groups = f"this layout has {model.layout.groups}"
            raise LayoutError(f"family[{i}] ({c.label}) names token group {missing[0]!r}; {groups}")
    seen: dict[str, int] = {}
    for i, c in enumerate(family):
        key = str(c.edge_set)
        if key in seen:
            raise ArgumentError(f"family[{i}] repeats family[{seen[key]}]: {key}")
        seen[key] = i
    return family


def candidate_mask(model: Any, c: Candidate) -> Bool[torch.Tensor, "head_index query_pos key_pos"]:
    """The candidate's ``[head, query, key]`` mask in its layer."""
    return c.edges.compile(model.layout, model.cfg.n_heads, layer=c.layer)


@checked
def layer_masks(
    model: Any, cut: Iterable[Candidate], device: torch.device | str | None = None
) -> dict[int, torch.Tensor]:
    """``{layer: mask}`` for ``model(x, edge_masks=...)``: the union of the cut candidates."""
    masks: dict[int, torch.Tensor] = {}
    for c in cut:
        m = candidate_mask(model, c)
        masks[c.layer] = masks[c.layer] | m if c.layer in masks else m
    return {layer: m.to(device) for layer, m in sorted(masks.items())}


@dataclass(frozen=True)
class RowChunk:
    """The (head, query) rows that several candidates of one layer touch, stacked so that
    their masked softmaxes run as one: row ``r`` is query ``queries[r]`` of head ``heads[r]``,
    ``cut[r]`` its keys the candidate cuts, ``owner[r]`` the candidate's position in the
    family."""

    layer: int
    heads: Int[torch.Tensor, " row"]
    queries: Int[torch.Tensor, " row"]
    cut: Bool[torch.Tensor, "row key"]
    owner: Int[torch.Tensor, " row"]

    def select(self, on: Bool[torch.Tensor, " row"]) -> RowChunk:
        """The rows where ``on`` is True."""
        return RowChunk(self.layer, self.heads[on], self.queries[on], self.cut[on], self.owner[on])


@checked
@dataclass(frozen=True, eq=False)
class CompiledFamily(Sequence[Candidate]):
    """A candidate family compiled against one model, once, on its device (`compile_family`),
    which the screen, the exact passes, the gates and the search read instead of compiling
    edge sets at each step: the masks stacked per layer (``by_layer``; ``masks``, views of
    them), each candidate's touched rows and cut keys (``rows``), its size, their union
    (``everything``: the empty circuit) and the base cut (``base``). A sequence of candidates.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny"))
    >>> family = compile_family(model)
    >>> len(family), family[0].label, family.sizes[0]
    (72, 'L0 H0 cls->cls', 1)
    >>> masks = family.layer_masks([0, 5])
    >>> sorted(masks), torch.equal(masks[0], layer_masks(model, [family[0], family[5]])[0])
    ([0], True)
    """

    candidates: tuple[Candidate, ...]
    by_layer: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(repr=False)
    masks: tuple[torch.Tensor, ...] = field(repr=False)
    rows: tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], ...] = field(repr=False)
    sizes: tuple[int, ...] = field(repr=False)
    everything: dict[int, torch.Tensor] = field(repr=False)
    base: dict[int, torch.Tensor] = field(repr=False)
    # which candidates cut no edge the base does not cut already: cutting one changes nothing,
    # an exact zero without a pass (a structural zero, as a study calls it)
    cut_by_base: Bool[torch.Tensor, " candidate"] = field(repr=False)
    base_edges: EdgeSet | None
    layout: TokenLayout = field(repr=False)
    n_heads: int
    device: torch.device

    def __len__(self) -> int:
        return len(self.candidates)

    def __getitem__(self, index):  # a position (an int or a NumPy integer), or a slice
        if isinstance(index, slice):
            return list(self.candidates[index])
        return self.candidates[index]

    def layer_masks(self, chosen: Iterable[int]) -> dict[int, Bool[torch.Tensor, "head query key"]]:
        """``{layer: mask}`` for ``model(x, edge_masks=...)``: the union of the candidates at
        the positions ``chosen``, as `layer_masks` computes it."""
        chosen = torch.as_tensor(list(chosen), dtype=torch.long)
        masks = {}
        for layer, (ids, stacked) in self.by_layer.items():
            mine = torch.isin(ids, chosen.to(ids.device))
            if mine.any():
                masks[layer] = stacked[mine].any(0)
        return masks

    def fits(self, model: Any) -> bool:
        """Whether this family was compiled on ``model``'s layout and heads, on its device."""
        return (
            self.layout == model.layout
            and self.n_heads == model.cfg.n_heads
            and self.device == next(model.parameters()).device
        )


@checked
def compile_family(
    model: Any, family: Sequence[Candidate] | None = None, *, base: EdgeSet | None = None
) -> CompiledFamily:
    """``family`` (default: `default_family`; else checked by `check_family`) compiled against
    ``model`` (an encoder `check_model` accepts: the screen checks it) with the ``base`` cut, on
    the model's device (see `CompiledFamily`). A `CompiledFamily` that `fits` the model keeps
    its masks (and its base, when it is the same edge set)."""
    if not (isinstance(family, CompiledFamily) and family.fits(model)):
        family = _compile(model, family)
    if str(family.base_edges) == str(base):
        return family
    base_masks = base_layer_masks(model, base, family.device) or {}
    inside = [
        not (mask & ~base_masks[c.layer]).any() if c.layer in base_masks else not mask.any()
        for c, mask in zip(family.candidates, family.masks, strict=True)
    ]
    return dataclasses.replace(
        family, base=base_masks, base_edges=base, cut_by_base=torch.tensor(inside)
    )


def _compile(model: Any, family: Sequence[Candidate] | None) -> CompiledFamily:
    """`compile_family` without a base cut."""
    family = _default_family(model) if family is None else check_family(model, family)
    device = next(model.parameters()).device
    by_layer, masks, sizes = {}, {}, {}  # masks and sizes by the candidate's position
    for layer in sorted({c.layer for c in family}):
        ids = [i for i, c in enumerate(family) if c.layer == layer]
        stacked = torch.stack([candidate_mask(model, family[i]) for i in ids]).to(device)
        for i, mask, size in zip(ids, stacked, stacked.flatten(1).sum(1).tolist()):
            masks[i], sizes[i] = mask, int(size)  # a view of the stacked masks
        by_layer[layer] = (torch.tensor(ids, device=device), stacked)
    order = range(len(family))
    touched = [masks[i].any(-1).nonzero(as_tuple=True) for i in order]
    return CompiledFamily(
        candidates=tuple(family),
        by_layer=by_layer,
        masks=tuple(masks[i] for i in order),
        rows=tuple((h, q, masks[i][h, q]) for i, (h, q) in zip(order, touched)),
        sizes=tuple(sizes[i] for i in order),
        everything={layer: stacked.any(0) for layer, (_, stacked) in by_layer.items()},
        base={},
        cut_by_base=torch.tensor([sizes[i] == 0 for i in order], dtype=torch.bool),
        base_edges=None,
        layout=model.layout,
        n_heads=model.cfg.n_heads,
        device=device,
    )


@checked
def cut_edge_set(cut: Iterable[Candidate]) -> EdgeSet | None:
    """The union of candidates as one edge set that parses back, grouped so that it reads:
    ``between(emg,acc) & heads(0,2) & layers(1) | ...`` (None for no candidate). Applied in
    every layer (a study's mode ``all``), it cuts exactly these candidates.

    >>> from emg_lens.edges import cross_modal
    >>> cut = [Candidate(1, cross_modal() & heads(h), h, "x") for h in (2, 0)]
    >>> str(cut_edge_set(cut + [Candidate(0, cross_modal() & heads(2), 2, "x")]))
    'cross_modal & heads(0,2) & layers(1) | cross_modal & heads(2) & layers(0)'
    """
    heads_of: dict[tuple[str, int], set[int | None]] = defaultdict(set)
    base_of: dict[str, EdgeSet] = {}
    for c in cut:
        edges = c.edges if c.head is None else _without_head(c)
        base_of[str(edges)] = edges
        heads_of[(str(edges), c.layer)].add(c.head)
    layers_of: dict[tuple[str, tuple[int, ...] | None], list[int]] = defaultdict(list)
    for (base, layer), hs in heads_of.items():
        # None: a candidate on every head it names (its own heads(...) included), which
        # subsumes per-head ones of the same edges.
        named = sorted(h for h in hs if h is not None)
        layers_of[(base, tuple(named) if len(named) == len(hs) else None)].append(layer)
    terms = [
        (base_of[base] if hs is None else base_of[base] & heads(*hs)) & layers(*ls)
        for (base, hs), ls in layers_of.items()
    ]
    if not terms:
        return None
    union = terms[0]
    for term in terms[1:]:
        union = union | term
    return union


def _without_head(c: Candidate) -> EdgeSet:
    """A per-head candidate's edges without its ``& heads(h)``, so heads can be merged."""
    edges = c.edges
    if isinstance(edges, EdgeIntersection) and str(edges.right) == f"heads({c.head})":
        return edges.left
    raise ArgumentError(f"candidate {c.label}: its edges ({edges}) do not end in heads({c.head})")
