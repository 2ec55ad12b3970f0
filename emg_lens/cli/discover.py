"""``emg-lens discover``: screen every attention knockout of each subject's model, verify the
best exactly, and find the smallest edge circuit that keeps the metric (a discovery study,
``kind = "discovery"``, from flags or a study file)."""

from __future__ import annotations

import argparse
from typing import Any

from emg_lens._io import visible_controls
from emg_lens.cli.common import add_command, add_device_argument, add_threads_argument
from emg_lens.cli.consent import add_modules_arguments, allow_code

DISCOVERY_METRICS = ("margin", "logprob")
SEARCH_METHODS = ("greedy", "gates")  # light copies: the parser imports no torch
SCREENS = ("plain", "ig", "relp")
"""`emg_lens.discovery.METRICS`, `SEARCH_METHODS` and `ESTIMATORS` (the screens): the parser's
copies."""


def add_parser(sub) -> None:
    """``emg-lens discover``."""
    p = add_command(
        sub,
        "discover",
        "find the attention-edge circuit of each subject's model",
        "Screen every candidate knockout (each layer x head x query group -> key group, or "
        "your own edge sets) from one forward and one backward pass, verify the riskiest and "
        "the best exactly, then cut candidates greedily while the circuit keeps 1 - tau of "
        "the metric and of every class's accuracy. Writes screen.csv, circuits.csv (with the "
        "circuit as edge sets to paste into a study, MIB's CPR and CMD of its faithfulness "
        "curve and the screen used), consensus.csv, curve.csv and figures; resumable.",
    )
    p.add_argument("spec", nargs="?", help="a discovery study file (kind = 'discovery')")
    p.add_argument("--models", help="folder of subject_<N>/ checkpoints (default: the spec's)")
    p.add_argument("--out", help="output folder (default: runs/discovery/<name>); resumable")
    p.add_argument(
        "--name", help="study name, without a spec file (default: discovery; a spec names its own)"
    )
    p.add_argument("--metric", choices=DISCOVERY_METRICS, help="default: margin")
    p.add_argument("--return-type", help="the scored output (IsoNet: logits or avg_logits)")
    p.add_argument("--tau", type=float, help="share of the metric the cut may cost (0.05)")
    p.add_argument(
        "--method",
        choices=SEARCH_METHODS,
        help="the search's order: greedy (the screen's, default) or gates (learned edge gates)",
    )
    p.add_argument(
        "--screen",
        choices=SCREENS,
        help="how candidates are estimated: plain (attribution patching with the exact cut "
        "pattern, default), ig (integrated gradients along the path to everything cut, "
        "EAP-IG) or relp (relevance patching: LRP's coefficients in place of the gradient)",
    )
    p.add_argument(
        "--ig-steps", type=int, help="points on the integrated-gradient path (5; --screen ig)"
    )
    p.add_argument("--verify-top", type=int, help="candidates measured exactly (10)")
    p.add_argument(
        "--verify-sample",
        type=int,
        help="unmeasured candidates measured at random to bound what the ranking missed (10; "
        "59 bound the miss rate at 5 %% when none is missed)",
    )
    p.add_argument(
        "--family",
        nargs="+",
        metavar="EXPR",
        help="edge expressions to use as candidates (each per layer and head) instead of "
        "every query group -> key group",
    )
    p.add_argument("--subjects", nargs="+", type=int, help="only these subjects")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_device_argument(p)
    add_threads_argument(p)
    add_modules_arguments(p)  # a spec file may name its own: modules = "models.py:..."
    p.set_defaults(func=cmd_discover)


def _spec(args: argparse.Namespace) -> Any:
    """The discovery study of a spec file and/or the flags; ``--modules`` (a path from the
    working directory) replaces the file's ``modules``."""
    from emg_lens.discovery.spec import DiscoverySpec
    from emg_lens.errors import ArgumentError
    from emg_lens.studies import load_spec
    from emg_lens.user_code import locate_argument

    if args.spec and args.name is not None:
        raise ArgumentError(
            f"--name {args.name!r} is for a study made from flags; {args.spec} names its own "
            "(its `name` key, which picks the default --out): edit it, or give --out"
        )
    loaded = load_spec(args.spec, kind=DiscoverySpec.KIND) if args.spec else None
    base = (
        loaded.to_dict()
        if loaded is not None
        else {"kind": "discovery", "name": args.name or "discovery", "models": args.models or ""}
    )
    source_dir = loaded.source_dir if loaded is not None else "."
    if args.modules is not None:
        code = locate_argument(args.modules, "--modules")
        base["modules"], source_dir = f"{code.path.name}:{code.attr}", code.path.parent
    flags = {
        "metric": args.metric,
        "return_type": args.return_type,
        "tau": args.tau,
        "method": args.method,
        "screen": args.screen,
        "ig_steps": args.ig_steps,
        "verify_top": args.verify_top,
        "verify_sample": args.verify_sample,
        "family": args.family,
        "subjects": args.subjects,
        "models": args.models,
    }
    given = {k: v for k, v in flags.items() if v is not None}
    if given.get("screen", "ig") != "ig":  # a file's ig_steps belongs to the screen replaced
        base.pop("ig_steps", None)
    return DiscoverySpec.from_dict({**base, **given}, source_dir=source_dir)


def cmd_discover(args: argparse.Namespace):

    from emg_lens.cli.common import resolve_device, show_progress
    from emg_lens.discovery.study import KIND, run_discovery
    from emg_lens.errors import ArgumentError

    spec = _spec(args)
    if not spec.models.strip():
        raise ArgumentError("discover needs --models DIR (or a spec file that names models)")
    out = KIND.folder(spec, args.out)
    result = run_discovery(
        spec,
        out_dir=out,
        progress=show_progress(args),
        device=resolve_device(args.device),
        allow_code=allow_code(args),
    )
    print(visible_controls(result.console()))  # the names a study file gave, made visible
    print(f"wrote {out}: {', '.join(result.tables())}, summary.md and figures (PNG, SVG)")
    print(f"report: {out / 'report.html'}")
    return result
