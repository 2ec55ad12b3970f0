"""EEG researchers' own objects (issue 42, item 2): an mne.EpochsArray with a standard 10-20
montage and a braindecode windows dataset become SubjectData with their channel names,
electrode positions, class names and labels."""

from __future__ import annotations

import numpy as np
import pytest

mne = pytest.importorskip("mne")

from emg_lens.data.preprocess import SubjectData  # noqa: E402
from emg_lens.errors import ArgumentError, DataFormatError  # noqa: E402
from emg_lens.geometry.ten_twenty import scalp_xy  # noqa: E402

NAMES = ["Fp1", "Fz", "C3", "Cz", "C4", "Pz", "O1", "O2"]


def epochs(n=20, names=NAMES, types="eeg", codes=None, montage="colin27_1020"):
    info = mne.create_info(list(names), 100.0, types)
    codes = np.tile([1, 2], n // 2) if codes is None else np.asarray(codes)
    events = np.c_[np.arange(len(codes)) * 100, np.zeros(len(codes), int), codes]
    rng = np.random.default_rng(0)
    data = rng.standard_normal((len(codes), len(names), 50))
    data[:, 0] += codes[:, None]  # channel 0 carries the class
    event_id = {name: c for name, c in (("left", 1), ("right", 2)) if c in codes}
    out = mne.EpochsArray(data, info, events, event_id=event_id, verbose=False)
    if montage:
        out.set_montage(montage, verbose=False)
    return out, data, codes


def test_epochs_keep_names_labels_and_the_held_out_epochs():
    ep, data, codes = epochs()
    subject = SubjectData.from_epochs(ep, subject=3)
    assert subject.subject == 3 and subject.modalities == {"eeg": 8}
    assert subject.classes == [1, 2] and subject.meta["class_names"] == {1: "left", 2: "right"}
    assert subject.meta["channel_names"] == NAMES and subject.meta["sample_rate"] == 100.0
    # the last 20 % of each class in time order is held out: epochs 16..19
    np.testing.assert_allclose(subject.X_test, data[16:].astype(np.float32))
    assert subject.y_test.tolist() == [0, 1, 0, 1] == (codes[16:] - 1).tolist()
    np.testing.assert_allclose(subject.X_train, data[:16].astype(np.float32))
    given = SubjectData.from_epochs(ep, test=np.arange(20) < 4)
    np.testing.assert_allclose(given.X_test, data[:4].astype(np.float32))


def test_the_montage_places_the_electrodes_on_the_scalp():
    placement = SubjectData.from_epochs(epochs()[0]).meta["placement"]
    (part,) = placement.parts
    assert part.kind == "scalp" and part.labels == tuple(NAMES)
    at = dict(zip(NAMES, part.xy))
    for name, (x, y) in at.items():
        # a real head's positions, drawn as MNE draws them, near the idealised 10-20 ones
        assert np.hypot(x - scalp_xy(name)[0], y - scalp_xy(name)[1]) < 0.3, name
    assert np.hypot(*at["Cz"]) < 0.15  # the vertex near the centre
    assert at["Fp1"][1] > at["Fz"][1] > at["Cz"][1] > at["Pz"][1] > at["O1"][1]  # nose up
    assert at["C3"][0] < at["Cz"][0] < at["C4"][0]  # left ear left
    assert at["O1"][0] < 0 < at["O2"][0]
    assert SubjectData.from_epochs(epochs(montage=None)[0]).meta["placement"] is None


def test_channel_types_become_modalities_grouped_in_order():
    names = ["C3", "EMG1", "C4", "EMG2", "STI"]
    types = ["eeg", "emg", "eeg", "emg", "stim"]
    ep, data, _ = epochs(names=names, types=types, montage=None)
    subject = SubjectData.from_epochs(ep)
    assert subject.modalities == {"eeg": 2, "emg": 2}
    assert subject.meta["channel_names"] == ["C3", "C4", "EMG1", "EMG2"]
    np.testing.assert_allclose(subject.X_train[0], data[0, [0, 2, 1, 3]].astype(np.float32))


def test_bad_epochs_are_named():
    with pytest.raises(ArgumentError, match=r"must be an mne\.Epochs"):
        SubjectData.from_epochs(np.zeros((3, 2, 5)))
    with pytest.raises(DataFormatError, match="one class only"):
        SubjectData.from_epochs(epochs(codes=[1] * 10)[0])
    with pytest.raises(DataFormatError, match="class 2 has 1 window"):
        SubjectData.from_epochs(epochs(codes=[1, 1, 1, 2])[0])
    with pytest.raises(ArgumentError, match="test_fraction must lie between 0 and 1"):
        SubjectData.from_epochs(epochs()[0], test_fraction=1.5)
    with pytest.raises(ArgumentError, match="a mask of 20 booleans"):
        SubjectData.from_epochs(epochs()[0], test=np.ones(3, bool))
    with pytest.raises(DataFormatError, match=r"classes \[2\] have no training window"):
        SubjectData.from_epochs(epochs()[0], test=np.tile([False, True], 10))


def _windows_dataset(subjects=(1, 2)):
    datasets = pytest.importorskip("braindecode.datasets")
    preprocessing = pytest.importorskip("braindecode.preprocessing")
    recordings = []
    for i, subject in enumerate(subjects, 1):
        for session in ("a", "b"):
            info = mne.create_info(NAMES, 100.0, "eeg")
            raw = mne.io.RawArray(
                np.random.default_rng(i).standard_normal((8, 2000)), info, verbose=False
            )
            raw.set_montage("colin27_1020", verbose=False)
            onsets = np.arange(10) * 2.0
            raw.set_annotations(mne.Annotations(onsets, 1.0, ["left", "right"] * 5))
            description = {"subject": subject, "session": session}
            recording = getattr(datasets, "RawDataset", None) or datasets.BaseDataset
            recordings.append(recording(raw, description))
    return preprocessing.create_windows_from_events(
        datasets.BaseConcatDataset(recordings),
        trial_start_offset_samples=0,
        trial_stop_offset_samples=0,
        mapping={"left": 0, "right": 1},
    )


@pytest.mark.parametrize("values", [("x", 1), (0, 1)])
def test_subjects_that_are_not_all_numbers_are_all_numbered_in_order(values):
    """Issue 47, section 3 item 3: 'x' and 1 (or 0 and 1) both became subject 1."""
    subjects = SubjectData.from_windows_dataset(_windows_dataset(values))
    assert [s.subject for s in subjects] == [1, 2]
    assert [s.meta["subject"] for s in subjects] == list(values)


def test_a_braindecode_windows_dataset_gives_one_subject_each():
    windows = _windows_dataset()
    subjects = SubjectData.from_windows_dataset(windows, split_by="session", test_values=("b",))
    assert [s.subject for s in subjects] == [1, 2]
    first = subjects[0]
    assert first.modalities == {"eeg": 8} and first.classes == [0, 1]
    assert len(first.y_train) == len(first.y_test) == 10 and first.X_train.shape[1:] == (8, 100)
    assert first.meta["channel_names"] == NAMES and first.meta["placement"] is not None
    with pytest.raises(ArgumentError, match="split_by and test_values go together"):
        SubjectData.from_windows_dataset(windows, split_by="session")
