"""Process groups for many GPUs and many nodes: torchrun, SLURM's srun, or one plain process.

One process needs nothing. Under torchrun (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT set)
or srun (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID; MASTER_ADDR/PORT must be exported by the
batch script) the default group is started with NCCL on CUDA and gloo on CPU. Work is split by
:func:`my_share`, which depends only on the item list and the world size, never on timing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from diffit_eval.errors import MissingAssetError, UserError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(*names: str) -> int | None:
    for n in names:
        if os.environ.get(n) not in (None, ""):
            return int(os.environ[n])
    return None


def env_rank() -> int:
    """This process's rank as torchrun or srun set it (0 for a plain process), without joining a group."""
    return _env_int("RANK", "SLURM_PROCID") or 0


def init(device: str | None = None, timeout: timedelta | None = None) -> Dist:
    """Join the process group described by the environment (idempotent); return this process's place.

    `timeout` bounds how long a collective waits for the slowest rank (torch's default when None).
    """
    world = _env_int("WORLD_SIZE", "SLURM_NTASKS") or 1
    if world == 1:
        return Dist()
    rank = env_rank()
    local = _env_int("LOCAL_RANK", "SLURM_LOCALID") or 0
    if not dist.is_initialized():
        os.environ.setdefault("RANK", str(rank))
        os.environ.setdefault("WORLD_SIZE", str(world))
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29500")
        use_cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world, timeout=timeout)
    return Dist(rank, world, local)


def device_for(d: Dist, device: str | None) -> str:
    """The device this rank works on: the given one, else its local GPU, else the CPU."""
    if device:
        return device
    return f"cuda:{d.local_rank}" if torch.cuda.is_available() else "cpu"


def my_share(items: list, d: Dist) -> list:
    """Round-robin share of `items` for this rank (rank r takes items r, r + W, r + 2W, ...)."""
    return items[d.rank :: d.world_size]


def barrier(d: Dist) -> None:
    if d.world_size > 1:
        dist.barrier()


def all_gather_objects(obj, d: Dist) -> list:
    """Every rank's `obj`, in rank order (small objects only: sums, lists of paths)."""
    if d.world_size == 1:
        return [obj]
    out = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, d: Dist, src: int = 0):
    if d.world_size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def main_then_broadcast(fn: Callable[[], tuple[Any, Any]], d: Dist) -> tuple[Any, Any]:
    """Rank 0 runs `fn() -> (shared, local)`; every rank gets `shared`, rank 0 also `local` (others None).

    Planning (argument checks, claiming a run folder, loading what only rank 0 reads) happens once,
    on rank 0. A user error there is raised on every rank with its exit code, and any other failure
    is announced before rank 0 re-raises it, so no rank waits forever in the broadcast.
    """
    shared, local, error = None, None, None
    if d.is_main:
        try:
            shared, local = fn()
        except UserError as e:
            if d.world_size == 1:
                raise
            error = (str(e), e.code)
        except Exception as e:
            broadcast_object((None, (f"rank 0 failed: {type(e).__name__}: {e}", 1)), d)
            raise
    shared, error = broadcast_object((shared, error), d)
    if error is not None:
        message, code = error
        raise (MissingAssetError if code == 2 else UserError)(message, code)
    return shared, local


def shutdown(d: Dist) -> None:
    if d.world_size > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
