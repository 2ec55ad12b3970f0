"""``emg-lens synth``: synthetic recordings written in a real dataset's own file layout."""

from __future__ import annotations

import argparse

from emg_lens.cli.common import SYNTH_FORMATS, add_command


def add_parser(sub) -> None:
    """``emg-lens synth``."""
    p = add_command(sub, "synth", "write synthetic recordings in a real dataset format")
    p.add_argument("--format", default="ninapro-db2", choices=SYNTH_FORMATS, help="file layout")
    p.add_argument("--out", required=True, help="folder to write the dataset into")
    p.add_argument("--n-subjects", type=int, default=6, help="subjects to write")
    p.add_argument(
        "--movement-seconds", type=float, help="per repetition (default: 2.0 DB2, 1.5 HD-sEMG)"
    )
    p.add_argument("--n-gestures", type=int, help="hdsemg only: gestures, 2..65 (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generator")
    p.set_defaults(func=cmd_synth)


def cmd_synth(args: argparse.Namespace) -> None:
    from emg_lens.data.registry import dataset_info

    options = {"n_subjects": args.n_subjects, "seed": args.seed}
    # Unset options keep each format's spec defaults.
    for key in ("movement_seconds", "n_gestures"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    for path in dataset_info(args.format).synthesize(args.out, options):
        print(f"wrote {path}")
