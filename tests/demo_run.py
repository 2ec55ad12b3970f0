"""`emg-lens demo` end to end, run once per pytest run through `SharedOnDisk` for every test
that reads what it wrote (tests/integration/test_demo.py, test_report_browser.py): 6 subjects,
15 epochs, no refits (test_demo.py says why that size). Its folder holds the demo's ``models/``
and ``study/``, what it printed (``printed.txt``) and what it returned, pickled: the claims
table (``findings.pkl``) and the study's summary row that cuts every cross-modal route
(``cut_everywhere.pkl``, `emg_lens.studies.ablation.planted.cut_everywhere`)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pandas as pd

from emg_lens.cli import run
from emg_lens.studies.ablation.planted import cut_everywhere
from tests.shared_on_disk import SharedOnDisk

N_SUBJECTS = 6
ARGV = ["demo", "--n-subjects", str(N_SUBJECTS), "--epochs", "15", "--quiet"]
ARGV += ["--refits", "0"]  # refits are train_subjects' (tested there); here only time


def _argv(seed: int) -> list[str]:
    return ARGV if seed == 0 else [*ARGV, "--seed", str(seed)]  # 0: the demo's default


def _run(folder: Path, seed: int = 0) -> None:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result, findings = run([*_argv(seed), "--out", str(folder)])
    (folder / "printed.txt").write_text(printed.getvalue())
    findings.to_pickle(folder / "findings.pkl")
    cut_everywhere(result).to_pickle(folder / "cut_everywhere.pkl")


def demo_run_folder(shared: SharedOnDisk, seed: int = 0) -> Path:
    """The shared demo run's ``--out`` folder (run by the first test that asks), of the demo's
    data and models of ``seed``."""
    key = shared.key("demo_run", {"argv": _argv(seed)})
    return shared.folder(key, lambda folder: _run(folder, seed))


def demo_run(shared: SharedOnDisk, seed: int = 0) -> tuple[Path, str, pd.DataFrame, pd.Series]:
    """The shared demo run of ``seed``: its folder, what it printed, its claims table and the
    summary row that cuts every cross-modal route."""
    folder = demo_run_folder(shared, seed)
    printed = (folder / "printed.txt").read_text()
    findings = pd.read_pickle(folder / "findings.pkl")
    return folder, printed, findings, pd.read_pickle(folder / "cut_everywhere.pkl")
