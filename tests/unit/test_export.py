"""ONNX export (`emg_lens.export`, ``emg-lens export``): the file computes the masked model,
at any batch size, with fully masked query rows finite; what it cannot represent is refused by
name, and a file that would compute something else is never left behind."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch

from emg_lens.checkpoints import load_checkpoint, save_checkpoint
from emg_lens.cli import main
from emg_lens.config import EncoderConfig
from emg_lens.errors import (
    ArgumentError,
    LayoutError,
    MissingDependencyError,
    StudyError,
    UnsupportedFeatureError,
)
from emg_lens.export import export_onnx
from emg_lens.hooks import compile_edges
from emg_lens.models import (
    HierarchicalTransformer,
    IsoNet,
    MultimodalMLP,
    MultimodalTransformer,
    TinyMyo,
)
from tests import docs_pages
from tests.tiny import tiny_isonet, tinymyo_config

# Weights of std 0.3 rather than 0.02, so that attention, and hence a mask, moves the outputs.
INIT = {"seed": 0, "init_range": 0.3}


def _isonet() -> IsoNet:
    return tiny_isonet(**INIT)


def _hierarchical() -> HierarchicalTransformer:
    return HierarchicalTransformer(HierarchicalTransformer.default_config("tiny", **INIT)).eval()


def _tinymyo(**kwargs) -> TinyMyo:
    cfg = tinymyo_config(3, 20, patch_samples=5, **INIT, dropout=kwargs.pop("dropout", 0.0))
    return TinyMyo(cfg, **kwargs).eval()


def _run_file(path, signals: torch.Tensor) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"signals": signals.numpy()})


def _signals(model, batch: int, seed: int = 7) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *model.input_shape, generator=gen)


def _max_diff(got: np.ndarray, expected: torch.Tensor) -> float:
    return float(np.abs(got - expected.numpy()).max())


# ----------------------------------------------------------------------------- parity


@pytest.mark.parametrize(
    ("build", "edges"),
    [
        (_isonet, None),
        (_isonet, "cross_modal"),
        (_hierarchical, None),
        # its readout reads the CLS tokens only, after one fusion block: cut theirs too
        (_hierarchical, "cross_modal(include_cls)"),
        (_tinymyo, None),
        (_tinymyo, "cross_channel"),
    ],
    ids=["isonet", "isonet-cross_modal", "hier", "hier-cross_modal", "tinymyo", "tinymyo-cross"],
)
def test_the_file_computes_the_masked_model_at_any_batch_size(build, edges, tmp_path):
    model = build()
    if isinstance(model, TinyMyo):  # the RoPE of the published model is traced too
        assert model.cfg.positional_embedding_type == "rotary"
    path = tmp_path / "model.onnx"
    result = export_onnx(model, path, edges=edges)
    assert result.path == path and result.size_bytes == path.stat().st_size > 0
    assert set(result.diffs) == {1, 3} and result.max_abs_diff <= 1e-5
    assert result.layers == (tuple(range(model.cfg.n_layers)) if edges else ())
    masks = compile_edges(edges, model) if edges else None
    x = _signals(model, 4)  # a batch size neither the trace nor the export's check used
    with torch.no_grad():
        expected, unmasked = model(x, edge_masks=masks), model(x)
    (got,) = _run_file(path, x)
    assert _max_diff(got, expected) <= 1e-5
    if edges:  # the mask matters here, so a file without it would fail the line above
        assert not torch.allclose(expected, unmasked, atol=1e-3)


def test_fully_masked_query_rows_stay_finite_and_match(tmp_path):
    model = _isonet()
    # every key of every emg query, on head 0 only: those rows attend to nothing
    edges = "(between(emg, emg) | between(emg, acc) | between(emg, cls)) & heads(0)"
    mask = compile_edges(edges, model)[0]
    assert mask[0].all(-1).any() and not mask.all(-1).all()
    path = tmp_path / "rows.onnx"
    export_onnx(model, path, edges=edges, layers=[0])
    x = _signals(model, 3) * 50  # large inputs: an -inf or NaN would show
    with torch.no_grad():
        expected = model(x, edge_masks={0: mask})
    (got,) = _run_file(path, x)
    assert np.isfinite(got).all() and _max_diff(got, expected) <= 1e-5
    with torch.no_grad():
        assert not torch.allclose(expected, model(x), atol=1e-3)


def test_every_output_of_a_return_type_is_exported_with_a_dynamic_batch(tmp_path):
    model = _isonet()
    edges = "cross_modal & layers(1)"  # an edge set that names its block
    result = export_onnx(model, tmp_path / "both.onnx", return_type="both", edges=edges)
    assert result.output_names == ("both_0", "both_1") and result.layers == (1,)
    x = _signals(model, 5)
    with torch.no_grad():
        expected = model(x, edge_masks=compile_edges(edges, model), return_type="both")
    for got, want in zip(_run_file(result.path, x), expected):
        assert got.shape == (5, model.cfg.n_classes) and _max_diff(got, want) <= 1e-5


# ----------------------------------------------------------------------------- refusals


def test_what_the_file_cannot_represent_is_refused_by_name_and_writes_nothing(tmp_path):
    path = tmp_path / "m.onnx"
    with pytest.raises(LayoutError, match="'foo'"):
        export_onnx(_isonet(), path, edges="within(foo)")
    with pytest.raises(LayoutError, match=r"layers .*n_layers=2.* in 0\.\.1, got \[0, 2, 5\]"):
        export_onnx(_isonet(), path, edges="cross_modal", layers=[0, 2, 5])
    with pytest.raises(ArgumentError, match="without edges"):
        export_onnx(_isonet(), path, layers=[0])
    with pytest.raises(ArgumentError, match="return_type"):
        export_onnx(_isonet(), path, return_type="latent")
    stems_only = MultimodalTransformer(MultimodalTransformer.default_config("tiny"))
    with pytest.raises(LayoutError, match="n_layers=0"):
        export_onnx(stems_only, path, edges="cross_modal")
    mlp = MultimodalMLP(EncoderConfig.preset("tiny", seed=0)).eval()
    with pytest.raises(UnsupportedFeatureError, match="no attention"):
        export_onnx(mlp, path, edges="cross_modal")
    hooked = _isonet()
    hooked.add_hook("blocks.0.attn.hook_pattern", lambda t, hook: t * 0)
    with pytest.raises(ArgumentError, match="hooks attached"):
        export_onnx(hooked, path)
    with pytest.raises(ArgumentError, match="float32"):  # onnxruntime has no float64 Erf
        export_onnx(_isonet().to(torch.float64), path)
    assert list(tmp_path.iterdir()) == []
    # without a mask the attention-free baseline is representable
    assert export_onnx(mlp, path).max_abs_diff <= 1e-5


class _TraceBlindIsoNet(IsoNet):
    """Scales its logits by a Python number read off the data: a trace keeps the example's."""

    def readout(self, resid, return_type):
        return super().readout(resid, return_type) * float(resid.abs().max())


def test_a_file_that_computes_something_else_is_deleted_and_the_old_one_kept(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"the previous export")
    model = _TraceBlindIsoNet(EncoderConfig.preset("tiny", **INIT)).eval()
    with pytest.raises(StudyError, match=r"max \|diff\| = .* at batch size \d"):
        export_onnx(model, path)
    assert path.read_bytes() == b"the previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary file either


def test_a_model_in_training_mode_is_exported_in_eval_and_left_in_training(tmp_path):
    model = _tinymyo(dropout=0.5, drop_path=0.5).train()
    with pytest.warns(UserWarning, match="exported in eval mode"):
        result = export_onnx(model, tmp_path / "m.onnx", edges="cross_channel")
    assert result.was_training and model.training
    x = _signals(model, 2)
    model.eval()
    with torch.no_grad():
        expected = model(x, edge_masks=compile_edges("cross_channel", model))
    assert _max_diff(_run_file(result.path, x)[0], expected) <= 1e-5


def test_without_onnxruntime_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(
        MissingDependencyError, match=r'pip install "\.\[export\]" in the emg_lens clone'
    ):
        export_onnx(_isonet(), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


# ----------------------------------------------------------------------------- command line


def test_export_command_end_to_end_on_a_saved_checkpoint(tmp_path, capsys):
    folder = save_checkpoint(_hierarchical(), tmp_path / "subject_1")
    out = tmp_path / "onnx" / "hier.onnx"
    edges = "cross_modal(include_cls)"
    argv = ["export", "--checkpoint", str(folder), "--edges", edges, "--layers", "0"]
    assert main([*argv, "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    model = load_checkpoint(folder)
    x = _signals(model, 2)
    with torch.no_grad():
        expected = model(x, edge_masks=compile_edges(edges, model, [0]))
        assert not torch.allclose(expected, model(x), atol=1e-3)
    assert _max_diff(_run_file(out, x)[0], expected) <= 1e-5

    bad = tmp_path / "bad.onnx"
    argv = ["export", "--checkpoint", str(folder), "--edges", "within(ecg)", "--out", str(bad)]
    assert main(argv) == 2
    assert "'ecg'" in capsys.readouterr().err and not bad.exists()


def test_the_file_says_what_it_is_in_its_metadata(tmp_path):
    # Issue 23, item 11: the metadata_props were empty. onnx and onnxruntime read them back.
    import hashlib

    import onnx

    from emg_lens import __version__
    from emg_lens.export import METADATA_KEYS, export_checkpoint

    folder = save_checkpoint(_isonet(), tmp_path / "subject_1")
    out = tmp_path / "m.onnx"
    result = export_checkpoint(folder, out, edges="cross_modal|from_cls", layers=[1])
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    weights = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert props == {
        "emg_lens_version": __version__,
        "model_class": "IsoNet",
        "edges": "cross_modal | from_cls",
        "layers": "1",
        "return_type": "logits",
        "source_checkpoint": str(folder),
        "source_weights_sha256": weights,
    }
    assert tuple(props) == METADATA_KEYS and result.metadata == props
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map == props
    # unmasked, from a model in memory: no edges, no layers, no source
    plain = export_onnx(_isonet(), tmp_path / "plain.onnx")
    props = {p.key: p.value for p in onnx.load(str(plain.path)).metadata_props}
    assert (props["edges"], props["layers"], "source_checkpoint" in props) == ("", "", False)


def test_the_readme_section_runs_as_printed(tmp_path, monkeypatch):
    section = docs_pages.section("# Export a masked model")  # docs/guide/export.md
    (command,) = re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)
    (snippet,) = re.findall(r"```py\n(.*?)```", section, flags=re.S)
    argv = shlex.split(command)
    assert argv[0] == "emg-lens"
    model = _isonet()
    folder = save_checkpoint(model, tmp_path / "checkpoint")
    argv[argv.index("--checkpoint") + 1] = str(folder)  # the demo's, on the guide page
    monkeypatch.chdir(tmp_path)
    assert main(argv[1:]) == 0
    namespace: dict = {}
    exec(snippet, namespace)
    edges, layers = argv[argv.index("--edges") + 1], [int(argv[argv.index("--layers") + 1])]
    with torch.no_grad():
        signals = torch.from_numpy(namespace["signals"])
        expected = model(signals, edge_masks=compile_edges(edges, model, layers))
    assert _max_diff(namespace["logits"], expected) <= 1e-5
    assert (namespace["meta"]["edges"], namespace["meta"]["layers"]) == (edges, str(layers[0]))


def test_export_help_imports_no_torch():
    code = (
        "import sys\nfrom emg_lens.cli import build_parser\n"
        "try:\n    build_parser().parse_args(['export', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "--edges" in run.stdout and run.stdout.strip().splitlines()[-1] == "False"


def test_an_edge_set_naming_a_layer_the_model_lacks_is_not_exported(tmp_path, capsys):
    """Issue 23 item 7: ``--edges "cross_modal & layers(5)"`` on a 2-layer model exported the
    model unmasked; it is refused, and no file is written."""
    folder = save_checkpoint(_isonet(), tmp_path / "ckpt")
    out = tmp_path / "m.onnx"
    argv = ["export", "--checkpoint", str(folder), "--out", str(out)]
    assert main([*argv, "--edges", "cross_modal & layers(5)"]) == 2
    assert "names layer(s) [5], but the model has n_layers=2" in capsys.readouterr().err
    assert not out.exists()


class _DictIsoNet(IsoNet):
    """A user's subclass whose readout gives a dict: no ONNX output of its own."""

    def readout(self, resid, return_type):
        return {"logits": super().readout(resid, return_type)}


@pytest.mark.unchecked  # metadata={"a": 1} is refused by the annotation in the suite
@pytest.mark.parametrize(
    ("out", "kwargs", "error", "match"),
    [
        (".", {}, ArgumentError, r"out must be a file path \(not a folder\)"),
        ("a_file/m.onnx", {}, ArgumentError, "its folder cannot be created"),
        ("m.onnx", {"metadata": {"a": 1}}, ArgumentError, r"metadata must map str to str"),
        ("m.onnx", {"opset": 99}, StudyError, r"ONNX exporter \(opset 99\) failed on IsoNet"),
    ],
)
def test_a_bad_out_metadata_or_opset_is_refused_by_name(tmp_path, out, kwargs, error, match):
    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(error, match=match):
        export_onnx(_isonet(), tmp_path / out, **kwargs)
    assert [p.name for p in tmp_path.iterdir()] == ["a_file"]


def test_a_readout_that_gives_no_tensors_is_refused(tmp_path):
    model = _DictIsoNet(EncoderConfig.preset("tiny", **INIT)).eval()
    with pytest.raises(ArgumentError, match=r"return_type='logits' gives \[.*\], not tensors"):
        export_onnx(model, tmp_path / "m.onnx")


class _TraceBatchIsoNet(IsoNet):
    """Builds its logits with a Python int batch size: a trace keeps the example's (2)."""

    def readout(self, resid, return_type):
        out = super().readout(resid, return_type)
        return out.new_zeros(int(out.shape[0]), out.shape[1]) + out.mean()


def test_a_file_whose_output_shape_is_fixed_by_the_trace_is_refused(tmp_path):
    model = _TraceBatchIsoNet(EncoderConfig.preset("tiny", **INIT)).eval()
    with pytest.raises(StudyError, match=r"output logits is \[2, 4\], PyTorch's \[1, 4\]"):
        export_onnx(model, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
