"""Claims: what an ablation study expects, declared in its file before anything runs.

A ``[[claims]]`` entry (`Claim`) names an intervention of the study, the layers as its tables
name them, the classes and what to expect; the keys and values it takes: docs/guide/studies.md,
"Claims". How the run tests a claim and what it concludes: `emg_lens.studies.ablation.verdicts`.

>>> claim = Claim.from_dict({"intervention": "cross", "layers": "individual 1",
...                          "classes": [4, 5], "expect": "keep", "margin": 0.05})
>>> claim.mode, claim.layer, claim.expected
('individual', 1, 'Δ% within ±5%')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from emg_lens.errors import SpecError, check_ints, check_number
from emg_lens.studies.spec_base import Spec, file_key, is_none
from emg_lens.studies.validate import check_int_list, check_string, refuse_repeats

EXPECTATIONS = ("drop", "keep")
EXPECTED = (  # what a claim's expect accepts, in words
    "'drop' (a significant drop: the study's claims test and correction) or 'keep' "
    "(equivalence: the change's 90% t-interval within ±margin)"
)
DEFAULT_MARGIN = 0.05  # a drop claim's, where it names none: it fails above -5 %
LAYER_MODES = ("individual", "from_first", "from_last")  # one cell per layer: "<mode> <l>"


def _layer_label(text: Any, where: str) -> tuple[str, int | tuple[int, ...] | None]:
    """``layers`` of a claim as ``(mode, layer)``: ``"all"`` and ``"input"`` (no layer),
    ``"individual 1"`` / ``"from_first 1"`` / ``"from_last 1"`` (the layer the table shows),
    ``"explicit 0,2"`` (the layer set).

    >>> _layer_label("from_first 2", "claims[0]"), _layer_label("explicit 2, 0", "claims[0]")
    (('from_first', 2), ('explicit', (0, 2)))
    """
    accepted = (
        "'all', 'input' (an input ablation), '<mode> <layer>' for a mode of one cell per layer "
        "(e.g. 'individual 1', 'from_first 2', 'from_last 0') or 'explicit <layers>' (e.g. "
        "'explicit 0,2'): the mode and layer columns of the study's table"
    )
    mode, _, rest = (text if isinstance(text, str) else "").strip().partition(" ")
    rest = rest.strip()
    try:
        if mode in ("all", "input") and not rest:
            return mode, None
        if mode in LAYER_MODES and rest:
            layer = int(rest)
            if layer >= 0:
                return mode, layer
        if mode == "explicit" and rest:
            layers = tuple(sorted({int(x) for x in rest.split(",")}))
            if min(layers) >= 0:
                return mode, layers
    except ValueError:
        pass
    raise SpecError(f"{where}.layers = {text!r}; accepted: {accepted}")


def _classes(value: Any, where: str) -> str | tuple[int, ...]:
    """``classes``: ``"all"``, a ``[class_groups]`` name, or a non-empty list of distinct class
    indices (>= 0)."""
    accepted = (
        "'all', a name of the study's [class_groups] table, or a non-empty list of distinct "
        "class indices (0-based, as per_class.csv numbers them)"
    )
    if not value or not isinstance(value, str | list | tuple):
        raise SpecError(f"{where}.classes = {value!r}; accepted: {accepted}")
    if isinstance(value, str):
        return value
    indices = check_int_list(value, f"{where}.classes (class indices)", 0)
    refuse_repeats(f"{where}.classes", list(indices))
    return tuple(indices)


@dataclass(frozen=True)
class Claim(Spec):
    """One ``[[claims]]`` entry (see the module docstring). ``heads`` (``"all"`` or a head
    list) is needed only when the study has several head sets."""

    WHERE: ClassVar[str] = "claims"
    HOLDS: ClassVar[str] = "intervention, layers, classes and expect"

    intervention: str
    layers: str
    classes: str | tuple[int, ...]
    expect: str
    margin: float | None = field(default=None, metadata=file_key(omit=is_none))
    heads: str | tuple[int, ...] | None = field(default=None, metadata=file_key(omit=is_none))
    description: str = field(default="", metadata=file_key(omit=lambda v, s: not v))

    @classmethod
    def _parse(cls, data: dict[str, Any], where: str) -> dict[str, Any]:
        for key in ("intervention", "layers", "classes", "expect"):
            if data.get(key) is None:
                raise SpecError(f"{where} needs {key!r}; a claim holds {cls.HOLDS}")
        intervention = check_string(data["intervention"], f"{where}.intervention (its name)")
        mode, layer = _layer_label(data["layers"], where)
        if isinstance(layer, tuple):  # explicit
            layers = f"explicit {','.join(map(str, layer))}"
        else:
            layers = mode if layer is None else f"{mode} {layer}"
        expect = data["expect"]
        if expect not in EXPECTATIONS:
            raise SpecError(f"{where}.expect = {expect!r}; accepted: {EXPECTED}")
        margin = data.get("margin")
        if margin is not None or expect == "keep":
            needs = (
                "a number in (0, 1] (a 'keep' claim needs one: the change's 90% t-interval must "
                "lie within ±100 margin % of the baseline; 0.05: ±5%)"
                if expect == "keep"
                else "a number in (0, 1] (a 'drop' claim fails when the change's 90% t-interval "
                f"lies wholly above -100 margin %; default {DEFAULT_MARGIN}: -5%)"
            )
            margin = check_number(margin, f"{where}.margin", needs, lambda v: 0 < v <= 1, SpecError)
        heads = data.get("heads")
        if heads is not None and heads != "all":
            heads = tuple(
                check_ints(heads, f"{where}.heads ('all' or head indices)", error=SpecError)
            )
        return {
            "intervention": intervention,
            "layers": layers,
            "classes": _classes(data["classes"], where),
            "expect": expect,
            "margin": margin,
            "heads": heads,
            "description": check_string(data.get("description"), f"{where}.description") or "",
        }

    @property
    def mode(self) -> str:
        """The layer mode of the claim's condition."""
        return self.layers.partition(" ")[0]

    @property
    def layer(self) -> int | tuple[int, ...] | None:
        """The layer its table row shows (a layer set for ``explicit``; None for ``all`` and
        ``input``)."""
        return _layer_label(self.layers, "claim")[1]

    @property
    def bound(self) -> float:
        """The margin in percent of the baseline: the claim's own, else (a drop claim that
        names none) `DEFAULT_MARGIN`'s."""
        return 100 * (DEFAULT_MARGIN if self.margin is None else self.margin)

    @property
    def expected(self) -> str:
        """What the claim expects, in words."""
        if self.expect == "drop":
            return "significant drop"
        return f"Δ% within ±{self.bound:g}%"

    def classes_label(self) -> str:
        """The classes as the claim names them: a group name, ``all``, or the indices."""
        if isinstance(self.classes, str):
            return self.classes
        return ",".join(map(str, self.classes))

    def title(self) -> str:
        """The claim's description, or one made of its fields."""
        if self.description:
            return self.description
        verb = "drop" if self.expect == "drop" else "keep their accuracy"
        return f"classes {self.classes_label()} {verb} under {self.intervention} · {self.layers}"


def class_groups_key(value: Any) -> dict[str, tuple[int, ...]]:
    """The study's optional ``[class_groups]`` table: identifier names (not ``all``) -> a
    non-empty list of distinct class indices.

    >>> class_groups_key({"interaction": [4, 5]})
    {'interaction': (4, 5)}
    >>> class_groups_key({"all": [1]})
    Traceback (most recent call last):
    ...
    emg_lens.errors.SpecError: [class_groups] name 'all' is not an identifier other than 'all'; 'all' already means every class
    """  # noqa: E501
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"[class_groups] must be a table of name = [class indices], got {value!r}")
    groups = {}
    for name, indices in value.items():
        why = "is not an identifier other than 'all'; 'all' already means every class"
        if not name.isidentifier() or name == "all":
            raise SpecError(f"[class_groups] name {name!r} {why}")
        classes = _classes(indices, f"class_groups.{name}")
        if isinstance(classes, str):
            raise SpecError(f"class_groups.{name} = {indices!r}; accepted: a list of class indices")
        groups[name] = classes
    return groups


def check_claims(
    claims: Sequence[Claim],
    interventions: Mapping[str, bool],
    study_layers: Any,
    head_sets: int,
    class_groups: Mapping[str, Sequence[int]],
) -> None:
    """Refuse a claim the study cannot test, naming it: an intervention it lacks
    (``interventions``: name -> whether it acts on layers), a layer mode, layer or layer set
    the study (``study_layers``) does not run, several head sets without ``heads``, a class
    group it does not define; layers and classes beyond the models' are refused once the
    models are known (`matching_keys`, `evaluate_claims`).

    >>> claim = Claim.from_dict({"intervention": "uni", "layers": "all", "classes": "all",
    ...                          "expect": "drop"})
    >>> from emg_lens.studies import LayerSpec
    >>> check_claims([claim], {"cross": True}, LayerSpec(("all",)), 1, {})
    Traceback (most recent call last):
    ...
    emg_lens.errors.SpecError: claims[0].intervention = 'uni' is not an intervention of the study; accepted: ['cross']
    """  # noqa: E501
    modes, allowed = study_layers.modes, study_layers.layers
    explicit = [tuple(sorted(set(e))) for e in study_layers.explicit]
    for i, claim in enumerate(claims):
        where, name, mode, layer = f"claims[{i}]", claim.intervention, claim.mode, claim.layer
        at, on_layers = f"{where}.layers = {claim.layers!r}", interventions.get(name)
        if on_layers is None:
            accepted = f"accepted: {list(interventions)}"
            raise SpecError(
                f"{where}.intervention = {name!r} is not an intervention of the study; {accepted}"
            )
        if not on_layers and mode != "input":
            raise SpecError(
                f"{at}: {name!r} ablates an input (zero_modality); write layers = 'input'"
            )
        if on_layers and mode not in modes:  # "input" is no mode of the study's
            raise SpecError(
                f"{at}: {name!r} acts on layers; mode {mode!r} is not in the study's "
                f"layers.modes {list(modes)}"
            )
        if mode in LAYER_MODES and allowed is not None and layer not in allowed:
            raise SpecError(
                f"{at}: layer {layer} is not in the study's layers.layers {list(allowed)}"
            )
        if mode == "explicit" and layer not in explicit:
            raise SpecError(
                f"{at} is not one of the study's layers.explicit {[list(e) for e in explicit]}"
            )
        if claim.heads is None and head_sets > 1 and on_layers:
            raise SpecError(
                f"{where} needs heads: the study has {head_sets} head sets ('all' or a list)"
            )
        if isinstance(claim.classes, str) and claim.classes not in ("all", *class_groups):
            groups = f"'all' or a name of the study's [class_groups] table {sorted(class_groups)}"
            raise SpecError(f"{where}.classes = {claim.classes!r} is not {groups}")


def _heads_label(heads: str | tuple[int, ...] | None) -> frozenset[int] | None:
    """Head set of a claim or a table's ``heads`` column, comparable: None for all heads."""
    if heads is None or heads == "all":
        return None
    if isinstance(heads, str):
        return frozenset(int(h) for h in heads.split(","))
    return frozenset(heads)


def matching_keys(claim: Claim, rows: pd.DataFrame, where: str = "claim") -> str:
    """The condition key of ``claim`` among ``rows`` (a study's table, or `expand_grid`'s
    rows: ``intervention, mode, layer, layers, heads, key``); a `SpecError` naming the claim
    and the conditions the intervention has when none matches, or when several do (the study
    has several head sets and the claim names none)."""
    mine = rows[rows["intervention"] == claim.intervention]
    match, layer = mine["mode"] == claim.mode, claim.layer
    if claim.mode in LAYER_MODES:
        match &= mine["layer"].astype("Int64") == layer
    elif isinstance(layer, tuple):  # explicit
        match &= mine["layers"] == ",".join(map(str, layer))
    if claim.heads is not None:
        wanted = _heads_label(claim.heads)
        match &= mine["heads"].map(lambda h: _heads_label(h) == wanted)
    keys = list(dict.fromkeys(mine.loc[match.fillna(False).astype(bool), "key"]))
    if len(keys) == 1:
        return keys[0]
    labels = sorted(dict.fromkeys(_row_label(r) for r in mine.itertuples()))
    problem = "matches no condition" if not keys else "matches several conditions (name heads)"
    accepted = f"the conditions of {claim.intervention!r} are {labels}"
    raise SpecError(
        f"{where} ({claim.intervention} · {claim.layers}) {problem} of the study; {accepted}"
    )


def _row_label(row: Any) -> str:
    """A table row's condition as a claim's ``layers`` names it, with its heads."""
    if row.mode in LAYER_MODES:
        label = f"{row.mode} {int(row.layer)}"
    elif row.mode == "explicit":
        label = f"explicit {row.layers}"
    else:
        label = row.mode
    return label if row.heads == "all" else f"{label} (heads {row.heads})"


def class_indices(
    claim: Claim, class_groups: Mapping[str, Sequence[int]], n_classes: int, where: str = "claim"
) -> list[int]:
    """The class indices a claim is about, checked against the models' ``n_classes``.

    >>> claim = Claim.from_dict({"intervention": "x", "layers": "all", "classes": [3, 8],
    ...                          "expect": "drop"})
    >>> class_indices(claim, {}, 8, "claims[0]")
    Traceback (most recent call last):
    ...
    emg_lens.errors.SpecError: claims[0].classes: class index 8 is out of range: the models have 8 classes, indices 0..7 (per_class.csv's class column)
    """  # noqa: E501
    if claim.classes == "all":
        return list(range(n_classes))
    indices = class_groups[claim.classes] if isinstance(claim.classes, str) else claim.classes
    bad = [i for i in indices if not 0 <= i < n_classes]
    if bad:
        name = f"classes ({claim.classes})" if isinstance(claim.classes, str) else "classes"
        raise SpecError(
            f"{where}.{name}: class index {bad[0]} is out of range: the models have "
            f"{n_classes} classes, indices 0..{n_classes - 1} (per_class.csv's class column)"
        )
    return list(indices)
