"""`emg_lens.inspect.features` (issue 39 items 3-5): the planted truth on trained demo models
(features whose maps separate sEMG from ACC channels and whose ablation costs the gestures
they fire on), ablation as the residual minus the feature's contribution, save and load with
provenance, the command, and named errors for bad input."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from emg_lens import EncoderConfig
from emg_lens.checkpoints import load_checkpoint, read_checkpoint_info
from emg_lens.data.datasets import load_subject
from emg_lens.errors import (
    ArgumentError,
    CheckpointError,
    ConfigError,
    InputShapeError,
    LayoutError,
    StudyError,
)
from emg_lens.inspect.features import (
    FeatureConfig,
    TopKSAE,
    load_features,
    token_residuals,
    train_features,
)
from emg_lens.models import IsoNet
from tests.demo_model import RECIPE, demo_models_folder, kind_indices
from tests.tiny import perturb_biases, random_windows

PLANTED = {"layer": 0, "hook": "resid_pre", "epochs": 10}
"""The planted truth's autoencoder: 64 features, k 4, on the embeddings of the channel tokens."""
TEST_WINDOWS = 256


@pytest.fixture(scope="module")
def demo(shared):
    """The trained demo model (`tests.demo_model`), 256 of its test windows (evenly spaced)
    and its data source."""
    path = demo_models_folder(shared) / f"subject_{RECIPE['subject']}"
    source = read_checkpoint_info(path)["metadata"]["data_source"]
    data = load_subject(source, RECIPE["subject"]).select_windows(TEST_WINDOWS)
    return load_checkpoint(path).eval(), data, source


@pytest.mark.slow
def test_planted_features_separate_modalities_and_cost_their_gestures(demo):
    """On the trained demo model, at layer 0 (the embedded channel tokens):

    - the autoencoder rebuilds the tokens: FVE >= 0.95, the accuracy with the reconstruction
      spliced in within 0.05 of the model's;
    - its maps separate the modalities: at least 5 live features put >= 0.9 of their
      activation mass on the sEMG tokens and 5 on the ACC tokens. This holds for any weights
      (the two stems embed into different directions; untrained models of seeds 5 and 6:
      16-18 sEMG-pure, 13-14 ACC-pure), a check of the tool, not of training
      (docs/DESIGN.md §14);
    - their ablation costs the gestures they fire on: the costliest feature costs its worst
      gesture >= 0.15 accuracy and fires in >= 20 % of its windows, and no ablation moves a
      class's accuracy by more than the share of its windows the feature fires in;
    - and, what training makes: the features of one modality do not cost the gestures only
      the other modality tells apart. Summed over the pure features of a modality, the mean
      accuracy cost per class of the other modality's single-modality gestures is <= 0.06
      for the sEMG features (ACC-only gestures) and <= 0.1 for the ACC features (sEMG-only).
      The sEMG bound was 0.035; with the demo's recipe of issue 41 two autoencoders of one of
      the models below (seed 0, one thread) reach 0.047 (3/64: the 32 windows of a class move
      its accuracy in steps of 1/32), so it is 0.06 now, about one step above. Untrained
      models of the demo preset (4 heads) break one or the other (seed 5: 0.078 for sEMG;
      seed 6: 0.438 for ACC); untrained ones with the demo's 8 heads of the same seeds do not
      (0.0 and 0.0), so this contrast is weak.

    Measured over SAE seeds 0, 1, 2 on subject 1 of the demo's data of seeds 0-2 trained on one
    thread and seeds 0-1 on two (`tests.demo_model`'s recipe; this model is seed 1), 10 epochs,
    256 test windows: FVE >= 0.989, |spliced - model| <= 0.027, >= 12 sEMG-pure and >= 8
    ACC-pure features, the costliest feature's worst-class cost >= 0.437 on a gesture it fires
    in >= 0.5 of the windows of, cross-modality cost <= 0.047 (sEMG features) and <= 0.094 (ACC
    features)."""
    model, data, source = demo
    features = train_features(model, data, FeatureConfig(**PLANTED), source=source)
    r = features.reconstruction.iloc[0]
    assert r.fve >= 0.95
    assert abs(r.spliced_accuracy - r.model_accuracy) <= 0.05
    live = features.features[~features.features["dead"]]
    assert (live["share_emg"] >= 0.9).sum() >= 5
    assert (live["share_acc"] >= 0.9).sum() >= 5
    assert np.allclose(live["share_emg"] + live["share_acc"], 1)

    costliest = features.costliest(1)[0]
    row = features.features.set_index("feature").loc[costliest]
    assert row.worst_class_delta <= -0.15
    fires = features.classes.set_index(["feature", "class"])["fires_in_windows"]
    assert fires[(costliest, row.worst_class)] >= 0.2
    ablation = features.ablation.set_index(["feature", "class"])
    bound = fires.reindex(ablation.index)
    assert (ablation["delta_accuracy"].abs() <= bound + 1e-9).all()
    dead = list(features.features.loc[features.features["dead"], "feature"])
    assert (ablation.loc[dead, "delta_accuracy"] == 0).all()

    cost = -features.ablation.pivot(index="feature", columns="class", values="delta_accuracy")
    kinds = kind_indices(data)
    for modality, other, bound in (("emg", "acc", 0.06), ("acc", "emg", 0.1)):
        pure = live.loc[live[f"share_{modality}"] >= 0.9, "feature"]
        others = [str(data.classes[i]) for i in kinds[other]]
        assert cost.loc[pure, others].clip(lower=0).sum().mean() <= bound, modality


# ----------------------------------------------------------------------------- small models


@pytest.fixture(scope="module")
def tiny():
    """A tiny two-layer IsoNet and 60 random windows of its 3 classes."""
    model = IsoNet(EncoderConfig.preset("tiny", seed=0, init_range=0.5))
    perturb_biases(model)
    return model.eval(), random_windows(model, 60, seed=0)


SMALL = {"layer": 1, "n_features": 16, "k": 2, "epochs": 3}


def test_ablation_is_the_residual_minus_the_feature(tiny):
    """Zeroing a feature in the spliced reconstruction, error kept, is the model run with the
    residual minus that feature's contribution: the ablation table's accuracy equals a
    hand-made pass with that residual."""
    model, (X, y) = tiny
    features = train_features(model, (X, y), FeatureConfig(**SMALL))
    config, sae = features.config, features.sae
    held = features.reconstruction["test_windows"].iloc[0]
    order = np.random.default_rng(config.seed).permutation(len(y))
    test = np.sort(order[:held])
    resid = token_residuals(model, X[test], config)
    with torch.no_grad():
        acts = sae.encode(resid)
    f = int(features.features.loc[~features.features["dead"], "feature"].iloc[0])
    patched = resid - acts[..., f, None] * sae.W_dec[f].detach()
    positions = [i for i, g in enumerate(model.layout.group) if g != "cls"]

    def write(value, hook):
        value = value.clone()
        value[:, positions] = patched
        return value

    with torch.no_grad():
        logits = model.run_with_hooks(
            torch.as_tensor(X[test]), fwd_hooks=[(config.hook_name, write)]
        )
    expected = (logits.argmax(-1).numpy() == y[test]).mean()
    mine = features.ablation[features.ablation["feature"] == f]
    assert np.isclose((mine["ablated_accuracy"] * mine["n"]).sum() / mine["n"].sum(), expected)


@pytest.mark.slow
def test_save_and_load_round_trip_and_refusals(tiny, tmp_path):
    """`Features.save` writes the tables, figures, report and the autoencoder; `load_features`
    gives the same description back, and refuses another model, another format, or weights
    that are not the autoencoder's."""
    model, (X, y) = tiny
    features = train_features(model, (X, y), FeatureConfig(**SMALL))
    written = {p.name for p in features.save(tmp_path / "out")}
    assert {"features.safetensors", "features.json", "report.html", "summary.md"} <= written
    assert {"reconstruction.csv", "features.csv", "ablation.csv", "reconstruction.png"} <= written
    info = json.loads((tmp_path / "out" / "features.json").read_text())
    assert set(info["provenance"]) >= {"model", "data", "code"}

    held = features.reconstruction["test_windows"].iloc[0]
    order = np.random.default_rng(0).permutation(len(y))
    test = np.sort(order[:held])
    again = load_features(tmp_path / "out", model, (X[test], y[test]))
    assert again.features.equals(features.features)
    assert again.reconstruction.equals(features.reconstruction)

    other = IsoNet(EncoderConfig.preset("tiny", seed=1)).eval()
    with pytest.raises(CheckpointError, match="another model"):
        load_features(tmp_path / "out", other, (X, y))
    with pytest.raises(CheckpointError, match="no saved sparse features"):
        load_features(tmp_path, model, (X, y))
    bad = dict(info, format="something else")
    (tmp_path / "out" / "features.json").write_text(json.dumps(bad))
    with pytest.raises(CheckpointError, match="format must be"):
        load_features(tmp_path / "out", model, (X, y))
    (tmp_path / "out" / "features.json").write_text(json.dumps(info))
    shutil.copy(
        tmp_path / "out" / "features.safetensors", tmp_path / "out" / "features.safetensors.orig"
    )
    (tmp_path / "out" / "features.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_features(tmp_path / "out", model, (X, y))
    weights = load_file(str(tmp_path / "out" / "features.safetensors.orig"))
    save_file({"W_enc": torch.zeros(3, 3)}, str(tmp_path / "out" / "features.safetensors"))
    with pytest.raises(CheckpointError, match=r"weights \{'W_enc': \(3, 3\)\}, not the config's"):
        load_features(tmp_path / "out", model, (X, y))
    name = next(iter(weights))
    nan = {**weights, name: torch.full_like(weights[name], float("nan"))}
    save_file(nan, str(tmp_path / "out" / "features.safetensors"))
    with pytest.raises(CheckpointError, match=rf"\['{name}'\] hold NaN or inf"):
        load_features(tmp_path / "out", model, (X, y))
    (tmp_path / "out" / "features.json").write_text("{")
    with pytest.raises(CheckpointError, match=r"features\.json is not JSON text"):
        load_features(tmp_path / "out", model, (X, y))
    unknown = dict(info, config={**info["config"], "width": 3})
    (tmp_path / "out" / "features.json").write_text(json.dumps(unknown))
    with pytest.raises(
        CheckpointError, match=r"config: unknown FeatureConfig field\(s\) \['width'\]"
    ):
        load_features(tmp_path / "out", model, (X, y))


def test_bad_inputs_are_named(tiny):
    model, (X, y) = tiny
    with pytest.raises(
        ConfigError, match=r"FeatureConfig.k \(<= n_features\) must be an int in 1..8, got 9"
    ):
        FeatureConfig(layer=0, n_features=8, k=9)
    with pytest.raises(ConfigError, match=r"FeatureConfig\.hook must be one of"):
        FeatureConfig(layer=0, hook="attn_out")
    with pytest.raises(ConfigError, match=r"FeatureConfig\.lr"):
        FeatureConfig(layer=0, lr=float("nan"))
    for field in ("lr", "aux_coef"):  # "a finite number": an infinity is none
        with pytest.raises(ConfigError, match=rf"FeatureConfig\.{field} must be a finite number"):
            FeatureConfig(layer=0, **{field: float("inf")})
    with pytest.raises(ConfigError, match=r"FeatureConfig\.groups names no group"):
        FeatureConfig(layer=0, groups=())
    with pytest.raises(ConfigError, match=r"unknown FeatureConfig field\(s\) \['width'\]"):
        FeatureConfig.from_dict({"layer": 0, "width": 3})
    with pytest.raises(LayoutError, match="the model has 2 layers"):
        train_features(model, (X, y), FeatureConfig(layer=2))
    with pytest.raises(LayoutError, match="unknown token group 'eeg'"):
        train_features(model, (X, y), FeatureConfig(layer=0, groups=("eeg",)))
    with pytest.raises(ArgumentError, match="readout 'both' gives tuple, not class logits"):
        train_features(model, (X, y), FeatureConfig(layer=0, readout="both"))
    with pytest.raises(ArgumentError, match="IsoNet return_type must be one of"):
        train_features(model, (X, y), FeatureConfig(layer=0, readout="mean"))
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.blocks[0].attn.W_O.fill_(float("inf"))  # finite signals, non-finite residuals
    with pytest.raises(InputShapeError, match=r"non-finite activations at blocks\.1\."):
        train_features(broken, (X, y), FeatureConfig(layer=1, epochs=1))


def test_topk_keeps_k_features_with_unit_decoder_rows():
    sae = TopKSAE(d_in=6, n_features=10, k=3, seed=0)
    acts = sae.encode(torch.randn(50, 6))
    assert ((acts > 0).sum(-1) <= 3).all() and (acts >= 0).all()
    sae.W_dec.data *= 3
    sae.normalize_decoder()
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(10))


@pytest.mark.slow
def test_command_writes_the_report(shared, tmp_path):
    """``emg-lens features`` on a demo checkpoint: the tables, figures (a feature drawn on the
    forearm), the autoencoder and report.html."""
    from emg_lens.cli.main import run

    checkpoint = demo_models_folder(shared) / f"subject_{RECIPE['subject']}"
    out = tmp_path / "features"
    argv = ["features", "--checkpoint", str(checkpoint), "--out", str(out), "--layer", "1",
            "--epochs", "1", "--n-windows", "32", "--n-features", "16"]  # fmt: skip
    features = run(argv)
    assert (out / "report.html").is_file() and (out / "features.safetensors").is_file()
    assert any(p.name.endswith("_map.png") for p in out.iterdir())
    assert features.reconstruction["test_windows"].iloc[0] == 32


def test_a_readout_that_reads_no_feature_token_is_said(tiny):
    """IsoNet's CLS head reads only the CLS token after the last block: features of the channel
    tokens there change nothing, exactly, and the summary says why; the mean-pooled head reads
    them."""
    model, (X, y) = tiny
    last = dict(SMALL, hook="resid_post")
    features = train_features(model, (X, y), FeatureConfig(**last))
    assert not features.reconstruction["readout_reads_them"].iloc[0]
    assert (features.ablation["delta_accuracy"] == 0).all()
    assert "reads none of these tokens" in features.summary()
    pooled = train_features(model, (X, y), FeatureConfig(**last, readout="avg_logits"))
    assert pooled.reconstruction["readout_reads_them"].iloc[0]


def test_the_holdout_keeps_each_trial_on_one_side(tiny):
    """Windows without a training split are held out by whole trials (docs/DESIGN.md §15): no
    held-out trial has a window among those the autoencoder trains on."""
    from emg_lens.data.preprocess import SubjectData
    from emg_lens.data.trials import record_trials
    from emg_lens.inspect.features.train import _split

    model, (X, _) = tiny
    X = np.arange(len(X), dtype=np.float32)[:, None, None] + 0 * np.asarray(X)  # window i holds i
    trial = np.arange(len(X)) // 4  # 15 trials of 4 windows
    modalities = {"emg": 2, "acc": 4}
    data = SubjectData.from_windows(modalities, (X, trial % 4), meta=record_trials([], trial))
    train, held = _split(model, data, FeatureConfig(layer=0, holdout=0.25))
    trained_on = np.asarray(train)[:, 0, 0].astype(int)
    held_out = np.asarray(held.X_test)[:, 0, 0].astype(int)
    assert len(held_out) == 4 * round(0.25 * 15)
    assert not set(trial[held_out]) & set(trial[trained_on])
    assert sorted([*held_out, *trained_on]) == list(range(len(X)))


def test_the_auxk_loss_is_normalised_by_the_error_variance_as_published():
    """Gao et al.'s ``normalized_mse`` (their code, kernels.py): the squared error over the
    squared error of predicting every row by the batch mean, so a constant offset of the error
    changes nothing."""
    from emg_lens.inspect.features.sae import _aux_loss

    sae = TopKSAE(d_in=6, n_features=10, k=2, seed=0)
    x, error = torch.randn(32, 6), torch.randn(32, 6)
    dead = torch.zeros(10, dtype=torch.bool)
    dead[:5] = True
    config = FeatureConfig(layer=0, n_features=10, k=2, aux_k=3)
    pre = sae.pre_acts(x)[:, dead]
    top = pre.topk(3, dim=-1)
    recon = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu()) @ sae.W_dec[dead]
    published = ((recon - error) ** 2).mean() / ((error.mean(0) - error) ** 2).mean()
    torch.testing.assert_close(_aux_loss(sae, x, error, dead, config), published)


def test_a_fit_that_diverges_or_leaves_no_trial_and_a_splice_that_overflows_are_named(tiny):
    model, (X, y) = tiny
    X, y, small = X[:20], y[:20], {**SMALL, "epochs": 1}
    with pytest.raises(StudyError, match=r"loss became (inf|nan) in epoch \d: lower FeatureConfig"):
        train_features(model, (X, y), FeatureConfig(**{**small, "lr": 1e20, "epochs": 2}))
    with pytest.raises(ArgumentError, match=r"FeatureConfig.holdout 0.001 of 20 trials leaves 0"):
        train_features(model, (X, y), FeatureConfig(**{**small, "holdout": 0.001}))
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.blocks[1].attn.W_O.fill_(float("inf"))  # after the spliced stream
    with pytest.raises(InputShapeError, match=r"non-finite logits with blocks\.0\.\S+ spliced"):
        train_features(broken, (X, y), FeatureConfig(**{**small, "layer": 0}))
