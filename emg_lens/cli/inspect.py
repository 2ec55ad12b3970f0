"""``emg-lens inspect``: attention flow, head importance, attribution and distribution shift
of one checkpoint, as CSV tables and figures."""

from __future__ import annotations

import argparse
from pathlib import Path

from emg_lens.cli.common import (
    add_checkpoint_arguments,
    add_command,
    load_checkpoint_windows,
    open_checkpoint,
    save_and_show,
)

INSPECT_ROOT = Path("runs/inspect")  # --out's default: INSPECT_ROOT / the checkpoint's folder name


def add_parser(sub) -> None:
    """``emg-lens inspect``."""
    p = add_command(sub, "inspect", "attention flow, head importance, attribution, shift")
    add_checkpoint_arguments(p, INSPECT_ROOT, "the CSV tables and figures", n_windows=256)
    p.set_defaults(func=cmd_inspect)


def cmd_inspect(args: argparse.Namespace):
    from emg_lens.inspect.report import inspect_checkpoint, inspect_model
    from emg_lens.studies.subjects import known_of

    def step(message: str) -> None:  # one line per step: readable on a terminal and in a log
        print(message, flush=True)

    out, builder, device = open_checkpoint(args, INSPECT_ROOT)
    if builder is None:
        report = inspect_checkpoint(
            args.checkpoint, n_windows=args.n_windows, progress=step, device=device
        )
    else:  # the checkpoint's model holds the user's modules, which the builder makes
        step(f"[1/5] loading {args.checkpoint} (modules from {args.modules}) and its test windows")
        model, data, source = load_checkpoint_windows(args, device, builder)
        known = known_of(args.checkpoint)  # its training accuracy, for the chance check
        report = inspect_model(
            model, data, progress=step, source=source, train_accuracy=known["train_accuracy"]
        )
    return save_and_show(report, out)
