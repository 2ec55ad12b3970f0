"""One model, one caller (a thread, or an asyncio task) at a time while hooks are involved.

The decision and what counts as *with hooks*: docs/DESIGN.md §2, "Hooks are the model's, one
thread at a time" (without a claim, one thread's ``reset_hooks`` removes another's hooks). A
caller may nest its own calls; a hook added to a hook point directly
(``model.hook_dict[name].add_hook``) bypasses the claim. A ``threading`` lock cannot be
pickled, so the claim, and `FreshLock` for a model's own lock, are made anew, free, in a copy.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from emg_lens.errors import StudyError

ADVICE = (
    "TransformerLens's hooks live on the model's modules, which every thread and task shares, "
    "so while hooks are involved a model serves one at a time: give each thread (or asyncio "
    "task) its own copy (copy.deepcopy(model)), or make these calls one after another"
)


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

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._lock.__exit__(kind, exc, tb)

    def __getstate__(self) -> dict[str, Any]:
        return {}  # a lock cannot be copied, and a copy is held by no one

    def __setstate__(self, state: dict[str, Any]) -> None:
        type(self).__init__(self)  # a ThreadClaim's own too: it shares these two


class ThreadClaim:
    """Who is using a model now: callers running it without hooks (any number), or one caller
    using it with hooks (its calls nested), a caller being a thread, or an asyncio task of one
    (`caller`); see the module docstring. Not copied: a copy of the model (``copy.deepcopy``,
    pickling) starts with a claim of its own, free.

    >>> claim = ThreadClaim()
    >>> with claim.use("the model", "forward", hooked=True):
    ...     with claim.use("the model", "forward", hooked=False):  # nested, same thread
    ...         pass
    >>> refused = []
    >>> def other():
    ...     try:
    ...         with claim.use("the model", "add_hook", hooked=True):
    ...             pass
    ...     except StudyError as exc:
    ...         refused.append(str(exc)[:52])
    >>> with claim.use("the model", "run_with_cache", hooked=True):
    ...     thread = threading.Thread(target=other, name="worker")
    ...     thread.start(); thread.join()
    >>> refused
    ["the model: add_hook in thread 'worker' is refused, s"]
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: Caller | None = None  # the caller using it with hooks
        self._depth = 0  # its calls, nested
        self._plain: dict[Caller, int] = {}  # caller -> its calls without hooks, nested

    __getstate__, __setstate__ = FreshLock.__getstate__, FreshLock.__setstate__

    @contextmanager
    def use(self, model: str, what: str, *, hooked: bool | Callable[[], bool]) -> Iterator[None]:
        """Hold the claim for one call of ``model`` (its name in messages): ``what`` (the
        call, in messages), with hooks where ``hooked`` (or its value, read under the claim's
        lock); a `StudyError` where another caller holds it in a way this call cannot
        share."""
        me = caller()
        with self._lock:
            exclusive = self._owner == me or (hooked() if callable(hooked) else hooked)
            other = self._holder_besides(me, exclusive)
            if other is not None:
                doing = "using it with hooks" if other == self._owner else "running it"
                raise StudyError(
                    f"{model}: {what} in {_named(me)} is refused, since {_named(other)} is "
                    f"{doing}; {ADVICE}"
                )
            if exclusive:
                self._owner, self._depth = me, self._depth + 1
            else:
                self._plain[me] = self._plain.get(me, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                if exclusive:
                    self._depth -= 1
                    if not self._depth:
                        self._owner = None
                elif self._plain[me] > 1:
                    self._plain[me] -= 1
                else:
                    del self._plain[me]

    def close_here(self, model: str, opener: Caller) -> None:
        """Let this caller close a ``hooks()`` context that ``opener`` opened (and so holds
        the claim for): it takes the claim over, to remove the context's hooks as it closes.
        Refused by name (`StudyError`) while ``opener`` is inside another call or
        context of the model, whose hooks would go in its middle."""
        me = caller()
        with self._lock:
            if me == opener:
                return
            if self._owner == opener and self._depth == 1:
                self._owner = me
                return
        raise StudyError(
            f"{model}: a hooks() context opened in {_named(opener)} is closed in {_named(me)} "
            f"while {_named(opener)} is in another call or context of it: its hooks stay until "
            "model.reset_hooks(); close the context where it was opened, or once that call is done"
        )

    def _holder_besides(self, me: Caller, exclusive: bool) -> Caller | None:
        """Another caller whose use this one cannot share: one using the model with hooks,
        or, for a call with hooks, one running it at all."""
        if self._owner is not None and self._owner != me:
            return self._owner
        if exclusive:
            return next((other for other in self._plain if other != me), None)
        return None


Caller = tuple[threading.Thread, "asyncio.Task[Any] | None"]


def caller() -> Caller:
    """Who is calling: this thread, and the asyncio task it is running (None outside one).
    Two tasks of one event loop take turns in one thread, so each is a caller of its own.

    >>> caller() == (threading.current_thread(), None)
    True
    """
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no event loop running in this thread
        task = None
    return threading.current_thread(), task


def _named(who: Caller) -> str:
    thread, task = who
    named = f"thread {thread.name!r}"
    return named if task is None else f"task {task.get_name()!r} of {named}"
