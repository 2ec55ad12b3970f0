"""``emg-lens features``: a sparse autoencoder on one layer's channel tokens of a checkpoint,
its features' maps on the body, classes and ablations, as tables, figures and report.html."""

from __future__ import annotations

import argparse
from pathlib import Path

from emg_lens.cli.common import (
    add_command,
    add_device_argument,
    add_threads_argument,
    output_folder,
    resolve_device,
    save_and_show,
)
from emg_lens.cli.consent import add_modules_arguments, module_builder

FEATURES_ROOT = Path("runs/features")  # --out's default: FEATURES_ROOT / the checkpoint's name


def add_parser(sub) -> None:
    """``emg-lens features``."""
    p = add_command(
        sub,
        "features",
        "sparse features of one layer's channel tokens (a TopK autoencoder)",
        "Train a TopK sparse autoencoder on the residual of one layer at a checkpoint's "
        "channel tokens (its subject's training windows, from the data source its metadata "
        "records) and describe it on the test windows: reconstruction (variance explained, "
        "accuracy with the reconstruction spliced in), dead features, and per feature its "
        "top windows, mean activation per channel on the electrode placement, per gesture "
        "class, its share on each modality and what ablating it costs. The autoencoder is "
        "saved beside the tables (features.safetensors, features.json).",
    )
    p.add_argument("--checkpoint", required=True, help="a checkpoint folder (subject_<N>/)")
    p.add_argument(
        "--out",
        help=f"folder for the tables, figures and weights (default: {FEATURES_ROOT}/<the "
        "checkpoint folder's name>, e.g. runs/features/subject_1)",
    )
    p.add_argument("--layer", type=int, required=True, help="the block whose residual is read")
    p.add_argument(
        "--hook",
        default="resid_pre",
        choices=("resid_pre", "resid_mid", "resid_post"),
        help="which residual of the block",
    )
    p.add_argument("--n-features", type=int, default=64, help="features of the autoencoder")
    p.add_argument("--k", type=int, default=4, help="features active per token")
    p.add_argument("--epochs", type=int, default=30, help="passes over the training tokens")
    p.add_argument("--seed", type=int, default=0, help="seed of the autoencoder")
    p.add_argument(
        "--groups", nargs="+", help="token groups to read (default: every modality's tokens)"
    )
    p.add_argument(
        "--readout",
        default="logits",
        help="the logits scored (IsoNet: logits is the CLS head, avg_logits the mean-pooled)",
    )
    p.add_argument("--n-windows", type=int, default=512, help="test windows, evenly spaced")
    add_device_argument(p)
    add_threads_argument(p)
    add_modules_arguments(p)
    p.set_defaults(func=cmd_features)


def cmd_features(args: argparse.Namespace):
    from emg_lens.checkpoints import read_checkpoint_info
    from emg_lens.inspect.features import FeatureConfig, train_features
    from emg_lens.inspect.report import select_windows
    from emg_lens.studies.code import require_builder
    from emg_lens.studies.runner import load_entry

    config = FeatureConfig(
        layer=args.layer,
        hook=args.hook,
        n_features=args.n_features,
        k=args.k,
        epochs=args.epochs,
        seed=args.seed,
        groups=None if args.groups is None else tuple(args.groups),
        readout=args.readout,
    )
    out = output_folder(args.out or FEATURES_ROOT / Path(args.checkpoint).resolve().name)
    builder = module_builder(args)
    require_builder([args.checkpoint], builder)  # the user's modules: say what to add
    device = str(resolve_device(args.device))
    print(f"loading {args.checkpoint} and its subject's windows", flush=True)
    subject = load_entry(args.checkpoint, device, builder)
    data = select_windows(subject.data, args.n_windows)
    print(f"training {config.n_features} features on {config.hook_name} ...", flush=True)
    source = read_checkpoint_info(args.checkpoint)["metadata"].get("data_source")
    features = train_features(subject.model, data, config, source=source)
    return save_and_show(features, out, "tables, figures, the autoencoder")
