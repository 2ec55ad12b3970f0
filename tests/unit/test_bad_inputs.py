"""Every bad input emg_lens can be given raises a named `EmgLensError` whose message names the
file, field or value at fault (issue 12, items 4 and 5), and a NaN is never laundered into
"attends to nothing".

`BAD_INPUTS` is the table: one row per bad input, ``(id, trigger, error class, substring the
message must contain)``.
"""

from __future__ import annotations

import json
import textwrap
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from emg_lens import EncoderConfig, cli
from emg_lens.checkpoints import load_checkpoint, load_checkpoint_data, save_checkpoint
from emg_lens.data.preprocess import SubjectData
from emg_lens.errors import (
    ArgumentError,
    CheckpointError,
    EmgLensError,
    IndexOutOfRangeError,
    InputShapeError,
    LayoutError,
    SpecError,
)
from emg_lens.hooks import (
    attn_scores_filter,
    mask_edges,
    mask_edges_batched,
    pattern_filter,
    zero_edges,
)
from emg_lens.models import (
    HierarchicalTransformer,
    IsoNet,
    MultimodalMLP,
    MultimodalTransformer,
    TinyMyo,
)
from emg_lens.studies import StudyError, StudySpec, load_spec, run_study
from tests.tiny import subject_for, tiny_isonet, tinymyo_config
from tests.unit.bad_inputs import cli as cli_rows
from tests.unit.bad_inputs import data as data_rows
from tests.unit.bad_inputs import models as models_rows
from tests.unit.bad_inputs import notebook as notebook_rows
from tests.unit.bad_inputs import studies as studies_rows
from tests.unit.bad_inputs import training as training_rows
from tests.unit.bad_inputs import wrong_types as wrong_type_rows

# every row passes a bad input on purpose: emg_lens's named error, not the suite's type checks
pytestmark = pytest.mark.unchecked
STUDY = Path(__file__).resolve().parents[2] / "studies" / "isonet_table3.toml"
N_TOKENS = 7  # tiny IsoNet: CLS + 2 emg + 4 acc tokens
N_HEADS = 4


def _isonet(seed: int = 0) -> IsoNet:
    return tiny_isonet(seed, perturb=True, init_range=0.5)


def _subject(model: IsoNet, n: int = 8) -> SubjectData:
    return subject_for(model, n, labels="random")


def _spec(**changes) -> StudySpec:
    data = {
        "name": "bad",
        "models": "unused",
        "interventions": [{"name": "cross", "edges": "cross_modal"}],
        "layers": {"modes": ["all"]},
        **changes,
    }
    return StudySpec.from_dict(data)


def _signals(fill=None, dtype=torch.float32, batch: int = 2):
    x = torch.zeros(batch, 6, 8, dtype=dtype)
    if fill is not None:
        x[0, 2, 3] = fill
    return x


# ----------------------------------------------------------------------------- item 4 triggers


def _forward(signals):
    return lambda tmp: _isonet()(signals)


def _nan_weights_checkpoint(tmp: Path) -> Path:
    path = save_checkpoint(_isonet(), tmp / "nan_model")  # save refuses NaN: poison the file
    state = load_file(str(path / "model.safetensors"))
    state["blocks.1.attn.W_V"][0, 0, 0] = float("nan")
    save_file(state, str(path / "model.safetensors"))
    return path


def _nan_study(tmp: Path):
    model = _isonet()
    with torch.no_grad():
        model.blocks[0].mlp.W_in[0, 0] = float("nan")
    return run_study(_spec(), models={3: (model, _subject(model))}, out_dir=tmp, progress=False)


NAN_HOOK = textwrap.dedent(
    """
    def poison(model, layers):
        # An intervention whose output is NaN: the runner must refuse it, not score it.
        return [("blocks.0.attn.hook_z", lambda z, hook: z * float("nan"))]
    """
)


def _nan_hook_study(tmp: Path):
    (tmp / "poison.py").write_text(NAN_HOOK)
    spec = StudySpec.from_dict(
        {
            "name": "bad",
            "models": "unused",
            "interventions": [{"name": "poisoned", "hook": "poison.py:poison"}],
            "layers": {"modes": ["all"]},
        },
        source_dir=tmp,
    )
    model = _isonet()
    return run_study(spec, models={4: (model, _subject(model))}, allow_code=True, progress=False)


def _nan_data_study(tmp: Path):
    model = _isonet()
    data = _subject(model)
    data.X_test[1, 0, 0] = np.nan
    return run_study(_spec(), models={5: (model, data)}, progress=False)


def _huge_training_windows_study(tmp: Path):
    """Finite float64 windows near 1e200: their squares overflow (the feature baseline)."""
    model = _isonet()
    data = _subject(model)
    data.X_train = data.X_train.astype(np.float64)
    data.X_train[1, 0, 0] = -1e200
    return run_study(_spec(), models={7: (model, data)}, progress=False)


# ----------------------------------------------------------------------------- item 5 triggers


def _checkpoint(tmp: Path, name: str = "ckpt") -> Path:
    return save_checkpoint(_isonet(), tmp / name)


def _truncated_weights(tmp: Path):
    path = _checkpoint(tmp)
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    return load_checkpoint(path)


def _empty_weights(tmp: Path):
    path = _checkpoint(tmp)
    (path / "model.safetensors").write_bytes(b"")
    return load_checkpoint(path)


def _config_disagrees_with_weights(tmp: Path):
    path = _checkpoint(tmp)
    info = json.loads((path / "config.json").read_text())
    info["config"]["n_classes"] += 1  # the saved W_U has one class fewer
    (path / "config.json").write_text(json.dumps(info))
    return load_checkpoint(path)


def _weights_of_another_shape(tmp: Path):
    path = _checkpoint(tmp)
    state = load_file(str(path / "model.safetensors"))
    state["blocks.0.mlp.W_in"] = state["blocks.0.mlp.W_in"][:, :-1].contiguous()
    save_file(state, str(path / "model.safetensors"))
    return load_checkpoint(path, into=_isonet())


def _models_folder(tmp: Path) -> Path:
    for subject in (1, 2):
        save_checkpoint(
            _isonet(subject),
            tmp / "models" / f"subject_{subject}",
            metadata={"subject": subject, "data_source": {"dataset": "synthetic"}},
        )
    return tmp / "models"


def _corrupted_checkpoint_in_study(tmp: Path):
    models = _models_folder(tmp)
    (models / "subject_2" / "model.safetensors").write_bytes(b"\x00" * 10)
    return run_study(_spec(subjects=[2]), models=models, progress=False)


def _subject_folder_without_config(tmp: Path):
    models = _models_folder(tmp)
    (models / "subject_2" / "config.json").unlink()
    return run_study(_spec(), models=models, progress=False)


def _out_is_a_file(*command: str):
    def trigger(tmp: Path):
        out = tmp / "results.txt"
        out.write_text("not a folder")
        return cli.run([*command, "--out", str(out)])

    return trigger


def _spec_field(**data):
    return lambda tmp: load_spec(
        {
            "name": "s",
            "models": "demo",
            "interventions": [{"name": "cross", "edges": "cross_modal"}],
            **data,
        }
    )


def _toml_description_table(tmp: Path):
    path = tmp / "study.toml"
    path.write_text(
        'name = "s"\nmodels = "demo"\n[[interventions]]\nname = "x"\nedges = "cross_modal"\n'
        '[description]\ntext = "a table, not a string"\n'
    )
    return load_spec(path)


def _edge_masks(shape, batch: int = 3):
    return lambda tmp: _isonet()(
        _isonet().example_input(batch), edge_masks={0: torch.ones(shape, dtype=torch.bool)}
    )


def _hook_mask(factory, point, shape, batch: int = 3):
    def trigger(tmp: Path):
        model = _isonet()
        hook = factory(torch.zeros(shape, dtype=torch.bool), model.layout)
        return model.run_with_hooks(model.example_input(batch), fwd_hooks=[(point([0]), hook)])

    return trigger


def _batched_masks(shape):
    def trigger(tmp: Path):
        model = _isonet()
        hook = mask_edges_batched(torch.zeros(shape, dtype=torch.bool))
        return model.run_with_hooks(
            model.example_input(4), fwd_hooks=[(attn_scores_filter(), hook)]
        )

    return trigger


def _stem_edge_masks(shape):
    def trigger(tmp: Path):
        cfg = HierarchicalTransformer.default_config("tiny", seed=0)
        model = HierarchicalTransformer(cfg)
        n = model.layout.n_tokens
        mask = torch.zeros((*shape, n, n), dtype=torch.bool)
        return model(model.example_input(2), stem_edge_masks={0: mask})

    return trigger


Q = (N_TOKENS, N_TOKENS)

BAD_INPUTS = [
    # item 4: non-finite, empty and non-real signals; NaN weights; NaN study outputs
    ("nan signals", _forward(_signals(float("nan"))), InputShapeError, "NaN"),
    ("inf signals", _forward(_signals(float("inf"))), InputShapeError, "inf"),
    ("-inf signals", _forward(_signals(float("-inf")).numpy()), InputShapeError, "inf"),
    ("empty batch", _forward(_signals(batch=0)), InputShapeError, "batch of 0"),
    ("bool signals", _forward(_signals(dtype=torch.bool)), InputShapeError, "torch.bool"),
    ("bool numpy", _forward(np.zeros((2, 6, 8), bool)), InputShapeError, "bool"),
    ("complex signals", _forward(_signals(dtype=torch.complex64)), InputShapeError, "complex"),
    ("numpy strings", _forward(np.full((2, 6, 8), "x")), InputShapeError, "<U1"),
    ("numpy objects", _forward(np.zeros((2, 6, 8), object)), InputShapeError, "object"),
    ("python str", _forward("signals.npy"), InputShapeError, "str"),
    # issue 74: a 2-D input is one [channels, time] window; a wrong one is named as given
    (
        "window of 5 channels",
        _forward(torch.zeros(5, 8)),
        InputShapeError,
        "window of shape [5, 8]",
    ),
    (
        "nan weights",
        lambda tmp: load_checkpoint(_nan_weights_checkpoint(tmp)),
        CheckpointError,
        "blocks.1.attn.W_V",
    ),
    ("nan study baseline", _nan_study, StudyError, "subject 3, condition 'baseline'"),
    ("nan study intervention", _nan_hook_study, StudyError, "subject 4, condition 'poisoned"),
    ("nan study data", _nan_data_study, StudyError, "subject 5: its test windows"),
    (
        "study windows near 1e200",
        _huge_training_windows_study,
        InputShapeError,
        "subject 7: its X_train holds values up to 1e+200 in magnitude",
    ),
    # item 5: checkpoints
    ("truncated safetensors", _truncated_weights, CheckpointError, "model.safetensors"),
    ("empty safetensors", _empty_weights, CheckpointError, "model.safetensors"),
    ("config shapes disagree", _config_disagrees_with_weights, CheckpointError, "W_U"),
    ("weights of another shape", _weights_of_another_shape, CheckpointError, "blocks.0.mlp.W_in"),
    ("corrupted checkpoint in study", _corrupted_checkpoint_in_study, CheckpointError, "subject 2"),
    (
        "checkpoint data without a data source",
        lambda tmp: load_checkpoint_data(save_checkpoint(_isonet(), tmp / "bare")),
        CheckpointError,
        "bare: its metadata records no data_source and subject",
    ),
    (
        "subject folder without config.json",
        _subject_folder_without_config,
        CheckpointError,
        "subject_2",
    ),
    # item 5: --out that is a file where a folder is expected
    (
        "study run --out file",
        _out_is_a_file("study", "run", str(STUDY)),
        ArgumentError,
        "results.txt is a file",
    ),
    ("train --out file", _out_is_a_file("train"), ArgumentError, "results.txt is a file"),
    ("demo --out file", _out_is_a_file("demo"), ArgumentError, "results.txt is a file"),
    (
        "inspect --out file",
        _out_is_a_file("inspect", "--checkpoint", "x"),
        ArgumentError,
        "results.txt is a file",
    ),
    (
        "probe --out file",
        _out_is_a_file("probe", "--models", "x"),
        ArgumentError,
        "results.txt is a file",
    ),
    (
        "features --out file",
        _out_is_a_file("features", "--checkpoint", "x", "--layer", "0"),
        ArgumentError,
        "results.txt is a file",
    ),
    ("synth --out file", _out_is_a_file("synth"), ArgumentError, "results.txt is a file"),
    # item 5: spec fields that must be strings
    ("[description] table", _toml_description_table, SpecError, "description"),
    ("description list", _spec_field(description=["a"]), SpecError, "description"),
    ("metric table", _spec_field(metric={"x": 1}), SpecError, "metric"),
    ("return_type number", _spec_field(return_type=3), SpecError, "return_type"),
    ("stats.test table", _spec_field(stats={"test": {"x": 1}}), SpecError, "stats.test"),
    (
        "layers.modes table entry",
        _spec_field(layers={"modes": [{"x": 1}]}),
        SpecError,
        "layers.modes",
    ),
    (
        "intervention hook table",
        _spec_field(interventions=[{"name": "h", "hook": {"x": 1}}]),
        SpecError,
        "hook",
    ),
    # item 5: edge masks whose head (or leading) dims disagree with the model
    ("edge_masks 3 heads of 4", _edge_masks((3, *Q)), LayoutError, "[3, 7, 7]"),
    ("edge_masks batch 2 of 3", _edge_masks((2, N_HEADS, *Q)), LayoutError, "[2, 4, 7, 7]"),
    ("edge_masks 5 dims", _edge_masks((1, 1, 1, *Q)), LayoutError, "[1, 1, 1, 7, 7]"),
    (
        "mask_edges 3 heads of 4",
        _hook_mask(mask_edges, attn_scores_filter, (3, *Q)),
        LayoutError,
        "[3, 7, 7]",
    ),
    (
        "mask_edges batch 2 of 3",
        _hook_mask(mask_edges, attn_scores_filter, (2, 1, *Q)),
        LayoutError,
        "[2, 1, 7, 7]",
    ),
    (
        "zero_edges 2 heads of 4",
        _hook_mask(zero_edges, pattern_filter, (2, *Q)),
        LayoutError,
        "[2, 7, 7]",
    ),
    ("mask_edges_batched 3 heads of 4", _batched_masks((2, 3, *Q)), LayoutError, "[3, 7, 7]"),
    ("stem_edge_masks 3 heads of 4", _stem_edge_masks((3,)), LayoutError, "stem_edge_masks"),
    # issue 23, by area (tests/unit/bad_inputs/)
    *training_rows.ROWS,
    *data_rows.ROWS,
    *models_rows.ROWS,
    *studies_rows.ROWS,
    *cli_rows.ROWS,
    *wrong_type_rows.ROWS,
    # issue 85: the notebook's data path
    *notebook_rows.ROWS,
]


@pytest.mark.parametrize(
    ("trigger", "error", "substring"),
    [row[1:] for row in BAD_INPUTS],
    ids=[row[0] for row in BAD_INPUTS],
)
def test_bad_input_raises_its_named_error(trigger, error, substring, tmp_path):
    assert issubclass(error, EmgLensError)
    with pytest.raises(error) as info:
        trigger(tmp_path)
    assert substring in str(info.value)


def test_rows_are_distinct():
    assert len({row[0] for row in BAD_INPUTS}) == len(BAD_INPUTS)


def test_a_nan_study_writes_no_table(tmp_path):
    with pytest.raises(StudyError):
        _nan_study(tmp_path)
    assert not list(tmp_path.glob("summary*")) and not (tmp_path / "per_subject.csv").exists()


def test_bad_out_is_reported_by_main(tmp_path, capsys):
    out = tmp_path / "file"
    out.write_text("")
    assert cli.main(["train", "--out", str(out)]) == 2
    assert f"{out} is a file" in capsys.readouterr().err


# ----------------------------------------------------------------------------- every model


def _tinymyo():
    return TinyMyo(tinymyo_config(6, 8, patch_samples=2, seed=0))


MODELS = {
    "isonet": lambda: _isonet(),
    "hierarchical": lambda: HierarchicalTransformer(
        HierarchicalTransformer.default_config("tiny", seed=0)
    ),
    "multimodal_transformer": lambda: MultimodalTransformer(
        MultimodalTransformer.default_config("tiny", seed=0)
    ),
    "multimodal_mlp": lambda: MultimodalMLP(EncoderConfig.preset("tiny", seed=0)),
    "tinymyo": _tinymyo,
}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("bad", ["nan", "empty", "bool"])
def test_every_model_refuses_bad_signals(name, bad):
    model = MODELS[name]()
    x = model.example_input(2)
    x = {"nan": x.masked_fill(x > 1, float("nan")), "empty": x[:0], "bool": x > 0}[bad]
    with pytest.raises(InputShapeError):
        model(x)
    if name == "tinymyo":  # the masked-pretraining entry point checks its signals too
        with pytest.raises(InputShapeError):
            model(x, patch_mask=torch.zeros(6, 4, dtype=torch.bool))


# ----------------------------------------------------------------------------- NaN propagates


def _fully_masked_query_one() -> dict[int, torch.Tensor]:
    mask = torch.zeros(N_HEADS, *Q, dtype=torch.bool)
    mask[:, 1, :] = True  # query 1 reads nothing in every head
    return {0: mask, 1: mask}


@pytest.mark.parametrize("masked", [False, True], ids=["no mask", "masked"])
def test_a_nan_inside_the_model_reaches_the_logits_on_both_paths(masked):
    model = _isonet()
    with torch.no_grad():
        model.blocks[0].attn.W_Q[1, 0, 0] = float("nan")
    x = model.example_input(2)
    masks = _fully_masked_query_one() if masked else None
    fast = model(x, edge_masks=masks)
    explicit, cache = model.run_with_cache(x, edge_masks=masks)
    assert torch.isnan(fast).all() and torch.isnan(explicit).all()
    # head 1 is NaN on every unmasked query row; no other head is
    pattern = cache["pattern", 0]
    assert torch.isnan(pattern[:, 1, 0]).all() and torch.isfinite(pattern[:, 0]).all()


def test_a_nan_from_a_hook_at_hook_attn_scores_propagates():
    model = _isonet()
    x = model.example_input(2)

    def poison(scores, hook):
        return scores.index_fill(-1, torch.tensor([3]), float("nan"))

    logits = model.run_with_hooks(x, fwd_hooks=[(attn_scores_filter([1]), poison)])
    assert torch.isnan(logits).all()


def test_a_fully_masked_query_row_is_still_zero_and_finite():
    model = _isonet()
    x = model.example_input(2)
    masks = _fully_masked_query_one()
    fast = model(x, edge_masks=masks)
    explicit, cache = model.run_with_cache(x, edge_masks=masks)
    assert torch.isfinite(fast).all() and torch.isfinite(explicit).all()
    torch.testing.assert_close(fast, explicit, atol=1e-5, rtol=1e-5)
    for layer in (0, 1):
        assert (cache["pattern", layer][:, :, 1] == 0).all()
        assert (cache["z", layer][:, 1] == 0).all()
        assert torch.isfinite(cache["pattern", layer]).all()


def test_a_cache_layer_the_model_lacks_is_a_named_key_error():
    # issue 74: cache["pattern", 2] of two layers was TransformerLens's bare KeyError
    model = _isonet()
    _, cache = model.run_with_cache(model.example_input(2))
    assert cache["pattern", -2] is cache["blocks.0.attn.hook_pattern"]  # TL's keys as they were
    for layer in (2, -3, np.int64(5)):
        with pytest.raises(
            IndexOutOfRangeError, match=rf"layer {layer} .* IsoNet \(n_layers=2\): a l"
        ):
            cache["pattern", layer]
    with pytest.raises(KeyError) as info:  # a hook name TL does not know stays TL's own miss
        cache["no_such_hook"]
    assert not isinstance(info.value, IndexOutOfRangeError)
    assert (
        issubclass(IndexOutOfRangeError, KeyError) and str(IndexOutOfRangeError("x")) == "x"
    )  # not "'x'"


def test_checkpoint_data_whose_files_changed_since_training_is_warned_of(tmp_path):
    """`load_checkpoint_data` checks the data digest its checkpoint records, as `study run`
    does (`warn_if_data_changed`): the same words, and silent where the data are the same."""
    import warnings

    from emg_lens.checkpoints import read_checkpoint_info, source_digest

    path = notebook_rows.synthetic_checkpoint(tmp_path / "subject_1", subject=1)
    source = read_checkpoint_info(path)["metadata"]["data_source"]
    same = notebook_rows.synthetic_checkpoint(
        tmp_path / "same", subject=1, data_digest=source_digest(source, 1)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_checkpoint_data(same)
    changed = notebook_rows.synthetic_checkpoint(tmp_path / "changed", subject=1, data_digest="0")
    with pytest.warns(UserWarning, match="subject 1's data is not the data its model was trained"):
        load_checkpoint_data(changed)


def test_terminal_control_characters_of_a_study_never_reach_its_text_files(tmp_path, capsys):
    """A study's description holding terminal escapes ("\\x1b[2J" clears the screen of whoever
    cats summary.md) is written with them made visible, as HTML escapes text from data; the
    command's echo too (issue 85)."""
    model = _isonet()
    description = "Cuts \x1b[2J\x1b[31mper layer\x9b\x07 done"
    result = run_study(
        _spec(description=description, name="esc"),
        models={1: (model, _subject(model))},
        out_dir=tmp_path / "out",
        progress=False,
    )
    for path in (tmp_path / "out").iterdir():
        if path.suffix in (".md", ".csv", ".json", ".html"):
            text = path.read_text(encoding="utf-8")
            assert not [c for c in text if c not in "\n\t" and unicodedata.category(c) == "Cc"]
    summary = (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    assert "Cuts \\x1b[2J\\x1b[31mper layer\\x9b\\x07 done" in summary
    assert result.to_markdown().count("\x1b") == 2  # the result itself keeps the text


def test_a_commands_echo_of_a_result_shows_control_characters_visibly(tmp_path, capsys):
    """What a command prints of a result (class names from data, claims' text) cannot drive
    the terminal either (issue 85)."""
    from types import SimpleNamespace

    from emg_lens.cli.common import save_and_show

    output = SimpleNamespace(
        save=lambda out: [out / "report.html"], console=lambda: "class \x1b]0;owned\x07 fist"
    )
    save_and_show(output, tmp_path)
    assert "class \\x1b]0;owned\\x07 fist" in capsys.readouterr().out
