"""One Table-3 study (unimodal / cross-modal masks x individual / from_first / from_last x every
layer, plus the baseline) run by ``emg-lens study run`` under ``torchrun --nproc-per-node 1``
and ``--nproc-per-node 2`` on this machine: wall time of each, and the efficiency of two.

The models are IsoNets of ``--preset`` (random weights) saved as ``subject_<N>/`` checkpoints
on synthetic data; the data is generated (and cached) before anything is timed. Each process
runs on ``--threads`` threads (default 1, so two processes use two cores and one uses one). The
two runs must write byte-identical tables. Each timed run starts from an empty store and
includes everything a user waits for: launching, imports, loading, the study, the tables
and figures. It prints one JSON line:

- ``s_1proc``, ``s_2proc``: median wall seconds of the run with one and with two processes;
- ``speedup``: ``s_1proc / s_2proc``; ``efficiency``: ``speedup / 2`` (1 would be perfect);
- ``cells``: subjects x conditions of the study;
- ``s_launch``: median wall seconds of ``torchrun`` starting one process that imports the study
  runner and exits, the start-up every run pays once whatever its processes (Amdahl's serial
  part, with rank 0's tables and figures after the cells): where it is a large share of
  ``s_1proc``, two processes cannot halve the time.

    python benchmarks/study_scaling.py [--preset demo] [--subjects 8] [--repeats 1]
    python benchmarks/study_scaling.py --quick   # tiny preset, 2 subjects, no warm-up launch
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from emg_lens import EncoderConfig
from emg_lens.checkpoints import save_checkpoint
from emg_lens.data.datasets import data_source, load_subject
from emg_lens.data.preprocess import PreprocessSpec
from emg_lens.data.synthetic.emg_acc import SyntheticSpec
from emg_lens.models import IsoNet

REPO = Path(__file__).resolve().parents[1]
TABLE3 = """
name = "scaling-table3"
models = "unused: --models"
[[interventions]]
name = "uni"
edges = "unimodal"
[[interventions]]
name = "cross"
edges = "cross_modal"
[layers]
modes = ["individual", "from_first", "from_last"]
"""
TABLES = ("per_subject.csv", "per_class.csv", "summary.csv", "summary.md")


def setup(root: Path, preset: str, subjects: int) -> tuple[Path, Path]:
    """Checkpoints of random IsoNets for subjects 1..N on synthetic data, and the study file."""
    source = data_source(
        "synthetic",
        synthetic=SyntheticSpec(n_subjects=subjects),
        preprocess=PreprocessSpec(step=100),
    )
    models = root / "models"
    for subject in range(1, subjects + 1):
        data = load_subject(source, subject)  # generated and cached before any timing
        cfg = EncoderConfig.preset(
            preset,
            seed=subject,
            modalities=data.modalities,
            n_samples=data.X_test.shape[-1],
            n_classes=data.n_classes,
        )
        save_checkpoint(
            IsoNet(cfg), models / f"subject_{subject}", metadata={"subject": subject,
                                                                 "data_source": source}
        )  # fmt: skip
    spec = root / "table3.toml"
    spec.write_text(TABLE3)
    return models, spec


def run(procs: int, spec: Path, models: Path, out: Path, threads: int) -> float:
    """Wall seconds of the study under torchrun with ``procs`` processes."""
    study = ["-m", "emg_lens.cli", "study", "run", str(spec), "--models", str(models)]
    return _torchrun(procs, threads, [*study, "--out", str(out), "--quiet", "--device", "cpu"])


def launch(threads: int) -> float:
    """Wall seconds of torchrun starting one process that imports the study runner (running
    the module as a script: it has no main) and exits."""
    return _torchrun(1, threads, ["-m", "emg_lens.studies.ablation.runner"])


def _torchrun(procs: int, threads: int, args: list[str]) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += ["--nproc-per-node", str(procs), *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return seconds


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="demo", help="EncoderConfig preset of the IsoNets")
    p.add_argument("--subjects", type=int, default=8, help="subjects (one checkpoint each)")
    p.add_argument("--repeats", type=int, default=1, help="timed runs of each process count")
    p.add_argument("--threads", type=int, default=1, help="threads per process")
    p.add_argument("--quick", action="store_true", help="tiny preset, 2 subjects, no warm-up")
    args = p.parse_args(argv)
    if args.quick:
        args.preset, args.subjects = "tiny", 2
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ.setdefault("EMG_LENS_CACHE", str(root / "cache"))
        models, spec = setup(root, args.preset, args.subjects)
        seconds: dict[int, list[float]] = {1: [], 2: []}
        if not args.quick:  # a smoke run is timed after imports that compiled it (the tests')
            launch(args.threads)  # untimed: the first start of a fresh clone compiles its bytecode
        launches = []
        for repeat in range(args.repeats):
            launches.append(launch(args.threads))
            for procs in (1, 2) if repeat % 2 == 0 else (2, 1):  # alternate who runs first
                out = root / f"out-{procs}-{repeat}"
                seconds[procs].append(run(procs, spec, models, out, args.threads))
        for repeat in range(args.repeats):
            for name in TABLES:
                one, two = (root / f"out-{n}-{repeat}" / name for n in (1, 2))
                if one.read_bytes() != two.read_bytes():
                    raise SystemExit(f"{name}: one and two processes wrote different tables")
        cells = sum(1 for _ in (root / "out-1-0" / "cells").glob("s*/*.json"))
    s1, s2 = (statistics.median(seconds[n]) for n in (1, 2))
    result = {
        "benchmark": "study_scaling",
        "preset": args.preset,
        "subjects": args.subjects,
        "cells": cells,
        "threads_per_process": args.threads,
        "cpu_count": os.cpu_count(),
        "repeats": args.repeats,
        "s_1proc": round(s1, 2),
        "s_2proc": round(s2, 2),
        "s_launch": round(statistics.median(launches), 2),
        "speedup": round(s1 / s2, 3),
        "efficiency": round(s1 / s2 / 2, 3),
        "tables_identical": True,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
