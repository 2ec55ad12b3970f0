"""The ``emg-lens`` command: demo, train, evaluate, study, synth.

Run ``emg-lens <command> --help`` for each command's options.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from emg_lens.errors import EmgLensError

DEMO_ROOT = Path("runs/demo")
STUDIES = Path(__file__).resolve().parent.parent / "studies"


# ----------------------------------------------------------------------------- helpers


def _print_table(rows: list[dict], columns: list[str], floatfmt: str = ".3f") -> None:
    def fmt(v):
        return format(v, floatfmt) if isinstance(v, float) else str(v)

    cells = [[fmt(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))


def _data_source(args):
    from emg_lens.data.datasets import data_source
    from emg_lens.data.preprocess import PreprocessSpec
    from emg_lens.data.synthetic import SyntheticSpec

    preprocess = PreprocessSpec(
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
    if args.subjects:
        return list(args.subjects)
    if args.dataset == "synthetic":
        return list(range(1, args.n_subjects + 1))
    folders = Path(args.root).glob("*_s*")
    found = sorted(
        int(p.name.rsplit("_s", 1)[1]) for p in folders if p.name.rsplit("_s", 1)[1].isdigit()
    )
    if not found:
        raise EmgLensError(f"--root {args.root}: no subject folders found; pass --subjects")
    return found


# ----------------------------------------------------------------------------- commands


def cmd_train(args) -> list[dict]:
    from emg_lens.config import EncoderConfig
    from emg_lens.data.datasets import load_subject
    from emg_lens.models import IsoNet
    from emg_lens.train import TrainConfig, train_subjects

    source = _data_source(args)
    subjects = [load_subject(source, s) for s in _subject_ids(args)]
    cfg = EncoderConfig.preset(args.preset, seed=args.seed)
    train_cfg = TrainConfig(
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=not args.quiet,
    )
    rows = train_subjects(subjects, IsoNet, cfg, train_cfg, args.out, data_source=source)
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


def cmd_study_run(args):
    from emg_lens.studies import load_spec, run_study

    spec = load_spec(args.spec)
    out = Path(args.out or Path("runs/studies") / spec.name)
    result = run_study(spec, models=args.models, out_dir=out, progress=not args.quiet)
    print(
        f"\n{spec.name}: baseline {spec.metric} {result.baseline.mean():.3f} over "
        f"{len(result.baseline)} subjects ({spec.stats.test}, {spec.stats.correction})"
    )
    print(result.table3().to_string(index=False))
    print(f"\nwrote {out}/summary.md, summary.csv, per_subject.csv and figures (PNG, SVG)")
    return result


def cmd_study_check(args) -> None:
    from emg_lens.checkpoints import read_checkpoint_info
    from emg_lens.studies import expand_grid, find_models, load_spec

    spec = load_spec(args.spec)
    print(f"{spec.name}: {len(spec.interventions)} interventions, modes {list(spec.layers.modes)}")
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

    if args.format != "ninapro-db2":
        raise EmgLensError(f"--format {args.format!r} is not available yet; use ninapro-db2")
    spec = SyntheticSpec(
        n_subjects=args.n_subjects, seed=args.seed, movement_seconds=args.movement_seconds
    )
    for rec in generate_recordings(spec):
        path = write_ninapro_db2(rec, args.out, exercise="B")
        print(f"wrote {path}")


def cmd_demo(args) -> None:
    """Synthetic data in the NinaPro DB2 format -> one IsoNet per subject -> the Table-3 study."""
    t0 = time.time()
    root = Path(args.out)
    print(
        f"[1/4] synthetic NinaPro-DB2-format recordings for {args.n_subjects} subjects "
        f"-> {root / 'data'}"
    )
    cmd_synth(
        argparse.Namespace(
            format="ninapro-db2",
            out=root / "data",
            movement_seconds=1.5,
            n_subjects=args.n_subjects,
            seed=args.seed,
        )
    )
    print("[2/4] training one IsoNet per subject (dual-head annealed loss)")
    train_args = argparse.Namespace(
        dataset="ninapro-db2",
        root=root / "data",
        exercises=["B"],
        subjects=None,
        n_subjects=args.n_subjects,
        seed=args.seed,
        segment="0.5,1.5",
        window=200,
        step=100,
        preset="demo",
        epochs=args.epochs,
        lr=2e-3,
        batch_size=64,
        out=root / "models",
        quiet=args.quiet,
    )
    cmd_train(train_args)
    print("[3/4] evaluating")
    cmd_evaluate(argparse.Namespace(models=root / "models"))
    print(f"[4/4] the IsoNet Table-3 study ({STUDIES / 'isonet_table3.toml'})")
    cmd_study_run(
        argparse.Namespace(
            spec=STUDIES / "isonet_table3.toml",
            models=root / "models",
            out=root / "study",
            quiet=args.quiet,
        )
    )
    print(f"\ndemo finished in {time.time() - t0:.0f} s; figures in {root / 'study'}")


# ----------------------------------------------------------------------------- parser


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

    p = sub.add_parser("demo", help="synthetic data -> IsoNet per subject -> Table-3 study")
    p.add_argument("--out", default=str(DEMO_ROOT))
    p.add_argument("--n-subjects", type=int, default=6)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train one IsoNet per subject")
    _add_data_args(p)
    p.add_argument("--out", required=True, help="folder for subject_<N>/ checkpoints")
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
    q.set_defaults(func=cmd_study_run)
    q = study.add_parser("check", help="validate a study and show its expanded grid")
    q.add_argument("spec")
    q.add_argument("--models", help="models whose size the grid is expanded for")
    q.add_argument("--layers", type=int, default=5, help="layers, when no models are found")
    q.add_argument("--heads", type=int, default=8, help="heads, when no models are found")
    q.set_defaults(func=cmd_study_check)

    p = sub.add_parser("synth", help="write synthetic recordings in a real dataset format")
    p.add_argument("--format", default="ninapro-db2", choices=["ninapro-db2", "hdsemg"])
    p.add_argument("--out", required=True)
    p.add_argument("--n-subjects", type=int, default=6)
    p.add_argument("--movement-seconds", type=float, default=2.0, help="per repetition")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_synth)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except EmgLensError as exc:
        print(f"emg-lens: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
