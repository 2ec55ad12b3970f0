"""A training read back (`fit(..., reuse=True)`, `emg_lens.train.reuse`) is the training itself:
the same weights, history and random state after it, bit for bit; whatever the weights depend
on, changed, trains again; a cache that is off, unreadable or read-only costs a training,
never a wrong model."""

from __future__ import annotations

import os

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
    monkeypatch.setenv("EMG_LENS_CACHE", str(tmp_path))
    return tmp_path / TRAINED_FOLDER


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
