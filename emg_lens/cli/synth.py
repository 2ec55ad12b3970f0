"""``emg-lens synth``: synthetic recordings written in a real dataset's own file layout."""

from __future__ import annotations

import argparse

from emg_lens.cli.common import SYNTH_FORMATS, add_command

DEFAULT_SUBJECTS = {"ninapro-db2": 2}
"""Subjects written when --n-subjects is not given (6 for formats not listed): a synthetic DB2
subject is 214 MB at the default 2 s movements (measured), so six would be 1.28 GB."""


def add_parser(sub) -> None:
    """``emg-lens synth``."""
    p = add_command(
        sub,
        "synth",
        "write synthetic recordings in a real dataset format",
        "Write synthetic recordings in a real dataset format. ninapro-db2 writes 214 MB per "
        "subject at the default --movement-seconds: 0.43 GB for its default 2 subjects, "
        "1.28 GB with --n-subjects 6.",
    )
    p.add_argument("--format", default="ninapro-db2", choices=SYNTH_FORMATS, help="file layout")
    p.add_argument("--out", required=True, help="folder to write the dataset into")
    p.add_argument(
        "--n-subjects",
        type=int,
        help="subjects to write (default: 2 for ninapro-db2, 214 MB each; 6 for the others)",
    )
    p.add_argument(
        "--movement-seconds", type=float, help="per repetition (default: 2.0 DB2, 1.5 HD-sEMG)"
    )
    p.add_argument("--n-gestures", type=int, help="hdsemg only: gestures, 2..65 (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generator")
    p.set_defaults(func=cmd_synth)


def cmd_synth(args: argparse.Namespace) -> None:
    from emg_lens.data.registry import dataset_info

    n_subjects = args.n_subjects
    if n_subjects is None:
        n_subjects = DEFAULT_SUBJECTS.get(args.format, 6)
    options = {"n_subjects": n_subjects, "seed": args.seed}
    # Unset options keep each format's spec defaults.
    for key in ("movement_seconds", "n_gestures"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    for path in dataset_info(args.format).synthesize(args.out, options):
        print(f"wrote {path}")
