"""Session-wide test settings for tests/ and the doctests in emg_lens/."""

from __future__ import annotations

import gc
import os
import shutil
from pathlib import Path

import pytest

GALLERY_TRAININGS = Path(__file__).parent / ".cache" / "gallery" / "trained"
"""The trainings the documentation gallery's notebooks kept (docs/gallery.py's ``TRAININGS``;
``make test`` builds the gallery first)."""


def pytest_configure(config):
    """Under pytest-xdist (``make test`` runs ``-n auto``), each worker gets its share of the
    cores for torch's intra-op threads: two workers on two cores each at torch's default of
    two threads would spend their time waiting for each other. So does numpy's and scipy's
    BLAS. Processes the tests start (kernels, command lines, torchrun ranks) inherit the
    share."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        import torch
        from threadpoolctl import threadpool_limits

        threads = max(1, (os.cpu_count() or 1) // workers)
        torch.set_num_threads(threads)
        # The BLAS of numpy and scipy (OpenBLAS: scikit-learn's fits, the feature baseline of
        # every training and study, the probes) too: its threads spin while they wait, and
        # beside a busy worker a 2-thread logistic regression took 30 times the CPU of a
        # 1-thread one. The variables reach the libraries loaded later (scipy's own OpenBLAS)
        # and the processes tests start; numpy's, loaded before this hook, is limited here.
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(name, str(threads))
        threadpool_limits(threads, user_api="blas")


def pytest_collection_modifyitems(config, items):
    """Slow tests first (a stable sort: otherwise in collection order). ``make test`` has
    pytest-xdist hand tests out in this order one at a time, so the minutes-long trainings start
    first and the short tests fill the gaps (longest first, the rule of scheduling on parallel
    machines); left for the end, they would run alone on one core. Asked for, pytest-reverse
    (``--reverse``) reverses the collection before this sort (each group then runs backwards)
    and pytest-random-order (``--random-order-seed=N``) shuffles after it: the suite passes in
    any order."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_collection_finish(session):
    """What collection imported and built (torch, TransformerLens, braindecode, the model
    tables: some 430,000 objects) lives for the whole run, so the cyclic garbage collector is
    told to leave it be (`gc.freeze`). Otherwise every full collection walks all of it: 0.2 s
    each, and tests/unit/models, edges, stats and bad inputs, run in one process, spent 40 s of
    130 in them (with the freeze: 14 s of 105; measured with `gc.callbacks`). Objects made
    after this are collected as always; the frozen ones are still freed when nothing refers to
    them."""
    _freeze_survivors()


_module_running: list[str] = [""]


def pytest_runtest_setup(item):
    """At each test file's first test, what the files before left alive (modules' tables,
    caches, models kept for later tests) is frozen too, the garbage collected first: a full
    collection then walks only what this file's tests made. (Frozen objects are still freed by
    their reference counts; only a cycle made unreachable after its freeze is kept to the end.)"""
    module = item.nodeid.split("::", 1)[0]
    if module != _module_running[0]:
        _module_running[0] = module
        _freeze_survivors()


def _freeze_survivors() -> None:
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="session", autouse=True)
def _private_caches(tmp_path_factory):
    """Point the preprocessing cache (``$EMG_LENS_CACHE``) and the user cache directory
    (``$XDG_CACHE_HOME``, where the cache goes when a test unsets ``EMG_LENS_CACHE``) at this
    run's temporary folder, for the whole run and its subprocesses, so test runs never fill the
    user's cache or read stale entries from it. Under pytest-xdist the workers share it (their
    temporary folders' parent), as processes sharing one cache do: a subject preprocessed, or a
    training kept (`emg_lens.train.reuse`: notebook 08 and the demo model of the probes' tests
    train the same model), by one worker is read by the other. A test that sets its own (with
    ``monkeypatch``) wins for its duration.

    The cache starts with a copy of the trainings the documentation gallery kept (a training
    whose key matches, e.g. notebook 08's demo model, is read back as the key allows: same
    model, windows, recipe, code and thread count; copies, so a test that damages an entry
    damages its own)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    _copy_trainings(GALLERY_TRAININGS, base / "emg_lens_cache" / "trained")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EMG_LENS_CACHE", str(base / "emg_lens_cache"))
        patch.setenv("XDG_CACHE_HOME", str(base / "xdg_cache"))
        yield


def _copy_trainings(source: Path, target: Path) -> None:
    """Copy the kept trainings of ``source`` missing in ``target``, each written under a
    temporary name and renamed (pytest-xdist's workers copy at once: a reader sees a whole
    entry or none)."""
    if not source.is_dir():
        return
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.glob("*.pt"):
        if not (target / entry.name).exists():
            partial = target / f".{entry.name}.{os.getpid()}.partial"
            shutil.copyfile(entry, partial)
            os.replace(partial, target / entry.name)
