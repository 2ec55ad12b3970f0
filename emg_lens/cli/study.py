"""``emg-lens study run`` and ``emg-lens study check``: declarative studies (TOML/YAML), of
trained models (ablation studies) or of how models train (``kind = "training"``).

``study run`` also runs under ``torchrun --nproc-per-node N -m emg_lens.cli study run ...``:
each rank computes its share of the subjects into ``--out`` and rank 0 prints and writes the
tables (README, "Scale out")."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, NamedTuple

from emg_lens.cli.common import (
    DATASETS,
    add_command,
    add_device_argument,
    print_table,
    resolve_device,
    show_progress,
)
from emg_lens.cli.consent import add_allow_code_argument, allow_code
from emg_lens.errors import EmgLensError, SpecError

TRAINING_FLAGS = ("dataset", "root", "subjects", "epochs", "preset")  # study run/check overrides
WAIT_TIMEOUT = 3600.0  # = emg_lens.studies.runner.WAIT_TIMEOUT (parsers import no torch)
CHECK_PRESET = "demo"  # the layout `study check` checks edge expressions against, without models
PRESET_MODELS = {"tinymyo": "TinyMyo"}  # the class of a preset's layout; IsoNet for the others


def add_parser(sub) -> None:
    """``emg-lens study`` with its subcommands ``run`` and ``check``."""
    p = add_command(sub, "study", "run or check a declarative study (TOML/YAML)")
    study = p.add_subparsers(dest="study_command", required=True, metavar="{run,check}")
    q = add_command(study, "run", "run a study and write tables and figures")
    q.add_argument("spec", help="the study file (.toml, .yaml)")
    q.add_argument("--models", help="folder of subject_<N>/ checkpoints or demo (default: spec)")
    q.add_argument("--out", help="output folder (default: runs/studies/<name>); resumable")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    add_allow_code_argument(
        q,
        "run the Python files the study names (hook = ..., modules = ...), which `study check` "
        "lists with their SHA-256: alone, the files as they are now (once you have read them); "
        "with a digest (the option once per file), only a file with exactly those bytes. Give "
        "it after the study file",
    )
    q.add_argument(
        "--wait-timeout",
        type=float,
        metavar="SECONDS",
        help="how long to wait for a subject another process has claimed (and, under "
        "torchrun, rank 0 for the other ranks' cells) before giving up; inf: no limit "
        f"(default {WAIT_TIMEOUT:g})",
    )
    add_device_argument(q)
    _add_training_study_args(q)
    q.set_defaults(func=cmd_study_run)

    q = add_command(
        study,
        "check",
        "validate a study and show its expanded grid",
        "Validate a study without running it: its keys, its Python files (listed, never run), "
        "its edge expressions against the token layout of the models (--models, else the "
        f"spec's) or, when there are none, of the model of --preset (default {CHECK_PRESET}; "
        "an IsoNet, or a TinyMyo for tinymyo), "
        "and print the grid of conditions.",
    )
    q.add_argument("spec", help="the study file (.toml, .yaml)")
    q.add_argument("--models", help="models whose size and layout the study is checked against")
    q.add_argument("--layers", type=int, default=5, help="layers, when no models are found")
    q.add_argument("--heads", type=int, default=8, help="heads, when no models are found")
    _add_training_study_args(q)
    q.set_defaults(func=cmd_study_check)


def _add_training_study_args(p: argparse.ArgumentParser) -> None:
    """Overrides of a training study's [data]/[train] keys, e.g. to shrink it for a smoke run."""
    g = p.add_argument_group(
        "training studies (kind = 'training')",
        "override the spec's [data] and [train] keys; a smoke run: --epochs 1 --preset tiny "
        "--subjects 1 2 3",
    )
    g.add_argument("--dataset", choices=DATASETS, help="[data] dataset (real: --root)")
    g.add_argument("--root", help="[data] dataset folder (real datasets)")
    g.add_argument("--subjects", nargs="+", type=int, help="[data] subjects to train")
    g.add_argument("--epochs", type=int, help="[train] epochs per model")
    g.add_argument(
        "--preset",
        help="[train] EncoderConfig preset (tiny, demo, paper); `study check` of an ablation "
        f"study without models: the preset whose layout it checks (default {CHECK_PRESET})",
    )


def _training_overrides(args: argparse.Namespace, spec: Any, allowed: tuple[str, ...] = ()):
    """The [data]/[train] overrides given on the command line; refused for ablation studies
    (but for the flags in ``allowed``, which mean something else there)."""
    from emg_lens.studies import StudySpec, TrainingStudySpec

    given = {k: vars(args).get(k) for k in TRAINING_FLAGS if vars(args).get(k) is not None}
    refused = [k for k in given if k not in allowed]
    if refused and not isinstance(spec, TrainingStudySpec):
        flags = " ".join(f"--{k}" for k in refused)
        kind = "an ablation" if isinstance(spec, StudySpec) else "a discovery"
        raise EmgLensError(
            f"{flags}: only for training studies (kind = 'training'); {spec.name} "
            f"is {kind} study of trained models"
        )
    return given


def _wait_timeout(args: argparse.Namespace, spec: Any) -> dict[str, float]:
    """``--wait-timeout`` as ``run_study``'s keyword (checked), or nothing when not given."""
    from emg_lens.studies import StudySpec, TrainingStudySpec
    from emg_lens.studies.store import check_wait_timeout

    if args.wait_timeout is None:
        return {}
    if not isinstance(spec, StudySpec | TrainingStudySpec):
        raise EmgLensError(
            f"--wait-timeout: {spec.name} is a discovery study, whose processes claim no "
            "subjects and wait for none; the option is for ablation and training studies"
        )
    return {"wait_timeout": check_wait_timeout(args.wait_timeout, "--wait-timeout")}


def _discovery_spec(args: argparse.Namespace) -> Any:
    """The study as a `DiscoverySpec` when its file says ``kind = "discovery"``, else None."""
    from emg_lens.studies.files import read_study_file

    kind = read_study_file(args.spec, lambda data, _: isinstance(data, dict) and data.get("kind"))
    if kind != "discovery":
        return None
    from emg_lens.discovery.study import load_discovery_spec

    spec = load_discovery_spec(args.spec)
    if args.models:
        spec = spec.with_changes(models=args.models)
    return spec


def cmd_study_run(args: argparse.Namespace):
    from emg_lens.studies import TrainingStudySpec, load_spec, run_study, run_training_study
    from emg_lens.studies.metrics import delta_name
    from emg_lens.studies.result import correction_phrase

    discovery = _discovery_spec(args)
    if discovery is not None:
        from emg_lens.cli.discover import run_discovery_spec

        _training_overrides(args, discovery)  # refused: a discovery study trains nothing
        _wait_timeout(args, discovery)
        return run_discovery_spec(
            discovery, args.out, quiet=args.quiet, device=args.device, allow_code=allow_code(args)
        )
    spec = load_spec(args.spec)
    overrides = _training_overrides(args, spec)
    wait = _wait_timeout(args, spec)
    device = resolve_device(args.device)
    if isinstance(spec, TrainingStudySpec):
        if args.models:
            raise EmgLensError(f"--models: training study {spec.name} trains its own models")
        spec = spec.with_overrides(overrides)
        out = Path(args.out or Path("runs/studies") / spec.name)
        result = run_training_study(
            spec, out_dir=out, progress=show_progress(args), device=device, **wait
        )
        if result is None:
            return _other_rank_done(out)
        print(f"{result.header()}\n")
        print(result.table1().to_string())
        print(f"{result.comparisons().to_string(index=False, float_format='{:.3g}'.format)}")
        print(f"wrote {out}/summary.md, summary.csv, per_subject.csv and comparison.png/svg")
        return result
    out = Path(args.out or Path("runs/studies") / spec.name)
    result = run_study(
        spec,
        models=args.models,
        out_dir=out,
        progress=show_progress(args),
        allow_code=allow_code(args),
        device=device,
        **wait,
    )
    if result is None:
        return _other_rank_done(out)
    stale = f" ({result.stale} of other provenance)" if result.stale else ""
    print(f"cells: {result.reused} reused, {result.recomputed} recomputed{stale}")
    print(
        f"{spec.name}: baseline {spec.metric} {result.baseline.mean():.3f} over "
        f"{len(result.baseline)} subjects ({spec.stats.test}, {correction_phrase(spec.stats)})"
    )
    for metric in spec.metrics:  # one table per metric, from the same forward passes
        if len(spec.metrics) > 1:
            print(f"{metric} ({delta_name(metric)}):")
        print(result.table3(metric).to_string(index=False))
    print(result.power_note())
    print(f"wrote {out}/summary.md, summary.csv, per_subject.csv and figures (PNG, SVG)")
    return result


def _other_rank_done(out: Path) -> None:
    """A torchrun rank other than 0: its cells are stored; rank 0 prints and writes."""
    import os

    rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
    print(f"rank {rank} of {world}: its subjects' cells are in {out}/cells; rank 0 writes")


def cmd_study_check(args: argparse.Namespace) -> None:
    from emg_lens.studies import TrainingStudySpec, check_models, expand_grid, load_spec
    from emg_lens.studies.code import consent_command, describe_code
    from emg_lens.studies.evaluate import structural_zeros
    from emg_lens.studies.result import planned_family_sizes, power_note

    spec = load_spec(args.spec)
    overrides = _training_overrides(args, spec, allowed=("preset",))
    if isinstance(spec, TrainingStudySpec):
        spec = spec.with_overrides(overrides)
        rows = check_models(spec)
        subjects = "all" if spec.data.subjects is None else list(spec.data.subjects)
        print(
            f"{spec.name}: training study on {spec.data.dataset} subjects {subjects}; "
            f"{len(spec.cells([0]))} models per subject (preset {spec.preset!r}, "
            f"{spec.train.epochs} epochs); reference input {spec.reference!r}"
        )
        print_table(rows, ["architecture", "input", "trials", "channels", "tokens", "parameters"])
        return
    print(
        f"{spec.name}: {len(spec.interventions)} interventions, modes {list(spec.layers.modes)}; "
        f"scored on {spec.return_type!r} by {', '.join(spec.metrics)}"
        + (" (one table each, from the same forward passes)" if len(spec.metrics) > 1 else "")
    )
    code = spec.code_files()  # located and hashed, never executed
    if code:
        print(
            f"Python code this study runs (only with `study run --allow-code`):\n"
            f"{describe_code(code)}\n"
            f"To run exactly these files, and refuse them once changed:\n"
            f"  {consent_command(args.spec, code)}"
        )
    target = _check_target(args, spec)
    grid = expand_grid(spec, target.n_layers, target.n_heads)
    _check_layout(spec, target.layout, target.n_heads, target.source)
    effects = len({c.effect for c in grid})
    print(
        f"grid for {target.source}: {len(grid)} conditions per subject, {effects} distinct effects"
    )
    print_table(
        [c.row() for c in grid], ["intervention", "mode", "layer", "layers", "heads", "key"]
    )
    zeros = [] if target.model is None else structural_zeros(spec, target.model, grid)
    if zeros:
        names = ", ".join(
            f"{c.name} ({c.mode}, layers {c.row()['layers']})" for c in grid if c.key in zeros
        )
        print(
            f"structural zeros (cannot change the scored {spec.return_type}; reported as "
            f"such, not tested, out of the correction family): {names}"
        )
    # the line the run's summary prints, before any compute
    tested = [c for c in grid if c.key not in zeros]
    print(power_note(target.n_subjects, planned_family_sizes(tested, spec.stats), spec.stats))


class _Target(NamedTuple):
    """What `study check` checks a study against (see `_check_target`)."""

    layout: Any
    n_layers: int
    n_heads: int
    source: str
    n_subjects: int | None  # None: no models found, and no ``subjects``
    model: Any = None  # the first model, built without its weights (None: no models found)


def _check_target(args: argparse.Namespace, spec: Any) -> _Target:
    """The token layout, layers and heads a study is checked against, what they are, and how
    many subjects it runs: the study's models' (the first one's class and config; the
    subjects found, or those of ``subjects``), or, with no ``subject_<N>/`` folder found, the
    layout of ``--preset``'s model (`PRESET_MODELS`, else IsoNet) and ``--layers`` and
    ``--heads`` (the subjects of ``subjects``, else unknown). Every model is checked as the
    run would open it, its weights' header included but not its weights
    (`emg_lens.checkpoints.check_checkpoint`): a damaged checkpoint is reported here, not
    after the other subjects have run, and so is a model holding the user's own modules in a
    study without ``modules`` (which that model's layout does not need: the model is built
    with stand-ins, and no code of the study runs)."""
    import torch

    from emg_lens.checkpoints import check_checkpoint, user_modules_of
    from emg_lens.config import EncoderConfig
    from emg_lens.models import MODEL_CLASSES
    from emg_lens.studies import find_models
    from emg_lens.studies.code import require_builder
    from emg_lens.studies.runner import DEMO_MODELS

    models = args.models or spec.models
    folder = DEMO_MODELS if str(models) == "demo" else Path(models)
    n_subjects = None if spec.subjects is None else len(spec.subjects)
    if any(p.is_dir() for p in folder.glob("subject_*")):
        found = find_models(folder)
        n_subjects = n_subjects or len(found)
        infos = {path: check_checkpoint(path) for path in found.values()}
        if spec.modules is None:
            require_builder(infos, None)
        path, info = next(iter(infos.items()))
    else:
        preset = args.preset or CHECK_PRESET
        name = PRESET_MODELS.get(preset, "IsoNet")
        cfg = EncoderConfig.preset(preset, device="cpu")
        # the preset's model at --layers and --heads, for its readout (structural zeros depend
        # on the layout and the readout, never on the weights): where that size cannot be
        # built, the preset's own size gives the layout alone
        try:
            shaped = EncoderConfig.preset(
                preset, device="cpu", n_layers=args.layers, n_heads=args.heads
            )
            model = MODEL_CLASSES[name](shaped).eval()
        except EmgLensError:
            model = None
        layout = model.layout if model is not None else MODEL_CLASSES[name](cfg).layout
        source = (
            f"--layers {args.layers} --heads {args.heads} and the layout of a {name} of "
            f"preset {preset!r} (no models found)"
        )
        return _Target(layout, args.layers, args.heads, source, n_subjects, model)
    cls = MODEL_CLASSES.get(info["model_class"])
    if cls is None:
        raise SpecError(f"{path}: unknown model class {info['model_class']!r}")
    cfg = EncoderConfig.from_dict({**info["config"], "device": "cpu"})
    stand_ins = {name: torch.nn.Module() for name in user_modules_of(info)}
    model = cls(cfg, **info.get("model_kwargs", {}), **stand_ins)
    source = "the models' size and layout"
    return _Target(model.layout, cfg.n_layers, cfg.n_heads, source, n_subjects, model.eval())


def _check_layout(spec: Any, layout: Any, n_heads: int, source: str) -> None:
    """Every edge expression compiles against ``layout`` and every ``zero_modality`` is one of
    its groups, as `study run` would find on the first model: else a `SpecError` naming the
    intervention. Python hooks are not run here."""
    from emg_lens.edges import parse
    from emg_lens.errors import LayoutError
    from emg_lens.layout import CLS

    for intervention in spec.interventions:
        where = f"intervention {intervention.name!r}"
        if intervention.edges is not None:
            try:
                parse(intervention.edges).compile(layout, n_heads)
            except LayoutError as exc:
                raise SpecError(f"{where}: {exc} (checked against {source})") from exc
        modality = intervention.zero_modality
        if modality is not None and modality not in layout.groups:
            raise SpecError(
                f"{where}: zero_modality {modality!r} is not a modality of {source}; "
                f"accepted: {[g for g in layout.groups if g != CLS]}"
            )
