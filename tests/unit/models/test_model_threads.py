"""One model used by several threads (issue 57, item 5): TransformerLens's hooks are state on the
model's modules, shared by every thread, so a model used with hooks serves one thread at a time
and refuses another thread's call by name (`StudyError`); calls without hooks run side by
side (`emg_lens.models.tl_surface.threads`). Before, one attached model shared by two threads
gave plain calls wrong in 24-116 of 120 racing calls and ``run_with_cache`` a bare
``KeyError``. Native, converted and attached models alike: every racing call gives what it gives
alone, or the named refusal."""

from __future__ import annotations

import copy
import functools
import threading

import pytest
import torch

from emg_lens.errors import StudyError
from tests.unit.models import table

CALLS = 60  # per thread and kind
ROWS = ["isonet", "torch_pre_ln", "attached_qkv", "attached_mha", "example_patch"]
PATTERN = "blocks.0.attn.hook_pattern"


def _halve(pattern, hook):
    return pattern * 0.5


def _runs(model, x):
    """Each kind of call, returning what it gives (tensors, compared exactly)."""
    n = table.layout_of(model, 0)
    cut = torch.zeros(n.n_queries, n.n_tokens, dtype=torch.bool)
    cut[:, 0] = True  # no query reads token 0

    def cached():
        logits, cache = model.run_with_cache(x, names_filter=PATTERN)
        return logits, cache[PATTERN]

    return {
        "plain": lambda: model(x),
        "masked": lambda: model(x, edge_masks={0: cut}),
        "patched": lambda: model.run_with_hooks(x, fwd_hooks=[(PATTERN, _halve)]),
        "cached": cached,
    }


def _same(a, b) -> bool:
    if isinstance(a, tuple):
        return all(torch.equal(one, other) for one, other in zip(a, b, strict=True))
    return torch.equal(a, b)


def _race(runs, alone, kinds):
    """Each kind in a thread of its own, started together; per kind, the calls that gave
    another result than alone, and the calls refused; any other exception, with its kind."""
    wrong, refused, errors = dict.fromkeys(kinds, 0), dict.fromkeys(kinds, 0), []
    start = threading.Barrier(len(kinds))

    def loop(kind):
        try:
            start.wait()
            for _ in range(CALLS):
                try:
                    with torch.no_grad():
                        wrong[kind] += not _same(runs[kind](), alone[kind])
                except StudyError:
                    refused[kind] += 1
        except Exception as exc:  # reported below, with the thread's kind
            errors.append((kind, repr(exc)))

    threads = [threading.Thread(target=loop, args=(kind,), name=kind) for kind in kinds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return wrong, refused, errors


@pytest.mark.parametrize("name", ROWS)
@pytest.mark.parametrize(
    "kinds", [("patched", "plain"), ("cached", "cached"), ("cached", "patched", "masked")]
)
def test_racing_threads_give_the_right_result_or_a_named_refusal(name, kinds):
    model = table.make(name)
    runs = _runs(model, model.example_input(3))
    with torch.no_grad():
        alone = {kind: runs[kind]() for kind in runs}
    assert not _same(alone["patched"], alone["plain"])  # the hook changes the output
    wrong, refused, errors = _race(runs, alone, kinds)
    assert not errors and not any(wrong.values()), (wrong, refused, errors)
    assert not model._hooks_attached()  # every context closed, every hook removed
    with torch.no_grad():
        assert all(_same(runs[kind](), alone[kind]) for kind in runs)  # free again


@pytest.mark.parametrize("name", ["isonet", "attached_qkv"])
def test_calls_without_hooks_share_the_model(name):
    """Plain and masked calls of several threads at once are never refused."""
    model = table.make(name)
    runs = _runs(model, model.example_input(3))
    with torch.no_grad():
        alone = {kind: runs[kind]() for kind in ("plain", "masked")}
    wrong, refused, errors = _race(runs, alone, ("plain", "masked", "plain"))
    assert not errors and not any(wrong.values()) and not any(refused.values())


def _paused_in(model, where: torch.nn.Module, action):
    """Run ``action`` in a thread that waits inside ``where``'s forward (a torch forward hook,
    which the model does not see as one of its hooks) until the returned ``release`` is
    called; ``result`` holds what it returned."""
    inside, go, result = threading.Event(), threading.Event(), {}
    worker = {}

    def wait(module, args, output):
        if threading.current_thread() is worker.get("thread"):
            inside.set()
            assert go.wait(timeout=30)

    handle = where.register_forward_hook(wait)

    def target():
        with torch.no_grad():
            result["out"] = action()

    worker["thread"] = thread = threading.Thread(target=target, name="holder")
    thread.start()
    assert inside.wait(timeout=30)

    def release():
        go.set()
        thread.join()
        handle.remove()

    return result, release


@pytest.mark.parametrize("name", ["isonet", "attached_qkv"])
def test_a_model_used_with_hooks_refuses_another_thread_by_name(name):
    """Deterministic: one thread waits inside a hooked forward; another thread's plain call,
    cache and hook are refused, naming the model, both threads and the remedy, and succeed
    once the first is done; a copy serves the other thread meanwhile."""
    model = table.make(name)
    x = model.example_input(2)
    runs = _runs(model, x)
    with torch.no_grad():
        alone = {kind: runs[kind]() for kind in runs}
    spare = copy.deepcopy(model)
    inner = model.model if hasattr(model, "model") else model.blocks[0]
    result, release = _paused_in(model, inner, runs["patched"])
    try:
        for kind in ("plain", "cached", "patched"):
            with pytest.raises(StudyError) as refusal:
                runs[kind]()
            message = str(refusal.value)
            assert model.name_in_messages() in message and "'holder'" in message
            assert "using it with hooks" in message and "copy.deepcopy(model)" in message
        with pytest.raises(StudyError, match="add_hook"):
            model.add_hook(PATTERN, _halve)
        with torch.no_grad():
            assert torch.equal(spare(x), alone["plain"])  # a copy is free
    finally:
        release()
    assert torch.equal(result["out"], alone["patched"])
    with torch.no_grad():
        assert all(_same(runs[kind](), alone[kind]) for kind in runs)


@pytest.mark.parametrize("name", ["isonet", "attached_qkv"])
def test_a_plain_call_running_refuses_hooks_from_another_thread(name):
    """While one thread runs a plain forward, another may run one too, but not add hooks (they
    would fire in the middle of the first)."""
    model = table.make(name)
    x = model.example_input(2)
    runs = _runs(model, x)
    with torch.no_grad():
        alone = {kind: runs[kind]() for kind in runs}
    inner = model.model if hasattr(model, "model") else model.blocks[0]
    result, release = _paused_in(model, inner, runs["plain"])
    try:
        with torch.no_grad():
            assert torch.equal(runs["masked"](), alone["masked"])
        with pytest.raises(StudyError, match="'holder' is running it"):
            runs["cached"]()
        with pytest.raises(StudyError, match="reset_hooks"):
            model.reset_hooks()
    finally:
        release()
    assert torch.equal(result["out"], alone["plain"])
    assert _same(runs["cached"](), alone["cached"])


# ---------------------------------------------------------------- issue 77, item 4: the gaps


def _halve_under(lock, pattern, hook):
    with lock:
        return pattern * 0.5


@pytest.mark.parametrize("name", ["isonet", "attached_qkv"])
def test_a_copy_made_while_hooks_are_attached_carries_none_of_them(name):
    """The refusal's advice, ``copy.deepcopy(model)``, made while another thread's or one's own
    ``hooks()`` context is open: the copy runs as the plain model (it kept those hooks for good);
    a permanent hook travels."""
    model = table.make(name)
    x = model.example_input(2)
    runs = _runs(model, x)
    with torch.no_grad():
        plain = runs["plain"]()
    inner = model.model if hasattr(model, "model") else model.blocks[0]
    result, release = _paused_in(model, inner, runs["patched"])
    try:
        theirs = copy.deepcopy(model)  # another thread's hooks attached
    finally:
        release()
    uncopiable = functools.partial(_halve_under, threading.Lock())
    with model.hooks(fwd_hooks=[(PATTERN, uncopiable)]):
        mine = copy.deepcopy(model)  # one's own, whose hook holds a lock (not copied)
    for twin in (theirs, mine):
        assert not twin._hooks_attached()
        with torch.no_grad():
            assert torch.equal(twin(x), plain)
    model.add_hook(PATTERN, _halve, is_permanent=True)
    with model.hooks(fwd_hooks=[("hook_input", lambda t, hook: 2 * t)]):
        kept = copy.deepcopy(model)
    with torch.no_grad():
        assert torch.equal(kept(x), result["out"])  # the permanent hook only


@pytest.mark.parametrize("name", ["isonet", "attached_qkv"])
def test_forward_called_directly_takes_the_same_claim(name):
    """``model.forward(x)`` while another thread uses the model with hooks is refused by name
    (it ran that thread's hooks); alone it gives what ``model(x)`` gives."""
    model = table.make(name)
    x = model.example_input(2)
    runs = _runs(model, x)
    with torch.no_grad():
        plain = runs["plain"]()
        assert torch.equal(model.forward(x), plain)
    inner = model.model if hasattr(model, "model") else model.blocks[0]
    _, release = _paused_in(model, inner, runs["patched"])
    try:
        refused = r"forward in thread .* 'holder' is using it"
        with pytest.raises(StudyError, match=refused), torch.no_grad():
            model.forward(x)
    finally:
        release()


def test_two_asyncio_tasks_do_not_share_one_tasks_hooks():
    """Task 1 opens ``hooks()`` and awaits before its run; task 2's call meanwhile (same
    thread) is refused by name, naming both tasks (it gave task 1's patched output)."""
    import asyncio

    model = table.make("isonet")
    x = model.example_input(2)
    with torch.no_grad():
        plain, patched = model(x), model.run_with_hooks(x, fwd_hooks=[(PATTERN, _halve)])

    async def both():
        inside, done = asyncio.Event(), asyncio.Event()

        async def first():
            with model.hooks(fwd_hooks=[(PATTERN, _halve)]):
                inside.set()
                await done.wait()
                return model(x)

        async def second():
            await inside.wait()
            try:
                return model(x)
            finally:
                done.set()

        tasks = [asyncio.create_task(f(), name=n) for f, n in ((first, "one"), (second, "two"))]
        return await asyncio.gather(*tasks, return_exceptions=True)

    with torch.no_grad():
        first, second = asyncio.run(both())
    assert torch.equal(first, patched)
    assert isinstance(second, StudyError), second
    assert "task 'two' of thread" in str(second) and "since task 'one'" in str(second)
    with torch.no_grad():
        assert torch.equal(model(x), plain)  # task 1's hooks gone with its context


def test_hooks_closed_in_another_thread_removes_its_hooks():
    """A ``hooks()`` context handed to another thread and closed there removes its hooks and
    frees the model (they stayed, and ran in a third thread's call); closed while its opener
    is inside a call of the model, it is refused by name."""
    model = table.make("isonet")
    x = model.example_input(2)
    with torch.no_grad():
        plain = model(x)
    context = model.hooks(fwd_hooks=[(PATTERN, _halve)])
    context.__enter__()
    errors = []

    def close():
        try:
            context.__exit__(None, None, None)
        except Exception as exc:  # reported below
            errors.append(exc)

    closer = threading.Thread(target=close)
    closer.start()
    closer.join()
    assert not errors and not model._hooks_attached()
    out = {}
    third = threading.Thread(target=lambda: out.setdefault("x", model(x).detach()))
    third.start()
    third.join()
    assert torch.equal(out["x"], plain)

    opened = model.hooks(fwd_hooks=[(PATTERN, _halve)])
    _, release = _paused_in(model, model.blocks[0], lambda: (opened.__enter__(), model(x))[1])
    try:
        with pytest.raises(StudyError, match="opened in thread 'holder' is closed in"):
            opened.__exit__(None, None, None)
    finally:
        release()
    model.reset_hooks()


def test_eight_threads_of_plain_calls_share_the_model():
    """8 threads x 10 calls without hooks, ``model(x)`` and ``model.forward(x)``, at once:
    none refused, each what it gives alone."""
    model = table.make("isonet")
    x = model.example_input(2)
    with torch.no_grad():
        alone = model(x)
    start, wrong, errors = threading.Barrier(8), [], []

    def loop(i):
        try:
            start.wait()
            with torch.no_grad():
                for _ in range(10):
                    wrong.append(not torch.equal((model if i % 2 else model.forward)(x), alone))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(wrong) == 80 and not any(wrong)
