"""What TransformerLens users read off a model (the layer below `emg_lens.models.base`), as
mixins: `hooks` (`HookSurface`, every tier; one caller at a time while hooks are involved:
`threads`), `weights` (`WeightSurface`, the models with weights in TransformerLens shapes
only), `tokens` (`TokenSurface`: ``to_tokens`` and the input checks) and `cache`
(`EncoderCache`, the `ActivationCache` that ``run_with_cache`` returns).
"""

from emg_lens.models.tl_surface.hooks import HookSurface, token_axis
from emg_lens.models.tl_surface.weights import WEIGHT_SURFACE, WeightSurface

__all__ = ["WEIGHT_SURFACE", "HookSurface", "WeightSurface", "token_axis"]
