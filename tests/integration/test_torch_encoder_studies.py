"""Studies and commands on a folder of converted ``nn.TransformerEncoder`` checkpoints (issue
24): the user's tokenizer and readout, which no ``config.json`` rebuilds, come from a function
in the user's own Python file (``modules = "models.py:build_modules"`` in a study file,
``--modules models.py:build_modules`` on the command line), run only with consent
(``--allow-code``), its digest part of every cell's provenance; without it, the error says
exactly what to add."""

from __future__ import annotations

import csv
import hashlib
import re
import runpy
import shlex
import textwrap
from pathlib import Path

import pytest

from emg_lens.cli import main
from emg_lens.errors import CheckpointError, SpecError
from emg_lens.studies import run_study
from tests.docs_pages import section
from tests.unit.torch_encoder_checkpoints import (
    FINE_TUNE_STEPS,
    MARKER,
    USER_CODE,
    save_subjects,
    source,
    write_user_code,
)

STUDY = textwrap.dedent(
    """
    name = "mine"
    models = "{models}"
    {modules}
    [[interventions]]
    name = "cross"
    edges = "cross_modal"

    [layers]
    modes = ["all", "individual"]
    """
)
WITH_MODULES = 'modules = "models.py:build_modules"'
BUILDER = ["--modules", "models.py:build_modules"]


@pytest.fixture(scope="module")
def models(shared) -> Path:
    """Two subjects' converted checkpoints, fine-tuned briefly (discovery needs a model whose
    attention matters); built once per run."""
    recipe = {
        "subjects": (1, 2),
        "adam_steps": FINE_TUNE_STEPS,
        "data": source(),
        "user_code": USER_CODE,
    }
    build = lambda path: save_subjects(path, recipe["subjects"], train=True)  # noqa: E731
    return shared.folder(shared.key("torch_encoder_models", recipe), build)


@pytest.fixture(scope="module")
def untrained(tmp_path_factory) -> Path:
    """The same two subjects' checkpoints, not fine-tuned: what a refusal reads (nothing is
    scored), so the fast tier pays no fine-tuning for it."""
    return save_subjects(tmp_path_factory.mktemp("untrained"), (1, 2))


def _study(folder: Path, models: Path, modules: str = WITH_MODULES) -> Path:
    write_user_code(folder)
    spec = folder / "study.toml"
    spec.write_text(STUDY.format(models=models, modules=modules))
    return spec


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- the guide
# The guide's route first: it trains its own models, so under pytest-xdist it runs beside the
# first test of the shared `models` below building them (that first test first, the next one
# on the other worker waited for the build)


def _readme_route() -> tuple[str, str, list[list[str]]]:
    """The guide's torch-encoder route (docs/guide/bring-your-own-model.md, "Studies and commands
    on such checkpoints"): ``models.py``, the study file and the commands, as written."""
    text = section("### Studies and commands on such checkpoints")
    (models,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "# models.py" in b]
    (study,) = re.findall(r"```toml\n(.*?)```", text, re.S)
    (bash,) = re.findall(r"```bash\n(.*?)```", text, re.S)
    commands = [shlex.split(line, comments=True) for line in bash.replace("\\\n", " ").split("\n")]
    return models, study, [argv for argv in commands if argv]


@pytest.mark.slow
def test_the_readme_route_runs_as_written(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    models, study, commands = _readme_route()
    monkeypatch.chdir(tmp_path)
    Path("models.py").write_text(models)
    Path("mine.toml").write_text(study)
    assert commands[0] == ["python", "models.py"]
    runpy.run_path("models.py", run_name="__main__")
    assert sorted(p.name for p in Path("runs/mine").iterdir()) == ["subject_1", "subject_2"]
    smaller = {"discover": ["--subjects", "1", "--verify-top", "2", "--quiet"]}  # appended only
    for argv in commands[1:]:
        assert argv[0] == "emg-lens"
        assert main([*argv[1:], *smaller.get(argv[1], [])]) == 0, argv
    assert Path("runs/studies/mine/per_subject.csv").is_file() and Path("mine.onnx").is_file()
    # the prose's inspect line, with no --out: its default is under runs/ (issue 41, item 6)
    text = section("### Studies and commands on such checkpoints")
    (inspect,) = re.findall(r"`(emg-lens inspect --checkpoint runs/mine[^`]*)`", text)
    argv = shlex.split(inspect)
    assert "--out" not in argv
    assert main([*argv[1:], "--n-windows", "8"]) == 0
    assert Path("runs/inspect/subject_1/report.html").is_file()


@pytest.mark.slow
def test_a_study_runs_with_the_builder_and_consent(models, tmp_path, capsys):
    spec = _study(tmp_path, models)
    builder = tmp_path / "models.py"
    assert main(["study", "check", str(spec)]) == 0
    out = capsys.readouterr().out
    assert str(builder.resolve()) in out and f"--allow-code {_sha256(builder)}" in out
    assert not (tmp_path / MARKER).exists()  # listed, never run

    run = ["study", "run", str(spec), "--out", str(tmp_path / "out"), "--quiet"]
    assert main([*run, "--allow-code"]) == 0
    assert (tmp_path / MARKER).read_text() == "ran"
    # check printed the design line the run's summary prints, before anything ran
    design = next(line for line in out.splitlines() if line.startswith("Design:"))
    assert "2 subjects" in design and design in (tmp_path / "out" / "summary.md").read_text()
    with open(tmp_path / "out" / "per_subject.csv") as f:
        rows = list(csv.DictReader(f))
    assert {row["subject"] for row in rows} == {"1", "2"}
    assert len(rows) == 2 * (1 + 1 + 2)  # baseline, all layers, each of the 2 layers


def test_without_consent_the_builder_never_runs(untrained, tmp_path, capsys):
    spec = _study(tmp_path, untrained)
    builder = tmp_path / "models.py"
    run = ["study", "run", str(spec), "--out", str(tmp_path / "out"), "--quiet"]
    assert main(run) == 2
    err = capsys.readouterr().err
    assert str(builder.resolve()) in err and _sha256(builder) in err and "--allow-code" in err
    assert not (tmp_path / MARKER).exists()
    with pytest.raises(SpecError, match="--allow-code"):  # the refusal of consent, by name
        run_study(spec, progress=False)


def test_without_modules_the_error_says_what_to_add(untrained, tmp_path, capsys):
    spec = _study(tmp_path, untrained, modules="")
    for command in (["check", str(spec)], ["run", str(spec), "--quiet", "--allow-code"]):
        assert main(["study", *command]) == 2
        err = capsys.readouterr().err
        assert "HookedTorchEncoder" in err and "subject_1" in err
        assert 'modules = "models.py:build_modules"' in err and "--allow-code" in err
    with pytest.raises(CheckpointError, match="build_modules"):
        run_study(spec, allow_code=True, progress=False)


@pytest.mark.slow
def test_editing_the_builder_recomputes_the_cells(models, tmp_path):
    spec = _study(tmp_path, models)
    out = tmp_path / "out"
    first = run_study(spec, out_dir=out, allow_code=True, progress=False)
    again = run_study(spec, out_dir=out, allow_code=True, progress=False)
    assert first.recomputed == 8 and (again.reused, again.recomputed) == (8, 0)
    builder = tmp_path / "models.py"
    builder.write_text(builder.read_text() + "\n# edited\n")
    edited = run_study(spec, out_dir=out, allow_code=True, progress=False)
    assert (edited.reused, edited.recomputed) == (0, 8)


@pytest.mark.slow
def test_a_discovery_study_file_takes_the_builder(models, tmp_path, capsys):
    write_user_code(tmp_path)
    spec = tmp_path / "circuit.toml"
    spec.write_text(
        f'kind = "discovery"\nname = "circuit"\nmodels = "{models}"\n{WITH_MODULES}\n'
        "verify_top = 2\nsubjects = [1]\n"
    )
    run = ["study", "run", str(spec), "--out", str(tmp_path / "out"), "--quiet"]
    assert main(run) == 2 and "--allow-code" in capsys.readouterr().err
    assert not (tmp_path / MARKER).exists()
    assert main([*run, "--allow-code"]) == 0
    assert (tmp_path / "out" / "circuits.csv").is_file()


def _commands(models: Path) -> dict[str, list[str]]:
    subject = str(models / "subject_1")
    return {
        "discover": ["discover", "--models", str(models), "--subjects", "1", "--quiet"],
        "inspect": ["inspect", "--checkpoint", subject, "--n-windows", "16", "--out", "inspect"],
        "export": [
            "export",
            "--checkpoint",
            subject,
            "--out",
            "mine.onnx",
            "--edges",
            "cross_modal",
        ],
        "evaluate": ["evaluate", "--models", str(models)],
    }


@pytest.mark.slow
@pytest.mark.parametrize("command", ["discover", "inspect", "export", "evaluate"])
def test_the_commands_take_the_builder(models, tmp_path, monkeypatch, capsys, command):
    if command == "export":
        pytest.importorskip("onnxruntime")
    monkeypatch.chdir(tmp_path)
    builder = write_user_code(tmp_path)
    argv = _commands(models)[command]

    assert main(argv) == 2  # no --modules: the error says what to add
    err = capsys.readouterr().err
    assert "HookedTorchEncoder" in err and "--modules" in err and "build_modules" in err

    assert main([*argv, *BUILDER]) == 2  # no consent: nothing runs
    err = capsys.readouterr().err
    assert str(builder.resolve()) in err and _sha256(builder) in err and "--allow-code" in err
    assert main([*argv, *BUILDER, "--allow-code", "0" * 64]) == 2  # consent to other bytes
    assert "other bytes" in capsys.readouterr().err
    assert not (tmp_path / MARKER).exists()

    # consent to exactly the bytes of the file
    status = main([*argv, *BUILDER, "--allow-code", _sha256(builder)])
    assert (tmp_path / MARKER).read_text() == "ran"
    assert status == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    written = {
        "discover": Path("runs/discovery/discovery/circuits.csv"),
        "inspect": Path("inspect/head_importance.csv"),
        "export": Path("mine.onnx"),
    }
    assert command not in written or written[command].is_file()
    if command == "inspect":  # a user's readout is no linear map: attribution is skipped, said
        assert "direct attribution: skipped" in out or "attribution: skipped" in out
        assert not (tmp_path / "inspect" / "attribution.csv").exists()
        # issue 41, item 5: what can be drawn is (the synthetic data's placement, each
        # channel's own position token: QK by channel), what cannot is listed with why
        for name in ("attention_received.png", "channel_effect.png", "qk_circuit.csv"):
            assert (tmp_path / "inspect" / name).is_file(), name
        summary = (tmp_path / "inspect" / "summary.md").read_text()
        assert "- Left out: attribution (table and figure):" in summary and "post-LN" in summary
        assert "- Left out: ov_circuit (table and figure):" in summary
    if command == "evaluate":
        assert "mean test accuracy over 2 subjects" in out
