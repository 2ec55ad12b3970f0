"""braindecode's attention models as data: one `ZooEntry` per architecture saying what the
tokens of each attention call are, so that `attach_braindecode` opens any of them with
`attach` (no class per model, no conversion). The entries are `entries.ZOO`, most of them a
table of `tokens.Rule` (which calls, what runs of tokens, each token's kind one of
`tokens.KINDS`); braindecode is never imported: a model is recognised by its class name and
module, as the converters do.

An entry builds the layouts from the attention calls a probe forward shows (for a folded
call, one problem's: `AttachedModel.folds_of`). Which architecture has which tokens, which open
at any size, with a warning or are refused by name (`REFUSED`, `NOT_YET`):
docs/guide/bring-your-own-model.md, "Open it where it stands: `attach`".

>>> sorted(ZOO)[:6]
['ATCNet', 'AttnSleep', 'BENDR', 'CBraMod', 'CTNet', 'CodeBrain']
>>> ZOO["EEGConformer"].tokens
'time slices after the temporal and spatial convolutions and pooling (each mixes every channel)'
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import SupportsIndex

import torch
from torch import nn

from emg_lens._hints import checked
from emg_lens.errors import (
    ConversionError,
    InputShapeError,
    check_channel_names,
    check_int,
    warn_caller,
)
from emg_lens.layout import TokenLayout
from emg_lens.models.attached.build import attach, probe_example
from emg_lens.models.attached.find import named_modules_of
from emg_lens.models.attached.intercept import Call
from emg_lens.models.attached.model import AttachedModel
from emg_lens.models.attached.zoo.entries import INTERPOLATED, NOT_YET, REFUSED, ZOO
from emg_lens.models.attached.zoo.tokens import ZooEntry, flat_patches, window_keys
from emg_lens.models.braindecode_common import Braindecode, braindecode_name, model_size

__all__ = [
    "NOT_YET",
    "REFUSED",
    "ZOO",
    "ZooEntry",
    "attach_braindecode",
    "braindecode_name",
    "flat_patches",
    "window_keys",
]


@dataclass(frozen=True)
class _LayoutAt:
    """An entry's layouts for inputs of any size (`attach`'s layout function): its channels
    named ``names`` where the model knows them (then an input of other channels is refused),
    ``ch0``, ``ch1`` ... otherwise; an interpolating wrapper's tokens are its base's
    channels, ``tokens``."""

    name: str
    layouts: Callable[[Sequence[Call], Sequence[str], nn.Module | None], list[TokenLayout]]
    names: tuple[str, ...] | None
    tokens: tuple[str, ...] | None = None

    def __call__(self, calls: Sequence[Call], n_channels: int, n_samples: int):
        names = self.names
        if names is None:
            names = tuple(f"ch{i}" for i in range(n_channels))
        elif len(names) != n_channels:
            raise InputShapeError(
                f"braindecode's {self.name} was opened for {len(names)} channels ({names[0]}, "
                f"...), not {n_channels}; built without n_chans or chs_info, and attached "
                "without ch_names, it opens any"
            )
        return self.layouts(calls, self.tokens or names, None)


class _WithNames(nn.Module):
    """A braindecode model whose forward needs ``ch_names`` (LaBraM), called with them."""

    def __init__(self, model: nn.Module, names: Sequence[str]):
        super().__init__()
        self.model, self.names = model, list(names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, ch_names=self.names)


@checked
def attach_braindecode(
    model: nn.Module, *, ch_names: Sequence[str] | None = None, n_times: SupportsIndex | None = None
) -> AttachedModel:
    """Open a braindecode model with `attach`, the layouts read off `ZOO`'s entry.

    ``ch_names`` default to the model's ``chs_info`` (or ``ch0``, ``ch1``, ...), ``n_times``
    to the model's; where the model knows its own, given ones must agree (a `ConversionError`
    names the first name that does not: its position, the given name and the model's). An
    architecture that runs at any input size (CBraMod) opens without them, which then fix the
    size probed here; another model built without a size needs them.

    >>> from emg_lens.models import attach_braindecode
    >>> from emg_lens.models import TinyAttention
    >>> attach_braindecode(TinyAttention())
    Traceback (most recent call last):
    emg_lens.errors.ConversionError: TinyAttention is not a braindecode model of the zoo ...
    """
    name = braindecode_name(model)
    if name in REFUSED:
        raise ConversionError(f"braindecode's {name} cannot be attached: {REFUSED[name]}")
    if name in NOT_YET:
        raise ConversionError(f"braindecode's {name} is not in the zoo yet: {NOT_YET[name]}")
    if name not in ZOO:  # None too: no braindecode model
        raise ConversionError(
            f"{type(model).__name__} is not a braindecode model of the zoo ({', '.join(ZOO)}): "
            "open it with emg_lens.models.attach(model, layout=...)"
        )
    entry = ZOO[name]
    refusal = None if entry.refuses is None else entry.refuses(model)
    if refusal is not None:
        raise ConversionError(f"braindecode's {name} cannot be attached: {refusal}")
    if entry.warns is not None and (warning := entry.warns(model)) is not None:
        warn_caller(warning)
    # what the model was built with, read once: every step below is handed it
    n_chans, own_times = model_size(model, "n_chans"), model_size(model, "n_times")
    info = getattr(model, "_chs_info", None) or []  # the names of its own chs_info
    own = [n for ch in info if isinstance(ch, dict) and isinstance(n := ch.get("ch_name"), str)]
    names, samples = _names(model, name, ch_names, n_chans, own), _samples(own_times, n_times, name)
    tokens = base_names(name, model, names or ())
    module, probed = model, None
    layout: _LayoutAt | list[TokenLayout]
    if entry.any_size is not None:
        channels, samples = entry.any_size(model, None if names is None else len(names), samples)
        _check_own_names(own, name, ch_names)
        targets = tuple(tokens) if name in INTERPOLATED else None
        layout = _LayoutAt(name, entry.layouts, None if names is None else tuple(names), targets)
    elif names is None or samples is None:
        lacks = [
            f"without {built}: pass {give}"
            for built, give, value in (
                ("n_chans or chs_info", "ch_names=[...] (one name per input channel)", names),
                ("n_times (nor sfreq and input_window_seconds)", "n_times=... (samples)", samples),
            )
            if value is None
        ]
        raise ConversionError(
            f"braindecode's {name} was built {'; '.join(lacks)} (or build it with them)"
        )
    else:
        module = _WithNames(model, tokens) if entry.needs_names else model
        channels = len(names)
        probed = probe_example(
            module,
            named_modules_of(module, entry.attention),
            3,
            channels,
            samples,
            what=f"braindecode's {name}",
            check="ch_names and n_times",
        )
        layout = entry.layouts(probed[0].calls, tokens, model)  # its own refusals first (EEGPT's)
        _check_own_names(own, name, ch_names)
    return attach(
        module,
        layout=layout,
        n_samples=samples,
        n_channels=channels,
        attention=entry.attention,
        probed=probed,
    )


def base_names(name: str, model: Braindecode, names: Sequence[str]) -> list[str]:
    """The channels the tokens of ``model`` (braindecode's ``name``) embed: an interpolating
    wrapper's target channels (its base's), else ``names``."""
    if name not in INTERPOLATED:
        return list(names)
    return [ch["ch_name"] for ch in type(model)._TARGET_CHS_INFO]


def _names(
    model: nn.Module, name: str, ch_names: Sequence[str] | None, n_chans: int | None, own: list[str]
) -> list[str] | None:
    if ch_names is not None:
        form = "a list of channel names, one per input channel"
        names = check_channel_names(ch_names, "ch_names", ConversionError, Sequence, form)
        if not names or n_chans not in (None, len(names)):
            raise ConversionError(
                f"ch_names must name each input channel of braindecode's {name} (n_chans="
                f"{n_chans}), got {len(names)} names"
            )
        return names
    if n_chans is None:
        return None
    if len(own) == n_chans and all(own):
        return own
    if name == "Labram":  # its forward without ch_names reads LaBraM's whole table, in order
        order = getattr(sys.modules[type(model).__module__], "LABRAM_CHANNEL_ORDER", ())
        if len(order) == n_chans:
            return list(order)
    return [f"ch{i}" for i in range(n_chans)]


def _check_own_names(own: list[str], name: str, given: Sequence[str] | None) -> None:
    """Refuse ``ch_names`` that contradict the model's own ``chs_info`` (in case, "Fp1" and
    "FP1" agree), naming the first disagreement: every cut by channel name would hit another
    electrode. A model without ``chs_info`` takes any names."""
    if given is None or len(own) != len(given):  # none of its own; a count is refused before
        return
    for i, (mine, theirs) in enumerate(zip(given, own, strict=True)):
        if str(mine).casefold() != theirs.casefold():
            raise ConversionError(
                f"ch_names[{i}]={mine!r}, but braindecode's {name} names its input channel {i} "
                f"{theirs!r} (chs_info): leave ch_names out, or give its own {own[:8]}..."
            )


def _samples(own: int | None, n_times: SupportsIndex | None, name: str) -> int | None:
    if n_times is not None:
        n_times = check_int(n_times, "n_times", 1, None, ConversionError)
        if own is not None and n_times != own:
            raise ConversionError(f"n_times must be {name}'s {own} (or left out), got {n_times}")
        return n_times
    return own
