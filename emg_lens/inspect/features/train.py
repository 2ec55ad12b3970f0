"""The two ways to `Features`: fit a new autoencoder on a model's training windows
(`train_features`), or read a saved one back (`load_features`); either is described on the
held-out windows (`describe_features`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from emg_lens.data.preprocess import SubjectData
from emg_lens.errors import ArgumentError, check_type, checked
from emg_lens.inputs import as_subject_data
from emg_lens.inspect.features.checkpoint import read_sae
from emg_lens.inspect.features.config import FeatureConfig
from emg_lens.inspect.features.describe import describe_features
from emg_lens.inspect.features.result import Features
from emg_lens.inspect.features.sae import TopKSAE, fit_sae
from emg_lens.inspect.features.tokens import token_residuals
from emg_lens.provenance import arrays_digest, code_digest, model_digest


def _split(model: Any, data: SubjectData | tuple[Any, Any], config: FeatureConfig):
    """The training windows and the held-out `SubjectData`: its own split, or (for ``(X, y)``
    or a subject without training windows) a seeded ``holdout`` share of its trials, each
    trial's windows on one side (docs/DESIGN.md §15: overlapping windows of one trial share
    its noise, so a window held out beside its neighbours in training is not held out).
    Windows without trials are each their own trial."""
    data = as_subject_data(model, data)
    if len(data.y_train):
        return data.X_train, data
    trials = data.test_trials
    ids = np.unique(trials)
    held = round(config.holdout * len(ids))
    if held < 1 or held >= len(ids):
        raise ArgumentError(
            f"FeatureConfig.holdout {config.holdout} of {len(ids)} trials leaves {held} to test,"
            f" {len(ids) - held} to train on: both need one (more trials, or train windows)"
        )
    order = np.random.default_rng(config.seed).permutation(len(ids))
    evaluated = np.isin(trials, ids[order[:held]])
    return data.X_test[~evaluated], data.select_test(np.flatnonzero(evaluated))


@checked
def train_features(
    model: Any,
    data: SubjectData | tuple[Any, Any],
    config: FeatureConfig,
    *,
    source: dict | None = None,
    train_accuracy: float | None = None,
) -> Features:
    """Fit a `TopKSAE` to ``model``'s residuals at ``config.hook_name`` on the tokens of the
    training windows of ``data`` (a `SubjectData`, or ``(X, y)``: windows ``[n, channels,
    time]`` and class indices, ``config.holdout`` of them held out) and describe it on the
    held-out windows (`describe_features`). ``source`` (a checkpoint's ``data_source``) places
    the figures' electrodes; ``train_accuracy`` names the fault of a model not above chance.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0)).eval()
    >>> X = np.random.default_rng(0).standard_normal((40, *model.input_shape)).astype("float32")
    >>> features = train_features(model, (X, np.arange(40) % 3),
    ...                           FeatureConfig(layer=1, n_features=16, k=2, epochs=2))
    >>> sorted(features.tables())[:3]
    ['ablation', 'chance', 'channels']
    >>> bool(0 < features.reconstruction["fve"].iloc[0] <= 1)
    True
    """
    check_type(config, FeatureConfig, "config")
    config.token_groups(model)  # the layer and groups, before any work
    X_train, held_out = _split(model, data, config)
    tokens = token_residuals(model, X_train, config).flatten(0, 1)
    torch.manual_seed(config.seed)
    sae = TopKSAE(tokens.shape[-1], config.n_features, config.k, seed=config.seed)
    history = fit_sae(sae, tokens, config)
    provenance = {
        "model": model_digest(model),
        "data": arrays_digest(held_out),
        "code": code_digest(),
        "train_windows": len(X_train),
        "train_tokens": len(tokens),
        "loss_by_epoch": history,
    }
    return describe_features(
        model, held_out, sae.eval(), config, provenance, source=source,
        train_accuracy=train_accuracy,
    )  # fmt: skip


@checked
def load_features(
    path: str | Path,
    model: Any,
    data: SubjectData | tuple[Any, Any],
    *,
    source: dict | None = None,
) -> Features:
    """The sparse features `Features.save` wrote into ``path``, described again on the test
    windows of ``data`` (all of ``(X, y)``). Refused with a `CheckpointError`: a folder without
    them, another format, weights of other shapes or not finite, and a ``model`` other than
    the one they were trained on (its digest, `emg_lens.provenance.model_digest`).

    >>> import tempfile
    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.inspect import save_sae
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0)).eval()
    >>> X = np.random.default_rng(0).standard_normal((40, *model.input_shape)).astype("float32")
    >>> config = FeatureConfig(layer=1, n_features=8, k=2, epochs=1)
    >>> features = train_features(model, (X, np.arange(40) % 3), config)
    >>> folder = tempfile.mkdtemp()
    >>> [p.name for p in save_sae(features, folder)]
    ['features.safetensors', 'features.json']
    >>> load_features(folder, model, (X[:10], np.arange(10) % 3)).config == config
    True
    """
    sae, info = read_sae(path, model)
    held_out = as_subject_data(model, data)
    provenance = {**info["provenance"], "data": arrays_digest(held_out)}
    if source is None:
        source = info.get("data_source")
    return describe_features(model, held_out, sae.eval(), info["config"], provenance, source=source)
