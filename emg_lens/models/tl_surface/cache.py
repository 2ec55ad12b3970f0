"""TransformerLens's `ActivationCache` for emg_lens models: `EncoderCache`, what
`emg_lens.models.base.HookedBiosignalModel.run_with_cache` returns."""

from __future__ import annotations

from typing import Any

import torch
from transformer_lens import ActivationCache
from transformer_lens.utilities import Slice

from emg_lens.errors import IndexOutOfRangeError, is_int


class EncoderCache(ActivationCache):
    """TransformerLens's `ActivationCache`, with one case TL has no model for: norms in the
    blocks but none at the end (``ln_final`` the identity: PBT, CBraMod). Applying the final
    norm to a stack then leaves it unchanged, as TL does for a model without norms, instead of
    looking for an ``ln_final`` scale that no hook caches (TL raised a KeyError). A layer the
    model lacks is refused by name (`IndexOutOfRangeError`, a KeyError as TL's bare one was).

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny"))
    >>> model.run_with_cache(model.example_input())[1]["pattern", 2]
    Traceback (most recent call last):
    ...
    emg_lens.errors.IndexOutOfRangeError: cache['pattern', 2]: layer 2 is not a layer of this \
IsoNet (n_layers=2): a layer is in 0..1, or -2..-1 from the end
    """

    def __getitem__(self, key: Any) -> torch.Tensor:
        try:
            return super().__getitem__(key)
        except KeyError:
            layer = key[1] if isinstance(key, tuple) and len(key) > 1 else None
            n = self.model.cfg.n_layers
            if is_int(layer) and not is_int(layer, -n, n - 1):
                raise IndexOutOfRangeError(
                    f"cache[{', '.join(map(repr, key))}]: layer {layer} is not a layer of this "
                    f"{type(self.model).__name__} (n_layers={n}): "
                    + (f"a layer is in 0..{n - 1}, or -{n}..-1 from the end" if n else "none is")
                ) from None
            raise

    def apply_ln_to_stack(
        self,
        residual_stack: torch.Tensor,
        layer: int | None = None,
        mlp_input: bool = False,
        pos_slice: Any = None,
        batch_slice: Any = None,
        has_batch_dim: bool = True,
        recompute_ln: bool = False,
    ) -> torch.Tensor:
        final = layer is None or layer in (-1, self.model.cfg.n_layers)
        if final and not hasattr(getattr(self.model, "ln_final", None), "hook_scale"):
            if has_batch_dim:  # the batch slice TL takes before it would normalise
                sliced = batch_slice if isinstance(batch_slice, Slice) else Slice(batch_slice)
                residual_stack = sliced.apply(residual_stack, dim=1)
            return residual_stack
        return super().apply_ln_to_stack(
            residual_stack, layer, mlp_input, pos_slice, batch_slice, has_batch_dim, recompute_ln
        )
