"""EEG researchers' own objects (issue 42, item 2): an mne.EpochsArray with a standard 10-20
montage and a braindecode windows dataset become SubjectData with their channel names,
electrode positions, class names and labels."""

from __future__ import annotations

import json

import numpy as np
import pytest

mne = pytest.importorskip("mne")

from emg_lens.data.preprocess import SubjectData  # noqa: E402
from emg_lens.errors import ArgumentError, DataFormatError  # noqa: E402
from emg_lens.geometry.ten_twenty import scalp_xy  # noqa: E402
from emg_lens.stats.chance import (  # noqa: E402
    TrialScore,
    chance_console,
    chance_table,
    chance_warnings,
)

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
    assert np.hypot(*at["Cz"]) < 0.2  # the vertex near the centre (0.19 on this head)
    # exactly MNE's own topomap coordinates (its default sphere), in head radii
    from mne.channels.layout import _find_topomap_coords
    from mne.viz.topomap import _check_sphere

    ep = epochs()[0]
    sphere = _check_sphere(None)
    theirs = _find_topomap_coords(ep.info, picks=list(range(len(NAMES))), sphere=sphere)
    np.testing.assert_allclose(np.array(part.xy), theirs / sphere[3], atol=1e-6)
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
    with pytest.raises(ArgumentError, match="test_fraction must be a number between 0 and 1"):
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


# ----------------------------------------------------------------------------- recorded trials


def _overlapping_windows(recordings=3, trials=20, use_mne_epochs=False, fixed=False):
    """``recordings`` recordings of 4 EEG channels at 100 Hz, each ``trials`` 2 s trials
    (left, right, ...) 1 s apart, cut by braindecode into 0.5 s windows every 0.1 s: 16
    overlapping windows a trial (or, ``fixed``, fixed-length windows of each recording, its
    class its description's target)."""
    datasets = pytest.importorskip("braindecode.datasets")
    preprocessing = pytest.importorskip("braindecode.preprocessing")
    recording = getattr(datasets, "RawDataset", None) or datasets.BaseDataset
    parts = []
    for r in range(recordings):
        info = mne.create_info(["C3", "Cz", "C4", "Pz"], 100.0, "eeg")
        signal = np.random.default_rng(r).standard_normal((4, trials * 300 + 100))
        raw = mne.io.RawArray(signal, info, verbose=False)
        raw.set_annotations(mne.Annotations(np.arange(trials) * 3.0, 2.0, ["left", "right"] *
                                            (trials // 2)))  # fmt: skip
        description = {"subject": 1, "session": str(r), "target": r % 2}
        parts.append(recording(raw, description, target_name="target" if fixed else None))
    kwargs = {"window_size_samples": 50, "window_stride_samples": 10}
    if fixed:
        return preprocessing.create_fixed_length_windows(
            datasets.BaseConcatDataset(parts), on_last_window="drop", **kwargs
        )
    return preprocessing.create_windows_from_events(
        datasets.BaseConcatDataset(parts),
        trial_start_offset_samples=0,
        trial_stop_offset_samples=0,
        mapping={"left": 0, "right": 1},
        use_mne_epochs=use_mne_epochs,
        preload=use_mne_epochs,  # epochs read fast
        **kwargs,
    )


def _one_trial_each(X, trials):
    """Whether each trial's windows are one 2 s trial's: consecutive windows 10 samples
    apart (each window's last 40 samples the next one's first 40), and no two trials'."""
    for t in np.unique(trials):
        windows = X[trials == t]
        if len(windows) != 16 or not np.array_equal(windows[1:, :, :40], windows[:-1, :, 10:]):
            return False
    firsts = [X[trials == t][0] for t in np.unique(trials)]
    lasts = [X[trials == t][-1] for t in np.unique(trials)]
    return not any(
        np.array_equal(a[:, 10:], b[:, :40]) for a in lasts for b in firsts if a is not b
    )


def test_braindecode_trials_are_what_every_inference_counts():
    """Issue 56 item 4: create_windows_from_events records each window's event
    (``i_trial_in_dataset``, per recording); a trial is a (recording, i_trial_in_dataset)
    pair, held out whole, and test_trials group its 16 overlapping windows."""
    (data,) = SubjectData.from_windows_dataset(_overlapping_windows())
    assert data.meta["trial_unit"] == "given"
    json.dumps(data.meta["given_trials"])  # as the preprocessing cache stores meta
    # 3 recordings x 20 trials: the last 20 % of each class's 30 trials held out, whole
    assert len(np.unique(data.test_trials)) == 12 and len(np.unique(data.train_trials)) == 48
    assert len(data.y_test) == 12 * 16 and len(data.y_train) == 48 * 16
    recorded = data.meta["given_trials"]
    assert not set(recorded["train"]) & set(recorded["test"])  # no trial on both sides
    assert _one_trial_each(data.X_test, data.test_trials)
    assert _one_trial_each(data.X_train, data.train_trials)
    # a held-out subset keeps each window's trial
    picked = data.select_test(np.arange(0, len(data.y_test), 2))
    assert len(np.unique(picked.test_trials)) == 12
    # braindecode's windows as an mne.Epochs (one recording): read from their metadata
    windows = _overlapping_windows(recordings=1, use_mne_epochs=True).datasets[0].windows
    from_epochs = SubjectData.from_epochs(windows)
    assert from_epochs.meta["trial_unit"] == "given"
    assert len(np.unique(from_epochs.test_trials)) == 4  # 2 of each class's 10 trials
    assert _one_trial_each(from_epochs.X_test, from_epochs.test_trials)
    with pytest.raises(DataFormatError, match="test splits trial 0"):
        SubjectData.from_epochs(windows, test=np.arange(len(windows)) < 8)


def test_epochs_that_record_no_trial_are_each_their_own():
    assert SubjectData.from_epochs(epochs()[0]).meta["trial_unit"] == "window"


def test_fixed_length_windows_share_their_recordings_trial():
    """Issue 78: create_fixed_length_windows records no i_trial_in_dataset (one label per
    recording, overlapping windows); each window was its own trial, so a model at chance per
    recording passed the chance check over hundreds of windows. A recording is now one trial
    (unit "recording"), held out whole, and the chance table says what its trials are."""
    (data,) = SubjectData.from_windows_dataset(_overlapping_windows(recordings=10, fixed=True))
    assert data.meta["trial_unit"] == "recording"
    json.dumps(data.meta["given_trials"])
    # 5 recordings a class: the last of each held out, whole; none on both sides
    assert len(np.unique(data.test_trials)) == 2 and len(np.unique(data.train_trials)) == 8
    assert not set(data.meta["given_trials"]["train"]) & set(data.meta["given_trials"]["test"])
    assert len(data.y_test) + len(data.y_train) == 10 * len(data.y_test) // 2
    score = TrialScore.from_predictions(
        data.y_test, data.y_test, data.test_trials, 2, unit=data.meta["trial_unit"]
    )
    row = chance_table({"m": score}).iloc[0]
    assert (row.unit, row.trials, row.verdict) == ("recording", 2, "too small to tell")
    assert "2 held-out recordings" in chance_warnings(chance_table({"m": score}))[0]
    assert "one recording" in chance_console(chance_table({"m": score}), below_baseline=None)
    with pytest.raises(DataFormatError, match="class 0 has 1 recording"):  # nothing to train on
        SubjectData.from_windows_dataset(_overlapping_windows(recordings=2, fixed=True))


def test_a_model_at_chance_per_trial_is_rarely_above_chance_on_braindecode_windows():
    """Issue 56 item 4: a model whose prediction is one random class per trial (the same for
    all 16 windows of the trial) on 12 held-out trials of overlapping braindecode windows.
    Over trials it is called above chance in 8 of 200 seeded draws (4.0 %; 2.1 % of 4,000,
    and exactly 1.9 %: 10 or more of 12 trials right). Counted over windows, as before
    braindecode's trials were read (each window its own trial), in 91 of 200 (45.5 %; 39.6 %
    of 4,000)."""
    (data,) = SubjectData.from_windows_dataset(_overlapping_windows())
    trials = data.test_trials
    above = {"trial": 0, "window": 0}
    for seed in range(200):
        per_trial = np.random.default_rng(seed).integers(0, 2, trials.max() + 1)
        pred = per_trial[trials]
        for unit, grouping in (("trial", trials), ("window", np.arange(len(trials)))):
            score = TrialScore.from_predictions(pred, data.y_test, grouping, 2)
            above[unit] += bool(chance_table({"m": score}).iloc[0]["above_chance"])
    assert above["trial"] <= 0.08 * 200 and above["window"] >= 0.3 * 200


class _Recording:
    """A braindecode-like recording whose windows carry a label each and record no trial
    (as ``create_fixed_length_windows`` with ``targets_from="channels"``): every sample of
    recording ``r`` is ``r``, so a window shows which recording it came from."""

    def __init__(self, r: int, labels: list[int]):
        info = mne.create_info(["C3", "C4"], 100.0, "eeg")
        self.raw = mne.io.RawArray(np.full((2, 10 * len(labels)), float(r)), info, verbose=False)
        self.labels, self.description = labels, {"subject": 1}

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.raw.get_data()[:, 10 * i : 10 * i + 10], self.labels[i], None


def test_a_recording_of_two_classes_is_held_out_whole_and_is_one_trial():
    """Issue 78: a recording whose windows carry two classes (0, 0, 1, 1) is held out whole
    when its class 0 is held out, though class 1 holds out another recording (each window was
    its own trial, and the last of each class's windows were held out, splitting recordings).
    Issue 86: it is one trial, not one per run of one class: its runs share the recording and
    are right or wrong together (`emg_lens.stats.units.trial_votes` votes each class apart)."""
    labels = [[1, 1], [0, 0], [0, 0, 1, 1], [1, 1]]
    dataset = type("Concat", (), {"datasets": [_Recording(r, x) for r, x in enumerate(labels)]})
    (data,) = SubjectData.from_windows_dataset(dataset)
    assert data.meta["trial_unit"] == "recording"
    assert sorted(np.unique(data.X_test).tolist()) == [2.0, 3.0]  # recordings 2 and 3, whole
    assert sorted(np.unique(data.X_train).tolist()) == [0.0, 1.0]
    assert data.test_trials.tolist() == [0, 0, 0, 0, 1, 1]  # recording 2, then 3


def _channel_targets(last_target_only=True, step=False):
    """Two recordings of 4 EEG channels and one misc channel holding each sample's class,
    cut by braindecode's ``create_fixed_length_windows(..., targets_from="channels")``: its
    windows hold the 4 EEG channels and take their target from the misc one."""
    datasets = pytest.importorskip("braindecode.datasets")
    preprocessing = pytest.importorskip("braindecode.preprocessing")
    recording = getattr(datasets, "RawDataset", None) or datasets.BaseDataset
    parts = []
    for r in range(2):
        names, types = ["C3", "target", "Cz", "C4", "Pz"], ["eeg", "misc", "eeg", "eeg", "eeg"]
        signal = np.random.default_rng(r).standard_normal((5, 1000))
        signal[1] = np.repeat([r, 1 - r], 500) + (0.5 if step else 0.0)
        raw = mne.io.RawArray(signal, mne.create_info(names, 100.0, types), verbose=False)
        parts.append(recording(raw, {"subject": 1, "session": str(r)}))
    return preprocessing.create_fixed_length_windows(
        datasets.BaseConcatDataset(parts), window_size_samples=50, window_stride_samples=50,
        on_last_window="drop", targets_from="channels", last_target_only=last_target_only,
    )  # fmt: skip


def test_windows_whose_targets_come_from_a_channel_are_read():
    """Issue 86: braindecode's ``targets_from="channels"`` windows hold the signal channels
    only, their target a misc channel's last sample; the reader picked channels by the
    recording's full list and crashed (``IndexError: index 4 is out of bounds``)."""
    (data,) = SubjectData.from_windows_dataset(_channel_targets())
    assert data.meta["channel_names"] == ["C3", "Cz", "C4", "Pz"] and data.modalities == {"eeg": 4}
    assert data.classes == [0, 1] and data.X_train.shape[1:] == (4, 50)
    assert len(data.y_train) + len(data.y_test) == 40


@pytest.mark.parametrize(
    ("kwargs", "what"), [({"last_target_only": False}, "shape"), ({"step": True}, "0.5")]
)
def test_channel_targets_that_are_no_class_label_are_refused_by_name(kwargs, what):
    with pytest.raises(DataFormatError, match=r"targets_from='channels'.*one whole-number") as e:
        SubjectData.from_windows_dataset(_channel_targets(**kwargs))
    assert what in str(e.value)


# ----------------------------------------------------------------------------- bad objects named


class _Epochs:
    """An object with mne.Epochs's public attributes, its events one fewer than its epochs."""

    def __init__(self):
        self.ep = epochs(n=4, montage=None)[0]
        self.events, self.event_id = self.ep.events[:3], self.ep.event_id
        self.ch_names, self.info = self.ep.ch_names, self.ep.info

    def get_data(self, picks=None):
        return self.ep.get_data(picks=picks)

    def get_channel_types(self):
        return self.ep.get_channel_types()


def _nan_epochs():
    ep = epochs(n=4, montage=None)[0]
    ep._data[0, 0, 0] = np.nan
    return ep


def _float_trials():
    import pandas as pd

    ep = epochs(n=4, montage=None)[0]
    ep.metadata = pd.DataFrame({"i_trial_in_dataset": [0.5, 1.0, 2.0, 3.0]})
    return ep


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (_nan_epochs, DataFormatError, "epochs hold NaN or Inf values"),
        (lambda: epochs(types="stim", montage=None)[0], DataFormatError, r"no data channel.*stim"),
        (_Epochs, DataFormatError, "4 epochs but 3 events"),
        (_float_trials, DataFormatError, "'i_trial_in_dataset' must be an integer per window"),
    ],
)
def test_epochs_that_cannot_be_read_are_named(make, error, match):
    with pytest.raises(error, match=match):
        SubjectData.from_epochs(make())


class _NoSignal:
    def __init__(self):
        self.description = {"subject": 1}


class _Undescribed(_Recording):
    def __init__(self, r, labels):
        super().__init__(r, labels)
        self.description = {"session": "a"}


class _OtherChannels(_Recording):
    def __init__(self, r, labels):
        super().__init__(r, labels)
        info = mne.create_info(["C3", "Cz"], 100.0, "eeg")
        self.raw = mne.io.RawArray(self.raw.get_data(), info, verbose=False)


def _concat(*parts):
    return type("Concat", (), {"datasets": list(parts)})


@pytest.mark.parametrize(
    ("dataset", "kwargs", "error", "match"),
    [
        (np.zeros(3), {}, ArgumentError, "must be a braindecode BaseConcatDataset"),
        (_concat(_Undescribed(0, [0, 1])), {}, DataFormatError, "has no 'subject' described"),
        (_concat(_NoSignal()), {}, ArgumentError, "a _NoSignal has neither windows nor raw"),
        (
            _concat(_Recording(0, [0, 1]), _OtherChannels(1, [0, 1])),
            {},
            DataFormatError,
            r"hold channels \['C3', 'C4'\] and \['C3', 'Cz'\]",
        ),
        (
            _concat(_Recording(0, [0, 1])),
            {"split_by": "run", "test_values": (1,)},
            DataFormatError,
            "description has no 'run'",
        ),
        (_concat(_Recording(0, [])), {}, DataFormatError, "holds no window"),
    ],
)
def test_windows_datasets_that_cannot_be_read_are_named(dataset, kwargs, error, match):
    with pytest.raises(error, match=match):
        SubjectData.from_windows_dataset(dataset, **kwargs)
