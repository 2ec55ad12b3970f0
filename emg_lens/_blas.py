"""Small scikit-learn fits (the feature baseline, the probes) on one BLAS thread: their
matrices are small, and OpenBLAS's threads beside torch's cost far more than they share (the
measurements: docs/ARCHITECTURE.md)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """numpy's and scipy's BLAS (what scikit-learn's linear models compute with) on one thread
    inside the block; the limits before are restored after it.

    >>> from threadpoolctl import threadpool_info
    >>> with one_blas_thread():
    ...     {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}
    {1}
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield
