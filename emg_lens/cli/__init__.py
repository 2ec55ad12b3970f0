"""The ``emg-lens`` command: demo, train, evaluate, study, synth, inspect, windows, pretrain,
finetune.

Run ``emg-lens <command> --help`` for each command's options.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from emg_lens.errors import ArgumentError, EmgLensError

DEMO_ROOT = Path("runs/demo")
# the supervised classifiers `emg-lens train` builds (TinyMyo has its own pretrain/finetune)
ARCHITECTURES = ("IsoNet", "HierarchicalTransformer", "MultimodalTransformer", "MultimodalMLP")
STUDIES = Path(__file__).resolve().parent.parent / "studies"
DEMO_STUDY = STUDIES / "planted_demo.toml"
# EncoderConfig overrides of the "demo" preset for `emg-lens demo`: two layers are enough for the
# mean-pooled head to learn the interaction gestures on demo_setup's 25 tokens.
DEMO_MODEL = {"n_layers": 2}
# What the demo's study cuts and its models learn to do without (edge dropout): every route
# between the modalities, the direct cross-modal edges and the detour through CLS.
DEMO_CUT = "cross_modal | from_cls"
TRAINING_FLAGS = ("dataset", "root", "subjects", "epochs", "preset")  # study run/check overrides
# commands whose --out is a folder (`windows` writes one .h5 file)
FOLDER_OUT_COMMANDS = ("demo", "train", "study", "synth", "inspect", "pretrain", "finetune")


# ----------------------------------------------------------------------------- helpers


def _output_folder(path: str | Path, flag: str = "--out") -> Path:
    """``path`` as an output folder, new or existing: a file there, or on the way there, is an
    `ArgumentError` naming it (else the command fails later with a raw OS error, or after
    minutes of work).

    >>> import tempfile
    >>> _output_folder(tempfile.mkdtemp()).is_dir()
    True
    >>> _output_folder(Path(tempfile.mkstemp()[1]) / "models")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: --out ...models: ... is a file, so no folder can be made in it...
    """
    path = Path(path)
    accepted = f"{flag} must be a folder (new or existing): choose another path"
    if path.exists() and not path.is_dir():
        raise ArgumentError(f"{flag} {path} is a file; {accepted}")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ArgumentError(
            f"{flag} {path}: {parent} is a file, so no folder can be made in it; {accepted}"
        )
    return path


def _print_table(rows: list[dict], columns: list[str], floatfmt: str = ".3f") -> None:
    def fmt(v):
        return format(v, floatfmt) if isinstance(v, float) else str(v)

    cells = [[fmt(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))


def _data_source(args):
    from emg_lens.data.datasets import data_source, dataset_preprocess
    from emg_lens.data.synthetic import SyntheticSpec

    preprocess = dataset_preprocess(
        args.dataset,
        segment=args.segment
        if args.segment in ("transient", "steady", "full")
        else tuple(float(v) for v in args.segment.split(",")),
        window=args.window,
        step=args.step,
    )
    return data_source(
        args.dataset,
        root=args.root,
        synthetic=SyntheticSpec(n_subjects=args.n_subjects, seed=args.seed),
        preprocess=preprocess,
        exercises=tuple(args.exercises),
    )


def _subject_ids(args) -> list[int]:
    from emg_lens.data.datasets import available_subjects, data_source
    from emg_lens.data.synthetic import SyntheticSpec

    if args.subjects:
        return list(args.subjects)
    synthetic = SyntheticSpec(n_subjects=args.n_subjects)
    return available_subjects(data_source(args.dataset, root=args.root, synthetic=synthetic))


# ----------------------------------------------------------------------------- commands


def cmd_train(args) -> list[dict]:
    from emg_lens import models
    from emg_lens.data.datasets import load_subject
    from emg_lens.train import TrainConfig, train_subjects

    source = _data_source(args)
    subjects = [load_subject(source, s) for s in _subject_ids(args)]
    model_cls = getattr(models, args.architecture)
    train_cfg = TrainConfig(
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=not args.quiet,
    )
    rows = train_subjects(subjects, model_cls, args.preset, train_cfg, args.out, data_source=source)
    _print_table(rows, ["subject", "train_accuracy", "test_accuracy"])
    return rows


def cmd_evaluate(args) -> list[dict]:
    from emg_lens.checkpoints import load_checkpoint, read_checkpoint_info
    from emg_lens.data.datasets import load_subject
    from emg_lens.studies.runner import find_models
    from emg_lens.train import accuracy

    rows = []
    for subject, path in find_models(args.models).items():
        meta = read_checkpoint_info(path)["metadata"]
        data = load_subject(meta["data_source"], subject)
        model = load_checkpoint(path)
        rows.append(
            {
                "subject": subject,
                "n_test": len(data.y_test),
                "chance": 1 / data.n_classes,
                "test_accuracy": accuracy(model, data.X_test, data.y_test),
            }
        )
    _print_table(rows, ["subject", "n_test", "chance", "test_accuracy"])
    mean = sum(r["test_accuracy"] for r in rows) / len(rows)
    print(f"mean test accuracy over {len(rows)} subjects: {mean:.3f}")
    return rows


def _training_overrides(args, spec) -> dict:
    """The [data]/[train] overrides given on the command line; refused for ablation studies."""
    from emg_lens.studies import TrainingStudySpec

    given = {k: vars(args).get(k) for k in TRAINING_FLAGS if vars(args).get(k) is not None}
    if given and not isinstance(spec, TrainingStudySpec):
        flags = " ".join(f"--{k}" for k in given)
        raise EmgLensError(
            f"{flags}: only for training studies (kind = 'training'); {spec.name} "
            "is an ablation study of trained models"
        )
    return given


def cmd_study_run(args):
    from emg_lens.studies import TrainingStudySpec, load_spec, run_study, run_training_study

    spec = load_spec(args.spec)
    overrides = _training_overrides(args, spec)
    if isinstance(spec, TrainingStudySpec):
        if args.models:
            raise EmgLensError(f"--models: training study {spec.name} trains its own models")
        spec = spec.with_overrides(overrides)
        out = Path(args.out or Path("runs/studies") / spec.name)
        result = run_training_study(spec, out_dir=out, progress=not args.quiet)
        print(f"\n{result.header()}\n")
        print(result.table1().to_string())
        print(f"\n{result.comparisons().to_string(index=False, float_format='{:.3g}'.format)}")
        print(f"\nwrote {out}/summary.md, summary.csv, per_subject.csv and comparison.png/svg")
        return result
    out = Path(args.out or Path("runs/studies") / spec.name)
    result = run_study(
        spec,
        models=args.models,
        out_dir=out,
        progress=not args.quiet,
        allow_code=args.allow_code,
    )
    stale = f" ({result.stale} of other provenance)" if result.stale else ""
    print(f"cells: {result.reused} reused, {result.recomputed} recomputed{stale}")
    print(
        f"\n{spec.name}: baseline {spec.metric} {result.baseline.mean():.3f} over "
        f"{len(result.baseline)} subjects ({spec.stats.test}, {spec.stats.correction})"
    )
    print(result.table3().to_string(index=False))
    print(result.power_note())
    print(f"\nwrote {out}/summary.md, summary.csv, per_subject.csv and figures (PNG, SVG)")
    return result


def cmd_study_check(args) -> None:
    from emg_lens.checkpoints import read_checkpoint_info
    from emg_lens.studies import (
        TrainingStudySpec,
        check_models,
        expand_grid,
        find_models,
        load_spec,
    )
    from emg_lens.studies.code import describe_code

    spec = load_spec(args.spec)
    overrides = _training_overrides(args, spec)
    if isinstance(spec, TrainingStudySpec):
        spec = spec.with_overrides(overrides)
        rows = check_models(spec)
        subjects = "all" if spec.data.subjects is None else list(spec.data.subjects)
        print(
            f"{spec.name}: training study on {spec.data.dataset} subjects {subjects}; "
            f"{len(spec.cells([0]))} models per subject (preset {spec.preset!r}, "
            f"{spec.train.epochs} epochs); reference input {spec.reference!r}"
        )
        _print_table(rows, ["architecture", "input", "trials", "channels", "tokens", "parameters"])
        return
    print(f"{spec.name}: {len(spec.interventions)} interventions, modes {list(spec.layers.modes)}")
    code = spec.code_files()  # located and hashed, never executed
    if code:
        print(
            f"Python code this study runs (only with `study run --allow-code`):\n"
            f"{describe_code(code)}"
        )
    try:
        cfg = read_checkpoint_info(next(iter(find_models(args.models or spec.models).values())))
        n_layers, n_heads = cfg["config"]["n_layers"], cfg["config"]["n_heads"]
        source = "the models' size"
    except EmgLensError:
        n_layers, n_heads = args.layers, args.heads
        source = f"--layers {n_layers} --heads {n_heads} (no models found)"
    grid = expand_grid(spec, n_layers, n_heads)
    effects = len({c.effect for c in grid})
    print(f"grid for {source}: {len(grid)} conditions per subject, {effects} distinct effects")
    _print_table(
        [c.row() for c in grid], ["intervention", "mode", "layer", "layers", "heads", "key"]
    )


def cmd_synth(args) -> None:
    from emg_lens.data.ninapro import write_ninapro_db2
    from emg_lens.data.synthetic import SyntheticSpec, generate_recordings
    from emg_lens.data.synthetic_hdsemg import SyntheticHDsEMGSpec, write_synthetic_hdsemg

    # Unset options keep each spec's own defaults.
    options = {"n_subjects": args.n_subjects, "seed": args.seed}
    if args.movement_seconds is not None:
        options["movement_seconds"] = args.movement_seconds
    if args.format == "hdsemg":
        if getattr(args, "n_gestures", None) is not None:
            options["n_gestures"] = args.n_gestures
        spec = SyntheticHDsEMGSpec(**options)
        for subject in range(1, spec.n_subjects + 1):  # one subject in memory at a time
            print(f"wrote {write_synthetic_hdsemg(spec, args.out, [subject])[0]}")
        return
    if getattr(args, "n_gestures", None) is not None:
        raise ArgumentError(
            "--n-gestures applies to --format hdsemg only; the ninapro-db2 format takes "
            "SyntheticSpec's gesture kinds"
        )
    spec = SyntheticSpec(**options)
    for rec in generate_recordings(spec):
        path = write_ninapro_db2(rec, args.out, exercise="B")
        print(f"wrote {path}")


def cmd_inspect(args):
    from emg_lens.inspect.report import inspect_checkpoint

    report = inspect_checkpoint(args.checkpoint, n_windows=args.n_windows)
    written = report.save(args.out)
    print(report.summary())
    print(f"\nwrote {len(written)} files (CSV tables, PNG and SVG figures) to {args.out}")
    return report


def cmd_demo(args):
    """Planted synthetic data -> one IsoNet per subject -> a study of the mean-pooled head ->
    what was planted vs what the study found. Returns the `StudyResult` and the
    `planted_findings` table."""
    from emg_lens.config import EncoderConfig
    from emg_lens.data.datasets import data_source, load_subject
    from emg_lens.data.synthetic import demo_setup, gesture_kinds
    from emg_lens.models import IsoNet
    from emg_lens.studies import load_spec, run_study
    from emg_lens.studies.planted import format_findings, kind_groups, planted_findings
    from emg_lens.train import TrainConfig, train_subjects

    t0 = time.time()
    root = Path(args.out)
    synthetic, preprocess = demo_setup(args.n_subjects, args.seed)
    source = data_source("synthetic", synthetic=synthetic, preprocess=preprocess)
    print(
        f"[1/4] planted synthetic recordings for {args.n_subjects} subjects: "
        f"{synthetic.n_emg} sEMG electrodes, {synthetic.n_acc_sensors} three-axis "
        f"accelerometers; {synthetic.n_emg_gestures} sEMG-only, {synthetic.n_acc_gestures} "
        f"ACC-only and {synthetic.n_interaction_gestures} interaction gestures (only sEMG and "
        f"ACC together tell those apart); {synthetic.n_repetitions} repetitions"
    )
    data = [load_subject(source, s) for s in range(1, args.n_subjects + 1)]
    train_cfg = TrainConfig(
        epochs=args.epochs,
        lr=3e-3,
        anneal_fraction=1.0,
        seed=args.seed,
        progress=not args.quiet,
        edge_dropout=0.5,
        dropout_edges=DEMO_CUT,
    )
    print(
        f"[2/4] training one {DEMO_MODEL['n_layers']}-layer IsoNet per subject ({args.epochs} "
        f"epochs), with `{DEMO_CUT}` cut in every layer for a random half of the training "
        "windows: so the models can tell the single-modality gestures apart without those "
        "edges, and the interaction gestures, by construction of the data, cannot be"
    )
    model_cfg = EncoderConfig.preset("demo", **DEMO_MODEL, seed=args.seed)
    rows = train_subjects(data, IsoNet, model_cfg, train_cfg, root / "models", data_source=source)
    print("test accuracy of the CLS head (the study below scores the mean-pooled head):")
    _print_table(rows, ["subject", "train_accuracy", "test_accuracy"])
    spec = load_spec(DEMO_STUDY)
    print(f"[3/4] the study {DEMO_STUDY.name}: {spec.description}")
    result = run_study(spec, models=root / "models", out_dir=root / "study", progress=False)
    print(
        f"\n{spec.name}: baseline {spec.metric} ({spec.return_type}) "
        f"{result.baseline.mean():.3f} over {len(result.baseline)} subjects "
        f"({spec.stats.test}, {spec.stats.correction} per {spec.stats.family})"
    )
    print(result.table3().to_string(index=False))
    print(result.power_note())
    print("\n[4/4] planted vs found")
    groups = kind_groups(gesture_kinds(synthetic), data[0].classes)
    findings = planted_findings(result, groups)
    print(format_findings(findings))
    print(f"\ndemo finished in {time.time() - t0:.0f} s; tables and figures in {root / 'study'}")
    return result, findings


# ----------------------------------------------------------------------------- TinyMyo recipes

# "--preset small": a TinyMyo that pretrains in seconds on a CPU; "tinymyo" is the published size.
SMALL_TINYMYO = {"d_model": 32, "d_head": 8, "n_heads": 4, "d_mlp": 64, "n_layers": 2}


def _tinymyo_windows(args, *, labeled_only: bool):
    """(train, validation, n_classes) from ``--windows FILE.h5`` (a random held-out fraction)
    or synthetic sEMG (split by repetition: 2 and 5 held out)."""
    from emg_lens.train.inputs import labeled_subset, random_holdout, synthetic_windows

    if args.windows:
        from emg_lens.data.windows import WindowStore

        data, n_classes = WindowStore(args.windows), None
        if labeled_only:
            data, n_classes = labeled_subset(data)
        return (*random_holdout(data, args.val_fraction, seed=args.seed), n_classes)
    windows = synthetic_windows(_synthetic_spec(args), window=args.window, step=args.step)
    return (*windows.split(labeled_only=labeled_only), windows.n_classes)


def _synthetic_spec(args):
    """Synthetic sEMG whose gestures sEMG alone tells apart (``--n-subjects``, ...)."""
    from emg_lens.data.synthetic import SyntheticSpec

    return SyntheticSpec(
        n_subjects=args.n_subjects,
        n_emg_gestures=args.n_gestures,
        n_acc_gestures=0,  # gestures that sEMG alone tells apart
        n_interaction_gestures=0,
        n_acc_sensors=1,  # only the sEMG channels are used
        movement_seconds=args.movement_seconds,
        seed=args.seed,
    )


def cmd_windows(args):
    """A TinyMyo window store from emg2pose, NinaPro DB5/DB6/DB7 or synthetic sEMG."""
    from emg_lens.data.datasets import build_window_store
    from emg_lens.data.windows import TinyMyoPreprocess, WindowStore

    path = build_window_store(
        args.source,
        args.out,
        root=args.root,
        subjects=args.subjects,
        split=args.split,
        normalize=args.normalize,
        preprocess=TinyMyoPreprocess(window=args.window, step=args.step),
        train_repetitions=tuple(args.train_repetitions),
        test_repetitions=tuple(args.test_repetitions),
        synthetic=_synthetic_spec(args) if args.source == "synthetic" else None,
        compression=None if args.compression == "none" else args.compression,
        progress=not args.quiet,
    )
    store = WindowStore(path)
    labelled = int((store.labels >= 0).sum())
    print(
        f"wrote {path}: {len(store)} windows [{store.n_channels} x {store.window}] of subjects "
        f"{store.subjects}, {labelled} labelled, {store.meta['preprocess']['normalize']} "
        f"normalised, from {len(store.meta['sessions'])} recordings"
    )
    return store


def _recipe_options(args) -> dict:
    """The options `PretrainConfig` and `FinetuneConfig` share."""
    return {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "warmup_epochs": args.warmup_epochs,
        "seed": args.seed,
        "progress": not args.quiet,
    }


def cmd_pretrain(args):
    from emg_lens.config import EncoderConfig
    from emg_lens.models import TinyMyo
    from emg_lens.train import PretrainConfig, evaluate_masked_loss, pretrain
    from emg_lens.train.distributed import is_main_process

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
        _print_table(rows, ["epoch", "train_loss", "heldout_masked_loss"], ".4f")
        print(f"wrote {args.out}")
    return history


def cmd_finetune(args):
    from emg_lens.checkpoints import read_checkpoint_info
    from emg_lens.train import FinetuneConfig, finetune
    from emg_lens.train.distributed import is_main_process

    if args.window is None:  # synthetic windows as long as the pretrained model's
        args.window = read_checkpoint_info(args.checkpoint)["config"]["n_samples"]
    recipe = FinetuneConfig(
        **_recipe_options(args), patience=args.patience, linear_probe=args.linear_probe
    )
    if args.per_subject:
        return _finetune_per_subject(args, recipe)
    if args.subjects:
        raise ArgumentError("--subjects selects subjects for --per-subject fine-tuning only")
    train, val, n_classes = _tinymyo_windows(args, labeled_only=True)
    n_classes = args.n_classes or n_classes
    model, history = finetune(
        args.checkpoint,
        train,
        recipe,
        n_classes=n_classes,
        val_data=val,
        out=args.out,
        device=args.device,
    )
    if is_main_process():
        mode = "linear probe" if args.linear_probe else "fine-tuning"
        print(f"TinyMyo {mode} from {args.checkpoint}: {len(train)} windows, {len(val)} held out")
        rows = [
            {"epoch": i + 1, "train_loss": loss, "val_accuracy": acc}
            for i, (loss, acc) in enumerate(zip(history.epoch_loss, history.val_accuracy))
        ]
        _print_table(rows, ["epoch", "train_loss", "val_accuracy"], ".4f")
        best = history.val_accuracy[history.best_epoch]
        print(
            f"kept epoch {history.best_epoch + 1}: validation accuracy {best:.3f} "
            f"(chance {1 / n_classes:.3f}); wrote {args.out}"
        )
    return model, history


def _finetune_per_subject(args, recipe) -> list[dict]:
    """One classifier per subject of ``--windows`` (or synthetic sEMG), as ``OUT/subject_<N>/``."""
    from emg_lens.data.datasets import synthetic_windows_source, windows_source
    from emg_lens.train import finetune_subjects
    from emg_lens.train.distributed import is_main_process

    if args.windows:
        source = windows_source(args.windows)
    else:
        source = synthetic_windows_source(_synthetic_spec(args), window=args.window, step=args.step)
    rows = finetune_subjects(
        args.checkpoint,
        source,
        args.out,
        recipe,
        subjects=args.subjects,
        val_fraction=args.val_fraction,
        device=args.device,
    )
    if is_main_process():
        mode = "linear probe" if args.linear_probe else "fine-tuning"
        print(f"TinyMyo {mode} per subject from {args.checkpoint} ({source['dataset']})")
        columns = ["subject", "n_train", "n_test", "chance", "val_accuracy", "test_accuracy"]
        _print_table(rows, columns)
        print(f"wrote {len(rows)} checkpoints to {args.out} (emg-lens study run ... --models)")
    return rows


def _add_windows_parser(sub) -> None:
    """``emg-lens windows``."""
    from emg_lens.data.datasets import SPLIT_REPETITIONS, WINDOW_STORE_SOURCES

    p = sub.add_parser("windows", help="build a TinyMyo window store (HDF5) from a dataset")
    p.add_argument("--source", required=True, choices=WINDOW_STORE_SOURCES)
    p.add_argument("--root", help="dataset folder (all but synthetic)")
    p.add_argument("--out", required=True, help="the .h5 window store to write")
    p.add_argument(
        "--split",
        nargs="+",
        help="emg2pose: metadata.csv splits (train, val, test); others: train and/or test "
        "repetitions (default: every window)",
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
    p.add_argument("--n-subjects", type=int, default=2, help="synthetic subjects")
    p.add_argument("--n-gestures", type=int, default=4, help="synthetic gestures")
    p.add_argument("--movement-seconds", type=float, default=2.0, help="synthetic")
    p.add_argument("--seed", type=int, default=0, help="synthetic")
    p.add_argument("--compression", default="none", choices=["none", "gzip", "lzf"])
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_windows)


def _add_tinymyo_parsers(sub) -> None:
    """``emg-lens pretrain`` and ``emg-lens finetune``."""

    def data_args(p: argparse.ArgumentParser, window_default: int | None) -> None:
        g = p.add_argument_group("data: a window store, or synthetic sEMG (the default)")
        g.add_argument("--windows", help="an HDF5 window store (emg_lens.data.windows)")
        g.add_argument("--val-fraction", type=float, default=0.1, help="store windows held out")
        g.add_argument("--n-subjects", type=int, default=1, help="synthetic subjects")
        g.add_argument("--n-gestures", type=int, default=4, help="synthetic gestures")
        g.add_argument("--movement-seconds", type=float, default=1.0, help="synthetic")
        g.add_argument(
            "--window",
            type=int,
            default=window_default,
            help="synthetic samples per window, a multiple of 20"
            + (" (default: the checkpoint's)" if window_default is None else ""),
        )
        g.add_argument("--step", type=int, default=100, help="synthetic samples between windows")

    def recipe_args(p: argparse.ArgumentParser, epochs: int, published: dict) -> None:
        """The options `_recipe_options` reads, and where the model lives."""
        p.add_argument("--out", required=True, help="checkpoint folder to write")
        p.add_argument("--epochs", type=int, default=epochs, help=f"(pub.: {published['epochs']})")
        p.add_argument("--batch-size", type=int, default=32, help="per process")
        p.add_argument("--lr", type=float, default=1e-3, help=f"peak lr (pub.: {published['lr']})")
        p.add_argument(
            "--warmup-epochs", type=int, default=1, help=f"(pub.: {published['warmup']})"
        )
        p.add_argument("--device", default="cpu", help="cpu or cuda (nccl under torchrun)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("pretrain", help="masked-signal pretraining of a TinyMyo")
    data_args(p, 100)
    recipe_args(p, 5, {"epochs": 50, "lr": 1e-4, "warmup": 10})
    p.add_argument(
        "--preset", default="small", choices=["small", "tinymyo"], help="small, or published"
    )
    p.add_argument("--layers", type=int, help="override the preset's number of layers")
    p.add_argument("--accumulate", type=int, default=1, help="micro-batches per step (pub.: 8)")
    p.add_argument("--mask-ratio", type=float, default=0.5, help="fraction of patches masked")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("finetune", help="fine-tune (or linear-probe) a pretrained TinyMyo")
    data_args(p, None)
    recipe_args(p, 10, {"epochs": 50, "lr": 5e-4, "warmup": 5})
    p.add_argument("--checkpoint", required=True, help="the pretrained checkpoint folder")
    p.add_argument("--n-classes", type=int, help="default: from the labels")
    p.add_argument("--patience", type=int, default=7, help="early-stopping epochs")
    p.add_argument("--linear-probe", action="store_true", help="freeze the encoder")
    p.add_argument(
        "--per-subject",
        action="store_true",
        help="one classifier per subject (train/test repetitions 1 3 4 6 / 2 5), saved as "
        "OUT/subject_<N>/ for `emg-lens study run --models OUT`",
    )
    p.add_argument("--subjects", nargs="+", type=int, help="--per-subject: these subjects")
    p.set_defaults(func=cmd_finetune)


# ----------------------------------------------------------------------------- parser


def _add_training_study_args(p: argparse.ArgumentParser) -> None:
    """Overrides of a training study's [data]/[train] keys, e.g. to shrink it for a smoke run."""
    g = p.add_argument_group(
        "training studies (kind = 'training')",
        "override the spec's [data] and [train] keys; a smoke run: --epochs 1 --preset tiny "
        "--subjects 1 2 3",
    )
    g.add_argument(
        "--dataset", choices=["synthetic", "ninapro-db2", "hdsemg"], help="[data] (real: --root)"
    )
    g.add_argument("--root", help="[data] dataset folder (real datasets)")
    g.add_argument("--subjects", nargs="+", type=int, help="[data] subjects to train")
    g.add_argument("--epochs", type=int, help="[train] epochs per model")
    g.add_argument("--preset", help="[train] EncoderConfig preset (tiny, demo, paper)")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="synthetic", choices=["synthetic", "ninapro-db2", "hdsemg"])
    p.add_argument("--root", help="dataset folder (real datasets)")
    p.add_argument("--exercises", nargs="+", default=["B"], help="NinaPro exercises (B, C, D)")
    p.add_argument("--subjects", nargs="+", type=int, help="subjects (default: all found)")
    p.add_argument("--n-subjects", type=int, default=6, help="synthetic subjects")
    p.add_argument(
        "--segment",
        default="steady",
        help="transient | steady | full | START,STOP seconds into each repetition",
    )
    p.add_argument("--window", type=int, default=200, help="samples per window")
    p.add_argument("--step", type=int, default=100, help="samples between windows")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emg-lens", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "demo", help="planted synthetic data -> IsoNet per subject -> study -> planted vs found"
    )
    p.add_argument("--out", default=str(DEMO_ROOT))
    p.add_argument(
        "--n-subjects", type=int, default=8, help="subjects (fewer than 8 cannot reach ***)"
    )
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train one model (IsoNet by default) per subject")
    _add_data_args(p)
    p.add_argument("--out", required=True, help="folder for subject_<N>/ checkpoints")
    p.add_argument(
        "--architecture",
        default="IsoNet",
        choices=list(ARCHITECTURES),
        help="model class (the paper's Table 2 zeroes modalities of HierarchicalTransformer)",
    )
    p.add_argument("--preset", default="demo", help="EncoderConfig preset (tiny, demo, paper)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--lr", type=float, default=2e-3, help="AdamW learning rate (paper: 4e-5)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="per-subject test accuracy of trained checkpoints")
    p.add_argument("--models", required=True, help="folder of subject_<N>/ checkpoints, or demo")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("study", help="run or check a declarative study (TOML/YAML)")
    study = p.add_subparsers(dest="study_command", required=True)
    q = study.add_parser("run", help="run a study and write tables and figures")
    q.add_argument("spec")
    q.add_argument("--models", help="folder of subject_<N>/ checkpoints or demo (default: spec)")
    q.add_argument("--out", help="output folder (default: runs/studies/<name>); resumable")
    q.add_argument("--quiet", action="store_true")
    q.add_argument(
        "--allow-code",
        action="store_true",
        help="run the Python files the study names (hook = ...); `study check` lists them",
    )
    _add_training_study_args(q)
    q.set_defaults(func=cmd_study_run)
    q = study.add_parser("check", help="validate a study and show its expanded grid")
    q.add_argument("spec")
    q.add_argument("--models", help="models whose size the grid is expanded for")
    q.add_argument("--layers", type=int, default=5, help="layers, when no models are found")
    q.add_argument("--heads", type=int, default=8, help="heads, when no models are found")
    _add_training_study_args(q)
    q.set_defaults(func=cmd_study_check)

    p = sub.add_parser("synth", help="write synthetic recordings in a real dataset format")
    p.add_argument("--format", default="ninapro-db2", choices=["ninapro-db2", "hdsemg"])
    p.add_argument("--out", required=True)
    p.add_argument("--n-subjects", type=int, default=6)
    p.add_argument(
        "--movement-seconds", type=float, help="per repetition (default: 2.0 DB2, 1.5 HD-sEMG)"
    )
    p.add_argument("--n-gestures", type=int, help="hdsemg only: gestures, 2..65 (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("inspect", help="attention flow, head importance, attribution, shift")
    p.add_argument("--checkpoint", required=True, help="a checkpoint folder (subject_<N>/)")
    p.add_argument("--out", required=True, help="folder for the CSV tables and figures")
    p.add_argument("--n-windows", type=int, default=256, help="test windows, evenly spaced")
    p.set_defaults(func=cmd_inspect)
    _add_windows_parser(sub)
    _add_tinymyo_parsers(sub)
    return parser


def run(argv: list[str] | None = None) -> Any:
    """Parse ``argv`` and run the command, returning what it returns; a bad input raises its
    `EmgLensError` (`main` prints it and exits with status 2).

    >>> import tempfile
    >>> run(["synth", "--out", tempfile.mkstemp()[1]])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: --out ... is a file; ...
    """
    args = build_parser().parse_args(argv)
    if args.command in FOLDER_OUT_COMMANDS and getattr(args, "out", None) is not None:
        _output_folder(args.out)
    return args.func(args)


def main(argv: list[str] | None = None) -> int:
    try:
        run(argv)
    except EmgLensError as exc:
        print(f"emg-lens: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
