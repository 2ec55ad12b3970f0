"""TinyMyo fine-tuning: layer-wise learning rates, the warm-up + cosine schedule, early
stopping, linear probing, fine-tuning from a pretrained checkpoint, and the CLI."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from emg_lens import CheckpointError, ConfigError, DataFormatError, EncoderConfig
from emg_lens.checkpoints import load_checkpoint, read_checkpoint_info, save_checkpoint
from emg_lens.cli import main
from emg_lens.models import IsoNet
from emg_lens.train import (
    EarlyStopping,
    FinetuneConfig,
    classifier_from_pretrained,
    dataset_accuracy,
    dataset_scores,
    finetune,
    layerwise_param_groups,
    warmup_cosine_lr,
    warmup_cosine_scheduler,
)
from tests.tiny import tinymyo_config
from tests.unit.train.tinymyo_pretrained import small_tinymyo


def quick(**overrides) -> FinetuneConfig:
    settings = {"epochs": 3, "batch_size": 32, "lr": 1e-3, "warmup_epochs": 1, "drop_path": 0.0}
    return FinetuneConfig(**{**settings, "progress": False, **overrides})


# ----------------------------------------------------------------------------- optimiser plumbing


def test_layerwise_groups_give_each_depth_its_lr_and_exempt_biases_norms_and_tokens():
    model = small_tinymyo(2, 40, task="classification")  # 2 layers
    groups = layerwise_param_groups(model, 1e-3, weight_decay=0.05, layer_decay=0.9)
    lr, decay = {}, {}
    for group in groups:
        for name in group["names"]:
            assert name not in lr, f"{name} is in two groups"
            lr[name], decay[name] = group["lr"], group["weight_decay"]
    assert set(lr) == {name for name, _ in model.named_parameters()}
    expected_lr = {
        "head.W_U": 1e-3,
        "ln_final.w": 1e-3,
        "blocks.1.attn.W_Q": 1e-3 * 0.9,
        "blocks.1.mlp.b_in": 1e-3 * 0.9,
        "blocks.0.ln1.w": 1e-3 * 0.9**2,
        "embed.W_E": 1e-3 * 0.9**3,
        "mask_token": 1e-3 * 0.9**3,
    }
    for name, value in expected_lr.items():
        assert lr[name] == pytest.approx(value), name
    for name in decay:
        leaf = name.rsplit(".", 1)[-1]
        exempt = leaf.startswith("b_") or ".ln" in f".{name}" or name == "mask_token"
        assert decay[name] == (0.0 if exempt else 0.05), name
    model.blocks[0].attn.W_Q.requires_grad_(False)
    frozen = layerwise_param_groups(model, 1e-3, weight_decay=0.05)
    assert all("blocks.0.attn.W_Q" not in g["names"] for g in frozen)


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (0, 1e-5),  # warm-up starts at lr_min
        (1, 1e-5 + 0.5 * (1e-3 - 1e-5)),  # half-way up
        (2, 1e-3),  # the peak, where the cosine starts
        (6, 1e-5 + 0.5 * (1e-3 - 1e-5)),  # half-way down the cosine
        (8, 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(0.75 * math.pi))),
        (10, 1e-5),  # the end
    ],
)
def test_warmup_cosine_values(step, expected):
    lr = warmup_cosine_lr(step, total_steps=10, warmup_steps=2, lr_max=1e-3, lr_min=1e-5)
    assert lr == pytest.approx(expected)


def test_scheduler_scales_every_layerwise_group_alike():
    model = small_tinymyo(2, 40, task="classification")
    groups = layerwise_param_groups(model, 1e-3, weight_decay=0.0, layer_decay=0.5)
    optimizer = torch.optim.AdamW(groups)
    scheduler = warmup_cosine_scheduler(
        optimizer, total_steps=10, warmup_steps=2, lr_max=1e-3, lr_min=1e-5
    )
    for step in range(8):
        expected = warmup_cosine_lr(step, total_steps=10, warmup_steps=2, lr_max=1e-3, lr_min=1e-5)
        for group in optimizer.param_groups:
            assert group["lr"] == pytest.approx(group["lr_scale"] * expected)
        optimizer.step()
        scheduler.step()


def test_early_stopping_keeps_the_best_weights():
    model = nn.Linear(2, 1)
    stopper = EarlyStopping(patience=2, mode="max")
    decisions, snapshots = [], []
    for metric in (0.2, 0.5, 0.4, 0.45, 0.9):
        with torch.no_grad():
            model.weight.normal_()
        snapshots.append(model.weight.detach().clone())
        decisions.append(stopper.update(metric, model))
        if decisions[-1]:
            break
    assert decisions == [False, False, False, True]  # two evaluations without beating 0.5
    assert stopper.best == 0.5 and stopper.best_index == 1
    stopper.restore(model)
    assert torch.equal(model.weight, snapshots[1])
    minimum = EarlyStopping(patience=1, mode="min")
    assert [minimum.update(v, model) for v in (3.0, 2.0, 2.5)] == [False, False, True]


# ----------------------------------------------------------------------------- fine-tuning


@pytest.mark.slow
def test_finetuning_from_the_pretrained_checkpoint_beats_chance(pretrained, tmp_path):
    path, windows, _, _ = pretrained
    train, val = windows.split(labeled_only=True)
    model, history = finetune(
        path,
        train,
        quick(epochs=6),
        n_classes=windows.n_classes,
        val_data=val,
        out=tmp_path / "finetuned",
    )
    chance = 1 / windows.n_classes
    assert max(history.val_accuracy) > 2 * chance
    # The weights of the epoch with the lowest validation loss were kept, not the last one's.
    assert history.val_loss[history.best_epoch] == min(history.val_loss)
    assert dataset_accuracy(model, val) == history.val_accuracy[history.best_epoch]
    saved = load_checkpoint(tmp_path / "finetuned")
    assert saved.task == "classification" and saved.cfg.n_classes == windows.n_classes
    meta = read_checkpoint_info(tmp_path / "finetuned")["metadata"]
    assert meta["recipe"] == "tinymyo-finetuning" and meta["pretrained"] == str(path)
    assert meta["finetune"]["layer_decay"] == 0.9 and meta["finetune"]["label_smoothing"] == 0.1


def test_the_classifier_starts_from_the_pretrained_encoder(pretrained):
    source = load_checkpoint(pretrained[0])
    model = classifier_from_pretrained(source, n_classes=3, reduction="mean")
    theirs = source.state_dict()
    for name, weight in model.state_dict().items():
        if name.startswith("head."):
            assert name not in theirs or weight.shape != theirs[name].shape
        else:
            assert torch.equal(weight, theirs[name]), name
    assert model.head.W_U.shape == (source.cfg.d_model, 3)


def test_linear_probe_trains_the_head_alone(pretrained):
    path, windows, _, _ = pretrained
    train, _ = windows.split(labeled_only=True)
    start = classifier_from_pretrained(path, windows.n_classes)
    model, _ = finetune(
        path, train, quick(epochs=2, linear_probe=True), n_classes=windows.n_classes
    )
    for (name, weight), initial in zip(model.named_parameters(), start.parameters()):
        if name.startswith("head."):
            assert not torch.equal(weight, initial), name
        else:
            assert torch.equal(weight, initial), name


def test_finetuning_refuses_unlabeled_windows_and_other_models(tmp_path):
    source = small_tinymyo(2, 40)
    X = np.zeros((4, 2, 40), np.float32)
    with pytest.raises(DataFormatError, match=r"labels? in \[0, n_classes=2\); found \[-1\]"):
        finetune(source, (X, np.array([0, 1, -1, 0])), quick(epochs=2), n_classes=2)
    isonet = save_checkpoint(IsoNet(EncoderConfig.preset("tiny", seed=0)), tmp_path / "isonet")
    with pytest.raises(CheckpointError, match=r"starts from a TinyMyo.*got IsoNet"):
        finetune(isonet, (X, np.zeros(4, np.int64)), quick(epochs=2), n_classes=2)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"layer_decay": 0.0}, "layer_decay"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"patience": 0}, "patience"),
        ({"reduction": "max"}, "reduction"),
        ({"drop_path": 1.0}, "drop_path"),
        ({"epochs": 3, "warmup_epochs": 3}, "warmup_epochs"),
        ({"min_lr": 1.0}, "min_lr"),
        ({"monitor": "f1"}, "monitor"),
    ],
)
def test_bad_finetune_config_names_the_field(overrides, field):
    with pytest.raises(ConfigError, match=rf"FinetuneConfig\.{field} "):
        FinetuneConfig(**overrides)


def test_finetune_defaults_are_the_published_recipe():
    cfg = FinetuneConfig()
    assert (cfg.epochs, cfg.lr, cfg.min_lr, cfg.warmup_epochs) == (50, 5e-4, 1e-5, 5)
    assert (cfg.layer_decay, cfg.label_smoothing, cfg.linear_probe) == (0.9, 0.1, False)
    assert (cfg.patience, cfg.monitor) == (7, "loss")  # BioFoundation's val_loss callbacks


@pytest.mark.parametrize("monitor", ["loss", "accuracy"])
def test_the_kept_epoch_is_the_best_by_the_monitored_validation_score(monitor):
    """Early stopping and the kept weights follow ``monitor``: the lowest validation loss (the
    training's label-smoothed cross-entropy, BioFoundation's ``val_loss``) or the highest
    accuracy; both are recorded every epoch, and the model returned scores as its kept epoch."""
    source = small_tinymyo(2, 40)
    gen = torch.Generator().manual_seed(0)
    X, y = torch.randn(48, 2, 40, generator=gen), np.arange(48) % 3
    X[:, 0] += torch.as_tensor(y, dtype=torch.float32)[:, None]
    train, val = (X[:32], y[:32]), (X[32:], y[32:])
    cfg = quick(epochs=6, monitor=monitor, label_smoothing=0.1)
    model, history = finetune(source, train, cfg, n_classes=3, val_data=val)
    assert len(history.val_loss) == len(history.val_accuracy) == len(history.epoch_loss)
    scores = history.val_loss if monitor == "loss" else history.val_accuracy
    best = min(scores) if monitor == "loss" else max(scores)
    assert scores[history.best_epoch] == best
    assert scores.index(best) == history.best_epoch  # the first epoch reaching it
    accuracy, loss = dataset_scores(model, val, label_smoothing=0.1)
    assert (accuracy, loss) == pytest.approx(
        (history.val_accuracy[history.best_epoch], history.val_loss[history.best_epoch])
    )


# ----------------------------------------------------------------------------- CLI


def test_cli_pretrain_then_finetune_on_synthetic_windows(tmp_path, capsys):
    data = ["--movement-seconds", "0.5", "--n-gestures", "3", "--quiet"]
    pre, tuned = tmp_path / "pretrained", tmp_path / "finetuned"
    assert main(["pretrain", "--out", str(pre), "--epochs", "2", "--layers", "1", *data]) == 0
    out = capsys.readouterr().out
    assert "masked pretraining on" in out and f"wrote {pre}" in out
    assert load_checkpoint(pre).cfg.n_layers == 1
    args = ["finetune", "--checkpoint", str(pre), "--out", str(tuned), "--epochs", "2", *data]
    assert main([*args, "--linear-probe"]) == 0
    out = capsys.readouterr().out
    assert "linear probe" in out and "(chance 0.333)" in out
    assert load_checkpoint(tuned).cfg.n_classes == 3
    assert main(["finetune", "--checkpoint", str(tmp_path), "--out", str(tuned), *data]) == 2
    assert "not an emg_lens checkpoint" in capsys.readouterr().err


def test_a_diverged_finetuning_names_its_subject_and_saves_nothing(tmp_path):
    """Issue 23 item 2, in the recipe loop that pretraining, fine-tuning and DDP share."""
    from emg_lens.data.datasets import synthetic_windows_source
    from emg_lens.data.synthetic.emg_acc import SyntheticSpec
    from emg_lens.errors import StudyError
    from emg_lens.models import TinyMyo
    from emg_lens.train import finetune_subjects

    cfg = tinymyo_config(2, 40, n_layers=1, seed=0)
    ckpt = save_checkpoint(TinyMyo(cfg, task="reconstruction"), tmp_path / "pretrained")
    spec = SyntheticSpec(n_subjects=1, n_emg=2, n_acc_sensors=1, n_acc_gestures=0,
                         n_interaction_gestures=0, movement_seconds=0.3)  # fmt: skip
    recipe = FinetuneConfig(epochs=2, warmup_epochs=0, lr=1e30, min_lr=0.0, progress=False)
    source = synthetic_windows_source(spec, window=40, step=40)
    with pytest.raises(StudyError, match=r"subject 1: finetune: training diverged"):
        finetune_subjects(ckpt, source, tmp_path / "models", recipe)
    assert not list((tmp_path / "models").rglob("model.safetensors"))


def test_a_pretrained_model_with_a_module_of_its_own_is_refused_by_its_names():
    source = small_tinymyo(2, 40)
    source.extra = nn.Linear(1, 1)  # added to the model after it was built
    with pytest.raises(CheckpointError, match=r"unexpected \['extra\.bias', 'extra\.weight'\]"):
        classifier_from_pretrained(source, n_classes=3)


@pytest.mark.parametrize(
    ("steps", "lrs", "match"),
    [
        ((10, 2), (0.0, 0.0), r"need 0 <= lr_min <= lr_max and lr_max > 0, got 0\.0, 0\.0"),
        ((10, 2), (1e-4, 1e-3), r"lr_min <= lr_max .*got 0\.001, 0\.0001"),
        ((0, 0), (1e-3, 0.0), r"need total_steps >= 1 and 0 <= warmup_steps <= total_steps, got 0"),
        ((10, 11), (1e-3, 0.0), r"warmup_steps <= total_steps, got 10 and 11"),
    ],
)
def test_a_schedule_that_cannot_be_is_refused(steps, lrs, match):
    from emg_lens.errors import ArgumentError

    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1e-3)
    with pytest.raises(ArgumentError, match=match):
        warmup_cosine_scheduler(optimizer, total_steps=steps[0], warmup_steps=steps[1],
                                lr_max=lrs[0], lr_min=lrs[1])  # fmt: skip
