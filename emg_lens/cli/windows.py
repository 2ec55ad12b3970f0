"""``emg-lens windows``: one HDF5 window store (`emg_lens.data.windows.store`) for TinyMyo,
written by `emg_lens.data.window_build.build_window_store`. ``--source`` reads any of
`WINDOW_STORE_SOURCES` (``--dataset``: TinyMyo's downstream datasets, by name). Sources cut by
TinyMyo's recipe and those keeping their dataset's own split accept different options
(docs/guide/tinymyo.md); one the chosen source would ignore is refused (`_applies`)."""

from __future__ import annotations

import argparse

from emg_lens.cli.common import add_command, show_progress, synthetic_emg_spec
from emg_lens.data.registry import (
    DOWNSTREAM_DATASETS,
    SPLIT_REPETITIONS,
    STORE_REPETITIONS,
    WINDOW_STORE_SOURCES,
    dataset_info,
)

SYNTHETIC_DEFAULTS = {"n_subjects": 2, "n_gestures": 4, "movement_seconds": 2.0, "seed": 0}
"""``--source synthetic``'s options when not given."""

OPTIONS = (
    "root", "split", "subjects", "normalize", "window", "step", "train_repetitions",
    "test_repetitions", *SYNTHETIC_DEFAULTS, "compression", "quiet",
)  # fmt: skip
"""Every option of ``windows`` but ``--source``/``--dataset`` and ``--out``, in ``--help``
order."""


def _split_defaults(key: str) -> str:
    """``key``'s default repetitions, the sources with their own split named."""
    own = "".join(
        f"; {name}: {' '.join(map(str, split[key]))}" for name, split in STORE_REPETITIONS.items()
    )
    return " ".join(map(str, SPLIT_REPETITIONS[key])) + own


def _applies(option: str, source: str) -> bool:
    """Whether ``--option`` means something for ``source`` (else it is refused, not ignored),
    as its registry entry says."""
    info = dataset_info(source)
    if option in ("root", *SYNTHETIC_DEFAULTS):
        return info.needs_root == (option == "root")  # generated data takes a spec instead
    if option == "normalize":
        return "downstream" not in info.uses  # z-scored per recording, as the thesis
    if option == "step":  # an EPN-612 sample is padded or cropped to one window: no step
        return info.downstream is None or info.downstream.step is not None
    if option in ("train_repetitions", "test_repetitions"):
        return "repetitions" in info.uses
    return True


CHECKED = (
    "root",
    "normalize",
    "step",
    "train_repetitions",
    "test_repetitions",
    *SYNTHETIC_DEFAULTS,
)
"""The options `_applies` decides on; they default to None so that a given one is seen."""


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
        help="not downstream datasets; default: minmax for emg2pose/DB6/DB7 (pretraining), "
        "zscore fitted on the training repetitions for DB5/synthetic",
    )
    p.add_argument(
        "--window",
        type=int,
        help="samples per window (default: 1000; at 2 kHz for emg2pose, DB5/6/7 and "
        "synthetic, at the data's rate for the downstream datasets, whose defaults fit their "
        "protocols: EPN-612 1000 = a 5 s sample at 200 Hz; UCI 1000 of a 3 s gesture's ~3000 "
        "rows; DB8 1000 = 0.5 s at 2 kHz)",
    )
    p.add_argument("--step", type=int, help="samples between windows (default 500; not for epn612)")
    p.add_argument(
        "--train-repetitions",
        nargs="+",
        type=int,
        help="DB5/6/7 and synthetic: --split train and the z-score fit (default: "
        f"{_split_defaults('train_repetitions')})",
    )
    p.add_argument(
        "--test-repetitions",
        nargs="+",
        type=int,
        help="DB5/6/7 and synthetic: --split test (default: "
        f"{_split_defaults('test_repetitions')})",
    )
    g = p.add_argument_group("synthetic sEMG (--source synthetic)")
    g.add_argument("--n-subjects", type=int, help="synthetic subjects (default 2)")
    g.add_argument("--n-gestures", type=int, help="synthetic gestures (default 4)")
    g.add_argument("--movement-seconds", type=float, help="per repetition (default 2.0)")
    g.add_argument("--seed", type=int, help="seed of the generator (default 0)")
    p.add_argument(
        "--compression", default="none", choices=["none", "gzip", "lzf"], help="HDF5 filter"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_windows)


def _flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def _check_options(args: argparse.Namespace, source: str) -> None:
    """Refuse each given option that ``source`` would ignore, naming those that apply."""
    kind = "--dataset" if args.dataset else "--source"
    for option in CHECKED:
        if getattr(args, option) is not None and not _applies(option, source):
            from emg_lens.errors import ArgumentError

            applies = ", ".join(_flag(o) for o in OPTIONS if _applies(o, source))
            raise ArgumentError(
                f"{_flag(option)} does not apply to {kind} {source}; its options are {applies}"
            )


def _preprocess(args: argparse.Namespace, source: str):
    """The window and step asked for, on the dataset's defaults; None: all defaults."""
    if args.window is None and args.step is None:
        return None
    from emg_lens.data.windows.pipeline import TinyMyoPreprocess

    if source in DOWNSTREAM_DATASETS:
        return dataset_info(source).downstream.spec(source, window=args.window, step=args.step)
    given = {k: v for k, v in (("window", args.window), ("step", args.step)) if v is not None}
    return TinyMyoPreprocess(**given)


def cmd_windows(args: argparse.Namespace):
    """A TinyMyo window store from emg2pose, NinaPro DB5/DB6/DB7, synthetic sEMG or a
    downstream dataset."""
    from emg_lens.data.window_build import build_window_store
    from emg_lens.data.windows.store import WindowStore

    source = args.source or args.dataset
    _check_options(args, source)
    synthetic = None
    if not dataset_info(source).needs_root:  # generated: its spec from the options
        for option, default in SYNTHETIC_DEFAULTS.items():
            if getattr(args, option) is None:
                setattr(args, option, default)
        synthetic = synthetic_emg_spec(args)
    train, test = (
        None if value is None else tuple(value)
        for value in (args.train_repetitions, args.test_repetitions)
    )
    path = build_window_store(
        source,
        args.out,
        root=args.root,
        subjects=args.subjects,
        split=args.split,
        normalize=args.normalize,
        preprocess=_preprocess(args, source),
        synthetic=synthetic,
        compression=None if args.compression == "none" else args.compression,
        progress=show_progress(args),
        train_repetitions=train,
        test_repetitions=test,
    )
    store = WindowStore(path)
    labelled = int((store.labels >= 0).sum())
    print(
        f"wrote {path}: {len(store)} windows [{store.n_channels} x {store.window}] of subjects "
        f"{store.subjects}, {labelled} labelled, {store.meta['preprocess']['normalize']} "
        f"normalised, from {len(store.meta['sessions'])} recordings"
    )
    _print_dropped(store.meta["sessions"])
    return store


def _print_dropped(sessions: list[dict]) -> None:
    """NinaPro DB8: the samples each file lost to NaN in the glove (the targets need all 18)."""
    lines = [
        f"  {source}: {dropped} of {total} samples"
        for session in sessions
        for source, (dropped, total) in session.get("nan_glove", {}).items()
        if dropped
    ]
    if lines:
        print(
            "samples dropped for NaN in the glove (the targets need every sensor):",
            *lines,
            sep="\n",
        )
