"""Concept erasure beside edge cuts, and the subject probe, on a pooled model over synthetic
subjects with a planted subject signature (issue 58; notebook 10 shows the same).

The data (`subject_signature_setup`: 3 subjects, 4 sEMG electrodes and one accelerometer) plant
2 sEMG-only gestures, 2 ACC-only gestures and 2 interaction gestures, the XOR of an sEMG code
and an ACC code that each modality alone says nothing about, and each subject's accelerometer
reads with its own offset (the sEMG carries nothing of who moves). One IsoNet is trained on
every subject's training windows, the demo's recipe, with its mean-pooled head scored.

- The cut of every route between the modalities costs the interaction gestures and leaves the
  others. Cut, the mean-pooled head reads a sum of what each modality's tokens say, which can
  tell at most 3 of the XOR's 4 cells apart (0.75): what a model keeps lies below that ceiling,
  most often below the 1-in-2 guess too. The LEACE eraser of the gesture at the ACC tokens
  entering layer 0 takes the ACC-only gestures (which no cut of those routes touches: the
  mean-pooled head reads the ACC tokens themselves) far below its norm-matched placebo.
- Where the two disagree: the ACC tokens hold no linear trace of *which* interaction gesture
  a window is (a fresh probe below chance before erasure; the eraser has a rank-1 edit that
  moves the tokens by some 5 %), so erasing it leaves the interaction gestures as they were,
  while the cut takes them down: the XOR lives between the two groups' tokens, where a cut
  reaches and a per-group linear eraser cannot.
- Erasing the subject from the ACC tokens leaves a fresh subject probe at chance and the
  single-modality gestures within a few points. The interaction gestures may lose more (up to
  0.13 on some trainings, where the placebo, moving the tokens as far, costs them less): the
  edit is large (some 0.7 of the tokens' spread), and on those trainings the directions the
  subjects' offsets span are not wholly apart from those the XOR reads.
- The subject probe finds the subject where it was planted (the ACC tokens at every layer; at
  layer 0 the random-init null reads the input's offset as well; the whole input carries it, so
  the trained model is not said to have put it there) and not where it was not: the sEMG
  tokens entering layer 0 below chance, the CLS token the trained model reads at chance after
  the blocks, where the random-init null, its attention mixing every token, carries the subject.

Measured over 24 trainings on an AMD EPYC (seeds 0-19 on one thread, 0-3 on two; every claim
held on each): interaction gestures 0.71-0.92, cut 0.31-0.63 (0.19-0.53 lost), the
single-modality gestures cut >= 0.92; ACC-only gestures erased 0.35-0.46, placebo 0.80-0.98;
the interaction erased from the ACC tokens changed them by at most 0.035; the subject erased:
probe 0.333 (chance 1/3), the single-modality gestures within 0.056, the interaction gestures
-0.13 to +0.05. Seed 0 on one thread, the training this test and notebook 10 share, is the
widest: cut 0.632 of 0.924, the subject erased 0.795. Earlier (seeds 0-2 on one thread, 0-1 on
two, another CPU): the subject probe at the ACC tokens 0.93 entering layer 0 (the null 0.93)
and 0.98-1.00 after the blocks (the null 0.96), the sEMG tokens 0.19 entering layer 0, the CLS
token after the blocks 0.23-0.38 (the null 0.88). The data of seed 1 (not these) left the
recipe's three attempts on the XOR's plateau (interaction gestures 0.50): these claims are of
a model that learned the planted gestures.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emg_lens.cli.demo import DEMO_CUT, DEMO_TRAIN
from emg_lens.config import EncoderConfig, config_for_data
from emg_lens.data.datasets import data_source, load_subject
from emg_lens.data.pooled import pool_subjects
from emg_lens.data.synthetic.emg_acc import gesture_kinds, subject_signature_setup
from emg_lens.hooks import attn_scores_filter, mask_edges
from emg_lens.inspect import erase_concept
from emg_lens.inspect.probe_report import INPUT, NULL, TRAINED, probe_subjects
from emg_lens.models import IsoNet
from emg_lens.train import TrainConfig
from emg_lens.train.supervised import fit_until_fitted
from tests.seeds import planted_seeds

pytestmark = pytest.mark.slow

AT = "blocks.0.hook_resid_pre"
# Seed 0 by default: notebook 10 trains this very model (one thread, reuse), the one kept
# training serves both. ``EMG_LENS_TEST_SEEDS=all`` trains every seed measured (`tests.seeds`).
EPOCHS, SEEDS = 20, tuple(range(20))


@pytest.fixture(scope="module", params=planted_seeds(SEEDS))
def pooled_model(request):
    seed = request.param
    synthetic, preprocess = subject_signature_setup(n_subjects=3, seed=0)
    source = data_source("synthetic", synthetic=synthetic, preprocess=preprocess)
    pooled = pool_subjects([load_subject(source, s) for s in (1, 2, 3)], standardize=True)
    cfg = config_for_data(IsoNet, EncoderConfig.preset("tiny", seed=seed), pooled.modalities,
                          pooled.n_classes, pooled.X_train.shape[-1])  # fmt: skip
    train = TrainConfig(epochs=EPOCHS, seed=seed, progress=False, **DEMO_TRAIN)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, _, _ = fit_until_fitted(IsoNet, cfg, pooled, train, reuse=True)
    finally:
        torch.set_num_threads(threads)
    planted = gesture_kinds(synthetic)
    kinds = {
        kind: [i for i, c in enumerate(pooled.classes) if planted[c] == kind]
        for kind in ("emg", "acc", "interaction")
    }
    return model.eval(), pooled, kinds


def _accuracy(model, data, kinds, hooks=()) -> dict[str, float]:
    """The mean-pooled head's held-out accuracy per gesture kind, under ``hooks``."""
    with torch.inference_mode():
        logits = model.run_with_hooks(torch.as_tensor(data.X_test), fwd_hooks=list(hooks),
                                      return_type="avg_logits")  # fmt: skip
    right = logits.argmax(-1).numpy() == data.y_test
    return {k: float(right[np.isin(data.y_test, c)].mean()) for k, c in kinds.items()}


def test_the_cut_and_the_erasure_agree_and_disagree_where_the_data_say(pooled_model):
    model, data, kinds = pooled_model
    found = {"none": _accuracy(model, data, kinds)}
    layers = list(range(model.cfg.n_layers))
    cut = [(attn_scores_filter(layers), mask_edges(DEMO_CUT, model.layout))]
    found["cut"] = _accuracy(model, data, kinds, cut)
    gesture = erase_concept(model, data, "gesture", at=AT, tokens="acc", folds=4)
    found["erased"] = _accuracy(model, data, kinds, gesture.fwd_hooks)
    found["placebo"] = _accuracy(model, data, kinds, [(AT, gesture.placebo(0))])
    keep = np.isin(data.y_train, kinds["interaction"])
    which = erase_concept(model, data.X_train[keep], data.y_train[keep], at=AT, tokens="acc",
                          trials=data.train_trials[keep], folds=4)  # fmt: skip
    found["interaction erased"] = _accuracy(model, data, kinds, which.fwd_hooks)
    for name, row in found.items():
        print(name, {k: round(v, 3) for k, v in row.items()})
    print(which.report.round(3).to_string())
    none = found["none"]
    assert none["interaction"] >= 0.65 and min(none["emg"], none["acc"]) >= 0.85
    # the routes between the modalities carry the interaction, and only it. Cut, the head reads
    # a sum of what each modality's tokens say, which tells at most 3 of the XOR's 4 cells apart
    # (0.75); what the model keeps lies below that ceiling, most often below 1 in 2 too
    assert found["cut"]["interaction"] <= 0.7
    assert found["cut"]["interaction"] <= none["interaction"] - 0.12
    assert min(found["cut"]["emg"], found["cut"]["acc"]) >= 0.85
    # the ACC tokens' content carries the ACC-only gestures, which no such cut touches
    assert found["erased"]["acc"] <= 0.6
    assert found["erased"]["acc"] <= found["placebo"]["acc"] - 0.25
    # nothing linear says which interaction gesture: nothing to erase, nothing lost
    row = which.report.iloc[0]
    assert row["accuracy_before"] <= row["chance"] + 0.05 and row["moved"] <= 0.15
    assert abs(found["interaction erased"]["interaction"] - none["interaction"]) <= 0.05


def test_erasing_the_subject_leaves_a_probe_at_chance_and_the_gestures(pooled_model):
    model, data, kinds = pooled_model
    subject = erase_concept(model, data, "subject", at=AT, tokens="acc", folds=4)
    row = subject.report.iloc[0]
    print(subject.report.round(3).to_string())
    assert row["accuracy_before"] >= 0.85 and abs(row["accuracy_after"] - row["chance"]) <= 0.05
    before, after = _accuracy(model, data, kinds), _accuracy(model, data, kinds, subject.fwd_hooks)
    # the single-modality gestures keep their accuracy; the interaction gestures may lose more on
    # some trainings (more than under the placebo): the edit is large, and the directions the
    # offsets span are not always wholly apart from those the XOR reads
    assert all(abs(after[k] - before[k]) <= 0.08 for k in ("emg", "acc")), (before, after)
    assert abs(after["interaction"] - before["interaction"]) <= 0.18, (before, after)


def test_the_subject_is_found_where_it_was_planted_beside_the_input_and_the_null(pooled_model):
    model, data, _ = pooled_model
    last = model.cfg.n_layers
    report = probe_subjects((model, data), groups=["cls", "emg", "acc"], layers=[0, last],
                            folds=4, transfer=False)  # fmt: skip
    probes = report.probes.set_index(["model", "group", "layer"])
    print(report.probes.round(3).to_string())  # the null: one row per seed
    accuracy, chance = probes["accuracy"], float(report.probes["chance"].iloc[0])
    assert (report.probes["fold_unit"] == "trial").all() and chance == pytest.approx(1 / 3)
    # planted in the input, on the ACC tokens: found there at every layer (the input carries it
    # already: the trained model is not said to have put it there, issue 78)
    assert accuracy[(INPUT, "input", -1)] >= 0.95 and accuracy[(TRAINED, "acc", 0)] >= 0.85
    assert accuracy[(TRAINED, "acc", last)] >= 0.95 and "training put" not in report.summary()
    # not planted on the sEMG tokens, nor is it in the trained model's CLS readout token
    assert accuracy[(TRAINED, "emg", 0)] <= chance + 0.05
    assert accuracy[(TRAINED, "cls", last)] <= chance + 0.1
    assert accuracy[(NULL, "cls", last)].min() >= accuracy[(TRAINED, "cls", last)] + 0.3
