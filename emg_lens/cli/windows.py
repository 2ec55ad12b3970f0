"""``emg-lens windows``: a TinyMyo window store (HDF5) from emg2pose, NinaPro DB5/DB6/DB7,
synthetic sEMG, or a downstream dataset (EPN-612, UCI, NinaPro DB8)."""

from __future__ import annotations

import argparse

from emg_lens.cli.common import (
    DOWNSTREAM_DATASETS,
    SPLIT_REPETITIONS,
    WINDOW_STORE_SOURCES,
    add_command,
    show_progress,
    synthetic_emg_spec,
)


def add_parser(sub) -> None:
    """``emg-lens windows``."""
    p = add_command(sub, "windows", "build a TinyMyo window store (HDF5) from a dataset")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--source", choices=WINDOW_STORE_SOURCES, help="dataset")
    what.add_argument(
        "--dataset",
        choices=DOWNSTREAM_DATASETS,
        help="a TinyMyo downstream dataset (the same as --source NAME): the thesis's "
        "preprocessing at the data's rate and the dataset's train/val/test split",
    )
    p.add_argument("--root", help="dataset folder (all but synthetic)")
    p.add_argument("--out", required=True, help="the .h5 window store to write")
    p.add_argument(
        "--split",
        nargs="+",
        help="emg2pose: metadata.csv splits (train, val, test); downstream datasets: train, "
        "val, test; others: train and/or test repetitions (default: every window)",
    )
    p.add_argument("--subjects", nargs="+", type=int, help="default: all found")
    p.add_argument(
        "--normalize",
        choices=["minmax", "zscore"],
        help="default: minmax for emg2pose/DB6/DB7 (pretraining), zscore fitted on the "
        "training repetitions for DB5/synthetic",
    )
    p.add_argument("--window", type=int, default=1000, help="samples per window at 2 kHz")
    p.add_argument("--step", type=int, default=500, help="samples between windows")
    train, test = SPLIT_REPETITIONS["train_repetitions"], SPLIT_REPETITIONS["test_repetitions"]
    p.add_argument(
        "--train-repetitions",
        nargs="+",
        type=int,
        default=train,
        help=f"--split train and the z-score fit (default: {' '.join(map(str, train))})",
    )
    p.add_argument(
        "--test-repetitions",
        nargs="+",
        type=int,
        default=test,
        help=f"--split test (default: {' '.join(map(str, test))})",
    )
    g = p.add_argument_group("synthetic sEMG (--source synthetic)")
    g.add_argument("--n-subjects", type=int, default=2, help="synthetic subjects")
    g.add_argument("--n-gestures", type=int, default=4, help="synthetic gestures")
    g.add_argument("--movement-seconds", type=float, default=2.0, help="per repetition")
    g.add_argument("--seed", type=int, default=0, help="seed of the generator")
    p.add_argument(
        "--compression", default="none", choices=["none", "gzip", "lzf"], help="HDF5 filter"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_windows)


def cmd_windows(args: argparse.Namespace):
    """A TinyMyo window store from emg2pose, NinaPro DB5/DB6/DB7 or synthetic sEMG."""
    from emg_lens.data.window_build import build_window_store
    from emg_lens.data.windowing import TinyMyoPreprocess
    from emg_lens.data.windows import WindowStore

    path = build_window_store(
        args.source or args.dataset,
        args.out,
        root=args.root,
        subjects=args.subjects,
        split=args.split,
        normalize=args.normalize,
        preprocess=TinyMyoPreprocess(window=args.window, step=args.step),
        train_repetitions=tuple(args.train_repetitions),
        test_repetitions=tuple(args.test_repetitions),
        synthetic=synthetic_emg_spec(args) if args.source == "synthetic" else None,
        compression=None if args.compression == "none" else args.compression,
        progress=show_progress(args),
    )
    store = WindowStore(path)
    labelled = int((store.labels >= 0).sum())
    print(
        f"wrote {path}: {len(store)} windows [{store.n_channels} x {store.window}] of subjects "
        f"{store.subjects}, {labelled} labelled, {store.meta['preprocess']['normalize']} "
        f"normalised, from {len(store.meta['sessions'])} recordings"
    )
    return store
