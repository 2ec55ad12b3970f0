"""The study cell store (docs/DESIGN.md §5, §10): a cell is reused only when what it was computed
from is unchanged; a torn cell is named and recomputed; processes sharing one store compute each
cell once and agree; the "different study" check holds under races; orphans are cleaned. A
finished study on read-only media is summarised without a write, a full disk or read-only folder
is a named error that loses no cell, and a claim naming a recycled pid is taken over (issue
23)."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from emg_lens._io import process_start
from emg_lens.checkpoints import save_checkpoint
from emg_lens.cli import main
from emg_lens.config import config_for_data
from emg_lens.data.datasets import data_source, dataset_preprocess, load_subject
from emg_lens.data.preprocess import PreprocessSpec, SubjectData
from emg_lens.data.synthetic.emg_acc import SyntheticSpec
from emg_lens.data.synthetic.hdsemg import SyntheticHDsEMGSpec, write_synthetic_hdsemg
from emg_lens.errors import SpecError, StorageError
from emg_lens.models import IsoNet
from emg_lens.provenance import checkpoint_digest
from emg_lens.studies import StudyError, StudyResult, load_spec, run_study
from emg_lens.studies.store import CellStore
from emg_lens.train import accuracy
from tests.tiny import db2_checkpoint, tiny_subject, uni_and_cross
from tests.unit.storage_faults import full_disk, read_only

SPEC = {
    "name": "store",
    "models": "unused",
    "interventions": uni_and_cross(),
    "layers": {"modes": ["individual", "all"]},
}
SPEC_TOML = """
name = "store"
models = "unused"
[[interventions]]
name = "uni"
edges = "unimodal"
[[interventions]]
name = "cross"
edges = "cross_modal"
[layers]
modes = ["individual", "all"]
"""
FINGERPRINT = load_spec(SPEC).fingerprint()
FIGURES = StudyResult.figures  # the real ones, for the tests that need them drawn
SOURCE = data_source(
    "synthetic",
    synthetic=SyntheticSpec(n_subjects=3, movement_seconds=1.0),
    preprocess=PreprocessSpec(segment=(0.25, 1.0), step=100),
)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Preprocessing cache and figures out of the way (child processes inherit the env)."""
    monkeypatch.setenv("EMG_LENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(StudyResult, "figures", lambda self: {})


@pytest.fixture
def puts(monkeypatch) -> list[tuple[int, str]]:
    """Every cell this process computes and stores, in order."""
    written = []
    real = CellStore.put

    def put(self, subject, key, cell, provenance=None):
        written.append((subject, key))
        real(self, subject, key, cell, provenance)

    monkeypatch.setattr(CellStore, "put", put)
    return written


def _save_model(models: Path, subject: int, seed: int, source=SOURCE, **metadata) -> IsoNet:
    return db2_checkpoint(models, subject, source, seed=seed, **metadata)  # varied predictions


def _memory_subjects(seed: int = 0) -> dict[int, tuple[IsoNet, SubjectData]]:
    return {1: tiny_subject(seed, 16, labels="random", train=False, init_range=0.5)}


# ----------------------------------------------------------------------------- provenance


@pytest.mark.slow
def test_retrained_subject_is_recomputed_and_counted(tmp_path, puts, capsys):
    models, out = tmp_path / "models", tmp_path / "out"
    for subject in (1, 2):
        _save_model(models, subject, seed=subject)
    (tmp_path / "store.toml").write_text(SPEC_TOML)
    argv = ["study", "run", str(tmp_path / "store.toml"), "--models", str(models)]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    n = len(puts) // 2  # cells per subject
    assert sorted({s for s, _ in puts}) == [1, 2] and n > 1
    assert f"cells: 0 reused, {2 * n} recomputed" in capsys.readouterr().out

    # New training metrics change nothing the model computes: reused. A retrained subject 2,
    # saved into its old folder, is recomputed, alone.
    _save_model(models, 1, seed=1, val_accuracy=0.5)
    retrained = _save_model(models, 2, seed=20)
    puts.clear()
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    assert sorted({s for s, _ in puts}) == [2] and len(puts) == n
    assert f"cells: {n} reused, {n} recomputed ({n} of other provenance)" in capsys.readouterr().out

    # The new model's numbers are reported: equal to a fresh folder's and to its own accuracy.
    rerun = pd.read_csv(out / "per_subject.csv")
    fresh = run_study(SPEC, models=models, out_dir=tmp_path / "fresh", progress=False)
    pd.testing.assert_frame_equal(rerun, pd.read_csv(tmp_path / "fresh" / "per_subject.csv"))
    data = load_subject(SOURCE, 2)
    assert fresh.baseline[2] == accuracy(retrained, data.X_test, data.y_test)
    stored = CellStore(out, fresh.spec.fingerprint()).get(2, fresh.per_subject.key.iloc[0])
    assert stored["provenance"]["model"] == checkpoint_digest(models / "subject_2")
    writer = {"pid": os.getpid(), "host": socket.gethostname(), "threads": torch.get_num_threads()}
    assert {key: stored["writer"][key] for key in writer} == writer
    assert ("tf32" in stored["writer"]) == torch.cuda.is_initialized()


def test_a_process_that_used_cuda_records_its_tf32_settings_in_each_cell(tmp_path, monkeypatch):
    """A float32 result on a GPU differs by ~5e-4 where PyTorch lets TF32 kernels run
    (docs/guide/scale-out.md): the settings are recorded beside the thread count; a process
    that never used CUDA records none."""
    store = CellStore(tmp_path / "out", fingerprint="{}")
    store.put(1, "cpu", {"value": 1.0})
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    matmul = torch.backends.cuda.matmul.allow_tf32  # a property of torch's, not an attribute
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        with torch.backends.cudnn.flags(allow_tf32=False):
            store.put(1, "gpu", {"value": 1.0})
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
    cells = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "out" / "cells").glob("*/*")}
    assert "tf32" not in cells["cpu"]["writer"]
    assert cells["gpu"]["writer"]["tf32"] == {"matmul": True, "cudnn": False}


def test_regenerated_data_files_are_recomputed(tmp_path, puts):
    root, models, out = tmp_path / "hdsemg", tmp_path / "models", tmp_path / "out"
    small = {"n_subjects": 1, "n_gestures": 2, "movement_seconds": 0.3, "rest_seconds": 0.1}
    write_synthetic_hdsemg(SyntheticHDsEMGSpec(**small, seed=0), root)
    preprocess = dataset_preprocess("hdsemg", segment="full", window=100, step=100)
    source = data_source("hdsemg", root=root, preprocess=preprocess)
    data = load_subject(source, 1)
    cfg = config_for_data(IsoNet, "tiny", data.modalities, data.n_classes, 100, init_range=0.5)
    model = IsoNet(cfg).eval()
    save_checkpoint(model, models / "subject_1", metadata={"subject": 1, "data_source": source})
    first = run_study(SPEC, models=models, out_dir=out, progress=False)
    assert (first.reused, first.recomputed) == (0, len(puts)) and puts

    # Same folder, same file name, other content: every cell is scored on the new data.
    write_synthetic_hdsemg(SyntheticHDsEMGSpec(**small, seed=1), root)
    puts.clear()
    again = run_study(SPEC, models=models, out_dir=out, progress=False)
    assert (again.reused, again.recomputed, again.stale) == (0, len(puts), len(puts))
    new = load_subject(source, 1)
    assert not np.array_equal(new.X_test, data.X_test)
    assert again.baseline[1] == accuracy(model, new.X_test, new.y_test)


@pytest.mark.parametrize("change", ["weights", "data"])
def test_changed_in_memory_model_or_data_is_recomputed(tmp_path, puts, change):
    subjects = _memory_subjects()
    first = run_study(SPEC, models=subjects, out_dir=tmp_path, progress=False)
    model, data = subjects[1]
    if change == "weights":
        with torch.no_grad():
            model.cls_head.W_U.mul_(-1.0)
    else:
        data.X_test[0, 0, 0] += 1.0
    puts.clear()
    again = run_study(SPEC, models=subjects, out_dir=tmp_path, progress=False)
    assert (again.reused, again.recomputed) == (0, len(first.per_subject)) == (0, len(puts))
    unchanged = run_study(SPEC, models=subjects, out_dir=tmp_path, progress=False)
    assert (unchanged.reused, unchanged.recomputed) == (len(first.per_subject), 0)


# ----------------------------------------------------------------------------- damaged files


@pytest.mark.parametrize("content", [b"", b'{"value": 0.5, "class_corr'])
def test_empty_or_torn_cell_is_named_and_recomputed(tmp_path, puts, content):
    subjects = _memory_subjects()
    first = run_study(SPEC, models=subjects, out_dir=tmp_path, progress=False)
    key = first.per_subject.key.iloc[1]
    cell = tmp_path / "cells" / "s1" / f"{key}.json"
    cell.write_bytes(content)
    puts.clear()
    with pytest.warns(UserWarning, match=f"{cell} is empty or torn; recomputing"):
        again = run_study(SPEC, models=subjects, out_dir=tmp_path, progress=False)
    assert puts == [(1, key)]
    assert (again.reused, again.recomputed) == (len(first.per_subject) - 1, 1)
    pd.testing.assert_frame_equal(first.per_subject, again.per_subject)
    assert json.loads(cell.read_text())["values"]["accuracy"] == first.per_subject.value.iloc[1]


def _reaped_pid() -> int:
    """The pid of a process that has exited and been reaped (so it is not alive)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_orphaned_temp_files_of_dead_writers_are_removed_on_open(tmp_path):
    CellStore(tmp_path, "{}")
    (tmp_path / "cells" / "s1").mkdir()
    dead = _reaped_pid()
    orphans = [
        tmp_path / "cells" / "s1" / f"abc.json.{dead}.tmp",
        tmp_path / f"study.json.{dead}.tmp",
    ]
    live = tmp_path / "cells" / "s1" / f"def.json.{os.getpid()}.tmp"  # a writer at work
    for path in [*orphans, live]:
        path.write_text("{partial")
    CellStore(tmp_path, "{}")
    assert not any(p.exists() for p in orphans)
    assert live.exists()


# ----------------------------------------------------------------------------- claims


def _write_claim(store: CellStore, subject: int, pid: int, host: str | None = None, **more) -> Path:
    path = store.claim_path(subject)
    holder = {"pid": pid, "host": host or socket.gethostname(), "token": "other", **more}
    path.write_text(json.dumps(holder))
    return path


def test_claim_of_a_dead_process_is_taken_over(tmp_path, puts):
    subjects = _memory_subjects()
    claim = _write_claim(CellStore(tmp_path, FINGERPRINT), 1, _reaped_pid())
    result = run_study(SPEC, models=subjects, out_dir=tmp_path, progress=False)
    assert result.recomputed == len(puts) == len(result.per_subject)
    assert not claim.exists()


def test_live_claim_is_waited_for_then_a_named_timeout(tmp_path, puts):
    subjects = _memory_subjects()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        _write_claim(CellStore(tmp_path / "out", FINGERPRINT), 1, holder.pid)
        start = time.monotonic()
        with (
            pytest.warns(UserWarning, match=f"subject 1: waiting for pid {holder.pid}"),
            pytest.raises(StudyError, match=rf"cells/s1/\S+\.json .*claimed by pid {holder.pid}"),
        ):
            run_study(SPEC, models=subjects, out_dir=tmp_path / "out", wait_timeout=0.5)
        assert 0.5 <= time.monotonic() - start < 30
        assert puts == []  # nothing computed under another process's claim
    finally:
        holder.kill()
        holder.wait()
    result = run_study(SPEC, models=subjects, out_dir=tmp_path / "out", progress=False)
    assert result.recomputed == len(result.per_subject)  # the dead holder's claim: taken over


def _study_process(barrier, models: str, out: str, table: str, log: str) -> None:
    """One of two processes running the same study into one folder (spawned)."""
    from emg_lens.studies.ablation.result import StudyResult
    from emg_lens.studies.store import CellStore

    StudyResult.figures = lambda self: {}
    real = CellStore.put

    def put(self, subject, key, cell, provenance=None):
        with open(log, "a") as fh:  # one line per computed cell: O_APPEND keeps lines whole
            fh.write(f"{os.getpid()} {subject} {key}\n")
        time.sleep(0.05)  # hold the claim long enough for the other process to meet it
        real(self, subject, key, cell, provenance)

    CellStore.put = put
    barrier.wait(timeout=120)
    result = run_study(SPEC, models=models, out_dir=out, progress=False)
    result.per_subject.to_csv(table, index=False)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_processes_on_one_out_compute_each_cell_once(tmp_path):
    models, out, log = tmp_path / "models", tmp_path / "out", tmp_path / "computed.log"
    for subject in (1, 2, 3):
        _save_model(models, subject, seed=subject)
    for subject in (1, 2, 3):
        load_subject(SOURCE, subject)  # fill the cache, so both start evaluating at once
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    tables = [tmp_path / f"table{i}.csv" for i in range(2)]
    procs = [
        ctx.Process(target=_study_process, args=(barrier, str(models), str(out), str(t), str(log)))
        for t in tables
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=240)
        assert proc.exitcode == 0
    computed = [line.split() for line in log.read_text().splitlines()]
    cells = [(s, k) for _, s, k in computed]
    assert len(cells) == len(set(cells))  # no cell computed twice
    first, second = (pd.read_csv(t) for t in tables)
    pd.testing.assert_frame_equal(first, second)
    assert sorted(cells) == sorted(zip(first.subject.astype(str), first.key))  # every one once
    writers = set()
    for path in (out / "cells").rglob("*.json"):
        pid = json.loads(path.read_text())["writer"]["pid"]
        writers.add((str(pid), path.parent.name.removeprefix("s"), path.stem))
    assert writers == {tuple(c) for c in computed}  # the store records who wrote each cell
    assert list((out / "claims").glob("*.claim")) == []


def _open_store(barrier, root: str, fingerprint: str, rounds: int, queue) -> None:
    """Open a new store folder at the same instant as the other processes, ``rounds`` times."""
    outcomes = []
    for r in range(rounds):
        barrier.wait(timeout=120)
        try:
            CellStore(Path(root) / f"round{r}", fingerprint)
            outcomes.append("opened")
        except SpecError:
            outcomes.append("refused")
    queue.put((fingerprint, outcomes))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_synchronised_openers_of_a_new_store_agree_on_one_study(tmp_path):
    n, rounds = 6, 10
    # fork: the parent's imports, so the six start in milliseconds, not seconds each (they only
    # open stores; the study processes above are spawned, since they run torch)
    ctx = multiprocessing.get_context("fork")
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    fingerprints = [f'{{"study": {i % 2}}}' for i in range(n)]
    procs = [
        ctx.Process(target=_open_store, args=(barrier, str(tmp_path), fp, rounds, queue))
        for fp in fingerprints
    ]
    for proc in procs:
        proc.start()
    reports = [queue.get(timeout=240) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    for r in range(rounds):
        winner = json.loads((tmp_path / f"round{r}" / "study.json").read_text())["fingerprint"]
        for fingerprint, outcomes in reports:
            assert outcomes[r] == ("opened" if fingerprint == winner else "refused"), r


# ----------------------------------------------------------------------------- storage failures


def _files(folder: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file below ``folder``: its bytes, inode and modification time."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_ino, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_a_finished_study_is_summarised_from_read_only_media(tmp_path, monkeypatch):
    monkeypatch.setattr(StudyResult, "figures", FIGURES)  # every output file, figures too
    subjects = {s: _memory_subjects(seed=s)[1] for s in (1, 2)}
    out = tmp_path / "out"
    first = run_study(SPEC, models=subjects, out_dir=out, progress=False)
    assert {"summary.md", "per_subject.csv", "boxplots.png", "boxplots.svg"} <= set(_files(out))
    before = _files(out)
    with read_only(out, monkeypatch):
        again = run_study(SPEC, models=subjects, out_dir=out, progress=False)
    assert (again.reused, again.recomputed) == (first.recomputed, 0)
    pd.testing.assert_frame_equal(first.summary, again.summary)
    # Nothing written, not even an identical file again: no claim, no temporary file.
    assert _files(out) == before


@pytest.mark.slow
def test_a_read_only_study_folder_with_missing_cells_is_a_named_error(
    tmp_path, monkeypatch, capsys
):
    models, out = tmp_path / "models", tmp_path / "out"
    for subject in (1, 2):
        _save_model(models, subject, seed=subject)
    spec = tmp_path / "store.toml"
    spec.write_text(SPEC_TOML)
    argv = ["study", "run", str(spec), "--models", str(models), "--out", str(out), "--quiet"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 0  # finished: summarised again ...
    with read_only(out, monkeypatch):
        assert main(argv) == 0  # ... also where nothing may be written
    assert "0 recomputed" in capsys.readouterr().out
    lost = next((out / "cells" / "s2").glob("*.json"))
    lost.unlink()
    with read_only(out, monkeypatch) as how:
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert "emg-lens: error: cannot write" in err and str(out / "claims") in err
    assert ("EACCES" if how == "chmod" else "EROFS") in err and "--out" in err
    assert not lost.exists()


def test_a_disk_that_fills_during_a_study_loses_no_cell(tmp_path, monkeypatch, puts):
    subjects = _memory_subjects()
    out = tmp_path / "out"
    CellStore(out, FINGERPRINT)
    with (
        full_disk(out, monkeypatch, budget=1500),
        pytest.raises(StorageError, match=r"cells/s1/\S+\.json.*ENOSPC") as info,
    ):
        run_study(SPEC, models=subjects, out_dir=out, progress=False)
    assert "--out" in str(info.value)
    stored = list((out / "cells").rglob("*.json"))
    assert 0 < len(stored) < len(puts)  # some cells were stored before the disk filled
    assert all(json.loads(p.read_text())["values"] for p in stored)  # whole
    assert list(out.rglob("*.tmp")) == [] and list((out / "claims").glob("*.claim")) == []
    puts.clear()
    again = run_study(SPEC, models=subjects, out_dir=out, progress=False)
    assert (again.reused, again.recomputed) == (len(stored), len(puts))


# ----------------------------------------------------------------------------- recycled pids

needs_proc = pytest.mark.skipif(
    process_start(os.getpid()) is None, reason="process start times are read from /proc (Linux)"
)


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


@needs_proc
def test_a_claim_records_the_process_start_host_and_a_nonce(tmp_path):
    store = CellStore(tmp_path, "{}")
    claim = store.try_claim(1)
    holder = store.holder(1)
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    assert holder["started"] == process_start(os.getpid()) and holder["token"] == claim.token
    store.release(claim)


@needs_proc
def test_a_claim_naming_a_recycled_pid_is_taken_over_at_once(tmp_path, puts):
    subjects = _memory_subjects()
    holder = _sleeper()  # alive, with the claim's pid, but not the process that claimed
    try:
        store = CellStore(tmp_path, FINGERPRINT)
        claim = _write_claim(store, 1, holder.pid, started=f"{process_start(holder.pid)}-earlier")
        # Waiting for the live pid would end in a StudyError after 5 s (it sleeps for 120).
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            result = run_study(SPEC, models=subjects, out_dir=tmp_path, wait_timeout=5)
    finally:
        holder.kill()
        holder.wait()
    assert not [w for w in said if "waiting" in str(w.message)]
    assert result.recomputed == len(puts) == len(result.per_subject)
    assert not claim.exists()


@needs_proc
def test_waiting_on_a_live_claim_is_said_once_then_the_cli_timeout_ends_it(tmp_path, puts, capsys):
    models, out = tmp_path / "models", tmp_path / "out"
    for subject in (1, 2):
        _save_model(models, subject, seed=subject)
    spec = tmp_path / "store.toml"
    spec.write_text(SPEC_TOML)
    holder = _sleeper()
    try:
        store = CellStore(out, FINGERPRINT)
        claim = _write_claim(store, 1, holder.pid, started=process_start(holder.pid))
        argv = ["study", "run", str(spec), "--models", str(models), "--out", str(out)]
        with pytest.warns(UserWarning) as record:
            code = main([*argv, "--quiet", "--wait-timeout", "0.6"])
    finally:
        holder.kill()
        holder.wait()
    said = [str(w.message) for w in record if "waiting" in str(w.message)]
    assert len(said) == 1  # once, not once per poll
    assert "subject 1" in said[0] and str(claim) in said[0] and f"pid {holder.pid}" in said[0]
    assert socket.gethostname() in said[0] and "--wait-timeout" in said[0]
    assert code == 2
    assert "waited 0.6 s" in capsys.readouterr().err
    assert {s for s, _ in puts} == {2}  # the other subject was computed meanwhile


def test_the_cli_default_wait_is_the_runners():
    from emg_lens.cli import study as study_cli
    from emg_lens.studies import store

    assert study_cli.WAIT_TIMEOUT == store.WAIT_TIMEOUT  # the parser imports no torch: a copy
