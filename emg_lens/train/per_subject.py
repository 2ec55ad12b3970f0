"""One fine-tuned TinyMyo classifier per subject of a data source, from one pretrained
checkpoint, saved where `emg_lens.studies.run_study` finds them (``subject_<N>/``, with the
data source, subject and classes in each checkpoint's metadata, so a study rebuilds every
subject's test windows from the checkpoint alone)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from emg_lens._io import atomic_write
from emg_lens.checkpoints import source_digest
from emg_lens.data.datasets import available_subjects, load_subject
from emg_lens.errors import StudyError, checked
from emg_lens.train.baseline import feature_baseline
from emg_lens.train.distributed import is_main_process
from emg_lens.train.finetune import FinetuneConfig, dataset_accuracy, finetune
from emg_lens.train.inputs import random_holdout, window_dataset


@checked
def finetune_subjects(
    pretrained: str | Path,
    source: dict[str, Any],
    out_dir: str | Path,
    cfg: FinetuneConfig = FinetuneConfig(),
    *,
    subjects: list[int] | None = None,
    val_fraction: float = 0.1,
    device: str | None = None,
) -> list[dict[str, Any]]:
    """Fine-tune one classifier per subject of ``source`` (a data source of
    `emg_lens.data.datasets`, e.g. `windows_source` or `synthetic_windows_source`, whose
    windows fit the checkpoint) from the pretrained checkpoint ``pretrained``.

    Each subject trains on its training repetitions, early-stops on a seeded random
    ``val_fraction`` of them, is scored on its test repetitions and is saved as
    ``out_dir/subject_<N>/`` (see the module docstring). Returns (and writes to
    ``out_dir/finetuning.json``) one row per subject: ``subject, n_train, n_test, chance,
    val_accuracy, test_accuracy, baseline_accuracy`` (`emg_lens.train.baseline`) and
    ``checkpoint``.

    >>> import tempfile
    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.checkpoints import save_checkpoint
    >>> from emg_lens.models import TinyMyo
    >>> from emg_lens.data import synthetic_windows_source
    >>> from emg_lens.data import SyntheticSpec
    >>> cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 2}, n_samples=40,
    ...                             d_model=16, d_head=4, n_heads=4, d_mlp=32, seed=0)
    >>> root = Path(tempfile.mkdtemp())
    >>> ckpt = save_checkpoint(TinyMyo(cfg, task="reconstruction"), root / "pretrained")
    >>> spec = SyntheticSpec(n_subjects=2, n_emg=2, n_acc_sensors=1, n_acc_gestures=0,
    ...                      n_interaction_gestures=0, movement_seconds=0.3)
    >>> rows = finetune_subjects(ckpt, synthetic_windows_source(spec, window=40, step=40),
    ...     root / "models", FinetuneConfig(epochs=1, warmup_epochs=0, progress=False))
    >>> [r["subject"] for r in rows], sorted(p.name for p in (root / "models").iterdir())
    ([1, 2], ['finetuning.json', 'subject_1', 'subject_2'])
    """
    out_dir = Path(out_dir)
    rows = []
    for subject in subjects or available_subjects(source):
        data = load_subject(source, subject)
        labelled = (data.X_train, data.y_train)
        train, val = random_holdout(
            window_dataset(labelled, data.X_train.shape[1:], what=f"subject {subject} windows"),
            val_fraction,
            seed=cfg.seed,
        )
        path = out_dir / f"subject_{subject}"
        baseline = feature_baseline(data)  # the same split, a linear model of each channel
        try:
            model, history = finetune(
                pretrained,
                train,
                cfg,
                n_classes=data.n_classes,
                val_data=val,
                out=path,
                device=device,
                metadata={
                    "subject": int(subject),
                    "classes": data.classes,
                    "data_source": source,
                    "data_digest": source_digest(source, int(subject)),
                    "baseline": baseline.to_dict(),
                },
            )
        except StudyError as exc:  # say whose training it was
            raise StudyError(f"subject {subject}: {exc}") from exc
        row = {
            "subject": int(subject),
            "n_train": len(train),
            "n_test": len(data.y_test),
            "test_trials": len(set(data.test_trials.tolist())),  # what an inference counts
            "chance": 1 / data.n_classes,
            "val_accuracy": history.val_accuracy[history.best_epoch],
            "test_accuracy": dataset_accuracy(model, (data.X_test, data.y_test)),
            "baseline_accuracy": baseline.value,
        }
        rows.append({**row, "checkpoint": str(path)})
    if is_main_process():
        text = json.dumps(rows, indent=2)
        atomic_write(out_dir / "finetuning.json", lambda tmp: tmp.write_text(text))
    return rows
