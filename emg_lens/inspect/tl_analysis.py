"""TransformerLens's subspace interventions at a layout's token groups: the positions its
``transformer_lens.tools.analysis`` tools take, from a group's name.

Those tools (`collect_activations`, `run_with_intervention`, `fit_das`, ...) read one position
per example; a token group is several, so `token_rows` lays windows out as rows, one per window
and token of the group (window-major), and `TokenRows.per_row` gives each row its window's
label. Base and source rows of the same length pair up row by row. ``task_logits`` is the model
itself, in eval mode. The recipe, with DAS, the placebo and both controls: the guide page "What
an edge carries".

>>> from transformer_lens.tools.analysis import collect_activations
>>> from emg_lens import EncoderConfig
>>> from emg_lens.models import IsoNet
>>> model = IsoNet(EncoderConfig.preset("tiny", seed=0)).eval()
>>> rows = token_rows(model, model.example_input(5), "acc")  # 5 windows x 4 ACC tokens
>>> rows.positions[:5].tolist(), rows.window[:5].tolist()
([3, 4, 5, 6, 3], [0, 0, 0, 0, 1])
>>> acts = collect_activations(
...     model, "blocks.0.hook_resid_pre", rows.inputs, model, positions=rows.positions
... )
>>> tuple(acts.shape)
(20, 16)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int

from emg_lens.edges import EdgeSet
from emg_lens.errors import ArgumentError, IndexOutOfRangeError, InputShapeError, checked, describe
from emg_lens.inspect.probes import POOLED, token_group

Tokens = str | EdgeSet | Sequence[int] | Int[np.ndarray, " _"]
"""A token group: a layout group (``"emg"``, ``"acc"``, ``"cls"``), an edge set or expression
(its edges' query tokens, as `probe_tokens` reads one) or token positions."""


@checked
def token_positions(model: Any, tokens: Tokens) -> tuple[str, list[int]]:
    """``(name, positions)`` of a token group of ``model``'s layout (`Tokens`); positions
    given are checked against the layout (integers, in range, none repeated). ``"pooled"``
    is refused: it is a mean of tokens, and TransformerLens's tools read one position.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny"))
    >>> token_positions(model, "emg"), token_positions(model, "to_cls"), token_positions(model, [6, 0])
    (('emg', [1, 2]), ('to_cls', [0]), ('positions [6, 0]', [6, 0]))
    >>> token_positions(model, [7])
    Traceback (most recent call last):
    ...
    emg_lens.errors.IndexOutOfRangeError: position 7 is not a token of IsoNet's layout (positions 0..6)
    """  # noqa: E501
    if isinstance(tokens, (str, EdgeSet)):
        if tokens == POOLED:
            raise ArgumentError(
                f"{POOLED!r} is the mean of the channel tokens, not a position: name a group "
                f"{model.layout.groups}, an edge expression or positions"
            )
        name, positions, _ = token_group(model, tokens)
        return name, positions
    given = np.asarray(tokens.cpu() if isinstance(tokens, torch.Tensor) else tokens)
    if given.ndim != 1 or not given.size or given.dtype.kind not in "iu":
        raise ArgumentError(
            f"tokens must be a token group {model.layout.groups}, an edge expression "
            f"or a non-empty sequence of integer positions, got {describe(tokens)}"
        )
    positions, n_tokens = given.tolist(), model.layout.n_tokens
    if bad := [p for p in positions if not 0 <= p < n_tokens]:
        raise IndexOutOfRangeError(
            f"position {bad[0]} is not a token of {type(model).__name__}'s layout "
            f"(positions 0..{n_tokens - 1})"
        )
    if len(set(positions)) != len(positions):
        raise ArgumentError(f"token positions repeat: {positions}")
    return f"positions {positions}", positions


@checked
@dataclass(frozen=True)
class TokenRows:
    """Windows laid out for TransformerLens's interchange tools at a token group (`token_rows`):
    row ``r`` is window ``window[r]`` read (or intervened on) at token ``positions[r]``.

    ``group`` is the group's name; ``inputs`` (the windows, each repeated once per token,
    window-major, on the model's device) and ``positions`` are what to pass as the tools'
    ``inputs`` and ``positions`` (or their ``base_`` / ``source_`` forms); ``window`` is each
    row's window, ``n_windows`` how many were given."""

    group: str
    inputs: Float[torch.Tensor, "row channel time"]
    positions: Int[torch.Tensor, " row"]
    window: Int[torch.Tensor, " row"]
    n_windows: int

    def per_row(self, values: Any) -> Any:
        """``values``, one per window (labels, DAS targets, keys for ``arbitrary_targets``),
        as one per row: a tensor stays a tensor on its device, anything else becomes a numpy
        array.

        >>> from emg_lens import EncoderConfig
        >>> from emg_lens.models import IsoNet
        >>> model = IsoNet(EncoderConfig.preset("tiny"))
        >>> token_rows(model, model.example_input(2), "emg").per_row([7, 9]).tolist()
        [7, 7, 9, 9]
        """
        if len(values) != self.n_windows:
            raise InputShapeError(
                f"per_row takes one value per window ({self.n_windows}), not {len(values)}"
            )
        if isinstance(values, torch.Tensor):
            return values[self.window.to(values.device)]
        return np.asarray(values)[self.window.numpy()]


@checked
def token_rows(model: Any, windows: Any, tokens: Tokens) -> TokenRows:
    """``windows`` ``[n, channels, time]`` (a tensor or numpy array the model takes, checked
    by its ``to_tokens``) laid out as `TokenRows` at the token group ``tokens``
    (`token_positions`): ``n * k`` rows for a group of ``k`` tokens.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny"))
    >>> rows = token_rows(model, model.example_input(3), "emg")
    >>> rows.group, tuple(rows.inputs.shape), rows.positions.tolist()
    ('emg', (6, 6, 8), [1, 2, 1, 2, 1, 2])
    """
    name, positions = token_positions(model, tokens)
    if getattr(windows, "ndim", None) != 3:  # to_tokens would take one window as a batch
        raise InputShapeError(
            f"windows must be a batch [n, channels, time], got {describe(windows)}"
        )
    signals = model.to_tokens(windows)  # InputShapeError, by name
    n, k = len(signals), len(positions)
    window = torch.arange(n).repeat_interleave(k)
    return TokenRows(
        group=name,
        inputs=signals.repeat_interleave(k, dim=0),
        positions=torch.tensor(positions).repeat(n),
        window=window,
        n_windows=n,
    )
