"""The synthetic EEG (`emg_lens.data.synthetic.eeg`, issue 24 item 4): deterministic, on the
10-20 montage with its channels placed by the region table, and its planted structure is in the
data: asserted with band power, a statistic nothing learns, never with a trained model."""

from __future__ import annotations

import dataclasses
import functools
import json

import numpy as np
import pytest

from emg_lens import ConfigError, EncoderConfig
from emg_lens.config import config_for_data
from emg_lens.data.datasets import data_source, load_subject
from emg_lens.data.synthetic.eeg import (
    INTERACTION_BANDS,
    SINGLE_BANDS,
    TEN_TWENTY,
    SyntheticEEGSpec,
    eeg_source_fields,
    eeg_spec_of,
    generate_eeg_recordings,
    planted_eeg,
    planted_eeg_truth,
)
from emg_lens.data.synthetic.emg_acc import SyntheticSpec
from emg_lens.edges import parse
from emg_lens.errors import ArgumentError
from emg_lens.models import IsoNet

FS = 200.0
BANDS = {**SINGLE_BANDS, **INTERACTION_BANDS}


@functools.cache
def _planted():
    """Two subjects of the default planted EEG (`planted_eeg_setup`), train and test together."""
    subjects, truth = planted_eeg(2)
    return subjects, truth


def _band_power(X: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    """``[window, channel]`` mean power in ``band`` Hz of ``[window, channel, time]`` windows."""
    power = np.abs(np.fft.rfft(X, axis=-1)) ** 2
    freqs = np.fft.rfftfreq(X.shape[-1], 1 / FS)
    return power[..., (freqs >= band[0]) & (freqs <= band[1])].mean(-1)


def _region_power(data, truth, region: str, band: str) -> np.ndarray:
    """Log band power per window, averaged over the region's channels (by their names)."""
    X = np.concatenate([data.X_train, data.X_test])
    names = data.meta["channel_names"]
    idx = [names.index(c) for c in truth.region_channels[region]]
    return np.log(_band_power(X[:, idx], BANDS[band]).mean(1))


def _labels(data) -> tuple[np.ndarray, np.ndarray]:
    y = np.concatenate([data.y_train, data.y_test])
    return np.asarray(data.classes)[y], np.concatenate([data.rep_train, data.rep_test])


def _auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive window's statistic > a negative one's): 1.0 separates them perfectly."""
    return float((positive[:, None] > negative[None, :]).mean())


# ----------------------------------------------------------------------------- generator


def test_the_generator_is_deterministic_per_seed_and_subject():
    spec = SyntheticEEGSpec(n_subjects=2, n_repetitions=4, trial_seconds=1.0)
    a, b = generate_eeg_recordings(spec), generate_eeg_recordings(spec)
    for x, y in zip(a, b):
        assert np.array_equal(x.signals["eeg"], y.signals["eeg"])
        assert np.array_equal(x.stimulus, y.stimulus) and np.array_equal(x.repetition, y.repetition)
    # a subject's recording does not depend on which others are generated with it
    alone = generate_eeg_recordings(spec, [2])[0]
    assert np.array_equal(alone.signals["eeg"], a[1].signals["eeg"])
    other = generate_eeg_recordings(dataclasses.replace(spec, seed=1))[0]
    assert not np.allclose(other.signals["eeg"], a[0].signals["eeg"])
    assert not np.allclose(a[0].signals["eeg"], a[1].signals["eeg"])  # subjects differ


def test_recordings_look_like_eeg():
    rec = generate_eeg_recordings(SyntheticEEGSpec(n_subjects=1, n_repetitions=4))[0]
    x = rec.signals["eeg"]
    assert rec.modalities == {"eeg": 19} and rec.sample_rate == FS and x.dtype == np.float32
    assert 5 < x.std() < 40  # microvolts
    # 1/f: more power at 2-4 Hz than at 60-90 Hz (above every planted band), on every channel
    low, high = (_band_power(x.T[None], band)[0] for band in ((2.0, 4.0), (60.0, 90.0)))
    assert (low > 5 * high).all()
    rest = rec.stimulus == 0
    assert rest.any() and set(rec.repetition[rest].tolist()) == {0}


def test_channels_are_placed_by_the_region_table():
    truth = planted_eeg_truth()
    assert truth.channels == TEN_TWENTY and len(set(TEN_TWENTY)) == 19
    assert truth.region_channels == {
        "frontal": ("Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8"),
        "parietal": ("P3", "Pz", "P4"),  # P7/P8 (the old T5/T6) are temporal
    }
    other = planted_eeg_truth(SyntheticEEGSpec(regions=("central", "temporal")))
    assert other.region_channels == {
        "central": ("C3", "Cz", "C4"),
        "temporal": ("T7", "T8", "P7", "P8"),
    }


def test_bursts_land_on_the_planted_regions_only():
    """Class 1 (frontal theta) raises theta power on the frontal channels alone; an
    interaction class raises alpha or beta power on frontal and parietal channels only."""
    spec = SyntheticEEGSpec(n_subjects=1, n_repetitions=4)
    rec = generate_eeg_recordings(spec)[0]
    truth = planted_eeg_truth(spec)
    x = rec.signals["eeg"].T[None]  # [1, channel, time]

    def power(label: int, band: str) -> np.ndarray:
        keep = rec.stimulus == label
        return _band_power(x[..., keep], BANDS[band])[0]

    rest_like = {c for c, k in truth.kinds.items() if k == "parietal"}  # no frontal theta
    ratio = power(1, "theta") / np.mean([power(c, "theta") for c in rest_like], axis=0)
    frontal = np.isin(TEN_TWENTY, truth.region_channels["frontal"])
    assert (ratio[frontal] > 2).all() and (ratio[~frontal] < 1.5).all()
    planted = frontal | np.isin(TEN_TWENTY, truth.region_channels["parietal"])
    for band in ("alpha", "beta"):
        ratio = power(5, band) / power(1, band)  # class 5: interaction; 1: no beta anywhere
        assert (ratio[planted].max() > 2) and (ratio[~planted] < 1.5).all()


# ----------------------------------------------------------------------------- planted truth


@pytest.mark.slow
def test_single_region_classes_are_told_apart_by_their_own_region():
    """A single-region class's own (region, band) power separates it from every other class."""
    subjects, truth = _planted()
    singles = {c: k for c, k in truth.kinds.items() if k != "interaction"}
    assert sorted(singles.values()) == ["frontal", "frontal", "parietal", "parietal"]
    for data in subjects:
        labels, _ = _labels(data)
        for label, region in singles.items():
            stat = _region_power(data, truth, region, truth.bands[label])
            mine = labels == label
            assert _auc(stat[mine], stat[~mine]) > 0.97, (data.subject, label)


@pytest.mark.slow
def test_interaction_classes_need_both_regions_together():
    """Each region's alpha/beta code, read by a median threshold on its band power, carries
    no information about the interaction class alone (the best decoder from one region is at
    chance), while the XOR of the two regions' codes is the class."""
    subjects, truth = _planted()
    interaction = sorted(c for c, k in truth.kinds.items() if k == "interaction")
    k = len(interaction)
    assert k == 4 and all(truth.needs[c] == ("frontal", "parietal") for c in interaction)
    for data in subjects:
        labels, reps = _labels(data)
        keep = np.isin(labels, interaction)
        index = labels[keep] - interaction[0]  # 0-based among the interaction classes
        codes = {}
        for region in truth.regions:
            code = np.zeros(keep.sum(), int)
            for bit, band in enumerate(INTERACTION_BANDS):
                stat = _region_power(data, truth, region, band)[keep]
                code |= (stat > np.median(stat)).astype(int) << bit
            codes[region] = code
            # the best decoder of the class from this region's code alone: chance
            table = np.zeros((k, k))
            np.add.at(table, (code, index), 1)
            assert table.max(axis=1).sum() / table.sum() < 1 / k + 0.1, region
        first, second = (codes[r] for r in truth.regions)
        assert ((first ^ second) == index).mean() > 0.93
        # and the generator's own codes: the first region's is the repetition mod k
        assert ((first == reps[keep] % k).mean()) > 0.93


@pytest.mark.slow
def test_truth_groups_and_cut_fit_a_model_made_for_the_data():
    """The data's channel names go into a model's config, so the truth's cut (an edge
    expression over regions) compiles on its layout and separates the planted regions."""
    subjects, truth = _planted()
    data = subjects[0]
    groups = truth.groups(data.classes)
    assert groups == {"interaction": [4, 5, 6, 7], "unimodal": [0, 1, 2, 3]}
    cfg = config_for_data(
        IsoNet,
        "tiny",
        data.modalities,
        data.n_classes,
        data.X_train.shape[-1],
        channel_names=data.meta["channel_names"],
    )
    layout = IsoNet(cfg).layout
    mask = parse(truth.cut).compile(layout, 1)[0]
    frontal = [i for i in range(layout.n_tokens) if layout.channel_name(i) == "Fz"]
    parietal = [i for i in range(layout.n_tokens) if layout.channel_name(i) == "Pz"]
    assert mask[frontal][:, parietal].all() and not mask[frontal][:, frontal].any()
    with pytest.raises(ArgumentError, match=r"classes \[99\]"):
        truth.groups([1, 99])


# ----------------------------------------------------------------------------- data source


@pytest.mark.slow
@pytest.mark.unchecked
def test_the_registry_serves_the_same_data(tmp_path):
    spec = SyntheticEEGSpec(n_subjects=2, seed=3)
    source = data_source("synthetic-eeg", synthetic=spec)
    assert eeg_spec_of(json.loads(json.dumps(source))) == spec  # a checkpoint can store it
    data = load_subject(source, 2, cache_dir=tmp_path)
    again = planted_eeg(spec=spec)[0][1]
    assert data.modalities == {"eeg": 19} and data.classes == again.classes
    np.testing.assert_array_equal(data.X_test, again.X_test)
    # the command line's generic SyntheticSpec gives its subject count and seed
    cli = eeg_source_fields({"synthetic": SyntheticSpec(n_subjects=3, seed=4)})["synthetic_eeg"]
    assert (cli["n_subjects"], cli["seed"], cli["channels"]) == (3, 4, TEN_TWENTY)
    with pytest.raises(ArgumentError, match="SyntheticEEGSpec"):
        data_source("synthetic-eeg", synthetic=EncoderConfig.preset("tiny"))  # type: ignore


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"regions": ("frontal", "frontal")}, "regions must be two different lobes"),
        ({"regions": ("frontal", "left")}, "regions must be two different lobes"),
        ({"channels": ("Fp1", "Fp2")}, "no channel of .* is parietal"),
        ({"channels": ("Fp1", "EMG1", "P3")}, r"channels: channel 'EMG1' has no 10-20"),
        ({"channels": ("Fp1", "Fp1", "P3")}, "distinct"),
        ({"n_interaction": 3}, r"n_interaction must be one of \(0, 2, 4\), got 3"),
        ({"n_single": 3}, r"n_single must be one of \(0, 1, 2\), got 3"),
        ({"n_single": 0, "n_interaction": 0}, "at least 2 classes"),
        ({"n_repetitions": 3}, "n_repetitions=3 must be >= n_interaction=4"),
        ({"sample_rate": 80.0}, "sample_rate must be >= 100"),
        ({"burst": -1.0}, "burst"),
    ],
)
def test_bad_specs_name_the_field(overrides, says):
    with pytest.raises(ConfigError, match=r"SyntheticEEGSpec.*" + says):
        SyntheticEEGSpec(**overrides)
