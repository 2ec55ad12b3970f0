"""Data-parallel training under ``torchrun``, and the same code on a single process.

`distributed_run` reads ``torchrun``'s ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``, joins the
process group (gloo on the CPU, nccl on CUDA) and yields a `DistributedRun` that wraps the model
in `DistributedDataParallel`, shards every epoch with a seeded `DistributedSampler` and tells
rank 0 (the one that prints and saves) apart; without them, a one-process run. Studies need no
process group: `DistributedRun.shard` gives each rank its share of the subjects, and the ranks
meet in the study's cell store. ``batch_size`` is per process."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from emg_lens.errors import ConfigError, check_int, checked


@runtime_checkable
class _Ordered(Protocol):  # what sorted needs (typeshed's SupportsRichComparison is mypy's)
    def __lt__(self, other: Any, /) -> bool: ...


T = TypeVar("T", bound=_Ordered)


@checked
@dataclass(frozen=True)
class DistributedRun:
    """Where this process stands in a (possibly one-process) data-parallel run.

    >>> run = DistributedRun()
    >>> run.is_main, run.is_distributed, run.mean(2.5)
    (True, False, 2.5)
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # "gloo" or "nccl" when distributed

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that shows progress and writes checkpoints."""
        return self.rank == 0

    def shard(self, items: Iterable[T]) -> list[T]:
        """This process's share of ``items``: sorted, then every ``world_size``-th from
        ``rank`` (disjoint, covering all items, whatever order they were given in).

        >>> DistributedRun(rank=1, world_size=2).shard([3, 1, 4, 2])
        [2, 4]
        """
        return sorted(items)[self.rank :: self.world_size]

    def wrap(self, model: nn.Module) -> nn.Module:
        """``DistributedDataParallel(model)`` when distributed (moved to this process's GPU for
        nccl); the model itself otherwise. DDP copies rank 0's weights to every replica."""
        if not self.is_distributed:
            return model
        if self.backend == "nccl":
            device = torch.device("cuda", self.local_rank)
            return DistributedDataParallel(model.to(device), device_ids=[self.local_rank])
        return DistributedDataParallel(model)

    def loader(
        self, dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int = 0
    ) -> DataLoader:
        """Batches of this process's shard of ``dataset``; call `set_epoch` on
        ``loader.sampler`` every epoch so each epoch is shuffled anew (and identically on every
        run with the same seed)."""
        sampler: DistributedSampler = DistributedSampler(
            dataset, num_replicas=self.world_size, rank=self.rank, shuffle=shuffle, seed=seed
        )
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler)

    def no_sync(self, model: nn.Module, skip: bool) -> contextlib.AbstractContextManager:
        """Skip DDP's gradient all-reduce (``skip=True``) on gradient-accumulation micro-batches
        that do not end in an optimiser step; a no-op on one process."""
        if skip and isinstance(model, DistributedDataParallel):
            return model.no_sync()
        return contextlib.nullcontext()

    def mean(self, value: float) -> float:
        """The average of ``value`` over all processes (itself on one process)."""
        if not self.is_distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self._device())
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world_size

    def _device(self) -> torch.device:
        return (
            torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")
        )


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a `DistributedDataParallel` wrapper (or the model itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def process_rank() -> int:
    """This process's rank: in the open process group, else as torchrun set it, else 0.

    >>> process_rank()
    0
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return _check_env_int("RANK", 0)


def is_main_process() -> bool:
    """True on rank 0 (and on a single process): the process that should print."""
    return process_rank() == 0


def _check_env_int(
    name: str, default: int | None, minimum: int = 0, maximum: int | None = None
) -> int:
    """The environment variable ``name`` as an int in ``minimum..maximum``, or ``default``
    where it is unset (None: refused)."""
    raw: Any = os.environ.get(name)
    if raw is None and default is not None:
        return default
    with contextlib.suppress(TypeError, ValueError):
        raw = int(raw)
    what = f"environment variable {name} (torchrun sets it)"
    return check_int(raw, what, minimum, maximum, ConfigError)


def torchrun_process() -> DistributedRun:
    """Where this process stands among those ``torchrun`` started (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``), without joining a process group (``backend`` None): a one-process run
    when ``WORLD_SIZE`` is unset or 1. A rank outside ``[0, WORLD_SIZE)`` is a `ConfigError`.

    >>> torchrun_process().world_size
    1
    """
    if (world_size := _check_env_int("WORLD_SIZE", 1, 1)) == 1:
        return DistributedRun()
    rank = _check_env_int("RANK", None, 0, world_size - 1)
    return DistributedRun(rank, world_size, _check_env_int("LOCAL_RANK", 0))


@contextlib.contextmanager
@checked
def distributed_run(device: str | torch.device | None = "cpu") -> Iterator[DistributedRun]:
    """The `DistributedRun` of this process: distributed when ``WORLD_SIZE`` > 1 (torchrun), or
    when a process group is already initialised (which is then reused and left open);
    single-process otherwise. A group this function opens is closed when the block ends.
    ``device``: where the model lives (CUDA selects nccl, anything else gloo).

    >>> with distributed_run() as run:
    ...     run.world_size, run.rank
    (1, 0)
    """
    if dist.is_available() and dist.is_initialized():
        yield DistributedRun(
            dist.get_rank(),
            dist.get_world_size(),
            _check_env_int("LOCAL_RANK", 0),
            dist.get_backend(),
        )
        return
    launched = torchrun_process()
    if not launched.is_distributed:
        yield launched
        return
    rank, world_size, local_rank = launched.rank, launched.world_size, launched.local_rank
    backend = "nccl" if torch.device(device or "cpu").type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)  # so "cuda" means this process's GPU
    dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    try:
        yield DistributedRun(rank, world_size, local_rank, backend)
    finally:
        dist.destroy_process_group()
