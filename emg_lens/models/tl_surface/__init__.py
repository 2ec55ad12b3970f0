"""What TransformerLens users read off a model (the layer below
`emg_lens.models.base`).

- `hooks`: `HookSurface`, the hook surface every emg_lens model has, of every tier: hook
  names checked where TransformerLens resolves them, caching with ``pos_slice``, the hook flags,
  and one caller at a time while hooks are involved (`threads`: `ThreadClaim`, and
  `FreshLock`, the locks a copy of a model gets anew).
- `weights`: `WeightSurface`, the weight surface only models with weights in TransformerLens
  shapes have (`emg_lens.models.base.TL_WEIGHTS`): stacked weights, QK/OV circuits,
  composition scores, ``W_pos``, the unembedding, the readout map and data-free tokens.
- `tokens`: `TokenSurface`, ``to_tokens`` and the input checks; `cache`: `EncoderCache`, the
  `ActivationCache` that ``run_with_cache`` returns.
"""

from emg_lens.models.tl_surface.hooks import HookSurface, token_axis
from emg_lens.models.tl_surface.weights import UNEMBEDDING, WEIGHT_SURFACE, WeightSurface

__all__ = ["UNEMBEDDING", "WEIGHT_SURFACE", "HookSurface", "WeightSurface", "token_axis"]
