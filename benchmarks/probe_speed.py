"""Probing every layer x token group of the demo's eight models (issue 39, item 6: <= 2 minutes
on 2 cores): `emg_lens.inspect.probe_tokens` with its defaults (every layer and the stream
after the last, every token group and ``pooled``, 5 folds asked, the control task beside each
probe; the demo's data, 4 trials a gesture, fold by repetition: 4 folds)
on each subject's test windows of `demo_setup`'s data.

The models are two-layer IsoNets of the ``demo`` preset with random weights (what a probe costs
does not depend on the weights: the same shapes, the same fits); the data is generated (and
cached) before anything is timed. A round probes every model once; it prints one JSON line:

- ``s_all``: min / median / max seconds of a round over ``--repeats`` rounds;
- ``s_per_model``: the median round over the number of models;
- ``probes``: layer x group probes per model (each fitted ``folds`` times, twice);
- ``threads``: torch's threads, which cache the activations; ``jobs``: the processes that fit
  the probes (`probe_tokens`' ``n_jobs``; BLAS threads are the environment's).

    python benchmarks/probe_speed.py [--subjects 8] [--repeats 3] [--jobs 2]
    python benchmarks/probe_speed.py --quick   # tiny preset, random windows: a smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics

import numpy as np
import torch
from _harness import rounds, spread

from emg_lens import EncoderConfig
from emg_lens.data.datasets import data_source, load_subject
from emg_lens.data.preprocess import SubjectData
from emg_lens.data.synthetic.emg_acc import demo_setup
from emg_lens.inspect import probe_tokens
from emg_lens.models import IsoNet


def demo_subjects(n: int) -> dict[int, tuple[IsoNet, SubjectData]]:
    """Random-weight demo IsoNets on subjects 1..n of the demo's data."""
    synthetic, preprocess = demo_setup(max(2, n))
    source = data_source("synthetic", synthetic=synthetic, preprocess=preprocess)
    found = {}
    for subject in range(1, n + 1):
        data = load_subject(source, subject)
        cfg = EncoderConfig.preset(
            "demo", n_layers=2, seed=subject, modalities=data.modalities,
            n_samples=data.X_test.shape[-1], n_classes=data.n_classes,
        )  # fmt: skip
        found[subject] = (IsoNet(cfg).eval(), data)
    return found


def tiny_subjects(n: int) -> dict[int, tuple[IsoNet, SubjectData]]:
    """Random tiny IsoNets on 64 random windows of 4 classes each."""
    found = {}
    for subject in range(1, n + 1):
        model = IsoNet(EncoderConfig.preset("tiny", seed=subject)).eval()
        X = np.random.default_rng(subject).normal(size=(64, 6, 8)).astype(np.float32)
        data = SubjectData.from_windows({"emg": 2, "acc": 4}, (X, np.arange(64) % 4))
        found[subject] = (model, data)
    return found


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subjects", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads (caching activations)")
    p.add_argument("--jobs", type=int, default=2, help="processes fitting the probes")
    p.add_argument("--quick", action="store_true", help="tiny models, random windows, 1 round")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    subjects = tiny_subjects(2) if args.quick else demo_subjects(args.subjects)
    repeats = 1 if args.quick else args.repeats
    tables = {}

    def probe_all() -> None:
        for subject, (model, data) in subjects.items():
            tables[subject] = probe_tokens(model, data, n_jobs=args.jobs)

    seconds = rounds({"all": probe_all}, repeats)["all"]
    first = next(iter(tables.values()))
    result = {
        "benchmark": "probe_speed",
        "models": len(subjects),
        "windows": int(np.mean([len(d.y_test) for _, d in subjects.values()])),
        "probes": len(first),
        "folds": int(first["folds"].iloc[0]),
        "fold_unit": str(first["fold_unit"].iloc[0]),
        "s_all": spread(seconds),
        "s_per_model": round(statistics.median(seconds) / len(subjects), 3),
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "jobs": args.jobs,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
