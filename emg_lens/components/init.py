"""The config's initialisation, written once (docs/ARCHITECTURE.md, components): a model's
``init_weights`` and TransformerLens's ``reinitialized`` both draw through `init_parameter`, so
they cannot drift.

>>> import torch
>>> from emg_lens import EncoderConfig
>>> from emg_lens.models import MLP
>>> mlp = MLP(EncoderConfig.preset("tiny", init_range=0.5))
>>> _ = torch.manual_seed(0)
>>> mlp.reset_parameters()
>>> round(mlp.W_in.std().item(), 1), mlp.b_in.abs().max().item()
(0.5, 0.0)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def init_parameter(name: str, param: torch.Tensor, std: float) -> None:
    """Draw ``param``, whose own name is ``name``, as the config initialises it, in place:
    biases (``b``, ``b_*``, ``bias``) 0, norm weights (``w``, a one-dimensional ``weight``) 1,
    anything else (weight matrices ``W_*`` and ``weight``, tokens, position tables) from
    N(0, ``std``), drawn from torch's global generator.

    >>> p = torch.empty(3)
    >>> init_parameter("b_O", p, 0.02); p.tolist()
    [0.0, 0.0, 0.0]
    >>> init_parameter("weight", p, 0.02); p.tolist()
    [1.0, 1.0, 1.0]
    """
    if name in ("b", "bias") or name.startswith("b_"):
        nn.init.zeros_(param)
    elif name == "w" or (name == "weight" and param.ndim == 1):
        nn.init.ones_(param)
    else:
        nn.init.normal_(param, std=std)


class ConfigInit:
    """A module (this class first among its bases) whose own parameters the config draws:
    `reset_parameters` draws each by `draw_parameter`, which is `init_parameter` with the
    module's ``init_std`` (the config's ``init_range``, unless the module says otherwise).

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import LayerNorm
    >>> ln = LayerNorm(EncoderConfig.preset("tiny"))
    >>> with torch.no_grad():
    ...     _ = ln.w.mul_(3)
    >>> ln.reset_parameters()
    >>> ln.w.unique().tolist()
    [1.0]
    """

    init_std: float  # std of the normal draws

    def reset_parameters(self) -> None:
        """Draw this module's own parameters (not its submodules') as the config does."""
        for name, param in self.named_parameters(recurse=False):  # type: ignore[attr-defined]
            self.draw_parameter(name, param)

    def draw_parameter(self, name: str, param: torch.Tensor) -> None:
        """Draw the parameter ``name`` of this module (a module with a parameter of its own
        rule overrides this, naming it)."""
        init_parameter(name, param, self.init_std)


class _ConfigLayer(ConfigInit):
    """A torch layer drawn by `init_parameter` once built (``init_std`` given); while torch's
    constructor runs, by torch's own ``reset_parameters``."""

    init_std: float | None = None  # type: ignore[assignment]  # set once torch has built it

    def __init__(self, *args: Any, init_std: float, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.init_std = init_std

    def reset_parameters(self) -> None:
        if self.init_std is None:  # torch's constructor: its own draws, as the torch layer's
            super(ConfigInit, self).reset_parameters()  # type: ignore[misc]
        else:
            ConfigInit.reset_parameters(self)


class ConfigLinear(_ConfigLayer, nn.Linear):
    """`torch.nn.Linear` drawn by the config once built: ``ConfigLinear(4, 2, init_std=0.02)``."""


class ConfigConv1d(_ConfigLayer, nn.Conv1d):
    """`torch.nn.Conv1d` drawn by the config once built."""


class ConfigConv2d(_ConfigLayer, nn.Conv2d):
    """`torch.nn.Conv2d` drawn by the config once built.

    >>> conv = ConfigConv2d(1, 4, (1, 3), init_std=0.5)
    >>> _ = torch.manual_seed(0)
    >>> conv.reset_parameters()
    >>> conv.bias.abs().max().item(), isinstance(conv, nn.Conv2d)
    (0.0, True)
    """


class ConfigGroupNorm(_ConfigLayer, nn.GroupNorm):
    """`torch.nn.GroupNorm` drawn by the config once built (weight 1, bias 0, as torch's)."""


class ConfigLayerNorm(_ConfigLayer, nn.LayerNorm):
    """`torch.nn.LayerNorm` drawn by the config once built (weight 1, bias 0, as torch's)."""


class ConfigEmbedding(_ConfigLayer, nn.Embedding):
    """`torch.nn.Embedding` drawn by the config once built: N(0, ``init_std``), not torch's
    N(0, 1)."""
