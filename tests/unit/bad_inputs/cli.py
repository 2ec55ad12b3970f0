"""The command line's quick starts and TransformerLens habits (issue 23 items 6, 7, 10, 11).

Item 6: ``pretrain``/``finetune --device`` naming no device, or CUDA on a machine without it
(`emg_lens.cli.common.resolve_device`, as every other command). Item 7: ``synth``'s numeric
options out of range (a negative ``--movement-seconds`` used to be clamped), and options a
format does not take. Item 10: a name filter naming layers the model lacks, however it meets
the model; a hook name it lacks; a window a pretrained TinyMyo cannot be fitted to. Item 11:
TransformerLens's position-indexed patching helpers called plainly on signals; an unknown
composition mode.
"""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np
import torch
from transformer_lens import patching as tl_patching

from emg_lens import cli
from emg_lens.checkpoints import save_checkpoint
from emg_lens.data.synthetic.emg_acc import synthesize_ninapro_db2
from emg_lens.data.windows.pipeline import TinyMyoPreprocess, WindowBatch
from emg_lens.data.windows.store import write_window_store
from emg_lens.errors import ArgumentError, EmgLensError, LayoutError, SpecError
from emg_lens.hooks import attn_scores_filter, mask_edges, pattern_filter
from emg_lens.models import IsoNet, TinyMyo
from tests.tiny import tiny_isonet, tinymyo_config


def _isonet() -> IsoNet:
    return tiny_isonet()  # 2 layers, 7 tokens, 8 samples


# ----------------------------------------------------------------------------- item 6


def _tinymyo_command(command: str, device: str, *, cuda: bool = True):
    """``pretrain`` or ``finetune`` with ``--device device``; ``cuda=False``: torch sees no
    GPU, whatever the machine has."""
    start = ["--checkpoint", "no-such-checkpoint"] if command == "finetune" else []

    def trigger(tmp: Path):
        argv = [command, *start, "--out", str(tmp / "out"), "--device", device, "--quiet"]
        if cuda:
            return cli.run(argv)
        with (
            mock.patch("torch.cuda.is_available", return_value=False),
            mock.patch("torch.cuda.device_count", return_value=0),
        ):
            return cli.run(argv)

    return trigger


NOT_A_DEVICE = "is not a device emg_lens loads models onto; accepted: 'cpu', 'cuda'"
NO_GPU = "this machine has no CUDA GPU"

DEVICE_ROWS = [
    ("pretrain --device gpu", _tinymyo_command("pretrain", "gpu"), ArgumentError, NOT_A_DEVICE),
    ("pretrain --device meta", _tinymyo_command("pretrain", "meta"), ArgumentError, NOT_A_DEVICE),
    (
        "pretrain --device cuda without a GPU",
        _tinymyo_command("pretrain", "cuda", cuda=False),
        ArgumentError,
        NO_GPU,
    ),
    ("finetune --device gpu", _tinymyo_command("finetune", "gpu"), ArgumentError, NOT_A_DEVICE),
    ("finetune --device meta", _tinymyo_command("finetune", "meta"), ArgumentError, NOT_A_DEVICE),
    (
        "finetune --device cuda without a GPU",
        _tinymyo_command("finetune", "cuda", cuda=False),
        ArgumentError,
        NO_GPU,
    ),
]


# ----------------------------------------------------------------------------- item 7


def _synth(*options: str, fmt: str = "ninapro-db2"):
    def trigger(tmp: Path):
        out = tmp / "synth"
        try:
            return cli.run(["synth", "--format", fmt, "--out", str(out), *options])
        finally:
            assert not out.exists() or not any(out.rglob("*.*")), "a file was written"

    return trigger


SYNTH_ROWS = [
    (
        "synth --movement-seconds negative",
        _synth("--movement-seconds", "-1"),
        ArgumentError,
        "--movement-seconds -1.0: must be a number of seconds > 0",
    ),
    (
        "synth uci --movement-seconds negative",
        _synth("--movement-seconds", "-2", fmt="uci"),
        ArgumentError,
        "--movement-seconds -2.0",
    ),
    (
        "synth db8 --movement-seconds 0",
        _synth("--movement-seconds", "0", fmt="ninapro-db8"),
        ArgumentError,
        "--movement-seconds 0.0",
    ),
    ("synth --movement-seconds nan", _synth("--movement-seconds", "nan"), ArgumentError, "nan"),
    ("synth --movement-seconds inf", _synth("--movement-seconds", "inf"), ArgumentError, "inf"),
    (
        "synth --rest-seconds negative",
        _synth("--rest-seconds", "-0.5"),
        ArgumentError,
        "--rest-seconds -0.5: must be a number of seconds >= 0",
    ),
    ("synth --n-subjects 0", _synth("--n-subjects", "0"), ArgumentError, "--n-subjects 0"),
    (
        "synth --seed negative",
        _synth("--seed", "-1"),
        ArgumentError,
        "--seed must be an int in 0..2147483647, got -1",
    ),
    (
        "synth hdsemg --n-gestures 0",
        _synth("--n-gestures", "0", fmt="hdsemg"),
        ArgumentError,
        "--n-gestures 0",
    ),
    (
        "synth --exercises E",
        _synth("--exercises", "B", "E"),
        ArgumentError,
        "--exercises must name one or more of B, C, D",
    ),
    (
        "synth hdsemg --exercises",
        _synth("--exercises", "B", fmt="hdsemg"),
        ArgumentError,
        "--exercises applies to --format ninapro-db2 only",
    ),
    (
        "synth uci --rest-seconds",
        _synth("--rest-seconds", "1", fmt="uci"),
        ArgumentError,
        "--rest-seconds: not an option of --format uci",
    ),
    (
        "synthesize db2 n_gestures",
        lambda tmp: list(synthesize_ninapro_db2(tmp, {"n_gestures": 4})),
        ArgumentError,
        "--n-gestures: not an option of --format ninapro-db2",
    ),
]


# ----------------------------------------------------------------------------- item 10


def _filter_meets_model(way: str, filt):
    """Use ``filt`` (naming layers the 2-layer model lacks) the way a TL user would."""

    def trigger(tmp: Path):
        model = _isonet()
        x = model.example_input(2)
        hook = mask_edges("cross_modal", model.layout)
        if way == "run_with_hooks":
            return model.run_with_hooks(x, fwd_hooks=[(filt, hook)])
        if way == "hooks()":
            with model.hooks(fwd_hooks=[(filt, hook)]):
                return model(x)
        if way == "add_hook":
            return model.add_hook(filt, hook)
        return model.run_with_cache(x, names_filter=filt)

    return trigger


def _unknown_hook_name(tmp: Path):
    model = _isonet()
    name = "blocks.3.attn.hook_attn_scores"
    return model.run_with_hooks(model.example_input(2), fwd_hooks=[(name, lambda t, hook: t)])


def _finetune_window_not_in_patches(tmp: Path):
    cfg = tinymyo_config(4, 100, n_layers=1)
    checkpoint = save_checkpoint(TinyMyo(cfg, task="reconstruction"), tmp / "pretrained")
    argv = ["finetune", "--checkpoint", str(checkpoint), "--out", str(tmp / "ft"), "--quiet"]
    return cli.run([*argv, "--window", "90", "--step", "90", "--epochs", "1"])


FILTER = attn_scores_filter([5, 6])
README_PASTE = pattern_filter([1, 2, 3])  # the README's [1, 2, 3] on a 2-layer checkpoint
MISSING = "names layers [5, 6] that this IsoNet does not have: it has n_layers=2"

LAYER_ROWS = [
    ("filter layers 5 6 run_with_hooks", _filter_meets_model("run_with_hooks", FILTER)),
    ("filter layers 5 6 hooks()", _filter_meets_model("hooks()", FILTER)),
    ("filter layers 5 6 add_hook", _filter_meets_model("add_hook", FILTER)),
    ("filter layers 5 6 run_with_cache", _filter_meets_model("run_with_cache", FILTER)),
]
FILTER_ROWS = [
    *((name, trigger, LayoutError, MISSING) for name, trigger in LAYER_ROWS),
    (
        "README's pattern_filter([1, 2, 3]) on 2 layers",
        _filter_meets_model("run_with_hooks", README_PASTE),
        LayoutError,
        "names layers [2, 3]",
    ),
    (
        "hook name blocks.3 on 2 layers",
        _unknown_hook_name,
        LayoutError,
        "no hook point 'blocks.3.attn.hook_attn_scores'",
    ),
    (
        "finetune window not a multiple of the patches",
        _finetune_window_not_in_patches,
        ArgumentError,
        "4 x 100) cuts each channel into patches of 20 samples and 90 is not a multiple of 20",
    ),
]


# ----------------------------------------------------------------------------- item 11


def _tl_position_patching_plainly(tmp: Path):
    model = _isonet()
    x = model.example_input(2)
    _, cache = model.run_with_cache(x)
    metric = lambda out: out[:, 0].mean()  # noqa: E731
    return tl_patching.get_act_patch_resid_pre(model, torch.zeros_like(x), cache, metric)


TL_ROWS = [
    (
        "TL get_act_patch_resid_pre called plainly",
        _tl_position_patching_plainly,
        LayoutError,
        "index_df=emg_lens.inspect.tl_index_df(model, 'layer', 'pos')",
    ),
    (
        "all_composition_scores mode q",
        lambda tmp: _isonet().all_composition_scores("q"),
        ArgumentError,
        "mode must be one of ['Q', 'K', 'V']",
    ),
    (
        "discover --name beside a spec file",
        lambda tmp: cli.run(["discover", str(tmp / "study.toml"), "--name", "mine"]),
        ArgumentError,
        "--name 'mine' is for a study made from flags",
    ),
]


def _finetune_with(tmp: Path, *extra: str, splits: dict[str, list[int]] | None = None):
    """``finetune`` from a tiny pretrained TinyMyo with ``extra`` flags; ``splits``: also
    ``--windows`` a store of four windows (repetitions 1 and 2) holding a dataset's split."""
    cfg = tinymyo_config(4, 100, n_layers=1)
    checkpoint = save_checkpoint(TinyMyo(cfg, task="reconstruction"), tmp / "pretrained")
    argv = ["finetune", "--checkpoint", str(checkpoint), "--out", str(tmp / "ft"), "--quiet"]
    if splits is not None:
        x = np.zeros((4, 4, 100), np.float32)
        batch = WindowBatch(x, np.array([0, 1, 0, 1]), np.array([1, 1, 2, 2]), 1, "s", {})
        spec = TinyMyoPreprocess(n_channels=4, window=100)
        store = write_window_store(tmp / "w.h5", [batch], spec, splits=splits, progress=False)
        argv += ["--windows", str(store)]
    return cli.run([*argv, *extra, "--epochs", "1"])


def _probe_a_subject_not_there(tmp: Path):
    save_checkpoint(tiny_isonet(), tmp / "models" / "subject_1", metadata={"subject": 1})
    argv = ["probe", "--models", str(tmp / "models"), "--out", str(tmp / "out")]
    return cli.run([*argv, "--subjects", "1", "9"])


ALLOW_BOTH = ["--allow-code", "--allow-code", "ab" * 32]
SPLIT = {"train": [1], "test": [2]}
CONSENT_ROWS = [
    (
        "--allow-code alone and with a digest",
        lambda tmp: cli.run(["discover", *ALLOW_BOTH, "--models", "x"]),
        EmgLensError,
        "--allow-code: give it either alone (the files as they are now) or with each file's",
    ),
    (
        "discover --models blank",
        lambda tmp: cli.run(["discover", "--models", "   "]),
        ArgumentError,
        "discover needs --models DIR (or a spec file that names models)",
    ),
    (
        "probe --subjects one without a model",
        _probe_a_subject_not_there,
        SpecError,
        "--subjects [9] have no model in ",
    ),
    (
        "finetune --subjects without --per-subject",
        lambda tmp: _finetune_with(tmp, "--subjects", "1"),
        ArgumentError,
        "--subjects selects subjects for --per-subject fine-tuning only",
    ),
    (
        "finetune --per-subject on a store with its own split",
        lambda tmp: _finetune_with(tmp, "--per-subject", splits=SPLIT),
        ArgumentError,
        "holds a downstream dataset's own train/val/test split; --per-subject and --subjects",
    ),
    (
        "finetune on a split store without val",
        lambda tmp: _finetune_with(tmp, splits=SPLIT),
        ArgumentError,
        "has no 'val' windows (['test', 'train']); build it with emg-lens windows without",
    ),
]

ROWS: list[tuple] = [*DEVICE_ROWS, *SYNTH_ROWS, *FILTER_ROWS, *TL_ROWS, *CONSENT_ROWS]
