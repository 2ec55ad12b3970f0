"""`EncoderConfig`: the TransformerLens config of every emg_lens model, plus biosignal fields.

A config says how big the transformer is (the TransformerLens fields) and what a signal batch
looks like (modalities, channels, samples per window and per token). Everything else — the
number of tokens, the token layout, ``n_ctx`` — is derived from it, so it cannot disagree.

>>> cfg = EncoderConfig.preset("tiny")
>>> cfg.n_channels, cfg.n_tokens, cfg.n_ctx
(6, 7, 7)
>>> EncoderConfig.preset("paper").d_model
512
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from transformer_lens.config import TransformerLensConfig

from emg_lens._hints import checked
from emg_lens.errors import (
    ConfigError,
    check_channel_names,
    check_field_types,
    check_int,
    check_seed,
    fields_checked,
)

__all__ = ["PRESETS", "EncoderConfig", "config_for_data"]

ACTIVATIONS = ("relu", "gelu", "gelu_new", "silu")
NORMALIZATIONS = ("LN", None)
POSITIONAL_EMBEDDINGS = ("standard", "rotary", "none")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
TOKENIZATIONS = ("channel", "tubelet", "custom")
NORM_POSITIONS = ("pre", "post")
ZERO_BIASES = ("b_Q", "b_K", "b_V", "b_O", "b_in", "b_out", "ln1.b", "ln2.b", "ln_final.b")
HOOK_FLAGS = ("use_attn_result", "use_split_qkv_input", "use_attn_in", "use_hook_mlp_in")
"""The TransformerLens flags that turn optional hook points on; not architecture (a checkpoint
loads whatever they are)."""

ADDED_FIELD_DEFAULTS: dict[str, Any] = {
    "channel_names": None,
    "norm_position": "pre",
    "final_norm": True,
    "zero_biases": [],
    "attn_scale": None,
    "qk_norm": False,
    "use_attn_in": False,
    "use_hook_mlp_in": False,
}
"""Fields added after emg_lens 0.1's checkpoints, and their defaults: `to_dict` leaves each out
while it holds its default, so digests of models that do not use them are unchanged, and an
older checkpoint (which lacks them) loads with the default, which is what it computed."""


def _one_of(options: Any) -> tuple[str, Callable[[Any], bool]]:
    """A `FIELD_RULES` entry: a value among ``options``."""
    return f"one of {options}", lambda v: v in options


def _at_least(low: int) -> tuple[str, Callable[[Any], bool]]:
    return ("a positive int" if low else "a non-negative int"), lambda v: v >= low


FIELD_RULES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    # 0 layers is allowed: a model whose layers all live elsewhere (the stems of the
    # MultimodalTransformer) has an empty shared stack
    **{name: _at_least(1) for name in ("d_model", "d_head", "n_heads", "n_samples", "n_classes")},
    **{name: _at_least(0) for name in ("n_layers", "n_stem_layers")},
    **{name: _at_least(1) for name in ("d_hidden", "d_mlp", "patch_samples")},  # or None
    "tokenization": _one_of(TOKENIZATIONS),
    "act_fn": _one_of(ACTIVATIONS),
    "normalization_type": _one_of(NORMALIZATIONS),
    "positional_embedding_type": _one_of(POSITIONAL_EMBEDDINGS),
    "norm_position": _one_of(NORM_POSITIONS),
    "dtype": (f"one of {sorted(DTYPES)}", lambda v: v in DTYPES.values()),
    "eps": ("a number > 0", lambda v: v > 0),
    "dropout": ("a number in [0, 1)", lambda v: 0 <= v < 1),
    "attn_scale": ("None (sqrt(d_head)) or a number > 0", lambda v: v > 0),
    **{
        flag: ("False: emg_lens encoders do not support it", lambda v: not v)
        for flag in ("attn_only", "gated_mlp", "uses_rms_norm")
    },
    "zero_biases": (
        f"a list of bias names from {ZERO_BIASES}",
        lambda v: isinstance(v, list | tuple) and all(n in ZERO_BIASES for n in v),
    ),
}
"""What each field accepts past its declared type (`check_field_types`: an int field holds an
int): (in words, the test), read by `EncoderConfig`'s one loop; None passes where the type
allows it."""


@fields_checked
@dataclass
class EncoderConfig(TransformerLensConfig):
    """Config of a TransformerLens-hookable biosignal encoder.

    The TransformerLens fields keep their meaning; ``n_ctx`` is derived from the signal shape
    (pass ``-1``, the default, or the matching value)."""

    # --- transformer size (TransformerLens names); defaults are the "tiny" preset ---
    d_model: int = 16
    d_head: int = 4
    n_layers: int = 2
    n_ctx: int = -1  # derived: number of tokens (CLS + channels x patches)
    n_heads: int = 4
    d_mlp: int | None = 32
    act_fn: str = "gelu"
    normalization_type: str | None = "LN"
    positional_embedding_type: str = "standard"  # "standard" (learned), "rotary", "none"
    eps: float = 1e-5
    device: str | None = "cpu"

    # --- rotary embeddings (TinyMyo); ignored unless positional_embedding_type == "rotary" ---
    rotary_dim: int | None = None  # None: the whole head (d_head)
    rotary_base: float = 10000.0
    rotary_adjacent_pairs: bool = False  # True: rotate (x[2i], x[2i+1]) pairs (torchtune style)

    # --- biosignal input ---
    modalities: dict[str, int] = field(default_factory=lambda: {"emg": 2, "acc": 4})
    n_samples: int = 8  # samples per channel in one input window
    patch_samples: int | None = None  # samples per token; None: one token per channel
    sample_rate: float = 2000.0  # Hz, recorded for the data pipeline and the docs
    use_cls_token: bool = True
    n_classes: int = 4
    dropout: float = 0.0  # on embeddings and sub-layer outputs, in training only
    init_range: float = 0.02  # std of the normal initialisation of weight matrices
    seed: int | None = None  # seeds the initialisation when set

    # --- fusion baselines (models.native.fusion); the defaults change nothing elsewhere ---
    # "channel": one token per channel and patch (IsoNet, TinyMyo). "tubelet": one token per
    # modality and patch, embedding all of that modality's channels, after one CLS token per
    # modality when use_cls_token (MultimodalTransformer, HierarchicalTransformer). "custom": the
    # model's own layout says what its n_ctx tokens are (converted models whose tokens are not
    # channel x patch, such as EEGPT's per-patch summary tokens, or a user's tokenizer).
    tokenization: str = "channel"
    # Layers of each per-modality stem (`stems.{modality}.blocks`); n_layers stays the depth of
    # the shared/fusion stack `blocks`, which is what TransformerLens tools count. The paper
    # gives 5 layers in all but not the split: HierarchicalTransformer.default_config("paper")
    # uses 2 stem + 3 fusion layers; the MultimodalTransformer has n_layers=0 (no fusion stack).
    n_stem_layers: int = 2
    d_hidden: int | None = None  # MultimodalMLP width (the paper's 200); None: d_model

    # --- channel names: one per input channel, in `modalities` order (e.g. 10-20 EEG names), so
    # edge sets can name channels and scalp regions (`emg_lens.edges`); None: unnamed ---
    channel_names: list[str] | None = None

    # --- converted architectures (see ADDED_FIELD_DEFAULTS); the defaults are every native model's.
    # "pre": resid + f(ln(resid)) (TransformerLens's form); "post": ln(resid + f(resid)), torch's
    # norm_first=False (emg_lens.components.block says where the hooks sit)
    norm_position: str = "pre"
    final_norm: bool = True  # False: ln_final is the identity (no norm after the last block)
    # TransformerLens bias names held at zero, not learned and not saved (a bias=False layer):
    # any of ZERO_BIASES ("ln1.b" etc.: a LayerNorm without a bias)
    zero_biases: list[str] = field(default_factory=list)
    attn_scale: float | None = None  # attention scores are q.k / attn_scale; None: sqrt(d_head)
    qk_norm: bool = False  # LayerNorm (eps, over d_head) on every head's q and k (LaBraM)

    # --- optional hook points (TransformerLens's flags; use_attn_result and use_split_qkv_input
    # are TransformerLensConfig's): per-head copies of the attention input (hook_attn_in) and
    # the MLP branch's input (hook_mlp_in); set them with model.set_use_attn_in(...) etc.
    use_attn_in: bool = False
    use_hook_mlp_in: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.dtype, str):
            self.dtype = DTYPES.get(self.dtype, self.dtype)
        self._validate()
        if self.n_ctx == -1:
            self.n_ctx = self.n_tokens
        super().__post_init__()

    @property
    def n_channels(self) -> int:
        """Total input channels over all modalities, in ``modalities`` order."""
        return sum(self.modalities.values())

    @property
    def n_patches(self) -> int:
        """Tokens per channel (time patches)."""
        return self.n_samples // (self.patch_samples or self.n_samples)

    @property
    def n_tokens(self) -> int:
        """Sequence length: the CLS token (if any) plus one token per channel and patch; with
        ``tokenization="tubelet"``, per modality a CLS token (if any) plus one token per patch;
        with ``"custom"``, ``n_ctx`` (the model's layout defines its tokens)."""
        if self.tokenization == "custom":
            return self.n_ctx
        if self.tokenization == "tubelet":
            return len(self.modalities) * (int(self.use_cls_token) + self.n_patches)
        return int(self.use_cls_token) + self.n_channels * self.n_patches

    @property
    def token_samples(self) -> int:
        """Samples of one channel that one token embeds."""
        return self.patch_samples or self.n_samples

    def _validate(self) -> None:
        # every field's type, from its declaration (TransformerLens's fields too): an int field
        # refuses True, a float field NaN and inf; then each field's range (FIELD_RULES), then
        # what fields must say together
        check_field_types(self)
        if self.seed is not None:
            check_seed(self.seed, "EncoderConfig.seed")
        for name, (accepted, ok) in FIELD_RULES.items():
            if (value := getattr(self, name)) is not None and not ok(value):
                raise ConfigError(f"EncoderConfig.{name} must be {accepted}, got {value!r}")
        if self.tokenization == "custom" and self.n_ctx <= 0:
            custom = "the number of tokens (a positive int) with tokenization='custom'"
            raise ConfigError(f"EncoderConfig.n_ctx must be {custom}, got {self.n_ctx!r}")
        if self.use_split_qkv_input and self.use_attn_in:
            both = "EncoderConfig.use_split_qkv_input and use_attn_in"  # as in TL 4's bridge
            raise ConfigError(f"{both} are mutually exclusive: hook_q/k/v_input or hook_attn_in")
        self._validate_modalities()
        self._validate_channel_names()
        if self.patch_samples is not None and self.n_samples % self.patch_samples:
            divide = f"patch_samples={self.patch_samples} must divide n_samples={self.n_samples}"
            raise ConfigError(f"EncoderConfig.{divide}")
        if self.n_ctx not in (-1, self.n_tokens):
            shape = f"the signal shape, which gives {self.n_tokens} tokens"
            raise ConfigError(
                f"EncoderConfig.n_ctx={self.n_ctx} disagrees with {shape}: leave it -1"
            )
        dim = self.d_head if self.rotary_dim is None else self.rotary_dim
        if self.positional_embedding_type == "rotary" and dim not in range(2, self.d_head + 1, 2):
            wanted = f"even and in [2, d_head={self.d_head}]"
            raise ConfigError(f"EncoderConfig.rotary_dim must be {wanted}, got {self.rotary_dim!r}")
        self.zero_biases = [name for name in ZERO_BIASES if name in self.zero_biases]  # in order

    def _validate_modalities(self) -> None:
        names = [n for n in self.modalities if isinstance(n, str) and n.isidentifier()]
        if not names or len(names) < len(self.modalities) or "cls" in names:
            wanted = "a non-empty dict of modality name (an identifier but 'cls') -> channel count"
            raise ConfigError(f"EncoderConfig.modalities must be {wanted}, got {self.modalities!r}")
        for name, count in self.modalities.items():
            check_int(count, f"EncoderConfig.modalities[{name!r}] (channels)", 1, None, ConfigError)

    def _validate_channel_names(self) -> None:
        names, what = self.channel_names, "EncoderConfig.channel_names"
        if names is None:
            return
        form = "a list of channel names, one per input channel in modalities order (e.g. ['C3'])"
        check_channel_names(names, what, ConfigError, (list, tuple), form)
        twice = next((f", not unique: {n!r} twice" for n in names if names.count(n) > 1), "")
        if len(names) != self.n_channels or twice:
            wanted = f"{self.n_channels} names (n_channels={self.n_channels} of {self.modalities})"
            raise ConfigError(f"{what} must hold {wanted}, each once, got {len(names)}{twice}")
        self.channel_names = list(names)  # a copy: the config owns its list

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> EncoderConfig:
        """Build a named preset, with any field overridden.

        >>> EncoderConfig.preset("demo", n_layers=3).n_layers
        3
        """
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls.from_dict({**PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (``dtype`` as its name); a field of
        `ADDED_FIELD_DEFAULTS` only where it differs from its default.

        >>> "norm_position" in EncoderConfig().to_dict()
        False
        >>> EncoderConfig(norm_position="post").to_dict()["norm_position"]
        'post'
        """
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["dtype"] = str(self.dtype).removeprefix("torch.")
        out["modalities"] = dict(self.modalities)
        for name, default in ADDED_FIELD_DEFAULTS.items():
            if out[name] == default:
                del out[name]
            elif name in ("channel_names", "zero_biases"):
                out[name] = list(out[name])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncoderConfig:
        """Inverse of `to_dict`; unknown keys are an error, not silently dropped."""
        known = {f.name for f in dataclasses.fields(cls)}
        if unknown := set(data) - known:
            raise ConfigError(f"unknown EncoderConfig field(s) {sorted(unknown)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


@checked
def config_for_data(
    model_cls: type,
    base: str | EncoderConfig,
    modalities: Mapping[str, int],
    n_classes: int,
    n_samples: int,
    **overrides: Any,
) -> EncoderConfig:
    """The config of a ``model_cls`` fitted to the data: its ``modalities`` (channels each),
    ``n_classes`` and ``n_samples`` per window, with any other fields in ``overrides``.

    ``base`` is a preset name (built by the class's ``default_config`` where it has one, else
    `EncoderConfig.preset`) or a config, whose other fields are kept.

    >>> from emg_lens.models import IsoNet, MultimodalTransformer
    >>> cfg = config_for_data(IsoNet, "demo", {"emg": 3}, 5, 40, seed=0)
    >>> cfg.modalities, cfg.n_classes, cfg.n_ctx, cfg.d_model, cfg.seed
    ({'emg': 3}, 5, 4, 32, 0)
    >>> config_for_data(IsoNet, cfg, {"emg": 2, "acc": 6}, 5, 40).n_ctx
    9
    >>> config_for_data(MultimodalTransformer, "demo", {"emg": 2}, 3, 80).patch_samples
    40
    """
    settings = {
        **overrides,
        "modalities": dict(modalities),
        "n_classes": n_classes,
        "n_samples": n_samples,
    }
    if isinstance(base, EncoderConfig):
        return EncoderConfig.from_dict({**base.to_dict(), "n_ctx": -1, **settings})
    if not isinstance(base, str):
        accepted = f"a preset name ({sorted(PRESETS)}) or an EncoderConfig"
        raise ConfigError(f"base must be {accepted}, got {type(base).__name__}")
    build = getattr(model_cls, "default_config", None)
    if build is not None:
        return build(base, **settings)
    return EncoderConfig.preset(base, **settings)


# The NinaPro DB2 montage: 12 sEMG electrodes, each with a 3-axis accelerometer.
DB2_MODALITIES = {"emg": 12, "acc": 36}

PRESETS: dict[str, dict[str, Any]] = {
    # Small enough that a test builds and runs a model in milliseconds.
    "tiny": {},
    # Small enough for a CPU: 100 ms windows at 2 kHz of DB2's 48 channels and a 5-layer stack
    # like the paper's, narrow enough to train one model per subject in seconds on two cores.
    # `emg-lens demo` builds it with 2 layers and 8 heads (emg_lens.cli.demo.DEMO_MODEL), fitted
    # to its data: 12 sEMG and 12 ACC channels, 100 samples, 8 gestures.
    "demo": {
        "d_model": 32,
        "d_head": 8,
        "n_heads": 4,
        "n_layers": 5,
        "d_mlp": 64,
        "modalities": DB2_MODALITIES,
        "n_samples": 200,
        "n_classes": 12,
        "dropout": 0.0,
    },
    # The IsoNet backbone of the paper: 512-D, 8 heads, 5 layers, 128-D feed-forward.
    "paper": {
        "d_model": 512,
        "d_head": 64,
        "n_heads": 8,
        "n_layers": 5,
        "d_mlp": 128,
        "modalities": DB2_MODALITIES,
        "n_samples": 1000,  # 0.5 s at 2 kHz: the transient segment of a repetition
        "n_classes": 17,  # NinaPro DB2 Exercise B
        "dropout": 0.1,
    },
    # TinyMyo (BioFoundation): 16 sEMG channels x 50 patches of 20 samples = 800 tokens,
    # no CLS token, interleaved-pair RoPE on the flattened token index, 8 pre-LN blocks.
    "tinymyo": {
        "modalities": {"emg": 16},
        "n_samples": 1000,  # 0.5 s at 2 kHz
        "patch_samples": 20,
        "use_cls_token": False,
        "positional_embedding_type": "rotary",
        "rotary_adjacent_pairs": True,
        "d_model": 192,
        "d_head": 64,
        "n_heads": 3,
        "d_mlp": 768,
        "n_layers": 8,
        "act_fn": "gelu",
        "eps": 1e-5,
        "sample_rate": 2000.0,
    },
}
"""The named configurations `EncoderConfig.preset` builds, by name: the fields each sets."""


DEVICES = "'cpu', 'cuda' or 'cuda:N' (N a GPU index)"


def check_device(
    device: Any, where: str, error: type, *, available: bool = True, accepted: str = DEVICES
) -> None:
    """``device`` (None: the config's) one emg_lens loads onto and, with ``available``, one
    this machine has; else ``error`` naming ``where`` and what is ``accepted``.

    >>> check_device("tpu", "device", ValueError)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: device = 'tpu' is not a device emg_lens loads models onto; accepted: 'cpu', ...
    """
    if device is None:
        return
    try:
        parsed = torch.device(device) if isinstance(device, str | torch.device) else None
    except (RuntimeError, ValueError):
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda"):
        loads = "is not a device emg_lens loads models onto"
        raise error(f"{where} = {device!r} {loads}; accepted: {accepted}")
    if parsed.type == "cuda" and available:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            gpu = f"no CUDA GPU that torch {torch.__version__} can use"
            raise error(f"{where} = {device!r}, but this machine has {gpu}: load it on 'cpu'")
        if parsed.index is not None and parsed.index >= count:
            accepted = ", ".join(["'cpu'", *(f"'cuda:{i}'" for i in range(count))])
            raise error(
                f"{where} = {device!r}: this machine has {count} GPUs; accepted: {accepted}"
            )
