"""What the two tiers that read braindecode models (`emg_lens.models.converted.braindecode`,
`emg_lens.models.attached.zoo`) share: recognising one without importing braindecode, reading
its sizes, and which channel each input token of its EEGPT embeds (read once, here, with
braindecode's own ``prepare_chan_ids``)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from torch import nn

Braindecode = Any
"""A braindecode model (an ``nn.Module``): emg_lens never imports braindecode, which has no type
hints, so its attributes (``target_encoder``, ``final_layer`` ...) are untyped, as they would be
through ``import braindecode``."""


def braindecode_name(model: nn.Module) -> str | None:
    """The class name of a braindecode model (by its class's module), or None for any other
    module.

    >>> braindecode_name(nn.Linear(2, 2)) is None
    True
    """
    cls = type(model)
    return cls.__name__ if cls.__module__.startswith("braindecode.") else None


def model_size(model: nn.Module, size: str) -> int | None:
    """The model's ``n_chans`` or ``n_times`` (braindecode's names); None where it has none
    or was built without it (braindecode raises a ValueError then).

    >>> model_size(nn.Linear(2, 2), "n_times") is None
    True
    """
    try:
        return getattr(model, size, None)
    except ValueError:
        return None


def misnamed_channel(model: Any, names: Sequence[str]) -> str | None:
    """Why ``names`` would label an input token of an EEGPT without a channel projection with
    another channel than the one whose embedding it carries (``chans_id``, fixed from
    ``chs_info`` when the model was built); None when every name is braindecode's own for its
    token."""
    with warnings.catch_warnings():  # braindecode warns of names it does not know: ch0, ...
        warnings.simplefilter("ignore")
        meant = model.target_encoder.prepare_chan_ids(list(names)).reshape(-1).tolist()
    built = model.chans_id.reshape(-1).tolist()
    for i, (name, want, have) in enumerate(zip(names, meant, built, strict=True)):
        if want != have:
            return (
                f"ch_names[{i}]={name!r} is EEGPT's channel embedding {want}, but this EEGPT "
                f"was built with embedding {have} for its input channel {i} (chans_id, fixed "
                "from chs_info at construction): the token would be labelled with another "
                "channel. Pass the names it was built with, or build it with chs_info naming "
                "these channels"
            )
    return None
