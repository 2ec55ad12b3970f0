"""The command line as a tool: a fast start that imports no torch, help that says what every
option does and its default, progress without terminal junk in logs, `study check` catching
what `study run` would refuse, and fine-tuning from a BioFoundation checkpoint file."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from emg_lens.checkpoints import load_checkpoint, read_checkpoint_info
from emg_lens.cli import build_parser, main
from emg_lens.config import EncoderConfig
from emg_lens.data.registry import DATASETS, REGISTRY, WINDOW_STORE_SOURCES
from emg_lens.errors import LayoutError
from emg_lens.models import CLASSIFIERS, TinyMyo

CURSOR_UP = "\x1b[A"


def _subparsers(
    parser: argparse.ArgumentParser, path: str = ""
) -> dict[str, argparse.ArgumentParser]:
    """Every (sub)command's parser, by its command path ("study check")."""
    found = {path: parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= _subparsers(sub, f"{path} {name}".strip())
    return found


# ----------------------------------------------------------------------------- start-up


@pytest.mark.parametrize("argv", [["--help"], ["study", "--help"], ["finetune", "--help"]])
def test_help_imports_neither_torch_nor_transformer_lens(argv):
    code = (
        "import sys\n"
        "from emg_lens.cli import build_parser\n"
        "try:\n"
        f"    build_parser().parse_args({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in ('torch', 'transformer_lens', 'numpy') if m in sys.modules))\n"
    )
    # as a user imports it: the suite's runtime checks (tests/typecheck.py) import jaxtyping
    env = {**os.environ, "EMG_LENS_TYPECHECK": "0"}
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert "usage: emg-lens" in run.stdout
    assert run.stdout.strip().splitlines()[-1] == "[]"


def test_the_parsers_offer_the_registries_names():
    parsers = _subparsers(build_parser())
    dataset = next(a for a in parsers["train"]._actions if "--dataset" in a.option_strings)
    assert tuple(dataset.choices) == DATASETS
    fmt = next(a for a in parsers["synth"]._actions if "--format" in a.option_strings)
    assert tuple(fmt.choices) == tuple(n for n in REGISTRY if REGISTRY[n].synthesize)
    source = next(a for a in parsers["windows"]._actions if "--source" in a.option_strings)
    assert tuple(source.choices) == WINDOW_STORE_SOURCES
    arch = next(a for a in parsers["train"]._actions if "--architecture" in a.option_strings)
    assert tuple(arch.choices) == CLASSIFIERS


# ----------------------------------------------------------------------------- help text


def test_top_level_help_describes_the_tool_and_lists_every_command_on_one_line():
    text = build_parser().format_help()
    assert "mechanistic interpretability" in text and "``" not in text
    commands = [p for p in _subparsers(build_parser()) if p and " " not in p]
    for command in commands:
        assert any(line.split()[:1] == [command] for line in text.splitlines()), command
    assert max(len(line) for line in text.splitlines()) <= 80


def test_demo_help_describes_every_option_and_shows_its_default():
    demo = _subparsers(build_parser())["demo"]
    text = demo.format_help()
    for action in demo._actions:
        assert action.help, action.option_strings
        for flag in action.option_strings:
            assert flag in text
        if action.default not in (None, False, argparse.SUPPRESS):
            assert f"(default: {action.default})" in text, action.option_strings
    from emg_lens.cli.demo import DEMO_EPOCHS

    assert "(default: runs/demo)" in text and f"(default: {DEMO_EPOCHS})" in text


def test_every_option_of_every_command_has_a_help_string():
    for path, parser in _subparsers(build_parser()).items():
        assert isinstance(parser.formatter_class, type)
        assert issubclass(parser.formatter_class, argparse.ArgumentDefaultsHelpFormatter), path
        for action in parser._actions:
            if not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"{path}: {action.option_strings or action.dest}"


# ----------------------------------------------------------------------------- progress


@pytest.mark.slow
def test_train_into_a_pipe_and_inspect_print_steps_without_terminal_junk(tmp_path, capsys):
    models = tmp_path / "models"
    argv = ["train", "--out", str(models), "--preset", "tiny", "--epochs", "1"]
    argv += ["--n-subjects", "1", "--subjects", "1", "--threads", "1"]
    code = f"from emg_lens.cli import main; raise SystemExit(main({argv!r}))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert CURSOR_UP not in run.stdout + run.stderr and "test_accuracy" in run.stdout
    # a log hears of each subject and epoch as it happens (issue 41, item 4)
    for line in ("subject 1 (1 of 1): training IsoNet, 1 epochs", "subject 1: epoch 1 of 1"):
        assert line in run.stdout, run.stdout
    assert re.search(r"subject 1 \(1 of 1\) trained in \d+ s, test accuracy", run.stdout)
    info = json.loads((models / "subject_1" / "config.json").read_text())
    assert info["metadata"]["threads"] == 1  # --threads, recorded
    # train and evaluate test each model against chance over its trials (issue 46)
    assert "unmasked accuracy beside chance" in run.stdout and "trials" in run.stdout
    assert main(["evaluate", "--models", str(models)]) == 0
    evaluated = capsys.readouterr().out
    assert re.search(r"subject 1 \d+/\d+ trials", evaluated), evaluated

    out = tmp_path / "inspect"
    checkpoint = models / "subject_1"
    assert (
        main(["inspect", "--checkpoint", str(checkpoint), "--out", str(out), "--n-windows", "8"])
        == 0
    )
    printed = capsys.readouterr()
    steps = [line[:5] for line in printed.out.splitlines() if line[:1] == "["]
    assert steps == [f"[{i}/5]" for i in range(1, 6)]
    assert CURSOR_UP not in printed.out + printed.err


# ----------------------------------------------------------------------------- study check


def _ablation_study(tmp_path, edges: str, models: str = "none"):
    spec = tmp_path / "study.toml"
    spec.write_text(
        f'name = "s"\nmodels = "{tmp_path / models}"\n\n'
        f'[[interventions]]\nname = "cut"\nedges = "{edges}"\n'
    )
    return str(spec)


def test_study_check_refuses_an_unknown_group_before_anything_runs(tmp_path, capsys):
    assert main(["study", "check", _ablation_study(tmp_path, "between(emg, accel)")]) == 2
    err = capsys.readouterr().err
    assert "intervention 'cut'" in err and "'accel'" in err and "preset 'demo'" in err
    # no models: checked against the preset, printed, and non-zero where `study run` stops
    assert main(["study", "check", _ablation_study(tmp_path, "between(emg, acc)")]) == 2
    out, err = capsys.readouterr()
    assert "conditions per subject" in out and "`study run` would stop on this study" in err
    # a preset whose montage has no ACC: the same expression is refused
    tinymyo = _ablation_study(tmp_path, "between(emg, acc)")
    assert main(["study", "check", tinymyo, "--preset", "tinymyo"]) == 2
    assert "'acc'" in capsys.readouterr().err


def test_study_check_prints_the_design_before_anything_runs(tmp_path, capsys):
    """Without models the subject count is unknown: check says how many a cell needs; with
    ``subjects`` it prints the floor the run's summary will print (Mann-Whitney U with 2
    subjects: no cell can be significant). The preset's model reads the CLS row alone, which
    ``cross_modal`` does not cut: the last layer's cut is a structural zero, named, and out of
    m (2 layers, 1 comparison left per mode)."""
    spec = _ablation_study(tmp_path, "cross_modal")
    assert main(["study", "check", spec, "--layers", "2"]) == 2  # no models: run would stop
    *_, zeros, design = capsys.readouterr().out.splitlines()
    assert zeros.startswith("structural zeros") and "cut (individual, layers 1)" in zeros
    assert design.startswith("Design:") and "no models found to count" in design
    assert "m = 1 comparisons per mode" in design and "at least 3 subjects" in design
    path = Path(spec)
    text = path.read_text().replace("models = ", "subjects = [1, 2]\nmodels = ", 1)
    path.write_text(text + "\n[layers]\nmodes = ['individual', 'all']\n")
    assert main(["study", "check", spec, "--layers", "2"]) == 2
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].startswith("Design: 2 subjects") and "m = 1 comparisons" in lines[-2]
    assert lines[-1] == (
        "No cell can be significant (p_corr < 0.05) with 2 subjects; that needs at least 3."
    )


def test_study_check_names_the_structural_zeros_and_leaves_them_out_of_m(tmp_path, capsys):
    """Two-layer IsoNets scored on the CLS head: the last layer's cross-modal cut leaves the
    CLS row whole, so it cannot change the output; the design line's m is 1, not 2."""
    from emg_lens.checkpoints import save_checkpoint
    from emg_lens.models import IsoNet

    for subject in (1, 2, 3, 4, 5):
        save_checkpoint(IsoNet(EncoderConfig.preset("tiny")), tmp_path / "m" / f"subject_{subject}")
    assert main(["study", "check", _ablation_study(tmp_path, "cross_modal", models="m")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].startswith("structural zeros") and lines[-2].endswith(
        ": cut (individual, layers 1)"
    )
    assert lines[-1].startswith("Design: 5 subjects") and "m = 1 comparisons" in lines[-1]


@pytest.mark.parametrize(
    ("edges", "answer"),
    [
        ("cross_modal & layers(1)", None),  # what discovery prints, pasted into a study file
        ("cross_modal & layers(3)", r"names layer\(s\) \[3\].*n_layers=2"),
        ("within(emg) & within(acc)", r"selects no edge in layers \[0, 1\]"),
    ],
)
def test_study_check_and_run_read_an_edge_expression_as_the_notebook_does(
    tmp_path, capsys, edges, answer
):
    """issue 85: `study check` refused ``layers(1)`` that `study run` ran; a layer the models
    lack and a cut that selects nothing get compile_edges's answer from both."""
    from emg_lens.hooks import compile_edges
    from tests.tiny import synthetic_checkpoint

    model = load_checkpoint(synthetic_checkpoint(tmp_path / "m") / "subject_1")  # 2 layers
    spec = _ablation_study(tmp_path, edges, models="m")
    run = ["study", "run", spec, "--out", str(tmp_path / "out"), "--quiet"]
    if answer is None:
        assert compile_edges(edges, model)[1].any()
        assert main(["study", "check", spec]) == 0
        return
    with pytest.raises(LayoutError, match=answer):
        compile_edges(edges, model)
    for command in (["study", "check", spec], run):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "intervention 'cut'" in err and re.search(answer, err), err


def test_study_check_uses_the_layout_of_the_models(tmp_path, capsys):
    from emg_lens.checkpoints import save_checkpoint
    from emg_lens.models import IsoNet

    cfg = EncoderConfig.preset("tiny", modalities={"emg": 4, "force": 2})
    save_checkpoint(IsoNet(cfg), tmp_path / "models" / "subject_1")
    spec = _ablation_study(tmp_path, "between(emg, acc)", models="models")
    assert main(["study", "check", spec]) == 2
    assert "'acc'" in capsys.readouterr().err
    spec = _ablation_study(tmp_path, "between(emg, force)", models="models")
    assert main(["study", "check", spec]) == 0
    assert "the models' size and layout" in capsys.readouterr().out


def test_study_check_finds_the_models_as_study_run_does_and_names_a_missing_folder(
    tmp_path, capsys, monkeypatch
):
    """issue 57 item 8: with its models folder not found from the working directory, `study
    check` checked a default IsoNet and refused a modality the models have, while `study run`
    named the folder. Both resolve it from the working directory; check names it."""
    from emg_lens.checkpoints import save_checkpoint
    from emg_lens.models import IsoNet

    study = tmp_path / "study"
    cfg = EncoderConfig.preset("tiny", modalities={"emg": 4, "force": 2})
    save_checkpoint(IsoNet(cfg), study / "models" / "subject_1")
    (study / "s.toml").write_text(
        'name = "s"\nmodels = "models"\n[[interventions]]\nname = "z"\nzero_modality = "force"\n'
    )
    monkeypatch.chdir(tmp_path)  # not the study's folder: its "models" is not found from here
    missing = f"models: models does not exist (looked for it in {tmp_path})"
    assert main(["study", "run", "study/s.toml", "--out", "out", "--quiet"]) == 2
    assert missing in capsys.readouterr().err
    assert main(["study", "check", "study/s.toml"]) == 2
    err = capsys.readouterr().err
    assert "preset 'demo'" in err and f"`study run` would stop: {missing}" in err
    assert main(["study", "check", "study/s.toml", "--models", "models"]) == 2  # named: refused
    assert capsys.readouterr().err == f"emg-lens: error: {missing}; give a folder of " + (
        "subject_<N>/ checkpoints\n"
    )
    monkeypatch.chdir(study)
    assert main(["study", "check", "s.toml"]) == 0
    assert "grid for the models' size and layout" in capsys.readouterr().out


# ----------------------------------------------------------------------------- BioFoundation


def test_finetune_from_a_biofoundation_checkpoint(tmp_path, capsys):
    sizes = {"d_model": 32, "d_head": 8, "n_heads": 4, "d_mlp": 64, "n_layers": 1, "seed": 0}
    cfg = EncoderConfig.preset("tinymyo", **sizes, modalities={"emg": 12}, n_samples=100)
    source = TinyMyo(cfg, task="reconstruction")  # a pretraining checkpoint: no classifier
    file = tmp_path / "tinymyo.ckpt"
    torch.save({"state_dict": source.to_biofoundation()}, file)
    out = tmp_path / "tuned"
    argv = ["finetune", "--from-biofoundation", str(file), "--out", str(out), "--n-heads", "4"]
    argv += ["--window", "100", "--epochs", "2", "--movement-seconds", "0.5"]
    argv += ["--n-gestures", "3", "--linear-probe", "--quiet"]
    assert main(argv) == 0
    assert f"linear probe from {file}" in capsys.readouterr().out
    tuned = load_checkpoint(out)
    assert tuned.task == "classification" and tuned.cfg.n_classes == 3  # a new head
    assert torch.equal(tuned.blocks[0].attn.W_Q, source.blocks[0].attn.W_Q)  # frozen encoder
    assert read_checkpoint_info(out)["metadata"]["pretrained"] == str(file)

    with pytest.raises(SystemExit):  # one starting point only
        build_parser().parse_args([*argv, "--checkpoint", str(tmp_path)])
    assert (
        main(["finetune", "--from-biofoundation", str(tmp_path / "x.bin"), "--out", str(out)]) == 2
    )
    assert "does not exist" in capsys.readouterr().err


def test_one_epoch_of_pretraining_or_fine_tuning_needs_no_warm_up_flag():
    from emg_lens.cli.tinymyo import _recipe_options

    for command in (["pretrain"], ["finetune", "--checkpoint", "c"]):
        args = build_parser().parse_args([*command, "--out", "x", "--epochs", "1"])
        assert _recipe_options(args)["warmup_epochs"] == 0
        args = build_parser().parse_args([*command, "--out", "x", "--epochs", "5"])
        assert _recipe_options(args)["warmup_epochs"] == 1


# ----------------------------------------------------------------------------- threads

COMPUTING = (
    "demo",
    "train",
    "evaluate",
    "study run",
    "discover",
    "inspect",
    "probe",
    "features",
    "pretrain",
    "finetune",
)


def test_every_computing_command_takes_threads_and_refuses_less_than_one(capsys):
    parsers = _subparsers(build_parser())
    for path in COMPUTING:
        assert "--threads" in parsers[path].format_help(), path
    assert main(["demo", "--threads", "0"]) == 2
    err = capsys.readouterr().err
    assert (
        "--threads (CPU threads; leave it out for torch's default) must be a positive int, got 0"
        in err
    )


def test_threads_beyond_a_few_per_cpu_are_refused_by_name_before_torch_sees_them(capsys):
    """Issue 47, section 3 item 8: ``--threads 100000`` crashed inside torch."""
    assert main(["demo", "--threads", "100000"]) == 2
    err = capsys.readouterr().err
    assert "--threads 100000: at most" in err and "per CPU" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["demo"],
        ["train", "--out", "never"],
        ["synth", "--out", "never"],
        ["probe", "--models", "x", "--out", "never"],
    ],
)
def test_a_seed_numpy_and_torch_cannot_take_is_refused_by_name(argv, capsys, tmp_path):
    """Issue 47, section 3 item 8: a 20-digit ``--seed`` reached torch.manual_seed."""
    argv = [str(tmp_path / a) if a == "never" else a for a in argv]
    assert main([*argv, "--seed", "99999999999999999999"]) == 2
    err = capsys.readouterr().err
    assert "--seed must be an int in 0..2147483647, got 99999999999999999999" in err


def test_configs_refuse_a_seed_out_of_range_by_field():
    from emg_lens.errors import ConfigError
    from emg_lens.train import TrainConfig

    with pytest.raises(ConfigError, match=r"TrainConfig\.seed must be an int in 0\.\."):
        TrainConfig(seed=2**40)
    with pytest.raises(ConfigError, match=r"EncoderConfig\.seed must be an int in 0\.\."):
        EncoderConfig.preset("tiny", seed=-1)
