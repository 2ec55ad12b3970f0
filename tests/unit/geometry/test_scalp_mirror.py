"""The scalp's left–right mirror on real montages (issue 56 item 5): MNE's standard montages
are not exactly mirror-symmetric in position, so mirror electrodes are paired by their 10-20 /
10-05 names (Fp1/Fp2, C3/C4, FFC1h/FFC2h, Cz on itself), by position only where a name follows
no rule, and a scalp with an electrode whose mirror is missing is refused naming it."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

mne = pytest.importorskip("mne")

from emg_lens.data.placement import check_subject  # noqa: E402
from emg_lens.data.preprocess import SubjectData  # noqa: E402
from emg_lens.errors import ArgumentError  # noqa: E402
from emg_lens.geometry import Montage  # noqa: E402
from emg_lens.geometry.montage import Part  # noqa: E402
from emg_lens.geometry.symmetry import montage_maps, part_maps  # noqa: E402

TEN_TWENTY_19 = ["Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T7", "C3", "Cz", "C4", "T8",
                 "P7", "P3", "Pz", "P4", "P8", "O1", "O2"]  # fmt: skip
PAIRS = [("Fp1", "Fp2"), ("C3", "C4"), ("T7", "T8"), ("TP9", "TP10"), ("AF7", "AF8"),
         ("FT9", "FT10"), ("P9", "P10"), ("O1", "O2"), ("PO7", "PO8"), ("FFC1h", "FFC2h"),
         ("I1", "I2"), ("T3", "T4"), ("Cz", "Cz"), ("Fpz", "Fpz"), ("Iz", "Iz")]  # fmt: skip


def _montage(kind: str):
    """MNE's montage ``kind`` (``standard_*``: named ``colin27_*`` from MNE 1.14 on)."""
    if kind not in mne.channels.get_builtin_montages():
        kind = kind.replace("standard", "colin27")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "standard_1020" is deprecated
        return mne.channels.make_standard_montage(kind)


def _subject(kind: str, names=None, X=None, test=None) -> SubjectData:
    """A subject from an mne.EpochsArray of ``names`` (default: all the montage's channels)
    with MNE's montage ``kind`` set: positions as MNE gives them."""
    montage = _montage(kind)
    names = list(montage.ch_names if names is None else names)
    if X is None:
        X = np.random.default_rng(0).standard_normal((10, len(names), 20))
    events = np.c_[np.arange(len(X)) * 100, np.zeros(len(X), int), np.tile([1, 2], len(X) // 2)]
    info = mne.create_info(names, 100.0, "eeg")
    epochs = mne.EpochsArray(X, info, events, verbose=False)
    epochs.set_montage(montage, verbose=False)
    return SubjectData.from_epochs(epochs, test=test)


def _subsets():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        biosemi = {n: mne.channels.make_standard_montage(f"biosemi{n}").ch_names for n in (32, 64)}
    return {"all": None, "19": TEN_TWENTY_19, "32": biosemi[32], "64": biosemi[64]}


@pytest.mark.parametrize("kind", ["standard_1020", "standard_1005"])
@pytest.mark.parametrize("subset", ["all", "19", "32", "64"])
def test_mne_standard_montages_get_the_left_right_mirror_by_name(kind, subset):
    names = _subsets()[subset]
    placement = _subject(kind, names).meta["placement"]
    (part,) = placement.parts
    labels = list(part.labels)
    assert len(labels) == len(names or _montage(kind).ch_names)
    maps = montage_maps(placement)
    assert [m.name for m in maps] == ["identity", "left–right mirror"]
    mirror = maps[1].moved_to
    at = {name: i for i, name in enumerate(labels)}
    for left, right in PAIRS:
        if left in at and right in at:
            assert mirror[at[left]] == at[right] and mirror[at[right]] == at[left], left
    # every electrode lands near its mirrored position as MNE draws it (not exactly: MNE's
    # positions are those of a real head, up to 0.061 of the head's radius off)
    xy = np.asarray(part.xy)
    off = np.linalg.norm(xy[list(mirror)] * [-1, 1] - xy, axis=1)
    assert off.max() < 0.07
    assert sorted(mirror) == list(range(len(labels)))


def test_a_cap_read_with_left_and_right_swapped_is_named_from_mne_epochs():
    """64 channels placed by MNE's standard_1005; the held-out epochs recorded with the cap's
    sides swapped (each channel carries its mirror electrode's signal)."""
    names = _subsets()["64"]
    probe = _subject("standard_1005", names)
    mirror = list(montage_maps(probe.meta["placement"])[1].moved_to)
    rng = np.random.default_rng(3)
    y = np.tile([0, 1], 30)
    gains = rng.uniform(0.1, 2.0, (2, len(names)))  # each class its own pattern, not symmetric
    X = rng.standard_normal((60, len(names), 50)) * gains[y][:, :, None]
    held = np.arange(60) >= 40
    swapped = X.copy()
    swapped[np.ix_(held, mirror)] = X[held]  # channel mirror[j] carries electrode j's signal
    data = _subject("standard_1005", names, X=swapped, test=held)
    (check,) = check_subject(data)
    assert check.best.name == "left–right mirror"
    unmoved = _subject("standard_1005", names, X=X, test=held)
    assert check_subject(unmoved)[0].best.name == "identity"


def _part(labels, xy) -> Part:
    return Part("scalp", "scalp", tuple(range(len(labels))), tuple(xy), "map", labels=labels)


def test_names_without_a_rule_are_paired_by_position_and_a_missing_mirror_is_named():
    # EGI-style names: no 10-20 rule, so each is paired with the electrode at its mirrored
    # position (within a tenth of the head's radius), the midline one with itself
    part = _part(("E1", "E2", "E3"), [(-0.5, 0.1), (0.01, 0.3), (0.52, 0.08)])
    assert part_maps(part)[1] == ("left–right mirror", [2, 1, 0])
    # C4 missing: refused, C3 named (never paired by position with E7, which has no mirror)
    with pytest.raises(ArgumentError, match=r"no left–right mirror for C3, E7 \(by the 10-20"):
        montage_maps(Montage((_part(("C3", "Cz", "E7"), [(-0.4, 0), (0, 0), (0.4, 0)]),)))
    # positions that are no mirror of each other: refused, both named
    far = _part(("E1", "E2"), [(-0.5, 0.1), (0.3, -0.2)])
    with pytest.raises(ArgumentError, match="no left–right mirror for E1, E2"):
        montage_maps(Montage((far,)))
    # another system's letters (BioSemi's A1 at the vertex, A2 behind it): the positions
    # contradict the 10-20 reading A1 <-> A2, so each is its own mirror by position
    vertex = _part(("A1", "A2", "B1", "B2"), [(0, 0), (0, -0.09), (-0.3, 0.2), (0.3, 0.2)])
    assert part_maps(vertex)[1] == ("left–right mirror", [0, 1, 3, 2])
