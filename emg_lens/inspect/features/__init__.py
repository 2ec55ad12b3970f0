"""Sparse features of channel tokens: a TopK sparse autoencoder on one layer's residuals.

`train_features` fits a TopK sparse autoencoder (`TopKSAE`, Gao et al. 2024: each token
rebuilt from its ``k`` largest feature activations, decoder directions of unit norm, an
auxiliary loss that lets dead features learn the error) to one hook of one layer
(``blocks.{layer}.hook_resid_pre`` by default) at a model's channel tokens (CLS left out unless
named) on the training windows, and describes it on the held-out windows (`Features`,
`describe_features`). `Features.save` writes the outputs of a run and the autoencoder as a
checkpoint (``features.safetensors``, ``features.json``), which `load_features` reads back for
that model only. What the description holds, and what it finds on the demo:
docs/guide/what-an-edge-carries.md, first section."""

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
