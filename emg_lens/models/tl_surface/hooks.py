"""TransformerLens's hook surface, which every emg_lens model has (every tier).

`HookSurface` caches with ``pos_slice`` over the model's tokens, sets the hook flags (those no
module can honour refused by name) and checks hook names where TransformerLens resolves them: a
name the model lacks is a `LayoutError` (TransformerLens: a bare ``KeyError``), and a filter
with ``check_model`` (`emg_lens.hooks.name_filter`) checks itself, so one naming layers the
model lacks is refused instead of hooking nothing. TransformerLens's patching helpers count
positions on the input's last axis (time samples for signals): a hook of theirs indexing a
token the activation lacks is refused, pointing to ``emg_lens.inspect.tl_index_df``.
"""

from __future__ import annotations

import copy
import functools
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformer_lens import HookedRootModule
from transformer_lens.utilities import Slice

from emg_lens.components import Attention, TransformerBlock
from emg_lens.components.attend import observed
from emg_lens.config import HOOK_FLAGS, EncoderConfig
from emg_lens.errors import (
    ArgumentError,
    HookFlagError,
    LayoutError,
    UnsupportedFeatureError,
    check_bool,
)
from emg_lens.layout import TokenLayout
from emg_lens.models.tl_surface.threads import ThreadClaim, caller

TL_PATCHING = "transformer_lens.patching"  # the module whose helpers' hooks are guarded
# A block's per-head input hooks are also reachable under TransformerLens 4's names for them,
# ``blocks.{l}.attn.hook_q_input`` ... (what its get_act_patch_direct_path hooks).
ATTN_ALIASES = ("hook_q_input", "hook_k_input", "hook_v_input", "hook_attn_in")
# Activations of a token stream: anything in a stack of blocks (shared or a stem's), the
# embeddings entering one, and the final norm. Others (the signals ``hook_input``, pooled
# vectors, classifier internals) have no token axis.
_TOKEN_STREAM = re.compile(
    r"^(?:stems\.[^.]+\.)?(?:blocks\.\d+\.|hook_embed$|hook_pos_embed$)|^ln_final\."
)
_QUERY_AXIS_HOOKS = ("hook_attn_scores", "hook_pattern")  # [batch, head_index, query, key]


def token_axis(name: str) -> int | None:
    """The axis of activation ``name`` (with its batch axis) that runs over token positions,
    the one ``run_with_cache(pos_slice=...)`` slices: 2 (the query axis) for attention scores
    and patterns ``[batch, head_index, query_pos, key_pos]``, 1 for every other activation of
    a token stream (``[batch, pos, ...]``, per-head ones included), None for activations
    without one (``hook_input``'s ``[batch, channel, time]``, pooled vectors).

    >>> token_axis("blocks.0.attn.hook_pattern"), token_axis("blocks.1.attn.hook_q")
    (2, 1)
    >>> token_axis("hook_input") is None, token_axis("cls_head.hook_pooled") is None
    (True, True)
    """
    if not _TOKEN_STREAM.search(name):
        return None
    return 2 if name.rsplit(".", 1)[-1] in _QUERY_AXIS_HOOKS else 1


_OPTIONAL_HOOKS = {  # what each flag of HOOK_FLAGS turns on (the components'), for messages
    **{f"attn.{hook}": flag for hook, flag in Attention.OPTIONAL_HOOKS.items()},
    **TransformerBlock.OPTIONAL_HOOKS,
}
assert set(_OPTIONAL_HOOKS.values()) == set(HOOK_FLAGS)


_POSITION_AXES = {"pos", "src_pos", "dest_pos"}  # TransformerLens's position axis names


def _guard_tl_patching(name: Any, hook: Callable) -> Callable:
    """``hook``, guarded where it is a TransformerLens patching helper's (a ``partial`` of
    ``patching_hook``): a sweep over positions counted on the wrong axis (`_counted_positions`)
    and an out-of-range position are a `LayoutError` with the advice below."""
    func = getattr(hook, "func", None)
    if not isinstance(hook, functools.partial) or getattr(func, "__module__", "") != TL_PATCHING:
        return hook
    index = hook.keywords.get("index")
    advice = (
        "Its position-indexed helpers (get_act_patch_resid_pre and the other *_by_pos ones) "
        "take positions from the input's last axis, which for signals is time samples, not "
        "tokens: pass index_df=emg_lens.inspect.tl_index_df(model, 'layer', 'pos') (the axes "
        "the helper iterates, e.g. 'layer', 'pos', 'head_index') and index_axis_names=None"
    )

    def guarded(activation: torch.Tensor, *, hook: Any) -> Any:
        axis = token_axis(str(name))
        counted = _counted_positions()
        if axis is not None and counted is not None and counted != activation.shape[axis]:
            tokens = activation.shape[axis]
            wrong = "index past the last token" if counted > tokens else "leave tokens out"
            raise LayoutError(
                f"TransformerLens's patching helper sweeps {counted} positions of {name}, but "
                f"the model has {tokens} tokens: it would {wrong}. {advice}"
            )
        try:
            return original(activation, hook=hook)
        except IndexError as exc:
            raise LayoutError(
                f"TransformerLens's patching helper indexed {name} {list(activation.shape)} at "
                f"{index}, a position it does not have ({exc}). {advice}"
            ) from exc

    original = hook
    return guarded


def _counted_positions() -> int | None:
    """The positions a running ``generic_activation_patch`` counted itself
    (``corrupted_tokens.shape[-1]``, read from its frame: the hook sees one row of the sweep);
    None without a position axis or with ``index_df``."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and not (
        frame.f_code.co_name == "generic_activation_patch"
        and frame.f_globals.get("__name__") == TL_PATCHING
    ):
        frame = frame.f_back
    if frame is None:
        return None
    names = frame.f_locals.get("index_axis_names")
    shape = getattr(frame.f_locals.get("corrupted_tokens"), "shape", None)
    if not names or not _POSITION_AXES & set(names) or shape is None:
        return None
    return int(shape[-1])


class HookSurface(HookedRootModule):
    """TransformerLens's hooks, checked, and its hook flags (see the module docstring); the
    base of `HookedBiosignalModel`, which supplies what is declared here."""

    cfg: EncoderConfig
    if TYPE_CHECKING:

        @property
        def layout(self) -> TokenLayout: ...

    # ------------------------------------------------------------------ one thread with hooks
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._thread_claim = ThreadClaim()

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if "_thread_claim" not in self.__dict__:  # pickled before models had one
            self._thread_claim = ThreadClaim()

    def name_in_messages(self) -> str:
        """How messages about this model name it."""
        return type(self).__name__

    def _claimed(
        self, what: str, hooked: bool | Callable[[], bool] = True
    ) -> AbstractContextManager[None]:
        """The model claimed for one call, ``what`` (see `emg_lens.models.tl_surface.threads`):
        with hooks by default; a `StudyError` where another thread holds it."""
        return self._thread_claim.use(self.name_in_messages(), what, hooked=hooked)

    def _hooks_attached(self) -> bool:
        """Whether anything observes any of the model's hook points (`attend.observed`)."""
        return observed(getattr(self, "hook_dict", {}).values())

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A ``forward`` a class defines runs with the model claimed for its caller (the
        model's ``__call__`` runs it, and so may a caller directly): alongside other callers'
        calls where no hook is attached, alone where one is (see `_claimed`)."""
        super().__init_subclass__(**kwargs)
        forward = vars(cls).get("forward")
        if forward is None:
            return

        @functools.wraps(forward)
        def claimed(self: HookSurface, *args: Any, **kwargs: Any) -> Any:
            with self._claimed("forward", hooked=self._hooks_attached):
                return forward(self, *args, **kwargs)

        cls.forward = claimed

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        """A copy with the permanent hooks only (temporary ones may be another caller's),
        as ``reset_hooks(including_permanent=False)`` leaves a model; their callables are not
        copied."""
        for point in self.hook_dict.values():  # torch holds each hook as a function (atomic)
            for handle in (*point.fwd_hooks, *point.bwd_hooks):
                if not handle.is_permanent:  # the copy's handle names it, and goes below
                    memo[id(handle.user_hook)] = handle.user_hook
        clone = type(self).__new__(type(self))
        memo[id(self)] = clone
        clone.__setstate__(copy.deepcopy(self.__getstate__(), memo))
        clone.reset_hooks(clear_contexts=False, including_permanent=False)
        clone.context_level = 0
        return clone

    # ------------------------------------------------------------------ TL hooks, checked
    def setup(self) -> None:
        """TransformerLens's ``setup`` (names every module and hook point), then the aliases
        ``blocks.{l}.attn.hook_q_input`` ... of each block's per-head input hooks (in
        ``mod_dict``, so they can be hooked by name; not in ``hook_dict``, so nothing is
        cached or swept twice)."""
        super().setup()
        for name, module in list(self.mod_dict.items()):
            optional = getattr(module, "OPTIONAL_HOOKS", {})
            if hasattr(module, "attn"):
                for leaf in ATTN_ALIASES:
                    if leaf in optional:
                        self.mod_dict[f"{name}.attn.{leaf}"] = getattr(module, leaf)

    def _check_hook_names(self, names: Iterable[Any]) -> None:
        """A hook name the model lacks is a `LayoutError`; a filter with ``check_model`` (an
        `emg_lens.hooks.NameFilter`) checks the layers it names against this model."""
        first = next(iter(self.hook_dict), None)
        for name in names:
            if isinstance(name, str):
                if name not in self.mod_dict:
                    raise LayoutError(
                        f"{type(self).__name__} has no hook point {name!r} (n_layers="
                        f"{self.cfg.n_layers}); one of model.hook_dict's, e.g. {first!r}"
                    )
                continue
            check = getattr(name, "check_model", None)
            if callable(check):
                check(self)

    def flag_off(self, name: str) -> str | None:
        """The flag (``use_attn_result``, ``use_split_qkv_input``, ``use_attn_in``,
        ``use_hook_mlp_in``) that hook point ``name`` needs and that is off, else None: a
        hook there would never fire.

        >>> from emg_lens.models import IsoNet
        >>> model = IsoNet(EncoderConfig.preset("tiny"))
        >>> model.flag_off("blocks.0.attn.hook_result"), model.flag_off("blocks.0.hook_q_input")
        ('use_attn_result', 'use_split_qkv_input')
        >>> model.flag_off("blocks.0.attn.hook_pattern") is None
        True
        """
        canonical = getattr(self.mod_dict.get(name), "name", None) or name
        owner_path, _, leaf = canonical.rpartition(".")
        owner = self.mod_dict.get(owner_path) if owner_path else self
        flag = getattr(owner, "OPTIONAL_HOOKS", {}).get(leaf)
        if flag is None or getattr(getattr(owner, "cfg", self.cfg), flag):
            return None
        return flag

    def _check_live(self, names: Iterable[str], what: str, mode: str) -> list[str]:
        """``names`` less the hook points whose flag is off, which would never fire. ``mode``
        says how the caller chose them: ``"named"`` (by name: any such point is a
        `HookFlagError`), ``"filter"`` (a function of the name: they are skipped, unless
        nothing else is left, which is refused) or ``"all"`` (cache everything: skipped)."""
        names = list(names)
        off = {name: flag for name in names if (flag := self.flag_off(name))}
        live = [name for name in names if name not in off]
        if off and (mode == "named" or (mode == "filter" and not live)):
            listed = ", ".join(f"{n!r} (set_{f}(True))" for n, f in list(off.items())[:4])
            more = f" and {len(off) - 4} more" if len(off) > 4 else ""
            which = "names" if mode == "named" else "matched only"
            raise HookFlagError(
                f"{what} {which} hook points whose flag is off, which would never fire: "
                f"{listed}{more}; turn the flag on first (as in TransformerLens)"
            )
        return live

    def _resolve_hooks(self, pairs: Sequence[tuple[Any, Callable]], what: str) -> list:
        """``(name or filter, hook)`` pairs as ``(name, hook)`` pairs: a filter becomes the
        names it matches whose flag is on; a name whose flag is off is refused."""
        out = []
        for name, hook in pairs:
            if isinstance(name, str):
                self._check_live([name], what, "named")
                out.append((name, _guard_tl_patching(name, hook)))
                names, explicit = [name], True
            else:
                matched = [n for n in self.hook_dict if name(n)]
                names = self._check_live(matched, what, "filter")
                out += [(n, hook) for n in names]
                explicit = getattr(name, "layers", None) is not None
            # a masking hook compiles its cut for the layers it is added at, checked once
            # (emg_lens.hooks.EdgeMaskHook.check_applied)
            if (check := getattr(hook, "check_applied", None)) is not None:
                check(self, names, explicit)
        return out

    @contextmanager
    def hooks(
        self,
        fwd_hooks: Sequence[tuple[Any, Callable]] = (),
        bwd_hooks: Sequence[tuple[Any, Callable]] = (),
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
    ) -> Iterator[Any]:
        """TransformerLens's ``hooks()`` (so ``run_with_hooks`` and ``run_with_cache``), the
        names checked first and the model claimed for this thread while it is open. A hook on
        a point whose flag is off is a `HookFlagError`, as in TransformerLens; a filter skips
        such points (refused if it matches nothing else).

        >>> from emg_lens.models import IsoNet
        >>> from emg_lens.hooks import attn_scores_filter
        >>> model = IsoNet(EncoderConfig.preset("tiny"))
        >>> with model.hooks(fwd_hooks=[(attn_scores_filter([2]), lambda t, hook: t)]):
        ...     pass  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        emg_lens.errors.LayoutError: name_filter('attn.hook_attn_scores', [2]) names layers [2] ...
        >>> hook = ("blocks.0.attn.hook_result", lambda t, hook: t)
        >>> try:
        ...     model.run_with_hooks(model.example_input(), fwd_hooks=[hook])
        ... except HookFlagError as exc:
        ...     print(str(exc).split("never fire: ")[1][:55])
        'blocks.0.attn.hook_result' (set_use_attn_result(True))
        """
        fwd_hooks, bwd_hooks = list(fwd_hooks), list(bwd_hooks)
        self._check_hook_names(name for name, _ in [*fwd_hooks, *bwd_hooks])
        fwd_hooks = self._resolve_hooks(fwd_hooks, "fwd_hooks")
        bwd_hooks = self._resolve_hooks(bwd_hooks, "bwd_hooks")
        opener = caller()
        with (
            self._claimed("hooks()"),
            super().hooks(fwd_hooks, bwd_hooks, False, clear_contexts) as model,
        ):
            try:
                yield model
            finally:  # where it is closed: another thread or task takes the claim over
                self._thread_claim.close_here(self.name_in_messages(), opener)
                if reset_hooks_end:  # as TransformerLens's hooks() resets them
                    self.reset_hooks(
                        clear_contexts, including_permanent=False, level=model.context_level
                    )

    def add_hook(self, name: Any, hook: Callable, *args: Any, **kwargs: Any) -> None:
        """TransformerLens's ``add_hook``, with ``name`` checked against this model first; a
        filter hooks the points it matches whose flag is on (see `hooks`)."""
        self._check_hook_names([name])
        with self._claimed("add_hook"):
            if isinstance(name, str):
                super().add_hook(name, hook, *args, **kwargs)  # check_hooks_to_add: flags
                return
            for point, fn in self._resolve_hooks([(name, hook)], "add_hook"):
                super().add_hook(point, fn, *args, **kwargs)

    def reset_hooks(self, *args: Any, **kwargs: Any) -> None:
        """TransformerLens's ``reset_hooks``, the model claimed for this thread."""
        with self._claimed("reset_hooks"):
            super().reset_hooks(*args, **kwargs)

    def remove_all_hook_fns(self, *args: Any, **kwargs: Any) -> None:
        """TransformerLens's ``remove_all_hook_fns``, the model claimed for this thread."""
        with self._claimed("remove_all_hook_fns"):
            super().remove_all_hook_fns(*args, **kwargs)

    def clear_contexts(self) -> None:
        """TransformerLens's ``clear_contexts``, the model claimed for this thread."""
        with self._claimed("clear_contexts"):
            super().clear_contexts()

    def check_hooks_to_add(self, hook_point: Any, hook_point_name: str, *args: Any, **kw: Any):
        """TransformerLens's check before a hook is added: a hook point whose flag is off is
        refused (`HookFlagError`)."""
        self._check_live([hook_point_name], "add_hook", "named")

    def _caching_names(self, names_filter: Any, what: str) -> list[str]:
        """The hook points a caching ``names_filter`` (None, a name, a list of names, or a
        function of the name) selects, aliases read as their hook points, less those whose
        flag is off (named when asked for explicitly; see `_check_live`)."""
        self._check_hook_names([names_filter] if callable(names_filter) else [])
        if names_filter is None:
            return self._check_live(self.hook_dict, what, "all")
        if callable(names_filter):
            matched = [n for n in self.hook_dict if names_filter(n)]
            return self._check_live(matched, what, "filter")
        wanted = [names_filter] if isinstance(names_filter, str) else list(names_filter)
        canonical = {getattr(self.mod_dict.get(n), "name", None) or n for n in wanted}
        matched = [n for n in self.hook_dict if n in canonical]
        return self._check_live(matched, what, "named")

    def get_caching_hooks(
        self,
        names_filter: Any = None,
        incl_bwd: bool = False,
        device: Any = None,
        remove_batch_dim: bool = False,
        cache: dict | None = None,
        pos_slice: Any = None,
    ) -> tuple[dict, list, list]:
        """TransformerLens's caching hooks (``run_with_cache``), ``names_filter`` checked
        first. ``pos_slice`` selects token positions of ``model.layout`` along each
        activation's `token_axis` (where the legacy HookedTransformer slices ``hook_q_input``'s
        head axis); activations without one are cached whole, and one whose token axis is not
        the layout's (a stem's own tokens) is refused by name rather than sliced wrongly.

        >>> from emg_lens.models import IsoNet
        >>> model = IsoNet(EncoderConfig.preset("tiny"))
        >>> _, cache = model.run_with_cache(model.example_input(2), pos_slice=0)
        >>> cache["resid_pre", 0].shape, cache["pattern", 0].shape, cache["hook_input"].shape
        (torch.Size([2, 1, 16]), torch.Size([2, 4, 1, 7]), torch.Size([2, 6, 8]))
        """
        names = self._caching_names(names_filter, "run_with_cache names_filter")
        cache, fwd, bwd = super().get_caching_hooks(
            names, incl_bwd, device, remove_batch_dim=remove_batch_dim, cache=cache
        )
        pos = Slice.unwrap(pos_slice)
        if pos.mode == "identity":
            return cache, fwd, bwd
        n_tokens = self._pos_slice_tokens(pos)
        fwd = [(n, self._sliced(fn, cache, pos, n_tokens, "")) for n, fn in fwd]
        bwd = [(n, self._sliced(fn, cache, pos, n_tokens, "_grad")) for n, fn in bwd]
        return cache, fwd, bwd

    def add_caching_hooks(
        self,
        names_filter: Any = None,
        incl_bwd: bool = False,
        device: Any = None,
        remove_batch_dim: bool = False,
        cache: dict | None = None,
    ) -> dict:
        """TransformerLens's ``add_caching_hooks``, ``names_filter`` checked first (see
        `get_caching_hooks`)."""
        names = self._caching_names(names_filter, "add_caching_hooks names_filter")
        with self._claimed("add_caching_hooks"):
            return super().add_caching_hooks(names, incl_bwd, device, remove_batch_dim, cache)

    def _pos_slice_tokens(self, pos: Slice) -> int:
        """``layout.n_tokens``, with ``pos`` checked against it."""
        if not any(token_axis(name) is not None for name in self.hook_dict):
            raise ArgumentError(f"{type(self).__name__} has no token axis for pos_slice")
        n_tokens = self.layout.n_tokens
        given = pos.slice.tolist() if isinstance(pos.slice, np.ndarray) else pos.slice
        try:
            selected = np.arange(n_tokens)[pos.slice]
        except IndexError as exc:
            raise LayoutError(
                f"pos_slice {given!r} selects a position {type(self).__name__} does not have: "
                f"it has {n_tokens} tokens (0..{n_tokens - 1}, or negative from the end)"
            ) from exc
        if np.size(selected) == 0:
            raise LayoutError(f"pos_slice {given!r} selects no position of the {n_tokens} tokens")
        return n_tokens

    def _sliced(self, save: Callable, cache: dict, pos: Slice, n_tokens: int, suffix: str):
        """The caching hook ``save``, then the cached value cut to ``pos`` on its token axis."""

        def hook(tensor: torch.Tensor, *, hook: Any) -> None:
            save(tensor, hook=hook)
            axis = token_axis(hook.name)
            if axis is None:
                return
            if tensor.ndim <= axis or tensor.shape[axis] != n_tokens:
                raise LayoutError(
                    f"pos_slice selects positions of the model's {n_tokens} tokens, but "
                    f"{hook.name} {list(tensor.shape)} has other tokens along axis {axis}: leave "
                    "it out with names_filter, or cache it whole and slice it yourself"
                )
            key = hook.name + suffix
            stored = cache[key]
            cache[key] = pos.apply(stored, dim=axis - (tensor.ndim - stored.ndim))

        return hook

    # ------------------------------------------------------------------ TL hook flags
    def _set_hook_flag(self, flag: str, value: bool) -> None:
        """Set ``flag`` on the config of the model and of every module with its hook points."""
        check_bool(value, flag)
        owners = [m for m in self.modules() if flag in getattr(m, "OPTIONAL_HOOKS", {}).values()]
        if not owners:
            if not value:
                return  # off is the state it is in
            hooks = sorted({h for h, f in _OPTIONAL_HOOKS.items() if f == flag})
            converters = getattr(self, "converters", None)  # a model that can be converted
            if converters:
                why = (
                    "its attention runs in its own code, where emg_lens sees the scores and "
                    "the pattern only; convert it for TransformerLens weights and per-head "
                    f"hooks: {converters}"
                )
            else:
                why = "it has no attention layers"
            raise UnsupportedFeatureError(
                f"{type(self).__name__} has no {', '.join(hooks)}: {why}; {flag} cannot apply"
            )
        other = {"use_split_qkv_input": "use_attn_in", "use_attn_in": "use_split_qkv_input"}
        if value and flag in other and getattr(self.cfg, other[flag]):
            raise ArgumentError(
                f"{flag} and {other[flag]} are mutually exclusive (as in TransformerLens 4): "
                f"call set_{other[flag]}(False) first"
            )
        with self._claimed(f"set_{flag}"):
            for cfg in {id(c): c for c in [self.cfg] + [m.cfg for m in owners]}.values():
                setattr(cfg, flag, value)

    def set_use_attn_result(self, use_attn_result: bool) -> None:
        """Compute each head's output separately (``attn.hook_result``, ``[batch, pos,
        head_index, d_model]``), as in TransformerLens; stems included. Costs memory: while
        the flag is on every forward computes them (the per-head path, hooked or not), so a
        hook on ``hook_result`` changes no output bit.

        >>> from emg_lens.models import IsoNet
        >>> model = IsoNet(EncoderConfig.preset("tiny"))
        >>> model.set_use_attn_result(True)
        >>> _, cache = model.run_with_cache(model.example_input())
        >>> cache["result", 0].shape
        torch.Size([1, 7, 4, 16])
        """
        self._set_hook_flag("use_attn_result", use_attn_result)

    def set_use_split_qkv_input(self, use_split_qkv_input: bool) -> None:
        """Give every head its own copy of its attention input: ``blocks.{l}.hook_q_input``,
        ``hook_k_input``, ``hook_v_input`` ``[batch, pos, head_index, d_model]`` (the residual
        stream before ``ln1``, which then normalises each copy), as in TransformerLens; also
        named ``blocks.{l}.attn.hook_q_input`` ... (TransformerLens 4's names, which its
        ``patching.get_act_patch_direct_path`` hooks). The function computed is unchanged;
        costs ``3 * n_heads`` copies of the stream. Mutually exclusive with ``use_attn_in``.

        >>> from emg_lens.models import IsoNet
        >>> model = IsoNet(EncoderConfig.preset("tiny"))
        >>> model.set_use_split_qkv_input(True)
        >>> _, cache = model.run_with_cache(model.example_input())
        >>> cache["blocks.0.hook_q_input"].shape
        torch.Size([1, 7, 4, 16])
        """
        self._set_hook_flag("use_split_qkv_input", use_split_qkv_input)

    def set_use_attn_in(self, use_attn_in: bool) -> None:
        """One per-head copy of the attention input for q, k and v together,
        ``blocks.{l}.hook_attn_in`` ``[batch, pos, head_index, d_model]`` (before ``ln1``), as
        in TransformerLens. Mutually exclusive with ``use_split_qkv_input``."""
        self._set_hook_flag("use_attn_in", use_attn_in)

    def set_use_hook_mlp_in(self, use_hook_mlp_in: bool) -> None:
        """Fire ``blocks.{l}.hook_mlp_in`` ``[batch, pos, d_model]``, the MLP branch's input
        before ``ln2`` (a copy of ``hook_resid_mid``: patching it changes the MLP's input
        only), as in TransformerLens."""
        self._set_hook_flag("use_hook_mlp_in", use_hook_mlp_in)

    def tl_parameters(self) -> dict[str, torch.Tensor]:
        """Parameters under their TransformerLens names (what `SVDInterpreter` reads):
        ``named_parameters()``, and a model with an unembedding adds ``unembed.W_U`` /
        ``unembed.b_U`` (`emg_lens.models.tl_surface.WeightSurface`)."""
        return dict(self.named_parameters())
