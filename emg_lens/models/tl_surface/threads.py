"""Locks a model holds that its copies get anew.

A ``threading`` lock cannot be pickled, so a model holding one could not be copied
(``copy.deepcopy``) nor saved whole (``torch.save``): every attached model failed with "cannot
pickle '_thread.RLock'" (issue 57). `FreshLock` is a lock that a copy of its holder gets anew,
free (a copy is used by no one yet).
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["FreshLock"]


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
