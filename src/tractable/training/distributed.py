"""Data parallelism under `torchrun`: one process per device, DistributedDataParallel.

`torchrun` sets RANK, WORLD_SIZE and LOCAL_RANK (and the rendezvous address); without them
training runs in one process. NCCL is used on GPUs and gloo on CPUs. Only rank 0 writes
logs, pictures and checkpoints; every rank keeps identical weights (DDP averages gradients).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from tractable.devices import pick_device

__all__ = ["DistEnv", "all_reduce_sum", "barrier", "broadcast_module", "setup", "teardown"]


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str = "auto") -> DistEnv:
    """Join the process group if launched by torchrun; return where this process runs."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv(device=pick_device(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistEnv(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def teardown(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


@torch.no_grad()
def broadcast_module(module: nn.Module, env: DistEnv, src: int = 0) -> None:
    """Copy every parameter and buffer of rank `src` to all ranks (after data-dependent init)."""
    if not env.distributed:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=src)


def all_reduce_sum(t: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum `t` over ranks in place (a no-op in one process); returns `t`."""
    if env.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()
