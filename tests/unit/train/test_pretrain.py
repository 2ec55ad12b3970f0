"""TinyMyo masked pretraining: the loss against a hand computation, how masks are drawn,
gradient accumulation, the recipe's effect on held-out windows, its checkpoint and refusals."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from emg_lens import ArgumentError, ConfigError, EncoderConfig, InputShapeError
from emg_lens.checkpoints import load_checkpoint, read_checkpoint_info
from emg_lens.models import IsoNet, TinyMyo
from emg_lens.train import (
    PretrainConfig,
    evaluate_masked_loss,
    masked_reconstruction_loss,
    pretrain,
    random_sample_mask,
)
from tests.unit.train.tinymyo_pretrained import small_tinymyo

# ----------------------------------------------------------------------------- loss and masks


def smooth_l1(error: float) -> float:
    return 0.5 * error**2 if abs(error) < 1 else abs(error) - 0.5


def test_loss_weights_masked_and_visible_patches_as_a_hand_computation():
    # 2 channels x 2 patches of 2 samples; tokens channel-major: (c0 p0, c0 p1, c1 p0, c1 p1).
    signals = torch.tensor([[[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]]])
    reconstruction = torch.tensor([[[0.0, 1.0], [2.0, 3.5], [4.0, 5.0], [0.0, 0.0]]])
    patch_mask = torch.tensor([[[False, True], [False, False]]])  # only channel 0, patch 1
    loss = masked_reconstruction_loss(reconstruction, signals, patch_mask, visible_weight=0.1)
    masked = (smooth_l1(0.0) + smooth_l1(0.5)) / 2  # token c0 p1: errors 0 and 0.5
    visible = (4 * smooth_l1(0.0) + smooth_l1(6.0) + smooth_l1(7.0)) / 6  # the other tokens
    assert loss.masked.item() == pytest.approx(masked)
    assert loss.visible.item() == pytest.approx(visible)
    assert loss.total.item() == pytest.approx(masked + 0.1 * visible)
    assert masked_reconstruction_loss(reconstruction, signals, patch_mask, 0.0).total.item() == (
        pytest.approx(masked)
    )


def test_masks_are_drawn_per_window_at_patch_granularity():
    model = small_tinymyo(3, 100)  # 3 channels x 5 patches of 20 samples
    gen = torch.Generator().manual_seed(0)
    sample_mask = random_sample_mask(64, 3, 100, 20, 0.5, generator=gen)
    patches = sample_mask.reshape(64, 3, 5, 20)
    assert (patches.all(-1) == patches.any(-1)).all()  # whole patches, never part of one
    patch_mask = model.patch_mask_from_samples(sample_mask)
    assert patch_mask.sum(dim=(1, 2)).tolist() == [8] * 64  # round(0.5 * 15) in every window
    assert len({tuple(m.flatten().tolist()) for m in patch_mask}) > 60  # drawn per window
    assert 0.4 < patch_mask[:, :, 0].float().mean() < 0.65  # channels and times alike
    again = random_sample_mask(64, 3, 100, 20, 0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, sample_mask)
    with pytest.raises(ArgumentError, match="patch_samples=30 must divide n_samples=100"):
        random_sample_mask(1, 3, 100, 30, 0.5)


def test_gradient_accumulation_matches_one_large_batch():
    X = np.random.default_rng(0).standard_normal((8, 2, 40)).astype(np.float32)
    common = {"epochs": 1, "warmup_epochs": 0, "lr": 1e-3, "progress": False}
    accumulated, large = small_tinymyo(2, 40), small_tinymyo(2, 40)
    pretrain(accumulated, X, PretrainConfig(batch_size=4, accumulate_steps=2, **common))
    pretrain(large, X, PretrainConfig(batch_size=8, accumulate_steps=1, **common))
    start = small_tinymyo(2, 40)
    for (name, a), b, s in zip(
        accumulated.named_parameters(), large.parameters(), start.parameters()
    ):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)
        assert not torch.equal(a, s), name  # one optimiser step moved every weight


# ----------------------------------------------------------------------------- the recipe


def test_pretraining_clearly_lowers_the_heldout_masked_loss(pretrained):
    path, _, before, history = pretrained
    assert len(history.epoch_loss) == len(history.val_masked_loss) == 4
    assert history.val_masked_loss[-1] < 0.7 * before  # a drop of 30 % or more
    assert history.epoch_loss[-1] < 0.6 * history.epoch_loss[0]
    model = load_checkpoint(path)
    assert isinstance(model, TinyMyo) and model.task == "reconstruction"
    meta = read_checkpoint_info(path)["metadata"]
    assert meta["recipe"] == "tinymyo-masked-pretraining"
    assert meta["pretrain"]["mask_ratio"] == 0.5 and meta["pretrain"]["epochs"] == 4
    assert meta["history"]["val_masked_loss"] == history.val_masked_loss
    _, windows, _, _ = pretrained
    _, val = windows.split()
    assert evaluate_masked_loss(model, val) == pytest.approx(history.val_masked_loss[-1])


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"mask_ratio": 0.0}, "mask_ratio"),
        ({"mask_ratio": 1.0}, "mask_ratio"),
        ({"visible_weight": -0.1}, "visible_weight"),
        ({"epochs": 5, "warmup_epochs": 5}, "warmup_epochs"),
        ({"accumulate_steps": 0}, "accumulate_steps"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": 0.0}, "lr"),
        ({"min_lr": 1e-3}, "min_lr"),
        ({"betas": (0.9, 1.0)}, "betas"),
        ({"grad_clip": 0.0}, "grad_clip"),
        ({"weight_decay": -1.0}, "weight_decay"),
    ],
)
def test_bad_pretrain_config_names_the_field(overrides, field):
    with pytest.raises(ConfigError, match=rf"PretrainConfig\.{field} "):
        PretrainConfig(**overrides)


def test_defaults_are_the_published_recipe():
    cfg = PretrainConfig()
    published = (0.5, 0.1, 1e-4, 1e-6, 10, 0.01, (0.9, 0.98), 3.0)
    assert (
        cfg.mask_ratio,
        cfg.visible_weight,
        cfg.lr,
        cfg.min_lr,
        cfg.warmup_epochs,
        cfg.weight_decay,
        cfg.betas,
        cfg.grad_clip,
    ) == published


@pytest.mark.unchecked
def test_pretraining_refuses_other_models_and_misshapen_data():
    X = np.zeros((4, 2, 40), np.float32)
    quick = PretrainConfig(epochs=1, warmup_epochs=0, progress=False)
    with pytest.raises(ArgumentError, match=r"task='reconstruction'.*task='classification'"):
        pretrain(small_tinymyo(2, 40, task="classification"), X, quick)
    with pytest.raises(ArgumentError, match="got IsoNet"):
        pretrain(IsoNet(EncoderConfig.preset("tiny")), X, quick)
    with pytest.raises(InputShapeError, match=r"data must hold windows \[N >= 1, channels=2"):
        pretrain(small_tinymyo(2, 40), np.zeros((4, 3, 40), np.float32), quick)
    bad_items = torch.utils.data.TensorDataset(torch.zeros(4, 2, 20), torch.zeros(4))
    with pytest.raises(InputShapeError, match="item 0"):
        pretrain(small_tinymyo(2, 40), bad_items, quick)
    # (X, y): y is not read, whatever it holds (masked pretraining needs no labels)
    assert pretrain(small_tinymyo(2, 40), (X, np.zeros(4, np.float32)), quick).steps == 1


def test_pretraining_reads_a_regression_store_without_its_targets(tmp_path):
    # Masked pretraining needs no labels: a NinaPro DB8 (regression) store, whose items carry
    # float targets [time, output], used to be refused as if its targets were bad class labels
    # (issue 23, item 10).
    from emg_lens.data.windows.downstream import DownstreamPreprocess
    from emg_lens.data.windows.store import RegressionBatch, WindowStore, write_window_store

    rng = np.random.default_rng(0)
    n, channels, samples = 6, 2, 40
    batch = RegressionBatch(
        x=rng.standard_normal((n, channels, samples)).astype(np.float32),
        labels=np.full(n, -1),
        repetition=np.ones(n, np.int64),
        subject=1,
        source="synthetic",
        targets=rng.standard_normal((n, samples, 5)).astype(np.float32),
    )
    spec = DownstreamPreprocess(
        dataset="ninapro-db8", sample_rate=2000.0, n_channels=channels, window=samples, step=samples
    )
    path = write_window_store(
        tmp_path / "db8.h5", [batch], spec, target_names=list("abcde"), progress=False
    )
    store = WindowStore(path)
    assert store.regression and np.ndim(store[0][1]) == 2
    model = small_tinymyo(channels, samples)
    recipe = PretrainConfig(epochs=1, batch_size=4, accumulate_steps=1, warmup_epochs=0)
    history = pretrain(model, store, replace(recipe, progress=False), val_data=store)
    assert len(history.epoch_loss) == 1 and np.isfinite(history.val_masked_loss[0])
    assert np.isfinite(evaluate_masked_loss(model, store))
    X, Y = batch.x, rng.standard_normal((n, samples, 5))  # arrays: their targets ignored too
    assert np.isfinite(evaluate_masked_loss(model, (X, Y)))


def test_a_diverged_pretraining_stops_and_saves_nothing(tmp_path):
    """Issue 23 item 2: a NaN loss or weight stops the recipe loop in the epoch it appears."""
    from emg_lens.errors import StudyError

    model = small_tinymyo(2, 40)
    X = np.random.default_rng(0).standard_normal((16, 2, 40)).astype(np.float32)
    cfg = PretrainConfig(
        epochs=3, batch_size=8, accumulate_steps=1, warmup_epochs=0, lr=1e30, progress=False
    )
    with pytest.raises(StudyError, match=r"pretrain: training diverged in epoch"):
        pretrain(model, X, cfg, out=tmp_path / "pretrained")
    assert not (tmp_path / "pretrained").exists()
