"""Study specs: a declarative, validated, immutable description of an ablation grid.

A study file (TOML; YAML or a dict also work) holds parameters only — which models, which
interventions, which layers and heads, which metric and statistics. `run_study` does the work.
Every mistake raises `SpecError` naming the key and what would be accepted.

>>> spec = StudySpec.from_dict({
...     "name": "demo",
...     "models": "demo",
...     "interventions": [{"name": "cross", "edges": "cross_modal"}],
...     "layers": {"modes": ["individual", "from_first"]},
... })
>>> spec.interventions[0].edges, spec.layers.modes, spec.stats.correction
('cross_modal', ('individual', 'from_first'), 'bonferroni')
>>> StudySpec.from_dict(spec.to_dict()) == spec
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from emg_lens.edges import parse
from emg_lens.errors import SpecError, check_seed, check_type, checked, is_int
from emg_lens.stats.metrics import METRICS
from emg_lens.studies.ablation.claims import Claim, check_claims, class_groups_key
from emg_lens.studies.spec_base import Spec, StatsSpec, file_key, is_none
from emg_lens.studies.validate import (
    check_int_list,
    check_list,
    check_modules,
    check_subjects,
    refuse_repeats,
    require_strings,
)
from emg_lens.user_code import CodeFile, load_hook, locate_code

# individual: one layer; from_first: layers 0..l (the paper's RFB); from_last: l..L-1 (RFE);
# all: every layer at once; explicit: the layer lists given in layers.explicit.
MODES = ("individual", "from_first", "from_last", "all", "explicit")
ACTIONS = ("edges", "hook", "zero_modality", "erase")  # what an intervention does: one of them
PLACEBO = "_placebo"  # an erasure's placebo condition is named "<intervention>_placebo"


@checked
@dataclass(frozen=True)
class Intervention(Spec):
    """One named intervention: exactly one of ``edges`` (an edge expression, masked with
    ``-inf`` at ``hook_attn_scores``), ``hook`` (``"path/file.py:name"``: an EdgeSet, an
    expression string, or a factory ``f(model, layers) -> fwd_hooks``), ``zero_modality``
    (input ablation of one modality, the paper's Table 2) or ``erase`` (a concept, erased by
    LEACE from the token group ``tokens`` at ``hook_resid_pre`` of each layer the condition
    names, `emg_lens.studies.ablation.erasure`: ``"gesture"``, restricted to ``classes`` if
    given; ``"subject"`` for a model applied across subjects; a window label of the data),
    with its seeded random-subspace placebo run as ``<name>_placebo`` (``placebo`` marks that
    condition; not a key of the file)."""

    HOLDS: ClassVar[str] = "name and edges/hook/zero_modality/erase"

    name: str
    edges: str | None = field(default=None, metadata=file_key(omit=is_none))
    hook: str | None = field(default=None, metadata=file_key(omit=is_none))
    zero_modality: str | None = field(default=None, metadata=file_key(omit=is_none))
    # an erasure's fields (None elsewhere, so the other conditions' keys stay what they were)
    erase: str | None = field(default=None, metadata=file_key(omit=is_none))
    tokens: str | None = field(default=None, metadata=file_key(omit=is_none))
    classes: tuple[int, ...] | None = field(default=None, metadata=file_key(omit=is_none))
    seed: int | None = field(default=None, metadata=file_key(omit=is_none))
    placebo: bool | None = field(default=None, metadata=file_key(saved=False))

    @classmethod
    def _parse(cls, data: dict[str, Any], where: str) -> dict[str, Any]:
        name = data.get("name")
        if not isinstance(name, str) or not name.isidentifier() or name == "baseline":
            raise SpecError(f"{where}.name must be an identifier but 'baseline', got {name!r}")
        given = [k for k in ACTIONS if data.get(k) is not None]
        if len(given) != 1:
            raise SpecError(
                f"{where} ({name}) needs exactly one of {', '.join(ACTIONS)}; got {given}"
            )
        edges = data.get("edges")
        if edges is not None:
            try:
                edges = str(parse(edges))  # canonical form: equal sets, equal keys
            except SpecError as exc:
                raise SpecError(f"{where}.edges: {exc}") from exc
        hook, modality = data.get("hook"), data.get("zero_modality")
        if hook is not None and (not isinstance(hook, str) or ":" not in hook):
            raise SpecError(f"{where}.hook must look like 'hooks/file.py:name', got {hook!r}")
        check_type(modality, str | None, f"{where}.zero_modality (a modality name)", SpecError)
        return {
            "name": name,
            "edges": edges,
            "hook": hook,
            "zero_modality": modality,
            **_erasure_keys(data, f"{where} ({name})"),
        }

    @property
    def acts_on_layers(self) -> bool:
        """Input ablations have no layer; edge, hook and erasure interventions do."""
        return self.zero_modality is None


def _erasure_keys(data: dict[str, Any], where: str) -> dict[str, Any]:
    """``erase``, ``tokens``, ``classes`` and ``seed`` of an intervention, checked: the last
    three belong to an erasure only, which needs ``tokens``; ``classes`` restrict the concept
    ``"gesture"`` to two or more classes."""
    erase, tokens, classes, seed = (data.get(k) for k in ("erase", "tokens", "classes", "seed"))
    extra = [k for k in ("tokens", "classes", "seed") if data.get(k) is not None]
    if erase is None and extra:
        raise SpecError(f"{where}: {extra} belong to an erasure (erase = 'gesture', ...)")
    if erase is None:
        return {}
    if not isinstance(erase, str) or not erase.isidentifier():
        concepts = "'gesture', 'subject', 'repetition' or a window label of the data"
        raise SpecError(f"{where}.erase = {erase!r}; accepted: a concept's name, {concepts}")
    if not isinstance(tokens, str) or not tokens:
        raise SpecError(f"{where}: erase needs tokens (a token group or edges), got {tokens!r}")
    if classes is not None:
        if erase != "gesture":
            raise SpecError(f"{where}.classes restricts erase = 'gesture', not {erase!r}")
        classes = check_int_list(classes, f"{where}.classes")
        if len(classes) < 2 or len(set(classes)) < len(classes):
            raise SpecError(
                f"{where}.classes = {classes}; need two or more class indices, distinct"
            )
    if seed is not None:
        seed = check_seed(seed, f"{where}.seed (the placebo's)", SpecError)
    return {"erase": erase, "tokens": tokens, "classes": classes, "seed": seed}


@checked
@dataclass(frozen=True)
class LayerSpec(Spec):
    """Which layer sets to intervene on, per mode (see `MODES`)."""

    WHERE: ClassVar[str] = "layers"

    modes: tuple[str, ...] = ("individual",)
    # the l of each mode; None: every layer
    layers: tuple[int, ...] | None = field(default=None, metadata=file_key(omit=is_none))
    explicit: tuple[tuple[int, ...], ...] = ()

    @classmethod
    def _parse(cls, data: dict[str, Any], where: str) -> dict[str, Any]:
        modes = data.get("modes", ["individual"])
        if isinstance(modes, str):
            modes = [modes]
        if not isinstance(modes, list | tuple) or not modes or any(m not in MODES for m in modes):
            raise SpecError(f"layers.modes = {modes!r}; accepted: a list of modes {list(MODES)}")
        layers = data.get("layers")
        layers = None if layers is None else check_int_list(layers, "layers.layers")
        explicit = tuple(
            check_int_list(v, f"layers.explicit[{i}]")
            for i, v in enumerate(data.get("explicit", []))
        )
        if ("explicit" in modes and not explicit) or not all(explicit):
            why = "the mode 'explicit' needs layer sets, none of them empty"
            raise SpecError(f"layers.modes = {modes}, layers.explicit = {explicit}: {why}")
        refuse_repeats("layers.layers", [layers] if layers is None else list(layers))
        refuse_repeats("layers.explicit", [tuple(sorted(set(e))) for e in explicit])
        return {"modes": tuple(modes), "layers": layers, "explicit": explicit}


def _head_sets(heads: Any) -> tuple[tuple[int, ...] | None, ...]:
    """``heads`` as head sets: a list of head lists and/or ``"all"``; a flat list of ints is
    one head set (``heads = [0, 1]`` means ``[[0, 1]]``).

    >>> _head_sets([0, 1]), _head_sets(["all", [2]])
    (((0, 1),), (None, (2,)))
    """
    accepted = "a list of head sets, e.g. [[0, 1], 'all'], or one head set such as [0, 1]"
    if all(is_int(h) for h in check_list(heads, "heads", accepted)):
        heads = [heads]  # one head set written flat
    elif any(is_int(h) for h in heads):
        raise SpecError(f"heads mixes head indices and head sets ({heads!r}); write {accepted}")
    sets = tuple(
        None if h in (None, "all") else check_int_list(h, f"heads[{i}]")
        for i, h in enumerate(heads)
    )
    refuse_repeats("heads", [h if h is None else tuple(sorted(h)) for h in sets])
    return sets


def _refuse_heads_twice(heads: tuple, interventions: tuple[Intervention, ...]) -> None:
    """Head subsets given at the top level *and* inside an edge expression would be applied
    twice (intersected): refuse, naming the intervention."""
    shown = [list(h) if h else "all" for h in heads]
    for i in interventions:
        if i.edges is not None and "heads(" in i.edges and shown != ["all"]:
            raise SpecError(
                f"intervention {i.name!r} has heads in {i.edges!r} and heads = {shown}: the two "
                "would be intersected; give heads in one place only"
            )


def _metrics(value: Any) -> tuple[str, ...]:
    """The study key ``metric``: one name of `METRICS` or a non-empty list of distinct ones.

    >>> _metrics("margin"), _metrics(["accuracy", "kl"])
    (('margin',), ('accuracy', 'kl'))
    >>> _metrics("f1")
    Traceback (most recent call last):
    ...
    emg_lens.errors.SpecError: metric = 'f1'; accepted: one of ['accuracy', 'balanced_accuracy', 'macro_f1', 'margin', 'logprob', 'kl', 'flip_rate'] or a list of them
    """  # noqa: E501
    names = [value] if isinstance(value, str) else value
    accepted = f"one of {list(METRICS)} or a list of them"
    for name in check_list(names, "metric", accepted):
        if name not in METRICS:
            raise SpecError(f"metric = {name!r}; accepted: {accepted}")
    refuse_repeats("metric", names)
    return tuple(names)


def _metric_key(metrics: tuple[str, ...], spec: Any) -> str | list[str]:
    """The file's ``metric``: one name, or a list of several."""
    return metrics[0] if len(metrics) == 1 else list(metrics)


def _heads_key(heads: tuple, spec: Any) -> list:
    return ["all" if h is None else list(h) for h in heads]


def _groups_key(groups: tuple[tuple[str, tuple[int, ...]], ...], spec: Any) -> dict:
    return {name: list(classes) for name, classes in groups}


def _empty(value: Any, spec: Any) -> bool:
    return not value


@checked
@dataclass(frozen=True)
class StudySpec(Spec):
    """A whole study. ``source_dir`` (where the file was) resolves ``hook`` paths and is not
    part of the study's identity."""

    KIND: ClassVar[str] = "ablation"
    # ``modules`` is how checkpoints load, not what the study is: its function and file
    # digest are in each cell's provenance instead; claims are read from the cells, not
    # computed into them, so declaring one reuses a finished study's cells, and so is the test
    # that decides them
    UNHASHED = ("kind", "modules", "claims", "class_groups", "stats.claims_test")

    name: str
    models: str
    interventions: tuple[Intervention, ...]
    # the study key ``metric``: one name or a list (one table per metric, from the same passes)
    metrics: tuple[str, ...] = field(
        default=("accuracy",), metadata=file_key("metric", dump=_metric_key)
    )
    # which of the model's outputs is scored: a ``return_type`` of its forward that gives
    # [batch, n_classes] logits ("logits"; IsoNet also has "avg_logits", its mean-pooled head)
    return_type: str = "logits"
    layers: LayerSpec = LayerSpec()
    heads: tuple[tuple[int, ...] | None, ...] = field(  # None: all heads
        default=(None,), metadata=file_key(dump=_heads_key)
    )
    subjects: tuple[int, ...] | None = field(default=None, metadata=file_key(omit=is_none))
    stats: StatsSpec = field(default_factory=StatsSpec)
    description: str = ""
    # "models.py:build_modules": builds the user's modules of checkpoints that hold some (a
    # converted nn.TransformerEncoder's tokenizer and readout), run only with consent
    modules: str | None = field(default=None, metadata=file_key(omit=is_none))
    # named lists of class indices, and what the study expects (`emg_lens.studies.ablation.claims`)
    class_groups: tuple[tuple[str, tuple[int, ...]], ...] = field(
        default=(), metadata=file_key(dump=_groups_key, omit=_empty)
    )
    claims: tuple[Claim, ...] = field(default=(), metadata=file_key(omit=_empty))
    source_dir: str | Path = field(default=".", compare=False, metadata=file_key(saved=False))

    @classmethod
    def _parse(cls, data: dict[str, Any], where: str) -> dict[str, Any]:
        require_strings(data, ("models",))
        metrics = _metrics(data.get("metric", "accuracy"))
        return_type = data.get("return_type", "logits")
        if not isinstance(return_type, str) or not return_type.isidentifier():
            accepted = "a model output giving [batch, n_classes] logits: 'logits', 'avg_logits'..."
            raise SpecError(f"return_type = {return_type!r}; accepted: {accepted}")
        raw = check_list(data.get("interventions"), "[[interventions]]", "at least one")
        interventions = tuple(
            Intervention.from_dict(d, where=f"interventions[{i}]") for i, d in enumerate(raw)
        )
        names = [i.name for i in interventions]
        names += [i.name + PLACEBO for i in interventions if i.erase is not None]
        if len(set(names)) != len(names):
            why = f"must be unique (an erasure's placebo is named '<name>{PLACEBO}')"
            raise SpecError(f"intervention names {why}, got {names}")
        heads = _head_sets(data.get("heads", [None]))
        _refuse_heads_twice(heads, interventions)
        subjects = data.get("subjects")
        layers = LayerSpec.from_dict(data.get("layers", {}))
        groups = class_groups_key(data.get("class_groups"))
        raw_claims = data.get("claims", [])
        if not isinstance(raw_claims, list):
            raise SpecError(f"claims must be a list of [[claims]] tables, got {raw_claims!r}")
        claims = tuple(Claim.from_dict(d, where=f"claims[{i}]") for i, d in enumerate(raw_claims))
        acting = {i.name: i.acts_on_layers for i in interventions}  # a placebo acts on layers
        acting |= {i.name + PLACEBO: True for i in interventions if i.erase is not None}
        check_claims(claims, acting, layers, len(heads), groups)
        return {
            "models": data["models"],
            "modules": check_modules(data.get("modules")),
            "interventions": interventions,
            "metrics": metrics,
            "return_type": return_type,
            "layers": layers,
            "heads": heads,
            "subjects": None if subjects is None else check_subjects(subjects, "subjects"),
            "stats": StatsSpec.from_dict(data.get("stats", {})),
            "class_groups": tuple(groups.items()),
            "claims": claims,
        }

    @property
    def metric(self) -> str:
        """The study's first metric: the one its figures and single-table views show."""
        return self.metrics[0]

    # ------------------------------------------------------------------ hook references
    def code_files(self) -> list[CodeFile]:
        """The Python files this study would run (``hook = ...``, ``modules = ...``), located
        inside the spec's project and hashed, never executed (`emg_lens.user_code`)."""
        refs = dict.fromkeys(i.hook for i in self.interventions if i.hook is not None)
        files = [locate_code(ref, self.source_dir) for ref in refs]
        if self.modules is not None:
            files.append(locate_code(self.modules, self.source_dir, key="modules"))
        return files

    def resolve_hook(self, ref: str | CodeFile, *, allow_code: bool = False) -> Any:
        """Run ``"path/file.py:name"`` (in the spec's project; only with ``allow_code``), or
        a file `code_files` located, and return the EdgeSet, expression or hook factory it
        names (`emg_lens.user_code.load_hook`)."""
        code = ref if isinstance(ref, CodeFile) else locate_code(ref, self.source_dir)
        return load_hook(code, allow_code=allow_code)
