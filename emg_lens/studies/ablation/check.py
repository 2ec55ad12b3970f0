"""Checking an ablation study before it runs (``emg-lens study check``, `check_ablation`):
what it would compute, on what, and what it can find, with no forward pass and no code of the
study run; its claims' design (`claims_note`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emg_lens.errors import LayoutError, SpecError
from emg_lens.studies.check import CheckText, Target, check_target, code_note, text_table


def _check_layout(spec: Any, target: Target) -> None:
    """Every edge expression compiles against the target's layout, every ``zero_modality`` is
    one of its groups and every erasure's ``tokens`` names tokens of it, as `study run` would
    find on the first model: else a `SpecError` naming the intervention. Python hooks are not
    run here."""
    from emg_lens.edges import parse
    from emg_lens.hooks import compile_edges
    from emg_lens.hooks.erasure import layout_positions
    from emg_lens.layout import CLS

    for intervention in spec.interventions:
        where = f"intervention {intervention.name!r}"
        if intervention.edges is not None:
            try:  # compiled as `study run` compiles it, for every layer of the model
                if target.model is not None:
                    compile_edges(intervention.edges, target.model)
                else:
                    edges = parse(intervention.edges)
                    edges.compile_layers(target.layout, target.n_heads, target.n_layers)
            except LayoutError as exc:
                raise SpecError(f"{where}: {exc} (checked against {target.source})") from exc
        if intervention.tokens is not None:
            try:
                layout_positions(target.layout, target.n_heads, intervention.tokens)
            except LayoutError as exc:
                raise SpecError(
                    f"{where}: tokens: {exc} (checked against {target.source})"
                ) from exc
        modality = intervention.zero_modality
        if modality is not None and modality not in target.layout.groups:
            accepted = f"accepted: {[g for g in target.layout.groups if g != CLS]}"
            raise SpecError(
                f"{where}: zero_modality {modality!r} is not in {target.source}; {accepted}"
            )


def check_ablation(
    spec: Any,
    *,
    models: str | Path | None = None,
    preset: str | None = None,
    layers: int | None = None,
    heads: int | None = None,
    study_file: str | Path | None = None,
) -> CheckText:
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
    from emg_lens.studies.ablation.evaluate import structural_zeros
    from emg_lens.studies.ablation.grid import expand_grid
    from emg_lens.studies.ablation.summary import planned_family_sizes, power_note

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
    return CheckText("\n".join(lines), target.stops)


def claims_note(spec: Any, grid: Sequence[Any], target: Target) -> list[str]:
    """The lines listing the study's declared claims, each checked against the grid's
    conditions and, where the models are known, their classes (a claim the run could not test
    is a `SpecError` here), then what they need (`claims_design`)."""
    import pandas as pd

    from emg_lens.studies.ablation.claims import class_indices, matching_keys

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


def claims_design(
    claims: Sequence[Any], n: int | None, claims_test: str, correction: str
) -> list[str]:
    """What a study's claims need, said before the run (``emg-lens study check``), for ``n``
    subjects (None: not known yet), as docs/guide/studies.md explains: the subjects the drop
    claims' test needs (`emg_lens.stats.design.corrected_floor`), the spread of per-subject Δ%
    a keep claim tolerates (`emg_lens.stats.design.tost_max_sd`), and `KEEP_MIN_SUBJECTS`.

    >>> from emg_lens.studies import StudySpec
    >>> claims = StudySpec.from_dict({"name": "s", "models": "m", "layers": {"modes": ["all"]},
    ...     "interventions": [{"name": "x", "edges": "cross_modal"}],
    ...     "claims": [{"intervention": "x", "layers": "all", "classes": "all", "expect": e, **m}
    ...                for e, m in (("drop", {}), ("keep", {"margin": 0.05}))]}).claims
    >>> print("\\n".join(claims_design(claims, 8, "paired", "bonferroni")))
    ... # doctest: +NORMALIZE_WHITESPACE
    1 drop claim(s), paired test (the exact sign-flip test up to 12 subjects), bonferroni over
    1: p_corr < 0.05 needs at least 6 subjects; with 8 the smallest p_corr is 0.00781 (**).
    1 keep claim(s), TOST (90% skew-corrected t-interval of per-subject Δ%, Johnson's t in
    Hall's form, the changes taken as skewed at least 5 either way): at least 2 subjects;
    with 8, a keep can hold only if the per-subject Δ% spread (SD) stays below about 3.3
    points for ±5% (at a mean change of 0: less the further it is from 0, or where the
    subjects show more skew than assumed), an unchanged subject's spread the change one of
    its test trials makes.
    No change (a keep holding, a drop failing) is concluded from subjects that all changed
    alike (no spread) on fewer than 8.
    """
    from emg_lens.stats.compare import (
        ALPHA,
        EXACT_MAX_N,
        KEEP_MIN_SUBJECTS,
        PAIRED,
        SKEW_FLOOR,
        format_p,
        stars,
    )
    from emg_lens.stats.design import corrected_floor, subjects_needed, tost_max_sd
    from emg_lens.studies.ablation.verdicts import CI_LEVEL

    lines = []
    drops = sum(c.expect == "drop" for c in claims)
    if drops:
        name = {
            PAIRED: f"paired test (the exact sign-flip test up to {EXACT_MAX_N} subjects)",
            "permutation": "sign-flip test (paired)",
            "wilcoxon": "Wilcoxon signed-rank test (paired)",
            "mannwhitneyu": "Mann–Whitney U (unpaired)",
        }[claims_test]
        over = "uncorrected" if correction == "none" else f"{correction} over {drops}"
        needed = subjects_needed(drops, claims_test, correction)
        need = f"at least {needed}" if needed is not None else "more than 200"
        line = f"{drops} drop claim(s), {name}, {over}: p_corr < {ALPHA} needs {need} subjects"
        if n is not None:
            floor = corrected_floor(n, drops, claims_test, correction)
            line += f"; with {n} the smallest p_corr is {format_p(floor)} ({stars(floor)})"
        lines.append(line + ".")
    keeps = [c for c in claims if c.expect == "keep"]
    if keeps:
        bounds = sorted({c.bound for c in keeps})
        line = (
            f"{len(keeps)} keep claim(s), TOST ({100 * CI_LEVEL:g}% skew-corrected t-interval "
            "of per-subject Δ%, Johnson's t in Hall's form, the changes taken as skewed at "
            f"least {SKEW_FLOOR:g} either way): at least 2 subjects"
        )
        if n is not None and n < 2:
            line += f"; with {n}, none can hold"
        elif n is not None:
            limits = " and ".join(
                f"{tost_max_sd(n, b, SKEW_FLOOR):.1f} points for ±{b:g}%" for b in bounds
            )
            line += (
                f"; with {n}, a keep can hold only if the per-subject Δ% spread (SD) stays "
                f"below about {limits} (at a mean change of 0: less the further it is from 0, "
                "or where the subjects show more skew than assumed), an unchanged subject's "
                "spread the change one of its test trials makes"
            )
        else:
            limits = ", ".join(
                f"{k}: {tost_max_sd(k, bounds[0], SKEW_FLOOR):.1f}" for k in (2, 3, 5, 8, 12)
            )
            line += (
                f"; the per-subject Δ% spread (SD) it tolerates for ±{bounds[0]:g}%, by number "
                f"of subjects: {limits} points (at a mean change of 0)"
            )
        lines.append(line + ".")
    if claims:
        lines.append(
            "No change (a keep holding, a drop failing) is concluded from subjects that all "
            f"changed alike (no spread) on fewer than {KEEP_MIN_SUBJECTS}."
        )
    return lines
