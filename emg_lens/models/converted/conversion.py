"""What the converters share: the converted classes' base (`ConvertedEncoder`), activation
names, and the check that a conversion computes what its source does.

Each converter builds an emg_lens model from a config read off the source module, then fills
its state dict through its key table (`emg_lens.models.key_table`). It reads the source's
weights, not the code its forward runs, so every converter ends with `check_faithful`: hooks or
a ``forward`` set on an instance are refused by name, and the source and the converted model,
run on a probe input in eval mode, must agree within `PARITY_RTOL` of the output's scale.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from emg_lens.errors import ConversionError, describe
from emg_lens.models.base import HookedEncoder, eval_mode

PARITY_RTOL = {torch.float32: 1e-4, torch.float64: 1e-9}
"""A converted model may differ from its source by this fraction of ``1 + max |output|``, by
dtype: what reordering sums explains (the parity tests find ~1e-6 in float32, ~1e-13 in
float64)."""


RETURN_TYPES = ("logits", "latent")
"""What a converted model's forward returns: logits, or the final stream after ``ln_final``."""


class ConvertedEncoder(HookedEncoder):
    """What the converted classes share: the constructor keywords they keep
    (``self._init_kwargs``, which `init_kwargs` gives back with lists for tuples, for
    ``config.json``), and the return types of their readout (`RETURN_TYPES`)."""

    _init_kwargs: dict[str, Any]
    return_types = RETURN_TYPES

    @property
    def init_kwargs(self) -> dict[str, Any]:
        return {
            k: (list(v) if isinstance(v, (list, tuple)) else v)
            for k, v in self._init_kwargs.items()
        }


def float_dtype(modules: Iterable[nn.Module], what: str) -> torch.dtype:
    """The one floating-point dtype, float32 or float64, of the parameters of ``modules``
    (called ``what`` in the `ConversionError` naming the dtypes found otherwise).

    >>> float_dtype([nn.Linear(2, 2), nn.Linear(2, 2).half()], "the modules")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emg_lens.errors.ConversionError: the modules: parameters of ['torch.float16', ...]; ...
    """
    dtypes = {p.dtype for m in modules for p in m.parameters() if p.is_floating_point()}
    if len(dtypes) != 1 or next(iter(dtypes)) not in (torch.float32, torch.float64):
        raise ConversionError(
            f"{what}: parameters of {sorted(map(str, dtypes))}; the converter reads one dtype, "
            "float32 or float64 (convert with .float() or .double())"
        )
    return dtypes.pop()


def check_self_attention(attn: Any, path: str) -> nn.MultiheadAttention:
    """``attn`` (the module at ``path``) if it is an ``nn.MultiheadAttention`` over one set of
    tokens: ``kdim = vdim = embed_dim``, no ``add_bias_kv`` or ``add_zero_attn``; else an
    `ConversionError` naming ``path`` and what is supported.

    >>> check_self_attention(nn.MultiheadAttention(4, 2, kdim=2), "attn")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emg_lens.errors.ConversionError: attn has kdim=2, vdim=4, add_bias_kv=False, ...
    """
    if type(attn) is not nn.MultiheadAttention:
        raise ConversionError(
            f"{path} is a {type(attn).__name__}; supported: torch.nn.MultiheadAttention", path=path
        )
    if not attn._qkv_same_embed_dim or attn.bias_k is not None or attn.add_zero_attn:
        raise ConversionError(
            f"{path} has kdim={attn.kdim}, vdim={attn.vdim}, add_bias_kv={attn.bias_k is not None}"
            f", add_zero_attn={attn.add_zero_attn}; supported: self-attention (kdim = vdim = "
            f"embed_dim={attn.embed_dim}, no add_bias_kv or add_zero_attn)",
            path=path,
        )
    return attn


# Activation functions and modules an emg_lens MLP computes, by EncoderConfig.act_fn.
_FUNCTIONS: dict[Callable, str] = {F.relu: "relu", F.gelu: "gelu", F.silu: "silu"}


Parts = Sequence[tuple[str, Callable[[Any], Any], str]]
"""A converter's table of what it reads: ``(dotted path, test of what is there, what the
converter supports there)`` (`check_parts`)."""


def check_parts(model: nn.Module, parts: Parts) -> None:
    """Refuse (`ConversionError`, ``path`` set) the first of ``parts`` of ``model`` whose
    test fails, naming its path, its class and what is supported there.

    >>> check_parts(nn.Sequential(nn.ReLU()), [("0", lambda m: isinstance(m, nn.GELU), "GELU")])
    Traceback (most recent call last):
    ...
    emg_lens.errors.ConversionError: Sequential.0 is a ReLU; supported: GELU
    """
    for path, ok, supported in parts:
        part = functools.reduce(getattr, path.split("."), model)
        if not ok(part):
            name = f"{type(model).__name__}.{path} is a {type(part).__name__}"
            raise ConversionError(f"{name}; supported: {supported}", path=path)


def activation_name(activation: Any, path: str) -> str:
    """`EncoderConfig.act_fn` of an activation (a function such as ``F.relu``, a module such
    as ``nn.GELU()``, or the strings torch accepts); anything else is an
    `ConversionError` naming ``path`` and what is supported.

    >>> activation_name(nn.GELU(approximate="tanh"), "layers.0.activation")
    'gelu_new'
    >>> activation_name(torch.tanh, "layers.0.activation")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emg_lens.errors.ConversionError: layers.0.activation is the activation tanh; ...
    """
    if isinstance(activation, str) and activation in ("relu", "gelu"):
        return activation
    if isinstance(activation, nn.ReLU):
        return "relu"
    if isinstance(activation, nn.GELU):
        return "gelu" if activation.approximate == "none" else "gelu_new"
    if isinstance(activation, nn.SiLU):
        return "silu"
    if activation in _FUNCTIONS:
        return _FUNCTIONS[activation]
    name = getattr(activation, "__name__", type(activation).__name__)
    raise ConversionError(
        f"{path} is the activation {name}; supported (as functions, modules or torch's names): "
        "relu, gelu, the tanh GELU (nn.GELU(approximate='tanh')) and silu",
        path=path,
    )


def on_cpu(module: nn.Module) -> nn.Module:
    """The module itself when its tensors are on the CPU, else a copy there: converted models
    are built on the CPU, and the probe compares the two in one place (a CUDA source may also
    compute its convolutions in TF32, which no float32 tolerance covers).

    >>> layer = nn.Linear(2, 2)
    >>> on_cpu(layer) is layer
    True
    """
    tensors = [*module.parameters(), *module.buffers()]
    if all(t.device.type == "cpu" for t in tensors):
        return module
    return copy.deepcopy(module).cpu()


def _hook_name(hook: Any) -> str:
    return getattr(hook, "__qualname__", None) or type(hook).__name__


def refuse_dropped_code(what: str, sources: Mapping[str, nn.Module]) -> None:
    """Refuse what a conversion would silently drop: a lazy module not yet built, a forward
    (pre-)hook on a source module or a submodule, a ``forward`` set on an instance, and global
    forward hooks (which would run on the converted model's modules instead). ``sources``: the
    name to call each source by -> the module; the `ConversionError`'s ``path`` is the module's.

    >>> layer = nn.Linear(2, 2)
    >>> handle = layer.register_forward_hook(lambda m, i, o: 2 * o)
    >>> refuse_dropped_code("convert", {"layer": layer})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emg_lens.errors.ConversionError: convert: layer has a forward hook (<lambda>)...
    >>> handle.remove(); refuse_dropped_code("convert", {"layer": layer})
    """
    every = torch.nn.modules.module  # global hooks run on every module, the converted's too
    hooks: list[tuple[str, str, Mapping]] = [
        ("", "global forward hook", every._global_forward_hooks),
        ("", "global forward pre-hook", every._global_forward_pre_hooks),
    ]
    for root, source in sources.items():
        for name, module in source.named_modules():
            path = f"{root}.{name}" if name else root
            # torch types the method's self as a protocol that LazyModuleMixin alone does not
            # meet; every module here is an nn.Module as well
            if isinstance(module, LazyModuleMixin) and module.has_uninitialized_params():  # type: ignore[misc]
                raise ConversionError(
                    f"{what}: {path} is a {type(module).__name__} not yet built: run the model "
                    "once on a window (which builds it for that size), then convert",
                    path=path,
                )
            if "forward" in vars(module):
                raise ConversionError(
                    f"{what}: {path} has its own forward ({_hook_name(vars(module)['forward'])}, "
                    "set on the instance), which the converted weights drop: remove the patch",
                    path=path,
                )
            hooks += [(path, "forward hook", module._forward_hooks)]
            hooks += [(path, "forward pre-hook", module._forward_pre_hooks)]
    for path, kind, found in hooks:
        if found:
            names = ", ".join(_hook_name(h) for h in found.values())
            raise ConversionError(
                f"{what}: {path or 'every module'} has a {kind} ({names}): the conversion reads "
                "weights, not the code forward runs; remove it (handle.remove()), hook the result",
                path=path,
            )


def check_faithful(
    what: str,
    sources: Mapping[str, nn.Module],
    original: Callable[[], torch.Tensor],
    converted: Callable[[], torch.Tensor],
    *,
    rtol: float | None = None,
) -> None:
    """Refuse a conversion that computes something other than its source: what it would drop
    (`refuse_dropped_code`), then ``original()`` (the sources in eval mode) against
    ``converted()``, differing by more than ``rtol * (1 + max |original|)`` (`PARITY_RTOL`).

    >>> torch.manual_seed(0) and None
    >>> source, x = nn.Linear(3, 2), torch.randn(2, 3)
    >>> copy = nn.Linear(3, 2).requires_grad_(False)
    >>> _ = copy.weight.copy_(source.weight), copy.bias.copy_(source.bias)
    >>> check_faithful("copy", {"source": source}, lambda: source(x), lambda: copy(x))
    >>> _ = copy.bias.add_(1)
    >>> check_faithful("copy", {"source": source}, lambda: source(x), lambda: copy(x))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emg_lens.errors.ConversionError: copy: the converted model differs from the source by 1 (max |diff|) on a probe input, above the tolerance ...
    """  # noqa: E501
    refuse_dropped_code(what, sources)
    with eval_mode(*sources.values()):
        try:
            expected = original()
        except Exception as exc:  # the user's model: say what it was running
            raise ConversionError(
                f"{what}: the source failed on the probe input that checks the conversion: {exc!r}"
            ) from exc
    ours = converted()
    if not isinstance(expected, torch.Tensor) or expected.shape != ours.shape:
        raise ConversionError(
            f"{what}: on a probe input the source returned {describe(expected)}, the converted "
            f"model {describe(ours)}; they must agree"
        )
    diff = float((ours.detach() - expected.detach()).abs().max())
    if rtol is None:
        rtol = PARITY_RTOL.get(expected.dtype, PARITY_RTOL[torch.float32])
    tolerance = rtol * (1.0 + float(expected.detach().abs().max()))
    if not diff <= tolerance:
        raise ConversionError(
            f"{what}: the converted model differs from the source by {diff:.3g} (max |diff|) "
            f"on a probe input, above the tolerance {tolerance:.3g}: a source module whose "
            "forward is not its class's?"
        )
