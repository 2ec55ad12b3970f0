"""``emg-lens study run`` and ``emg-lens study check``: declarative studies (TOML/YAML) of every
kind (`emg_lens.studies.kinds`). The file is read once; its kind runs or checks it, and refuses
an option it does not take, by name. ``study run`` also runs under ``torchrun``
(docs/guide/scale-out.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from emg_lens._io import visible_controls
from emg_lens.cli.common import (
    DATASETS,
    add_command,
    add_device_argument,
    add_threads_argument,
    resolve_device,
    show_progress,
)
from emg_lens.cli.consent import add_allow_code_argument, allow_code
from emg_lens.errors import SpecError

TRAINING_FLAGS = ("dataset", "root", "subjects", "epochs", "preset")  # [data]/[train] overrides
WAIT_TIMEOUT = 3600.0  # = emg_lens.studies.store.WAIT_TIMEOUT (parsers import no torch)
CHECK_PRESET = "demo"  # = emg_lens.studies.check.CHECK_PRESET (parsers import no torch)
FLAGS = {
    "models": "--models",
    "allow_code": "--allow-code",
    "wait_timeout": "--wait-timeout",
    "layers": "--layers",
    "heads": "--heads",
}
"""The options of `emg_lens.studies.run` and ``check_study`` as this command's flags name them."""


def add_parser(sub) -> None:
    """``emg-lens study`` with its subcommands ``run`` and ``check``."""
    p = add_command(sub, "study", "run or check a declarative study (TOML/YAML)")
    study = p.add_subparsers(dest="study_command", required=True, metavar="{run,check}")
    q = add_command(study, "run", "run a study and write tables and figures")
    q.add_argument("spec", help="the study file (.toml, .yaml)")
    q.add_argument("--models", help="folder of subject_<N>/ checkpoints or demo (default: spec)")
    q.add_argument(
        "--out",
        help="output folder (default: runs/studies/<name>, a discovery study's "
        "runs/discovery/<name>); resumable",
    )
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
    add_threads_argument(q)
    _add_training_study_args(q)
    q.set_defaults(func=cmd_study_run)

    q = add_command(
        study,
        "check",
        "validate a study and show what it would compute",
        "Validate a study without running it: its keys, its Python files (listed, never run), "
        "its edge expressions against the token layout of the models (--models, else the "
        f"spec's) or, when there are none, of the model of --preset (default {CHECK_PRESET}; "
        "an IsoNet, or a TinyMyo for tinymyo), and print the grid of conditions (a discovery "
        "study: its candidates; a training study: each model it trains, built once).",
    )
    q.add_argument("spec", help="the study file (.toml, .yaml)")
    q.add_argument("--models", help="models whose size and layout the study is checked against")
    q.add_argument("--layers", type=int, help="layers, when no models are found (default 5)")
    q.add_argument("--heads", type=int, help="heads, when no models are found (default 8)")
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
    g.add_argument("--epochs", type=int, help="[train] epochs per model (a regression study too)")
    g.add_argument(
        "--preset",
        help="[train] EncoderConfig preset (tiny, demo, paper); `study check` of a study "
        f"without models: the preset whose layout it checks (default {CHECK_PRESET})",
    )


def _options(args: argparse.Namespace, kind: Any, *, checking: bool) -> tuple[dict, dict]:
    """The options of `emg_lens.studies.run`/``check_study`` the flags give (None: not given) and
    the flags' names for its messages. A training study's ``--preset`` is a [train] key (an
    override); `study check` of another kind reads it as the layout to check against."""
    overrides = {k: vars(args)[k] for k in TRAINING_FLAGS if vars(args).get(k) is not None}
    options: dict[str, Any] = {"models": args.models}
    if checking and "overrides" in kind.refuses:
        options["preset"] = overrides.pop("preset", None)
    options["overrides"] = overrides or None
    names = {**FLAGS, "overrides": " ".join(f"--{k}" for k in overrides)}
    return options, names


def cmd_study_run(args: argparse.Namespace):
    from emg_lens.studies import load_spec, run
    from emg_lens.studies.kinds import kind_of
    from emg_lens.studies.store import check_wait_timeout

    spec = load_spec(args.spec)  # the file, read once
    kind = kind_of(spec)
    options, names = _options(args, kind, checking=False)
    if args.wait_timeout is not None:
        options["wait_timeout"] = check_wait_timeout(args.wait_timeout, "--wait-timeout")
    out = kind.folder(spec, args.out)
    result = run(
        spec,
        flags=names,
        out_dir=out,
        progress=show_progress(args),
        device=resolve_device(args.device),
        allow_code=allow_code(args),
        **options,
    )
    if result is None:
        return _other_rank_done(out)
    print(visible_controls(result.console()))  # the names a study file gave, made visible
    print(f"wrote {out}: {', '.join(result.tables())}, summary.md and figures (PNG, SVG)")
    print(f"report: {out / 'report.html'}")
    return result


def _other_rank_done(out: Path) -> None:
    """A torchrun rank other than 0: its cells are stored; rank 0 prints and writes."""
    import os

    rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
    print(f"rank {rank} of {world}: its subjects' cells are in {out}/cells; rank 0 writes")


def cmd_study_check(args: argparse.Namespace) -> None:
    from emg_lens.studies import check_study, load_spec
    from emg_lens.studies.kinds import kind_of

    spec = load_spec(args.spec)
    options, names = _options(args, kind_of(spec), checking=True)
    text = check_study(
        spec,
        flags=names,
        study_file=args.spec,
        layers=args.layers,
        heads=args.heads,
        **options,
    )
    print(text)
    if (stops := getattr(text, "stops", None)) is not None:  # as `study run` would
        raise SpecError(f"`study run` would stop on this study: {stops}")
