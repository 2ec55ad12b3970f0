"""Small scikit-learn fits on one BLAS thread.

emg_lens fits many small linear models with scikit-learn: the feature baseline of every
training and study (`emg_lens.train.baseline`: a logistic regression or a ridge on channel
features) and the probes of `emg_lens.inspect.probes` (hundreds of L-BFGS fits on token
vectors). Their matrices are small, and OpenBLAS's threads, spinning beside torch's OpenMP
threads, cost far more than they share. Measured on two idle cores after a torch computation:
a demo subject's feature baseline 2.0 s (3.7 CPU-s) with two BLAS threads, 0.2 s with one;
the interaction probes of notebook 08 173 s (344 CPU-s) against 7.5 s. With one thread their
numbers are also the same whatever the machine's core count. Where many fits are to share the
cores, processes share them (`probe_tokens`' ``n_jobs``)."""

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
