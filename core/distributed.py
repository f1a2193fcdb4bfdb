"""Data-parallel training over several processes (one per GPU, or CPU processes over gloo).

A run with `train.gpus = N > 1` is started as N processes, by the SLURM executor (one task
per GPU), the local executor (N local tasks) or `torchrun --nproc-per-node N -m core run`;
each finds its rank in the standard environment variables (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT). Every rank trains on its slice of each global batch
(`train.batch_size` is the global batch, as in the paper), so the batches of a step are the
same whatever the number of processes.

Why not wrap the network in `DistributedDataParallel`: a pruner owns its network and may run
it several times per step, take gradients with `torch.autograd.grad` (S2HPruner's masks),
or change its shape mid-run (RST-S, Group-SL). DDP's reducer supports none of that (it only
reduces gradients accumulated into `.grad` by one backward per forward). Instead, a global
optimizer step pre-hook averages the gradients of every optimizer's parameters across ranks
just before any step, which is the same synchronisation DDP performs, for every optimizer a
pruner owns (weights, masks, phases); and the network's buffers (BatchNorm statistics) are
broadcast from rank 0 after every step, as DDP does before every forward pass. All ranks then
hold identical parameters and run the same per-epoch code; only rank 0 writes files.

One approximation, stated: S2HPruner's gradient balancing (A4) normalises the mask gradients
on each rank before they are averaged, not after.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from core.errors import ConfigError


@dataclass(frozen=True)
class Distributed:
    """This process's place in the run: rank, world size and local rank."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = Distributed()


def from_environment() -> Distributed:
    """The rank and world size set by torchrun, submitit or SLURM; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    return Distributed(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def start(expected: int, device_type: str) -> Distributed:
    """Join the process group of a `train.gpus = expected` run (a no-op for a single process)."""
    place = from_environment()
    if place.world_size != expected:
        launched = "one process" if place.world_size == 1 else f"{place.world_size} processes"
        raise ConfigError(
            f"train.gpus={expected} but this run was started as {launched}; start it through "
            f"`python -m experiments run` or `torchrun --nproc-per-node {expected} -m core run ...`"
        )
    if place.enabled and not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo", rank=place.rank, world_size=place.world_size)
    return place


def stop(place: Distributed) -> None:
    if place.enabled and dist.is_initialized():
        dist.destroy_process_group()


def _average_gradients(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


@dataclass
class GradientSync:
    """While active, every optimizer step first averages its gradients across ranks."""

    place: Distributed
    handle: Any = None

    def __enter__(self) -> "GradientSync":
        if self.place.enabled:
            self.handle = register_optimizer_step_pre_hook(_average_gradients)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.handle is not None:
            self.handle.remove()


def broadcast_buffers(modules: Iterator[nn.Module] | list[nn.Module], place: Distributed) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank."""
    if not place.enabled:
        return
    for module in modules:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def sum_across(values: list[float], place: Distributed, device: torch.device) -> list[float]:
    """Element-wise sums over ranks (epoch loss and accuracy counts)."""
    if not place.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def barrier(place: Distributed) -> None:
    if place.enabled:
        dist.barrier()
