"""The dataset registry: every entry is complete and true to its data, every name the CLI
accepts is registered, and an unknown name is refused with the registered names."""

import argparse
import importlib
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from emg_lens import ArgumentError, DataFormatError
from emg_lens.data.cache import source_files
from emg_lens.data.datasets import (
    available_subjects,
    data_source,
    load_recording,
    load_subject,
    synthetic_windows_source,
    windows_source,
)
from emg_lens.data.formats.emg2pose import write_emg2pose_metadata, write_emg2pose_session
from emg_lens.data.preprocess import PreprocessSpec
from emg_lens.data.registry import (
    DATASETS,
    REGISTRY,
    USES,
    WINDOW_DATASETS,
    DatasetInfo,
    dataset_info,
    dataset_names,
)
from emg_lens.data.synthetic.eeg import SyntheticEEGSpec
from emg_lens.data.synthetic.emg_acc import SyntheticSpec
from emg_lens.data.window_build import build_window_store
from emg_lens.data.windows.pipeline import TinyMyoPreprocess
from tests.unit.data.ninapro_files import db6_vars, mat_vars, save

SMALL = SyntheticSpec(n_subjects=2, movement_seconds=0.3, rest_seconds=0.1, n_acc_sensors=2)
SMALL_EEG = SyntheticEEGSpec(n_subjects=2, n_repetitions=6, trial_seconds=1.0, rest_seconds=0.2)
EMG_ONLY = SyntheticSpec(
    n_subjects=2, movement_seconds=0.5, n_acc_gestures=0, n_interaction_gestures=0
)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A small real source of every registered dataset, and the subjects written into it."""
    tmp = tmp_path_factory.mktemp("registry")
    short = {"n_subjects": 2, "movement_seconds": 0.2, "rest_seconds": 0.1}
    written = [
        *REGISTRY["ninapro-db2"].synthesize(tmp / "db2", {**short, "exercises": ["B"]}),
        *REGISTRY["hdsemg"].synthesize(tmp / "hdsemg", {**short, "n_gestures": 2}),
    ]
    assert [p.name for p in written] == ["S1_E1_A1.mat", "S2_E1_A1.mat", "s1.mat", "s2.mat"]
    downstream = {"n_subjects": 2, "movement_seconds": 0.3}
    for name in ("epn612", "uci", "ninapro-db8"):
        list(REGISTRY[name].synthesize(tmp / name, downstream))
    store = build_window_store(
        "synthetic",
        tmp / "w.h5",
        synthetic=EMG_ONLY,
        preprocess=TinyMyoPreprocess(window=200, step=100),
        progress=False,
    )
    for subject in (1, 2):  # the window-store corpora, two subjects each
        for k in (1, 2, 3):
            save(tmp / "db5" / f"s{subject}" / f"S{subject}_E{k}_A1.mat", mat_vars(16, (1,), (1,)))
        save(tmp / "db6" / f"S{subject}_D1_T1.mat", db6_vars())
        save(tmp / "db7" / f"S{subject}_E1_A1.mat", mat_vars(12, (1, 40), (1,)))
        session = np.zeros((3000, 16), np.float32)
        write_emg2pose_session(tmp / "emg2pose" / f"s{subject}.hdf5", session, user=f"u{subject}")
    write_emg2pose_metadata(
        tmp / "emg2pose", [{"filename": f"s{s}", "user": f"u{s}", "split": "train"} for s in (1, 2)]
    )
    on_disk = ("emg2pose", "ninapro-db5", "ninapro-db6", "ninapro-db7")
    return {
        **{n: {"dataset": n, "root": str(tmp / n.removeprefix("ninapro-"))} for n in on_disk},
        "synthetic": data_source("synthetic", synthetic=SMALL),
        "synthetic-eeg": data_source("synthetic-eeg", synthetic=SMALL_EEG),
        "ninapro-db2": data_source("ninapro-db2", root=tmp / "db2"),
        "hdsemg": data_source("hdsemg", root=tmp / "hdsemg"),
        **{n: data_source(n, root=tmp / n) for n in ("epn612", "uci", "ninapro-db8")},
        "files": data_source(
            "files",
            root=Path(__file__).resolve().parents[2] / "data" / "libemg_myo",
            pattern="R_{repetition}_C_{gesture}_EMG.csv",
            sample_rate=200,
        ),
        "windows": windows_source(store),
        "synthetic-windows": synthetic_windows_source(EMG_ONLY, window=100, step=50),
    }


def test_the_registry_lists_every_dataset_once_under_its_own_name(sources):
    assert set(REGISTRY) == set(sources)
    assert all(name == info.name for name, info in REGISTRY.items())
    assert dataset_names() == tuple(REGISTRY)
    assert set().union(*(dataset_names(use) for use in USES)) == set(REGISTRY)
    assert not set(DATASETS) & set(WINDOW_DATASETS)
    assert all(REGISTRY[n].window_source for n in WINDOW_DATASETS)
    assert not any(REGISTRY[n].window_source for n in DATASETS)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_entry_has_what_its_uses_need(name):
    info = REGISTRY[name]
    assert info.summary.strip()
    for f in ("montage", "subjects", "files"):
        assert callable(getattr(info, f)), f
    uses = set(info.uses)
    assert ("recordings" in uses) == (info.read is not None)
    assert ("windows" in uses) == (info.read_windows is not None)
    assert ("downstream" in uses) == (info.downstream is not None)
    assert "downstream" not in uses or "store" in uses
    if "store" in uses:  # a store is cut from its recordings, or by the downstream recipe
        assert (info.store is not None) != (info.downstream is not None)
    assert not {"pretraining", "repetitions"} & uses or info.store is not None
    if "recordings" in uses:  # preprocessed and cached: defaults and a code fingerprint
        PreprocessSpec(**info.preprocess)  # every default is a real field
        assert info.cache_modules
        for module in info.cache_modules:
            importlib.import_module(module)
    assert info.synthesizer is None or callable(info.synthesize)


def test_an_entry_names_known_uses_and_module_attribute_references():
    kwargs = {f.name: getattr(REGISTRY["synthetic"], f.name) for f in fields(DatasetInfo)}
    with pytest.raises(
        ArgumentError, match=r"'synthetic': uses must be one of \[.*'downstream'\], got 'training'"
    ):
        DatasetInfo(**{**kwargs, "uses": ("training",)})
    with pytest.raises(ArgumentError, match="reader must be 'module:attribute', got 'emg_lens"):
        DatasetInfo(**{**kwargs, "reader": "emg_lens.data.synthetic.emg_acc"})
    with pytest.raises(AttributeError, match="no attribute 'reed'"):
        REGISTRY["synthetic"].reed  # noqa: B018  (a misspelt field is no reader's field)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_each_entry_describes_its_data_as_read(sources, name):
    """Subjects, files and montage as the entry states them are what its reader finds."""
    info, source = REGISTRY[name], sources[name]
    # two synthetic subjects: EPN's testing group counts from 1001, UCI's come from each split;
    # your own files: LibEMG's one real Myo subject
    expected = {"epn612": [1, 1001], "uci": [1, 25], "files": [1]}.get(name, [1, 2])
    assert available_subjects(source) == info.subjects(source) == expected
    files = source_files(source, 1)
    assert all(p.is_file() for p in files)
    assert bool(files) == bool(info.layout)  # an entry reading files says where they lie
    assert info.needs_root <= bool(files)
    montage = info.montage(source)
    if info.window_source:
        found = {"emg": info.read_windows(source, 1).X.shape[1]}
        assert load_subject(source, 1).modalities == found
    elif info.read is None:  # a window-store corpus: its recordings as a store reads them
        found = next(iter(info.store(source, [1])())).modalities
    else:
        found = load_recording(source, 1).modalities
    assert set(found) == set(montage)
    assert all(montage[m] in (None, n) for m, n in found.items()), (montage, found)
    for modality, names in info.channel_names.items():
        assert len(names) == len(set(names)) == found[modality]


def test_hdsemg_channel_names_follow_the_documented_grid_order():
    names = REGISTRY["hdsemg"].channel_names["emg"]
    # channel row + 8 * col of each grid; extensors first
    assert names[:2] == ("extensor_r1c1", "extensor_r2c1")
    assert names[8] == "extensor_r1c2"
    assert names[64] == "flexor_r1c1"


def _cli_choices(parser: argparse.ArgumentParser, flags: set[str]) -> dict[str, list[str]]:
    """Every choice list of ``flags`` in the parser and its subcommands, by command path."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                for path, choices in _cli_choices(sub, flags).items():
                    found[f"{name} {path}".strip()] = choices
        elif flags & set(action.option_strings) and action.choices is not None:
            found[action.option_strings[0]] = list(action.choices)
    return found


def test_every_dataset_the_cli_accepts_is_registered():
    from emg_lens.cli import build_parser

    choices = _cli_choices(build_parser(), {"--dataset", "--format"})
    assert len(choices) >= 3  # study/train --dataset, synth --format
    for path, names in choices.items():
        assert set(names) <= set(DATASETS), path
    synthesized = [n for n in DATASETS if REGISTRY[n].synthesize is not None]
    assert choices["synth --format"] == synthesized


def test_synthesize_refuses_an_option_its_format_does_not_take(tmp_path):
    with pytest.raises(ArgumentError, match="--n-gestures: not an option of --format ninapro-db2"):
        REGISTRY["ninapro-db2"].synthesize(tmp_path, {"n_gestures": 4})
    assert not any(tmp_path.iterdir())  # refused before any file


@pytest.mark.parametrize(
    "call",
    [
        lambda: data_source("db9"),
        lambda: load_recording({"dataset": "db9"}, 1),
        lambda: available_subjects({"dataset": "db9"}),
        lambda: load_subject({"dataset": "db9"}, 1, cache_dir=None),
        lambda: dataset_info("db9"),
    ],
)
def test_an_unknown_dataset_is_refused_with_the_registered_names(call):
    with pytest.raises(ArgumentError, match="'db9'") as info:
        call()
    assert all(repr(name) in str(info.value) for name in DATASETS)


def test_a_window_source_is_not_a_recording_dataset():
    with pytest.raises(ArgumentError, match="got 'windows'") as info:
        data_source("windows")
    assert "'windows'" not in str(info.value).split("got")[0]
    source = synthetic_windows_source(EMG_ONLY, window=100, step=50)
    with pytest.raises(ArgumentError, match="got 'synthetic-windows'"):
        load_recording(source, 1)
    assert np.array_equal(available_subjects(source), [1, 2])


def test_a_window_store_is_split_as_built_and_never_tested_on_its_zscore_fit(tmp_path):
    """A store records the repetitions its z-score was fitted on and those it held out; a
    window source splits it that way unless told otherwise, and refuses test repetitions the
    z-score saw (their windows were normalised with their own statistics)."""
    import h5py

    store = build_window_store(
        "synthetic",
        tmp_path / "w.h5",
        synthetic=EMG_ONLY,
        preprocess=TinyMyoPreprocess(window=200, step=100),
        train_repetitions=(1, 2, 3, 4),
        test_repetitions=(6,),
        progress=False,
    )
    source = windows_source(store)
    assert (source["train_repetitions"], source["test_repetitions"]) == ([1, 2, 3, 4], [6])
    with pytest.raises(ArgumentError, match=r"test repetitions \[2\] .* z-score was fitted on"):
        windows_source(store, train_repetitions=(1, 3, 4, 6), test_repetitions=(2, 5))
    assert windows_source(store, test_repetitions=(5,))["test_repetitions"] == [5]
    with h5py.File(store, "a") as f:  # as a store written before the split was recorded
        del f.attrs["repetition_split"]
    with pytest.warns(UserWarning, match="does not record the repetitions its z-score"):
        assert windows_source(store)["test_repetitions"] == [2, 5]


def test_a_dataset_read_from_files_needs_its_root():
    with pytest.raises(ArgumentError, match="dataset 'hdsemg' needs --root, its files' folder"):
        data_source("hdsemg")


def test_window_repetitions_the_windows_do_not_hold_are_named():
    tiny = SyntheticSpec(n_subjects=1, movement_seconds=0.2, rest_seconds=0.1, n_emg_gestures=2,
                         n_acc_gestures=0, n_interaction_gestures=0)  # fmt: skip
    source = synthetic_windows_source(
        tiny, window=100, step=50, train_repetitions=(1, 2), test_repetitions=(9,)
    )
    with pytest.raises(DataFormatError, match=r"needs windows in repetitions \[1, 2\] .* \[9\]"):
        load_subject(source, 1, cache_dir=None)
