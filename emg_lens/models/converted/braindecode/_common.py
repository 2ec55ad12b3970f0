"""What the braindecode converters share: reading a braindecode model's sizes and channel
names (recognising one: `emg_lens.models.braindecode_common`), and the readout through a linear
map of one token (a TransformerLens unembedding)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypedDict

import torch
from jaxtyping import Float
from torch import nn
from transformer_lens.hook_points import HookPoint

from emg_lens.components import ClassifierHead, ConfigInit
from emg_lens.config import EncoderConfig
from emg_lens.errors import ArgumentError, ConversionError, UnsupportedFeatureError, check_names
from emg_lens.models.braindecode_common import Braindecode
from emg_lens.models.converted.conversion import ConvertedEncoder, activation_name, float_dtype


class LayerKw(TypedDict):
    """The keywords of a converter's ``Config*`` torch layer (`emg_lens.components.init`):
    ``ConfigLinear(4, 2, **layer_kw(cfg))`` is built in ``cfg.dtype`` and drawn as it says."""

    dtype: torch.dtype
    init_std: float


def layer_kw(cfg: EncoderConfig) -> LayerKw:
    """`LayerKw` of ``cfg``.

    >>> layer_kw(EncoderConfig.preset("tiny"))
    {'dtype': torch.float32, 'init_std': 0.02}
    """
    return {"dtype": cfg.dtype, "init_std": cfg.init_range}


def eeg_config(
    n_chans: int,
    n_times: int,
    n_outputs: int,
    ch_names: list[str] | None,
    dtype: torch.dtype,
    fields: Mapping[str, Any],
) -> EncoderConfig:
    """The `EncoderConfig` a converted class's ``config`` builds: what every one reads (its
    ``n_chans`` EEG channels of ``n_times`` samples, ``n_outputs`` classes, ``ch_names``,
    ``dtype``), then its own ``fields`` (sizes, then the caller's overrides)."""
    common = {"modalities": {"eeg": n_chans}, "n_samples": n_times, "n_classes": n_outputs}
    return EncoderConfig(**{**common, "channel_names": ch_names, "dtype": dtype, **fields})


def size(model: Any, name: str) -> Any:
    """A braindecode model's ``n_chans``, ``n_times``, ``n_outputs`` ... (or a dotted path to
    an attribute of a submodule): its value, or a `ConversionError` saying the model was built
    without it."""
    value = model
    try:
        for part in name.split("."):
            value = getattr(value, part)
    except ValueError as exc:  # braindecode's "n_times could not be inferred" etc.
        raise ConversionError(
            f"{type(model).__name__}.{name} is not set ({exc}); build the braindecode model "
            f"with {name}=... to convert it"
        ) from exc
    return value


Field = str | Callable[[Any], Any]
"""How a config argument is read off a braindecode model: a dotted attribute path, or a
function of the model."""


def read_config(
    model: Braindecode,
    fields: Mapping[str, Field],
    ch_names: Sequence[str] | None,
    input_size: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """The keyword arguments of a hooked class's ``config`` read off a braindecode ``model``:
    ``n_chans``, ``n_times`` (``input_size`` where given: a model built without them whose
    converter reads them otherwise), ``ch_names`` (`channel_names`) and ``dtype``
    (`float_dtype`), which every converter reads, then each of ``fields`` (a path through
    `size`, or a function of the model).

    >>> class Net(nn.Module):
    ...     n_chans, n_times = 2, 8
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.head = nn.Linear(4, 3)
    >>> read_config(Net(), {"n_outputs": "head.out_features"}, ["C3", "C4"])
    {'n_chans': 2, 'n_times': 8, 'ch_names': ['C3', 'C4'], 'dtype': torch.float32, 'n_outputs': 3}
    """
    n_chans, n_times = input_size or (size(model, "n_chans"), size(model, "n_times"))
    out = {
        "n_chans": n_chans,
        "n_times": n_times,
        "ch_names": channel_names(model, ch_names, n_chans),
        "dtype": float_dtype([model], f"the {type(model).__name__}"),
    }
    for name, field in fields.items():
        out[name] = size(model, field) if isinstance(field, str) else field(model)
    return out


def channel_names(model: Any, ch_names: Sequence[str] | None, n_channels: int) -> list[str] | None:
    """The names of the model's input channels: ``ch_names`` if given, else the ``ch_name``
    of each entry of its ``chs_info`` (None when it has none)."""
    what = "ch_names"
    if ch_names is None:
        info = getattr(model, "_chs_info", None)
        if not info:
            return None
        ch_names, what = [ch["ch_name"] for ch in info], f"{type(model).__name__}.chs_info ch_name"
    if isinstance(ch_names, str) or not all(isinstance(n, str) for n in ch_names):
        raise ArgumentError(f"ch_names must be a list of channel names, got {ch_names!r}")
    check_names(ch_names, what)  # names reach pages: no markup, nothing unprintable
    if len(ch_names) != n_channels:
        raise ArgumentError(f"ch_names must be n_chans={n_channels} names, got {len(ch_names)}")
    return list(ch_names)


def per_layer(model: Braindecode, layers: str, *names: str) -> list[tuple[str, Any]]:
    """``(path, module)`` of the submodules ``names`` (dotted paths) of every layer in the list
    at the dotted path ``layers`` of a braindecode model: what `eps_of` and `one_activation`
    read.

    >>> net = nn.ModuleDict({"layers": nn.ModuleList([nn.TransformerEncoderLayer(4, 1)] * 2)})
    >>> [path for path, _ in per_layer(net, "layers", "norm1", "norm2")]
    ['layers.0.norm1', 'layers.0.norm2', 'layers.1.norm1', 'layers.1.norm2']
    """
    return [
        (f"{layers}.{i}.{name}", size(layer, name))
        for i, layer in enumerate(size(model, layers))
        for name in names
    ]


def one_activation(activations: Iterable[tuple[str, Any]]) -> str:
    """`EncoderConfig.act_fn` of the activation every layer shares, read from ``(path,
    activation)`` pairs (`activation_name`); a layer with another is a `ConversionError`
    naming it and the first; none at all, a `ConversionError` too."""
    first_path, first = None, None
    for path, activation in activations:
        name = activation_name(activation, path)
        if first is None:
            first_path, first = path, name
        elif name != first:
            raise ConversionError(f"{path} is {name}, {first_path} {first}")
    if first is None:
        raise ConversionError("the model has no layer to read its activation function from")
    return first


def eps_of(norms: Sequence[tuple[str, nn.Module]], what: str) -> float:
    """The one ``eps`` of several LayerNorms (named), or a `ConversionError` naming the odd one."""
    eps = {path: float(getattr(norm, "eps", 1e-5)) for path, norm in norms}
    first = next(iter(eps.values()))
    odd = {p: e for p, e in eps.items() if e != first}
    if odd:
        raise ConversionError(f"{what}: the norms must share one eps, got {first}, {odd}")
    return first


class TokenClassifier(ClassifierHead):
    """`ClassifierHead` on one token's stream (a braindecode ``final_layer`` Linear on one
    token): TransformerLens's unembedding, read at one position.

    >>> head = TokenClassifier(EncoderConfig.preset("tiny"), position=0)
    >>> head(torch.randn(2, 7, 16)).shape
    torch.Size([2, 4])
    """

    def __init__(self, cfg: EncoderConfig, position: int):
        super().__init__(cfg)
        self.position = position

    def forward(
        self, latent: Float[torch.Tensor, "batch pos d_model"]
    ) -> Float[torch.Tensor, "batch n_classes"]:
        return super().forward(latent[:, self.position])


class BraindecodeEncoder(ConvertedEncoder):
    """A converted braindecode model: `ConvertedEncoder`, its tokenizer's and readout's
    braindecode-named weights (torch layers built as `emg_lens.components.init`'s
    ``Config*`` layers) drawn by the config too when it is built from a config alone."""

    no_unembedding = ""
    """Why the readout is no TransformerLens unembedding, where a model's never is one."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__(cfg)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]: the tokens
        self.hook_pos_embed = HookPoint()  # [batch, pos, d_model]: what is added to them

    def _unembedding(self) -> nn.Module:
        """A `TokenClassifier` head (``W_U``, ``b_U``); for another, the error saying why
        there is no unembedding (`no_unembedding`)."""
        if isinstance(self.head, TokenClassifier):
            return self.head
        if self.no_unembedding:
            raise UnsupportedFeatureError(
                f"{type(self).__name__} has no TransformerLens unembedding: {self.no_unembedding}"
            )
        return super()._unembedding()

    @property
    def unembed_positions(self) -> list[int]:
        head = self._unembedding()  # raises where the readout is no unembedding
        assert isinstance(head, TokenClassifier)
        return [head.position]

    def init_weights(self) -> None:
        """Every parameter by its module's rule (`ConfigInit.draw_parameter`), the
        TransformerLens-named ones first, then braindecode's: the order the draws have always
        had, so a model built from a config alone keeps its seeded weights bit for bit."""
        owned = [
            (module, name, param)
            for module in self.modules()
            if isinstance(module, ConfigInit)
            for name, param in module.named_parameters(recurse=False)
        ]
        for tl_names in (True, False):
            for module, name, param in owned:
                if _tl_name(name) == tl_names:
                    module.draw_parameter(name, param)


def _tl_name(name: str) -> bool:
    """Whether a parameter's own name is one of TransformerLens's (``W_Q``, ``b_in``, ``w``,
    ``cls_token``), not one of braindecode's (``weight``, ``position_embedding``)."""
    return name.startswith(("W_", "b_")) or name in ("w", "b", "cls_token")
