"""What a trained autoencoder's features are, on held-out windows: `describe_features` builds
the tables of a `Features`.

- reconstruction: the fraction of variance explained, and the model's accuracy with the
  reconstruction spliced in at the hook (in place of the residual) beside its own;
- dead features (no held-out token fires them) and how many fire per token;
- per feature: the windows it fires most on, its mean activation per channel, per gesture
  class, its *modality share* (the share of its activation mass on each token group) and what
  ablating it costs: the feature zeroed in the spliced reconstruction with the error term
  kept (the residual minus its contribution), the change in accuracy and in the correct
  class's logit, per class."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from emg_lens.data.datasets import montages_of
from emg_lens.data.placement import has_placement
from emg_lens.data.preprocess import SubjectData
from emg_lens.inspect.features.config import FeatureConfig
from emg_lens.inspect.features.result import Features
from emg_lens.inspect.features.sae import TopKSAE
from emg_lens.inspect.features.tokens import spliced_logits, token_positions, token_residuals
from emg_lens.stats.chance import TrialScore


def describe_features(
    model: Any,
    data: SubjectData,
    sae: TopKSAE,
    config: FeatureConfig,
    provenance: dict[str, Any],
    *,
    source: dict | None = None,
    train_accuracy: float | None = None,
) -> Features:
    """Reconstruction, dead features and every feature's maps, classes, top windows and
    ablation on the test windows of ``data`` (see the module docstring), and the model's own
    score over their trials, for the chance check."""
    groups = config.token_groups(model)
    positions = token_positions(model, groups)
    layout = model.layout
    resid = token_residuals(model, data.X_test, config)  # [window, token, d]
    with torch.no_grad():
        recon, acts = sae(resid)
    centred = resid - resid.flatten(0, 1).mean(dim=0)
    fve = 1 - float((resid - recon).pow(2).sum() / centred.pow(2).sum().clamp_min(1e-12))
    X = torch.as_tensor(data.X_test, dtype=model.cfg.dtype, device=model.cfg.device)
    y = torch.as_tensor(data.y_test).long()
    own = spliced_logits(model, X, config, positions, lambda part: None)
    spliced = spliced_logits(model, X, config, positions, lambda part: recon[part])
    labels = [str(c) for c in data.classes]
    reconstruction = pd.DataFrame(
        [{
            "layer": config.layer, "hook": config.hook, "groups": "+".join(groups),
            "n_features": config.n_features, "k": config.k, "fve": fve,
            "model_accuracy": float((own.argmax(-1) == y).float().mean()),
            "spliced_accuracy": float((spliced.argmax(-1) == y).float().mean()),
            "dead_features": int((acts.flatten(0, 1) > 0).any(dim=0).logical_not().sum()),
            "active_per_token": float((acts > 0).sum(-1).float().mean()),
            "test_windows": len(y), "test_tokens": int(acts.shape[0] * acts.shape[1]),
        }]
    )  # fmt: skip
    reconstruction["readout_reads_them"] = _readout_reads(model, config, positions)
    per_class = _per_class(own, spliced, y, labels)
    ablation = _ablation(model, X, y, labels, config, positions, resid, sae, acts, own)
    token_group = [layout.group[p] for p in positions]
    placement = has_placement(source, data)
    score = TrialScore.from_predictions(
        own.argmax(-1).numpy(), data.y_test, data.test_trials, data.n_classes,
        train_accuracy=train_accuracy, placement=placement, unit=data.meta.get("trial_unit"),
    )  # fmt: skip
    return Features(
        model_name=type(model).__name__,
        config=config,
        sae=sae,
        provenance=provenance,
        reconstruction=reconstruction,
        per_class=per_class,
        features=_feature_table(acts, token_group, groups, y, labels, ablation),
        channels=_channel_table(model, positions, acts),
        classes=_class_table(acts, y, labels),
        top=_top_windows(model, positions, acts, y, labels, data.rep_test, config.top_windows),
        ablation=ablation,
        montages=montages_of(source, layout),
        subject=data.subject,
        source=source,
        score=score,
    )


def _readout_reads(model: Any, config: FeatureConfig, positions: list[int]) -> bool:
    """False where nothing written at these tokens can reach the logits: the last block's
    output at tokens the readout does not read (IsoNet's CLS head reads the CLS token only),
    so every ablation there is zero by construction."""
    if config.hook != "resid_post" or config.layer != model.cfg.n_layers - 1:
        return True
    read = getattr(model, "read_positions", lambda _: None)(config.readout)
    return read is None or bool(set(read) & set(positions))


def _per_class(own, spliced, y, labels) -> pd.DataFrame:
    rows = []
    for c, label in enumerate(labels):
        chosen = y == c
        if chosen.any():
            rows.append({
                "class": label, "n": int(chosen.sum()),
                "model_accuracy": float((own[chosen].argmax(-1) == c).float().mean()),
                "spliced_accuracy": float((spliced[chosen].argmax(-1) == c).float().mean()),
            })  # fmt: skip
    return pd.DataFrame(rows)


def _ablation(model, X, y, labels, config, positions, resid, sae, acts, own) -> pd.DataFrame:
    """Each feature zeroed in the reconstruction, the error kept: the residual minus the
    feature's contribution. Per feature and class: accuracy and the correct logit's change
    against the model as it is (which the spliced reconstruction plus its error is)."""
    correct = own.gather(1, y[:, None])[:, 0]
    right = own.argmax(-1) == y
    fired = (acts > 0).flatten(0, 1).any(dim=0)
    rows = []
    for f in range(sae.n_features):

        def without(part: slice, f: int = f) -> torch.Tensor:
            return resid[part] - acts[part, :, f, None] * sae.W_dec[f].detach()

        # a feature that never fires changes nothing: exactly the model
        logits = spliced_logits(model, X, config, positions, without) if fired[f] else own
        shift = logits.gather(1, y[:, None])[:, 0] - correct
        hit = logits.argmax(-1) == y
        for c, label in enumerate(labels):
            chosen = y == c
            if chosen.any():
                rows.append({
                    "feature": f, "class": label, "n": int(chosen.sum()),
                    "accuracy": float(right[chosen].float().mean()),
                    "ablated_accuracy": float(hit[chosen].float().mean()),
                    "delta_accuracy": float((hit[chosen].float() - right[chosen].float()).mean()),
                    "logit_shift": float(shift[chosen].mean()),
                })  # fmt: skip
    return pd.DataFrame(rows)


def _feature_table(acts, token_group, groups, y, labels, ablation) -> pd.DataFrame:
    """One row per feature: how often it fires, its modality shares, the class it fires on
    most, and its ablation overall and at its worst class."""
    flat = acts.flatten(0, 1)
    mass = acts.sum(dim=(0,))  # [token, feature]
    total = mass.sum(dim=0).clamp_min(1e-30)
    share = {
        g: (mass[[i for i, t in enumerate(token_group) if t == g]].sum(dim=0) / total).numpy()
        for g in groups
    }
    per_window = acts.mean(dim=1)  # [window, feature]
    by_class = torch.stack([
        per_window[y == c].mean(dim=0) if (y == c).any() else torch.zeros(acts.shape[-1])
        for c in range(len(labels))
    ])  # fmt: skip
    rows = []
    for f in range(acts.shape[-1]):
        fired = bool((flat[:, f] > 0).any())
        mine = ablation[ablation["feature"] == f]
        overall = (mine["delta_accuracy"] * mine["n"]).sum() / mine["n"].sum()
        worst = mine.loc[mine["delta_accuracy"].idxmin()]
        row = {
            "feature": f,
            "dead": not fired,
            "fires": float((flat[:, f] > 0).float().mean()),
            "mean_activation": float(flat[:, f].mean()),
            **{f"share_{g}": float(share[g][f]) if fired else np.nan for g in groups},
            "top_class": labels[int(by_class[:, f].argmax())] if fired else "",
            "delta_accuracy": float(overall),
            "worst_class": worst["class"],
            "worst_class_delta": float(worst["delta_accuracy"]),
        }
        rows.append(row)
    return pd.DataFrame(rows)


def _channel_table(model, positions, acts) -> pd.DataFrame:
    """Mean activation of each feature at each channel (over its tokens and the windows);
    ``index`` is the channel's place within its modality (what a montage is indexed by)."""
    layout = model.layout
    mean = acts.mean(dim=0)  # [token, feature]
    rows = []
    for group in dict.fromkeys(layout.group[p] for p in positions):
        channels = sorted({layout.channel[p] for p in positions if layout.group[p] == group})
        for index, channel in enumerate(channels):
            tokens = [i for i, p in enumerate(positions) if layout.channel[p] == channel]
            values = mean[tokens].mean(dim=0)
            name = layout.channel_names[channel] if layout.channel_names and channel >= 0 else ""
            for f in range(acts.shape[-1]):
                rows.append({"feature": f, "group": group, "index": index, "channel": channel,
                             "name": name, "mean_activation": float(values[f])})  # fmt: skip
    return pd.DataFrame(rows)


def _class_table(acts, y, labels) -> pd.DataFrame:
    """Per feature and class: the mean activation over the class's tokens and the share of
    its windows where the feature fires on some token."""
    rows = []
    for c, label in enumerate(labels):
        chosen = y == c
        if not chosen.any():
            continue
        mine = acts[chosen]
        mean, fires = mine.mean(dim=(0, 1)), (mine > 0).any(dim=1).float().mean(dim=0)
        for f in range(acts.shape[-1]):
            rows.append({"feature": f, "class": label, "mean_activation": float(mean[f]),
                         "fires_in_windows": float(fires[f])})  # fmt: skip
    return pd.DataFrame(rows)


def _top_windows(model, positions, acts, y, labels, repetitions, count) -> pd.DataFrame:
    """Each feature's ``count`` windows of largest activation (at any token), with the token
    where it peaks; ``window`` indexes the test windows described, ``repetition`` is theirs."""
    layout = model.layout
    peak, where = acts.max(dim=1)  # [window, feature]
    rows = []
    for f in range(acts.shape[-1]):
        order = torch.argsort(peak[:, f], descending=True, stable=True)[:count]
        for rank, w in enumerate(order.tolist()):
            if peak[w, f] <= 0:
                break
            p = positions[int(where[w, f])]
            rows.append({
                "feature": f, "rank": rank, "window": w, "repetition": int(repetitions[w]),
                "class": labels[int(y[w])],
                "activation": float(peak[w, f]), "group": layout.group[p],
                "channel": layout.channel[p], "time": layout.time[p],
            })  # fmt: skip
    return pd.DataFrame(
        rows, columns=["feature", "rank", "window", "repetition", "class", "activation", "group",
                       "channel", "time"]
    )  # fmt: skip
