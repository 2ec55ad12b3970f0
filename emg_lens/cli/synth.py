"""``emg-lens synth``: synthetic recordings written in a real dataset's own file layout."""

from __future__ import annotations

import argparse
import math

from emg_lens.cli.common import add_command
from emg_lens.data.registry import SYNTH_FORMATS
from emg_lens.errors import ArgumentError

DEFAULT_SUBJECTS = {"ninapro-db2": 2}
"""Subjects written when --n-subjects is not given (6 for formats not listed): a synthetic DB2
subject is 0.63 GB at the default 2 s movements and exercises B, C and D (1.47 million samples
of 12 sEMG, 36 ACC and 4 label columns, MATLAB doubles, and E3's 6 force columns), so six
would be 3.8 GB (computed from those sizes; one E3 file measured 125.7 MB, as computed)."""


def add_parser(sub) -> None:
    """``emg-lens synth``."""
    p = add_command(
        sub,
        "synth",
        "write synthetic recordings in a real dataset format",
        "Write synthetic recordings in a real dataset format. ninapro-db2 writes one file "
        "per exercise (S<N>_E1_A1.mat, E2, E3: exercises B, C, D with DB2's 17, 23 and 9 "
        "gestures), 0.63 GB per subject at the default --movement-seconds: 1.25 GB for its "
        "default 2 subjects, 3.8 GB with --n-subjects 6.",
    )
    p.add_argument("--format", default="ninapro-db2", choices=SYNTH_FORMATS, help="file layout")
    p.add_argument("--out", required=True, help="folder to write the dataset into")
    p.add_argument(
        "--n-subjects",
        type=int,
        help="subjects to write (default: 2 for ninapro-db2, 0.63 GB each; 6 for the others)",
    )
    p.add_argument(
        "--movement-seconds",
        type=float,
        help="per repetition (default: 2.0 DB2, 1.5 HD-sEMG; the real protocol's 5.0 per "
        "EPN-612 sample, 3.0 per UCI gesture and pause; 4.0 per DB8 acquisition)",
    )
    p.add_argument(
        "--rest-seconds",
        type=float,
        help="ninapro-db2, hdsemg: rest after each repetition (default: 0.5)",
    )
    p.add_argument(
        "--exercises",
        nargs="+",
        help="ninapro-db2 only: exercises to write, of B C D (default: all three, the files "
        "`train --exercises B C D` reads)",
    )
    p.add_argument("--n-gestures", type=int, help="hdsemg only: gestures, 2..65 (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generator")
    p.set_defaults(func=cmd_synth)


def cmd_synth(args: argparse.Namespace) -> None:
    from emg_lens._io import storage_errors
    from emg_lens.data.registry import dataset_info

    _check_numbers(args)
    if args.exercises is not None and args.format != "ninapro-db2":
        raise ArgumentError(f"--exercises applies to --format ninapro-db2 only, not {args.format}")
    n_subjects = args.n_subjects
    if n_subjects is None:
        n_subjects = DEFAULT_SUBJECTS.get(args.format, 6)
    options = {"n_subjects": n_subjects, "seed": args.seed}
    # Unset options keep each format's spec defaults; a format refuses one it does not take.
    for key in ("movement_seconds", "rest_seconds", "n_gestures", "exercises"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    with storage_errors():  # a full disk or read-only --out: named, with the file
        for path in dataset_info(args.format).synthesize(args.out, options):
            print(f"wrote {path}")


def _check_numbers(args: argparse.Namespace) -> None:
    """Refuse, naming the flag, a number no format can use (a generator would clamp some of
    them silently, or fail with a raw error)."""
    rules = [
        ("--n-subjects", args.n_subjects, lambda v: v >= 1, "an integer >= 1"),
        ("--movement-seconds", args.movement_seconds, lambda v: v > 0, "a number of seconds > 0"),
        ("--rest-seconds", args.rest_seconds, lambda v: v >= 0, "a number of seconds >= 0"),
        ("--n-gestures", args.n_gestures, lambda v: v >= 1, "an integer >= 1"),
        ("--seed", args.seed, lambda v: v >= 0, "an integer >= 0"),
    ]
    for flag, value, ok, accepted in rules:
        if value is not None and not (math.isfinite(value) and ok(value)):
            raise ArgumentError(f"synth {flag} {value}: must be {accepted}")
