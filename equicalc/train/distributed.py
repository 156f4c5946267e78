"""Training across processes with PyTorch's DistributedDataParallel.

``torchrun --nproc_per_node N -m equicalc train config.yaml`` starts N processes;
each reads the rank and world size torchrun puts in its environment and joins
one process group (gloo on CPU, NCCL on CUDA). Rank 0 computes what is computed
once (the run folder's state, the training statistics) and hands it to the
others; every rank evaluates its share of each batch, and DDP averages the
gradients, so N processes with ``training.batch_size`` b take the same steps as
one process with batch N·b. Only rank 0 writes files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, List

import numpy as np
import torch

__all__ = ["Ranks", "join", "shard"]


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    joined: bool = False  # whether ``join`` started the process group (and ``leave`` should end it)

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def from_main(self, compute: Callable):
        """``compute()`` on rank 0, its result on every rank; an exception there is raised on every rank."""
        if not self.distributed:
            return compute()
        box = [None]
        if self.main:
            try:
                box[0] = ("ok", compute())
            except Exception as exc:  # handed to every rank, raised everywhere
                box[0] = ("error", exc)
        torch.distributed.broadcast_object_list(box, src=0)
        status, value = box[0]
        if status == "error":
            raise value
        return value

    def gather(self, obj) -> List:
        """``obj`` of every rank, in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        out = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def total(self, value: torch.Tensor) -> torch.Tensor:
        """Sum over ranks (a copy; the input is left as it is)."""
        value = value.detach().clone()
        if self.distributed:
            torch.distributed.all_reduce(value)
        return value

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()


def join(device_name: str = "auto") -> Ranks:
    """Join the process group that torchrun (or srun with torchrun) describes in the environment.

    Without ``WORLD_SIZE`` > 1 this is a single process and nothing is initialised.
    The backend is NCCL when the device is CUDA and gloo otherwise; with CUDA each
    process takes the GPU of its ``LOCAL_RANK``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    joined = not torch.distributed.is_initialized()
    if joined:
        if cuda:
            torch.cuda.set_device(local)
        backend = "nccl" if cuda else "gloo"
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
            # torchrun's store outlives a restart after a failure: each attempt's keys get their own prefix, so
            # that the processes of a new attempt do not read the addresses of the old one
            attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
            store = torch.distributed.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                                               is_master=False)
            store = torch.distributed.PrefixStore(f"equicalc/attempt_{attempt}", store)
            torch.distributed.init_process_group(backend, store=store, rank=rank, world_size=world)
        else:
            torch.distributed.init_process_group(backend)
    return Ranks(rank=rank, world=world, local_rank=local, joined=joined)


def leave(ranks: Ranks) -> None:
    """End the process group that ``join`` started (one started by the caller is left as it is)."""
    if ranks.joined and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def shard(items: np.ndarray, ranks: Ranks) -> np.ndarray:
    """This rank's contiguous part of ``items`` (sizes differ by at most one; may be empty)."""
    return np.array_split(np.asarray(items), ranks.world)[ranks.rank]
