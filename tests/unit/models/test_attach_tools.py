"""The floors above models work on an attached model (issue 38, item 5): a study runs to its
tables (its hooked verification passing), inspection writes its report and says by name why
the weight-based tables are missing, activation patching restores the clean run, and ONNX
export refuses an edge cut by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emg_lens.data.preprocess import SubjectData
from emg_lens.errors import SpecError, UnsupportedFeatureError
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


def test_a_return_type_an_attached_model_lacks_is_a_spec_error(attached, data):
    spec = {
        "name": "attached",
        "models": "given",
        "return_type": "avg_logits",  # checked on the tree's own forwards: named by the spec
        "interventions": [{"name": "cross", "edges": "cross_channel"}],
        "layers": {"modes": ["all"]},
    }
    with pytest.raises(SpecError, match="return_type = 'avg_logits': an attached model's"):
        run_study(spec, models={1: (attached, data)}, progress=False)


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


@pytest.mark.slow
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


@pytest.mark.unchecked
@pytest.mark.parametrize("kind", ["qkv", "sdpa", "mha", "torch_encoder"])
def test_onnx_export_of_an_attached_model_with_a_cut(kind, tmp_path):
    """torch.onnx traces the masked forward (the interceptor's explicit or merged-mask
    attention): the file computes the cut model, checked at several batch sizes by export
    itself and here against the unmasked one."""
    ort = pytest.importorskip("onnxruntime")
    from emg_lens.export import export_onnx
    from emg_lens.hooks import compile_edges

    model = attach(build(kind), layout=LAYOUT, n_samples=N_SAMPLES)
    edges = "cross_channel & layers(1)"
    result = export_onnx(model, tmp_path / "cut.onnx", edges=edges)
    assert result.max_abs_diff <= 1e-5 and result.layers == (1,)
    x = model.example_input(3)
    session = ort.InferenceSession(str(result.path))
    got = torch.as_tensor(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    with torch.no_grad():
        cut = model(x, edge_masks=compile_edges(edges, model, [1]))
        assert (got - cut).abs().max() <= 1e-5 and (got - model(x)).abs().max() > 1e-4


@pytest.mark.parametrize(("kind", "seed"), [("qkv", 0), ("mha", 1), ("torch_encoder", 1)])
def test_discovery_screens_an_attached_model_against_exact_knockouts(kind, seed):
    """The screen (one forward, one backward through hook_pattern; every layer linearised, as
    an attached model has no blocks to run one by one) ranks the candidates as exact
    knockouts do (measured: Spearman 0.97-0.99 on these three, 0.72-0.99 over four forms and two
    seeds of such random models, lower where the weights are scaled up); `discover` keeps a
    circuit within tau."""
    from emg_lens.discovery.metrics import spearman
    from emg_lens.discovery.screen import screen
    from emg_lens.discovery.search import discover
    from emg_lens.layout import TokenLayout

    layout = TokenLayout.channel_tokens({"emg": 2, "acc": 2}, cls_token=False)
    model = attach(build(kind, seed), layout=layout, n_samples=N_SAMPLES)
    X = np.random.default_rng(0).standard_normal((32, N_CHANNELS, N_SAMPLES)).astype(np.float32)
    with torch.no_grad():
        y = model(torch.as_tensor(X)).argmax(-1).numpy()
    data = SubjectData.from_windows({"emg": 2, "acc": 2}, (X, y), (X, y), classes=[0, 1, 2])
    screened = screen(model, data)
    assert screened.table["risk"].isna().all()  # no W_O to read the risk from
    passes = screened.exact_passes()
    exact = [
        passes.score({c.layer: c.edges.compile(layout, 2, layer=c.layer)}).metric
        - screened.baseline
        for c in screened.family
    ]
    rho = spearman(screened.table.sort_index()["estimate"].to_numpy(), np.array(exact))
    assert rho >= 0.9, rho
    found = discover(model, data, screened=screened, tau=0.1)
    assert found.faithfulness >= 0.9 and 0 < found.summary()["candidates_kept"] <= 16


def test_a_checkpoint_of_an_attached_model_loads_with_the_users_module(attached, tmp_path):
    from emg_lens.checkpoints import load_checkpoint, save_checkpoint, user_modules_of
    from emg_lens.errors import CheckpointError

    path = save_checkpoint(attached, tmp_path / "subject_1")
    with pytest.raises(CheckpointError, match="model"):
        load_checkpoint(path)  # the user's class: config.json cannot rebuild it
    again = load_checkpoint(path, modules={"model": build("sdpa", seed=5)})
    x = attached.example_input(3)
    cut = {1: torch.eye(N_CHANNELS, dtype=torch.bool).logical_not()}
    assert torch.equal(again(x), attached(x))
    assert torch.equal(again(x, edge_masks=cut), attached(x, edge_masks=cut))
    assert again.calls == attached.calls and again.resid_modules == attached.resid_modules
    assert user_modules_of({"model_class": "AttachedModel"}) == ("model",)


@pytest.mark.slow
def test_a_study_file_runs_attached_checkpoints_through_the_users_builder(tmp_path, capsys):
    """The --modules route: a folder of attached checkpoints, the user's models.py building
    their module, run only with consent, by `study run` and by `inspect` (whose report says
    which tables need a converted model)."""
    from emg_lens.cli import main
    from tests.unit.attached_checkpoints import save_subjects, write_user_code

    write_user_code(tmp_path)
    save_subjects(tmp_path / "models")
    spec = tmp_path / "study.toml"
    spec.write_text(
        f'name = "mine"\nmodels = "{tmp_path / "models"}"\nmodules = "models.py:build_modules"\n'
        '[[interventions]]\nname = "cross"\nedges = "cross_modal"\n'
    )
    assert main(["study", "run", str(spec), "--allow-code", "--out", str(tmp_path / "out")]) == 0
    table = (tmp_path / "out" / "summary.csv").read_text()
    assert "cross" in table
    inspect = ["inspect", "--checkpoint", str(tmp_path / "models" / "subject_1")]
    inspect += ["--out", str(tmp_path / "inspected"), "--n-windows", "8"]
    inspect += ["--modules", str(tmp_path / "models.py") + ":build_modules", "--allow-code"]
    assert main(inspect) == 0
    assert "from_torch_encoder" in (tmp_path / "inspected" / "summary.md").read_text()


def test_a_checkpoint_keeps_how_each_call_folds_and_an_older_one_takes_uniform_masks(tmp_path):
    """The folds round-trip through config.json; a checkpoint saved before folds were
    recorded loads, its order unknown: per-fold masks refused by name, a per-window one
    refused where the folded scores meet it, a fold-uniform one as before."""
    import json

    from emg_lens.checkpoints import load_checkpoint, save_checkpoint
    from emg_lens.errors import ConversionError, LayoutError
    from emg_lens.models.attached.examples import PatchAttention

    model = attach(PatchAttention().eval(), layout=LAYOUT, n_samples=N_SAMPLES)
    path = save_checkpoint(model, tmp_path / "subject_1")
    again = load_checkpoint(path, modules={"model": PatchAttention()})
    assert again.folds == model.folds and again.folds_of(0) == 2
    x = model.example_input(3)
    per_fold = torch.zeros(3, 2, 1, N_CHANNELS, N_CHANNELS, dtype=torch.bool)
    per_fold[0, 1, 0, :, 0] = per_fold[2, 0, 0, :, 3] = True
    with torch.no_grad():
        assert torch.equal(again(x, edge_masks={0: per_fold}), model(x, edge_masks={0: per_fold}))
    config = json.loads((path / "config.json").read_text())
    del config["model_kwargs"]["folds"]
    (path / "config.json").write_text(json.dumps(config))
    old = load_checkpoint(path, modules={"model": PatchAttention()})
    assert old.folds_of(0) is None and old.folds[0].batch_major is None
    with pytest.raises(LayoutError, match=r"does not know how it folds.*attach the model again"):
        old(x, edge_masks={0: per_fold})
    with pytest.raises(ConversionError, match=r"6 score rows for 3 input rows.*not known"):
        old(x, edge_masks={0: per_fold[:, 0]})
    uniform = per_fold[0, 1]
    with torch.no_grad():
        assert torch.equal(old(x, edge_masks={0: uniform}), model(x, edge_masks={0: uniform}))


@pytest.mark.unchecked  # folds that the annotation refuses
def test_a_fold_s_batch_major_is_true_false_or_none():
    from emg_lens.errors import ConversionError
    from emg_lens.models.attached.checks import folds_of
    from emg_lens.models.attached.find import Fold

    assert folds_of([[2, True], (None, None)], 2) == (Fold(2, True), Fold(None, None))
    for bad in (1, "yes"):  # 1 and "yes" are not flags
        with pytest.raises(
            ConversionError, match=rf"folds\[0\]'s batch_major must be .*, got {bad!r}"
        ):
            folds_of([[2, bad]], 1)
