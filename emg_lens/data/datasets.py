"""Data sources: a small JSON-able dict that says how to rebuild a subject's windows.

Checkpoints store their data source, so evaluation and studies need only the checkpoint.
`load_subject` keeps each preprocessed subject in the on-disk cache of `emg_lens.data.cache`.
What each dataset is (its files, montage, reader, subjects, preprocessing defaults) is looked
up in `emg_lens.data.registry`.

Two more sources hold windows that are already made, for TinyMyo (`WINDOW_DATASETS`):
``"windows"`` (an HDF5 window store, `windows_source`; made by
`emg_lens.data.window_build.build_window_store`) and ``"synthetic-windows"``
(`synthetic_windows_source`). `load_subject` only splits their labelled windows by repetition,
so it does not cache them."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from emg_lens._hints import checked
from emg_lens.data.cache import (
    CACHE_ENV,
    CACHE_MAX_ENV,
    cache_key,
    cache_max_bytes,
    default_cache_dir,
    evict,
    read_entry,
    warn_foreign_files,
    write_entry,
)
from emg_lens.data.preprocess import PreprocessSpec, SubjectData, prepare_subject
from emg_lens.data.recording import Recording
from emg_lens.data.registry import SPLIT_REPETITIONS, dataset_info
from emg_lens.data.synthetic.eeg import SyntheticEEGSpec
from emg_lens.data.synthetic.emg_acc import SyntheticSpec
from emg_lens.data.windows.store import split_repetitions
from emg_lens.errors import (
    ArgumentError,
    DataFormatError,
    EmgLensError,
    LayoutError,
    check_int,
    warn_caller,
)
from emg_lens.geometry import Montage, scalp
from emg_lens.layout import TokenLayout


@checked
def dataset_preprocess(dataset: str, **overrides: Any) -> PreprocessSpec:
    """The dataset's default `PreprocessSpec`, with any field overridden.

    >>> spec = dataset_preprocess("hdsemg", window=100)
    >>> spec.train_repetitions, spec.test_repetitions, spec.window
    ((1, 3, 4), (2, 5), 100)
    """
    info = dataset_info(dataset, use="recordings")
    return PreprocessSpec(**{**info.preprocess, **overrides})


@checked
def data_source(
    dataset: str,
    *,
    root: str | Path | None = None,
    synthetic: SyntheticSpec | SyntheticEEGSpec | None = None,
    preprocess: PreprocessSpec | None = None,
    exercises: tuple[str, ...] = ("B",),
    **options: Any,
) -> dict[str, Any]:
    """Describe a dataset (one of `DATASETS`) and its preprocessing (default:
    `dataset_preprocess`) as a JSON-able dict. ``synthetic`` and ``exercises`` are stored by
    the datasets that take them (synthetic data; NinaPro DB2); ``options`` by a dataset that
    names them (your own files: ``pattern``, ``sample_rate``, ...,
    `emg_lens.data.formats.trial_files.FILE_OPTIONS`), and are refused by any other.

    >>> data_source("hdsemg", root="/data/hdsemg")["preprocess"]["train_repetitions"]
    (1, 3, 4)
    >>> source = data_source("files", root="/data/myo", pattern="R_{repetition}_C_{gesture}.csv",
    ...                      sample_rate=200)
    >>> source["pattern"], source["sample_rate"]
    (['R_{repetition}_C_{gesture}.csv'], 200.0)
    """
    info = dataset_info(dataset, use="recordings")
    if info.needs_root and root is None:
        raise ArgumentError(f"dataset {dataset!r} needs --root, its files' folder ({info.layout})")
    source: dict[str, Any] = {
        "dataset": dataset,
        "preprocess": (preprocess or dataset_preprocess(dataset)).to_dict(),
    }
    if root is not None and info.needs_root:  # needed: refused above where missing
        source["root"] = str(Path(root).resolve())
    stored = info.source_fields({"synthetic": synthetic, "exercises": exercises, **options})
    if unused := sorted(set(options) - set(stored)):
        raise ArgumentError(f"dataset {dataset!r} takes no {', '.join(unused)} (files does)")
    source.update(stored)
    return source


def preprocess_spec(data: dict[str, Any]) -> PreprocessSpec:
    """A `PreprocessSpec` from its dict (JSON lists become tuples again)."""
    known = {f.name for f in fields(PreprocessSpec)}
    values: dict[str, Any] = {  # JSON's: PreprocessSpec checks them
        k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known
    }
    return PreprocessSpec(**values)


def available_subjects(source: dict[str, Any]) -> list[int]:
    """The subjects a data source holds: synthetic ``1..n_subjects``, or those whose files
    are under the root (HD-sEMG ``s<N>.mat``; NinaPro ``DB2_s<N>/`` folders).

    >>> available_subjects(data_source("synthetic", synthetic=SyntheticSpec(n_subjects=3)))
    [1, 2, 3]
    """
    return dataset_info(source.get("dataset")).subjects(source)


def load_recording(source: dict[str, Any], subject: int) -> Recording:
    """The continuous recording of one subject of a data source.

    >>> source = data_source("synthetic", synthetic=SyntheticSpec(n_subjects=1, rest_seconds=0.1,
    ...                                                         movement_seconds=0.1))
    >>> load_recording(source, 1).modalities
    {'emg': 12, 'acc': 36}
    """
    return dataset_info(source.get("dataset"), use="recordings").read(source, subject)


@checked
def load_subject(
    source: dict[str, Any],
    subject: int,
    *,
    cache_dir: str | Path | None = "auto",
    cache_max_gb: float | None = None,
) -> SubjectData:
    """Load and preprocess one subject of a data source, through the on-disk cache.

    ``cache_dir``: a folder; ``None`` for no cache; ``"auto"`` for `default_cache_dir` (the
    `WINDOW_DATASETS` are never cached). A cache that cannot be written is skipped with a
    warning; after a write, the cache is capped at ``cache_max_gb``. The returned ``meta`` is
    JSON-normalised (lists, not tuples) whether it came from the cache or not.

    >>> import tempfile
    >>> source = data_source(
    ...     "synthetic",
    ...     synthetic=SyntheticSpec(n_subjects=1, movement_seconds=0.6, rest_seconds=0.2),
    ...     preprocess=PreprocessSpec(segment=(0.2, 0.6), step=100),
    ... )
    >>> cache = tempfile.mkdtemp()
    >>> load_subject(source, 1, cache_dir=cache).X_test.shape[1:]
    (48, 200)
    >>> load_subject(source, 1, cache_dir=cache).X_test.shape[1:]  # read back, not recomputed
    (48, 200)
    """
    if dataset_info(source.get("dataset")).window_source:  # windows made already: no cache
        return _normalised(_window_subject(source, subject))
    max_bytes = cache_max_bytes(cache_max_gb)  # a bad cap fails before any work
    folder = default_cache_dir() if cache_dir == "auto" else cache_dir
    if folder is None:
        return _normalised(_prepare(source, subject))
    folder = Path(folder)
    warn_foreign_files(folder)  # a folder of the user's given as the cache: said, once
    key = cache_key(source, subject)
    stem = folder / f"{source['dataset']}_s{subject}_{key[:20]}"
    cached = read_entry(stem, key)
    if cached is not None:
        return cached
    data = _normalised(_prepare(source, subject))
    try:
        write_entry(stem, key, data)
        size = sum(stem.with_suffix(s).stat().st_size for s in (".npz", ".json"))
        evict(folder, max_bytes)
    except OSError as exc:
        warn_caller(
            f"cannot write the preprocessing cache {stem}.npz ({type(exc).__name__}: {exc}); "
            f"continuing without it. Set {CACHE_ENV} to a writable folder, or to 0."
        )
        return data
    if size > max_bytes:  # so evict removed it again
        warn_caller(
            f"a preprocessed subject takes {size:,} bytes, more than the preprocessing cache's "
            f"cap of {max_bytes:,} bytes, so it is not cached; raise {CACHE_MAX_ENV} (in GB) "
            "or cache_max_gb="
        )
    return data


def _prepare(source: dict[str, Any], subject: int) -> SubjectData:
    return prepare_subject(load_recording(source, subject), preprocess_spec(source["preprocess"]))


def _normalised(data: SubjectData) -> SubjectData:
    data.meta = json.loads(json.dumps(data.meta))
    return data


def windows_source(
    path: str | Path,
    *,
    train_repetitions: tuple[int, ...] | None = None,
    test_repetitions: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """A data source over an HDF5 window store (`emg_lens.data.windows.store`, e.g. written by
    ``emg-lens windows``): a subject's labelled windows, split by the repetition at their
    centre. The store is read as it is (its own normalisation); rest windows have repetition 0
    and so belong to neither part unless 0 is listed.

    The repetitions not given are those the store was built with (its ``repetition_split``),
    or NinaPro's for a store that records none. A z-scored store's statistics were fitted on
    its training repetitions, so a test repetition among them is an `ArgumentError`, and a
    z-scored store that does not record them is warned of.

    >>> import tempfile
    >>> from emg_lens.data import Recording, write_window_store
    >>> rec = Recording(1, {"emg": np.ones((2000, 4))}, 2000.0, np.ones(2000), np.ones(2000))
    >>> built = {"train_repetitions": [1, 2, 3, 4], "test_repetitions": [6]}
    >>> path = write_window_store(Path(tempfile.mkdtemp()) / "w.h5", [rec], progress=False,
    ...                           repetition_split=built)
    >>> windows_source(path)["train_repetitions"], windows_source(path)["test_repetitions"]
    ([1, 2, 3, 4], [6])
    >>> windows_source(path, test_repetitions=(5,))["test_repetitions"]
    [5]
    """
    from emg_lens.data.windows.store import WindowStore

    meta = WindowStore(path).meta
    built = meta.get("repetition_split")
    default = built or SPLIT_REPETITIONS
    split = split_repetitions(
        default["train_repetitions"] if train_repetitions is None else train_repetitions,
        default["test_repetitions"] if test_repetitions is None else test_repetitions,
    )
    if meta.get("scaler") is not None:
        if built is None:
            warn_caller(
                f"{path} is z-scored but does not record the repetitions its z-score was "
                "fitted on (it was written before emg_lens recorded them), so nothing shows "
                f"that its test repetitions {split['test_repetitions']} were not among them: "
                "rebuild it with `emg-lens windows` to have this checked"
            )
        elif seen := sorted(set(split["test_repetitions"]) & set(built["train_repetitions"])):
            raise ArgumentError(
                f"test repetitions {seen} of {path} are among those its z-score was fitted on: "
                f"test on those it held out, {built['test_repetitions']}, or rebuild it"
            )
    return {"dataset": "windows", "path": str(Path(path).resolve()), **split}


@checked
def synthetic_windows_source(
    spec: SyntheticSpec,
    *,
    window: int,
    step: int,
    envelope_ms: float | None = 10.0,
    train_repetitions: tuple[int, ...] = SPLIT_REPETITIONS["train_repetitions"],
    test_repetitions: tuple[int, ...] = SPLIT_REPETITIONS["test_repetitions"],
) -> dict[str, Any]:
    """A data source of synthetic sEMG windows as `emg_lens.data.synthetic.windows`
    cuts them (the sEMG channels only; what ``emg-lens pretrain`` and ``finetune`` use by
    default), split by repetition.

    >>> source = synthetic_windows_source(SyntheticSpec(n_subjects=2), window=100, step=50)
    >>> source["dataset"], available_subjects(source)
    ('synthetic-windows', [1, 2])
    """
    window = check_int(window, "synthetic windows: window", minimum=1)
    step = check_int(step, "synthetic windows: step", minimum=1)
    return {
        "dataset": "synthetic-windows",
        "synthetic": spec.to_dict(),
        "window": window,
        "step": step,
        "envelope_ms": envelope_ms,
        **split_repetitions(train_repetitions, test_repetitions),
    }


def _window_subject(source: dict[str, Any], subject: int) -> SubjectData:
    """A window source's subject: labelled windows in the train/test repetitions."""
    train, test = source["train_repetitions"], source["test_repetitions"]
    windows = dataset_info(source["dataset"], use="windows").read_windows(source, subject)
    X, y, reps, what, meta = windows
    return _split_windows(subject, X, y, reps, train, test, what, meta)


def _split_windows(
    subject: int,
    X: np.ndarray,
    y: np.ndarray,
    repetition: np.ndarray,
    train: list[int],
    test: list[int],
    what: str,
    meta: dict[str, Any],
) -> SubjectData:
    """Labelled windows (``y >= 0``) split by repetition, labels renumbered ``0..K-1``."""
    labelled = np.asarray(y) >= 0
    in_train = labelled & np.isin(repetition, train)
    in_test = labelled & np.isin(repetition, test)
    classes = sorted(set(np.asarray(y)[in_train | in_test].tolist()))
    missing = sorted(set(np.asarray(y)[in_test].tolist()) - set(np.asarray(y)[in_train].tolist()))
    if not in_train.any() or not in_test.any() or missing:
        raise DataFormatError(
            f"{what}: needs windows in repetitions {train} (train) and {test} (test), each test "
            f"class in training; got {in_train.sum()} and {in_test.sum()}, test-only {missing}"
        )
    codes = np.searchsorted(classes, y)
    channels = X.shape[1]
    return SubjectData(
        subject=int(subject),
        modalities={"emg": channels},
        classes=classes,
        X_train=X[in_train].astype(np.float32),
        y_train=codes[in_train],
        rep_train=np.asarray(repetition)[in_train],
        X_test=X[in_test].astype(np.float32),
        y_test=codes[in_test],
        rep_test=np.asarray(repetition)[in_test],
        meta=meta,
    )


@checked
def montages_of(
    source: dict[str, Any] | None = None, layout: TokenLayout | None = None
) -> dict[str, Montage]:
    """Where each modality's channels lie on the body: the placement of the data source's
    dataset (`emg_lens.data.reader.DatasetReader.geometry`) and, for a modality it does not
    place, the 10-20 / 10-10 positions of the layout's channel names when every one has one.
    A modality whose channel count the layout contradicts is left out (a figure draws nothing
    rather than a channel at another's place).

    >>> sorted(montages_of(data_source("synthetic")))
    ['acc', 'emg']
    >>> from emg_lens.layout import TokenLayout
    >>> layout = TokenLayout.channel_tokens({"eeg": 3}, channel_names=["C3", "Cz", "C4"])
    >>> montages_of(layout=layout)["eeg"].parts[0].kind
    'scalp'
    """
    found: dict[str, Montage] = {}
    if source is not None:
        geometry = dataset_info(source.get("dataset")).geometry
        try:
            found.update({} if geometry is None else geometry(source))
        except (KeyError, TypeError, EmgLensError):  # a source without what its dataset reads
            found = {}
    if layout is None:
        return found
    for modality in layout.modalities:
        channels = sorted({c for g, c in zip(layout.group, layout.channel) if g == modality})
        if modality in found:
            if found[modality].n_channels != len(channels):
                del found[modality]
            continue
        if layout.channel_names is None:
            continue
        names = [layout.channel_names[c] for c in channels]
        try:
            found[modality] = Montage(
                (scalp(names),),
                source="the 10-20 / 10-10 system's idealised positions of the layout's "
                "channel names (emg_lens.geometry.ten_twenty)",
            )
        except LayoutError:
            continue  # names that are not 10-20 positions: no placement
    return found
