"""The hooked biosignal encoders."""

from emg_lens.models.base import HookedEncoder
from emg_lens.models.fusion import HierarchicalTransformer, MultimodalMLP, MultimodalTransformer
from emg_lens.models.isonet import IsoNet
from emg_lens.models.tinymyo import TinyMyo

__all__ = [
    "HierarchicalTransformer",
    "HookedEncoder",
    "IsoNet",
    "MultimodalMLP",
    "MultimodalTransformer",
    "TinyMyo",
]
