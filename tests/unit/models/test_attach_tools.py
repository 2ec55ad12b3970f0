"""The floors above models work on an attached model (issue 38, item 5): a study runs to its
tables (its hooked verification passing), inspection writes its report and says by name why
the weight-based tables are missing, activation patching restores the clean run, and ONNX
export refuses an edge cut by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emg_lens.data.preprocess import SubjectData
from emg_lens.errors import UnsupportedFeatureError
from emg_lens.inspect import patch_residual, run_patched
from emg_lens.inspect.circuits import qk_circuit
from emg_lens.inspect.report import inspect_model
from emg_lens.models import attach
from emg_lens.models.base import ATTENTION_HOOKS, LAYERWISE, TL_WEIGHTS, provides
from emg_lens.studies import run_study
from tests.unit.models.attached_models import LAYOUT, N_CHANNELS, N_SAMPLES, build


@pytest.fixture(scope="module")
def attached():
    return attach(build("sdpa"), layout=LAYOUT, n_samples=N_SAMPLES)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((24, N_CHANNELS, N_SAMPLES)).astype(np.float32)
    y = rng.integers(0, 3, 24)
    return SubjectData.from_windows({"emg": N_CHANNELS}, (X, y), (X, y), subject=1)


def test_the_contract_says_what_an_attached_model_provides(attached):
    assert provides(attached, ATTENTION_HOOKS)
    assert not provides(attached, LAYERWISE) and not provides(attached, TL_WEIGHTS)
    with pytest.raises(UnsupportedFeatureError, match=r"qk_circuit.*from_braindecode"):
        qk_circuit(attached, 0)


def test_a_study_runs_on_an_attached_model_and_equals_its_edge_masks(attached, data):
    spec = {
        "name": "attached",
        "models": "given",
        "interventions": [{"name": "cross", "edges": "cross_channel"}],
        "layers": {"modes": ["all", "individual"]},
        "metric": ["accuracy", "kl"],
    }
    result = run_study(spec, models={1: (attached, data)}, progress=False)  # verify=True
    table = result.summary
    assert set(table["mode"]) == {"all", "individual"}
    # the cell's kl is that of the model's own forward with the compiled masks
    from emg_lens.hooks import compile_edges

    X = torch.as_tensor(data.X_test)
    masks = compile_edges("cross_channel", attached, [0, 1])
    with torch.no_grad():
        clean, cut = attached(X).log_softmax(-1), attached(X, edge_masks=masks).log_softmax(-1)
    kl = float((clean.exp() * (clean - cut)).sum(-1).mean())
    row = table[(table["mode"] == "all") & (table["metric"] == "kl")].iloc[0]
    assert abs(row["mean"] - kl) <= 1e-5 and kl > 1e-4


def test_inspection_writes_its_report_and_names_what_needs_a_converted_model(
    attached, data, tmp_path
):
    report = inspect_model(attached, data)
    assert report.qk is None and report.attribution is None
    assert "from_torch_encoder" in report.circuits_skipped
    assert "weight circuits (QK, OV): skipped" in report.summary()
    written = report.save(tmp_path)
    assert (tmp_path / "report.html").exists() and (tmp_path / "head_importance.csv").exists()
    assert any(p.name == "report.html" for p in written)


def test_activation_patching_on_an_attached_model(attached):
    clean, corrupted = attached.example_input(4), torch.zeros(4, N_CHANNELS, N_SAMPLES)

    def metric(out):
        return out[:, 0].mean()

    table = patch_residual(attached, clean, corrupted, metric, positions=range(N_CHANNELS))
    assert len(table) == 2 * N_CHANNELS and np.isfinite(table["restored"]).all()
    _, cache = attached.run_with_cache(clean)
    everything = run_patched(attached, corrupted, cache, {"blocks.1.hook_resid_post": (...,)})
    assert (everything - attached(clean)).abs().max() <= 1e-5


def test_onnx_export_of_a_cut_is_refused_by_name(attached, tmp_path):
    pytest.importorskip("onnxruntime")
    from emg_lens.export import export_onnx

    with pytest.raises(UnsupportedFeatureError, match=r"torch\.onnx cannot record"):
        export_onnx(attached, tmp_path / "m.onnx", edges="cross_channel")
