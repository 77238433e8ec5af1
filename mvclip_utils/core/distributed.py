"""Data-parallel training across processes (`torchrun`), for Omniview-Tuning on several GPUs.

One process per GPU (or per CPU process group, gloo, as the tests run it). Every rank draws
the same *global* batch and encodes its own contiguous slice; the slices' embeddings are
gathered so that each rank computes the loss of the whole global batch, exactly as one
process would, differentiated only through its own slice. DistributedDataParallel then
*sums* the ranks' gradients (`SUM_GRADIENTS`), which is the one-process gradient of that
loss: the same global batch trains the same adapters on 1 or N processes.

Without torchrun's environment, `Ranks.single()` makes every helper here the identity, so
the notebook path and the torchrun path are one code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def _edges(n: int, parts: int) -> np.ndarray:
    return np.linspace(0, n, parts + 1).round().astype(int)


@dataclass(frozen=True)
class Ranks:
    """This process's place among `world_size` data-parallel processes, and its device."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @classmethod
    def single(cls, device: torch.device | str = "cpu") -> "Ranks":
        return cls(0, 1, torch.device(device))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def check_divides(self, n: int, what: str, key: str) -> None:
        """Global batches are split evenly across ranks; say which setting to change when they cannot be."""
        if n % self.world_size:
            raise ValueError(f"{what} ({key} = {n}) is not divisible by the {self.world_size} processes: "
                             f"set {key} to a multiple of {self.world_size} or launch a number of processes "
                             f"that divides it")

    def bounds(self, n: int) -> tuple[int, int]:
        """[start, stop) of this rank's contiguous share of n items (shares differ by at most one)."""
        edges = _edges(n, self.world_size)
        return int(edges[self.rank]), int(edges[self.rank + 1])

    def gather(self, local: torch.Tensor) -> torch.Tensor:
        """Every rank's equally sized `local`, concatenated in rank order (no gradient)."""
        if not self.distributed:
            return local
        parts = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(parts, local.detach().contiguous())
        return torch.cat(parts)

    def gather_with_local_grad(self, local: torch.Tensor) -> torch.Tensor:
        """As `gather`, with this rank's own slice the autograd-carrying `local`: the global batch's
        loss differentiates through this rank's slice only (the other ranks take care of theirs)."""
        if not self.distributed:
            return local
        parts = list(self.gather(local).split(len(local)))
        parts[self.rank] = local
        return torch.cat(parts)

    def gather_shares(self, local: torch.Tensor, n: int) -> torch.Tensor:
        """The n items split by `bounds(n)` (shares may differ by one), gathered in order (no gradient)."""
        if not self.distributed:
            return local
        sizes = np.diff(_edges(n, self.world_size))
        padded = local.new_zeros((int(sizes.max()), *local.shape[1:]))
        padded[: len(local)] = local
        parts = self.gather(padded).split(int(sizes.max()))
        return torch.cat([part[:size] for part, size in zip(parts, sizes)])


class RankBatches:
    """A batch sampler's global batches cut to this rank's contiguous slice (the global batch is
    object-major, so a slice of whole objects keeps each object's views together)."""

    def __init__(self, batch_sampler, ranks: Ranks):
        self.batch_sampler, self.ranks = batch_sampler, ranks

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self):
        for batch in self.batch_sampler:
            size = len(batch) // self.ranks.world_size
            yield batch[self.ranks.rank * size: (self.ranks.rank + 1) * size]


def _sum_gradients(process_group, bucket):
    """DDP communication hook: all-reduce *sum* (DDP's default averages), see the module docstring."""
    return (dist.all_reduce(bucket.buffer(), group=process_group, async_op=True)
            .get_future().then(lambda future: future.value()[0]))


def data_parallel(module: torch.nn.Module, ranks: Ranks) -> torch.nn.Module:
    """`module` wrapped in DistributedDataParallel that sums gradients over ranks; unchanged on one process."""
    if not ranks.distributed:
        return module

    wrapped = DistributedDataParallel(module, device_ids=[ranks.device] if ranks.device.type == "cuda" else None,
                                      broadcast_buffers=False)
    wrapped.register_comm_hook(None, _sum_gradients)
    return wrapped


def from_environment(device: str = "auto") -> Ranks:
    """The process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK in the environment): NCCL on
    CUDA (one GPU per local rank), gloo on the CPU. Without torchrun, one process on `device`."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    chosen = resolve_device(device)
    if world_size == 1:
        return Ranks.single(chosen)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if chosen.type == "cuda":
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo", rank=rank, world_size=world_size)
    return Ranks(rank, world_size, chosen)


def shutdown(ranks: Ranks) -> None:
    if ranks.distributed and dist.is_initialized():
        dist.destroy_process_group()


def resolve_device(setting: str = "auto") -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)
