"""What the ``emg-lens`` commands share (options, checks, loading steps, endings).

This module and every parser import only the standard library (and `emg_lens.errors`), so
``emg-lens --help`` starts in well under a second; torch, TransformerLens and the model stack
are imported inside the command that needs them. The names the parsers offer as choices come
from the registries, which import neither: datasets from `emg_lens.data.registry`, model
classes from `emg_lens.models` (whose face imports each model on first use)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from emg_lens._io import visible_controls
from emg_lens.cli.consent import add_modules_arguments, module_builder
from emg_lens.data.registry import DATASETS
from emg_lens.errors import ArgumentError, check_int, check_seed

HELP_WIDTH = 79  # descriptions are wrapped to this many columns


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions keep their line breaks; every option with a default shows it, unless its
    help already says it or there is none to show (``None``, an off switch)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = action.help or ""
        unset = action.default is None or action.default is False  # not 0, which is == False
        if unset or action.default == argparse.SUPPRESS or "default" in help_text:
            return help_text
        return super()._get_help_string(action)


def add_command(sub: Any, name: str, summary: str, description: str | None = None):
    """A subcommand parser with `HelpFormatter`; ``summary`` is its line in the parent's help
    and, unless ``description`` says more, its description (paragraphs wrapped to
    ``HELP_WIDTH``: `HelpFormatter` keeps line breaks as they are)."""
    paragraphs = (description or summary).split("\n\n")
    text = "\n\n".join(textwrap.fill(" ".join(p.split()), HELP_WIDTH) for p in paragraphs)
    return sub.add_parser(name, help=summary, description=text, formatter_class=HelpFormatter)


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars unless ``--quiet``, and only on a terminal: a bar redrawn into a log or a
    pipe is cursor-movement junk (``\\x1b[A``), so there the commands print step lines only."""
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def output_folder(path: str | Path, flag: str = "--out") -> Path:
    """``path`` as an output folder, new or existing: a file there, or on the way there, is an
    `ArgumentError` naming it (not a raw OS error, or one after minutes of work).

    >>> import tempfile
    >>> output_folder(tempfile.mkdtemp()).is_dir()
    True
    >>> output_folder(Path(tempfile.mkstemp()[1]) / "models")  # doctest: +ELLIPSIS
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


def print_table(rows: list[dict], columns: list[str], floatfmt: str = ".3f") -> None:
    """``rows`` as right-aligned columns under a header (`emg_lens.studies.check.text_table`).

    >>> print_table([{"subject": 1, "accuracy": 0.5}], ["subject", "accuracy"])
    subject  accuracy
          1     0.500
    """
    from emg_lens.studies.check import text_table

    print(text_table(rows, columns, floatfmt))


DEVICE_HELP = (
    "where the models run: cpu, cuda (cuda:N for one GPU), or auto (cuda when available); "
    "under torchrun, cuda and auto mean the GPU of the process's LOCAL_RANK"
)


def add_device_argument(p: argparse.ArgumentParser) -> None:
    """``--device cpu|cuda|cuda:N|auto`` (default ``auto``), read by `resolve_device`.

    >>> p = argparse.ArgumentParser()
    >>> add_device_argument(p)
    >>> p.parse_args(["--device", "cpu"]).device
    'cpu'
    """
    p.add_argument("--device", default="auto", metavar="{cpu,cuda,auto}", help=DEVICE_HELP)


def resolve_device(name: str, flag: str = "--device") -> Any:
    """The `torch.device` that ``--device name`` means: ``auto`` is CUDA when available, else
    the CPU; ``cuda`` under torchrun is the GPU of ``LOCAL_RANK`` (so the ranks of one node
    share its GPUs, one each). A name torch does not know, or CUDA on a machine without it,
    is an `ArgumentError` saying what is accepted (`emg_lens.config.check_device`).

    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device("gpu")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: --device = 'gpu' is not a device emg_lens loads models onto; ...
    """
    import torch  # here, not at the top: the parsers import no torch

    from emg_lens.config import DEVICES, check_device

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    check_device(name, flag, ArgumentError, accepted=f"{DEVICES}, or 'auto'")
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:  # torchrun's ranks: one GPU each
        index = int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count()
        device = torch.device("cuda", index)
    return device


def add_checkpoint_arguments(
    p: argparse.ArgumentParser, root: Path, what: str, n_windows: int
) -> None:
    """The options of a command on one checkpoint and its subject's test windows (``inspect``,
    ``features``), read by `open_checkpoint` and `load_checkpoint_windows`: ``--checkpoint``,
    ``--out`` (default ``root/<the checkpoint folder's name>``), ``--n-windows``,
    ``--device``, ``--threads``, and ``--modules`` with ``--allow-code``.

    >>> p = argparse.ArgumentParser()
    >>> add_checkpoint_arguments(p, Path("runs/look"), "the tables", 8)
    >>> args = p.parse_args(["--checkpoint", "models/subject_1"])
    >>> args.out, args.n_windows, args.device, args.threads, args.modules
    (None, 8, 'auto', None, None)
    """
    p.add_argument("--checkpoint", required=True, help="a checkpoint folder (subject_<N>/)")
    p.add_argument(
        "--out",
        help=f"folder for {what} (default: {root}/<the checkpoint folder's name>, e.g. "
        f"{root / 'subject_1'})",
    )
    p.add_argument("--n-windows", type=int, default=n_windows, help="test windows, evenly spaced")
    add_device_argument(p)
    add_threads_argument(p)
    add_modules_arguments(p)


def open_checkpoint(args: argparse.Namespace, root: Path) -> tuple[Path, Any, str]:
    """What a command of `add_checkpoint_arguments` settles before it loads anything: its
    output folder (`output_folder`), the ``--modules`` builder (run only with
    ``--allow-code``; a checkpoint holding the user's modules without one is a
    `CheckpointError` saying what to add) and the device's name (`resolve_device`).

    >>> import tempfile
    >>> from emg_lens.checkpoints import save_checkpoint
    >>> from emg_lens.models import TinyAttention
    >>> from emg_lens.models import attach
    >>> from emg_lens.layout import TokenLayout
    >>> net = attach(TinyAttention(), layout=TokenLayout.channel_tokens({"emg": 4},
    ...              cls_token=False), n_samples=8)
    >>> folder = save_checkpoint(net, Path(tempfile.mkdtemp()) / "subject_1")
    >>> args = argparse.Namespace(checkpoint=str(folder), out=None, device="cpu")
    >>> open_checkpoint(args, Path("runs/look"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emg_lens.errors.CheckpointError: ...subject_1 holds a AttachedModel whose model are your own...
    """
    from emg_lens.user_code import require_builder

    out = output_folder(args.out or root / Path(args.checkpoint).resolve().name)
    builder = module_builder(args)
    require_builder([args.checkpoint], builder)  # the user's modules: say what to add
    return out, builder, str(resolve_device(args.device))


def load_checkpoint_windows(
    args: argparse.Namespace, device: str, builder: Any = None
) -> tuple[Any, Any, dict[str, Any] | None]:
    """The model of ``--checkpoint`` on ``device`` (its user's modules made by ``builder``),
    ``--n-windows`` of its subject's test windows, evenly spaced (`emg_lens.data.preprocess.
    SubjectData.select_windows`), and the data source its metadata records
    (`emg_lens.studies.subjects.load_entry` loads both; what it refuses, it refuses)."""
    from emg_lens.checkpoints import read_checkpoint_info
    from emg_lens.studies.subjects import load_entry

    subject = load_entry(args.checkpoint, device, builder)
    data = subject.data.select_windows(args.n_windows)
    source = read_checkpoint_info(args.checkpoint)["metadata"].get("data_source")
    return subject.model, data, source


def save_and_show(output: Any, out: Path | str, what: str = "CSV tables, PNG and SVG figures"):
    """Save an output (a `emg_lens.output.StudyOutput`: inspect, probe, features) into
    ``out``, print its console text, what was written and where its report.html is; returns
    the output. One ending for every command that writes a report."""
    written = output.save(out)
    print(visible_controls(output.console()))  # the names a study file gave, made visible
    print(f"\nwrote {len(written)} files ({what}) to {out}")
    print(f"report: {written[-1]}")
    return output


def check_seed_flag(args: argparse.Namespace) -> None:
    """Refuse a ``--seed`` that numpy's and torch's 32-bit seeded generators cannot take (a
    20-digit seed reached ``torch.manual_seed`` and overflowed), naming the flag and the range;
    `emg_lens.cli.main.run` asks it of every command.

    >>> check_seed_flag(argparse.Namespace(seed=2**40))
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: --seed must be an int in 0..2147483647, got 1099511627776
    """
    seed = getattr(args, "seed", None)
    if seed is not None:
        check_seed(seed, "--seed", ArgumentError)


THREADS_PER_CPU = 4
"""``--threads`` takes at most this many threads per CPU: more only wait for each other (and
torch crashes past some thousands)."""

THREADS_HELP = (
    "CPU threads torch computes with (torch.set_num_threads; inter-op too, where torch still "
    "allows it); default: torch's own, its get_num_threads() (the physical cores, or "
    "OMP_NUM_THREADS). Recorded in what the command writes. Results can differ in the last "
    "bits with the thread count (sums are taken in another order), and training amplifies "
    "that: --threads 1 reproduces a run to the byte on one machine"
)


def add_threads_argument(p: argparse.ArgumentParser) -> None:
    """``--threads N`` (default: torch's), which `emg_lens.cli.main.run` applies with
    `torch_threads` around the command, for every command that computes.

    >>> p = argparse.ArgumentParser()
    >>> add_threads_argument(p)
    >>> p.parse_args(["--threads", "1"]).threads, p.parse_args([]).threads
    (1, None)
    """
    p.add_argument("--threads", type=int, metavar="N", help=THREADS_HELP)


@contextlib.contextmanager
def torch_threads(n: int | None, flag: str = "--threads") -> Iterator[None]:
    """Compute with ``n`` torch threads inside the block (``None``: as torch is), then restore
    the caller's count; the inter-op pool is sized too while nothing has used it (torch
    refuses later). ``n`` < 1 is an `ArgumentError` naming ``flag``.

    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    >>> with torch_threads(0):
    ...     pass
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: --threads (CPU threads; leave it out for torch's default) must be a positive int, got 0
    """  # noqa: E501
    if n is None:
        yield
        return
    n = check_int(n, f"{flag} (CPU threads; leave it out for torch's default)", minimum=1)
    most = THREADS_PER_CPU * (os.cpu_count() or 1)
    if n > most:
        why = f"{THREADS_PER_CPU} per CPU of this machine's {os.cpu_count() or 1}"
        raise ArgumentError(f"{flag} {n}: at most {most} ({why}); more would wait for each other")
    import torch  # here, not at the top: the parsers import no torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    with contextlib.suppress(RuntimeError):  # inter-op work has started: it keeps its pool
        torch.set_num_interop_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def add_data_args(p: argparse.ArgumentParser) -> None:
    """The dataset and windowing options of ``train`` (read by `data_source_from_args`)."""
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="synthetic", choices=DATASETS, help="dataset to read")
    g.add_argument("--root", help="dataset folder (every dataset but synthetic)")
    g.add_argument("--exercises", nargs="+", default=["B"], help="NinaPro exercises (B, C, D)")
    g.add_argument("--subjects", nargs="+", type=int, help="subjects (default: all found)")
    g.add_argument("--n-subjects", type=int, default=6, help="synthetic subjects")
    g.add_argument(
        "--segment",
        help="transient | steady | full | START,STOP seconds into each repetition (default: "
        "the dataset's, steady for most, full for your own files)",
    )
    g.add_argument("--window", type=int, default=200, help="samples per window")
    g.add_argument("--step", type=int, default=100, help="samples between windows")
    g.add_argument(
        "--train-repetitions",
        type=int,
        nargs="+",
        help="repetitions to train on (default: the dataset's, NinaPro's 1 3 4 6)",
    )
    g.add_argument(
        "--test-repetitions",
        type=int,
        nargs="+",
        help="repetitions to test on (default: the dataset's, NinaPro's 2 5)",
    )
    f = p.add_argument_group("your own files (--dataset files; emg_lens.data.read_files)")
    f.add_argument(
        "--pattern",
        nargs="+",
        help="path template(s) under --root with {gesture} and {repetition} (and {subject}, "
        "{session}), e.g. 'R_{repetition}_C_{gesture}_EMG.csv'",
    )
    f.add_argument("--sample-rate", type=float, help="Hz, of every file")
    f.add_argument("--modality", help="what the channels are: emg (default), acc, eeg, ...")
    f.add_argument(
        "--channels", nargs="+", help="columns to keep: 0-based indices or CSV header names"
    )
    f.add_argument("--variable", help="the variable of .mat files holding the signal")
    f.add_argument(
        "--placement",
        help="where the channels lie, for figures: ring (an armband, channel order around the "
        "forearm) or an OT grid code (GR08MM1305, ...)",
    )
    f.add_argument(
        "--unmatched",
        choices=("error", "skip"),
        help="a file the pattern does not match: an error (default) or left out",
    )
    f.add_argument(
        "--header",
        choices=("yes", "no"),
        help="a CSV's first line is a header (yes) or a sample (no); default: a line of names "
        "is a header, a file that cannot tell says so",
    )
    f.add_argument(
        "--delimiter",
        help="the character between a CSV's values: , ; or tab (default: the most frequent "
        "on the first line)",
    )
    f.add_argument(
        "--decimal",
        choices=(".", ","),
        help="a CSV's decimal mark (default .; with , the values are separated by ; or tab)",
    )


def file_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--dataset files`` options given (`emg_lens.data.formats.trial_files.FILE_OPTIONS`);
    `data_source` refuses them for another dataset."""
    plain = ("pattern", "sample_rate", "modality", "variable", "unmatched", "placement", "decimal")
    given = {name: getattr(args, name, None) for name in plain}
    channels, delimiter = getattr(args, "channels", None), getattr(args, "delimiter", None)
    given |= {
        "channels": None if channels is None else [int(c) if c.isdigit() else c for c in channels],
        "header": {"yes": True, "no": False}.get(getattr(args, "header", "")),
        "delimiter": "\t" if delimiter == "tab" else delimiter,
    }
    return {k: v for k, v in given.items() if v is not None}


def data_source_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The `emg_lens.data.datasets.data_source` that `add_data_args`' options describe."""
    from emg_lens.data.datasets import data_source, dataset_preprocess
    from emg_lens.data.synthetic.emg_acc import SyntheticSpec

    overrides: dict[str, Any] = {"window": args.window, "step": args.step}
    if args.segment is not None:
        overrides["segment"] = (
            args.segment
            if args.segment in ("transient", "steady", "full")
            else tuple(float(v) for v in args.segment.split(","))
        )
    for split in ("train_repetitions", "test_repetitions"):
        if getattr(args, split, None) is not None:
            overrides[split] = tuple(getattr(args, split))
    preprocess = dataset_preprocess(args.dataset, **overrides)
    return data_source(
        args.dataset,
        root=args.root,
        synthetic=SyntheticSpec(n_subjects=args.n_subjects, seed=args.seed),
        preprocess=preprocess,
        exercises=tuple(args.exercises),
        **file_options(args),
    )


def subject_ids(args: argparse.Namespace, source: dict[str, Any]) -> list[int]:
    """``--subjects``, or every subject the data source of `data_source_from_args` holds."""
    from emg_lens.data.datasets import available_subjects

    return list(args.subjects) if args.subjects else available_subjects(source)


def synthetic_emg_spec(args: argparse.Namespace):
    """Synthetic sEMG whose gestures sEMG alone tells apart (``--n-subjects``, ...), for
    ``windows``, ``pretrain`` and ``finetune``."""
    from emg_lens.data.synthetic.emg_acc import SyntheticSpec

    return SyntheticSpec(
        n_subjects=args.n_subjects,
        n_emg_gestures=args.n_gestures,
        n_acc_gestures=0,  # gestures that sEMG alone tells apart
        n_interaction_gestures=0,
        n_acc_sensors=1,  # only the sEMG channels are used
        movement_seconds=args.movement_seconds,
        seed=args.seed,
    )
