"""Tier 1: any attention model opened in place (`attach`), hooks at its attention and blocks.

`find` says what is attention (and refuses by name what cannot be told apart), `intercept`
computes each hooked or masked attention call explicitly during the forward, `model` is the
attached model, `build` opens a model (`attach`). Tier 2, weights in TransformerLens shapes,
is the converters (`emg_lens.models.from_torch_encoder`, `emg_lens.models.from_braindecode`).
"""

from emg_lens.models.attached.build import attach
from emg_lens.models.attached.model import AttachedModel

__all__ = ["AttachedModel", "attach"]
