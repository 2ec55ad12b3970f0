"""Window stores built from datasets: TinyMyo's windows of emg2pose, NinaPro DB5/DB6/DB7,
synthetic sEMG or the downstream datasets (EPN-612, UCI, NinaPro DB8) in one HDF5 file
(`build_window_store`, what ``emg-lens windows`` runs).

Which datasets a store is cut from, how each is normalised by default and how it splits is
what their registry entries say (`emg_lens.data.registry`); their readers yield the
recordings. The windowing is `emg_lens.data.windows.pipeline` (the downstream datasets':
`emg_lens.data.windows.downstream`), the file `emg_lens.data.windows.store`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from emg_lens.data.recording import Recording
from emg_lens.data.registry import (
    DOWNSTREAM_DATASETS,
    REPETITION_SOURCES,
    SPLIT_REPETITIONS,
    STORE_REPETITIONS,
    dataset_info,
)
from emg_lens.data.synthetic.emg_acc import SyntheticSpec
from emg_lens.data.windows.downstream import SPLIT_CODES, SPLITS, DownstreamPreprocess
from emg_lens.data.windows.pipeline import (
    TinyMyoPreprocess,
    WindowBatch,
    fit_scaler,
    tinymyo_windows,
)
from emg_lens.data.windows.store import split_repetitions, write_window_store
from emg_lens.errors import ArgumentError, DataFormatError, check_choice

REPETITION_SPLITS = ("train", "test")
"""`build_window_store` splits of the labelled sources: the train or test repetitions (the
downstream datasets have their own three, `SPLITS`)."""

SYNTHETIC_STORE = SyntheticSpec(
    n_subjects=2, n_acc_gestures=0, n_interaction_gestures=0, n_acc_sensors=1
)
"""The synthetic data a store is cut from by default: sEMG-only gestures."""


def build_window_store(
    source: str,
    out: str | Path,
    *,
    root: str | Path | None = None,
    subjects: Iterable[int] | None = None,
    split: str | Iterable[str] | None = None,
    normalize: str | None = None,
    preprocess: TinyMyoPreprocess | DownstreamPreprocess | None = None,
    train_repetitions: tuple[int, ...] | None = None,
    test_repetitions: tuple[int, ...] | None = None,
    synthetic: SyntheticSpec | None = None,
    compression: str | None = None,
    progress: bool = True,
    downstream: Mapping[str, Any] | None = None,
) -> Path:
    """Write the TinyMyo windows of a dataset to an HDF5 window store at ``out``.

    Args:
        source: one of `emg_lens.data.registry.WINDOW_STORE_SOURCES`. ``"emg2pose"`` is
            unlabelled; the others keep their gesture labels (0 = rest); ``"synthetic"`` is the
            sEMG channels of `SyntheticSpec` recordings, sEMG-only gestures by default.
        out: the ``.h5`` file to write (atomically: a failed run leaves none).
        root: the dataset folder (two copies of one file are refused); refused for synthetic
            data.
        subjects: subject numbers (emg2pose: users in sorted order, 1-based); default all.
        split: emg2pose: ``metadata.csv`` split names (``"train"``, ...); the labelled
            sources: ``"train"`` and/or ``"test"``, the windows whose centre lies in
            ``train_repetitions`` / ``test_repetitions``. Default: every window.
        normalize: ``"minmax"`` (each channel of each window to [-1, 1]; the default for the
            pretraining sources) or ``"zscore"`` (per channel, fitted on the windows of
            ``train_repetitions`` of the selected subjects; the default for DB5 and synthetic).
        preprocess: a `TinyMyoPreprocess` (default: the published recipe, 1000-sample
            windows every 500 at 2 kHz, which DB5's 200 Hz is resampled to); ``normalize``
            overrides its field.
        train_repetitions, test_repetitions: the repetition split of `REPETITION_SOURCES`
            (default: the dataset's own, `STORE_REPETITIONS`: DB6's and DB7's the TinyMyo
            thesis's train and test repetitions; else `SPLIT_REPETITIONS`); refused for the
            other sources.
        synthetic: the `SyntheticSpec` for ``source="synthetic"`` (refused for the others).
        downstream: a downstream dataset's own options (EPN-612: ``calibration``; UCI:
            ``splits``, split name -> subjects).

    A downstream dataset (`DOWNSTREAM_DATASETS`) takes ``preprocess`` as a
    `DownstreamPreprocess`, or a `TinyMyoPreprocess` of which only ``window`` and ``step``
    are read (default: its registry entry's); ``split`` names some of ``"train"``, ``"val"``,
    ``"test"``; ``normalize`` and the repetition arguments are refused (its split is its own).

    Raises `ArgumentError` for an unknown source, split, normalisation or subject, or an
    argument that does not apply to ``source``; `DataFormatError` for unreadable or ambiguous
    files, or a store or split that would hold no window.

    >>> import tempfile
    >>> from emg_lens.data import WindowStore
    >>> path = build_window_store(
    ...     "synthetic", Path(tempfile.mkdtemp()) / "w.h5", split="test", progress=False,
    ...     synthetic=SyntheticSpec(n_subjects=1, n_acc_gestures=0, n_interaction_gestures=0,
    ...                             movement_seconds=0.5, n_acc_sensors=1),
    ...     preprocess=TinyMyoPreprocess(window=200, step=100))
    >>> store = WindowStore(path)
    >>> len(store) > 0, sorted(set(store.repetition.tolist())), store.meta["scaler"] is not None
    (True, [2, 5], True)
    """
    info = dataset_info(source, use="store")  # refuses any other source by name
    args: dict[str, Any] = {"root": root, "synthetic": synthetic, "normalize": normalize}
    args |= {"downstream": downstream or None, "train_repetitions": train_repetitions}
    _refuse_inapplicable(info, {**args, "test_repetitions": test_repetitions})
    if Path(out).is_dir():
        raise ArgumentError(f"--out {out} is a folder: give a file path, e.g. {Path(out) / 'w.h5'}")
    if "downstream" in info.uses:
        assert root is not None  # a downstream dataset reads files: needs_root, checked above
        return _build_downstream(
            source,
            out,
            Path(root),
            subjects=subjects,
            split=split,
            preprocess=preprocess,
            options=downstream or {},
            compression=compression,
            progress=progress,
        )
    default = "minmax" if "pretraining" in info.uses else "zscore"
    spec = preprocess or TinyMyoPreprocess()
    spec = TinyMyoPreprocess.from_dict({**spec.to_dict(), "normalize": normalize or default})
    labeled = "repetitions" in info.uses  # labelled windows, split by repetition
    if not labeled and spec.normalize == "zscore":
        raise ArgumentError(f"{source} has no labels to fit a z-score on: use normalize='minmax'")
    split_of = {**SPLIT_REPETITIONS, **STORE_REPETITIONS.get(source, {})}
    repetitions = split_repetitions(
        split_of["train_repetitions"] if train_repetitions is None else train_repetitions,
        split_of["test_repetitions"] if test_repetitions is None else test_repetitions,
    )
    recordings = _store_recordings(source, root, subjects, split, synthetic)
    keep, names = None, []
    if labeled and split is not None:
        names = [split] if isinstance(split, str) else list(split)
        for name in names:
            check_choice(name, list(REPETITION_SPLITS), f"split of {source}'s windows")
        keep = sorted({r for n in names for r in repetitions[f"{n}_repetitions"]})
    scaler = None
    if spec.normalize == "zscore":
        try:
            scaler = fit_scaler(recordings(), spec, repetitions=repetitions["train_repetitions"])
        except DataFormatError as exc:
            longest = max((_length_at(r, spec.sample_rate) for r in recordings()), default=0)
            if longest < spec.window:
                raise _no_window(source, None, spec, longest, "recording") from exc
            reps = repetitions["train_repetitions"]
            raise DataFormatError(
                f"{source}: no window in training repetitions {reps}: choose --train-repetitions"
            ) from exc

    def batches() -> Iterator[WindowBatch]:
        counts = dict.fromkeys(names, 0)
        total, longest, held = 0, 0, set()
        for recording in recordings():
            longest = max(longest, _length_at(recording, spec.sample_rate))
            batch = tinymyo_windows(recording, spec, labeled=labeled, scaler=scaler)
            held |= set(batch.repetition.tolist())
            if keep is not None:
                batch.keep(np.isin(batch.repetition, keep))
                batch.info["repetitions"] = keep
            for name in names:
                reps = repetitions[f"{name}_repetitions"]
                counts[name] += int(np.isin(batch.repetition, reps).sum())
            total += len(batch)
            yield batch
        # Checked here, before the store is complete: an empty store or split is never written.
        empty: list[str | None] = [n for n in names if not counts[n]]
        empty = empty or ([None] if not total else [])
        for split in empty[:1]:
            if longest < spec.window or split is None:
                raise _no_window(source, split, spec, longest, "recording")
            reps = repetitions[f"{split}_repetitions"]
            raise DataFormatError(
                f"{source}: no {split} window in repetitions {reps}; choose among {sorted(held)}"
            )

    return write_window_store(
        out,
        batches(),
        spec,
        labeled=labeled,
        scaler=scaler,
        compression=compression,
        progress=progress,
        repetition_split=repetitions if labeled else None,
    )


def _build_downstream(
    source: str,
    out: str | Path,
    root: Path,
    *,
    subjects: Iterable[int] | None,
    split: str | Iterable[str] | None,
    preprocess: TinyMyoPreprocess | DownstreamPreprocess | None,
    options: Mapping[str, Any],
    compression: str | None,
    progress: bool,
) -> Path:
    """`build_window_store` for a downstream dataset: its reader and thesis windowing."""
    info = dataset_info(source)
    task = info.downstream
    if isinstance(preprocess, DownstreamPreprocess):
        spec = preprocess
    elif preprocess is not None:
        spec = task.spec(source, window=preprocess.window, step=preprocess.step)
    else:
        spec = task.spec(source)
    options = task.check_options(source, options)
    names = list(SPLITS) if split is None else [split] if isinstance(split, str) else list(split)
    for name in names:
        check_choice(name, list(SPLITS), f"split of {source}'s windows")
    keep = [SPLIT_CODES[n] for n in names]
    data = {"dataset": source, "root": str(root)}
    chosen = _chosen_subjects(subjects, info.subjects(data), f"{source} files under {root}")

    def batches() -> Iterator[WindowBatch]:
        counts = dict.fromkeys(keep, 0)
        longest: dict[int, int] = {}  # split code -> the longest stretch a window had to fit
        for subject in chosen:
            batch = task.windows(info.read(data, subject), spec, options)
            for code, n in batch.info.pop("longest", {}).items():
                longest[code] = max(longest.get(code, 0), n)
            batch.keep(np.isin(batch.repetition, keep))
            batch.info.update({"split_rule": task.split_rule})
            for code in keep:
                counts[code] += int((batch.repetition == code).sum())
            yield batch
        # Checked here, before the store is complete: a split asked for is never left empty.
        for name, code in zip(names, keep):
            if counts[code]:
                continue
            if code not in longest:  # no selected subject has data of this split
                raise DataFormatError(
                    f"{source}: the {name} split has no window: no subject of {chosen[:10]} has "
                    f"{name} data ({task.split_rule}); select subjects of every split"
                )
            raise _no_window(source, name, spec, longest[code], task.unit)

    regression = task.task == "regression"
    return write_window_store(
        out,
        batches(),
        spec,
        labeled=not regression,
        compression=compression,
        progress=progress,
        splits={n: [SPLIT_CODES[n]] for n in names},
        target_names=list(task.target_names) if regression else None,
    )


def _store_recordings(
    source: str,
    root: str | Path | None,
    subjects: Iterable[int] | None,
    split: str | Iterable[str] | None,
    synthetic: SyntheticSpec | None,
) -> Callable[[], Iterator[Recording]]:
    """A function that yields the selected recordings, one at a time, each time it is called
    (the z-score pass reads them before the writing pass), from the dataset's reader."""
    info = dataset_info(source, use="store")
    data: dict[str, Any] = {"dataset": source, "split": split}
    if info.needs_root:
        data["root"] = str(root)
        where = f"{source} files under {root}"
    else:
        data["synthetic"] = (synthetic or SYNTHETIC_STORE).to_dict()
        where = "the synthetic spec"
    return info.store(data, _chosen_subjects(subjects, info.subjects(data), where))


def _length_at(recording: Recording, rate: float) -> int:
    """``recording``'s length in samples once resampled to ``rate``."""
    return int(recording.n_samples * rate / recording.sample_rate)


def _no_window(
    source: str, split: str | None, spec: Any, longest: int, unit: str
) -> DataFormatError:
    """The error for a store (``split=None``) or a split without windows: the window is longer
    than the longest ``unit`` a window must fit in (``longest`` samples at ``spec``'s rate)."""
    where = "no window" if split is None else f"no {split} window"
    seconds = spec.window / spec.sample_rate
    advice = f"; pass --window {longest} or less" if longest > 0 else ""
    return DataFormatError(
        f"{source}: {where}: a window is {spec.window} samples ({seconds:g} s at "
        f"{spec.sample_rate:g} Hz) but the longest {unit} is {longest} samples{advice}"
    )


def _refuse_inapplicable(info: Any, args: dict[str, Any]) -> None:
    """Refuse a missing root, or an argument of `build_window_store` (``args``: its name -> its
    value, None where not given) that dataset ``info`` would silently ignore."""
    if info.needs_root and args["root"] is None:
        raise ArgumentError(f"source {info.name!r} needs root (--root), the folder of its files")
    by_repetition, thesis = "repetitions" in info.uses, "downstream" in info.uses
    applies = {  # argument -> (whether dataset ``info`` takes it, the sources that do)
        "root": (info.needs_root, "every source read from files"),
        "train_repetitions": (by_repetition, list(REPETITION_SOURCES)),
        "test_repetitions": (by_repetition, list(REPETITION_SOURCES)),
        "synthetic": (not info.needs_root, "the generated sources"),
        "normalize": (not thesis, "the sources not z-scored per recording as the thesis does"),
        "downstream": (thesis, list(DOWNSTREAM_DATASETS)),
    }
    if ignored := [n for n, (takes, _) in applies.items() if args[n] is not None and not takes]:
        raise ArgumentError(f"{ignored} do not apply to {info.name!r}: {applies[ignored[0]][1]}")


def _chosen_subjects(
    subjects: Iterable[int] | None, available: Iterable[int], where: str
) -> list[int]:
    """The ``subjects`` asked for (default: every one ``available``), each checked to be there."""
    available = sorted(available)
    if not available:
        raise DataFormatError(f"no subjects found in {where}")
    wanted = available if subjects is None else sorted({int(s) for s in subjects})
    if missing := [s for s in wanted if s not in available]:
        raise ArgumentError(f"subjects {missing} are not in {where}; available: {available}")
    return wanted
