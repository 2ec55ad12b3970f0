"""A training read back (`fit(..., reuse=True)`, `emg_lens.train.reuse`) is the training itself:
the same weights, history and random state after it, bit for bit; whatever the weights depend
on, changed, trains again; a cache that is off, unreadable or read-only costs a training,
never a wrong model."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

from emg_lens import EncoderConfig
from emg_lens.data.cache import write_entry
from emg_lens.data.preprocess import SubjectData
from emg_lens.edges import cross_modal
from emg_lens.errors import ArgumentError
from emg_lens.hooks import compile_edges
from emg_lens.models import IsoNet
from emg_lens.train import TrainConfig, fit
from emg_lens.train import reuse as reuse_module
from emg_lens.train.reuse import TRAINED_FOLDER
from tests.unit.storage_faults import full_disk, read_only

# Edge dropout draws per-window masks, and the tiny IsoNet's dropout draws from torch's global
# generator: a read-back that left the random state elsewhere would show after `fit`.
RECIPE = TrainConfig(epochs=2, batch_size=8, lr=3e-3, seed=3, progress=False, edge_dropout=0.5)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A cache folder of the test's own (beside, not holding, the files a test writes)."""
    monkeypatch.setenv("EMG_LENS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / TRAINED_FOLDER


def _windows(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((24, 6, 8)).astype(np.float32), np.arange(24) % 4


def _train(X, y, cfg=RECIPE, *, reuse=True, masks=None, seed=0):
    """A fresh tiny IsoNet trained; its weights, history, the lines it reported and the next
    draw of torch's global generator."""
    model = IsoNet(EncoderConfig.preset("tiny", seed=seed, dropout=0.1))
    said = []
    masks = compile_edges(masks, model) if masks is not None else None
    history = fit(model, X, y, cfg, reuse=reuse, report=said.append, edge_masks=masks)
    after = torch.rand(3)
    return model, history, said, after


def _same(a, b) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_training_read_back_is_the_training(cache):
    X, y = _windows()
    fresh, fresh_history, said, fresh_after = _train(X, y, reuse=False)
    assert not cache.exists() and not any("done before" in line for line in said)
    kept, kept_history, said, kept_after = _train(X, y)  # trains, and keeps it
    assert len(list(cache.glob("*.pt"))) == 1 and not any("done before" in s for s in said)
    read, read_history, said, read_after = _train(X, y)  # reads it
    assert any("done before" in line for line in said)
    assert _same(fresh, kept) and _same(fresh, read) and not read.training
    assert fresh_history == kept_history == read_history
    assert torch.equal(fresh_after, kept_after) and torch.equal(fresh_after, read_after)


@pytest.mark.parametrize(
    "change",
    ["seed", "recipe", "windows", "labels", "masks", "threads", "code"],
)
def test_whatever_the_weights_depend_on_changed_trains_again(cache, monkeypatch, change):
    X, y = _windows()
    _train(X, y)
    model_seed, cfg, masks = 0, RECIPE, None
    if change == "seed":
        model_seed = 1
    elif change == "recipe":
        cfg = TrainConfig(**{**RECIPE.__dict__, "lr": 2e-3})
    elif change == "windows":
        X = X.copy()
        X[5, 2, 3] += 1e-3
    elif change == "labels":
        y = y.copy()
        y[0] = 3
    elif change == "masks":
        masks = cross_modal()
    elif change == "threads":
        monkeypatch.setattr(torch, "get_num_threads", lambda: 7)
    elif change == "code":
        monkeypatch.setattr(reuse_module, "code_digest", lambda: "another emg_lens")
    _, _, said, _ = _train(X, y, cfg, masks=masks, seed=model_seed)
    assert not any("done before" in line for line in said), change
    assert len(list(cache.glob("*.pt"))) == 2


def test_the_progress_bar_is_no_part_of_the_recipe(cache):
    X, y = _windows()
    first, *_ = _train(X, y)
    again, _, said, _ = _train(X, y, TrainConfig(**{**RECIPE.__dict__, "progress": True}))
    assert _same(first, again) and len(list(cache.glob("*.pt"))) == 1
    assert any("done before" in line for line in said)


def test_with_the_cache_off_nothing_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("EMG_LENS_CACHE", "off")
    monkeypatch.chdir(tmp_path)
    X, y = _windows()
    _train(X, y)
    _, _, said, _ = _train(X, y)
    assert not any("done before" in line for line in said) and not list(tmp_path.rglob("*.pt"))


def test_an_unreadable_entry_is_a_warning_and_a_training(cache):
    X, y = _windows()
    fresh, *_ = _train(X, y)
    (entry,) = cache.glob("*.pt")
    entry.write_bytes(entry.read_bytes()[:100])  # cut short, as a full disk leaves it elsewhere
    with pytest.warns(UserWarning, match="unreadable kept training.*training again"):
        again, _, said, _ = _train(X, y)
    assert _same(fresh, again) and not any("done before" in line for line in said)
    _, _, said, _ = _train(X, y)  # the training above kept a whole entry again
    assert any("done before" in line for line in said)


@pytest.mark.parametrize("fault", ["read_only", "full_disk"])
def test_a_cache_that_cannot_be_written_is_a_warning_and_the_training_stands(
    cache, monkeypatch, fault
):
    cache.mkdir(parents=True)
    X, y = _windows()
    broken = (
        read_only(cache, monkeypatch)
        if fault == "read_only"
        else full_disk(cache, monkeypatch, 1000)
    )
    with broken, pytest.warns(UserWarning, match="the training is not kept"):
        model, history, *_ = _train(X, y)
    assert not list(cache.iterdir())  # no entry, not even a part of one
    fresh, fresh_history, *_ = _train(X, y, reuse=False)
    assert _same(model, fresh) and history == fresh_history


def test_a_hooked_model_or_one_whose_code_has_no_file_is_trained_and_not_kept(cache):
    X, y = _windows()
    model = IsoNet(EncoderConfig.preset("tiny", seed=0))
    handle = model.blocks[0].attn.hook_pattern.register_forward_hook(lambda m, i, o: o * 1.0)
    fit(model, X, y, RECIPE, reuse=True)
    handle.remove()
    assert not cache.exists()
    scope = {"__name__": "a_notebook_cell", "IsoNet": IsoNet}
    exec("class Edited(IsoNet):\n    pass", scope)  # as a class in a notebook cell
    fit(scope["Edited"](EncoderConfig.preset("tiny", seed=0)), X, y, RECIPE, reuse=True)
    assert not cache.exists()


def test_a_model_class_of_a_file_is_kept_under_that_files_content(cache, tmp_path, monkeypatch):
    """A user's model from a file: an edit to the file trains again."""
    source = tmp_path / "my_models.py"
    source.write_text("from emg_lens.models import IsoNet\n\nclass Mine(IsoNet):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_models

    X, y = _windows()
    cfg = EncoderConfig.preset("tiny", seed=0)
    said = []
    for _ in range(2):
        fit(my_models.Mine(cfg), X, y, RECIPE, reuse=True, report=said.append)
    assert sum("done before" in line for line in said) == 1
    source.write_text(source.read_text() + "# edited\n")
    fit(my_models.Mine(cfg), X, y, RECIPE, reuse=True, report=said.append)
    assert sum("done before" in line for line in said) == 1  # trained again
    assert len(list(cache.glob("*.pt"))) == 2


def test_kept_trainings_count_in_the_cache_cap_least_recently_used_first(cache, monkeypatch):
    """One cap for the cache's folder: preprocessed subjects and kept trainings leave it in
    the order of their last use, and reading a training is a use."""
    X, y = _windows()
    subject = cache.parent / f"synthetic_s1_{'0' * 20}"
    write_entry(subject, "key", SubjectData.from_windows({"emg": 6}, (X, y), (X, y), subject=1))
    for seed in (0, 1):
        _train(X, y, seed=seed)
    first, second = sorted(cache.glob("*.pt"), key=lambda p: p.stat().st_mtime_ns)
    for path, last_used in ((first, 100), (subject.with_suffix(".json"), 200), (second, 300)):
        os.utime(path, (last_used, last_used))
    _, _, said, _ = _train(X, y, seed=0)  # reads the first training: now the most recent use
    assert any("done before" in line for line in said)
    size = first.stat().st_size
    monkeypatch.setenv("EMG_LENS_CACHE_MAX_GB", str(2.5 * size / 1e9))  # room for two trainings
    _train(X, y, seed=2)  # a third, kept, then the cache brought within the cap
    assert first.is_file() and not second.exists() and not subject.with_suffix(".json").exists()
    assert len(list(cache.glob("*.pt"))) == 2


def test_a_bad_cache_cap_is_named_before_the_training(cache, monkeypatch):
    monkeypatch.setenv("EMG_LENS_CACHE_MAX_GB", "lots")
    with pytest.raises(ArgumentError, match=r"\$EMG_LENS_CACHE_MAX_GB must be a size in GB"):
        _train(*_windows())


# --------------------------------------------------------- issue 57 item 1: the red team's cases


def _said_reused(said: list[str]) -> bool:
    return any("done before" in line for line in said)


def _fit(model, X, y, cfg=RECIPE):
    """``model`` trained with reuse; whether the training was read back."""
    said = []
    fit(model, X, y, cfg, reuse=True, report=said.append)
    return _said_reused(said)


def _isonet(**overrides):
    return IsoNet(EncoderConfig.preset("tiny", seed=0, dropout=0.1, **overrides))


def test_a_frozen_encoder_is_part_of_the_key(cache):
    """A training of the whole model is not read back for a model whose encoder is frozen
    (it would hand back an encoder that moved)."""
    X, y = _windows()
    assert not _fit(_isonet(), X, y)
    frozen = _isonet()
    for name, p in frozen.named_parameters():
        p.requires_grad_(not name.startswith("blocks."))  # the encoder frozen
    before = {k: v.clone() for k, v in frozen.named_parameters() if not v.requires_grad}
    assert not _fit(frozen, X, y)
    assert all(torch.equal(before[k], v) for k, v in frozen.named_parameters() if k in before)
    again = _isonet()
    for name, p in again.named_parameters():
        p.requires_grad_(not name.startswith("blocks."))
    assert _fit(again, X, y) and _same(frozen, again)


def test_module_state_set_after_construction_is_part_of_the_key(cache):
    X, y = _windows()
    assert not _fit(_isonet(), X, y)
    changed = _isonet()
    dropout = next(m for m in changed.modules() if isinstance(m, torch.nn.Dropout))
    dropout.p = 0.5  # set after construction: the config still says 0.1
    assert not _fit(changed, X, y)
    a_buffer = _isonet()  # a buffer that is not saved in the state dict
    a_buffer.register_buffer("offset", torch.ones(1), persistent=False)
    assert not _fit(a_buffer, X, y)
    assert len(list(cache.glob("*.pt"))) == 3


@pytest.fixture
def user_code(tmp_path, monkeypatch):
    """Write a user's model file and the helper module it imports, under fresh module names;
    returns ``(write, load)``: ``write(gain=, body=)`` (re)writes both files, ``load()``
    imports them (or gives the modules imported already)."""
    tag = tmp_path.name.replace("-", "_")
    names = {"model": f"user_model_{tag}", "helper": f"user_helper_{tag}"}
    folder = tmp_path / "code"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    # No .pyc for these files: an edit within the same second that keeps the file's size (a
    # GAIN of 1.0 -> 3.0) would leave a cached .pyc that `importlib.reload` trusts, and the test
    # would run the old code (Python's pyc check is mtime in seconds and size).
    monkeypatch.setattr(sys, "dont_write_bytecode", True)

    def write(gain: float = 1.0, body: str = "signals * self.scale * helper.GAIN") -> None:
        (folder / f"{names['helper']}.py").write_text(f"GAIN = {gain!r}\n")
        (folder / f"{names['model']}.py").write_text(
            f"import {names['helper']} as helper\n"
            "from emg_lens.models import IsoNet\n\n\n"
            "class Mine(IsoNet):\n"
            "    def __init__(self, cfg, scale=1.0):\n"
            "        super().__init__(cfg)\n"
            "        self.scale = scale\n\n"
            "    def forward(self, signals, **kwargs):\n"
            f"        return super().forward({body}, **kwargs)\n"
        )

    def load():
        import importlib

        return importlib.import_module(names["model"]), importlib.import_module(names["helper"])

    yield write, load
    for name in names.values():
        sys.modules.pop(name, None)


def test_a_user_models_constructor_argument_is_part_of_the_key(cache, user_code):
    write, load = user_code
    write()
    mine, _ = load()
    X, y = _windows()
    cfg = EncoderConfig.preset("tiny", seed=0)
    assert not _fit(mine.Mine(cfg, scale=1.0), X, y)
    assert _fit(mine.Mine(cfg, scale=1.0), X, y)
    assert not _fit(mine.Mine(cfg, scale=2.0), X, y)


def test_an_edit_to_a_helper_module_the_models_file_imports_trains_again(cache, user_code):
    import importlib

    write, load = user_code
    write(gain=1.0)
    mine, helper = load()
    X, y = _windows()
    cfg = EncoderConfig.preset("tiny", seed=0)
    assert not _fit(mine.Mine(cfg), X, y)
    write(gain=3.0)  # the helper edited, and reloaded: what runs is the file
    importlib.reload(helper)
    assert not _fit(mine.Mine(cfg), X, y)
    assert len(list(cache.glob("*.pt"))) == 2


@pytest.mark.parametrize("edited", ["model", "helper"])
def test_code_edited_without_reloading_is_not_kept(cache, user_code, edited):
    """A notebook that imported the model's file runs the old code after the file is edited:
    that training is neither kept under the new file's digest nor read back for it."""
    write, load = user_code
    write()
    mine, _ = load()
    X, y = _windows()
    cfg = EncoderConfig.preset("tiny", seed=0)
    assert not _fit(mine.Mine(cfg), X, y)
    if edited == "model":
        write(body="signals * self.scale * helper.GAIN * 2.0")
        match = r"Mine\.forward runs other code than .*user_model_.*\.py holds.*reload it"
    else:
        write(gain=5.0)
        match = r"GAIN is 1\.0 in the running code, 5\.0 in .*user_helper_.*\.py"
    with pytest.warns(UserWarning, match=match):
        assert not _fit(mine.Mine(cfg), X, y)
    assert len(list(cache.glob("*.pt"))) == 1


def test_a_module_level_setting_changed_after_import_trains_again(cache, user_code):
    """``SETTINGS = {"gain": 1.0}`` in the helper, then ``SETTINGS["gain"] = 3.0``: the model
    computes with 3.0, so the training with 1.0 is not read back (it was: the files had not
    changed); unchanged, it is read back."""
    write, load = user_code
    write(gain={"gain": 1.0}, body='signals * self.scale * helper.GAIN["gain"]')
    mine, helper = load()
    X, y = _windows()
    cfg = EncoderConfig.preset("tiny", seed=0)
    assert not _fit(mine.Mine(cfg), X, y)
    assert _fit(mine.Mine(cfg), X, y)
    helper.GAIN["gain"] = 3.0
    assert not _fit(mine.Mine(cfg), X, y)


def test_a_module_level_value_a_digest_cannot_read_is_trained_and_not_kept(cache, user_code):
    import collections

    write, load = user_code
    write(body="signals * self.scale")  # GAIN, unused, still a name the helper assigns
    mine, helper = load()
    helper.GAIN = collections.deque([1.0])
    X, y = _windows()
    with pytest.warns(UserWarning, match=r"not kept.*user_helper_\w+\.GAIN holds .*deque"):
        assert not _fit(mine.Mine(EncoderConfig.preset("tiny", seed=0)), X, y)
    assert not list(cache.glob("*.pt"))


def test_a_forward_set_on_the_instance_is_trained_and_not_kept(cache):
    X, y = _windows()
    assert not _fit(_isonet(), X, y)
    patched = _isonet()
    plain = patched.forward
    patched.forward = lambda signals, **kw: plain(signals * 2.0, **kw)
    with pytest.warns(UserWarning, match="the model has a forward set on the instance"):
        assert not _fit(patched, X, y)
    assert len(list(cache.glob("*.pt"))) == 1


def _rewrite_entry(cache, change) -> None:
    """Apply ``change(kept)`` to the one kept training and write it back under its name."""
    (entry,) = cache.glob("*.pt")
    kept = torch.load(entry, weights_only=True)
    changed = change(kept)
    torch.save(kept if changed is None else changed, entry)


def _last(state: dict) -> str:
    return list(state)[-1]


def _in_place(edit):
    """A damage that edits the entry in place: what ``edit`` returns (a value popped, a tensor
    filled) is no entry to write instead (`_rewrite_entry` wrote it, so these damages tested
    an entry that is not a dict)."""

    def damage(kept) -> None:
        edit(kept)

    return damage


DAMAGES = {
    # a tensor of another shape at the end: load_state_dict would copy all before it first
    "shape": lambda kept: kept["state"].update(
        {_last(kept["state"]): kept["state"][_last(kept["state"])][:-1]}
    ),
    "dtype": lambda kept: kept["state"].update(
        {_last(kept["state"]): kept["state"][_last(kept["state"])].double()}
    ),
    "missing tensor": _in_place(lambda kept: kept["state"].pop(_last(kept["state"]))),
    "nan weight": _in_place(lambda kept: kept["state"][_last(kept["state"])].fill_(float("nan"))),
    "history": _in_place(lambda kept: kept["result"].pop("steps")),
    "random state": lambda kept: kept.update(rng=kept["rng"][:10]),
    "not a dict": lambda kept: [kept],
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_entry_is_never_half_loaded(cache, damage):
    """An entry that does not read back exactly is a warning, and the training is done from
    the start on the model as it came (never on weights half copied from the entry)."""
    X, y = _windows()
    fresh, fresh_history, _, fresh_after = _train(X, y, reuse=False)
    _train(X, y)
    _rewrite_entry(cache, DAMAGES[damage])
    with pytest.warns(UserWarning, match="unreadable kept training.*training again from the start"):
        again, history, said, after = _train(X, y)
    assert not _said_reused(said)
    assert _same(fresh, again) and history == fresh_history and torch.equal(after, fresh_after)
    _, _, said, _ = _train(X, y)  # the damaged entry was replaced by the training's
    assert _said_reused(said)


class _Payload:
    """What a pickle payload would run when unpickled without weights_only."""

    def __init__(self, flag: str):
        self.flag = flag

    def __reduce__(self):
        return (open, (self.flag, "w"))


def test_a_pickle_payload_is_refused_with_a_warning_not_run(cache, tmp_path):
    X, y = _windows()
    fresh, *_ = _train(X, y, reuse=False)
    _train(X, y)
    flag = tmp_path / "payload_ran"
    _rewrite_entry(cache, lambda kept: {**kept, "result": _Payload(str(flag))})
    with pytest.warns(UserWarning, match="unreadable kept training.*UnpicklingError"):
        again, _, said, _ = _train(X, y)
    assert not flag.exists() and not _said_reused(said) and _same(fresh, again)


COUNTING = """\
import torch
from emg_lens.models import IsoNet


class Counting(IsoNet):
    '''Counts the windows it trains on: in a buffer the state dict leaves out, or in a plain
    attribute (``attribute=True``).'''

    def __init__(self, cfg, attribute=False):
        super().__init__(cfg)
        self.attribute, self.seen_count = attribute, 0
        self.register_buffer("seen", torch.zeros(1), persistent=False)

    def forward(self, signals, **kwargs):
        if self.training:
            if self.attribute:
                self.seen_count += len(signals)
            else:
                self.seen += len(signals)
        return super().forward(signals, **kwargs)
"""


@pytest.fixture
def counting(tmp_path, monkeypatch):
    name = f"counting_{tmp_path.name.replace('-', '_')}"
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / f"{name}.py").write_text(COUNTING)
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    import importlib

    yield importlib.import_module(name).Counting
    sys.modules.pop(name, None)


def test_buffers_the_state_dict_leaves_out_are_read_back_as_trained(cache, counting):
    X, y = _windows()
    cfg = EncoderConfig.preset("tiny", seed=0)
    trained = counting(cfg)
    assert not _fit(trained, X, y)
    assert float(trained.seen) == 2 * len(X)  # two epochs
    again = counting(cfg)
    assert _fit(again, X, y)
    assert torch.equal(again.seen, trained.seen) and _same(again, trained)


def test_a_training_that_changes_an_attribute_is_not_kept(cache, counting):
    X, y = _windows()
    cfg = EncoderConfig.preset("tiny", seed=0)
    with pytest.warns(UserWarning, match="its training changed its state beyond its tensors"):
        assert not _fit(counting(cfg, attribute=True), X, y)
    assert not list(cache.glob("*.pt"))
    again = counting(cfg, attribute=True)
    with pytest.warns(UserWarning, match="beyond its tensors"):
        assert not _fit(again, X, y)
    assert again.seen_count == 2 * len(X)


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda kept: kept.update(key="another"), "it holds another key"),
        (lambda kept: kept["result"].pop("steps"), r"history does not hold the fields \['loss'"),
        (lambda kept: kept["result"].update(steps=1.5), r"history's steps = 1\.5 is not what a"),
        (
            lambda kept: kept["state"].pop("bias"),
            r"weights do not fit the model \(missing \['bias'",
        ),
    ],
)
def test_an_entry_that_is_not_this_trainings_is_named_in_the_warning(tmp_path, damage, match):
    model = torch.nn.Linear(2, 1)
    entry = reuse_module.TrainedEntry(tmp_path, "k")
    entry.write(model, {"loss": [0.5], "steps": 3})
    kept = torch.load(entry.path, weights_only=True)
    damage(kept)
    torch.save(kept, entry.path)
    with pytest.warns(UserWarning, match=f"unreadable kept training .*{match}"):
        assert entry.read(model, {"loss": [0.0], "steps": 0}) is None
    assert not entry.path.exists()
