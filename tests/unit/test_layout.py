"""`TokenLayout`'s channel names (issue 24 item 3): kept per channel, checked, shown, and passed
by every emg_lens model from its config into its layout (and so through a checkpoint)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emg_lens import EncoderConfig, LayoutError, TokenLayout
from emg_lens.checkpoints import load_checkpoint, save_checkpoint
from emg_lens.models import MODEL_CLASSES, HierarchicalTransformer, MultimodalTransformer
from tests.tiny import tinymyo_config


def test_channel_tokens_keep_the_names_of_their_channels():
    layout = TokenLayout.channel_tokens({"eeg": 3}, n_patches=2, channel_names=["C3", "Cz", "C4"])
    assert layout.channel_names == ("C3", "Cz", "C4")
    assert [layout.channel_name(p) for p in range(layout.n_tokens)] == [
        None, "C3", "C3", "Cz", "Cz", "C4", "C4"
    ]  # fmt: skip
    assert layout == TokenLayout.channel_tokens(
        {"eeg": 3}, n_patches=2, channel_names=("C3", "Cz", "C4")
    )
    assert hash(layout)  # still hashable: the names are a tuple
    assert "C3" in str(layout) and "channels" in str(layout)


def test_layouts_without_names_are_unchanged():
    layout = TokenLayout.channel_tokens({"emg": 2, "acc": 1})
    assert layout.channel_names is None
    assert layout.channel_name(1) is None
    assert str(layout).splitlines() == [
        "TokenLayout: 4 tokens",
        "  group  tokens  positions",
        "  cls         1  0..0",
        "  emg         2  1..2",
        "  acc         1  3..3",
    ]


@pytest.mark.parametrize(
    ("names", "says"),
    [
        (["C3", "Cz"], r"has 2 names.*channel 2"),
        (["C3", "Cz", "C3"], r"unique.*'C3'"),
        # a name that is no str: refused by emg_lens's own check, annotation unchecked
        pytest.param(["C3", "Cz", 4], r"non-empty strings.*4", marks=pytest.mark.unchecked),
        ("C3", r"a sequence of channel names"),
    ],
)
def test_bad_channel_names_are_refused(names, says):
    with pytest.raises(LayoutError, match=r"TokenLayout\.channel_names.*" + says):
        TokenLayout.channel_tokens({"eeg": 3}, channel_names=names)


@pytest.mark.parametrize(
    ("modalities", "n_patches", "says"),
    [
        (
            {"emg": 2, "acc": -1},
            1,
            r"modalities\['acc'\] \(a channel count\) must be a positive int, got -1",
        ),
        (
            {"emg": 2, "acc": 0},
            1,
            r"modalities\['acc'\] \(a channel count\) must be a positive int, got 0",
        ),
        ({"emg": 2}, 0, r"n_patches must be a positive int, got 0"),
    ],
)
def test_counts_that_would_drop_tokens_are_refused(modalities, n_patches, says):
    """A modality of 0 or -1 channels would vanish from the layout, and n_patches=0 would
    leave CLS alone (issue 85)."""
    with pytest.raises(LayoutError, match=r"channel_tokens " + says):
        TokenLayout.channel_tokens(modalities, n_patches=n_patches)


def test_channel_name_checks_the_position():
    layout = TokenLayout.channel_tokens({"eeg": 2}, channel_names=["C3", "C4"])
    with pytest.raises(LayoutError, match=r"position 3.*0\.\.2"):
        layout.channel_name(3)


def _config(cls, names):
    builder = getattr(cls, "default_config", None)
    base = {"seed": 0, "channel_names": names}
    if cls.__name__ == "TinyMyo":
        return tinymyo_config({"emg": 2, "acc": 4}, 8, n_layers=1, patch_samples=2, **base)
    return builder("tiny", **base) if builder else EncoderConfig.preset("tiny", **base)


NAMES = ["Fp1", "Fp2", "C3", "C4", "O1", "O2"]
# emg_lens's own architectures; converted models (`from_torch_encoder`, `from_braindecode`)
# build their configs differently and are tested with their converters.
OWN = ("HierarchicalTransformer", "IsoNet", "MultimodalMLP", "MultimodalTransformer", "TinyMyo")


@pytest.mark.parametrize("name", OWN)
def test_every_model_passes_its_config_names_to_its_layout(name, tmp_path):
    cls = MODEL_CLASSES[name]
    model = cls(_config(cls, NAMES))
    assert model.layout.channel_names == tuple(NAMES)
    if cls not in (HierarchicalTransformer, MultimodalTransformer) and name != "MultimodalMLP":
        named = {model.layout.channel_name(p) for p in range(model.layout.n_tokens)}
        assert named - {None} == set(NAMES)  # every channel token has its name
    again = load_checkpoint(save_checkpoint(model, tmp_path / name))
    assert again.cfg.channel_names == NAMES and again.layout == model.layout
    assert cls(_config(cls, None)).layout.channel_names is None


@pytest.mark.unchecked  # time steps that the annotation, float | None, refuses
def test_a_time_step_is_a_positive_number_stored_as_a_float():
    for bad in (0, True, "0.1", float("inf")):
        with pytest.raises(LayoutError, match=rf"time_step must be None or .*, got {bad!r}$"):
            TokenLayout.channel_tokens({"emg": 1}, time_step=bad)
    step = TokenLayout.channel_tokens({"emg": 1}, time_step=np.float32(0.5)).time_step
    assert step == 0.5 and type(step) is float  # a plain float: a layout's dict goes to JSON


def _one(group: str = "emg") -> TokenLayout:
    return TokenLayout(group=(group,), channel=(0,), time=(0,))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda: TokenLayout(group=("emg",), channel=(0,), time=(0,), queries=_bad_queries()),
            r"TokenLayout.queries must be the TokenLayout of the query tokens",
        ),
        (
            lambda: TokenLayout(group=("emg", "emg"), channel=(0,), time=(0, 1)),
            r"group, .channel and .time must have one entry per token .*got \(2, 1, 2\)",
        ),
        (
            lambda: TokenLayout(group=(), channel=(), time=()),
            r"one entry per token \(1 or more\), got \(0, 0, 0\)",
        ),
        (lambda: TokenLayout.from_dict([1, 2]), r"a layout must be a dict with lists .*got list"),
        (
            lambda: TokenLayout.from_dict({"group": ["emg"], "time": [0]}),
            r"a layout must be a dict with lists 'group', 'channel', 'time'",
        ),
    ],
    ids=["queries-with-queries", "lengths-differ", "no-tokens", "not-a-dict", "no-channel"],
)
def test_a_layout_that_is_not_one_token_per_entry_is_refused(make, match):
    with pytest.raises(LayoutError, match=match):
        make()


def _bad_queries() -> TokenLayout:
    return TokenLayout(group=("q",), channel=(0,), time=(0,), queries=_one())


@pytest.mark.unchecked  # the annotation refuses a list in the suite; a user's run meets this
def test_edge_masks_that_are_not_a_dict_are_refused():
    model = HierarchicalTransformer(HierarchicalTransformer.default_config("tiny"))
    n = model.layout.n_tokens
    with pytest.raises(LayoutError, match=r"edge_masks must be a dict \{layer: bool mask"):
        model(model.example_input(1), edge_masks=[torch.ones(n, n, dtype=torch.bool)])
