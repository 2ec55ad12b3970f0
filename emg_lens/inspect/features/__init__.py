"""Sparse features of channel tokens: `train_features` fits a TopK sparse autoencoder
(`TopKSAE`, Gao et al. 2024) to one hook of one layer at a model's channel tokens on the
training windows and describes it on the held-out windows (`Features`, `describe_features`);
`Features.save` writes it as a checkpoint that `load_features` reads back for that model only.
What the description holds: docs/guide/what-an-edge-carries.md, first section."""

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
