"""The hooked biosignal encoders."""

from emg_lens.models.base import HookedBiosignalModel, HookedEncoder
from emg_lens.models.fusion import HierarchicalTransformer, MultimodalTransformer
from emg_lens.models.isonet import IsoNet
from emg_lens.models.mlp_baseline import MultimodalMLP
from emg_lens.models.tinymyo import TinyMyo

__all__ = [
    "HierarchicalTransformer",
    "HookedBiosignalModel",
    "HookedEncoder",
    "IsoNet",
    "MultimodalMLP",
    "MultimodalTransformer",
    "TinyMyo",
]
