"""``emg-lens train`` (one classifier per subject) and ``emg-lens evaluate`` (their test
accuracy)."""

from __future__ import annotations

import argparse
import functools
from typing import Any

from emg_lens.cli.common import (
    add_command,
    add_data_args,
    add_device_argument,
    add_threads_argument,
    data_source_from_args,
    print_table,
    resolve_device,
    show_progress,
    subject_ids,
)
from emg_lens.cli.consent import add_modules_arguments, module_builder
from emg_lens.cli.placement import add_realign_argument, check_placements, placement_summary
from emg_lens.models import CLASSIFIERS


def add_parsers(sub) -> None:
    """``emg-lens train`` and ``emg-lens evaluate``."""
    p = add_command(sub, "train", "train one model (IsoNet by default) per subject")
    add_data_args(p)
    p.add_argument("--out", required=True, help="folder for subject_<N>/ checkpoints")
    p.add_argument(
        "--architecture",
        default="IsoNet",
        choices=CLASSIFIERS,
        help="model class (the paper's Table 2 zeroes modalities of HierarchicalTransformer)",
    )
    p.add_argument("--preset", default="demo", help="EncoderConfig preset (tiny, demo, paper)")
    p.add_argument("--epochs", type=int, default=12, help="training epochs per model")
    p.add_argument("--lr", type=float, default=2e-3, help="AdamW learning rate (paper: 4e-5)")
    p.add_argument("--batch-size", type=int, default=64, help="windows per step")
    p.add_argument("--seed", type=int, default=0, help="seed of the models (and synthetic data)")
    p.add_argument(
        "--refits",
        type=int,
        default=0,
        help="train a model again from another initialisation while its training accuracy "
        "(its lowest head's) stays below 0.9, up to this many more times (a plateau)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_realign_argument(p)
    add_device_argument(p)
    add_threads_argument(p)
    p.set_defaults(func=cmd_train)

    p = add_command(sub, "evaluate", "per-subject test accuracy of trained checkpoints")
    p.add_argument("--models", required=True, help="folder of subject_<N>/ checkpoints, or demo")
    add_realign_argument(p)
    add_device_argument(p)
    add_threads_argument(p)
    add_modules_arguments(p)
    p.set_defaults(func=cmd_evaluate)


# The TrainConfig field each flag sets, so a refused value names the flag.
TRAIN_FLAGS = {
    "epochs": "--epochs",
    "lr": "--lr",
    "batch_size": "--batch-size",
    "seed": "--seed",
    "refits": "--refits",
}


def train_config(args: argparse.Namespace) -> Any:
    """The `TrainConfig` of ``train``'s flags; a value it refuses (NaN or inf ``--lr``,
    ``--epochs 0``) is an `ArgumentError` naming the flag.

    >>> ns = argparse.Namespace(epochs=2, lr=float("inf"), batch_size=8, seed=0, refits=0,
    ...                         quiet=True)
    >>> train_config(ns)
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: --lr inf: TrainConfig.lr must be a finite number, got inf
    """
    from emg_lens.errors import ArgumentError, ConfigError
    from emg_lens.train import TrainConfig

    values = {field: getattr(args, field) for field in TRAIN_FLAGS}
    try:
        return TrainConfig(**values, progress=show_progress(args))
    except ConfigError as exc:
        field = next((f for f in TRAIN_FLAGS if f"TrainConfig.{f} " in str(exc)), None)
        if field is None:
            raise
        raise ArgumentError(f"{TRAIN_FLAGS[field]} {values[field]}: {exc}") from exc


def cmd_train(args: argparse.Namespace) -> list[dict]:
    from emg_lens.data.datasets import load_subject
    from emg_lens.models import MODEL_CLASSES, HookedEncoder
    from emg_lens.stats.chance import chance_console, chance_table
    from emg_lens.studies.subjects import checkpoint_score
    from emg_lens.train import train_subjects
    from emg_lens.train.baseline import below_baseline

    device = resolve_device(args.device)
    train_cfg = train_config(args)  # before any data is loaded
    source = data_source_from_args(args)
    subjects = [load_subject(source, s) for s in subject_ids(args, source)]
    subjects = check_placements(subjects, source, args.realign)  # recorded in the checkpoints
    model_cls = MODEL_CLASSES[args.architecture]
    assert issubclass(model_cls, HookedEncoder)  # CLASSIFIERS, --architecture's choices, are
    rows = train_subjects(
        subjects,
        model_cls,
        args.preset,
        train_cfg,
        args.out,
        data_source=source,
        device=str(device),
        report=functools.partial(print, flush=True),  # a log sees each line as it happens
    )
    print_table(
        rows, ["subject", "attempts", "train_accuracy", "test_accuracy", "baseline_accuracy"]
    )
    scores = {f"subject {r['subject']}": checkpoint_score(r["checkpoint"], data)
              for r, data in zip(rows, subjects)}  # fmt: skip
    chance = chance_table(scores)  # over trials; a warning names the fault
    print(chance_console(chance, below_baseline=below_baseline))
    for line in placement_summary({d.subject: d.meta.get("placement_check") for d in subjects}):
        print(line)
    return rows


def cmd_evaluate(args: argparse.Namespace) -> list[dict]:
    from emg_lens.checkpoints import load_checkpoint_data, read_checkpoint_info
    from emg_lens.model_folder import find_models
    from emg_lens.stats.chance import chance_console, chance_table
    from emg_lens.studies.subjects import checkpoint_score
    from emg_lens.train import accuracy
    from emg_lens.train.baseline import below_baseline, feature_baseline
    from emg_lens.user_code import load_model, require_builder

    device = resolve_device(args.device)
    builder = module_builder(args)
    found = find_models(args.models)
    require_builder(found.values(), builder)  # the user's modules: say what to add
    rows, checked, trained, scores = [], {}, {}, {}
    for subject, path in found.items():
        meta = read_checkpoint_info(path)["metadata"]
        data = load_checkpoint_data(path)  # refused by name, or warned of (data_digest)
        (data,) = check_placements([data], meta["data_source"], args.realign)
        checked[subject] = data.meta.get("placement_check")
        trained[subject] = meta.get("placement_check")
        model = load_model(path, builder, device=str(device))
        scores[f"subject {subject}"] = checkpoint_score(path, data, model)  # the chance check
        rows.append(
            {
                "subject": subject,
                "n_test": len(data.y_test),
                "chance": 1 / data.n_classes,
                "test_accuracy": accuracy(model, data.X_test, data.y_test),
                "baseline_accuracy": feature_baseline(data).value,
            }
        )
    print_table(rows, ["subject", "n_test", "chance", "test_accuracy", "baseline_accuracy"])
    mean = sum(r["test_accuracy"] for r in rows) / len(rows)
    print(f"mean test accuracy over {len(rows)} subjects: {mean:.3f}")
    chance = chance_table(scores)  # over trials; a warning names the fault
    print(chance_console(chance, below_baseline=below_baseline))
    for line in placement_summary(checked, trained=trained):
        print(line)
    return rows


def print_below_baseline(rows: list[dict]) -> None:
    """`emg_lens.train.baseline.below_baseline`'s line for each subject, over its held-out
    trials (``test_trials``; its windows where a row has no trial count; issue 78).

    >>> print_below_baseline([
    ...     {"subject": 3, "test_accuracy": 0.27, "baseline_accuracy": 0.41, "test_trials": 200},
    ...     {"subject": 4, "test_accuracy": 0.27, "baseline_accuracy": 0.41, "test_trials": 5,
    ...      "n_test": 45}])  # doctest: +NORMALIZE_WHITESPACE
    subject 3: the model's 0.270 is below the per-channel feature baseline's 0.410 (log RMS +
    MAD, logistic regression; difference -0.140, 95 % interval [-0.230, -0.047] over 200 trials)
    """
    from emg_lens.train.baseline import below_baseline

    for row in rows:
        name = f"subject {row['subject']}"
        trials = row.get("test_trials")
        n, unit = (trials, "trials") if trials is not None else (row.get("n_test"), "windows")
        line = below_baseline(name, row["test_accuracy"], row["baseline_accuracy"], n=n, unit=unit)
        if line is not None:
            print(line)
