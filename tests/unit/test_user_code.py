"""A study runs someone else's code only with consent, only from its own folder (issue 18).

A study file may name Python files (``hook = "hooks/file.py:name"``). Without
``allow_code=True`` (``--allow-code``) the study is refused before anything runs, and the
refusal lists every file with its resolved path and SHA-256; ``study check`` lists them and
executes nothing; paths that leave the study's folder are refused; the files' digests are part
of every cell's provenance; pickled checkpoints are read with ``weights_only=True``. Consent may
name the exact files ``study check`` listed, by SHA-256 (issue 23 item 9), and a hook factory
that returns no hooks or exits the process is a named error naming its file and function (item 6).
"""

from __future__ import annotations

import hashlib
import os
import re
import textwrap
from pathlib import Path

import pytest
import torch

from emg_lens import EncoderConfig
from emg_lens.checkpoints import read_biofoundation_state_dict, save_checkpoint
from emg_lens.cli import main
from emg_lens.data.datasets import data_source
from emg_lens.data.preprocess import PreprocessSpec
from emg_lens.data.synthetic.emg_acc import SyntheticSpec
from emg_lens.errors import (
    ArgumentError,
    CheckpointError,
    SpecError,
)
from emg_lens.models import IsoNet, TinyMyo
from emg_lens.studies import load_spec, run_study
from emg_lens.user_code import load_code, locate_code
from tests.tiny import tiny_subject

MARKER = "marker.txt"
REPO = Path(__file__).resolve().parents[2]

# A hook file that leaves a marker file beside itself when it is executed.
HOOK = textwrap.dedent(
    """
    from pathlib import Path

    Path(__file__).with_name("marker.txt").write_text("executed")
    edges = "between(emg, acc)"
    """
)

SPEC = textwrap.dedent(
    """
    name = "consent"
    models = "unused"
    return_type = "logits"

    [[interventions]]
    name = "cross"
    edges = "cross_modal"

    [[interventions]]
    name = "mine"
    hook = "{ref}"

    [layers]
    modes = ["all"]
    """
)


def _study(tmp_path, ref="hooks/mine.py:edges"):
    (tmp_path / "hooks").mkdir(exist_ok=True)
    hook = tmp_path / "hooks" / "mine.py"
    hook.write_text(HOOK)
    spec = tmp_path / "study.toml"
    spec.write_text(SPEC.format(ref=ref))
    return spec, hook


def _subjects(n=2):
    return {
        subject: tiny_subject(
            subject, 16, labels="random", subject=subject, n_layers=2, init_range=0.5
        )
        for subject in range(1, n + 1)
    }


def test_without_consent_the_study_is_refused_naming_file_and_digest(tmp_path):
    spec, hook = _study(tmp_path)
    digest = hashlib.sha256(hook.read_bytes()).hexdigest()
    with pytest.raises(SpecError) as info:
        run_study(spec, models=_subjects(), progress=False)
    message = str(info.value)
    assert str(hook.resolve()) in message and digest in message
    assert "--allow-code" in message and "allow_code=True" in message
    assert not (hook.parent / MARKER).exists()  # refused before anything ran


def test_with_consent_the_study_runs_the_file(tmp_path):
    spec, hook = _study(tmp_path)
    result = run_study(spec, models=_subjects(), allow_code=True, progress=False)
    assert (hook.parent / MARKER).read_text() == "executed"
    assert set(result.per_subject["intervention"]) == {"baseline", "cross", "mine"}


def test_study_check_lists_the_code_and_executes_nothing(tmp_path, capsys):
    spec, hook = _study(tmp_path)
    assert main(["study", "check", str(spec)]) == 2  # printed; no models, so run would stop
    out = capsys.readouterr().out
    assert str(hook.resolve()) in out
    assert hashlib.sha256(hook.read_bytes()).hexdigest() in out
    assert not (hook.parent / MARKER).exists()


@pytest.mark.parametrize(
    "ref",
    ["../hooks/mine.py:edges", "hooks/../../mine.py:edges", "/tmp/mine.py:edges"],
    ids=["parent", "inner-dotdot", "absolute"],
)
def test_a_study_outside_any_project_reaches_only_below_its_folder(tmp_path, ref):
    """No pyproject.toml or .git above the study file: its folder is the project."""
    study_dir = tmp_path / "study"
    study_dir.mkdir()
    spec, _ = _study(study_dir, ref=ref)
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "mine.py").write_text(HOOK)  # exists, but outside the study folder
    with pytest.raises(SpecError, match=r"mine\.py.*(absolute paths|'\.\.' leaves)"):
        run_study(load_spec(spec), models=_subjects(), allow_code=True, progress=False)
    assert not (tmp_path / "hooks" / MARKER).exists()


def _project(tmp_path: Path, marker: str = "pyproject.toml") -> Path:
    """A project (``marker`` at its root) with its recipes in a top-level hooks/ folder and a
    study file in studies/ naming one of them."""
    project = tmp_path / "project"
    (project / "studies").mkdir(parents=True)
    (project / "hooks").mkdir()
    if marker == ".git":
        (project / ".git").mkdir()
    else:
        (project / marker).write_text("")
    (project / "hooks" / "mine.py").write_text(HOOK)
    return project


@pytest.mark.parametrize("marker", ["pyproject.toml", ".git"])
def test_a_study_names_code_anywhere_inside_its_project(tmp_path, marker):
    project = _project(tmp_path, marker)
    spec, _ = _study(project / "studies", ref="../hooks/mine.py:edges")
    (project / "studies" / "hooks" / "mine.py").unlink()  # only the top-level recipe is left
    result = run_study(load_spec(spec), models=_subjects(), allow_code=True, progress=False)
    assert (project / "hooks" / MARKER).read_text() == "executed"
    assert "mine" in set(result.per_subject["intervention"])


def test_dotdot_past_the_project_root_is_refused(tmp_path):
    project = _project(tmp_path)
    (tmp_path / "mine.py").write_text(HOOK)  # beside the project, outside it
    spec, _ = _study(project / "studies", ref="../../mine.py:edges")
    with pytest.raises(SpecError, match=r"'\.\.' leaves the study's project .*project"):
        run_study(load_spec(spec), models=_subjects(), allow_code=True, progress=False)
    assert not (tmp_path / MARKER).exists()


def test_an_absolute_path_inside_the_project_is_still_refused(tmp_path):
    project = _project(tmp_path)
    ref = f"{project / 'hooks' / 'mine.py'}:edges"
    spec, _ = _study(project / "studies", ref=ref)
    with pytest.raises(SpecError, match="absolute paths are refused"):
        run_study(load_spec(spec), models=_subjects(), allow_code=True, progress=False)


@pytest.mark.parametrize("inside", [False, True], ids=["study-folder", "project"])
def test_a_link_out_of_the_project_is_refused(tmp_path, inside):
    """A link below the study folder (or in the project's hooks/) to a file outside the
    project: its path reads as inside, its target is not."""
    outside = tmp_path / "outside.py"
    outside.write_text(HOOK)
    if inside:
        project = _project(tmp_path)
        link = project / "hooks" / "linked.py"
        os.symlink(outside, link)
        spec, _ = _study(project / "studies", ref="../hooks/linked.py:edges")
    else:
        study_dir = tmp_path / "study"
        study_dir.mkdir()
        spec, hook = _study(study_dir)
        hook.unlink()
        os.symlink(outside, hook)
    with pytest.raises(SpecError, match=r"outside the study's project .*through a link"):
        run_study(spec, models=_subjects(), allow_code=True, progress=False)
    assert not (tmp_path / MARKER).exists()


def test_the_working_directory_is_not_searched(tmp_path, monkeypatch):
    study_dir = tmp_path / "study"
    study_dir.mkdir()
    spec = study_dir / "study.toml"
    spec.write_text(SPEC.format(ref="hooks/mine.py:edges"))
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "mine.py").write_text(HOOK)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exception, match=f"not found: no {study_dir.resolve()}"):
        run_study(spec, models=_subjects(), allow_code=True, progress=False)


@pytest.mark.slow
def test_editing_a_hook_file_recomputes_its_cells(tmp_path):
    spec, hook = _study(tmp_path)
    subjects = _subjects()
    out = tmp_path / "out"
    first = run_study(spec, models=subjects, out_dir=out, allow_code=True, progress=False)
    again = run_study(spec, models=subjects, out_dir=out, allow_code=True, progress=False)
    assert again.recomputed == 0 and again.reused == first.recomputed
    hook.write_text(HOOK.replace("between(emg, acc)", "between(acc, emg)"))
    edited = run_study(spec, models=subjects, out_dir=out, allow_code=True, progress=False)
    # The hook's cells (one per subject) are recomputed; baseline and plain edges are reused.
    assert edited.recomputed == len(subjects)
    assert edited.reused == first.recomputed - len(subjects)


class _Payload:
    """Unpickling this object would write a marker file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (_touch, (self.path,))


def _touch(path):
    with open(path, "w") as fh:
        fh.write("pwned")


def test_a_pickle_that_runs_code_on_load_is_refused(tmp_path):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "extra": _Payload(str(marker))}, path)
    with pytest.raises(CheckpointError, match=r"evil\.ckpt"):
        read_biofoundation_state_dict(path)
    assert not marker.exists()


def test_a_plain_pickled_state_dict_loads(tmp_path):
    cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 2}, n_samples=40)
    source = TinyMyo(cfg)
    path = tmp_path / "tinymyo.ckpt"
    # A PyTorch Lightning checkpoint: the weights under "state_dict", prefixed "model.".
    lightning = {f"model.{k}": v for k, v in source.to_biofoundation().items()}
    torch.save({"state_dict": lightning, "epoch": 3}, path)
    sd = read_biofoundation_state_dict(path)
    model = TinyMyo.from_biofoundation(sd, n_samples=40, rope_positions="token")
    x = source.example_input(2)
    torch.testing.assert_close(model(x), source(x))


def test_other_checkpoint_files_are_refused(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\0" * 8)
    with pytest.raises(CheckpointError, match=r"weights\.bin.*\.ckpt"):
        read_biofoundation_state_dict(path)
    with pytest.raises(CheckpointError, match=r"checkpoint .*missing\.ckpt does not exist"):
        read_biofoundation_state_dict(tmp_path / "missing.ckpt")
    # a training's checkpoint folder exists: said so, not "does not exist"
    with pytest.raises(CheckpointError, match=re.escape(f"checkpoint {tmp_path} is a folder")):
        read_biofoundation_state_dict(tmp_path)


def test_the_repository_recipes_run_with_consent():
    # studies/custom_recipes.toml names two files in the project's top-level hooks/.
    spec = load_spec(REPO / "studies" / "custom_recipes.toml")
    with pytest.raises(SpecError, match=r"(?s)cls_reads_emg_only\.py.*soft_cross_modal\.py"):
        run_study(spec, models=_subjects(), progress=False)
    result = run_study(spec, models=_subjects(), allow_code=True, progress=False)
    assert {"cls_no_acc", "soft_cross"} <= set(result.per_subject["intervention"])


# ----------------------------------------------------------------------------- consent by digest


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_consent_to_a_digest_runs_that_file_and_refuses_it_once_changed(tmp_path):
    spec, hook = _study(tmp_path)
    listed = _digest(hook)
    result = run_study(spec, models=_subjects(), allow_code=[listed], progress=False)
    assert (hook.parent / MARKER).read_text() == "executed"
    assert "mine" in set(result.per_subject["intervention"])

    # Edited after it was looked at: the consent does not cover the new bytes.
    (hook.parent / MARKER).unlink()
    hook.write_text(HOOK + "\n# changed\n")
    with pytest.raises(SpecError) as info:
        run_study(spec, models=_subjects(), allow_code=[listed], progress=False)
    message = str(info.value)
    assert str(hook.resolve()) in message and _digest(hook) in message and listed in message
    assert "study check" in message
    assert not (hook.parent / MARKER).exists()  # refused before anything ran


def test_a_digest_must_be_a_sha256_and_must_name_a_file_of_the_study(tmp_path):
    spec, hook = _study(tmp_path)
    with pytest.raises(ArgumentError, match="64 hexadecimal digits"):
        run_study(spec, models=_subjects(), allow_code=["abc123"], progress=False)
    other = "0" * 64
    with pytest.raises(SpecError, match=f"{other} matches none of the study's files"):
        run_study(spec, models=_subjects(), allow_code=[_digest(hook), other], progress=False)
    assert not (hook.parent / MARKER).exists()


def _checkpoints(folder: Path) -> Path:
    source = data_source(
        "synthetic",
        synthetic=SyntheticSpec(n_subjects=1, movement_seconds=1.0),
        preprocess=PreprocessSpec(segment=(0.25, 1.0), step=100),
    )
    cfg = EncoderConfig.preset(
        "tiny", seed=1, modalities={"emg": 12, "acc": 36}, n_samples=200, n_classes=12
    )
    save_checkpoint(
        IsoNet(cfg), folder / "subject_1", metadata={"subject": 1, "data_source": source}
    )
    return folder


@pytest.mark.slow
def test_study_check_prints_the_consent_that_study_run_takes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EMG_LENS_CACHE", str(tmp_path / "cache"))
    spec, hook = _study(tmp_path)
    models = _checkpoints(tmp_path / "models")
    assert main(["study", "check", str(spec), "--models", str(models)]) == 0
    out = capsys.readouterr().out
    assert f"--allow-code {_digest(hook)}" in out
    assert not (hook.parent / MARKER).exists()

    run = ["study", "run", str(spec), "--models", str(models), "--out", str(tmp_path / "out")]
    assert main([*run, "--quiet", "--allow-code", _digest(hook)]) == 0
    assert (hook.parent / MARKER).read_text() == "executed"
    capsys.readouterr()
    (hook.parent / MARKER).unlink()
    hook.write_text(HOOK.replace("between(emg, acc)", "between(acc, emg)"))
    assert main([*run, "--quiet", "--allow-code", "0" * 64]) == 2
    err = capsys.readouterr().err
    assert str(hook.resolve()) in err and _digest(hook) in err
    assert not (hook.parent / MARKER).exists()


# ----------------------------------------------------------------------------- hook factories

FACTORY_SPEC = textwrap.dedent(
    """
    name = "factory"
    models = "unused"

    [[interventions]]
    name = "mine"
    hook = "hooks/factory.py:make"

    [layers]
    modes = ["all"]
    """
)


def _factory(tmp_path: Path, body: str) -> Path:
    (tmp_path / "hooks").mkdir(exist_ok=True)
    (tmp_path / "hooks" / "factory.py").write_text(textwrap.dedent(body))
    spec = tmp_path / "study.toml"
    spec.write_text(FACTORY_SPEC)
    return spec


@pytest.mark.parametrize(
    ("returned", "described"),
    [
        ("{'blocks.0.attn.hook_pattern': lambda x, hook: x}", "a dict"),
        ("[lambda x, hook: x]", "item 0 is a function"),
        ("[('blocks.0.attn.hook_pattern', 3)]", "item 0's hook is an int"),
        ("None", "NoneType"),
    ],
    ids=["dict", "bare-function", "hook-not-callable", "none"],
)
def test_a_factory_that_returns_no_hooks_is_named(tmp_path, returned, described):
    spec = _factory(tmp_path, f"def make(model, layers):\n    return {returned}\n")
    with pytest.raises(SpecError) as info:
        run_study(spec, models=_subjects(1), allow_code=True, progress=False)
    message = str(info.value)
    assert "hooks/factory.py:make" in message and described in message
    assert "(hook name or name filter, hook function) pairs" in message  # what is accepted


EXITS = {
    "on-import": "import sys\nsys.exit(3)\ndef make(model, layers):\n    return []\n",
    "in-factory": "import sys\ndef make(model, layers):\n    sys.exit(3)\n",
    "in-hook": (
        "import sys\n"
        "def stop(x, hook):\n    sys.exit(3)\n"
        "def make(model, layers):\n    return [('blocks.0.attn.hook_pattern', stop)]\n"
    ),
}


@pytest.mark.parametrize("where", list(EXITS))
def test_a_study_hook_that_exits_is_a_named_error(tmp_path, monkeypatch, capsys, where):
    monkeypatch.setenv("EMG_LENS_CACHE", str(tmp_path / "cache"))
    spec = _factory(tmp_path, EXITS[where])
    models = _checkpoints(tmp_path / "models")
    run = ["study", "run", str(spec), "--models", str(models), "--out", str(tmp_path / "out")]
    assert main([*run, "--quiet", "--allow-code"]) == 2  # not exit 3, without a word
    err = capsys.readouterr().err
    assert "hooks/factory.py" in err and "SystemExit(3)" in err


@pytest.mark.parametrize("content", [{"epoch": 3}, [torch.zeros(2)]], ids=["no-tensors", "a-list"])
def test_a_checkpoint_without_a_state_dict_of_tensors_is_refused(tmp_path, content):
    path = tmp_path / "empty.ckpt"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=r"empty\.ckpt holds no tensors"):
        read_biofoundation_state_dict(path)


def test_code_that_is_not_a_py_file_is_refused(tmp_path):
    (tmp_path / "edges.txt").write_text("def make(): pass\n")
    with pytest.raises(SpecError, match=r"hook 'edges.txt:make' must name a .py file"):
        locate_code("edges.txt:make", tmp_path)


def test_a_file_edited_after_its_consent_was_listed_is_not_run(tmp_path):
    file = tmp_path / "hook.py"
    file.write_text("def make():\n    return 1\n")
    code = locate_code("hook.py:make", tmp_path)
    file.write_text(f"open({str(tmp_path / MARKER)!r}, 'w')\ndef make():\n    return 2\n")
    with pytest.raises(SpecError, match=r"hook\.py changed after it was listed for consent"):
        load_code(code, allow_code=True)
    assert not (tmp_path / MARKER).exists()
