"""Discovery finds a planted circuit (issue 15).

IsoNets are trained on the planted synthetic data with every cross-modal edge cut except sEMG
tokens reading ACC tokens on the planted heads (`emg_lens.discovery.planted`). Run as trained
(the training cut as the base), for one planted head and for two, the screen ranks a planted
candidate first among the cross-modal ones (the plain screen, and the integrated-gradient one,
EAP-IG, on a quarter of the held-out windows), and the greedy search keeps every planted
candidate and no cross-modal candidate that was not planted. (EAP-IG ranked a planted candidate
first on all six models on every window and on every 3rd, 4th and 6th.) A run trains seed 0 of
each variant; ``EMG_LENS_TEST_SEEDS=all`` trains seeds 0-2 (`tests.seeds`).

What is asserted held in every one of 24 models trained as `train_planted` trains them (14
epochs): both variants, seeds 0-7 on one thread and seeds 0-3 on two, which changes the
floating-point path as another CPU does: rank 1, the last-layer planted head kept, precision 1
and recall 1, the two-head variant's layer-0 head included (faithfulness 0.950-1.015, above
1 - tau by construction of the search). (At 25 epochs the same held in 16 models.) So one seed
must satisfy all of it; over all three seeds, each may fail for one model and the test still
holds, so it does not depend on the CPU it runs on.
"""

from __future__ import annotations

import numpy as np
import pytest

from emg_lens.discovery import discover, screen
from emg_lens.discovery.planted import (
    ONE_HEAD,
    PLANTED_KIND,
    TWO_HEADS,
    planted_data,
    planted_rank,
    recovery,
    train_planted,
    training_edges,
)
from tests.seeds import misses_tolerated, planted_seeds

pytestmark = pytest.mark.slow

SEEDS = planted_seeds((0, 1, 2))
LAST_LAYER_HEAD = (1, 2)  # planted in both variants


@pytest.mark.parametrize("planted", [ONE_HEAD, TWO_HEADS], ids=["one_head", "two_heads"])
def test_discovery_recovers_the_planted_edges(planted):
    data = planted_data()
    rows = []
    for seed in SEEDS:
        model = train_planted(data, planted, seed=seed, reuse=True)  # notebook 05 reads seed 0
        screened = screen(
            model, data, return_type="avg_logits", base=training_edges(model, planted)
        )
        found = discover(model, data, tau=0.05, screened=screened)
        assert found.faithfulness > 0.95  # what tau promises, by construction of the search
        kept = {(c.layer, c.head) for c in found.kept if c.kind == PLANTED_KIND}
        integrated = screen(  # EAP-IG on every fourth held-out window: a quarter the cost
            model,
            data.select_test(np.arange(0, len(data.y_test), 4)),
            return_type="avg_logits",
            base=training_edges(model, planted),
            estimator="ig",
        )
        rows.append(
            {
                "seed": seed,
                "rank": planted_rank(screened, planted),
                "rank_ig": planted_rank(integrated, planted),
                "last_layer_kept": LAST_LAYER_HEAD in kept,
                **recovery(found, planted),
            }
        )
    print("\n" + "\n".join(map(str, rows)))
    needed = len(rows) - misses_tolerated(len(rows))
    assert sum(r["rank"] == 1 for r in rows) >= needed, rows
    assert sum(r["rank_ig"] == 1 for r in rows) >= needed, rows  # EAP-IG (issue 58)
    assert sum(r["last_layer_kept"] for r in rows) >= needed, rows
    assert sum(r["precision"] == 1.0 for r in rows) >= needed, rows
    assert sum(r["recall"] == 1.0 for r in rows) >= needed, rows
