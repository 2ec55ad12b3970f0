"""``emg-lens demo``: planted synthetic data -> one IsoNet per subject -> a study of the
mean-pooled head -> what was planted vs what the study found."""

from __future__ import annotations

import argparse
import functools
import time
from importlib import resources
from pathlib import Path

from emg_lens import DEMO_CUT, DEMO_EPOCHS, DEMO_MODEL, DEMO_TRAIN
from emg_lens.cli.common import add_command, add_threads_argument, print_table, show_progress

DEMO_ROOT = Path("runs/demo")
DEMO_STUDY = resources.files("emg_lens") / "studies" / "planted_demo.toml"
"""The study the demo runs: package data (``emg_lens/studies/planted_demo.toml``), so that an
installed wheel has it too, not only a source checkout. An `importlib.resources.abc.Traversable`:
`importlib.resources.as_file` gives it a path on disk."""


def add_parser(sub) -> None:
    """``emg-lens demo``."""
    p = add_command(
        sub,
        "demo",
        "planted synthetic data -> IsoNet per subject -> study -> planted vs found",
        "Generate synthetic sEMG + ACC with planted cross-modal structure, train one IsoNet "
        "per subject, run the study emg_lens/studies/planted_demo.toml (shipped in the "
        "package) on them and compare what the study found with what was planted.",
    )
    p.add_argument("--out", default=str(DEMO_ROOT), help="folder for models/ and study/")
    p.add_argument(
        "--n-subjects",
        type=int,
        default=8,
        help="subjects (the table needs 8 for ***; the claims' paired test gives ** at most "
        "with 8, and needs 6 for *)",
    )
    p.add_argument("--epochs", type=int, default=DEMO_EPOCHS, help="training epochs per model")
    p.add_argument(
        "--refits",
        type=int,
        default=DEMO_TRAIN["refits"],
        help="train a model again from another initialisation while its training accuracy stays "
        f"below {DEMO_TRAIN['refit_below']} (a plateau), up to this many more times",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the models")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_threads_argument(p)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace):
    """Planted synthetic data -> one IsoNet per subject -> a study of the mean-pooled head ->
    what was planted vs what the study found: the study file's declared claims, tested by the
    run (``claims.csv``, the top of ``summary.md`` and ``report.html``). Returns the
    `StudyResult` and its claims table (`StudyResult.claims`)."""
    import torch

    from emg_lens.config import EncoderConfig
    from emg_lens.data.datasets import data_source, load_subject
    from emg_lens.data.synthetic.emg_acc import demo_setup
    from emg_lens.models import IsoNet
    from emg_lens.stats.chance import chance_console
    from emg_lens.studies import load_spec, run_study
    from emg_lens.studies.ablation.planted import format_findings
    from emg_lens.studies.ablation.summary import correction_phrase, legend
    from emg_lens.train import TrainConfig, train_subjects
    from emg_lens.train.baseline import below_baseline

    say = functools.partial(print, flush=True)  # a log or a pipe sees each line as it happens
    t0 = time.time()
    root = Path(args.out)
    synthetic, preprocess = demo_setup(args.n_subjects, args.seed)
    source = data_source("synthetic", synthetic=synthetic, preprocess=preprocess)
    say(
        f"[1/4] planted synthetic recordings for {args.n_subjects} subjects: "
        f"{synthetic.n_emg} sEMG electrodes, {synthetic.n_acc_sensors} three-axis "
        f"accelerometers; {synthetic.n_emg_gestures} sEMG-only, {synthetic.n_acc_gestures} "
        f"ACC-only and {synthetic.n_interaction_gestures} interaction gestures (only sEMG and "
        f"ACC together tell those apart); {synthetic.n_repetitions} repetitions"
    )
    data = []
    for subject in range(1, args.n_subjects + 1):  # seconds each on a busy machine: say so
        data.append(load_subject(source, subject))
        say(
            f"  subject {subject} of {args.n_subjects}: {len(data[-1].X_train)} training and "
            f"{len(data[-1].X_test)} test windows; {time.time() - t0:.0f} s so far"
        )
    train_cfg = TrainConfig(
        epochs=args.epochs,
        seed=args.seed,
        progress=show_progress(args),
        **{**DEMO_TRAIN, "refits": args.refits},
    )
    say(
        f"[2/4] training one {DEMO_MODEL['n_layers']}-layer IsoNet per subject ({args.epochs} "
        f"epochs), with `{DEMO_CUT}` cut in every layer for a random half of the training "
        "windows: so the models can tell the single-modality gestures apart without those "
        "edges, and the interaction gestures, by construction of the data, cannot be; a model "
        f"whose training accuracy stays below {train_cfg.refit_below} (a plateau: one XOR bit "
        "of the interaction gestures unlearned) is trained again from another initialisation, "
        f"up to {train_cfg.refits} more times; on {torch.get_num_threads()} CPU thread(s) "
        "(--threads)"
    )
    model_cfg = EncoderConfig.preset("demo", **DEMO_MODEL, seed=args.seed)
    rows = train_subjects(  # it says how far it is: subject by subject, epochs on a log
        data,
        IsoNet,
        model_cfg,
        train_cfg,
        root / "models",
        data_source=source,
        report=lambda line: say(f"  {line}; {time.time() - t0:.0f} s so far"),
    )
    print("test accuracy of the CLS head (the study below scores the mean-pooled head):")
    print_table(rows, ["subject", "attempts", "train_accuracy", "test_accuracy"])
    with resources.as_file(DEMO_STUDY) as study_file:  # a real file unless zip-imported
        spec = load_spec(study_file)
    say(f"[3/4] the study {DEMO_STUDY.name}: {spec.description}")
    started = time.time()
    result = run_study(spec, models=root / "models", out_dir=root / "study", progress=False)
    assert result is not None  # one process, rank 0: it returns the result
    say(
        f"  {len(result.baseline)} subjects evaluated in {time.time() - started:.0f} s; "
        f"{time.time() - t0:.0f} s so far"
    )
    print(
        f"{spec.name}: baseline {spec.metric} ({spec.return_type}) "
        f"{result.baseline.mean():.3f} over {len(result.baseline)} subjects "
        f"({spec.stats.test}, {correction_phrase(spec.stats)})"
    )
    print(
        chance_console(result.chance(), below_baseline=below_baseline)
    )  # each model beside chance; a warning if one is not
    print(result.table3().to_string(index=False))
    print(result.power_note())
    say("[4/4] planted vs found: the study's declared claims, tested by the run")
    findings = result.claims()
    print(format_findings(findings))
    print(legend())
    say(f"  verdicts saved in {root / 'study' / 'claims.csv'} and at the top of summary.md")
    say("  how often each verdict errs on designs whose truth is known: docs/trust.md")
    say(f"demo finished in {time.time() - t0:.0f} s; tables and figures in {root / 'study'}")
    say(f"report (open in a browser): {(root / 'study' / 'report.html').resolve()}")
    return result, findings
