"""Checkpoints: a folder with ``model.safetensors`` and ``config.json``.

``config.json`` records the model class, its `EncoderConfig`, any constructor keywords, free
metadata (subject, classes, how to rebuild the data, training settings, metrics) and the SHA-256
of the ``model.safetensors`` saved with it, so a checkpoint folder alone rebuilds an identical
model, and a save stopped between its two files is refused (`save_checkpoint`).

>>> import tempfile
>>> from emg_lens.models import IsoNet
>>> model = IsoNet(EncoderConfig.preset("tiny", seed=0))
>>> path = save_checkpoint(model, tempfile.mkdtemp(), metadata={"subject": 1})
>>> again = load_checkpoint(path)
>>> all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
...                                        again.state_dict().values()))
True
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import os
import pickle
import re
import shutil
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as safetensors_tensors
from safetensors.torch import save as safetensors_bytes

from emg_lens._hints import checked
from emg_lens._io import (
    atomic_write_all,
    file_digest,
    files_digest,
    json_digest,
    make_folder,
    no_file,
)
from emg_lens.config import ADDED_FIELD_DEFAULTS, HOOK_FLAGS, EncoderConfig, check_device
from emg_lens.errors import (
    ArgumentError,
    CheckpointError,
    ConfigError,
    EmgLensError,
    check_type,
    mismatch,
    warn_caller,
)
from emg_lens.models import MODEL_CLASSES, HookedBiosignalModel, TinyMyo

if TYPE_CHECKING:
    from emg_lens.data.preprocess import SubjectData

__all__ = [
    "CHECKPOINT_FORMAT",
    "check_checkpoint",
    "load_biofoundation",
    "load_checkpoint",
    "load_checkpoint_data",
    "read_biofoundation_state_dict",
    "read_checkpoint_info",
    "save_checkpoint",
    "user_modules_of",
]

CHECKPOINT_FORMAT = "emg_lens.checkpoint/1"
"""The ``format`` that ``config.json`` records, which loading checks."""
WEIGHTS, CONFIG = "model.safetensors", "config.json"
FOLDER = f"give an emg_lens checkpoint folder, holding {CONFIG} and {WEIGHTS}"
INFO_KEYS = ("format", "model_class", "model_kwargs", "config", "metadata")
"""The keys of ``config.json``, each written by `save_checkpoint` and needed to load it."""
WEIGHTS_DIGEST = "weights_sha256"
"""The key of ``config.json`` that holds the SHA-256 of the ``model.safetensors`` saved with it
(absent from checkpoints saved before it was written: those load unchecked)."""


def _folder(path: Any, where: str) -> Path:
    """``path`` as a `Path`, or an `ArgumentError` naming ``where``'s argument: a str or a path.
    Checked here, not by `check_type`, so a study loading its models stays out of errors.py."""
    if not isinstance(path, str | os.PathLike):
        msg = f"{where}(path), a checkpoint folder, must be a string or a PathLike, got {path!r}"
        raise ArgumentError(msg)
    return Path(path)


@checked
def save_checkpoint(
    model: HookedBiosignalModel, path: str | Path, *, metadata: dict[str, Any] | None = None
) -> Path:
    """Save ``model`` into folder ``path`` (created if needed); returns the folder.

    The weights are stored as CPU tensors (the config says ``device="cpu"``), so a model
    trained on a GPU loads anywhere. What loading would refuse is never saved
    (`CheckpointError`): a NaN or inf weight, metadata such as a ``subject`` that is not an
    int. The weights and ``config.json`` are put in place together
    (`emg_lens._io.atomic_write_all`): a full disk leaves the folder as it was."""
    path = _folder(path, "save_checkpoint")
    check_type(model, HookedBiosignalModel, "save_checkpoint(model), an emg_lens model,")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    _check_finite(state, f"{type(model).__name__} (not saved to {path})")
    weights = safetensors_bytes(state)
    info = {
        "format": CHECKPOINT_FORMAT,
        "model_class": type(model).__name__,
        "model_kwargs": dict(getattr(model, "init_kwargs", {})),
        "config": {**model.cfg.to_dict(), "device": "cpu"},
        "metadata": metadata or {},
        WEIGHTS_DIGEST: hashlib.sha256(weights).hexdigest(),
    }
    text = json.dumps(info, indent=2, default=str)
    try:  # what load_checkpoint would refuse is never written
        _check_info(path / CONFIG, json.loads(text))
    except CheckpointError as exc:
        raise CheckpointError(f"not saved to {path}, as loading would refuse it: {exc}") from exc
    created = not path.exists()
    make_folder(path)
    try:  # the weights and their config.json together, or neither; the config first (above)
        atomic_write_all(
            {
                path / CONFIG: lambda tmp: tmp.write_text(text),
                path / WEIGHTS: lambda tmp: tmp.write_bytes(weights),
            }
        )
    except BaseException:
        if created:  # no empty folder left behind that looks like a checkpoint
            shutil.rmtree(path, ignore_errors=True)
        raise
    return path


@checked
def read_checkpoint_info(path: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint folder, checked as `save_checkpoint` writes
    it: a key missing or unknown, a value of the wrong type, an unknown model class, keyword,
    config field or device is a `CheckpointError` naming the file, the field (``config.eps``,
    ``metadata.subject``) and what is accepted.

    >>> import tempfile
    >>> from emg_lens.models import IsoNet
    >>> path = save_checkpoint(IsoNet(EncoderConfig.preset("tiny")), tempfile.mkdtemp())
    >>> info = json.loads((path / CONFIG).read_text())
    >>> info["config"]["eps"] = "1e-5"
    >>> _ = (path / CONFIG).write_text(json.dumps(info))
    >>> read_checkpoint_info(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emg_lens.errors.CheckpointError: ...config.json: config.eps must be a finite number, got '1e-5'
    >>> read_checkpoint_info("runs/no_such_model")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emg_lens.errors.CheckpointError: runs/no_such_model does not exist (looked for it in ...)...
    """
    path = _folder(path, "read_checkpoint_info")
    config_file = path / CONFIG
    if not path.exists():  # a path mistyped, or run from another folder: say that, not "not ..."
        raise CheckpointError(f"{path} does not exist (looked for it in {Path.cwd()}); {FOLDER}")
    if not config_file.is_file() or not (path / WEIGHTS).is_file():
        raise CheckpointError(f"{path} is not an emg_lens checkpoint; {FOLDER}")
    try:
        info = json.loads(config_file.read_bytes().decode("utf-8"))
    except ValueError as exc:  # not UTF-8 (the codec names the byte and offset), or not JSON
        raise CheckpointError(f"{config_file} is not valid JSON in UTF-8: {exc}") from exc
    _check_info(config_file, info)
    return info


def _check_info(file: Path, info: Any) -> None:
    """``config.json`` as `save_checkpoint` writes it (see `read_checkpoint_info`)."""
    if not isinstance(info, dict):
        raise CheckpointError(f"{file} must hold a JSON object, got {type(info).__name__}")
    _check_fields(file, "", info, INFO_HINTS, required=INFO_KEYS)
    for key, (accepted, ok) in INFO_RULES.items():
        if key in info and not ok(info[key]):
            raise CheckpointError(f"{file}: {key} must be {accepted}, got {info[key]!r}")
    keywords = _keywords(MODEL_CLASSES[info["model_class"]])  # type: ignore[arg-type]
    _check_fields(file, "model_kwargs", info["model_kwargs"], keywords)
    # a config field missing would silently take its default (gelu for relu)
    config = info["config"]
    hints = typing.get_type_hints(EncoderConfig)
    _check_fields(file, "config", config, hints, required=_required_config_fields())
    check_device(config["device"], f"{file}: config.device", CheckpointError, available=False)
    _check_fields(file, "metadata", info["metadata"], METADATA_HINTS, closed=False)


INFO_HINTS = {
    **dict.fromkeys(("format", "model_class", WEIGHTS_DIGEST), str),
    **dict.fromkeys(("model_kwargs", "config", "metadata"), dict),
}
"""What each key of ``config.json`` holds (`emg_lens._hints.mismatch` reads each)."""
INFO_RULES: dict[str, tuple[str, Callable[[str], object]]] = {
    "format": (repr(CHECKPOINT_FORMAT), lambda v: v == CHECKPOINT_FORMAT),
    "model_class": (f"one of {sorted(MODEL_CLASSES)}", lambda v: v in MODEL_CLASSES),
    WEIGHTS_DIGEST: (
        f"the SHA-256 of {WEIGHTS} (64 hexadecimal digits, as save_checkpoint writes it)",
        re.compile("[0-9a-f]{64}").fullmatch,
    ),
}
"""What the string keys of ``config.json`` accept past their type: (in words, the test)."""
METADATA_HINTS = {"subject": int | None, "data_source": dict | None}
"""The metadata keys loading reads (how to rebuild the data: `emg_lens.data.data_source`);
the others are free."""


def _check_fields(
    file: Path,
    section: str,
    values: dict,
    hints: dict[str, Any],
    required: Iterable[str] = (),
    *,
    closed: bool = True,
) -> None:
    """Each key of ``values`` one of ``hints`` (unless not ``closed``) holding what its
    annotation says, and none of ``required`` missing."""
    unknown = sorted(set(values) - set(hints)) if closed else []
    kind, missing = f"{section} key(s)".lstrip(), sorted(set(required) - set(values))
    said = [f"{how} {kind} {ks}" for how, ks in (("missing", missing), ("unknown", unknown)) if ks]
    if said:
        raise CheckpointError(
            f"{file}: {'; '.join(said)}; accepted: {sorted(hints)}, as save_checkpoint writes them"
        )
    for key in [k for k in values if k in hints]:
        if (expected := mismatch(values[key], hints[key])) is not None:
            name = f"{section}.{key}".lstrip(".")
            raise CheckpointError(f"{file}: {name} must be {expected}, got {values[key]!r}")


@functools.cache
def _required_config_fields() -> frozenset[str]:
    """The config fields `save_checkpoint` always writes, EncoderConfig's own (TransformerLens's
    depend on its version): a missing one would silently take its default (gelu for relu).
    `emg_lens.config.ADDED_FIELD_DEFAULTS`' may be missing: older checkpoints computed those."""
    own = {*EncoderConfig.__annotations__, "dtype"}
    return frozenset(own - set(ADDED_FIELD_DEFAULTS))


@functools.cache
def _keywords(cls: type[HookedBiosignalModel]) -> dict[str, Any]:
    """``cls(cfg, ...)``'s keywords ``model_kwargs`` holds (not user modules), annotated."""
    params = inspect.signature(cls.__init__).parameters.values()
    try:
        hints = typing.get_type_hints(cls.__init__)
    except NameError:  # an annotation only a type checker imports: its values go unchecked
        hints = {}
    skip = set(getattr(cls, "user_modules", ()))
    return {
        p.name: hints.get(p.name, Any)
        for p in params
        if p.kind is p.KEYWORD_ONLY and p.name not in skip
    }


@checked
def load_checkpoint(
    path: str | Path,
    *,
    into: HookedBiosignalModel | None = None,
    device: str | None = None,
    modules: dict[str, torch.nn.Module] | None = None,
) -> HookedBiosignalModel:
    """Rebuild the model saved in ``path`` (or load its weights ``into`` an existing model of
    the same class and config — any difference is refused, naming the fields).

    ``modules``: for a model holding the user's own modules, which ``config.json`` cannot
    rebuild (a `HookedTorchEncoder`'s ``embed`` and ``readout``), modules of the same
    architecture; the checkpoint's weights are loaded into them.

    Refused with a `CheckpointError` naming the file and the field or tensor: a ``config.json``
    `read_checkpoint_info` refuses or that does not build the model, a device this machine
    lacks, weights unreadable, not fitting ``config.json`` or not finite."""
    path = _folder(path, "load_checkpoint")
    check_device(device, "device", ArgumentError)  # None: the config's, checked below
    info = read_checkpoint_info(path)
    name = info["model_class"]
    if device is None:
        check_device(info["config"]["device"], f"{path / CONFIG}: config.device", CheckpointError)
    cls = MODEL_CLASSES[info["model_class"]]  # known: read_checkpoint_info checked it
    cfg = _config(path, info, device)
    if into is None:
        needs, given = user_modules_of(info), dict(modules or {})
        if set(given) != set(needs):
            raise CheckpointError(
                f"{path} holds a {name} whose own modules are {', '.join(needs) or 'none'}: pass "
                f"load_checkpoint(path, modules={{{', '.join(f'{n!r}: ...' for n in needs)}}}) of "
                f"the architecture it was saved from; got {sorted(given) or 'none'}"
            )
        model = _build(path, cls, cfg, info, given)
    else:
        _check_compatible(path, name, cfg, info, into)
        model = into
    state, digest = _read_weights(path / WEIGHTS, str(model.cfg.device))
    # names, shapes and values, before anything is copied into the model
    _check_shapes(path, name, {k: tuple(v.shape) for k, v in state.items()}, model.state_dict())
    _check_finite(state, str(path / WEIGHTS), "; load an earlier checkpoint")
    _check_pair(path, info, digest)
    model.load_state_dict(state, strict=True)
    return model.eval()


@checked
def load_checkpoint_data(path: str | Path) -> SubjectData:
    """The windows of the subject the checkpoint at ``path`` was trained and is scored on,
    rebuilt from the data source and subject its metadata records (or its ``subject_<N>``
    folder's name): without them, or where the two disagree, a `CheckpointError` naming what
    it holds. Data that changed since its training are warned of (`warn_if_data_changed`).

    >>> import tempfile
    >>> from emg_lens.data import data_source
    >>> from emg_lens.data import PreprocessSpec
    >>> from emg_lens.data import SyntheticSpec
    >>> from emg_lens.models import IsoNet
    >>> cfg = EncoderConfig.preset("tiny", modalities={"emg": 12, "acc": 36}, n_samples=200)
    >>> synthetic = SyntheticSpec(n_subjects=1, movement_seconds=0.6, rest_seconds=0.2)
    >>> segment = PreprocessSpec(segment=(0.2, 0.6), step=100)
    >>> source = data_source("synthetic", synthetic=synthetic, preprocess=segment)
    >>> path = save_checkpoint(IsoNet(cfg), Path(tempfile.mkdtemp()) / "subject_1",
    ...                        metadata={"data_source": source})
    >>> data = load_checkpoint_data(path)
    >>> data.subject, data.X_test.shape[1:] == IsoNet(cfg).input_shape
    (1, True)
    """
    from emg_lens.data.datasets import load_subject

    metadata = read_checkpoint_info(path)["metadata"]
    source = metadata.get("data_source")
    named = Path(path).name.removeprefix("subject_")
    subject = metadata.get("subject", named)
    if source is None or not str(subject).isdigit():
        raise CheckpointError(
            f"{path}: its metadata records no data_source and subject to load its windows from "
            f"(it has {sorted(metadata)}); the checkpoints emg_lens trains record both"
        )
    if named.isdigit() and int(named) != int(subject):
        raise CheckpointError(
            f"{path}: its metadata records subject {subject}, its folder's name subject {named} "
            f"(copied under another's name?): rename it subject_{subject}/ or retrain"
        )
    warn_if_data_changed(metadata, int(subject))
    return load_subject(source, int(subject))


def warn_if_data_changed(metadata: dict[str, Any], subject: int, digest: str | None = None) -> None:
    """Warn where a checkpoint's subject data is not what its model was trained beside: the
    ``data_digest`` its training recorded (`source_digest` of its ``data_source``) differs
    from the data's digest now (``digest``, computed when not given): its files changed, or
    your folder numbers its subjects otherwise (a participant added: subject 1 may now be
    another person). Checkpoints trained before the digest was recorded are not checked.

    >>> from emg_lens.data import data_source
    >>> source = data_source("synthetic")
    >>> meta = {"data_source": source, "data_digest": source_digest(source, 1)}
    >>> warn_if_data_changed(meta, 1)  # the same data: silent
    """
    trained = metadata.get("data_digest")
    source = metadata.get("data_source")
    if trained is None or source is None:
        return
    now = digest if digest is not None else source_digest(source, subject)
    if now != trained:
        warn_caller(
            f"subject {subject}'s data is not the data its model was trained beside (the files "
            f"of {source.get('root', source.get('dataset'))!r} changed since, or the folder "
            "numbers its subjects, gestures or repetitions otherwise: another participant's "
            f"files can make subject {subject} another person): it is scored on them as they "
            "are now; retrain it to score it on its own data"
        )


def source_digest(source: dict[str, Any], subject: int) -> str:
    """Digest of one subject's data from a checkpoint's data source: the source dict, the
    subject, and the content of every file it reads (its registry entry's ``files``).

    >>> from emg_lens.data import data_source
    >>> source = data_source("synthetic")
    >>> source_digest(source, 1) == source_digest(source, 1) != source_digest(source, 2)
    True
    """
    from emg_lens.data.registry import dataset_info

    info = dataset_info(source.get("dataset"))
    files = files_digest(info.files(source, subject))
    numbering = info.numbering_of(source)  # your own files'
    return json_digest({"source": source, "subject": int(subject), "files": files, **numbering})


@checked
def check_checkpoint(path: str | Path) -> dict[str, Any]:
    """Check a checkpoint folder as `load_checkpoint` would, without reading its weights: its
    ``config.json``, the model it describes, and the header of ``model.safetensors``; a NaN
    weight is found only when loading. Returns the parsed ``config.json``.

    >>> import tempfile
    >>> from emg_lens.models import IsoNet
    >>> path = save_checkpoint(IsoNet(EncoderConfig.preset("tiny")), tempfile.mkdtemp())
    >>> check_checkpoint(path)["model_class"]
    'IsoNet'
    >>> _ = (path / WEIGHTS).write_bytes((path / WEIGHTS).read_bytes()[:-8])
    >>> check_checkpoint(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emg_lens.errors.CheckpointError: ...model.safetensors (... bytes) is not a readable ...
    """
    path = Path(path)
    info = read_checkpoint_info(path)
    cls = MODEL_CLASSES[info["model_class"]]  # known: read_checkpoint_info checked it
    key = json.dumps([info["model_class"], info["config"], info.get("model_kwargs")], default=str)
    try:  # each tensor's shape, from the header (safetensors checks it against the length)
        with safe_open(str(path / WEIGHTS), framework="pt") as fh:
            shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as exc:
        raise _unreadable(path / WEIGHTS, exc) from exc
    if not getattr(cls, "user_modules", ()):  # the user's modules are checked when given
        if key not in _expected_shapes:  # a model is built once per distinct config
            model = _build(path, cls, _config(path, info, "cpu"), info)
            _expected_shapes[key] = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        _check_shapes(path, info["model_class"], shapes, _expected_shapes[key])
    _check_pair(path, info, file_digest(path / WEIGHTS))
    return info


_expected_shapes: dict[str, dict[str, tuple[int, ...]]] = {}


@checked
def user_modules_of(info: dict[str, Any]) -> tuple[str, ...]:
    """The user's own modules of the model a checkpoint's ``config.json`` (``info``) holds,
    which `load_checkpoint` takes as ``modules=`` (``()``: ``config.json`` rebuilds it whole).

    >>> user_modules_of({"model_class": "HookedTorchEncoder"}), user_modules_of({"model_class": "IsoNet"})
    (('embed', 'readout'), ())
    """  # noqa: E501
    return tuple(getattr(MODEL_CLASSES.get(info.get("model_class", "")), "user_modules", ()))


def _config(path: Path, info: dict[str, Any], device: str | None) -> EncoderConfig:
    """The `EncoderConfig` of a checkpoint's ``config.json`` (on ``device``, if given)."""
    try:
        return EncoderConfig.from_dict({**info["config"], **({"device": device} if device else {})})
    except ConfigError as exc:
        raise CheckpointError(f"{path}: its config is invalid: {exc}") from exc


def _build(
    path: Path,
    cls: type[HookedBiosignalModel],
    cfg: EncoderConfig,
    info: dict[str, Any],
    modules: Any = None,
) -> HookedBiosignalModel:
    """``cls(cfg, **model_kwargs, **modules)``, or a `CheckpointError` naming the file."""
    try:
        return cls(cfg, **info["model_kwargs"], **(modules or {}))
    except EmgLensError as exc:
        raise CheckpointError(
            f"{path / CONFIG}: its config and model_kwargs do not build a {cls.__name__}: {exc}"
        ) from exc


def _unreadable(file: Path, exc: Exception) -> CheckpointError:
    return CheckpointError(
        f"{file} ({file.stat().st_size} bytes) is not a readable safetensors file ({exc}); "
        "it is empty, truncated or corrupted: save or copy the checkpoint again"
    )


def _read_weights(file: Path, device: str) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors of a safetensors file, on ``device``, and the SHA-256 of the bytes read."""
    try:
        data = file.read_bytes()
        state = safetensors_tensors(data)
    except (SafetensorError, OSError) as exc:
        raise _unreadable(file, exc) from exc
    return {k: v.to(device) for k, v in state.items()}, hashlib.sha256(data).hexdigest()


def _check_shapes(
    path: Path, name: str, shapes: dict[str, tuple[int, ...]], expected: dict[str, Any]
) -> None:
    """The saved tensors' names and shapes against ``expected`` (tensors or shapes)."""
    want = {k: tuple(getattr(v, "shape", v)) for k, v in expected.items()}
    missing, unexpected = sorted(set(want) - set(shapes)), sorted(set(shapes) - set(want))
    wrong = [
        f"{k}: {WEIGHTS} {list(v)} vs {CONFIG} {list(want[k])}"
        for k, v in shapes.items()
        if want.get(k, tuple(v)) != tuple(v)
    ]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{path}: {WEIGHTS} does not fit the {name} {CONFIG} describes (missing {missing}, "
            f"unexpected {unexpected}, shapes {wrong}): they must be saved together"
        )


def _check_pair(path: Path, info: dict[str, Any], actual: str) -> None:
    """The weights, whose SHA-256 is ``actual``, are the file ``config.json`` was saved with
    (its `WEIGHTS_DIGEST`, if any)."""
    recorded = info.get(WEIGHTS_DIGEST)
    if recorded is not None and actual != recorded:
        raise CheckpointError(
            f"{path}: {WEIGHTS} is not the file {CONFIG} was saved with (SHA-256 {actual[:16]}..."
            f" vs {recorded[:16]}...): a save stopped between its two files, or one was replaced"
            " alone; save it again"
        )


def _check_finite(state: dict[str, torch.Tensor], where: str, advice: str = "") -> None:
    """A NaN or inf weight would make every output NaN, silently: refused, naming it."""
    for k, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{where}: tensor {k!r} holds {bad} NaN or inf value(s){advice}")


PICKLED_SUFFIXES = (".ckpt", ".pt", ".pth")


@checked
def read_biofoundation_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The weights of a published BioFoundation checkpoint, for `TinyMyo.from_biofoundation`:
    a ``.safetensors`` file, or a PyTorch ``.ckpt`` / ``.pt`` / ``.pth`` file (a Lightning
    checkpoint's ``state_dict``, or a bare state dict), read with ``weights_only=True``: a
    file that would run code when unpickled is refused (`CheckpointError`), never executed;
    so are other suffixes, files without tensors and non-finite weights.

    >>> import tempfile
    >>> file = Path(tempfile.mkdtemp()) / "tinymyo.ckpt"
    >>> torch.save({"state_dict": {"model.norm.weight": torch.ones(2)}, "epoch": 3}, file)
    >>> list(read_biofoundation_state_dict(file))
    ['model.norm.weight']
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"BioFoundation checkpoint {path} {no_file(path)}")
    if path.suffix == ".safetensors":
        state: Any = _read_weights(path, "cpu")[0]
    elif path.suffix in PICKLED_SUFFIXES:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
            raise CheckpointError(
                f"{path}: torch.load(weights_only=True) refused it: {exc}"
            ) from exc
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]  # a PyTorch Lightning checkpoint
    else:
        suffixes = (".safetensors", *PICKLED_SUFFIXES)
        raise CheckpointError(f"{path}: a BioFoundation checkpoint must be one of {suffixes}")
    state = state if isinstance(state, dict) else {}
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path} holds no tensors: expected a state dict of weights")
    _check_finite(tensors, str(path))
    return tensors


@checked
def load_biofoundation(path: str | Path, **kwargs: Any) -> torch.nn.Module:
    """A published BioFoundation TinyMyo checkpoint file as a hooked `TinyMyo`, in eval mode:
    `read_biofoundation_state_dict`, then `TinyMyo.from_biofoundation` with ``kwargs``.

    >>> import tempfile
    >>> from emg_lens.models import MODEL_CLASSES, TinyMyo
    >>> cfg = EncoderConfig.preset("tinymyo", n_layers=1, modalities={"emg": 2}, n_samples=40)
    >>> file = Path(tempfile.mkdtemp()) / "tinymyo.ckpt"
    >>> torch.save({"state_dict": TinyMyo(cfg).to_biofoundation()}, file)
    >>> model = load_biofoundation(file, n_samples=40)
    >>> model.task, model.training
    ('classification', False)
    """
    return TinyMyo.from_biofoundation(read_biofoundation_state_dict(path), **kwargs)


def _check_compatible(path: Path, name: str, cfg: EncoderConfig, info: dict, model) -> None:
    if type(model).__name__ != name:
        raise CheckpointError(f"{path} holds a {name}, not a {type(model).__name__}")
    # Where and in which precision it runs, and which optional hooks it fires, are not
    # architecture: weights load into a float64 model, or one with use_attn_result set.
    ignore = {"device", "dtype", "seed", "dropout", *HOOK_FLAGS}
    pairs = {
        f.name: (getattr(cfg, f.name), getattr(model.cfg, f.name)) for f in dataclasses.fields(cfg)
    }
    diff = {k: (a, b) for k, (a, b) in pairs.items() if k not in ignore and a != b}
    if diff or info.get("model_kwargs", {}) != dict(getattr(model, "init_kwargs", {})):
        fields = ", ".join(f"{k}: checkpoint {a!r} vs model {b!r}" for k, (a, b) in diff.items())
        raise CheckpointError(f"{path} holds another config ({fields or 'model_kwargs differ'})")
