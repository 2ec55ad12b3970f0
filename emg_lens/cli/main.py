"""The ``emg-lens`` parser and entry point (`build_parser`, `run`, `main`): it only assembles
the commands' modules (``emg_lens.cli.<command>``), whose parsers import no torch
(`emg_lens.cli.common`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from emg_lens.cli import (
    demo,
    discover,
    export,
    features,
    inspect,
    probe,
    report,
    study,
    synth,
    tinymyo,
    train,
    windows,
)
from emg_lens.cli.common import HelpFormatter, check_seed_flag, output_folder, torch_threads
from emg_lens.errors import EmgLensError

DESCRIPTION = """\
emg-lens: mechanistic interpretability for biosignal transformers (sEMG,
accelerometers, HD-sEMG) on TransformerLens. Train hooked encoders per subject,
cut attention edges between modalities, channels or heads in declarative
studies, and read the effects as tables and figures.

commands:
  demo      planted synthetic data -> IsoNet per subject -> study -> findings
  train     train one classifier per subject of a dataset
  evaluate  per-subject test accuracy of trained checkpoints
  study     run or check a declarative study (TOML/YAML)
  synth     write synthetic recordings in a real dataset's file layout
  inspect   attention flow, head importance, attribution, shift of a model
  probe     linear probes and interchange interventions on token groups
  features  sparse features of one layer's channel tokens (TopK autoencoder)
  discover  screen every attention knockout, find the edge circuit per subject
  windows   build a TinyMyo window store (HDF5) from a dataset
  pretrain  masked-signal pretraining of a TinyMyo
  finetune  fine-tune or linear-probe a pretrained TinyMyo (or BioFoundation's)
  export    a checkpoint, its edge mask baked in, to a checked ONNX file
  report    the self-contained report.html of an output folder

Run `emg-lens <command> --help` for a command's options and their defaults."""

# commands whose --out is a folder (`windows` writes one .h5 file)
FOLDER_OUT_COMMANDS = (
    "demo",
    "train",
    "study",
    "synth",
    "inspect",
    "probe",
    "features",
    "discover",
    "pretrain",
    "finetune",
)


def build_parser() -> argparse.ArgumentParser:
    """The ``emg-lens`` argument parser, every command included (torch not imported).

    >>> build_parser().parse_args(["synth", "--out", "data"]).format
    'ninapro-db2'
    """
    parser = argparse.ArgumentParser(
        prog="emg-lens",
        usage="%(prog)s [-h] <command> ...",
        description=DESCRIPTION,
        formatter_class=HelpFormatter,
    )
    # The commands are listed in DESCRIPTION, one line each, so argparse does not list them again.
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="<command>", help=argparse.SUPPRESS, prog="emg-lens"
    )
    demo.add_parser(sub)
    train.add_parsers(sub)
    study.add_parser(sub)
    synth.add_parser(sub)
    inspect.add_parser(sub)
    probe.add_parser(sub)
    features.add_parser(sub)
    discover.add_parser(sub)
    windows.add_parser(sub)
    tinymyo.add_parsers(sub)
    export.add_parser(sub)
    report.add_parser(sub)
    return parser


def run(argv: list[str] | None = None) -> Any:
    """Parse ``argv`` and run the command, returning what it returns; a bad input raises its
    `EmgLensError` (`main` prints it and exits with status 2).

    >>> import tempfile
    >>> run(["synth", "--out", tempfile.mkstemp()[1]])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: --out ... is a file; ...
    """
    args = build_parser().parse_args(argv)
    check_seed_flag(args)
    if args.command in FOLDER_OUT_COMMANDS and getattr(args, "out", None) is not None:
        output_folder(args.out)
    with torch_threads(getattr(args, "threads", None)):  # the commands that compute have it
        return args.func(args)


def main(argv: list[str] | None = None) -> int:
    """The console script: a bad input prints ``emg-lens: error: ...`` and returns 2."""
    try:
        run(argv)
    except EmgLensError as exc:
        print(f"emg-lens: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
