"""The models folder every command reads: ``DIR/subject_<N>/`` checkpoints, one folder per
subject (`find_models`), ``"demo"`` naming the demo's (`DEMO_MODELS`), and what to say when a
folder holds none (`no_models`). ``study run``, ``study check``, ``evaluate``, ``probe`` and
discovery all find their models here."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from emg_lens.checkpoints import read_checkpoint_info
from emg_lens.data.preprocess import check_window_range
from emg_lens.errors import CheckpointError, SpecError, checked

DEMO_MODELS = Path("runs/demo/models")
"""Where ``emg-lens demo`` saves its models: what ``models = "demo"`` finds."""


@checked
def find_models(models: str | Path) -> dict[int, Path]:
    """Checkpoint folders by subject: ``DIR/subject_<N>/`` (or ``"demo"``: the demo's). A
    ``subject_<N>/`` folder that is not a checkpoint is an error naming it, and two folders
    that name one subject (a backup ``subject_1_old/`` beside ``subject_1/``) are a
    `SpecError` naming both: never a subject silently left out or picked.

    >>> import tempfile
    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.checkpoints import save_checkpoint
    >>> from emg_lens.models import IsoNet
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("subject_1", "subject_1_old", "subject_2"):
    ...     subject = 2 if name == "subject_2" else 1
    ...     _ = save_checkpoint(IsoNet(EncoderConfig.preset("tiny")), root / name,
    ...                         metadata={"subject": subject})
    >>> find_models(root)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emg_lens.errors.SpecError: models folder ...: subject 1 is in 2 folders, subject_1/ and \
subject_1_old/; one folder per subject: move the others out
    """
    root = models_folder(models)
    found: dict[int, list[Path]] = {}
    if root.is_dir():
        for path in sorted(p for p in root.glob("subject_*") if p.is_dir()):
            try:
                subject = read_checkpoint_info(path)["metadata"].get("subject")
            except CheckpointError as exc:
                raise CheckpointError(
                    f"{path}/ is not a usable checkpoint ({exc}); move it out of {root}"
                ) from exc
            suffix = path.name.removeprefix("subject_")
            if subject is None and not suffix.isdigit():
                raise SpecError(f"{path}: no subject number in its metadata or its name")
            found.setdefault(int(subject if subject is not None else suffix), []).append(path)
    _check_one_folder_per_subject(root, found)
    if not found:
        raise SpecError(no_models(models))
    return {subject: paths[0] for subject, paths in found.items()}


def _check_one_folder_per_subject(root: Path, found: dict[int, list[Path]]) -> None:
    """Refuse, naming them, two folders of ``root`` that hold one subject's model."""
    twice = {subject: paths for subject, paths in sorted(found.items()) if len(paths) > 1}
    if not twice:
        return
    where = "; ".join(
        f"subject {subject} is in {len(paths)} folders, "
        f"{', '.join(p.name + '/' for p in paths[:-1])} and {paths[-1].name}/"
        for subject, paths in twice.items()
    )
    raise SpecError(f"models folder {root}: {where}; one folder per subject: move the others out")


def models_folder(models: str | Path) -> Path:
    """The folder ``models`` names, as every command that finds models resolves it: ``"demo"``
    is the demo's (`DEMO_MODELS`), any other path is taken from the working directory.

    >>> models_folder("demo"), models_folder("runs/x")
    (PosixPath('runs/demo/models'), PosixPath('runs/x'))
    """
    return DEMO_MODELS if str(models) == "demo" else Path(models)


def no_models(models: str | Path) -> str:
    """Why `find_models` finds no model in ``models``, in words: the folder (and where it was
    looked for when it does not exist), or "did you mean" a folder inside that holds them.

    >>> no_models("/nowhere")
    'models: /nowhere does not exist (looked for it in ...); give a folder of subject_<N>/ checkpoints'
    """  # noqa: E501
    root = models_folder(models)
    hint = " (run `emg-lens demo` first)" if str(models) == "demo" else ""
    if not root.exists():  # say so, as a missing checkpoint does (read_checkpoint_info)
        return (
            f"models: {root} does not exist (looked for it in {Path.cwd()}){hint}; give a "
            "folder of subject_<N>/ checkpoints"
        )
    inside = sorted(root.iterdir()) if root.is_dir() else []  # a folder one level too high?
    inner = [d for d in inside if d.is_dir() and any(d.glob("subject_*/"))]
    inner = [d for d in inner if d.name == "models"] or inner
    guess = f"; did you mean {inner[0]}?" if len(inner) == 1 else ""
    return f"models: no subject_<N>/ checkpoint folders in {root}{hint}{guess}"


def study_models(models: Mapping[int, Any] | str | Path, subjects: Any = None) -> dict[int, Any]:
    """A study's models by subject: ``models`` itself where it is a mapping (``{subject:
    (model, SubjectData)}``), else the checkpoint folders `find_models` finds there; narrowed
    to ``subjects`` (None: all; a subject without a model is a `SpecError`). In-memory
    windows beyond float32's range are refused naming the subject.

    >>> study_models({1: "a", 2: "b"}, (2,))
    {2: 'b'}
    >>> study_models({1: "a"}, (1, 3))
    Traceback (most recent call last):
    ...
    emg_lens.errors.SpecError: subjects [3] have no model; available: [1]
    """
    found = dict(models) if isinstance(models, Mapping) else find_models(models)
    for subject, entry in found.items():  # windows in memory: read here, before any baseline
        data = entry[1] if isinstance(entry, tuple) and len(entry) == 2 else None
        for field in ("X_train", "X_test") if hasattr(data, "X_train") else ():
            check_window_range(np.asarray(getattr(data, field)), f"subject {subject}: its {field}")
    if subjects is None:
        return found
    if missing := sorted(set(subjects) - set(found)):
        raise SpecError(f"subjects {missing} have no model; available: {sorted(found)}")
    return {s: found[s] for s in subjects}
