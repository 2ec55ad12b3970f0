"""``emg-lens discover``: screen every attention knockout of each subject's model, verify the
best exactly, and find the smallest edge circuit that keeps the metric (a discovery study,
``kind = "discovery"``, from flags or a study file)."""

from __future__ import annotations

import argparse
from typing import Any

from emg_lens.cli.common import add_command, add_device_argument

DISCOVERY_METRICS = ("margin", "logprob")
"""`emg_lens.discovery.METRICS`: the differentiable metrics screening linearises."""


def add_parser(sub) -> None:
    """``emg-lens discover``."""
    p = add_command(
        sub,
        "discover",
        "find the attention-edge circuit of each subject's model",
        "Screen every candidate knockout (each layer x head x query group -> key group, or "
        "your own edge sets) from one forward and one backward pass, verify the best exactly "
        "through the study runner, then cut candidates greedily while the circuit keeps "
        "1 - tau of the metric. Writes screen.csv, circuits.csv (with the circuit as edge "
        "sets to paste into a study), consensus.csv, curve.csv and figures; resumable.",
    )
    p.add_argument("spec", nargs="?", help="a discovery study file (kind = 'discovery')")
    p.add_argument("--models", help="folder of subject_<N>/ checkpoints (default: the spec's)")
    p.add_argument("--out", help="output folder (default: runs/discovery/<name>); resumable")
    p.add_argument("--name", default="discovery", help="study name, without a spec file")
    p.add_argument("--metric", choices=DISCOVERY_METRICS, help="default: margin")
    p.add_argument("--return-type", help="the scored output (IsoNet: logits or avg_logits)")
    p.add_argument("--tau", type=float, help="share of the metric the cut may cost (0.05)")
    p.add_argument("--verify-top", type=int, help="candidates measured exactly (10)")
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
    p.set_defaults(func=cmd_discover)


def _spec(args: argparse.Namespace) -> Any:
    from emg_lens.discovery.study import DiscoverySpec, load_discovery_spec

    base = (
        load_discovery_spec(args.spec).to_dict()
        if args.spec
        else {"kind": "discovery", "name": args.name, "models": args.models or ""}
    )
    flags = {
        "metric": args.metric,
        "return_type": args.return_type,
        "tau": args.tau,
        "verify_top": args.verify_top,
        "family": args.family,
        "subjects": args.subjects,
        "models": args.models,
    }
    return DiscoverySpec.from_dict({**base, **{k: v for k, v in flags.items() if v is not None}})


def cmd_discover(args: argparse.Namespace):
    from emg_lens.errors import ArgumentError

    spec = _spec(args)
    if not spec.models.strip():
        raise ArgumentError("discover needs --models DIR (or a spec file that names models)")
    return run_discovery_spec(spec, args.out, quiet=args.quiet, device=args.device)


def run_discovery_spec(spec: Any, out: str | None, *, quiet: bool, device: str = "auto"):
    """Run a discovery study and print its summary (`discover` and `study run` share it)."""
    from pathlib import Path

    from emg_lens.cli.common import resolve_device
    from emg_lens.discovery.study import run_discovery

    out = Path(out or Path("runs") / "discovery" / spec.name)
    result = run_discovery(spec, out_dir=out, progress=not quiet, device=resolve_device(device))
    print(result.to_markdown())
    print(
        f"cells: {result.reused} reused, {result.recomputed} recomputed\n"
        f"wrote tables and figures to {out}"
    )
    return result
