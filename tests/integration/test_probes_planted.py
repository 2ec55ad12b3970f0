"""Probes and interchange interventions find what the demo's data planted (issue 39 item 5).

On `demo_setup`'s data (`emg_lens.data.synthetic.emg_acc`): the sEMG-only gestures differ
only in sEMG, the ACC-only ones only in ACC, and the interaction gestures only in the XOR of
the two, so that each modality alone carries nothing about which interaction gesture it is.

- At layer 0 each token carries its own channel only, so the sEMG tokens decode the sEMG-only
  gestures and the ACC tokens do not, and the other way round, for any weights (untrained
  models of two seeds and the trained demo model). Judged against the control task too: near
  chance is also what a probe scores for the wrong reason (a class split the probe cannot
  generalise over).
- On the trained demo model the pooled channel tokens (what its mean-pooled head reads) decode
  the interaction gestures only after the layers, and not when every route between the
  modalities (`cross_modal | from_cls`) is cut.
- Giving a window the ACC tokens of a window of another interaction gesture from the same
  repetition (the same sEMG code, so the pair differs only in ACC) moves the mean-pooled
  head's prediction to the source's gesture, and does not when those routes are cut.

Probes fold by trial (issue 46): the demo's 4 held-out repetitions give each gesture 4 trials,
so each fold leaves one repetition out. Measured on subject 1 of seeds 0-2 trained on one
thread and of seeds 0-1 on two (other floating-point paths, as on another CPU) with the demo's
recipe (`tests.demo_model`; the mean-pooled head's accuracy on the interaction gestures
0.92-0.96): pooled probe at layers 0/2 0.01-0.04 / 0.91-0.96 (below chance at layer 0: a
linear probe on XOR classes, fitted on three repetitions, is wrong on the fourth
systematically), its control 0.23-0.39 at layer 2 (0.83 when folded over windows), cut
0.01-0.04 at layer 2; IIA of the ACC tokens at layer 0 0.93-0.96 (its interval over trials
from 0.90-0.94 to 0.95-0.98), cut 0.22-0.25 (chance among the four interaction gestures 0.25).
Untrained models of seeds 0 and 1 at layer 0: each modality's own gestures 1.00, the other's
0.50-0.55.
Every bound below holds for all of them with room (they were set when some models stalled
near 0.5 on those gestures).
"""

from __future__ import annotations

import pandas as pd
import pytest

from emg_lens.cli import main
from emg_lens.config import config_for_data
from emg_lens.inspect import erase_concept, interchange, interchange_pairs, probe_tokens
from emg_lens.models import IsoNet
from tests.demo_model import (
    RECIPE,
    demo_data,
    demo_models_folder,
    kind_indices,
    trained_demo_model,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(shared):
    return trained_demo_model(shared)


def _untrained(data, seed: int) -> IsoNet:
    cfg = config_for_data(IsoNet, "demo", data.modalities, data.n_classes,
                          data.X_train.shape[-1], n_layers=2, seed=seed)  # fmt: skip
    return IsoNet(cfg).eval()


@pytest.mark.parametrize("which", ["trained", "untrained-0", "untrained-1"])
def test_at_layer_0_each_modality_decodes_its_own_gestures_only(request, which):
    # Only the trained case asks for the shared training, and first: under pytest-xdist the
    # untrained cases run on the other worker meanwhile (they were first and both asked for
    # it: one worker trained, the other sat on its lock as long, 30 s)
    if which == "trained":
        model, data = request.getfixturevalue("trained")
    else:
        data = demo_data()
        model = _untrained(data, int(which[-1]))
    kinds = kind_indices(data)
    for kind, other in (("emg", "acc"), ("acc", "emg")):
        table = probe_tokens(model, data, layers=[0], groups=[kind, other], classes=kinds[kind])
        print(f"\n{which}, {kind}-only gestures\n{table.round(3)}")
        row = table.set_index("group")
        assert row.loc[kind, "accuracy"] >= 0.9
        assert row.loc[other, "accuracy"] <= row.loc[other, "chance"] + 0.2
        assert row.loc[kind, "selectivity"] >= 0.3
        assert row.loc[kind, "selectivity"] >= row.loc[other, "selectivity"] + 0.3


def test_pooled_tokens_decode_the_interaction_only_after_the_layers_and_not_when_cut(trained):
    model, data = trained
    interaction = kind_indices(data)["interaction"]
    rows = {
        cut: probe_tokens(model, data, groups=["pooled"], classes=interaction, cut=cut)
        for cut in (None, RECIPE["cut"])
    }
    for cut, table in rows.items():
        print(f"\npooled tokens, interaction gestures, cut {cut}\n{table.round(3)}")
    open_, cut = (rows[c].set_index("layer")["accuracy"] for c in rows)
    chance = float(rows[None]["chance"].iloc[0])  # 0.25: four balanced gestures
    last = model.cfg.n_layers
    assert open_[0] <= chance + 0.15  # nothing before any cross-modal edge
    assert open_[last] >= chance + 0.2 and open_[last] >= open_[0] + 0.15
    assert cut[last] <= chance + 0.15
    assert open_[last] >= cut[last] + 0.2
    # folded by trial (issue 46), the control task is near chance after the last block while
    # the probe reads the gesture: split over windows it scored 0.83 here, recognising trials
    control = rows[None].set_index("layer")["control_accuracy"]
    assert abs(control[last] - chance) <= 0.25 and open_[last] >= 0.6
    assert (rows[None]["fold_unit"] == "repetition").all()  # 4 trials a gesture, 5 folds asked


def test_interchanging_acc_tokens_moves_the_prediction_to_the_source_unless_cut(trained):
    model, data = trained
    interaction = kind_indices(data)["interaction"]
    pairs = [(a, b) for a in interaction for b in interaction if a != b]
    base, source = interchange_pairs(data, pairs)  # same repetition: same sEMG code
    found = {
        cut: interchange(
            model, base, source, layer=0, group="acc", return_type="avg_logits", cut=cut
        )
        for cut in (None, RECIPE["cut"])
    }
    for cut, result in found.items():
        print(f"cut {cut}: {result.summary()}")
    chance = 1 / len(interaction)
    open_, cut = found[None], found[RECIPE["cut"]]
    assert open_.n == len(base[1]) > 500
    assert open_.ci_low >= chance + 0.15  # well above chance, with its interval
    assert cut.iia <= chance + 0.1
    assert open_.iia >= cut.iia + 0.15


def test_erasing_the_gesture_from_the_acc_tokens_leaves_a_fresh_probe_at_chance(trained):
    """Issue 58's acceptance: a LEACE eraser of the gesture at the ACC tokens entering layer 0,
    fitted on the training windows; a fresh logistic probe, folded by trial, on the erased
    held-out trials is within 0.10 of chance. Measured (this recipe, one thread; 3 folds, 3.7 s
    of CPU where 5 took 6.6): 0.43 before, 0.07 after (chance 0.125: eight balanced gestures),
    the placebo 0.44, rank 7 (k - 1); with 5 folds 0.40, 0.08 and 0.41."""
    model, data = trained
    erasure = erase_concept(model, data, "gesture", at="blocks.0.hook_resid_pre", tokens="acc",
                            folds=3)  # fmt: skip
    row = erasure.report.iloc[0]
    print(erasure.report.round(3).to_string())
    assert row["fold_unit"] == "trial" and row["rank"] == data.n_classes - 1
    assert abs(row["accuracy_after"] - row["chance"]) <= 0.10
    assert row["accuracy_before"] >= row["chance"] + 0.15  # there was something to erase
    assert row["placebo_accuracy"] >= row["accuracy_after"] + 0.15  # not the move's size


def test_the_probe_command_writes_the_planted_tables_figures_and_report(shared, tmp_path, capsys):
    folder, out = demo_models_folder(shared), tmp_path / "probe"
    interaction = [str(c) for c in kind_indices(demo_data())["interaction"]]
    argv = ["probe", "--models", str(folder), "--out", str(out), "--classes", *interaction,
            "--groups", "pooled", "acc", "--cut", RECIPE["cut"], "--interchange", "acc",
            "--return-type", "avg_logits"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "interchange acc at layer 0, cut none: IIA" in printed
    for name in ("probes.csv", "probe_summary.csv", "interchange.csv", "summary.md",
                 "probe_accuracy.png", "interchange_accuracy.png", "report.html"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    probes = pd.read_csv(out / "probe_summary.csv").set_index(["cut", "group", "layer"])
    last = int(probes.index.get_level_values("layer").max())
    assert probes.loc[("none", "pooled", last), "accuracy"] >= 0.45
    assert probes.loc[(RECIPE["cut"], "pooled", last), "accuracy"] <= 0.40
    swaps = pd.read_csv(out / "interchange.csv").set_index(["cut", "layer"])
    assert swaps.loc[("none", 0), "iia"] >= swaps.loc[(RECIPE["cut"], 0), "iia"] + 0.15
    report = (out / "report.html").read_text()
    assert "probe_accuracy" in report and "interchange_accuracy" in report
    assert f"<td>{RECIPE['cut']}</td>" in report  # the union's | kept inside its cell
