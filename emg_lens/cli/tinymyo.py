"""``emg-lens pretrain`` (TinyMyo masked-signal pretraining) and ``emg-lens finetune``
(fine-tuning or linear probing a pretrained TinyMyo: an emg_lens checkpoint folder, or a
published BioFoundation checkpoint file)."""

from __future__ import annotations

import argparse
from typing import Any

from emg_lens.cli.common import (
    DEVICE_HELP,
    add_command,
    add_threads_argument,
    print_table,
    resolve_device,
    show_progress,
    synthetic_emg_spec,
)
from emg_lens.errors import ArgumentError

# "--preset small": a TinyMyo that pretrains in seconds on a CPU; "tinymyo" is the published size.
SMALL_TINYMYO = {"d_model": 32, "d_head": 8, "n_heads": 4, "d_mlp": 64, "n_layers": 2}
# What a BioFoundation checkpoint's tensor shapes cannot tell: the published TinyMyo's values.
BIOFOUNDATION_WINDOW, BIOFOUNDATION_HEADS = 1000, 3
# The published TinyMyo's input: 16 sEMG channels (two Myo armbands) x 1000 samples.
PUBLISHED_CHANNELS = 16
# pretrain's synthetic windows by --preset: (channels, samples); tinymyo: the published shape.
_KEPT = {"loss": "lowest validation loss", "accuracy": "highest validation accuracy"}
SYNTHETIC_SHAPE = {"small": (12, 100), "tinymyo": (PUBLISHED_CHANNELS, BIOFOUNDATION_WINDOW)}


def add_parsers(sub) -> None:
    """``emg-lens pretrain`` and ``emg-lens finetune``."""
    p = add_command(
        sub,
        "pretrain",
        "masked-signal pretraining of a TinyMyo",
        "Masked-signal pretraining of a TinyMyo on --windows (an HDF5 window store; its labels "
        "or regression targets are not read) or on synthetic sEMG: 12 channels x 100 samples "
        "for --preset small, the published TinyMyo's 16 x 1000 for --preset tinymyo. "
        "`emg-lens finetune --checkpoint OUT` fine-tunes the result on any channel count and "
        "window length (a multiple of its 20-sample patches).",
    )
    _data_args(p, "--preset small: 12 x 100; tinymyo: 16 x 1000, the published input")
    _recipe_args(p, 5, {"epochs": 50, "lr": 1e-4, "warmup": 10})
    p.add_argument(
        "--preset",
        default="small",
        choices=["small", "tinymyo"],
        help="small (seconds on a CPU), or tinymyo: the published size (8 layers, d_model 192)",
    )
    p.add_argument("--layers", type=int, help="override the preset's number of layers")
    p.add_argument("--accumulate", type=int, default=1, help="micro-batches per step (pub.: 8)")
    p.add_argument("--mask-ratio", type=float, default=0.5, help="fraction of patches masked")
    p.set_defaults(func=cmd_pretrain)

    p = add_command(
        sub,
        "finetune",
        "fine-tune (or linear-probe) a pretrained TinyMyo",
        "Fine-tune (or linear-probe) a pretrained TinyMyo for classification: its encoder "
        "weights are copied into a classifier whose head is initialised afresh for the "
        "data's classes. It starts from --checkpoint (an emg_lens checkpoint folder, e.g. "
        "`emg-lens pretrain --out`) or --from-biofoundation(a published BioFoundation "
        "TinyMyo file, .safetensors or .ckpt/.pt read with weights_only=True).\n\n"
        "A window store of a downstream dataset (`emg-lens windows --dataset epn612 | uci | "
        "ninapro-db8`) carries its train/val/test split: the model trains on train, "
        "early-stops on val and is scored on test. NinaPro DB8's store is a regression: "
        "TinyMyo's regression head, --loss l1 or mse, the MAE per degree of actuation and "
        "overall against predicting the training mean.\n\n"
        "TinyMyo's weights do not depend on the channel count or the window length (one patch "
        "embedding shared by every channel, rotary positions), so the pretrained encoder is "
        "fitted to the data's channels and window, as a BioFoundation file is: a 16 x 1000 "
        "checkpoint fine-tunes on EPN-612's 8 x 1000 windows. The window must be a multiple "
        "of the model's patch length.",
    )
    _data_args(p, "the pretrained model's: the checkpoint's, or 16 x 1000 for a BioFoundation file")
    _recipe_args(p, 10, {"epochs": 50, "lr": 5e-4, "warmup": 5})
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument("--checkpoint", help="the pretrained emg_lens checkpoint folder")
    start.add_argument(
        "--from-biofoundation",
        metavar="PATH",
        help="a published BioFoundation TinyMyo checkpoint (.safetensors, .ckpt, .pt, .pth)",
    )
    g = p.add_argument_group("BioFoundation checkpoints: what the tensor shapes cannot tell")
    g.add_argument(
        "--n-heads", type=int, default=BIOFOUNDATION_HEADS, help="attention heads (published)"
    )
    g.add_argument(
        "--rope-positions",
        default="head",
        choices=["head", "token"],
        help="head: what BioFoundation's code computes (its published weights); token: weights "
        "trained with token RoPE, e.g. a TinyMyo.to_biofoundation export",
    )
    p.add_argument("--n-classes", type=int, help="default: from the labels")
    p.add_argument("--patience", type=int, default=7, help="early-stopping epochs")
    p.add_argument(
        "--monitor",
        default="loss",
        choices=["loss", "accuracy"],
        help="the validation score early stopping and the kept epoch follow: the lowest loss "
        "(BioFoundation's val_loss, default) or the highest accuracy",
    )
    p.add_argument("--linear-probe", action="store_true", help="freeze the encoder")
    p.add_argument(
        "--loss", default="l1", choices=["l1", "mse"], help="regression stores (NinaPro DB8)"
    )
    p.add_argument(
        "--per-subject",
        action="store_true",
        help="one classifier per subject (train/test repetitions: the split the --windows store "
        "was built with; 1 3 4 6 / 2 5 for synthetic windows), saved as OUT/subject_<N>/ for "
        "`emg-lens study run --models OUT`",
    )
    p.add_argument("--subjects", nargs="+", type=int, help="--per-subject: these subjects")
    p.set_defaults(func=cmd_finetune)


def _data_args(p: argparse.ArgumentParser, shape_default: str) -> None:
    g = p.add_argument_group("data: a window store, or synthetic sEMG (the default)")
    g.add_argument("--windows", help="an HDF5 window store (emg-lens windows writes one)")
    g.add_argument("--val-fraction", type=float, default=0.1, help="store windows held out")
    g.add_argument("--n-subjects", type=int, default=1, help="synthetic subjects")
    g.add_argument("--n-gestures", type=int, default=4, help="synthetic gestures")
    g.add_argument("--movement-seconds", type=float, default=1.0, help="synthetic, per repetition")
    g.add_argument(
        "--channels", type=int, help=f"synthetic sEMG channels (default: {shape_default})"
    )
    g.add_argument(
        "--window",
        type=int,
        help=f"synthetic samples per window, a multiple of 20 (default: {shape_default})",
    )
    g.add_argument("--step", type=int, default=100, help="synthetic samples between windows")


def _synthetic_spec(args: argparse.Namespace):
    """`synthetic_emg_spec` with ``--channels`` sEMG electrodes."""
    import dataclasses

    return dataclasses.replace(synthetic_emg_spec(args), n_emg=args.channels)


def _recipe_args(p: argparse.ArgumentParser, epochs: int, published: dict) -> None:
    """The options `_recipe_options` reads, and where the model lives."""
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.add_argument(
        "--epochs", type=int, default=epochs, help=f"epochs (published: {published['epochs']})"
    )
    p.add_argument("--batch-size", type=int, default=32, help="windows per step and process")
    p.add_argument("--lr", type=float, default=1e-3, help=f"peak lr (published: {published['lr']})")
    p.add_argument(
        "--warmup-epochs",
        type=int,
        help=f"linear warm-up epochs (default: 1, or 0 with --epochs 1; published: "
        f"{published['warmup']})",
    )
    p.add_argument(
        "--device",
        default="cpu",
        metavar="{cpu,cuda,auto}",
        help=DEVICE_HELP + "; nccl under torchrun on CUDA",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the model, split and data")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_threads_argument(p)


def _recipe_options(args: argparse.Namespace) -> dict:
    """The options `PretrainConfig` and `FinetuneConfig` share."""
    return {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        # one epoch is all cosine: the warm-up must end before the last epoch
        "warmup_epochs": min(1, args.epochs - 1)
        if args.warmup_epochs is None
        else args.warmup_epochs,
        "seed": args.seed,
        "progress": show_progress(args),
    }


def _tinymyo_windows(args: argparse.Namespace, *, labeled_only: bool):
    """(train, validation, n_classes) from ``--windows FILE.h5`` (a random held-out fraction)
    or synthetic sEMG (split by repetition: 2 and 5 held out)."""
    from emg_lens.data.synthetic.windows import synthetic_windows
    from emg_lens.train.inputs import labeled_subset, random_holdout

    if args.windows:
        from emg_lens.data.windows.store import WindowStore

        store = WindowStore(args.windows)
        data, n_classes = labeled_subset(store) if labeled_only else (store, None)
        return (*random_holdout(data, args.val_fraction, seed=args.seed), n_classes)
    windows = synthetic_windows(_synthetic_spec(args), window=args.window, step=args.step)
    return (*windows.split(labeled_only=labeled_only), windows.n_classes)


def cmd_pretrain(args: argparse.Namespace):
    from emg_lens.config import EncoderConfig
    from emg_lens.models import TinyMyo
    from emg_lens.train import PretrainConfig, evaluate_masked_loss, pretrain
    from emg_lens.train.distributed import is_main_process

    args.device = str(resolve_device(args.device))
    channels, window = SYNTHETIC_SHAPE[args.preset]
    args.channels = channels if args.channels is None else args.channels
    args.window = window if args.window is None else args.window
    train, val, _ = _tinymyo_windows(args, labeled_only=False)
    channels, samples = train[0][0].shape
    sizes = SMALL_TINYMYO if args.preset == "small" else {}
    if args.layers is not None:
        sizes = {**sizes, "n_layers": args.layers}
    cfg = EncoderConfig.preset(
        "tinymyo",
        **{**sizes, "modalities": {"emg": channels}, "n_samples": samples, "seed": args.seed},
        device=args.device,
    )
    model = TinyMyo(cfg, task="reconstruction")
    recipe = PretrainConfig(
        **_recipe_options(args), accumulate_steps=args.accumulate, mask_ratio=args.mask_ratio
    )
    before = evaluate_masked_loss(model, val, mask_ratio=args.mask_ratio, seed=args.seed)
    history = pretrain(model, train, recipe, val_data=val, out=args.out)
    if is_main_process():
        rows = [{"epoch": 0, "train_loss": "", "heldout_masked_loss": before}]
        rows += [
            {"epoch": i + 1, "train_loss": loss, "heldout_masked_loss": val_loss}
            for i, (loss, val_loss) in enumerate(zip(history.epoch_loss, history.val_masked_loss))
        ]
        print(
            f"TinyMyo ({cfg.n_layers} layers, d_model {cfg.d_model}) masked pretraining on "
            f"{len(train)} windows [{channels} x {samples}], {len(val)} held out"
        )
        print_table(rows, ["epoch", "train_loss", "heldout_masked_loss"], ".4f")
        print(f"wrote {args.out}")
    return history


def _pretrained(args: argparse.Namespace) -> Any:
    """What fine-tuning starts from: the TinyMyo of the ``--checkpoint`` folder or of a
    ``--from-biofoundation`` file, fitted to the data's channels and window (the store's, or the
    synthetic windows')."""
    n_channels, n_samples = args.channels, args.window
    if args.windows:
        from emg_lens.data.windows.store import WindowStore

        store = WindowStore(args.windows)
        n_channels, n_samples = store.n_channels, store.window
    if args.from_biofoundation is None:
        from emg_lens.checkpoints import load_checkpoint, read_checkpoint_info

        cfg = read_checkpoint_info(args.checkpoint)["config"]
        if (sum(cfg["modalities"].values()), cfg["n_samples"]) == (n_channels, n_samples):
            return args.checkpoint  # as it is (its path is recorded in what fine-tuning saves)
        model = load_checkpoint(args.checkpoint, device=args.device)
        return _fit_to_data(model, n_channels, n_samples, args)
    from emg_lens.checkpoints import load_biofoundation

    return load_biofoundation(
        args.from_biofoundation,
        n_heads=args.n_heads,
        n_channels=n_channels,
        n_samples=n_samples,
        rope_positions=args.rope_positions,
        device=args.device,
    )


def _fit_to_data(model: Any, n_channels: int, n_samples: int, args: argparse.Namespace) -> Any:
    """``model`` (a TinyMyo checkpoint) with the same weights, built for ``n_channels`` x
    ``n_samples`` windows: none of its encoder's weights depends on either (one patch embedding
    shared by every channel, rotary positions), as for a BioFoundation file. A window that is
    no whole number of its patches is an `ArgumentError` naming both shapes."""
    from emg_lens.config import config_for_data
    from emg_lens.train.distributed import is_main_process

    have = tuple(model.input_shape)
    if not getattr(model, "head_tasks", ()) or have == (n_channels, n_samples):
        return model  # (finetune refuses a model without task heads, naming its class)
    data = args.windows or "the synthetic windows (--channels, --window)"
    if n_samples % (patch := model.cfg.token_samples):
        raise ArgumentError(
            f"{data}: windows of {n_channels} x {n_samples} samples, but the pretrained TinyMyo "
            f"{args.checkpoint} ({have[0]} x {have[1]}) cuts each channel into patches of {patch} "
            f"samples and {n_samples} is not a multiple of {patch}: use windows of a multiple of "
            f"{patch} samples (emg-lens windows --window)"
        )
    cfg = config_for_data(
        type(model), model.cfg, {"emg": n_channels}, model.cfg.n_classes, n_samples,
        channel_names=None,
    )  # fmt: skip
    fitted = type(model)(cfg, **model.init_kwargs)
    keep = fitted.state_dict()  # a head that depends on the channels stays fresh: replaced anyway
    weights = {k: v for k, v in model.state_dict().items() if keep[k].shape == v.shape}
    fitted.load_state_dict(weights, strict=False)
    if is_main_process():
        print(
            f"the pretrained TinyMyo ({have[0]} channels x {have[1]} samples) is fitted to the "
            f"data's {n_channels} x {n_samples}: its encoder's weights do not depend on either"
        )
    return fitted.to(model.param_device_dtype()[0]).train(model.training)


def cmd_finetune(args: argparse.Namespace):
    from emg_lens.checkpoints import read_checkpoint_info
    from emg_lens.data.windows.store import WindowStore
    from emg_lens.train import FinetuneConfig, finetune
    from emg_lens.train.distributed import is_main_process

    args.device = str(resolve_device(args.device))
    origin = args.checkpoint or args.from_biofoundation
    if args.checkpoint:  # synthetic windows shaped like the pretrained model's input
        cfg = read_checkpoint_info(args.checkpoint)["config"]
        shape = (sum(cfg["modalities"].values()), cfg["n_samples"])
    else:
        shape = (PUBLISHED_CHANNELS, BIOFOUNDATION_WINDOW)
    args.channels = shape[0] if args.channels is None else args.channels
    args.window = shape[1] if args.window is None else args.window
    recipe = FinetuneConfig(
        **_recipe_options(args),
        patience=args.patience,
        monitor=args.monitor,
        linear_probe=args.linear_probe,
    )
    if args.windows and WindowStore(args.windows).meta.get("splits") is not None:
        return _finetune_on_splits(args, recipe, origin)
    if args.per_subject:
        return _finetune_per_subject(args, recipe, origin)
    if args.subjects:
        raise ArgumentError("--subjects selects subjects for --per-subject fine-tuning only")
    train, val, n_classes = _tinymyo_windows(args, labeled_only=True)
    n_classes = args.n_classes or n_classes
    model, history = finetune(
        _pretrained(args),
        train,
        recipe,
        n_classes=n_classes,
        val_data=val,
        out=args.out,
        device=args.device,
        metadata={"pretrained": str(origin)},
    )
    if is_main_process():
        mode = "linear probe" if args.linear_probe else "fine-tuning"
        print(f"TinyMyo {mode} from {origin}: {len(train)} windows, {len(val)} held out")
        rows = [
            {"epoch": i + 1, "train_loss": loss, "val_loss": val_loss, "val_accuracy": acc}
            for i, (loss, val_loss, acc) in enumerate(
                zip(history.epoch_loss, history.val_loss, history.val_accuracy)
            )
        ]
        print_table(rows, ["epoch", "train_loss", "val_loss", "val_accuracy"], ".4f")
        best = history.val_accuracy[history.best_epoch]
        print(
            f"kept epoch {history.best_epoch + 1} (the {_KEPT[recipe.monitor]}): validation "
            f"accuracy {best:.3f} (chance {1 / n_classes:.3f}); wrote {args.out}"
        )
    return model, history


def _finetune_per_subject(args: argparse.Namespace, recipe: Any, origin: str) -> list[dict]:
    """One classifier per subject of ``--windows`` (or synthetic sEMG), as ``OUT/subject_<N>/``."""
    from emg_lens.cli.train import print_below_baseline
    from emg_lens.data.datasets import synthetic_windows_source, windows_source
    from emg_lens.train import finetune_subjects
    from emg_lens.train.distributed import is_main_process

    if args.windows:
        source = windows_source(args.windows)
    else:
        source = synthetic_windows_source(_synthetic_spec(args), window=args.window, step=args.step)
    rows = finetune_subjects(
        _pretrained(args),
        source,
        args.out,
        recipe,
        subjects=args.subjects,
        val_fraction=args.val_fraction,
        device=args.device,
    )
    if is_main_process():
        mode = "linear probe" if args.linear_probe else "fine-tuning"
        print(
            f"TinyMyo {mode} per subject from {origin} ({source['dataset']}; train repetitions "
            f"{source['train_repetitions']}, test {source['test_repetitions']})"
        )
        columns = ["subject", "n_train", "n_test", "chance", "val_accuracy", "test_accuracy"]
        print_table(rows, [*columns, "baseline_accuracy"])
        print(f"wrote {len(rows)} checkpoints to {args.out} (emg-lens study run ... --models)")
        print_below_baseline(rows)
    return rows


def _finetune_on_splits(args: argparse.Namespace, recipe: Any, origin: str) -> dict:
    """Fine-tune on a downstream store's train split, early-stop on val, score test."""
    from emg_lens.data.windows.store import WindowStore
    from emg_lens.train.distributed import is_main_process
    from emg_lens.train.finetune import FinetuneHistory, dataset_accuracy, finetune
    from emg_lens.train.regression import (
        RegressionHistory,
        dataset_mae,
        finetune_regression,
        mean_baseline_mae,
        ridge_baseline_mae,
    )

    if args.per_subject or args.subjects:
        why = "holds a downstream dataset's own train/val/test split"
        raise ArgumentError(f"{args.windows} {why}; --per-subject and --subjects do not apply")
    store = WindowStore(args.windows)
    parts = {n: WindowStore(args.windows, repetitions=c) for n, c in store.meta["splits"].items()}
    for name in ("train", "val"):
        if not len(parts.get(name, ())):
            fix = "build it with emg-lens windows without --split, or with train and val"
            raise ArgumentError(f"{args.windows} has no {name!r} windows ({sorted(parts)}); {fix}")
    test = parts.get("test")
    meta = {"pretrained": str(origin), "windows": str(args.windows)}
    common = {"val_data": parts["val"], "out": args.out, "device": args.device, "metadata": meta}
    history: FinetuneHistory | RegressionHistory
    scores: dict[str, object]  # numbers, and the regression's MeanAbsoluteError
    if store.regression:
        model, history = finetune_regression(
            _pretrained(args), parts["train"], recipe, loss=args.loss, **common
        )
        scores = {"val": history.val_mae[history.best_epoch]}
    else:
        n_classes = args.n_classes or int(store.labels.max()) + 1
        model, history = finetune(
            _pretrained(args), parts["train"], recipe, n_classes=n_classes, **common
        )
        scores = {"val": history.val_accuracy[history.best_epoch], "chance": 1 / n_classes}
    if test is not None and len(test):
        if store.regression:
            scores["test"] = dataset_mae(model, test)
            scores["baseline"] = mean_baseline_mae(parts["train"], test)
            scores["ridge"] = ridge_baseline_mae(parts["train"], test)
        else:
            scores["test"] = dataset_accuracy(model, test)
    if is_main_process():
        _print_split_report(args, store, parts, history, scores, origin)
    return {"model": model, "history": history, **scores}


def _print_split_report(args, store, parts, history, scores, origin) -> None:
    sizes = ", ".join(f"{len(part)} {name}" for name, part in parts.items())
    mode = "linear probe" if args.linear_probe else "fine-tuning"
    print(f"TinyMyo {mode} from {origin} on {args.windows}: {sizes} windows")
    metric = "val_mae" if store.regression else "val_accuracy"
    values = history.val_mae if store.regression else history.val_accuracy
    rows = [
        {"epoch": i + 1, "train_loss": loss, metric: v}
        for i, (loss, v) in enumerate(zip(history.epoch_loss, values))
    ]
    print_table(rows, ["epoch", "train_loss", metric], ".4f")
    print(f"kept epoch {history.best_epoch + 1}: {metric} {scores['val']:.3f}")
    if "test" not in scores:
        print(f"no test windows in {args.windows}; wrote {args.out}")
    elif store.regression:
        test, base, ridge = scores["test"], scores["baseline"], scores["ridge"]
        names = [*store.meta["target_names"], "overall"]
        rows = [
            {"output": n, "test_mae": t, "mean_baseline_mae": b, "ridge_baseline_mae": r}
            for n, t, b, r in zip(
                names,
                [*test.per_output, test.overall],
                [*base.per_output, base.overall],
                [*ridge.per_output, ridge.overall],
            )
        ]
        print_table(rows, ["output", "test_mae", "mean_baseline_mae", "ridge_baseline_mae"])
        overall = f"test MAE {test.overall:.3f} (predicting the mean: {base.overall:.3f})"
        print(f"{overall}; wrote {args.out}")
        if round(test.overall, 3) > round(ridge.overall, 3):  # an error: above is worse
            print(
                f"the model's test MAE {test.overall:.3f} is above the per-channel feature "
                f"baseline's {ridge.overall:.3f} (channel RMS, ridge)"
            )
    else:
        print(
            f"test accuracy {scores['test']:.3f} (chance {scores['chance']:.3f}); wrote {args.out}"
        )
