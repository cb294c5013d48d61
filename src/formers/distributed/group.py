"""The process group a tensor-parallel model runs in, and the two collectives it uses.

Collectives go through `all_reduce_sum` and `all_gather_last`: when a peer rank has died or stopped
answering, torch raises from inside gloo/NCCL (after the group's `timeout` at worst); these turn that into
a `DistributedError` that says which rank, which step and what to check, so a job fails instead of hanging.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import DistributedError


@dataclass(frozen=True)
class RankInfo:
    """Where this process sits in the default process group."""

    rank: int
    world_size: int
    backend: str

    def device(self) -> torch.device:
        """The device a rank computes on: its own GPU under NCCL (LOCAL_RANK), else the CPU."""
        if self.backend != "nccl":
            return torch.device("cpu")
        local = int(os.environ.get("LOCAL_RANK", self.rank % max(torch.cuda.device_count(), 1)))
        return torch.device("cuda", local)


def current_group(purpose: str) -> RankInfo:
    """This process's rank and world size; `purpose` names the call that needs them (for the error)."""
    if not (dist.is_available() and dist.is_initialized()):
        raise DistributedError(
            f"{purpose} needs an initialised torch.distributed process group; launch with torchrun (or set "
            "RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and call torch.distributed.init_process_group() or "
            "formers.distributed.init_from_env() first")
    return RankInfo(dist.get_rank(), dist.get_world_size(), dist.get_backend())


def init_from_env(backend: str | None = None, timeout_s: float = 300.0) -> RankInfo:
    """init_process_group from torchrun's environment variables: "nccl" when CUDA is available, else "gloo",
    with a finite `timeout_s` so a dead peer makes the others fail instead of waiting forever."""
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise DistributedError(f"init_from_env: environment variables {missing} are not set; launch with "
                                   "torchrun or set them")
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return current_group("init_from_env")


def _failed(what: str, exc: Exception) -> DistributedError:
    rank = dist.get_rank() if dist.is_initialized() else "?"
    world = dist.get_world_size() if dist.is_initialized() else "?"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DistributedError(f"tensor parallel: {what} failed on rank {rank} of {world}; a peer rank has died, "
                            f"was interrupted or timed out (the process group's `timeout`): {first}")


def all_reduce_sum(tensor: torch.Tensor, what: str, group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """Sum `tensor` over every rank (of `group`; default: the default group), in place (`what` names the step
    for the error message)."""
    try:
        dist.all_reduce(tensor, group=group)
    except (RuntimeError, dist.DistBackendError) as exc:
        raise _failed(f"all_reduce after {what}", exc) from exc
    return tensor


def all_gather_last(tensor: torch.Tensor, what: str) -> torch.Tensor:
    """Concatenate every rank's `tensor` (same shape on each) along the last dimension, in rank order."""
    world = dist.get_world_size()
    parts = [torch.empty_like(tensor) for _ in range(world)]
    try:
        dist.all_gather(parts, tensor.contiguous())
    except (RuntimeError, dist.DistBackendError) as exc:
        raise _failed(f"all_gather after {what}", exc) from exc
    return torch.cat(parts, dim=-1)


def all_gather_dim(tensor: torch.Tensor, dim: int, what: str) -> torch.Tensor:
    """Concatenate every rank's `tensor` along `dim` (attention weights: the head dimension)."""
    return all_gather_last(tensor.movedim(dim, -1), what).movedim(-1, dim)


def check_same_everywhere(info: RankInfo, description: str, what: str) -> None:
    """Raise DistributedError on every rank unless all ranks pass the same `description` (a model's class,
    config and plan): ranks that loaded different models would otherwise exchange mismatched tensors."""
    digest = int.from_bytes(hashlib.sha256(description.encode()).digest()[:7], "little")
    mine = torch.tensor([digest], dtype=torch.int64, device=info.device())
    everyone = all_gather_last(mine, f"comparing {what} across ranks").tolist()
    differing = [rank for rank, value in enumerate(everyone) if value != everyone[0]]
    if differing:
        raise DistributedError(f"{what}: ranks {differing} differ from rank 0 (another checkpoint, config or "
                               f"tp_plan); every rank of the process group must load the same model")
