"""One subject, one folder (issue 57 item 2): two folders of a models folder that hold one
subject's model (a backup ``subject_1_old/`` beside ``subject_1/``) are a named error listing
both, in `find_models` and in every command that finds models through it — never the last
folder silently picked."""

from __future__ import annotations

from pathlib import Path

import pytest

from emg_lens.checkpoints import save_checkpoint
from emg_lens.cli import main
from emg_lens.discovery.study import run_discovery
from emg_lens.errors import SpecError
from emg_lens.studies import StudySpec, find_models, run_study
from tests.tiny import tiny_isonet

SOURCE = {"dataset": "synthetic"}


def _models(root: Path, folders: dict[str, int | None]) -> Path:
    """A models folder with one tiny checkpoint per ``{folder name: subject in metadata}``."""
    for seed, (name, subject) in enumerate(folders.items()):
        metadata = {"data_source": SOURCE} | ({} if subject is None else {"subject": subject})
        save_checkpoint(tiny_isonet(seed), root / name, metadata=metadata)
    return root


def test_one_folder_per_subject_is_found_as_before(tmp_path):
    root = _models(tmp_path, {"subject_1": 1, "subject_2": None, "subject_7": 3})
    assert find_models(root) == {
        1: root / "subject_1",
        2: root / "subject_2",
        3: root / "subject_7",
    }


def test_a_folder_without_a_subject_number_is_named(tmp_path):
    root = _models(tmp_path, {"subject_best": None})
    with pytest.raises(SpecError, match=r"subject_best: no subject number in its metadata or its"):
        find_models(root)


@pytest.mark.parametrize(
    "folders, named",
    [
        (
            {"subject_1": 1, "subject_1_old": 1},
            r"subject 1 is in 2 folders, subject_1/ and subject_1_old/",
        ),
        # by its name and by another folder's metadata
        (
            {"subject_1": None, "subject_2": 1},
            r"subject 1 is in 2 folders, subject_1/ and subject_2/",
        ),
        (
            {
                "subject_1": 1,
                "subject_1_backup": 1,
                "subject_1_copy": 1,
                "subject_2": 2,
                "subject_2b": 2,
            },
            r"subject 1 is in 3 folders, subject_1/, subject_1_backup/ and subject_1_copy/; "
            r"subject 2 is in 2 folders, subject_2/ and subject_2b/",
        ),
    ],
)
def test_two_folders_of_one_subject_are_named(tmp_path, folders, named):
    root = _models(tmp_path / "models", folders)
    with pytest.raises(SpecError, match=named + r"; one folder per subject: move the others"):
        find_models(root)


@pytest.fixture
def backup_beside(tmp_path) -> Path:
    return _models(tmp_path / "models", {"subject_1": 1, "subject_1_old": 1, "subject_2": 2})


BOTH = "subject 1 is in 2 folders, subject_1/ and subject_1_old/"


@pytest.mark.parametrize(
    "command",
    [
        ["evaluate", "--models", "{models}"],
        ["probe", "--models", "{models}", "--out", "{out}"],
    ],
)
def test_commands_that_find_models_name_both_folders(backup_beside, tmp_path, capsys, command):
    argv = [part.format(models=backup_beside, out=tmp_path / "out") for part in command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert BOTH in err and "Traceback" not in err


def test_a_study_run_and_a_discovery_name_both_folders(backup_beside):
    study = StudySpec.from_dict(
        {
            "name": "s",
            "models": str(backup_beside),
            "interventions": [{"name": "x", "edges": "cross_modal"}],
        }
    )
    with pytest.raises(SpecError, match=BOTH):
        run_study(study, progress=False)
    with pytest.raises(SpecError, match=BOTH):
        run_discovery(
            {"kind": "discovery", "name": "d", "models": str(backup_beside)}, progress=False
        )


@pytest.mark.parametrize(
    "folders, meant",
    [
        (["models/subject_1"], "models"),  # --models runs/demo, the demo's in runs/demo/models
        (["models/subject_1", "old/subject_1"], "models"),  # models/ of several
        (["old/subject_1", "older/subject_1"], None),  # which? no guess
    ],
)
def test_a_models_folder_one_level_too_high_says_which_was_meant(tmp_path, folders, meant):
    # issue 74: `--models runs/demo` said only that runs/demo holds no subject_<N>/ folders
    _models(tmp_path, dict.fromkeys(folders, 1))
    guess = f"; did you mean {tmp_path / meant}?" if meant else ""
    with pytest.raises(SpecError) as info:
        find_models(tmp_path)
    assert str(info.value).endswith(f"checkpoint folders in {tmp_path}{guess}")


def test_evaluate_names_a_checkpoint_that_records_no_data_source(tmp_path, capsys):
    # issue 74: evaluate read metadata["data_source"] itself: a bare KeyError('data_source')
    save_checkpoint(tiny_isonet(0), tmp_path / "subject_1", metadata={"subject": 1})
    assert main(["evaluate", "--models", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "subject_1: its metadata records no data_source" in err and "Traceback" not in err


def test_a_stored_discovery_names_a_checkpoint_that_records_no_data_source(tmp_path):
    from emg_lens.discovery.spec import DiscoverySpec

    save_checkpoint(tiny_isonet(0), tmp_path / "m" / "subject_1", metadata={"subject": 1})
    spec = DiscoverySpec.from_dict({"name": "d", "models": str(tmp_path / "m")})
    with pytest.raises(SpecError, match=r"subject_1: the checkpoint records no data source to"):
        run_discovery(spec, out_dir=tmp_path / "out", progress=False)
