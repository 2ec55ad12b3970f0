"""The cell store, figures, claims and code consent: disk and permission failures, recycled pids,
digests (issue 23 items 4, 5, 6, 7, 9).
"""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from emg_lens import EncoderConfig, cli
from emg_lens.checkpoints import save_checkpoint
from emg_lens.data.preprocess import SubjectData
from emg_lens.errors import (
    ArgumentError,
    CheckpointError,
    EmgLensError,
    SpecError,
    StorageError,
)
from emg_lens.models import IsoNet
from emg_lens.plotting import save_figures
from emg_lens.studies.store import CellStore
from tests.tiny import tiny_subject
from tests.unit.storage_faults import full_disk, read_only

ABLATION = textwrap.dedent(
    """
    name = "bad-study"
    models = "unused"

    [[interventions]]
    name = "cross"
    edges = "cross_modal"
    {extra}
    [layers]
    modes = ["all"]
    """
)
DISCOVERY = 'kind = "discovery"\nname = "bad-discovery"\nmodels = "unused"\n'


def _study_file(tmp: Path, text: str) -> Path:
    path = tmp / "study.toml"
    path.write_text(text)
    return path


def _models(tmp: Path) -> Path:
    """Two tiny checkpoints; ``study check`` reads their config and weights header only."""
    for subject in (1, 2):
        model = IsoNet(EncoderConfig.preset("tiny", seed=subject))
        save_checkpoint(model, tmp / "models" / f"subject_{subject}", metadata={"subject": subject})
    return tmp / "models"


# ----------------------------------------------------------------------------- item 4


def _read_only_store_with_a_cell_missing(tmp: Path):
    CellStore(tmp / "out", "{}")  # a store whose cells are not all there: the run must claim
    with pytest.MonkeyPatch.context() as patch, read_only(tmp / "out", patch):
        return CellStore(tmp / "out", "{}").try_claim(1)


def _full_disk_under_a_figure(tmp: Path):
    fig, ax = plt.subplots()
    ax.plot(range(1000))
    try:
        with pytest.MonkeyPatch.context() as patch, full_disk(tmp, patch, budget=100):
            return save_figures({"heatmap": fig}, tmp)
    finally:
        plt.close(fig)


def _read_only_out_folder(tmp: Path):
    with pytest.MonkeyPatch.context() as patch, read_only(tmp, patch):
        return CellStore(tmp / "new-study", "{}")


# ----------------------------------------------------------------------------- items 5, 7


def _cli(*argv: str, study: str = ABLATION.format(extra="")):
    def trigger(tmp: Path):
        return cli.run(["study", *[a.replace("SPEC", str(_study_file(tmp, study))) for a in argv]])

    return trigger


def _check_with_a_damaged_checkpoint(damage):
    def trigger(tmp: Path):
        models = _models(tmp)
        damage(models / "subject_2")
        spec = _study_file(tmp, ABLATION.format(extra=""))
        return cli.run(["study", "check", str(spec), "--models", str(models)])

    return trigger


def _truncate_weights(folder: Path) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64])


def _weights_of_another_model(folder: Path) -> None:
    other = IsoNet(EncoderConfig.preset("tiny", seed=0, n_layers=1))
    other = save_checkpoint(other, folder.parent.parent / "other")
    (folder / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())


def _torn_config(folder: Path) -> None:
    (folder / "config.json").write_text('{"format": "emg_lens.checkpoint/1", "model_cl')


# ----------------------------------------------------------------------------- items 6, 9


def _subject() -> tuple[IsoNet, SubjectData]:
    return tiny_subject(0, 8, labels="random")


HOOK = "edges = 'cross_modal'\n"
WITH_HOOK = '\n[[interventions]]\nname = "mine"\nhook = "hooks/mine.py:{attr}"\n'


def _hook_study(tmp: Path, body: str = HOOK, attr: str = "edges") -> Path:
    (tmp / "hooks").mkdir(exist_ok=True)
    (tmp / "hooks" / "mine.py").write_text(body)
    return _study_file(tmp, ABLATION.format(extra=WITH_HOOK.format(attr=attr)))


def _consent(*digests_of):
    def trigger(tmp: Path):
        from emg_lens.studies import load_spec
        from emg_lens.user_code import StudyCode

        spec = load_spec(_hook_study(tmp))
        hook = tmp / "hooks" / "mine.py"
        return StudyCode.load(spec.code_files(), allow_code=[digest(hook) for digest in digests_of])

    return trigger


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _edited_after_check(tmp: Path):
    from emg_lens.studies import load_spec
    from emg_lens.user_code import StudyCode

    spec = load_spec(_hook_study(tmp))
    listed = _sha256(tmp / "hooks" / "mine.py")
    (tmp / "hooks" / "mine.py").write_text(HOOK + "import os  # added after study check\n")
    return StudyCode.load(spec.code_files(), allow_code=[listed])  # the files are hashed again here


def _factory_run(body: str):
    def trigger(tmp: Path):
        from emg_lens.studies import run_study

        spec = _hook_study(tmp, textwrap.dedent(body), attr="make")
        return run_study(spec, models={1: _subject()}, allow_code=True, progress=False)

    return trigger


EXITING_HOOK = """
import sys

def stop(x, hook):
    sys.exit(3)

def make(model, layers):
    return [("blocks.0.attn.hook_pattern", stop)]
"""


ROWS: list[tuple] = [
    # item 4: out-of-space and permission failures are named, with the path and what to do
    (
        "store: claim in a read-only folder",
        _read_only_store_with_a_cell_missing,
        StorageError,
        "s1.claim",
    ),
    ("store: new study in a read-only folder", _read_only_out_folder, StorageError, "--out"),
    (  # a raw IsADirectoryError
        "store: study.json is a folder",
        lambda tmp: CellStore((tmp / "study.json").mkdir() or tmp, "{}"),
        SpecError,
        "study.json is empty, torn or no file (IsADirectoryError)",
    ),
    ("figures: disk full mid-figure", _full_disk_under_a_figure, StorageError, "heatmap.png"),
    # item 5: the wait for a claimed subject is the user's to set
    (
        "study run --wait-timeout -1",
        _cli("run", "SPEC", "--wait-timeout", "-1"),
        ArgumentError,
        "--wait-timeout",
    ),
    (
        "study run --wait-timeout nan",
        _cli("run", "SPEC", "--wait-timeout", "nan"),
        ArgumentError,
        "--wait-timeout",
    ),
    (
        "study run --wait-timeout on a discovery study",
        _cli("run", "SPEC", "--wait-timeout", "5", study=DISCOVERY),
        EmgLensError,
        "--wait-timeout",
    ),
    # item 7: inputs silently ignored
    (
        "study run --epochs on a discovery study",
        _cli("run", "SPEC", "--epochs", "3", study=DISCOVERY),
        EmgLensError,
        "--epochs",
    ),
    (
        "study check: truncated weights of the 2nd model",
        _check_with_a_damaged_checkpoint(_truncate_weights),
        CheckpointError,
        "subject_2/model.safetensors",
    ),
    (
        "study check: weights of another model",
        _check_with_a_damaged_checkpoint(_weights_of_another_model),
        CheckpointError,
        "subject_2",
    ),
    (
        "study check: torn config.json of the 2nd model",
        _check_with_a_damaged_checkpoint(_torn_config),
        CheckpointError,
        "subject_2/config.json",
    ),
    # item 9: consent to the exact files study check listed
    ("--allow-code abc", _consent(lambda path: "abc"), ArgumentError, "64 hexadecimal digits"),
    (
        "--allow-code digest of no file of the study",
        _consent(_sha256, lambda path: "f" * 64),
        SpecError,
        "matches none of the study's files",
    ),
    (
        "--allow-code digest of a file edited since",
        _edited_after_check,
        SpecError,
        "hooks/mine.py",
    ),
    # item 6: a hook factory that returns no hooks, a hook that exits
    (
        "hook factory returns a dict",
        _factory_run("def make(model, layers):\n    return {'x': 1}\n"),
        SpecError,
        "hooks/mine.py:make returned a dict",
    ),
    (
        "hook raises SystemExit",
        _factory_run(EXITING_HOOK),
        SpecError,
        "SystemExit(3)",
    ),
]


# ----------------------------------------------------------------------------- issue 24: modules


def _torch_encoder_study(modules: str = "", builder: str | None = None):
    """``study check`` of a study over a converted nn.TransformerEncoder checkpoint, its
    ``modules`` key as given (``builder``: the models.py it names)."""

    def trigger(tmp: Path):
        from tests.unit.torch_encoder_checkpoints import save_subjects

        models = save_subjects(tmp / "models", (1,))
        if builder is not None:
            (tmp / "models.py").write_text(builder)
        study = ABLATION.format(extra="").replace(
            'models = "unused"', f'models = "{models}"\n{modules}'
        )
        return cli.run(["study", "check", str(_study_file(tmp, study))])

    return trigger


def _built_by(body: str, attr: str = "build_modules"):
    """A converted checkpoint loaded with the modules that ``body``'s function builds."""

    def trigger(tmp: Path):
        from emg_lens.user_code import ModuleBuilder, load_model, locate_code
        from tests.unit.torch_encoder_checkpoints import USER_CODE, save_subjects

        models = save_subjects(tmp / "models", (1,))
        (tmp / "models.py").write_text(USER_CODE + textwrap.dedent(body))
        code = locate_code(f"models.py:{attr}", tmp, key="modules")
        return load_model(models / "subject_1", ModuleBuilder.load(code, allow_code=True))

    return trigger


def _command_with(*options: str):
    def trigger(tmp: Path):
        from tests.unit.torch_encoder_checkpoints import save_subjects, write_user_code

        models = save_subjects(tmp / "models", (1,))
        builder = write_user_code(tmp, marking=False)
        argv = [o.replace("MODELS", str(models)).replace("BUILDER", str(builder)) for o in options]
        return cli.run(argv)

    return trigger


MODULES_ROWS: list[tuple] = [
    (
        "study: modules without a function",
        _torch_encoder_study('modules = "models.py"'),
        SpecError,
        "modules must look like 'models.py:build_modules'",
    ),
    ("study: modules = 3", _torch_encoder_study("modules = 3"), SpecError, "modules ("),
    (
        "study: modules through ..",
        _torch_encoder_study('modules = "../models.py:build_modules"'),
        SpecError,
        "modules '../models.py:build_modules': '..' leaves",
    ),
    (
        "study: modules file missing",
        _torch_encoder_study('modules = "models.py:build_modules"'),
        SpecError,
        "modules 'models.py:build_modules': file 'models.py' not found",
    ),
    (
        "study check: converted checkpoints without modules",
        _torch_encoder_study(),
        CheckpointError,
        'add modules = "models.py:build_modules" to the study file',
    ),
    (
        "modules: a name that is no function",
        _built_by("not_a_function = 3\n", attr="not_a_function"),
        SpecError,
        "modules models.py:not_a_function is an int; it must name a function",
    ),
    (
        "modules: builder returns a list",
        _built_by("def listed(info):\n    return list(build_modules(info).values())\n", "listed"),
        SpecError,
        "models.py:listed returned a list; accepted: a dict {'embed': torch.nn.Module",
    ),
    (
        "modules: builder leaves out the readout",
        _built_by("def half(info):\n    return {'embed': build_modules(info)['embed']}\n", "half"),
        SpecError,
        "models.py:half returned {'embed': a ChannelTokens}; accepted: a dict {'embed'",
    ),
    (
        "modules: builder raises",
        _built_by("def broken(info):\n    return info['no such key']\n", "broken"),
        SpecError,
        "models.py:broken raised KeyError('no such key') while building the modules",
    ),
    (
        "modules: builder of another architecture",
        _built_by(
            "def wider(info):\n"
            "    return {'embed': ChannelTokens(48, 200, 16), 'readout': MeanReadout(16, 5)}\n",
            "wider",
        ),
        CheckpointError,
        "the modules came from models.py:wider",
    ),
    (
        "evaluate --modules without a function",
        _command_with("evaluate", "--models", "MODELS", "--modules", "BUILDER", "--allow-code"),
        ArgumentError,
        "must look like FILE:FUNCTION",
    ),
    (
        "export --modules of a missing file",
        _command_with(
            "export",
            "--checkpoint",
            "MODELS/subject_1",
            "--out",
            "x.onnx",
            "--modules",
            "missing.py:build_modules",
            "--allow-code",
        ),
        ArgumentError,
        "--modules 'missing.py:build_modules'",
    ),
    (
        "inspect --allow-code SHA256 without --modules",
        _command_with(
            "inspect", "--checkpoint", "MODELS/subject_1", "--out", "x", "--allow-code", "a" * 64
        ),
        ArgumentError,
        "no --modules FILE:FUNCTION was given",
    ),
]

ROWS += MODULES_ROWS
