"""A study finds what was planted (issue 3).

On synthetic data whose *interaction* gestures can only be told apart by combining sEMG with
ACC (`emg_lens.data.synthetic.emg_acc`), IsoNets are trained, and the study masks every cross-modal
edge in every layer. The interaction gestures must fall to near chance, while the gestures
that sEMG alone or ACC alone identifies keep most of their accuracy.

The study scores IsoNet's mean-pooled head (``return_type = "avg_logits"``). That head reads
the channel tokens only, through a linear map of their mean, so once no token can read the
other modality it can only add an sEMG part to an ACC part, and no sum of that kind computes
an XOR: cross-modal edges are its only route to the interaction gestures. The CLS head has a
second route, because the CLS token reads every token: it can fuse the two modalities itself
(the edges that touch CLS are neither unimodal nor cross-modal, docs/DESIGN.md §3). The test prints
both heads' numbers.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from emg_lens.config import config_for_data
from emg_lens.data.preprocess import prepare_subject
from emg_lens.data.synthetic.emg_acc import generate_recordings, gesture_kinds, planted_setup
from emg_lens.models import IsoNet
from emg_lens.studies import run_study
from emg_lens.train import TrainConfig, fit
from tests.seeds import planted_seeds

pytestmark = pytest.mark.slow

SUBJECTS = (1, 2)
TRAIN = TrainConfig(epochs=30, lr=2e-3, anneal_fraction=1.0, progress=False)
STEP = 100  # windows every 100 samples: half planted_setup's, half the training time
# Two layers, as the demo's models: 30 % less training than three (61-67 s against 88-91 s for
# both subjects, two runs at a time on two cores); at 20 epochs seed 3 learned too little (0.35).
N_LAYERS = 2
SEEDS = (0, 1, 2, 3)  # model and training seed; a run trains 0, ``EMG_LENS_TEST_SEEDS=all`` all


@pytest.fixture(scope="module", params=planted_seeds(SEEDS))
def trained(request):
    synthetic, preprocess = planted_setup(n_subjects=len(SUBJECTS))
    preprocess = dataclasses.replace(preprocess, step=STEP)
    models = {}
    for recording in generate_recordings(synthetic, list(SUBJECTS)):
        data = prepare_subject(recording, preprocess)
        cfg = config_for_data(
            IsoNet,
            "demo",
            data.modalities,
            data.n_classes,
            data.X_train.shape[-1],
            n_layers=N_LAYERS,
            seed=request.param,
        )
        model = IsoNet(cfg)
        fit(model, data.X_train, data.y_train, dataclasses.replace(TRAIN, seed=request.param))
        models[recording.subject] = (model, data)
    kinds = gesture_kinds(synthetic)
    groups = {}
    for index, label in enumerate(models[SUBJECTS[0]][1].classes):
        groups.setdefault(kinds[label], []).append(index)
    return models, groups


def _accuracy_by_kind(models, groups, return_type: str) -> pd.DataFrame:
    spec = {
        "name": "planted",
        "models": "in-memory",
        "return_type": return_type,
        "interventions": [{"name": "cross", "edges": "cross_modal"}],
        "layers": {"modes": ["all"]},
    }
    result = run_study(spec, models=models, progress=False)
    table = result.class_accuracy(groups)
    return table.pivot_table(
        index=["intervention", "subject"], columns="classes", values="accuracy"
    )


def test_masking_cross_modal_edges_removes_only_the_interaction_gestures(trained):
    models, groups = trained
    chance = 1 / len(groups["interaction"])  # among the interaction gestures
    by_head = {rt: _accuracy_by_kind(models, groups, rt) for rt in ("avg_logits", "logits")}
    for return_type, table in by_head.items():
        print(f"\n{return_type}: accuracy per gesture kind\n{table.round(3)}")
    table = by_head["avg_logits"]
    base, masked = table.loc["baseline"].mean(), table.loc["cross"].mean()
    # The models learned the interaction gestures (windows every 100 samples, seeds 0-3 trained
    # on one thread and on two, other floating-point paths, as on another CPU: 0.48-0.65, the
    # two subjects' mean; chance is 0.25; on an AMD EPYC 0.46-0.74) ...
    assert base["interaction"] >= chance + 0.15, base
    # ... masking cross-modal edges everywhere takes them to near chance (0.20-0.33; on the EPYC
    # 0.22-0.36) ...
    assert masked["interaction"] <= chance + 0.15, masked
    # ... and leaves the single-modality gestures most of their accuracy (masked, 0.85-1.00 of
    # it; on the EPYC 0.95-0.98). Every subject's interaction gestures fall (on the EPYC by
    # 0.02-0.64: seed 2's models, 0.46-0.49, learned least of the XOR).
    for kind in ("emg", "acc"):
        assert masked[kind] >= 0.75 * base[kind], (kind, base[kind], masked[kind])
    assert np.all(table.loc["cross", "interaction"] < table.loc["baseline", "interaction"])
