"""What `train_features` fits, and where: `FeatureConfig`, checked against a model's layers,
token groups and readout before any work."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from emg_lens.errors import (
    ArgumentError,
    ConfigError,
    LayoutError,
    check_choice,
    check_field_types,
    check_int,
    check_number,
    describe,
    fields_checked,
)

HOOKS = ("resid_pre", "resid_mid", "resid_post")
"""The residual hooks of a block an autoencoder can read."""
RANGES = {
    "lr": ("> 0", lambda v: 0 < v < math.inf),
    "aux_coef": (">= 0", lambda v: 0 <= v < math.inf),
    "holdout": ("in [0, 1)", lambda v: 0 <= v < 1),
}
"""`FeatureConfig`'s number fields: what each accepts, in words, and the test."""


@fields_checked
@dataclass(frozen=True)
class FeatureConfig:
    """What `train_features` fits: a TopK autoencoder of ``n_features`` features, ``k`` active
    per token, on ``blocks.{layer}.hook_{hook}`` at the tokens of ``groups`` (default: every
    modality's tokens, the channel tokens), trained ``epochs`` times over the training
    windows' tokens with Adam (``lr``, batches of ``batch_size`` tokens, seeded by ``seed``).

    ``aux_k`` dead features (none fired for ``dead_tokens`` tokens) fit the reconstruction's
    error, weighted ``aux_coef`` (0: off). ``readout``: the logits scored. ``holdout``: the
    share of trials held out where the data have no training windows; ``top_windows``: the
    windows listed per feature.

    >>> FeatureConfig(layer=0, k=80)
    Traceback (most recent call last):
    ...
    emg_lens.errors.ConfigError: FeatureConfig.k (<= n_features) must be an int in 1..64, got 80
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
        check_field_types(self)  # the declared types; the ranges below

        for name in ("n_features", "epochs", "batch_size", "top_windows", "dead_tokens"):
            check_int(getattr(self, name), f"FeatureConfig.{name}", 1, error=ConfigError)
        check_int(self.k, "FeatureConfig.k (<= n_features)", 1, self.n_features, ConfigError)
        for name in ("layer", "seed", "aux_k"):  # aux_k: at most the dead features are used
            check_int(getattr(self, name), f"FeatureConfig.{name}", error=ConfigError)
        check_choice(self.hook, HOOKS, "FeatureConfig.hook", ConfigError)
        for name, (wanted, ok) in RANGES.items():
            value, what = getattr(self, name), f"FeatureConfig.{name}"
            check_number(value, what, f"a finite number {wanted}", ok, ConfigError)
        if self.groups is not None:
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
        if unknown := sorted(set(values) - known):
            raise ConfigError(f"unknown FeatureConfig field(s) {unknown}; known: {sorted(known)}")
        groups = values.get("groups")
        return cls(**{**values, "groups": None if groups is None else tuple(groups)})

    def token_groups(self, model: Any) -> tuple[str, ...]:
        """The groups read, checked against ``model``'s layout (and its layers and readout)."""
        layers = model.cfg.n_layers
        what = f"FeatureConfig.layer (the model has {layers} layers)"
        check_int(self.layer, what, 0, layers - 1, LayoutError)
        layout = model.layout
        groups = self.groups or layout.modalities
        for group in groups:
            layout.check_group(group)
        with torch.inference_mode():
            logits = model(model.example_input(1), return_type=self.readout)
        if not (isinstance(logits, torch.Tensor) and logits.shape == (1, model.cfg.n_classes)):
            raise ArgumentError(
                f"FeatureConfig.readout {self.readout!r} gives {describe(logits)}, not class logits"
                f" [batch, {model.cfg.n_classes}]: choose 'logits' (or IsoNet's 'avg_logits')"
            )
        return tuple(groups)
