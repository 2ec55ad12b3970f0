"""Sparse features of channel tokens: a TopK sparse autoencoder on one layer's residuals.

`train_features` reads one hook of one layer (``blocks.{layer}.hook_resid_pre`` by default) at
the channel tokens of a model (every token of its modalities; CLS left out unless named), fits
a TopK sparse autoencoder (`TopKSAE`, Gao et al. 2024: each token is rebuilt from its ``k``
largest feature activations, every decoder direction of unit norm, an auxiliary loss that
lets dead features learn the error) on the training windows' tokens, and describes it on the
held-out windows (`Features`): reconstruction, dead features, and per feature its top windows,
channels, classes, modality shares and what ablating it costs (`describe_features`).

`Features.save` writes the tables, figures, ``summary.md`` and ``report.html`` like every
other run, and the autoencoder itself like a checkpoint (``features.safetensors`` and
``features.json`` with its config and provenance: the model's, data's and code's digests);
`load_features` reads it back, for that model only."""

from emg_lens.inspect.features.checkpoint import FEATURES_FORMAT
from emg_lens.inspect.features.config import HOOKS, FeatureConfig
from emg_lens.inspect.features.describe import describe_features
from emg_lens.inspect.features.result import Features, save_sae
from emg_lens.inspect.features.sae import TopKSAE
from emg_lens.inspect.features.tokens import token_residuals
from emg_lens.inspect.features.train import load_features, train_features

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
