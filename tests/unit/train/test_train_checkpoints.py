"""Training (dual-head annealed loss, determinism) and checkpoints (round trip, refusals)."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from emg_lens import CheckpointError, ConfigError, EncoderConfig
from emg_lens.checkpoints import load_checkpoint, read_checkpoint_info, save_checkpoint
from emg_lens.data.preprocess import PreprocessSpec, prepare_subject
from emg_lens.data.synthetic.emg_acc import SyntheticSpec, generate_recordings
from emg_lens.edges import cross_modal
from emg_lens.hooks import attn_scores_filter, mask_edges
from emg_lens.models import IsoNet, TinyMyo
from emg_lens.train import TrainConfig, accuracy, anneal_weight, dual_head_loss, fit
from emg_lens.train.baseline import feature_baseline
from tests.tiny import tinymyo_config


@pytest.fixture(scope="module")
def subject():
    rec = generate_recordings(SyntheticSpec(n_subjects=1, movement_seconds=1.0), [1])[0]
    return prepare_subject(rec, PreprocessSpec(segment=(0.25, 1.0), step=100))


def _model(data, seed=0):
    cfg = EncoderConfig.preset(
        "tiny",
        modalities=data.modalities,
        n_samples=200,
        n_classes=data.n_classes,
        d_model=32,
        d_head=8,
        seed=seed,
    )
    return IsoNet(cfg)


@pytest.mark.slow
def test_training_lowers_the_loss_and_beats_chance(subject):
    model = _model(subject)
    result = fit(
        model, subject.X_train, subject.y_train, TrainConfig(epochs=6, lr=3e-3, progress=False)
    )
    assert result.epoch_loss[-1] < 0.6 * result.epoch_loss[0]
    assert accuracy(model, subject.X_test, subject.y_test) > 3 / subject.n_classes
    assert result.final_lambda == 1.0  # the CLS loss has fully taken over by the end


def test_training_is_deterministic_on_cpu(subject):
    cfg = TrainConfig(epochs=1, lr=1e-3, progress=False, seed=5)
    a, b = _model(subject), _model(subject)
    fit(a, subject.X_train[:128], subject.y_train[:128], cfg)
    fit(b, subject.X_train[:128], subject.y_train[:128], cfg)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), name


def test_training_with_edge_masks_equals_training_with_mask_hooks(subject):
    """``fit(edge_masks=...)`` (the SDPA path) trains exactly as `mask_edges` hooks at
    ``hook_attn_scores`` would (the explicit path), and the cut edges change the weights."""
    cfg = TrainConfig(epochs=1, lr=1e-3, progress=False, seed=5)
    X, y = subject.X_train[:96], subject.y_train[:96]
    masked, hooked, plain = _model(subject), _model(subject), _model(subject)
    cut = cross_modal().compile(masked.layout, masked.cfg.n_heads)
    fit(masked, X, y, cfg, edge_masks={0: cut, 1: cut})
    with hooked.hooks(fwd_hooks=[(attn_scores_filter([0, 1]), mask_edges(cut, hooked.layout))]):
        fit(hooked, X, y, cfg)
    fit(plain, X, y, cfg)
    for (name, a), b in zip(masked.named_parameters(), hooked.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    assert not torch.equal(masked.blocks[0].attn.W_Q, plain.blocks[0].attn.W_Q)


def test_anneal_schedule_and_dual_head_loss():
    assert [anneal_weight(t, 10) for t in (0, 5, 10, 20)] == [0.0, 0.5, 1.0, 1.0]
    cls_logits, avg_logits = torch.randn(4, 3), torch.randn(4, 3)
    y = torch.tensor([0, 1, 2, 0])
    ce = torch.nn.functional.cross_entropy
    expected = 0.25 * ce(cls_logits, y) + 0.75 * ce(avg_logits, y)
    torch.testing.assert_close(dual_head_loss(cls_logits, avg_logits, y, 0.25), expected)


def test_bad_train_config():
    with pytest.raises(ConfigError, match="anneal_fraction"):
        TrainConfig(anneal_fraction=2.0)
    with pytest.raises(ConfigError, match="lr"):
        TrainConfig(lr=0.0)


# ----------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize(
    "make",
    [
        lambda: IsoNet(EncoderConfig.preset("tiny", seed=1)),
        lambda: TinyMyo(tinymyo_config(4, 40, seed=1), task="regression"),
    ],
)
def test_checkpoint_round_trip_rebuilds_an_identical_model(tmp_path, make):
    model = make().eval()
    path = save_checkpoint(model, tmp_path / "ckpt", metadata={"subject": 3})
    again = load_checkpoint(path)
    assert type(again) is type(model) and again.cfg == model.cfg
    x = model.example_input(2)
    assert torch.equal(again(x), model(x))
    assert read_checkpoint_info(path)["metadata"] == {"subject": 3}
    assert not list(path.glob("*.tmp"))  # atomic writes leave no temporary files


def test_checkpoint_of_another_config_is_refused(tmp_path):
    path = save_checkpoint(IsoNet(EncoderConfig.preset("tiny", seed=1)), tmp_path / "a")
    other = IsoNet(EncoderConfig.preset("tiny", n_layers=3, seed=1))
    with pytest.raises(CheckpointError, match=r"n_layers: checkpoint 2 vs model 3"):
        load_checkpoint(path, into=other)
    with pytest.raises(CheckpointError, match="holds a IsoNet, not a TinyMyo"):
        tiny = tinymyo_config(6, 8, patch_samples=2, seed=1)
        load_checkpoint(path, into=TinyMyo(tiny))


def test_a_checkpoint_differing_in_an_added_field_is_refused_either_way(tmp_path):
    # to_dict leaves an added field out at its default: the comparison reads the fields
    pre, post = (EncoderConfig.preset("tiny", norm_position=p, seed=1) for p in ("pre", "post"))
    for saved, into in ((pre, post), (post, pre)):
        path = save_checkpoint(IsoNet(saved), tmp_path / saved.norm_position)
        with pytest.raises(CheckpointError, match=r"norm_position: checkpoint '(pre|post)'"):
            load_checkpoint(path, into=IsoNet(into))


def test_broken_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not an emg_lens checkpoint"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="missing does not exist"):  # not "not a checkpoint"
        load_checkpoint(tmp_path / "missing")
    path = save_checkpoint(IsoNet(EncoderConfig.preset("tiny", seed=1)), tmp_path / "b")
    info = json.loads((path / "config.json").read_text())
    info["model_class"] = "Nope"
    (path / "config.json").write_text(json.dumps(info))
    with pytest.raises(
        CheckpointError, match=r"model_class must be one of \[.*'IsoNet'.*got 'Nope'"
    ):
        load_checkpoint(path)
    (path / "config.json").write_text("{")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(path)


def test_predictions_do_not_depend_on_batching(subject):
    model = _model(subject).eval()
    from emg_lens.train import predict

    assert np.array_equal(
        predict(model, subject.X_test, batch_size=7), predict(model, subject.X_test, batch_size=512)
    )


class _DeviceSpy(torch.nn.Module):
    """A model whose config names another device; it records where each batch arrives (and
    answers on the CPU, since a "meta" tensor holds no values)."""

    def __init__(self):
        super().__init__()
        self.cfg = SimpleNamespace(dtype=torch.float64, device="meta")
        self.batches = []

    def forward(self, x):
        self.batches.append((x.device.type, x.dtype, len(x)))
        return torch.zeros(len(x), 3)


@pytest.mark.unchecked
def test_predict_sends_each_batch_to_the_models_device():
    from emg_lens.train import predict

    spy = _DeviceSpy()
    assert predict(spy, np.zeros((5, 2, 4), np.float32), batch_size=3).tolist() == [0] * 5
    assert spy.batches == [("meta", torch.float64, 3), ("meta", torch.float64, 2)]


def test_train_subjects_fits_the_base_config_to_each_subjects_data(subject, tmp_path):
    from emg_lens.config import config_for_data
    from emg_lens.train import train_subjects

    base = EncoderConfig.preset("tiny", d_model=8, d_head=4, seed=3)
    train_cfg = TrainConfig(epochs=1, lr=1e-3, progress=False)
    (row,) = train_subjects([subject], IsoNet, base, train_cfg, tmp_path)
    saved = load_checkpoint(row["checkpoint"]).cfg
    names = subject.meta["channel_names"]  # the data's own (DB2's: emg1, ..., acc12z)
    expected = config_for_data(
        IsoNet,
        base,
        subject.modalities,
        subject.n_classes,
        subject.X_train.shape[-1],
        channel_names=names,
    )
    assert saved == expected and names[11:13] == ["emg12", "acc1x"]
    assert (saved.modalities, saved.n_samples, saved.d_model) == (subject.modalities, 200, 8)
    # beside the model, the per-channel feature baseline on the same split, also in its metadata
    baseline = feature_baseline(subject)
    assert row["baseline_accuracy"] == baseline.value
    assert read_checkpoint_info(row["checkpoint"])["metadata"]["baseline"] == baseline.to_dict()


@pytest.mark.slow
def test_a_model_left_below_the_fit_is_trained_again_and_the_best_fit_kept(subject, tmp_path):
    from emg_lens.train import train_subjects
    from emg_lens.train.supervised import training_fit

    base = EncoderConfig.preset("tiny", d_model=8, d_head=4, seed=3)
    lines = []
    unreachable = TrainConfig(epochs=1, lr=1e-3, progress=False, refits=2, refit_below=1.0)
    (row,) = train_subjects(
        [subject], IsoNet, base, unreachable, tmp_path / "a", report=lines.append
    )
    info = read_checkpoint_info(row["checkpoint"])
    attempts = info["metadata"]["attempts"]
    assert row["attempts"] == 3 == len(attempts)
    assert [(a["model_seed"], a["train_seed"]) for a in attempts] == [
        (3, 0),
        (1003, 1000),
        (2003, 2000),
    ]
    kept = load_checkpoint(row["checkpoint"])
    assert kept.cfg.seed == max(attempts, key=lambda a: a["training_fit"])["model_seed"]
    assert training_fit(kept, subject.X_train, subject.y_train) == pytest.approx(
        max(a["training_fit"] for a in attempts)
    )
    plateau = [line for line in lines if "a plateau; training again" in line]
    assert [line.split("(")[-1] for line in plateau] == ["2 of 3)", "3 of 3)"]
    # a model that fits is trained once
    reached = TrainConfig(epochs=1, lr=1e-3, progress=False, refits=2, refit_below=0.01)
    (row,) = train_subjects([subject], IsoNet, base, reached, tmp_path / "b")
    assert row["attempts"] == 1


def test_edge_dropout_cuts_its_edge_set_on_a_fraction_of_the_windows():
    from emg_lens.edges import parse
    from emg_lens.train.supervised import _EdgeDropout

    model = IsoNet(EncoderConfig.preset("tiny", seed=0))
    cut = parse("cross_modal | from_cls").compile(model.layout, model.cfg.n_heads)
    dropout = _EdgeDropout(
        model, TrainConfig(edge_dropout=0.3, dropout_edges="cross_modal | from_cls")
    )
    masks = dropout.masks(2000, None)
    assert sorted(masks) == list(range(model.cfg.n_layers))
    mask = masks[0]  # [window, head, query, key], the same in every layer
    assert all(torch.equal(mask, m) for m in masks.values())
    dropped = mask.flatten(1).any(1)
    assert 0.26 < dropped.float().mean() < 0.34
    assert torch.equal(mask[dropped], cut.expand(int(dropped.sum()), *cut.shape))
    assert not mask[~dropped].any()
    # fixed masks are kept on every window
    fixed = torch.zeros_like(cut)
    fixed[0, 0, 1] = True
    merged = dropout.masks(10, {1: fixed})[1]
    assert merged[:, 0, 0, 1].all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"edge_dropout": 1.0}, "edge_dropout"),
        ({"dropout_edges": "cross_modal &"}, "dropout_edges"),
        ({"refits": -1}, "refits"),
        ({"refit_below": 0.0}, "refit_below"),
        ({"refit_below": 1.5}, "refit_below"),
    ],
)
def test_bad_edge_dropout_and_refit_settings_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kwargs)


def test_a_checkpoint_saved_from_a_gpu_model_loads_on_the_cpu(tmp_path):
    model = IsoNet(EncoderConfig.preset("tiny", seed=0))
    model.cfg.device = "cuda:0"  # as after model.to("cuda"); the weights are saved as CPU tensors
    path = save_checkpoint(model, tmp_path / "ckpt")
    assert read_checkpoint_info(path)["config"]["device"] == "cpu"
    again = load_checkpoint(path)
    assert again.cfg.device == "cpu" and next(again.parameters()).device.type == "cpu"


def test_weights_load_into_a_float64_model_of_the_same_architecture(tmp_path):
    model = IsoNet(EncoderConfig.preset("tiny", seed=0)).eval()
    path = save_checkpoint(model, tmp_path / "ckpt")
    wide = IsoNet(EncoderConfig.preset("tiny", seed=1)).to(torch.float64)
    load_checkpoint(path, into=wide)
    x = model.example_input(3)
    torch.testing.assert_close(wide(x.double()).float(), model(x), atol=1e-5, rtol=1e-5)


def test_a_diverged_training_is_neither_scored_nor_saved(tmp_path, capsys):
    """Issue 23 item 2: ``emg-lens train --lr 1e30`` printed accuracy 0.083 and saved NaN
    checkpoints; it now stops, naming the subject and the epoch, with nothing saved."""
    from emg_lens.cli import main

    out = tmp_path / "models"
    argv = ["train", "--out", str(out), "--n-subjects", "1", "--preset", "tiny"]
    assert main([*argv, "--epochs", "2", "--lr", "1e30", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "subject 1: training diverged in epoch" in err and "accuracy" not in err
    assert not list(out.rglob("model.safetensors")) and not (out / "training.json").exists()


def test_a_model_with_a_nan_weight_is_not_saved(tmp_path):
    model = IsoNet(EncoderConfig.preset("tiny", seed=0))
    with torch.no_grad():
        model.ln_final.w[0] = float("inf")
    with pytest.raises(CheckpointError, match=r"ln_final\.w"):
        save_checkpoint(model, tmp_path / "ckpt")
    assert not (tmp_path / "ckpt").exists()


def test_every_float_of_train_config_refuses_nan_and_inf():
    """Every float field, found from the annotations, so a field added later is covered."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(TrainConfig)
    floats = [
        f.name
        for f in dataclasses.fields(TrainConfig)
        if float in (hints[f.name], *typing.get_args(hints[f.name]))
    ]
    assert {"lr", "weight_decay", "anneal_fraction", "grad_clip", "edge_dropout"} <= set(floats)
    for name in floats:
        for bad in (float("nan"), float("inf"), -float("inf")):
            with pytest.raises(ConfigError, match=f"TrainConfig.{name}"):
                TrainConfig(**{name: bad})


def test_a_hand_edited_config_json_names_the_file_and_the_field(tmp_path):
    path = save_checkpoint(IsoNet(EncoderConfig.preset("tiny", seed=0)), tmp_path / "ckpt")
    info = json.loads((path / "config.json").read_text())
    info["model_kwargs"] = {"task": "classification"}  # IsoNet takes no keyword
    (path / "config.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert str(path / "config.json") in str(error.value)
    assert "unknown model_kwargs key(s) ['task']" in str(error.value)


def test_a_checkpoint_written_before_the_added_config_fields_loads(tmp_path):
    """A config.json from before channel names and the converters' fields (emg_lens 0.1) lacks
    them; it loads with their defaults, which are what that model computed, while a missing
    field that existed then is still refused."""
    from emg_lens.config import ADDED_FIELD_DEFAULTS

    path = save_checkpoint(IsoNet(EncoderConfig.preset("tiny", seed=0)), tmp_path / "old")
    info = json.loads((path / "config.json").read_text())
    assert not set(ADDED_FIELD_DEFAULTS) & set(info["config"])  # as 0.1 wrote it
    loaded = load_checkpoint(path)
    assert loaded.cfg.channel_names is None and loaded.cfg.norm_position == "pre"
    del info["config"]["act_fn"]
    (path / "config.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="act_fn"):
        load_checkpoint(path)


def test_metadata_load_would_refuse_is_refused_at_save_and_nothing_written(tmp_path):
    """Issue 47, section 3 item 7: save_checkpoint wrote what load_checkpoint refused."""
    model = IsoNet(EncoderConfig.preset("tiny", seed=0))
    with pytest.raises(CheckpointError, match=r"not saved to .*metadata\.subject must be an int"):
        save_checkpoint(model, tmp_path / "m", metadata={"subject": np.int64(3)})
    assert not (tmp_path / "m").exists()


def test_a_full_disk_leaves_no_weights_without_their_config(tmp_path, monkeypatch):
    """Issue 47, section 3 item 7: a full disk left weights and no config.json."""
    import errno

    from emg_lens.errors import StorageError

    model = IsoNet(EncoderConfig.preset("tiny", seed=0))
    old = save_checkpoint(model, tmp_path / "old", metadata={"subject": 1})
    before = {p.name: p.read_bytes() for p in old.iterdir()}
    real_write = type(tmp_path).write_text

    def full(self, *args, **kwargs):
        real_write(self, "{partial", encoding="utf-8")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(type(tmp_path), "write_text", full)
    for path in (tmp_path / "new", old):
        with pytest.raises(StorageError):
            save_checkpoint(IsoNet(EncoderConfig.preset("tiny", seed=1)), path)
    monkeypatch.undo()
    assert not (tmp_path / "new").exists()  # no folder that looks like a checkpoint
    assert {p.name: p.read_bytes() for p in old.iterdir()} == before  # the old one intact
    assert load_checkpoint(old).cfg.seed == 0


# ----------------------------------------------------- issue 57 item 4: storage faults named


def test_a_disk_that_fills_while_the_weights_are_written_is_a_named_error(tmp_path, monkeypatch):
    """safetensors' own writer reported a full disk as a SafetensorError traceback; the weights
    are written by Python now, so it is the StorageError naming the file, and the old
    checkpoint stays whole."""
    from emg_lens.errors import StorageError
    from tests.unit.storage_faults import full_disk

    old = save_checkpoint(IsoNet(EncoderConfig.preset("tiny", seed=0)), tmp_path / "m")
    before = {p.name: p.read_bytes() for p in old.iterdir()}
    newer = IsoNet(EncoderConfig.preset("tiny", seed=1))
    for budget in (0, 5000, len(before["model.safetensors"]) - 100):
        with (
            full_disk(tmp_path, monkeypatch, budget),
            pytest.raises(
                StorageError, match=r"cannot write .*m/(model\.safetensors|config\.json)"
            ),
        ):
            save_checkpoint(newer, old)
        assert {p.name: p.read_bytes() for p in old.iterdir()} == before, budget
    assert load_checkpoint(old).cfg.seed == 0


def test_a_folder_turned_read_only_between_the_renames_is_named_and_never_loaded(
    tmp_path, monkeypatch
):
    """A save stopped between its two renames: a StorageError saying the files no longer
    belong together, and a checkpoint load_checkpoint refuses, never the new weights read
    with the old config (or the reverse)."""
    import errno
    import os

    from emg_lens.errors import StorageError

    path = save_checkpoint(IsoNet(EncoderConfig.preset("tiny", seed=0)), tmp_path / "m")
    real_replace, calls = os.replace, []

    def flips_read_only(src, dst, *args, **kwargs):
        calls.append(dst)
        if len(calls) == 2:  # the folder turns read-only after the first rename
            raise OSError(errno.EROFS, "Read-only file system", str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", flips_read_only)
    newer = IsoNet(EncoderConfig.preset("tiny", seed=1))
    with pytest.raises(StorageError, match=r"already replaced.*no longer belong together"):
        save_checkpoint(newer, path, metadata={"subject": 2})
    monkeypatch.undo()
    with pytest.raises(
        CheckpointError, match=r"model\.safetensors is not the file config\.json was saved with"
    ):
        load_checkpoint(path)
    from emg_lens.checkpoints import check_checkpoint

    with pytest.raises(CheckpointError, match="a save stopped between its two files"):
        check_checkpoint(path)


def test_weights_replaced_alone_are_refused_and_a_checkpoint_without_the_digest_loads(tmp_path):
    a = save_checkpoint(IsoNet(EncoderConfig.preset("tiny", seed=0)), tmp_path / "a")
    b = save_checkpoint(IsoNet(EncoderConfig.preset("tiny", seed=1)), tmp_path / "b")
    (a / "model.safetensors").write_bytes((b / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="replaced alone"):
        load_checkpoint(a)
    info = json.loads((b / "config.json").read_text())
    del info["weights_sha256"]  # as checkpoints were saved before it was recorded
    (b / "config.json").write_text(json.dumps(info))
    assert load_checkpoint(b).cfg.seed == 1
    info["weights_sha256"] = "not a digest"
    (b / "config.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="weights_sha256 must be the SHA-256"):
        load_checkpoint(b)


def test_a_feature_checkpoint_on_a_full_disk_is_a_named_error_and_writes_nothing(
    tmp_path, monkeypatch
):
    from emg_lens.errors import StorageError
    from emg_lens.inspect.features.checkpoint import write_sae
    from emg_lens.inspect.features.sae import TopKSAE
    from tests.unit.storage_faults import full_disk

    sae = TopKSAE(16, 8, 2)
    with full_disk(tmp_path, monkeypatch, 100), pytest.raises(StorageError, match="cannot write"):
        write_sae(tmp_path / "features", sae, {"model_class": "IsoNet", "config": {}})
    assert not list((tmp_path / "features").iterdir())
