"""Checking a study before it runs (``emg-lens study check``): what it would compute, on what,
and what it can find, with no forward pass and no code of the study run.

`check_ablation` checks an ablation study against its models (each checkpoint opened as the
run would, its weights' header but not its weights) or, with no models found, against a
preset's layout; it lists the Python files the study names (never run), the grid of
conditions, the structural zeros, the design line the run's summary prints, and the claims
the study declares (`claims_note`). `text_table`
lays out rows as the command line prints them. `check_target` finds what a study is checked
against; the discovery kind reuses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from emg_lens.errors import EmgLensError, LayoutError, SpecError

__all__ = [
    "CHECK_HEADS",
    "CHECK_LAYERS",
    "CHECK_PRESET",
    "PRESET_MODELS",
    "Target",
    "check_ablation",
    "check_target",
    "claims_note",
    "code_note",
    "text_table",
]

CHECK_PRESET = "demo"
"""The layout a study is checked against when it finds no models."""

PRESET_MODELS = {"tinymyo": "TinyMyo"}
"""The class of a preset's layout; IsoNet for the others."""

CHECK_LAYERS, CHECK_HEADS = 5, 8
"""The size of the preset's model a study is checked against when it finds no models."""


def text_table(rows: Sequence[dict], columns: Sequence[str], floatfmt: str = ".3f") -> str:
    """``rows`` as right-aligned columns under a header.

    >>> print(text_table([{"subject": 1, "accuracy": 0.5}], ["subject", "accuracy"]))
    subject  accuracy
          1     0.500
    """

    def fmt(v: Any) -> str:
        return format(v, floatfmt) if isinstance(v, float) else str(v)

    cells = [[fmt(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


class Target(NamedTuple):
    """What a study is checked against (see `check_target`)."""

    layout: Any
    n_layers: int
    n_heads: int
    source: str
    n_subjects: int | None  # None: no models found, and no ``subjects``
    model: Any = None  # the first model, built without its weights (None: no models found)
    from_models: bool = False  # False: a preset's layout stands in for the models


def check_target(
    spec: Any,
    *,
    models: str | Path | None = None,
    preset: str | None = None,
    layers: int | None = None,
    heads: int | None = None,
) -> Target:
    """The token layout, layers and heads a study is checked against, what they are, and how
    many subjects it runs: the study's models' (``models``, else ``spec.models``: the first
    one's class and config; the subjects found, or those of ``subjects``), or, with no
    ``subject_<N>/`` folder found, the layout of ``preset``'s model (`PRESET_MODELS`, else
    IsoNet; default `CHECK_PRESET`) at ``layers`` and ``heads`` (default `CHECK_LAYERS`,
    `CHECK_HEADS`; the subjects of
    ``subjects``, else unknown). Every model is checked as the run would open it, its
    weights' header included but not its weights (`emg_lens.checkpoints.check_checkpoint`):
    a damaged checkpoint is reported here, not after the other subjects have run, and so is a
    model holding the user's own modules in a study without ``modules`` (which that model's
    layout does not need: the model is built with stand-ins, and no code of the study
    runs)."""
    import torch

    from emg_lens.checkpoints import check_checkpoint, user_modules_of
    from emg_lens.config import EncoderConfig
    from emg_lens.models import MODEL_CLASSES
    from emg_lens.studies.code import require_builder
    from emg_lens.studies.runner import DEMO_MODELS, find_models

    models = models or spec.models
    folder = DEMO_MODELS if str(models) == "demo" else Path(models)
    n_subjects = None if spec.subjects is None else len(spec.subjects)
    if not any(p.is_dir() for p in folder.glob("subject_*")):
        preset = preset or CHECK_PRESET
        layers, heads = layers or CHECK_LAYERS, heads or CHECK_HEADS
        name = PRESET_MODELS.get(preset, "IsoNet")
        cfg = EncoderConfig.preset(preset, device="cpu")
        # the preset's model at layers and heads, for its readout (structural zeros depend on
        # the layout and the readout, never on the weights): where that size cannot be built,
        # the preset's own size gives the layout alone
        try:
            shaped = EncoderConfig.preset(preset, device="cpu", n_layers=layers, n_heads=heads)
            model = MODEL_CLASSES[name](shaped).eval()
        except EmgLensError:
            model = None
        layout = model.layout if model is not None else MODEL_CLASSES[name](cfg).layout
        source = (
            f"--layers {layers} --heads {heads} and the layout of a {name} of preset "
            f"{preset!r} (no models found)"
        )
        return Target(layout, layers, heads, source, n_subjects, model)
    found = find_models(folder)
    n_subjects = n_subjects or len(found)
    infos = {path: check_checkpoint(path) for path in found.values()}
    if spec.modules is None:
        require_builder(infos, None)
    path, info = next(iter(infos.items()))
    cls = MODEL_CLASSES.get(info["model_class"])
    if cls is None:
        raise SpecError(f"{path}: unknown model class {info['model_class']!r}")
    cfg = EncoderConfig.from_dict({**info["config"], "device": "cpu"})
    stand_ins = {name: torch.nn.Module() for name in user_modules_of(info)}
    model = cls(cfg, **info.get("model_kwargs", {}), **stand_ins)
    source = "the models' size and layout"
    return Target(model.layout, cfg.n_layers, cfg.n_heads, source, n_subjects, model.eval(), True)


def _check_layout(spec: Any, target: Target) -> None:
    """Every edge expression compiles against the target's layout and every
    ``zero_modality`` is one of its groups, as `study run` would find on the first model: else
    a `SpecError` naming the intervention. Python hooks are not run here."""
    from emg_lens.edges import parse
    from emg_lens.layout import CLS

    for intervention in spec.interventions:
        where = f"intervention {intervention.name!r}"
        if intervention.edges is not None:
            try:
                parse(intervention.edges).compile(target.layout, target.n_heads)
            except LayoutError as exc:
                raise SpecError(f"{where}: {exc} (checked against {target.source})") from exc
        modality = intervention.zero_modality
        if modality is not None and modality not in target.layout.groups:
            raise SpecError(
                f"{where}: zero_modality {modality!r} is not a modality of {target.source}; "
                f"accepted: {[g for g in target.layout.groups if g != CLS]}"
            )


def code_note(spec: Any, study_file: str | Path | None) -> list[str]:
    """The lines saying which Python files a study would run, with their SHA-256, and the
    command that consents to exactly them (``study_file``: the path the study is run by);
    none when it names no file. The files are located and hashed, never executed."""
    from emg_lens.studies.code import consent_command, describe_code

    code = spec.code_files()
    if not code:
        return []
    consent = consent_command(study_file or f"{spec.name}.toml", code)
    return [
        "Python code this study runs (only with `study run --allow-code`):",
        describe_code(code),
        f"To run exactly these files, and refuse them once changed:\n  {consent}",
    ]


def check_ablation(
    spec: Any,
    *,
    models: str | Path | None = None,
    preset: str | None = None,
    layers: int | None = None,
    heads: int | None = None,
    study_file: str | Path | None = None,
) -> str:
    """What ``emg-lens study check`` prints of an ablation study: its interventions and
    metrics, the Python files it names (listed, never run; ``study_file`` is the path the
    consent command names), the grid of conditions against `check_target`'s models or
    preset, the structural zeros, and the design line its summary will print.

    >>> from emg_lens.studies import load_spec
    >>> spec = load_spec({"name": "t", "models": "/nowhere",
    ...                   "interventions": [{"name": "cross", "edges": "cross_modal"}]})
    >>> print(check_ablation(spec, layers=2, heads=2).splitlines()[0])
    t: 1 interventions, modes ['individual']; scored on 'logits' by accuracy
    """
    from emg_lens.studies.evaluate import structural_zeros
    from emg_lens.studies.grid import expand_grid
    from emg_lens.studies.result import planned_family_sizes, power_note

    several = len(spec.metrics) > 1
    lines = [
        f"{spec.name}: {len(spec.interventions)} interventions, modes {list(spec.layers.modes)}; "
        f"scored on {spec.return_type!r} by {', '.join(spec.metrics)}"
        + (" (one table each, from the same forward passes)" if several else "")
    ]
    lines += code_note(spec, study_file)
    target = check_target(spec, models=models, preset=preset, layers=layers, heads=heads)
    grid = expand_grid(spec, target.n_layers, target.n_heads)
    _check_layout(spec, target)
    effects = len({c.effect for c in grid})
    lines.append(
        f"grid for {target.source}: {len(grid)} conditions per subject, {effects} distinct effects"
    )
    columns = ["intervention", "mode", "layer", "layers", "heads", "key"]
    lines.append(text_table([c.row() for c in grid], columns))
    zeros = [] if target.model is None else structural_zeros(spec, target.model, grid)
    if zeros:
        names = ", ".join(
            f"{c.name} ({c.mode}, layers {c.row()['layers']})" for c in grid if c.key in zeros
        )
        lines.append(
            f"structural zeros (cannot change the scored {spec.return_type}; reported as "
            f"such, not tested, out of the correction family): {names}"
        )
    # the line the run's summary prints, before any compute
    tested = [c for c in grid if c.key not in zeros]
    lines.append(
        power_note(target.n_subjects, planned_family_sizes(tested, spec.stats), spec.stats)
    )
    lines += claims_note(spec, grid, target)
    return "\n".join(lines)


def claims_note(spec: Any, grid: Sequence[Any], target: Target) -> list[str]:
    """The lines listing the study's declared claims (none when it declares none), each
    checked against the grid's conditions and, where the models are known, their classes:
    a claim the run could not test is a `SpecError` here, before anything runs. Then what
    the claims need (`emg_lens.studies.claims.claims_design`): the subjects a drop claim's
    test needs, and the spread of per-subject changes a keep claim tolerates."""
    import pandas as pd

    from emg_lens.studies.claims import claims_design, class_indices, matching_keys

    if not spec.claims:
        return []
    rows = pd.DataFrame([c.row() for c in grid])
    # the class count is the models' own: a preset standing in for them says nothing of it
    n_classes = target.model.cfg.n_classes if target.from_models else None
    groups = dict(spec.class_groups)
    table = []
    for i, claim in enumerate(spec.claims):
        where = f"claims[{i}]"
        matching_keys(claim, rows, where)
        classes = claim.classes_label()
        if n_classes is not None:
            class_indices(claim, groups, n_classes, where)
        if claim.classes in groups:
            classes += f" ({','.join(map(str, groups[claim.classes]))})"
        table.append(
            {
                "claim": claim.title(),
                "condition": f"{claim.intervention} · {claim.layers}",
                "classes": classes,
                "expected": claim.expected,
            }
        )
    stats = spec.stats
    return [
        "claims, tested after the run on each subject's accuracy over their classes (the "
        "lines below say how):",
        text_table(table, ["claim", "condition", "classes", "expected"]),
        *claims_design(spec.claims, target.n_subjects, stats.claims_test, stats.correction),
    ]
