"""Look inside, not only ablate: circuit-style inspection of emg_lens encoders. Each analysis
returns a tidy pandas DataFrame and has a figure in `emg_lens.inspect.plots`:

- attention mass: `attention_flow`, `edge_mass`; from the weights alone: `qk_circuit`,
  `ov_circuit`; causal effects: `head_importance`, `direct_attribution`, `distribution_shift`;
- what tokens carry: `train_features`, `probe_tokens`, `erase_concept`, `interchange`, and
  `token_rows` / `token_positions` for TransformerLens's ``tools.analysis``;
- activation patching for ``[batch, channels, time]`` inputs: `patch_heads`,
  `patch_residual`, `patch_token_group`, `run_patched`, and `tl_index_df` for
  TransformerLens's position-indexed helpers.

Functions that take an `ActivationCache` reject one made by another model, or whose shapes do
not fit the model's layout.
"""

from emg_lens.inputs import as_subject_data
from emg_lens.inspect.attribution import attribution_hooks, direct_attribution, readout_map
from emg_lens.inspect.circuits import ov_circuit, qk_circuit, token_embeddings
from emg_lens.inspect.erasure import ConceptErasure, erase_concept
from emg_lens.inspect.features import (
    FeatureConfig,
    Features,
    TopKSAE,
    load_features,
    save_sae,
    train_features,
)
from emg_lens.inspect.features.plots import plot_feature_map, plot_reconstruction
from emg_lens.inspect.flow import attention_flow, edge_mass, mean_patterns, token_bins
from emg_lens.inspect.importance import (
    channel_importance,
    default_kinds,
    head_importance,
    mass_effect_correlation,
)
from emg_lens.inspect.interchange import Interchange, interchange, interchange_pairs
from emg_lens.inspect.patching import (
    patch_heads,
    patch_residual,
    patch_token_group,
    run_patched,
    tl_index_df,
)
from emg_lens.inspect.plots.heads import (
    plot_attention_flow,
    plot_attribution,
    plot_head_importance,
    plot_mass_vs_effect,
    plot_ov_circuit,
    plot_qk_circuit,
)
from emg_lens.inspect.plots.layers import (
    plot_distribution_shift,
    plot_interchange,
    plot_patching,
    plot_probes,
)
from emg_lens.inspect.plots.patterns import plot_pattern, to_circuitsvis, token_labels
from emg_lens.inspect.probe_report import probe_subjects
from emg_lens.inspect.probes import probe_tokens
from emg_lens.inspect.report import inspect_model
from emg_lens.inspect.shift import distribution_shift, median_bandwidth, mmd2_unbiased
from emg_lens.inspect.tl_analysis import TokenRows, token_positions, token_rows

__all__ = [
    "ConceptErasure",
    "FeatureConfig",
    "Features",
    "Interchange",
    "TokenRows",
    "TopKSAE",
    "as_subject_data",
    "attention_flow",
    "attribution_hooks",
    "channel_importance",
    "default_kinds",
    "direct_attribution",
    "distribution_shift",
    "edge_mass",
    "erase_concept",
    "head_importance",
    "inspect_model",
    "interchange",
    "interchange_pairs",
    "load_features",
    "mass_effect_correlation",
    "mean_patterns",
    "median_bandwidth",
    "mmd2_unbiased",
    "ov_circuit",
    "patch_heads",
    "patch_residual",
    "patch_token_group",
    "plot_attention_flow",
    "plot_attribution",
    "plot_distribution_shift",
    "plot_feature_map",
    "plot_head_importance",
    "plot_interchange",
    "plot_mass_vs_effect",
    "plot_ov_circuit",
    "plot_patching",
    "plot_pattern",
    "plot_probes",
    "plot_qk_circuit",
    "plot_reconstruction",
    "probe_subjects",
    "probe_tokens",
    "qk_circuit",
    "readout_map",
    "run_patched",
    "save_sae",
    "tl_index_df",
    "to_circuitsvis",
    "token_bins",
    "token_embeddings",
    "token_labels",
    "token_positions",
    "token_rows",
    "train_features",
]
