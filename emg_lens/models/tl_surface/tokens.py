"""TransformerLens's ``to_tokens`` for signals: `TokenSurface`, how every emg_lens model, of
every tier, takes its input (a base of `emg_lens.models.base.HookedBiosignalModel`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from jaxtyping import Float

from emg_lens.config import EncoderConfig
from emg_lens.errors import InputShapeError, describe


def _refuse_non_finite(signals: torch.Tensor) -> None:
    """A NaN or inf sample would become NaN outputs; say where it is instead. One reduction
    over the batch when it is clean."""
    finite = torch.isfinite(signals)
    if bool(finite.all()):
        return
    n_nan = int(torch.isnan(signals).sum())
    first = torch.nonzero(~finite)[0].tolist()
    raise InputShapeError(
        f"signals hold {n_nan} NaN and {int((~finite).sum()) - n_nan} inf values (first at "
        f"{first}); the model accepts finite numbers only: interpolate or drop those samples first"
    )


class TokenSurface:
    """The input surface: ``input_shape``, `to_tokens` (signals checked and put on the
    model's device and dtype, `param_device_dtype`) and `example_input`; a base of
    `emg_lens.models.base.HookedBiosignalModel`, which supplies what is declared here."""

    cfg: EncoderConfig
    if TYPE_CHECKING:

        def param_device_dtype(self) -> tuple[torch.device, torch.dtype]: ...

    @property
    def input_shape(self) -> tuple[int, int]:
        """``(channels, time)`` of one input window."""
        return (self.cfg.n_channels, self.cfg.n_samples)

    def to_tokens(self, signals: Any) -> Float[torch.Tensor, "batch channel time"]:
        """Normalise a signal batch: numpy -> tensor, model dtype and device, a batch dim added
        to a single ``[channel, time]`` window. Signals *are* the tokens' source, so this is
        the identity on a well-formed batch (TransformerLens calls it ``to_tokens``).

        Refused (`InputShapeError`, naming what was given): a wrong shape, an empty batch, NaN
        or inf values, boolean, complex or text.

        >>> from emg_lens import EncoderConfig
        >>> from emg_lens.models import IsoNet
        >>> model = IsoNet(EncoderConfig.preset("tiny"))
        >>> model.to_tokens(np.zeros((6, 8))).shape
        torch.Size([1, 6, 8])
        >>> model.to_tokens(np.full((6, 8), np.nan))
        Traceback (most recent call last):
        ...
        emg_lens.errors.InputShapeError: signals hold 48 NaN and 0 inf values (first at [0, 0, 0]); the model accepts finite numbers only: interpolate or drop those samples first
        """  # noqa: E501
        channels, time = self.input_shape
        accepted = f"a float tensor or numpy array [batch, channels={channels}, time={time}]"
        if isinstance(signals, np.ndarray) and signals.dtype.kind in "iuf":  # int, uint, float
            signals = torch.from_numpy(signals)
        kind: Any = getattr(signals, "dtype", None)
        if not isinstance(signals, torch.Tensor) or kind == torch.bool or kind.is_complex:
            raise InputShapeError(
                f"signals must be {accepted} of real numbers (not bool, complex, text or "
                f"objects), got {describe(signals)}"
            )
        window = signals.ndim == 2  # one [channel, time] window, batched (docs/DESIGN.md §2)
        try:
            self._check_input_shape(tuple(signals[None].shape if window else signals.shape))
        except InputShapeError as exc:  # the shape given, not the one the window became
            if not window:
                raise
            raise InputShapeError(
                f"{exc}, read from one [channels, time] window of shape {list(signals.shape)}"
            ) from None
        signals = signals[None] if window else signals
        if len(signals) == 0:
            raise InputShapeError("signals must be a batch of 1 or more windows, got a batch of 0")
        device, dtype = self.param_device_dtype()
        signals = signals.to(device=device, dtype=dtype)
        if not signals.is_meta:  # a meta tensor has no values to check
            _refuse_non_finite(signals)
        return signals

    def _check_input_shape(self, shape: tuple[int, ...]) -> None:
        """Refuse signals of ``shape`` other than ``[batch, *input_shape]``."""
        if len(shape) != 3 or shape[1:] != self.input_shape:
            channels, time = self.input_shape
            raise InputShapeError(
                f"signals must have shape [batch, channels={channels}, time={time}], "
                f"got {list(shape)}"
            )

    def example_input(self, batch: int = 1) -> Float[torch.Tensor, "batch channel time"]:
        """A correctly shaped, seeded random signal batch for docs, tests and quick checks.

        >>> from emg_lens import EncoderConfig
        >>> from emg_lens.models import IsoNet
        >>> IsoNet(EncoderConfig.preset("tiny")).example_input(2).shape
        torch.Size([2, 6, 8])
        """
        device, dtype = self.param_device_dtype()
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(batch, *self.input_shape, generator=gen, dtype=dtype)
        return x.to(device)
