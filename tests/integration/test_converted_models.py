"""A converted braindecode model is an ordinary emg_lens model (issue 24): saved as a
checkpoint, it runs a study file and a discovery study end to end from the command line, and
exports to an ONNX file that matches onnxruntime, as native models do."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import pytest
import torch

from emg_lens.checkpoints import save_checkpoint
from emg_lens.cli import main
from emg_lens.data.datasets import data_source, load_subject
from emg_lens.data.synthetic.eeg import SyntheticEEGSpec
from emg_lens.export import export_onnx
from emg_lens.models import HookedCBraMod, from_braindecode
from tests.tiny import adam_steps
from tests.unit.models.converted_models import CBRAMOD_CONVS, FACTORIES

bd = pytest.importorskip("braindecode.models")

SPEC = SyntheticEEGSpec(
    n_subjects=1, n_repetitions=12
)  # 19 channels at 200 Hz, 8 classes; 1 s windows
CBRAMOD = {"n_times": 200, "n_layer": 2, "nhead": 4, "dim_feedforward": 32, "emb_dim": 4}
RECIPE = {
    "data": SPEC,
    "cbramod": CBRAMOD,
    "convs": CBRAMOD_CONVS,
    "seed": 0,
    "fine_tune_steps": 30,
}
"""What the converted checkpoint depends on: `SharedOnDisk`'s key for it."""


@pytest.fixture(scope="module")
def models(shared) -> Path:
    """A braindecode CBraMod (criss-cross attention) over the planted EEG's 19 channels,
    converted and saved as subject 1's checkpoint with the data source it is evaluated on;
    built once per run."""
    return shared.folder(shared.key("converted_cbramod", RECIPE), _converted_cbramod)


def _converted_cbramod(root: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(RECIPE["seed"])
        source = bd.CBraMod(
            n_chans=len(SPEC.channels),
            n_outputs=SPEC.n_classes,
            chs_info=[{"ch_name": name} for name in SPEC.channels],
            channels_kernel_stride_padding_norm=CBRAMOD_CONVS,
            **CBRAMOD,
        )
    model = from_braindecode(source)
    assert isinstance(model, HookedCBraMod) and model.cfg.channel_names == list(SPEC.channels)
    source_spec = data_source("synthetic-eeg", synthetic=SPEC)
    _fine_tune(model, load_subject(source_spec, 1, cache_dir=None), RECIPE["fine_tune_steps"])
    save_checkpoint(model, root / "subject_1", metadata={"subject": 1, "data_source": source_spec})


def _fine_tune(model, data, steps: int = 30) -> None:
    """A few Adam steps on the planted EEG (so that discovery has a circuit to find); the
    criss-cross zero blocks stay zero in training."""
    adam_steps(model, data, steps)
    half_heads, half = model.cfg.n_heads // 2, model.cfg.d_model // 2
    assert all((b.attn.W_Q[:half_heads, half:] == 0).all() for b in model.blocks)


@pytest.mark.slow
def test_a_study_file_runs_on_a_converted_model(models, tmp_path):
    spec = tmp_path / "criss_cross.toml"
    spec.write_text(
        'name = "criss-cross"\n'
        f'models = "{models}"\n'
        'metric = "accuracy"\n'
        "[[interventions]]\n"
        'name = "cross_channel"\n'
        'edges = "cross_channel"\n'
        "[[interventions]]\n"
        'name = "head0"\n'
        'edges = "heads(0)"\n'
        "[layers]\n"
        'modes = ["all", "individual"]\n'
    )
    out = tmp_path / "out"
    assert main(["study", "run", str(spec), "--out", str(out), "--quiet"]) == 0
    with open(out / "per_subject.csv") as f:
        rows = list(csv.DictReader(f))
    # the baseline, and each intervention in all layers and in each of the 2 layers
    assert len(rows) == 1 + 2 * (1 + 2)
    assert {row["intervention"] for row in rows} == {"baseline", "cross_channel", "head0"}


@pytest.mark.slow
def test_discover_runs_on_a_converted_model(models, tmp_path):
    spec = tmp_path / "discover.toml"
    spec.write_text(
        'kind = "discovery"\n'
        'name = "criss-cross-circuit"\n'
        f'models = "{models}"\n'
        'metric = "margin"\n'
        "verify_top = 2\n"
    )
    out = tmp_path / "out"
    assert main(["discover", str(spec), "--out", str(out), "--quiet"]) == 0
    assert (out / "circuits.csv").is_file()


@pytest.mark.parametrize("name", ["braindecode_cbramod", "braindecode_eegpt", "torch_post_ln"])
def test_onnx_export_of_converted_models_matches_onnxruntime(name, tmp_path):
    pytest.importorskip("onnxruntime")
    model, _ = FACTORIES[name](0)
    result = export_onnx(model, tmp_path / f"{name}.onnx", edges="cross_channel")
    assert result.max_abs_diff <= 1e-5 and result.layers == (0, 1)
