"""A small TinyMyo, and one pretrained on synthetic sEMG once per run (the ``pretrained``
fixture of tests/unit/conftest.py): what the pretraining and fine-tuning tests share."""

from __future__ import annotations

from pathlib import Path

from emg_lens import EncoderConfig
from emg_lens.checkpoints import read_checkpoint_info
from emg_lens.data.synthetic.emg_acc import SyntheticSpec
from emg_lens.models import TinyMyo
from emg_lens.train import (
    PretrainConfig,
    PretrainHistory,
    evaluate_masked_loss,
    pretrain,
    synthetic_windows,
)

SMALL = {"d_model": 32, "d_head": 8, "n_heads": 4, "d_mlp": 64, "n_layers": 2, "seed": 0}


def small_tinymyo(channels: int, samples: int, **kwargs) -> TinyMyo:
    cfg = EncoderConfig.preset("tinymyo", **SMALL, modalities={"emg": channels}, n_samples=samples)
    return TinyMyo(cfg, **{"task": "reconstruction", **kwargs})


def pretrained_on_synthetic(root: Path):
    """A small TinyMyo pretrained on synthetic sEMG (6 channels, 4 gestures, repetitions 2 and 5
    held out), once per run: later callers reuse the checkpoint that the first one wrote
    under ``root``. Returns (checkpoint, windows, held-out masked loss
    before pretraining, history)."""
    spec = SyntheticSpec(
        n_subjects=1,
        n_emg=6,
        n_acc_sensors=1,
        n_acc_gestures=0,
        n_interaction_gestures=0,
        movement_seconds=0.5,
    )
    windows = synthetic_windows(spec, window=100, step=100)
    train, val = windows.split()
    model = small_tinymyo(6, 100)  # seeded: every call starts from the same weights
    before = evaluate_masked_loss(model, val)
    path = root / "pretrained"
    if not (path / "config.json").is_file():
        recipe = PretrainConfig(
            epochs=4,
            batch_size=32,
            accumulate_steps=1,
            lr=2e-3,
            min_lr=1e-5,
            warmup_epochs=1,
            progress=False,
        )
        pretrain(model, train, recipe, val_data=val, out=path)
    history = PretrainHistory(**read_checkpoint_info(path)["metadata"]["history"])
    return path, windows, before, history
