"""The hooked biosignal encoders, and the registry of model classes.

`MODEL_CLASSES` is every model a checkpoint can hold, by class name (what
`emg_lens.checkpoints` rebuilds); `CLASSIFIERS` names those that ``emg-lens train`` and
training studies build from scratch (TinyMyo is pretrained and fine-tuned instead).

This face imports each model's module on first use (as `emg_lens` itself does), so the command
line reads `CLASSIFIERS` without importing torch.

>>> from emg_lens.models import MODEL_CLASSES
>>> sorted(MODEL_CLASSES)  # doctest: +NORMALIZE_WHITESPACE
['AttachedModel', 'HierarchicalTransformer', 'HookedCBraMod', 'HookedEEGPT', 'HookedLabram',
 'HookedPBT', 'HookedTorchEncoder', 'IsoNet', 'MultimodalMLP', 'MultimodalTransformer', 'TinyMyo']
>>> CLASSIFIERS
('IsoNet', 'HierarchicalTransformer', 'MultimodalTransformer', 'MultimodalMLP')
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emg_lens.components import (
        MLP,
        Attention,
        ChannelEmbed,
        ClassifierHead,
        LayerNorm,
        TransformerBlock,
    )
    from emg_lens.models.attached import AttachedModel, attach
    from emg_lens.models.attached.examples import Block, PatchAttention, SpectralEEG, TinyAttention
    from emg_lens.models.attached.zoo import attach_braindecode
    from emg_lens.models.base import HookedBiosignalModel, HookedEncoder
    from emg_lens.models.converted.braindecode import (
        HookedCBraMod,
        HookedEEGPT,
        HookedLabram,
        HookedPBT,
        from_braindecode,
        to_braindecode,
    )
    from emg_lens.models.converted.torch_encoder import HookedTorchEncoder, from_torch_encoder
    from emg_lens.models.native.fusion import HierarchicalTransformer, MultimodalTransformer
    from emg_lens.models.native.isonet import IsoNet
    from emg_lens.models.native.mlp_baseline import MultimodalMLP
    from emg_lens.models.native.tinymyo import TinyMyo

    MODEL_CLASSES: Mapping[str, type[HookedBiosignalModel]]
    """Every model class a checkpoint can hold, by class name (built on first use)."""

__all__ = [
    "CLASSIFIERS",
    "MLP",
    "MODEL_CLASSES",
    "AttachedModel",
    "Attention",
    "Block",
    "ChannelEmbed",
    "ClassifierHead",
    "HierarchicalTransformer",
    "HookedBiosignalModel",
    "HookedCBraMod",
    "HookedEEGPT",
    "HookedEncoder",
    "HookedLabram",
    "HookedPBT",
    "HookedTorchEncoder",
    "IsoNet",
    "LayerNorm",
    "MultimodalMLP",
    "MultimodalTransformer",
    "PatchAttention",
    "SpectralEEG",
    "TinyAttention",
    "TinyMyo",
    "TransformerBlock",
    "attach",
    "attach_braindecode",
    "from_braindecode",
    "from_torch_encoder",
    "to_braindecode",
]

_NATIVE = {
    "IsoNet": "emg_lens.models.native.isonet",
    "HierarchicalTransformer": "emg_lens.models.native.fusion",
    "MultimodalTransformer": "emg_lens.models.native.fusion",
    "MultimodalMLP": "emg_lens.models.native.mlp_baseline",
    "TinyMyo": "emg_lens.models.native.tinymyo",
    "HookedTorchEncoder": "emg_lens.models.converted.torch_encoder",
}
"""The models written in emg_lens, by class name -> module; the converted braindecode classes
join them from `emg_lens.models.converted.braindecode.HOOKED_CLASSES`."""

_EXPORTS = {
    **_NATIVE,
    "AttachedModel": "emg_lens.models.attached",
    "attach": "emg_lens.models.attached",
    "attach_braindecode": "emg_lens.models.attached.zoo",
    "HookedBiosignalModel": "emg_lens.models.base",
    "HookedEncoder": "emg_lens.models.base",
    "from_torch_encoder": "emg_lens.models.converted.torch_encoder",
    **dict.fromkeys(
        ("HookedCBraMod", "HookedEEGPT", "HookedLabram", "HookedPBT"),
        "emg_lens.models.converted.braindecode",
    ),
    "from_braindecode": "emg_lens.models.converted.braindecode",
    "to_braindecode": "emg_lens.models.converted.braindecode",
    # the blocks a model is built of, and the hand-written models of the examples
    **dict.fromkeys(
        ("Attention", "ChannelEmbed", "ClassifierHead", "LayerNorm", "MLP", "TransformerBlock"),
        "emg_lens.components",
    ),
    **dict.fromkeys(
        ("Block", "PatchAttention", "SpectralEEG", "TinyAttention"),
        "emg_lens.models.attached.examples",
    ),
}

CLASSIFIERS = ("IsoNet", "HierarchicalTransformer", "MultimodalTransformer", "MultimodalMLP")
"""The supervised classifiers built from scratch (``emg-lens train --architecture``, a
training study's ``architectures``)."""


def _model_classes() -> Mapping[str, type[HookedBiosignalModel]]:
    """Every model class by name: the one list the CLI, training studies and checkpoints
    read."""
    from emg_lens.models.attached import AttachedModel
    from emg_lens.models.converted.braindecode import HOOKED_CLASSES

    native = [getattr(importlib.import_module(m), name) for name, m in _NATIVE.items()]
    classes = (*native, *HOOKED_CLASSES, AttachedModel)  # attached: the user's module inside
    return MappingProxyType({cls.__name__: cls for cls in classes})


def __getattr__(name: str) -> Any:
    if name == "MODEL_CLASSES":
        globals()[name] = value = _model_classes()  # built once
        return value
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'emg_lens.models' has no attribute {name!r}")
