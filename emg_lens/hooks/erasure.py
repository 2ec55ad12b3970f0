"""Concept erasure at a token group, as a TransformerLens hook, and the placebo beside it.

A LEACE eraser (Belrose et al. 2023, arXiv 2306.03819), fitted by EleutherAI's
``concept-erasure`` (`LeaceEraser.fit` with its defaults) on a token group's vectors side by
side (``[window, tokens * d_model]``, as `emg_lens.inspect.probes` reads a group: one eraser
per token would leave what a probe reads by combining them), and its norm-matched placebo;
what they guarantee: docs/guide/what-an-edge-carries.md, "Erasing a concept".

>>> from emg_lens import EncoderConfig
>>> from emg_lens.models import IsoNet
>>> model = IsoNet(EncoderConfig.preset("tiny", seed=0)).eval()
>>> X = model.example_input(64)
>>> labels = (X[:, 3].mean(-1) > 0).long()  # a concept in ACC channel 0
>>> (eraser,) = fit_erasers(model, X, labels, names=["blocks.0.hook_resid_pre"],
...                         positions=model.layout.positions("acc"))
>>> eraser.rank, eraser.at
(1, 'blocks.0.hook_resid_pre')
>>> _, cache = model.run_with_cache(X, names_filter=[eraser.at])
>>> flat = eraser.erase(group_vectors(cache[eraser.at], eraser.positions))
>>> means = torch.stack([flat[labels == c].mean(0) for c in (0, 1)])
>>> bool(torch.allclose(means[0], means[1], atol=1e-4))  # the class means coincide
True
>>> out = model.run_with_hooks(X, fwd_hooks=[(eraser.at, eraser.placebo(seed=0))])
>>> tuple(out.shape)
(64, 4)
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from transformer_lens.hook_points import HookPoint

from emg_lens.edges import EdgeSet, parse
from emg_lens.errors import (
    ArgumentError,
    EmgLensError,
    InputShapeError,
    LayoutError,
    check_int,
    check_ints,
    check_seed,
    check_type,
    describe,
    warn_caller,
)

RANK_TOL = 1e-6  # singular values of the edit below this share of the largest are not a rank
LEFT_TOL = 1e-6
"""The share of the concept's cross-covariance an eraser may leave on its own fit windows
before `fit_token_eraser` warns (float64 rounding leaves ~1e-15)."""


def group_positions(
    model: Any, tokens: str | EdgeSet, *, also: Sequence[str] = ()
) -> tuple[str, list[int]]:
    """``(name, positions)`` of a token group of ``model``'s layout: a group name (``"emg"``,
    ``"cls"``) or an edge set or expression, whose tokens are the queries of its edges; an
    unknown name is a `LayoutError` naming the groups (and ``also``, the caller's other names).

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny"))
    >>> group_positions(model, "acc"), group_positions(model, "to_cls")
    (('acc', [3, 4, 5, 6]), ('to_cls', [0]))
    """
    return layout_positions(model.layout, model.cfg.n_heads, tokens, also=also)


def layout_positions(
    layout: Any, n_heads: int, tokens: str | EdgeSet, *, also: Sequence[str] = ()
) -> tuple[str, list[int]]:
    """`group_positions` on a `TokenLayout` with ``n_heads`` heads (what ``study check``
    reads off a preset, with no model)."""
    if isinstance(tokens, str) and tokens in layout.groups:
        return tokens, list(layout.positions(tokens))
    check_type(tokens, str | EdgeSet, f"a token group ({layout.groups} or an edge set)")
    try:
        edges = parse(tokens) if isinstance(tokens, str) else tokens
    except EmgLensError as exc:
        others = "".join(f"{name!r} or " for name in also)
        accepted = f"{others}an edge expression, naming its edges' query tokens ({exc})"
        unknown = f"unknown token group {tokens!r}: this model's layout has {layout.groups}"
        raise LayoutError(f"{unknown}; also accepted: {accepted}") from None
    mask = edges.compile(layout, n_heads)  # LayoutError for a group it lacks
    positions = torch.nonzero(mask.any(dim=(0, 2))).flatten().tolist()
    if not positions:
        raise LayoutError(f"edge set {str(edges)!r} selects no edge, so no token, on this layout")
    return str(edges), positions


def group_vectors(
    act: Float[torch.Tensor, "window pos d_model"], positions: Sequence[int]
) -> Float[torch.Tensor, "window group_d"]:
    """A token group's vectors side by side, ``[window, len(positions) * d_model]``, in
    float64 (what an eraser is fitted on and applied to).

    >>> group_vectors(torch.ones(2, 5, 3), [1, 4]).shape
    torch.Size([2, 6])
    """
    if act.ndim != 3:
        raise InputShapeError(f"activations must be [window, pos, d_model], got {describe(act)}")
    return act[:, list(positions)].flatten(1).double()


def concept_codes(labels: Any) -> tuple[np.ndarray, list[Any]]:
    """``(codes, values)``: each window's concept value as an index into ``values`` (the
    distinct values, sorted); fewer than two values is an `ArgumentError`, a missing value
    (None, NaN) or values of mixed kinds an `InputShapeError` naming the first.

    >>> codes, values = concept_codes(["b", "a", "b"])
    >>> codes.tolist(), values
    ([1, 0, 1], ['a', 'b'])
    >>> concept_codes([0.0, float("nan"), 1.0])
    Traceback (most recent call last):
    ...
    emg_lens.errors.InputShapeError: concept labels[1] = nan is missing: a window's concept \
value is a number or a string (drop the windows without one)
    """
    array = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if array.ndim != 1 or not len(array):
        raise InputShapeError(f"labels must be one value per window, got {describe(labels)}")
    missing = [v is None or (isinstance(v, float) and v != v) for v in array.tolist()]
    if any(missing):
        i = missing.index(True)
        value = "a window's concept value is a number or a string (drop the windows without one)"
        raise InputShapeError(f"concept labels[{i}] = {array.tolist()[i]!r} is missing: {value}")
    try:
        values, codes = np.unique(array, return_inverse=True)
    except TypeError:  # an object array of values that do not compare (3 and "a")
        kinds = sorted({type(v).__name__ for v in array})
        raise InputShapeError(
            f"labels mix {kinds}: a concept is all numbers or all strings"
        ) from None
    if len(values) < 2:
        raise ArgumentError(f"a concept to erase needs at least two values, got {values.tolist()}")
    return codes.reshape(-1), values.tolist()


class _GroupEdit(abc.ABC):
    """The hook both erasers are: the group's tokens edited, the other tokens kept."""

    at: str
    positions: tuple[int, ...]

    @abc.abstractmethod
    def erase(self, flat: Float[torch.Tensor, "window group_d"]) -> torch.Tensor: ...

    def __call__(self, act: torch.Tensor, hook: HookPoint | None = None) -> torch.Tensor:
        if (name := getattr(hook, "name", None)) not in (None, self.at):
            raise LayoutError(f"an eraser fitted at {self.at!r} belongs there, not at {name!r}")
        picked = act[:, list(self.positions)]
        expected = self.width // len(self.positions)
        if act.ndim != 3 or picked.shape[-1] != expected:
            takes = f"{self.at}: an eraser takes [window, pos, d_model={expected}]"
            raise InputShapeError(f"{takes}, got {describe(act)}")
        edited = self.erase(picked.flatten(1).double()).to(act.dtype).view_as(picked)
        out = act.clone()
        out[:, list(self.positions)] = edited
        return out

    @property
    @abc.abstractmethod
    def width(self) -> int: ...


@dataclass(frozen=True, eq=False)
class TokenEraser(_GroupEdit):
    """A fitted LEACE eraser of a token group at one hook point (`fit_token_eraser`); called
    as a TransformerLens hook. ``eraser`` is concept-erasure's `LeaceEraser` (float64, on the
    CPU), ``rank`` the rank of its edit, ``values`` the concept's values it was fitted on,
    ``left`` the share of the concept's cross-covariance it leaves on those windows."""

    at: str
    positions: tuple[int, ...]
    eraser: Any  # concept_erasure.LeaceEraser
    rank: int
    values: tuple[Any, ...]
    left: float = 0.0

    @property
    def width(self) -> int:
        return int(self.eraser.proj_left.shape[0])

    def erase(self, flat: Float[torch.Tensor, "window group_d"]) -> torch.Tensor:
        """The erased group vectors (float64)."""
        e = self.eraser
        bias = None if e.bias is None else e.bias.to(flat.device)
        left, right = e.proj_left.to(flat.device), e.proj_right.to(flat.device)
        delta = flat if bias is None else flat - bias
        return flat - (delta @ right.mH) @ left.mH

    def placebo(self, seed: int = 0) -> PlaceboEraser:
        """The norm-matched random-subspace placebo of this eraser (the guide's),
        seeded by ``seed`` (an int in 0..2**31-1, `emg_lens.errors.check_seed`)."""
        from transformer_lens.tools.analysis import random_basis

        seed = check_seed(seed, "the placebo's seed", ArgumentError)

        basis = None
        if self.rank:  # TL's basis (float32), orthonormal again in float64: the same subspace
            basis = torch.linalg.qr(random_basis(self.width, self.rank, seed).double())[0]
        return PlaceboEraser(self, basis, seed)


@dataclass(frozen=True, eq=False)
class PlaceboEraser(_GroupEdit):
    """Moves each window along the removal of a random ``reference.rank``-dimensional
    subspace of the centred group vectors (``basis``, orthonormal; None for rank 0: no edit),
    as far as ``reference`` moves it (short of the removal or past it)."""

    reference: TokenEraser
    basis: torch.Tensor | None
    seed: int

    @property
    def at(self) -> str:  # type: ignore[override]
        return self.reference.at

    @property
    def positions(self) -> tuple[int, ...]:  # type: ignore[override]
        return self.reference.positions

    @property
    def width(self) -> int:
        return self.reference.width

    def erase(self, flat: Float[torch.Tensor, "window group_d"]) -> torch.Tensor:
        if self.basis is None:
            return flat.clone()
        distance = (self.reference.erase(flat) - flat).norm(dim=-1, keepdim=True)
        bias = self.reference.eraser.bias
        centred = flat if bias is None else flat - bias.to(flat.device)
        B = self.basis.to(flat.device)
        move = -(centred @ B) @ B.T
        return flat + move * (distance / move.norm(dim=-1, keepdim=True).clamp_min(1e-12))


def _edit_rank(eraser: Any) -> int:
    """The rank of the eraser's edit ``proj_left @ proj_right`` (what ``x -> P x`` removes)."""
    s = torch.linalg.svdvals(eraser.proj_left @ eraser.proj_right)
    if not len(s) or float(s.max()) == 0.0:
        return 0
    return int((s > RANK_TOL * s.max()).sum())


def fit_token_eraser(
    acts: Float[torch.Tensor, "window pos d_model"],
    labels: Any,
    *,
    at: str,
    positions: Sequence[int],
) -> TokenEraser:
    """A LEACE eraser of the concept ``labels`` (one value per window: classes, subjects, any
    values) from the token group ``positions`` of the activations ``acts`` read at hook
    point ``at``, fitted in float64 (concept-erasure's `LeaceEraser.fit`, its defaults).

    >>> acts = torch.randn(200, 3, 4, generator=torch.Generator().manual_seed(0))
    >>> labels = torch.arange(200) % 3
    >>> acts[:, 1, 0] += labels  # the concept lives in token 1
    >>> eraser = fit_token_eraser(acts, labels, at="blocks.0.hook_resid_pre", positions=[1, 2])
    >>> eraser.rank, eraser.values, eraser.width
    (2, (0, 1, 2), 8)
    """
    from concept_erasure import LeaceEraser

    positions = tuple(check_ints(positions, "positions (an eraser's token positions)", None))
    # an eraser made of inference tensors could not serve in a forward that tracks gradients
    with torch.inference_mode(False), torch.no_grad():
        flat = group_vectors(acts, positions).cpu().clone()
        return _fit(LeaceEraser, flat, labels, at, positions)


def _check_codes(labels: Any, n: int) -> tuple[np.ndarray, list[Any]]:
    """`concept_codes` of ``labels``, which must be one per window of ``n``."""
    codes, values = concept_codes(labels)
    if len(codes) != n:
        raise InputShapeError(f"labels must be one per window: {len(codes)} for {n} windows")
    return codes, values


def _fit(leace: Any, flat: torch.Tensor, labels: Any, at: str, positions: tuple[int, ...]):
    if not torch.isfinite(flat).all():
        finite = "an eraser needs finite activations (check the model's weights and the windows)"
        raise InputShapeError(f"{at} holds NaN or inf at positions {list(positions)}: {finite}")
    codes, values = _check_codes(labels, len(flat))
    onehot = torch.nn.functional.one_hot(torch.as_tensor(codes), len(values)).double()
    eraser = leace.fit(flat, onehot)
    fitted = TokenEraser(at, positions, eraser, _edit_rank(eraser), tuple(values))
    left = _cross_covariance_left(fitted, flat, onehot)
    if left > LEFT_TOL:
        warn_caller(
            f"the eraser at {at} (positions {list(positions)}) leaves {100 * left:.3g} % of the "
            "concept's cross-covariance on the windows it was fitted on (its rank "
            f"{fitted.rank} of {len(values) - 1}): concept-erasure drops directions whose "
            "whitened cross-covariance is below its svd_tol (0.01, absolute), "
            "such as a class of a few windows or a weak one, so a linear probe may still read "
            "the concept there"
        )
    return dataclasses.replace(fitted, left=left)


def _cross_covariance_left(eraser: TokenEraser, flat: torch.Tensor, onehot: torch.Tensor) -> float:
    """The Frobenius share of the fit windows' cross-covariance with the one-hot concept that
    remains after ``eraser`` (LEACE's guarantee: none)."""
    x = flat.double()
    z = onehot - onehot.mean(0)
    before = torch.linalg.norm((x - x.mean(0)).T @ z)
    if before == 0:
        return 0.0
    erased = eraser.erase(x)
    return float(torch.linalg.norm((erased - erased.mean(0)).T @ z) / before)


@torch.no_grad()
def fit_erasers(
    model: Any,
    X: Any,
    labels: Any,
    *,
    names: Sequence[str],
    positions: Sequence[int],
    batch_size: int = 256,
) -> list[TokenEraser]:
    """One `TokenEraser` of ``labels`` at the token ``positions`` of each hook point of
    ``names``, fitted on the windows ``X``: each on the activations that the erasers before it
    leave, so that together they erase the concept from every point named. ``names`` must be
    in forward order, since an eraser fitted before an earlier one would be fitted on
    activations that one then changes. Names out of order or unknown, missing labels and a
    ``batch_size`` below 1 are refused before anything is fitted.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0)).eval()
    >>> X = model.example_input(8)
    >>> fit_erasers(model, X, [0, 1] * 4, positions=[3],
    ...             names=["blocks.1.hook_resid_pre", "blocks.0.hook_resid_pre"])
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: names must be in forward order: 'blocks.0.hook_resid_pre' \
runs before 'blocks.1.hook_resid_pre' (e.g. ['blocks.0.hook_resid_pre', \
'blocks.1.hook_resid_pre'])
    """
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    order = {name: i for i, name in enumerate(model.hook_dict)}
    unknown = [n for n in names if n not in order]
    if unknown or not names:
        points = f"hook points of {type(model).__name__} (e.g. ['blocks.0.hook_resid_pre'])"
        raise LayoutError(f"names {list(names)} must be one or more {points}; unknown: {unknown}")
    forward = sorted(names, key=order.__getitem__)
    if list(names) != forward:
        first, earlier = next((n, f) for n, f in zip(names, forward) if n != f)
        ran = f"{earlier!r} runs before {first!r} (e.g. {forward})"
        raise ArgumentError(f"names must be in forward order: {ran}")
    X = X if isinstance(X, torch.Tensor) else torch.as_tensor(np.asarray(X))
    _check_codes(labels, len(X))
    X = X.to(dtype=model.cfg.dtype, device=model.cfg.device)
    erasers: list[TokenEraser] = []
    for name in names:
        parts = []
        with model.hooks(fwd_hooks=[(e.at, e) for e in erasers]):
            for start in range(0, len(X), batch_size):
                _, cache = model.run_with_cache(
                    X[start : start + batch_size], names_filter=[name], return_type=None
                )
                value = cache[name]  # float32 at least, a float64 model's kept
                parts.append((value if value.dtype == torch.float64 else value.float()).cpu())
        erasers.append(fit_token_eraser(torch.cat(parts), labels, at=name, positions=positions))
    return erasers
