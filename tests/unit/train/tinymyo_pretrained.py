"""A small TinyMyo, and one pretrained on synthetic sEMG once per run (the ``pretrained``
fixture of tests/unit/train/conftest.py): what the pretraining and fine-tuning tests share."""

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
from tests.shared_on_disk import SharedOnDisk

SMALL = {"d_model": 32, "d_head": 8, "n_heads": 4, "d_mlp": 64, "n_layers": 2, "seed": 0}


def small_tinymyo(channels: int, samples: int, **kwargs) -> TinyMyo:
    cfg = EncoderConfig.preset("tinymyo", **SMALL, modalities={"emg": channels}, n_samples=samples)
    return TinyMyo(cfg, **{"task": "reconstruction", **kwargs})


SYNTHETIC = SyntheticSpec(
    n_subjects=1,
    n_emg=6,
    n_acc_sensors=1,
    n_acc_gestures=0,
    n_interaction_gestures=0,
    movement_seconds=0.5,
)
WINDOW = {"window": 100, "step": 100}
RECIPE = PretrainConfig(
    epochs=4,
    batch_size=32,
    accumulate_steps=1,
    lr=2e-3,
    min_lr=1e-5,
    warmup_epochs=1,
    progress=False,
)
PRETRAINED = {"data": SYNTHETIC, "windows": WINDOW, "model": SMALL, "pretrain": RECIPE}
"""Everything the pretrained TinyMyo depends on: `SharedOnDisk`'s key for it."""


def pretrained_on_synthetic(shared: SharedOnDisk):
    """A small TinyMyo pretrained on synthetic sEMG (6 channels, 4 gestures, repetitions 2 and 5
    held out) by the first caller of the run, read by every later one. Returns (checkpoint,
    windows, held-out masked loss before pretraining, history)."""
    windows = synthetic_windows(SYNTHETIC, **WINDOW)
    train, val = windows.split()
    model = small_tinymyo(6, WINDOW["window"])  # seeded: every call starts from the same weights
    before = evaluate_masked_loss(model, val)

    def build(path: Path) -> None:
        pretrain(model, train, RECIPE, val_data=val, out=path)

    path = shared.folder(SharedOnDisk.key("tinymyo_pretrained", PRETRAINED), build)
    history = PretrainHistory(**read_checkpoint_info(path)["metadata"]["history"])
    return path, windows, before, history
