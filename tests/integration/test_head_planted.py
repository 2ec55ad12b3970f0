"""Head importance finds the head that was trained to carry the interaction gestures (issue 6).

IsoNets are trained on the planted synthetic data (`emg_lens.discovery.planted.train_planted`,
with both directions of the route open) with every cross-modal edge cut in every layer except on
one head of one layer: whatever the interaction gestures need from the other modality has to
pass through that head. `head_importance` (each head's cross-modal
edges cut alone, scored on the mean-pooled head, which cannot fuse the modalities itself) must
rank that head first in every seed where some head's cut matters, and attention flow, with the
model run as it was trained, must show the cross-modal mass in that head.

Seeds 0-5 trained on one thread (another floating-point path, as on another CPU): the planted
head ranked first in 5 and its cut cost 5 to 14 points; in the sixth no head's cut moved the
accuracy by more than 0.4 points (that model never used the route), and the ranking of such
near-zeros is noise. Its cross-modal mass was 0.57-0.65 in all six. So a run trains seeds in
turn until one is informative (seed 0 first, at most 0-2); ``EMG_LENS_TEST_SEEDS=all`` trains
all three (`tests.seeds`).
"""

from __future__ import annotations

import pytest
import torch

from emg_lens.discovery.planted import planted_data, train_planted, training_edges
from emg_lens.edges import cross_modal
from emg_lens.hooks import compile_edges
from emg_lens.inspect import attention_flow, head_importance
from tests.seeds import planted_seeds

pytestmark = pytest.mark.slow

LAYER, HEAD = 1, 2  # the head that may read the other modality
SEEDS = (0, 1, 2)  # measured; a run stops at the first informative one unless told all
MATTERS = 0.02  # an accuracy change (2 points) that is not the noise of a few windows
# Seeds 0-5 at 25 epochs: the numbers above. At train_planted's default 14 (enough for
# discovery's one-way route) no seed's cut moved the accuracy by 2 points (0-1.0 points, one
# thread): the two-way route is used only with longer training.
EPOCHS = 25


@pytest.fixture(scope="module")
def data():
    return planted_data()


def test_head_importance_ranks_the_planted_head_first_and_flow_shows_its_mass(data):
    informative = 0
    asked = planted_seeds(SEEDS)
    for seed in (*asked, *(s for s in SEEDS if s not in asked)):
        if informative and seed not in asked:
            break
        # every cross-modal edge cut, in both directions, except on the planted head
        model = train_planted(data, [(LAYER, HEAD)], seed=seed, route=cross_modal(), epochs=EPOCHS)
        masks = compile_edges(training_edges(model, [(LAYER, HEAD)], cross_modal()), model)
        table = head_importance(model, data, kinds=["cross_modal"], return_type="avg_logits")
        ranked = table.sort_values(["rank", "layer", "head"])
        print(f"\nseed {seed}:\n{ranked.head(4).to_string(index=False)}")
        top = ranked.iloc[0]
        if abs(top["delta"]) >= MATTERS:  # some head's cut matters: the planted one's most
            informative += 1
            assert (top["layer"], top["head"]) == (LAYER, HEAD) and top["delta"] < 0, seed

        # Run as trained, layer LAYER's only cross-modal attention is the planted head's.
        _, cache = model.run_with_cache(torch.as_tensor(data.X_test[:128]), edge_masks=masks)
        flow = attention_flow(model, cache)
        cross = flow[
            (flow["layer"] == LAYER)
            & flow["query_group"].isin(["emg", "acc"])
            & flow["key_group"].isin(["emg", "acc"])
            & (flow["query_group"] != flow["key_group"])
        ]
        mass = cross.groupby("head")["mass"].mean()
        assert mass.drop(HEAD).max() == 0.0
        assert mass[HEAD] > 0.1, mass  # it does read the other modality
    assert informative, f"in no seed of {SEEDS} did any head's cut move the accuracy"
