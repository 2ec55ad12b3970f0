"""The planted EEG is learnable (issue 38 item 6): a small converted CBraMod, fine-tuned as
notebook 06 does, learns the interaction classes held out on a subject, and cutting every
edge between scalp regions takes them away while the single-region classes stay; a small
hand-written transformer over per-channel log power spectra, attached, learns them on every
subject tried, and with one token per channel a cut between regions leaves it guessing.

tests/unit/data/test_synthetic_eeg.py shows the plant is in the data (band power, nothing
trained); this shows a model learns it, which is what makes a study of it a test. Measured
when written (one thread, default planted EEG, 400 steps): subject 3 reached 0.90 and 0.93
held out on the interaction classes (two runs), 0.28-0.29 with `cross_region` cut; its
single-region classes 1.00; on subjects 1, 2, 4-7 it learned one bit of the XOR only
(0.44-0.56). The spectral model (400 steps, one thread): subjects 1 and 2 at 0.96 and 0.94
held out (0.94-0.98 on subjects 1, 2, 4, 6 with AdamW), 0.23-0.25 cut; its single-region
classes 0.93 and more. The thresholds below leave margin under those numbers. On two threads
(checked when notebook 06 moved to one) the tests passed too: CBraMod 0.90 open, 0.29 cut;
the spectral model 0.97 and 0.92 open, 0.25 and 0.22 cut. They assert thresholds, not a p, so
a tie between subjects cannot cost them a star as it did the notebook's study; they train on
one thread all the same (`one_thread`), the notebook's path, the same on every machine.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from emg_lens.cli.common import torch_threads
from emg_lens.data.preprocess import prepare_subject
from emg_lens.data.synthetic.eeg import (
    generate_eeg_recordings,
    planted_eeg_setup,
    planted_eeg_truth,
)
from emg_lens.edges import cross_region
from emg_lens.hooks import compile_edges
from emg_lens.layout import TokenLayout
from emg_lens.models import attach, from_braindecode
from emg_lens.models.attached.examples import SpectralEEG
from tests.tiny import adam_steps

bd = pytest.importorskip("braindecode.models")
pytestmark = pytest.mark.slow

SUBJECT = 3
STEPS = 400  # notebook 06's fine-tuning: Adam, lr 3e-3, batches of 64
CONVS = ((4, 49, 25, 24, (2, 4)), (4, 3, 1, 1, (2, 4)))  # notebook 06's CBraMod, d_model 32


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as notebook 06 trains, whatever the session's count: another count
    rounds differently and trains other models than those the thresholds were measured on."""
    with torch_threads(1):
        yield


def _cbramod(names: list[str], n_classes: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        source = bd.CBraMod(
            n_chans=len(names),
            n_times=200,
            n_outputs=n_classes,
            chs_info=[{"ch_name": name} for name in names],
            n_layer=2,
            nhead=4,
            dim_feedforward=32,
            emb_dim=4,
            channels_kernel_stride_padding_norm=CONVS,
        )
    return from_braindecode(source)


def _fine_tune(model, data) -> None:
    adam_steps(model, data, STEPS, batch_size=64)


def _open_and_cut(model, data, truth):
    """Each held-out window's gesture kind, and whether the model gets it right open and with
    every edge between regions cut."""
    kinds = np.array([truth.kinds[label] for label in data.classes])[data.y_test]
    X = torch.as_tensor(data.X_test)
    with torch.no_grad():
        open_ = model(X).argmax(-1).numpy() == data.y_test
        cut = model(X, edge_masks=compile_edges(cross_region(), model)).argmax(-1).numpy()
    return kinds, open_, cut == data.y_test


def test_a_small_cbramod_learns_the_interaction_and_a_region_cut_removes_it():
    spec, preprocess = planted_eeg_setup(n_subjects=SUBJECT)
    data = prepare_subject(generate_eeg_recordings(spec, [SUBJECT])[0], preprocess)
    truth = planted_eeg_truth(spec)
    model = _cbramod(list(spec.channels), len(data.classes))
    _fine_tune(model, data)

    kinds, open_, cut = _open_and_cut(model, data, truth)
    interaction, single = kinds == "interaction", kinds != "interaction"
    for what, rows in (("interaction", interaction), ("single-region", single)):
        print(f"held out, {what}: {open_[rows].mean():.2f} open, {cut[rows].mean():.2f} cut")
    assert open_[interaction].mean() >= 0.8  # learned: guessing among the four is 0.25
    assert open_[single].mean() >= 0.95
    assert cut[interaction].mean() <= 0.5  # no edge between lobes: the XOR is gone
    assert cut[single].mean() >= 0.9  # the single-region classes need no such edge


@pytest.mark.parametrize("subject", [1, 2])
def test_an_attached_spectral_transformer_learns_it_and_a_region_cut_leaves_it_guessing(subject):
    spec, preprocess = planted_eeg_setup(n_subjects=subject)
    data = prepare_subject(generate_eeg_recordings(spec, [subject])[0], preprocess)
    truth = planted_eeg_truth(spec)
    torch.manual_seed(0)
    net = SpectralEEG(len(spec.channels), len(data.classes))
    layout = TokenLayout.channel_tokens(
        {"eeg": len(spec.channels)}, cls_token=False, channel_names=list(spec.channels)
    )
    model = attach(net, layout=layout, n_samples=data.X_train.shape[-1])
    _fine_tune(net, data)  # the user's module trains as it is; the attached one shares it

    kinds, open_, cut = _open_and_cut(model, data, truth)
    interaction = kinds == "interaction"
    print(f"subject {subject}: {open_[interaction].mean():.2f} open, {cut[interaction].mean():.2f}")
    assert open_[interaction].mean() >= 0.8 and open_[~interaction].mean() >= 0.85
    # each token embeds one channel: with no edge between lobes no token sees both codes
    assert cut[interaction].mean() <= 0.35
