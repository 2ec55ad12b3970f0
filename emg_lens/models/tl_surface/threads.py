"""One model, one thread at a time while hooks are involved.

TransformerLens's hooks are state on a model's modules (its hook points' hook lists, the
``context_level`` of ``hooks()``), shared by every thread: a hook one thread adds fires in any
thread's forward, and ``reset_hooks`` at the end of one thread's ``hooks()`` removes another's.
Two threads using one model with hooks mixed them: a plain call ran the other thread's patching
or caching hooks (a wrong result), a ``run_with_cache`` lost its caching hooks to the other
thread's reset (a bare ``KeyError``).

The decision, for every tier alike (native, converted and attached models): hook state stays
the model's, as in TransformerLens (so single-threaded use is TransformerLens's, unchanged), and
a model that one thread uses with hooks refuses another thread's call by name
(`ModelInUseError`: the model, both threads, and what to do, a copy per thread, which
``copy.deepcopy`` makes). *With hooks* means a ``hooks()`` context (``run_with_hooks``,
``run_with_cache``), a change to the hooks or the hook flags (``add_hook``, ``reset_hooks``,
``set_use_attn_result`` ...), or a forward run while a hook is attached. Calls without hooks (a
plain forward, edge masks included) run in any number of threads at once, and a thread may
nest its own calls (a forward inside its ``hooks()``, a hook calling the model).

A hook added to a hook point directly (``model.hook_dict[name].add_hook``, torch's
``register_forward_hook``) bypasses the model, and so this claim.

A ``threading`` lock cannot be pickled, so a model holding one could not be copied
(``copy.deepcopy``) nor saved whole (``torch.save``; every attached model failed so, issue 57):
the claim, and `FreshLock` for a lock a model needs of its own (an attached model's, around
probing a new input size), are made anew, free, in a copy (a copy is used by no one yet).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from emg_lens.errors import ModelInUseError

__all__ = ["FreshLock", "ThreadClaim"]

ADVICE = (
    "TransformerLens's hooks live on the model's modules, which every thread shares, so while "
    "hooks are involved a model serves one thread at a time: give each thread its own copy "
    "(copy.deepcopy(model)), or make these calls from one thread"
)


class ThreadClaim:
    """Who is using a model now: threads running calls without hooks (any number), or one
    thread using it with hooks (its calls nested); see the module docstring. Not copied: a
    copy of the model (``copy.deepcopy``, pickling) starts with a claim of its own, free.

    >>> claim = ThreadClaim()
    >>> with claim.use("the model", "forward", hooked=True):
    ...     with claim.use("the model", "forward", hooked=False):  # nested, same thread
    ...         pass
    >>> refused = []
    >>> def other():
    ...     try:
    ...         with claim.use("the model", "add_hook", hooked=True):
    ...             pass
    ...     except ModelInUseError as exc:
    ...         refused.append(str(exc)[:52])
    >>> with claim.use("the model", "run_with_cache", hooked=True):
    ...     thread = threading.Thread(target=other, name="worker")
    ...     thread.start(); thread.join()
    >>> refused
    ["the model: add_hook in thread 'worker' is refused, s"]
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: threading.Thread | None = None  # the thread using it with hooks
        self._depth = 0  # its calls, nested
        self._plain: dict[int, tuple[threading.Thread, int]] = {}  # ident -> (thread, calls)

    def __getstate__(self) -> dict[str, Any]:
        return {}  # a lock cannot be copied, and a copy is used by no one yet

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()

    @contextmanager
    def use(self, model: str, what: str, *, hooked: bool | Callable[[], bool]) -> Iterator[None]:
        """Hold the claim for one call of ``model`` (its name in messages): ``what`` (the
        call, in messages), with hooks where ``hooked`` (or its value, read under the claim's
        lock); a `ModelInUseError` where another thread holds it in a way this call cannot
        share."""
        me = threading.current_thread()
        with self._lock:
            exclusive = self._owner is me or (hooked() if callable(hooked) else hooked)
            other = self._holder_besides(me, exclusive)
            if other is not None:
                doing = "using it with hooks" if other is self._owner else "running it"
                raise ModelInUseError(
                    f"{model}: {what} in thread {me.name!r} is refused, since thread "
                    f"{other.name!r} is {doing}; {ADVICE}"
                )
            if exclusive:
                self._owner, self._depth = me, self._depth + 1
            else:
                self._plain[me.ident] = (me, self._plain.get(me.ident, (me, 0))[1] + 1)
        try:
            yield
        finally:
            with self._lock:
                if exclusive:
                    self._depth -= 1
                    if not self._depth:
                        self._owner = None
                else:
                    count = self._plain[me.ident][1] - 1
                    if count:
                        self._plain[me.ident] = (me, count)
                    else:
                        del self._plain[me.ident]

    def _holder_besides(self, me: threading.Thread, exclusive: bool) -> threading.Thread | None:
        """Another thread whose use this one cannot share: one using the model with hooks, or,
        for a call with hooks, one running it at all."""
        if self._owner is not None and self._owner is not me:
            return self._owner
        if exclusive:
            for ident, (thread, _) in self._plain.items():
                if ident != me.ident:
                    return thread
        return None


class FreshLock:
    """A re-entrant lock (``with lock:``) that a copy of its holder (``copy.deepcopy``,
    pickling) gets anew, free.

    >>> import copy
    >>> lock = FreshLock()
    >>> with lock:
    ...     twin = copy.deepcopy(lock)
    ...     twin._lock.acquire(blocking=False)  # the copy is not held
    True
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()

    def __enter__(self) -> bool:
        return self._lock.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._lock.__exit__(*exc)

    def __getstate__(self) -> dict[str, Any]:
        return {}  # a lock cannot be copied, and a copy is held by no one

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()
