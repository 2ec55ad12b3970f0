"""braindecode's transformers as hooked emg_lens encoders, weights and all, saved and loaded
without braindecode (docs/guide/bring-your-own-model.md, "A braindecode model").

One module per architecture, each a `HookedEncoder` subclass with a ``to_braindecode`` method
giving a state dict braindecode's class loads: ``Labram`` -> `HookedLabram`, ``CBraMod`` ->
`HookedCBraMod`, ``EEGPT`` -> `HookedEEGPT`, ``PBT`` -> `HookedPBT`. braindecode is never
imported: a model is recognised by its class's module and name; what `from_braindecode`
refuses (`REFUSED`: no softmax over tokens), it refuses by name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from emg_lens.errors import ArgumentError, ConversionError, check_type, checked, describe
from emg_lens.models.base import HookedEncoder, eval_mode
from emg_lens.models.braindecode_common import braindecode_name
from emg_lens.models.converted.braindecode.cbramod import HookedCBraMod, from_cbramod
from emg_lens.models.converted.braindecode.eegpt import HookedEEGPT, from_eegpt
from emg_lens.models.converted.braindecode.labram import HookedLabram, from_labram
from emg_lens.models.converted.braindecode.pbt import HookedPBT, from_pbt
from emg_lens.models.converted.conversion import (
    check_faithful,
    on_cpu,
    refuse_dropped_code,
)

__all__ = [
    "HOOKED_CLASSES",
    "REFUSED",
    "SUPPORTED",
    "HookedCBraMod",
    "HookedEEGPT",
    "HookedLabram",
    "HookedPBT",
    "from_braindecode",
    "to_braindecode",
]

SUPPORTED: dict[str, Callable[..., HookedEncoder]] = {
    "Labram": from_labram,
    "CBraMod": from_cbramod,
    "EEGPT": from_eegpt,
    "PBT": from_pbt,
}
"""braindecode class name -> its converter."""

HOOKED_CLASSES = (
    HookedLabram,
    HookedCBraMod,
    HookedEEGPT,
    HookedPBT,
)
"""The emg_lens classes of converted braindecode models (in `MODEL_CLASSES`)."""

REFUSED: dict[str, str] = {
    "BIOT": "its transformer is a linear attention (linear_attention_transformer's "
    "LinearAttentionTransformer): no softmax over tokens, so no attention pattern whose edges "
    "emg_lens could cut",
    "DeepSleepNet": "it models time with LSTMs: a recurrence, not an attention over tokens",
    "VEMG2Pose": "it models time with an LSTM: a recurrence, not an attention over tokens",
}
"""braindecode models whose attention is not a softmax over tokens, and why."""

PROBE_BATCH = 2  # windows of the probe input on which the source and the conversion must agree


@checked
def from_braindecode(model: nn.Module, *, ch_names: Sequence[str] | None = None) -> HookedEncoder:
    """The hooked emg_lens equivalent of a braindecode model instance: the same architecture
    and weights, computing the same function, in eval mode.

    ``ch_names``: the input channels' names, where the model's forward needs them (LaBraM
    picks its channel embeddings by name) or to name the layout's channels; by default the
    ``ch_name`` of each entry of the model's ``chs_info``.

    Refused with `ConversionError`, saying why: a model that is not one of the supported
    braindecode ones (naming them), weights that do not fit the architecture read off it
    (naming the tensor), and what `emg_lens.models.converted.conversion.check_faithful`
    refuses (hooks, a patched ``forward``, an output that differs on a probe input).

    >>> from emg_lens.models import from_braindecode
    >>> from_braindecode(nn.Linear(2, 2))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emg_lens.errors.ConversionError: from_braindecode converts braindecode models (Labram, CBraMod, EEGPT, PBT); got a torch.nn.modules.linear.Linear...
    """  # noqa: E501
    if not isinstance(model, nn.Module) or braindecode_name(model) is None:
        where = type(model).__module__ + "." + type(model).__name__
        raise ConversionError(
            f"from_braindecode converts braindecode models ({', '.join(SUPPORTED)}); got a "
            f"{where} (a torch.nn.TransformerEncoder converts with from_torch_encoder)",
            path="",
        )
    name = type(model).__name__
    if name in REFUSED:
        raise ConversionError(
            f"braindecode's {name} cannot become an emg_lens model: {REFUSED[name]}. "
            f"Supported: {', '.join(SUPPORTED)}",
            path="",
        )
    if name not in SUPPORTED:
        raise ConversionError(
            f"braindecode's {name} is not one of the models from_braindecode converts "
            f"({', '.join(SUPPORTED)}); a torch.nn.TransformerEncoder in it converts with "
            "emg_lens.models.from_torch_encoder",
            path="",
        )
    if ch_names is not None and (isinstance(ch_names, str) or not isinstance(ch_names, Sequence)):
        raise ArgumentError(f"ch_names must be a list of channel names, got {describe(ch_names)}")
    what = f"from_braindecode({name})"
    refuse_dropped_code(what, {name: model})
    with eval_mode(model), torch.no_grad():
        hooked = SUPPORTED[name](model, None if ch_names is None else list(ch_names))
    # LaBraM's forward picks its position embeddings by the channel names it is given.
    call = {"ch_names": hooked.cfg.channel_names} if name == "Labram" else {}
    probe = hooked.example_input(PROBE_BATCH)
    with torch.no_grad():
        check_faithful(
            what, {name: model}, lambda: on_cpu(model)(probe, **call), lambda: hooked(probe)
        )
    return hooked


@checked
def to_braindecode(model: HookedEncoder) -> dict[str, torch.Tensor]:
    """A converted model's weights as the state dict of its braindecode class (what
    ``braindecode_model.load_state_dict`` takes), the inverse of `from_braindecode`."""
    hooked = HookedLabram | HookedCBraMod | HookedEEGPT | HookedPBT
    return check_type(
        model, hooked, "to_braindecode(model) (from from_braindecode)"
    ).to_braindecode()
