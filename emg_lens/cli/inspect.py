"""``emg-lens inspect``: attention flow, head importance, attribution and distribution shift
of one checkpoint, as CSV tables and figures."""

from __future__ import annotations

import argparse
from pathlib import Path

from emg_lens.cli.common import (
    add_command,
    add_device_argument,
    add_threads_argument,
    output_folder,
    resolve_device,
    save_and_show,
)
from emg_lens.cli.consent import add_modules_arguments, module_builder

INSPECT_ROOT = Path("runs/inspect")  # --out's default: INSPECT_ROOT / the checkpoint's folder name


def add_parser(sub) -> None:
    """``emg-lens inspect``."""
    p = add_command(sub, "inspect", "attention flow, head importance, attribution, shift")
    p.add_argument("--checkpoint", required=True, help="a checkpoint folder (subject_<N>/)")
    p.add_argument(
        "--out",
        help=f"folder for the CSV tables and figures (default: {INSPECT_ROOT}/<the checkpoint "
        "folder's name>, e.g. runs/inspect/subject_1)",
    )
    p.add_argument("--n-windows", type=int, default=256, help="test windows, evenly spaced")
    add_device_argument(p)
    add_threads_argument(p)
    add_modules_arguments(p)
    p.set_defaults(func=cmd_inspect)


def cmd_inspect(args: argparse.Namespace):
    from emg_lens.checkpoints import read_checkpoint_info
    from emg_lens.inspect.report import inspect_checkpoint, inspect_model, select_windows
    from emg_lens.studies.code import require_builder
    from emg_lens.studies.runner import load_entry

    def step(message: str) -> None:  # one line per step: readable on a terminal and in a log
        print(message, flush=True)

    out = output_folder(args.out or INSPECT_ROOT / Path(args.checkpoint).resolve().name)
    builder = module_builder(args)
    require_builder([args.checkpoint], builder)  # the user's modules: say what to add
    device = str(resolve_device(args.device))
    if builder is None:
        report = inspect_checkpoint(
            args.checkpoint, n_windows=args.n_windows, progress=step, device=device
        )
    else:  # the checkpoint's model holds the user's modules, which the builder makes
        step(f"[1/5] loading {args.checkpoint} (modules from {args.modules}) and its test windows")
        subject = load_entry(args.checkpoint, device, builder)
        data = select_windows(subject.data, args.n_windows)
        source = read_checkpoint_info(args.checkpoint)["metadata"].get("data_source")
        report = inspect_model(subject.model, data, progress=step, source=source)
    return save_and_show(report, out)
