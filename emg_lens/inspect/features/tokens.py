"""The residual stream at an autoencoder's hook, token by token: read it at the tokens of
the config's groups (`token_residuals`), and write values over it there to read the logits
(`spliced_logits`: the reconstruction spliced in, or a feature ablated)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from jaxtyping import Float

from emg_lens.errors import InputShapeError
from emg_lens.inspect.features.config import FeatureConfig


def token_positions(model: Any, groups: tuple[str, ...]) -> list[int]:
    """The positions of ``model``'s tokens of ``groups``, in the order of its layout.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> token_positions(IsoNet(EncoderConfig.preset("tiny")), ("acc",))
    [3, 4, 5, 6]
    """
    return [i for i, g in enumerate(model.layout.group) if g in groups]


def token_residuals(
    model: Any, X: np.ndarray, config: FeatureConfig, batch_size: int = 256
) -> Float[torch.Tensor, "window token d_model"]:
    """The residual at ``config.hook_name`` of the tokens of ``config``'s groups, for each
    window of ``X`` (float32, on the CPU); a non-finite value is an `InputShapeError` naming
    the hook and the first window holding one.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0)).eval()
    >>> token_residuals(model, model.example_input(3).numpy(), FeatureConfig(layer=0)).shape
    torch.Size([3, 6, 16])
    """
    positions = token_positions(model, config.token_groups(model))
    parts = []
    for start in range(0, len(X), batch_size):
        batch = torch.as_tensor(X[start : start + batch_size], dtype=model.cfg.dtype)
        with torch.inference_mode():
            _, cache = model.run_with_cache(
                batch.to(model.cfg.device), names_filter=config.hook_name, return_type=None
            )
        parts.append(cache[config.hook_name][:, positions].float().cpu())
    resid = torch.cat(parts)
    bad = ~torch.isfinite(resid).all(dim=(1, 2))
    if bad.any():
        raise InputShapeError(
            f"non-finite activations at {config.hook_name} in {int(bad.sum())} of {len(resid)} "
            f"windows (first: {int(bad.nonzero()[0])}): check the windows and the model's weights"
        )
    return resid


def _splice_logits(
    model: Any,
    X: torch.Tensor,
    config: FeatureConfig,
    positions: list[int],
    values: torch.Tensor | None,
) -> torch.Tensor:
    """``model``'s logits (``config.readout``) with ``values`` written over the residual at the
    hook's ``positions`` (None: the model as it is)."""
    if values is None:
        return model(X, return_type=config.readout)

    def write(resid: torch.Tensor, hook: Any) -> torch.Tensor:
        resid = resid.clone()
        resid[:, positions] = values.to(resid.device, resid.dtype)
        return resid

    return model.run_with_hooks(
        X, return_type=config.readout, fwd_hooks=[(config.hook_name, write)]
    )


def spliced_logits(
    model: Any,
    X: Float[torch.Tensor, "window channel time"],
    config: FeatureConfig,
    positions: list[int],
    values_of: Callable[[slice], Float[torch.Tensor, "batch token d_model"] | None],
    batch_size: int = 256,
) -> Float[torch.Tensor, "window class"]:
    """The logits (``config.readout``) over every window of ``X``, batch by batch, with
    ``values_of(batch slice)`` written over the residual at the hook's ``positions`` (None:
    the model as it is); float32, on the CPU. Non-finite logits are an `InputShapeError`.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0)).eval()
    >>> X = model.example_input(3)
    >>> own = spliced_logits(model, X, FeatureConfig(layer=0), [], lambda part: None)
    >>> bool(torch.allclose(own, model(X).detach()))
    True
    """
    out = []
    with torch.inference_mode():
        for start in range(0, len(X), batch_size):
            part = slice(start, start + batch_size)
            out.append(_splice_logits(model, X[part], config, positions, values_of(part)).float())
    logits = torch.cat(out).cpu()
    if not torch.isfinite(logits).all():
        raise InputShapeError(f"non-finite logits with {config.hook_name} spliced")
    return logits
