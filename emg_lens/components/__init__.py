"""Building blocks with the legacy HookedTransformer module names, parameter names and hooks;
each draws its own parameters from the config (`ConfigInit.reset_parameters`)."""

from emg_lens.components.attention import Attention
from emg_lens.components.block import TransformerBlock
from emg_lens.components.embeddings import ChannelEmbed, ClassifierHead, PosEmbed
from emg_lens.components.head_structure import HeadStructure
from emg_lens.components.init import ConfigInit, init_parameter
from emg_lens.components.layer_norm import LayerNorm, make_norm
from emg_lens.components.mlp import MLP
from emg_lens.components.rotary import Rotary

__all__ = [
    "MLP",
    "Attention",
    "ChannelEmbed",
    "ClassifierHead",
    "ConfigInit",
    "HeadStructure",
    "LayerNorm",
    "PosEmbed",
    "Rotary",
    "TransformerBlock",
    "init_parameter",
    "make_norm",
]
