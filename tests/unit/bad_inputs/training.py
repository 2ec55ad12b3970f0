"""Training, hyper-parameters, checkpoints' config.json, study files and exports (issue 23 items 2,
6, 7).

Item 2: a non-finite (or wrongly typed) hyper-parameter of every recipe config, the training
study's ``[train]`` table and the command line is refused before anything trains; a training
whose loss or weights become non-finite stops with `StudyError` naming what was
trained and the epoch, in every loop (supervised, subjects, TinyMyo pretraining, fine-tuning
and its regression, training studies). Item 6: every plausible hand edit of a checkpoint's
``config.json`` (each field of what `save_checkpoint` writes: wrong type, missing, unknown key,
unknown class, bad dtype, bad device) is a `CheckpointError` naming the field; study files that
are not UTF-8; ``subjects = []``. Item 7: ``discover SPEC --name``; an edge set naming a layer
the exported model lacks.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from emg_lens import EncoderConfig, cli
from emg_lens.checkpoints import load_checkpoint, save_checkpoint
from emg_lens.data.preprocess import SubjectData
from emg_lens.errors import (
    ArgumentError,
    CheckpointError,
    ConfigError,
    LayoutError,
    SpecError,
    StudyError,
)
from emg_lens.export import export_edge_masks
from emg_lens.models import IsoNet, TinyMyo
from emg_lens.studies import load_spec
from emg_lens.studies.training import run_training_study
from emg_lens.train import (
    FinetuneConfig,
    PretrainConfig,
    TrainConfig,
    finetune,
    finetune_regression,
    fit,
    pretrain,
    train_subjects,
)
from tests.tiny import random_windows, subject_for, tinymyo_config, two_class_subjects

INF, NAN = math.inf, math.nan
DIVERGING_LR = 1e30  # what the tester gave: AdamW's weight decay alone multiplies by 1e28


# ----------------------------------------------------------------------------- item 2


def _config(cls: type, **fields: Any):
    return lambda tmp: cls(**fields)


def _isonet() -> IsoNet:
    return IsoNet(EncoderConfig.preset("tiny", seed=0))


def _windows(model: Any, n: int = 16) -> tuple[np.ndarray, np.ndarray]:
    return random_windows(model, n, seed=0)


def _subject(model: Any, subject: int = 1, n: int = 16) -> SubjectData:
    return subject_for(model, n, subject=subject)


def _tinymyo(task: str = "reconstruction") -> TinyMyo:
    return TinyMyo(tinymyo_config(2, 40, n_layers=1, seed=0), task=task)


def _fit_diverges(tmp: Path):
    model = _isonet()
    return fit(model, *_windows(model), TrainConfig(epochs=2, lr=DIVERGING_LR, progress=False))


def _nan_weight_fit(tmp: Path):
    model = _isonet()
    with torch.no_grad():
        model.blocks[0].mlp.W_in[0, 0] = NAN  # the very first loss is NaN, on every CPU
    return fit(model, *_windows(model), TrainConfig(epochs=1, lr=1e-3, progress=False))


def _train_subjects_diverges(tmp: Path):
    model = _isonet()
    cfg = TrainConfig(epochs=2, lr=DIVERGING_LR, progress=False)
    return train_subjects([_subject(model, 3)], IsoNet, model.cfg, cfg, tmp / "models")


def _pretrain_diverges(tmp: Path):
    model = _tinymyo()
    X, _ = _windows(model)
    cfg = PretrainConfig(
        epochs=2, batch_size=8, accumulate_steps=1, warmup_epochs=0, lr=DIVERGING_LR,
        progress=False,
    )  # fmt: skip
    return pretrain(model, X, cfg, out=tmp / "pretrained")


def _finetune_cfg() -> FinetuneConfig:
    return FinetuneConfig(
        epochs=2, batch_size=8, warmup_epochs=0, lr=DIVERGING_LR, min_lr=0.0, progress=False
    )


def _finetune_diverges(tmp: Path):
    model = _tinymyo()
    X, y = _windows(model)
    return finetune(model, (X, y % 2), _finetune_cfg(), n_classes=2, out=tmp / "ft")


def _finetune_regression_diverges(tmp: Path):
    model = _tinymyo()
    X, _ = _windows(model)
    Y = np.random.default_rng(1).standard_normal((len(X), 40, 3)).astype(np.float32)
    return finetune_regression(model, (X, Y), _finetune_cfg(), out=tmp / "ft")


def _finetune_regression_on_accuracy(tmp: Path):
    model = _tinymyo()
    X, _ = _windows(model)
    Y = np.zeros((len(X), 40, 3), np.float32)
    cfg = FinetuneConfig(epochs=1, warmup_epochs=0, monitor="accuracy", progress=False)
    return finetune_regression(model, (X, Y), cfg, val_data=(X, Y))


def _training_study(tmp: Path, train: dict) -> Any:
    spec = {
        "kind": "training",
        "name": "diverges",
        "data": {"subjects": [7], "window": 8},
        "architectures": ["MultimodalMLP"],
        "inputs": [{"name": "both", "modalities": ["emg", "acc"]}],
        "reference": "both",
        "train": {"preset": "tiny", "epochs": 2, **train},
    }
    data = two_class_subjects((7,), 24)
    return run_training_study(spec, data=data, out_dir=tmp / "study", progress=False)


def _training_study_file(tmp: Path, line: str):
    path = tmp / "study.toml"
    path.write_text(
        'kind = "training"\nname = "t"\narchitectures = ["MultimodalMLP"]\nreference = "emg"\n'
        '[data]\nsubjects = [1]\n[[inputs]]\nname = "emg"\nmodalities = ["emg"]\n'
        f"[train]\n{line}\n"
    )
    return load_spec(path)


def _cli_train(tmp: Path, *flags: str):
    return cli.run(["train", "--out", str(tmp / "models"), "--n-subjects", "1", *flags])


def _save_nan_model(tmp: Path):
    model = _isonet()
    with torch.no_grad():
        model.blocks[1].attn.W_V[0, 0, 0] = NAN
    return save_checkpoint(model, tmp / "nan_model")


HYPER_PARAMETERS = [
    ("TrainConfig lr inf", _config(TrainConfig, lr=INF), ConfigError, "TrainConfig.lr"),
    ("TrainConfig lr nan", _config(TrainConfig, lr=NAN), ConfigError, "TrainConfig.lr"),
    ("TrainConfig lr text", _config(TrainConfig, lr="0.1"), ConfigError, "TrainConfig.lr"),
    (
        "TrainConfig weight_decay inf",
        _config(TrainConfig, weight_decay=INF),
        ConfigError,
        "TrainConfig.weight_decay",
    ),
    (
        "TrainConfig weight_decay negative",
        _config(TrainConfig, weight_decay=-0.1),
        ConfigError,
        "TrainConfig.weight_decay",
    ),
    (
        "TrainConfig grad_clip inf",
        _config(TrainConfig, grad_clip=INF),
        ConfigError,
        "TrainConfig.grad_clip",
    ),
    ("TrainConfig epochs float", _config(TrainConfig, epochs=2.5), ConfigError, "epochs"),
    ("TrainConfig seed text", _config(TrainConfig, seed="0"), ConfigError, "TrainConfig.seed"),
    ("PretrainConfig lr inf", _config(PretrainConfig, lr=INF), ConfigError, "PretrainConfig.lr"),
    (
        "PretrainConfig visible_weight inf",
        _config(PretrainConfig, visible_weight=INF),
        ConfigError,
        "PretrainConfig.visible_weight",
    ),
    (
        "PretrainConfig weight_decay inf",
        _config(PretrainConfig, weight_decay=INF),
        ConfigError,
        "PretrainConfig.weight_decay",
    ),
    (
        "PretrainConfig grad_clip inf",
        _config(PretrainConfig, grad_clip=INF),
        ConfigError,
        "PretrainConfig.grad_clip",
    ),
    ("FinetuneConfig lr inf", _config(FinetuneConfig, lr=INF), ConfigError, "FinetuneConfig.lr"),
    (
        "FinetuneConfig weight_decay inf",
        _config(FinetuneConfig, weight_decay=INF),
        ConfigError,
        "FinetuneConfig.weight_decay",
    ),
    (
        "FinetuneConfig betas text",
        _config(FinetuneConfig, betas=("0.9", 0.98)),
        ConfigError,
        "FinetuneConfig.betas",
    ),
    (
        "training study lr = inf",
        lambda tmp: _training_study_file(tmp, "lr = inf"),
        SpecError,
        "TrainConfig.lr",
    ),
    (
        "training study lr = nan",
        lambda tmp: _training_study_file(tmp, "lr = nan"),
        SpecError,
        "TrainConfig.lr",
    ),
    (
        "training study weight_decay = inf",
        lambda tmp: _training_study_file(tmp, "weight_decay = inf"),
        SpecError,
        "TrainConfig.weight_decay",
    ),
    ("train --lr inf", lambda tmp: _cli_train(tmp, "--lr", "inf"), ArgumentError, "--lr"),
    ("train --lr nan", lambda tmp: _cli_train(tmp, "--lr", "nan"), ArgumentError, "--lr"),
    ("fit diverges", _fit_diverges, StudyError, "training diverged in epoch"),
    ("fit with a NaN weight", _nan_weight_fit, StudyError, "the loss is nan"),
    ("train_subjects diverges", _train_subjects_diverges, StudyError, "subject 3"),
    ("pretrain diverges", _pretrain_diverges, StudyError, "pretrain"),
    ("finetune diverges", _finetune_diverges, StudyError, "finetune"),
    (
        "finetune_regression diverges",
        _finetune_regression_diverges,
        StudyError,
        "finetune",
    ),
    (
        "finetune_regression monitor = accuracy",
        _finetune_regression_on_accuracy,
        ArgumentError,
        "a regression has no accuracy",
    ),
    (
        "training study diverges",
        lambda tmp: _training_study(tmp, {"lr": DIVERGING_LR}),
        StudyError,
        "subject 7",
    ),
    ("save a NaN model", _save_nan_model, CheckpointError, "blocks.1.attn.W_V"),
]


# ----------------------------------------------------------------------------- item 6: config.json


def _edited_checkpoint(tmp: Path, edit, model: str = "isonet", **load) -> Any:
    """Save a tiny model, apply ``edit(info)`` to its config.json (a dict, or return a new
    value), and load it."""
    built = _isonet() if model == "isonet" else _tinymyo("classification")
    path = save_checkpoint(built, tmp / "ckpt")
    info = json.loads((path / "config.json").read_text())
    edited = edit(info)
    (path / "config.json").write_text(json.dumps(info if edited is None else edited))
    return load_checkpoint(path, **load)


def _set(*keys: str, value: Any):
    def edit(info: dict) -> None:
        for key in keys[:-1]:
            info = info[key]
        info[keys[-1]] = value

    return edit


def _drop(*keys: str):
    def edit(info: dict) -> None:
        for key in keys[:-1]:
            info = info[key]
        del info[keys[-1]]

    return edit


def _no_cuda(edit):
    """An edit that names CUDA: refused only where torch has no CUDA GPU (skipped elsewhere)."""

    def trigger(tmp: Path) -> Any:
        if torch.cuda.is_available():
            pytest.skip("this machine has a CUDA GPU: the checkpoint loads there")
        return _edited_checkpoint(tmp, edit)

    return trigger


def _not_utf8_config(tmp: Path):
    path = save_checkpoint(_isonet(), tmp / "ckpt")
    text = (
        (path / "config.json").read_text().replace('"metadata": {}', '"metadata": {"n": "caf\xe9"}')
    )
    (path / "config.json").write_bytes(text.encode("latin-1"))
    return load_checkpoint(path)


# (id, edit, model, substring): each a hand edit of config.json as save_checkpoint writes it
CONFIG_EDITS = [
    ("not an object", lambda info: [info], "isonet", "a JSON object"),
    ("config missing", _drop("config"), "isonet", "['config']"),
    ("metadata missing", _drop("metadata"), "isonet", "['metadata']"),
    ("model_class missing", _drop("model_class"), "isonet", "['model_class']"),
    ("model_kwargs missing", _drop("model_kwargs"), "isonet", "['model_kwargs']"),
    ("format missing", _drop("format"), "isonet", "format"),
    ("unknown top-level key", _set("weights", value="x.bin"), "isonet", "['weights']"),
    ("model_class a list", _set("model_class", value=["IsoNet"]), "isonet", "model_class"),
    ("model_class a table", _set("model_class", value={"a": 1}), "isonet", "model_class"),
    ("model_class unknown", _set("model_class", value="Foo"), "isonet", "'Foo'"),
    ("model_kwargs a list", _set("model_kwargs", value=[1]), "isonet", "model_kwargs"),
    ("model_kwargs null", _set("model_kwargs", value=None), "isonet", "model_kwargs"),
    ("IsoNet model_kwargs task", _set("model_kwargs", "task", value="x"), "isonet", "task"),
    ("TinyMyo model_kwargs unknown", _set("model_kwargs", "foo", value=1), "tinymyo", "foo"),
    (
        "TinyMyo model_kwargs task a list",
        _set("model_kwargs", "task", value=["regression"]),
        "tinymyo",
        "model_kwargs.task",
    ),
    (
        "TinyMyo model_kwargs task unknown",
        _set("model_kwargs", "task", value="segmentation"),
        "tinymyo",
        "model_kwargs",
    ),
    (
        "TinyMyo model_kwargs drop_path text",
        _set("model_kwargs", "drop_path", value="0.1"),
        "tinymyo",
        "model_kwargs.drop_path",
    ),
    (
        "TinyMyo model_kwargs head_dropout null",
        _set("model_kwargs", "head_dropout", value=None),
        "tinymyo",
        "model_kwargs.head_dropout",
    ),
    (
        "TinyMyo model_kwargs reg_hidden float",
        _set("model_kwargs", "reg_hidden", value=2.5),
        "tinymyo",
        "model_kwargs.reg_hidden",
    ),
    ("config a list", _set("config", value=[1]), "isonet", "config"),
    ("config null", _set("config", value=None), "isonet", "config"),
    ("config unknown field", _set("config", "foo", value=1), "isonet", "foo"),
    ("config field missing", _drop("config", "act_fn"), "isonet", "act_fn"),
    ("config dtype float16", _set("config", "dtype", value="float16"), "isonet", "dtype"),
    ("config dtype a number", _set("config", "dtype", value=3), "isonet", "dtype"),
    ("config device gpu", _set("config", "device", value="gpu"), "isonet", "config.device"),
    ("config device meta", _set("config", "device", value="meta"), "isonet", "config.device"),
    ("config device mps", _set("config", "device", value="mps"), "isonet", "config.device"),
    ("config device a number", _set("config", "device", value=3), "isonet", "config.device"),
    ("config device a list", _set("config", "device", value=["cpu"]), "isonet", "config.device"),
    (
        "config device cuda:99",
        _set("config", "device", value="cuda:99"),
        "isonet",
        "config.device",
    ),
    ("config eps text", _set("config", "eps", value="1e-5"), "isonet", "config.eps"),
    ("config eps null", _set("config", "eps", value=None), "isonet", "config.eps"),
    ("config eps NaN", _set("config", "eps", value=NAN), "isonet", "eps"),
    ("config dropout text", _set("config", "dropout", value="0"), "isonet", "config.dropout"),
    (
        "config init_range text",
        _set("config", "init_range", value="x"),
        "isonet",
        "config.init_range",
    ),
    ("config seed text", _set("config", "seed", value="x"), "isonet", "config.seed"),
    ("config seed float", _set("config", "seed", value=1.5), "isonet", "config.seed"),
    (
        "config use_cls_token text",
        _set("config", "use_cls_token", value="yes"),
        "isonet",
        "config.use_cls_token",
    ),
    ("config d_mlp true", _set("config", "d_mlp", value=True), "isonet", "config.d_mlp"),
    ("config d_model text", _set("config", "d_model", value="16"), "isonet", "d_model"),
    (
        "config modalities a list",
        _set("config", "modalities", value=["emg"]),
        "isonet",
        "modalities",
    ),
    (
        "config rotary_base text",
        _set("config", "rotary_base", value="x"),
        "tinymyo",
        "config.rotary_base",
    ),
    (
        "config sample_rate text",
        _set("config", "sample_rate", value="2 kHz"),
        "isonet",
        "config.sample_rate",
    ),
    ("metadata a list", _set("metadata", value=[1]), "isonet", "metadata"),
    ("metadata null", _set("metadata", value=None), "isonet", "metadata"),
    (
        "metadata subject text",
        _set("metadata", "subject", value="one"),
        "isonet",
        "metadata.subject",
    ),
    (
        "metadata data_source a list",
        _set("metadata", "data_source", value=["synthetic"]),
        "isonet",
        "metadata.data_source",
    ),
]

CHECKPOINT_CONFIG = [
    (
        f"config.json {name}",
        lambda tmp, edit=edit, model=model: _edited_checkpoint(tmp, edit, model),
        CheckpointError,
        substring,
    )
    for name, edit, model, substring in CONFIG_EDITS
] + [
    (
        "config.json device cuda without CUDA",
        _no_cuda(_set("config", "device", value="cuda")),
        CheckpointError,
        "config.device",
    ),
    ("config.json not UTF-8", _not_utf8_config, CheckpointError, "UTF-8"),
    (
        "load_checkpoint device gpu",
        lambda tmp: _edited_checkpoint(tmp, lambda info: None, device="gpu"),
        ArgumentError,
        "device",
    ),
]


# ----------------------------------------------------------------------------- item 6: study files

ABLATION = 'name = "café"\nmodels = "demo"\n[[interventions]]\nname = "x"\nedges = "cross_modal"\n'
DISCOVERY = 'kind: discovery\nname: "café"\nmodels: demo\n'
TRAINING = (
    'kind = "training"\nname = "café"\narchitectures = ["MultimodalMLP"]\nreference = "emg"\n'
    '[data]\nsubjects = [1]\n[[inputs]]\nname = "emg"\nmodalities = ["emg"]\n'
)


def _latin1_file(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_bytes(text.encode("latin-1"))  # "é" is one byte, 0xe9: not UTF-8
    return path


def _ablation_with(tmp: Path, line: str):
    path = tmp / "study.toml"
    path.write_text(f"{line}\n{ABLATION.replace('café', 'cafe')}")
    return load_spec(path)


def _discovery_with(tmp: Path, line: str):
    path = tmp / "study.yaml"
    path.write_text(DISCOVERY.replace("café", "cafe") + line + "\n")
    return load_spec(path)


def _folder_of_studies(tmp: Path) -> Path:
    (tmp / "a.toml").write_text(ABLATION)
    (tmp / "notes.txt").write_text("")
    return tmp


STUDY_FILES = [
    (  # it exists: "does not exist" would send the user looking for it
        "study check of a folder",
        lambda tmp: cli.run(["study", "check", str(_folder_of_studies(tmp))]),
        SpecError,
        "is a folder, not a file; its study files: ['a.toml']",
    ),
    (
        "ablation study not UTF-8",
        lambda tmp: load_spec(_latin1_file(tmp, "a.toml", ABLATION)),
        SpecError,
        "UTF-8",
    ),
    (
        "training study not UTF-8",
        lambda tmp: run_training_study(_latin1_file(tmp, "t.toml", TRAINING), progress=False),
        SpecError,
        "UTF-8",
    ),
    (
        "discovery study not UTF-8",
        lambda tmp: load_spec(_latin1_file(tmp, "d.yaml", DISCOVERY)),
        SpecError,
        "UTF-8",
    ),
    (
        "study check of a file not UTF-8",
        lambda tmp: cli.run(["study", "check", str(_latin1_file(tmp, "a.toml", ABLATION))]),
        SpecError,
        "UTF-8",
    ),
    (
        "ablation subjects = []",
        lambda tmp: _ablation_with(tmp, "subjects = []"),
        SpecError,
        "subjects",
    ),
    (
        "ablation subjects repeated",
        lambda tmp: _ablation_with(tmp, "subjects = [1, 1]"),
        SpecError,
        "subjects repeats 1",
    ),
    (
        "discovery subjects = []",
        lambda tmp: _discovery_with(tmp, "subjects: []"),
        SpecError,
        "subjects",
    ),
]


# ----------------------------------------------------------------------------- item 7


def _discover_spec_with_name(tmp: Path):
    path = tmp / "study.yaml"
    path.write_text(DISCOVERY.replace("café", "cafe"))
    return cli.run(["discover", str(path), "--name", "other", "--out", str(tmp / "out")])


def _export_cli(tmp: Path, *flags: str):
    path = save_checkpoint(_isonet(), tmp / "ckpt")
    argv = ["export", "--checkpoint", str(path), "--out", str(tmp / "m.onnx"), *flags]
    return cli.run(argv)


IGNORED = [
    ("discover SPEC --name", _discover_spec_with_name, ArgumentError, "--name"),
    (
        "export --edges layers(5) on 2 layers",
        lambda tmp: _export_cli(tmp, "--edges", "cross_modal & layers(5)"),
        LayoutError,
        "[5]",
    ),
    (
        "export_edge_masks layers(2) on 2 layers",
        lambda tmp: export_edge_masks(_isonet(), "layers(0, 2) & cross_modal"),
        LayoutError,
        "n_layers=2",
    ),
    (
        "export --edges layers(1) --layers 0",
        lambda tmp: _export_cli(tmp, "--edges", "cross_modal & layers(1)", "--layers", "0"),
        LayoutError,
        "--layers",
    ),
]

ROWS: list[tuple] = [*HYPER_PARAMETERS, *CHECKPOINT_CONFIG, *STUDY_FILES, *IGNORED]
