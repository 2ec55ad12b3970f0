"""`Features`: a trained autoencoder and its description (the tables `describe_features`
builds), with its summary, figures and `save` (`save_sae` and the outputs every run writes:
CSV tables, ``summary.md``, figures and ``report.html``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from emg_lens._hints import checked
from emg_lens.inspect.features.checkpoint import write_sae
from emg_lens.inspect.features.config import FeatureConfig
from emg_lens.inspect.features.plots import (
    plot_feature_classes,
    plot_feature_map,
    plot_reconstruction,
)
from emg_lens.inspect.features.sae import TopKSAE
from emg_lens.output import markdown_table, save_outputs
from emg_lens.stats.chance import TrialScore, chance_console, chance_markdown, chance_table
from emg_lens.train.baseline import below_baseline

MAP_FEATURES = 6  # features drawn on the body: the costliest to ablate
HEATMAP_FEATURES = 16  # rows of the per-class heatmaps


@checked
@dataclass
class Features:
    """A trained `TopKSAE` and its description (`describe_features`); `save` writes it all."""

    model_name: str
    config: FeatureConfig
    sae: TopKSAE
    provenance: dict[str, Any]
    reconstruction: pd.DataFrame  # one row: fve, model and spliced accuracy, dead features
    per_class: pd.DataFrame  # class, n, model_accuracy, spliced_accuracy
    features: pd.DataFrame  # one row per feature
    channels: pd.DataFrame  # feature, group, index, channel, name, mean_activation
    classes: pd.DataFrame  # feature, class, mean_activation, fires_in_windows
    top: pd.DataFrame  # feature, rank, window, repetition, class, activation, group, channel, time
    ablation: pd.DataFrame  # feature, class, n, accuracy, ablated_accuracy, delta, logit_shift
    montages: dict[str, Any] = dataclasses.field(default_factory=dict)
    subject: int | None = None
    source: dict | None = None
    score: TrialScore | None = None  # the model's own, over trials: the chance check's

    def tables(self) -> dict[str, pd.DataFrame]:
        """The CSV tables by name."""
        return {
            "reconstruction": self.reconstruction,
            "reconstruction_by_class": self.per_class,
            "features": self.features,
            "channels": self.channels,
            "classes": self.classes,
            "top_windows": self.top,
            "ablation": self.ablation,
            "chance": self.chance,
        }

    @property
    def chance(self) -> pd.DataFrame:
        """The model's score on these windows beside chance, over their trials
        (`chance_table`); from the per-class window counts where no trial score was kept."""
        name = self.model_name if self.subject is None else f"subject {self.subject}"
        if self.score is not None:
            return chance_table({name: self.score})
        correct = (self.per_class["model_accuracy"] * self.per_class["n"]).round().astype(int)
        return chance_table({name: (int(correct.sum()), self.per_class["n"].to_numpy())})

    def console(self) -> str:
        """What ``emg-lens features`` prints: the summary, the model's accuracy beside chance
        and a warning when it is not clearly above it."""
        return f"{self.summary()}\n{chance_console(self.chance, below_baseline=below_baseline)}"

    def costliest(self, count: int = MAP_FEATURES) -> list[int]:
        """The live features whose ablation costs the most accuracy (at their worst class)."""
        live = self.features[~self.features["dead"]]
        order = live.sort_values(["worst_class_delta", "delta_accuracy", "feature"])
        return [int(f) for f in order["feature"].head(count)]

    def summary(self) -> str:
        """A few lines: the reconstruction and the costliest features."""
        r = self.reconstruction.iloc[0]
        lines = [
            f"{self.model_name}: {r.n_features} TopK features (k={r.k}) on "
            f"blocks.{r.layer}.hook_{r.hook} at the {r.groups} tokens",
            f"  reconstruction: FVE {r.fve:.3f} on {r.test_windows} held-out windows; accuracy "
            f"{r.model_accuracy:.3f} (model), {r.spliced_accuracy:.3f} (reconstruction "
            f"spliced in); {r.dead_features} dead features",
        ]
        if not r.readout_reads_them:
            lines.append(
                f"  the readout ({self.config.readout}) reads none of these tokens after the "
                "last block: the reconstruction and every ablation change nothing, by "
                "construction (read an earlier hook, or another readout)"
            )
        shares = [c for c in self.features.columns if c.startswith("share_")]
        for f in self.costliest(3):
            row = self.features.set_index("feature").loc[f]
            where = ", ".join(f"{c.removeprefix('share_')} {row[c]:.2f}" for c in shares)
            lines.append(
                f"  feature {f}: fires on {row.fires:.1%} of tokens, most in class "
                f"{row.top_class}; mass {where}; ablated: accuracy {row.delta_accuracy:+.3f}, "
                f"class {row.worst_class} {row.worst_class_delta:+.3f}"
            )
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """summary.md: the summary, the reconstruction and the costliest features."""
        lines = self.summary().splitlines()
        costly = self.features.set_index("feature").loc[self.costliest()].reset_index()
        return (
            f"# Sparse features: {lines[0]}\n\n"
            + chance_markdown(self.chance)
            + "\n"
            + "\n".join(f"- {line.strip()}" for line in lines[1:])
            + "\n\n## Reconstruction\n\n"
            + markdown_table(self.reconstruction)
            + "\n\n## The costliest features to ablate\n\n"
            + markdown_table(costly)
            + "\n"
        )

    def figures(self) -> dict[str, Any]:
        """The reconstruction (accuracy per class, how often each feature fires), feature x
        class heatmaps (mean activation, ablation cost) and the costliest features' mean
        activation per channel drawn on the electrode placement."""
        figs = {
            "reconstruction": plot_reconstruction(self),
            "feature_classes": plot_feature_classes(self, HEATMAP_FEATURES),
        }
        for f in self.costliest():
            figure = plot_feature_map(self, f)
            if figure is not None:
                figs[f"feature_{f}_map"] = figure
        return figs

    def save(self, out_dir: str | Path) -> list[Path]:
        """The autoencoder (`save_sae`), every table as CSV, summary.md, the figures and
        report.html into ``out_dir`` (`emg_lens.output.save_outputs`)."""
        written = save_sae(self, out_dir)
        return written + save_outputs(
            out_dir,
            {f"{name}.csv": table for name, table in self.tables().items()},
            self.to_markdown(),
            self.figures,
            kind="sparse features",
            title=f"{self.model_name}, {self.config.hook_name}",
            spec={"model": self.model_name, **self.config.to_dict(),
                  **({} if self.subject is None else {"subject": self.subject}),
                  **({} if self.source is None else {"data_source": self.source})},
        )  # fmt: skip


@checked
def save_sae(features: Features, out_dir: str | Path) -> list[Path]:
    """``features.safetensors`` (the autoencoder's weights) and ``features.json`` (format,
    config, provenance) into ``out_dir``, each atomically (`write_sae`); `load_features`
    reads them back. See `load_features` for an example."""
    return write_sae(
        out_dir,
        features.sae,
        {
            "model_class": features.model_name,
            "config": features.config.to_dict(),
            "provenance": features.provenance,
            **({} if features.source is None else {"data_source": features.source}),
        },
    )
