"""The hooked biosignal encoders, and the registry of model classes.

`MODEL_CLASSES` is every model a checkpoint can hold, by class name (what
`emg_lens.checkpoints` rebuilds); `CLASSIFIERS` names those that ``emg-lens train`` and
training studies build from scratch (TinyMyo is pretrained and fine-tuned instead).

>>> sorted(MODEL_CLASSES)  # doctest: +NORMALIZE_WHITESPACE
['HierarchicalTransformer', 'HookedCBraMod', 'HookedEEGPT', 'HookedLabram', 'HookedPBT',
 'HookedTorchEncoder', 'IsoNet', 'MultimodalMLP', 'MultimodalTransformer', 'TinyMyo']
>>> CLASSIFIERS
('IsoNet', 'HierarchicalTransformer', 'MultimodalTransformer', 'MultimodalMLP')
"""

from collections.abc import Mapping
from types import MappingProxyType

from emg_lens.models.base import HookedBiosignalModel, HookedEncoder
from emg_lens.models.braindecode import (
    HOOKED_CLASSES,
    HookedCBraMod,
    HookedEEGPT,
    HookedLabram,
    HookedPBT,
    from_braindecode,
    to_braindecode,
)
from emg_lens.models.fusion import HierarchicalTransformer, MultimodalTransformer
from emg_lens.models.isonet import IsoNet
from emg_lens.models.mlp_baseline import MultimodalMLP
from emg_lens.models.tinymyo import TinyMyo
from emg_lens.models.torch_encoder import HookedTorchEncoder, from_torch_encoder

__all__ = [
    "CLASSIFIERS",
    "MODEL_CLASSES",
    "HierarchicalTransformer",
    "HookedBiosignalModel",
    "HookedCBraMod",
    "HookedEEGPT",
    "HookedEncoder",
    "HookedLabram",
    "HookedPBT",
    "HookedTorchEncoder",
    "IsoNet",
    "MultimodalMLP",
    "MultimodalTransformer",
    "TinyMyo",
    "from_braindecode",
    "from_torch_encoder",
    "to_braindecode",
]

MODEL_CLASSES: Mapping[str, type[HookedBiosignalModel]] = MappingProxyType(
    {
        cls.__name__: cls
        for cls in (
            IsoNet,
            HierarchicalTransformer,
            MultimodalTransformer,
            MultimodalMLP,
            TinyMyo,
            HookedTorchEncoder,
            *HOOKED_CLASSES,
        )
    }
)
"""Every model class by name: the one list the CLI, training studies and checkpoints read."""

CLASSIFIERS = ("IsoNet", "HierarchicalTransformer", "MultimodalTransformer", "MultimodalMLP")
"""The supervised classifiers built from scratch (``emg-lens train --architecture``, a
training study's ``architectures``)."""
