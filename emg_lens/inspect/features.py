"""Sparse features of channel tokens: a TopK sparse autoencoder on one layer's residuals.

`train_features` reads one hook of one layer (``blocks.{layer}.hook_resid_pre`` by default) at
the channel tokens of a model (every token of its modalities; CLS left out unless named), fits
a TopK sparse autoencoder (`TopKSAE`, Gao et al. 2024: each token is rebuilt from its ``k``
largest feature activations, every decoder direction of unit norm, an auxiliary loss that
lets dead features learn the error) on the training windows' tokens, and describes it on the
held-out windows (`Features`):

- reconstruction: the fraction of variance explained, and the model's accuracy with the
  reconstruction spliced in at that hook (in place of the residual) beside its own;
- dead features (no held-out token fires them) and how many fire per token;
- per feature: the windows it fires most on, its mean activation per channel (drawn on the
  electrode placement of the data), per gesture class, its *modality share* (the share of its
  activation mass on each token group) and what ablating it costs: the feature zeroed in the
  spliced reconstruction with the error term kept (the residual minus its contribution), the
  change in accuracy and in the correct class's logit, per class.

`Features.save` writes the tables, figures, ``summary.md`` and ``report.html`` like every
other run, and the autoencoder itself like a checkpoint (``features.safetensors`` and
``features.json`` with its config and provenance: the model's, data's and code's digests);
`load_features` reads it back, for that model only.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from emg_lens._io import atomic_write, make_folder
from emg_lens.data.datasets import montages_of
from emg_lens.data.preprocess import SubjectData
from emg_lens.errors import (
    ArgumentError,
    CheckpointError,
    ConfigError,
    InputValueError,
    LayoutError,
    TrainingDivergedError,
    describe,
)
from emg_lens.inspect.importance import as_subject_data
from emg_lens.provenance import arrays_digest, code_digest, model_digest
from emg_lens.studies.chance import TrialScore, chance_console, chance_markdown, chance_table
from emg_lens.studies.output import markdown_table, save_outputs

__all__ = [
    "FEATURES_FORMAT",
    "HOOKS",
    "FeatureConfig",
    "Features",
    "TopKSAE",
    "describe_features",
    "load_features",
    "save_sae",
    "token_residuals",
    "train_features",
]

HOOKS = ("resid_pre", "resid_mid", "resid_post")
"""The residual hooks of a block an autoencoder can read."""
FEATURES_FORMAT = "emg_lens.features/1"
WEIGHTS, CONFIG = "features.safetensors", "features.json"
MAP_FEATURES = 6  # features drawn on the body: the costliest to ablate
HEATMAP_FEATURES = 16  # rows of the per-class heatmaps


@dataclass(frozen=True)
class FeatureConfig:
    """What `train_features` fits: a TopK autoencoder of ``n_features`` features, ``k`` active
    per token, on ``blocks.{layer}.hook_{hook}`` at the tokens of ``groups`` (default: every
    modality's tokens, the channel tokens), trained ``epochs`` times over the training
    windows' tokens with Adam (``lr``, batches of ``batch_size`` tokens, seeded by ``seed``).

    ``aux_k`` features among the dead ones (none fired for ``dead_tokens`` tokens) fit the
    reconstruction's error, weighted ``aux_coef`` (0 turns it off). ``readout`` is the logits
    accuracy and ablations are scored on (``"avg_logits"``: IsoNet's mean-pooled head).
    ``holdout`` is the share of windows held out when the data has no training windows
    (``(X, y)``); ``top_windows`` the windows listed per feature.

    >>> FeatureConfig(layer=0, k=80)
    Traceback (most recent call last):
    ...
    emg_lens.errors.ConfigError: FeatureConfig.k must be an int in 1..n_features (64), got 80
    """

    layer: int
    hook: str = "resid_pre"
    n_features: int = 64
    k: int = 4
    epochs: int = 30
    lr: float = 3e-3
    batch_size: int = 512
    seed: int = 0
    groups: tuple[str, ...] | None = None
    aux_k: int = 16
    aux_coef: float = 1 / 32
    dead_tokens: int = 20_000
    readout: str = "logits"
    holdout: float = 0.25
    top_windows: int = 5

    def __post_init__(self) -> None:
        def whole(name: str, low: int, high: int | None = None, what: str = "") -> None:
            value = getattr(self, name)
            ok = isinstance(value, int) and not isinstance(value, bool)
            if not ok or value < low or (high is not None and value > high):
                span = what or (f"an int >= {low}" if high is None else f"an int in {low}..{high}")
                raise ConfigError(f"FeatureConfig.{name} must be {span}, got {value!r}")

        whole("layer", 0)
        whole("n_features", 1)
        whole("k", 1, self.n_features, f"an int in 1..n_features ({self.n_features})")
        for name in ("epochs", "batch_size", "top_windows", "dead_tokens"):
            whole(name, 1)
        whole("seed", 0)
        whole("aux_k", 0)  # at most the dead features are used, however many that is
        if self.hook not in HOOKS:
            raise ConfigError(f"FeatureConfig.hook must be one of {HOOKS}, got {self.hook!r}")
        for name, low, high in (("lr", 0, None), ("aux_coef", 0, None), ("holdout", 0, 1)):
            value = getattr(self, name)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not number or not np.isfinite(value) or value < low or (high and value >= high):
                bound = f"in [{low}, {high})" if high else f">= {low}"
                raise ConfigError(f"FeatureConfig.{name} must be a finite number {bound}, got "
                                  f"{value!r}")  # fmt: skip
        if self.lr == 0:
            raise ConfigError("FeatureConfig.lr must be > 0, got 0")
        if self.groups is not None:
            if isinstance(self.groups, str) or not all(isinstance(g, str) for g in self.groups):
                raise ConfigError(
                    f"FeatureConfig.groups must be a tuple of token group names, got "
                    f"{self.groups!r}"
                )
            object.__setattr__(self, "groups", tuple(self.groups))
            if not self.groups:
                raise ConfigError("FeatureConfig.groups names no group; give at least one")

    @property
    def hook_name(self) -> str:
        return f"blocks.{self.layer}.hook_{self.hook}"

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["groups"] = None if self.groups is None else list(self.groups)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FeatureConfig:
        """The config `to_dict` wrote; an unknown field is a `ConfigError` naming it."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown FeatureConfig field(s) {unknown}; known: {sorted(known)}")
        groups = values.get("groups")
        return cls(**{**values, "groups": None if groups is None else tuple(groups)})

    def token_groups(self, model: Any) -> tuple[str, ...]:
        """The groups read, checked against ``model``'s layout (and its layers and readout)."""
        layers = model.cfg.n_layers
        if self.layer >= layers:
            raise LayoutError(
                f"FeatureConfig.layer {self.layer}: the model has {layers} layers (0..{layers - 1})"
            )
        layout = model.layout
        groups = self.groups or layout.modalities
        for group in groups:
            layout.check_group(group)
        with torch.inference_mode():
            logits = model(model.example_input(1), return_type=self.readout)
        if not (isinstance(logits, torch.Tensor) and logits.shape == (1, model.cfg.n_classes)):
            raise ArgumentError(
                f"FeatureConfig.readout {self.readout!r} gives {describe(logits)}, not class "
                f"logits [batch, {model.cfg.n_classes}]: choose a readout that gives them "
                '("logits"; IsoNet\'s mean-pooled head: "avg_logits")'
            )
        return tuple(groups)


class TopKSAE(torch.nn.Module):
    """A TopK sparse autoencoder: ``f = TopK(relu((x - b_dec) @ W_enc + b_enc))``, ``x̂ = f @
    W_dec + b_dec``, each row of ``W_dec`` (a feature's direction) of unit norm. The encoder
    starts as the decoder's transpose (Gao et al. 2024).

    >>> sae = TopKSAE(d_in=8, n_features=16, k=2, seed=0)
    >>> x = torch.randn(5, 8)
    >>> recon, acts = sae(x)
    >>> norms = sae.W_dec.detach().norm(dim=1)
    >>> recon.shape, int((acts > 0).sum(-1).max()), bool(torch.allclose(norms, torch.ones(16)))
    (torch.Size([5, 8]), 2, True)
    """

    def __init__(self, d_in: int, n_features: int, k: int, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        directions = torch.randn(n_features, d_in, generator=gen)
        directions /= directions.norm(dim=1, keepdim=True)
        self.k = k
        self.W_enc = torch.nn.Parameter(directions.T.clone())
        self.b_enc = torch.nn.Parameter(torch.zeros(n_features))
        self.W_dec = torch.nn.Parameter(directions)
        self.b_dec = torch.nn.Parameter(torch.zeros(d_in))

    @property
    def n_features(self) -> int:
        return self.W_dec.shape[0]

    def pre_acts(self, x: Float[torch.Tensor, "... d_in"]) -> Float[torch.Tensor, "... feat"]:
        return (x - self.b_dec) @ self.W_enc + self.b_enc

    def encode(self, x: Float[torch.Tensor, "... d_in"]) -> Float[torch.Tensor, "... feat"]:
        """The feature activations: the ``k`` largest pre-activations, rectified; zero else."""
        top = self.pre_acts(x).topk(self.k, dim=-1)
        acts = torch.zeros(*x.shape[:-1], self.n_features, dtype=x.dtype, device=x.device)
        return acts.scatter(-1, top.indices, torch.relu(top.values))

    def decode(self, acts: Float[torch.Tensor, "... feat"]) -> Float[torch.Tensor, "... d_in"]:
        return acts @ self.W_dec + self.b_dec

    def forward(self, x: Float[torch.Tensor, "... d_in"]) -> tuple[torch.Tensor, torch.Tensor]:
        acts = self.encode(x)
        return self.decode(acts), acts

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)


# ----------------------------------------------------------------------------- activations


def _positions(model: Any, groups: tuple[str, ...]) -> list[int]:
    return [i for i, g in enumerate(model.layout.group) if g in groups]


def token_residuals(
    model: Any, X: np.ndarray, config: FeatureConfig, batch_size: int = 256
) -> Float[torch.Tensor, "window token d_model"]:
    """The residual at ``config.hook_name`` of the tokens of ``config``'s groups, for each
    window of ``X`` (float32, on the CPU); a non-finite value is an `InputValueError` naming
    the hook and the first window holding one.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0)).eval()
    >>> token_residuals(model, model.example_input(3).numpy(), FeatureConfig(layer=0)).shape
    torch.Size([3, 6, 16])
    """
    positions = _positions(model, config.token_groups(model))
    parts = []
    for start in range(0, len(X), batch_size):
        batch = torch.as_tensor(X[start : start + batch_size], dtype=model.cfg.dtype)
        with torch.inference_mode():
            _, cache = model.run_with_cache(
                batch.to(model.cfg.device), names_filter=config.hook_name, return_type=None
            )
        parts.append(cache[config.hook_name][:, positions].float().cpu())
    resid = torch.cat(parts)
    bad = ~torch.isfinite(resid).all(dim=(1, 2))
    if bad.any():
        raise InputValueError(
            f"non-finite activations at {config.hook_name} in window {int(bad.nonzero()[0])} "
            f"({int(bad.sum())} of {len(resid)} windows): check the windows (NaN or inf in the "
            "signals) and the model's weights"
        )
    return resid


# ----------------------------------------------------------------------------- training


def _fit(sae: TopKSAE, tokens: torch.Tensor, config: FeatureConfig) -> list[float]:
    """Adam on the variance-normalised squared error (and the dead features' auxiliary loss);
    the decoder's rows kept at unit norm, their gradient along themselves removed. The loss of
    each epoch; a non-finite loss is a `TrainingDivergedError`."""
    gen = torch.Generator().manual_seed(config.seed)
    with torch.no_grad():
        sae.b_dec.copy_(tokens.mean(dim=0))
    scale = (tokens - tokens.mean(dim=0)).pow(2).sum(dim=-1).mean().clamp_min(1e-12)
    optimiser = torch.optim.Adam(sae.parameters(), lr=config.lr)
    unfired = torch.zeros(sae.n_features)  # tokens seen since each feature last fired
    history = []
    for epoch in range(config.epochs):
        order = torch.randperm(len(tokens), generator=gen)
        total = 0.0
        for start in range(0, len(tokens), config.batch_size):
            x = tokens[order[start : start + config.batch_size]]
            recon, acts = sae(x)
            error = x - recon
            loss = error.pow(2).sum(dim=-1).mean() / scale
            dead = unfired >= config.dead_tokens
            if config.aux_k and config.aux_coef and dead.any():
                loss = loss + config.aux_coef * _aux_loss(sae, x, error.detach(), dead, config)
            if not torch.isfinite(loss):
                raise TrainingDivergedError(
                    f"the sparse autoencoder's loss became {loss.item()} in epoch {epoch}: "
                    f"lower FeatureConfig.lr ({config.lr})"
                )
            optimiser.zero_grad()
            loss.backward()
            with torch.no_grad():
                W, grad = sae.W_dec, sae.W_dec.grad
                grad -= (grad * W).sum(dim=1, keepdim=True) * W
            optimiser.step()
            sae.normalize_decoder()
            fired = (acts > 0).any(dim=0)
            unfired = torch.where(fired, torch.zeros_like(unfired), unfired + len(x))
            total += loss.item() * len(x)
        history.append(total / len(tokens))
    return history


def _aux_loss(
    sae: TopKSAE, x: torch.Tensor, error: torch.Tensor, dead: torch.Tensor, config: FeatureConfig
) -> torch.Tensor:
    """AuxK: the top ``aux_k`` dead features' reconstruction of the error, normalised by the
    error's own size (Gao et al. 2024, appendix A.2)."""
    pre = sae.pre_acts(x)[:, dead]
    top = pre.topk(min(config.aux_k, int(dead.sum())), dim=-1)
    acts = torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))
    recon = acts @ sae.W_dec[dead]
    return (error - recon).pow(2).sum(dim=-1).mean() / error.pow(2).sum(dim=-1).mean().clamp_min(
        1e-12
    )


def _split(model: Any, data: SubjectData | tuple[Any, Any], config: FeatureConfig):
    """The training windows and the held-out `SubjectData`: its own split, or (for ``(X, y)``
    or a subject without training windows) a seeded ``holdout`` share of the windows."""
    data = as_subject_data(model, data)
    if len(data.y_train):
        return data.X_train, data
    n = len(data.y_test)
    held = round(config.holdout * n)
    if held < 1 or held >= n:
        raise ArgumentError(
            f"FeatureConfig.holdout {config.holdout} of {n} windows leaves "
            f"{n - held} to train on and {held} to evaluate: both need at least one window "
            "(give more windows, another holdout, or a SubjectData with training windows)"
        )
    order = np.random.default_rng(config.seed).permutation(n)
    test, train = np.sort(order[:held]), np.sort(order[held:])
    evaluated = dataclasses.replace(
        data, X_test=data.X_test[test], y_test=data.y_test[test], rep_test=data.rep_test[test]
    )
    return data.X_test[train], evaluated


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
    held-out windows (`describe_features`). ``source`` is the data source the windows come from
    (a checkpoint's ``data_source``), for the electrode placement of the figures;
    ``train_accuracy`` (a checkpoint records it) names the fault of a model that is not above
    chance (`emg_lens.studies.chance`).

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
    if not isinstance(config, FeatureConfig):
        raise ArgumentError(f"config must be a FeatureConfig, got {describe(config)}")
    config.token_groups(model)  # the layer and groups, before any work
    X_train, held_out = _split(model, data, config)
    tokens = token_residuals(model, X_train, config).flatten(0, 1)
    torch.manual_seed(config.seed)
    sae = TopKSAE(tokens.shape[-1], config.n_features, config.k, seed=config.seed)
    history = _fit(sae, tokens, config)
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


# ----------------------------------------------------------------------------- description


def _splice_logits(
    model: Any,
    X: torch.Tensor,
    config: FeatureConfig,
    positions: list[int],
    values: torch.Tensor | None,
) -> torch.Tensor:
    """``model``'s logits (``config.readout``) with ``values`` written over the residual at the
    hook's ``positions`` (None: the model as it is)."""
    if values is None:
        return model(X, return_type=config.readout)

    def write(resid: torch.Tensor, hook: Any) -> torch.Tensor:
        resid = resid.clone()
        resid[:, positions] = values.to(resid.device, resid.dtype)
        return resid

    return model.run_with_hooks(
        X, return_type=config.readout, fwd_hooks=[(config.hook_name, write)]
    )


def _logits(model, X, config, positions, values_of: Callable[[slice], Any], batch_size=256):
    """The logits over every window of ``X``, batch by batch (``values_of(batch slice)``)."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(X), batch_size):
            part = slice(start, start + batch_size)
            out.append(_splice_logits(model, X[part], config, positions, values_of(part)).float())
    logits = torch.cat(out).cpu()
    if not torch.isfinite(logits).all():
        raise InputValueError(f"non-finite logits with {config.hook_name} spliced")
    return logits


def describe_features(
    model: Any,
    data: SubjectData,
    sae: TopKSAE,
    config: FeatureConfig,
    provenance: dict[str, Any],
    *,
    source: dict | None = None,
    train_accuracy: float | None = None,
) -> Features:
    """Reconstruction, dead features and every feature's maps, classes, top windows and
    ablation on the test windows of ``data`` (see the module docstring), and the model's own
    score over their trials, for the chance check."""
    groups = config.token_groups(model)
    positions = _positions(model, groups)
    layout = model.layout
    resid = token_residuals(model, data.X_test, config)  # [window, token, d]
    with torch.no_grad():
        recon, acts = sae(resid)
    centred = resid - resid.flatten(0, 1).mean(dim=0)
    fve = 1 - float((resid - recon).pow(2).sum() / centred.pow(2).sum().clamp_min(1e-12))
    X = torch.as_tensor(data.X_test, dtype=model.cfg.dtype, device=model.cfg.device)
    y = torch.as_tensor(data.y_test).long()
    own = _logits(model, X, config, positions, lambda part: None)
    spliced = _logits(model, X, config, positions, lambda part: recon[part])
    labels = [str(c) for c in data.classes]
    reconstruction = pd.DataFrame(
        [{
            "layer": config.layer, "hook": config.hook, "groups": "+".join(groups),
            "n_features": config.n_features, "k": config.k, "fve": fve,
            "model_accuracy": float((own.argmax(-1) == y).float().mean()),
            "spliced_accuracy": float((spliced.argmax(-1) == y).float().mean()),
            "dead_features": int((acts.flatten(0, 1) > 0).any(dim=0).logical_not().sum()),
            "active_per_token": float((acts > 0).sum(-1).float().mean()),
            "test_windows": len(y), "test_tokens": int(acts.shape[0] * acts.shape[1]),
        }]
    )  # fmt: skip
    reconstruction["readout_reads_them"] = _readout_reads(model, config, positions)
    per_class = _per_class(own, spliced, y, labels)
    ablation = _ablation(model, X, y, labels, config, positions, resid, sae, acts, own)
    token_group = [layout.group[p] for p in positions]
    placement = bool(data.meta.get("placement")) or bool(source and montages_of(source))
    score = TrialScore.from_predictions(
        own.argmax(-1).numpy(), data.y_test, data.test_trials, data.n_classes,
        train_accuracy=train_accuracy, placement=placement,
    )  # fmt: skip
    return Features(
        model_name=type(model).__name__,
        config=config,
        sae=sae,
        provenance=provenance,
        reconstruction=reconstruction,
        per_class=per_class,
        features=_feature_table(acts, token_group, groups, y, labels, ablation),
        channels=_channel_table(model, positions, acts),
        classes=_class_table(acts, y, labels),
        top=_top_windows(model, positions, acts, y, labels, data.rep_test, config.top_windows),
        ablation=ablation,
        montages=montages_of(source, layout),
        subject=data.subject,
        source=source,
        score=score,
    )


def _readout_reads(model: Any, config: FeatureConfig, positions: list[int]) -> bool:
    """False where nothing written at these tokens can reach the logits: the last block's
    output at tokens the readout does not read (IsoNet's CLS head reads the CLS token only),
    so every ablation there is zero by construction."""
    if config.hook != "resid_post" or config.layer != model.cfg.n_layers - 1:
        return True
    read = getattr(model, "read_positions", lambda _: None)(config.readout)
    return read is None or bool(set(read) & set(positions))


def _per_class(own, spliced, y, labels) -> pd.DataFrame:
    rows = []
    for c, label in enumerate(labels):
        chosen = y == c
        if chosen.any():
            rows.append({
                "class": label, "n": int(chosen.sum()),
                "model_accuracy": float((own[chosen].argmax(-1) == c).float().mean()),
                "spliced_accuracy": float((spliced[chosen].argmax(-1) == c).float().mean()),
            })  # fmt: skip
    return pd.DataFrame(rows)


def _ablation(model, X, y, labels, config, positions, resid, sae, acts, own) -> pd.DataFrame:
    """Each feature zeroed in the reconstruction, the error kept: the residual minus the
    feature's contribution. Per feature and class: accuracy and the correct logit's change
    against the model as it is (which the spliced reconstruction plus its error is)."""
    correct = own.gather(1, y[:, None])[:, 0]
    right = own.argmax(-1) == y
    fired = (acts > 0).flatten(0, 1).any(dim=0)
    rows = []
    for f in range(sae.n_features):
        if fired[f]:
            direction = sae.W_dec[f].detach()
            logits = _logits(
                model, X, config, positions,
                lambda part, f=f, d=direction: resid[part] - acts[part, :, f, None] * d,
            )  # fmt: skip
        else:
            logits = own  # a feature that never fires changes nothing: exactly the model
        shift = logits.gather(1, y[:, None])[:, 0] - correct
        hit = logits.argmax(-1) == y
        for c, label in enumerate(labels):
            chosen = y == c
            if chosen.any():
                rows.append({
                    "feature": f, "class": label, "n": int(chosen.sum()),
                    "accuracy": float(right[chosen].float().mean()),
                    "ablated_accuracy": float(hit[chosen].float().mean()),
                    "delta_accuracy": float((hit[chosen].float() - right[chosen].float()).mean()),
                    "logit_shift": float(shift[chosen].mean()),
                })  # fmt: skip
    return pd.DataFrame(rows)


def _feature_table(acts, token_group, groups, y, labels, ablation) -> pd.DataFrame:
    """One row per feature: how often it fires, its modality shares, the class it fires on
    most, and its ablation overall and at its worst class."""
    flat = acts.flatten(0, 1)
    mass = acts.sum(dim=(0,))  # [token, feature]
    total = mass.sum(dim=0).clamp_min(1e-30)
    share = {
        g: (mass[[i for i, t in enumerate(token_group) if t == g]].sum(dim=0) / total).numpy()
        for g in groups
    }
    per_window = acts.mean(dim=1)  # [window, feature]
    by_class = torch.stack([
        per_window[y == c].mean(dim=0) if (y == c).any() else torch.zeros(acts.shape[-1])
        for c in range(len(labels))
    ])  # fmt: skip
    rows = []
    for f in range(acts.shape[-1]):
        fired = bool((flat[:, f] > 0).any())
        mine = ablation[ablation["feature"] == f]
        overall = (mine["delta_accuracy"] * mine["n"]).sum() / mine["n"].sum()
        worst = mine.loc[mine["delta_accuracy"].idxmin()]
        row = {
            "feature": f,
            "dead": not fired,
            "fires": float((flat[:, f] > 0).float().mean()),
            "mean_activation": float(flat[:, f].mean()),
            **{f"share_{g}": float(share[g][f]) if fired else np.nan for g in groups},
            "top_class": labels[int(by_class[:, f].argmax())] if fired else "",
            "delta_accuracy": float(overall),
            "worst_class": worst["class"],
            "worst_class_delta": float(worst["delta_accuracy"]),
        }
        rows.append(row)
    return pd.DataFrame(rows)


def _channel_table(model, positions, acts) -> pd.DataFrame:
    """Mean activation of each feature at each channel (over its tokens and the windows);
    ``index`` is the channel's place within its modality (what a montage is indexed by)."""
    layout = model.layout
    mean = acts.mean(dim=0)  # [token, feature]
    rows = []
    for group in dict.fromkeys(layout.group[p] for p in positions):
        channels = sorted({layout.channel[p] for p in positions if layout.group[p] == group})
        for index, channel in enumerate(channels):
            tokens = [i for i, p in enumerate(positions) if layout.channel[p] == channel]
            values = mean[tokens].mean(dim=0)
            name = layout.channel_names[channel] if layout.channel_names and channel >= 0 else ""
            for f in range(acts.shape[-1]):
                rows.append({"feature": f, "group": group, "index": index, "channel": channel,
                             "name": name, "mean_activation": float(values[f])})  # fmt: skip
    return pd.DataFrame(rows)


def _class_table(acts, y, labels) -> pd.DataFrame:
    """Per feature and class: the mean activation over the class's tokens and the share of
    its windows where the feature fires on some token."""
    rows = []
    for c, label in enumerate(labels):
        chosen = y == c
        if not chosen.any():
            continue
        mine = acts[chosen]
        mean, fires = mine.mean(dim=(0, 1)), (mine > 0).any(dim=1).float().mean(dim=0)
        for f in range(acts.shape[-1]):
            rows.append({"feature": f, "class": label, "mean_activation": float(mean[f]),
                         "fires_in_windows": float(fires[f])})  # fmt: skip
    return pd.DataFrame(rows)


def _top_windows(model, positions, acts, y, labels, repetitions, count) -> pd.DataFrame:
    """Each feature's ``count`` windows of largest activation (at any token), with the token
    where it peaks; ``window`` indexes the test windows described, ``repetition`` is theirs."""
    layout = model.layout
    peak, where = acts.max(dim=1)  # [window, feature]
    rows = []
    for f in range(acts.shape[-1]):
        order = torch.argsort(peak[:, f], descending=True, stable=True)[:count]
        for rank, w in enumerate(order.tolist()):
            if peak[w, f] <= 0:
                break
            p = positions[int(where[w, f])]
            rows.append({
                "feature": f, "rank": rank, "window": w, "repetition": int(repetitions[w]),
                "class": labels[int(y[w])],
                "activation": float(peak[w, f]), "group": layout.group[p],
                "channel": layout.channel[p], "time": layout.time[p],
            })  # fmt: skip
    return pd.DataFrame(
        rows, columns=["feature", "rank", "window", "repetition", "class", "activation", "group",
                       "channel", "time"]
    )  # fmt: skip


# ----------------------------------------------------------------------------- the result


@dataclass
class Features:
    """A trained `TopKSAE` and its description (`describe_features`); `save` writes it all."""

    model_name: str
    config: FeatureConfig
    sae: TopKSAE
    provenance: dict[str, Any]
    reconstruction: pd.DataFrame  # one row: fve, model and spliced accuracy, dead features
    per_class: pd.DataFrame  # class, n, model_accuracy, spliced_accuracy
    features: pd.DataFrame  # one row per feature
    channels: pd.DataFrame  # feature, group, index, channel, name, mean_activation
    classes: pd.DataFrame  # feature, class, mean_activation, fires_in_windows
    top: pd.DataFrame  # feature, rank, window, repetition, class, activation, group, channel, time
    ablation: pd.DataFrame  # feature, class, n, accuracy, ablated_accuracy, delta, logit_shift
    montages: dict[str, Any] = dataclasses.field(default_factory=dict)
    subject: int | None = None
    source: dict | None = None
    score: TrialScore | None = None  # the model's own, over trials: the chance check's

    def tables(self) -> dict[str, pd.DataFrame]:
        """The CSV tables by name."""
        return {
            "reconstruction": self.reconstruction,
            "reconstruction_by_class": self.per_class,
            "features": self.features,
            "channels": self.channels,
            "classes": self.classes,
            "top_windows": self.top,
            "ablation": self.ablation,
            "chance": self.chance,
        }

    @property
    def chance(self) -> pd.DataFrame:
        """The model's score on these windows beside chance, over their trials
        (`chance_table`); from the per-class window counts where no trial score was kept."""
        name = self.model_name if self.subject is None else f"subject {self.subject}"
        if self.score is not None:
            return chance_table({name: self.score})
        correct = (self.per_class["model_accuracy"] * self.per_class["n"]).round().astype(int)
        return chance_table({name: (int(correct.sum()), self.per_class["n"].to_numpy())})

    def console(self) -> str:
        """What ``emg-lens features`` prints: the summary, the model's accuracy beside chance
        and a warning when it is not clearly above it."""
        return f"{self.summary()}\n{chance_console(self.chance)}"

    def costliest(self, count: int = MAP_FEATURES) -> list[int]:
        """The live features whose ablation costs the most accuracy (at their worst class)."""
        live = self.features[~self.features["dead"]]
        order = live.sort_values(["worst_class_delta", "delta_accuracy", "feature"])
        return [int(f) for f in order["feature"].head(count)]

    def summary(self) -> str:
        """A few lines: the reconstruction and the costliest features."""
        r = self.reconstruction.iloc[0]
        lines = [
            f"{self.model_name}: {r.n_features} TopK features (k={r.k}) on "
            f"blocks.{r.layer}.hook_{r.hook} at the {r.groups} tokens",
            f"  reconstruction: FVE {r.fve:.3f} on {r.test_windows} held-out windows; accuracy "
            f"{r.model_accuracy:.3f} (model), {r.spliced_accuracy:.3f} (reconstruction "
            f"spliced in); {r.dead_features} dead features",
        ]
        if not r.readout_reads_them:
            lines.append(
                f"  the readout ({self.config.readout}) reads none of these tokens after the "
                "last block: the reconstruction and every ablation change nothing, by "
                "construction (read an earlier hook, or another readout)"
            )
        shares = [c for c in self.features.columns if c.startswith("share_")]
        for f in self.costliest(3):
            row = self.features.set_index("feature").loc[f]
            where = ", ".join(f"{c.removeprefix('share_')} {row[c]:.2f}" for c in shares)
            lines.append(
                f"  feature {f}: fires on {row.fires:.1%} of tokens, most in class "
                f"{row.top_class}; mass {where}; ablated: accuracy {row.delta_accuracy:+.3f}, "
                f"class {row.worst_class} {row.worst_class_delta:+.3f}"
            )
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """summary.md: the summary, the reconstruction and the costliest features."""
        lines = self.summary().splitlines()
        costly = self.features.set_index("feature").loc[self.costliest()].reset_index()
        return (
            f"# Sparse features: {lines[0]}\n\n"
            + chance_markdown(self.chance)
            + "\n"
            + "\n".join(f"- {line.strip()}" for line in lines[1:])
            + "\n\n## Reconstruction\n\n"
            + markdown_table(self.reconstruction)
            + "\n\n## The costliest features to ablate\n\n"
            + markdown_table(costly)
            + "\n"
        )

    def figures(self) -> dict[str, Any]:
        """The reconstruction (accuracy per class, how often each feature fires), feature x
        class heatmaps (mean activation, ablation cost) and the costliest features' mean
        activation per channel drawn on the electrode placement."""
        from emg_lens.inspect import feature_plots

        figs = {
            "reconstruction": feature_plots.plot_reconstruction(self),
            "feature_classes": feature_plots.plot_feature_classes(self, HEATMAP_FEATURES),
        }
        for f in self.costliest():
            figure = feature_plots.plot_feature_map(self, f)
            if figure is not None:
                figs[f"feature_{f}_map"] = figure
        return figs

    def save(self, out_dir: str | Path) -> list[Path]:
        """The autoencoder (`save_sae`), every table as CSV, summary.md, the figures and
        report.html into ``out_dir`` (`emg_lens.studies.output.save_outputs`)."""
        written = save_sae(self, out_dir)
        return written + save_outputs(
            out_dir,
            {f"{name}.csv": table for name, table in self.tables().items()},
            self.to_markdown(),
            self.figures,
            kind="sparse features",
            title=f"{self.model_name}, {self.config.hook_name}",
            spec={"model": self.model_name, **self.config.to_dict(),
                  **({} if self.subject is None else {"subject": self.subject}),
                  **({} if self.source is None else {"data_source": self.source})},
        )  # fmt: skip


# ----------------------------------------------------------------------------- save and load


def save_sae(features: Features, out_dir: str | Path) -> list[Path]:
    """``features.safetensors`` (the autoencoder's weights) and ``features.json`` (format,
    config, provenance) into ``out_dir``, each atomically."""
    out = make_folder(out_dir)
    state = {k: v.detach().contiguous().cpu() for k, v in features.sae.state_dict().items()}
    info = {
        "format": FEATURES_FORMAT,
        "model_class": features.model_name,
        "config": features.config.to_dict(),
        "provenance": features.provenance,
        **({} if features.source is None else {"data_source": features.source}),
    }
    atomic_write(out / WEIGHTS, lambda tmp: save_file(state, str(tmp)))
    atomic_write(out / CONFIG, lambda tmp: tmp.write_text(json.dumps(info, indent=2, default=str)))
    return [out / WEIGHTS, out / CONFIG]


def _read_info(path: Path) -> dict[str, Any]:
    file = path / CONFIG
    if not file.is_file() or not (path / WEIGHTS).is_file():
        raise CheckpointError(
            f"{path} holds no saved sparse features: expected {CONFIG} and {WEIGHTS} in it "
            "(Features.save writes them)"
        )
    try:
        info = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{file} is not JSON text: {exc}") from exc
    if not isinstance(info, dict) or info.get("format") != FEATURES_FORMAT:
        found = info.get("format") if isinstance(info, dict) else describe(info)
        raise CheckpointError(f"{file}: format must be {FEATURES_FORMAT!r}, got {found!r}")
    for key, kind in (("config", dict), ("provenance", dict), ("model_class", str)):
        if not isinstance(info.get(key), kind):
            raise CheckpointError(f"{file}: {key} must be a {kind.__name__}, got "
                                  f"{describe(info.get(key))}")  # fmt: skip
    try:
        info["config"] = FeatureConfig.from_dict(info["config"])
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"{file}: config: {exc}") from exc
    return info


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
    path = Path(path)
    info = _read_info(path)
    config: FeatureConfig = info["config"]
    digest = model_digest(model)
    if info["provenance"].get("model") != digest:
        raise CheckpointError(
            f"{path / CONFIG}: these features were trained on another model (digest "
            f"{str(info['provenance'].get('model'))[:12]}, this {type(model).__name__} is "
            f"{digest[:12]}): load the checkpoint they were trained on"
        )
    config.token_groups(model)
    try:
        state = load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path / WEIGHTS} is not a safetensors file: {exc}") from exc
    sae = TopKSAE(model.cfg.d_model, config.n_features, config.k, seed=config.seed)
    expected = {k: tuple(v.shape) for k, v in sae.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if found != expected:
        raise CheckpointError(f"{path / WEIGHTS}: weights {found}, but the config needs "
                              f"{expected}")  # fmt: skip
    for name, tensor in state.items():
        if not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path / WEIGHTS}: {name} holds NaN or inf")
    sae.load_state_dict(state)
    held_out = as_subject_data(model, data)
    provenance = {**info["provenance"], "data": arrays_digest(held_out)}
    if source is None:
        source = info.get("data_source")
    return describe_features(model, held_out, sae.eval(), config, provenance, source=source)
