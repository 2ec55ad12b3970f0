"""Tier 1: any attention model opened in place (`attach`), hooks at its attention and blocks;
what each module does: docs/ARCHITECTURE.md, ``models/``. Tier 2, weights in TransformerLens
shapes, is the converters (`emg_lens.models.from_torch_encoder`, `from_braindecode`).
"""

from emg_lens.models.attached.build import attach
from emg_lens.models.attached.model import AttachedModel

__all__ = ["AttachedModel", "attach"]
