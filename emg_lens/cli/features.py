"""``emg-lens features``: a sparse autoencoder on one layer's channel tokens of a checkpoint,
its features' maps on the body, classes and ablations, as tables, figures and report.html."""

from __future__ import annotations

import argparse
from pathlib import Path

from emg_lens.cli.common import (
    add_checkpoint_arguments,
    add_command,
    load_checkpoint_windows,
    open_checkpoint,
    save_and_show,
)

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
    add_checkpoint_arguments(p, FEATURES_ROOT, "the tables, figures and weights", n_windows=512)
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
    p.set_defaults(func=cmd_features)


def cmd_features(args: argparse.Namespace):
    from emg_lens.inspect.features import FeatureConfig, train_features
    from emg_lens.studies.subjects import known_of

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
    out, builder, device = open_checkpoint(args, FEATURES_ROOT)
    print(f"loading {args.checkpoint} and its subject's windows", flush=True)
    model, data, source = load_checkpoint_windows(args, device, builder)
    print(f"training {config.n_features} features on {config.hook_name} ...", flush=True)
    train = known_of(args.checkpoint)["train_accuracy"]  # for the chance check
    features = train_features(model, data, config, source=source, train_accuracy=train)
    return save_and_show(features, out, "tables, figures, the autoencoder")
