"""``emg-lens report DIR``: one self-contained ``report.html`` for an output folder of ``study
run``, ``discover``, ``inspect`` or ``demo`` (its study folder), written beside its tables."""

from __future__ import annotations

import argparse
import sys

from emg_lens.cli.common import add_command


def add_parser(sub) -> None:
    """``emg-lens report``."""
    p = add_command(
        sub,
        "report",
        "write the self-contained report.html of an output folder",
        "Write DIR/report.html: the summary, every figure, the study, the tables (behind "
        "folds, sortable) and the provenance of an output folder, in one file that opens in "
        "any browser with no server and no network. study run, discover and inspect write it "
        "themselves; this builds it for a folder written before, or again. Only regular "
        "files inside DIR are read: the page lists anything else the folder names or holds "
        "(an absolute path, a link or a .. out of DIR, text that is not UTF-8) as left out.",
    )
    p.add_argument("folder", help="an output folder (e.g. runs/studies/<name>)")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace):
    from emg_lens.report import write_report

    path = write_report(args.folder, warn=lambda line: print(line, file=sys.stderr))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return path
