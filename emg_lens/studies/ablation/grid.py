"""Expanding a `StudySpec` into conditions for one model: intervention x mode x layer x heads,
each with a deterministic ``key`` (a hash of what it does), which names its cells in the store.

>>> from emg_lens.studies import StudySpec
>>> spec = StudySpec.from_dict({"name": "t", "models": "demo",
...     "interventions": [{"name": "cross", "edges": "cross_modal"}],
...     "layers": {"modes": ["individual", "from_first", "from_last"]}})
>>> grid = expand_grid(spec, n_layers=3, n_heads=4)
>>> [(c.mode, c.layer, c.layers) for c in grid][3:6]
[('from_first', 0, (0,)), ('from_first', 1, (0, 1)), ('from_first', 2, (0, 1, 2))]

Nine rows, six distinct effects: RFB at 0 is individual 0, RFE at 2 is individual 2, and RFB
at 2 is RFE at 0 (every layer).

>>> len(grid), len({c.effect for c in grid})
(9, 6)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from functools import cached_property

from emg_lens.errors import SpecError, checked
from emg_lens.studies.ablation.spec import PLACEBO, Intervention, StudySpec


@checked
@dataclass(frozen=True)
class Condition:
    """One cell of the grid (per subject): what to do, where, on which heads."""

    intervention: Intervention | None  # None: the unmodified baseline
    mode: str  # a layer mode, "input" for input ablations, "none" for the baseline
    layer: int | None  # the layer the table shows (None: all/explicit/input/baseline)
    layers: tuple[int, ...]
    heads: tuple[int, ...] | None  # None: all heads

    @property
    def name(self) -> str:
        return "baseline" if self.intervention is None else self.intervention.name

    @cached_property  # a frozen condition's text, hashed and compared many times per run
    def effect(self) -> str:
        """What the condition does, independent of how the grid names it: equal effects are
        evaluated once (e.g. ``from_first`` at the last layer and ``all``)."""
        what = (
            None
            if self.intervention is None
            else {k: v for k, v in vars(self.intervention).items() if k != "name" and v is not None}
        )
        return json.dumps([what, self.layers, self.heads], sort_keys=True)

    @cached_property
    def key(self) -> str:
        """Deterministic id of this row: intervention name, mode, layer and effect."""
        text = json.dumps([self.name, self.mode, self.layer, self.effect])
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    def row(self) -> dict:
        return {
            "intervention": self.name,
            "mode": self.mode,
            "layer": self.layer,
            "layers": ",".join(map(str, self.layers)),
            "heads": "all" if self.heads is None else ",".join(map(str, self.heads)),
            "key": self.key,
        }


BASELINE = Condition(None, "none", None, (), None)


LayerSet = tuple[str, int | None, tuple[int, ...]]  # mode, the layer a row shows, the layers


def _layer_sets(spec: StudySpec, n_layers: int) -> list[LayerSet]:
    chosen = spec.layers.layers if spec.layers.layers is not None else tuple(range(n_layers))
    bad = [layer for layer in chosen if not 0 <= layer < n_layers]
    bad += [layer for e in spec.layers.explicit for layer in e if not 0 <= layer < n_layers]
    if bad:
        has = f"the model has layers 0..{n_layers - 1}"
        raise SpecError(f"layers {sorted(set(bad))} are out of range: {has}")
    sets: list[LayerSet] = []
    for mode in spec.layers.modes:
        if mode == "individual":
            sets += [(mode, layer, (layer,)) for layer in chosen]
        elif mode == "from_first":
            sets += [(mode, layer, tuple(range(layer + 1))) for layer in chosen]
        elif mode == "from_last":
            sets += [(mode, layer, tuple(range(layer, n_layers))) for layer in chosen]
        elif mode == "all":
            sets.append((mode, None, tuple(range(n_layers))))
        else:  # explicit
            sets += [(mode, None, tuple(sorted(set(e)))) for e in spec.layers.explicit]
    return sets


@checked
def expand_grid(spec: StudySpec, n_layers: int, n_heads: int) -> list[Condition]:
    """All conditions of ``spec`` for a model with ``n_layers`` layers and ``n_heads`` heads,
    in spec order (the baseline is not included: it is always evaluated). An erasure acts on
    every head (the residual stream), so it has one condition per layer set, on all heads,
    each followed by its placebo's (``<name>_placebo``)."""
    bad_heads = sorted({h for hs in spec.heads if hs for h in hs if not 0 <= h < n_heads})
    if bad_heads:
        raise SpecError(f"heads {bad_heads} are out of range: the model has heads 0..{n_heads - 1}")
    conditions = []
    for intervention in spec.interventions:
        if not intervention.acts_on_layers:
            conditions.append(Condition(intervention, "input", None, (), None))
            continue
        if n_layers == 0:
            why = "acts on attention layers, but the model has no shared stack `blocks`"
            raise SpecError(f"intervention {intervention.name!r} {why}")
        for mode, layer, layers in _layer_sets(spec, n_layers):
            if intervention.erase is not None:  # the residual stream: no head subset
                placebo = replace(intervention, name=intervention.name + PLACEBO, placebo=True)
                for erasure in (intervention, placebo):
                    conditions.append(Condition(erasure, mode, layer, layers, None))
                continue
            for heads in spec.heads:
                conditions.append(Condition(intervention, mode, layer, layers, heads))
    if not conditions:
        raise SpecError("the study grid is empty")
    return conditions
