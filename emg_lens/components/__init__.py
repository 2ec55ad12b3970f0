"""Building blocks with the legacy HookedTransformer module names, parameter names and hooks."""

from emg_lens.components.attention import Attention, HeadStructure
from emg_lens.components.block import TransformerBlock
from emg_lens.components.embeddings import ChannelEmbed, ClassifierHead, PosEmbed
from emg_lens.components.layer_norm import LayerNorm, make_norm
from emg_lens.components.mlp import MLP
from emg_lens.components.rotary import Rotary

__all__ = [
    "MLP",
    "Attention",
    "ChannelEmbed",
    "ClassifierHead",
    "HeadStructure",
    "LayerNorm",
    "PosEmbed",
    "Rotary",
    "TransformerBlock",
    "make_norm",
]
