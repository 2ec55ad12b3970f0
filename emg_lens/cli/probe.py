"""``emg-lens probe``: what the tokens of a folder of models carry, layer by layer: linear
probes per token group (with control tasks), and interchange interventions, with and without
an edge set cut."""

from __future__ import annotations

import argparse

from emg_lens.cli.common import (
    add_command,
    add_device_argument,
    add_threads_argument,
    resolve_device,
    save_and_show,
)


def add_parser(sub) -> None:
    """``emg-lens probe``."""
    p = add_command(
        sub,
        "probe",
        "linear probes and interchange interventions on token groups, by layer",
        "For each subject's model (its test windows), a cross-validated linear probe per layer "
        "and token group predicting the gesture, beside a control task (each trial's label "
        "replaced by another's), its folds keeping each trial's windows together; optionally "
        "the interchange intervention accuracy of a token group at every layer (its interval "
        "resampling trials), and everything again with an edge set cut in every layer. With "
        "--target subject: each model applied to every subject's held-out windows, pooled, "
        "probed for the subject beside the same architecture re-initialised (the random-init "
        "null), and the gesture probe folded leave-one-subject-out.",
    )
    p.add_argument("--models", required=True, help="folder of subject_<N>/ checkpoints ('demo')")
    p.add_argument("--out", required=True, help="folder for the tables, figures and report")
    p.add_argument("--subjects", type=int, nargs="+", help="these subjects only (default: all)")
    p.add_argument(
        "--groups", nargs="+", help="token groups or edge expressions (default: every group "
        "and 'pooled', the mean of the channel tokens)",
    )  # fmt: skip
    p.add_argument("--layers", type=int, nargs="+", help="layers (default: all, and after)")
    p.add_argument("--classes", type=int, nargs="+", help="class indices to tell apart")
    p.add_argument(
        "--target", choices=("gesture", "subject"), default="gesture", help="what the probes "
        "predict: each window's gesture on its subject's model, or its subject on every "
        "subject's held-out windows pooled (beside the random-init null; the gesture then "
        "leave-one-subject-out)",
    )  # fmt: skip
    p.add_argument("--cut", help="an edge expression also cut in every layer, e.g. cross_modal")
    p.add_argument("--interchange", metavar="GROUP", help="a token group to interchange")
    p.add_argument(
        "--return-type", default="logits", help="model output the interchange reads "
        "(IsoNet: logits for its CLS head, avg_logits for its mean-pooled head)",
    )  # fmt: skip
    p.add_argument(
        "--folds", type=int, default=5, help="cross-validation folds of whole trials; where a "
        "class has fewer trials, one repetition is left out per fold instead",
    )  # fmt: skip
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the folds and control labels (and of the "
        "random-init null's weights, --target subject)",
    )  # fmt: skip
    p.add_argument("--jobs", type=int, default=1, help="processes fitting probes (-1: all cores)")
    add_device_argument(p)
    add_threads_argument(p)
    p.set_defaults(func=cmd_probe)


def cmd_probe(args: argparse.Namespace):
    from emg_lens.errors import ArgumentError, SpecError
    from emg_lens.inspect.probe_report import probe_models, probe_subjects
    from emg_lens.model_folder import find_models
    from emg_lens.studies.subjects import known_of, load_entry

    if args.target == "subject" and args.interchange:  # before any model is read
        raise ArgumentError("--interchange probes the gesture: not with --target subject")
    found = find_models(args.models)
    if args.subjects:
        missing = sorted(set(args.subjects) - set(found))
        if missing:
            raise SpecError(f"--subjects {missing} have no model in {args.models}: {sorted(found)}")
        found = {s: found[s] for s in args.subjects}
    device = resolve_device(args.device)
    subjects = {}
    for subject, path in found.items():
        entry = load_entry(path, device)
        subjects[subject] = (entry.model.eval(), entry.data)
    shared = {
        "groups": args.groups,
        "layers": args.layers,
        "classes": args.classes,
        "cut": args.cut,
        "folds": args.folds,
        "seed": args.seed,
        "n_jobs": args.jobs,
        "progress": lambda message: print(message, flush=True),
    }
    if args.target == "subject":
        return save_and_show(probe_subjects(subjects, **shared), args.out)
    report = probe_models(
        subjects,
        **shared,
        interchange_group=args.interchange,
        return_type=args.return_type,
        known={subject: known_of(path) for subject, path in found.items()},  # chance check
    )
    return save_and_show(report, args.out)
