"""The hooks `attach` places on the user's own modules act only for the forward that placed
them (issue 47, section 3 item 4). The residual-stream hooks and the module tracker sit on the
user's modules during a hooked forward; another thread running the same modules meanwhile (the
plain original, or another attachment of the same network) used to be patched too (80 of 300
racing plain calls wrong, 9-25 of 300 with two attachments). Racing threads now give what each
gives alone, and the interception (a torch function mode) stays in its own thread."""

from __future__ import annotations

import threading

import pytest
import torch

from emg_lens.models import attach
from emg_lens.models.attached.intercept import Scope
from tests.unit.models.attached_models import LAYOUT, N_CHANNELS, N_SAMPLES, build

CALLS = 150  # per thread and run: a few seconds in all


def _shift(resid, hook):
    return resid + 1.0


def _halve(resid, hook):
    return resid * 0.5


@pytest.fixture(scope="module")
def setting():
    """One network; attachment ``a`` (the softmax found by itself, residual hooks and a cut),
    attachment ``b`` (the attention modules named: its module tracker's hooks on them too); each
    kind of forward with what it gives single-threaded."""
    net = build("qkv")
    a = attach(net, layout=LAYOUT, n_samples=N_SAMPLES)
    b = attach(net, layout=LAYOUT, n_samples=N_SAMPLES, attention="blocks.*.attn")
    x = a.example_input(5)
    cut = torch.zeros(N_CHANNELS, N_CHANNELS, dtype=torch.bool)
    cut[:, 0] = True  # no token reads token 0
    runs = {
        "plain": lambda: net(x),
        "a": lambda: a.run_with_hooks(
            x, fwd_hooks=[("blocks.0.hook_resid_post", _shift)], edge_masks={1: cut}
        ),
        "b": lambda: b.run_with_hooks(x, fwd_hooks=[("blocks.1.hook_resid_pre", _halve)]),
    }
    with torch.no_grad():
        alone = {kind: run() for kind, run in runs.items()}
    assert not torch.equal(alone["a"], alone["plain"])  # each patches the network
    assert not torch.equal(alone["b"], alone["plain"])
    return net, runs, alone


def _race(runs, alone, kinds):
    wrong = dict.fromkeys(kinds, 0)
    errors = []
    start = threading.Barrier(len(kinds))

    def loop(kind):
        try:
            start.wait()
            for _ in range(CALLS):
                with torch.no_grad():
                    wrong[kind] += not torch.equal(runs[kind](), alone[kind])
        except Exception as exc:  # reported below, with the thread's kind
            errors.append((kind, exc))

    threads = [threading.Thread(target=loop, args=(kind,)) for kind in kinds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return wrong, errors


@pytest.mark.parametrize("kinds", [("a", "plain"), ("a", "b"), ("a", "b", "plain")])
def test_racing_threads_give_what_each_gives_alone(setting, kinds):
    net, runs, alone = setting
    wrong, errors = _race(runs, alone, kinds)
    assert not errors and wrong == dict.fromkeys(kinds, 0), (wrong, errors)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in net.modules())


def test_a_forward_paused_inside_its_hooks_patches_no_other_thread(setting):
    """Deterministic: thread 1's hooked forward waits inside ``hook_resid_pre`` (its residual
    hooks on the user's block and its torch function mode in place, a cut pending) while
    thread 2 runs the plain network and the other attachment."""
    net, runs, alone = setting
    a = attach(net, layout=LAYOUT, n_samples=N_SAMPLES)
    x = a.example_input(5)
    inside, done = threading.Event(), threading.Event()
    worker = threading.current_thread()

    def wait_here(resid, hook):
        if threading.current_thread() is not worker:
            inside.set()
            assert done.wait(timeout=30)
        return resid + 1.0

    cut = torch.zeros(N_CHANNELS, N_CHANNELS, dtype=torch.bool)
    cut[:, 0] = True
    out = {}

    def hooked():
        with torch.no_grad():
            out["a"] = a.run_with_hooks(
                x, fwd_hooks=[("blocks.0.hook_resid_pre", wait_here)], edge_masks={0: cut}
            )

    thread = threading.Thread(target=hooked)
    thread.start()
    try:
        assert inside.wait(timeout=30)
        assert any(m._forward_pre_hooks for m in net.modules())  # its hooks are in place
        with torch.no_grad():
            plain, other = runs["plain"](), runs["b"]()
    finally:
        done.set()
        thread.join()
    assert torch.equal(plain, alone["plain"]) and torch.equal(other, alone["b"])
    with torch.no_grad():
        assert torch.equal(
            out["a"],
            a.run_with_hooks(
                x, fwd_hooks=[("blocks.0.hook_resid_pre", _shift)], edge_masks={0: cut}
            ),
        )
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in net.modules())


def test_a_scope_opened_inside_another_shadows_it():
    """A forward run inside another's hook (another attachment's, in the same thread) passes
    through the outer forward's hooks; they act again once it returns."""
    outer, inner, seen = Scope(), Scope(), []
    hook = outer.guard(lambda tag: seen.append(tag))
    with outer:
        hook("outer")
        with inner:
            hook("inner")
        hook("outer again")
    hook("outside")
    assert seen == ["outer", "outer again"]
