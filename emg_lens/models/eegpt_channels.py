"""Which channel each input token of braindecode's EEGPT embeds: the one fact the converted
(`emg_lens.models.converted.braindecode.eegpt`) and the attached
(`emg_lens.models.attached.zoo`) EEGPT both check their channel names against, so it is read
once, here, with braindecode's own ``prepare_chan_ids``."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

__all__ = ["misnamed_channel"]


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
