"""The quick starts of the README and the site's guide run as written on `emg-lens synth`
output (issue 23, item 10).

Each code block that is a command sequence is read from its page (README.md,
docs/getting-started.md or docs/guide/*.md: `tests.docs_pages`) and run through
`emg_lens.cli.main` in a folder holding a copy of ``studies/`` and the data the block's
``--root`` names, at its smallest size: options the commands have (fewer subjects, shorter
movements, one epoch, one layer) are appended, nothing else is changed. So a README command
that stops with an error, or a synth format that does not write what a block reads, fails here.

Every ``bash``, ``toml`` and ``py`` block of those pages is either run as written by a named
test (here or in the file it names) or listed in `SKIPPED` with why it cannot be (a GPU,
several nodes, a download, an install): `test_every_readme_block_is_run_or_skipped_with_its_reason`
fails for a block in neither; every ``python`` block runs in tests/unit/test_readme.py. The
blocks that read the demo's models run here from a fresh folder, after a small `emg-lens demo`.

Also: the demo table of docs/getting-started.md keeps the parts that do not depend on how the
models train (its rows and columns, its design line, what was planted). That ``emg-lens demo``
says how far it is, subject by subject, when its output is a log is checked by
tests/integration/test_demo.py.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

from emg_lens.cli import main
from tests.docs_pages import ROOT, blocks, section

CHECKED_LANGUAGES = ("bash", "toml", "py")
"""The code blocks `RUN_BY` or `SKIPPED` must name; ``python`` blocks all run in test_readme.py,
``text`` blocks are output and folder layouts."""


def bash_blocks() -> list[tuple[str, str]]:
    """(heading, text) of every ``bash`` block of the README and the guide, in order."""
    return [(block.heading, block.text) for block in blocks("bash")]


def readme_blocks(heading: str) -> list[list[list[str]]]:
    """The ``bash`` blocks under ``heading`` on the README or a guide page (up to the next
    heading of any level), each a list of ``emg-lens`` commands as argv without the program
    name."""
    found = []
    for body in (text for under, text in bash_blocks() if under == heading):
        commands = []
        for line in body.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                assert argv[0] == "emg-lens", line
                commands.append(argv[1:])
        found.append(commands)
    assert found, f"no page has a bash block under {heading!r}"
    return found


def run_readme(commands: list[list[str]], extra: dict[str, list[str]]) -> None:
    """Run README commands as written, with ``extra[command]`` options appended."""
    for argv in commands:
        assert main([*argv, *extra.get(argv[0], [])]) == 0, argv


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder to run README commands in: relative paths as the README writes them."""
    shutil.copytree(ROOT / "studies", tmp_path / "studies")
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ----------------------------------------------------------------------------- NinaPro DB2


@pytest.mark.slow
def test_readme_ninapro_db2_commands_run_on_synth_output(workdir):
    # synth used to write exercise B only, so `train --exercises B C D` stopped at E2.
    tiny = ["--movement-seconds", "0.1", "--rest-seconds", "0.05"]
    assert (
        main(["synth", "--format", "ninapro-db2", "--out", "DB2", "--n-subjects", "1", *tiny]) == 0
    )
    names = sorted(p.relative_to("DB2").as_posix() for p in Path("DB2").rglob("*.mat"))
    assert names == ["DB2_s1/S1_E1_A1.mat", "DB2_s1/S1_E2_A1.mat", "DB2_s1/S1_E3_A1.mat"]
    (block,) = readme_blocks("### NinaPro DB2 (IsoNet's dataset)")
    assert [argv[0] for argv in block] == ["train", "study", "inspect"]
    # 0.1 s movements: the whole repetition (--segment full) holds one 200-sample window;
    # a 2-layer model (--preset tiny) keeps the study small
    small = ["--epochs", "1", "--segment", "full", "--preset", "tiny", "--quiet"]
    run_readme(block, {"train": small, "inspect": ["--n-windows", "8"]})
    classes = __import__("json").loads(Path("runs/db2/subject_1/config.json").read_text())
    assert classes["metadata"]["classes"] == list(range(1, 50))  # DB2's 49 gestures, B C D
    assert Path("runs/db2_table3/summary.md").stat().st_size > 0
    for folder in ("runs/db2_table3", "runs/db2_inspect"):
        assert Path(folder, "report.html").stat().st_size > 0
    for figure in ("channel_effect", "attention_received"):  # on DB2's electrode placement
        assert Path("runs/db2_inspect", f"{figure}.png").is_file(), figure


@pytest.mark.slow
def test_readme_your_own_recordings_run_on_the_myo_files(workdir):
    """The folder route on LibEMG's real Myo recordings, as the README writes it."""
    shutil.copytree(ROOT / "tests" / "data" / "libemg_myo", workdir / "tests/data/libemg_myo")
    (block,) = readme_blocks("## Your own recordings")
    assert [argv[0] for argv in block] == ["train", "study", "inspect"]
    small = ["--epochs", "1", "--preset", "tiny", "--quiet"]
    run_readme(block, {"train": small, "inspect": ["--n-windows", "8"]})
    summary = Path("runs/studies/myo-ring/summary.md").read_text()
    names = ("halves", "neighbours", "cross_electrode", "cross_electrode_no_relay")
    assert all(name in summary for name in names)
    for folder in ("runs/studies/myo-ring", "runs/myo/inspect"):
        assert Path(folder, "report.html").stat().st_size > 0
    for figure in ("channel_effect", "attention_received"):  # on the ring
        assert Path("runs/myo/inspect", f"{figure}.png").is_file(), figure


@pytest.mark.slow
def test_readme_hdsemg_contraction_study_runs_on_the_real_file(workdir, capsys):
    """The regression study on openhdemg's real OT BioLab+ file, as the README writes it
    (`make data` fetches the file; `make test` does), its model trained three epochs."""
    real = ROOT / ".data" / "openhdemg" / "otb_testfile.mat"
    assert real.is_file(), f"{real} is missing: `make data` fetches it (make test does)"
    (workdir / ".data").symlink_to(ROOT / ".data")
    (block,) = readme_blocks("### An HD-sEMG contraction: the force from a 64-electrode grid")
    assert [argv[:2] for argv in block] == [["study", "check"], ["study", "run"]]
    run_readme(block, {"study": ["--epochs", "3"]})
    printed = capsys.readouterr().out
    assert "143 test windows in 11 held-out blocks (the independent unit)" in printed
    assert "smallest p 0.000977, holm over 3 cuts: smallest corrected p 0.00293" in printed
    assert "cells: 0 reused, 6 recomputed" in printed
    summary = Path("runs/hdsemg_force/summary.md").read_text()
    assert "The independent unit is the held-out block: 11 blocks of 1 s" in summary
    names = ("rows_halves", "columns_halves", "every_electrode_pair", "RMS ridge")
    assert all(name in summary for name in names)
    for name in ("summary.csv", "blocks.csv", "baselines.csv", "report.html", "model/config.json"):
        assert Path("runs/hdsemg_force", name).is_file(), name


def test_synthetic_db2_has_dbs_gestures_per_exercise_and_its_planted_kinds():
    from emg_lens.data.formats.ninapro_db2 import LABEL_RANGES
    from emg_lens.data.synthetic.emg_acc import (
        DB2_EXERCISE_KINDS,
        db2_labels,
        db2_spec,
        generate_db2_exercise,
        gesture_kinds,
    )

    spec = db2_spec(2, movement_seconds=0.1, rest_seconds=0.05)
    kinds = gesture_kinds(spec)
    labels = db2_labels()
    assert sorted(labels.values()) == list(range(1, 50))
    for k, (letter, counts) in enumerate(DB2_EXERCISE_KINDS.items(), 1):
        first, last = LABEL_RANGES[k]
        rec = generate_db2_exercise(spec, 2, letter)
        assert rec.gestures == list(range(first, last + 1))
        planted = [kinds[g] for g, label in labels.items() if first <= label <= last]
        assert {kind: planted.count(kind) for kind in counts} == counts
    # a subject's exercise does not depend on which others are written
    again = generate_db2_exercise(spec, 2, "C")
    assert np.array_equal(again.signals["emg"], generate_db2_exercise(spec, 2, "C").signals["emg"])


# ----------------------------------------------------------------------------- TinyMyo


def _emg2pose(root: Path) -> None:
    from emg_lens.data.formats.emg2pose import write_emg2pose_metadata, write_emg2pose_session

    rng = np.random.default_rng(0)
    emg = rng.standard_normal((1200, 16)).astype(np.float32)
    write_emg2pose_session(root / "a.hdf5", emg, user="u1")
    write_emg2pose_metadata(root, [{"filename": "a", "user": "u1", "split": "train"}])


def _db5(root: Path) -> None:
    from tests.unit.data.ninapro_files import mat_vars, save

    for subject in (1,):
        for k in (1, 2, 3):  # codes 1-3 in each exercise, repetitions 1-6 (1 3 4 6 train)
            variables = mat_vars(16, (1, 2), range(1, 7), seed=k, short_labels=False)
            rng = np.random.default_rng([subject, k])
            variables["emg"] = rng.standard_normal(variables["emg"].shape)
            save(root / f"s{subject}" / f"S{subject}_E{k}_A1.mat", variables)


SMALL_WINDOWS = ["--window", "200", "--step", "200", "--quiet"]  # 16 x 200: 160 tokens
ONE_LAYER = ["--layers", "1", "--epochs", "1", "--batch-size", "8", "--quiet"]


@pytest.mark.slow
def test_readme_pretraining_then_fine_tuning_as_above_runs(workdir):
    # "Then fine-tune it as above, with --checkpoint runs/tinymyo_pretrained in place of
    # --from-biofoundation TinyMyo.safetensors": the DB5 block, so edited.
    _emg2pose(Path("emg2pose"))
    _db5(Path("DB5"))
    pretraining = readme_blocks("## TinyMyo's pretraining corpora: emg2pose, NinaPro DB6 and DB7")
    run_readme(pretraining[0], {"windows": SMALL_WINDOWS, "pretrain": ONE_LAYER})
    text = section("## TinyMyo's pretraining corpora: emg2pose, NinaPro DB6 and DB7")
    assert "`--checkpoint runs/tinymyo_pretrained` in place of `--from-biofoundation TinyMyo" in (
        " ".join(text.split())
    )
    (db5,) = readme_blocks("## NinaPro DB5 (TinyMyo fine-tuning)")
    as_above = [
        " ".join(argv)
        .replace("--from-biofoundation TinyMyo.safetensors", "--checkpoint runs/tinymyo_pretrained")
        .split()
        for argv in db5
    ]
    assert any("runs/tinymyo_pretrained" in argv for argv in as_above)
    finetune = ["--epochs", "1", "--batch-size", "8", "--quiet"]
    run_readme(as_above, {"windows": SMALL_WINDOWS, "finetune": finetune})
    assert sorted(p.name for p in Path("runs/db5_mix").glob("summary.*")) == [
        "summary.csv",
        "summary.md",
    ]


@pytest.mark.slow
def test_readme_synthetic_pretraining_fine_tunes_on_epn612(workdir, capsys):
    # The default pretrain (12 x 100) could not be fine-tuned on an EPN-612 store (8 x 1000),
    # and no command gave a 16 x 1000 TinyMyo without a BioFoundation file.
    from emg_lens.checkpoints import read_checkpoint_info

    assert main(["synth", "--format", "epn612", "--out", "EPN612", "--n-subjects", "2"]) == 0
    downstream = readme_blocks("## Downstream datasets (TinyMyo fine-tuning)")
    (windows,) = [argv for block in downstream for argv in block if argv[0] == "windows"]
    assert main([*windows, "--quiet"]) == 0
    blocks = readme_blocks("## TinyMyo's pretraining corpora: emg2pose, NinaPro DB6 and DB7")
    synthetic = blocks[1]
    assert synthetic[0][:3] == ["pretrain", "--preset", "tinymyo"]
    small = ["--n-gestures", "2", "--movement-seconds", "0.5", "--step", "1000", *ONE_LAYER]
    run_readme(synthetic, {"pretrain": small, "finetune": ["--epochs", "1", "--quiet"]})
    pretrained = read_checkpoint_info("runs/tinymyo_synthetic")["config"]
    assert (pretrained["modalities"], pretrained["n_samples"]) == ({"emg": 16}, 1000)
    assert pretrained["d_model"] == 192  # the published width
    tuned = read_checkpoint_info("runs/epn612_pretrained")["config"]
    assert (tuned["modalities"], tuned["n_samples"]) == ({"emg": 8}, 1000)
    assert "fitted to the data's 8 x 1000" in capsys.readouterr().out


def test_default_pretrain_fine_tunes_on_any_channels_and_window(tmp_path, capsys):
    # 12 x 100 pretrained -> 8 x 60 synthetic windows: the encoder's weights are copied as
    # they are (none depends on the shape), the new head is the data's.
    import torch

    from emg_lens.checkpoints import load_checkpoint

    quick = ["--epochs", "1", "--quiet", "--n-gestures", "2", "--movement-seconds", "0.3"]
    assert main(["pretrain", "--out", str(tmp_path / "p"), *quick]) == 0
    argv = ["finetune", "--checkpoint", str(tmp_path / "p"), "--out", str(tmp_path / "f")]
    shape = ["--channels", "8", "--window", "60", "--step", "60", "--linear-probe"]
    assert main([*argv, *quick, *shape]) == 0
    assert "(12 channels x 100 samples) is fitted to the data's 8 x 60" in capsys.readouterr().out
    pretrained, tuned = load_checkpoint(tmp_path / "p"), load_checkpoint(tmp_path / "f")
    assert tuned.input_shape == (8, 60) and pretrained.input_shape == (12, 100)
    before, after = pretrained.state_dict(), tuned.state_dict()
    encoder = [k for k in before if not k.startswith("head.")]
    assert encoder and all(torch.equal(before[k], after[k]) for k in encoder)  # frozen: as copied


# ----------------------------------------------------------------------------- the demo


def test_readme_demo_table_has_the_shape_design_and_plants_the_study_gives():
    # What does not depend on how the models train: the table's rows and columns, the design
    # line for 8 subjects, and the planted claims. (The numbers and stars do: see
    # docs/getting-started.md.)
    import torch

    from emg_lens import EncoderConfig
    from emg_lens.cli.demo import DEMO_MODEL, DEMO_STUDY
    from emg_lens.data.preprocess import SubjectData
    from emg_lens.data.synthetic.emg_acc import demo_setup
    from emg_lens.models import IsoNet
    from emg_lens.studies import load_spec, run_study
    from emg_lens.studies.ablation.planted import format_findings
    from emg_lens.studies.ablation.summary import legend

    (printed,) = [b.text for b in blocks("text") if b.heading == "## What the demo shows"]
    synthetic, _ = demo_setup()
    n_classes = synthetic.n_gestures
    cfg = EncoderConfig.preset(
        "demo", **DEMO_MODEL, seed=0, modalities={"emg": 12, "acc": 12}, n_classes=n_classes,
        n_samples=100,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    models = {}
    for subject in range(1, synthetic.n_subjects + 1):  # untrained models: shape, not numbers
        model = IsoNet(cfg).eval()
        X = rng.standard_normal((16, 24, 100)).astype(np.float32)
        y = np.arange(16) % n_classes
        classes = list(range(1, n_classes + 1))
        data = SubjectData.from_windows(
            dict(cfg.modalities), (X, y), (X, y), subject=subject, classes=classes
        )
        models[subject] = (model, data)
    with torch.no_grad():
        result = run_study(load_spec(DEMO_STUDY), models=models, progress=False)
    table = result.table3().to_string(index=False).splitlines()
    lines = [line.strip() for line in printed.splitlines()]
    assert lines[0].split() == table[0].split()  # the header
    rows = [line for line in lines if re.match(r"(individual|all)\s", line)]
    assert [r.split()[:3] for r in rows] == [t.split()[:3] for t in table[1:]]  # row labels
    assert " ".join(result.power_note().split()) in " ".join(printed.split())  # the design
    found = [x.strip() for x in format_findings(result.claims()).splitlines()]  # declared
    claims = [x for x in found if x.startswith(("planted:", "Planted vs found"))]
    # the subjects a claim counts are those with a baseline over its classes (issue 86): on
    # untrained models some have none, so the header's count is the models' to say
    counted = [re.sub(r"\d+ subjects", "N subjects", x) for x in claims]
    assert len(claims) == 3 and counted == [
        re.sub(r"\d+ subjects", "N subjects", x)
        for x in lines
        if x.startswith(("planted:", "Planted vs found"))
    ]
    assert legend() in printed  # the key to the stars and r_rb, below the claims (issue 59)


# ----------------------------------------------------------------------------- every block

RUN_BY = {
    # (the block's heading, its first line): the test that runs it as written
    ("## A study file", "emg-lens study check studies/isonet_table3.toml"): (
        "tests/unit/test_quickstarts.py::test_readme_blocks_on_the_demo_run_from_a_fresh_folder"
    ),
    ("## Claims", "[class_groups]"): (
        "tests/unit/studies/ablation/test_claims.py::test_the_readmes_claims_example_is_the_demo_studys"
    ),
    ("# Export a masked model", "emg-lens export --checkpoint runs/demo/models/subject_1"): (
        "tests/unit/test_quickstarts.py::test_readme_blocks_on_the_demo_run_from_a_fresh_folder"
    ),
    ("# Export a masked model", "import numpy as np, onnxruntime as ort"): (
        "tests/unit/test_quickstarts.py::test_readme_blocks_on_the_demo_run_from_a_fresh_folder"
    ),
    ("# What an edge carries", "emg-lens demo --out runs/demo"): (
        "tests/unit/test_quickstarts.py::test_readme_blocks_on_the_demo_run_from_a_fresh_folder"
    ),
    ("### Studies and commands on such checkpoints", 'name = "mine"'): (
        "tests/integration/test_torch_encoder_studies.py::test_the_readme_route_runs_as_written"
    ),
    ("### Studies and commands on such checkpoints", "python models.py"): (
        "tests/integration/test_torch_encoder_studies.py::test_the_readme_route_runs_as_written"
    ),
    ("## Your own recordings", "emg-lens train --dataset files --root tests/data/libemg_myo"): (
        "tests/unit/test_quickstarts.py::test_readme_your_own_recordings_run_on_the_myo_files"
    ),
    (
        "### An HD-sEMG contraction: the force from a 64-electrode grid",
        "emg-lens study check studies/hdsemg_force_grid.toml",
    ): "tests/unit/test_quickstarts.py::test_readme_hdsemg_contraction_study_runs_on_the_real_file",
    ("### NinaPro DB2 (IsoNet's dataset)", "emg-lens train --dataset ninapro-db2 --root DB2"): (
        "tests/unit/test_quickstarts.py::test_readme_ninapro_db2_commands_run_on_synth_output"
    ),
    ("### HD-sEMG, 65 gestures", "emg-lens train --dataset hdsemg --root hdsemg"): (
        "tests/integration/test_hdsemg_cli.py::test_synth_train_evaluate_study_on_hdsemg_files"
    ),
    (
        "## TinyMyo's pretraining corpora: emg2pose, NinaPro DB6 and DB7",
        "emg-lens windows --source emg2pose --root emg2pose",
    ): "tests/unit/test_quickstarts.py::test_readme_pretraining_then_fine_tuning_as_above_runs",
    (
        "## TinyMyo's pretraining corpora: emg2pose, NinaPro DB6 and DB7",
        "emg-lens pretrain --preset tinymyo --out runs/tinymyo_synthetic",
    ): "tests/unit/test_quickstarts.py::test_readme_synthetic_pretraining_fine_tunes_on_epn612",
    ("## A published TinyMyo checkpoint", "from emg_lens.checkpoints import load_biofoundation"): (
        "tests/unit/test_quickstarts.py::test_readme_biofoundation_block_loads_a_checkpoint_file"
    ),
    # on one CPU process (--nproc-per-node 1 --device cpu), beside a planted emg_lens/
    ("# Scale out", "torchrun --standalone --nproc-per-node 4 --no-python emg-lens"): (
        "tests/integration/test_working_directory.py::"
        "test_the_readme_torchrun_line_runs_no_emg_lens_package_of_the_working_directory"
    ),
}
SKIPPED = {
    ("## Two commands", "make demo"): "make creates .venv and installs from the network (minutes); "
    "its demo is `emg-lens demo`, which tests/integration/test_demo.py runs, and `make test` is "
    "this suite",
    ("## Install", "make test TORCH_INDEX="): "make creates .venv and installs torch from "
    "PyTorch's CPU wheel index, over the network; .ci/run runs `make test` itself",
    ("## Two commands", 'pip install "torch'): "installs torch and emg_lens's dependencies from "
    "the network (PyTorch's CPU wheel index, then PyPI); test_a_pip_user_without_a_gpu_is_told_to_"
    "install_the_cpu_torch_first and tests/unit/test_install.py check the lines",
    ("## Install", 'pip install "torch'): "installs torch and emg_lens's dependencies from the "
    "network (PyTorch's CPU wheel index, then PyPI); test_a_pip_user_without_a_gpu_is_told_to_"
    "install_the_cpu_torch_first and tests/unit/test_install.py check the lines",
    ("## NinaPro DB5 (TinyMyo fine-tuning)", "emg-lens windows --source ninapro-db5"): "needs "
    "the published TinyMyo.safetensors, a download; "
    "test_readme_pretraining_then_fine_tuning_as_above_runs runs this block with --checkpoint "
    "runs/tinymyo_pretrained in its place, as the guide says to",
    ("## Downstream datasets (TinyMyo fine-tuning)", "emg-lens windows --dataset epn612"): "needs "
    "the published TinyMyo.safetensors, a download; its windows line runs in "
    "test_readme_synthetic_pretraining_fine_tunes_on_epn612, and that test fine-tunes the store",
    ("# Scale out", "torchrun --nnodes 2"): "needs two nodes and a rendezvous host (and GPUs); "
    "the one-node line runs on one CPU process in tests/integration/test_working_directory.py",
}


def test_every_readme_block_is_run_or_skipped_with_its_reason():
    """Every bash, toml and py block of the README and the guide pages."""
    listed = [*RUN_BY, *SKIPPED]
    found = [
        (block.heading, block.text.strip().splitlines()[0], block.where)
        for block in blocks()
        if block.language in CHECKED_LANGUAGES
    ]
    unlisted = [
        b for b in found if not any(b[0] == h and b[1].startswith(first) for h, first in listed)
    ]
    assert not unlisted, f"blocks no test runs and SKIPPED does not name: {unlisted}"
    stale = [
        key
        for key in listed
        if not any(h == key[0] and first.startswith(key[1]) for h, first, _ in found)
    ]
    assert not stale, f"listed blocks no page has any more: {stale}"
    for test in RUN_BY.values():  # each named test exists
        path, name = test.split("::")
        assert f"def {name}(" in (ROOT / path).read_text(), test


def _block(heading: str, language: str) -> str:
    (text,) = [b.text for b in blocks(language) if b.heading == heading]
    return text


def test_readme_biofoundation_block_loads_a_checkpoint_file(tmp_path, monkeypatch):
    """The guide's published-checkpoint block, on a TinyMyo.safetensors of the published
    shape (16 channels x 1000 samples, 3 heads) with one layer, written here."""
    from safetensors.torch import save_file

    from emg_lens import EncoderConfig
    from emg_lens.models import TinyMyo

    cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 16}, n_samples=1000)
    monkeypatch.chdir(tmp_path)
    save_file(TinyMyo(cfg).to_biofoundation(), "TinyMyo.safetensors")
    scope: dict = {}
    exec(compile(_block("## A published TinyMyo checkpoint", "py"), "tinymyo.md", "exec"), scope)
    model, same = scope["model"], scope["same"]
    assert not model.training and model.cfg.n_heads == 3 and model.input_shape == (16, 1000)
    assert all(
        (a == b).all() for a, b in zip(model.state_dict().values(), same.state_dict().values())
    )


@pytest.mark.slow
def test_readme_blocks_on_the_demo_run_from_a_fresh_folder(workdir, capsys):
    """A fresh clone's folder (the repository's studies/, no runs/): the blocks that read
    runs/demo, as written, after a small `emg-lens demo` (what `make demo` runs), the README's
    Python block among them."""
    pytest.importorskip("onnxruntime")
    (study,) = readme_blocks("## A study file")
    (export,) = readme_blocks("# Export a masked model")
    (probe,) = readme_blocks("# What an edge carries")
    # Before the demo: the checkpoint is missing, and the error says so (issue 41, item 6).
    assert main(export[0]) == 2
    assert "runs/demo/models/subject_1 does not exist" in capsys.readouterr().err
    small = ["--n-subjects", "2", "--epochs", "1", "--refits", "0", "--quiet", "--threads", "1"]
    assert main(["demo", *small]) == 0  # no refits: train_subjects' (tested there); only time
    # the README's notebook block, on a model the demo trained (issue 59)
    (notebook,) = [b for b in blocks("python") if b.page == ROOT / "README.md"]
    capsys.readouterr()
    exec(compile(notebook.text, notebook.where, "exec"), {})
    assert "TokenLayout: 25 tokens" in capsys.readouterr().out
    # the guide's block that reads subject 1's own test windows (issue 74)
    # and cuts its named electrodes (DB2's names, which the demo's models record)
    windows = [b for b in blocks("python") if b.heading == "## A checkpoint's own test windows"]
    for block in windows:
        exec(compile(block.text, block.where, "exec"), {})
    out = capsys.readouterr().out
    assert len(windows) == 2 and "subject 1: " in out and "[[9, 9], [9, 10], [10, 9]" in out
    run_readme(study, {})
    run_readme(export, {})
    # the demo line of the probe block is the one above, at its small size
    assert [argv[0] for argv in probe] == ["demo", "probe", "features"] and probe[0][1:] == [
        "--out",
        "runs/demo",
    ]
    small_features = ["--epochs", "1", "--n-windows", "32", "--n-features", "16"]
    run_readme(
        probe[1:], {"probe": ["--folds", "2", "--groups", "pooled"], "features": small_features}
    )
    assert Path("runs/demo/probe/report.html").is_file()
    assert Path("runs/demo/features/report.html").is_file()
    assert Path("runs/demo/probe/interchange_accuracy.png").is_file()
    assert Path("runs/t3/summary.md").is_file() and Path("isonet.onnx").is_file()
    # the guide's Python that runs the exported file
    scope: dict = {}
    exec(compile(_block("# Export a masked model", "py"), "export.md", "exec"), scope)
    assert scope["logits"].shape[0] == 8 and scope["meta"]["edges"] == "cross_modal"
    # (inspect's --out default under runs/, issue 41 item 6, is the guide's inspect line's:
    # tests/integration/test_torch_encoder_studies.py runs it, and test_cli.py inspects a
    # native checkpoint; an inspection here drew its 13 figures again for the same check)
    # the thread count is recorded (issue 41, item 4)
    meta = __import__("json").loads(Path("runs/demo/models/subject_1/config.json").read_text())
    assert meta["metadata"]["threads"] == 1
