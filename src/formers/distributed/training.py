"""The Trainer over torch.distributed: the process group, the DDP or FSDP wrapper, each rank's slice of
the global batch and the cross-rank sums.

    torchrun --nproc-per-node 2 train.py     # train.py builds Trainer(model, TrainingArguments(...)).train()

A global batch is per_device_train_batch_size x world_size examples per micro-step (times
gradient_accumulation_steps per update). Its example order is the one-process order for that batch size,
and rank r takes the r-th contiguous slice, so W ranks see exactly the examples one process would.
Each rank's loss is its token-loss sum over the label tokens of the whole global window, times W: DDP
and FSDP average gradients over ranks, so the update is the one-process update of the global batch.

FSDP is torch's FSDP2 (`torch.distributed.fsdp.fully_shard`, DTensor parameters sharded on dim 0): it runs
on CPU with gloo as well as on GPUs with NCCL, and torch.distributed.checkpoint reshards its state dicts
to any world size.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError, DistributedError
from .group import RankInfo, all_reduce_sum, check_same_everywhere

logger = logging.getLogger(__name__)

# fields that may differ between ranks (torchrun sets them per process)
_PER_RANK_FIELDS = ("local_rank",)


@dataclass(frozen=True)
class TrainingGroup:
    """The process group a Trainer runs in and how its model is wrapped."""

    info: RankInfo
    fsdp: bool

    @property
    def rank(self) -> int:
        return self.info.rank

    @property
    def world_size(self) -> int:
        return self.info.world_size


def _launched_by_torchrun() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def setup_group(args, model: nn.Module) -> TrainingGroup | None:
    """The process group of this training job, initialised from torchrun's environment when needed
    (backend `ddp_backend`, or gloo on CPU / nccl on CUDA; timeout `ddp_timeout`); None for one process."""
    if not dist.is_initialized():
        if not _launched_by_torchrun():
            if args.fsdp:
                raise DistributedError(
                    f"TrainingArguments.fsdp={' '.join(args.fsdp)!r} needs a torch.distributed process group; "
                    "launch with torchrun (which sets RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) or call "
                    "torch.distributed.init_process_group() before building the Trainer")
            return None
        backend = args.ddp_backend or ("nccl" if args.device.type == "cuda" else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(args.device)
        dist.init_process_group(backend, timeout=timedelta(seconds=args.ddp_timeout))
    info = RankInfo(dist.get_rank(), dist.get_world_size(), dist.get_backend())
    if info.world_size == 1 and not args.fsdp:
        return None
    mine = {k: v for k, v in args.to_dict().items() if k not in _PER_RANK_FIELDS}
    check_same_everywhere(info, f"{sorted(mine.items())!r}", "Trainer(args=...): the TrainingArguments")
    check_same_everywhere(info, f"{type(model).__name__} {model.config.to_json_string(use_diff=False)}",
                          "Trainer(model=...): the model")
    return TrainingGroup(info, fsdp=bool(args.fsdp))


# --- wrapping -----------------------------------------------------------------------------------------
def decoder_layer_classes(model: nn.Module, names: list[str] | None) -> tuple[type, ...]:
    """The module classes each FSDP unit is made of: `names` from fsdp_config, else the class of the
    family's decoder layers (model.model.layers)."""
    if names:
        found = {type(m).__name__: type(m) for m in model.modules()}
        missing = [n for n in names if n not in found]
        if missing:
            raise ConfigError(f"TrainingArguments.fsdp_config.transformer_layer_cls_to_wrap: {missing} are not "
                              f"module classes of {type(model).__name__} (it has {sorted(found)})")
        return tuple(found[n] for n in names)
    layers = getattr(getattr(model, model.base_model_prefix, model), "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise ConfigError(f"fsdp: {type(model).__name__} has no decoder layer list; name the classes to wrap in "
                          "fsdp_config['transformer_layer_cls_to_wrap']")
    return tuple({type(layer) for layer in layers})


def checkpoint_activations(module: nn.Module) -> None:
    """Recompute `module`'s activations in backward instead of keeping them (parameter names unchanged)."""
    from torch.utils.checkpoint import checkpoint

    forward = module.forward
    module.forward = functools.partial(checkpoint, forward, use_reentrant=False)


def wrap_model(model: nn.Module, args, group: TrainingGroup) -> nn.Module:
    """Shard `model` in place with FSDP2, or return it inside DistributedDataParallel."""
    activation_checkpointing = args.gradient_checkpointing or args.fsdp_config.get("activation_checkpointing")
    classes = decoder_layer_classes(model, args.fsdp_config.get("transformer_layer_cls_to_wrap"))
    if activation_checkpointing:
        model.config.use_cache = False  # a cache would be written twice by the recomputation
        for module in model.modules():
            if isinstance(module, classes):
                checkpoint_activations(module)
    if not group.fsdp:  # 4.45's default: look for unused parameters unless activations are recomputed
        find_unused = args.ddp_find_unused_parameters
        find_unused = not activation_checkpointing if find_unused is None else find_unused
        device_ids = [args.device.index] if args.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(
            model, device_ids=device_ids, find_unused_parameters=find_unused,
            bucket_cap_mb=args.ddp_bucket_cap_mb,
            broadcast_buffers=args.ddp_broadcast_buffers if args.ddp_broadcast_buffers is not None else True)
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

    options = {"reshard_after_forward": "shard_grad_op" not in args.fsdp}
    if "offload" in args.fsdp:
        options["offload_policy"] = CPUOffloadPolicy(pin_memory=args.device.type == "cuda")
    if args.autocast_dtype is not None:  # parameters cast for compute; gradients reduced in float32
        options["mp_policy"] = MixedPrecisionPolicy(param_dtype=args.autocast_dtype, reduce_dtype=torch.float32)
    for module in list(model.modules()):
        if isinstance(module, classes):
            fully_shard(module, **options)
    fully_shard(model, **options)
    return model


def rank_slice(batch: list[int], group: TrainingGroup | None) -> list[int]:
    """This rank's contiguous part of a global batch of example indices (sizes differ by at most one)."""
    if group is None:
        return batch
    share, extra = divmod(len(batch), group.world_size)
    start = group.rank * share + min(group.rank, extra)
    return batch[start:start + share + (1 if group.rank < extra else 0)]


def sum_over_ranks(tensor: torch.Tensor, group: TrainingGroup | None, what: str) -> torch.Tensor:
    """`tensor` summed over every rank (a copy; the input is untouched)."""
    if group is None:
        return tensor
    return all_reduce_sum(tensor.detach().clone(), what)


def barrier(group: TrainingGroup | None, what: str) -> None:
    """Wait for every rank (a peer that died makes this raise DistributedError, not hang)."""
    if group is not None:
        all_reduce_sum(torch.zeros(1, device=group.info.device()), what)


@contextlib.contextmanager
def collective_errors(group: TrainingGroup | None, what: str):
    """Turn a failed collective inside `what` (DDP's gradient all-reduce, FSDP's gathers) into a
    DistributedError naming this rank; the group's ddp_timeout bounds how long a dead peer is waited for."""
    try:
        yield
    except (RuntimeError, dist.DistBackendError) as exc:
        if group is None or isinstance(exc, DistributedError):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DistributedError(f"training: {what} failed on rank {group.rank} of {group.world_size}; a peer rank "
                               f"has died, was interrupted or timed out (TrainingArguments.ddp_timeout): "
                               f"{first}") from exc


def grad_norm_value(norm: torch.Tensor | None) -> torch.Tensor | None:
    """A clip_grad_norm_ result as a plain tensor (FSDP2 returns a DTensor holding the global norm)."""
    return norm.full_tensor() if norm is not None and hasattr(norm, "full_tensor") else norm
