"""``emg-lens export``: a checkpoint, with an edge mask baked in, to an ONNX file."""

from __future__ import annotations

import argparse

from emg_lens.cli.common import add_command
from emg_lens.cli.consent import add_modules_arguments, module_builder

DESCRIPTION = """\
Write the model in a checkpoint folder to an ONNX file that runs with no hooks, with the
edges of --edges cut in the blocks of --layers (all of them by default) as constants.

The file is checked before it is kept: onnxruntime runs it on seeded signals at two batch
sizes (its batch axis is dynamic) and every output must match the PyTorch masked forward to
1e-5, else no file is written. Needs onnx and onnxruntime: pip install ".[export]" in the
emg_lens clone.

A converted nn.TransformerEncoder model (from_torch_encoder) holds your own tokenizer and
readout, which its config.json cannot rebuild: --modules FILE:FUNCTION names your function
that builds them, and --allow-code lets it run."""


def add_parser(sub) -> None:
    """``emg-lens export``."""
    p = add_command(sub, "export", "write a (masked) model to ONNX, checked", DESCRIPTION)
    p.add_argument("--checkpoint", required=True, help="checkpoint folder (config.json, ...)")
    p.add_argument("--out", required=True, help="the ONNX file to write, e.g. model.onnx")
    p.add_argument(
        "--edges", help="edge expression to cut, e.g. cross_modal (default: none, unmasked)"
    )
    p.add_argument(
        "--layers",
        nargs="+",
        type=int,
        help="blocks to cut --edges in (default: all blocks)",
    )
    p.add_argument(
        "--return-type",
        default="logits",
        help="the file's output, as model(x, return_type=...): logits; IsoNet also "
        "avg_logits, both; TinyMyo latent",
    )
    add_modules_arguments(p)
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace):
    from emg_lens.export import export_checkpoint
    from emg_lens.user_code import require_builder

    builder = module_builder(args)
    require_builder([args.checkpoint], builder)  # the user's modules: say what to add
    result = export_checkpoint(
        args.checkpoint,
        args.out,
        builder=builder,
        edges=args.edges,
        layers=args.layers,
        return_type=args.return_type,
    )
    print(f"wrote {result.summary()}")
    return result
