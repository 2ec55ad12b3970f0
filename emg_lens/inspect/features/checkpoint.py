"""The autoencoder as a checkpoint: ``features.safetensors`` (its weights) and
``features.json`` (format, config and provenance: the model's, data's and code's digests),
written by `write_sae` and read back by `read_sae`, for the model it was trained on only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from emg_lens._io import atomic_write_all, make_folder
from emg_lens.errors import CheckpointError, ConfigError, check_type, describe
from emg_lens.inspect.features.config import FeatureConfig
from emg_lens.inspect.features.sae import TopKSAE
from emg_lens.provenance import model_digest

FEATURES_FORMAT = "emg_lens.features/1"
WEIGHTS, CONFIG = "features.safetensors", "features.json"


def write_sae(out_dir: str | Path, sae: TopKSAE, fields: dict[str, Any]) -> list[Path]:
    """``features.safetensors`` (``sae``'s weights) and ``features.json`` (the format, then
    ``fields``: ``model_class``, ``config`` as a dict, ``provenance`` and optionally
    ``data_source``) into ``out_dir``, together (`emg_lens._io.atomic_write_all`: a write that
    fails is a `StorageError` naming the file).

    >>> import tempfile
    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0)).eval()
    >>> config, folder = FeatureConfig(layer=0, n_features=8, k=2), tempfile.mkdtemp()
    >>> fields = {"model_class": "IsoNet", "config": config.to_dict(),
    ...           "provenance": {"model": model_digest(model)}}
    >>> [p.name for p in write_sae(folder, TopKSAE(model.cfg.d_model, 8, 2), fields)]
    ['features.safetensors', 'features.json']
    >>> read_sae(folder, model)[1]["config"] == config
    True
    """
    out = make_folder(out_dir)
    state = {k: v.detach().contiguous().cpu() for k, v in sae.state_dict().items()}
    info = {"format": FEATURES_FORMAT, **fields}
    weights, text = safetensors_bytes(state), json.dumps(info, indent=2, default=str)
    atomic_write_all(
        {
            out / WEIGHTS: lambda tmp: tmp.write_bytes(weights),
            out / CONFIG: lambda tmp: tmp.write_text(text),
        }
    )
    return [out / WEIGHTS, out / CONFIG]


def read_sae(path: str | Path, model: Any) -> tuple[TopKSAE, dict[str, Any]]:
    """The autoencoder `write_sae` wrote into ``path`` and its info (``config`` read back as a
    `FeatureConfig`); what it refuses, `load_features` lists (a `CheckpointError`)."""
    path = Path(path)
    info = _read_info(path)
    config: FeatureConfig = info["config"]
    digest = model_digest(model)
    if info["provenance"].get("model") != digest:
        trained = str(info["provenance"].get("model"))[:12]
        raise CheckpointError(
            f"{path / CONFIG}: trained on another model ({trained}, not {digest[:12]})"
        )
    config.token_groups(model)
    try:
        state = load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path / WEIGHTS} is not a safetensors file: {exc}") from exc
    sae = TopKSAE(model.cfg.d_model, config.n_features, config.k, seed=config.seed)
    expected = {k: tuple(v.shape) for k, v in sae.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if found != expected:
        raise CheckpointError(f"{path / WEIGHTS}: weights {found}, not the config's {expected}")
    if bad := [name for name, tensor in state.items() if not torch.isfinite(tensor).all()]:
        raise CheckpointError(f"{path / WEIGHTS}: {bad} hold NaN or inf")
    sae.load_state_dict(state)
    return sae, info


def _read_info(path: Path) -> dict[str, Any]:
    file = path / CONFIG
    if not file.is_file() or not (path / WEIGHTS).is_file():
        raise CheckpointError(f"{path} holds no saved sparse features ({CONFIG}, {WEIGHTS})")
    try:
        info = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{file} is not JSON text: {exc}") from exc
    if not isinstance(info, dict) or info.get("format") != FEATURES_FORMAT:
        found = info.get("format") if isinstance(info, dict) else describe(info)
        raise CheckpointError(f"{file}: format must be {FEATURES_FORMAT!r}, got {found!r}")
    for key, kind in (("config", dict), ("provenance", dict), ("model_class", str)):
        check_type(info.get(key), kind, f"{file}: {key}", CheckpointError)
    try:
        info["config"] = FeatureConfig.from_dict(info["config"])
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"{file}: config: {exc}") from exc
    return info
